"""The links stage's fast path (chunks decoded at once, rules over batches, URLs
normalised in Arrow) against its reference (lines decoded one by one, submissions
selected one by one, every URL through ``url_forms``): the same parts (rows, ids,
columns) and the same funnel (in, accepted, drops per reason in the same order,
the reader's counts) on every dump of ../shared/data/reddit and on hostile ones."""

from __future__ import annotations

import lzma
import random

import msgspec
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.core.urls import InvalidURL, url_forms, url_forms_arrow
from pipeline.links.harvest import _harvest_part
from pipeline.sources.dumps import CHUNK, DumpReadStats, iter_submission_batches

CONFIGS = {
    "default": LinksConfig(),
    "everything": LinksConfig(min_score=-1000, created_before=None, exclude_nsfw=False, exclude_self_posts=False),
    "window_sum": LinksConfig(score_mode="sum", created_after="2005-07-10", created_before="2005-07-20",
                              exclude_nsfw=False),
    "min1_no_window": LinksConfig(min_score=1, created_before=None),
}


class NoBar:
    def update(self, n):
        pass


def _both(dump, tmp_path, cfg):
    """(table, meta) of the fast stage and of the reference stage on DUMP."""
    out = []
    for fast in (True, False):
        meta = _harvest_part(dump, tmp_path / f"fast{fast}", cfg, "dump", bar=NoBar(), fast=fast)
        table = pq.read_table(tmp_path / f"fast{fast}" / "parts" / meta["part"])
        meta.pop("harvested_at")
        out.append((table, meta))
    return out


def _assert_same(fast, ref):
    (t_fast, m_fast), (t_ref, m_ref) = fast, ref
    assert t_fast.schema == t_ref.schema
    assert t_fast.num_rows == t_ref.num_rows
    for name in t_ref.column_names:
        assert t_fast.column(name).to_pylist() == t_ref.column(name).to_pylist(), name
    assert t_fast.equals(t_ref)
    # the funnel, byte for byte: drop reasons in the order they first appeared
    assert orjson.dumps(m_fast) == orjson.dumps(m_ref)


def _real_dumps():
    return sorted(p for p in shared("reddit").iterdir() if p.is_file())


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_fast_stage_equals_the_reference_on_every_real_dump(tmp_path, cfg_name):
    dumps = _real_dumps()
    assert len(dumps) >= 6
    accepted = 0
    for dump in dumps:
        fast, ref = _both(dump, tmp_path / dump.name, CONFIGS[cfg_name])
        _assert_same(fast, ref)
        accepted += ref[1]["accepted"]
        assert ref[1]["in"] == ref[1]["file"]["lines"]  # every line ends somewhere
    assert accepted > 0


