"""Helpers for the tests. ../shared/data is read in place, never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WEBTEXT_SHARED", ROOT.parent / "shared")) / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def shared_data():
    return shared


# --- a fake Reddit API on 127.0.0.1 for praw ---------------------------------------------

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from flows.demo import LoopbackServer


class FakeReddit(LoopbackServer):
    """Answers praw's token request and subreddit listings from a list of t3 records.

    Pages by ``after``/``limit`` like Reddit, caps a listing at ``cap`` items (Reddit
    keeps ~1,000), and sends ``x-ratelimit-*`` headers."""

    def __init__(self, posts_by_sub: dict[str, list[dict]], cap: int = 1000):
        self.posts = posts_by_sub
        self.cap = cap
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, obj, status=200):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-ratelimit-remaining", "599")
                self.send_header("x-ratelimit-used", "1")
                self.send_header("x-ratelimit-reset", "600")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                fake.requests.append("POST " + self.path)
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                if self.path.startswith("/api/v1/access_token"):
                    self._send({"access_token": "fake-token", "token_type": "bearer", "expires_in": 3600, "scope": "*"})
                else:
                    self._send({"error": 404}, 404)

            def do_GET(self):
                fake.requests.append("GET " + self.path)
                parts = urlsplit(self.path)
                segs = [s for s in parts.path.split("/") if s]
                q = parse_qs(parts.query)
                if len(segs) >= 3 and segs[0] == "r":
                    sub, listing = segs[1], segs[2]
                    posts = list(fake.posts.get(sub.lower(), []))
                    if listing == "top":
                        posts.sort(key=lambda p: -(p.get("score") or 0))
                    else:
                        posts.sort(key=lambda p: -(p.get("created_utc") or 0))
                    posts = posts[: fake.cap]
                    limit = int(q.get("limit", ["25"])[0])
                    after = q.get("after", [None])[0]
                    start = 0
                    if after:
                        ids = ["t3_" + p["id"] for p in posts]
                        start = ids.index(after) + 1 if after in ids else len(posts)
                    page = posts[start : start + limit]
                    nxt = "t3_" + page[-1]["id"] if page and start + limit < len(posts) else None
                    self._send(
                        {
                            "kind": "Listing",
                            "data": {"after": nxt, "before": None, "dist": len(page),
                                     "children": [{"kind": "t3", "data": {**p, "name": "t3_" + p["id"]}} for p in page]},
                        }
                    )
                else:
                    self._send({"error": 404}, 404)

        super().__init__(Handler)

    def praw_overrides(self) -> dict:
        return {"oauth_url": self.url, "reddit_url": self.url, "short_url": self.url}


# --- a real HTTP server on 127.0.0.1 with real pages and hostile ones ----------------------

import gzip as _gzip
import lzma as _lzma
import socket as _socket
import struct as _struct
import time as _time
import zlib as _zlib


def pages_by_url(file: str, keys, first: bool = False) -> dict[str, dict]:
    """Real pages of ../shared/data/html/FILE whose URL holds each of KEYS (the last
    match wins, or the first with FIRST), keyed by KEYS; every key must be found."""
    found = {}
    with _lzma.open(shared("html", file), "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            for key in keys:
                if key in (r["url"] or "") and not (first and key in found):
                    found[key] = r
    missing = [k for k in keys if k not in found]
    assert not missing, f"{file}: no page whose URL holds {missing}"
    return found


def aeb_pages(n: int) -> list[dict]:
    out = []
    with _lzma.open(shared("html", "aeb.jsonl.xz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


class WebServer(LoopbackServer):
    """Serves real pages at /page/<i> and the hostile cases a crawler meets."""

    def __init__(self, pages: list[str]):
        self.pages = pages
        self.hits: dict[str, int] = {}
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body: bytes, ctype="text/html; charset=utf-8", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, head: bytes, slow: bytes, seconds: float = 30.0):
                try:
                    self.wfile.write(head)
                    self.wfile.flush()
                    end = _time.time() + seconds
                    for b in slow:
                        if _time.time() > end:
                            break
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        _time.sleep(0.2)
                except OSError:
                    pass
                self.close_connection = True

            def do_GET(self):
                path = self.path
                srv.hits[path] = srv.hits.get(path, 0) + 1
                if self.headers.get("Authorization"):
                    srv.authorization.append(self.headers["Authorization"])
                if path.startswith("/page/"):
                    i = int(path.split("/")[2])
                    return self._send(200, srv.pages[i].encode("utf-8"))
                if path == "/robots.txt" and not srv.slow_robots:
                    return self._send(200, b"User-agent: *\nDisallow: /private\n", "text/plain")
                if path in ("/slow-headers", "/robots.txt"):  # the status line, then a header byte every 0.2 s
                    return self._trickle(b"HTTP/1.1 200 OK\r\n", b"X-Padding: " + b"a" * 1000)
                if path == "/slow-chunk":  # chunked: headers at once, then the chunk-size line trickles
                    return self._trickle(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n",
                                         b"1" * 1000)
                if path == "/slow":  # trickles one byte every 0.2 s, for at most 8 s
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    end = _time.time() + 8
                    try:
                        while _time.time() < end:
                            self.wfile.write(b"<")
                            self.wfile.flush()
                            _time.sleep(0.2)
                    except OSError:
                        pass
                    return
                if path.startswith("/loop"):
                    n = int(path.split("=")[1]) if "=" in path else 0
                    self.send_response(302)
                    self.send_header("Location", f"/loop?n={n + 1}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/redirect":
                    self.send_response(301)
                    self.send_header("Location", "/page/0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/huge":  # claims 5 GB
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(5 * 10**9))
                    self.end_headers()
                    try:
                        self.wfile.write(b"<html>" + b"x" * 65536)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if path == "/bomb":  # 200 MB of zeros, gzipped to ~200 KB
                    return self._send(200, srv.bomb, extra=[("Content-Encoding", "gzip")])
                if path == "/latin1":  # says utf-8, is latin-1
                    body = ("<html><head><title>Caf\u00e9</title></head><body><article><p>"
                            + "Le caf\u00e9 est tr\u00e8s bon, d\u00e9j\u00e0 vu. " * 40 + "</p></article></body></html>")
                    return self._send(200, body.encode("latin-1"), "text/html; charset=utf-8")
                if path == "/binary":
                    return self._send(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "text/html")
                if path == "/image":
                    return self._send(200, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png")
                if path == "/flaky":  # 429 first, then the page
                    if srv.hits[path] == 1:
                        return self._send(429, b"slow down", "text/plain", [("Retry-After", "0")])
                    return self._send(200, srv.pages[0].encode("utf-8"))
                if path == "/utf16":  # UTF-16 with a byte-order mark (NUL bytes everywhere)
                    return self._send(200, srv.pages[2].encode("utf-16"), "text/html; charset=utf-16")
                if path == "/raw-deflate":  # Content-Encoding: deflate without the zlib wrapper
                    c = _zlib.compressobj(6, _zlib.DEFLATED, -_zlib.MAX_WBITS)
                    return self._send(200, c.compress(srv.pages[3].encode()) + c.flush(), extra=[("Content-Encoding", "deflate")])
                if path == "/says-gzip":  # claims gzip, sends the page as it is
                    return self._send(200, srv.pages[4].encode(), extra=[("Content-Encoding", "gzip")])
                if path == "/outage":  # 503 while the test says the site is down
                    if srv.outage:
                        return self._send(503, b"down for maintenance", "text/plain")
                    return self._send(200, srv.pages[1].encode("utf-8"))
                if path == "/reset":  # connection reset by peer
                    self.connection.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if path == "/private":
                    return self._send(200, srv.pages[0].encode("utf-8"))
                return self._send(404, b"not found", "text/plain")

        self.outage = True
        self.slow_robots = False
        self.authorization: list[str] = []
        self.bomb = _gzip.compress(b"\0" * (200 * 2**20), 9)
        super().__init__(Handler)


def test_fetch_config(**kw):
    from pipeline.core.config import FetchConfig

    base = dict(allow_private_addresses=True, respect_robots=False, per_host_delay_s=0.0, per_host_concurrency=8,
                workers=8, total_timeout_s=2.0, connect_timeout_s=1.0, max_bytes=2**20, retries=2, backoff_s=0.05)
    base.update(kw)
    return FetchConfig(**base)


test_fetch_config.__test__ = False


# --- a real pywb wayback (the archive tests) ------------------------------------------------

import contextlib as _contextlib
import http.client as _http_client
import shutil as _shutil
import subprocess as _subprocess


def pywb_bin() -> Path:
    """The directory holding pywb's ``wayback`` and ``wb-manager``: $WEBTEXT_PYWB_BIN,
    ./.venv-pywb/bin (pywb pins redis==2.10.6, so it lives in its own venv) or PATH;
    skips the test, saying how to install it, when there is none."""
    for d in (os.environ.get("WEBTEXT_PYWB_BIN"), ROOT / ".venv-pywb" / "bin",
              Path(_shutil.which("wayback")).parent if _shutil.which("wayback") else None):
        if d and (Path(d) / "wayback").is_file() and (Path(d) / "wb-manager").is_file():
            return Path(d)
    pytest.skip("pywb not installed: the README's test command makes .venv-pywb (python3 -m venv .venv-pywb && "
                ".venv-pywb/bin/pip install -c constraints-pywb.txt pywb); or set WEBTEXT_PYWB_BIN")


def free_port() -> int:
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@_contextlib.contextmanager
def wayback(root: Path, collections: dict[str, Path]):
    """A real pywb ``wayback`` on 127.0.0.1 serving COLLECTIONS ({name: WARC file}),
    made with ``wb-manager init/add`` in ROOT; yields its port once its CDX answers."""
    bindir = pywb_bin()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for coll, warc in collections.items():
        _subprocess.run([bindir / "wb-manager", "init", coll], cwd=root, check=True, capture_output=True, env=env)
        _subprocess.run([bindir / "wb-manager", "add", coll, str(warc)], cwd=root, check=True, capture_output=True,
                        env=env)
    port = free_port()
    probe = f"/{next(iter(collections))}/cdx?url=example.org&output=json"
    with open(root / "wayback.log", "wb") as log:
        proc = _subprocess.Popen([bindir / "wayback", "-p", str(port), "-b", "127.0.0.1"], cwd=root, stdout=log,
                                 stderr=_subprocess.STDOUT, env=env)
        try:
            deadline = _time.time() + 30
            while True:
                try:
                    c = _http_client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", probe)
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or _time.time() > deadline:
                    raise RuntimeError(f"pywb did not start: {(root / 'wayback.log').read_text()[-2000:]}")
                _time.sleep(0.2)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except _subprocess.TimeoutExpired:
                proc.kill()


def outcome_lines(fetch_dir) -> list[bytes]:
    """Every line of a fetch directory's outcome logs (the partitions' and a first-layout log)."""
    from pipeline.fetch.outcomes import outcome_files

    return [l for p in outcome_files(fetch_dir) for l in p.read_bytes().splitlines() if l.strip()]


class MotoS3:
    """A real S3 API (moto's ``moto_server``) as its own process on 127.0.0.1, and the
    AWS environment that points the AWS SDKs (and pyarrow, through
    pipeline/fetch/ccs3.py) at it: ``with MotoS3() as s3: s3.env ...``."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_REGION": "us-east-1"}
        self.proc = None

    def __enter__(self):
        import shutil
        import subprocess
        import sys
        import time
        import urllib.request

        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if exe is None:
            pytest.skip("moto_server is not installed (pip install 'moto[server]'; the test extra has it)")
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def upload(self, bucket: str, root: Path) -> int:
        """Every file under ROOT into BUCKET, keyed by its path under ROOT."""
        c = self.client()
        c.create_bucket(Bucket=bucket)
        n = 0
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                c.upload_file(str(p), bucket, p.relative_to(root).as_posix())
                n += 1
        return n
