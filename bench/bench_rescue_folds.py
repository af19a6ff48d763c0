"""Does the rescue of short extractions still need its page-text branch?

The rescue (pipeline/extract/expand.py ``rescue_short_extraction``) replaces an
extraction that kept little of a page that declares no article by trafilatura's
baseline. An earlier version first tried the page's whole visible text
(trafilatura's ``html2txt``) where the extraction held under PAGE_SHARE of the page's
visible characters (0.06 until session 14). This bench puts that branch back in
front of the shipped rescue, at several PAGE_SHARE values (0: the shipped rescue,
which has no such branch), and asks whether any of them is worth having:

wcxb dev's pages are split in two halves by a fixed hash of their URL (the first byte
of its SHA-1, even or odd); for each half the best PAGE_SHARE is chosen on that half
alone and scored on the other, beside the shipped choice. A held-out gain close to the
in-sample gain says the choice is not a fit to these particular pages.

One run of ``extract_page`` as shipped gives every page's text and says on which pages
the branch could fire at the largest PAGE_SHARE tried; only those pages are extracted
again with each PAGE_SHARE. Also printed: the F1 per page type against the old 0.06.

    .venv/bin/python bench/bench_rescue_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402
from folds import fold_report, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import expand, worker  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

_WORD = re.compile(r"\w+")
SHARES = (0.0, 0.02, 0.04, 0.06, 0.1)
_shipped_rescue = expand.rescue_short_extraction


def with_page_branch(share: float):
    """The shipped rescue with the old page-text branch in front of it at SHARE."""
    from trafilatura import html2txt

    def rescue(tree, text, article=None):
        prose = any(len(_WORD.findall(line)) >= expand.RESCUE_PROSE_WORDS for line in (text or "").splitlines())
        if not prose and not (article if article is not None else expand.declares_article(tree)):
            page = expand.visible_chars(tree)
            got = len(" ".join((text or "").split()))
            if page and got < min(share, expand.RESCUE_SHARE) * page:
                whole = html2txt(tree)
                if len(_WORD.findall(whole)) > len(_WORD.findall(text or "")):
                    return whole, "page"
        return _shipped_rescue(tree, text, article)
    return rescue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="pages (default: all of wcxb dev)")
    args = ap.parse_args()
    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    types = [p["page_type"] for p in pages]
    cfg = ExtractConfig()

    def run(i: int, rescue) -> str | None:
        worker.rescue_short_extraction = rescue
        try:
            p = pages[i]
            return extract_page(p["html"], p["url"], cfg, title=page_title(p["html"]))[0]
        finally:
            worker.rescue_short_extraction = _shipped_rescue

    shipped, could = [], []
    for i in range(len(pages)):
        seen: list = []
        shipped.append(run(i, _recorder(seen)))
        could.append(any(seen))
    options = {}
    for share in SHARES:
        texts = list(shipped)
        if share:
            for i in (i for i, c in enumerate(could) if c):
                texts[i] = run(i, with_page_branch(share))
        options[f"page share {share:g}"] = texts
    print(f"wcxb dev: {len(pages)} pages; the page-text branch could fire on {sum(could)} of them "
          f"(under {max(SHARES):g} of the page kept, no prose, no declared article)")
    fold_report("rescue", options, "page share 0", options["page share 0.06"], truths, url_halves(pages))
    print("\nthe old branch (page share 0.06) -> shipped (none):")
    type_report(truths, types, options["page share 0.06"], options["page share 0"])


def _recorder(seen: list):
    """The shipped rescue, noting in SEEN whether the page-text branch could fire at the
    largest share tried (its tests pass, whatever html2txt would give)."""
    def rescue(tree, text, article=None):
        prose = any(len(_WORD.findall(line)) >= expand.RESCUE_PROSE_WORDS for line in (text or "").splitlines())
        if not prose and not (article if article is not None else expand.declares_article(tree)):
            page = expand.visible_chars(tree)
            seen.append(bool(page) and len(" ".join((text or "").split())) < min(max(SHARES), expand.RESCUE_SHARE) * page)
        return _shipped_rescue(tree, text, article)
    return rescue


if __name__ == "__main__":
    main()
