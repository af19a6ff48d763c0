"""Is the related-items step (pipeline/extract/items.py: on a page selling one product, the
groups of other products' cards leave the page before extraction) fitted to the page set
it was chosen on?

wcxb dev's pages are split in two halves by a fixed hash of their URL (the first byte of
its SHA-1, even or odd); for each half the best choice of parameters is made on that half
alone and scored on the other, beside the shipped choice. A held-out gain close to the
in-sample gain says the choice is not a fit to these particular pages. The choices vary
the fewest cards of a group, the most schema.org Products a single-product page may
declare, and whether a product's URL path alone marks a page. A page whose tree the step
leaves unchanged gives the text of the step off (the same tree: the same text), so only
the pages where it fires are extracted again. Also printed: the F1 per page type, the
pages it fires on, and its own CPU time per page (the test and the removal).

    .venv/bin/python bench/bench_items_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402
from folds import fold_report, half_f1, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import items  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

SHIPPED = {"RELATED_MIN_CARDS": items.RELATED_MIN_CARDS, "RELATED_MAX_PRODUCTS": items.RELATED_MAX_PRODUCTS,
           "RELATED_BY_URL": items.RELATED_BY_URL}
OPTIONS = {
    "shipped": {},
    "3 cards": {"RELATED_MIN_CARDS": 3},
    "6 cards": {"RELATED_MIN_CARDS": 6},
    "no URL test": {"RELATED_BY_URL": False},
    "up to 10 Products": {"RELATED_MAX_PRODUCTS": 10},
    "1 Product": {"RELATED_MAX_PRODUCTS": 1},
}


def _set(values: dict) -> None:
    for k, v in {**SHIPPED, **values}.items():
        setattr(items, k, v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    from trafilatura.utils import load_html

    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    types = [p["page_type"] for p in pages]
    halves = url_halves(pages)
    on, off = ExtractConfig(), ExtractConfig(drop_related_items=False)
    base = [extract_page(p["html"], p.get("url"), off, title=page_title(p["html"]))[0] for p in pages]
    print("step off: done", file=sys.stderr, flush=True)
    outs, fired, secs = {}, {}, {}
    try:
        for name, values in OPTIONS.items():
            _set(values)
            outs[name], fired[name], secs[name] = list(base), 0, 0.0
            for i, p in enumerate(pages):
                tree = load_html(p["html"])
                if tree is None:
                    continue
                t0 = time.process_time()
                n = items.drop_related_items(tree, p.get("url"), p["html"])
                secs[name] += time.process_time() - t0
                if n:
                    fired[name] += 1
                    outs[name][i] = extract_page(p["html"], p.get("url"), on, title=page_title(p["html"]))[0]
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        _set({})

    def f1(out, half):
        return half_f1(truths, out, halves, half)

    print(f"wcxb dev, {len(pages)} pages in two halves by URL hash ({halves.count(0)} / {halves.count(1)}); "
          "F1 gain over the step off")
    for name in OPTIONS:
        print(f"  {name:18} fires on {fired[name]:4} pages, {1000 * secs[name] / len(pages):.2f} ms a page; "
              f"half 0 {f1(outs[name], 0) - f1(base, 0):+.4f}, half 1 {f1(outs[name], 1) - f1(base, 1):+.4f}")
    fold_report("related items", outs, "shipped", base, truths, halves)
    type_report(truths, types, base, outs["shipped"])


if __name__ == "__main__":
    main()
