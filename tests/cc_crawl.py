"""A small Common Crawl, generated: crawls shaped like the real ones, for the index tests.

Each crawl has ``crawl-data/CRAWL/cc-index-table.paths.gz`` listing its index files
``cc-index/table/cc-main/warc/crawl=CRAWL/subset={warc,crawldiagnostics}/part-NNNNN-<uuid>.c000.gz.parquet``
(gzip Parquet, the real column names and types, sorted by ``url_surtkey``, many row
groups, a key range per file; ``fetch_time`` as INT96 as Spark writes it; crawls
before CC-MAIN-2019-47 without ``fetch_redirect``; before CC-MAIN-2016-36 no
crawldiagnostics subset), and WARC files with one gzip member per record under
``crawl-data/CRAWL/segments/SEG/{warc,crawldiagnostics}/``. ``CcBucket`` serves the
folder over HTTP with Range (suffix ranges too) on 127.0.0.1, like data.commoncrawl.org,
counting requests and bytes, and can answer a storm of 503s first.
"""

from __future__ import annotations

import gzip
import io
import random
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import surt
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.demo import LoopbackServer

HTML = "<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paras}</article></body></html>"


def page_html(title: str, n: int = 6) -> bytes:
    paras = "".join(f"<p>{title}: paragraph {i} of a story archived in 2017, with enough words to keep it as a "
                    f"document of its own, as the crawl held it then.</p>" for i in range(n))
    return HTML.format(title=title, paras=paras).encode()


def capture(url: str, when: str, status: int = 200, mime: str = "text/html", body: bytes | None = None,
            location: str | None = None) -> dict:
    """One capture: URL at WHEN ("2017-03-04"), its status, MIME type, body or redirect target."""
    return {"url": url, "time": datetime.strptime(when, "%Y-%m-%d").replace(hour=12, tzinfo=timezone.utc),
            "status": status, "mime": mime, "body": body, "location": location}


