"""Are the readability gate's ratio (pipeline/extract/gate.py READABILITY_RATIO) and the
repeated-lines step (pipeline/extract/ drop_repeated_lines on pages that declare no
article and hold no code; ``[extract] dedup_lines``; DEDUP_MIN_WORDS) fitted to the page
set they were chosen on?

As bench/bench_expand_folds.py does for the container expansion: wcxb dev's pages are
split in two halves (even and odd positions); for each half the best setting of a grid is
chosen on that half alone and scored on the other, beside the shipped setting. A held-out
gain close to the in-sample gain says the rule is not a fit to these particular pages.

The gate: each page is extracted with readability asked wherever it may win (ratio 2:
trafilatura's own text) and with it never asked past the gate's other tests (ratio
unbounded), the page's text / trafilatura's text recorded where the gate looked; the text
for ratio R is the second where that share is at most R, else the first. The repeated
lines: the shipped ratio's text with the step off (``dedup_lines=False``), each setting
applied to it (after the form and title-line steps, which the pipeline runs after it: a
first line repeated further down stays once here and leaves the text there; a few pages).

    .venv/bin/python bench/bench_gate_dedup_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402
from folds import fold_report, position_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import gate  # noqa: E402
from pipeline.extract.expand import DEDUP_MIN_WORDS, declares_article, drop_repeated_lines  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

GRID = list(itertools.product((2, 3, 4, 5, 6, 8), (True, False)))
SHIPPED = (DEDUP_MIN_WORDS, True)
RATIOS = (2.0, 3.0, 4.0, 6.0, 10.0, float("inf"))
SHIPPED_RATIO = gate.READABILITY_RATIO


def gated_texts(pages, cfg):
    """Per page: (text with readability asked wherever it may win, text with it never
    asked past the gate's other tests, the page's text / trafilatura's text or None)."""
    exact_test = gate._cannot_change
    shares: list = []

    def recording(tree, body, text, options, ratio=2.0):
        if not shares and text:
            shares.append(gate.page_text_bound(tree) / len(text))
        return exact_test(tree, body, text, options, ratio)

    gate._cannot_change = recording
    out = []
    try:
        for i, p in enumerate(pages):
            gate.READABILITY_RATIO = 2.0
            exact = extract_page(p["html"], p.get("url"), cfg)[0]
            gate.READABILITY_RATIO = float("inf")
            shares.clear()
            loose = extract_page(p["html"], p.get("url"), cfg)[0]
            out.append((exact, loose, shares[0] if shares else None))
            if i % 250 == 0:
                print(f"{i}/{len(pages)} pages", file=sys.stderr, flush=True)
    finally:
        gate._cannot_change = exact_test
        gate.READABILITY_RATIO = SHIPPED_RATIO
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    from trafilatura.utils import load_html

    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    off = ExtractConfig(dedup_lines=False)
    both = gated_texts(pages, off)
    by_ratio = {r: [lo if s is not None and s <= r else ex for ex, lo, s in both] for r in RATIOS}
    print(f"wcxb dev, {len(pages)} pages in two halves (even / odd positions)")
    print(f"readability gate: F1 gain over ratio 2 (trafilatura's own text); ratios {RATIOS}, shipped {SHIPPED_RATIO}")
    fold_report("gate", by_ratio, SHIPPED_RATIO, by_ratio[2.0], truths, position_halves(len(pages)))

    base, outs, fired = by_ratio[SHIPPED_RATIO], {g: [] for g in GRID}, 0
    for p, text in zip(pages, base):
        tree = load_html(p["html"])
        eligible = (bool(text) and tree is not None and "<pre" not in p["html"] and "<code" not in p["html"]
                    and not declares_article(tree))  # forum pages: their own step drops repeats already
        for g in GRID:
            outs[g].append(drop_repeated_lines(text, g[0], keep_code=g[1]) if eligible else text)
        fired += bool(eligible and outs[SHIPPED][-1] != text)
    print(f"repeated lines: F1 gain over the step off; min_words x keep_code = {len(GRID)} settings; "
          f"shipped {SHIPPED}; the shipped setting changes {fired} pages")
    fold_report("repeated lines", outs, SHIPPED, base, truths, position_halves(len(pages)))


if __name__ == "__main__":
    main()
