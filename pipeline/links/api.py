"""Links from the live Reddit API: listings harvested into the store of every submission
seen (``pipeline.sources.reddit_api``), then links selected from all of it by the same
rules as the dump files, into one ``links.parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pipeline.core.config import LinksConfig
from pipeline.core.summary import RunSummary
from pipeline.links.table import select_links, write_links
from pipeline.sources.dumps import _coerce
from pipeline.sources.reddit_api import harvest_listings


def harvest_subreddits(
    reddit,
    subreddits: Iterable[str],
    out_dir: str | Path,
    cfg: LinksConfig,
    listings: Iterable[str] = ("new", "top"),
    limit: int | None = None,
) -> RunSummary:
    """``webtext links --reddit``: harvest listings, remember them, select links from all seen."""
    out_dir = Path(out_dir)
    subreddits = [s.strip() for s in subreddits if s.strip()]
    store, added = harvest_listings(reddit, subreddits, out_dir, listings, limit)
    rows, summary = select_links((_coerce(r) for r in store.values()), cfg)
    write_links(rows, out_dir / "links.parquet")
    summary.note(f"API: {len(subreddits)} subreddit(s); {added['known_before']:,} submissions known before, "
                 f"{added['new']:,} new, {added['updated']:,} updated")
    summary.extra["api"] = {"subreddits": subreddits, **added}
    summary.close(out_dir)
    return summary
