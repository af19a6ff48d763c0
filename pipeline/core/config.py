"""One place for configuration, with WebText-faithful defaults.

Every number names where it comes from. The GPT-2 paper is Radford et al. 2019,
"Language Models are Unsupervised Multitask Learners", section 2.2 (WebText):
outbound links from Reddit with at least 3 karma, links before December 2017
(the released WebText has no link created after 2017), Wikipedia removed,
~45M links -> slightly over 8M documents, 40 GB of text after dedup and cleaning.

Every section is a frozen dataclass, checked once, when it is made (its
``validate`` runs in ``__post_init__``): a bad value fails at start, before any work,
and a configuration that exists is valid. A changed copy is made with
``Config.replace(section, key=value)`` (or ``dataclasses.replace`` on a section), which
checks the copy.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.archive_tables import Archive, _parse_date, parse_archives  # noqa: F401 (Archive: the type of FetchConfig.archives())
from pipeline.core.errors import ConfigError

# WebText size figures from the paper, kept here so reports can compare.
PAPER_LINKS = 45_000_000  # "45 million links"
PAPER_DOCUMENTS = 8_000_000  # "slightly over 8 million documents"
PAPER_TEXT_BYTES = 40 * 10**9  # "40 GB of text"


class _Section:
    """A configuration section: checked once, when it is made."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # each section's own checks
        raise NotImplementedError


_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")


