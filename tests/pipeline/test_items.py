"""Product pages: the cards of other products around the one a page sells ("People who
viewed this item also viewed", "Consider these available items") leave the text
(``[extract] drop_related_items``, pipeline/extract/items.py), on real pages of
../shared/data/html and on made-up markup; listings, collections and pages that sell
nothing keep their cards."""

import re

import pytest
from trafilatura.utils import load_html
from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract.items import card_groups, drop_related_items, single_product
from pipeline.extract.worker import extract_page

# an eBay item page (a JSON-LD Product) and an Amazon one (a /dp/ URL, no Product declared)
PAGES = {"ebay.com/itm/276702815108": "Olive Green & Off White Floral",
         "amazon.co.uk/dp/B0D1XD1ZV3": "Wireless Earbuds, Bluetooth 5.3"}
OFF = ExtractConfig(drop_related_items=False)


def words(t: str | None) -> list[str]:
    return re.findall(r"\w+", (t or "").lower())


@pytest.fixture(scope="module")
def pages():
    return pages_by_url("wcxb_dev.jsonl.xz", tuple(PAGES))


@pytest.mark.parametrize("key", PAGES)
def test_other_products_leave_a_product_page(pages, key):
    page = pages[key]
    before = extract_page(page["html"], page["url"], OFF)[0] or ""
    steps: dict = {}
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    other = PAGES[key]  # the name of a product in a carousel beside the page's own
    assert other in before and other not in after
    assert steps.get("related_items_dropped", 0) >= 4
    assert len(words(after)) < 0.5 * len(words(before))
    truth = set(words(page["truth"]))
    kept, found = set(words(after)) & truth, set(words(before)) & truth
    assert len(kept) >= 0.95 * len(found)  # the hand-checked words found before stay found


CARD = ('<li class="card"><a href="/p/{i}"><img src="/i/{i}.jpg" alt=""></a>'
        '<h3><a href="/p/{i}">Travel mug number {i} in blue</a></h3>'
        "<p>A sturdy mug for walks, trains and long mornings at the desk, in five colours.</p>"
        '<p class="price">${i}9.00</p><p class="cart">Add to cart</p></li>')
GRID = '<h2>You may also like</h2><ul class="grid">' + "".join(CARD.format(i=i) for i in range(1, 7)) + "</ul>"
DESCRIPTION = ("<p>" + "This steel mug keeps coffee hot for six hours and tea warm all morning long. " * 3
               + "</p><p>" + "The lid closes tight, so it fits a bag and does not leak on the road. " * 3 + "</p>")
PRODUCT = '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Product", "name": "Mug"}</script>'
LIST = ('<script type="application/ld+json">{"@context": "https://schema.org", "@type": "ItemList", '
        '"itemListElement": []}</script>')


def _page(head: str, body: str) -> str:
    return (f"<html><head><title>Mugs</title>{head}</head><body><main><div class='product'>"
            f"<h1>The steel travel mug</h1>{DESCRIPTION}</div>{body}</main></body></html>")


def test_a_product_page_keeps_its_description_and_drops_other_cards_prices_and_carts():
    html = _page(PRODUCT, GRID)
    on = extract_page(html, "https://shop.example/mug", ExtractConfig())[0] or ""
    off = extract_page(html, "https://shop.example/mug", OFF)[0] or ""
    assert "Travel mug number 3 in blue" in off and "$39.00" in off
    assert "Travel mug number 3 in blue" not in on and "$39.00" not in on and "Add to cart" not in on
    assert "keeps coffee hot for six hours" in on and "does not leak on the road" in on


def test_listings_collections_and_pages_that_sell_nothing_keep_their_cards():
    grid_page = ("<html><head><title>Mugs</title>{head}</head><body><main><h1>All our mugs</h1>"
                 + GRID.replace("<h2>You may also like</h2>", "") + "</main></body></html>")
    for head, url in ((LIST + PRODUCT, "https://shop.example/mugs"),  # a declared list of items
                      (PRODUCT * 6, "https://shop.example/mugs"),  # many Products: a collection
                      ("", "https://shop.example/mugs")):  # no Product, no product URL
        tree = load_html(grid_page.format(head=head))
        assert not single_product(tree, url, grid_page.format(head=head))
        assert drop_related_items(tree, url, grid_page.format(head=head)) == 0
        assert len(tree.xpath("//li[@class='card']")) == 6
    # an article that shows a row of linked pictures: nothing declared, nothing removed
    html = _page("", GRID).replace(PRODUCT, "")
    tree = load_html(html)
    assert drop_related_items(tree, "https://news.example/story", html) == 0


