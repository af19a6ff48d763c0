import signal
import subprocess
import sys
import time

import orjson
import pytest
from warcio.archiveiterator import ArchiveIterator
from webtext_testlib import WebServer, aeb_pages, outcome_lines, test_fetch_config

from pipeline.core.config import ExtractConfig, FetchConfig
from pipeline.core.urls import normalize_url, url_id
from pipeline.extract.stage import (
    extract_documents,
    read_documents,
    tasks_from_fetch,
    tasks_from_warcs,
)
from pipeline.fetch.outcomes import read_outcomes
from pipeline.fetch.replay import replay_links
from pipeline.fetch.stage import fetch_links
from pipeline.links.table import write_links

HOSTILE = {
    "/slow": "timeout",
    "/loop": "too_many_redirects",
    "/huge": "too_large",
    "/bomb": "decoded_too_large",
    "/binary": "binary",
    "/image": "not_html",
    "/missing": "http_404",
    "/reset": "connection_error",
    "/flaky": "ok",
    "/latin1": "ok",
    "/redirect": "ok",
}


def rows_for(base, paths):
    return [{"id": url_id(normalize_url(base + p)), "url": base + p, "url_norm": normalize_url(base + p)} for p in paths]


def read_warc_whole(path):
    n = 0
    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh):
            rec.content_stream().read()
            n += 1
    return n


@pytest.fixture(scope="module")
def pages():
    return [p["html"] for p in aeb_pages(40)]


def test_hostile_servers_each_get_their_outcome(tmp_path, pages):
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, list(HOSTILE) + [f"/page/{i}" for i in range(5)])
        s = fetch_links(rows, tmp_path, test_fetch_config())
        outcomes = read_outcomes(tmp_path)
        for path, expected in HOSTILE.items():
            assert outcomes[normalize_url(srv.url + path)]["outcome"] == expected, path
        assert srv.hits["/flaky"] == 2  # retried once after 429
        assert srv.hits["/missing"] == 1  # 404 is not retried
        assert srv.hits["/reset"] == 3  # connection reset: tried 1 + 2 retries
    assert s.n_in == len(rows) and s.balanced()
    assert s.n_out == 5 + 3
    # Every file reads whole, with a request and a response per HTTP response received.
    warcs = list((tmp_path / "warc").glob("*.warc.gz"))
    assert warcs and sum(read_warc_whole(w) for w in warcs) % 2 == 0
    huge = outcomes[normalize_url(srv.url + "/huge")]
    assert huge["warc_file"]  # the response is kept, cut, with WARC-Truncated
    # Extraction of the fetched pages: wrong charset handled, hostile ones never extracted.
    ex = extract_documents(tasks_from_fetch(tmp_path), tmp_path / "docs", ExtractConfig(workers=2))
    docs = read_documents(tmp_path / "docs").to_pylist()
    by_url = {d["url_norm"]: d for d in docs}
    latin = by_url[normalize_url(srv.url + "/latin1")]
    assert "café est très bon" in latin["text"] and "(meta)" not in latin["charset"]
    assert ex.n_in == 8 and ex.balanced()
    assert all(d["id"] == url_id(d["url_norm"]) for d in docs)


def test_private_addresses_refused_by_default_and_robots(tmp_path, pages):
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, ["/page/0"])
        fetch_links(rows, tmp_path / "a", FetchConfig(respect_robots=False))
        assert read_outcomes(tmp_path / "a")[rows[0]["url_norm"]]["outcome"] == "refused_private_address"
        assert srv.hits.get("/page/0") is None  # nothing reached the server
        rows = rows_for(srv.url, ["/private", "/page/1"])
        fetch_links(rows, tmp_path / "b", test_fetch_config(respect_robots=True))
        o = read_outcomes(tmp_path / "b")
        assert o[rows[0]["url_norm"]]["outcome"] == "robots_disallowed"
        assert o[rows[1]["url_norm"]]["outcome"] == "ok"
        assert "/private" not in srv.hits


