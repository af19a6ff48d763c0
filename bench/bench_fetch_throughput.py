"""Fetch throughput: webtext's fetch against a plain asyncio + aiohttp + warcio crawler.

A loopback web (an asyncio HTTP/1.1 server in its own process on 127.0.0.1) serves
pages of a few KB after 50-400 ms each, under many host names (N/20 hosts, 20 pages
each), all resolved to it (webtext: ``[fetch] resolve``; the anchor: the same map).
Both crawlers get the same politeness: at most ``--per-host`` requests in flight per
host, ``--delay`` seconds between two request starts to one host, ``--concurrency``
requests in flight in all, and write every response (and its request) as gzip WARC
records. The anchor is one process with one event loop, no robots.txt, no address
checks, no outcome log, no fsync: the cost floor of a crawler. webtext runs as the
CLI does (``fetch_links``: spool, partitions in ``[fetch] processes`` worker
processes, combine), with ``allow_private_addresses`` (loopback) and no robots.txt.

Each run is a fresh subprocess; its CPU is that of its whole process tree
(``getrusage(RUSAGE_CHILDREN)`` around it; the server's own CPU is not in it).
Sizes run in interleaved rounds (anchor, webtext, anchor, ...); medians with the
spread [min-max] over rounds.

    .venv/bin/python bench/bench_fetch_throughput.py [--sizes 2000,6000,18000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the city council said on tuesday that a new report on water prices would be published after the "
         "elections while critics argued the plan had been delayed for years by disputes over funding").split()


# --- the loopback web ---------------------------------------------------------------------


def page(path: str) -> bytes:
    rng = random.Random(path)
    paras = "".join("<p>" + " ".join(rng.choice(WORDS) for _ in range(60)) + ".</p>\n" for _ in range(8))
    return (f"<!doctype html><html><head><title>{path}</title></head><body><article><h1>{path}</h1>\n{paras}"
            "</article></body></html>").encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: tuple[float, float]) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode("latin-1")
            await asyncio.sleep(random.uniform(*latency))
            if path == "/robots.txt":
                status, ctype, body = "404 Not Found", "text/plain", b"none"
            else:
                status, ctype, body = "200 OK", "text/html; charset=utf-8", page(path)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: keep-alive\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve(latency: tuple[float, float]) -> None:
    async def main():
        srv = await asyncio.start_server(lambda r, w: handle(r, w, latency), "127.0.0.1", 0, backlog=1024)
        print(srv.sockets[0].getsockname()[1], flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def hosts_and_urls(n: int) -> tuple[list[str], list[str]]:
    hosts = [f"h{i}.bench.test" for i in range(max(1, n // 20))]
    return hosts, [f"http://{hosts[i % len(hosts)]}/article/{i}" for i in range(n)]


# --- the anchor: a plain asyncio + aiohttp + warcio crawler ---------------------------------


def anchor(n: int, port: int, out: Path, concurrency: int, per_host: int, delay: float) -> dict:
    import io
    from urllib.parse import urlsplit

    import aiohttp
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    hosts, urls = hosts_and_urls(n)
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / "anchor.warc.gz", "wb")
    writer = WARCWriter(fh, gzip=True)
    ok = 0

    class Resolver(aiohttp.abc.AbstractResolver):  # every bench host is the loopback server
        async def resolve(self, host, port_=0, family=0):
            return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

        async def close(self):
            pass

    async def main():
        nonlocal ok
        sem = asyncio.Semaphore(concurrency)
        host_sem = {h: asyncio.Semaphore(per_host) for h in hosts}
        next_ok = {h: 0.0 for h in hosts}
        conn = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host, resolver=Resolver())
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(url: str) -> None:
                nonlocal ok
                host = urlsplit(url).hostname
                async with host_sem[host], sem:
                    loop = asyncio.get_running_loop()
                    while (wait := next_ok[host] - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    next_ok[host] = loop.time() + delay
                    async with session.get(url, allow_redirects=False) as r:
                        body = await r.read()
                        headers = StatusAndHeaders(f"{r.status} {r.reason}", list(r.raw_headers and
                                                   [(k.decode(), v.decode()) for k, v in r.raw_headers]),
                                                   protocol="HTTP/1.1")
                        rec = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
                        writer.write_record(rec)
                        req = writer.create_warc_record(
                            url, "request", http_headers=StatusAndHeaders(
                                f"GET {urlsplit(url).path} HTTP/1.1", [(k, v) for k, v in r.request_info.headers.items()],
                                is_http_request=True),
                            warc_headers_dict={"WARC-Concurrent-To": rec.rec_headers.get_header("WARC-Record-ID")})
                        writer.write_record(req)
                        ok += r.status == 200

            # interleave by host like webtext, feed tasks through the global semaphore
            await asyncio.gather(*(one(u) for u in urls))

    asyncio.run(main())
    fh.close()
    return {"ok": ok}


# --- webtext ----------------------------------------------------------------------------------


def webtext(n: int, port: int, out: Path, concurrency: int, per_host: int, delay: float, processes: int,
            transport: str = "") -> dict:
    from pipeline.core.config import FetchConfig
    from pipeline.core.urls import normalize_url, url_id
    from pipeline.fetch.stage import fetch_links

    hosts, urls = hosts_and_urls(n)
    # --concurrency requests in flight in all: workers per process (automatic processes:
    # FetchConfig.process_plan gives the asyncio transport one process with every core's)
    cores = os.cpu_count() or 1
    cfg = FetchConfig(allow_private_addresses=True, respect_robots=False, per_host_concurrency=per_host,
                      per_host_delay_s=delay, workers=max(1, concurrency // (processes or cores)), processes=processes,
                      resolve={h: f"127.0.0.1:{port}" for h in hosts},
                      **({"transport": transport} if transport else {}))
    rows = ({"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u)} for u in urls)
    s = fetch_links(rows, out, cfg)  # its worker processes are waited for: their CPU is in RUSAGE_CHILDREN
    return {"ok": s.n_out}


# --- measuring ---------------------------------------------------------------------------------


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file() and p.parent.name != "todo")


def measure(kind: str, n: int, port: int, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"webtext-tput-{kind}-"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n), "--port", str(port),
                        "--out", str(work), "--concurrency", str(args.concurrency), "--per-host", str(args.per_host),
                        "--delay", str(args.delay), "--processes", str(args.processes), "--transport", args.transport],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["ok"] != n:
        raise SystemExit(f"{kind}: {res['ok']} of {n} pages fetched")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    size = dir_bytes(work)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    # ru_maxrss of RUSAGE_CHILDREN: the largest process of any child tree so far (KB); each
    # run's tree is fresh, but the maximum is over all runs: each run also reports its own
    return {"cpu": cpu, "wall": wall, "pages_per_cpu_s": n / cpu, "pages_per_s": n / wall,
            "rss_mb": res.get("rss_mb", after.ru_maxrss / 1024), "bytes_per_page": size / n}


def child(args) -> None:
    out = Path(args.out)
    if args.child == "anchor":
        res = anchor(args.n, args.port, out, args.concurrency, args.per_host, args.delay)
    else:
        res = webtext(args.n, args.port, out, args.concurrency, args.per_host, args.delay, args.processes, args.transport)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["rss_mb"] = max(own, kids) / 1024  # the largest process of the tree (the tree's sum is at most procs+2 x)
    print(json.dumps(res))


def med(xs: list[float], fmt: str) -> str:
    return f"{format(statistics.median(xs), fmt)} [{format(min(xs), fmt)}-{format(max(xs), fmt)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,6000,18000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight in all (webtext: workers x processes)")
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--delay", type=float, default=0.2, help="seconds between two request starts to one host")
    ap.add_argument("--processes", type=int, default=0,
                    help="webtext's [fetch] processes (0: automatic, FetchConfig.process_plan)")
    ap.add_argument("--latency", default="0.05,0.4")
    ap.add_argument("--transport", default="", choices=["", "async", "threads"],
                    help="webtext's [fetch] transport (default: the configuration's default)")
    ap.add_argument("--child", choices=["anchor", "webtext"])
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--n", type=int)
    ap.add_argument("--port", type=int)
    ap.add_argument("--out")
    args = ap.parse_args()
    latency = tuple(float(x) for x in args.latency.split(","))
    if args.serve:
        return serve(latency)
    if args.child:
        return child(args)
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", args.latency], stdout=subprocess.PIPE,
                              text=True)
    try:
        port = int(server.stdout.readline())
        sizes = [int(x) for x in args.sizes.split(",")]
        results: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(args.rounds):
            for n in sizes:
                order = ("anchor", "webtext") if rnd % 2 == 0 else ("webtext", "anchor")
                for kind in order:
                    r = measure(kind, n, port, args)
                    results.setdefault((kind, n), []).append(r)
                    print(f"round {rnd + 1} {kind:8s} {n:6d} pages: {r['cpu']:.1f} CPU-s {r['wall']:.1f} s wall "
                          f"{r['pages_per_cpu_s']:.0f} pages/CPU-s {r['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    from pipeline.core.config import FetchConfig

    cores = os.cpu_count() or 1
    plan = FetchConfig(processes=args.processes, workers=max(1, args.concurrency // (args.processes or cores)),
                       **({"transport": args.transport} if args.transport else {})).process_plan(cores)
    procs = plan[0]
    print(f"\n# bench_fetch_throughput {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; latency {args.latency} s, "
          f"{args.concurrency} in flight, {args.per_host} per host, {args.delay} s per-host delay; webtext: {procs} "
          f"process{'es' if procs > 1 else ''} x {plan[1]} in flight, transport {args.transport or 'default'}; "
          f"{args.rounds} rounds, median [min-max]\n")
    print("| pages | crawler | pages per CPU-s | CPU-s per 1k pages | pages/s wall | peak RSS MB (largest process) | "
          "bytes on disk per page |\n|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for kind in ("anchor", "webtext"):
            rs = results[(kind, n)]
            print(f"| {n:,} | {kind} | {med([r['pages_per_cpu_s'] for r in rs], '.0f')} | "
                  f"{med([1000 * r['cpu'] / n for r in rs], '.2f')} | {med([r['pages_per_s'] for r in rs], '.0f')} | "
                  f"{med([r['rss_mb'] for r in rs], '.0f')} | {med([r['bytes_per_page'] for r in rs], '.0f')} |")
    print("\n| pages | webtext / anchor, pages per CPU-s (per round) |\n|---:|---:|")
    all_ratios = []
    for n in sizes:
        ratios = [w["pages_per_cpu_s"] / a["pages_per_cpu_s"] for w, a in zip(results[("webtext", n)], results[("anchor", n)])]
        all_ratios += ratios
        print(f"| {n:,} | {med(ratios, '.2f')} |")
    # CPU = fixed + per_page * n, fitted over the sizes' medians: the fixed part is starting
    # the interpreter(s) and imports (webtext: the parent and a worker process per core)
    fits = {}
    for kind in ("anchor", "webtext"):
        xs = sizes
        ys = [statistics.median(r["cpu"] for r in results[(kind, n)]) for n in sizes]
        if len(xs) > 1:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            fits[kind] = (my - slope * mx, slope)
    if fits:
        print("\n| crawler | fixed CPU-s | CPU-s per 1k pages (fitted) | pages per CPU-s (fitted) |\n|---|---:|---:|---:|")
        for kind, (a0, b1) in fits.items():
            print(f"| {kind} | {a0:.2f} | {1000 * b1:.2f} | {1 / b1:.0f} |")
        print(f"\nwebtext / anchor, fitted pages per CPU-s: {fits['anchor'][1] / fits['webtext'][1]:.2f}")
    big = sizes[-1]
    w = results[("webtext", big)]
    a = results[("anchor", big)]
    per_page_w = statistics.median(r["cpu"] / big for r in w)
    per_page_a = statistics.median(r["cpu"] / big for r in a)
    disk_w = statistics.median(r["bytes_per_page"] for r in w)
    print(f"\nExtrapolated to 20M pages (from {big:,}): webtext {20e6 * per_page_w / 3600:,.0f} CPU-hours "
          f"({20e6 * per_page_w / 3600 / procs:,.0f} h in {procs} process{'es' if procs > 1 else ''} if the web kept up), anchor "
          f"{20e6 * per_page_a / 3600:,.0f} CPU-hours; WARC + outcome logs {20e6 * disk_w / 1e9:,.0f} GB at these "
          f"page sizes (real pages are larger). Ratio over all rounds and sizes: {med(all_ratios, '.2f')}")


if __name__ == "__main__":
    main()
