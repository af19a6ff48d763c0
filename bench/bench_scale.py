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

  links M months     harvest + merge of M synthetic months in one build (a fresh process)
  links +1 month     one more month after the largest M (its part and a merge run), against
  links 1 month      the same month into an empty directory (the incremental goal: within 2x)

Synthetic months are shaped like real dumps: ~60% of submissions below 3 karma or
self posts, URLs over a Zipf of 20,000 hosts (a third with a query, some with
tracking parameters), ~10% of a month's submissions resubmit a URL of an earlier
month, records of ~700 bytes with the fields of a Pushshift record.

    .venv/bin/python bench/bench_scale.py [--stages links dedup shards] [--sizes 10000 30000 90000]
        [--link-months 2 4 8] [--month-subs 50000] [--rounds 3] [--size-rounds 1]

Issue 30's memory goal (peak RSS growth <= 1.5 KB per document from 10k to 40k
documents, row groups of 1,000) is measured by
``--stages dedup shards --sizes 10000 20000 40000 --size-rounds 3``.

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


WEBTEXT_SUBMISSIONS, WEBTEXT_LINKS, WEBTEXT_URLS = 430_000_000, 45_000_000, 20_000_000
MONTH_T0 = 1_451_606_400  # 2016-01-01: inside the WebText window (before 2018)


def make_months(out: Path, n_months: int, subs: int, seed: int = 0) -> list[Path]:
    """N_MONTHS synthetic monthly dumps (zstd NDJSON) of SUBS submissions each."""
    import orjson
    import zstandard

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    hosts = [("www." if i % 3 == 0 else "") + f"site{i}.example.com" for i in range(20_000)]
    host_p = 1.0 / np.arange(1, len(hosts) + 1) ** 1.1
    host_p /= host_p.sum()
    earlier: list[str] = []
    files = []
    for m in range(n_months):
        path = out / f"RS_2016-{m + 1:02d}.zst" if m < 12 else out / f"RS_2017-{m - 11:02d}.zst"
        files.append(path)
        host_ix = rng.choice(len(hosts), size=subs, p=host_p)
        score = np.where(rng.random(subs) < 0.55, rng.integers(0, 3, subs), rng.integers(3, 2000, subs))
        is_self = rng.random(subs) < 0.05
        resub = rng.random(subs) < (0.10 if earlier else 0.0)
        kind = rng.random(subs)
        new_urls = []
        lines = []
        for j in range(subs):
            sid = f"m{m}x{j:x}"
            if is_self[j]:
                url = f"https://www.reddit.com/r/sub{j % 500}/comments/{sid}/a_title/"
            elif resub[j]:
                url = earlier[int(rng.integers(len(earlier)))]
            else:
                h = hosts[host_ix[j]]
                if kind[j] < 0.05:
                    url = f"https://i.imgur.com/{sid}.jpg"
                elif kind[j] < 0.25:
                    url = f"https://{h}/story.php?id={j}&utm_source=reddit&ref=front"
                elif kind[j] < 0.35:
                    url = f"http://{h}/a?q={sid}&page={j % 7}"
                else:
                    url = f"https://{h}/{2016 + m // 12}/{m % 12 + 1:02d}/{sid}-some-words-of-the-title/"
                new_urls.append(url)
            rec = {"archived": False, "author": f"user{j % 9973}", "created_utc": MONTH_T0 + m * 2_592_000 + j * 2_592_000 // subs,
                   "domain": url.split("/")[2], "edited": False, "gilded": 0, "id": sid, "is_self": bool(is_self[j]),
                   "num_comments": int(score[j] // 3), "over_18": False, "permalink": f"/r/sub{j % 500}/comments/{sid}/a_title/",
                   "score": int(score[j]), "selftext": "", "stickied": False, "subreddit": f"sub{j % 500}",
                   "subreddit_id": f"t5_{j % 500:x}", "thumbnail": "default", "title": f"A title of some words, number {j}",
                   "url": url, "media": None, "secure_media": None, "link_flair_text": None, "spoiler": False,
                   "locked": False, "hide_score": False, "contest_mode": False, "distinguished": None, "author_flair_text": None}
            lines.append(orjson.dumps(rec))
        earlier.extend(new_urls[:: 4])  # a sample of this month's URLs may come back later
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=20)
        path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(b"\n".join(lines) + b"\n"))
    return files


