import bz2
import lzma

import orjson
import pytest
import zstandard
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.links.merge import harvest_dump_links
from pipeline.links.table import read_links
from pipeline.sources.dumps import DumpReadStats, detect_codec, iter_submissions

MONTH_FILES = ["RS_v2_2005-07.xz", "RS_2005-07.bz2", "RS_2005-07.plain.zst", "RS_2005-07.long31.zst"]


def test_long31_really_needs_a_large_window():
    data = shared("reddit", "RS_2005-07.long31.zst").read_bytes()
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompressobj().decompress(data)
    stats = DumpReadStats("x")
    assert sum(1 for _ in iter_submissions(shared("reddit", "RS_2005-07.long31.zst"), stats)) == 1079
    assert stats.error is None and not stats.bad


@pytest.mark.parametrize("name,codec", [("RS_v2_2005-07.xz", "xz"), ("RS_2005-07.bz2", "bz2"), ("RS_2005-07.plain.zst", "zst")])
def test_codec_detected_from_bytes(name, codec):
    assert detect_codec(shared("reddit", name)) == codec


def test_same_url_set_whatever_the_codec(tmp_path):
    # Plain NDJSON and gzip too, made from the real month.
    raw = lzma.decompress(shared("reddit", "RS_v2_2005-07.xz").read_bytes())
    plain = tmp_path / "RS_2005-07.ndjson"
    plain.write_bytes(raw)
    import gzip

    gz = tmp_path / "RS_2005-07.gz"
    gz.write_bytes(gzip.compress(raw))
    paths = [shared("reddit", n) for n in MONTH_FILES] + [plain, gz]
    url_sets = []
    for i, p in enumerate(paths):
        s = harvest_dump_links([p], tmp_path / f"out{i}", LinksConfig())
        assert s.n_in == 1079 and s.balanced()
        url_sets.append(set(read_links(tmp_path / f"out{i}").column("url_norm").to_pylist()))
    assert all(u == url_sets[0] for u in url_sets)
    assert 700 < len(url_sets[0]) < 1079


def test_drop_reasons_add_up_to_the_input(tmp_path):
    s = harvest_dump_links(
        [shared("reddit", "RS_v2_2005-06.xz"), shared("reddit", "RS_v2_2005-07.xz")], tmp_path, LinksConfig()
    )
    assert s.n_in == 103 + 1079
    assert s.n_in == s.n_out + sum(s.dropped.values())
    assert s.dropped["low_score"] > 0
    table = read_links(tmp_path)
    assert table.num_rows == s.n_out
    assert min(table.column("score").to_pylist()) >= 3
    summary = orjson.loads((tmp_path / "summary.links.json").read_bytes())
    assert summary["balanced"] and summary["in"] == 1182