def _did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def check_types(section: Any, name: str) -> None:
    """Every value of a configuration section has its field's type (TOML gives
    strings, numbers, booleans, arrays and tables; a "false" string is not false,
    1e6 is not an int). Ints are accepted for floats; arrays become tuples."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        want = hints[f.name]
        args = typing.get_args(want)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), want) if optional else want
        where = f"{name}.{f.name}"
        if value is None and optional:
            continue
        origin = typing.get_origin(base) or base
        ok = True
        if base is bool:
            ok = isinstance(value, bool)
        elif base is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif base is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):  # nan or inf: no limit, delay or threshold can be one
                raise ConfigError(f"{where} must be a finite number, not {value!r}")
            if ok:
                object.__setattr__(section, f.name, float(value))
        elif base is str:
            ok = isinstance(value, str)
        elif origin is tuple:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            if ok:
                object.__setattr__(section, f.name, tuple(value))
        elif origin is dict:
            ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if not ok:
            kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
                base, "a list of strings" if origin is tuple else "a table of strings" if origin is dict else str(base))
            raise ConfigError(f"{where} must be {kind}{' (or absent)' if optional else ''}, not {value!r} "
                              f"({type(value).__name__})")


def _at_least(section: Any, name: str, minimum: float, *fields: str) -> None:
    for f in fields:
        if getattr(section, f) < minimum:
            raise ConfigError(f"{name}.{f} must be >= {minimum}, not {getattr(section, f)!r}")


@dataclass(frozen=True)
class LinksConfig(_Section):
    # GPT-2 paper 2.2: "outbound links from Reddit ... which received at least 3 karma".
    min_score: int = 3
    # OpenWebText2 summed the scores of all submissions of a URL; WebText/OpenWebText
    # kept a URL when one submission reached the threshold ("max").
    score_mode: str = "max"  # "max" | "sum"
    # The faithful replica: the paper's links stop in December 2017.
    created_after: str | None = None
    created_before: str | None = "2018-01-01"
    exclude_nsfw: bool = True  # OpenWebText excluded over_18 submissions
    exclude_self_posts: bool = True  # self posts link to Reddit itself
    # Editable list of media hosts and file extensions that cannot be documents.
    blocklist_path: str | None = None  # None: the packaged pipeline/data/url_blocklist.txt

    def validate(self) -> None:
        check_types(self, "links")
        if self.score_mode not in ("max", "sum"):
            raise ConfigError(f"links.score_mode must be 'max' or 'sum', not {self.score_mode!r}")
        a = _parse_date(self.created_after, "links.created_after")
        b = _parse_date(self.created_before, "links.created_before")
        if a is not None and b is not None and a >= b:
            raise ConfigError("links.created_after must be before links.created_before")
        if self.blocklist_path and not Path(self.blocklist_path).is_file():
            raise ConfigError(f"links.blocklist_path: no such file {self.blocklist_path}")

    @property
    def after_ts(self) -> int | None:
        return _parse_date(self.created_after, "links.created_after")

    @property
    def before_ts(self) -> int | None:
        return _parse_date(self.created_before, "links.created_before")


@dataclass(frozen=True)
class FetchConfig(_Section):
    user_agent: str = "webtext/0.1 (+https://github.com/webtext/webtext; corpus research crawler)"
    workers: int = 32  # I/O bound: many threads, few cores
    per_host_concurrency: int = 2  # never more than 2 requests in flight to one host
    per_host_delay_s: float = 1.0  # and at least 1 s between two requests to one host
    connect_timeout_s: float = 10.0
    total_timeout_s: float = 30.0  # whole response, so a trickling server cannot hang a worker
    max_bytes: int = 5 * 2**20  # 5 MiB of (decoded) body; news pages are < 1 MiB
    max_redirects: int = 5
    retries: int = 2  # only for connection errors, 429 and 5xx
    backoff_s: float = 1.0
    # Across builds: a URL whose last outcome was transient (timeout, connection or
    # DNS error, 429, 5xx) is fetched again by a later build once retry_after_s *
    # 2**(attempts-1) has passed since its last attempt (1, 2, 4 days by default: a
    # monthly build retries it every month), until max_attempts attempts in all; it
    # is then counted as given up (`webtext fetch --retry-failed` still retries it).
    # A site down for a few hours at build time is not lost for good.
    max_attempts: int = 4
    retry_after_s: float = 86_400.0
    allow_private_addresses: bool = False  # refuse loopback/private/link-local targets
    respect_robots: bool = True
    warc_max_bytes: int = 1 * 10**9  # roll to a new WARC file after ~1 GB (Common Crawl: 1 GB)
    # Like curl --resolve: connect to ADDRESS:PORT instead of a host's own address
    # (local mirrors, and the offline demo's web). The URL, its scheme (https stays
    # TLS, verified against the host's name) and the Host header are kept; the mapped
    # address is allowed even when private (it was given on purpose), nothing else is.
    resolve: dict = field(default_factory=dict)
    # An explicit HTTP(S) proxy, e.g. "http://proxy:3128". The environment's
    # HTTP_PROXY/HTTPS_PROXY/NO_PROXY and .netrc are ignored: a proxy resolves names
    # itself, which would bypass the pinned public-address check, and netrc would
    # send credentials to crawled sites. With a proxy the check still runs on the
    # target's name here; the proxy's own resolution is the proxy's business.
    proxy: str | None = None
    # Where pages come from (pipeline/fetch/archives.py): "live" (the web today), "archive"
    # (every URL from the web archives in archive_cdx: the faithful replica) or
    # "live-then-archive" (live first; a URL whose live fetch failed for good, e.g. 404,
    # 410 or a host name that no longer exists, is looked up in the archives).
    source: str = "live"
    # The archives, tried in order: [[fetch.archive_cdx]] tables with name, kind
    # ("cdx": Wayback-style, raw capture from replay_prefix/{timestamp}id_/{url};
    # "commoncrawl": the WARC record by byte range from data_prefix + filename),
    # cdx_url, replay_prefix or data_prefix, and optional rate (requests per second,
    # default 1), concurrency (default 1) and limit (CDX rows per URL, default 5000).
    archive_cdx: list = field(default_factory=list)
    # [[fetch.archive]]: the same tables under their newer name, and kind = "cc-index"
    # (Common Crawl's columnar URL index, joined in bulk; pipeline/fetch/ccindex.py) with
    # name, base_url (default https://data.commoncrawl.org/, or a local folder), crawls
    # (default: the CC-MAIN crawls up to archive_cutoff's year), rate, concurrency and paths
    # (crawl = list file, for a crawl without cc-index-table.paths.gz). Tried in order:
    # [[fetch.archive]] first, then [[fetch.archive_cdx]].
    archive: list = field(default_factory=list)
    # No capture after this day (the faithful replica: WebText's links end in 2017);
    # "none" allows any capture.
    archive_cutoff: str | None = "2017-12-31"
    archive_timeout_s: float = 120.0  # all archive requests for one URL, retries and waits included
    # URLs are split by a hash of their host into this many partitions (fixed for a fetch
    # directory), each fetched by one process with its own outcome log and WARC files:
    # a host's politeness limits stay inside one partition.
    partitions: int = 16
    # Processes fetching partitions at once. 0: automatic, see process_plan (threads: one
    # per core; the asyncio transport: one process holding every core's `workers`).
    processes: int = 0
    # How live pages are fetched: "async" (one asyncio event loop per process, WARC records
    # and outcome lines made durable in group commits; pipeline/fetch/aiofetch.py) or
    # "threads" (urllib3 on `workers` threads, a fsync per record). Both apply the same
    # rules and write the same WARC bytes; the archive sources and a proxy use threads.
    transport: str = "async"

    def validate(self) -> None:
        check_types(self, "fetch")
        if self.partitions < 1 or self.partitions > 4096:
            raise ConfigError("fetch.partitions must be between 1 and 4096")
        if self.processes < 0:
            raise ConfigError("fetch.processes must be >= 0 (0: automatic)")
        if self.transport not in ("async", "threads"):
            raise ConfigError(f"fetch.transport must be 'async' or 'threads', not {self.transport!r}")
        if self.source not in SOURCES:
            raise ConfigError(f"fetch.source must be one of {', '.join(repr(x) for x in SOURCES)}, not {self.source!r}")
        _parse_date(self.archive_cutoff, "fetch.archive_cutoff")
        if self.archive_timeout_s <= 0:
            raise ConfigError("fetch.archive_timeout_s must be > 0")
        archives = self.archives()
        if self.source != "live" and not archives:
            raise ConfigError(f"fetch.source = {self.source!r} needs at least one [[fetch.archive]] (or "
                              "[[fetch.archive_cdx]]) entry")
        _at_least(self, "fetch", 0, "retries", "backoff_s", "per_host_delay_s", "retry_after_s")
        if self.proxy is not None and not str(self.proxy).startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ConfigError(f"fetch.proxy must be a URL like http://host:port, not {self.proxy!r}")
        if self.retry_after_s < 0:
            raise ConfigError("fetch.retry_after_s must be >= 0")
        for name in ("workers", "per_host_concurrency", "max_bytes", "max_redirects", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"fetch.{name} must be >= 1")
        if self.total_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ConfigError("fetch timeouts must be > 0")
        for host, target in self.resolve.items():
            if not isinstance(host, str) or not host or "/" in host or ":" in host.strip("[]").replace("::", ""):
                raise ConfigError(f"fetch.resolve: {host!r} is not a host name (give HOST = \"ADDRESS:PORT\")")
            try:
                parsed = _split_target(target)
            except ValueError:
                parsed = None
            if parsed is None:
                raise ConfigError(f"fetch.resolve.{host} must be \"ADDRESS:PORT\" (like curl --resolve), not {target!r}")

    def process_plan(self, cores: int) -> tuple[int, int]:
        """(processes, workers per process) for a live fetch on CORES cores. An explicit
        ``processes`` is kept as it is. Automatic (0): the threaded transport runs a process
        per core; the asyncio transport one process with ``workers`` x CORES requests in
        flight: one event loop keeps them all busy, the same number in flight as a process
        per core would, at less CPU per page and with one interpreter's start instead of one
        per core (bench/RESULTS.md, "One process by default")."""
        cores = max(1, cores)
        if self.processes:
            return self.processes, self.workers
        if self.transport == "async":
            return 1, self.workers * cores
        return cores, self.workers

    def archives(self) -> list["Archive"]:
        """Every configured archive, in the order they are tried ([[fetch.archive]], then
        [[fetch.archive_cdx]])."""
        first = parse_archives(self.archive, self.allow_private_addresses, self.archive_cutoff, key="archive")
        return first + parse_archives(self.archive_cdx, self.allow_private_addresses, self.archive_cutoff,
                                      key="archive_cdx", taken=tuple(a.name for a in first))


def _split_target(target) -> tuple[str, int] | None:
    """``fetch.resolve``'s "ADDRESS:PORT" ("[::1]:8080" for IPv6) -> (address, port)."""
    from urllib.parse import urlsplit

    if not isinstance(target, str) or not target or "/" in target or "@" in target:
        return None
    parts = urlsplit("//" + target)
    if not parts.hostname or parts.port is None:
        return None
    return parts.hostname, parts.port


