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
"""

from __future__ import annotations

import re

from lxml import etree

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


def card_groups(tree, min_cards: int | None = None):
    """Groups of product cards: lists of MIN_CARDS or more siblings with the same tag and
    class, RELATED_LINKED of them holding a link and RELATED_IMAGED an image. Yields
    (parent, cards)."""
    min_cards = min_cards or RELATED_MIN_CARDS
    for parent in tree.iter(tag=etree.Element):
        if len(parent) < min_cards or parent.tag in _SKIP:
            continue
        by: dict[tuple[str, str], list] = {}
        for child in parent:
            if isinstance(child.tag, str) and child.tag not in _SKIP:
                by.setdefault(_signature(child), []).append(child)
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
