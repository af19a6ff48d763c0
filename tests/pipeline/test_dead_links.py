"""Every kind of dead link reaches the archives in one build (source = "live-then-archive"):
a host that refuses connections, a domain parked today, a "page not found" served with
status 200, a deep link sent to the front page; the live page stays live, and no parking
or not-found text reaches the shards. The live web is a real server on 127.0.0.1 (hosts
mapped by [fetch] resolve), the archive a generated Common Crawl (tests/cc_crawl.py)
served with HTTP Range; the archived pages are real articles (../shared AEB). Also: the
dead-page signs on pages made like the real parking services' and error pages, and none
on the 1,678 real pages of ../shared's extraction benchmarks."""

import dataclasses
import json
import lzma
from http.server import BaseHTTPRequestHandler

import pyarrow.parquet as pq
import pytest
from cc_crawl import CcBucket, capture, make_crawl
from webtext_testlib import aeb_pages, free_port, shared, test_fetch_config

from flows.demo import LoopbackServer
from pipeline.build import run_build
from pipeline.core.config import Config
from pipeline.fetch.deadpages import dead_page
from pipeline.fetch.outcomes import read_outcomes

PARKED_SEDO = """<html><head><title>parked.example</title>
<script src="https://sedoparking.com/frmpark/parked.example/IN_Domain_Parking/park.js"></script></head>
<body><div id="content"><h1>parked.example</h1><p>Related searches: Travel Insurance, Cheap Flights</p>
<p>This domain may be for sale!</p></div></body></html>"""
PARKED_GODADDY = """<!DOCTYPE html><html><head><title>forsale.example</title>
<link rel="stylesheet" href="https://img1.wsimg.com/parking-lander/static/css/main.css"></head>
<body><div id="root"><h1>forsale.example</h1><p>Get this domain</p><p>The domain forsale.example is for sale.
Make an offer on this domain today.</p></div></body></html>"""
SOFT_404 = """<html><head><title>Page Not Found | The Daily Example</title></head><body>
<header><nav><a href="/">Home</a> <a href="/news">News</a></nav></header>
<h1>Sorry, we couldn't find that page</h1><p>The page you requested may have been moved or deleted.
Try our <a href="/search">search</a>.</p><footer>Copyright The Daily Example</footer></body></html>"""
HOME = """<html><head><title>The Moved Example</title></head><body><h1>Welcome</h1>
<p>Latest: <a href="/a">one</a> <a href="/b">two</a></p></body></html>"""


def test_parking_and_not_found_pages_are_told_from_real_pages():
    assert dead_page("http://parked.example/story", "http://parked.example/story", PARKED_SEDO) == "parked_domain"
    assert dead_page("http://forsale.example/x", "http://forsale.example/x", PARKED_GODADDY) == "parked_domain"
    assert dead_page("http://news.example/2016/a", "http://news.example/2016/a", SOFT_404) == "soft_404"
    assert dead_page("http://moved.example/2016/deep/story", "http://www.moved.example/", HOME) == "soft_404"
    assert dead_page("http://moved.example/", "http://moved.example/", HOME) is None  # a front page linked as such
    long_story = "<html><head><title>Why domains go for sale</title></head><body>" + \
        "<p>Experts say this domain is for sale, and page not found errors rise. " * 80 + "</p></body></html>"
    assert dead_page("http://n.example/a", "http://n.example/a", long_story) is None  # a story about them: too long


def test_no_real_page_of_the_extraction_benchmarks_is_taken_for_dead():
    path = shared("html", "wcxb_dev.jsonl.xz")
    if not path.is_file():
        pytest.skip("../shared/data/html is not here")
    n = 0
    for name in ("aeb.jsonl.xz", "wcxb_dev.jsonl.xz"):
        with lzma.open(shared("html", name), "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                url = d.get("url") or "http://example.com/a/b"
                assert dead_page(url, url, d["html"]) is None, url
                n += 1
    assert n > 1600


class LiveWeb(LoopbackServer):
    """Today's web for the four hosts, by Host header."""

    def __init__(self, live_html: str):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                host = self.headers.get("Host", "").split(":")[0]
                if host == "moved.example" and self.path != "/":
                    self.send_response(302)
                    self.send_header("Location", "http://moved.example/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = {"parked.example": PARKED_SEDO, "soft.example": SOFT_404, "moved.example": HOME,
                        "live.example": live_html}.get(host, "<html><body>?</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def test_dead_links_of_every_kind_come_back_from_the_archive_in_one_build(tmp_path):
    pages = [p["html"] for p in aeb_pages(6)]
    urls = {"refused": "http://refused.example/2016/story", "parked": "http://parked.example/2016/story",
            "soft": "http://soft.example/2016/story", "moved": "http://moved.example/2016/deep/story",
            "live": "http://live.example/2016/story"}
    root = tmp_path / "cc"
    make_crawl(root, "CC-MAIN-2017-13", [capture(u, "2017-03-25", body=pages[i].encode())
                                          for i, u in enumerate(urls.values())], seed=5)
    lst = tmp_path / "urls.txt"
    lst.write_text("\n".join(urls.values()) + "\n")
    with LiveWeb(pages[5]) as web, CcBucket(root) as bucket:
        hosts = {"parked.example", "soft.example", "moved.example", "live.example"}
        resolve = {h: web.address for h in hosts} | {"refused.example": f"127.0.0.1:{free_port()}"}
        fetch = dataclasses.replace(test_fetch_config(), source="live-then-archive", resolve=resolve, archive=[
            {"name": "cc", "kind": "cc-index", "base_url": bucket.url + "/", "crawls": ["CC-MAIN-2017-13"],
             "rate": 200, "concurrency": 4}])
        cfg = dataclasses.replace(Config(), fetch=fetch).replace("filter", min_length=50)
        stages = run_build([], tmp_path / "out", cfg, url_lists=[lst])
    out = {o["url"]: o for o in read_outcomes(tmp_path / "out" / "fetch").values()}
    got = {k: (out[u]["outcome"], out[u].get("source"), out[u].get("live_outcome")) for k, u in urls.items()}
    assert got["refused"] == ("ok", "archive:cc", "connection_error")
    assert got["parked"] == ("ok", "archive:cc", "parked_domain")
    assert got["soft"] == ("ok", "archive:cc", "soft_404")
    assert got["moved"] == ("ok", "archive:cc", "soft_404")
    assert got["live"] == ("ok", "live", None)
    fetch_summary = next(s for s in stages if s.stage == "fetch")
    assert fetch_summary.balanced()
    texts = []
    for f in (tmp_path / "out" / "shards" / "data").glob("*.parquet"):
        texts += pq.read_table(f, columns=["text"]).column("text").to_pylist()
    assert len(texts) == 5, len(texts)
    joined = "\n".join(texts).lower()
    for junk in ("related searches", "may be for sale", "couldn't find that page", "moved or deleted"):
        assert junk not in joined
