"""Damaged files: a truncated Parquet part, a corrupt WARC member. Each is survived
and named (work-in-progress stages) or refused with one clear sentence (the corpus)."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.errors import DamagedFile
from pipeline.core.config import DedupConfig, FilterConfig
from pipeline.dedup.stage import dedup_documents
from pipeline.filters.stage import filter_documents
from pipeline.links.table import read_links

REPO = Path(__file__).resolve().parents[2]
WEBTEXT = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


def doc(i: int) -> dict:
    words = " ".join(f"w{i}x{j}" for j in range(300))
    return {"id": f"d{i:04d}", "url": f"http://news{i}.example/a", "url_norm": f"news{i}.example/a", "text": words,
            "title": f"t{i}", "score": 5, "created_utc": 1500000000 + i}


def write_part(path: Path, docs: list[dict]) -> None:
    pq.write_table(pa.Table.from_pylist(docs), path)


def truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def test_a_truncated_part_is_skipped_and_named_then_taken_once_restored(tmp_path):
    src = tmp_path / "extract"
    src.mkdir()
    write_part(src / "part-00000.parquet", [doc(i) for i in range(5)])
    write_part(src / "part-00001.parquet", [doc(i) for i in range(5, 10)])
    whole = truncate(src / "part-00001.parquet")
    cfg = FilterConfig(min_length=10, length_unit="words", languages=("en",), min_language_confidence=0.0, drop_junk=False)
    cfg.validate()
    s = filter_documents(src, tmp_path / "filter", cfg)
    assert s.n_in == 5 and s.balanced()
    assert [d["file"] for d in s.extra["damaged_parts"]] == [str(src / "part-00001.parquet")]
    assert any("part-00001.parquet: damaged Parquet file" in n for n in s.notes)
    # dedup reads what filter wrote; a damaged filter output is skipped and named too
    write_part(tmp_path / "filter" / "part-00009.parquet", [doc(i) for i in range(20, 22)])
    truncate(tmp_path / "filter" / "part-00009.parquet")
    d = dedup_documents(tmp_path / "filter", tmp_path / "dedup", DedupConfig())
    assert d.extra["damaged_parts"][0]["file"].endswith("part-00009.parquet") and d.balanced()
    # Restored: the next run takes the part it skipped, and only that one.
    (src / "part-00001.parquet").write_bytes(whole)
    s2 = filter_documents(src, tmp_path / "filter", cfg)
    assert s2.dropped["already_filtered"] == 5 and s2.n_in == 10 and "damaged_parts" not in s2.extra


def test_a_damaged_shard_stops_tokenize_and_the_cli_says_which_file(tmp_path):
    from model.data import tokenize_shards

    shards = tmp_path / "shards"
    shards.mkdir()
    write_part(shards / "shard-a.parquet", [doc(i) for i in range(3)])
    write_part(shards / "shard-b.parquet", [doc(i) for i in range(3, 6)])
    truncate(shards / "shard-b.parquet")
    with pytest.raises(DamagedFile, match="shard-b.parquet: damaged Parquet file"):
        tokenize_shards(shards, tmp_path / "tokens", val_fraction=0.0, progress=False)
    assert not (tmp_path / "tokens").exists()  # nothing written
    r = subprocess.run(WEBTEXT + ["tokenize", "--in", str(shards), "--out", str(tmp_path / "t2")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "shard-b.parquet: damaged Parquet file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(WEBTEXT + ["shard", "--in", str(shards), "--out", str(tmp_path / "s2")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "shard-b.parquet: damaged Parquet file" in r.stderr and "Traceback" not in r.stderr


def test_a_corrupt_member_in_the_middle_of_a_warc_costs_only_its_own_record(tmp_path):
    """Six pages fetched into one WARC (12 gzip members: request + response each); the
    bytes of one response member are garbled. Extraction and replay read the other
    five pages, before and after the damage, and name the damaged stretch."""
    from webtext_testlib import WebServer, aeb_pages, test_fetch_config

    from pipeline.core.config import ExtractConfig
    from pipeline.core.urls import normalize_url, url_id
    from pipeline.extract.stage import extract_documents, tasks_from_warcs
    from pipeline.fetch.outcomes import read_outcomes
    from pipeline.fetch.replay import replay_links
    from pipeline.fetch.stage import fetch_links
    from pipeline.fetch.warcstore import index_warcs

    def rows_for(base, paths):
        return [{"id": url_id(normalize_url(base + p)), "url": base + p, "url_norm": normalize_url(base + p)} for p in paths]

    pages = [p["html"] for p in aeb_pages(6)]
    with WebServer(pages) as srv:
        rows = rows_for(srv.url, [f"/page/{i}" for i in range(6)])
        cfg = test_fetch_config(workers=1)
        fetch_links(rows, tmp_path / "live", cfg)
    [warc] = sorted((tmp_path / "live" / "warc").glob("*.warc.gz"))
    outcomes = sorted(read_outcomes(tmp_path / "live").values(), key=lambda r: r["warc_offset"])
    victim = outcomes[2]  # the third response record: records before and after it exist
    data = bytearray(warc.read_bytes())
    mid = victim["warc_offset"] + victim["warc_length"] // 2
    data[mid : mid + 64] = b"\x00" * 64
    warc.write_bytes(bytes(data))

    damaged: list[dict] = []
    index = index_warcs([warc], damaged)
    assert len(index) == 5 and victim["url_norm"] not in index
    assert len(damaged) == 1 and damaged[0]["start"] <= mid < damaged[0]["end"]
    s = replay_links(rows, tmp_path / "replay", [warc])
    assert s.n_out == 5 and s.dropped == {"not_in_archive": 1} and s.extra["damaged_warc_regions"]

    damaged = []
    e = extract_documents(list(tasks_from_warcs([warc], damaged)), tmp_path / "docs", ExtractConfig(workers=1),
                          damaged=damaged)
    assert e.dropped["warc_damaged"] == 1 and e.balanced()
    assert e.n_in == 6 and e.n_out + sum(v for k, v in e.dropped.items() if k != "warc_damaged") == 5
    assert any("unreadable" in n for n in e.notes)


def test_a_file_that_is_not_a_warc_is_refused_in_one_sentence(tmp_path):
    bogus = tmp_path / "notes.warc.gz"
    bogus.write_bytes(b"this is not a WARC file\n" * 100)
    r = subprocess.run(WEBTEXT + ["extract", "--warc", str(bogus), "--out", str(tmp_path / "docs")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "not a WARC file" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "docs").exists()


def test_a_full_disk_ends_in_one_sentence_and_the_rerun_with_space_completes(tmp_path):
    """A real 1 MiB tmpfs, filled up: `webtext links` stops with exit 2 and one
    sentence; once space is freed the same command completes and equals a run that
    never lacked space. Skips where mounting is not allowed (needs root)."""
    from webtext_testlib import shared

    dump = shared("reddit", "RS_2005-07.bz2")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        filler = mnt / "filler"
        with open(filler, "wb") as fh:  # leave ~16 KB free
            try:
                fh.write(b"\0" * (1024 * 1024 - 16 * 1024))
            except OSError:
                pass
        env = dict(os.environ, PYTHONPATH=str(REPO))
        cmd = WEBTEXT + ["links", "--dump", str(dump), "--out", str(mnt / "links")]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 2 and "the disk is full" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
        filler.unlink()
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        ref = subprocess.run(WEBTEXT + ["links", "--dump", str(dump), "--out", str(tmp_path / "ref")], cwd=REPO,
                             capture_output=True, text=True, timeout=120, env=env)
        assert ref.returncode == 0
        got = read_links(mnt / "links").sort_by("url_norm")
        want = read_links(tmp_path / "ref").sort_by("url_norm")
        assert got.column("url_norm").to_pylist() == want.column("url_norm").to_pylist() and got.num_rows > 0
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_warc_response_without_target_uri_is_dropped_not_fatal(tmp_path):
    """warcio cannot parse such a record at all: it is counted as warc_damaged (with
    warcio's error named) and the records around it are extracted."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    from webtext_testlib import aeb_pages

    from pipeline.core.config import ExtractConfig
    from pipeline.extract.stage import extract_documents, tasks_from_warcs

    pages = [p["html"] for p in aeb_pages(3)]
    path = tmp_path / "mixed.warc.gz"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for i, html in enumerate(pages):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            rec = w.create_warc_record(f"http://site{i}.example/a", "response", payload=io.BytesIO(html.encode()),
                                       http_headers=http)
            if i == 1:
                rec.rec_headers.remove_header("WARC-Target-URI")
            w.write_record(rec)
    damaged: list = []
    e = extract_documents(list(tasks_from_warcs([path], damaged)), tmp_path / "docs", ExtractConfig(workers=1),
                          damaged=damaged)
    assert e.n_in == 3 and e.dropped.get("warc_damaged") == 1 and e.n_out == 2 and e.balanced()
    assert "AttributeError" in damaged[0]["error"]


def _plain_warc(path: Path, pages: list[str], wrong: dict[int, int]) -> list[str]:
    """An uncompressed WARC of one response per page; record i's Content-Length is off by
    WRONG[i] bytes. Returns the URLs."""
    import io
    import re

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    urls, chunks = [], []
    for i, html in enumerate(pages):
        buf = io.BytesIO()
        w = WARCWriter(buf, gzip=False)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        url = f"http://site{i}.example/page"
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(html.encode()), http_headers=http))
        raw = buf.getvalue()
        if i in wrong:
            n = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", raw).group(1))
            raw = raw.replace(b"\r\nContent-Length: %d\r\n" % n, b"\r\nContent-Length: %d\r\n" % (n + wrong[i]), 1)
        urls.append(url)
        chunks.append(raw)
    path.write_bytes(b"".join(chunks))
    return urls


