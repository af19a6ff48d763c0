"""Main-text extraction from WARC response records into Parquet documents.

Reads any WARC with response records (ours, Common Crawl's, a web archive's),
or exactly the records a fetch directory's outcomes point at. trafilatura
extracts the main text with settings chosen by measurement
(bench/bench_extract.py): ``include_comments=False``, URL passed; consent banners
and subscription prompts are removed first, and an extraction that kept little of
a page that is not an article is rescued after, or widened to the container of what
trafilatura kept (its headings and lists); forum threads give their posts
(``extract_page``). The title is
read from the page's ``<title>``/``og:title`` (cheap; a first line of the text that
repeats it leaves the text, which is the body) and the publication date
from the page's metadata (``with_date``, on by default; htmldate's fast mode where the
metadata has none with ``date_htmldate``), since trafilatura's full metadata pass costs a third of the
extraction time.

Work is split into chunks; each chunk writes ``part-NNNNN.parquet`` (kept
documents) and then ``part-NNNNN.done.json`` (every key it handled, kept or
dropped with a reason), both atomically. A restarted run skips every key in a
done file, so nothing is lost or repeated. Pages are extracted on all cores; a
page that makes the extractor raise or run past ``page_timeout_s`` is dropped
with a reason and the run goes on.
"""

from __future__ import annotations

import html as htmllib
import multiprocessing as mp
import os
import re
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator

import orjson
from lxml import etree
import pyarrow as pa
import pyarrow.parquet as pq

from .config import ExtractConfig
from .html import decode_content_encoding, decode_html
from .io import write_parquet_atomic
from .summary import RunSummary, atomic_write_bytes, atomic_write_json, progress
from .urls import InvalidURL, normalize_url, url_id

CHUNK = 256

DOC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("url_norm", pa.string()),
        ("text", pa.string()),
        ("title", pa.string()),
        ("date", pa.string()),
        ("status", pa.int32()),
        ("fetched_at", pa.string()),
        ("warc_file", pa.string()),
        ("warc_offset", pa.int64()),
        ("charset", pa.string()),
        ("score", pa.int64()),
        ("score_total", pa.int64()),
        ("subreddits", pa.list_(pa.string())),
        ("reddit_ids", pa.list_(pa.string())),
        ("created_utc", pa.int64()),
    ]
)

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_JSON_LD = etree.XPath("//script[@type='application/ld+json']/text()")
_OG_TITLE = re.compile(rb"""<meta[^>]+property=["']og:title["'][^>]+content=["']([^"']*)""", re.I)


def page_title(html: str) -> str | None:
    b = html[:200_000].encode("utf-8", "ignore")
    m = _OG_TITLE.search(b) or _TITLE.search(b)
    if not m:
        return None
    t = htmllib.unescape(m.group(1).decode("utf-8", "ignore")).strip()
    return re.sub(r"\s+", " ", t)[:1000] or None


# The publication date a page declares: Open Graph / article meta tags, schema.org
# microdata, JSON-LD. One XPath over meta tags and one over JSON-LD blocks: ~1 ms a
# page where htmldate's fast mode costs ~9 (bench/RESULTS.md "Rescue").
_DATE_META = etree.XPath(
    "//meta[@property='article:published_time' or @name='article:published_time' or @itemprop='datePublished'"
    " or @property='og:published_time' or @name='pubdate' or @name='publishdate' or @name='date'"
    " or @name='DC.date.issued' or @name='dcterms.date' or @name='parsely-pub-date' or @name='sailthru.date']/@content"
    " | //*[@itemprop='datePublished']/@datetime")
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


# Consent managers, by the ids and classes their scripts give their containers. A
# bare "cmp" is not among them: Adobe's core components use cmp-* for content.
_CONSENT_ATTR = re.compile(
    r"onetrust|\bot-sdk|\bot-pc-|qc-cmp|axeptio|didomi|cookiebot|usercentrics|truste-|trustarc|\bsp_message|"
    r"sp-message-container|gdpr-(?:banner|consent|notice|modal)|cookie[-_]?(?:banner|consent|notice|bar|law|wall|popup|modal)|"
    r"cookies?[-_]?consent|consent[-_]?(?:banner|manager|modal|popup|wall|notice)|\bcc-(?:window|banner)\b|"
    r"privacy[-_]?(?:banner|manager|center|centre|notice|consent)", re.I)
# Subscription walls and prompts (Piano/TinyPass, "restricted content" breakers, reg
# walls), by their containers' ids and classes. Such a prompt is short: a container
# holding more than PAYWALL_MAX_CHARS of text may be the article itself (some sites
# wrap the subscribers' part of a story in a "paywall" element) and stays.
_PAYWALL_ATTR = re.compile(
    r"paywall|pay-wall|regwall|reg-wall|registration-wall|piano-(?:offer|paywall|inline|container|modal|template)|"
    r"\btp-(?:modal|backdrop)|restricted-(?:content|story)|(?:content|article|story)-(?:gate|lock)|"
    r"locked-content|subscri(?:be|ption|ber)[-_]?(?:prompt|wall|box|banner|cta|offer|gate|only|promo)|"
    r"premium-(?:wall|prompt|banner|gate)|meter(?:ed)?[-_](?:wall|banner|prompt)", re.I)
