"""Is the consent-dialog step (pipeline/extract/consent.py: a dialog whose text holds one
of _DIALOG_WORDS leaves the page before extraction) fitted to the page set it was chosen on?

wcxb dev's pages are split in two halves by a fixed hash of their URL (the first byte of
its SHA-1, even or odd); for each half the best choice of word set is made on that half
alone and scored on the other, beside the shipped choice. A held-out gain close to the
in-sample gain says the choice is not a fit to these particular pages. The choices: no
dialog step, the shipped words, the shipped words and "privacy", every dialog. Also
printed: the F1 per page type of no step and of the shipped step.

    .venv/bin/python bench/bench_consent_dialog_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402
from folds import fold_report, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import consent  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

SHIPPED = consent._DIALOG_WORDS
OPTIONS = {"no dialog step": ("\0",), "shipped": SHIPPED, "shipped + privacy": SHIPPED + ("privacy",), "every dialog": ("",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    types = [p["page_type"] for p in pages]
    halves = url_halves(pages)
    cfg = ExtractConfig()
    outs = {}
    try:
        for name, words in OPTIONS.items():
            consent._DIALOG_WORDS = words
            outs[name] = [extract_page(p["html"], p.get("url"), cfg, title=page_title(p["html"]))[0] for p in pages]
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        consent._DIALOG_WORDS = SHIPPED

    base = "no dialog step"
    print(f"wcxb dev, {len(pages)} pages in two halves by URL hash ({halves.count(0)} / {halves.count(1)}); "
          "F1 gain over no dialog step")
    fold_report("dialogs", outs, "shipped", outs[base], truths, halves)
    type_report(truths, types, outs[base], outs["shipped"])


if __name__ == "__main__":
    main()
