"""The archive fallback against a real pywb ``wayback`` server on 127.0.0.1.

pywb pins redis==2.10.6 and the project needs redis>=5, so pywb cannot live in the
project's venv: it runs from its own (README, "Archive fallback": ``python -m venv
.venv-pywb && .venv-pywb/bin/pip install -c constraints-pywb.txt pywb``), found at
$WEBTEXT_PYWB_BIN, ./.venv-pywb/bin or on PATH. The collections are built with
``wb-manager init`` / ``wb-manager add`` from WARC files written here. A small
loopback front server counts the requests that reach the archive and can turn
hostile (429, a hang, garbage); a loopback file server answers byte ranges like
Common Crawl's data bucket.
"""

from __future__ import annotations

import gzip
import http.client
import io
import os
import random
import shutil
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
from webtext_testlib import WebServer, test_fetch_config, wayback

from flows.demo import LoopbackServer, article_text, page
from pipeline.core.config import Config, ExtractConfig
from pipeline.core.errors import ConfigError
from pipeline.core.urls import normalize_url, url_id
from pipeline.extract.stage import extract_documents, read_documents, tasks_from_fetch
from pipeline.fetch.outcomes import outcome_files, read_outcomes
from pipeline.fetch.stage import fetch_links

DEAD = "http://deadnews.example"
LIVE = "http://livenews.example"


