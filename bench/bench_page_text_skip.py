"""What leaving out trafilatura's page text saves (pipeline/extract/gate.py), and that it changes nothing.

Where its extraction is short, trafilatura builds the page's whole text (``html2txt``) only
to ask whether the extraction is under 1/5 of it; the gate answers that test from a bound
where it can and leaves the page's text out. Each page is extracted (``extract_page``, the
shipped config) with the gate's ``html2txt`` and with trafilatura's own, in turn (which
goes first alternates from page to page and round to round), on every page of aeb and
wcxb dev: the texts must be the same, and the CPU seconds give the speed ratio per round,
reported as the median of --rounds rounds with their range. Also printed: how often the
page's text was built and left out.

    .venv/bin/python bench/bench_page_text_skip.py [--rounds 3] [--limit N]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract import gate  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="pages per benchmark (default: all)")
    args = ap.parse_args()
    import trafilatura.core as core

    gate._install()
    if not getattr(core, "_webtext_gate", False):
        sys.exit("the gate is not installed on this trafilatura version: nothing to measure")
    ways = {"gate": core.html2txt, "trafilatura": importlib.import_module("trafilatura.baseline").html2txt}
    cfg = ExtractConfig()
    for name in ("aeb.jsonl.xz", "wcxb_dev.jsonl.xz"):
        pages = load(name, args.limit)
        titles = [page_title(p["html"]) for p in pages]
        before = dict(gate.stats)
        ratios, differ = [], 0
        for r in range(args.rounds):
            secs = dict.fromkeys(ways, 0.0)
            for i, p in enumerate(pages):
                order = list(ways) if (i + r) % 2 == 0 else list(ways)[::-1]
                texts = {}
                for way in order:
                    core.html2txt = ways[way]
                    t0 = time.process_time()
                    texts[way] = extract_page(p["html"], p["url"], cfg, title=titles[i])[0]
                    secs[way] += time.process_time() - t0
                core.html2txt = ways["gate"]
                differ += r == 0 and texts["gate"] != texts["trafilatura"]
            ratios.append(secs["trafilatura"] / secs["gate"])
        ratios.sort()
        n = {k: (gate.stats[k] - before[k]) // args.rounds for k in ("page_text_built", "page_text_skipped")}
        print(f"{name}: {len(pages)} pages, texts that differ: {differ}; the page's text built {n['page_text_built']}, "
              f"left out {n['page_text_skipped']} times a round; speed with the skip: "
              f"{statistics.median(ratios):.3f}x [{ratios[0]:.3f}-{ratios[-1]:.3f}] over {args.rounds} rounds")


if __name__ == "__main__":
    main()