_PAYWALL_WORDS = ("subscri", "log in", "login", "sign in", "unlock", "account", "premium", "trial", "member", "register")
PAYWALL_MAX_CHARS = 1500
# Words every _CONSENT_ATTR / _PAYWALL_ATTR alternative contains (lowercase): looked for
# in all of a page's id and class values at once, they rule out most pages and
# elements before any per-element work.
_BANNER_WORDS = ("onetrust", "ot-", "qc-cmp", "axeptio", "didomi", "cookie", "usercentrics", "truste", "sp_message",
                 "sp-message", "gdpr", "consent", "cc-", "privacy", "paywall", "pay-wall", "regwall", "reg-wall",
                 "registration-wall", "piano-", "tp-modal", "tp-backdrop", "restricted-", "-gate", "-lock", "locked-",
                 "subscri", "premium-", "meter-", "metered")
_ID_CLASS = etree.XPath("//@id | //@class", smart_strings=False)
_NTH_ID_CLASS = etree.XPath("(//@id | //@class)[$n]", smart_strings=True)
_NEVER_STRIPPED = {"html", "head", "body", "main", "article"}  # a page's frame: a banner class on it means nothing
_CONSENT_WORDS = ("cookie", "consent", "privacy", "personal data", "données", "datenschutz", "gdpr", "partners",
                  "préférences", "datos personales", "privacidad")


def strip_consent(tree) -> int:
    """Remove consent-manager containers from an lxml tree (in place); returns how many
    (``strip_banners`` with consent only)."""
    return strip_banners(tree, consent=True, paywall=False)["consent"]


def strip_banners(tree, consent: bool = True, paywall: bool = True) -> dict[str, int]:
    """Remove consent-manager containers and subscription prompts from an lxml tree (in
    place); returns how many of each ({"consent": n, "paywall": n}).

    An element goes when its id or class names a consent manager (a paywall) AND its
    text speaks of cookies, consent or privacy (of subscribing, logging in, unlocking)
    AND it holds less than half the page's text (a wrapper of the whole page is never
    removed); a paywall element also holds at most PAYWALL_MAX_CHARS. The outermost
    match goes whole; the text after it stays."""
    def text_of(el) -> str:  # the visible text below EL (scripts and styles left out)
        parts = []
        for n in el.iter():
            if isinstance(n.tag, str) and n.tag not in ("script", "style", "noscript") and n.text:
                parts.append(n.text)
            if n is not el and n.tail:
                parts.append(n.tail)
        return "".join(parts)

    removed = {"consent": 0, "paywall": 0}
    # Candidates from the page's id and class strings, as plain strings (a page holds
    # about a thousand): only a value that names a consent manager or a paywall has its
    # element looked up (by its position among them), so elements become Python objects
    # only there.
    hits, last = [], None
    values = _ID_CLASS(tree)  # document order: an element's id and class come together
    joined = "\0".join(values).lower()  # one search over all of them; most pages have no candidate
    found = []  # str.find per word: several times faster than one regex of alternatives
    for word in _BANNER_WORDS:
        at = joined.find(word)
        while at != -1:
            found.append(at)
            at = joined.find(word, at + 1)
    seen, i, pos = -1, 0, 0
    for at in sorted(found):
        i += joined.count("\0", pos, at)  # the value the word is in
        pos = at
        if i == seen:
            continue
        seen = i
        low = values[i].lower()
        if not ((consent and _CONSENT_ATTR.search(low)) or (paywall and _PAYWALL_ATTR.search(low))):
            continue
        el = _NTH_ID_CLASS(tree, n=i + 1)[0].getparent()
        if el is last or el.tag in _NEVER_STRIPPED:
            continue
        last = el
        attrs = f"{el.get('id') or ''} {el.get('class') or ''}".lower()
        if consent and _CONSENT_ATTR.search(attrs):
            hits.append((el, "consent"))
        elif paywall and _PAYWALL_ATTR.search(attrs):
            hits.append((el, "paywall"))
    if not hits:
        return removed
    body = tree.find(".//body") if tree.tag != "body" else tree
    body_len = len(text_of(body if body is not None else tree))
    root = tree.getroottree().getroot()
    for el, kind in hits:  # document order: an outer match goes before its descendants are looked at
        parent = el.getparent()
        if parent is None or el.getroottree().getroot() is not root:
            continue  # inside a container removed already
        text = text_of(el)
        low = text.lower()
        words = _CONSENT_WORDS if kind == "consent" else _PAYWALL_WORDS
        if not any(w in low for w in words) or (body_len and len(text) > 0.5 * body_len):
            continue
        if kind == "paywall" and len(" ".join(text.split())) > PAYWALL_MAX_CHARS:
            continue
        if el.tail:  # the text after the element belongs to the page: keep it
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + el.tail
            else:
                parent.text = (parent.text or "") + el.tail
        parent.remove(el)
        removed[kind] += 1
    return removed


