"""The asyncio fetch transport (``[fetch] transport = "async"``, pipeline/fetch/aiofetch.py
and h1client.py) against the threaded one (``"threads"``, urllib3): the same outcomes and
the same WARC bytes on the same answers, plain and odd; its own deadlines, address pinning,
keep-alive and group commits."""

import gzip
import io
import os
import re
import socket
import threading
import time
import zlib

import orjson
import pytest
from webtext_testlib import WebServer, aeb_pages, test_fetch_config

from pipeline.core.config import FetchConfig
from pipeline.core.errors import ConfigError
from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch.outcomes import read_outcomes
from pipeline.fetch.stage import fetch_links

PAGE = (b"<html><head><title>A page</title></head><body><article><h1>A page</h1>"
        + b"<p>Words enough to be a page of its own, and not a parking page either.</p>" * 40
        + b"</article></body></html>")


def _chunked(body: bytes, size: int = 700) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x;ext=1\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


def _head(status: bytes, *headers: bytes) -> bytes:
    return status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


HTML = b"Content-Type: text/html; charset=utf-8"
# path -> (raw answer, whether the server closes the connection after it)
ANSWERS = {
    "/plain": (_head(b"HTTP/1.1 200 OK", HTML, b"Content-Length: %d" % len(PAGE)) + PAGE, False),
    "/dup": (_head(b"HTTP/1.1 200 OK", b"Set-Cookie: a=1", HTML, b"set-cookie: b=2", b"X-Tab:\t  spaced  ",
                   b"SET-COOKIE: c=3", b"Content-Length: %d" % len(PAGE)) + PAGE, False),
    "/chunked": (_head(b"HTTP/1.1 200 OK", HTML, b"Transfer-Encoding: chunked") + _chunked(PAGE), False),
    "/http10": (_head(b"HTTP/1.0 200 OK", HTML) + PAGE, True),
    "/folded": (_head(b"HTTP/1.1 200 Fine", HTML, b"X-Folded: first", b"   second", b"Content-Length: %d" % len(PAGE))
                + PAGE, False),
    "/noreason": (_head(b"HTTP/1.1 404", b"Content-Type: text/plain", b"Content-Length: 4") + b"gone", False),
    "/bare-lf": (b"HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: %d\n\n" % len(PAGE) + PAGE, False),
    "/latin": (_head(b"HTTP/1.1 200 OK", HTML, b"X-Name: caf\xe9", b"Content-Length: %d" % len(PAGE)) + PAGE, False),
    "/big": (_head(b"HTTP/1.1 200 OK", HTML, b"Content-Length: 999999999") + PAGE, True),
    "/bigchunked": (_head(b"HTTP/1.1 200 OK", HTML, b"Transfer-Encoding: chunked") + _chunked(PAGE * 40, 4000), True),
    "/short": (_head(b"HTTP/1.1 200 OK", HTML, b"Content-Length: %d" % (len(PAGE) + 100)) + PAGE, True),
    "/gzip": (_head(b"HTTP/1.1 200 OK", HTML, b"Content-Encoding: gzip",
                    b"Content-Length: %d" % len(gzip.compress(PAGE, mtime=0))) + gzip.compress(PAGE, mtime=0), False),
    "/redirect": (_head(b"HTTP/1.1 302 Found", b"Location: /plain", b"Content-Length: 0"), False),
    "/nocontent": (_head(b"HTTP/1.1 204 No Content", b"X-A: b"), False),
    "/continue": (_head(b"HTTP/1.1 100 Continue", b"X-Skip: me") + _head(b"HTTP/1.1 200 OK", HTML, b"Content-Length: %d"
                                                                      % len(PAGE)) + PAGE, False),
    "/garbage": (b"SPDY/9 what\r\n\r\n", True),
    "/many": (_head(b"HTTP/1.1 200 OK", *[b"X-H%d: v" % i for i in range(101)], b"Content-Length: 2") + b"hi", False),
    "/ragged-head": (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Last: cut", True),
}


class RawServer:
    """Answers GET requests on 127.0.0.1 with fixed raw bytes (ANSWERS), keep-alive where
    the answer allows; counts connections and requests per path."""

    def __init__(self, answers=ANSWERS, host: str = "127.0.0.1", port: int = 0):
        self.answers = answers
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.hits: dict[str, int] = {}
        self.requests: list[bytes] = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.requests.append(head)
                path = head.split(b" ")[1].decode()
                self.hits[path] = self.hits.get(path, 0) + 1
                answer, close = self.answers.get(path, (_head(b"HTTP/1.1 404 Not Found", b"Content-Length: 0"), False))
                conn.sendall(answer)
                if close:
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.sock.close()


def rows_for(base, paths):
    return [{"id": url_id(normalize_url(base + p)), "url": base + p, "url_norm": normalize_url(base + p)} for p in paths]


def warc_members(fetch_dir):
    """Every gzip member of the fetch directory's WARC files, decompressed, with the
    per-run WARC-Record-ID, WARC-Concurrent-To and WARC-Date values masked; by URI."""
    out: dict[str, list[bytes]] = {}
    for w in sorted((fetch_dir / "warc").glob("*.warc.gz")):
        data = w.read_bytes()
        while data:
            d = zlib.decompressobj(zlib.MAX_WBITS + 16)
            member = d.decompress(data)
            data = d.unused_data
            member = re.sub(rb"(WARC-Record-ID|WARC-Concurrent-To): <urn:uuid:[0-9a-f-]+>", rb"\1: <id>", member)
            member = re.sub(rb"WARC-Date: [0-9TZ:-]+", b"WARC-Date: <date>", member)
            uri = re.search(rb"WARC-Target-URI: (\S+)", member).group(1).decode()
            out.setdefault(uri, []).append(member)
    return out


def test_the_async_transport_is_the_default_and_threads_can_be_chosen():
    from pipeline.fetch.crawl import uses_async

    assert FetchConfig().transport == "async" and uses_async(FetchConfig())
    assert not uses_async(FetchConfig(transport="threads"))
    assert not uses_async(FetchConfig(proxy="http://127.0.0.1:3128"))  # a proxy: the threaded transport
    from types import SimpleNamespace

    assert not uses_async(SimpleNamespace(transport="async", source="archive", proxy=None))  # the archives' client
    with pytest.raises(ConfigError, match="fetch.transport"):
        FetchConfig(transport="curl").validate()


def test_both_transports_give_the_same_outcomes_and_the_same_warc_bytes(tmp_path):
    """Plain, chunked, HTTP/1.0, folded, bare-LF, Latin-1, duplicate and odd headers,
    caps, short bodies, 1xx, 204, garbage: the same outcome and the same WARC records
    (byte for byte but for record ids and dates) from either transport."""
    paths = list(ANSWERS)
    with RawServer() as srv:
        rows = rows_for(srv.url, paths)
        for transport in ("threads", "async"):
            fetch_links(rows, tmp_path / transport, test_fetch_config(transport=transport, retries=1, max_bytes=100_000,
                                                                      partitions=1))
    outs = {t: read_outcomes(tmp_path / t) for t in ("threads", "async")}
    keep = ("outcome", "status", "final_url", "content_type", "retries", "redirects", "limits")
    for p in paths:
        key = normalize_url(srv.url + p)
        a, b = outs["threads"][key], outs["async"][key]
        assert {k: a.get(k) for k in keep} == {k: b.get(k) for k in keep}, p
        assert ("warc_file" in a) == ("warc_file" in b), p
    expected = {"/plain": "ok", "/dup": "ok", "/chunked": "ok", "/http10": "ok", "/folded": "ok", "/noreason": "http_404",
                "/bare-lf": "ok", "/latin": "ok", "/big": "too_large", "/bigchunked": "too_large",
                "/short": "connection_error", "/gzip": "ok", "/redirect": "ok", "/nocontent": "ok",
                "/continue": "ok", "/garbage": "connection_error", "/many": "connection_error", "/ragged-head": "ok"}
    assert {p: outs["async"][normalize_url(srv.url + p)]["outcome"] for p in paths} == expected
    threads, asyn = warc_members(tmp_path / "threads"), warc_members(tmp_path / "async")
    assert threads.keys() == asyn.keys() and len(threads) >= 15
    for uri in threads:
        assert sorted(threads[uri]) == sorted(asyn[uri]), uri
    big = asyn[srv.url + "/big"][0]
    assert b"WARC-Truncated: length" in big and big.endswith(b"\r\n\r\n\r\n")  # kept, with an empty body
    folded = asyn[srv.url + "/folded"][0]
    assert b"X-Folded: first second\r\n" in folded


def test_warc_pair_is_byte_for_byte_what_warcio_writes(monkeypatch):
    import uuid

    from pipeline.fetch.warcstore import WarcSink, warc_pair
    from pipeline.fetch.webclient import Response

    req = [("User-Agent", "webtext/0.1"), ("Accept", "text/html"), ("Accept-Encoding", "gzip, deflate")]
    cases = [
        Response("http://a.example/x?q=1", 200, "OK", [("Content-Type", "text/html")], PAGE, None, "HTTP/1.1", req),
        Response("http://a.example/", 404, "", [], b"", None, "HTTP/1.0", req),
        Response("http://a.example/big", 200, "OK", [("Content-Length", "99")], PAGE[:50], "length", "HTTP/1.1", req),
        Response("http://a.example/d", 200, "OK", [("Set-Cookie", "a"), ("Set-Cookie", "b"), ("X", " y ")],
                 bytes(range(256)) * 300, None, "HTTP/1.1", []),
    ]
    for resp in cases:
        for request in (True, False):
            ids = iter(range(10))
            monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(ids)))
            ours = warc_pair(resp, "2026-12-07T10:00:00Z", request)
            ids = iter(range(10))
            theirs = WarcSink._warcio_pair(resp, "2026-12-07T10:00:00Z", None, request)
            assert ours == theirs, resp.url
    latin = Response("http://a.example/", 200, "OK", [("X-Name", "caf\xe9")], b"x", None, "HTTP/1.1", req)
    assert warc_pair(latin, "2026-12-07T10:00:00Z") is None  # warcio percent-encodes it: warcio writes it


