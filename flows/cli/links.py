"""`webtext links`: Reddit dumps, URL lists or the live API -> the links table."""

from __future__ import annotations

from pathlib import Path

from flows.cli.options import FORMATTER, _add_config, _config, register
from pipeline.core.config import LinksConfig
from pipeline.core.errors import ConfigError


def cmd_links(args) -> int:
    ch: dict = {}
    if args.min_score is not None:
        ch["min_score"] = args.min_score
    if args.score_mode:
        ch["score_mode"] = args.score_mode
    if args.after is not None:
        ch["created_after"] = args.after
    if args.before is not None:
        ch["created_before"] = args.before
    elif args.reddit and not args.dump and not args.urls:
        # The live API only has posts from long after the faithful window's end.
        ch["created_before"] = None
    if args.allow_nsfw:
        ch["exclude_nsfw"] = False
    if args.blocklist:
        ch["blocklist_path"] = args.blocklist
    cfg = _config(args).replace("links", **ch)
    lc = cfg.links
    if bool(args.dump or args.urls) == bool(args.reddit):
        raise ConfigError("give --dump FILE ... and/or --urls FILE ..., or --reddit SUBREDDIT[,...]")
    if args.dump or args.urls:
        from pipeline.build import expand_dumps
        from pipeline.links.merge import harvest_dump_links
        from pipeline.sources.urllists import expand_url_lists

        summary = harvest_dump_links(expand_dumps(args.dump or []), args.out, lc,
                                     url_lists=expand_url_lists(args.urls or []))
    else:
        from pipeline.links.api import harvest_subreddits
        from pipeline.sources.reddit_api import make_reddit

        reddit = make_reddit(args.praw_site)
        subs = [s for part in args.reddit for s in part.split(",")]
        summary = harvest_subreddits(reddit, subs, args.out, lc, listings=args.listing.split(","), limit=args.limit)
    summary.print()
    run = summary.extra.get("run")
    if args.reddit:
        print(f"wrote {Path(args.out) / 'links.parquet'} ({summary.n_out:,} unique URLs)")
    elif run is None:
        print(f"nothing new: every input was merged before ({Path(args.out) / 'runs'})")
    else:
        print(f"merge run {run}: {summary.n_out:,} new links in {Path(args.out) / 'runs' / f'links-{run:04d}.parquet'} "
              "(every run's links: pipeline.links.read_links(DIR))")
    return 0


@register
def add_links(sub) -> None:
    p = sub.add_parser(
        "links",
        formatter_class=FORMATTER,
        help="harvest outbound links from Reddit dump files, URL lists or the live API",
        description=(
            "Reads Pushshift/Arctic-Shift submission dumps (xz, bz2, zst incl. --long=31, Arctic Shift's zst_blocks, "
            "gzip, plain NDJSON; the codec is detected from the file), plain URL lists (--urls), or live subreddit "
            "listings through praw, keeps link posts "
            "with at least 3 karma, and writes OUT/runs/links-NNNN.parquet (one row per normalised URL that became a link in this run, with every "
            "submission's ids, subreddits, scores, times and titles) and OUT/summary.links.json (the funnel). "
            "Each dump or list is read once into OUT/parts/ (keyed by its content fingerprint and the configuration); "
            "each merge run reads only the parts no run consumed and looks their URLs up in the earlier runs' key index, "
            "so a later call with next month's dump reads and writes only that month. "
            "Credentials for --reddit come from praw.ini or the praw_client_id/praw_client_secret/"
            "praw_user_agent environment variables, never from the command line."
        ),
    )
    p.add_argument("--dump", action="extend", nargs="+", metavar="FILE_OR_GLOB",
                   help="monthly dump files or glob patterns (quoted), e.g. 'RS_2017-*.zst'; may be repeated")
    p.add_argument("--urls", action="extend", nargs="+", metavar="FILE_OR_GLOB",
                   help="URL lists (earlier clones' lists such as OpenWebText's): one URL per line, or CSV/TSV/Parquet "
                   "with a url column and optional score, created (Unix seconds or ISO date), title, subreddit columns; "
                   "xz/bz2/gzip/zstd compressed or not. Entries without a score are taken as filtered by the list's "
                   "maker (no karma rule), without a date they pass the date window; may be repeated, and combined "
                   "with --dump")
    p.add_argument("--reddit", action="append", metavar="SUB[,SUB]", help="subreddits to harvest through the API")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--min-score", type=int, help=f"minimum karma (default {LinksConfig().min_score}, the GPT-2 paper)")
    p.add_argument("--score-mode", choices=["max", "sum"], help="max: one submission reaches it (WebText); sum: per URL (OpenWebText2)")
    p.add_argument("--after", metavar="YYYY-MM-DD", help="keep links created on or after this date")
    p.add_argument("--before", metavar="YYYY-MM-DD|none", help=f"keep links created before this date (default {LinksConfig().created_before} for dumps, none for --reddit)")
    p.add_argument("--allow-nsfw", action="store_true", help="keep over_18 submissions (excluded by default)")
    p.add_argument("--blocklist", metavar="FILE", help="media hosts/extensions file (default: the packaged one)")
    p.add_argument("--praw-site", metavar="NAME", help="praw.ini site with the credentials")
    p.add_argument("--listing", default="new,top", help="listings to harvest with --reddit")
    p.add_argument("--limit", type=int, default=None, help="items per listing with --reddit (Reddit caps at ~1000)")
    _add_config(p)
    p.set_defaults(func=cmd_links)