def test_the_grid_that_holds_the_h1_and_lists_without_pictures_stay():
    # the product's own gallery under its heading stays; text links are not product cards
    gallery = '<div class="g"><h1>Mug</h1>' + "".join(f'<div class="s"><a href="#{i}"><img src="{i}.jpg"></a></div>'
                                                      for i in range(5)) + "</div>"
    links = "<ul>" + "".join(f'<li><a href="/help/{i}">Help topic {i}</a></li>' for i in range(8)) + "</ul>"
    html = f"<html><head>{PRODUCT}</head><body>{gallery}{links}<p>Some text about the mug.</p></body></html>"
    tree = load_html(html)
    assert len(list(card_groups(tree))) == 1  # the gallery: linked pictures, under the h1
    assert drop_related_items(tree, "https://shop.example/mug", html) == 0
    assert len(tree.xpath("//li")) == 8 and len(tree.xpath("//div[@class='s']")) == 5


# Listings and collections: the grid of item cards trafilatura dropped comes back
# (``[extract] add_missed_grid``, items.add_missed_grid). Two shops' category pages whose
# extraction kept only the category's blurb, and an article whose related-post cards
# (long teasers) stay out.
GRID_PAGES = {"officechairsusa.com/seating/mesh-style-chairs": "SitOnIt Novo WFH High Back Mesh Task Chair",
              "upliftdesk.com/desk-accessories": "Inclining Walking Pad"}
NO_GRID = ExtractConfig(add_missed_grid=False)


def _bag_f1(truth: str, text: str | None) -> float:
    from collections import Counter

    t, y = Counter(words(truth)), Counter(words(text))
    tp = sum((t & y).values())
    return 2 * tp / (sum(t.values()) + sum(y.values())) if tp else 0.0


@pytest.fixture(scope="module")
def grid_pages():
    return pages_by_url("wcxb_dev.jsonl.xz", tuple(GRID_PAGES) + ("createandbabble.com/10-easy-diy-wood-projects",))


@pytest.mark.parametrize("key", GRID_PAGES)
def test_a_listing_gets_back_the_grid_of_items_its_extraction_missed(grid_pages, key):
    page = grid_pages[key]
    before = extract_page(page["html"], page["url"], NO_GRID)[0] or ""
    steps: dict = {}
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    item = GRID_PAGES[key]  # an item of the page's grid, in its hand-checked text
    assert item in page["truth"] and item not in before and item in after
    assert steps.get("grid_added") == 1
    assert after.startswith(before.rstrip())  # the cards go below the text, which stays whole
    assert _bag_f1(page["truth"], after) > _bag_f1(page["truth"], before) + 0.3


def test_an_article_keeps_its_related_posts_out(grid_pages):
    page = grid_pages["createandbabble.com/10-easy-diy-wood-projects"]
    steps: dict = {}
    on = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    assert "grid_added" not in steps
    assert on == extract_page(page["html"], page["url"], NO_GRID)[0]


ITEM = ('<div class="item"><a href="/p/{i}"><img src="/i/{i}.jpg" alt=""></a>'
        '<a href="/p/{i}">Oak side table {i}</a><span class="price">${i}9.00</span></div>')
BLURB = "<p>Side tables for every room: oak, walnut and pine, made in our workshop.</p>"


def _listing(cards: str, head: str = "", wrap: str = "section") -> str:
    return (f"<html><head><title>Side tables</title>{head}</head><body><main><h1>Side tables</h1>{BLURB}"
            f"<{wrap}><div class='grid'>{cards}</div></{wrap}></main></body></html>")