def test_headers_and_request_targets_are_read_as_http_client_and_urllib3_do():
    import http.client

    from urllib3._collections import HTTPHeaderDict
    from urllib3.util import parse_url

    from pipeline.fetch.h1client import ConnectionFailed, parse_headers, request_target

    fold = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")
    blocks = [b"A: 1\r\nb: 2\r\na: 3\r\nC:4\r\n\r\n", b"X:   lead and trail  \r\n\r\n", b"\r\n",
              b"X: a\r\n b\r\nY: c\r\n\r\n", b"X: a\nY: b\n\n", b"Bad Line\r\nX: y\r\n\r\n", b"X-\xe9: \xff\r\n\r\n",
              b"K: v\rw\r\n\r\n", b":empty\r\nX: y\r\n\r\n"]
    for block in blocks:
        msg = http.client.parse_headers(io.BytesIO(block))
        want = list(HTTPHeaderDict([(k, fold.sub(" ", v) if "\r\n" in v else v) for k, v in msg.items()]).items())
        assert parse_headers(block)[0] == want, block
    with pytest.raises(ConnectionFailed, match="100 headers"):
        parse_headers(b"".join(b"X%d: v\r\n" % i for i in range(101)) + b"\r\n")
    urls = ["http://a.example/x", "http://A.Example:80/x?y=1&z=%2F", "https://a.example:8443/", "http://a.example",
            "http://a.example/a/./b/../c", "http://a.example/caf\u00e9 x?q=\u00e9", "http://a.example/x?",
            "http://a.example/%2f%zz", "http://b\u00fccher.example/", "http://[::1]:8080/x", "http://a.example./p"]
    for url in urls:
        scheme, host, port, target, header = request_target(url)
        u = parse_url(url)
        assert target == u.request_uri, url
        assert port == (u.port or (443 if u.scheme == "https" else 80)), url
        name = u.host.strip("[]").rstrip(".")  # http.client's Host header: no default port, IPv6 in brackets
        name = f"[{name}]" if ":" in name else name
        assert header == (name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"), url


def test_a_trickling_server_is_cut_at_the_deadline_on_the_async_transport(tmp_path):
    """Headers or a body sent a byte at a time for 30 s: each attempt ends at
    total_timeout_s, recorded as a time-out, never as what had arrived."""
    pages = [p["html"] for p in aeb_pages(2)]
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, ["/slow", "/slow-headers", "/slow-chunk"])
        t0 = time.monotonic()
        fetch_links(rows, tmp_path, test_fetch_config(transport="async", total_timeout_s=1.5, retries=2))
        elapsed = time.monotonic() - t0
    out = read_outcomes(tmp_path)
    assert {r["outcome"] for r in out.values()} == {"timeout"}
    assert all("1.5s" in r["error"] for r in out.values())
    assert elapsed < 8, elapsed  # three URLs at once, one attempt each (a time-out is not retried)


