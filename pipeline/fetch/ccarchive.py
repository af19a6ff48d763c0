"""The cc-index archive in a fetch: a build's links looked up in bulk before the crawl.

After the links are spooled into their partitions, ``lookup_partitions`` asks every
crawl of every ``kind = "cc-index"`` archive about the links it has not asked before
(``pipeline/fetch/ccindex.py`` joins them with the crawl's index files), follows
redirects within their crawl, and writes, per partition, the capture that stands for
each link (``choices/part-PPPP.parquet``). The crawl then reads a link's choice
instead of asking a CDX server, and fetches the WARC record by HTTP Range (the
``commoncrawl`` kind's record reader).

What a crawl said is kept under ``FETCH_DIR/ccindex/<archive>/``: ``rows/CRAWL-NNNN.parquet``
(the matching captures) and then ``asked/CRAWL-NNNN.parquet`` (the links asked: the
commit); a published crawl never changes, so a later build asks each crawl only about
new links, and a killed lookup redoes only the crawl it was in. Index file footers are
kept in ``footers/``.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import threading
import time
import zlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.archive_tables import Archive, _parse_date
from pipeline.core.config import FetchConfig
from pipeline.core.io import write_parquet_atomic
from pipeline.core.urls import InvalidURL, normalize_url
from pipeline.fetch.ccindex import (
    LINK_ROW_SCHEMA,
    FooterCache,
    HttpSource,
    IndexError_,
    LocalSource,
    RangeSource,
    choose_capture,
    lookup_crawl,
    redirects,
)

STORE = "ccindex"
CHOICE_SCHEMA = pa.schema([("link", pa.string()), ("outcome", pa.string()), ("crawl", pa.string()),
                           ("url", pa.string()), ("fetch_time", pa.timestamp("us", "UTC")), ("mime", pa.string()),
                           ("warc_filename", pa.string()), ("warc_record_offset", pa.int64()),
                           ("warc_record_length", pa.int64()), ("level", pa.int8()), ("hops", pa.int8())])


def cc_archives(cfg: FetchConfig) -> list[Archive]:
    return [a for a in cfg.archives() if a.kind == "cc-index"] if cfg.source != "live" else []


def store_dir(fetch_dir: Path, archive: Archive) -> Path:
    return Path(fetch_dir) / STORE / archive.name


def source_for(archive: Archive, get=None, budget_s: float = 120.0) -> RangeSource:
    """The archive's files: a local folder, an S3 bucket, or HTTP through GET (status,
    headers, body)."""
    if archive.local:
        return LocalSource(archive.prefix)
    if archive.s3:
        from pipeline.fetch.ccs3 import S3Source

        return S3Source(archive.prefix, archive.rate, archive.concurrency, budget_s)
    if get is None:
        raise ValueError("an HTTP cc-index archive needs a GET function")
    return HttpSource(archive.prefix, get)


class LookupStore:
    """What each crawl was asked and answered, under ``ccindex/<archive>/``: per commit
    (one lookup task: one crawl, one key range of links) ``rows/NAME`` then
    ``asked/NAME``, NAME unique to the task so that tasks on several workers commit
    side by side. An ``asked`` file's metadata holds its links' key range, so a task
    reads only the commits that can overlap its own."""

    def __init__(self, folder: Path):
        self.dir = folder
        (folder / "rows").mkdir(parents=True, exist_ok=True)
        (folder / "asked").mkdir(parents=True, exist_ok=True)

    def drop_uncommitted(self) -> int:
        """A killed lookup's rows with no ``asked`` beside them (call only when no lookup
        task runs: before the stage's tasks start)."""
        n = 0
        for p in (self.dir / "rows").glob("*.parquet"):
            if not (self.dir / "asked" / p.name).is_file():
                p.unlink()
                n += 1
        return n

    def _asked_files(self, crawl: str, lo: str | None = None, hi: str | None = None) -> list[Path]:
        out = []
        for p in sorted((self.dir / "asked").glob(f"{crawl}-*.parquet")):
            if lo is not None and hi is not None:
                meta = pq.read_schema(p).metadata or {}
                a, b = meta.get(b"lo"), meta.get(b"hi")
                if a is not None and b is not None and (b.decode() < lo or a.decode() > hi):
                    continue
            out.append(p)
        return out

    def asked(self, crawl: str) -> set[str]:
        out: set[str] = set()
        for p in self._asked_files(crawl):
            out.update(pq.read_table(p, columns=["link"]).column("link").to_pylist())
        return out

    def asked_among(self, crawl: str, ids: pa.Array, lo: str | None = None, hi: str | None = None) -> pa.Array:
        """A mask over IDS: which the crawl was already asked about (one commit read at a
        time; LO..HI: the ids' key range, to skip commits that cannot hold them)."""
        mask = pa.array([False] * len(ids))
        if len(ids) == 0:
            return mask
        value_set = ids.unique()
        for p in self._asked_files(crawl, lo, hi):
            col = pq.read_table(p, columns=["link"]).column("link")
            hit = col.filter(pc.is_in(col, value_set=value_set))
            if len(hit):
                mask = pc.or_(mask, pc.is_in(ids, value_set=hit.combine_chunks()))
        return mask

    def commit(self, crawl: str, rows: pa.Table, asked: list[str], key_range: tuple[str, str] | None = None) -> None:
        name = f"{crawl}-{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}.parquet"
        write_parquet_atomic(rows, self.dir / "rows" / name)
        table = pa.table({"link": pa.array(sorted(set(asked)), pa.string())})
        if key_range is not None:
            table = table.replace_schema_metadata({"lo": key_range[0], "hi": key_range[1]})
        write_parquet_atomic(table, self.dir / "asked" / name)

    def rows_of(self, links: set[str]) -> dict[str, list[dict]]:
        files = sorted(p for p in (self.dir / "rows").glob("*.parquet") if (self.dir / "asked" / p.name).is_file())
        out: dict[str, list[dict]] = {}
        if not files or not links:
            return out
        value_set = pa.array(sorted(links), pa.string())
        for f in files:
            t = pq.read_table(f)
            t = t.filter(pc.is_in(t.column("link"), value_set=value_set))
            for r in t.to_pylist():
                out.setdefault(r["link"], []).append(r)
        return out


