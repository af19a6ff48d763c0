"""The build's extract reads each fetch outcome log once: a later build reads only
the lines fetch appended since, a run killed between writing a part and its ledger
redoes that chunk (nothing lost, nothing twice), an extract directory of the first
layout is taken over, unreadable lines are counted and a line still being written is
left for the next run. Real pages (../shared AEB) served on 127.0.0.1, real WARC."""

import orjson
import pytest
from webtext_testlib import WebServer, aeb_pages, test_fetch_config

import pipeline.extract.stage as ex
from pipeline.core.config import ExtractConfig
from pipeline.core.urls import normalize_url, url_id
from pipeline.extract.stage import (
    extract_documents,
    extract_fetched,
    outcome_logs,
    pending_logs,
    read_documents,
    tasks_from_fetch,
)
from pipeline.fetch.stage import fetch_links


@pytest.fixture(scope="module")
def pages():
    return [p["html"] for p in aeb_pages(60)]


def rows(base, idx):
    out = []
    for i in idx:
        u = f"{base}/page/{i}"
        out.append({"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u), "created_utc": 1_500_000_000 + i,
                    "score": 3 + i, "score_total": 3 + i, "subreddits": ["news"], "reddit_ids": [f"t3_{i}"]})
    return out


def docs_of(out) -> dict[str, str]:
    t = read_documents(out, ["id", "text"], pattern="part-*.parquet").to_pylist()
    ids = [d["id"] for d in t]
    assert len(ids) == len(set(ids)), "a document twice"
    return {d["id"]: d["text"] for d in t}


@pytest.fixture(scope="module")
def fetched(pages, tmp_path_factory):
    """One fetch directory built in two runs (40 pages, then 20 more), and the reference:
    every page extracted in one go."""
    base = tmp_path_factory.mktemp("fx")
    with WebServer(pages) as srv:
        fetch_links(rows(srv.url, range(40)), base / "fetch", test_fetch_config())
        size_after_first = {k: p.stat().st_size for k, p in outcome_logs(base / "fetch").items()}
        fetch_links(rows(srv.url, range(60)), base / "fetch", test_fetch_config())
    cfg = ExtractConfig(workers=2)
    extract_documents(tasks_from_fetch(base / "fetch"), base / "reference", cfg)
    return base, size_after_first, docs_of(base / "reference")


def ok_lines(fetch) -> int:
    return sum(1 for p in outcome_logs(fetch).values() for l in p.read_bytes().splitlines()
               if l.strip() and orjson.loads(l).get("outcome") == "ok")


def copy_fetch(src, dst, cut: dict | None = None):
    """A copy of the fetch directory (its logs cut to CUT bytes: as after the first run)."""
    import shutil

    shutil.copytree(src, dst)
    for label, p in outcome_logs(dst).items():
        if cut is not None:
            with open(p, "r+b") as fh:
                fh.truncate(cut.get(label, 0))
    return dst


def test_a_later_run_reads_only_the_new_outcome_lines(fetched, tmp_path):
    base, first, reference = fetched
    cfg = ExtractConfig(workers=2)
    fetch = copy_fetch(base / "fetch", tmp_path / "fetch", cut=first)
    n_first = ok_lines(fetch)
    s1 = extract_fetched(fetch, tmp_path / "ex", cfg)
    for label, p in outcome_logs(base / "fetch").items():  # fetch's second run appends
        (outcome_logs(fetch)[label]).write_bytes(p.read_bytes())
    assert pending_logs(fetch, tmp_path / "ex")
    s2 = extract_fetched(fetch, tmp_path / "ex", cfg)
    n_all = ok_lines(fetch)
    assert 30 < n_first < n_all and n_all >= 50
    assert s1.n_in == n_first and s2.n_in == n_all - n_first and s2.extra["pages_done_before"] == n_first
    assert "already_extracted" not in s2.dropped and s1.balanced() and s2.balanced()
    assert docs_of(tmp_path / "ex") == reference
    # nothing new: nothing read
    assert pending_logs(fetch, tmp_path / "ex") == []
    s3 = extract_fetched(fetch, tmp_path / "ex", cfg)
    assert s3.n_in == 0 and docs_of(tmp_path / "ex") == reference
    # the Reddit fields travel with the documents: fetch wrote them into each ok outcome record
    t = read_documents(tmp_path / "ex", ["url_norm", "score", "created_utc", "reddit_ids"], pattern="part-*.parquet").to_pylist()
    for d in t:
        i = int(d["url_norm"].rsplit("/", 1)[1])
        assert (d["created_utc"], d["score"], d["reddit_ids"]) == (1_500_000_000 + i, 3 + i, [f"t3_{i}"]), d


