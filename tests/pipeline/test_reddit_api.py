import lzma

import orjson
from webtext_testlib import FakeReddit, shared

from pipeline.core.config import LinksConfig
from pipeline.links.api import harvest_subreddits
from pipeline.links.table import read_links, select_links
from pipeline.sources.dumps import _coerce
from pipeline.sources.reddit_api import load_store, make_reddit


def _api_records():
    lines = lzma.decompress(shared("reddit", "api_submissions.ndjson.xz").read_bytes()).splitlines()
    return [orjson.loads(l) for l in lines if l.strip()]


def test_real_api_objects_select_and_add_up():
    recs = _api_records()
    assert len(recs) == 6711
    rows, s = select_links((_coerce(r) for r in recs), LinksConfig(created_before=None))
    assert s.n_in == 6711 and s.balanced()
    assert s.dropped["self_post"] > 0 and s.dropped["low_score"] > 0
    assert all(r["score"] >= 3 for r in rows)
    assert not any("reddit.com" in r["domain"] for r in rows)


def test_praw_harvest_against_local_fake_reddit_is_incremental(tmp_path, monkeypatch):
    recs = [r for r in _api_records() if r.get("subreddit")]
    by_sub: dict[str, list[dict]] = {}
    for r in recs:
        by_sub.setdefault(r["subreddit"].lower(), []).append(r)
    sub = max(by_sub, key=lambda k: len(by_sub[k]))
    posts = by_sub[sub]
    # Credentials from the environment, as a user would set them.
    monkeypatch.setenv("praw_client_id", "test-id")
    monkeypatch.setenv("praw_client_secret", "test-secret")
    monkeypatch.setenv("praw_user_agent", "webtext tests")
    cap = min(50, len(posts) - 10)
    first = posts[: len(posts) // 2]
    cfg = LinksConfig(created_before=None)
    with FakeReddit({sub.lower(): first}, cap=cap) as fake:
        reddit = make_reddit(None, **fake.praw_overrides())
        s1 = harvest_subreddits(reddit, [sub], tmp_path, cfg)
        assert any(r.startswith("POST /api/v1/access_token") for r in fake.requests)
        assert any(f"/r/{sub}/new" in r for r in fake.requests)
    seen1 = set(load_store(tmp_path))
    assert 0 < len(seen1) <= 2 * cap
    # Next month: more posts exist; the second harvest adds to what was seen.
    with FakeReddit({sub.lower(): posts}, cap=cap) as fake:
        reddit = make_reddit(None, **fake.praw_overrides())
        s2 = harvest_subreddits(reddit, [sub], tmp_path, cfg)
    seen2 = set(load_store(tmp_path))
    assert seen1 < seen2
    assert s2.extra["api"]["known_before"] == len(seen1)
    assert s2.n_in == len(seen2) and s2.balanced()
    expected_rows, _ = select_links((_coerce(r) for r in posts if r["id"] in seen2), cfg)
    assert set(read_links(tmp_path).column("url_norm").to_pylist()) == {r["url_norm"] for r in expected_rows}
    assert s1.n_out <= s2.n_out


def test_missing_credentials_end_in_one_sentence(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("praw_")}
    env.update(PYTHONPATH=str(repo), HOME=str(tmp_path))  # no praw.ini in HOME either
    r = subprocess.run([sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())", "links",
                        "--reddit", "python", "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2 and "Reddit credentials missing" in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert not (tmp_path / "out").exists()
