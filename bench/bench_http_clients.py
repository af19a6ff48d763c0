"""CPU per request of candidate HTTP clients for the fetch stage, on loopback.

Server: an asyncio HTTP/1.1 server in its own process (no latency, ~3 KB pages,
keep-alive). Each client runs in a fresh subprocess making N GETs over H host names
(all mapped to the server), C in flight, 2 per host; CPU = the client process's
user + sys (getrusage RUSAGE_CHILDREN). The per-request figure is the difference
between N and N/4 requests, so the interpreter's start and imports cancel out.
Clients: webtext's asyncio client (pipeline/fetch/h1client.py through AsyncFetcher),
aiohttp, webtext's threaded urllib3 client, httpx.

    .venv/bin/python bench/bench_http_clients.py [--n 4000] [--rounds 3]
"""
import asyncio
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BODY = b"<html><body>" + b"<p>the city council said on tuesday that a report</p>" * 60 + b"</body></html>"


def serve():
    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n"
                             b"Connection: keep-alive\r\n\r\n" % len(BODY) + BODY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()

    asyncio.run(main())


def urls(n, hosts):
    return [f"http://h{i % hosts}.bench.test/article/{i}" for i in range(n)]


async def run_limited(coros_fn, items, conc, per_host):
    sem = asyncio.Semaphore(conc)
    host_sems = {}

    async def one(u):
        h = u.split("/")[2]
        hs = host_sems.setdefault(h, asyncio.Semaphore(per_host))
        async with sem, hs:
            return await coros_fn(u)

    return await asyncio.gather(*(one(u) for u in items))


def client(kind, port, n, hosts, conc):
    us = urls(n, hosts)
    if kind == "aiohttp":
        import aiohttp

        class Resolver(aiohttp.abc.AbstractResolver):
            async def resolve(self, host, port_=0, family=0):
                return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 0}]

            async def close(self):
                pass

        async def main():
            conn = aiohttp.TCPConnector(limit=conc, limit_per_host=2, resolver=Resolver())
            async with aiohttp.ClientSession(connector=conn, auto_decompress=False) as s:
                async def get(u):
                    async with s.get(u, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30, sock_connect=10,
                                                                                             sock_read=10)) as r:
                        body = await r.content.read(2**20 + 1)
                        hdrs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.raw_headers]
                        return r.status, len(body), len(hdrs)
                return await run_limited(get, us, conc, 2)
        res = asyncio.run(main())
    elif kind == "httpx":
        import httpx

        async def main():
            transport = httpx.AsyncHTTPTransport(retries=0)
            async with httpx.AsyncClient(transport=transport, limits=httpx.Limits(max_connections=conc,
                                                                                   max_keepalive_connections=conc)) as c:
                async def get(u):
                    u2 = u.replace(u.split("/")[2], f"127.0.0.1:{port}")
                    async with c.stream("GET", u2, headers={"Host": u.split("/")[2]}) as r:
                        body = b""
                        async for chunk in r.aiter_raw():
                            body += chunk
                        return r.status_code, len(body), len(r.headers.raw)
                return await run_limited(get, us, conc, 2)
        res = asyncio.run(main())
    elif kind == "h1client":
        from pipeline.core.config import FetchConfig
        from pipeline.fetch.aiofetch import AsyncFetcher

        cfg = FetchConfig(allow_private_addresses=True, respect_robots=False, per_host_delay_s=0.0, workers=conc,
                          resolve={f"h{i}.bench.test": f"127.0.0.1:{port}" for i in range(hosts)})

        async def main():
            f = AsyncFetcher(cfg)

            async def get(u):
                r = await f._aget(u, cfg.max_bytes)
                return r.status, len(r.body), len(r.headers)
            out = await run_limited(get, us, conc, 2)
            f.close()
            return out
        res = asyncio.run(main())
    elif kind == "urllib3-threads":
        from concurrent.futures import ThreadPoolExecutor

        from pipeline.core.config import FetchConfig
        from pipeline.fetch.webclient import Fetcher

        cfg = FetchConfig(allow_private_addresses=True, respect_robots=False, per_host_delay_s=0.0, workers=conc,
                          per_host_concurrency=2, resolve={f"h{i}.bench.test": f"127.0.0.1:{port}" for i in range(hosts)})
        f = Fetcher(cfg)

        def get(u):
            h = u.split("/")[2]
            f.throttle.acquire(h)
            try:
                r = f._get(u, cfg.max_bytes)
            finally:
                f.throttle.release(h)
            return r.status, len(r.body), len(r.headers)
        with ThreadPoolExecutor(conc) as pool:
            res = list(pool.map(get, us))
    assert all(r[0] == 200 and r[1] == len(BODY) for r in res), res[:3]
    print(json.dumps({"n": len(res)}))


def cpu_of(kind: str, port: int, n: int, hosts: int, conc: int) -> float:
    """CPU-seconds of one client process (fresh interpreter) making N GETs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, __file__, "client", kind, str(port), str(n), str(hosts), str(conc)],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main():
    import argparse
    import statistics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="GETs per measurement (and N/4 for the fixed part)")
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", default="h1client,aiohttp,urllib3-threads,httpx")
    args = ap.parse_args()
    kinds = args.clients.split(",")
    server = subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    res = {k: [] for k in kinds}
    q = max(1, args.n // 4)
    try:
        for r in range(args.rounds):
            for k in (kinds if r % 2 == 0 else kinds[::-1]):
                small = cpu_of(k, port, q, args.hosts, args.concurrency)
                big = cpu_of(k, port, args.n, args.hosts, args.concurrency)
                per = 1e6 * (big - small) / (args.n - q)  # the interpreter and imports cancel out
                res[k].append(per)
                print(f"round {r + 1} {k:16s} {big:.2f} CPU-s for {args.n}, {small:.2f} for {q}: {per:.0f} us/request",
                      flush=True)
    finally:
        server.terminate()
    print(f"\nCPU per GET on loopback ({args.n} GETs, {args.hosts} hosts, {args.concurrency} in flight, 2 per host), "
          f"median of {args.rounds} rounds [min-max]:")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}] us |")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    elif sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
