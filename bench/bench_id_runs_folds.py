"""Is the machine-id step (pipeline/extract/expand.py ``drop_id_runs``: a line of UUIDs that
a stylesheet hid leaves the text) fitted to the page set it was chosen on?

wcxb dev's pages are split in two halves by a fixed hash of their URL (the first byte of
its SHA-1, even or odd); for each half the best choice is made on that half alone and
scored on the other, beside the shipped choice. The choices: the step off, or on with
ID_RUN_MIN (the fewest UUIDs in the line) 2, 3 or 5 and ID_RUN_SHARE (the least share of
the line's characters they make) .5, .8 or .9.

One run of ``extract_page`` with the step off gives every page's text; the step works on
that text alone, so each choice is applied to it. Also printed: the pages each choice
changes on wcxb dev and on aeb, and the F1 per page type with the shipped choice.

    .venv/bin/python bench/bench_id_runs_folds.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load, score  # noqa: E402
from folds import fold_report, type_report, url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract.expand import ID_RUN_MIN, ID_RUN_SHARE, drop_id_runs  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

CHOICES = {"off": None, **{f"{n} ids, share {s:g}": (n, s) for n in (2, 3, 5) for s in (0.5, 0.8, 0.9)}}
SHIPPED = f"{ID_RUN_MIN} ids, share {ID_RUN_SHARE:g}"


def texts_without_step(pages: list[dict]) -> list[str | None]:
    cfg = ExtractConfig(drop_id_runs=False)
    return [extract_page(p["html"], p["url"], cfg, title=page_title(p["html"]))[0] for p in pages]


def apply(texts: list, choice) -> list:
    return list(texts) if choice is None else [drop_id_runs(t, *choice)[0] for t in texts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="pages per benchmark (default: all)")
    args = ap.parse_args()
    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths = [p["truth"] for p in pages]
    base = texts_without_step(pages)
    options = {name: apply(base, c) for name, c in CHOICES.items()}
    for name, texts in options.items():
        changed = [pages[i]["url"] for i, (a, b) in enumerate(zip(base, texts)) if a != b]
        print(f"wcxb {name:20} changes {len(changed)} pages" + (f": {', '.join(u[:45] for u in changed)}" if changed else ""))
    fold_report("id runs", options, SHIPPED, options["off"], truths, url_halves(pages))
    print("\nthe step off -> shipped:")
    type_report(truths, [p["page_type"] for p in pages], options["off"], options[SHIPPED])
    aeb = load("aeb.jsonl.xz", args.limit)
    aeb_base = texts_without_step(aeb)
    for name, c in CHOICES.items():
        texts = apply(aeb_base, c)
        n = sum(a != b for a, b in zip(aeb_base, texts))
        print(f"aeb {name:20} changes {n} pages; F1 {score('aeb', [p['truth'] for p in aeb], texts)['F1']:.4f}")


if __name__ == "__main__":
    main()
