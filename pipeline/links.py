"""Link selection: Reddit submissions -> one row per unique normalised URL.

Every submission read ends in exactly one place: kept as the first submission of
a URL, merged into an earlier submission of the same URL (``duplicate_url``), or
dropped with a named reason. The counts add up to the lines read
(``RunSummary.check``).

Sources: Pushshift / Arctic Shift monthly dumps (``harvest_dump_part``), plain URL
lists (``harvest_url_list_part``, pipeline/urllists.py), both into parts that
``merge_link_parts`` merges, and the live API (pipeline/reddit_api.py). An entry
of a URL list may have no karma and no date: ``score``/``score_total`` are then
null (unknown, never 0) and ``created_utc`` 0 (unknown), and the karma rule and
date window are not applied to it (the list's maker filtered it).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .config import LinksConfig
from .dumps import DumpReadStats, Submission, created_ts, iter_submissions
from .urllists import UrlListStats, iter_url_list
from .summary import RunSummary, atomic_write_bytes, progress
from .urls import REDDIT_DOMAINS, InvalidURL, host_matches, url_forms, url_id

BLOCKLIST_PATH = Path(__file__).parent / "data" / "url_blocklist.txt"

LINKS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("url_norm", pa.string()),
        ("domain", pa.string()),
        ("score", pa.int64()),
        ("score_total", pa.int64()),
        ("n_submissions", pa.int32()),
        ("created_utc", pa.int64()),
        ("reddit_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
        ("created_utcs", pa.list_(pa.int64())),
        ("titles", pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class Blocklist:
    domains: frozenset[str]
    extensions: frozenset[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Blocklist":
        path = Path(path) if path else BLOCKLIST_PATH
        domains: set[str] = set()
        exts: set[str] = set()
        section = None
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if line in ("[domains]", "[extensions]"):
                section = line[1:-1]
            elif section == "domains":
                domains.add(line)
            elif section == "extensions":
                exts.add(line.lstrip("."))
            else:
                raise ValueError(f"{path}:{lineno}: entry {line!r} before a [domains] or [extensions] header")
        return cls(frozenset(domains), frozenset(exts))

    def reason(self, host: str, path: str) -> str | None:
        if host_matches(host, self.domains):
            return "media_host"
        last = path.rsplit("/", 1)[-1]
        if "." in last and last.rsplit(".", 1)[-1].lower() in self.extensions:
            return "media_extension"
        return None


def _max(a: int | None, b: int | None) -> int | None:
    """The higher known score (None: unknown)."""
    return b if a is None else a if b is None else max(a, b)


def _total(a: int | None, b: int | None) -> int | None:
    """A score total stays unknown once one part of it is (a URL-list entry without karma)."""
    return None if a is None or b is None else a + b


def _first_created(values) -> int:
    """The earliest known time (0: unknown)."""
    return min((v for v in values if v), default=0)


class LinkSelector:
    """Applies the selection rules to submissions and aggregates them per URL.

    ``from_list=True`` (entries of a URL list): an entry without a score is not
    held to the karma rule and keeps a null score, one without a date passes the
    date window; the list's maker filtered them."""

    def __init__(self, cfg: LinksConfig, summary: RunSummary | None = None, from_list: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.from_list = from_list
        self.summary = summary or RunSummary("links", unit="submissions")
        self.blocklist = Blocklist.load(cfg.blocklist_path)
        self.after = cfg.after_ts
        self.before = cfg.before_ts
        # url_norm -> [url, domain, max_score, total_score, ids, subs, created, titles]
        self.by_url: dict[str, list] = {}

    def add(self, s: Submission) -> None:
        summary = self.summary
        summary.n_in += 1
        reason = self._reason(s)
        if reason is not None:
            summary.drop(reason)
            return
        url = self._url
        key = self._key
        score = s.score if s.score is not None else (None if self.from_list else 0)
        created = created_ts(s.created_utc)
        entry = self.by_url.get(key)
        if entry is None:
            self.by_url[key] = [url, self._host, score, score, [s.id or ""], [s.subreddit or ""], [created or 0], [s.title or ""]]
        else:
            entry[2] = _max(entry[2], score)
            entry[3] = _total(entry[3], score)
            entry[4].append(s.id or "")
            entry[5].append(s.subreddit or "")
            entry[6].append(created or 0)
            entry[7].append(s.title or "")

    def _reason(self, s: Submission) -> str | None:
        cfg = self.cfg
        raw_url = s.url_overridden_by_dest or s.url
        if not raw_url:
            return "missing_url"
        if cfg.exclude_self_posts and s.is_self:
            return "self_post"
        if cfg.exclude_nsfw and s.over_18:
            return "nsfw"
        if self.after is not None or self.before is not None:
            created = created_ts(s.created_utc)
            if created is None:
                if not self.from_list:
                    return "missing_created_utc"
            elif (self.after is not None and created < self.after) or (self.before is not None and created >= self.before):
                return "outside_date_window"
        if raw_url.startswith("/"):  # "/r/sub/comments/..." relative permalinks
            return "crosspost" if s.crosspost_parent else "reddit_internal"
        if cfg.score_mode == "max" and not (s.score is None and self.from_list):
            if s.score is None:
                return "score_missing"
            if s.score < cfg.min_score:
                return "low_score"
        try:
            url, key = url_forms(raw_url)
        except InvalidURL:
            return "invalid_url"
        host = key.split("/", 1)[0].split(":", 1)[0]
        media = self.blocklist.reason(host, key[len(host):].split("?", 1)[0])
        if media:
            return media
        if host_matches(host, REDDIT_DOMAINS):
            return "crosspost" if s.crosspost_parent else "reddit_internal"
        self._url, self._key, self._host = url, key, host
        return None

    def rows(self, per_url_rules: bool = True) -> list[dict]:
        """The unique URLs, after the per-URL rules; adds the merge/total drops to the summary.

        ``per_url_rules=False``: every URL, no per-URL drops, ``n_out`` left alone
        (a per-dump part, merged with the other months later)."""
        out = []
        summary = self.summary
        for key, (url, host, smax, stotal, ids, subs, created, titles) in self.by_url.items():
            n = len(ids)
            if per_url_rules and self.cfg.score_mode == "sum" and stotal is not None and stotal < self.cfg.min_score:
                summary.drop("low_score_total", n)
                continue
            if per_url_rules and n > 1:
                summary.drop("duplicate_url", n - 1)
            out.append(
                {
                    "id": url_id(key),
                    "url": url,
                    "url_norm": key,
                    "domain": host,
                    "score": smax,
                    "score_total": stotal,
                    "n_submissions": n,
                    "created_utc": _first_created(created),
                    "reddit_ids": ids,
                    "subreddits": subs,
                    "created_utcs": created,
                    "titles": titles,
                }
            )
        if per_url_rules:
            summary.n_out = len(out)
        return out


def write_links(rows: list[dict], path: str | Path) -> Path:
    """Write link rows as one zstd Parquet file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["created_utc"], r["url_norm"]))
    table = pa.Table.from_pylist(rows, schema=LINKS_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def read_links(path: str | Path) -> pa.Table:
    path = Path(path)
    if path.is_dir():
        path = path / "links.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no links file at {path}: run `webtext links` first")
    return pq.read_table(path)


def iter_links(path: str | Path, columns: tuple[str, ...] = ("id", "url", "url_norm"), batch_rows: int = 8192):
    """The links file's rows as dicts, a record batch at a time (memory: one batch)."""
    path = Path(path)
    if path.is_dir():
        path = path / "links.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no links file at {path}: run `webtext links` first")
    for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns)):
        yield from b.to_pylist()


