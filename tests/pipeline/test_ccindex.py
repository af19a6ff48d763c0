"""Common Crawl's columnar index joined in bulk (pipeline/fetch/ccindex.py, ccarchive.py), on a
generated crawl shaped like the real one (tests/cc_crawl.py: three crawls, the oldest with
fewer columns and no crawldiagnostics; gzip Parquet sorted by url_surtkey in many row
groups; cc-index-table.paths.gz; WARC files of one gzip member per record) served with
HTTP Range by a real server on 127.0.0.1: the right capture for each kind of link, the
index read far below a scan of its key column, a second build asking nothing again, and
a storm of 503s survived."""

import dataclasses
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
from cc_crawl import CcBucket, capture, make_crawl, page_html
from webtext_testlib import test_fetch_config

from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch.ccindex import (
    FooterCache,
    LocalSource,
    choose_capture,
    link_base,
    lookup_crawl,
    match_level,
    surt_key,
)
from pipeline.fetch.outcomes import read_outcomes
from pipeline.fetch.stage import fetch_links

SUBMITTED = datetime(2017, 4, 1, tzinfo=timezone.utc).timestamp()
CRAWLS = ("CC-MAIN-2016-07", "CC-MAIN-2017-13", "CC-MAIN-2017-47")


def link(url: str, created: float = SUBMITTED) -> dict:
    n = normalize_url(url)
    return {"id": url_id(n), "url": url, "url_norm": n, "created_utc": int(created)}


def body(title: str) -> bytes:
    return page_html(title)


@pytest.fixture(scope="module")
def crawl_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cc")
    n = "http://news.example"
    make_crawl(root, "CC-MAIN-2016-07", [
        capture(f"{n}/many", "2016-02-10", body=body("many-2016")),
        capture(f"{n}/late", "2016-02-10", body=body("late-2016")),  # before the submission, still inside the cut-off
    ], seed=1)
    make_crawl(root, "CC-MAIN-2017-13", [
        capture(f"{n}/many", "2017-03-25", body=body("many-2017-03")),  # closest to the 2017-04-01 submission
        capture(f"{n}/fourofour", "2017-03-25", status=404),
        capture(f"{n}/pic", "2017-03-25", mime="image/jpeg", body=b"\xff\xd8\xff jpeg"),
        capture(f"{n}/twice", "2017-03-20", body=body("twice-0320")),
        capture(f"{n}/twice", "2017-03-30", body=body("twice-0330")),  # the closer of two in one crawl
        capture("https://www.news.example/variant?utm_source=feed", "2017-03-25", body=body("variant")),
        capture(f"{n}/Case-Story", "2017-03-25", body=body("case")),
    ], seed=2)
    make_crawl(root, "CC-MAIN-2017-47", [
        capture(f"{n}/many", "2017-11-20", body=body("many-2017-11")),
        capture(f"{n}/fourofour", "2017-11-20", body=body("fourofour-back")),  # 404 in one crawl, 200 in a later
        capture(f"{n}/moved", "2017-11-20", status=301, location=f"{n}/new-home"),
        capture(f"{n}/new-home", "2017-11-20", body=body("new-home")),
        capture(f"{n}/after", "2018-01-10", body=body("after-cutoff")),  # a crawl's captures run past its name
    ], seed=3)
    return root


LINKS = {
    "many": "http://news.example/many", "fourofour": "http://news.example/fourofour", "pic": "http://news.example/pic",
    "twice": "http://news.example/twice", "variant": "http://news.example/variant",
    "case": "http://news.example/case-story", "moved": "http://news.example/moved", "after": "http://news.example/after",
    "absent": "http://gone.example/never", "late": "http://news.example/late",
}


def archive_cfg(base: str, **kw):
    return test_fetch_config(source="archive", archive=[{"name": "cc", "kind": "cc-index", "base_url": base,
                                                         "crawls": list(CRAWLS), "rate": 200, "concurrency": 4}], **kw)


def test_keys_and_levels_follow_common_crawls_surt():
    assert surt_key("http://www.News.example/A?b=1&a=2") == "example,news)/a?a=2&b=1"
    assert link_base("news.example/x?utm_source=y") == "example,news)/x"
    n = normalize_url("http://news.example/x")
    assert match_level("http://news.example/x", "http://news.example/x", n) == 0
    assert match_level("https://www.news.example/x?utm_source=a", "http://news.example/x", n) == 1
    assert match_level("http://news.example/X", "http://news.example/x", n) == 2
    assert match_level("http://news.example/y", "http://news.example/x", n) is None