def _location(source: RangeSource, row: dict) -> str | None:
    """The Location header of a 3xx capture's WARC record (crawls before CC-MAIN-2019-47
    have no fetch_redirect column)."""
    from warcio.archiveiterator import ArchiveIterator

    try:
        data = source.read(row["warc_filename"], int(row["warc_record_offset"]), int(row["warc_record_length"]))
        rec = next(iter(ArchiveIterator(io.BytesIO(data))), None)
        if rec is None or rec.http_headers is None:
            return None
        return rec.http_headers.get_header("Location")
    except (IndexError_, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError):
        return None


def _follow(source: RangeSource, footers: FooterCache, crawl: str, rows: list[dict], cutoff: float | None,
            max_redirects: int, files: list[str]) -> list[dict]:
    """Rows reached by following each link's 3xx captures in CRAWL to their targets (the
    link's level kept, ``hops`` counting the redirects), for links with no 200 HTML
    capture of their own in the crawl."""
    from urllib.parse import urljoin

    by_link: dict[str, list[dict]] = {}
    for r in rows:
        by_link.setdefault(r["link"], []).append(r)
    out: list[dict] = []
    frontier = {lid: rs for lid, rs in by_link.items() if choose_capture(rs, 0, cutoff)[0] is None and redirects(rs, cutoff)}
    for hop in range(1, max_redirects + 1):
        asks, via = [], {}
        for lid, rs in frontier.items():
            for r in redirects(rs, cutoff):
                target = r.get("fetch_redirect") or _location(source, r)
                if not target:
                    continue
                target = urljoin(r["url"], target)
                try:
                    norm = normalize_url(target)
                except InvalidURL:
                    continue
                key = f"{lid}\t{hop}\t{len(asks)}"
                asks.append({"id": key, "url": target, "url_norm": norm})
                via[key] = (lid, r["level"])
        if not asks:
            break
        found = lookup_crawl(source, footers, crawl, asks, files=files).rows.to_pylist()
        frontier = {}
        for r in found:
            lid, level = via[r["link"]]
            r.update(link=lid, level=max(level, r["level"]), hops=hop)
            out.append(r)
            frontier.setdefault(lid, []).append(r)
        frontier = {lid: rs for lid, rs in frontier.items()
                    if choose_capture(rs, 0, cutoff)[0] is None and redirects(rs, cutoff)}
    return out