def select_links(
    submissions: Iterable[Submission], cfg: LinksConfig, summary: RunSummary | None = None
) -> tuple[list[dict], RunSummary]:
    selector = LinkSelector(cfg, summary)
    for s in submissions:
        selector.add(s)
    rows = selector.rows()
    return rows, selector.summary


PARTS = "parts"


def dump_fingerprint(path: str | Path) -> str:
    """A content fingerprint of a dump file: its size and its first and last MiB.

    Cheap on a 40 GB month, survives copying (unlike mtime), changes when the
    file is re-downloaded whole or grown."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(size - (1 << 20))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def config_fingerprint(cfg: LinksConfig) -> str:
    d = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    if d.get("blocklist_path") is None:
        d["blocklist_sha"] = hashlib.sha256(BLOCKLIST_PATH.read_bytes()).hexdigest()
    else:
        d["blocklist_sha"] = hashlib.sha256(Path(d["blocklist_path"]).read_bytes()).hexdigest()
    return hashlib.sha256(orjson.dumps(d, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]


def part_path(out_dir: str | Path, dump: str | Path, cfg: LinksConfig, kind: str = "dump") -> Path:
    name = Path(dump).name.split(".")[0]
    if kind == "urls":  # the same file given as a dump and as a list never shares a part
        name = f"urls-{name}"
    return Path(out_dir) / PARTS / f"{name}.{dump_fingerprint(dump)}.{config_fingerprint(cfg)}.parquet"


def harvest_dump_part(dump: str | Path, out_dir: str | Path, cfg: LinksConfig, bar=None) -> dict:
    """Harvest one dump file into ``out_dir/parts/NAME.DUMPFP.CFGFP.parquet``.

    The part holds the dump's accepted submissions grouped by URL, before the
    rules that need every dump (the OpenWebText2 score sum, duplicates across
    months); its ``.json`` beside it holds the submission-level funnel. A part
    that exists is not read again: this is what makes builds incremental."""
    return _harvest_part(dump, out_dir, cfg, "dump", bar)


def harvest_url_list_part(path: str | Path, out_dir: str | Path, cfg: LinksConfig, bar=None) -> dict:
    """Harvest one URL list (pipeline/urllists.py) into ``out_dir/parts/urls-NAME...``,
    like a dump: the same rules, blocklist and dedup, merged with the dumps' parts."""
    return _harvest_part(path, out_dir, cfg, "urls", bar)