def test_missed_cards_are_added_one_a_line():
    from pipeline.extract.items import add_missed_grid

    html = _listing("".join(ITEM.format(i=i) for i in range(1, 13)))
    text = "Side tables for every room: oak, walnut and pine, made in our workshop."
    out = add_missed_grid(load_html(html), text, "https://shop.example/c/side-tables", html)
    assert out is not None and out.startswith(text + "\n")
    lines = out.splitlines()[1:]
    assert lines[0] == "Oak side table 1 $19.00" and len(lines) == 12


def test_no_grid_is_added_where_the_text_has_it_or_the_page_is_not_a_listing():
    from pipeline.extract.items import add_missed_grid

    cards = "".join(ITEM.format(i=i) for i in range(1, 13))
    blurb = "Side tables for every room: oak, walnut and pine, made in our workshop."
    url = "https://shop.example/c/side-tables"
    # the text holds the cards already: nothing is missed
    html = _listing(cards)
    have = blurb + "\n" + "\n".join(f"Oak side table {i} ${i}9.00" for i in range(1, 13))
    assert add_missed_grid(load_html(html), have, url, html) is None
    # cards in navigation or a footer, and a page that sells one product
    for variant, u in ((_listing(cards, wrap="nav"), url), (_listing(cards, wrap="footer"), url),
                       (_listing(cards, head=PRODUCT), url), (_listing(cards), "https://shop.example/product/oak-1")):
        assert add_missed_grid(load_html(variant), blurb, u, variant) is None
    # teasers, not items: long cards (an article's related posts) stay out
    long = ITEM.replace("</div>", "<p>" + "A long teaser of a story about furniture and homes. " * 6 + "</p></div>")
    html = _listing("".join(long.format(i=i) for i in range(1, 13)))
    assert add_missed_grid(load_html(html), blurb, url, html) is None
    # too few cards for the text: the text is most of the page
    html = _listing("".join(ITEM.format(i=i) for i in range(1, 5)))
    assert add_missed_grid(load_html(html), blurb * 6, url, html) is None


def test_a_long_text_is_not_tried_for_a_missed_grid():
    from pipeline.extract import items

    # 300 cards of 3 words: more than twice the words of a 420-word text, at under 30 a card
    html = _listing("".join(ITEM.format(i=i) for i in range(1, 301)))
    text = " ".join(["oak"] * 420)
    url = "https://shop.example/c/side-tables"
    assert items.add_missed_grid(load_html(html), text, url, html) is None  # past GRID_MAX_WORDS
    limit = items.GRID_MAX_WORDS
    try:
        items.GRID_MAX_WORDS = 1000
        assert items.add_missed_grid(load_html(html), text, url, html) is not None
    finally:
        items.GRID_MAX_WORDS = limit


def test_a_grid_whose_cards_each_have_their_own_classes_is_found(monkeypatch):
    """WooCommerce gives each card of a shop's grid its own classes (post-15859,
    product_cat-cups, first, last...): the cards are siblings of one tag and first class."""
    from pipeline.extract import items

    page = pages_by_url("wcxb_dev.jsonl.xz", ("jococups.com/shop/",))["jococups.com/shop/"]
    steps: dict = {}
    on = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    assert steps.get("grid_added") == 1
    assert _bag_f1(page["truth"], on) > 0.9  # the hand-checked text is the grid: item names, colours, sizes
    assert "Joco Cup 12oz" in on and "Joco Cup 12oz" in page["truth"]
    monkeypatch.setattr(items, "GRID_SIGNATURE", items._signature)  # cards grouped by their whole class
    off = extract_page(page["html"], page["url"], ExtractConfig())[0] or ""
    assert "Joco Cup 12oz" not in off and _bag_f1(page["truth"], off) < 0.1


def test_a_card_group_of_one_first_class_holds_its_differently_classed_cards():
    from pipeline.extract.items import _first_class

    cards = "".join(ITEM.format(i=i).replace('class="item"', f'class="item post-{i} {"first" if i % 4 == 1 else ""}"')
                    for i in range(1, 9))
    tree = load_html(_listing(cards))
    assert not list(card_groups(tree))  # by their whole class, no four cards are alike
    (parent, found), = card_groups(tree, signature=_first_class)
    assert len(found) == 8 and parent.get("class") == "grid"