def test_a_run_killed_between_a_part_and_its_ledger_redoes_that_chunk(fetched, tmp_path, monkeypatch):
    base, _, reference = fetched
    fetch = copy_fetch(base / "fetch", tmp_path / "fetch")
    monkeypatch.setattr(ex, "CHUNK", 8)
    real = ex.atomic_write_json
    calls = {"n": 0}

    def dies_on_the_third_ledger(path, obj):
        calls["n"] += 1
        if calls["n"] == 3:  # the part of chunk 3 is written, its ledger entry never is
            raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(ex, "atomic_write_json", dies_on_the_third_ledger)
    with pytest.raises(KeyboardInterrupt):
        extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=1))
    orphans = sorted(p.name for p in (tmp_path / "ex").glob("part-*-00002.parquet"))
    assert orphans, "the killed chunk's part should be on disk"
    monkeypatch.setattr(ex, "atomic_write_json", real)
    s = extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=1))
    assert s.extra["pages_done_before"] == 16 and s.n_in == ok_lines(fetch) - 16
    assert docs_of(tmp_path / "ex") == reference


def test_an_extract_directory_of_the_first_layout_is_taken_over(fetched, tmp_path):
    base, _, reference = fetched
    fetch = copy_fetch(base / "fetch", tmp_path / "fetch")
    old = extract_documents(tasks_from_fetch(fetch), tmp_path / "ex", ExtractConfig(workers=2))  # part-NNNNN + done files
    s = extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=2))
    assert s.dropped["already_extracted"] == old.n_in and s.n_out == 0
    assert docs_of(tmp_path / "ex") == reference
    assert extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=2)).n_in == 0


def test_unreadable_and_unfinished_outcome_lines(fetched, tmp_path):
    base, _, reference = fetched
    fetch = copy_fetch(base / "fetch", tmp_path / "fetch")
    label, log = sorted(outcome_logs(fetch).items())[0]
    good = log.read_bytes()
    lines = good.splitlines(keepends=True)
    ok_line = next(l for l in lines if orjson.loads(l).get("outcome") == "ok")
    log.write_bytes(good + b"{not json\n" + ok_line[:-5])  # a torn line, then one still being written
    s = extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=2))
    assert s.extra["unreadable_outcome_lines"] == 1
    assert any("unreadable line" in n for n in s.notes)
    led = orjson.loads((tmp_path / "ex" / "ledger" / f"{label}.json").read_bytes())
    assert led["consumed"] == len(good) + len(b"{not json\n")  # the unfinished line is the next run's
    assert docs_of(tmp_path / "ex") == reference


def test_a_first_layout_fetch_dir_split_into_partitions_is_extracted_once(pages, tmp_path):
    """A fetch directory of the first layout (one outcomes.jsonl), already extracted, is
    split into partitions by the next fetch; extract reads only the lines fetched after."""
    import os

    from pipeline.fetch.outcomes import OUTCOMES, outcome_files
    from pipeline.fetch.stage import LAYOUT, LEGACY

    fetch = tmp_path / "fetch"
    with WebServer(pages) as srv:
        fetch_links(rows(srv.url, range(30)), fetch, test_fetch_config(partitions=1))
        # as the first layout left it: one log at the top, no partitions.json
        (log,) = outcome_files(fetch)
        os.replace(log, fetch / OUTCOMES)
        (fetch / LAYOUT).unlink()
        first = extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=2))
        assert first.extra["logs_read"] == ["f-all"] and first.n_in == ok_lines(fetch)
        fetch_links(rows(srv.url, range(50)), fetch, test_fetch_config())  # splits the old log, fetches 20 more
    assert (fetch / LEGACY).is_file() and not (fetch / OUTCOMES).exists()
    second = extract_fetched(fetch, tmp_path / "ex", ExtractConfig(workers=2))
    # the partition logs begin with the old log's lines (copied, not fetched again): not read twice
    assert second.n_in == ok_lines(fetch) - 2 * ok_lines_of(fetch / LEGACY)
    assert second.n_in > 0 and "already_extracted" not in second.dropped
    docs = docs_of(tmp_path / "ex")  # raises on a document twice
    assert len(docs) == first.n_out + second.n_out


def ok_lines_of(path) -> int:
    return sum(1 for l in path.read_bytes().splitlines() if l.strip() and orjson.loads(l).get("outcome") == "ok")


def test_the_cli_extract_of_a_fetch_directory_reads_each_log_once(fetched, tmp_path, capsys):
    """`webtext extract --fetch DIR` is the build's extract: a second call reads nothing."""
    from flows.cli import main

    base, _, reference = fetched
    fetch = copy_fetch(base / "fetch", tmp_path / "fetch")
    assert main(["extract", "--fetch", str(fetch), "--out", str(tmp_path / "ex"), "--workers", "2"]) == 0
    assert docs_of(tmp_path / "ex") == reference and (tmp_path / "ex" / "ledger").is_dir()
    assert pending_logs(fetch, tmp_path / "ex") == []
    assert main(["extract", "--fetch", str(fetch), "--out", str(tmp_path / "ex")]) == 0
    assert docs_of(tmp_path / "ex") == reference
    assert main(["extract", "--fetch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "ex2")]) == 2
    assert "fetch directory not found" in capsys.readouterr().err and not (tmp_path / "ex2").exists()