def test_dns_rebinding_cannot_move_an_async_connection_to_a_private_address(tmp_path, monkeypatch):
    """The name answers the check with an allowed address, then 127.0.0.1: the async
    transport connects to the checked address only (127.0.0.2 stands for a public one)."""
    import pipeline.fetch.netsafety as netsafety

    answers = {"n": 0}
    secret = {"/plain": (_head(b"HTTP/1.1 200 OK", HTML, b"Content-Length: 6") + b"SECRET", False)}
    with RawServer(secret) as private, RawServer(ANSWERS, "127.0.0.2", private.port) as public:
        real = socket.getaddrinfo

        def rebinding(host, *a, **k):
            if host == "rebind.test":
                answers["n"] += 1
                ip = "127.0.0.2" if answers["n"] == 1 else "127.0.0.1"
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, private.port))]
            return real(host, *a, **k)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        monkeypatch.setattr(netsafety, "is_public_address", lambda ip: ip == "127.0.0.2")
        url = f"http://rebind.test:{private.port}/plain"
        rows = [{"id": url_id(normalize_url(url)), "url": url, "url_norm": normalize_url(url)}]
        fetch_links(rows, tmp_path, test_fetch_config(allow_private_addresses=False, retries=0, transport="async"))
    rec = read_outcomes(tmp_path)[rows[0]["url_norm"]]
    assert rec["outcome"] == "ok" and public.hits == {"/plain": 1} and private.hits == {}
    assert any(b"Host: rebind.test:%d" % private.port in r for r in public.requests)