# The rescue of an extraction that kept little of the page (extract_page). Chosen on
# wcxb's dev pages and checked on aeb's articles (bench/bench_extract.py; bench/RESULTS.md
# "Rescue"): where trafilatura keeps under RESCUE_SHARE of the page's visible characters
# and the page does not declare itself an article (og:type, schema.org Article types:
# there trafilatura's article model is right, and a short story beside a long comment
# thread is still short) and the extraction holds no paragraph of RESCUE_PROSE_WORDS
# words (prose: the story was found, as on an old news site that declares nothing),
# under RESCUE_PAGE_SHARE the page's whole visible text
# (trafilatura's html2txt) replaces the extraction when longer; else trafilatura's
# baseline (JSON-LD body, <article>, the page's paragraphs) does when it holds
# RESCUE_BASELINE_RATIO times the words. Listing, collection, product, service and forum
# pages are where it fires: their item lists and posts are what an article model leaves out.
RESCUE_SHARE = 0.4
RESCUE_PAGE_SHARE = 0.06
RESCUE_BASELINE_RATIO = 3
RESCUE_PROSE_WORDS = 60
_WORD = re.compile(r"\w+")
_HIDDEN = "self::script or self::style or self::noscript or self::template or self::svg or self::aside or self::footer"
_PAGE_CHARS = etree.XPath("string-length(normalize-space(//body))")
_HIDDEN_ELEMENTS = etree.XPath(f"//body//*[{_HIDDEN}][not({_HIDDEN.replace('self::', 'ancestor::')})]")
_SPACED_CHARS = etree.XPath("string-length(normalize-space(.))")
_OG_TYPE = etree.XPath("//meta[@property='og:type']/@content")
_ARTICLE_TYPE = re.compile(r'"@type"\s*:\s*\[?\s*"(?:News|Blog|Scholarly|Tech|Report|Reportage|Analysis|Opinion)?(?:Article|Posting)"')


def declares_article(tree) -> bool:
    """The page says it is an article: og:type "article", or a schema.org Article,
    NewsArticle, BlogPosting (...) in its JSON-LD."""
    if any(v.strip().lower() == "article" for v in _OG_TYPE(tree)):
        return True
    return any(_ARTICLE_TYPE.search(t) for t in _JSON_LD(tree))


def visible_chars(tree) -> int:
    """About how many characters of text the page shows: the body's text, whitespace
    runs counted once, less scripts, styles, templates, SVG, asides and footers."""
    total = _PAGE_CHARS(tree)
    for el in _HIDDEN_ELEMENTS(tree):
        total -= _SPACED_CHARS(el)
    return max(0, int(total))


def rescue_short_extraction(tree, text: str | None, article: bool | None = None) -> tuple[str | None, str | None]:
    """(text, how) where HOW names the rescue that replaced TEXT ("baseline" or "page"),
    or None when TEXT stays. TREE is the parsed page, left unchanged."""
    from trafilatura import baseline, html2txt

    # the cheap tests first: prose and a declared article rule out most article pages
    if any(len(_WORD.findall(line)) >= RESCUE_PROSE_WORDS for line in (text or "").splitlines()):
        return text, None
    if article if article is not None else declares_article(tree):
        return text, None
    page = visible_chars(tree)
    got = len(" ".join((text or "").split()))
    if not page or got >= RESCUE_SHARE * page:
        return text, None
    words = len(_WORD.findall(text or ""))
    if got < RESCUE_PAGE_SHARE * page:
        whole = html2txt(tree)
        if len(_WORD.findall(whole)) > words:
            return whole, "page"
    base = baseline(tree)[1]
    if len(_WORD.findall(base)) > RESCUE_BASELINE_RATIO * words:
        return base, "baseline"
    return text, None


# Expansion to the extraction's container. On service, listing and collection pages
# trafilatura keeps a section's paragraphs but drops its headings, short list items and
# table cells (the truth of such a page keeps them). The container that holds the
# paragraphs trafilatura kept is found back in the page: the deepest element holding
# EXPAND_COVER of the page's block elements (p, li, h1-h6, td ...) whose text is one of
# the extraction's lines of EXPAND_MIN_WORDS words or more. Its text (less scripts,
# styles, navigation, headers, footers, asides, forms and buttons) replaces the
# extraction when it holds EXPAND_RATIO times the words or more; never the whole body,
# and never on a page that declares a product (schema.org Product, og:type product):
# there the container holds prices, variant pickers and cart widgets. Measured on wcxb
# dev (bench/RESULTS.md "Container"): fires on 10% of the pages, .831 -> .844 overall;
# chosen on that split, checked on each half (bench/bench_expand_folds.py) and on aeb.
EXPAND_MIN_WORDS = 3
EXPAND_COVER = 0.8
EXPAND_RATIO = 1.25
_BLOCKS = etree.XPath("//p|//li|//h1|//h2|//h3|//h4|//h5|//h6|//td|//th|//dd|//dt|//blockquote|//pre")
_NOT_TEXT = etree.XPath("//script|//style|//noscript|//template|//svg|//nav|//header|//footer|//aside|//form"
                        "|//button|//select|//iframe")
_PRODUCT_TYPE = re.compile(r'"@type"\s*:\s*\[?\s*"Product"')
_PRODUCT_ITEM = etree.XPath("//*[@itemtype='https://schema.org/Product' or @itemtype='http://schema.org/Product']")


def _words_key(line: str) -> str:
    return " ".join(_WORD.findall(line.lower()))


def declares_product(tree) -> bool:
    """The page says it sells one product: og:type product, or a schema.org Product in
    its JSON-LD or microdata."""
    if any(v.strip().lower() in ("product", "og:product") for v in _OG_TYPE(tree)):
        return True
    return any(_PRODUCT_TYPE.search(t) for t in _JSON_LD(tree)) or bool(_PRODUCT_ITEM(tree))