def _write_ndjson(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_schema_drift_and_bad_lines_are_counted(tmp_path):
    good = {"id": "a1", "url": "http://example.com/a", "score": 5, "is_self": False, "subreddit": "x", "created_utc": 1500000000}
    lines = [
        orjson.dumps(good),
        orjson.dumps({**good, "id": "a2", "url": "http://example.com/b", "created_utc": "1420070400"}),  # str (2014-2015)
        orjson.dumps({**good, "id": "a3", "url": "http://example.com/c", "created_utc": 1690000000.0}),  # float (API, 2023+)
        orjson.dumps({**good, "id": "a4", "url": "http://example.com/d", "score": None}),  # null (2017-10)
        orjson.dumps({**good, "id": "a5", "url": None, "domain": None}),  # null (2022-08)
        orjson.dumps({"id": "a6", "url": "http://example.com/f", "score": 9}),  # fields missing
        orjson.dumps({**good, "id": "a7", "url": "https://www.reddit.com/r/x/comments/1/", "url_overridden_by_dest": "http://example.com/g"}),
        orjson.dumps({**good, "id": "a8", "url": "http://example.com/h", "score": "12"}),  # wrong type, coerced
        b'{"id": "broken", "url": ',  # malformed JSON
        b'{"id": "bad\xff\xfeutf8", "url": "http://example.com/x", "score": 5}',  # bad UTF-8
        b"[1, 2, 3]",  # not an object
        b"",  # blank line: not a record
    ]
    path = _write_ndjson(tmp_path / "RS_drift.ndjson", lines)
    cfg = LinksConfig(created_before=None)
    s = harvest_dump_links([path], tmp_path / "out", cfg)
    assert s.n_in == 11
    assert s.dropped["malformed_json"] == 1
    assert s.dropped["bad_utf8"] == 1
    assert s.dropped["bad_field_type"] == 1
    assert s.dropped["score_missing"] == 1
    assert s.dropped["missing_url"] == 1
    assert s.balanced()
    urls = set(read_links(tmp_path / "out").column("url_norm").to_pylist())
    assert urls == {"example.com/a", "example.com/b", "example.com/c", "example.com/f", "example.com/g", "example.com/h"}
    t = read_links(tmp_path / "out").to_pylist()
    created = {r["url_norm"]: r["created_utc"] for r in t}
    assert created["example.com/b"] == 1420070400 and created["example.com/c"] == 1690000000


@pytest.mark.parametrize("codec", ["xz", "bz2", "zst"])
def test_truncated_archive_reports_how_far_it_got_and_next_file_is_read(tmp_path, codec):
    raw = lzma.decompress(shared("reddit", "RS_v2_2005-07.xz").read_bytes())
    data = {"xz": lzma.compress(raw), "bz2": bz2.compress(raw, 1), "zst": zstandard.ZstdCompressor().compress(raw)}[codec]
    cut = tmp_path / f"RS_cut.{codec}"
    cut.write_bytes(data[: len(data) // 2])
    s = harvest_dump_links([cut, shared("reddit", "RS_v2_2005-06.xz")], tmp_path / "out", LinksConfig())
    files = s.extra["files"]
    assert files[0]["error"] and 0 < files[0]["records"] < 1079
    assert files[1]["records"] == 103 and files[1]["error"] is None
    assert any("truncated" in n for n in s.notes)
    assert s.balanced()


def test_missing_dump_fails_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zst"):
        harvest_dump_links([shared("reddit", "RS_v2_2005-06.xz"), tmp_path / "nope.zst"], tmp_path / "out", LinksConfig())
    assert not (tmp_path / "out").exists()


def test_links_accumulate_month_by_month_and_each_dump_is_read_once(tmp_path):
    a, b = shared("reddit", "RS_v2_2005-06.xz"), shared("reddit", "RS_v2_2005-07.xz")
    both = harvest_dump_links([a, b], tmp_path / "both", LinksConfig())
    first = harvest_dump_links([a], tmp_path / "inc", LinksConfig())
    s = harvest_dump_links([a, b], tmp_path / "inc", LinksConfig())
    assert s.extra["harvested_now"] == [str(b)] and s.extra["reused_parts"] == [str(a)]
    # Each run's funnel counts its own submissions; together they are the one-shot merge's.
    assert (first.extra["run"], s.extra["run"]) == (0, 1) and s.n_in == 1079 and s.balanced()
    assert first.n_in + s.n_in == both.n_in and first.n_out + s.n_out == both.n_out
    key = lambda t: sorted(zip(t.column("url_norm").to_pylist(), t.column("created_utc").to_pylist(), t.column("url").to_pylist()))
    assert key(read_links(tmp_path / "inc")) == key(read_links(tmp_path / "both"))
    # Another links configuration does not reuse the parts made under this one.
    s3 = harvest_dump_links([a], tmp_path / "inc", LinksConfig(min_score=10))
    assert s3.extra["harvested_now"] == [str(a)] and any("another links configuration" in n for n in s3.notes)


def test_absurd_numbers_are_counted_not_fatal(tmp_path):
    """inf / 1e300 / >= 2**63 in score or created_utc: the record is counted as bad_number
    (or bad_field_type when it cannot be read as a number), the rest of the month is kept."""
    good = {"id": "a1", "url": "http://example.com/a", "score": 5, "is_self": False, "subreddit": "x", "created_utc": 1500000000}
    lines = [orjson.dumps(good)]
    bad_values = [("score", "inf"), ("score", 1e300), ("score", 2**63), ("score", -(2**63)), ("created_utc", "inf"),
                  ("created_utc", 1e300), ("created_utc", 2**63), ("created_utc", "nan"), ("created_utc", -5)]
    for i, (field, value) in enumerate(bad_values):
        rec = {**good, "id": f"b{i}", "url": f"http://example.com/bad{i}", field: value}
        lines.append(orjson.dumps(rec) if not (isinstance(value, int) and abs(value) >= 2**63)
                     else orjson.dumps({k: v for k, v in rec.items() if k != field})[:-1] + f',"{field}":{value}}}'.encode())
    path = _write_ndjson(tmp_path / "RS_absurd.ndjson", lines)
    s = harvest_dump_links([path], tmp_path / "out", LinksConfig(created_before=None))
    assert s.n_in == 1 + len(bad_values) and s.balanced()
    assert s.dropped["bad_number"] + s.dropped.get("bad_field_type", 0) == len(bad_values)
    assert set(read_links(tmp_path / "out").column("url_norm").to_pylist()) == {"example.com/a"}


@pytest.mark.parametrize("codec", ["zst", "gz"])
def test_a_line_longer_than_max_line_is_skipped_in_every_codec(tmp_path, codec):
    """A 70 MB line (it compresses to a few KB) is counted as line_too_long, whatever
    the codec; zstd used to hand it over whole and parse it as a record."""
    import gzip

    good = b'{"id":"a","url":"http://example.com/a","score":5,"created_utc":1500000000}\n'
    data = good * 10 + b'{"id":"b","title":"' + b"a" * 70_000_000 + b'"}\n' + good * 10
    path = tmp_path / f"RS_long.{codec}"
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data) if codec == "zst" else gzip.compress(data, 1))
    stats = DumpReadStats(str(path))
    assert sum(1 for _ in iter_submissions(path, stats)) == 20
    assert stats.bad == {"line_too_long": 1} and stats.error is None


@pytest.mark.parametrize("nest", [
    lambda n: "[" * n + "1" + "]" * n,  # lists in an unused field
    lambda n: '{"a":' * n + "1" + "}" * n,  # objects in an unused field
])
@pytest.mark.parametrize("where", ["junk", "title", "media"])
def test_a_line_nested_100000_deep_is_counted_and_the_lines_around_it_kept(tmp_path, nest, where):
    good = [{"id": f"g{i}", "url": f"http://n.example/{i}", "score": 5, "created_utc": 1_500_000_000,
             "subreddit": "s", "title": "t"} for i in range(3)]
    deep = orjson.dumps(good[0] | {"id": "deep", "url": "http://n.example/deep"})[:-1] + \
        f',"{where}":{nest(100_000)}}}'.encode()
    path = tmp_path / "RS_2017-01.zst"
    body = orjson.dumps(good[0]) + b"\n" + deep + b"\n" + b"\n".join(orjson.dumps(g) for g in good[1:]) + b"\n"
    path.write_bytes(zstandard.ZstdCompressor().compress(body))
    s = harvest_dump_links([path], tmp_path / "out", LinksConfig())
    assert s.n_in == 4 and s.balanced()
    assert s.dropped.get("too_deeply_nested", 0) + s.dropped.get("malformed_json", 0) == 1
    assert sorted(r["url_norm"] for r in read_links(tmp_path / "out").to_pylist()) == [f"n.example/{i}" for i in range(3)]


@pytest.mark.parametrize("per_line", [False, True])
def test_bytes_that_are_not_utf8_cost_the_record_only_in_a_field_the_stage_reads(tmp_path, per_line):
    # author, domain, permalink and selftext are skipped unread: a damaged value there
    # keeps the record; in the title, the id or the URL it is counted as bad_utf8
    from pipeline.sources.dumps import iter_submission_batches

    good = {"id": "a", "url": "http://example.com/a", "score": 5, "created_utc": 1500000000, "title": "t"}
    lines = [orjson.dumps({**good, "id": f"k{i}"}).replace(b'"id"', b'"%s":"x\xff\xfe","id"' % f.encode())
             for i, f in enumerate(("author", "domain", "permalink", "selftext"))]
    lines += [orjson.dumps({**good, "id": "b1", "title": "X"}).replace(b'"X"', b'"x\xff"'),
              orjson.dumps({**good, "id": "b2", "url": "http://e.com/X"}).replace(b"X", b"\xc3")]
    path = tmp_path / "RS_bytes.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = DumpReadStats(str(path))
    subs = [s for batch in iter_submission_batches(path, stats, per_line=per_line) for s in batch]
    assert [s.id for s in subs] == ["k0", "k1", "k2", "k3"]
    assert dict(stats.bad) == {"bad_utf8": 2}


@pytest.mark.parametrize("codec", ["zst", "plain"])
def test_a_long_line_under_max_line_is_read_whole_across_reads(tmp_path, codec):
    # 5 MB: longer than the reader's buffer (2 MiB), so it grows; the lines after it
    # arrive in the same read as its end
    good = [orjson.dumps({"id": f"g{i}", "url": f"http://example.com/{i}", "score": 5, "created_utc": 1.5e9})
            for i in range(40)]
    long = orjson.dumps({"id": "long", "url": "http://example.com/long", "score": 5, "title": "é" * 2_500_000})
    data = b"\n".join(good[:20] + [long] + good[20:])  # no newline at the end
    path = tmp_path / f"RS_longish.{codec}"
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if codec == "zst" else data)
    stats = DumpReadStats(str(path))
    subs = list(iter_submissions(path, stats))
    assert [s.id for s in subs] == [f"g{i}" for i in range(20)] + ["long"] + [f"g{i}" for i in range(20, 40)]
    assert len(subs[20].title) == 2_500_000
    assert stats.lines == stats.records == 41 and not stats.bad