@pytest.mark.parametrize("wrong", [{3: 5000}, {3: -40}, {3: 5000, 11: -7}, {0: 3}, {19: 100}])
def test_a_wrong_content_length_in_an_uncompressed_warc_costs_only_its_own_record(tmp_path, wrong):
    """A record whose Content-Length is too long (it would swallow the records after it),
    too short, on the first or the last record: that record is counted as warc_damaged,
    every other record is extracted and replayed."""
    from webtext_testlib import aeb_pages

    from pipeline.core.config import ExtractConfig
    from pipeline.core.urls import normalize_url
    from pipeline.extract.stage import extract_documents, tasks_from_warcs
    from pipeline.fetch.replay import replay_links

    pages = [p["html"] for p in aeb_pages(20)]
    path = tmp_path / "plain.warc"
    urls = _plain_warc(path, pages, wrong)
    damaged: list = []
    tasks = list(tasks_from_warcs([path], damaged))
    assert len(tasks) == 20 - len(wrong) and len(damaged) == len(wrong)
    assert all("Content-Length" in d["error"] for d in damaged)
    e = extract_documents(tasks, tmp_path / "docs", ExtractConfig(workers=1), damaged=damaged)
    assert e.n_in == 20 and e.dropped["warc_damaged"] == len(wrong) and e.balanced()
    rows = [{"id": str(i), "url": u, "url_norm": normalize_url(u)} for i, u in enumerate(urls)]
    s = replay_links(rows, tmp_path / "replay", [path])
    assert s.n_out == 20 - len(wrong) and s.dropped == {"not_in_archive": len(wrong)}
    assert len(s.extra["damaged_warc_regions"]) == len(wrong)