def test_each_kind_of_link_gets_the_right_capture_over_http(crawl_root, tmp_path):
    with CcBucket(crawl_root) as bucket:
        cfg = archive_cfg(bucket.url + "/")
        s = fetch_links([link(u) for u in LINKS.values()], tmp_path, cfg)
    assert s.balanced()
    out = {o["url"]: o for o in read_outcomes(tmp_path).values()}
    got = {k: (out[u]["outcome"], out[u].get("capture_url"), out[u].get("capture_timestamp", "")[:8]) for k, u in LINKS.items()}
    n = "http://news.example"
    assert got["many"] == ("ok", f"{n}/many", "20170325")  # three crawls: the capture closest to the submission
    assert got["fourofour"] == ("ok", f"{n}/fourofour", "20171120")  # 404 in 2017-13, 200 in 2017-47
    assert got["pic"][0] == "archive_no_html_capture"
    assert got["twice"] == ("ok", f"{n}/twice", "20170330")  # two captures in one crawl: the closer
    assert got["variant"] == ("ok", "https://www.news.example/variant?utm_source=feed", "20170325")
    assert got["case"] == ("ok", f"{n}/Case-Story", "20170325")  # a case variant
    assert got["moved"] == ("ok", f"{n}/new-home", "20171120")  # the 301 followed to its target in its crawl
    assert got["after"][0] == "archive_after_cutoff"
    assert got["absent"][0] == "not_archived"
    assert got["late"] == ("ok", f"{n}/late", "20160210")
    # the document keeps the link's URL; its WARC record names the capture
    from warcio.archiveiterator import ArchiveIterator

    rec = out[LINKS["moved"]]
    with open(tmp_path / "warc" / rec["warc_file"], "rb") as fh:
        fh.seek(rec["warc_offset"])
        r = next(iter(ArchiveIterator(fh)))
        assert r.rec_headers.get_header("WARC-Target-URI") == LINKS["moved"]
        assert r.rec_headers.get_header("WebText-Capture-Crawl") == "CC-MAIN-2017-47"
        assert r.rec_headers.get_header("WebText-Capture-URI") == f"{n}/new-home"
        assert b"new-home" in r.content_stream().read()


def test_a_second_build_asks_the_index_only_about_new_links(crawl_root, tmp_path):
    import json

    with CcBucket(crawl_root) as bucket:
        cfg = archive_cfg(bucket.url + "/")
        fetch_links([link(LINKS["many"]), link(LINKS["twice"])], tmp_path, cfg)
        first = json.loads((tmp_path / "ccindex" / "last_lookup.json").read_text())["cc"]
        asked_before = bucket.requests
        fetch_links([link(LINKS["many"]), link(LINKS["twice"]), link(LINKS["variant"])], tmp_path, cfg)
        second = json.loads((tmp_path / "ccindex" / "last_lookup.json").read_text())["cc"]
        later = [(path, rng) for path, rng in bucket.log[asked_before:] if path.endswith(".parquet")]
    assert first["links_asked"] == 2 * len(CRAWLS)
    assert second["links_asked"] == 1 * len(CRAWLS)  # only the new link, once per crawl
    assert not [r for _, r in later if r.startswith("bytes=-")]  # every footer was kept: none read again
    assert len(later) <= 4 * len(CRAWLS)  # per crawl and subset: the new key's row group (key, then captures)
    out = {o["url"]: o for o in read_outcomes(tmp_path).values()}
    assert out[LINKS["variant"]]["outcome"] == "ok"


def test_the_index_is_read_far_below_a_scan_of_its_key_column(crawl_root):
    src = LocalSource(crawl_root)
    links = [link(LINKS["many"]), link(LINKS["absent"])]
    res = lookup_crawl(src, FooterCache(None), "CC-MAIN-2017-13", links)
    files = list((crawl_root / "cc-index").rglob("crawl=CC-MAIN-2017-13/**/*.parquet"))
    key_bytes = total_groups = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        col = pq.ParquetFile(f).schema_arrow.get_field_index("url_surtkey")
        key_bytes += sum(md.row_group(i).column(col).total_compressed_size for i in range(md.num_row_groups))
        total_groups += md.num_row_groups
    data_bytes = src.stats.bytes - src.stats.tail_bytes  # beyond the files' ends (footers: read once, kept)
    assert res.row_groups_read <= 2 and total_groups >= 40, (res.row_groups_read, total_groups)
    # two links, one held: 1-2 of ~60 row groups read (their key column, then the capture columns of the
    # row group that matched): ~15% of a scan of the key column alone here, where row groups hold 50 rows
    assert data_bytes < 0.25 * key_bytes, (data_bytes, key_bytes)
    assert {r["link"] for r in res.rows.to_pylist()} == {links[0]["id"]}