def test_private_address_check_covers_redirects(tmp_path):
    from pipeline.fetch.netsafety import FetchRefused, check_public, is_public_address

    assert not is_public_address("127.0.0.1") and not is_public_address("10.1.2.3")
    assert not is_public_address("169.254.169.254") and not is_public_address("::1")
    assert not is_public_address("::ffff:192.168.0.1")
    assert is_public_address("93.184.216.34")
    with pytest.raises(FetchRefused):
        check_public("http://localhost:8080/admin")


def test_fetch_killed_and_restarted_gives_one_outcome_per_url(tmp_path, pages):
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, [f"/page/{i}" for i in range(40)] + ["/missing", "/image"])
        links_dir = tmp_path / "links"
        write_links([{**r, "domain": "127.0.0.1", "score": 3, "score_total": 3, "n_submissions": 1, "created_utc": 0,
                      "reddit_ids": ["x"], "subreddits": ["s"], "created_utcs": [0], "titles": ["t"]} for r in rows],
                    links_dir / "links.parquet")
        conf = tmp_path / "conf.toml"
        conf.write_text("[fetch]\nper_host_delay_s = 0.05\nper_host_concurrency = 1\nworkers = 4\n"
                        "allow_private_addresses = true\nrespect_robots = false\n")
        out = tmp_path / "fetch"
        cmd = [sys.executable, "-m", "flows.cli", "fetch", "--links", str(links_dir), "--out", str(out), "--config", str(conf)]
        for target in (5, 15):  # kill with SIGKILL once some outcomes are written, twice
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while time.time() < deadline and proc.poll() is None:
                if len(outcome_lines(out)) >= target:
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # its worker processes (one per core) stop with it: nothing more is written
            time.sleep(0.3)
            n = len(outcome_lines(out))
            time.sleep(1.0)
            assert len(outcome_lines(out)) == n
        partial = len(read_outcomes(out))
        assert 0 < partial < len(rows)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = [orjson.loads(l) for l in outcome_lines(out)]
    assert sorted(l["url_norm"] for l in lines) == sorted(r["url_norm"] for r in rows)  # exactly one each
    assert sum(l["outcome"] == "ok" for l in lines) == 40
    for w in (out / "warc").glob("*.warc.gz"):
        read_warc_whole(w)  # raises on a torn file
    # every ok outcome points at a readable response record
    docs = extract_documents(tasks_from_fetch(out), tmp_path / "docs", ExtractConfig(workers=2))
    assert docs.n_in == 40 and docs.balanced()


