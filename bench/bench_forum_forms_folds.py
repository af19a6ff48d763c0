"""Are the choices of issue 29's extraction steps fitted to the pages they were chosen on?

Two choices, both made on all of wcxb dev (where bench/bench_extract.py measures them):
  - the form-line step's word limit (pipeline/extract/forms.py FORM_MAX_WORDS: a line
    with the words of a sign-up form or cookie notice goes when it has at most that many
    words), out of a grid;
  - the forum step's post headers (pipeline/extract/forum.py HEADER_ENGINES: each
    post's author and date above it on thread engines), on or off.
The pages are split in two halves (even and odd positions); for each half, the best
choice is made on that half alone and scored on the other, beside the shipped choice's
gain on each half. A held-out gain close to the in-sample gain says the choice is not a
fit to these particular pages.

    .venv/bin/python bench/bench_forum_forms_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402
from folds import fold_report, position_halves  # noqa: E402

import pipeline.extract.forum as forum  # noqa: E402
from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract.forms import FORM_MAX_WORDS, drop_form_lines  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

WORD_GRID = (10, 15, 20, 25, 30, 40, 60, 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    pages = load("wcxb_dev.jsonl.xz", args.limit)
    no_forms = ExtractConfig(strip_forms=False)
    shipped_headers = forum.HEADER_ENGINES
    truths, raw, headers_off = [], [], []
    for i, p in enumerate(pages):
        steps: dict = {}
        title = page_title(p["html"])
        raw.append(extract_page(p["html"], p.get("url"), no_forms, steps, title=title)[0])
        truths.append(p["truth"])
        off = raw[-1]
        if any(k.startswith("forum_") for k in steps):
            forum.HEADER_ENGINES = frozenset()
            try:
                off = extract_page(p["html"], p.get("url"), no_forms, title=title)[0]
            finally:
                forum.HEADER_ENGINES = shipped_headers
        headers_off.append(off)
        if i % 250 == 0:
            print(f"{i}/{len(pages)} pages", file=sys.stderr, flush=True)

    halves = position_halves(len(pages))

    def check(title, options, baseline, shipped):
        print(f"\n{title}: F1 gain over {baseline!r}; shipped {shipped!r}")
        fold_report(title, options, shipped, options[baseline], truths, halves)

    print(f"wcxb dev, {len(pages)} pages in two halves (even / odd positions)")
    forms = {"off": raw}
    for n in WORD_GRID if FORM_MAX_WORDS in WORD_GRID else WORD_GRID + (FORM_MAX_WORDS,):
        forms[n] = [drop_form_lines(t, n)[0] for t in raw]
    check("form lines: word limit", forms, "off", FORM_MAX_WORDS)
    check("forum post headers", {"off": headers_off, "on": raw}, "off", "on")


if __name__ == "__main__":
    main()