# Where pages come from: the web today, the archives (the faithful replica), the web with the
# archives for what it no longer holds, or the archives with the web for what they never held.
SOURCES = ("live", "archive", "live-then-archive", "archive-then-live")


@dataclass(frozen=True)
class ExtractConfig(_Section):
    # Chosen by measurement (bench/bench_extract.py, bench/RESULTS.md).
    include_comments: bool = False
    favor_precision: bool = False
    favor_recall: bool = False
    # Publication date: the one the page's metadata declares (meta tags, microdata,
    # JSON-LD; ~1 ms a page; pipeline/extract/ page_date). With date_htmldate, pages
    # whose metadata has none ask htmldate's fast mode (original date, no extensive
    # search): dates on ~72% of wcxb's pages instead of ~41%, at ~9 ms a page asked (~8%
    # of the extraction time; bench/RESULTS.md "Rescue").
    with_date: bool = True
    date_htmldate: bool = False
    workers: int = 0  # 0: all cores
    page_timeout_s: float = 30.0  # a page that makes the extractor run away is recorded and skipped
    # Remove cookie/consent banners and privacy centres (OneTrust, Quantcast, Axeptio,
    # Didomi, Cookiebot, Usercentrics, TrustArc, Sourcepoint, ...) from the page before
    # extraction (pipeline/extract/ strip_consent): they otherwise become the "main
    # text" of pages whose real content is short (issue 14).
    strip_consent: bool = True
    # Where trafilatura keeps little of the visible text of a page that declares no
    # article (item lists of listings, collections and shops), take trafilatura's
    # baseline instead when it holds 3x the words (pipeline/extract/
    # rescue_short_extraction; bench/RESULTS.md "Rescue"). Also: a page of which
    # trafilatura kept nothing is read again with favor_recall (worker.RECALL_BELOW_WORDS).
    rescue: bool = True
    # Remove subscription prompts ("Unlock this article", "Already a subscriber? Log in")
    # by their containers (paywall, regwall, Piano, restricted-content breakers) before
    # extraction; the article around them is kept (pipeline/extract/ strip_banners).
    strip_paywall: bool = True
    # A forum thread or Q&A page whose engine marks its posts (XenForo, vBulletin, phpBB,
    # Invision, SMF, MyBB, FluxBB, Discourse, NodeBB, Flarum, Reddit, ..., schema.org
    # QAPage answers) gives its title and posts as the text, each post under its author
    # and date (pipeline/extract/ forum_posts): trafilatura counts posts as comments.
    # A page that declares a thread (QAPage, DiscussionForumPosting) in markup none of
    # them uses is extracted with trafilatura's comments.
    forum_posts: bool = True
    # Where the container of what trafilatura kept holds 1.25x its words or more (the
    # headings, short list items and cells of a service, listing or collection page),
    # take the container's text (pipeline/extract/ expand_to_container; not on pages
    # that declare a product; bench/RESULTS.md "Container").
    expand: bool = True
    # The document's title is its own column (og:title, else <title>); a first line of
    # the text that repeats it (the headline above the story) is dropped unless
    # title_line (pipeline/extract/ drop_title_line; bench/RESULTS.md "Container").
    title_line: bool = False
    # Drop the short lines that sign-up, newsletter and contact forms and cookie notices
    # put beside a page's text ("By submitting this form, you agree to ... and consent to
    # receive ...", "Sign up for our newsletter", "We use cookies ..."), wherever they sat
    # (pipeline/extract/ drop_form_lines; bench/bench_forum_forms_folds.py).
    strip_forms: bool = True
    # Drop the lines made of machine ids: 3 or more UUIDs making 80% of a line's
    # characters. Some shops hide a label ("Sponsored") among spans of UUIDs their
    # stylesheet makes invisible; trafilatura reads no CSS and keeps them as lines of a
    # thousand characters (pipeline/extract/ drop_id_runs; bench/bench_id_runs_folds.py).
    drop_id_runs: bool = True
    # On a page that declares no article and holds no code (<pre>, <code>), a line of 3+
    # words repeating an earlier line of the text leaves it: a shop's or service page's
    # tabs and carousels give the same block twice (pipeline/extract/ drop_repeated_lines;
    # bench/RESULTS.md "Repeated lines").
    dedup_lines: bool = True
    # On a page that sells one product (one to a few schema.org Products, no item list;
    # or a product's URL path), the groups of other products' cards around it (link +
    # image siblings: "Customers also viewed", "Similar items") leave the page before
    # extraction (pipeline/extract/items.py; bench/bench_items_folds.py).
    drop_related_items: bool = True
    # Where the extraction is short (up to 400 words, items.GRID_MAX_WORDS) and holds
    # under 30% of the page's visible text, and a group of
    # item cards (link + image siblings outside navigation, headers, footers, asides and
    # forms) holds 2x its words or more that it lacks, at 30 words a card or fewer, those
    # cards are added below it, one a line: the listing's or collection's grid that
    # trafilatura dropped; not on a page that sells one product (pipeline/extract/items.py
    # add_missed_grid; bench/bench_grid_folds.py).
    add_missed_grid: bool = True

    def validate(self) -> None:
        check_types(self, "extract")
        _at_least(self, "extract", 0, "workers")
        if self.page_timeout_s <= 0:
            raise ConfigError("extract.page_timeout_s must be > 0")
        if self.favor_precision and self.favor_recall:
            raise ConfigError("extract: favor_precision and favor_recall are exclusive")


