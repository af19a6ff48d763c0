"""Is the container expansion's setting (pipeline/extract/ expand_to_container:
EXPAND_MIN_WORDS, EXPAND_COVER, EXPAND_RATIO) fitted to the page set it was chosen on?

The setting was chosen on all of wcxb dev, where bench/bench_extract.py measures it.
Here the pages are split in two halves (even and odd positions); for each half, the
best setting of a grid is chosen on that half alone and scored on the other half,
beside the shipped setting's score on each half. A held-out gain close to the
in-sample gain says the rule is not a fit to these particular pages.

    .venv/bin/python bench/bench_expand_folds.py [--limit N]
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
from pipeline.extract.consent import strip_banners
from pipeline.extract.expand import (
    EXPAND_COVER,
    EXPAND_MIN_WORDS,
    EXPAND_RATIO,
    declares_article,
    declares_product,
    expand_to_container,
)
from pipeline.extract.worker import extract_page

GRID = list(itertools.product((3, 5), (0.7, 0.8, 0.9, 1.0), (1.1, 1.25, 1.5, 2.0)))
SHIPPED = (EXPAND_MIN_WORDS, EXPAND_COVER, EXPAND_RATIO)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    from trafilatura.utils import load_html

    pages = load("wcxb_dev.jsonl.xz", args.limit)
    base = ExtractConfig(expand=False)
    grid = GRID if SHIPPED in GRID else GRID + [SHIPPED]
    truths, plain, outs = [], [], {g: [] for g in grid}
    for i, p in enumerate(pages):
        steps: dict = {}
        text = extract_page(p["html"], p.get("url"), base, steps)[0]
        truths.append(p["truth"])
        plain.append(text)
        tree = load_html(p["html"])
        eligible = (tree is not None and not any(k.startswith("forum_") for k in steps)
                    and not declares_article(tree) and not declares_product(tree))
        if eligible:
            strip_banners(tree)
        for g in grid:
            wider = expand_to_container(tree, text, *g) if eligible else None
            outs[g].append(wider if wider is not None else text)
        if i % 250 == 0:
            print(f"{i}/{len(pages)} pages", file=sys.stderr, flush=True)

    print(f"wcxb dev, {len(pages)} pages in two halves (even / odd positions); F1 gain over no expansion")
    print(f"grid: min_words x cover x ratio = {len(grid)} settings; shipped {SHIPPED}")
    fold_report("expansion", outs, SHIPPED, plain, truths, position_halves(len(pages)))


if __name__ == "__main__":
    main()
