"""Main-text extraction quality and speed against plain ``trafilatura.extract(html)``.

Both run in the same process on the same pages, one core, sequentially:
  - anchor: ``trafilatura.extract(html)`` with trafilatura's defaults;
  - webtext: ``pipeline.extract.extract_page`` with the configured ExtractConfig
    (plus the title and publication-date reads the extract worker does per page);
  - webtext without its rescue of short extractions, without its expansion to the
    extraction's container, keeping a first line that repeats the title, and
    without its consent and paywall step (what each step adds, and costs);
  - with --grid, also favor_precision / favor_recall / include_comments variants.

Scores (as ../shared/README.md defines them):
  - aeb.jsonl.xz: 4-word-shingle (lowercased ``\\w+`` tokens) multiset precision
    and recall per page, averaged over pages, F1 of the two means;
  - wcxb_dev.jsonl.xz: bag-of-words P/R/F1 per page, F1 averaged over pages.
  An empty extraction scores 0 on both.

Speed: every variant runs on each page in turn (CPU seconds per variant), so noise
from the machine falls on all alike; the ratio to the anchor is the median of
--rounds rounds (the first over all pages, the others over every 4th) with the range.

    .venv/bin/python bench/bench_extract.py [--limit N] [--grid] [--rounds 3]
"""

from __future__ import annotations

import argparse
import lzma
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "html"
_TOK = re.compile(r"\w+")


def tokens(text: str | None) -> list[str]:
    return _TOK.findall((text or "").lower())


def shingles(toks: list[str], n: int = 4) -> Counter:
    if len(toks) < n:
        return Counter([tuple(toks)]) if toks else Counter()
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def prf(truth: Counter, pred: Counter) -> tuple[float, float]:
    if not pred or not truth:
        return 0.0, 0.0
    tp = sum((truth & pred).values())
    return tp / sum(pred.values()), tp / sum(truth.values())


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score(bench: str, truths: list[str], preds: list[str | None], types: list[str] | None = None) -> dict:
    """P, R, F1 over the pages, and with TYPES (a page type per page) the F1 per type."""
    ps, rs, fs = [], [], []
    for t, y in zip(truths, preds):
        tt, yy = tokens(t), tokens(y)
        if bench == "aeb":
            p, r = prf(shingles(tt), shingles(yy))
        else:
            p, r = prf(Counter(tt), Counter(yy))
        ps.append(p)
        rs.append(r)
        fs.append(f1(p, r))
    P, R = sum(ps) / len(ps), sum(rs) / len(rs)
    out = {"P": P, "R": R, "F1": f1(P, R) if bench == "aeb" else sum(fs) / len(fs)}
    if types:
        by: dict[str, list[float]] = {}
        for ty, f in zip(types, fs):
            by.setdefault(ty, []).append(f)
        out["by_type"] = {ty: (sum(v) / len(v), len(v)) for ty, v in sorted(by.items())}
    return out


def load(name: str, limit: int | None) -> list[dict]:
    rows = [orjson.loads(l) for l in lzma.decompress((DATA / name).read_bytes()).splitlines() if l.strip()]
    return rows[:limit] if limit else rows


