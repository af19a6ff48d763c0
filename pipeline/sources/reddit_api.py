"""The live Reddit API as a link source, through praw.

Credentials come from praw's own places only: ``praw.ini`` (a site name) or the
``praw_client_id`` / ``praw_client_secret`` / ``praw_user_agent`` environment
variables, never from the command line (which shells keep in their history).

Listings hold at most ~1,000 items, so harvesting is repeated and incremental:
every submission seen is kept in ``api_submissions.jsonl`` in the output
directory (with its latest score, since karma grows after posting), and each run
adds what is new. Links are then selected from everything seen, by the same
rules as the dump files (``pipeline.links.api``). praw/prawcore honour Reddit's ``x-ratelimit-*``
headers themselves (they sleep when ``remaining`` runs out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import orjson

from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_bytes
from pipeline.core.summary import progress

STORE_NAME = "api_submissions.jsonl"
FIELDS = (
    "id", "created_utc", "subreddit", "author", "title", "url", "url_overridden_by_dest",
    "domain", "is_self", "score", "over_18", "crosspost_parent", "permalink",
)


def make_reddit(site: str | None = None, **overrides):
    """A read-only praw.Reddit from praw.ini (``site``) or environment variables.

    ``overrides`` are praw config keys such as ``oauth_url``/``reddit_url`` (tests
    point them at a local fake Reddit)."""
    import praw
    from praw.exceptions import ClientException

    try:
        reddit = praw.Reddit(site, check_for_updates=False, **overrides) if site else praw.Reddit(
            check_for_updates=False, **overrides
        )
    except (ClientException, KeyError) as exc:
        raise ConfigError(
            "Reddit credentials missing: set praw_client_id, praw_client_secret and praw_user_agent "
            f"in the environment, or name a praw.ini site with --praw-site ({exc})"
        ) from exc
    reddit.read_only = True
    return reddit


def submission_record(s) -> dict:
    """The fields the link stage needs from a praw Submission (no extra requests)."""
    d = getattr(s, "__dict__", {})
    rec = {k: d.get(k) for k in FIELDS}
    sub = d.get("subreddit")
    rec["subreddit"] = getattr(sub, "display_name", sub) if sub is not None else None
    author = d.get("author")
    rec["author"] = getattr(author, "name", author) if author is not None else None
    rec["id"] = d.get("id")
    return rec


def load_store(out_dir: str | Path) -> dict[str, dict]:
    path = Path(out_dir) / STORE_NAME
    store: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_bytes().splitlines():
            if line.strip():
                rec = orjson.loads(line)
                store[rec["id"]] = rec
    return store


def save_store(out_dir: str | Path, store: dict[str, dict]) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in sorted(store.values(), key=lambda r: str(r.get("id"))))
    atomic_write_bytes(Path(out_dir) / STORE_NAME, data)


def harvest_listings(
    reddit,
    subreddits: list[str],
    out_dir: str | Path,
    listings: Iterable[str] = ("new", "top"),
    limit: int | None = None,
) -> tuple[dict[str, dict], dict]:
    """Harvest the SUBREDDITS' listings into the store of every submission seen under
    OUT_DIR; returns the store and what this run added ({known_before, new, updated})."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = load_store(out_dir)
    before = len(store)
    new = updated = 0
    with progress(desc="reddit api", unit="posts") as bar:
        for name in subreddits:
            sr = reddit.subreddit(name)
            for listing in listings:
                gen = sr.top(time_filter="all", limit=limit) if listing == "top" else getattr(sr, listing)(limit=limit)
                for s in gen:
                    rec = submission_record(s)
                    old = store.get(rec["id"])
                    if old is None:
                        new += 1
                    elif old != rec:
                        updated += 1
                    store[rec["id"]] = rec
                    bar.update(1)
    save_store(out_dir, store)
    return store, {"known_before": before, "new": new, "updated": updated}
