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
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load, score  # noqa: E402

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
    halves = [hashlib.sha1(p["url"].encode()).digest()[0] & 1 for p in pages]
    cfg = ExtractConfig()
    outs = {}
    try:
        for name, words in OPTIONS.items():
            consent._DIALOG_WORDS = words
            outs[name] = [extract_page(p["html"], p.get("url"), cfg, title=page_title(p["html"]))[0] for p in pages]
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        consent._DIALOG_WORDS = SHIPPED

    def f1(name, half):
        idx = [i for i, h in enumerate(halves) if h == half]
        return score("wcxb", [truths[i] for i in idx], [outs[name][i] for i in idx])["F1"]

    base = "no dialog step"
    print(f"wcxb dev, {len(pages)} pages in two halves by URL hash ({halves.count(0)} / {halves.count(1)}); "
          "F1 gain over no dialog step")
    for half in (0, 1):
        other = 1 - half
        here, there = f1(base, half), f1(base, other)
        best = max(OPTIONS, key=lambda k: f1(k, half))
        print(f"half {half}: best here {best!r}: {f1(best, half) - here:+.4f} here, "
              f"{f1(best, other) - there:+.4f} on half {other} (held out); shipped: {f1('shipped', half) - here:+.4f} here")
    off = score("wcxb", truths, outs[base], types)
    on = score("wcxb", truths, outs["shipped"], types)
    print(f"all pages: {off['F1']:.4f} -> {on['F1']:.4f}")
    for ty, (f, n) in off["by_type"].items():
        print(f"  {ty:14} {n:4} {f:.4f} -> {on['by_type'][ty][0]:.4f} ({on['by_type'][ty][0] - f:+.4f})")


if __name__ == "__main__":
    main()