def test_the_capture_rule_orders_exact_url_closeness_and_time():
    t = datetime(2017, 1, 1, tzinfo=timezone.utc)

    def row(level, day, status=200, mime="text/html"):
        return {"level": level, "fetch_time": t.replace(day=day), "fetch_status": status,
                "content_mime_detected": mime, "content_mime_type": None}

    target = t.replace(day=10).timestamp()
    assert choose_capture([row(1, 10), row(0, 2)], target, None)[0]["level"] == 0  # the exact URL first
    assert choose_capture([row(0, 8), row(0, 12)], target, None)[0]["fetch_time"].day == 8  # a tie: the earlier
    assert choose_capture([row(0, 2, 404)], target, None) == (None, "archive_no_html_capture")
    assert choose_capture([], target, None) == (None, "not_archived")


def test_a_storm_of_503s_is_backed_off_and_survived(crawl_root, tmp_path):
    with CcBucket(crawl_root, storm=2) as bucket:
        cfg = archive_cfg(bucket.url + "/", retries=3, backoff_s=0.05)
        fetch_links([link(LINKS["many"])], tmp_path, cfg)
        assert bucket.storm == 0 and bucket.requests > 2
    out = {o["url"]: o for o in read_outcomes(tmp_path).values()}
    assert out[LINKS["many"]]["outcome"] == "ok"


def test_a_crawl_without_an_index_listing_says_what_to_do(tmp_path):
    from pipeline.fetch.ccindex import IndexError_, crawl_index_files

    with pytest.raises(IndexError_, match="CC-MAIN-2014-10: no crawl-data/CC-MAIN-2014-10/cc-index-table.paths.gz"):
        crawl_index_files(LocalSource(tmp_path), "CC-MAIN-2014-10")


def test_a_cc_index_archive_is_checked_at_start_naming_the_key(tmp_path):
    from pipeline.core.config import Config, ConfigError

    good = {"name": "cc", "kind": "cc-index"}
    a = Config.from_dict({"fetch": {"source": "archive", "archive": [good]}}).fetch.archives()[0]
    assert (a.prefix, a.rate, a.concurrency, len(a.crawls)) == ("https://data.commoncrawl.org/", 2.0, 2, 41)
    cases = [
        ({**good, "crawls": ["2017-47"]}, r"fetch.archive\[0\].crawls"),
        ({**good, "base_url": "s3://Bad_Bucket/"}, "names no S3 bucket"),
        ({**good, "links_per_task": 0}, r"fetch.archive\[0\].links_per_task"),
        ({**good, "base_url": str(tmp_path / "nowhere")}, "no such folder"),
        ({**good, "cdx_url": "https://index.commoncrawl.org/x"}, "unknown key"),
        ({**good, "rate": float("nan")}, r"fetch.archive\[0\].rate"),
        ({**good, "paths": {"CC-MAIN-2014-10": str(tmp_path / "none.paths")}}, "no such file"),
    ]
    for entry, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            Config.from_dict({"fetch": {"source": "archive", "archive": [entry]}})
    with pytest.raises(ConfigError, match="used twice"):
        Config.from_dict({"fetch": {"archive": [good], "archive_cdx": [{"name": "cc", "kind": "cdx",
                                                                      "cdx_url": "https://a.example/cdx",
                                                                      "replay_prefix": "https://a.example/web"}]}})


