"""Near-dedup quality and speed on the Reuters near-duplicate dev set.

Pairwise precision/recall/F1 over all pairs inside predicted vs. true clusters,
and documents per CPU-second, for:
  - the plain datasketch baseline: MinHash.update per shingle, 128 permutations,
    MinHashLSH(threshold=0.8), union-find over query results;
  - webtext's NearDedup (the stage's clustering, in memory) with its configured parameters (and any --grid).

    .venv/bin/python bench/bench_dedup.py [--limit N] [--grid]
"""

from __future__ import annotations

import argparse
import itertools
import lzma
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.core.config import DedupConfig  # noqa: E402
from pipeline.dedup.clusters import NearDedup  # noqa: E402
from pipeline.dedup.signatures import UnionFind, words_of  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dedup" / "reuters_neardup_dev.jsonl.xz"


def load(limit=None):
    docs = [orjson.loads(l) for l in lzma.decompress(DATA.read_bytes()).splitlines() if l.strip()]
    return docs[:limit] if limit else docs


def pairs_of(clusters):
    out = set()
    for members in clusters:
        for a, b in itertools.combinations(sorted(members), 2):
            out.add((a, b))
    return out


def score(docs, predicted_clusters):
    truth = defaultdict(list)
    for d in docs:
        truth[d["cluster"]].append(d["id"])
    t = pairs_of(truth.values())
    p = pairs_of(predicted_clusters)
    tp = len(t & p)
    prec = tp / len(p) if p else 1.0
    rec = tp / len(t) if t else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def baseline(docs):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    uf = UnionFind()
    for d in docs:
        w = words_of(d["text"])
        m = MinHash(num_perm=128)
        for i in range(max(1, len(w) - 4)):
            m.update(" ".join(w[i : i + 5]).encode("utf-8"))
        for c in lsh.query(m):
            uf.union(c, d["id"])
        lsh.insert(d["id"], m)
        uf.find(d["id"])
    return clusters_of(uf, docs)


def clusters_of(uf, docs):
    c = defaultdict(list)
    for d in docs:
        c[uf.find(d["id"])].append(d["id"])
    return list(c.values())


def ours(docs, cfg):
    dd = NearDedup(cfg)
    removed = dd.find_duplicates([{"id": d["id"], "text": d["text"]} for d in docs])
    uf = UnionFind()
    for r, k in removed.items():
        uf.union(k, r)
    return clusters_of(uf, docs)


def timed(fn, *a):
    t = time.process_time()
    r = fn(*a)
    return r, time.process_time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--grid", action="store_true", help="also try other band/row/threshold settings")
    args = ap.parse_args()
    docs = load(args.limit)
    rows = []
    c, t = timed(baseline, docs)
    rows.append(("datasketch baseline (update, 128 perm, threshold .8)", *score(docs, c), len(docs) / t))
    base_rate = rows[0][-1]
    configs = [("webtext default", DedupConfig())]
    if args.grid:
        for n, b, r, j, ct in [(112, 14, 8, 0.0, 0.0), (112, 14, 8, 0.5, 0.8), (112, 28, 4, 0.5, 0.8), (112, 28, 4, 0.45, 0.75),
                               (112, 22, 5, 0.5, 0.8), (110, 22, 5, 0.5, 0.85), (100, 20, 5, 0.5, 0.8), (96, 24, 4, 0.55, 0.85),
                               (96, 24, 4, 0.5, 0.8)]:
            configs.append((f"{b}x{r} J>={j} C>={ct}", DedupConfig(num_perm=n, bands=b, rows=r, jaccard_threshold=j, containment_threshold=ct)))
    for name, cfg in configs:
        c, t = timed(ours, docs, cfg)
        rows.append((f"{name} ({cfg.bands}x{cfg.rows}, {cfg.num_perm} perm)", *score(docs, c), len(docs) / t))
    print(f"{len(docs):,} documents; pairwise scores; docs per CPU-second")
    print(f"{'method':<58}{'P':>7}{'R':>7}{'F1':>7}{'docs/CPU-s':>12}{'speed':>8}")
    for name, p, r, f, rate in rows:
        print(f"{name:<58}{p:>7.3f}{r:>7.3f}{f:>7.3f}{rate:>12,.0f}{rate / base_rate:>7.1f}x")


if __name__ == "__main__":
    main()
