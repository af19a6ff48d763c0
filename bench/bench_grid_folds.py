"""Is the missed-grid step (pipeline/extract/items.py ``add_missed_grid``: on a listing or
collection whose extraction holds little of the page, the item cards it lacks are added
below it) fitted to the page set it was chosen on?

wcxb dev's pages are split in two halves by a fixed hash of their URL (the first byte of
its SHA-1, even or odd); for each half the best choice of thresholds is made on that half
alone and scored on the other, beside the shipped choice. A held-out gain close to the
in-sample gain says the choice is not a fit to these particular pages. The choices vary
GRID_SHARE (the most of the page's visible characters the extraction may hold),
GRID_RATIO (the fewest missed words, as a multiple of the extraction's) and
GRID_CARD_WORDS (the most words a missed card may hold on average).

One run of ``extract_page`` with the step off gives every page's text; the step's inputs
are read in that run (its tests, the missed cards), so a choice's text differs only on
the pages where it fires, and those pages are extracted again with the choice set. Also
printed: the F1 per page type, the pages each choice fires on, aeb with and without the
step, and the step's own CPU time per page on both sets (all its tests, where it fires
or not).

    .venv/bin/python bench/bench_grid_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load, score  # noqa: E402
from folds import fold_report, half_f1, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import items, worker  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

_WORD = re.compile(r"\w+")
SHIPPED = {"GRID_SHARE": items.GRID_SHARE, "GRID_RATIO": items.GRID_RATIO, "GRID_CARD_WORDS": items.GRID_CARD_WORDS}
OPTIONS = {"shipped": {}}
for share in (0.2, 0.3, 0.4):
    for ratio in (1.0, 2.0, 3.0):
        for words in (20, 30, 60):
            values = {"GRID_SHARE": share, "GRID_RATIO": ratio, "GRID_CARD_WORDS": words}
            if values != SHIPPED:
                OPTIONS[f"share {share} ratio {ratio:g} card {words}"] = values


def _set(values: dict) -> None:
    for k, v in {**SHIPPED, **values}.items():
        setattr(items, k, v)


def _fires(f: dict, values: dict) -> bool:
    v = {**SHIPPED, **values}
    return (f["lines"] > 0 and f["share"] < v["GRID_SHARE"] and f["missed"] >= v["GRID_RATIO"] * f["ours"]
            and f["missed"] <= v["GRID_CARD_WORDS"] * f["lines"])


def _run(pages: list[dict], cfg: ExtractConfig, record: bool):
    """Every page's text with CFG; with RECORD, the step's inputs per page (it adds
    nothing: the texts are the step off's) and its CPU seconds in all."""
    feats: list[dict] = []
    secs = 0.0
    real = worker.add_missed_grid

    def recorder(tree, text, url=None, html=None):
        nonlocal secs
        t0 = time.process_time()
        fired = real(tree, text, url, html) is not None
        secs += time.process_time() - t0
        f = {"lines": 0, "share": 1.0, "missed": 0, "ours": len(_WORD.findall(text or "")), "fired": fired}
        if text and not items.single_product(tree, url, html):
            f["share"] = len(" ".join(text.split())) / max(1, items.shown_chars(tree))
            lines = items.missed_cards(tree, text)
            f["lines"], f["missed"] = len(lines), sum(len(_WORD.findall(x)) for x in lines)
        feats[-1] = f
        return None

    outs = []
    if record:
        worker.add_missed_grid = recorder
    try:
        for p in pages:
            feats.append({"lines": 0, "share": 1.0, "missed": 0, "ours": 0})
            outs.append(extract_page(p["html"], p.get("url"), cfg, title=page_title(p["html"]))[0])
    finally:
        worker.add_missed_grid = real
    return outs, feats, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    on = ExtractConfig()
    aeb = load("aeb.jsonl.xz", args.limit)
    aeb_base, aeb_feats, aeb_secs = _run(aeb, on, record=True)
    aeb_on = list(aeb_base)
    aeb_fired = [i for i, f in enumerate(aeb_feats) if _fires(f, {})]
    for i in aeb_fired:
        aeb_on[i] = extract_page(aeb[i]["html"], aeb[i].get("url"), on, title=page_title(aeb[i]["html"]))[0]
    a_truths = [p["truth"] for p in aeb]
    assert all(f.get("fired", False) == _fires(f, {}) for f in aeb_feats)
    print(f"aeb: {len(aeb)} pages, fires on {len(aeb_fired)}; F1 {score('aeb', a_truths, aeb_base)['F1']:.4f} -> "
          f"{score('aeb', a_truths, aeb_on)['F1']:.4f}; the step {1000 * aeb_secs / len(aeb):.2f} ms a page")

    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    types = [p["page_type"] for p in pages]
    halves = url_halves(pages)
    base, feats, secs = _run(pages, on, record=True)
    # the step's own cheap tests (the images the cards need) only rule out pages it could not take
    differ = sum(1 for f in feats if f.get("fired", False) != _fires(f, {}))
    print(f"pages where the shipped choice read from the recorded inputs differs from the step: {differ}")
    print(f"wcxb dev: the step {1000 * secs / len(pages):.2f} ms a page", file=sys.stderr, flush=True)
    outs, fired = {}, {}
    try:
        for name, values in OPTIONS.items():
            _set(values)
            outs[name], fired[name] = list(base), 0
            for i, p in enumerate(pages):
                if _fires(feats[i], values):
                    fired[name] += 1
                    outs[name][i] = extract_page(p["html"], p.get("url"), on, title=page_title(p["html"]))[0]
    finally:
        _set({})

    def f1(out, half):
        return half_f1(truths, out, halves, half)

    print(f"wcxb dev, {len(pages)} pages in two halves by URL hash ({halves.count(0)} / {halves.count(1)}); "
          f"F1 gain over the step off; the step {1000 * secs / len(pages):.2f} ms a page")
    for name in OPTIONS:
        print(f"  {name:30} fires on {fired[name]:3} pages; "
              f"half 0 {f1(outs[name], 0) - f1(base, 0):+.4f}, half 1 {f1(outs[name], 1) - f1(base, 1):+.4f}")
    fold_report("missed grid", outs, "shipped", base, truths, halves)
    type_report(truths, types, base, outs["shipped"])


if __name__ == "__main__":
    main()
