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

The gate wraps trafilatura's internal ``_extract_and_compare`` (looked up by
``trafilatura_sequence`` at call time) and is active only inside ``extract_gated``: a
plain ``trafilatura.extract`` call in the same process is left as it was. On a
trafilatura whose internals differ (another version) nothing is wrapped and
``extract_gated`` is plain ``trafilatura.extract``.
"""

from __future__ import annotations

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
stats = {"compared": 0, "skipped": 0}  # how often the comparison ran / was skipped (this process)


def page_text_bound(tree) -> int:
    """An upper bound of the length of readability's text of TREE (whitespace runs
    counted once, as trafilatura's ``trim`` counts them): the page's text less its
    scripts and styles, which readability drops. Cutting a stretch S out of a text
    shortens its whitespace-collapsed length by at least len(S collapsed) - 1, and
    cutting more (readability keeps a part of the page) never lengthens it."""
    return int(_PAGE_CHARS(tree)) - sum(max(0, int(_CHARS(el)) - 1) for el in _SCRIPTS(tree))


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
    bound = page_text_bound(tree)
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
            return original(cleaned_tree, cleaned_tree_backup, tree, options)
        body, text = core.extract_content(cleaned_tree, options)
        if _cannot_change(tree, body, text, options, ratio):
            stats["skipped"] += 1
            return body, text
        stats["compared"] += 1
        return core.compare_extraction(cleaned_tree_backup, copy(tree), body, text, options)

    core._extract_and_compare = gated
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
        _state.ratio = None
