"""One stage at a time: fetch, extract, filter, dedup, shard."""

from __future__ import annotations

from pathlib import Path

from flows.cli.options import FORMATTER, _add_config, _config, register
from pipeline.core.config import DedupConfig, FetchConfig, FilterConfig

# --- corpus stages: fetch, extract --------------------------------------------------------


def _links_rows(links_dir):
    from pipeline.links.table import iter_links

    return iter_links(links_dir, columns=("id", "url", "url_norm", "created_utc"))  # created_utc: for archived captures


@register
def add_fetch(sub):
    p = sub.add_parser(
        "fetch", formatter_class=FORMATTER, help="fetch the links' pages into WARC files (or replay WARCs)",
        description="Fetches every URL of the links directory LINKS (every merge run) that has no final outcome yet, politely "
        "(per-host limit and delay, a user agent naming the project, robots.txt) and safely (time-outs, size and "
        "redirect caps, no private addresses), writing raw responses to OUT/warc/*.warc.gz and one outcome per URL. "
        "Stopped and started again, it fetches only what is left. Transient failures (time-outs, connection and DNS "
        "errors, 429, 5xx) are fetched again by a later run after a back-off ([fetch] retry_after_s, doubling per "
        "attempt) up to [fetch] max_attempts attempts, then counted as given up. With --from-warc, pages come from existing WARC "
        "files (ours, Common Crawl's) instead of the network.",
    )
    p.add_argument("--links", required=True, metavar="DIR", help="a links directory (`webtext links --out`)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--from-warc", nargs="+", metavar="FILE", help="replay these WARC files instead of fetching")
    p.add_argument("--workers", type=int, help=f"threads (default {FetchConfig().workers})")
    p.add_argument("--no-robots", action="store_true", help="do not read robots.txt")
    p.add_argument("--allow-private", action="store_true", help="allow loopback/private targets (tests, local mirrors)")
    p.add_argument("--user-agent", help="default names the project")
    p.add_argument("--retry-failed", action="store_true",
                   help="fetch every URL whose last outcome was transient now, ignoring back-off and given-up status")
    p.add_argument("--source", choices=("live", "archive", "live-then-archive", "archive-then-live"),
                   help="where pages come from (default [fetch] source, 'live'); the archives are [[fetch.archive_cdx]] "
                        "(README, Archive fallback)")
    _add_config(p)

    def run(args):
        from pipeline.fetch.replay import replay_links
        from pipeline.fetch.stage import fetch_links

        ch: dict = {}
        if args.workers:
            ch["workers"] = args.workers
        if args.no_robots:
            ch["respect_robots"] = False
        if args.allow_private:
            ch["allow_private_addresses"] = True
        if args.user_agent:
            ch["user_agent"] = args.user_agent
        if args.source:
            ch["source"] = args.source
        cfg = _config(args).replace("fetch", **ch)
        fc = cfg.fetch
        rows = _links_rows(args.links)
        if args.from_warc:
            s = replay_links(rows, args.out, args.from_warc)
        else:
            s = fetch_links(rows, args.out, fc, retry_failed=args.retry_failed)
        s.print()

    p.set_defaults(func=run)


