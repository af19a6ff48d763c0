"""Item cards on a product page: the other products a shop shows beside the one the page
sells ("Customers also viewed", "Similar items", "You may also like") leave the page
before extraction.

A product page is about one item; its hand-checked main text is that item's name,
description and specifications. Shops put carousels and grids of other products around
it, and trafilatura keeps them (on eBay's item pages they are most of the text). Those
cards are found by their structure, not by their class names: siblings under one parent
with the same tag and class, RELATED_MIN_CARDS of them or more, where at least
RELATED_LINKED of them hold a link and RELATED_IMAGED an image (a product card: a
picture, a name that links to the item, often a price). A group whose parent holds the
page's <h1> stays (that is the product itself, or a listing's grid under its heading).

Only on a page that sells ONE product (``single_product``): one to RELATED_MAX_PRODUCTS
schema.org Products in its JSON-LD or microdata (variants of one item), and no
ItemList / CollectionPage / OfferCatalog / SearchResultsPage; or, declaring none, a URL
path of a product (/dp/, /itm/, /product/, /pdp/; not /products/, which shops use for
categories too). On a listing or collection,
where the cards are the main text, the page declares many Products or a list, and the
step does nothing. Chosen on wcxb dev and checked on each half of it
(bench/bench_items_folds.py): products .639 -> .656, other page types unchanged but
services (-.0004); it fires on no aeb page.

The other way round, on a listing or collection (``add_missed_grid``, run on the text
extraction gave): trafilatura often keeps a category's blurb and drops its grid of items,
which the hand-checked text keeps. Where the text holds under GRID_SHARE of the page's
visible characters, the page sells no single product, and a group of cards outside
navigation, headers, footers, asides and forms has GRID_MIN_CARDS or more cards the text
lacks (under GRID_MISSED of a card's words in it) holding GRID_RATIO times the text's
words or more at GRID_CARD_WORDS words a card or fewer (names and prices, not the long
teasers of an article's related posts), those cards are added below the text, one a
line. Chosen on wcxb dev and checked on each half (bench/bench_grid_folds.py): fires on
7 of 1,497 pages, listings .656 -> .668, collections .636 -> .639, no page type lower,
overall .8509 -> .8520 (+.0016 / +.0006 on the halves); on no aeb page. Cheap tests
first: a text of more than GRID_MAX_WORDS words is not tried (most articles), then the
images the cards would need, then ``shown_chars``. Without the word cap the image count
on every page took extraction from 1.03x to 1.00x plain trafilatura's speed on aeb; with
it, 1.03x on aeb and wcxb (bench/RESULTS.md).
"""

from __future__ import annotations

import math
import re

from lxml import etree

from pipeline.extract.expand import _PAGE_CHARS
from pipeline.extract.page import _JSON_LD

RELATED_MIN_CARDS = 4
RELATED_LINKED = 0.8
RELATED_IMAGED = 0.6
RELATED_MAX_PRODUCTS = 4
RELATED_BY_URL = True

_PRODUCT = re.compile(r'"@type"\s*:\s*\[?\s*"Product"')
_LIST = re.compile(r'"@type"\s*:\s*\[?\s*"(?:ItemList|CollectionPage|OfferCatalog|SearchResultsPage)"')
# microdata through the attribute axis (//@a[...]/..: the same elements as //*[@a...], cheaper)
_MD_PRODUCT = etree.XPath("//@itemtype[contains(., 'schema.org/Product')]/..")
_MD_LIST = etree.XPath("//@itemtype[contains(., 'schema.org/ItemList') or contains(., 'schema.org/OfferCatalog')"
                       " or contains(., 'schema.org/CollectionPage') or contains(., 'schema.org/SearchResultsPage')]/..")
_PRODUCT_PATH = re.compile(r"^https?://[^/]+(?:/[^?#]*)?/(?:dp|itm|product|pdp)/[^/?#]", re.I)
_PARENTS = etree.XPath("//*[count(*) >= $n][count(*[descendant-or-self::img or descendant-or-self::picture]) >= $k]")
_SKIP = {"script", "style", "noscript", "template", "svg", "head", "select", "option"}


