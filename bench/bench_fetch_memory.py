"""Fetch at the size of a month: memory and time to the first outcome with many links.

Two cases, each in a fresh process (peak RSS = its VmHWM):

  done     N links that all have a final outcome in a first-layout outcomes.jsonl (a
           resumed or incremental run; the log is first split into the partitions'
           logs, once): how much memory knowing that costs, and how long.
  pending  N links none fetched yet, on a loopback web that answers each request
           after 50-400 ms (N/100 hosts, all resolved to 127.0.0.1 with ``resolve``):
           seconds until the first outcome line is on disk, and the peak RSS in the
           first 20 s of fetching: of the largest process, and of the whole process
           tree (the parent that spools the links and one worker process per core
           fetching its partitions, or, with the asyncio transport,
           the parent alone: FetchConfig.process_plan), sampled every 50 ms. The run is then stopped.

A third process imports the same modules and holds nothing: the fixed part.
Goals (issue 12): RSS with 300k links under 400 MB, the first outcome within 10 s.

    .venv/bin/python bench/bench_fetch_memory.py [--links 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> float:
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024


def tree_rss_mb(pid: int) -> list[float]:
    """VmRSS (MB) of PID and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            out.append(next(int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmRSS")) / 1024)
            todo += [int(c) for c in open(f"/proc/{p}/task/{p}/children").read().split()]
        except (OSError, StopIteration):
            pass
    return out


def make_links(work: Path, n: int) -> Path:
    hosts = max(1, n // 100)
    ids, urls, norms = [], [], []
    for i in range(n):
        h = f"h{i % hosts}.example"
        norms.append(f"{h}/article/{i}")
        urls.append(f"http://{h}/article/{i}")
        ids.append(f"{i:032x}")
    d = work / "links"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "url": urls, "url_norm": norms}), d / "links.parquet")
    return d


def make_done(work: Path, n: int) -> None:
    out = work / "fetch-done"
    out.mkdir(parents=True, exist_ok=True)
    hosts = max(1, n // 100)
    with open(out / "outcomes.jsonl", "wb") as fh:
        for i in range(n):
            h = f"h{i % hosts}.example"
            fh.write(orjson.dumps({"id": f"{i:032x}", "url": f"http://{h}/article/{i}", "url_norm": f"{h}/article/{i}",
                                   "fetched_at": "2026-11-01T00:00:00Z", "attempt": 1, "outcome": "ok", "status": 200,
                                   "final_url": f"http://{h}/article/{i}", "content_type": "text/html; charset=utf-8",
                                   "warc_file": "webtext-00000.warc.gz", "warc_offset": i * 5000, "warc_length": 5000,
                                   "warc_record_end": (i + 1) * 5000}) + b"\n")


def child(args) -> None:
    from pipeline.core.config import FetchConfig
    from pipeline.fetch.stage import fetch_links
    from pipeline.links.table import iter_links

    if args.case == "idle":
        print(json.dumps({"rss_mb": peak_mb()}))
        return
    n_hosts = max(1, args.links // 100)
    cfg = FetchConfig(allow_private_addresses=True, respect_robots=False, per_host_delay_s=0.0,
                      # the "done" case fetches nothing: it has no server to map the hosts to
                      resolve={f"h{i}.example": args.address for i in range(n_hosts)} if args.address else {})
    out = args.work / ("fetch-done" if args.case == "done" else "fetch-pending")
    t0 = time.time()
    if args.case == "done":
        s = fetch_links(iter_links(args.work / "links"), out, cfg)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(json.dumps({"rss_mb": peak_mb(), "worker_rss_mb": kids.ru_maxrss / 1024,
                          "worker_cpu": kids.ru_utime + kids.ru_stime, "wall": time.time() - t0, "cpu": ru.ru_utime + ru.ru_stime,
                          "already": s.dropped.get("already_fetched", 0)}))
        return
    first = {}
    peak = {"tree": 0.0, "largest": 0.0}

    def lines() -> int:
        return sum(p.read_bytes().count(b"\n") for p in (out / "outcomes").glob("part-*.jsonl"))

    def watch():
        while True:
            if "t" not in first and any(p.stat().st_size for p in (out / "outcomes").glob("part-*.jsonl")):
                first["t"] = time.time() - t0
            rss = tree_rss_mb(os.getpid())
            peak["tree"] = max(peak["tree"], sum(rss))
            peak["largest"] = max(peak["largest"], max(rss))
            if time.time() - t0 > 20:
                print(json.dumps({"rss_mb": peak["largest"], "tree_rss_mb": peak["tree"], "first_outcome_s": first.get("t"),
                                  "outcomes_in_20s": lines()}), flush=True)
                os._exit(0)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    fetch_links(iter_links(args.work / "links"), out, cfg)


def serve(latency=(0.05, 0.4)):
    from flows.demo import LoopbackServer

    body = ("<html><head><title>t</title></head><body>" + "<p>words and more words</p>" * 100 + "</body></html>").encode()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            time.sleep(random.uniform(*latency))
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    web = LoopbackServer(H)
    # the pending case ends its fetch with requests in flight: their broken pipes are expected
    web.server.handle_error = lambda request, client_address: None
    return web


def run(case: str, work: Path, n: int, address: str = "") -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", "--case", case, "--work", str(work), "--links", str(n),
                        "--address", address], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if r.returncode:
        raise SystemExit(f"{case} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--links", type=int, default=300_000)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--case", choices=["idle", "done", "pending"])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--address", default="")
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="webtext-fetchmem-"))
    make_links(work, args.links)
    make_done(work, args.links)
    idle = run("idle", work, args.links)
    done = run("done", work, args.links)
    with serve() as web:
        pending = run("pending", work, args.links, web.address)
    from pipeline.core.config import FetchConfig

    procs, inflight = FetchConfig().process_plan(os.cpu_count() or 1)
    cfg_note = f"{procs} fetch process{'es' if procs > 1 else ''} ({inflight} requests in flight each), 16 partitions"
    print(f"\n# bench_fetch_memory {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.links:,} links "
          f"over {max(1, args.links // 100):,} hosts\n")
    print("| case | peak RSS MB | over the fixed part | other |\n|---|---:|---:|---|")
    print(f"| fixed part (modules imported, nothing held) | {idle['rss_mb']:.0f} | | |")
    print(f"| all {args.links:,} done (resume) | {done['rss_mb']:.0f} | {done['rss_mb'] - idle['rss_mb']:.0f} | "
          f"{done['wall']:.1f} s wall, {done['cpu']:.1f} + {done['worker_cpu']:.1f} (workers) CPU-s, "
          f"{done['already']:,} already_fetched; largest worker {done['worker_rss_mb']:.0f} MB |")
    print(f"| all {args.links:,} pending, first 20 s (largest process) | {pending['rss_mb']:.0f} | "
          f"{pending['rss_mb'] - idle['rss_mb']:.0f} | first outcome after {pending['first_outcome_s']:.1f} s; "
          f"{pending['outcomes_in_20s']:,} outcomes in 20 s; {cfg_note} |")
    print(f"| all {args.links:,} pending, first 20 s (whole process tree) | {pending['tree_rss_mb']:.0f} | | |")
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