def child(args) -> None:
    """Run one stage in this process and print its costs as JSON."""
    from pipeline.core.config import DedupConfig, ShardConfig

    import threading

    # Peak anonymous memory, sampled every 5 ms: VmHWM also counts file pages mapped in
    # (shared libraries, memory-mapped index segments), which come and go with the page
    # cache and made the growth per document swing by +-1 KB between identical runs.
    anon = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon"):
                    anon[0] = max(anon[0], int(line.split()[1]))
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    if args.child == "links":
        from pipeline.core.config import LinksConfig
        from pipeline.links import merge as links
        from pipeline.links.merge import harvest_dump_links

        if args.merge_batch_rows:
            links.MERGE_BATCH_ROWS = args.merge_batch_rows
        s = harvest_dump_links(sorted(args.src.glob("RS_*.zst")), args.out, LinksConfig())
        s.n_in = s.to_dict()["in"]
    elif args.child == "dedup":
        from pipeline.dedup.stage import dedup_documents

        s = dedup_documents(args.src, args.out, DedupConfig(workers=1))
    else:
        from pipeline.shards.stage import shard_documents

        s = shard_documents(args.src, args.out, ShardConfig(), pattern="documents-*.parquet")
    stop.set()
    sampler.join()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({"cpu": ru.ru_utime + ru.ru_stime, "rss_mb": hwm / 1024, "anon_mb": anon[0] / 1024,
                      "wall": time.time() - t0,
                      "n_in": s.n_in, "n_out": s.n_out}))