def _harvest_part(dump: str | Path, out_dir: str | Path, cfg: LinksConfig, kind: str, bar=None) -> dict:
    dump = Path(dump)
    if not dump.is_file():
        raise FileNotFoundError(f"{'URL list' if kind == 'urls' else 'dump file'} not found: {dump}")
    part = part_path(out_dir, dump, cfg, kind)
    meta_path = part.with_suffix(".json")
    if part.is_file() and meta_path.is_file():
        return orjson.loads(meta_path.read_bytes())
    selector = LinkSelector(cfg, from_list=kind == "urls")
    summary = selector.summary
    stats = DumpReadStats(str(dump)) if kind == "dump" else UrlListStats(str(dump))
    reader = iter_submissions if kind == "dump" else iter_url_list
    own_bar = bar is None
    if own_bar:
        bar = progress(total=dump.stat().st_size, unit="B", unit_scale=True, desc=f"links {dump.name}")
    for sub in reader(dump, stats, progress_bar=bar):
        selector.add(sub)
    if own_bar:
        bar.close()
    # Lines that never became a submission are counted as dropped, by reason.
    for reason, n in stats.bad.items():
        summary.n_in += n
        summary.drop(reason, n)
    notes = []
    if stats.error:
        notes.append(
            f"{dump.name}: archive truncated or corrupt ({stats.error}); read {stats.records:,} records "
            f"from {stats.compressed_bytes_read:,} of {stats.compressed_bytes_total:,} compressed bytes"
        )
    if kind == "urls" and stats.no_score:
        notes.append(f"{dump.name}: {stats.no_score:,} of {stats.records:,} URL-list entries carry no score: a plain "
                     "URL list has no karma and was filtered by whoever made it, so links.min_score is not applied "
                     "to them (score null in links.parquet)")
    if kind == "urls" and stats.no_created and (cfg.after_ts is not None or cfg.before_ts is not None):
        notes.append(f"{dump.name}: {stats.no_created:,} of {stats.records:,} URL-list entries carry no date: the "
                     "date window is not applied to them (created_utc 0)")
    rows = selector.rows(per_url_rules=False)
    accepted = sum(r["n_submissions"] for r in rows)
    write_links(rows, part)
    meta = {"dump": str(dump), "kind": kind, "part": part.name, "in": summary.n_in, "accepted": accepted,
            "dropped": dict(summary.dropped), "file": stats.to_dict(), "notes": notes, "harvested_at": time.time()}
    assert summary.n_in == accepted + summary.n_dropped, meta
    atomic_write_bytes(meta_path, orjson.dumps(meta))
    return meta


