"""Issue 13's "Done when": a build over the demo with half its web dead and archived
recovers the archived pages, and the funnel shows live vs archive.

Build A runs the demo (pipeline.build.run_build, the no-Prefect path) with its whole
web alive. Its fetch WARCs become a real pywb collection: every 200 and 301 response
record is copied with warcio, its WARC-Date moved from the fetch time (2026) to a day
after the link's first Reddit submission (2017), so the default ``archive_cutoff``
(2017-12-31) stays in force and the faithful-replica choice is exercised rather than
switched off with ``archive_cutoff = "none"``. Decoy captures of each dead page sit
around the real one: a 404 capture an hour after the submission (closest of all, not
a 200), a rewritten "later version" in 2019 (after the cut-off) and, for half the dead
pages, a 200 capture on 2018-01-01 that is closer to the submission than the only
in-window copy (2016-12-01) but after the cut-off. dead.example/gone (a 404 in build A)
is left out: it was never archived. Build B runs over the same dumps with the odd
numbered article pages and syndicated copies answering 404 and ``source = "live-then-archive"`` against that
pywb: every dead page comes back from the archive with the expected capture, the fetch
summary and funnel.json count exactly the live and the archived pages, and the shards
hold the same documents (url, text) as build A's.
"""

from __future__ import annotations

import contextlib
import io
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
from webtext_testlib import pywb_bin, wayback

from flows.demo import DemoWeb, DemoWorld, article_text, demo_config, page
from pipeline.build import run_build
from pipeline.fetch.outcomes import read_outcomes
from pipeline.links.table import iter_links

DAY = 86_400
COLL = "wb"
ARCHIVE = "wayback"


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y%m%d%H%M%S")