def expand_to_container(tree, text: str | None, min_words: int = EXPAND_MIN_WORDS, cover: float = EXPAND_COVER,
                        ratio: float = EXPAND_RATIO) -> str | None:
    """The text of the element that holds what TEXT (trafilatura's extraction of the
    page TREE) was taken from, when it holds RATIO times TEXT's words or more; else
    None. TREE loses its scripts, navigation, forms (...): call it last."""
    if not text:
        return None
    lines = {_words_key(line) for line in text.splitlines()}
    lines = {k for k in lines if k.count(" ") + 1 >= min_words}
    if not lines:
        return None
    for el in _NOT_TEXT(tree):
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)
    hits = [el for el in _BLOCKS(tree) if _words_key(el.text_content()) in lines]
    if len(hits) < 2:
        return None
    held: dict = {}
    for el in hits:
        for anc in el.iterancestors():
            held[anc] = held.get(anc, 0) + 1
    need = cover * len(hits)
    best, depth = None, -1
    for anc, n in held.items():
        if n >= need:
            d = sum(1 for _ in anc.iterancestors())
            if d > depth:
                best, depth = anc, d
    if best is None or best.tag in ("body", "html"):
        return None
    parts = (" ".join(t.split()) for t in best.itertext())
    found = "\n".join(t for t in parts if t)
    if len(_WORD.findall(found)) < ratio * len(_WORD.findall(text)):
        return None
    return found


def drop_repeated_lines(text: str, min_words: int = 3) -> str:
    """TEXT without the lines of MIN_WORDS words or more that repeat an earlier line
    (word for word, case aside): a forum post quoting an earlier one."""
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        key = _words_key(line)
        if key.count(" ") + 1 >= min_words:
            if key in seen:
                continue
            seen.add(key)
        out.append(line)
    return "\n".join(out)


# Forum threads and Q&A pages by their engine's post markup: (a string every such page
# holds, cheap to look for in the HTML; the XPath of one post's body). trafilatura
# counts posts as comments (dropped with include_comments=False, or mixed with what it
# calls comments otherwise); these engines mark each post's body. Q&A markup (schema.org
# Question/Answer text) counts only on a QAPage: FAQ pages of shops and services use
# the same markup for their own copy. Measured on wcxb dev (bench/RESULTS.md): found on
# 65 of the 113 forum pages and on no other page, forum F1 .704 -> .752.
_CLASS = "contains(concat(' ', normalize-space(@class), ' '), ' {} ')"
FORUM_ENGINES = (
    ("xenforo", "bbWrapper", f"//div[{_CLASS.format('bbWrapper')}]"),
    ("vbulletin", "post_message_", "//div[starts-with(@id, 'post_message_')]"),
    ("phpbb", 'class="postbody"', f"//div[{_CLASS.format('postbody')}]//div[{_CLASS.format('content')}]"),
    ("invision", 'data-role="commentContent"', "//div[@data-role='commentContent']"),
    ("smf", 'id="forumposts"', f"//div[{_CLASS.format('post')}]/div[{_CLASS.format('inner')}]"),
    ("qa", "QAPage", "//*[contains(@itemtype, 'schema.org/Answer') or contains(@itemtype, 'schema.org/Question') "
                     "or contains(@itemtype, 'DiscussionForumPosting')]//div[@itemprop='text']"),
)
_FORUM_XPATHS = {name: etree.XPath(xp) for name, _, xp in FORUM_ENGINES}


def forum_posts(html: str, tree, article: bool = False) -> tuple[str, str] | None:
    """(engine, text) of a forum thread or Q&A page: the page's <h1>, then each post's
    body (its lines, stripped), one after another; None when no engine's markup holds
    two posts or more. A page that declares an ARTICLE is looked at as a Q&A page only
    (no thread engine's page on wcxb declares one; a Q&A page may): most pages are
    articles, and the engines' markers are looked for in the whole HTML."""
    for name, needle, _ in FORUM_ENGINES[-1:] if article else FORUM_ENGINES:
        if needle not in html:
            continue
        posts = _FORUM_XPATHS[name](tree)
        if len(posts) < 2:
            continue
        parts = [" ".join(tree.xpath("string(//h1)").split())]
        for post in posts:
            lines = (" ".join(line.split()) for line in post.text_content().splitlines())
            parts.append("\n".join(line for line in lines if line))
        text = drop_repeated_lines("\n".join(p for p in parts if p))
        if text:
            return name, text
    return None


def drop_title_line(text: str | None, title: str | None) -> str | None:
    """TEXT without its first line when that line (3 words or more) is the page's
    TITLE or a part of it ("Headline | Site"): the document keeps its title in its own
    field, and the text is the body."""
    if not text or not title:
        return text
    first, _, rest = text.partition("\n")
    key = _words_key(first)
    if key.count(" ") >= 2 and key in _words_key(title):
        return rest
    return text


