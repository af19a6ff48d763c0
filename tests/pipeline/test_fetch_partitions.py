"""Fetch partitions: URLs split by a hash of their host, each partition fetched on its
own (its outcome log, its WARC files), in worker processes; a first-layout fetch
directory (one outcomes.jsonl) taken over without fetching anything twice."""

import os
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest
from warcio.archiveiterator import ArchiveIterator
from webtext_testlib import WebServer, aeb_pages, outcome_lines, test_fetch_config

from pipeline.core.errors import ConfigError
from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch.outcomes import outcome_files, read_outcomes
from pipeline.fetch.stage import (
    combine_fetch,
    fetch_links,
    fetch_partition,
    host_partition,
    spool_links,
)

HOSTS = [f"site{i}.test" for i in range(12)]


@pytest.fixture(scope="module")
def pages():
    return [p["html"] for p in aeb_pages(8)]


def links(hosts, pages_per_host=3, start=0):
    rows = []
    for h in hosts:
        for i in range(start, start + pages_per_host):
            url = f"http://{h}/page/{i}"
            norm = normalize_url(url)
            rows.append({"id": url_id(norm), "url": url, "url_norm": norm, "created_utc": 1_500_000_000 + i,
                         "score": 5 + i, "score_total": 7 + i, "subreddits": ["news"], "reddit_ids": [f"r{h}{i}"]})
    return rows


def config(srv, **kw):
    # every host name is answered by the one loopback server (the Host header says which site);
    # its listen queue is short (socketserver's 5): a burst of connections may wait for a SYN resend
    return test_fetch_config(resolve={h: f"127.0.0.1:{srv.port}" for h in HOSTS}, total_timeout_s=15.0,
                             connect_timeout_s=5.0, **kw)


def test_host_partition_is_stable_and_by_host():
    a = host_partition("site1.test/a", 16)
    assert all(host_partition(f"site1.test/{p}?q={p}", 16) == a for p in range(50))
    assert host_partition("site1.test/a", 16) == host_partition("site1.test/a", 16) < 16
    spread = Counter(host_partition(f"h{i}.example/x", 8) for i in range(4000))
    assert len(spread) == 8 and min(spread.values()) > 350  # ~500 each


def test_every_url_once_over_partitions_in_two_processes(tmp_path, pages):
    with WebServer(pages) as srv:
        rows = links(HOSTS)
        s = fetch_links(rows, tmp_path, config(srv, partitions=5, processes=2))
        hits = dict(srv.hits)
    assert s.n_in == len(rows) == s.n_out and s.balanced() and s.extra["partitions"] >= 3
    assert sum(hits.values()) == len(rows)  # each page asked once over all partitions
    lines = [orjson.loads(l) for l in outcome_lines(tmp_path)]
    assert sorted(l["url_norm"] for l in lines) == sorted(r["url_norm"] for r in rows)
    # each partition's log holds only its hosts, and its WARC files only its records
    logs = outcome_files(tmp_path)
    assert logs and all(p.parent.name == "outcomes" for p in logs)
    for log in logs:
        part = int(log.stem.split("-")[1])
        for rec in map(orjson.loads, log.read_bytes().splitlines()):
            assert host_partition(rec["url_norm"], 5) == part
            assert rec["warc_file"].startswith(f"webtext-p{part:04d}-")
    # the partitions ran in worker processes (the WARC names carry the writer's pid), two of them
    pids = {int(w.name.split("-")[3]) for w in (tmp_path / "warc").glob("*.warc.gz")}
    assert len(pids) == 2 and os.getpid() not in pids
    # an ok record carries the link's Reddit fields (extract reads them there)
    rec = read_outcomes(tmp_path)[rows[4]["url_norm"]]
    assert rec["outcome"] == "ok"
    assert {k: rec[k] for k in ("score", "score_total", "subreddits", "reddit_ids", "created_utc")} == \
        {k: rows[4][k] for k in ("score", "score_total", "subreddits", "reddit_ids", "created_utc")}
    assert orjson.loads((tmp_path / "partitions.json").read_bytes())["partitions"] == 5
    # a second run fetches nothing; another partition count for this directory is refused
    again = fetch_links(rows, tmp_path, test_fetch_config(partitions=5, processes=2))
    assert again.n_out == 0 and again.dropped["already_fetched"] == len(rows)
    with pytest.raises(ConfigError, match="partitions = 5"):
        fetch_links(rows, tmp_path, test_fetch_config(partitions=8))