def lookup_links(fetch_dir: Path, cfg: FetchConfig, archive: Archive, links: list[dict], get=None,
                 crawls: tuple[str, ...] | None = None, key_range: tuple[str, str] | None = None) -> dict:
    """Ask every crawl of ARCHIVE (or only CRAWLS) about the LINKS it has not asked
    before; returns what it cost. KEY_RANGE: the links' key range (a lookup task's)."""
    folder = store_dir(fetch_dir, archive)
    store = LookupStore(folder)
    source = source_for(archive, get, cfg.archive_timeout_s)
    footers = FooterCache(folder / "footers")
    day = _parse_date(cfg.archive_cutoff, "fetch.archive_cutoff")
    cutoff = None if day is None else day + 86_400
    paths = dict(archive.paths)
    stats = {"crawls_asked": 0, "links_asked": 0, "rows": 0, "row_groups": 0, "row_groups_read": 0,
             "strategies": {}, "seconds": 0.0}
    t0 = time.monotonic()
    for crawl in (crawls if crawls is not None else archive.crawls):
        ids = pa.array([lk["id"] for lk in links], pa.string())
        done = store.asked_among(crawl, ids, *(key_range or (None, None))).to_pylist()
        todo = [lk for lk, d in zip(links, done) if not d]
        if not todo:
            continue
        from pipeline.fetch.ccindex import crawl_index_files

        try:
            files = crawl_index_files(source, crawl, paths.get(crawl))
            res = lookup_crawl(source, footers, crawl, todo, files=files)
            rows = [dict(r, hops=0) for r in res.rows.to_pylist()]
            rows += _follow(source, footers, crawl, rows, cutoff, cfg.max_redirects, files)
        except (IndexError_, OSError, pa.ArrowException) as exc:
            # not committed: the next build asks this crawl again; its links are archive_error now
            stats.setdefault("crawl_errors", {})[crawl] = str(exc)[:500]
            why = index_error_reason(exc)
            stats.setdefault("error_reasons", {})[why] = stats.get("error_reasons", {}).get(why, 0) + 1
            continue
        table = pa.Table.from_pylist([{k: r.get(k) for k in ROW_SCHEMA.names} for r in rows], schema=ROW_SCHEMA)
        store.commit(crawl, table, [lk["id"] for lk in todo], key_range)
        stats["crawls_asked"] += 1
        stats["links_asked"] += len(todo)
        stats["rows"] += table.num_rows
        stats["row_groups"] += res.row_groups
        stats["row_groups_read"] += res.row_groups_read
        for k, v in res.strategies.items():
            stats["strategies"][k] = stats["strategies"].get(k, 0) + v
    stats["seconds"] = round(time.monotonic() - t0, 3)
    stats["requests"], stats["bytes"] = source.stats.requests, source.stats.bytes
    return stats


def index_error_reason(exc: BaseException) -> str:
    """Why a crawl's index could not be read, as the lookup summary counts it."""
    msg = str(exc)
    if isinstance(exc, pa.ArrowException) or "not a Parquet file" in msg or "a footer of" in msg:
        return "index_unreadable"  # not Parquet, or a damaged footer or page
    if "cc-index-table.paths.gz" in msg or "names no Parquet file" in msg or "listing" in msg:
        return "index_listing"  # no listing of the crawl's files, or an unusable one
    if "answered HTTP" in msg or "HTTP " in msg:
        return "index_http_status"
    if "short" in msg or "bytes at" in msg or "gave" in msg:
        return "index_short_read"
    if isinstance(exc, IndexError_) and ("s3://" in msg or "timed out" in msg or "refused" in msg):
        return "index_unreachable"
    return "index_io_error" if isinstance(exc, OSError) else "index_error"