def extract_page(html: str, url: str | None, cfg: ExtractConfig,
                 steps: dict[str, int] | None = None, title: str | None = None) -> tuple[str | None, str | None]:
    """(main text, publication date) from one parse of the page: the date is read
    from the tree first (``page_date``; it does not change it), then consent banners
    and subscription prompts are removed (``strip_banners``); a forum thread or Q&A
    page whose engine marks its posts then gives its posts (``forum_posts``, with
    ``cfg.forum_posts``); any other page goes to trafilatura (on the same tree:
    identical output to passing the HTML string, measured on aeb), an extraction
    that kept little of a non-article page is rescued (``rescue_short_extraction``,
    with ``cfg.rescue``), and on a page that declares neither an article nor a
    product the extraction is widened to its container (``expand_to_container``,
    with ``cfg.expand``); last, a first line that repeats the page's title (TITLE,
    else ``page_title``) is dropped unless ``cfg.title_line``. STEPS, when given,
    gets what the steps did for the run's summary: consent_removed / paywall_removed
    (elements), forum_ENGINE, rescued_baseline or rescued_page, expanded,
    title_line_dropped."""
    if not (cfg.with_date or cfg.strip_consent or cfg.strip_paywall or cfg.rescue or cfg.forum_posts or cfg.expand
            or not cfg.title_line):
        return extract_text(html, url, cfg), None
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return extract_text(html, url, cfg), None
    date = page_date(tree, cfg.date_htmldate) if cfg.with_date else None
    if cfg.strip_consent or cfg.strip_paywall:
        removed = strip_banners(tree, consent=cfg.strip_consent, paywall=cfg.strip_paywall)
        if steps is not None:
            for kind, n in removed.items():
                if n:
                    steps[f"{kind}_removed"] = n
    article = declares_article(tree)  # once: the forum, rescue and expansion steps ask
    if cfg.forum_posts:
        found = forum_posts(html, tree, article)
        if found:
            if steps is not None:
                steps[f"forum_{found[0]}"] = 1
            return _without_title(found[1], html, title, cfg, steps), date
    text = extract_text(tree, url, cfg)  # trafilatura works on a copy: TREE stays whole
    if cfg.rescue:
        text, how = rescue_short_extraction(tree, text, article)
        if how and steps is not None:
            steps[f"rescued_{how}"] = 1
    if cfg.expand and not article and not declares_product(tree):
        wider = expand_to_container(tree, text)  # last: it strips TREE
        if wider is not None:
            text = wider
            if steps is not None:
                steps["expanded"] = 1
    return _without_title(text, html, title, cfg, steps), date


def _without_title(text, html, title, cfg, steps):
    if cfg.title_line or not text:
        return text
    out = drop_title_line(text, title if title is not None else page_title(html))
    if out is not text and steps is not None:
        steps["title_line_dropped"] = 1
    return out


class _PageTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _PageTimeout()


_OPTS: dict = {}


class ExtractorUnavailable(RuntimeError):
    """trafilatura (or one of its dependencies) cannot be imported."""


def check_extractor() -> None:
    """Import trafilatura in this process, or raise a clear error.

    Called before the worker pool starts: a multiprocessing worker whose
    initializer raises is replaced forever, which would hang the run.
    """
    try:
        import trafilatura  # noqa: F401
    except Exception as exc:  # ImportError, or lxml's "lxml.html.clean is now separate"
        raise ExtractorUnavailable(
            f"cannot import trafilatura: {type(exc).__name__}: {exc} "
            "(reinstall the project: pip install -e . pulls lxml_html_clean)"
        ) from exc


def _init_worker(opts: dict) -> None:
    _OPTS.update(opts)
    signal.signal(signal.SIGALRM, _alarm)
    try:  # never raise here (see check_extractor); extract_one re-raises in the parent
        import trafilatura  # noqa: F401  (import once per worker)
    except Exception as exc:
        _OPTS["init_error"] = f"{type(exc).__name__}: {exc}"


def extract_text(html, url: str | None, cfg: ExtractConfig) -> str | None:
    import trafilatura

    return trafilatura.extract(
        html, url=url, include_comments=cfg.include_comments, favor_precision=cfg.favor_precision,
        favor_recall=cfg.favor_recall, with_metadata=False,
    )


def _read_record(path: str, offset: int):
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as fh:
        fh.seek(offset)
        for record in ArchiveIterator(fh):
            uri = record.rec_headers.get_header("WARC-Target-URI")
            date = record.rec_headers.get_header("WARC-Date")
            truncated = record.rec_headers.get_header("WARC-Truncated")
            status = int(record.http_headers.get_statuscode() or 0) if record.http_headers else 0
            headers = {k.lower(): v for k, v in (record.http_headers.headers if record.http_headers else [])}
            body = record.raw_stream.read()
            return record.rec_type, uri, date, status, headers, body, truncated
    raise EOFError(f"no WARC record at {path}:{offset}")


def extract_one(task: tuple[str, int, str | None]) -> tuple[str | None, dict | None, str | None]:
    """Worker: (warc path, offset, key) -> (key, document fields | None, drop reason | None)."""
    path, offset, key = task
    if "init_error" in _OPTS:
        raise ExtractorUnavailable(f"extract worker could not start: {_OPTS['init_error']}")
    cfg = ExtractConfig(**_OPTS.get("cfg", {}))
    try:
        rec_type, uri, date, status, headers, body, truncated = _read_record(path, offset)
    except Exception as exc:
        return key, None, f"warc_unreadable: {type(exc).__name__}"
    try:
        key = key or normalize_url(uri)
    except InvalidURL:
        return key, None, "invalid_url"
    if rec_type != "response":
        return key, None, "not_a_response"
    if not 200 <= status < 300:
        return key, None, "http_status"
    if truncated:
        return key, None, "truncated_record"
    ctype = headers.get("content-type", "")
    if ctype and ctype.split(";", 1)[0].strip().lower() not in ("text/html", "application/xhtml+xml", "application/xml", "text/xml"):
        return key, None, "not_html"
    try:
        body = decode_content_encoding(body, headers.get("content-encoding"), 50 * 2**20, lenient=True)
    except Exception:
        return key, None, "bad_content_encoding"
    if not body.strip():
        return key, None, "empty_body"
    html, charset = decode_html(body, ctype)
    signal.setitimer(signal.ITIMER_REAL, cfg.page_timeout_s)
    steps: dict[str, int] = {}
    title = page_title(html)
    try:
        text, pub_date = extract_page(html, uri, cfg, steps, title=title)
    except _PageTimeout:
        return key, None, "extract_timeout"
    except Exception:
        return key, None, "extract_error"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if not text or not text.strip():
        return key, None, "no_main_text"
    return key, {
        "url": uri, "url_norm": key, "text": text, "title": title, "date": pub_date,
        # fetched_at is the record's WARC-Date: the fetch time, or an archived page's capture time
        "status": status, "fetched_at": date, "warc_file": path, "warc_offset": offset, "charset": charset,
        "_steps": steps,  # what extraction's own steps did (taken out before the document is written)
    }, None


