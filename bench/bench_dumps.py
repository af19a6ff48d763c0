"""Dump reading speed: webtext's reader against the plain community reader.

The anchor is what the widely used Pushshift scripts do: a zstandard stream,
text lines, ``json.loads`` per line. Both read the same .zst file in the same run
on one core; the ratio of records per second is the figure (goal >= 2x for the
reader; issue 12: >= 1.5x for the whole links stage, reading, selection, URL
normalisation, grouping and writing the month's part).

The file is the real 2005-07 month (../shared/data/reddit) repeated N times, each
copy's ids and URLs made distinct, and recompressed with zstd level 3 (ratio ~10x,
like the real dumps).

    .venv/bin/python bench/bench_dumps.py [--repeat 200] [--rounds 5]

Rounds interleave the readers (anchor, reader, reader + link selection, whole stage) so machine
noise hits all alike; the figure is the median per-round ratio with its spread.
A second table reads a month with one 70 MB line in each codec, each in a fresh
process, and reports its peak RSS (the line must be skipped as line_too_long
without holding it whole; MAX_LINE is 64 MiB).
"""

from __future__ import annotations

import argparse
import lzma
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.core.config import LinksConfig  # noqa: E402
from pipeline.links.harvest import harvest_dump_part  # noqa: E402
from pipeline.links.select import LinkSelector  # noqa: E402
from pipeline.sources.dumps import (  # noqa: E402
    DumpReadStats,
    iter_submission_batches,
    iter_submissions,
    plain_reader_count,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "reddit"


def make_file(repeat: int, out: Path) -> Path:
    src = lzma.decompress((SHARED / "RS_v2_2005-07.xz").read_bytes())
    path = out / f"RS_bench_x{repeat}_u.zst"
    if not path.exists():
        # Each copy's ids and URLs get the copy's number (a path suffix), so URLs are as
        # unique as in a real month: plain copies would make every URL a 200-fold
        # duplicate and flatter any per-URL cache or aggregation.
        recs = [orjson.loads(line) for line in src.splitlines()]
        lines = []
        for i in range(repeat):
            for r in recs:
                c = dict(r, id=f"{r['id']}{i}")
                if isinstance(c.get("url"), str) and c["url"].startswith("http"):
                    u, q, rest = c["url"].partition("?")
                    c["url"] = f"{u.rstrip('/')}/c{i}" + q + rest
                lines.append(orjson.dumps(c))
        # A 1 MiB window cannot reach the previous copy of the 1.6 MB month, so the
        # ratio stays realistic (~10x, like the real dumps) instead of 1000x.
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=20)
        path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(b"\n".join(lines) + b"\n"))
    return path


def cpu(fn):
    t = time.process_time()
    result = fn()
    return time.process_time() - t, result


def long_line_peak(codec: str, out: Path) -> tuple[float, dict]:
    """Peak RSS (MB) of reading, in this fresh process, a dump with one 70 MB line."""
    import bz2
    import gzip
    good = b'{"id":"a","url":"http://example.com/a","score":5,"created_utc":1500000000}\n'
    data = good * 1000 + b'{"id":"b","title":"' + b"a" * 70_000_000 + b'"}\n' + good * 1000
    path = out / f"RS_longline.{codec}"
    if not path.exists():
        comp = {"zst": lambda d: zstandard.ZstdCompressor(level=3).compress(d), "gz": gzip.compress,
                "bz2": bz2.compress, "xz": lzma.compress}[codec]
        path.write_bytes(comp(data))
    stats = DumpReadStats(str(path))
    n = sum(1 for _ in iter_submissions(path, stats))
    # VmHWM, the peak of this process's own memory: ru_maxrss survives fork + exec on
    # Linux, so a spawned child would report its parent's peak when that was higher
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    return hwm / 1024, {"records": n, **dict(stats.bad)}


def _child(codec, out, q):
    q.put(long_line_peak(codec, out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    path = make_file(args.repeat, out)

    def ours_read():
        stats = DumpReadStats(str(path))
        return sum(1 for _ in iter_submissions(path, stats))

    def ours_select():
        """Reading and selection as the stage does them: chunks of submissions, rules
        over each chunk, URLs normalised in batches (issue 30), then the grouping."""
        sel = LinkSelector(LinksConfig())
        for subs in iter_submission_batches(path):
            sel.add_batch(subs)
        sel.table()
        return sel.summary.n_in

    class NoBar:
        def update(self, n):
            pass

    def ours_stage():
        """The whole links stage of one month: read, select, normalise, group, write the part."""
        with tempfile.TemporaryDirectory(dir=out) as d:
            meta = harvest_dump_part(path, d, LinksConfig(), bar=NoBar())
        return meta["in"]

    import statistics

    rounds = {"plain": [], "read": [], "select": [], "stage": []}
    for _ in range(args.rounds):
        t_plain, n_plain = cpu(lambda: plain_reader_count(path))
        t_read, n_read = cpu(ours_read)
        t_sel, n_sel = cpu(ours_select)
        t_stage, n_stage = cpu(ours_stage)
        assert n_plain == n_read == n_sel == n_stage, (n_plain, n_read, n_sel, n_stage)
        rounds["plain"].append(t_plain)
        rounds["read"].append(t_read)
        rounds["select"].append(t_sel)
        rounds["stage"].append(t_stage)
    print(f"file: {path.name}, {n_plain:,} records, {os.path.getsize(path)/1e6:.1f} MB compressed; "
          f"CPU seconds, {args.rounds} interleaved rounds")
    print(f"{'reader':<48}{'rec/CPU-s (median)':>20}{'ratio median':>14}{'  [min-max]':>16}")
    for name, key in [("plain: zstandard + json.loads per line", "plain"), ("webtext: iter_submissions", "read"),
                      ("webtext: iter_submissions + link selection", "select"),
                      ("webtext: whole links stage (harvest_dump_part)", "stage")]:
        ratios = [p / t for p, t in zip(rounds["plain"], rounds[key])]
        print(f"{name:<48}{n_plain / statistics.median(rounds[key]):>20,.0f}{statistics.median(ratios):>13.2f}x"
              f"  [{min(ratios):.2f}-{max(ratios):.2f}]")

    import multiprocessing as mp

    print("\none 70 MB line among 2,000 records; peak RSS of a fresh process reading it")
    print(f"{'codec':<8}{'peak RSS MB':>12}  counts")
    ctx = mp.get_context("spawn")
    for codec in ("gz", "zst", "bz2", "xz"):
        q = ctx.Queue()
        proc = ctx.Process(target=_child, args=(codec, out, q))
        proc.start()
        peak, counts = q.get()
        proc.join()
        print(f"{codec:<8}{peak:>12,.0f}  {counts}")


if __name__ == "__main__":
    main()