def test_an_index_that_cannot_be_read_is_archive_error_retried_next_build(crawl_root, tmp_path):
    """Common Crawl answering 503 to everything: the fetch ends, each link archive_error
    (transient), nothing committed for the crawls; the next build asks them again."""
    import json

    with CcBucket(crawl_root, storm=10**6) as bucket:
        cfg = archive_cfg(bucket.url + "/", retries=1, backoff_s=0.01)
        s = fetch_links([link(LINKS["many"])], tmp_path, cfg)
    assert s.balanced()
    assert read_outcomes(tmp_path)[normalize_url(LINKS["many"])]["outcome"] == "archive_error"
    report = json.loads((tmp_path / "ccindex" / "last_lookup.json").read_text())["cc"]
    assert set(report["crawl_errors"]) == set(CRAWLS)
    assert report["error_reasons"] == {"index_http_status": len(CRAWLS)}  # counted per reason
    with CcBucket(crawl_root) as bucket:  # back: the retry (due at once with retry_after_s=0) finds it
        cfg = archive_cfg(bucket.url + "/", retry_after_s=0.0)
        fetch_links([link(LINKS["many"])], tmp_path, cfg)
    assert read_outcomes(tmp_path)[normalize_url(LINKS["many"])]["outcome"] == "ok"


def test_the_lookup_stage_fans_out_a_task_per_crawl_and_fetch_only_reads_its_answers(crawl_root, tmp_path):
    """On a cluster the lookup is a stage of its own (pipeline/stages.py): one partition per
    archive and crawl, each committing what its crawl said; fetch then asks nothing again."""
    from pipeline.build import LocalRunner, run_stages
    from pipeline.core.config import Config
    from pipeline.links.table import write_links
    from pipeline.stages import BY_NAME, BuildContext

    class Cluster(LocalRunner):
        distributed = True  # map every partitioned stage, as the Prefect runner on Dask does

        def __init__(self):
            self.parts: list[str] = []

        def map(self, stage, ctx, parts):
            self.parts += parts
            return super().map(stage, ctx, parts)

    rows = [link(u) for u in LINKS.values()]
    write_links(rows, tmp_path / "links" / "links.parquet")
    with CcBucket(crawl_root) as bucket:
        cfg = dataclasses.replace(Config(), fetch=archive_cfg(bucket.url + "/"))
        ctx = BuildContext(tmp_path, cfg, progress=False)
        runner = Cluster()
        lookup, = run_stages(ctx, runner, (BY_NAME["lookup"],))
        assert sorted(runner.parts) == sorted(f"cc|{c}" for c in CRAWLS)
        assert lookup["in"] == lookup["out"] == len(rows) and lookup["balanced"]
        before = len(bucket.log)
        fetch_links(rows, tmp_path / "fetch", cfg.fetch)
        index_reads = [p for p, _ in bucket.log[before:] if p.endswith(".parquet") or p.endswith(".paths.gz")]
    assert index_reads == []  # fetch read the lookup's answers: the index was not asked again
    out = {o["url"]: o for o in read_outcomes(tmp_path / "fetch").values()}
    assert (out[LINKS["many"]]["outcome"], out[LINKS["many"]]["capture_timestamp"][:8]) == ("ok", "20170325")
    assert out[LINKS["absent"]]["outcome"] == "not_archived"


def test_a_crawl_is_looked_up_in_key_ranges_and_a_killed_lookup_redoes_only_the_ranges_left(crawl_root, tmp_path):
    """Past ``links_per_task`` a crawl's lookup is split into key ranges of the sorted
    links, each a task that commits on its own: killed after some ranges, the next run
    asks only about the ranges left, and the answers equal one task's."""
    from pipeline.build import LocalRunner, run_stages
    from pipeline.core.config import Config
    from pipeline.links.table import write_links
    from pipeline.stages import BY_NAME, BuildContext

    class Killed(Exception):
        pass

    class Cluster(LocalRunner):
        distributed = True

        def __init__(self, stop_after: int | None = None):
            self.parts: list[str] = []
            self.stop_after = stop_after

        def map(self, stage, ctx, parts):
            self.parts += parts
            if self.stop_after is not None:
                for p in parts[:self.stop_after]:
                    stage.run_part(ctx, p)
                raise Killed
            return super().map(stage, ctx, parts)

    rows = [link(u) for u in LINKS.values()]
    write_links(rows, tmp_path / "links" / "links.parquet")
    with CcBucket(crawl_root) as bucket:
        fetch = test_fetch_config(source="archive", archive=[{
            "name": "cc", "kind": "cc-index", "base_url": bucket.url + "/", "crawls": list(CRAWLS), "rate": 200,
            "concurrency": 4, "links_per_task": 3}])
        ctx = BuildContext(tmp_path, dataclasses.replace(Config(), fetch=fetch), progress=False)
        first = Cluster(stop_after=5)
        with pytest.raises(Killed):
            run_stages(ctx, first, (BY_NAME["lookup"],))
        # 10 links in ranges of at most 3: 4 ranges per crawl, each a task
        assert sorted(first.parts) == sorted(f"cc|{c}|{i}/4" for c in CRAWLS for i in range(4))
        second = Cluster()
        lookup, = run_stages(ctx, second, (BY_NAME["lookup"],))
        assert sorted(second.parts) == sorted(first.parts[5:])  # only the ranges the killed run had not committed
        assert lookup["balanced"]
        before = len(bucket.log)
        fetch_links(rows, tmp_path / "fetch", fetch)
        assert [p for p, _ in bucket.log[before:] if p.endswith((".parquet", ".paths.gz"))] == []
    # every crawl was asked about every link exactly once, across the ranges
    from pipeline.fetch.ccarchive import LookupStore

    store = LookupStore(tmp_path / "fetch" / "ccindex" / "cc")
    for c in CRAWLS:
        asked = [x for p in sorted((store.dir / "asked").glob(f"{c}-*.parquet"))
                 for x in pq.read_table(p).column("link").to_pylist()]
        assert sorted(asked) == sorted(r["id"] for r in rows)
    out = {o["url"]: o for o in read_outcomes(tmp_path / "fetch").values()}
    got = {k: (out[u]["outcome"], out[u].get("capture_timestamp", "")[:8]) for k, u in LINKS.items()}
    assert got["many"] == ("ok", "20170325") and got["moved"] == ("ok", "20171120")
    assert got["twice"] == ("ok", "20170330") and got["fourofour"] == ("ok", "20171120")
    assert got["absent"][0] == "not_archived" and got["after"][0] == "archive_after_cutoff"


