"""trafilatura's extraction with its readability comparison asked only where it can matter.

trafilatura (2.3) runs its own extractor on a page, then readability-lxml on a copy of the
page to compare (``compare_extraction``; ~18% of its time on wcxb): readability's text
replaces its own only when readability's is over twice as long, or when its own has no
paragraph text or more tables than paragraphs; justext is asked only when its own text is
short (under MIN_EXTRACTED_SIZE, 250 characters) or holds page furniture (buttons, forms,
nav ...). Readability's text is a part of the page's text less scripts and styles, so the
page's text length bounds it. Here the comparison runs only where trafilatura's own text
is short, holds page furniture, is not paragraph-shaped, or holds under 1/READABILITY_RATIO
of the page's text; elsewhere trafilatura's own text is kept. With READABILITY_RATIO = 2
that is exact (readability cannot win there: the same text as ``trafilatura.extract`` on
all 181 aeb pages and every 7th wcxb dev page, and in tests/pipeline/test_extract_gate.py;
the bound was never under a page's text less scripts on 560 pages); the shipped 4 asks
readability where trafilatura kept under a quarter of the page, where it has a chance:
aeb .964 -> .966, wcxb dev -.0000 / -.0004 on its two halves (bench/bench_gate_dedup_folds.py).
Of trafilatura's time, the exact gate saves ~4%; readability never asked past the other
tests, 14% (wcxb, 300 pages) and 26% (aeb); the shipped ratio lies between
(bench/RESULTS.md "Readability gate").

The page's text for the recall escalation. Where its extraction is short (under 3,000
characters), trafilatura also measures the page's whole text (``html2txt``: a copy of the
page, cleaned, its text spaced at block elements; ~10% of its time on aeb) to ask whether
the extraction is under ESCALATION_PAGE_SHARE (1/5) of it, and only then retries in recall
mode. That text is never longer than the page's text less scripts and styles
(``page_text_bound``, computed once per page for both questions) plus 2 characters per
block element (the spaces it inserts); where the extraction reaches 1/5 of that sum, the
answer is known to be no, and the page's text is not built (``html2txt`` answers "" to
that one call, which gives trafilatura's own "no"). Exact at every ratio: 63 of 79 such
calls on aeb are left out, 173 of 402 on wcxb dev, and the texts are those of
``trafilatura.extract`` (tests/pipeline/test_extract_gate.py).

The gate wraps trafilatura's internals ``_extract_and_compare`` and ``html2txt`` (looked up by
``trafilatura_sequence`` at call time) and is active only inside ``extract_gated``: a
plain ``trafilatura.extract`` call in the same process is left as it was. On a
trafilatura whose internals differ (another version) nothing is wrapped and
``extract_gated`` is plain ``trafilatura.extract``.
"""

from __future__ import annotations

import importlib
import threading
from copy import copy

from lxml import etree

GATED_VERSIONS = ("2.3.1",)
READABILITY_RATIO = 4.0
_PAGE_CHARS = etree.XPath("string-length(normalize-space(/))")
_SCRIPTS = etree.XPath("//script|//style")
_CHARS = etree.XPath("string-length(normalize-space(.))")
_P_TEXT = etree.XPath(".//p//text()", smart_strings=False)
_state = threading.local()
# how often (this process) the comparison ran / was skipped, and the page's text was built / not
stats = {"compared": 0, "skipped": 0, "page_text_built": 0, "page_text_skipped": 0}


def page_text_bound(tree) -> int:
    """An upper bound of the length of readability's text of TREE (whitespace runs
    counted once, as trafilatura's ``trim`` counts them): the page's text less its
    scripts and styles, which readability drops. Cutting a stretch S out of a text
    shortens its whitespace-collapsed length by at least len(S collapsed) - 1, and
    cutting more (readability keeps a part of the page) never lengthens it."""
    return int(_PAGE_CHARS(tree)) - sum(max(0, int(_CHARS(el)) - 1) for el in _SCRIPTS(tree))