def _hostile_records(n: int, seed: int, clean: bool = False) -> list[bytes]:
    """Records of every shape the rules tell apart, URLs of every shape url_forms
    tells apart, and bad lines among them (CLEAN: only lines the fast pass decodes)."""
    rng = random.Random(seed)

    def pick(xs, k):
        return "".join(rng.choice(xs) for _ in range(rng.randint(0, k)))

    schemes = ["http://", "HTTPS://", "https://", "hTTp://", "//", "", "ftp://", "http:/", "/r/", "/"]
    hosts = ["a.com", "www.Ex.Co.uk", "WWW.a-b.org", "localhost", "a..com", "a.com.", "é.com", "\u212a.com",
             "user:pw@a.com", "[::1]", "a_b.com", "1.2.3.4", "", "imgur.com", "i.imgur.com", "www.reddit.com",
             "redd.it", "YouTube.com", "reddit.com.evil.org", "www.www.x.org", "www.com", "bücher.de", "-a.com"]
    ports = ["", "", "", ":80", ":443", ":8080", ":99999", ":0", ":", ":x"]
    path = ["/", "//", "a", "b/", "%20", "%", "A.JPG", "x.png", "y.Gif", ".jpg", "a.b.mp4", "~", "-", ".", "@", ":",
            ";", "=", "&", "+", " ", "\t", "é", "\u017f", "\x7f", "\\", "|", '"', "<", "x.html", "%2F"]
    query = ["&", "=", "a=1", "b=", "utm_source=x", "UTM_Medium=y", "fbclid=1", "x=1=2", "+", " ", "%41", "%",
             "%zz", "%C3%A9", ";", '"', "<", "|", "~", "é", "\t", "?", "id=3"]
    bad = [b"", b"   ", b"\x0c", b"{bad", b"[]", b"null", b'{"id":"q"} {"id":"r"}', b"\xff\xfe",
           b'{"id":"s","score":"7","url":"http://s.com/"}', b'{"id":"t","created_utc":"nan","url":"http://t.com"}',
           b'{"id":"u","score":1099511627776,"url":"http://u.com"}', b'{"id":"v","created_utc":"4102444800"}',
           b'{"id":"w","created_utc":"0000000001","url":"http://w.com","score":5}', b'{"id":"x","created_utc":-1}',
           # lines that decode_lines, given them together, could read as other values than one per line
           b'{"id":"y","title":"x}\n{y"}', b'{"id":"z1"}{"id":"z2"}', b'{"id":"s1","m":{}\n}', b'{"id":"s2","m":[{}\n{}]}',
           b'{"id":"s3"}\n\n{"id":"s4"}', b'{"id":"s5"}\r', b' {"id":"s6"}']
    lines = []
    for i in range(n):
        dirty = not clean and i < n // 3  # bad lines in the first third only: the later chunks take the fast pass
        u = rng.choice(schemes) + rng.choice(hosts) + rng.choice(ports) + ("/" + pick(path, 5) if rng.random() < .8 else "")
        if rng.random() < .4:
            u += "?" + pick(query, 5)
        if rng.random() < .2:
            u += "#" + pick(query, 2)
        u = rng.choice(["", "", "", " ", "\t", "\u00a0"]) + u + rng.choice(["", "", "", " ", "\u2003"])
        r = {"id": f"h{rng.randint(0, n // 2)}", "url": u, "title": f"t{i}", "subreddit": rng.choice(["a", "b", None])}
        c = rng.random()
        r["created_utc"] = (1_121_000_000 + rng.randint(0, 10**6) if c < .5 else 1_121_000_000 + rng.random() * 10**6
                            if c < .7 else str(1_121_000_000 + rng.randint(0, 10**6)) if c < .8 else None if c < .9
                            else rng.choice([0, 5, 1.9e9, 4e9] + (["x", "1.5e9"] if dirty else [])))
        r["score"] = rng.choice([None, 0, 1, 2, 3, 4, 10, 100, -5, 3])
        for field, values in (("is_self", [True, False, None]), ("over_18", [True, False, None]),
                              ("crosspost_parent", ["t3_x", "", None]),
                              ("url_overridden_by_dest", ["", None, "http://b.com/o", "/r/x/comments/1", u.strip()])):
            if rng.random() < .25:
                r[field] = rng.choice(values)
        if rng.random() < .1:
            del r["url"]
        lines.append(orjson.dumps(r))
        if rng.random() < .005 and dirty:
            lines.append(rng.choice(bad))
        if rng.random() < .002:
            lines.append(lines[rng.randrange(len(lines))])  # a repeated submission
    return lines


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    data = b"\n".join(_hostile_records(30_000, 1)) + b"\n"
    assert len(data) > 2 * CHUNK  # several chunks: some decoded at once, some line by line
    (d / "RS_hostile.ndjson").write_bytes(data)
    (d / "RS_hostile.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    # a month of clean records only: every chunk takes the fast pass
    (d / "RS_clean.ndjson").write_bytes(b"\n".join(_hostile_records(30_000, 2, clean=True)) + b"\n")
    return d


@pytest.mark.parametrize("cfg_name", list(CONFIGS) + ["odd_blocklist"])
@pytest.mark.parametrize("name", ["RS_hostile.ndjson", "RS_hostile.zst", "RS_clean.ndjson"])
def test_fast_stage_equals_the_reference_on_hostile_dumps(tmp_path, hostile, cfg_name, name):
    if cfg_name == "odd_blocklist":  # extensions the Arrow rule must skip or escape, hosts of every kind
        path = tmp_path / "blocklist.txt"
        path.write_text("[domains]\na.com\nex.co.uk\nb-c\n[extensions]\nhtml\n.\ntar.gz\nc+d\n\u017f\nA\nmp4\n")
        cfg = LinksConfig(min_score=1, created_before=None, blocklist_path=str(path))
    else:
        cfg = CONFIGS[cfg_name]
    fast, ref = _both(hostile / name, tmp_path, cfg)
    _assert_same(fast, ref)
    dropped = ref[1]["dropped"]
    if cfg_name == "default":
        for reason in ("missing_url", "invalid_url", "media_host", "media_extension", "crosspost", "reddit_internal",
                       "low_score", "score_missing", "self_post", "nsfw", "missing_created_utc",
                       "outside_date_window", "duplicate_submission"):
            assert dropped.get(reason, 0) > 0, reason
    if name != "RS_clean.ndjson":
        assert {"malformed_json", "bad_number"} <= set(dropped)


def _submissions(path, per_line):
    stats = DumpReadStats(str(path))
    subs = [msgspec.structs.astuple(s) for batch in iter_submission_batches(path, stats, per_line=per_line)
            for s in batch]
    return subs, stats.to_dict()


def test_chunk_decoding_equals_line_decoding(hostile):
    for name in ("RS_hostile.zst", "RS_clean.ndjson"):
        assert _submissions(hostile / name, False) == _submissions(hostile / name, True)
    # the fast pass really decoded the clean month (its structs carry the bounds), and
    # the reference path the hostile one's chunks with a bad line
    kinds = {type(s).__name__ for b in iter_submission_batches(hostile / "RS_clean.ndjson") for s in b}
    assert kinds == {"_CheckedSubmission"}
    kinds = {type(s).__name__ for b in iter_submission_batches(hostile / "RS_hostile.zst") for s in b}
    assert kinds == {"_CheckedSubmission", "Submission"}


# Lines that msgspec's decode_lines, given a region at once, reads as other records than
# the line-by-line reference does (it takes any whitespace between objects), each among
# clean records so that nothing else sends the region to the reference path.
MISREAD = {
    "two on a line, one over two lines": [b'{"id":"z1","url":"http://z.com/1"}{"id":"z2","url":"http://z.com/2"}',
                                          b'{"id":"s1","url":"http://s.com/1","m":{}', b'}'],
    "two on a line, a blank line": [b'{"id":"z1","url":"http://z.com/1"}{"id":"z2","url":"http://z.com/2"}', b''],
    "two on a line, spaces": [b'{"id":"z1","url":"http://z.com/1"} {"id":"z2","url":"http://z.com/2"}', b'   '],
    "two on a line, one over two lines at a comma": [
        b'{"id":"z1","url":"http://z.com/1"}{"id":"z2","url":"http://z.com/2"}',
        b'{"id":"s2","url":"http://s.com/2",', b'"title":"x"}'],
}


@pytest.mark.parametrize("kind", list(MISREAD) + ["carriage returns", "a space before a record"])
def test_a_region_is_decoded_at_once_only_when_it_is_one_record_per_line(tmp_path, kind):
    from pipeline.sources.dumps import Submission, _checked_decoder

    def rec(i):
        return orjson.dumps({"id": i, "url": f"http://g.com/{i}", "score": 5, "created_utc": 1.5e9})

    good = [rec(f"g{i}") for i in range(100)]
    odd = MISREAD.get(kind) or ([rec(f"r{i}") + b"\r" for i in range(3)] if kind == "carriage returns"
                                else [b" " + rec("sp")])
    data = b"\n".join(good[:50] + odd + good[50:]) + b"\n"
    path = tmp_path / "RS_odd.ndjson"
    path.write_bytes(data)
    if kind in MISREAD:  # decode_lines takes the region, as many records as lines: a count alone would not tell
        assert len(_checked_decoder.decode_lines(data)) == data.count(b"\n")
    fast, ref = _submissions(path, False), _submissions(path, True)
    assert fast == ref
    at = Submission.__struct_fields__.index("id")
    assert [s[at] for s in fast[0] if s[at].startswith("g")] == [f"g{i}" for i in range(100)]


def _forms(url):
    try:
        return url_forms(url)
    except InvalidURL:
        return None


def test_arrow_normalisation_equals_url_forms_on_every_real_and_hostile_url():
    urls = []
    for dump in _real_dumps():
        if dump.name.endswith(".xz"):
            for line in lzma.decompress(dump.read_bytes()).splitlines():
                rec = orjson.loads(line)
                urls += [rec[k] for k in ("url", "url_overridden_by_dest") if isinstance(rec.get(k), str)]
    n_real = len(urls)
    assert n_real > 7000
    for line in _hostile_records(20_000, 3, clean=True):
        rec = orjson.loads(line)
        urls += [rec[k] for k in ("url", "url_overridden_by_dest") if isinstance(rec.get(k), str)]
    urls += ["http://a.com", "http://a.com/", "http://a.com//", "http://a.com/?", "http://a.com?#", "http://www.a.com/x/",
             "HTTP://WWW.A.COM/X.JPG/", "http://a.com/x#\u00e9", "http://a.com/x ", "http://a.com/x\n", "http://www.com",
             "http://a.com/.jpg", "http://a.com/a.b/c", "http://a.com/x.", "https://a.b.c.d.e/f.tar.gz?", "http://1.2.3.4/"]
    urls += ["http://a.com/?a=1&b=2&a=0", "http://a.com?b&a=&&c=d=e", "http://a.com/x?utm_source=1&FBCLID=2",
             "http://a.com/?;=,&$=!", "http://a.com/p?q=1#f", "http://a.com/p/?ref_src=x#", "http://a.com/p??x=1",
             "http://a.com/?x=%41", "http://a.com/?x=a+b", "http://a.com/?x=a b", "http://a.com:80/", "http://a.com/é",
             " http://a.com/", "http://a.com/ ", "http://a.com/\n", "http://a_b.com/", "ftp://a.com/"]
    rows, *forms = url_forms_arrow(pa.array(urls, pa.string()))
    clean, key, host, key_path = (a.to_pylist() for a in forms)
    assert len(rows) == len(clean) > 0.8 * n_real  # the Arrow path is the common one
    handled = set(rows.tolist())
    shapes = set()
    for i, c, k, h, p in zip(rows, clean, key, host, key_path):
        u = urls[i]
        assert (c, k) == _forms(u), u
        assert h == k.split("/", 1)[0].split(":", 1)[0]
        assert p == (k[len(h):].split("?", 1)[0] or "/")
        shapes.add(("?" in c, "?" in k, "#" in u, k == h))
    assert len(shapes) >= 6  # with and without a query kept, a fragment, a path
    for u in ("http://a.com/?x=%41", "http://a.com/?x=a+b", "http://a.com/?x=a b", "http://a.com:80/", "http://a.com/é",
              " http://a.com/", "http://a.com/ ", "http://a.com/\n", "http://a_b.com/", "ftp://a.com/"):
        assert urls.index(u) not in handled, u  # url_forms' own path takes them


@pytest.mark.parametrize("mode", ["max", "sum"])
def test_table_is_built_in_its_final_order(mode):
    """``LinkSelector.table`` numbers the URLs in (created_utc, url_norm) order before it
    makes the list columns (no sort of the finished table): the rows against an order and
    grouping made here in Python from the submissions, URLs first seen out of that order,
    equal times broken by the URL, an unknown time (0), the per-URL rules of both modes."""
    from pipeline.links.select import LinkSelector
    from pipeline.sources.dumps import Submission

    rng = random.Random(7)
    subs = []
    for i in range(3000):
        u = rng.randrange(400)
        created = rng.choice([1_120_000_000 + rng.randrange(50), 1_120_000_000]) if u % 37 else None
        subs.append(Submission(id=f"s{i}", url=f"http://host{u % 13}.com/p{u}", created_utc=created,
                               subreddit=f"r{i % 5}", title=f"t{i}", score=rng.randrange(-3, 9)))
    cfg = LinksConfig(min_score=-10 if mode == "max" else 5, score_mode=mode, created_before=None)
    sel = LinkSelector(cfg)
    sel.add_batch(subs)
    rows = sel.rows()
    groups: dict[str, list] = {}
    for s in subs:
        groups.setdefault(url_forms(s.url)[1], []).append(s)
    expect = []
    for key, ss in groups.items():
        times = [int(s.created_utc) for s in ss if s.created_utc]
        if mode == "sum" and sum(s.score for s in ss) < 5:
            continue
        expect.append((min(times) if times else 0, key, [s.id for s in ss], [s.score for s in ss]))
    expect.sort(key=lambda e: (e[0], e[1]))
    assert len(expect) > 100 and len({e[0] for e in expect}) < len(expect)  # equal times to break
    assert any(e[0] == 0 for e in expect)
    assert [(r["created_utc"], r["url_norm"], r["reddit_ids"], r["scores"]) for r in rows] == expect
    first_seen = list(groups)
    assert first_seen != [e[1] for e in expect]  # the reading order is not the table's