ROW_SCHEMA = LINK_ROW_SCHEMA.append(pa.field("hops", pa.int8()))


def write_choices(fetch_dir: Path, cfg: FetchConfig, archive: Archive, part: int, links: list[dict],
                  rows: dict[str, list[dict]], failed: bool = False) -> int:
    """The capture that stands for each of LINKS (one partition's), from every crawl's
    answer (ROWS: the links' captures, ``LookupStore.rows_of``), into
    ``choices/part-PPPP.parquet``; returns how many links have one. FAILED:
    a crawl could not be read this build, so a link with no capture is ``archive_error``
    (transient: the next build asks that crawl again), not ``not_archived``."""
    folder = store_dir(fetch_dir, archive)
    day = _parse_date(cfg.archive_cutoff, "fetch.archive_cutoff")
    cutoff = None if day is None else day + 86_400
    out = []
    for lk in links:
        target = lk.get("created_utc") or (cutoff - 1 if cutoff else time.time())
        best, why = choose_capture(rows.get(lk["id"], []), target, cutoff)
        if best is None and failed:
            why = "archive_error"
        rec = {"link": lk["id"], "outcome": why}
        if best is not None:
            mime = best.get("content_mime_detected") or best.get("content_mime_type")
            rec.update({k: best.get(k) for k in ("crawl", "url", "fetch_time", "warc_filename", "warc_record_offset",
                                                  "warc_record_length", "level", "hops")}, mime=mime)
        out.append(rec)
    write_parquet_atomic(pa.Table.from_pylist(out, schema=CHOICE_SCHEMA), folder / "choices" / f"part-{part:04d}.parquet")
    return sum(1 for r in out if r["outcome"] == "ok")


def read_choices(fetch_dir: Path, archive: Archive, part: int | None) -> dict[str, dict]:
    folder = store_dir(fetch_dir, archive) / "choices"
    files = [folder / f"part-{part:04d}.parquet"] if part is not None else sorted(folder.glob("part-*.parquet"))
    out: dict[str, dict] = {}
    for f in files:
        if f.is_file():
            for r in pq.read_table(f).to_pylist():
                out[r["link"]] = r
    return out


def lookup_partitions(fetch_dir: str | Path, cfg: FetchConfig, parts: list[int], get) -> dict:
    """Before the crawl: every cc-index archive asked about the links spooled into PARTS
    (``todo/part-PPPP.jsonl``), and each partition's choices written. GET(archive) gives
    the HTTP GET for an archive over HTTP."""
    fetch_dir = Path(fetch_dir)
    report = {}
    for archive in cc_archives(cfg):
        LookupStore(store_dir(fetch_dir, archive)).drop_uncommitted()
        by_part: dict[int, list[dict]] = {}
        for k in parts:
            p = fetch_dir / "todo" / f"part-{k:04d}.jsonl"
            if p.is_file():
                with open(p, "rb") as fh:
                    by_part[k] = [{f: r.get(f) for f in ("id", "url", "url_norm", "created_utc")}
                                  for r in map(orjson.loads, fh)]
        links = [lk for rows in by_part.values() for lk in rows]
        stats = lookup_links(fetch_dir, cfg, archive, links, get(archive) if archive.http else None) if links else {}
        failed = bool(stats.get("crawl_errors"))
        # every crawl's answers read once for the build's links, then split by partition
        captures = LookupStore(store_dir(fetch_dir, archive)).rows_of({lk["id"] for lk in links})
        stats["links_with_capture"] = sum(write_choices(fetch_dir, cfg, archive, k, rows, captures, failed)
                                          for k, rows in by_part.items())
        report[archive.name] = stats
    return report



# --- the lookup as a stage of its own (pipeline/stages.py): a task per archive and crawl -------

TODO = "todo.parquet"
TODO_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("url_norm", pa.string()),
                         ("created_utc", pa.int64()), ("base", pa.string())])


