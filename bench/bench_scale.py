"""How dedup and shards grow with the corpus: three sizes, cost per document, and
the extrapolation to WebText (8M documents kept).

Synthetic documents shaped like WebText's (~5 KB of English-like text: words drawn
from a Zipf vocabulary; 10% near-copies of another document with a few words
changed, so the index has clusters to find) are written as Parquet parts of 5,000
documents. Each measurement runs in a fresh process (peak RSS = its VmHWM; CPU-s =
its user + system time, one signature process so the figure is per core):

  dedup N        a fresh state, N documents
  dedup +5k      5,000 new documents after N (the monthly case), against
  dedup 5k       the same 5,000 on an empty state (the anchor of the incremental goal)
  shards N / +5k / 5k   the same for the shard stage on the dedup output
  dedup 20KB     N/3 documents of ~20 KB: peak RSS must not follow the text size

Goals (issue 12): dedup RAM <= 1.5 KB per indexed document (the slope of peak RSS
over N) and peak RSS independent of text size; +5k within 2x the CPU of 5k fresh
for dedup and shards.

    .venv/bin/python bench/bench_scale.py [--sizes 10000 30000 90000] [--rounds 3]

Rounds repeat the +5k / 5k pair (interleaved) and report the median ratio with the
spread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PART = 5000
WEBTEXT_DOCS = 8_000_000


def make_parts(out: Path, n: int, start: int, words_per_doc: int = 850, seed: int = 0) -> list[Path]:
    """N documents from id START on, as parts of 5,000 (~5 KB each at 850 words)."""
    rng = np.random.default_rng(seed + start)
    vocab = np.array([f"w{i:x}" + "abcdefghij"[i % 10] * (i % 5) for i in range(50_000)])
    p = 1.0 / np.arange(1, vocab.size + 1) ** 1.05
    p /= p.sum()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for s in range(start, start + n, PART):
        m = min(PART, start + n - s)
        idx = rng.choice(vocab.size, size=(m, words_per_doc), p=p)
        texts = [" ".join(vocab[row]) for row in idx]
        for i in range(0, m, 10):  # every tenth document: a near-copy of the one before, 2% of words changed
            if i + 1 < m:
                row = idx[i].copy()
                k = rng.integers(0, words_per_doc, size=words_per_doc // 50)
                row[k] = rng.integers(0, vocab.size, size=k.size)
                texts[i + 1] = " ".join(vocab[row])
        ids = [f"doc{j:09d}" for j in range(s, s + m)]
        t = pa.table({"id": ids, "url": [f"http://site{j % 997}.example/{j}" for j in range(s, s + m)], "text": texts,
                      "score": rng.integers(3, 500, size=m), "created_utc": 1_500_000_000 + np.arange(s, s + m)})
        f = out / f"part-{s // PART:05d}.parquet"
        pq.write_table(t, f, compression="zstd", row_group_size=1000)  # as the stages write their parts
        files.append(f)
    return files


def child(args) -> None:
    """Run one stage in this process and print its costs as JSON."""
    from pipeline.config import DedupConfig, ShardConfig

    t0 = time.time()
    if args.child == "dedup":
        from pipeline.dedup import dedup_documents

        s = dedup_documents(args.src, args.out, DedupConfig(workers=1))
    else:
        from pipeline.shards import shard_documents

        s = shard_documents(args.src, args.out, ShardConfig(), pattern="documents-*.parquet")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({"cpu": ru.ru_utime + ru.ru_stime, "rss_mb": hwm / 1024, "wall": time.time() - t0,
                      "n_in": s.n_in, "n_out": s.n_out}))


def run(stage: str, src: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", stage, "--src", str(src), "--out", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if r.returncode:
        raise SystemExit(f"{stage} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def du(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def fit(xs, ys) -> tuple[float, float]:
    slope, icpt = np.polyfit(np.array(xs, float), np.array(ys, float), 1)
    return float(slope), float(icpt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=3, default=[10_000, 30_000, 90_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--child", choices=["dedup", "shards"])
    ap.add_argument("--src", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="webtext-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}; generating {max(args.sizes):,} + 5,000 documents ...", file=sys.stderr)
    big = max(args.sizes)
    all_parts = make_parts(work / "docs", big, 0)
    extra = make_parts(work / "extra", PART, 10**8)
    rows = []
    for n in args.sizes:
        src = work / f"in-{n}"
        src.mkdir(exist_ok=True)
        for f in all_parts[: n // PART]:
            if not (src / f.name).exists():
                os.link(f, src / f.name)
        ded = work / f"dedup-{n}"
        shutil.rmtree(ded, ignore_errors=True)
        d = run("dedup", src, ded)
        sh = work / f"shards-{n}"
        shutil.rmtree(sh, ignore_errors=True)
        s = run("shards", ded, sh)
        rows.append({"n": n, "dedup": d, "shards": s, "index_bytes": du(ded / "state"),
                     "dedup_bytes": du(ded, "documents-*.parquet"), "shard_bytes": du(sh, "*.parquet"),
                     "text_bytes": du(src, "*.parquet")})
        print(f"  {n:,}: dedup {d['cpu']:.1f} CPU-s {d['rss_mb']:.0f} MB; shards {s['cpu']:.1f} CPU-s {s['rss_mb']:.0f} MB",
              file=sys.stderr)
    # The monthly case: +5k after the largest size, against 5k on an empty state, interleaved.
    n = big
    inc = {"dedup": [], "shards": [], "dedup_fresh": [], "shards_fresh": []}
    for r in range(args.rounds):
        base, fresh = work / f"inc-{r}", work / f"fresh-{r}"
        for d in (base, fresh):
            shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(work / f"dedup-{n}", base / "dedup")
        shutil.copytree(work / f"shards-{n}", base / "shards")
        (base / "src").mkdir()
        for f in all_parts[: n // PART] + extra:
            os.link(f, base / "src" / f.name)
        (fresh / "src").mkdir(parents=True)
        for f in extra:
            os.link(f, fresh / "src" / f.name)
        inc["dedup"].append(run("dedup", base / "src", base / "dedup"))
        inc["dedup_fresh"].append(run("dedup", fresh / "src", fresh / "dedup"))
        inc["shards"].append(run("shards", base / "dedup", base / "shards"))
        inc["shards_fresh"].append(run("shards", fresh / "dedup", fresh / "shards"))
    # Peak RSS against text size: documents 4x longer, a third as many.
    n20 = min(args.sizes)
    big_text = make_parts(work / "docs20k", n20, 0, words_per_doc=3400, seed=5)
    d20 = run("dedup", big_text[0].parent, work / "dedup-20k")
    d5 = rows[0]["dedup"]

    print(f"\n# bench_scale {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; one process per measurement\n")
    print("| documents | dedup CPU-s | dedup peak RSS MB | index on disk MB | shards CPU-s | shards peak RSS MB | shards on disk MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['dedup']['cpu']:.1f} | {r['dedup']['rss_mb']:.0f} | {r['index_bytes'] / 1e6:.1f} | "
              f"{r['shards']['cpu']:.1f} | {r['shards']['rss_mb']:.0f} | {r['shard_bytes'] / 1e6:.1f} |")
    ns = [r["n"] for r in rows]
    per = {}
    for key, get in (("dedup CPU-s", lambda r: r["dedup"]["cpu"]), ("dedup peak RSS (bytes)", lambda r: r["dedup"]["rss_mb"] * 2**20),
                     ("index on disk (bytes)", lambda r: r["index_bytes"]), ("shards CPU-s", lambda r: r["shards"]["cpu"]),
                     ("shards peak RSS (bytes)", lambda r: r["shards"]["rss_mb"] * 2**20),
                     ("shards on disk (bytes)", lambda r: r["shard_bytes"])):
        per[key] = fit(ns, [get(r) for r in rows])
    print("\n| cost | per document (fitted slope) | fixed part | at 8M documents |\n|---|---:|---:|---:|")
    for key, (slope, icpt) in per.items():
        at = slope * WEBTEXT_DOCS + icpt
        if "CPU" in key:
            print(f"| {key} | {slope * 1e3:.3f} ms | {icpt:.1f} s | {at / 3600:.1f} CPU-h |")
        else:
            print(f"| {key} | {slope:,.0f} B | {icpt / 1e6:.0f} MB | {at / 1e9:.1f} GB |")

    def ratio(a, b, k):
        v = [x[k] / y[k] for x, y in zip(inc[a], inc[b])]
        return statistics.median(v), min(v), max(v)

    print(f"\n+5,000 documents after {n:,} vs the same 5,000 on an empty state (median of {args.rounds} [min-max]):\n")
    print("| stage | +5k CPU-s | 5k fresh CPU-s | CPU ratio (goal <= 2) | +5k peak RSS MB | 5k fresh peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for st in ("dedup", "shards"):
        m, lo, hi = ratio(st, st + "_fresh", "cpu")
        print(f"| {st} | {statistics.median(x['cpu'] for x in inc[st]):.2f} | "
              f"{statistics.median(x['cpu'] for x in inc[st + '_fresh']):.2f} | {m:.2f}x [{lo:.2f}-{hi:.2f}] | "
              f"{statistics.median(x['rss_mb'] for x in inc[st]):.0f} | {statistics.median(x['rss_mb'] for x in inc[st + '_fresh']):.0f} |")
    print(f"\nText size: dedup of {n20:,} documents of ~5 KB: peak {d5['rss_mb']:.0f} MB; of ~20 KB: peak {d20['rss_mb']:.0f} MB "
          f"({d20['rss_mb'] / d5['rss_mb']:.2f}x for 4x the text).")
    slope = per["dedup peak RSS (bytes)"][0]
    print(f"Dedup RAM per indexed document (slope of peak RSS): {slope / 1024:.2f} KB (goal <= 1.5 KB).")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