def test_the_bucket_over_s3_gives_the_same_captures_and_lists_a_crawl_without_a_listing(crawl_root, tmp_path,
                                                                                        monkeypatch):
    """``base_url = "s3://commoncrawl/"`` against a real S3 API (moto_server on
    127.0.0.1), credentials and endpoint from the usual AWS environment: the index and
    the WARC records are read by byte range, and a crawl without
    ``cc-index-table.paths.gz`` is listed from the bucket."""
    from webtext_testlib import MotoS3

    with MotoS3() as s3:
        assert s3.upload("commoncrawl", crawl_root) > 10
        s3.client().delete_object(Bucket="commoncrawl", Key="crawl-data/CC-MAIN-2017-13/cc-index-table.paths.gz")
        for k, v in s3.env.items():
            monkeypatch.setenv(k, v)
        cfg = archive_cfg("s3://commoncrawl/")
        s = fetch_links([link(u) for u in LINKS.values()], tmp_path, cfg)
    assert s.balanced()
    out = {o["url"]: o for o in read_outcomes(tmp_path).values()}
    got = {k: (out[u]["outcome"], out[u].get("capture_timestamp", "")[:8]) for k, u in LINKS.items()}
    assert got["many"] == ("ok", "20170325")  # in CC-MAIN-2017-13, the crawl found by listing the bucket
    assert got["twice"] == ("ok", "20170330") and got["case"] == ("ok", "20170325")
    assert got["moved"] == ("ok", "20171120") and got["fourofour"] == ("ok", "20171120")
    assert got["absent"][0] == "not_archived" and got["pic"][0] == "archive_no_html_capture"
    assert out[LINKS["many"]]["source"] == "archive:cc"
    from warcio.archiveiterator import ArchiveIterator

    rec = out[LINKS["many"]]
    with open(tmp_path / "warc" / rec["warc_file"], "rb") as fh:
        fh.seek(rec["warc_offset"])
        assert b"many-2017-03" in next(iter(ArchiveIterator(fh))).content_stream().read()


def test_an_s3_base_url_is_checked_at_start():
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="names no S3 bucket"):
        archive_cfg("s3:///nobucket/")
    assert archive_cfg("s3://commoncrawl").archives()[0].prefix == "s3://commoncrawl/"