def count_steps(summary: RunSummary, doc: dict) -> None:
    """Move a document's ``_steps`` into the summary's extra["extraction_steps"]: pages
    whose consent banner or subscription prompt was removed, pages rescued, forum
    pages, pages widened to their extraction's container."""
    steps = doc.pop("_steps", None) or {}
    tally = summary.extra.setdefault("extraction_steps", {})
    for k in steps:
        name = {"consent_removed": "pages_consent_removed", "paywall_removed": "pages_paywall_removed"}.get(k, k)
        tally[name] = tally.get(name, 0) + 1


def note_steps(summary: RunSummary) -> None:
    """One line of the run's table for what extraction's steps did on the kept pages."""
    steps = summary.extra.get("extraction_steps")
    if steps:
        summary.note("of the pages kept: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(steps.items())))


def tasks_from_warcs(paths: Iterable[str | Path], damaged: list[dict] | None = None) -> Iterator[tuple[str, int, str | None]]:
    """The response records of WARC files (anyone's) as extraction tasks. Damaged
    stretches are skipped and appended to DAMAGED (see ``io.iter_warc_records``)."""
    from .io import iter_warc_records

    damaged = damaged if damaged is not None else []
    for p in paths:
        p = str(Path(p).resolve())
        for offset, _, record in iter_warc_records(p, damaged):
            if record.rec_type == "response":
                uri = record.rec_headers.get_header("WARC-Target-URI")
                try:
                    key = normalize_url(uri)
                except (InvalidURL, TypeError):
                    key = None  # no or a bad WARC-Target-URI: the worker records invalid_url
                yield p, offset, key


def tasks_from_fetch(fetch_dir: str | Path) -> Iterator[tuple[str, int, str | None]]:
    from .fetch import read_outcomes

    fetch_dir = Path(fetch_dir)
    for key, rec in read_outcomes(fetch_dir).items():
        if rec.get("outcome") == "ok" and rec.get("warc_file"):
            wf = Path(rec["warc_file"])
            path = wf if wf.is_absolute() else fetch_dir / "warc" / wf
            yield str(path.resolve()), rec["warc_offset"], key


def load_reddit_meta(links_paths: Iterable[str | Path]) -> dict[str, dict]:
    from .links import read_links

    meta: dict[str, dict] = {}
    for p in links_paths:
        t = read_links(p).select(["url_norm", "score", "score_total", "subreddits", "reddit_ids", "created_utc"])
        for row in t.to_pylist():
            old = meta.get(row["url_norm"])
            if old is None or (row["score"] or 0) > (old["score"] or 0):
                meta[row["url_norm"]] = row
    return meta


def done_keys(out_dir: Path) -> tuple[set[str], int]:
    keys: set[str] = set()
    n = 0
    for p in sorted(out_dir.glob("part-*.done.json")):
        d = orjson.loads(p.read_bytes())
        keys.update(d["kept"])
        keys.update(k for k, _ in d["dropped"])
        n = max(n, int(p.name.split("-")[1].split(".")[0]) + 1)
    return keys, n


def extract_documents(
    tasks: Iterable[tuple[str, int, str | None]],
    out_dir: str | Path,
    cfg: ExtractConfig,
    reddit_meta: dict[str, dict] | None = None,
    start_method: str = "forkserver",
    damaged: list[dict] | None = None,
) -> RunSummary:
    """``webtext extract``: run the tasks not yet done; write parts and the summary.

    Workers start from a fork server (a fresh single-threaded process), not by
    forking this process: a fork of a process with threads (Prefect's client,
    a task runner) can copy a held lock and hang the child.

    DAMAGED: the list ``tasks_from_warcs`` fills; each damaged WARC stretch counts
    as one unit dropped as ``warc_damaged`` and is named in the summary."""
    cfg.validate()
    check_extractor()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Parts left without a done file by a killed run are not counted; they will be rewritten.
    for p in out.glob("part-*.parquet"):
        if not p.with_name(p.name.replace(".parquet", ".done.json")).exists():
            p.unlink()
    seen, next_part = done_keys(out)
    reddit_meta = reddit_meta or {}
    summary = RunSummary("extract", unit="pages")
    todo = []
    in_run: set = set()
    for t in tasks:
        summary.n_in += 1
        key = t[2]
        if key is not None and key in seen:
            summary.drop("already_extracted")
        elif key is not None and key in in_run:
            summary.drop("duplicate_capture")
        else:
            if key is not None:
                in_run.add(key)
            todo.append(t)
    for d in damaged or []:
        summary.n_in += 1
        summary.drop("warc_damaged")
        summary.note(f"{d['file']}: bytes {d['start']:,}-{d['end']:,} unreadable ({d['error']}); the records "
                     "around them were read")
    if damaged:
        summary.extra["damaged_warc_regions"] = list(damaged)
    workers = cfg.workers or os.cpu_count() or 1
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["pipeline.extract"])
    kept_total = 0
    with ctx.Pool(workers, initializer=_init_worker, initargs=({"cfg": asdict(cfg)},), maxtasksperchild=2000) as pool, \
            progress(total=len(todo), desc="extract", unit="pages") as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            docs, kept, dropped = [], [], []
            for key, doc, reason in pool.imap(extract_one, chunk, chunksize=4):
                bar.update(1)
                if doc is None:
                    dropped.append((key, reason))
                    summary.drop(reason.split(":", 1)[0])
                    continue
                if doc["url_norm"] in seen:
                    dropped.append((key, "duplicate_capture"))
                    summary.drop("duplicate_capture")
                    continue
                seen.add(doc["url_norm"])
                count_steps(summary, doc)
                m = reddit_meta.get(doc["url_norm"], {})
                doc.update(
                    id=url_id(doc["url_norm"]), score=m.get("score"), score_total=m.get("score_total"),
                    subreddits=m.get("subreddits"), reddit_ids=m.get("reddit_ids"), created_utc=m.get("created_utc"),
                )
                docs.append(doc)
                kept.append(doc["url_norm"])
            part = out / f"part-{next_part:05d}.parquet"
            if docs:
                write_parquet_atomic(pa.Table.from_pylist(docs, schema=DOC_SCHEMA), part)
            atomic_write_bytes(part.with_name(f"part-{next_part:05d}.done.json"),
                               orjson.dumps({"kept": kept, "dropped": dropped}))
            next_part += 1
            kept_total += len(docs)
    summary.n_out = kept_total
    note_steps(summary)
    summary.check()
    summary.finish().write(out)
    return summary