def single_product(tree, url: str | None = None, html: str | None = None) -> bool:
    """The page sells one product: 1 to RELATED_MAX_PRODUCTS schema.org Products in its
    JSON-LD or microdata and no list of items; or (with RELATED_BY_URL) no Product and no
    list declared, and a product's URL path. HTML, the page's source when given, rules
    most pages out at once: no '"Product"' and no 'schema.org/Product' in it, and no
    product URL path."""
    by_url = RELATED_BY_URL and bool(url) and bool(_PRODUCT_PATH.match(url))
    if html is not None and not by_url and '"Product"' not in html and "schema.org/Product" not in html:
        return False
    blocks = _JSON_LD(tree)
    if any(_LIST.search(b) for b in blocks) or _MD_LIST(tree):
        return False
    ld = sum(len(_PRODUCT.findall(b)) for b in blocks)
    md = len(_MD_PRODUCT(tree))
    if ld > RELATED_MAX_PRODUCTS or md > RELATED_MAX_PRODUCTS:
        return False
    return bool(ld or md or by_url)


def _signature(el) -> tuple[str, str]:
    return el.tag, " ".join(sorted((el.get("class") or "").split()))


def _first_class(el) -> tuple[str, str]:
    """The tag and the first class: the cards of one grid where each card's class also
    names its own item (WooCommerce's "product type-product post-15859 ... instock
    product_cat-cups first")."""
    classes = (el.get("class") or "").split()
    return el.tag, classes[0] if classes else ""


def card_groups(tree, min_cards: int | None = None, signature=_signature):
    """Groups of product cards: lists of MIN_CARDS or more siblings with the same
    SIGNATURE (the tag and the whole class; ``_first_class`` is looser),
    RELATED_LINKED of them holding a link and RELATED_IMAGED an image. Yields
    (parent, cards)."""
    min_cards = min_cards or RELATED_MIN_CARDS
    # in C, a necessary condition: MIN_CARDS children or more, RELATED_IMAGED x MIN_CARDS holding an image
    for parent in _PARENTS(tree, n=min_cards, k=math.ceil(RELATED_IMAGED * min_cards - 1e-9)):
        if parent.tag in _SKIP:
            continue
        by: dict[tuple[str, str], list] = {}
        for child in parent:
            if isinstance(child.tag, str) and child.tag not in _SKIP:
                by.setdefault(signature(child), []).append(child)
        for cards in by.values():
            n = len(cards)
            if n < min_cards:
                continue
            linked = sum(1 for c in cards if c.tag == "a" or c.find(".//a[@href]") is not None)
            if linked < RELATED_LINKED * n:
                continue
            imaged = sum(1 for c in cards if c.tag == "img" or c.find(".//img") is not None or c.find(".//picture") is not None)
            if imaged >= RELATED_IMAGED * n:
                yield parent, cards


def drop_related_items(tree, url: str | None = None, html: str | None = None) -> int:
    """On a page that sells one product (``single_product``), remove the groups of other
    products' cards (``card_groups``) outside the element that holds the page's <h1>.
    HTML (the page's source), when given, makes the test cheap on most pages. Returns
    how many cards left TREE (0: the page is not a single product, or has none)."""
    if not single_product(tree, url, html):
        return 0
    found = [cards for parent, cards in card_groups(tree) if parent.find(".//h1") is None]
    n = 0
    for cards in found:
        for card in cards:
            up = card.getparent()
            if up is not None:  # a card inside a group removed before it has gone with it
                up.remove(card)
                n += 1
    return n


# A listing's or collection's grid that the extraction missed (``add_missed_grid``). Its
# cards are siblings of one tag and first class (GRID_SIGNATURE; bench/bench_thread_folds.py).
GRID_MIN_CARDS = 4
GRID_MISSED = 0.5
GRID_RATIO = 2.0
GRID_SHARE = 0.3
GRID_CARD_WORDS = 30
GRID_SIGNATURE = _first_class
# A listing whose grid trafilatura dropped leaves a short text (a heading, a blurb): on
# wcxb dev the step fires on texts of 53 to 189 words. Past GRID_MAX_WORDS the step is
# not tried at all, which spares most articles its image count (0.16 ms a page on aeb).
GRID_MAX_WORDS = 400
_WORD = re.compile(r"\w+")
_CHROME = {"nav", "header", "footer", "aside", "form"}
_NO_TEXT = _SKIP | {"button"}
_IMAGES = etree.XPath("count(//img|//picture)")
_SCRIPT_TEXT = etree.XPath("//body//script/text()|//body//style/text()")


