"""`webtext`: one command, a subcommand per stage and for whole builds.

Stages run directly (no Prefect); `build`, `demo` and `serve` go through the
Prefect flows. Heavy imports happen inside each subcommand so `--help` is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import Config, ConfigError, InputError, LinksConfig

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _config(args) -> Config:
    return Config.load(getattr(args, "config", None))


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="configuration file (sections [links], [fetch], ...); defaults are WebText-faithful")


# --- links ---------------------------------------------------------------------------


def cmd_links(args) -> int:
    cfg = _config(args)
    lc = cfg.links
    if args.min_score is not None:
        lc.min_score = args.min_score
    if args.score_mode:
        lc.score_mode = args.score_mode
    if args.after is not None:
        lc.created_after = args.after
    if args.before is not None:
        lc.created_before = args.before
    elif args.reddit and not args.dump and not args.urls:
        # The live API only has posts from long after the faithful window's end.
        lc.created_before = None
    if args.allow_nsfw:
        lc.exclude_nsfw = False
    if args.blocklist:
        lc.blocklist_path = args.blocklist
    lc.validate()
    if bool(args.dump or args.urls) == bool(args.reddit):
        raise ConfigError("give --dump FILE ... and/or --urls FILE ..., or --reddit SUBREDDIT[,...]")
    if args.dump or args.urls:
        from pipeline.build import expand_dumps
        from pipeline.links import harvest_dump_links
        from pipeline.urllists import expand_url_lists

        summary = harvest_dump_links(expand_dumps(args.dump or []), args.out, lc,
                                     url_lists=expand_url_lists(args.urls or []))
    else:
        from pipeline.reddit_api import harvest_subreddits, make_reddit

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webtext",
        formatter_class=FORMATTER,
        description="Rebuild OpenAI's WebText from Reddit links, and train and evaluate GPT-2 on it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _ADDERS:
        add(sub)
    return parser


_ADDERS = [add_links]


def register(adder):
    _ADDERS.append(adder)
    return adder


def disk_full(exc: BaseException) -> bool:
    """Out of space or quota, however it surfaced (Python's errno, or pyarrow's message)."""
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    import os

    # Prefect's server would send usage telemetry to the internet; webtext never talks
    # to anything but the pages it fetches (and the demo: only 127.0.0.1).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side analytics
    # Subcommands defined in other modules register themselves on import.
    from flows import cli_commands  # noqa: F401

    parser = build_parser()
    args = parser.parse_args(argv)
    from pipeline.build import BuildLocked

    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, BuildLocked, InputError) as exc:
        print(f"webtext {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not disk_full(exc):
            raise
        where = f" (writing {exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"webtext {args.command}: error: the disk is full{where}. Free some space and run the same command "
              "again: finished work is kept and the run resumes.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the importable module, so subcommands registered on flows.cli count.
    from flows.cli import main as _main

    sys.exit(_main())
