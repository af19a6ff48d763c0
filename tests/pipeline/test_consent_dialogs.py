"""Consent prompts in dialogs that no consent manager's id or class names (<dialog>,
role="dialog", aria-modal="true" whose text speaks of cookies or consent) are removed
before extraction (pipeline/extract/ strip_banners, with ``[extract] strip_consent``):
on real pages of ../shared/data/html, where they became a shop page's text, and on
hand-made ones where a dialog that is not a consent prompt stays."""

import re

import pytest
from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract import consent
from pipeline.extract.consent import strip_banners
from pipeline.extract.worker import extract_page

PAGES = ("bhphotovideo.com/c/product/1825729-REG", "etsy.com/listing/1832770431")


def words(t: str | None) -> list[str]:
    return re.findall(r"\w+", (t or "").lower())


def cookie_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "cookie" in line.lower()]


@pytest.fixture(scope="module")
def pages():
    return pages_by_url("wcxb_dev.jsonl.xz", PAGES)


@pytest.mark.parametrize("key", PAGES)
def test_a_consent_dialog_leaves_a_shop_page(pages, key, monkeypatch):
    page = pages[key]
    steps: dict = {}
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    monkeypatch.setattr(consent, "_DIALOGS", lambda tree: [])  # the dialog step off
    before = extract_page(page["html"], page["url"], ExtractConfig())[0] or ""
    assert len(cookie_lines(before)) >= 5  # the cookie settings were a part of the text
    assert not cookie_lines(after) and steps.get("consent_removed")
    truth = set(words(page["truth"]))
    # the hand-checked text is found at least as well as with the dialog in it
    assert len(set(words(after)) & truth) >= len(set(words(before)) & truth)
    assert len(words(after)) < 0.6 * len(words(before))


TEXT = "".join(f"<p>Paragraph {i} of the story about wool socks, knitted by hand in the hills every winter.</p>"
               for i in range(8))


def _tree(dialog: str):
    from trafilatura.utils import load_html

    return load_html(f"<html><body><main><h1>Wool socks</h1>{TEXT}</main>{dialog}</body></html>")


def _text(tree) -> str:
    return " ".join(" ".join(tree.itertext()).split())


@pytest.mark.parametrize("dialog", [
    '<div role="dialog" aria-label="Your privacy"><p>We use cookies to measure our audience.</p><button>Accept</button></div>',
    '<section aria-modal="true"><h2>Manage consent</h2><p>Choose which partners may store data.</p></section>',
    "<dialog open><p>This site uses cookies. Okay?</p></dialog>",
])
def test_consent_dialogs_go_the_page_stays(dialog):
    tree = _tree(dialog)
    assert strip_banners(tree)["consent"] == 1
    text = _text(tree)
    assert "cookies" not in text and "partners" not in text
    assert "Paragraph 7 of the story" in text


@pytest.mark.parametrize("dialog", [
    '<div role="dialog" aria-label="Size guide"><p>Small fits shoe sizes 36 to 39, large 40 to 44.</p></div>',
    '<div aria-modal="true"><p>Description: merino wool, reinforced heel and toe.</p></div>',
])
def test_other_dialogs_stay(dialog):
    tree = _tree(dialog)
    assert strip_banners(tree)["consent"] == 0
    assert "merino" in _text(tree) or "shoe sizes" in _text(tree)


def test_a_dialog_holding_most_of_the_page_stays():
    from trafilatura.utils import load_html

    tree = load_html(f'<html><body><div role="dialog"><h1>Wool socks</h1>{TEXT}<p>We use cookies.</p></div></body></html>')
    assert strip_banners(tree)["consent"] == 0
    assert "Paragraph 7 of the story" in _text(tree)


def test_dialog_lookup_finds_what_the_plain_xpath_finds():
    """_DIALOGS goes through the attribute axis (cheaper); it must select exactly the
    elements of the plain XPath, in document order."""
    from lxml import etree
    from lxml import html as lxml_html

    from pipeline.extract.consent import _DIALOGS

    plain = etree.XPath("//dialog|//*[@role='dialog' or @role='alertdialog' or @aria-modal='true']")
    page = ("<html><body><div role='dialog' aria-modal='true'>a<dialog>b</dialog></div>"
            "<section role='alertdialog'>c</section><div aria-modal='true'>d</div><div role='dialogue'>e</div>"
            "<div aria-modal='false'>f</div><div role='Dialog'>g</div><p data-role='dialog'>h</p>"
            "<span role='dialog'><i aria-modal='true'>i</i></span></body></html>")
    tree = lxml_html.fromstring(page)
    paths = lambda els: [tree.getroottree().getpath(e) for e in els]  # noqa: E731
    assert paths(_DIALOGS(tree)) == paths(plain(tree))
    assert [e.text for e in _DIALOGS(tree)] == ["a", "b", "c", "d", None, "i"]
