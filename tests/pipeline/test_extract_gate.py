"""trafilatura with its readability comparison asked only where it can matter
(pipeline/extract/gate.py): in exact mode (ratio 2) the same text as ``trafilatura.extract``
on real pages of ../shared/data/html with the comparison skipped on many of them; the
shipped ratio skips it on more and changes few texts; a plain ``trafilatura.extract`` in
the same process is left as it was."""

import json
import lzma

import pytest
import trafilatura
from trafilatura.utils import load_html
from webtext_testlib import shared

from pipeline.extract import gate


def _pages(name: str, every: int) -> list[dict]:
    rows = []
    with lzma.open(shared("html", name), "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i % every == 0:
                rows.append(json.loads(line))
    return rows


@pytest.fixture(scope="module")
def pages():
    return _pages("aeb.jsonl.xz", 9) + _pages("wcxb_dev.jsonl.xz", 40)


def _skipped_and_compared(fn):
    before = dict(gate.stats)
    fn()
    return gate.stats["skipped"] - before["skipped"], gate.stats["compared"] - before["compared"]


@pytest.fixture(scope="module")
def plain(pages):
    return [trafilatura.extract(p["html"], url=p["url"], include_comments=False) for p in pages]


def test_the_exact_gate_gives_trafilaturas_text(pages, plain):
    if trafilatura.__version__ not in gate.GATED_VERSIONS:
        pytest.skip(f"trafilatura {trafilatura.__version__}: the gate is not installed")

    def run():
        for p, want in zip(pages, plain):
            assert gate.extract_gated(p["html"], ratio=2, url=p["url"], include_comments=False) == want, p["url"]
            tree = load_html(p["html"])  # from a parsed tree too (extract_page's way)
            assert gate.extract_gated(tree, ratio=2, url=p["url"], include_comments=False) == want, p["url"]

    before = dict(gate.stats)
    skipped, compared = _skipped_and_compared(run)
    # the comparison was skipped on a good share of the pages, and still ran on others
    assert skipped >= 0.25 * 2 * len(pages)
    assert compared > 0
    # so was the page's text for the recall escalation's test: left out where the bound
    # answers, built where it does not, with trafilatura's texts all the same
    assert gate.stats["page_text_skipped"] > before["page_text_skipped"]
    assert gate.stats["page_text_built"] > before["page_text_built"]


def test_the_shipped_ratio_skips_more_and_changes_few_texts(pages, plain):
    if trafilatura.__version__ not in gate.GATED_VERSIONS:
        pytest.skip(f"trafilatura {trafilatura.__version__}: the gate is not installed")
    texts = []
    skipped, compared = _skipped_and_compared(
        lambda: texts.extend(gate.extract_gated(p["html"], url=p["url"], include_comments=False) for p in pages))
    exact_skipped, _ = _skipped_and_compared(
        lambda: [gate.extract_gated(p["html"], ratio=2, url=p["url"], include_comments=False) for p in pages])
    assert skipped > 1.2 * exact_skipped and compared > 0
    same = sum(a == b for a, b in zip(texts, plain))
    assert same >= 0.85 * len(pages)
    with pytest.raises(ValueError):
        gate.extract_gated(pages[0]["html"], ratio=1.5)


def test_plain_trafilatura_is_left_alone(pages):
    gate.extract_gated(pages[0]["html"])  # installs the gate
    before = dict(gate.stats)
    for p in pages[:10]:
        trafilatura.extract(p["html"])
    assert gate.stats == before  # the wrapper let plain calls through untouched


def test_the_bound_holds_readabilitys_text():
    # readability's text is a part of the page's text, less scripts and styles
    from trafilatura.external import try_readability
    from lxml.etree import tostring

    html = ("<html><head><title>T</title><script>var x = 'a very long script text that is not page text';</script>"
            "</head><body><div><p>" + "Some words of a paragraph, with commas, here. " * 20 + "</p>"
            "<style>p { color: red }</style><p>Second   paragraph\n\n text.</p></div></body></html>")
    tree = load_html(html)
    bound = gate.page_text_bound(tree)
    algo = " ".join(tostring(try_readability(load_html(html)), method="text", encoding="unicode").split())
    assert 0 < len(algo) <= bound
    # the page's text less the script and style, exactly: "T" + the paragraphs
    visible = " ".join("".join(tree.xpath("//text()[not(ancestor::script or ancestor::style)]")).split())
    assert len(visible) <= bound <= len(visible) + 2


def test_the_bound_holds_the_pages_text_less_scripts(pages):
    # on real pages: never under the page's visible text (whitespace collapsed as trafilatura does)
    for p in pages:
        tree = load_html(p["html"])
        visible = " ".join("".join(tree.xpath("//text()[not(ancestor::script or ancestor::style)]")).split())
        assert len(visible) <= gate.page_text_bound(tree) <= tree.xpath("string-length(normalize-space(/))"), p["url"]


def test_the_page_text_is_never_longer_than_its_bound(pages):
    # trafilatura's html2txt (the recall escalation's page measure): the page's text less
    # scripts and styles, plus the two spaces it may insert at each block element
    import importlib

    baseline = importlib.import_module("trafilatura.baseline")
    blocks = tuple(baseline._BLOCK_ELEMS)
    html = "<html><body><div>a<p>b</p>c<br>d<ul><li>e</li><li>f</li></ul></div><script>x()</script></body></html>"
    for tree in [load_html(html)] + [load_html(p["html"]) for p in pages]:
        text = baseline.html2txt(tree)
        assert len(text) <= gate.page_text_bound(tree) + 2 * sum(1 for _ in tree.iter(*blocks))
    assert baseline.html2txt(load_html(html)) == "a b c d e f"  # spaces inserted where the page has none