def test_a_full_disk_during_fetch_ends_in_one_sentence_and_the_rerun_completes(tmp_path):
    """A real 60 KiB tmpfs as the fetch directory: `webtext fetch` stops with exit 2 and
    one sentence (WARC and outcome writes fail in the fetch threads); with space again the
    same command fetches what is left, every URL ends ok once. Skips without root."""
    from webtext_testlib import WebServer, aeb_pages

    from pipeline.core.urls import normalize_url, url_id
    from pipeline.fetch.outcomes import read_outcomes
    from pipeline.links.table import write_links

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        with WebServer([p["html"] for p in aeb_pages(12)]) as srv:
            urls = [f"{srv.url}/page/{i}" for i in range(12)]
            write_links([{"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u),
                          "created_utc": 1_500_000_000} for u in urls], tmp_path / "links" / "links.parquet")
            env = dict(os.environ, PYTHONPATH=str(REPO))
            cmd = WEBTEXT + ["fetch", "--links", str(tmp_path / "links"), "--out", str(mnt / "f"), "--allow-private",
                             "--no-robots", "--set", "fetch.per_host_delay_s=0"]
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
            assert r.returncode == 2 and "the disk is full" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
            subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
            assert r.returncode == 0, r.stderr[-2000:]
        out = read_outcomes(mnt / "f")
        assert sorted(o["url"] for o in out.values()) == sorted(urls) and {o["outcome"] for o in out.values()} == {"ok"}
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
