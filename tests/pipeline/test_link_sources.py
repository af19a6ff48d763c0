"""Link sources that exist after the Pushshift torrents: Arctic Shift months and plain URL lists.

Every file here is written by the test with the real codecs (zstd with a 2 GiB
window like Pushshift's/Arctic Shift's --long=31 files, Arctic Shift's zst_blocks
layout, gzip/xz/bz2, CSV, Parquet); nothing is mocked.
"""

import bz2
import gzip
import io
import lzma
import struct
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.core.errors import InputError
from pipeline.core.schema import LINKS_SCHEMA
from pipeline.extract.stage import load_reddit_meta
from pipeline.links.merge import harvest_dump_links
from pipeline.links.table import iter_links, read_links
from pipeline.sources.dumps import DumpReadStats, detect_codec, iter_submissions
from pipeline.sources.urllists import UrlListStats, iter_url_list

APRIL = 1711929600  # 2024-04-01T00:00:00Z
WINDOW = dict(created_after="2024-04-01", created_before="2024-05-01")


# --- Arctic Shift ------------------------------------------------------------------------


def as_post(id, url, score=10, created=APRIL + 3600, **kw) -> dict:
    """A submission shaped like Arctic Shift's RS_2024-04 (schemas/RS/2024/RS_2024-04.ts):
    `_meta` from the second retrieval, `retrieved_on`, int `created_utc`, `edited`
    bool-or-int, nested objects with URLs of their own, keys sorted."""
    post = {
        "_meta": {"retrieved_2nd_on": created + 36 * 3600},
        "all_awardings": [], "archived": False, "author": "someone", "author_flair_richtext": [],
        "created": created, "created_utc": created, "domain": url.split("/")[2] if "://" in url else "self.x",
        "downs": 0, "edited": False, "gildings": {}, "hide_score": False, "id": id,
        "is_created_from_ads_ui": False, "is_reddit_media_domain": False, "is_self": False, "is_video": False,
        "link_flair_richtext": [], "locked": False, "media": None, "media_embed": {}, "name": f"t3_{id}",
        "num_comments": 3, "over_18": False, "permalink": f"/r/news/comments/{id}/t/", "preview": {
            "enabled": False, "images": [{"id": "x", "resolutions": [], "source": {"height": 1, "url": "https://preview.redd.it/x.jpg", "width": 1}}]},
        "retrieved_on": created + 30, "score": score, "secure_media": None, "selftext": "", "spoiler": False,
        "stickied": False, "subreddit": "news", "subreddit_type": "public", "title": f"title {id}",
        "total_awards_received": 0, "treatment_tags": [], "ups": score, "upvote_ratio": 0.9, "url": url,
        "user_reports": [],
    }
    post.update(kw)
    return post


def arctic_shift_month() -> list[dict]:
    return [
        as_post("a1", "https://www.theguardian.com/world/2024/apr/01/story?utm_source=reddit", 120,
                url_overridden_by_dest="https://www.theguardian.com/world/2024/apr/01/story?utm_source=reddit"),
        as_post("a2", "https://i.redd.it/abc.jpeg", 50, is_reddit_media_domain=True, post_hint="image"),
        as_post("a3", "https://www.reddit.com/gallery/a3", 80, is_gallery=True,
                gallery_data={"items": [{"id": 1, "media_id": "m", "outbound_url": "https://shop.example/gallery-item"}]}),
        as_post("a4", "https://www.reddit.com/r/AskReddit/comments/a4/q/", 40, is_self=True, selftext="question?"),
        as_post("a5", "/r/Fallout/comments/a5/x/", 30, crosspost_parent="t3_zz",
                crosspost_parent_list=[{"id": "zz", "url": "https://nested.example/crosspost-parent", "created_utc": APRIL - 99}]),
        # deleted 36 h later: still a link Reddit voted on, as in the Pushshift months
        as_post("a6", "https://blog.example.org/post/1", 45, removed_by_category="moderator",
                _meta={"retrieved_2nd_on": APRIL + 9999, "was_deleted_later": True, "removal_type": "moderator"}),
        # made in the ads UI (promoted is false on these in Arctic Shift's files); karma rules apply as to any post
        as_post("a7", "https://store.example/product", 1, is_created_from_ads_ui=True, promoted=False,
                call_to_action="Shop Now", href_url="https://ads.example/click", outbound_link={},
                ad_promoted_user_posts=[{"url": "https://nested.example/ad", "created_utc": APRIL}]),
        as_post("a8", "https://adult.example/x", 90, over_18=True),
        as_post("a9", "https://low.example/x", 2),
        as_post("a10", "https://early.example/x", 99, created=APRIL - 1),  # 2024-03-31T23:59:59Z
        as_post("a11", "http://news.example.com/a", 4, created_utc=float(APRIL + 7200), edited=APRIL + 7300),
        as_post("a12", "https://news.example.com/a/", 7, created=APRIL + 9000),
        as_post("a14", "https://www.youtube.com/watch?v=abc", 500, media={"type": "youtube.com", "oembed": {"url": "https://nested.example/oembed"}}),
        as_post("a15", "https://example.net/threshold", 3, _meta={"note": "no_2nd_retrieval"}),
    ]


