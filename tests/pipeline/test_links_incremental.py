"""The links merge month by month: each run reads only the new parts, looks earlier
URLs up in the runs' key segments, and writes only the URLs that became links now;
the union of the runs is what one merge of every month gives."""

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.links.merge import harvest_dump_links, merge_link_parts
from pipeline.links.table import iter_links, link_runs, read_links

REPO = Path(__file__).resolve().parents[2]
T0 = 1_500_000_000
MONTH = 30 * 86400


def month(path, subs):
    """An NDJSON dump of (id, url, score, created offset) submissions."""
    path.write_bytes(b"".join(orjson.dumps({"id": i, "url": u, "score": s, "is_self": False, "subreddit": "r",
                                            "title": f"t {i}", "created_utc": T0 + c}) + b"\n"
                              for i, u, s, c in subs))
    return path


def three_months(tmp_path):
    rng = random.Random(7)
    urls = [f"http://site{rng.randrange(40)}.example/p/{i}" for i in range(300)]
    months = []
    for m in range(3):
        subs = [(f"m{m}s{j}", rng.choice(urls), rng.randrange(0, 7), m * MONTH + rng.randrange(MONTH)) for j in range(400)]
        months.append(sorted(subs, key=lambda s: s[3]))
    # Hand-made cases: "a" linked in month 0 and resubmitted; "b" at 1 + 2 karma crosses 3 in month 1 (sum mode);
    # "d" stays below 3 (sum mode); a later month's URL typed another way is the same URL.
    months[0] += [("a0", "http://a.example/x", 5, 10), ("b0", "http://b.example/x", 1, 20), ("d0", "http://d.example/x", 0, 30)]
    months[1] += [("a1", "https://www.a.example/x/", 10, MONTH + 10), ("b1", "http://b.example/x?utm_source=z", 2, MONTH + 20)]
    months[2] += [("b2", "http://b.example/x", 9, 2 * MONTH + 20), ("d2", "http://d.example/x", 2, 2 * MONTH + 30)]
    return [month(tmp_path / f"RS_2017-0{m + 1}.ndjson", subs) for m, subs in enumerate(months)]


def key(table):
    return sorted(zip(table.column("url_norm").to_pylist(), table.column("created_utc").to_pylist(),
                      table.column("url").to_pylist()))


@pytest.mark.parametrize("mode", ["max", "sum"])
def test_three_months_one_at_a_time_equal_one_merge(tmp_path, mode):
    cfg = LinksConfig(score_mode=mode, created_before=None)
    dumps = three_months(tmp_path)
    once = harvest_dump_links(dumps, tmp_path / "once", cfg)
    runs = [harvest_dump_links(dumps[: m + 1], tmp_path / "inc", cfg) for m in range(3)]
    inc = tmp_path / "inc"
    assert [r.extra["run"] for r in runs] == [0, 1, 2] == link_runs(inc)
    assert [r.extra["harvested_now"] for r in runs] == [[str(d)] for d in dumps]  # each month read once
    assert all(r.balanced() for r in runs) and sum(r.n_in for r in runs) == once.n_in == 1207
    assert key(read_links(inc)) == key(read_links(tmp_path / "once"))
    assert sum(r.n_out for r in runs) == once.n_out == read_links(inc).num_rows
    # Each run's file holds only its new links, and iter_links can read one run alone.
    per_run = [{r["url_norm"] for r in iter_links(inc, columns=("url_norm",), runs=[n])} for n in range(3)]
    assert [len(u) for u in per_run] == [r.extra["new_links"] for r in runs] and not per_run[0] & per_run[1]
    assert list(iter_links(inc, runs=[None])) == []
    # Resubmissions of a URL an earlier run linked are counted as already_linked, not merged again.
    assert runs[1].dropped["already_linked"] > 0 and "already_linked" not in runs[0].dropped
    rows = {r["url_norm"]: r for r in read_links(inc).to_pylist()}
    assert rows["a.example/x"]["reddit_ids"] == ["a0"] and rows["a.example/x"]["url"] == "http://a.example/x"
    if mode == "max":
        assert "b.example/x" not in per_run[0] and "b.example/x" in per_run[2]  # 9 karma in month 2
        assert "d.example/x" not in rows
    else:
        # 1 + 2 karma: becomes a link in month 1, with every submission so far; the first one's url and time.
        assert "b.example/x" in per_run[1]
        b = rows["b.example/x"]
        assert b["reddit_ids"] == ["b0", "b1"] and b["score_total"] == 3 and b["created_utc"] == T0 + 20
        assert "d.example/x" not in rows  # 0 + 2 stays below 3
        assert runs[0].dropped["low_score_total"] > 0