def _page_bound(tree) -> int:
    """``page_text_bound(TREE)``, computed once per page: the readability test and the
    escalation's test both ask it of the same tree within one extraction."""
    cached = getattr(_state, "bound", None)
    if cached is not None and cached[0] is tree:
        return cached[1]
    value = page_text_bound(tree)
    _state.bound = (tree, value)
    return value


def _cannot_change(tree, body, text: str, options, ratio: float = 2.0) -> bool:
    """Whether the comparison can be left out: with RATIO 2, whether ``compare_extraction``
    would return BODY and TEXT unchanged, decided without running readability (False: it
    must run); with a larger RATIO readability is asked only where the page's text is
    over RATIO times TEXT."""
    from trafilatura.external import SANITIZED_XPATH

    n = len(text)
    if options.focus == "recall" or n < options.min_extracted_size:
        return False  # recall mode's conditions are looser; a short text asks justext
    if body.xpath(SANITIZED_XPATH):
        return False  # justext is asked
    bound = _page_bound(tree)
    if bound > ratio * n:
        return False  # readability might be over twice as long (RATIO 2), or the text is a small part of the page
    if bound > 2 * options.min_extracted_size and (
            not _P_TEXT(body) or len(body.findall(".//table")) > len(body.findall(".//p"))):
        return False  # the structural test might prefer readability
    return True


def _install():
    import trafilatura
    import trafilatura.core as core

    if getattr(trafilatura, "__version__", None) not in GATED_VERSIONS or getattr(core, "_webtext_gate", False):
        return
    original = core._extract_and_compare

    def gated(cleaned_tree, cleaned_tree_backup, tree, options):
        ratio = getattr(_state, "ratio", None)
        if ratio is None or options.fast:
            body, text = original(cleaned_tree, cleaned_tree_backup, tree, options)
        else:
            body, text = core.extract_content(cleaned_tree, options)
            if _cannot_change(tree, body, text, options, ratio):
                stats["skipped"] += 1
            else:
                stats["compared"] += 1
                body, text = core.compare_extraction(cleaned_tree_backup, copy(tree), body, text, options)
        _state.extracted = len(text)  # what the escalation's test compares with the page's text
        return body, text

    original_page_text = core.html2txt
    spaced = tuple(importlib.import_module("trafilatura.baseline")._BLOCK_ELEMS)

    def page_text(content, clean=True):
        # asked in trafilatura_sequence only as: len(text) < ESCALATION_PAGE_SHARE * len(html2txt(tree)),
        # TEXT the extraction just made (or the baseline's, when longer)
        extracted, _state.extracted = getattr(_state, "extracted", None), None
        if (extracted is not None and clean and getattr(_state, "ratio", None) is not None
                and isinstance(content, etree._Element)):
            longest = _page_bound(content) + 2 * sum(1 for _ in content.iter(*spaced))
            if extracted >= core.ESCALATION_PAGE_SHARE * longest:
                stats["page_text_skipped"] += 1
                return ""  # the test's answer is no, as it would be with the page's text
            stats["page_text_built"] += 1
        return original_page_text(content, clean)

    core._extract_and_compare = gated
    core.html2txt = page_text
    core._webtext_gate = True


def extract_gated(html_or_tree, ratio: float | None = None, **kwargs) -> str | None:
    """``trafilatura.extract(html_or_tree, **kwargs)``, the readability comparison asked
    only where trafilatura's own text is short, unclean, not paragraph-shaped or under
    1/RATIO of the page's text (RATIO 2: exactly where it can change the text; default
    READABILITY_RATIO)."""
    import trafilatura

    ratio = READABILITY_RATIO if ratio is None else ratio
    if ratio < 2:
        raise ValueError(f"ratio must be >= 2 (2: exact), not {ratio}")
    _install()
    _state.ratio = ratio
    try:
        return trafilatura.extract(html_or_tree, **kwargs)
    finally:
        _state.ratio = _state.extracted = _state.bound = None
