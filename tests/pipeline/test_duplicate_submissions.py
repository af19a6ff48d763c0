"""The same Reddit submissions read from several inputs count once (issue #31): two copies
of a month (another codec, Pushshift and Arctic Shift), a line repeated inside one file,
a copy given to a later build. Each repeat is dropped as ``duplicate_submission``, the
links (ids, counts, scores, score totals) equal those of one copy, and karma summed
over copies never lifts a link over min_score."""

import json

import pyarrow.parquet as pq
import pytest
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.links.merge import harvest_dump_links
from pipeline.links.table import read_links


def _links(tmp_path, name, dumps, **cfg):
    out = tmp_path / name
    s = harvest_dump_links(dumps, out, LinksConfig(**cfg))
    return s, read_links(out)


@pytest.mark.parametrize("mode", ["max", "sum"])
def test_a_real_month_given_in_two_codecs_gives_the_links_of_one_copy(tmp_path, mode):
    plain, bz2 = shared("reddit", "RS_2005-07.plain.zst"), shared("reddit", "RS_2005-07.bz2")
    one_s, one = _links(tmp_path, "one", [plain], score_mode=mode)
    two_s, two = _links(tmp_path, "two", [plain, bz2], score_mode=mode)
    assert one.num_rows == two.num_rows == 751
    assert two.equals(one)  # the same rows, ids, counts, scores and totals
    assert two_s.n_in == 2 * one_s.n_in and two_s.balanced()
    assert two_s.dropped["duplicate_submission"] > 0
    assert two_s.dropped["duplicate_submission"] + sum(v for k, v in two_s.dropped.items()
                                                        if k != "duplicate_submission") + two_s.n_out == two_s.n_in


def test_a_copy_given_to_a_later_build_adds_nothing(tmp_path):
    plain, bz2 = shared("reddit", "RS_2005-07.plain.zst"), shared("reddit", "RS_2005-07.bz2")
    _, one = _links(tmp_path, "one", [plain], score_mode="sum")
    out = tmp_path / "later"
    harvest_dump_links([plain], out, LinksConfig(score_mode="sum"))
    s = harvest_dump_links([plain, bz2], out, LinksConfig(score_mode="sum"))
    assert s.n_out == 0 and s.balanced()
    assert read_links(out).equals(one)


def _dump(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _post(i, url, score, created=1_500_000_000):
    return {"id": f"a{i}", "url": url, "score": score, "created_utc": created + i, "subreddit": "news",
            "title": f"t{i}", "is_self": False, "over_18": False}


def test_karma_of_repeated_submissions_is_counted_once(tmp_path):
    """Score mode "sum": one submission of score 2 read from two files (and twice from
    one) is still 2 < 3, not 4 or 6; two different submissions of 2 each reach 4."""
    a = _dump(tmp_path / "RS_2017-07.ndjson", [_post(1, "http://one.example/story", 2),
                                               _post(1, "http://one.example/story", 2),  # a repeated line
                                               _post(2, "http://two.example/story", 2),
                                               _post(3, "http://two.example/story", 2)])
    b = _dump(tmp_path / "RS_2017-07.copy.ndjson", [_post(1, "http://one.example/story", 5),  # a later snapshot
                                                    _post(3, "http://two.example/story", 2)])
    s, t = _links(tmp_path, "out", [a, b], score_mode="sum", created_before=None)
    rows = {r["url_norm"]: r for r in t.to_pylist()}
    assert set(rows) == {"two.example/story"}
    two = rows["two.example/story"]
    assert (two["n_submissions"], two["score_total"], sorted(two["reddit_ids"])) == (2, 4, ["a2", "a3"])
    assert two["scores"] == [2, 2]
    # a1 repeated in its file and again in the copy, a3 in the copy: 3 repeats; the first
    # copy read counts (parts in name order), so a1's later snapshot of 5 does not lift it
    assert s.dropped["duplicate_submission"] == 3 and s.dropped["low_score_total"] == 1 and s.balanced()
    # the part of the file with a repeated line counts the repeat at harvest
    metas = [json.loads(p.read_text()) for p in (tmp_path / "out" / "parts").glob("*.json")]
    meta = next(m for m in metas if m["dump"] == str(a))
    assert meta["dropped"]["duplicate_submission"] == 1
    assert pq.read_schema(next((tmp_path / "out" / "runs").glob("links-*.parquet"))).field("scores")