def test_connections_are_kept_alive_and_a_cut_one_is_not_reused(tmp_path):
    paths = [f"/plain?{i}" for i in range(12)]
    answers = dict(ANSWERS)
    for p in paths:
        answers[p] = ANSWERS["/plain"]
    with RawServer(answers) as srv:
        fetch_links(rows_for(srv.url, paths), tmp_path / "a",
                    test_fetch_config(transport="async", per_host_concurrency=1, workers=4))
        assert sum(srv.hits.values()) == 12 and srv.connections == 1  # one connection, twelve requests
        before = srv.connections
        fetch_links(rows_for(srv.url, ["/big", "/plain?0", "/plain?1"]), tmp_path / "b",
                    test_fetch_config(transport="async", per_host_concurrency=1, workers=1, max_bytes=100_000))
        assert srv.connections - before == 2  # the capped answer's connection was closed, not reused
    assert {r["outcome"] for r in read_outcomes(tmp_path / "a").values()} == {"ok"}


class SlowAnswers(RawServer):
    """RawServer that notes when it accepts each connection and answers after 0.15 s."""

    def __init__(self, answers):
        self.accepted: list[float] = []
        super().__init__(answers)

    def _serve(self, conn):
        self.accepted.append(time.monotonic())
        time.sleep(0.15)
        super()._serve(conn)


def test_new_connections_to_a_host_open_one_after_another(tmp_path):
    """Slow start: a burst of requests to one host does not open its connections at once
    (a busy server's accept queue overflows and a dropped SYN costs a second); each new
    connection waits for the previous one's first answer (here 0.15 s) or 0.25 s."""
    paths = [f"/plain?{i}" for i in range(4)]
    answers = dict(ANSWERS)
    for p in paths:
        answers[p] = ANSWERS["/plain"]
    with SlowAnswers(answers) as srv:
        fetch_links(rows_for(srv.url, paths), tmp_path, test_fetch_config(transport="async", per_host_concurrency=4,
                                                                           workers=4, processes=1))
        gaps = [b - a for a, b in zip(srv.accepted, srv.accepted[1:])]
    assert {r["outcome"] for r in read_outcomes(tmp_path).values()} == {"ok"}
    assert srv.connections >= 2 and gaps and min(gaps) >= 0.1, gaps


def test_no_outcome_line_points_at_a_warc_record_before_it_is_fsynced(tmp_path, monkeypatch):
    """Group commit: every outcome line is made durable only after the WARC bytes it
    points at were fsynced (checked on the order of the fsync calls themselves)."""
    events = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        real_fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append((os.path.basename(path), os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    pages = [p["html"] for p in aeb_pages(20)]
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, [f"/page/{i}" for i in range(20)] + ["/redirect", "/missing"])
        fetch_links(rows, tmp_path, test_fetch_config(transport="async", partitions=1, processes=1))
    log = next((tmp_path / "outcomes").glob("part-*.jsonl"))
    end = 0
    synced: dict[str, int] = {}
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(rows)
    log_events = iter(events)
    for line in lines:
        end += len(line)
        for name, size in log_events:  # the WARC fsyncs up to the one that made this line durable
            if name == log.name:
                if size >= end:
                    break
            else:
                synced[name] = max(synced.get(name, 0), size)
        rec = orjson.loads(line)
        for r in [rec] + rec.get("warc_trail", []):
            if r.get("warc_file"):
                assert synced.get(r["warc_file"], 0) >= r["warc_record_end"], rec["url"]
    assert sum(1 for n, _ in events if n == log.name) < len(rows)  # fewer fsyncs than lines: grouped


def test_robots_answers_read_alike_under_both_transports():
    """One reading of a robots.txt answer (``robots_rules``) for both transports:
    401/403 forbid the site, another error allows it, a 200 is parsed."""
    from pipeline.fetch.webclient import Response, robots_rules

    def answer(status, body=b""):
        return Response("http://a.test/robots.txt", status, "", [], body, None)

    url = "http://a.test/private/page"
    assert not robots_rules(answer(403)).can_fetch("webtext", url)
    assert not robots_rules(answer(401)).can_fetch("webtext", "http://a.test/")
    assert robots_rules(answer(404, b"User-agent: *\nDisallow: /")).can_fetch("webtext", url)
    assert robots_rules(answer(500)).can_fetch("webtext", url)
    parsed = robots_rules(answer(200, b"User-agent: *\nDisallow: /private/\n"))
    assert not parsed.can_fetch("webtext", url) and parsed.can_fetch("webtext", "http://a.test/public")
