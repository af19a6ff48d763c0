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


def source_for(archive: Archive, get=None) -> RangeSource:
    """The archive's files: a local folder, or HTTP through GET (status, headers, body)."""
    if archive.local:
        return LocalSource(archive.prefix)
    if get is None:
        raise ValueError("an HTTP cc-index archive needs a GET function")
    return HttpSource(archive.prefix, get)


class LookupStore:
    """What each crawl was asked and answered, under ``ccindex/<archive>/``."""

    def __init__(self, folder: Path):
        self.dir = folder
        (folder / "rows").mkdir(parents=True, exist_ok=True)
        (folder / "asked").mkdir(parents=True, exist_ok=True)
        for p in (folder / "rows").glob("*.parquet"):  # a killed lookup's rows, never committed
            if not (folder / "asked" / p.name).is_file():
                p.unlink()

    def asked(self, crawl: str) -> set[str]:
        out: set[str] = set()
        for p in sorted((self.dir / "asked").glob(f"{crawl}-*.parquet")):
            out.update(pq.read_table(p, columns=["link"]).column("link").to_pylist())
        return out

    def commit(self, crawl: str, rows: pa.Table, asked: list[str]) -> None:
        n = 1 + max((int(p.stem.rsplit("-", 1)[1]) for p in (self.dir / "asked").glob(f"{crawl}-*.parquet")), default=-1)
        name = f"{crawl}-{n:04d}.parquet"
        write_parquet_atomic(rows, self.dir / "rows" / name)
        write_parquet_atomic(pa.table({"link": pa.array(sorted(set(asked)), pa.string())}), self.dir / "asked" / name)

    def rows_of(self, links: set[str]) -> dict[str, list[dict]]:
        files = sorted((self.dir / "rows").glob("*.parquet"))
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
                 crawls: tuple[str, ...] | None = None) -> dict:
    """Ask every crawl of ARCHIVE (or only CRAWLS) about the LINKS it has not asked
    before; returns what it cost."""
    folder = store_dir(fetch_dir, archive)
    store = LookupStore(folder)
    source = source_for(archive, get)
    footers = FooterCache(folder / "footers")
    day = _parse_date(cfg.archive_cutoff, "fetch.archive_cutoff")
    cutoff = None if day is None else day + 86_400
    paths = dict(archive.paths)
    stats = {"crawls_asked": 0, "links_asked": 0, "rows": 0, "row_groups": 0, "row_groups_read": 0,
             "strategies": {}, "seconds": 0.0}
    t0 = time.monotonic()
    for crawl in (crawls if crawls is not None else archive.crawls):
        done = store.asked(crawl)
        todo = [lk for lk in links if lk["id"] not in done]
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
            continue
        table = pa.Table.from_pylist([{k: r.get(k) for k in ROW_SCHEMA.names} for r in rows], schema=ROW_SCHEMA)
        store.commit(crawl, table, [lk["id"] for lk in todo])
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
        by_part: dict[int, list[dict]] = {}
        for k in parts:
            p = fetch_dir / "todo" / f"part-{k:04d}.jsonl"
            if p.is_file():
                with open(p, "rb") as fh:
                    by_part[k] = [{f: r.get(f) for f in ("id", "url", "url_norm", "created_utc")}
                                  for r in map(orjson.loads, fh)]
        links = [lk for rows in by_part.values() for lk in rows]
        stats = lookup_links(fetch_dir, cfg, archive, links, None if archive.local else get(archive)) if links else {}
        failed = bool(stats.get("crawl_errors"))
        # every crawl's answers read once for the build's links, then split by partition
        captures = LookupStore(store_dir(fetch_dir, archive)).rows_of({lk["id"] for lk in links})
        stats["links_with_capture"] = sum(write_choices(fetch_dir, cfg, archive, k, rows, captures, failed)
                                          for k, rows in by_part.items())
        report[archive.name] = stats
    return report



# --- the lookup as a stage of its own (pipeline/stages.py): a task per archive and crawl -------

TODO = "todo.parquet"


def spool_lookup(rows, fetch_dir: str | Path, cfg: FetchConfig) -> list[str]:
    """The build's new links, written once for every cc-index archive
    (``ccindex/NAME/todo.parquet``); returns the parts ``NAME|CRAWL`` that have links
    the crawl was not asked about."""
    fetch_dir = Path(fetch_dir)
    archives = cc_archives(cfg)
    links = [{f: r.get(f) for f in ("id", "url", "url_norm", "created_utc")} for r in rows] if archives else []
    table = pa.Table.from_pylist(links, schema=pa.schema([("id", pa.string()), ("url", pa.string()),
                                                           ("url_norm", pa.string()), ("created_utc", pa.int64())]))
    parts = []
    for archive in archives:
        folder = store_dir(fetch_dir, archive)
        store = LookupStore(folder)
        write_parquet_atomic(table, folder / TODO)
        ids = set(table.column("id").to_pylist())
        parts += [f"{archive.name}|{crawl}" for crawl in archive.crawls if ids - store.asked(crawl)]
    return parts


def lookup_part(fetch_dir: str | Path, cfg: FetchConfig, part: str, get) -> dict:
    """One crawl of one archive asked about the spooled links (a task on any worker)."""
    name, crawl = part.split("|", 1)
    archive = next(a for a in cc_archives(cfg) if a.name == name)
    folder = store_dir(Path(fetch_dir), archive)
    links = pq.read_table(folder / TODO).to_pylist()
    stats = lookup_links(Path(fetch_dir), cfg, archive, links, None if archive.local else get(archive), (crawl,))
    return {"part": part, "links": len(links), **stats}