# --- the build's extract: a fetch directory's outcome logs, each read once ------------------
#
# A fetch directory's outcome logs only grow (one line per attempt). Each log is a
# partition of this stage: a ledger per log (LEDGER_DIR/<label>.json) records how many
# of its bytes were consumed and the next part number, so a later build reads only
# the lines appended since, and nothing is read twice. A chunk of CHUNK pages writes
# part-<label>-NNNNN.parquet, then the ledger: parts numbered at or past the ledger's
# next_part are a killed run's and are deleted and redone.

LEDGER_DIR = "ledger"
META_FIELDS = ("score", "score_total", "subreddits", "reddit_ids", "created_utc")


def outcome_logs(fetch_dir: str | Path) -> dict[str, Path]:
    """{label: outcome log} of a fetch directory: the single log of the first layout
    (label ``f-all``) and the per-partition logs (``outcomes/part-0003.jsonl`` -> ``f0003``)."""
    fetch_dir = Path(fetch_dir)
    logs = {}
    for name in ("outcomes.jsonl", "outcomes.legacy.jsonl"):  # the second: the first once split (fetch.layout)
        if (fetch_dir / name).is_file() and "f-all" not in logs:
            logs["f-all"] = fetch_dir / name
    for p in sorted((fetch_dir / "outcomes").glob("part-*.jsonl")):
        logs["f" + p.stem.split("-", 1)[1]] = p
    return logs


def _start_of(fetch_dir: Path, label: str) -> int:
    """Where a partition log's own lines begin: after the lines fetch copied into it
    from the first layout's single log, which extract reads as that log (``f-all``)."""
    lay = fetch_dir / "partitions.json"
    if label == "f-all" or not lay.is_file():
        return 0
    return int(orjson.loads(lay.read_bytes()).get("legacy_prefix", {}).get(label[1:], 0))


def _ledger(out: Path, label: str, fetch_dir: Path) -> dict:
    p = out / LEDGER_DIR / f"{label}.json"
    if p.is_file():
        return orjson.loads(p.read_bytes())
    return {"consumed": _start_of(fetch_dir, label), "next_part": 0, "pages": 0}


def pending_logs(fetch_dir: str | Path, out_dir: str | Path) -> list[str]:
    """The labels of the outcome logs with lines this stage has not read yet."""
    out, fetch_dir = Path(out_dir), Path(fetch_dir)
    return [label for label, p in outcome_logs(fetch_dir).items()
            if p.stat().st_size > _ledger(out, label, fetch_dir)["consumed"]]


def _ok_records(path: Path, start: int, bad: list[int]) -> Iterator[tuple[dict, int]]:
    """(ok outcome record, byte offset just past its line) from START on; only whole
    lines (a line still being written is left for the next run). Unreadable lines
    are counted in BAD."""
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        for line in fh:
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            if not line.strip():
                yield None, pos
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad[0] += 1
                yield None, pos
                continue
            if rec.get("outcome") == "ok" and rec.get("warc_file"):
                yield rec, pos
            else:
                yield None, pos