def test_process_plan_automatic_and_explicit():
    # automatic: the asyncio transport keeps every core's requests in flight in one process
    assert test_fetch_config(processes=0, workers=8).process_plan(4) == (1, 32)
    assert test_fetch_config(processes=0, workers=8, transport="threads").process_plan(4) == (4, 8)
    assert test_fetch_config(processes=0, workers=8).process_plan(0) == (1, 8)
    # explicit: as given, under either transport
    assert test_fetch_config(processes=3, workers=8).process_plan(4) == (3, 8)
    assert test_fetch_config(processes=3, workers=8, transport="threads").process_plan(4) == (3, 8)


def test_automatic_processes_fetch_every_partition_in_this_process(tmp_path, pages):
    """The asyncio transport with ``processes = 0``: all partitions in the calling
    process (no worker process), every URL once."""
    with WebServer(pages) as srv:
        rows = links(HOSTS)
        s = fetch_links(rows, tmp_path, config(srv, partitions=5, processes=0, transport="async"))
        hits = dict(srv.hits)
    assert s.n_in == len(rows) == s.n_out and s.balanced() and s.extra["partitions"] >= 3
    assert sum(hits.values()) == len(rows)
    pids = {int(w.name.split("-")[3]) for w in (tmp_path / "warc").glob("*.warc.gz")}
    assert pids == {os.getpid()}
    assert len({w.name.split("-")[1] for w in (tmp_path / "warc").glob("*.warc.gz")}) == s.extra["partitions"]


def test_partitions_run_one_by_one_in_any_order_and_combine(tmp_path, pages):
    """The stage registry's way: spool, each partition on its own (any order, any
    process), then the summaries added up."""
    with WebServer(pages) as srv:
        cfg = config(srv, partitions=4)
        rows = links(HOSTS, 2)
        parts = spool_links(iter(rows), tmp_path, cfg)
        assert parts == sorted({host_partition(r["url_norm"], 4) for r in rows})
        results = [fetch_partition(tmp_path, cfg, p) for p in reversed(parts)]
        assert all(r["extra"]["partition"] == p for r, p in zip(results, reversed(parts)))
        # a partition run again has nothing left to do
        assert fetch_partition(tmp_path, cfg, parts[0])["out"] == 0
    s = combine_fetch(tmp_path, cfg, results)
    assert s.n_in == s.n_out == len(rows) and s.balanced()
    assert orjson.loads((tmp_path / "summary.fetch.json").read_bytes())["out"] == len(rows)
    with pytest.raises(ValueError):
        fetch_partition(tmp_path, cfg, 4)


def first_layout(fetch_dir: Path) -> None:
    """Turns a partitioned fetch directory into the first layout: one outcomes.jsonl,
    WARC files named webtext-NNNNN.warc.gz, no partitions.json."""
    renames = {}
    for i, w in enumerate(sorted((fetch_dir / "warc").glob("*.warc.gz"))):
        renames[w.name] = f"webtext-{i + 1:05d}.warc.gz"
        w.rename(w.with_name(renames[w.name]))
    lines = []
    for log in outcome_files(fetch_dir):
        for rec in map(orjson.loads, log.read_bytes().splitlines()):
            if rec.get("warc_file"):
                rec["warc_file"] = renames[rec["warc_file"]]
            lines.append(orjson.dumps(rec) + b"\n")
    shutil.rmtree(fetch_dir / "outcomes")
    shutil.rmtree(fetch_dir / "todo")
    (fetch_dir / "partitions.json").unlink()
    (fetch_dir / "outcomes.jsonl").write_bytes(b"".join(lines))


