"""Are three small extraction steps fitted to the page set they were chosen on?

- **thread comments** (pipeline/extract/worker.py, with ``[extract] forum_posts``): a
  page that declares itself a forum thread or a Q&A page (schema.org QAPage or
  DiscussionForumPosting: ``forum.declares_thread``) and whose engine's post markup the
  forum step does not know is extracted with trafilatura's comments, which is where
  trafilatura puts a thread's posts. Options: off, on.
- **recall when (next to) nothing is kept** (``worker.RECALL_BELOW_WORDS``, with
  ``[extract] rescue``): an extraction of fewer words than that is read again with
  ``favor_recall``. Options: 0 (off), 1 (an empty text only: shipped), 20, 50, 100, 200.
- **a grid's cards by their first class** (``items.GRID_SIGNATURE``): the missed-grid
  step groups sibling cards by their tag and first class, not by their whole class
  (WooCommerce gives each card its own post-NNNN, product_cat-... and first/last
  classes). Options: the whole class, the first class (shipped).

wcxb dev's pages are split in two halves by a fixed hash of their URL (bench/folds.py):
for each step, the best option is chosen on one half alone and scored on the other,
beside the shipped option; the F1 per page type is printed for the step off and on,
and aeb's F1 with every step off and as shipped. Each option is a full run of
``extract_page`` over the pages (two processes).

    .venv/bin/python bench/bench_thread_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load, score  # noqa: E402
from folds import fold_report, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import forum, items, worker  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402

SHIPPED = {"thread": True, "recall": worker.RECALL_BELOW_WORDS, "grid": "first class"}
STEPS = {
    "thread comments": ("thread", {"off": False, "on": True}, "on"),
    "recall below N words": ("recall", {str(n): n for n in (0, 1, 20, 50, 100, 200)}, str(worker.RECALL_BELOW_WORDS)),
    "grid cards by": ("grid", {"whole class": "whole class", "first class": "first class"}, "first class"),
}


def _set(values: dict) -> None:
    v = {**SHIPPED, **values}
    worker.declares_thread = forum.declares_thread if v["thread"] else (lambda html: False)
    worker.RECALL_BELOW_WORDS = v["recall"]
    items.GRID_SIGNATURE = items._first_class if v["grid"] == "first class" else items._signature


def _extract(task):
    values, page = task
    _set(values)
    return worker.extract_page(page["html"], page.get("url"), ExtractConfig(), title=page_title(page["html"]))[0]


def run(pool, pages: list[dict], values: dict) -> list:
    return pool.map(_extract, [(values, p) for p in pages], chunksize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    off = {"thread": False, "recall": 0, "grid": "whole class"}
    with Pool(2) as pool:
        aeb = load("aeb.jsonl.xz", args.limit)
        a_truths = [p["truth"] for p in aeb]
        a_off, a_on = run(pool, aeb, off), run(pool, aeb, {})
        changed = sum(1 for x, y in zip(a_off, a_on) if x != y)
        print(f"aeb: {len(aeb)} pages; F1 with the three steps off {score('aeb', a_truths, a_off)['F1']:.4f}, "
              f"as shipped {score('aeb', a_truths, a_on)['F1']:.4f}; texts changed: {changed}")

        pages = load("wcxb_dev.jsonl.xz", args.limit)
        truths = [p["truth"] for p in pages]
        types = [p["page_type"] for p in pages]
        halves = url_halves(pages)
        shipped = run(pool, pages, {})
        print(f"wcxb dev, {len(pages)} pages in two halves by URL hash ({halves.count(0)} / {halves.count(1)}); "
              f"as shipped: F1 {score('wcxb', truths, shipped)['F1']:.4f}")
        all_off = run(pool, pages, off)
        print("\nthe three steps off -> as shipped")
        type_report(truths, types, all_off, shipped)
        for step, (key, options, ship) in STEPS.items():
            outs = {name: (shipped if value == SHIPPED[key] else run(pool, pages, {key: value}))
                    for name, value in options.items()}
            base = outs[next(iter(options))]  # the first option: the step off
            print(f"\n{step}: pages changed from the step off, per option: "
                  + ", ".join(f"{n} {sum(1 for x, y in zip(base, o) if x != y)}" for n, o in outs.items()))
            fold_report(step, outs, ship, base, truths, halves)
            type_report(truths, types, base, outs[ship])


if __name__ == "__main__":
    main()