def _record(url: str, c: dict) -> bytes:
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    headers = [("Content-Type", c["mime"])]
    if c.get("location"):
        headers.append(("Location", c["location"]))
    reason = {200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found"}.get(c["status"], "Status")
    body = c["body"] if c.get("body") is not None else (page_html(url) if c["status"] == 200 else b"")
    headers.append(("Content-Length", str(len(body))))
    rec = w.create_warc_record(url, "response", payload=io.BytesIO(body),
                               http_headers=StatusAndHeaders(f"{c['status']} {reason}", headers, protocol="HTTP/1.1"),
                               warc_headers_dict={"WARC-Date": c["time"].strftime("%Y-%m-%dT%H:%M:%SZ")})
    w.write_record(rec)
    return buf.getvalue()


def _filler(rng: random.Random, n: int, when: datetime) -> list[dict]:
    """Other sites' captures (index rows only: they share one WARC record, never read)."""
    hosts = [f"filler{h:03d}.example" for h in range(40)]
    return [{"url": f"http://www.{rng.choice(hosts)}/page/{rng.randrange(10**6)}/{i}", "time": when, "status": 200,
             "mime": "text/html", "body": b"<html><body><p>filler</p></body></html>", "location": None,
             "filler": True} for i in range(n)]


def make_crawl(root: Path, crawl: str, captures: list[dict], files: int = 3, rows_per_group: int = 50,
               filler: int = 3000, seed: int = 1) -> dict:
    """Write CRAWL under ROOT; returns {"files": [...], "rows": n}."""
    year, week = int(crawl.split("-")[2]), int(crawl.split("-")[3])
    has_diag = (year, week) >= (2016, 36)
    has_redirect = (year, week) >= (2019, 47)
    rng = random.Random(seed)
    seg = f"1{year}{week:02d}000000.00"
    by_subset: dict[str, list[dict]] = {"warc": [], "crawldiagnostics": []}
    for c in captures + _filler(rng, filler, datetime(year, 1, 15, tzinfo=timezone.utc)):
        subset = "warc" if c["status"] == 200 or not has_diag else "crawldiagnostics"
        if c["status"] != 200 and not has_diag:
            continue  # before 2016-36 no redirect or 404 was archived
        by_subset[subset].append(c)
    listing, written = [], []
    for subset, caps in by_subset.items():
        if not caps:
            continue
        warc_rel = f"crawl-data/{crawl}/segments/{seg}/{subset}/{crawl}-{year}0101000000-00000.warc.gz"
        warc_path = root / warc_rel
        warc_path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        with open(warc_path, "wb") as fh:
            shared = None
            for c in caps:
                if c.get("filler") and shared is not None:
                    rows.append(_row(c, warc_rel, *shared, seg, has_redirect))
                    continue
                data = _record(c["url"], c)
                off = fh.tell()
                fh.write(data)
                if c.get("filler"):
                    shared = (off, len(data))
                rows.append(_row(c, warc_rel, off, len(data), seg, has_redirect))
        rows.sort(key=lambda r: (r["url_surtkey"], r["fetch_time"]))
        chunks = [rows[i * len(rows) // files:(i + 1) * len(rows) // files] for i in range(files)]
        for i, chunk in enumerate(c for c in chunks if c):
            rel = (f"cc-index/table/cc-main/warc/crawl={crawl}/subset={subset}/"
                   f"part-{i:05d}-{uuid.UUID(int=rng.getrandbits(128))}.c000.gz.parquet")
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(chunk, schema=_schema(has_redirect)), p, compression="gzip",
                           row_group_size=rows_per_group, use_deprecated_int96_timestamps=True)
            listing.append(rel)
            written.append(rel)
    lst = root / "crawl-data" / crawl / "cc-index-table.paths.gz"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_bytes(gzip.compress(("\n".join(listing) + "\n").encode()))
    return {"files": written, "rows": sum(len(v) for v in by_subset.values())}


def _schema(has_redirect: bool) -> pa.Schema:
    fields = [("url_surtkey", pa.string()), ("url", pa.string()), ("url_host_name", pa.string()),
              ("url_host_tld", pa.string()), ("url_host_registered_domain", pa.string()), ("url_protocol", pa.string()),
              ("url_port", pa.int32()), ("url_path", pa.string()), ("url_query", pa.string()),
              ("fetch_time", pa.timestamp("us")), ("fetch_status", pa.int16())]
    if has_redirect:
        fields.append(("fetch_redirect", pa.string()))
    fields += [("content_digest", pa.string()), ("content_mime_type", pa.string()), ("content_mime_detected", pa.string()),
               ("warc_filename", pa.string()), ("warc_record_offset", pa.int32()), ("warc_record_length", pa.int32()),
               ("warc_segment", pa.string())]
    return pa.schema(fields)


def _row(c: dict, warc: str, off: int, length: int, seg: str, has_redirect: bool) -> dict:
    from urllib.parse import urlsplit

    u = urlsplit(c["url"])
    host = u.hostname or ""
    row = {"url_surtkey": surt.surt(c["url"]), "url": c["url"], "url_host_name": host,
           "url_host_tld": host.rsplit(".", 1)[-1], "url_host_registered_domain": ".".join(host.split(".")[-2:]),
           "url_protocol": u.scheme, "url_port": u.port, "url_path": u.path or "/", "url_query": u.query or None,
           "fetch_time": c["time"].replace(tzinfo=None), "fetch_status": c["status"],
           "content_digest": "SHA1:" + uuid.uuid4().hex[:32].upper(), "content_mime_type": c["mime"],
           "content_mime_detected": c["mime"] if c["status"] == 200 else None,
           "warc_filename": warc, "warc_record_offset": off, "warc_record_length": length, "warc_segment": seg}
    if has_redirect:
        row["fetch_redirect"] = c.get("location")
    return row


class CcBucket(LoopbackServer):
    """ROOT over HTTP with Range (``bytes=A-B`` and ``bytes=-N``), like data.commoncrawl.org;
    ``storm`` answers that many requests with 503 (Retry-After: 1) first."""

    def __init__(self, root: Path, storm: int = 0):
        self.requests = 0
        self.bytes = 0
        self.storm = storm
        self.log: list[tuple[str, str]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                srv.requests += 1
                if srv.storm > 0:
                    srv.storm -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rel = self.path.lstrip("/").split("?", 1)[0]
                from urllib.parse import unquote

                path = (root / unquote(rel)).resolve()
                if root.resolve() not in path.parents or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                rng = self.headers.get("Range", "")
                srv.log.append((rel, rng))
                if rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    if a == "":
                        start, end = max(0, len(data) - int(b)), len(data) - 1
                    else:
                        start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    body = data[start:end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                srv.bytes += len(body)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
