"""Shop, collection and service pages: a block the page shows twice (tabs, carousels, a
mobile and a desktop copy) is in the text once (``[extract] dedup_lines``,
pipeline/extract/ drop_repeated_lines), on real pages of ../shared/data/html; pages with
code and declared articles keep their repeated lines."""

import re

import pytest
from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract.expand import drop_repeated_lines
from pipeline.extract.worker import extract_page

PAGES = ("ascolour.com/staple-tee-5001", "shop.samsonite.com/luggage-carry-on-luggage")


def words(t: str) -> list[str]:
    return re.findall(r"\w+", (t or "").lower())


def repeated(text: str) -> list[str]:
    seen, rep = set(), []
    for line in text.splitlines():
        key = " ".join(words(line))
        if key.count(" ") >= 2 and not re.search(r"[{};=<>()\[\]]", line):
            if key in seen:
                rep.append(line)
            seen.add(key)
    return rep


@pytest.fixture(scope="module")
def pages():
    return pages_by_url("wcxb_dev.jsonl.xz", PAGES)


@pytest.mark.parametrize("key", PAGES)
def test_a_block_shown_twice_is_kept_once(pages, key):
    page = pages[key]
    before = extract_page(page["html"], page["url"], ExtractConfig(dedup_lines=False))[0] or ""
    steps: dict = {}
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    assert repeated(before)  # the page's text held lines twice without the step
    assert not repeated(after) and steps.get("repeated_lines_dropped") == 1
    assert len(words(after)) < 0.95 * len(words(before))
    truth = set(words(page["truth"]))
    # no word of the hand-checked text that the extraction found is lost
    assert set(words(after)) & truth == set(words(before)) & truth


BLOCK = "<p>Soft wool keeps you warm in the winter.</p><p>Easy to wash by hand or machine.</p>"


def _page(head: str, body: str) -> str:
    return f"<html><head>{head}</head><body><main><h1>Wool socks for every day</h1>{body}</main></body></html>"


def test_code_pages_and_articles_keep_their_repeated_lines():
    body = ("<p>" + "A long description of these socks and what they are made of, for walking. " * 4 + "</p>"
            + BLOCK + "<div>" + BLOCK + "</div>")
    for html, kept in ((_page("", body), False),
                       (_page("", body + "<pre>x = 1</pre>"), True),  # a page with code: left alone
                       (_page('<meta property="og:type" content="article">', body), True)):
        text = extract_page(html, "https://example.org/socks", ExtractConfig())[0] or ""
        off = extract_page(html, "https://example.org/socks", ExtractConfig(dedup_lines=False))[0] or ""
        assert repeated(off), html
        assert bool(repeated(text)) is kept, html


def test_code_lines_stay_even_when_repeated():
    text = "pip install webtext now\nrun it with care today\npip install webtext now\nx = f(a, b) here\nx = f(a, b) here"
    assert drop_repeated_lines(text, 3, keep_code=True) == (
        "pip install webtext now\nrun it with care today\nx = f(a, b) here\nx = f(a, b) here")
    assert drop_repeated_lines(text, 3) == "pip install webtext now\nrun it with care today\nx = f(a, b) here"
