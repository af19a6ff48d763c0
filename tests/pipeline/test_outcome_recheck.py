"""Outcomes that only the configuration made final (issue #31): refused_private_address,
robots_disallowed, too_large and too_many_redirects are decided again when a later run's
configuration would answer otherwise, even when no new link names the URL (a monthly
build), and left alone when it would not."""

from http.server import BaseHTTPRequestHandler

from webtext_testlib import test_fetch_config

from flows.demo import LoopbackServer
from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch.outcomes import read_outcomes
from pipeline.fetch.stage import fetch_links

ARTICLE = ("<html><head><title>A story</title></head><body><article>"
           + "<p>A story with enough words in it to be a page worth keeping.</p>" * 10 + "</article></body></html>")


class Site(LoopbackServer):
    def __init__(self):
        self.hits: dict[str, int] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                site.hits[self.path] = site.hits.get(self.path, 0) + 1
                if self.path == "/robots.txt":
                    body, status = b"User-agent: *\nDisallow: /private\n", 200
                elif self.path.startswith("/hop"):
                    n = int(self.path[4:] or 0)
                    if n < 3:
                        self.send_response(302)
                        self.send_header("Location", f"/hop{n + 1}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body, status = ARTICLE.encode(), 200
                elif self.path == "/big":
                    body, status = (ARTICLE * 40).encode(), 200
                else:
                    body, status = ARTICLE.encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def _rows(site, *paths):
    out = []
    for p in paths:
        u = f"http://127.0.0.1:{site.port}{p}"
        out.append({"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u)})
    return out


def _outcomes(d):
    return {r["url"].rsplit("/", 1)[-1]: r["outcome"] for r in read_outcomes(d).values()}


def test_config_dependent_outcomes_are_decided_again_when_the_configuration_changes(tmp_path):
    strict = dict(respect_robots=True, max_bytes=4096, max_redirects=1, retries=0)
    with Site() as site:
        rows = _rows(site, "/private", "/big", "/hop0", "/plain")
        # 1. private addresses not allowed: the loopback site is refused
        fetch_links(rows, tmp_path, test_fetch_config(allow_private_addresses=False, **strict))
        assert set(_outcomes(tmp_path).values()) == {"refused_private_address"}
        assert site.hits == {}
        # 2. the same configuration again, no new link: nothing is asked again
        s = fetch_links([], tmp_path, test_fetch_config(allow_private_addresses=False, **strict))
        assert site.hits == {} and s.n_in == 0
        # 3. allowed now (a monthly build: no link row names them): each is decided again,
        #    and meets the next limit of this configuration
        fetch_links([], tmp_path, test_fetch_config(**strict))
        assert _outcomes(tmp_path) == {"private": "robots_disallowed", "big": "too_large", "hop0": "too_many_redirects",
                                       "plain": "ok"}
        hits = dict(site.hits)
        # 4. unchanged: nothing fetched again
        fetch_links([], tmp_path, test_fetch_config(**strict))
        assert site.hits == hits
        # 5. robots off, a larger max_bytes and more redirects: each of those is fetched again
        fetch_links([], tmp_path, test_fetch_config(respect_robots=False, max_bytes=2**20, max_redirects=5, retries=0))
        assert _outcomes(tmp_path) == {"private": "ok", "big": "ok", "hop0": "ok", "plain": "ok"}
        assert site.hits["/plain"] == hits["/plain"]  # an ok page is never fetched again


def test_fetched_at_stamps_read_as_strptime_reads_them():
    """``_epoch`` reads webtext's own stamps without strptime; every stamp, well formed
    or not, gets the time strptime gives it (0.0 for what it refuses)."""
    from datetime import datetime, timezone

    from pipeline.fetch.outcomes import _epoch

    def by_strptime(stamp):
        try:
            return datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return 0.0

    stamps = ["2026-11-01T00:00:00Z", "2016-12-31T23:59:59Z", "1970-01-01T00:00:01Z", "9999-12-31T23:59:59Z",
              "2016-12-31T23:59:60Z", "2016-12-31T23:59:61Z", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
              "2026-11-01T24:00:00Z", "0000-01-01T00:00:00Z", "2026-1-5T1:2:3Z", "2026-11-01T00:00:00",
              "2026-11-01 00:00:00Z", "\uff12\uff10\uff12\uff16-11-01T00:00:00Z", "2026-11-01T00:00:00Z\n", "", None, "now"]
    assert [_epoch(s) for s in stamps] == [by_strptime(s) for s in stamps]
    assert _epoch("2026-11-01T00:00:00Z") == 1793491200.0