def run(stage: str, src: Path, out: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", stage, "--src", str(src), "--out", str(out), *extra],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if r.returncode:
        raise SystemExit(f"{stage} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def du(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def print_table(header: list[str], rows: list[list]) -> None:
    """A markdown table, numbers right-aligned."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def fit(xs, ys) -> tuple[float, float]:
    slope, icpt = np.polyfit(np.array(xs, float), np.array(ys, float), 1)
    return float(slope), float(icpt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=3, default=[10_000, 30_000, 90_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-rounds", type=int, default=1,
                    help="measure every size this many times (the table shows medians; RSS growth with the spread)")
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--stages", nargs="+", choices=["links", "dedup", "shards"], default=["links", "dedup", "shards"],
                    help="which parts to measure (shards needs dedup's output, so it runs dedup too)")
    ap.add_argument("--link-months", type=int, nargs=3, default=[2, 4, 8], help="months per links size")
    ap.add_argument("--month-subs", type=int, default=50_000, help="submissions per synthetic month")
    ap.add_argument("--child", choices=["links", "dedup", "shards"])
    ap.add_argument("--src", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--merge-batch-rows", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = args.work or Path(tempfile.mkdtemp(prefix="webtext-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"\n# bench_scale {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; one process per measurement")
    if "links" in args.stages:
        bench_links(args, work)
    if "dedup" in args.stages or "shards" in args.stages:
        bench_dedup_shards(args, work)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def bench_links(args, work: Path) -> None:
    sizes = args.link_months
    big = max(sizes)
    print(f"generating {big} + 1 months of {args.month_subs:,} submissions ...", file=sys.stderr)
    months = make_months(work / "months", big + 1, args.month_subs)
    extra = months[-1]
    rows = []
    for n in sizes:
        src = work / f"lmonths-{n}"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        for f in months[:n]:
            os.link(f, src / f.name)
        out = work / f"links-{n}"
        shutil.rmtree(out, ignore_errors=True)
        r = run("links", src, out)
        ledger = json.loads((out / "runs" / "ledger.json").read_text())
        r.update(n=n, subs=n * args.month_subs, links=sum(x["links"] for x in ledger["runs"]),
                 parts_bytes=du(out / "parts"), runs_bytes=du(out / "runs", "links-*.parquet"),
                 index_bytes=du(out / "runs", "*.arrow"), dump_bytes=du(src))
        rows.append(r)
        print(f"  {n} months: {r['cpu']:.1f} CPU-s {r['rss_mb']:.0f} MB", file=sys.stderr)
    # The same biggest backlog merged in batches of two months' parts (one run each): the
    # merge's peak should follow a batch, not the backlog.
    import pyarrow.parquet as pq

    two = sorted((work / f"links-{big}" / "parts").glob("*.parquet"))[:2]
    batch_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in two)
    shutil.rmtree(work / "links-batched", ignore_errors=True)
    batched = run("links", work / f"lmonths-{big}", work / "links-batched", "--merge-batch-rows", str(batch_rows))
    two_months = next((r for r in rows if r["n"] == 2), None)
    inc = {"plus": [], "alone": []}
    for rd in range(args.rounds):
        base, fresh = work / f"linc-{rd}", work / f"lfresh-{rd}"
        for d in (base, fresh):
            shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(work / f"links-{big}", base / "out")
        (base / "src").mkdir()
        for f in months:
            os.link(f, base / "src" / f.name)
        (fresh / "src").mkdir(parents=True)
        os.link(extra, fresh / "src" / extra.name)
        inc["plus"].append(run("links", base / "src", base / "out"))
        inc["alone"].append(run("links", fresh / "src", fresh / "out"))
    print(f"\n## links: {args.month_subs:,} synthetic submissions a month\n")
    print_table(["months", "submissions", "links", "CPU-s", "peak RSS MB", "parts on disk MB", "links runs MB", "key index MB"],
                [[r["n"], f"{r['subs']:,}", f"{r['links']:,}", f"{r['cpu']:.1f}", f"{r['rss_mb']:.0f}",
                  f"{r['parts_bytes'] / 1e6:.1f}", f"{r['runs_bytes'] / 1e6:.1f}", f"{r['index_bytes'] / 1e6:.2f}"] for r in rows])
    xs = [r["subs"] for r in rows]
    links_per_sub = rows[-1]["links"] / rows[-1]["subs"]
    print(f"\n| cost | per submission (fitted slope) | per link | fixed part | at WebText ({WEBTEXT_SUBMISSIONS / 1e6:.0f}M submissions, "
          f"{WEBTEXT_LINKS / 1e6:.0f}M links, {WEBTEXT_URLS / 1e6:.0f}M URLs) |\n|---|---:|---:|---:|---:|")
    for key, get in (("CPU-s (one build of every month)", lambda r: r["cpu"]),
                     ("peak RSS (one build of every month)", lambda r: r["rss_mb"] * 2**20),
                     ("parts on disk", lambda r: r["parts_bytes"]), ("links runs on disk", lambda r: r["runs_bytes"]),
                     ("key index on disk", lambda r: r["index_bytes"])):
        slope, icpt = fit(xs, [get(r) for r in rows])
        per_link = slope / links_per_sub
        if "CPU" in key:
            print(f"| {key} | {slope * 1e6:.1f} µs | {per_link * 1e6:.1f} µs | {icpt:.1f} s | "
                  f"{(slope * WEBTEXT_SUBMISSIONS + icpt) / 3600:.1f} CPU-h |")
        else:
            if key.startswith(("peak", "parts")):  # these follow the submissions read
                at, note = slope * WEBTEXT_SUBMISSIONS + (icpt if "RSS" in key else 0), " (x 430M submissions)"
            else:  # these follow the unique URLs linked
                at, note = per_link * WEBTEXT_URLS, " (per link x 20M URLs)"
            print(f"| {key} | {slope:,.0f} B | {per_link:,.0f} B | {icpt / 1e6:.0f} MB | {at / 1e9:.1f} GB{note} |")
    print(f"\n{big} months merged in batches of {batch_rows:,} URL rows of parts (about 2 months, one run each): "
          f"{batched['cpu']:.1f} CPU-s, peak RSS {batched['rss_mb']:.0f} MB"
          + (f" (2 months in one run: {two_months['rss_mb']:.0f} MB; {big} in one run: {rows[-1]['rss_mb']:.0f} MB)"
             if two_months else ""))
    v = [a["cpu"] / b["cpu"] for a, b in zip(inc["plus"], inc["alone"])]
    rss = [a["rss_mb"] for a in inc["plus"]], [b["rss_mb"] for b in inc["alone"]]
    print(f"\n+1 month after {big} months vs the same month into an empty directory (median of {args.rounds} [min-max]):\n")
    print("| case | CPU-s | peak RSS MB |\n|---|---:|---:|")
    print(f"| +1 month after {big} | {statistics.median(x['cpu'] for x in inc['plus']):.2f} | {statistics.median(rss[0]):.0f} |")
    print(f"| 1 month alone | {statistics.median(x['cpu'] for x in inc['alone']):.2f} | {statistics.median(rss[1]):.0f} |")
    print(f"\nCPU ratio {statistics.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}] (goal <= 2); peak RSS ratio "
          f"{statistics.median(a / b for a, b in zip(*rss)):.2f}x")


def bench_dedup_shards(args, work: Path) -> None:
    print(f"work dir {work}; generating {max(args.sizes):,} + 5,000 documents ...", file=sys.stderr)
    big = max(args.sizes)
    all_parts = make_parts(work / "docs", big, 0)
    extra = make_parts(work / "extra", PART, 10**8)
    rows = []
    # peak memory growth per document, smallest -> largest size: anonymous (sampled) and VmHWM
    growth: dict[str, list[float]] = {"dedup": [], "shards": [], "dedup (VmHWM)": [], "shards (VmHWM)": []}
    for rd in range(args.size_rounds):  # every size measured again each round; the table shows the medians
        got = []
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
            got.append({"n": n, "dedup": d, "shards": s, "index_bytes": du(ded / "state"),
                        "dedup_bytes": du(ded, "documents-*.parquet"), "shard_bytes": du(sh, "data/*.parquet"),
                        "text_bytes": du(src, "*.parquet")})
            print(f"  round {rd + 1}, {n:,}: dedup {d['cpu']:.1f} CPU-s {d['rss_mb']:.0f} MB ({d['anon_mb']:.0f} anon); "
                  f"shards {s['cpu']:.1f} CPU-s {s['rss_mb']:.0f} MB ({s['anon_mb']:.0f} anon)", file=sys.stderr)
        for st in ("dedup", "shards"):
            growth[st].append((got[-1][st]["anon_mb"] - got[0][st]["anon_mb"]) * 2**20 / (got[-1]["n"] - got[0]["n"]))
            growth[st + " (VmHWM)"].append((got[-1][st]["rss_mb"] - got[0][st]["rss_mb"]) * 2**20
                                          / (got[-1]["n"] - got[0]["n"]))
        rows.append(got)
    rows = [_median_row(same) for same in zip(*rows)]
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

    print("\n## dedup and shards\n")
    print_table(["documents", "dedup CPU-s", "dedup peak RSS MB", "index on disk MB", "shards CPU-s", "shards peak RSS MB",
                 "shards on disk MB"],
                [[f"{r['n']:,}", f"{r['dedup']['cpu']:.1f}", f"{r['dedup']['rss_mb']:.0f}", f"{r['index_bytes'] / 1e6:.1f}",
                  f"{r['shards']['cpu']:.1f}", f"{r['shards']['rss_mb']:.0f}", f"{r['shard_bytes'] / 1e6:.1f}"] for r in rows])
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
    lo_n, hi_n = min(args.sizes), max(args.sizes)
    for st in ("dedup", "shards", "dedup (VmHWM)", "shards (VmHWM)"):
        g = [x / 1024 for x in growth[st]]
        what = "peak RSS" if "VmHWM" in st else "peak anonymous memory"
        print(f"{st} {what} growth from {lo_n:,} to {hi_n:,} documents: {statistics.median(g):.2f} KB per document "
              f"(median of {len(g)} rounds [{min(g):.2f}-{max(g):.2f}]; goal <= 1.5 KB)")


def _median_row(same: tuple[dict, ...]) -> dict:
    """One size measured in several rounds: the median of each figure."""
    out = dict(same[0])
    for st in ("dedup", "shards"):
        out[st] = {k: statistics.median(r[st][k] for r in same) for k in ("cpu", "rss_mb", "anon_mb", "wall")}
    return out


if __name__ == "__main__":
    main()