KILL_BEFORE_LEDGER = """
import os, signal, sys
from pipeline.links import merge as links
from pipeline.core.config import LinksConfig
links.LinkIndex.commit = lambda self, entry: os.kill(os.getpid(), signal.SIGKILL)  # dies right before the ledger
links.harvest_dump_links(sys.argv[2:], sys.argv[1], LinksConfig(score_mode="sum", created_before=None))
"""


def test_a_merge_killed_before_its_ledger_is_redone(tmp_path):
    cfg = LinksConfig(score_mode="sum", created_before=None)
    dumps = three_months(tmp_path)
    inc = tmp_path / "inc"
    harvest_dump_links(dumps[:1], inc, cfg)
    r = subprocess.run([sys.executable, "-c", KILL_BEFORE_LEDGER, str(inc)] + [str(d) for d in dumps[:2]],
                       cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (inc / "runs" / "links-0001.parquet").is_file() and (inc / "runs" / "seg-0001.arrow").is_file()
    assert link_runs(inc) == [0]  # the dead run's files are not read: the ledger does not list them
    s = harvest_dump_links(dumps, inc, cfg)
    assert s.extra["run"] == 1 and link_runs(inc) == [0, 1]  # months 1 and 2, in one redone run
    assert s.extra["harvested_now"] == [str(dumps[2])] and s.n_in == 804
    harvest_dump_links(dumps, tmp_path / "once", cfg)
    assert key(read_links(inc)) == key(read_links(tmp_path / "once"))


def test_a_directory_of_the_earlier_layout_is_taken_over(tmp_path):
    """One links.parquet rewritten by every merge: the first run indexes it as run 0 and
    leaves it in place; its parts are not merged again."""
    a, b = shared("reddit", "RS_v2_2005-06.xz"), shared("reddit", "RS_v2_2005-07.xz")
    cfg = LinksConfig()
    old = tmp_path / "old"
    harvest_dump_links([a], old, cfg)
    (old / "runs" / "links-0000.parquet").rename(old / "links.parquet")  # what the earlier merge wrote
    shutil.rmtree(old / "runs")
    before = (old / "links.parquet").read_bytes()
    assert link_runs(old) == [0] and read_links(old).num_rows > 0  # readable before the takeover
    s = harvest_dump_links([a, b], old, cfg)
    assert s.extra["run"] == 1 and s.extra["reused_parts"] == [str(a)] and s.n_in == 1079
    assert any("taken over as links run 0" in n for n in s.notes)
    assert (old / "links.parquet").read_bytes() == before and link_runs(old) == [0, 1]
    harvest_dump_links([a, b], tmp_path / "once", cfg)
    assert key(read_links(old)) == key(read_links(tmp_path / "once"))
    # Under another configuration the runs are replaced, as the single file was.
    s2 = harvest_dump_links([a], old, LinksConfig(min_score=10))
    assert s2.extra["run"] == 0 and link_runs(old) == [0] and any("were replaced" in n for n in s2.notes)
    assert min(read_links(old).column("score").to_pylist()) >= 10 and (old / "links.replaced.parquet").is_file()


def test_merge_with_nothing_new_writes_no_run(tmp_path):
    a = shared("reddit", "RS_v2_2005-06.xz")
    first = harvest_dump_links([a], tmp_path, LinksConfig())
    again = merge_link_parts(tmp_path, LinksConfig())
    assert again.extra["run"] is None and again.n_in == 0 and link_runs(tmp_path) == [0]
    assert read_links(tmp_path).num_rows == first.n_out


@pytest.mark.parametrize("mode", ["max", "sum"])
def test_a_backlog_is_merged_in_bounded_batches_equal_to_one_merge(tmp_path, mode, monkeypatch):
    """Many months at once are merged in batches of parts (one run each), so memory
    follows a batch, not the backlog; the links equal one unbatched merge's."""
    import pipeline.links.merge as links

    cfg = LinksConfig(score_mode=mode, created_before=None)
    dumps = three_months(tmp_path)
    once = harvest_dump_links(dumps, tmp_path / "once", cfg)
    monkeypatch.setattr(links, "MERGE_BATCH_ROWS", 1)  # one part per run
    batched = harvest_dump_links(dumps, tmp_path / "batched", cfg)
    assert batched.extra["runs"] == [0, 1, 2] == link_runs(tmp_path / "batched")
    assert batched.balanced() and batched.n_in == once.n_in and batched.n_out == once.n_out
    assert sorted(batched.extra["harvested_now"]) == sorted(str(d) for d in dumps)
    assert key(read_links(tmp_path / "batched")) == key(read_links(tmp_path / "once"))
    assert batched.dropped.get("already_linked", 0) > 0