def warc_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def demo_key(url: str) -> tuple[str, str]:
    """(host, path) as DemoWeb routes a URL: no www., no query, no trailing slash."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    host = host[4:] if host.startswith("www.") else host
    return host, parts.path.rstrip("/") or "/"


def page_number(key: tuple[str, str]) -> int | None:
    """N of an article page (/2017/story-N) or of its syndicated copy (/wire/N)."""
    _, path = key
    for prefix in ("/2017/story-", "/wire/"):
        if path.startswith(prefix):
            return int(path[len(prefix):])
    return None


def is_dead(key: tuple[str, str]) -> bool:
    """Half the demo's articles and their syndicated copies: the odd-numbered ones
    (/2017/story-1, -3, ..., /wire/5, /wire/15, ...)."""
    n = page_number(key)
    return n is not None and n % 2 == 1


def build_cfg(world: DemoWorld, web: DemoWeb):
    return demo_config(world, web.address).replace("extract", workers=2).replace("dedup", workers=2)


def shard_docs(out: Path) -> dict[str, str]:
    docs = {}
    for f in sorted((out / "shards" / "data").glob("*.parquet")):
        for row in pq.read_table(f, columns=["url", "text"]).to_pylist():
            assert row["url"] not in docs
            docs[row["url"]] = row["text"]
    return docs


def write_response(w: WARCWriter, url: str, date: float, status: int, body: bytes, ctype: str = "text/html") -> None:
    h = StatusAndHeaders(f"{status} {'OK' if status == 200 else 'Not Found'}",
                         [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
    w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=h,
                                        warc_headers_dict={"WARC-Date": warc_date(date)}))


def archive_from_build(out: Path, dest: Path) -> dict[str, str]:
    """Build A's fetch WARCs -> one WARC for pywb (see the module's docstring).
    Returns the capture timestamp build B must choose, per dead URL."""
    created = {r["url"]: r["created_utc"] for r in iter_links(out / "links", columns=("url", "created_utc"))}
    redirect_target = {o["final_url"]: created[o["url"]] for o in read_outcomes(out / "fetch").values()
                       if o.get("final_url") and o["final_url"] != o["url"]}
    expect: dict[str, str] = {}
    with open(dest, "wb") as fo:
        w = WARCWriter(fo, gzip=True)
        for src in sorted((out / "fetch" / "warc").glob("*.warc.gz")):
            with open(src, "rb") as fh:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type != "response":
                        continue
                    url = rec.rec_headers.get_header("WARC-Target-URI")
                    if rec.http_headers.get_statuscode() not in ("200", "301"):
                        assert url == "http://dead.example/gone"  # the demo's one dead link: never archived
                        continue
                    sub = created.get(url) or redirect_target[url]
                    when = sub + DAY
                    if is_dead(demo_key(url)):
                        n = page_number(demo_key(url))
                        later = page("later.example", "Updated", [f"LATER VERSION of {url}."]
                                     + article_text(random.Random(url), 14)).encode()
                        write_response(w, url, sub + 3600, 404, b"<html><body>Temporarily gone</body></html>")
                        write_response(w, url, epoch("2019-03-01T10:00:00"), 200, later)
                        if n % 4 == 3:
                            # the only in-window copy is older; a closer one exists only after the cut-off
                            when = epoch("2016-12-01T10:00:00")
                            write_response(w, url, epoch("2018-01-01T12:00:00"), 200, later)
                            assert abs(epoch("2018-01-01T12:00:00") - sub) < abs(when - sub)
                        expect[url] = stamp(when)
                    rec.rec_headers.replace_header("WARC-Date", warc_date(when))
                    w.write_record(rec)  # the record as fetched, payload and digests unchanged
    return expect


@contextlib.contextmanager
def wayback_of(root: Path, warc: Path):
    """A real pywb wayback on 127.0.0.1 with one collection, COLL, holding WARC."""
    with wayback(root, {COLL: warc}) as port:
        yield f"http://127.0.0.1:{port}"


def stage(funnel: list[dict], name: str) -> dict:
    (s,) = [s for s in funnel if s["stage"] == name]
    return s


@pytest.mark.timeout(180)
def test_demo_build_with_half_its_web_dead_recovers_the_archived_pages(tmp_path):
    pywb_bin()  # skips, saying how to install pywb, when it is missing
    world = DemoWorld()
    dumps = [str(p) for p in world.write_dumps(tmp_path / "dumps")]

    # (1) build A: the demo with its whole web alive
    with DemoWeb(world) as web:
        stages_a = run_build(dumps, tmp_path / "A", build_cfg(world, web))
    fetch_a = {s.stage: s for s in stages_a}["fetch"]
    outcomes_a = {o["url"]: o for o in read_outcomes(tmp_path / "A" / "fetch").values()}
    assert fetch_a.extra["ok_by_source"] == {"live": fetch_a.n_out}
    assert outcomes_a["http://dead.example/gone"]["outcome"] == "http_404"

    # (2) build A's captures, dated 2017, in a pywb collection
    arch = tmp_path / "pywb"
    arch.mkdir()
    expect = archive_from_build(tmp_path / "A", tmp_path / "captures.warc.gz")
    dead = set(expect)
    ok_a = {u for u, o in outcomes_a.items() if o["outcome"] == "ok"}
    assert dead == {u for u in ok_a if is_dead(demo_key(u))}
    n_archive, n_live = len(dead), len(ok_a) - len(dead)
    assert n_archive >= 15 and n_live >= 15, (n_live, n_archive)  # about half of the fetched pages

    # (3) build B: the odd-numbered articles and wire copies are gone (404), the archive fills in
    world_b = DemoWorld()
    for key in [k for k in world_b.pages if is_dead(k)]:
        del world_b.pages[key]  # DemoWeb answers 404 for a page it does not hold
    with wayback_of(arch, tmp_path / "captures.warc.gz") as base, DemoWeb(world_b) as web_b:
        cfg = build_cfg(world_b, web_b).replace(
            "fetch", source="live-then-archive",
            archive_cdx=[{"name": ARCHIVE, "kind": "cdx", "cdx_url": f"{base}/{COLL}/cdx",
                          "replay_prefix": f"{base}/{COLL}", "rate": 200, "concurrency": 4}])
        assert cfg.fetch.archive_cutoff == "2017-12-31"  # the default: the faithful-replica window
        t0 = time.monotonic()
        stages_b = run_build(dumps, tmp_path / "B", cfg)
        took_b = time.monotonic() - t0
        assert all(web_b.hits.get(demo_key(u)) for u in dead)  # asked live first, and dead there

    # every dead page came back from the archive, from the capture the faithful-replica rule picks
    outcomes_b = {o["url"]: o for o in read_outcomes(tmp_path / "B" / "fetch").values()}
    assert set(outcomes_b) == set(outcomes_a)
    for url in dead:
        o = outcomes_b[url]
        assert (o["outcome"], o.get("source"), o.get("live_outcome")) == ("ok", f"archive:{ARCHIVE}", "http_404"), o
        assert o["capture_timestamp"] == expect[url], (url, o)  # not the 404, not 2018-01-01, not 2019
        assert o["archive_tried"] == {ARCHIVE: "ok"}
    for url in ok_a - dead:
        assert (outcomes_b[url]["outcome"], outcomes_b[url]["source"]) == ("ok", "live"), outcomes_b[url]
        assert "archive_tried" not in outcomes_b[url]
    gone = outcomes_b["http://dead.example/gone"]  # dead and never archived: a recorded failure
    assert (gone["outcome"], gone["live_outcome"], gone["archive_tried"]) == ("not_archived", "http_404",
                                                                           {ARCHIVE: "not_archived"})

    # an archived page sits in B's WARC with its provenance, dated at its capture
    url = sorted(dead)[0]
    o = outcomes_b[url]
    with open(tmp_path / "B" / "fetch" / "warc" / o["warc_file"], "rb") as fh:
        fh.seek(o["warc_offset"])
        rec = next(iter(ArchiveIterator(fh)))
        assert rec.rec_headers.get_header("WARC-Target-URI") == url
        assert rec.rec_headers.get_header("WARC-Date") == datetime.strptime(
            expect[url], "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")
        assert rec.rec_headers.get_header("WebText-Archive") == ARCHIVE
        assert rec.rec_headers.get_header("WARC-Source-URI") == f"{base}/{COLL}/{expect[url]}id_/{url}"

    # the fetch summary and the funnel: exactly n_live pages live, n_archive from the archive
    fetch_b = {s.stage: s for s in stages_b}["fetch"]
    by_source = {"live": n_live, f"archive:{ARCHIVE}": n_archive}
    assert fetch_b.extra["ok_by_source"] == by_source
    assert fetch_b.extra["ok_by_source_all_runs"] == by_source
    assert fetch_b.extra["not_from_an_archive"] == {"not_archived": 1, "archive_no_html_capture": 0,
                                                    "archive_after_cutoff": 0, "archive_error": 0}
    assert fetch_b.n_out == fetch_a.n_out and dict(fetch_b.dropped) == {"not_archived": 1}
    assert fetch_b.extra["archive_requests"]["cdx_requests"] == n_archive + 1
    funnel_a = orjson.loads((tmp_path / "A" / "funnel.json").read_bytes())
    funnel_b = orjson.loads((tmp_path / "B" / "funnel.json").read_bytes())
    fb = stage(funnel_b, "fetch")
    assert fb["extra"]["ok_by_source"] == by_source and fb["out"] == n_live + n_archive
    assert any(f"archive:{ARCHIVE} {n_archive}" in n and f"live {n_live}" in n for n in fb["notes"]), fb["notes"]
    assert stage(funnel_a, "fetch")["extra"]["ok_by_source"] == {"live": n_live + n_archive}
    (version,) = orjson.loads((tmp_path / "B" / "shards" / "manifest.json").read_bytes())["versions"]
    assert stage(version["funnel"], "fetch")["extra"]["ok_by_source"] == by_source  # and in the shard manifest

    # downstream, an archived page is a page: the same funnel after fetch and the same documents
    for name in ("extract", "filter", "dedup", "shard"):
        a, b = stage(funnel_a, name), stage(funnel_b, name)
        assert (a["in"], a["out"], a["dropped"]) == (b["in"], b["out"], b["dropped"]), name
    docs_a, docs_b = shard_docs(tmp_path / "A"), shard_docs(tmp_path / "B")
    assert docs_b == docs_a
    assert sum(1 for u in docs_b if u in dead) >= 10  # recovered pages made it into the shards
    assert all("LATER VERSION" not in t for t in docs_b.values())
    # fetched_at is when the bytes were taken: an archived page's capture time, a live page's fetch time
    # (not the page's own publication date, which is the "date" column)
    fetched = {}
    for f in sorted((tmp_path / "B" / "shards" / "data").glob("*.parquet")):
        for row in pq.read_table(f, columns=["url", "fetched_at"]).to_pylist():
            fetched[row["url"]] = row["fetched_at"]
    for u, at in fetched.items():
        if u in dead:
            assert at == datetime.strptime(expect[u], "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ"), (u, at)
        else:
            assert at is not None and at.startswith(time.strftime("%Y-", time.gmtime())), (u, at)
    assert took_b < 60, took_b
