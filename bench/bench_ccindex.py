"""The bulk lookup of links in Common Crawl's columnar index (pipeline/fetch/ccindex.py)
against a plain DuckDB join over the same files, in the same run.

A generated crawl shaped like Common Crawl's (gzip Parquet sorted by url_surtkey, the
real column names, 4 files of row groups of ROW_GROUP rows) is served by a Range-capable
HTTP server on 127.0.0.1 in a process of its own (its CPU is not the client's). At each
size (index rows) and two densities of links, the same links are looked up by

- webtext: ``lookup_crawl`` over HTTP (footers, then the row groups that can hold a key:
  "seek" at low density, "scan" at high), matching each link's key with or without its
  query and by URL level;
- DuckDB 1.5.5 with httpfs (loaded offline from the duckdb-extension-httpfs wheel):
  ``SELECT ... FROM read_parquet([...], union_by_name=true) r JOIN links l ON
  r.url_surtkey = l.key`` (exact keys only: less work than webtext's matching).

Reported per run: links, matches, HTTP requests, MB read, bytes read per link, client
CPU-s and wall; the median of --repeat runs with the range. Low density: one link in
~10,000 index rows (a monthly build's new links); WebText-like: links hitting every row
group (WebText's ~45M links against a crawl's ~2.5 billion rows, ~1.8% of the rows,
meet nearly every row group).

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    .venv/bin/python bench/bench_ccindex.py [--sizes 100000,400000,1600000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import sys
import tempfile
import time
from multiprocessing import Process, Queue
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

ROW_GROUP = 5000
FILES = 4
CRAWL = "CC-MAIN-2017-13"


def url_of(i: int) -> tuple[str, str]:
    """A synthetic URL and its url_surtkey (surt.surt's key of it, checked below)."""
    host, page = i % 5000, i
    return f"http://host{host:04d}.example/news/{page}", f"example,host{host:04d})/news/{page}"


def make_index(root: Path, rows: int) -> list[str]:
    import gzip

    import surt

    for i in (0, 7, 4999, rows - 1):
        assert surt.surt(url_of(i)[0]) == url_of(i)[1]
    pairs = sorted((url_of(i) for i in range(rows)), key=lambda p: p[1])
    ts = pa.array([1490000000_000000] * rows, pa.timestamp("us"))
    t = pa.table({
        "url_surtkey": [k for _, k in pairs], "url": [u for u, _ in pairs],
        "url_host_name": [u.split("/")[2] for u, _ in pairs], "url_protocol": ["http"] * rows,
        "fetch_time": ts, "fetch_status": pa.array([200] * rows, pa.int16()),
        "content_mime_type": ["text/html"] * rows, "content_mime_detected": ["text/html"] * rows,
        "warc_filename": [f"crawl-data/{CRAWL}/segments/1/warc/{CRAWL}-{i % 640:05d}.warc.gz" for i in range(rows)],
        "warc_record_offset": pa.array([(i * 7919) % 10**9 for i in range(rows)], pa.int32()),
        "warc_record_length": pa.array([20000 + i % 9000 for i in range(rows)], pa.int32()),
        "warc_segment": ["1"] * rows,
    })
    paths = []
    for f in range(FILES):
        rel = f"cc-index/table/cc-main/warc/crawl={CRAWL}/subset=warc/part-{f:05d}-bench.c000.gz.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        a, b = f * rows // FILES, (f + 1) * rows // FILES
        pq.write_table(t.slice(a, b - a), root / rel, compression="gzip", row_group_size=ROW_GROUP)
        paths.append(rel)
    lst = root / "crawl-data" / CRAWL / "cc-index-table.paths.gz"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_bytes(gzip.compress(("\n".join(paths) + "\n").encode()))
    return paths


def serve(root: str, q: Queue, back: Queue) -> None:
    from cc_crawl import CcBucket

    b = CcBucket(Path(root))
    b.__enter__()
    back.put(b.port)
    while True:
        cmd = q.get()
        if cmd == "stats":
            back.put((b.requests, b.bytes))
            b.requests = b.bytes = 0
        elif cmd == "stop":
            return


class Server:
    def __init__(self, root: Path):
        self.q: Queue = Queue()
        self.back: Queue = Queue()
        self.p = Process(target=serve, args=(str(root), self.q, self.back), daemon=True)
        self.p.start()
        self.port = self.back.get(timeout=60)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stats(self) -> tuple[int, int]:
        self.q.put("stats")
        return self.back.get(timeout=60)

    def stop(self) -> None:
        self.q.put("stop")
        self.p.join(10)


def links_for(rows: int, density: str, rng: random.Random) -> list[dict]:
    from pipeline.core.urls import normalize_url, url_id

    n = max(2, rows // 10_000) if density == "low" else max(2, rows // 50)  # 1 in 10k rows / 2% of the rows
    held = rng.sample(range(rows), n // 2 + n % 2)
    urls = [url_of(i)[0] for i in held] + [f"http://gone{i}.example/x/{i}" for i in range(n // 2)]
    return [{"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u)} for u in urls]


def run_webtext(server: Server, links: list[dict]) -> dict:
    import requests

    from pipeline.fetch.ccindex import FooterCache, HttpSource, lookup_crawl

    s = requests.Session()

    def get(url, headers, limit):
        r = s.get(url, headers=headers, timeout=60)
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content

    server.stats()
    c0, t0 = time.process_time(), time.perf_counter()
    res = lookup_crawl(HttpSource(server.url, get), FooterCache(None), CRAWL, links)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    req, byt = server.stats()
    return {"matches": res.rows.num_rows, "requests": req, "bytes": byt, "cpu_s": cpu, "wall_s": wall,
            "strategy": "+".join(f"{k}:{v}" for k, v in sorted(res.strategies.items()))}


def run_duckdb(server: Server, paths: list[str], links: list[dict]) -> dict:
    import duckdb
    import duckdb_extension_httpfs

    from pipeline.fetch.ccindex import surt_key

    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", "*",
                                 "httpfs.duckdb_extension"))[0]
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    con.execute("SET threads = 1")  # one core, as webtext's lookup of one file list
    keys = pa.table({"key": [surt_key(lk["url"]) for lk in links]})
    con.register("links", keys)
    files = ", ".join(f"'{server.url}{p}'" for p in paths)
    server.stats()
    c0, t0 = time.process_time(), time.perf_counter()
    n = con.execute(f"""SELECT r.url_surtkey, r.url, r.fetch_time, r.fetch_status, r.content_mime_type,
        r.content_mime_detected, r.warc_filename, r.warc_record_offset, r.warc_record_length
        FROM read_parquet([{files}], union_by_name=true) r JOIN links l ON r.url_surtkey = l.key""").to_arrow_table().num_rows
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    req, byt = server.stats()
    con.close()
    return {"matches": n, "requests": req, "bytes": byt, "cpu_s": cpu, "wall_s": wall, "strategy": "join"}


def med(runs: list[dict], key: str) -> str:
    v = [r[key] for r in runs]
    m = statistics.median(v)
    if key in ("cpu_s", "wall_s"):
        return f"{m:.2f} [{min(v):.2f}-{max(v):.2f}]"
    return f"{m:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,400000,1600000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()
    rng = random.Random(1)
    rows_out = []
    print(f"{'rows':>9} {'density':>8} {'tool':>8} {'links':>7} {'matches':>7} {'requests':>8} {'MB read':>8} "
          f"{'B/link':>9} {'CPU-s [range]':>18} {'wall-s [range]':>18}  strategy")
    for size in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = make_index(root, size)
            index_bytes = sum((root / p).stat().st_size for p in paths)
            server = Server(root)
            try:
                for density in ("low", "webtext"):
                    links = links_for(size, density, rng)
                    for tool in ("webtext", "duckdb"):
                        runs = [run_webtext(server, links) if tool == "webtext" else run_duckdb(server, paths, links)
                                for _ in range(args.repeat)]
                        r0 = runs[0]
                        mb = statistics.median(r["bytes"] for r in runs) / 1e6
                        print(f"{size:>9,} {density:>8} {tool:>8} {len(links):>7,} {r0['matches']:>7,} "
                              f"{med(runs, 'requests'):>8} {mb:>8.2f} {mb * 1e6 / len(links):>9,.0f} "
                              f"{med(runs, 'cpu_s'):>18} {med(runs, 'wall_s'):>18}  {r0['strategy']}", flush=True)
                        rows_out.append({"rows": size, "index_bytes": index_bytes, "density": density, "tool": tool,
                                         "links": len(links), "runs": runs})
            finally:
                server.stop()
        print(f"{size:>9,} rows: index files {index_bytes / 1e6:.1f} MB in {FILES} files, row groups of {ROW_GROUP:,}")
    if args.json:
        args.json.write_text(json.dumps(rows_out, indent=1, default=str))


if __name__ == "__main__":
    main()