def test_a_damaged_index_file_is_counted_by_reason_and_the_other_crawls_answer(crawl_root, tmp_path):
    """One crawl's index file cut short (a damaged footer): that crawl is counted as
    ``index_unreadable`` and asked again next time; the other crawls' captures are used."""
    import json
    import shutil

    root = tmp_path / "mirror"
    shutil.copytree(crawl_root, root)
    victim = sorted(root.glob("cc-index/table/cc-main/warc/crawl=CC-MAIN-2017-13/subset=warc/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-100] + b"\0" * 100)  # no PAR1 at its end
    cfg = archive_cfg(str(root))
    fetch_links([link(LINKS["many"])], tmp_path / "fetch", cfg)
    report = json.loads((tmp_path / "fetch" / "ccindex" / "last_lookup.json").read_text())["cc"]
    assert set(report["crawl_errors"]) == {"CC-MAIN-2017-13"}
    assert report["error_reasons"] == {"index_unreadable": 1}
    o = read_outcomes(tmp_path / "fetch")[normalize_url(LINKS["many"])]
    assert (o["outcome"], o["capture_timestamp"][:8]) == ("ok", "20171120")  # from a crawl that could be read


def test_the_lookup_runs_as_tasks_on_two_dask_worker_processes(crawl_root, tmp_path):
    """The lookup's key-range tasks on a real Dask cluster (a scheduler and two worker
    processes): both workers take tasks, each commits its range, and fetch then finds
    every answer without asking the index again."""
    import dask
    from distributed import Client, LocalCluster

    from pipeline.build import LocalRunner, run_stages
    from pipeline.core.config import Config
    from pipeline.links.table import write_links
    from pipeline.stages import BY_NAME, BuildContext

    class Dask(LocalRunner):
        distributed = True

        def __init__(self, client):
            self.client, self.workers = client, set()

        def map(self, stage, ctx, parts):
            futures = [self.client.submit(stage.run_part, ctx, p, key=f"lookup-{i}", pure=False)
                       for i, p in enumerate(parts)]
            out = self.client.gather(futures)
            self.workers = {w for ws in self.client.who_has(futures).values() for w in ws}
            return out

    rows = [link(u) for u in LINKS.values()]
    write_links(rows, tmp_path / "links" / "links.parquet")
    with CcBucket(crawl_root) as bucket:
        fetch = test_fetch_config(source="archive", archive=[{
            "name": "cc", "kind": "cc-index", "base_url": bucket.url + "/", "crawls": list(CRAWLS), "rate": 200,
            "concurrency": 4, "links_per_task": 2}])
        ctx = BuildContext(tmp_path, dataclasses.replace(Config(), fetch=fetch), progress=False)
        with dask.config.set({"distributed.worker.daemon": False}), \
                LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                             host="127.0.0.1") as cluster, Client(cluster) as client:
            runner = Dask(client)
            lookup, = run_stages(ctx, runner, (BY_NAME["lookup"],))
            assert len(runner.workers) == 2  # tasks ran on both worker processes
        assert lookup["balanced"] and len(lookup["extra"]["crawls"]) == 5 * len(CRAWLS)
        before = len(bucket.log)
        fetch_links(rows, tmp_path / "fetch", fetch)
        assert [p for p, _ in bucket.log[before:] if p.endswith((".parquet", ".paths.gz"))] == []
    out = {o["url"]: o for o in read_outcomes(tmp_path / "fetch").values()}
    assert (out[LINKS["many"]]["outcome"], out[LINKS["many"]]["capture_timestamp"][:8]) == ("ok", "20170325")
    assert out[LINKS["moved"]]["outcome"] == "ok" and out[LINKS["absent"]]["outcome"] == "not_archived"


def test_spooled_links_are_keyed_in_batches_in_the_order_of_their_keys():
    """The todo list is built a batch at a time in Arrow; its order is the keys' order
    (then id), with the links surt cannot key last, as a sort of the whole list gives."""
    import random

    from pipeline.fetch.ccarchive import _base_or_none, _keyed_links

    rnd = random.Random(5)
    urls = [f"http://{h}.example.org/{p}" for h in ("b", "a", "Zed", "ü-host", "c") for p in ("x", "y/z", "")]
    urls += ["http://[::1", "not a url", None]
    rows = [{"id": f"t{rnd.randrange(10**6)}", "url": u, "url_norm": u, "created_utc": i} for i, u in enumerate(urls * 3)]
    rnd.shuffle(rows)
    table = _keyed_links(iter(rows), batch=4)
    want = sorted(rows, key=lambda r: (_base_or_none(r["url_norm"]) is None, _base_or_none(r["url_norm"]) or "", r["id"]))
    assert table.column("id").to_pylist() == [r["id"] for r in want]
    assert table.column("base").to_pylist() == [_base_or_none(r["url_norm"]) for r in want]
    assert table.column("base").null_count == 3 and table.num_rows == len(rows)  # the three links without a URL
    assert _keyed_links(iter([])).num_rows == 0