EXPECTED_AS_URLS = {"theguardian.com/world/2024/apr/01/story", "blog.example.org/post/1", "news.example.com/a",
                    "example.net/threshold"}
EXPECTED_AS_DROPS = {"media_host": 2, "reddit_internal": 1, "self_post": 1, "crosspost": 1, "low_score": 2, "nsfw": 1,
                     "outside_date_window": 1, "duplicate_url": 1}


def ndjson(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)


def zstd_long(data: bytes) -> bytes:
    """zstd with a 2 GiB window and no content size, as `zstd --long=31` streams it."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True, write_content_size=False)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
        w.write(data)
    return buf.getvalue()


def zst_blocks(records: list[dict], rows_per_block: int) -> bytes:
    """Arctic Shift's zst_blocks layout (github.com/ArthurHeitmann/zst_blocks_format):
    [uint32 size][zstd frame of: uint32 n, n x (uint32 offset, uint32 size), rows]."""
    out = bytearray()
    rows = [orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records]
    for i in range(0, len(rows), rows_per_block):
        block = rows[i : i + rows_per_block]
        table, off = bytearray(), 0
        for r in block:
            table += struct.pack("<II", off, len(r))
            off += len(r)
        frame = zstandard.ZstdCompressor(level=3).compress(struct.pack("<I", len(block)) + bytes(table) + b"".join(block))
        out += struct.pack("<I", len(frame)) + frame
    return bytes(out)


def test_arctic_shift_month_gives_the_expected_links(tmp_path):
    dump = tmp_path / "RS_2024-04.zst"
    dump.write_bytes(zstd_long(ndjson(arctic_shift_month())))
    with pytest.raises(zstandard.ZstdError):  # really a long-window file
        zstandard.ZstdDecompressor().decompressobj().decompress(dump.read_bytes())
    s = harvest_dump_links([dump], tmp_path / "out", LinksConfig(**WINDOW))
    assert s.n_in == 14 and s.balanced()
    assert dict(s.dropped) == EXPECTED_AS_DROPS
    rows = {r["url_norm"]: r for r in read_links(tmp_path / "out").to_pylist()}
    assert set(rows) == EXPECTED_AS_URLS  # no URL from a nested object, the gallery item or the ad's click URL
    merged = rows["news.example.com/a"]
    assert merged["reddit_ids"] == ["a11", "a12"] and merged["score"] == 7 and merged["score_total"] == 11
    assert merged["created_utc"] == APRIL + 7200  # the float created_utc of 2023+ files
    assert rows["theguardian.com/world/2024/apr/01/story"]["url"] == "https://www.theguardian.com/world/2024/apr/01/story"
    assert s.extra["files"][0]["codec"] == "zst" and not s.extra["files"][0]["bad"]


def test_arctic_shift_zst_blocks_gives_the_same_links(tmp_path):
    path = tmp_path / "RS_2024-03.zst_blocks"
    path.write_bytes(zst_blocks(arctic_shift_month(), rows_per_block=4))
    assert detect_codec(path) == "zst_blocks"
    stats = DumpReadStats(str(path))
    assert [s.id for s in iter_submissions(path, stats)] == [r["id"] for r in arctic_shift_month()]
    assert stats.error is None and not stats.bad
    s = harvest_dump_links([path], tmp_path / "out", LinksConfig(**WINDOW))
    assert dict(s.dropped) == EXPECTED_AS_DROPS and s.n_out == len(EXPECTED_AS_URLS)
    assert set(read_links(tmp_path / "out").column("url_norm").to_pylist()) == EXPECTED_AS_URLS


def test_truncated_zst_blocks_keeps_the_whole_blocks_before_the_cut(tmp_path):
    data = zst_blocks(arctic_shift_month(), rows_per_block=4)  # blocks of 4, 4, 4, 2 rows
    first3 = 0
    for _ in range(3):
        first3 += 4 + struct.unpack("<I", data[first3 : first3 + 4])[0]
    cut = tmp_path / "RS_cut.zst_blocks"
    cut.write_bytes(data[: first3 - 5])  # inside the third block
    s = harvest_dump_links([cut], tmp_path / "out", LinksConfig(**WINDOW))
    f = s.extra["files"][0]
    assert f["records"] == 8 and "zst_blocks" in f["error"] and "ends inside the block" in f["error"]
    assert any("truncated" in n for n in s.notes) and s.balanced()


@pytest.mark.parametrize("damage", ["zstd", "row_table"])
def test_a_damaged_zst_block_costs_only_its_rows_and_the_blocks_after_it_are_read(tmp_path, damage):
    rows = arctic_shift_month()
    data = bytearray(zst_blocks(rows, rows_per_block=4))  # blocks of 4, 4, 4, 2 rows
    second = 4 + struct.unpack("<I", data[:4])[0]
    n = struct.unpack("<I", data[second:second + 4])[0]
    if damage == "zstd":  # the frame's bytes garbled: it does not decompress
        data[second + 4 + 4:second + 4 + n] = b"\xaa" * (n - 4)
    else:  # a valid frame whose row table points outside the block
        block = zstandard.ZstdCompressor().compress(struct.pack("<I", 9) + b"\0" * 16)
        data[second:second + 4 + n] = struct.pack("<I", len(block)) + block
    path = tmp_path / "RS_damaged.zst_blocks"
    path.write_bytes(bytes(data))
    (tmp_path / "RS_whole.zst_blocks").write_bytes(zst_blocks(rows, rows_per_block=4))
    whole = harvest_dump_links([tmp_path / "RS_whole.zst_blocks"], tmp_path / "w", LinksConfig(**WINDOW))
    s = harvest_dump_links([path], tmp_path / "out", LinksConfig(**WINDOW))
    f = s.extra["files"][0]
    assert f["records"] == len(rows) - 4 and s.dropped["damaged_block"] == 1 and s.balanced()
    assert f["damaged_blocks"] and whole.extra["files"][0]["records"] == len(rows)


# --- plain URL lists ---------------------------------------------------------------------

PLAIN_LIST = (
    b"\xef\xbb\xbf# OpenWebText-style list: one URL per line\r\n"
    b"http://example.com/story\r\n"
    b"\r\n"
    b"https://www.example.com/story/?utm_source=reddit#top\r\n"
    b"   https://blog.example.org/2017/05/post.html   \r\n"
    b"mailto:someone@example.com\r\n"
    b"ftp://files.example.com/a.txt\r\n"
    b"https://i.imgur.com/abc.jpg\r\n"
    b"http://example.com/photo.PNG\r\n"
    b"https://www.reddit.com/r/news/comments/abc/x/\r\n"
    b"https://en.wikipedia.org/wiki/Harbour\r\n"
    b"http://example.com/a 12\r\n"
    b"just some words\r\n"
    b"http://example.com/caf\xe9\r\n"
    b"  # an indented comment\r\n"
    b"https://news.example.com/a?id=2&b=1"
)
PLAIN_URLS = {"example.com/story", "blog.example.org/2017/05/post.html", "en.wikipedia.org/wiki/Harbour",
              "news.example.com/a?b=1&id=2"}  # Wikipedia goes at the filter stage, as for dump links
PLAIN_DROPS = {"duplicate_url": 1, "invalid_url": 4, "media_host": 1, "media_extension": 1, "reddit_internal": 1,
               "bad_utf8": 1}
COMPRESS = {"plain": lambda b: b, "gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress,
            "zst": lambda b: zstandard.ZstdCompressor().compress(b)}


@pytest.mark.parametrize("codec", list(COMPRESS))
def test_plain_url_list_gives_the_expected_links_in_every_codec(tmp_path, codec):
    path = tmp_path / ("urls.txt" + ("" if codec == "plain" else f".{codec}"))
    path.write_bytes(COMPRESS[codec](PLAIN_LIST))
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])  # the faithful window: before 2018
    assert s.n_in == 13 and s.n_out == 4 and s.balanced()
    assert dict(s.dropped) == PLAIN_DROPS
    table = read_links(tmp_path / "out")
    assert table.schema.equals(LINKS_SCHEMA)
    rows = {r["url_norm"]: r for r in table.to_pylist()}
    assert set(rows) == PLAIN_URLS
    story = rows["example.com/story"]
    assert story["url"] == "http://example.com/story" and story["n_submissions"] == 2
    assert story["score"] is None and story["score_total"] is None and story["created_utc"] == 0
    f = s.extra["files"][0]
    assert (f["kind"], f["format"], f["skipped"], f["records"], f["no_score"]) == ("urls", "text", 3, 10, 10)
    assert any("10 of 10 URL-list entries carry no score" in n and "min_score is not applied" in n for n in s.notes)
    assert any("carry no date" in n for n in s.notes)


CSV_LIST = (
    "Title,URL,Score,created_utc,extra\n"
    "Kept by date,http://e.com/kept-iso,5,2017-06-01,x\n"
    ",http://e.com/kept-unix,12,1400000000,y\n"
    ",http://e.com/no-score,,,\n"
    '"A, quoted title","http://e.com/q?a=1,2",4,2016-01-01T10:00:00Z,z\n'
    ",http://e.com/low,2,1400000000,\n"
    ",http://e.com/late,50,2019-01-01,\n"
    ",http://e.com/bad-score,abc,1400000000,\n"
    ",http://e.com/bad-date,5,yesterday,\n"
    ",http://e.com/huge,1e300,1400000000,\n"
    "only-one-cell\n"
    "\n"
)


def test_csv_list_with_score_and_dates(tmp_path):
    path = tmp_path / "owt2_urls.csv.xz"
    path.write_bytes(lzma.compress(CSV_LIST.encode()))
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])
    assert s.n_in == 10 and s.balanced()
    assert dict(s.dropped) == {"low_score": 1, "outside_date_window": 1, "bad_field_type": 2, "bad_number": 1,
                               "malformed_row": 1}
    rows = {r["url_norm"]: r for r in read_links(tmp_path / "out").to_pylist()}
    assert set(rows) == {"e.com/kept-iso", "e.com/kept-unix", "e.com/no-score", "e.com/q?a=1%2C2"}
    assert rows["e.com/kept-iso"]["score"] == 5 and rows["e.com/kept-iso"]["created_utc"] == 1496275200
    assert rows["e.com/kept-iso"]["titles"] == ["Kept by date"]
    assert rows["e.com/q?a=1%2C2"]["created_utc"] == 1451642400 and rows["e.com/q?a=1%2C2"]["titles"] == ["A, quoted title"]
    assert rows["e.com/no-score"]["score"] is None and rows["e.com/no-score"]["created_utc"] == 0
    f = s.extra["files"][0]
    assert f["format"] == "csv" and f["codec"] == "xz" and f["columns"][1] == "URL" and f["no_score"] == 1


@pytest.mark.parametrize("bad", [
    '"http://q.example/open,5',  # a quote opened and never closed (the first row)
    'http://q.example/stray"quote,5',  # a stray quote inside a cell
    '"http://q.example/x","5,\n',  # a quoted cell whose closing quote is lost
])
def test_one_unterminated_quote_costs_one_row_not_the_rows_after_it(tmp_path, bad):
    rows = [f"http://q.example/{i},5" for i in range(1000)]
    path = tmp_path / "list.csv"
    path.write_text("url,score,title\n" + bad.rstrip("\n") + "\n" + "\n".join(r + ",t" for r in rows)
                    + '\nhttp://q.example/multi,7,"a title\nover two lines"\n')
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])
    assert s.balanced() and s.dropped["unterminated_quote"] == 1
    got = {r["url_norm"]: r for r in read_links(tmp_path / "out").to_pylist()}
    assert {f"q.example/{i}" for i in range(1000)} <= set(got) and len(got) == 1001
    assert got["q.example/multi"]["titles"] == ["a title\nover two lines"]  # a real multi-line cell still joins


def test_tsv_is_sniffed_from_its_header(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("url\tscore\nhttp://t.example/a\t9\nhttp://t.example/b\t1\n")
    stats = UrlListStats(str(path))
    subs = list(iter_url_list(path, stats))
    assert stats.format == "tsv" and [(x.url, x.score) for x in subs] == [("http://t.example/a", 9), ("http://t.example/b", 1)]


def test_parquet_list(tmp_path):
    t = pa.table({
        "url": ["https://p.example/a", "https://p.example/low", "https://p.example/no-score", "https://p.example/late", None],
        "score": pa.array([30, 1, None, 8, 5], pa.int64()),
        "created": pa.array([datetime(2015, 3, 1, tzinfo=timezone.utc), datetime(2015, 3, 1, tzinfo=timezone.utc), None,
                             datetime(2020, 1, 1, tzinfo=timezone.utc), None], pa.timestamp("s", tz="UTC")),
        "other": [1, 2, 3, 4, 5],
    })
    path = tmp_path / "list.parquet"
    pq.write_table(t, path)
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])
    assert dict(s.dropped) == {"low_score": 1, "outside_date_window": 1, "missing_url": 1} and s.balanced()
    rows = {r["url_norm"]: r for r in read_links(tmp_path / "out").to_pylist()}
    assert set(rows) == {"p.example/a", "p.example/no-score"}
    assert rows["p.example/a"]["created_utc"] == 1425168000 and rows["p.example/a"]["score"] == 30


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("links.csv", b"link,score\nhttp://a.example/x,5\n", r"links\.csv: a URL list table needs a 'url' column; its columns are: 'link', 'score'"),
        ("links.tsv.gz", gzip.compress(b"href\tkarma\n"), r"links\.tsv\.gz: .*'href', 'karma'"),
        ("utf16.txt", "http://a.example/x\n".encode("utf-16"), r"utf16\.txt: UTF-16 text"),
        ("fake.parquet", b"url\nhttp://a.example/x\n", r"fake\.parquet: named \.parquet but not a Parquet file"),
        ("empty.csv", b"", r"empty\.csv: an empty table"),
        ("owt_urls.tar.xz", None, r"owt_urls\.tar\.xz: a tar archive, not a URL list; unpack it"),
    ],
)
def test_a_file_that_is_not_a_url_list_is_refused_by_name(tmp_path, name, data, match):
    path = tmp_path / name
    if data is None:  # a real tar of monthly lists, as jcpeterson/openwebtext ships them
        import tarfile

        (tmp_path / "RS_2011-01.txt").write_text("http://a.example/x\n")
        with tarfile.open(path, "w:xz") as tar:
            tar.add(tmp_path / "RS_2011-01.txt", arcname="RS_2011-01.txt")
    else:
        path.write_bytes(data)
    with pytest.raises(InputError, match=match):
        harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])


def test_parquet_without_url_column_names_its_columns(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"link": ["http://a.example/"], "score": [3]}), path)
    with pytest.raises(InputError, match=r"t\.parquet: .*'link', 'score'"):
        harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])


def test_missing_url_list_fails_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="URL list.*nope.txt"):
        harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[tmp_path / "nope.txt"])
    assert not (tmp_path / "out").exists()


# --- a list beside real Pushshift months -------------------------------------------------


def test_url_list_merges_with_dump_links_and_is_kept_by_later_builds(tmp_path):
    dump = shared("reddit", "RS_v2_2005-06.xz")
    alone = harvest_dump_links([dump], tmp_path / "alone", LinksConfig())
    dump_rows = {r["url_norm"]: r for r in read_links(tmp_path / "alone").to_pylist()}
    known = sorted(dump_rows)[0]
    low = next(s for s in iter_submissions(dump) if s.score is not None and s.score < 3 and s.url
               and s.url.startswith("http") and "reddit.com" not in s.url)
    lst = tmp_path / "list.txt"
    lst.write_text(f"https://www.{known}/?utm_campaign=x\n{low.url}\nhttp://new.example/only-in-the-list\n")
    out = tmp_path / "both"
    s = harvest_dump_links([dump], out, LinksConfig(), url_lists=[lst])
    assert s.n_in == alone.n_in + 3 and s.balanced()
    assert s.n_out == alone.n_out + 2  # the low-karma submission's URL comes back through the list, and the new one
    assert s.dropped["duplicate_url"] == alone.dropped.get("duplicate_url", 0) + 1
    rows = {r["url_norm"]: r for r in read_links(out).to_pylist()}
    k = rows[known]
    assert k["score"] == dump_rows[known]["score"] and k["created_utc"] == dump_rows[known]["created_utc"]
    assert k["url"] == dump_rows[known]["url"] and k["reddit_ids"] == dump_rows[known]["reddit_ids"] + [""]
    assert k["score_total"] is None  # one of its entries has no karma
    assert rows["new.example/only-in-the-list"]["score"] is None
    # The Arctic Shift/Pushshift-only rules still hold for dump submissions: min score of known karma >= 3.
    assert min(r["score"] for r in rows.values() if r["score"] is not None) >= 3
    # fetch and extract read it unchanged
    assert {r["url_norm"] for r in iter_links(out, columns=("id", "url", "url_norm", "created_utc"))} == set(rows)
    meta = load_reddit_meta([out])
    assert meta["new.example/only-in-the-list"]["score"] is None and meta[known]["score"] == k["score"]
    # sum mode (OpenWebText2): a list entry vouches for the URL whatever the other submissions' total
    s_sum = harvest_dump_links([dump], tmp_path / "sum", LinksConfig(score_mode="sum"), url_lists=[lst])
    assert s_sum.balanced() and "new.example/only-in-the-list" in set(read_links(tmp_path / "sum").column("url_norm").to_pylist())
    # A later dump-only run into the same directory (what `webtext build` does) keeps the list's links,
    # and reads neither file again.
    again = harvest_dump_links([dump], out, LinksConfig())
    assert again.n_in == again.n_out == 0 and again.extra["run"] is None and again.extra["harvested_now"] == []
    assert {r["url_norm"] for r in iter_links(out, columns=("url_norm",))} == set(rows)
    assert sorted(again.extra["reused_parts"]) == sorted([str(dump), str(lst)])


def test_cli_links_urls(tmp_path, capsys):
    from flows.cli import main

    lst = tmp_path / "urls.txt.gz"
    lst.write_bytes(gzip.compress(PLAIN_LIST))
    assert main(["links", "--urls", str(tmp_path / "*.gz"), "--out", str(tmp_path / "out")]) == 0
    assert set(read_links(tmp_path / "out").column("url_norm").to_pylist()) == PLAIN_URLS
    bad = tmp_path / "bad.csv"
    bad.write_text("link\nhttp://a.example/\n")
    assert main(["links", "--urls", str(bad), "--out", str(tmp_path / "out2")]) == 2
    assert "needs a 'url' column; its columns are: 'link'" in capsys.readouterr().err
    assert main(["links", "--urls", str(tmp_path / "none-*.txt"), "--out", str(tmp_path / "out3")]) == 2
    assert "no URL list matches" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["txt", "csv"])
def test_truncated_compressed_list_keeps_what_came_before_the_cut(tmp_path, fmt):
    urls = [f"http://site{i}.example/page/{i}" for i in range(20_000)]
    body = ("url,score\n" + "".join(f"{u},5\n" for u in urls)) if fmt == "csv" else "".join(u + "\n" for u in urls)
    data = lzma.compress(body.encode())
    path = tmp_path / f"cut.{fmt}.xz"
    path.write_bytes(data[: len(data) // 2])
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])
    f = s.extra["files"][0]
    assert f["error"] and 0 < f["records"] < 20_000 and s.balanced()
    assert any("truncated or corrupt" in n for n in s.notes)
    got = read_links(tmp_path / "out").column("url_norm").to_pylist()
    assert len(got) == s.n_out and set(got) <= {u[7:] for u in urls}


def test_a_damaged_row_group_of_a_parquet_list_costs_only_its_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "list.parquet"
    urls = [f"http://p.example/{i}" for i in range(3000)]
    pq.write_table(pa.table({"url": urls, "score": [5] * 3000}), path, row_group_size=1000, compression="zstd")
    off = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[off + 20:off + 400] = b"\x55" * 380  # the middle row group's page header and data
    path.write_bytes(bytes(data))
    s = harvest_dump_links([], tmp_path / "out", LinksConfig(), url_lists=[path])
    assert s.balanced() and s.n_in == 3000 and s.dropped["damaged_row_group"] == 1000
    got = sorted(int(r["url_norm"].rsplit("/", 1)[1]) for r in read_links(tmp_path / "out").to_pylist())
    assert got == list(range(1000)) + list(range(2000, 3000))