def ts(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def html(marker: str) -> bytes:
    rng = random.Random(marker)
    return page("deadnews.example", f"Story {marker}", [f"This is the {marker} version of the story."]
                + article_text(rng, 16)).encode()


# (collection, url, capture date, status, content type, body)
CAPTURES = [
    ("wb", DEAD + "/gone/a", "2015-01-10", 200, "text/html; charset=utf-8", html("A-2015")),
    ("wb", DEAD + "/gone/a", "2017-03-05", 200, "text/html; charset=utf-8", html("A-2017-03")),
    ("wb", DEAD + "/gone/a", "2017-09-01", 200, "text/html; charset=utf-8", html("A-2017-09")),
    ("wb", DEAD + "/gone/a", "2017-12-20", 200, "text/html; charset=utf-8", html("A-2017-12")),
    ("wb", DEAD + "/gone/a", "2019-02-01", 200, "text/html; charset=utf-8", html("A-2019")),
    ("wb", DEAD + "/gone/b", "2017-05-01", 404, "text/html", b"<html>not found</html>"),
    ("wb", DEAD + "/gone/c", "2019-06-01", 200, "text/html", html("C-2019")),
    ("wb", DEAD + "/gone/e", "2017-05-01", 200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
    ("wb", DEAD + "/gone/g", "2017-07-01", 200, "text/html", html("G-wb")),
    ("wb", LIVE + "/outage", "2017-07-01", 200, "text/html", html("OUTAGE-archived")),
    ("cc", DEAD + "/gone/g", "2017-06-01", 200, "text/html", html("G-cc")),
    ("cc", DEAD + "/gone/h", "2016-11-11", 200, "text/html", html("H-cc")),
]
CREATED = {"/gone/a": "2017-08-20", "/gone/g": "2017-07-01"}  # first Reddit submission


def write_warc(path: Path, caps) -> None:
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for _, url, day, status, ctype, body in caps:
            h = StatusAndHeaders(f"{status} {'OK' if status == 200 else 'Not Found'}",
                                 [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=h,
                                                warc_headers_dict={"WARC-Date": day + "T10:00:00Z"}))


@pytest.fixture(scope="module")
def pywb(tmp_path_factory):
    """A real pywb wayback on 127.0.0.1 with collections "wb" and "cc"."""
    root = tmp_path_factory.mktemp("pywb")
    warcs = {}
    for coll in ("wb", "cc"):
        warcs[coll] = root / f"{coll}-00000.warc.gz"
        write_warc(warcs[coll], [c for c in CAPTURES if c[0] == coll])
    with wayback(root, warcs) as port:
        yield {"port": port, "root": root}


class Front(LoopbackServer):
    """Forwards to pywb and counts what reaches the archive, or turns hostile:
    mode "pass", "429" (always), "429-once", "hang" (never answers), "garbage"."""

    def __init__(self, upstream_port: int):
        self.mode = "pass"
        self.requests: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                front.requests.append(self.path)
                mode = front.mode
                if mode == "429" or (mode == "429-once" and len(front.requests) == 1):
                    return self._send(429, b"slow down", [("Retry-After", "1")])
                if mode.startswith("503-once:") and len(front.requests) == 1:  # 503-once:<Retry-After value>
                    return self._send(503, b"busy", [("Retry-After", mode.split(":", 1)[1])])
                if mode.startswith("swap:") and "/cdx?" in self.path:  # swap:<path>:<path>: another page's captures
                    a, b = mode.split(":")[1:]
                    self.path = self.path.replace(a.replace("/", "%2F"), b.replace("/", "%2F"))
                if mode == "hang":
                    time.sleep(20)
                    self.close_connection = True
                    return
                if mode == "garbage":
                    return self._send(200, b"<html>this is not a CDX listing {{{", [("Content-Type", "text/html")])
                c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
                c.request("GET", self.path)
                r = c.getresponse()
                body = r.read()
                hop = {"transfer-encoding", "connection", "content-length", "keep-alive"}
                self._send(r.status, body, [(k, v) for k, v in r.getheaders() if k.lower() not in hop])

        super().__init__(Handler)

    def cdx_requests(self) -> list[str]:
        return [p for p in self.requests if "/cdx?" in p]


class RangeFiles(LoopbackServer):
    """Serves a directory's files with HTTP Range, like Common Crawl's data bucket;
    mode "ignore-range" (200, the whole file) or "garbage" (206, junk bytes)."""

    def __init__(self, root: Path):
        self.mode = "pass"
        self.ranges: list[tuple[str, str]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                path = root / name
                if "/" in name or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                rng = self.headers.get("Range", "")
                srv.ranges.append((name, rng))
                if rng.startswith("bytes=") and srv.mode != "ignore-range":
                    a, b = (int(x) for x in rng[6:].split("-"))
                    part = data[a:b + 1] if srv.mode != "garbage" else os.urandom(b + 1 - a)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
                    body = part
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def links(paths_by_host: dict[str, list[str]]):
    rows = []
    for base, paths in paths_by_host.items():
        for p in paths:
            url = base + p
            created = CREATED.get(p)
            rows.append({"id": url_id(normalize_url(url)), "url": url, "url_norm": normalize_url(url),
                         "created_utc": int(ts(created)) if created else None})
    return rows


def archive_entries(front_url: str, data_url: str | None = None, order=("cc", "wb"), **kw):
    out = []
    for name in order:
        if name == "cc":
            out.append({"name": "cc", "kind": "commoncrawl", "cdx_url": f"{front_url}/cc/cdx",
                        "data_prefix": data_url, "rate": 50, "concurrency": 2, **kw})
        else:
            out.append({"name": "wb", "kind": "cdx", "cdx_url": f"{front_url}/wb/cdx",
                        "replay_prefix": f"{front_url}/wb", "rate": 50, "concurrency": 2, **kw})
    return out


def fetch_cfg(web, **kw):
    return test_fetch_config(resolve={"deadnews.example": web.address, "livenews.example": web.address},
                             total_timeout_s=2.0, **kw)


def warc_record(fetch_dir: Path, rec: dict):
    with open(fetch_dir / "warc" / rec["warc_file"], "rb") as fh:
        fh.seek(rec["warc_offset"])
        r = next(iter(ArchiveIterator(fh)))
        return r.rec_headers, r.http_headers, r.content_stream().read()


def test_live_then_archive_recovers_exactly_the_archived_pages_with_the_right_capture(tmp_path, pywb):
    """Dead links come back from the archives, each from the capture closest to its
    submission inside the window, the first archive in order winning; a transient
    live failure (503) is not replaced by an archived copy; the funnel splits the
    pages live vs per archive vs in no archive; an archived page extracts."""
    with WebServer(["<html><body><article><p>" + "Live text of the page. " * 40 + "</p></article></body></html>"] * 2) \
            as web, Front(pywb["port"]) as front, RangeFiles(pywb["root"] / "collections" / "cc" / "archive") as data:
        rows = links({LIVE: ["/page/0", "/page/1", "/outage"],
                      DEAD: ["/gone/a", "/gone/b", "/gone/c", "/gone/d", "/gone/e", "/gone/g", "/gone/h"]})
        cfg = fetch_cfg(web, source="live-then-archive", archive_cdx=archive_entries(front.url, data.url + "/"))
        s = fetch_links(rows, tmp_path, cfg)
        o = {k.split("/", 1)[1]: v for k, v in read_outcomes(tmp_path).items()}
        assert {k: v["outcome"] for k, v in o.items()} == {
            "page/0": "ok", "page/1": "ok", "outage": "http_503",
            "gone/a": "ok", "gone/b": "archive_no_html_capture", "gone/c": "archive_after_cutoff",
            "gone/d": "not_archived", "gone/e": "archive_no_html_capture", "gone/g": "ok", "gone/h": "ok"}
        assert {k: v.get("source") for k, v in o.items() if v["outcome"] == "ok"} == {
            "page/0": "live", "page/1": "live", "gone/a": "archive:wb", "gone/g": "archive:cc", "gone/h": "archive:cc"}
        # closest to the 2017-08-20 submission, before the cut-off: 2017-09-01 (not 2017-03, not the last
        # one before the cut-off, 2017-12-20, not 2019)
        assert o["gone/a"]["capture_timestamp"] == "20170901100000"
        assert o["gone/a"]["live_outcome"] == "http_404" and o["gone/a"]["archive_tried"] == {"cc": "not_archived",
                                                                                                "wb": "ok"}
        # cc is asked first: its 2017-06 capture wins over wb's 2017-07 one although wb's is closer
        assert o["gone/g"]["capture_timestamp"] == "20170601100000"
        assert not any("outage" in p for p in front.requests)  # a 503 is transient: the archives are not asked
        rh, hh, body = warc_record(tmp_path, o["gone/a"])
        assert rh.get_header("WARC-Target-URI") == DEAD + "/gone/a"
        assert rh.get_header("WARC-Date") == "2017-09-01T10:00:00Z"
        assert rh.get_header("WebText-Archive") == "wb"
        assert rh.get_header("WARC-Source-URI") == f"{front.url}/wb/20170901100000id_/{DEAD}/gone/a"
        assert body == html("A-2017-09")  # pywb's id_ replay gives the original bytes
        rh, hh, body = warc_record(tmp_path, o["gone/h"])
        assert body == html("H-cc") and rh.get_header("WebText-Archive") == "cc"
        assert rh.get_header("WARC-Source-URI") == data.url + "/cc-00000.warc.gz"
        assert all(r.startswith("bytes=") for _, r in data.ranges) and len(data.ranges) == 2
        # the funnel: live vs each archive vs in no archive
        assert s.extra["ok_by_source"] == {"archive:cc": 2, "archive:wb": 1, "live": 2}
        assert s.extra["not_from_an_archive"] == {"not_archived": 1, "archive_no_html_capture": 2,
                                                  "archive_after_cutoff": 1, "archive_error": 0}
        assert s.n_out == 5 and s.balanced()
    docs = extract_documents(tasks_from_fetch(tmp_path), tmp_path / "docs", ExtractConfig(workers=1))
    texts = {d["url"]: d["text"] for d in read_documents(tmp_path / "docs").to_pylist()}
    assert docs.n_out == 5
    assert "A-2017-09 version" in texts[DEAD + "/gone/a"] and "G-cc version" in texts[DEAD + "/gone/g"]


def test_a_rerun_asks_the_cdx_nothing_and_earlier_dead_links_skip_the_live_web(tmp_path, pywb):
    """A live-only run leaves 404s; switching to live-then-archive looks them up
    without fetching them live again; a run stopped before writing its outcomes,
    run again, gets its CDX answers from the cache (the archive sees no CDX request)."""
    with WebServer([]) as web, Front(pywb["port"]) as front:
        rows = links({DEAD: ["/gone/a", "/gone/c", "/gone/d"]})
        fetch_links(rows, tmp_path, fetch_cfg(web))
        assert {v["outcome"] for v in read_outcomes(tmp_path).values()} == {"http_404"}
        hits = dict(web.hits)
        cfg = fetch_cfg(web, source="live-then-archive", archive_cdx=archive_entries(front.url, order=("wb",)))
        s = fetch_links(rows, tmp_path, cfg)
        assert web.hits == hits  # not fetched live again
        assert s.extra["archive_only"] == 3 and len(front.cdx_requests()) == 3
        first = {k: v["outcome"] for k, v in read_outcomes(tmp_path).items()}
        assert sorted(first.values()) == ["archive_after_cutoff", "not_archived", "ok"]
        # a third run: everything is final, nothing is asked
        n = len(front.requests)
        s = fetch_links(rows, tmp_path, cfg)
        assert len(front.requests) == n and s.dropped["already_fetched"] == 3
        # a run killed before its outcomes were written: the archive pages are fetched again, the CDX is not asked
        for log in outcome_files(tmp_path):
            log.unlink()
        shutil.rmtree(tmp_path / "warc")
        s = fetch_links(rows, tmp_path, fetch_cfg(web, source="archive", archive_cdx=cfg.archive_cdx))
        assert len(front.cdx_requests()) == 3  # unchanged
        assert s.extra["archive_requests"]["cdx_requests"] == 0 and s.extra["archive_requests"]["cdx_cached"] == 3
        assert {k: v["outcome"] for k, v in read_outcomes(tmp_path).items()} == first
        assert len(front.requests) == n + 1  # only the one raw capture


@pytest.mark.parametrize("mode, expect, bound_s", [
    ("429", "HTTP 429 after 3 attempt(s)", 6.0),  # Retry-After: 1, twice
    ("hang", "timeout", 10.0),  # each request cut at total_timeout_s = 2 s
    ("garbage", "not JSON", 3.0),
])
def test_an_archive_that_answers_429_hangs_or_sends_garbage_ends_in_a_recorded_outcome(tmp_path, pywb, mode, expect,
                                                                                       bound_s):
    with WebServer([]) as web, Front(pywb["port"]) as front:
        front.mode = mode
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, order=("wb",)),
                        archive_timeout_s=8.0)
        t0 = time.monotonic()
        s = fetch_links(links({DEAD: ["/gone/a"]}), tmp_path, cfg)
        took = time.monotonic() - t0
        (rec,) = read_outcomes(tmp_path).values()
        assert rec["outcome"] == "archive_error" and expect in rec["archive_error"], rec
        assert took < bound_s, took
        assert s.extra["waiting_retry"] == 1  # transient: a later run asks again
        assert not (tmp_path / "archive_cdx_cache.jsonl").exists()  # a failure is never cached
        if mode == "429":
            assert len(front.requests) == 3 and took >= 2.0  # Retry-After honoured


@pytest.mark.parametrize("retry_after", ["1000000000", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_beyond_the_budget_fails_that_url_and_never_stalls_the_others(tmp_path, pywb, retry_after):
    """One 503 asking to wait a billion seconds (or until the year 9999): that URL ends
    archive_error at once (retried next build); the archive's throttle is untouched, so
    the other URLs are looked up without waiting."""
    with WebServer([]) as web, Front(pywb["port"]) as front:
        front.mode = f"503-once:{retry_after}"
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, order=("wb",)),
                        archive_timeout_s=30.0, workers=1)
        t0 = time.monotonic()
        s = fetch_links(links({DEAD: ["/gone/a", "/gone/g", "/gone/b"]}), tmp_path, cfg)
        took = time.monotonic() - t0
    out = {k.rsplit("/", 1)[-1]: v for k, v in read_outcomes(tmp_path).items()}
    failed = [k for k, v in out.items() if v["outcome"] == "archive_error"]
    assert len(failed) == 1 and "asked to wait" in out[failed[0]]["archive_error"]
    assert {k for k, v in out.items() if v["outcome"] == "ok"} == {"a", "g"} - set(failed)
    assert took < 20 and s.balanced()


def test_an_archive_answering_with_another_pages_captures_is_not_believed(tmp_path, pywb):
    """The CDX server answers the question for /gone/a with the captures of /gone/g: no
    capture of the link, so not_archived, and G's page is never stored as A's."""
    with WebServer([]) as web, Front(pywb["port"]) as front:
        front.mode = "swap:/gone/a:/gone/g"
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, order=("wb",)))
        s = fetch_links(links({DEAD: ["/gone/a"]}), tmp_path, cfg)
    (rec,) = read_outcomes(tmp_path).values()
    assert rec["outcome"] == "not_archived" and s.extra["archive_requests"]["captures_of_other_urls"] >= 1
    assert not list((tmp_path / "warc").glob("*.warc.gz")) or b"G-wb" not in b"".join(
        gzip.decompress(p.read_bytes()) for p in (tmp_path / "warc").glob("*.warc.gz"))