def run_interleaved(variants: dict, pages: list[dict]) -> tuple[dict[str, list], dict[str, float]]:
    """Every variant on each page in turn (the order rotating from page to page), CPU
    seconds summed per variant: a slower or busier stretch of the run falls on all
    variants alike, which one variant after another would not give."""
    labels = list(variants)
    preds = {l: [] for l in labels}
    secs = dict.fromkeys(labels, 0.0)
    for i, p in enumerate(pages):
        k = i % len(labels)
        for label in labels[k:] + labels[:k]:
            t0 = time.process_time()
            preds[label].append(variants[label](p))
            secs[label] += time.process_time() - t0
    return preds, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="pages per benchmark (default: all)")
    ap.add_argument("--grid", action="store_true", help="also score precision/recall/comments variants")
    ap.add_argument("--main-only", action="store_true", help="only the anchor and webtext as configured (no ablation rows)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (default 3)")
    args = ap.parse_args()
    import trafilatura

    cfg = ExtractConfig()

    def ours(c):
        def fn(p):  # as the extract worker does: the title, then the page
            return extract_page(p["html"], p.get("url"), c, title=page_title(p["html"]))[0]
        return fn

    variants = {"trafilatura.extract(html)": lambda p: trafilatura.extract(p["html"]),
                f"webtext (include_comments={cfg.include_comments})": ours(cfg),
                "webtext rescue=False": ours(ExtractConfig(rescue=False)),
                "webtext expand=False": ours(ExtractConfig(expand=False)),
                "webtext title_line=True": ours(ExtractConfig(title_line=True)),
                "webtext no consent/paywall step": ours(ExtractConfig(strip_consent=False, strip_paywall=False))}
    if args.main_only:  # the anchor and webtext as configured: the goal's figures, a third of the time
        variants = dict(list(variants.items())[:2])
    if args.grid:
        variants["webtext favor_precision"] = ours(ExtractConfig(favor_precision=True))
        variants["webtext favor_recall"] = ours(ExtractConfig(favor_recall=True))
        variants["webtext include_comments=True"] = ours(ExtractConfig(include_comments=True))
        variants["webtext date_htmldate=True"] = ours(ExtractConfig(date_htmldate=True))
    for bench, name in (("aeb", "aeb.jsonl.xz"), ("wcxb", "wcxb_dev.jsonl.xz")):
        pages = load(name, args.limit)
        for p in pages[:3]:  # warm the imports and caches for everyone alike
            trafilatura.extract(p["html"])
        truths = [p["truth"] for p in pages]
        anchor_label = next(iter(variants))
        print(f"\n{bench}: {len(pages)} pages, one core, CPU seconds; speed vs anchor: median of {args.rounds} rounds "
              "[range] (round 1 all pages, then every 4th), variants interleaved page by page")
        print(f"{'extractor':42} {'P':>6} {'R':>6} {'F1':>6} {'pages/s':>8} {'vs anchor':>9}")
        types = [p.get("page_type") for p in pages] if all(p.get("page_type") for p in pages) else None
        by_type = {}
        preds, secs = run_interleaved(variants, pages)
        # more timing rounds (speed only) on every 4th page; the ratio is each round's,
        # reported as the median of the rounds with their range
        ratios = {l: [secs[anchor_label] / secs[l]] for l in variants}
        for _ in range(args.rounds - 1):
            _, more = run_interleaved(variants, pages[::4])
            for l in variants:
                ratios[l].append(more[anchor_label] / more[l])
        for label in variants:
            s = score(bench, truths, preds[label], types)
            rate = len(pages) / secs[label]
            r = sorted(ratios[label])
            spread = f" [{r[0]:.2f}-{r[-1]:.2f}]" if len(r) > 1 else ""
            print(f"{label:42} {s['P']:6.3f} {s['R']:6.3f} {s['F1']:6.3f} {rate:8.1f} {statistics.median(r):8.2f}x{spread}",
                  flush=True)
            if types:
                by_type[label] = s["by_type"]
        if by_type:  # bag-of-words F1 per page type (the type is the benchmark's label, never used to extract)
            labels = list(by_type)
            anchor = labels[0]
            print(f"\n{bench} F1 by page type (pages); the last column: webtext minus the anchor")
            print("| page type | pages | " + " | ".join(labels) + f" | {labels[1]} - anchor |")
            print("|---|---:|" + "---:|" * len(labels) + "---:|")
            for ty, (_, n) in by_type[anchor].items():
                row = [by_type[l][ty][0] for l in labels]
                print(f"| {ty} | {n} | " + " | ".join(f"{x:.3f}" for x in row) + f" | {row[1] - row[0]:+.3f} |")


if __name__ == "__main__":
    main()