@dataclass(frozen=True)
class FilterConfig(_Section):
    # OpenWebText / Megatron dropped documents under 128 GPT-2 tokens.
    min_length: int = 128
    length_unit: str = "tokens"  # "tokens" (GPT-2 BPE) | "words" | "chars"
    languages: tuple[str, ...] = ("en",)  # WebText is English
    min_language_confidence: float = 0.5
    remove_wikipedia: bool = True  # GPT-2 paper 2.2: all Wikipedia documents removed
    drop_junk: bool = True
    fix_mojibake: bool = True

    def validate(self) -> None:
        check_types(self, "filter")
        if not self.languages:
            raise ConfigError("filter.languages must name at least one language, e.g. [\"en\"]")
        if not 0.0 <= self.min_language_confidence <= 1.0:
            raise ConfigError("filter.min_language_confidence must be between 0 and 1")
        if self.length_unit not in ("tokens", "words", "chars"):
            raise ConfigError(f"filter.length_unit must be tokens, words or chars, not {self.length_unit!r}")
        if self.min_length < 0:
            raise ConfigError("filter.min_length must be >= 0")


@dataclass(frozen=True)
class DedupConfig(_Section):
    # Chosen by measurement on the Reuters near-dup dev set (bench/bench_dedup.py,
    # bench/RESULTS.md): 22 bands x 5 rows over 110 permutations finds pairs down to
    # J~0.4; candidates are then verified, which keeps precision >= .99. FineWeb's
    # 14x8 reached F1 .57 there, this .79.
    num_perm: int = 110
    bands: int = 22
    rows: int = 5
    shingle_words: int = 5  # word 5-grams, as FineWeb and the dev set's ground truth
    # A candidate pair is a duplicate when the signatures' estimated Jaccard or
    # estimated containment (truncated / boilerplate-wrapped copies) reaches these.
    jaccard_threshold: float = 0.5
    containment_threshold: float = 0.85
    seed: int = 1
    redis_url: str | None = None  # band buckets in Redis (datasketch MinHashLSH storage) instead of state/segments
    # Which copy of a cluster is kept. "earliest": the one first submitted to Reddit
    # (the original is usually posted before its syndicated copies, and a build
    # month by month then keeps what one build over all months keeps);
    # "score": the highest Reddit score. Ties: score, length, id.
    keep: str = "earliest"
    workers: int = 0  # processes computing signatures, one input part each; 0: all cores
    # A document longer than this (characters) is dropped as too_long, not hashed: WebText's
    # pages are a few KB; a multi-MB "document" is a dump or a log, not an article.
    max_chars: int = 2_000_000

    def validate(self) -> None:
        check_types(self, "dedup")
        _at_least(self, "dedup", 1, "num_perm", "bands", "rows", "max_chars")
        _at_least(self, "dedup", 0, "workers")
        for f in ("jaccard_threshold", "containment_threshold"):
            if not 0.0 < getattr(self, f) <= 1.0:
                raise ConfigError(f"dedup.{f} must be in (0, 1], not {getattr(self, f)!r}")
        if self.redis_url is not None and not self.redis_url.startswith("redis://"):
            raise ConfigError(f"dedup.redis_url must look like redis://HOST:PORT, not {self.redis_url!r}")
        if self.keep not in ("earliest", "score"):
            raise ConfigError(f"dedup.keep must be 'earliest' or 'score', not {self.keep!r}")
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(f"dedup: bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.shingle_words < 1:
            raise ConfigError("dedup.shingle_words must be >= 1")


@dataclass(frozen=True)
class ShardConfig(_Section):
    max_shard_bytes: int = 256 * 2**20  # ~256 MB shards, as HF datasets and FineWeb publish
    compression: str = "zstd"

    def validate(self) -> None:
        check_types(self, "shards")
        if self.compression not in _COMPRESSIONS:
            raise ConfigError(f"shards.compression must be one of {', '.join(_COMPRESSIONS)}, not {self.compression!r}")
        if self.max_shard_bytes < 1024:
            raise ConfigError("shards.max_shard_bytes must be >= 1024")


@dataclass(frozen=True)
class ReportConfig(_Section):
    # OpenAI's list of WebText's top 1,000 domains with document counts
    # (openai/gpt-2-output-dataset or openai/gpt-2 `domains.txt`: "COUNT DOMAIN" per
    # line). Not shipped with webtext; without it the likeness report describes the
    # build alone.
    webtext_domains: str | None = None
    token_sample: int = 20_000  # documents tokenized (GPT-2 BPE) for tokens per document

    def validate(self) -> None:
        check_types(self, "report")
        if self.webtext_domains is not None and not Path(self.webtext_domains).is_file():
            raise ConfigError(f"report.webtext_domains: no such file {self.webtext_domains!r}")
        if self.token_sample < 0:
            raise ConfigError("report.token_sample must be >= 0")


@dataclass(frozen=True)
class Config:
    links: LinksConfig = field(default_factory=LinksConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, section: str, **changes: Any) -> "Config":
        """A copy with SECTION's keys changed (the new section is checked)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        sections: dict[str, Any] = {}
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for section, values in (data or {}).items():
            if section == "train":
                continue  # the same file's training options: read by model.train.load_train_config
            if section not in by_name:
                raise ConfigError(f"unknown configuration section [{section}]")
            kind = by_name[section].default_factory
            if not isinstance(values, dict):
                raise ConfigError(f"[{section}] must be a table of keys, not {values!r}")
            known = {f.name for f in dataclasses.fields(kind)}
            for key in values:
                if key not in known:
                    raise ConfigError(f"unknown key {section}.{key}{_did_you_mean(key, known)}; "
                                      f"known: {', '.join(sorted(known))}")
            sections[section] = kind(**values)
        return cls(**sections)

    def with_overrides(self, pairs: list[str]) -> "Config":
        """``--set SECTION.KEY=VALUE`` pairs applied to a copy (VALUE is read as TOML: 8,
        true, "text", ["en", "de"]; anything else as a bare string), checked like a file's."""
        data = dataclasses.asdict(self)
        sections = {f.name for f in dataclasses.fields(self)}
        for pair in pairs:
            name, eq, raw = pair.partition("=")
            section, dot, key = name.strip().partition(".")
            if not eq or not dot or not key:
                raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE, e.g. fetch.workers=8")
            if section not in sections:
                raise ConfigError(f"--set {pair!r}: unknown configuration section [{section}]"
                                  f"{_did_you_mean(section, sections)}; known: {', '.join(sorted(sections))}")
            try:
                value = tomllib.loads(f"v = {raw.strip()}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw.strip()
            data[section][key] = value
        return type(self).from_dict(data)

    @classmethod
    def load(cls, path: str | Path | None) -> "Config":
        if path is None:
            return cls()
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: {exc}") from exc
        return cls.from_dict(data)