def test_a_429_then_an_answer_recovers_and_a_hang_is_bounded_by_archive_timeout(tmp_path, pywb):
    with WebServer([]) as web, Front(pywb["port"]) as front:
        front.mode = "429-once"
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, order=("wb",)))
        fetch_links(links({DEAD: ["/gone/a"]}), tmp_path / "a", cfg)
        (rec,) = read_outcomes(tmp_path / "a").values()
        assert rec["outcome"] == "ok" and rec["capture_timestamp"] == "20170901100000"
        # the whole lookup is bounded by archive_timeout_s, however many retries are allowed
        front.mode = "hang"
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, order=("wb",)),
                        archive_timeout_s=3.0, retries=10)
        t0 = time.monotonic()
        fetch_links(links({DEAD: ["/gone/a"]}), tmp_path / "b", cfg)
        assert time.monotonic() - t0 < 8.0
        (rec,) = read_outcomes(tmp_path / "b").values()
        assert rec["outcome"] == "archive_error"


@pytest.mark.parametrize("mode, expect", [("ignore-range", "not 206"), ("garbage", "not a WARC record")])
def test_commoncrawl_byte_range_that_is_not_honoured_or_not_a_record_is_an_archive_error(tmp_path, pywb, mode, expect):
    with WebServer([]) as web, Front(pywb["port"]) as front, \
            RangeFiles(pywb["root"] / "collections" / "cc" / "archive") as data:
        data.mode = mode
        cfg = fetch_cfg(web, source="archive", archive_cdx=archive_entries(front.url, data.url, order=("cc",)))
        fetch_links(links({DEAD: ["/gone/h"]}), tmp_path, cfg)
        (rec,) = read_outcomes(tmp_path).values()
        assert rec["outcome"] == "archive_error" and expect in rec["archive_error"], rec
        assert not (tmp_path / "warc").exists() or not any(
            r.get("warc_file") for r in read_outcomes(tmp_path).values())