@register
def add_extract(sub):
    p = sub.add_parser(
        "extract", formatter_class=FORMATTER, help="extract main text from WARC responses into Parquet documents",
        description="Reads response records from WARC files (--warc, any producer) or the ok outcomes of a fetch "
        "directory (--fetch), extracts main text with trafilatura on all cores, joins Reddit metadata from --links, "
        "and writes OUT/part-*.parquet (id, url, text, title, scores, subreddits, reddit ids, fetch metadata) and "
        "OUT/summary.extract.json. Resumable: a restart skips pages already handled.",
    )
    p.add_argument("--warc", nargs="+", metavar="FILE")
    p.add_argument("--fetch", metavar="DIR", help="a fetch output directory: the ok pages of its outcome logs, each "
                   "log read from where the last run stopped (OUT/ledger/)")
    p.add_argument("--links", nargs="*", default=[], metavar="DIR",
                   help="links directories for Reddit metadata (with --fetch: only for outcome records of a fetch "
                   "older than the one that carries them)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    _add_config(p)

    def run(args):
        from pipeline.extract.stage import (
            extract_documents,
            extract_fetched,
            load_reddit_meta,
            tasks_from_warcs,
        )

        cfg = _config(args)
        if args.workers:
            cfg = cfg.replace("extract", workers=args.workers)
        if bool(args.warc) == bool(args.fetch):
            from pipeline.core.errors import ConfigError

            raise ConfigError("give either --warc FILE ... or --fetch DIR")
        if args.warc:
            missing = [w for w in args.warc if not Path(w).is_file()]
            if missing:
                raise FileNotFoundError(f"WARC file(s) not found: {', '.join(missing)}")
        if args.fetch:
            if not Path(args.fetch).is_dir():
                raise FileNotFoundError(f"fetch directory not found: {args.fetch}")
            # as the build does: each outcome log read from where the last run stopped
            extract_fetched(args.fetch, args.out, cfg.extract, args.links).print()
            return
        damaged: list[dict] = []
        # Read the WARC index first: a file that is not a WARC fails here, before anything is written.
        tasks = list(tasks_from_warcs(args.warc, damaged))
        s = extract_documents(tasks, args.out, cfg.extract, load_reddit_meta(args.links), damaged=damaged)
        s.print()

    p.set_defaults(func=run)


# --- corpus stages: filter, dedup, shard ---------------------------------------------------


@register
def add_filter(sub):
    p = sub.add_parser(
        "filter", formatter_class=FORMATTER, help="drop Wikipedia, short, non-English and junk documents",
        description="Reads Parquet documents from IN, fixes mojibake (ftfy), and drops with a named reason: Wikipedia "
        "(every language and mobile host, mirrors, copied-article markers), documents under 128 GPT-2 tokens, "
        "non-English (lingua), captcha/cookie/paywall/error pages. Writes kept documents to OUT (one file per input "
        "file), OUT/summary.filter.json, and with --write-dropped the dropped ones to OUT/dropped/ for audit.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    fd = FilterConfig()
    p.add_argument("--min-length", type=int, help=f"minimum length (default {fd.min_length}, OpenWebText/Megatron)")
    p.add_argument("--length-unit", choices=["tokens", "words", "chars"], help=f"unit of --min-length (default {fd.length_unit})")
    p.add_argument("--languages", help=f"comma-separated ISO 639-1 codes to keep (default {','.join(fd.languages)})")
    p.add_argument("--write-dropped", action="store_true")
    _add_config(p)

    def run(args):
        from pipeline.filters.stage import filter_documents

        ch: dict = {}
        if args.min_length is not None:
            ch["min_length"] = args.min_length
        if args.length_unit:
            ch["length_unit"] = args.length_unit
        if args.languages:
            ch["languages"] = tuple(x.strip() for x in args.languages.split(",") if x.strip())
        fc = _config(args).replace("filter", **ch).filter
        filter_documents(args.src, args.out, fc, args.write_dropped).print()

    p.set_defaults(func=run)


@register
def add_dedup(sub):
    DD = DedupConfig()
    p = sub.add_parser(
        "dedup", formatter_class=FORMATTER, help="near-duplicate removal with MinHash LSH",
        description=f"Reads Parquet documents with id and text (score optional) from IN, finds near-duplicates with "
        f"MinHash LSH ({DD.bands} bands x {DD.rows} rows over {DD.num_perm} permutations of word {DD.shingle_words}-grams, "
        f"candidates verified by estimated Jaccard >= {DD.jaccard_threshold} or containment >= {DD.containment_threshold}, "
        "chosen on the Reuters near-dup set), clusters them, keeps per cluster a document kept by an earlier run, else "
        f"(keep = {DD.keep!r}) the one first submitted to Reddit ('score': the highest score), then the higher score, the "
        "longest, the smallest id, and writes per run OUT/documents-NNNN.parquet, OUT/duplicates-NNNN.parquet (id, "
        "duplicate_of) and the summary. Only input parts no earlier run consumed are read. The index (memory-mapped "
        "Arrow segments, one per run, and a ledger of the parts consumed) persists in --state (default OUT/state), so "
        "the next run is checked against everything kept; --redis keeps the band buckets in a Redis server instead.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--state", metavar="DIR", help="index directory (default OUT/state)")
    p.add_argument("--redis", metavar="URL", help="redis://HOST:PORT for datasketch's Redis storage")
    _add_config(p)

    def run(args):
        from pipeline.dedup.stage import dedup_documents

        cfg = _config(args)
        dc = (cfg.replace("dedup", redis_url=args.redis) if args.redis else cfg).dedup
        dedup_documents(args.src, args.out, dc, args.state).print()

    p.set_defaults(func=run)


@register
def add_shard(sub):
    p = sub.add_parser(
        "shard", formatter_class=FORMATTER, help="write the final corpus as Parquet shards with a manifest",
        description="Reads the document parts of IN (the directory `webtext dedup` wrote, or any directory of Parquet "
        "documents) that no version of OUT consumed yet, streams them into zstd Parquet shards of at most ~256 MB under "
        "a new manifest version (OUT/manifest.json: file, rows, bytes, sha256 per shard; the parts each version "
        "consumed). ""Nothing new: nothing changes.",
    )
    p.add_argument("--in", dest="src", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_config(p)

    def run(args):
        from pipeline.shards.stage import shard_documents

        cfg = _config(args)
        src = Path(args.src)
        if not src.exists():
            raise FileNotFoundError(f"{args.src}: no such file or directory (give the directory `webtext dedup` wrote)")
        dedup_dir = src.is_dir() and any(src.glob("documents-*.parquet"))
        shard_documents(src, args.out, cfg.shards, {"config": cfg.to_dict()},
                        pattern="documents-*.parquet" if dedup_dir else "*.parquet").print()

    p.set_defaults(func=run)