def test_replay_from_warc_needs_no_network(tmp_path, pages):
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, [f"/page/{i}" for i in range(6)])
        fetch_links(rows, tmp_path / "live", test_fetch_config())
        base = srv.url
    warcs = sorted((tmp_path / "live" / "warc").glob("*.warc.gz"))
    # the server is gone; replay finds every page, matched by normalised URL
    variants = [{**r, "url": r["url"].replace("http://", "https://") + "/?utm_source=x"} for r in rows]
    variants += rows_for(base, ["/never-fetched"])
    s = replay_links(variants, tmp_path / "replay", warcs)
    assert s.n_out == 6 and s.dropped == {"not_in_archive": 1}
    e1 = extract_documents(tasks_from_fetch(tmp_path / "replay"), tmp_path / "d1", ExtractConfig(workers=1))
    e2 = extract_documents(tasks_from_warcs(warcs), tmp_path / "d2", ExtractConfig(workers=1))
    t1 = sorted(read_documents(tmp_path / "d1").column("text").to_pylist())
    t2 = sorted(read_documents(tmp_path / "d2").column("text").to_pylist())
    assert t1 == t2 and len(t1) == e1.n_out == e2.n_out > 0
    # title and publication date come with the text: the date the page's metadata
    # declares, and with date_htmldate htmldate's where it declares none (these real
    # article pages all carry one)
    import re

    docs = read_documents(tmp_path / "d1").to_pylist()
    assert all(d["title"] for d in docs)
    assert all(d["date"] is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", d["date"]) for d in docs)
    extract_documents(tasks_from_warcs(warcs), tmp_path / "dh", ExtractConfig(workers=1, date_htmldate=True))
    dated = {d["url"]: d["date"] for d in read_documents(tmp_path / "dh").to_pylist()}
    assert all(v and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in dated.values())
    e3 = extract_documents(tasks_from_warcs(warcs), tmp_path / "d3", ExtractConfig(workers=1, with_date=False))
    assert e3.n_out == e1.n_out and not any(read_documents(tmp_path / "d3").column("date").to_pylist())


def test_extractor_that_cannot_import_fails_fast_not_hangs(tmp_path, pages, monkeypatch):
    """A worker whose import fails must stop the run with the cause (a Pool would respawn it forever)."""
    import pipeline.extract.stage as ex

    with WebServer(pages) as srv:
        fetch_links(rows_for(srv.url, ["/page/0", "/page/1"]), tmp_path, test_fetch_config())
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # "import trafilatura" now raises ImportError
    with pytest.raises(ex.ExtractorUnavailable, match="cannot import trafilatura"):
        ex.extract_documents(tasks_from_fetch(tmp_path), tmp_path / "d0", ExtractConfig(workers=2))
    # Even if the parent check is skipped, the (forked, so they inherit the broken import) workers report instead of dying.
    monkeypatch.setattr(ex, "check_extractor", lambda: None)
    t0 = time.monotonic()
    with pytest.raises(ex.ExtractorUnavailable, match="could not start"):
        ex.extract_documents(tasks_from_fetch(tmp_path), tmp_path / "d1", ExtractConfig(workers=2), start_method="fork")
    assert time.monotonic() - t0 < 60


def test_dns_rebinding_cannot_redirect_the_connection_to_a_private_address(tmp_path, monkeypatch):
    """The host answers the check with an allowed address, then 127.0.0.1: the
    connection must go to the checked address. All on loopback: 127.0.0.2 stands
    for a public address here."""
    import socket
    from http.server import BaseHTTPRequestHandler

    import pipeline.fetch.netsafety as netsafety
    from flows.demo import LoopbackServer

    hits = {"public": 0, "private": 0}

    def server(addr, port, name, body):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hits[name] += 1
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return LoopbackServer(H, addr, port).__enter__()

    public = server("127.0.0.2", 0, "public", "<html><body><p>the public page</p></body></html>")
    port = public.port
    private = server("127.0.0.1", port, "private", "<html><body><p>SECRET internal page</p></body></html>")
    real = socket.getaddrinfo
    answers = {"n": 0}

    def rebinding(host, *a, **k):
        if host == "rebind.test":
            answers["n"] += 1
            ip = "127.0.0.2" if answers["n"] == 1 else "127.0.0.1"  # first answer passes the check, later ones do not
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(netsafety, "is_public_address", lambda ip: ip == "127.0.0.2")
    try:
        url = f"http://rebind.test:{port}/article"
        rows = [{"id": url_id(normalize_url(url)), "url": url, "url_norm": normalize_url(url)}]
        cfg = test_fetch_config(allow_private_addresses=False, retries=0)
        fetch_links(rows, tmp_path, cfg)
        rec = read_outcomes(tmp_path)[rows[0]["url_norm"]]
        assert rec["outcome"] == "ok" and hits == {"public": 1, "private": 0}
        with open(tmp_path / "warc" / rec["warc_file"], "rb") as fh:
            fh.seek(rec["warc_offset"])
            body = next(iter(ArchiveIterator(fh))).content_stream().read()
        assert b"the public page" in body and b"SECRET" not in body
    finally:
        public.__exit__()
        private.__exit__()


def test_environment_proxies_are_ignored_and_an_explicit_proxy_is_used(tmp_path, pages, monkeypatch):
    from pipeline.core.errors import ConfigError

    with WebServer(pages) as srv, WebServer(pages) as proxy:
        # An environment proxy would get every request: it must not.
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        rows = rows_for(srv.url, ["/page/0"])
        fetch_links(rows, tmp_path / "a", test_fetch_config())
        assert read_outcomes(tmp_path / "a")[rows[0]["url_norm"]]["outcome"] == "ok"
        assert srv.hits.get("/page/0") == 1 and not proxy.hits
        # An explicit one does (a plain HTTP proxy receives the absolute URL; the test server answers by path).
        rows = rows_for("http://far.example", ["/page/1"])
        fetch_links(rows, tmp_path / "b", test_fetch_config(proxy=proxy.url))
        assert sum(proxy.hits.values()) >= 1 and "/page/1" not in srv.hits
    with pytest.raises(ConfigError, match="proxy"):
        test_fetch_config(proxy="proxy:3128").validate()


def test_transient_failures_are_retried_by_later_runs_with_backoff_then_given_up(tmp_path, pages):
    """503 / connection errors are not final: a later run fetches them again once the
    back-off has passed, up to max_attempts; final outcomes and pages are never fetched twice."""
    with WebServer(pages) as srv:
        paths = ["/page/0", "/page/1", "/missing", "/outage", "/reset"]
        rows = rows_for(srv.url, paths)
        key = {p: normalize_url(srv.url + p) for p in paths}
        s1 = fetch_links(rows, tmp_path, test_fetch_config(retries=0, retry_after_s=3600))
        assert s1.n_out == 2 and s1.dropped["http_503"] == 1 and s1.dropped["connection_error"] == 1
        assert s1.extra["waiting_retry"] == 2 and s1.extra["given_up"] == 0
        hits = dict(srv.hits)
        # Back-off not passed: nothing is requested.
        s2 = fetch_links(rows, tmp_path, test_fetch_config(retries=0, retry_after_s=3600))
        assert srv.hits == hits
        assert s2.dropped == {"already_fetched": 3, "waiting_retry": 2} and s2.n_out == 0
        # The site is back and the back-off has passed: only the two transient URLs are requested again.
        srv.outage = False
        s3 = fetch_links(rows, tmp_path, test_fetch_config(retries=0, retry_after_s=0))
        assert {p: srv.hits[p] - hits.get(p, 0) for p in paths} == {"/page/0": 0, "/page/1": 0, "/missing": 0,
                                                                     "/outage": 1, "/reset": 1}
        assert s3.extra["retried"] == 2 and s3.n_out == 1 and s3.dropped["connection_error"] == 1
        out = read_outcomes(tmp_path)
        assert out[key["/outage"]]["outcome"] == "ok" and out[key["/outage"]]["attempt"] == 2
        assert out[key["/reset"]]["attempt"] == 2
        # The recovered page is extracted like any other (its last outcome line points at its WARC record).
        assert key["/outage"] in {k for _, _, k in tasks_from_fetch(tmp_path)}
        # Two attempts is the limit: the connection error is given up, and not requested.
        before = srv.hits["/reset"]
        s4 = fetch_links(rows, tmp_path, test_fetch_config(retries=0, retry_after_s=0, max_attempts=2))
        assert s4.dropped == {"already_fetched": 4, "given_up": 1} and s4.extra["given_up"] == 1
        assert srv.hits["/reset"] == before
        # --retry-failed: retried now anyway.
        s5 = fetch_links(rows, tmp_path, test_fetch_config(retries=0, retry_after_s=3600, max_attempts=2), retry_failed=True)
        assert srv.hits["/reset"] == before + 1 and s5.extra["retried"] == 1
        assert read_outcomes(tmp_path)[key["/reset"]]["attempt"] == 3
        # Every WARC file still reads whole (superseded attempts' records are kept, not trimmed).
        for w in (tmp_path / "warc").glob("*.warc.gz"):
            assert read_warc_whole(w) > 0
        assert sum(read_warc_whole(w) for w in (tmp_path / "warc").glob("*.warc.gz")) == 2 * 5  # req+resp: 2 ok, 404, 503, ok


def test_credentials_in_a_link_are_neither_sent_nor_stored(tmp_path, pages):
    with WebServer(pages) as srv:
        url = f"http://alice:s3cret@{srv.address}/page/0"
        row = {"id": "x", "url": url, "url_norm": normalize_url(url)}
        s = fetch_links([row], tmp_path, test_fetch_config())
        assert s.n_out == 1 and srv.hits["/page/0"] == 1
        assert srv.authorization == []
    stored = b"".join(p.read_bytes() for p in (tmp_path / "warc").glob("*.warc.gz"))
    import gzip

    assert b"s3cret" not in gzip.decompress(stored) and b"s3cret" not in b"".join(outcome_lines(tmp_path))


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-chunk", "/page/0 (robots.txt trickles)"])
def test_a_server_that_trickles_headers_or_chunk_sizes_cannot_stretch_the_deadline(tmp_path, pages, path):
    """The server would go on for 30 s a request; total_timeout_s = 2 must bound each
    attempt (3 attempts with retries: well under 30 s in all), and the page is a
    time-out, never ``ok`` with what had arrived."""
    robots = "robots" in path
    path = path.split()[0]
    with WebServer(pages) as srv:
        srv.slow_robots = robots
        rows = rows_for(srv.url, [path])
        t0 = time.monotonic()
        fetch_links(rows, tmp_path, test_fetch_config(total_timeout_s=2.0, retries=2, respect_robots=robots))
        elapsed = time.monotonic() - t0
    outcome = read_outcomes(tmp_path)[rows[0]["url_norm"]]["outcome"]
    assert outcome == ("ok" if robots else "timeout"), outcome  # robots.txt that times out: allowed, as documented
    assert elapsed < 15, f"{elapsed:.1f}s"


def test_utf16_raw_deflate_and_mislabelled_gzip_pages_are_kept_and_extracted(tmp_path, pages):
    """UTF-16 (NUL bytes, not binary), deflate without the zlib wrapper, and a body
    that says gzip but is plain HTML (as ClueWeb09's WARCs stored them) are pages."""
    paths = ["/utf16", "/raw-deflate", "/says-gzip"]
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, paths)
        s = fetch_links(rows, tmp_path, test_fetch_config())
    out = read_outcomes(tmp_path)
    assert {p: out[normalize_url(srv.url + p)]["outcome"] for p in paths} == {p: "ok" for p in paths}
    e = extract_documents(tasks_from_fetch(tmp_path), tmp_path / "docs", ExtractConfig(workers=1))
    assert e.n_out == 3, e.dropped
    docs = {d["url_norm"]: d for d in read_documents(tmp_path / "docs").to_pylist()}
    assert docs[normalize_url(srv.url + "/utf16")]["charset"].startswith("utf-16")
    assert all(len(d["text"]) > 200 for d in docs.values())