def test_archive_configuration_is_checked_at_start_naming_the_key(tmp_path):
    good = {"name": "wb", "kind": "cdx", "cdx_url": "https://web.archive.org/cdx/search/cdx",
            "replay_prefix": "https://web.archive.org/web"}
    cases = [
        ({"source": "archive"}, "needs at least one"),
        ({"source": "sometimes"}, "fetch.source"),
        ({"archive_cdx": [{**good, "kind": "ftp"}]}, "fetch.archive_cdx[0].kind"),
        ({"archive_cdx": [good, {**good}]}, "fetch.archive_cdx[1].name"),
        ({"archive_cdx": [{**good, "rate": 0}]}, "fetch.archive_cdx[0].rate"),
        ({"archive_cdx": [{**good, "cdx_url": "file:///etc/passwd"}]}, "fetch.archive_cdx[0].cdx_url"),
        ({"archive_cdx": [{**good, "data_prefix": "https://data.commoncrawl.org/"}]}, "fetch.archive_cdx[0].data_prefix"),
        ({"archive_cdx": [{**good, "speed": 3}]}, "unknown key"),
        ({"archive_cdx": [{**good, "cdx_url": "http://127.0.0.1:8080/cdx"}]}, "allow_private_addresses"),
        ({"archive_cutoff": "2017-13-01"}, "fetch.archive_cutoff"),
    ]
    for fetch, msg in cases:
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            Config.from_dict({"fetch": fetch})
    conf = tmp_path / "c.toml"
    conf.write_text('[fetch]\nsource = "live-then-archive"\n[[fetch.archive_cdx]]\nname = "cc"\nkind = "commoncrawl"\n'
                    'cdx_url = "https://index.commoncrawl.org/CC-MAIN-2017-51-index"\n'
                    'data_prefix = "https://data.commoncrawl.org/"\n')
    assert Config.load(conf).fetch.archive_cdx[0]["name"] == "cc"