def extract_log(fetch_dir: str | Path, out_dir: str | Path, cfg: ExtractConfig, label: str,
                links_dirs: Iterable[str | Path] = (), workers: int | None = None,
                start_method: str = "forkserver", progress_bar: bool = True) -> dict:
    """One partition of the build's extract: the pages of outcome log LABEL of FETCH_DIR
    not read by an earlier run. A pure function of its files (any process, a Dask
    worker's included). Returns its summary as a dict.

    Reddit fields come with each ok outcome record (fetch copies them from the
    links); records of an older fetch that lack them are joined from LINKS_DIR."""
    cfg.validate()
    check_extractor()
    fetch_dir, out = Path(fetch_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = outcome_logs(fetch_dir)[label]
    led = _ledger(out, label, fetch_dir)
    for p in out.glob(f"part-{label}-*.parquet"):  # a killed run's uncommitted parts
        if int(p.stem.rsplit("-", 1)[1]) >= led["next_part"]:
            p.unlink()
    # A directory of the first layout (part-NNNNN.done.json per chunk): its keys are done.
    done_before = done_keys(out)[0] if not (out / LEDGER_DIR / f"{label}.json").is_file() else set()
    summary = RunSummary("extract", unit="pages")
    summary.extra.update(log=label, pages_done_before=led["pages"])
    meta_of_links: dict | None = None
    bad = [0]
    end = log.stat().st_size
    in_run: set[str] = set()
    n_workers = workers or cfg.workers or os.cpu_count() or 1
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["pipeline.extract"])

    def commit(pool, chunk: list, records: dict, upto: int) -> None:
        nonlocal meta_of_links
        docs = []
        for key, doc, reason in pool.imap(extract_one, chunk, chunksize=4):
            if doc is None:
                summary.drop(reason.split(":", 1)[0])
                continue
            count_steps(summary, doc)
            rec = records[key]
            if not any(f in rec for f in META_FIELDS) and links_dirs:
                if meta_of_links is None:  # an outcome log written before fetch carried them
                    meta_of_links = load_reddit_meta(links_dirs)
                rec = meta_of_links.get(key, {})
            doc.update(id=url_id(key), **{f: rec.get(f) for f in META_FIELDS})
            docs.append(doc)
        part = out / f"part-{label}-{led['next_part']:05d}.parquet"
        if docs:
            write_parquet_atomic(pa.Table.from_pylist(docs, schema=DOC_SCHEMA), part)
        summary.n_out += len(docs)
        led.update(consumed=upto, next_part=led["next_part"] + 1, pages=led["pages"] + len(chunk))
        atomic_write_json(out / LEDGER_DIR / f"{label}.json", led)

    if mp.current_process().daemon:
        raise ExtractorUnavailable(
            "extract runs trafilatura in child processes, which a daemonic process (a Dask worker started with "
            "distributed.worker.daemon: true, Dask's default) may not start: start the workers with "
            "DASK_DISTRIBUTED__WORKER__DAEMON=False (webtext's own local cluster does)")
    with ctx.Pool(n_workers, initializer=_init_worker, initargs=({"cfg": asdict(cfg)},), maxtasksperchild=2000) as pool, \
            progress(total=end - led["consumed"], desc=f"extract {label}", unit="B", unit_scale=True,
                     disable=None if progress_bar else True) as bar:
        chunk, records, pos = [], {}, led["consumed"]
        for rec, pos_next in _ok_records(log, led["consumed"], bad):
            if pos_next > end:  # appended after this run started: the next run's
                break
            bar.update(pos_next - pos)
            pos = pos_next
            if rec is None:
                continue
            summary.n_in += 1
            key = rec["url_norm"]
            if key in done_before:
                summary.drop("already_extracted")
            elif key in in_run or key in records:
                summary.drop("duplicate_capture")
            else:
                wf = Path(rec["warc_file"])
                path = wf if wf.is_absolute() else fetch_dir / "warc" / wf
                chunk.append((str(path.resolve()), rec["warc_offset"], key))
                records[key] = rec
            if len(chunk) >= CHUNK:
                commit(pool, chunk, records, pos)
                in_run.update(records)
                chunk, records = [], {}
        if chunk or pos > led["consumed"]:
            commit(pool, chunk, records, pos)
    if bad[0]:
        summary.note(f"{log.name}: {bad[0]} unreadable line(s) skipped")
        summary.extra["unreadable_outcome_lines"] = bad[0]
    summary.check()
    return summary.finish().to_dict()


def extract_fetched(fetch_dir: str | Path, out_dir: str | Path, cfg: ExtractConfig,
                    links_dirs: Iterable[str | Path] = (), progress_bar: bool = True) -> RunSummary:
    """The build's extract: every outcome log's new pages (``extract_log`` for each
    log with unread lines, one after another, each on all cores); writes and returns
    the stage's summary."""
    parts = [extract_log(fetch_dir, out_dir, cfg, label, links_dirs, progress_bar=progress_bar)
             for label in pending_logs(fetch_dir, out_dir)]
    return finish_extract(out_dir, parts)


def finish_extract(out_dir: str | Path, parts: list[dict]) -> RunSummary:
    """The stage's summary from its partitions' (``extract_log``) summaries."""
    from .summary import combine_summaries

    s = combine_summaries("extract", "pages", parts)
    s.extra["logs_read"] = [p["extra"]["log"] for p in parts]
    # pages extracted by earlier runs: those of the logs read now, and of every other log
    others = sum(orjson.loads(p.read_bytes()).get("pages", 0) for p in (Path(out_dir) / LEDGER_DIR).glob("*.json")
                 if p.stem not in s.extra["logs_read"])
    s.extra["pages_done_before"] = others + sum(p["extra"].get("pages_done_before", 0) for p in parts)
    bad = sum(p["extra"].get("unreadable_outcome_lines", 0) for p in parts)
    if bad:
        s.extra["unreadable_outcome_lines"] = bad
    steps: dict[str, int] = {}
    for p in parts:
        for k, v in p["extra"].get("extraction_steps", {}).items():
            steps[k] = steps.get(k, 0) + v
    s.extra["extraction_steps"] = steps
    note_steps(s)
    s.check()
    s.finish().write(out_dir)
    return s


def read_documents(src: str | Path, columns: list[str] | None = None, pattern: str = "*.parquet") -> pa.Table:
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.glob(pattern) if not p.name.startswith("."))
    if not files:
        return DOC_SCHEMA.empty_table() if columns is None else DOC_SCHEMA.empty_table().select(columns)
    from .io import read_part

    return pa.concat_tables([read_part(f, columns=columns) for f in files], promote_options="default")