def shown_chars(tree) -> int:
    """About how many characters of text the page shows, cheaply: the body's text
    (whitespace runs counted once) less the text of its scripts and styles (0.1-0.2 ms a
    page; ``expand.visible_chars``, which also leaves out asides, footers and SVG and
    counts each element once, takes 0.9)."""
    return max(0, int(_PAGE_CHARS(tree)) - sum(len(t) for t in _SCRIPT_TEXT(tree)))


def card_text(card) -> str:
    """A card's text on one line, its elements' texts apart: its text and its
    descendants', less scripts, styles, SVG, templates, selects and buttons."""
    parts: list[str] = []

    def walk(el, tail: bool) -> None:
        if isinstance(el.tag, str) and el.tag not in _NO_TEXT:
            if el.text:
                parts.append(el.text)
            for child in el:
                walk(child, True)
        if tail and el.tail:
            parts.append(el.tail)

    walk(card, False)
    return " ".join(" ".join(parts).split())  # a space between elements: "Table 1</a><span>$19" apart


def missed_cards(tree, text: str | None, missed: float = GRID_MISSED, min_cards: int = GRID_MIN_CARDS) -> list[str]:
    """The lines (one a card) of the group of cards (``card_groups``, siblings of one
    tag and first class: ``_first_class``) outside navigation, headers, footers, asides
    and forms that adds the most words TEXT lacks: a card is missed when under MISSED of
    its words are words of TEXT; groups of fewer than MIN_CARDS missed cards do not
    count. [] when there is none."""
    have = set(_WORD.findall((text or "").lower()))
    best: list[str] = []
    best_words = 0
    for parent, cards in card_groups(tree, signature=GRID_SIGNATURE):
        if parent.tag in _CHROME or any(a.tag in _CHROME for a in parent.iterancestors()):
            continue
        lines, words = [], 0
        for card in cards:
            line = card_text(card)
            toks = _WORD.findall(line.lower())
            if toks and sum(1 for t in toks if t in have) < missed * len(toks):
                lines.append(line)
                words += len(toks)
        if len(lines) >= min_cards and words > best_words:
            best, best_words = lines, words
    return best


def add_missed_grid(tree, text: str | None, url: str | None = None, html: str | None = None) -> str | None:
    """TEXT with the cards of a listing's grid it missed added below it, or None. Only
    where TEXT holds under GRID_SHARE of the page's characters (``shown_chars``), on a page that
    does not sell one product (``single_product``), and where the missed cards
    (``missed_cards``) hold GRID_RATIO times TEXT's words or more at GRID_CARD_WORDS
    words a card or fewer on average (item names and prices, not teasers of articles)."""
    if not text:
        return None
    # cheap first: a long text is not a listing that lost its grid (GRID_MAX_WORDS); the
    # cards it would take need images, RELATED_IMAGED of GRID_RATIO x the text's words /
    # GRID_CARD_WORDS cards (words counted by their spaces here)
    if len(text.split(maxsplit=GRID_MAX_WORDS)) > GRID_MAX_WORDS:  # splits no further than that
        return None
    need = RELATED_IMAGED * max(GRID_MIN_CARDS, GRID_RATIO * (text.count(" ") + text.count("\n")) / GRID_CARD_WORDS)
    if _IMAGES(tree) < need:
        return None
    if len(" ".join(text.split())) >= GRID_SHARE * shown_chars(tree):
        return None
    if single_product(tree, url, html):
        return None
    lines = missed_cards(tree, text)
    if not lines:
        return None
    words = sum(len(_WORD.findall(line)) for line in lines)
    if words < GRID_RATIO * len(_WORD.findall(text)) or words > GRID_CARD_WORDS * len(lines):
        return None
    return text + "\n" + "\n".join(lines)