def merge_link_parts(out_dir: str | Path, cfg: LinksConfig, since: float | None = None) -> RunSummary:
    """Merge every part in ``out_dir/parts`` made under this configuration into
    ``out_dir/links.parquet``: one row per URL over all dumps harvested so far.
    Parts harvested at or after ``since`` (a time.time()) are reported as
    harvested now, the others as reused."""
    out_dir = Path(out_dir)
    cfp = config_fingerprint(cfg)
    summary = RunSummary("links", unit="submissions")
    parts = sorted((out_dir / PARTS).glob(f"*.{cfp}.parquet"))
    others = [p for p in (out_dir / PARTS).glob("*.parquet") if not p.name.endswith(f".{cfp}.parquet")]
    if others:
        summary.note(f"{len(others)} part(s) harvested under another links configuration are not used")
    by_url: dict[str, dict] = {}
    files, harvested, reused = [], [], []
    for p in parts:
        meta = orjson.loads(p.with_suffix(".json").read_bytes())
        summary.n_in += meta["in"]
        for reason, n in meta["dropped"].items():
            summary.drop(reason, n)
        for n in meta["notes"]:
            summary.note(n)
        if any("truncated" in n for n in meta["notes"]):
            summary.drop("truncated_archive", 0)
        files.append(meta["file"])
        fresh = since is not None and meta["harvested_at"] >= since
        (harvested if fresh else reused).append(meta["dump"])
        for r in pq.read_table(p).to_pylist():
            e = by_url.get(r["url_norm"])
            if e is None:
                by_url[r["url_norm"]] = r
                continue
            e["score"] = _max(e["score"], r["score"])
            e["score_total"] = _total(e["score_total"], r["score_total"])
            e["n_submissions"] += r["n_submissions"]
            for k in ("reddit_ids", "subreddits", "created_utcs", "titles"):
                e[k] = e[k] + r[k]
            if r["created_utc"] and (not e["created_utc"] or r["created_utc"] < e["created_utc"]):
                e["created_utc"], e["url"] = r["created_utc"], r["url"]
    rows = []
    for r in by_url.values():
        n = r["n_submissions"]
        if cfg.score_mode == "sum" and r["score_total"] is not None and r["score_total"] < cfg.min_score:
            summary.drop("low_score_total", n)
            continue
        if n > 1:
            summary.drop("duplicate_url", n - 1)
        rows.append(r)
    summary.n_out = len(rows)
    write_links(rows, out_dir / "links.parquet")
    summary.extra.update(files=files, harvested_now=harvested, reused_parts=reused,
                         config={k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
    summary.check()
    summary.finish().write(out_dir)
    return summary


def harvest_dump_links(dumps: Iterable[str | Path], out_dir: str | Path, cfg: LinksConfig,
                       url_lists: Iterable[str | Path] = ()) -> RunSummary:
    """``webtext links --dump ... --urls ...``: harvest each dump and URL list not
    harvested yet into ``out_dir/parts/``, then merge all parts into
    ``links.parquet`` and write ``summary.links.json``. Links accumulate: a later
    call with next month's dump reads only that dump, and ``links.parquet`` covers
    every month and every list harvested into ``out_dir``."""
    dumps = [Path(d) for d in dumps]
    url_lists = [Path(u) for u in url_lists]
    missing = [str(d) for d in dumps if not d.is_file()]
    if missing:
        raise FileNotFoundError(f"dump file(s) not found: {', '.join(missing)}")
    missing = [str(u) for u in url_lists if not u.is_file()]
    if missing:
        raise FileNotFoundError(f"URL list(s) not found: {', '.join(missing)}")
    cfg.validate()
    started = time.time()
    total = sum(d.stat().st_size for d in dumps + url_lists)
    with progress(total=total, unit="B", unit_scale=True, desc="links") as bar:
        for d in dumps:
            harvest_dump_part(d, out_dir, cfg, bar=bar)
        for u in url_lists:
            harvest_url_list_part(u, out_dir, cfg, bar=bar)
    return merge_link_parts(out_dir, cfg, since=started)