def test_a_first_layout_directory_is_taken_over_without_fetching_twice(tmp_path, pages):
    from pipeline.core.config import ExtractConfig
    from pipeline.extract.stage import (
        extract_documents,
        read_documents,
        tasks_from_fetch,
    )

    old_rows, new_rows = links(HOSTS[:6], 2), links(HOSTS, 1, start=5)
    with WebServer(pages) as srv:
        fetch_links(old_rows, tmp_path, config(srv, partitions=1))
        first_layout(tmp_path)
        old_log = (tmp_path / "outcomes.jsonl").read_bytes()
        old_warcs = {w.name: w.read_bytes() for w in (tmp_path / "warc").glob("*.warc.gz")}
        assert len(old_log.splitlines()) == len(old_rows)
        srv.hits.clear()
        s = fetch_links(old_rows + new_rows, tmp_path, config(srv, partitions=4))
        hits = dict(srv.hits)
    # only the new links were fetched, once each
    assert hits == {"/page/5": len(new_rows)}
    assert s.dropped["already_fetched"] == len(old_rows) and s.n_out == len(new_rows)
    # the old log is kept (renamed), its lines split into the partitions' logs; the old WARCs untouched
    assert not (tmp_path / "outcomes.jsonl").exists()
    assert (tmp_path / "outcomes.legacy.jsonl").read_bytes() == old_log
    assert {w.name: w.read_bytes() for w in (tmp_path / "warc").glob("webtext-0*.warc.gz")} == old_warcs
    lay = orjson.loads((tmp_path / "partitions.json").read_bytes())
    assert lay["partitions"] == 4 and sum(lay["legacy_prefix"].values()) == len(old_log)
    for log in (tmp_path / "outcomes").glob("part-*.jsonl"):
        part = int(log.stem.split("-")[1])
        assert all(host_partition(orjson.loads(l)["url_norm"], 4) == part for l in log.read_bytes().splitlines())
    outcomes = read_outcomes(tmp_path)
    assert len(outcomes) == len(old_rows) + len(new_rows) and all(r["outcome"] == "ok" for r in outcomes.values())
    # every ok outcome, old or new, points at a readable record
    for rec in outcomes.values():
        with open(tmp_path / "warc" / rec["warc_file"], "rb") as fh:
            fh.seek(rec["warc_offset"])
            assert next(iter(ArchiveIterator(fh))).rec_headers.get_header("WARC-Target-URI") == rec["url"]
    ex = extract_documents(tasks_from_fetch(tmp_path), tmp_path / "docs", ExtractConfig(workers=1))
    assert ex.n_in == len(outcomes) and len(read_documents(tmp_path / "docs")) == ex.n_out
    # taking over happens once: another run neither splits again nor fetches
    again = fetch_links(old_rows + new_rows, tmp_path, test_fetch_config(partitions=4))
    assert again.n_out == 0 and (tmp_path / "outcomes.legacy.jsonl").read_bytes() == old_log
    assert sum(len(l.read_bytes().splitlines()) for l in (tmp_path / "outcomes").glob("part-*.jsonl")) == \
        len(old_rows) + len(new_rows)


def test_a_partition_being_fetched_elsewhere_is_refused_not_fetched_twice(tmp_path, pages):
    """A partition task that outlived its build (still running on a cluster's worker after
    the build was interrupted) holds its partition: a second fetch of it is refused with
    who holds it, and runs once the first is gone (the kernel drops a dead holder's lock)."""
    import subprocess
    import sys
    import time

    from pipeline.fetch.stage import PartitionBusy

    with WebServer(pages) as srv:
        cfg = config(srv, partitions=4)
        rows = links(HOSTS, 2)
        part = spool_links(iter(rows), tmp_path, cfg)[0]
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                                   "from pipeline.fetch.stage import _partition_lock\n"
                                   f"with _partition_lock(Path({str(tmp_path)!r}), {part}):\n"
                                   "    print('held', flush=True); time.sleep(600)"],
                                  stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(PartitionBusy, match=f"partition {part} of .* by pid {holder.pid} on "):
                fetch_partition(tmp_path, cfg, part)
            assert not outcome_lines(tmp_path)
        finally:
            holder.kill()
            holder.wait()
        time.sleep(0.1)
        r = fetch_partition(tmp_path, cfg, part)
    assert r["out"] == len([x for x in rows if host_partition(x["url_norm"], 4) == part]) > 0