def test_ipv6_literal_hosts_keep_their_brackets():
    assert normalize_url("http://[2001:DB8::1]/a") == "[2001:db8::1]/a"
    assert normalize_url("http://[2001:db8::1]:8080/a?b=1") == "[2001:db8::1]:8080/a?b=1"
    from pipeline.core.urls import clean_url

    assert clean_url("http://[2001:db8::1]:8080/a") == "http://[2001:db8::1]:8080/a"


def test_every_response_is_in_the_warc_and_robots_txt_is_fetched_once_per_host(tmp_path, pages):
    """The 301 before a page and the 429 before a retry are recorded too (outcome
    pointing at the last response), and 8 workers on one host read robots.txt once."""
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, ["/redirect", "/flaky"] + [f"/page/{i}" for i in range(1, 12)])
        fetch_links(rows, tmp_path, test_fetch_config(respect_robots=True, workers=8))
        assert srv.hits["/robots.txt"] == 1
    statuses = []
    for w in (tmp_path / "warc").glob("*.warc.gz"):
        with open(w, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    statuses.append((rec.rec_headers.get_header("WARC-Target-URI").rsplit("/", 1)[-1],
                                     rec.http_headers.get_statuscode()))
    assert ("redirect", "301") in statuses and ("flaky", "429") in statuses and ("flaky", "200") in statuses
    out = read_outcomes(tmp_path)
    flaky = out[normalize_url(srv.url + "/flaky")]
    assert flaky["outcome"] == "ok" and flaky["warc_trail"][0]["status"] == 429
    # the outcome points at the final 200 record, which extraction reads
    assert normalize_url(srv.url + "/flaky") in {k for _, _, k in tasks_from_fetch(tmp_path)}
