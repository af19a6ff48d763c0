"""What a page says about itself, read cheaply: its title, its publication date, its id and class values."""

from __future__ import annotations

import html as htmllib
import re

from lxml import etree

# over the text itself (no encoding of 200 KB per page first: 5x less CPU), with ASCII
# case folding as over bytes
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S | re.A)
_JSON_LD = etree.XPath("//script[@type='application/ld+json']/text()")
_OG_TITLE = re.compile(r"""<meta[^>]+property=["']og:title["'][^>]+content=["']([^"']*)""", re.I | re.A)
_SPACES = re.compile(r"\s+")


def page_title(html: str) -> str | None:
    """The page's og:title, else its <title>, in its first 200,000 characters."""
    m = _OG_TITLE.search(html, 0, 200_000) or _TITLE.search(html, 0, 200_000)
    if not m:
        return None
    t = htmllib.unescape(m.group(1)).strip()
    return _SPACES.sub(" ", t)[:1000] or None


# The publication date a page declares: Open Graph / article meta tags, schema.org
# microdata, JSON-LD. One XPath over meta tags and one over JSON-LD blocks: ~0.6 ms a
# page where htmldate's fast mode costs ~9 (bench/RESULTS.md "Rescue"). Elements of any
# name picked by an attribute are found through the attribute axis (//@a[.='v']/..): the
# same nodes as //*[@a='v'], at half the CPU on aeb and wcxb; a named element's test
# (//meta[...]) is cheaper as it is.
_DATE_META = etree.XPath(
    "//meta[@property='article:published_time' or @name='article:published_time' or @itemprop='datePublished'"
    " or @property='og:published_time' or @name='pubdate' or @name='publishdate' or @name='date'"
    " or @name='DC.date.issued' or @name='dcterms.date' or @name='parsely-pub-date' or @name='sailthru.date']/@content"
    " | //@itemprop[.='datePublished']/../@datetime")  # the attribute axis: //*[@itemprop=...] walks 2x slower
_LD_DATE = re.compile(r'"datePublished"\s*:\s*"(\d{4}-\d{2}-\d{2})')
_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?!\d)")


def declared_date(tree) -> str | None:
    """The publication date (YYYY-MM-DD) the page's metadata declares, or None."""
    for value in _DATE_META(tree):
        m = _ISO_DATE.search(value)
        if m:
            return m.group(0)
    for block in _JSON_LD(tree):
        m = _LD_DATE.search(block)
        if m and _ISO_DATE.fullmatch(m.group(1)):
            return m.group(1)
    return None


def page_date(html_or_tree, htmldate: bool = True) -> str | None:
    """The publication date (YYYY-MM-DD): the one the page's metadata declares, else
    (with HTMLDATE) htmldate's fast mode (original date, no extensive search), else None."""
    from htmldate import find_date

    if not isinstance(html_or_tree, str):
        found = declared_date(html_or_tree)
        if found or not htmldate:
            return found
    try:
        return find_date(html_or_tree, extensive_search=False, original_date=True)
    except Exception:  # a date is a nicety: never a reason to lose the page
        return None


_ID_CLASS = etree.XPath("//@id | //@class", smart_strings=False)
_NTH_ID_CLASS = etree.XPath("(//@id | //@class)[$n]", smart_strings=True)  # the same order as _ID_CLASS


def id_class_values(tree) -> tuple[list[str], str]:
    """Every id and class value of the page in document order (an element's id and class
    together), and all of them lowercased and joined by NUL: one string that a word is
    looked for in at once (~1/10 of the HTML; the consent step and the forum engines'
    markers read it, pipeline/extract/consent.py and forum.py)."""
    values = _ID_CLASS(tree)
    return values, "\0".join(values).lower()


def id_class_element(tree, i: int):
    """The element whose id or class is the I-th (from 0) of ``id_class_values(tree)``
    (TREE unchanged since): only that element becomes a Python object."""
    return _NTH_ID_CLASS(tree, n=i + 1)[0].getparent()