def _base_or_none(url_norm) -> str | None:
    from pipeline.fetch.ccindex import link_base

    try:
        return link_base(url_norm)
    except Exception:  # a URL surt cannot key: no capture can be found for it
        return None


def _keyed_links(rows, batch: int = 65_536) -> pa.Table:
    """The links as a table with their index key, sorted by key (links surt cannot key
    last), then id. Built a batch at a time into Arrow columns: no Python object per
    link outlives its batch (a month of WebText is ~1M new links, a backlog tens of
    millions)."""
    fields = ("id", "url", "url_norm", "created_utc")
    tables, cols = [], {f: [] for f in (*fields, "base")}

    def flush():
        if cols["id"]:
            tables.append(pa.table(cols, schema=TODO_SCHEMA))
            for v in cols.values():
                v.clear()

    for r in rows:
        for f in fields:
            cols[f].append(r.get(f))
        cols["base"].append(_base_or_none(r.get("url_norm")))
        if len(cols["id"]) >= batch:
            flush()
    flush()
    if not tables:
        return TODO_SCHEMA.empty_table()
    # UTF-8 byte order is code point order: the same order as sorting the Python strings
    return pa.concat_tables(tables).sort_by([("base", "ascending"), ("id", "ascending")])  # nulls last: the default


def _task_slices(n_links: int, per_task: int) -> int:
    return max(1, math.ceil(n_links / per_task))


def _slice(table: pa.Table, i: int, n: int) -> pa.Table:
    k = math.ceil(table.num_rows / n) if n else 0
    return table.slice(i * k, k)


def _range_of(table: pa.Table) -> tuple[str, str] | None:
    bases = table.column("base").drop_null()
    if len(bases) == 0 or table.column("base").null_count:
        return None  # links with no key: read every commit
    return bases[0].as_py(), bases[-1].as_py()


def spool_lookup(rows, fetch_dir: str | Path, cfg: FetchConfig) -> list[str]:
    """The build's new links, keyed and sorted by key, written once for every cc-index
    archive (``ccindex/NAME/todo.parquet``); returns the lookup tasks that have links
    their crawl was not asked about: ``NAME|CRAWL`` or, past the archive's
    ``links_per_task``, ``NAME|CRAWL|I/N`` (the I-th of N key ranges of the sorted links,
    each a task of its own that commits on its own: a killed lookup redoes only the
    ranges it had not committed)."""
    fetch_dir = Path(fetch_dir)
    archives = cc_archives(cfg)
    table = _keyed_links(rows) if archives else TODO_SCHEMA.empty_table()
    parts = []
    for archive in archives:
        folder = store_dir(fetch_dir, archive)
        store = LookupStore(folder)
        store.drop_uncommitted()
        write_parquet_atomic(table, folder / TODO)
        if not table.num_rows:
            continue
        n = _task_slices(table.num_rows, archive.links_per_task)
        k = math.ceil(table.num_rows / n)
        ids = table.column("id").combine_chunks()
        for crawl in archive.crawls:
            done = store.asked_among(crawl, ids)
            parts += [f"{archive.name}|{crawl}" + (f"|{i}/{n}" if n > 1 else "")
                      for i in range(n) if not pc.all(done.slice(i * k, k)).as_py()]
    return parts


def lookup_part(fetch_dir: str | Path, cfg: FetchConfig, part: str, get) -> dict:
    """One crawl of one archive asked about the spooled links, or about one key range of
    them (a task on any worker)."""
    name, crawl, *rng = part.split("|")
    archive = next(a for a in cc_archives(cfg) if a.name == name)
    folder = store_dir(Path(fetch_dir), archive)
    table = pq.read_table(folder / TODO)
    key_range = None
    if rng:
        i, n = (int(x) for x in rng[0].split("/"))
        table = _slice(table, i, n)
        key_range = _range_of(table)
    links = table.to_pylist()
    stats = lookup_links(Path(fetch_dir), cfg, archive, links, get(archive) if archive.http else None, (crawl,),
                         key_range)
    return {"part": part, "links": len(links), **stats}
