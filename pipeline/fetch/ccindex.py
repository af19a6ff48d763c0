"""Common Crawl's columnar URL index, joined in bulk: which capture of each link a crawl holds.

Common Crawl publishes, for every crawl from CC-MAIN-2013-20 on, a table of every
capture ("cc-index-table": Parquet, gzip; Common Crawl's blog, "Index to WARC files and
URLs in columnar format", 2018-03) under
``cc-index/table/cc-main/warc/crawl=CRAWL/subset=SUBSET/part-NNNNN-*.c000.gz.parquet``,
listed by ``crawl-data/CRAWL/cc-index-table.paths.gz``. ``subset=warc`` holds the
successful captures, ``subset=crawldiagnostics`` (from CC-MAIN-2016-36) the
redirects, 404s and other non-200 ones. Each file is sorted by ``url_surtkey`` (the
``surt`` package's key of the URL: scheme and ``www`` dropped, host reversed, path
and query lower-cased, query arguments sorted), so a file covers one key range and
each row group's statistics bound its keys. Columns appear over time
(``fetch_redirect`` and ``content_truncated`` from CC-MAIN-2019-47, charset and
languages from CC-MAIN-2018-39): only the columns a file has are read.

A lookup asks one index file about many links at once (``lookup_file``):

1. the file's footer is read once (its last 8 bytes, then exactly the footer; kept in
   ``FooterCache``);
2. the row groups that can hold one of the links' keys are chosen from the footer's
   ``url_surtkey`` min/max (a link's key ``k`` matches the rows keyed ``k`` or
   ``k?...``: the same page with any query, so a capture with ``utm_`` arguments is
   found too);
3. "seek" (few row groups needed, as in a monthly build): the key column of those
   row groups is read, and the other columns only of the row groups with a match;
   "scan" (more than ``SCAN_SHARE`` of the row groups needed, as when WebText's ~45M
   links meet a crawl's ~2.5 billion rows): the needed columns of every such row
   group in one read each. Both read only the needed columns, by HTTP Range;
4. each matching row is tied to the links it belongs to at a level: 0 the exact URL,
   1 the same URL after webtext's normalisation (scheme, ``www``, default port,
   fragment, tracking arguments, argument order), 2 the same but for letter case.

``choose_capture`` then picks, over every crawl asked, the capture that stands for
the link: status 200, HTML (``content_mime_detected`` where filled, else
``content_mime_type``), at or before the cut-off, lowest level first, then closest
to the link's first submission, ties to the earlier. Redirects (3xx) are followed by
the caller within their crawl (``fetch_redirect`` where the crawl has it, else the
``Location`` of the WARC record).

Reading is by byte ranges through a ``RangeSource``: a local folder (a mirror), or
HTTP through the fetch stage's archive client (the public-address check, the
archive's rate and concurrency, back-off on 429/503). Nothing read is executed:
Parquet and gzip only.
"""

from __future__ import annotations

import bisect
import gzip
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.urls import InvalidURL, normalize_url

# The columns a lookup needs (the rest of the table's ~30 are never read).
KEY = "url_surtkey"
CAPTURE_COLUMNS = ("url", "fetch_time", "fetch_status", "content_mime_type", "content_mime_detected",
                   "warc_filename", "warc_record_offset", "warc_record_length")
OPTIONAL_COLUMNS = ("fetch_redirect",)  # from CC-MAIN-2019-47
SUBSETS = ("warc", "crawldiagnostics")
SCAN_SHARE = 0.5  # above this share of a file's row groups needed, scan them (one read each)
HTML_MIMES = ("text/html", "application/xhtml+xml")


class IndexError_(RuntimeError):
    """An index file or listing that cannot be read (the message names it)."""


# --- keys -------------------------------------------------------------------------------


def surt_key(url: str) -> str:
    """Common Crawl's ``url_surtkey`` of URL (``surt.surt`` with its defaults)."""
    import surt

    return surt.surt(url)


def base_of(key: str) -> str:
    """A key without its query: the rows a link can match are keyed ``base`` or ``base?...``."""
    return key.split("?", 1)[0]


def link_base(url_norm: str) -> str:
    return base_of(surt_key("http://" + url_norm))


def match_level(captured_url: str, link_url: str, link_norm: str) -> int | None:
    """0 the exact URL, 1 the same after normalisation, 2 the same but for case; None: another page."""
    if captured_url == link_url:
        return 0
    try:
        n = normalize_url(captured_url)
    except InvalidURL:
        return None
    if n == link_norm:
        return 1
    if n.lower() == link_norm.lower():
        return 2
    return None


# --- reading byte ranges ------------------------------------------------------------------


@dataclass
class SourceStats:
    """Requests and bytes read; ``tail_bytes`` of them the files' ends (footers, read
    once a file and kept), the rest row groups and records."""

    requests: int = 0
    bytes: int = 0
    tail_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int, tail: bool = False) -> None:
        with self.lock:
            self.requests += 1
            self.bytes += n
            if tail:
                self.tail_bytes += n


class RangeSource:
    """Byte ranges of the files under a base (a local folder or an HTTP(S) prefix)."""

    def __init__(self):
        self.stats = SourceStats()

    def tail(self, path: str, n: int) -> tuple[int, bytes]:
        """(the file's size, its last N bytes or all of it)."""
        raise NotImplementedError

    def read(self, path: str, start: int, length: int, tail: bool = False) -> bytes:
        raise NotImplementedError

    def read_all(self, path: str, limit: int) -> bytes:
        raise NotImplementedError


class LocalSource(RangeSource):
    def __init__(self, root: str | Path):
        super().__init__()
        self.root = Path(root)

    def _path(self, path: str) -> Path:
        p = (self.root / path).resolve()
        if self.root.resolve() not in p.parents:
            raise IndexError_(f"{path!r} is outside the index folder {self.root}")
        return p

    def tail(self, path: str, n: int) -> tuple[int, bytes]:
        p = self._path(path)
        if not p.is_file():
            raise IndexError_(f"no index file {p}")
        size = p.stat().st_size
        with open(p, "rb") as fh:
            fh.seek(max(0, size - n))
            data = fh.read()
        self.stats.add(len(data), tail=True)
        return size, data

    def read(self, path: str, start: int, length: int, tail: bool = False) -> bytes:
        with open(self._path(path), "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        if len(data) != length:
            raise IndexError_(f"{path}: {length:,} bytes at {start:,} asked, {len(data):,} read (a short file)")
        self.stats.add(len(data), tail)
        return data

    def read_all(self, path: str, limit: int) -> bytes:
        p = self._path(path)
        if not p.is_file():
            raise FileNotFoundError(p)
        if p.stat().st_size > limit:
            raise IndexError_(f"{p} is larger than {limit:,} bytes")
        data = p.read_bytes()
        self.stats.add(len(data))
        return data


class HttpSource(RangeSource):
    """Ranges over HTTP: GET(url, headers) -> (status, headers dict, body) does the
    request (the fetch stage passes its archive client's polite, checked GET)."""

    def __init__(self, base_url: str, get: Callable[[str, dict, int], tuple[int, dict, bytes]]):
        super().__init__()
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.get = get

    def _url(self, path: str) -> str:
        from urllib.parse import quote

        if path.startswith("/") or ".." in path.split("/") or "://" in path:
            raise IndexError_(f"index path {path[:200]!r} refused (must be relative)")
        return self.base + quote(path, safe="/-_.~=")

    def tail(self, path: str, n: int) -> tuple[int, bytes]:
        status, headers, body = self.get(self._url(path), {"Range": f"bytes=-{n}", "Accept-Encoding": "identity"}, n)
        self.stats.add(len(body), tail=True)
        if status == 200:  # a server that ignores Range: the whole file came (small files only)
            return len(body), body
        total = headers.get("content-range", "").rsplit("/", 1)[-1]
        if status != 206 or not total.isdigit():
            raise IndexError_(f"{self._url(path)}: the end of the file answered HTTP {status} "
                              f"(Content-Range {headers.get('content-range')!r})")
        return int(total), body

    def read(self, path: str, start: int, length: int, tail: bool = False) -> bytes:
        url = self._url(path)
        status, _, body = self.get(url, {"Range": f"bytes={start}-{start + length - 1}", "Accept-Encoding": "identity"},
                                   length)
        self.stats.add(len(body), tail)
        if status != 206 or len(body) != length:
            raise IndexError_(f"{url}: bytes {start:,}+{length:,} answered HTTP {status} with {len(body):,} bytes")
        return body

    def read_all(self, path: str, limit: int) -> bytes:
        url = self._url(path)
        status, _, body = self.get(url, {"Accept-Encoding": "identity"}, limit)
        self.stats.add(len(body))
        if status == 404:
            raise FileNotFoundError(url)
        if status != 200:
            raise IndexError_(f"{url} answered HTTP {status}")
        return body


class FooterCache:
    """Each index file's size and last bytes (its footer), read once and kept on disk:
    a published crawl never changes."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder else None
        self.mem: dict[str, tuple[int, bytes]] = {}
        self.lock = threading.Lock()

    def _file(self, path: str) -> Path:
        return self.folder / (path.replace("/", "__") + ".tail")

    def get(self, source: RangeSource, path: str) -> tuple[int, bytes]:
        with self.lock:
            if path in self.mem:
                return self.mem[path]
        f = self._file(path) if self.folder else None
        if f is not None and f.is_file():
            raw = f.read_bytes()
            size, tail = int.from_bytes(raw[:8], "little"), raw[8:]
        else:  # two reads: the last 8 bytes (the footer's length, PAR1), then exactly the footer
            size, tail = source.tail(path, 8)
            if len(tail) < 8 or tail[-4:] != b"PAR1":
                raise IndexError_(f"{path}: not a Parquet file (no PAR1 at its end)")
            need = int.from_bytes(tail[-8:-4], "little")
            if need + 8 > size:
                raise IndexError_(f"{path}: a footer of {need:,} bytes in a file of {size:,}")
            tail = source.read(path, size - 8 - need, need, tail=True) + tail
            if f is not None:
                from pipeline.core.io import atomic_write_bytes

                atomic_write_bytes(f, size.to_bytes(8, "little") + tail)
        with self.lock:
            self.mem[path] = (size, tail)
        return size, tail

    def open(self, source: RangeSource, path: str) -> pq.ParquetFile:
        """PATH as a ParquetFile whose footer comes from here (pyarrow reads no footer
        of its own: it would read the file's last 64 KiB again)."""
        size, tail = self.get(source, path)
        md = pq.read_metadata(pa.BufferReader(b"PAR1" + tail))
        return pq.ParquetFile(RemoteFile(source, path, size, tail), metadata=md, pre_buffer=True)


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over a RangeSource whose tail is known (pyarrow reads
    the footer from the tail, and column chunks by range)."""

    def __init__(self, source: RangeSource, path: str, size: int, tail: bytes):
        self.source, self.path, self.size, self.tail_bytes = source, path, size, tail
        self.tail_start = size - len(tail)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        if n == 0:
            return b""
        if self.pos >= self.tail_start:
            a = self.pos - self.tail_start
            data = self.tail_bytes[a:a + n]
        else:
            data = self.source.read(self.path, self.pos, n)
        self.pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


# --- which files ----------------------------------------------------------------------------


def crawl_index_files(source: RangeSource, crawl: str, paths_file: str | Path | None = None) -> list[str]:
    """The index files of CRAWL (subsets warc and crawldiagnostics), from its
    ``cc-index-table.paths.gz`` (or PATHS_FILE: that listing, gzip or plain)."""
    if paths_file is not None:
        raw = Path(paths_file).read_bytes()
    else:
        listing = f"crawl-data/{crawl}/cc-index-table.paths.gz"
        try:
            raw = source.read_all(listing, 64 << 20)
        except FileNotFoundError:
            lister = getattr(source, "list_index_files", None)  # an S3 bucket can be listed; HTTPS cannot
            raw = "\n".join(lister(crawl)).encode() if lister is not None else b""
            if raw:
                return _index_paths(crawl, raw)
            raise IndexError_(f"{crawl}: no {listing} (Common Crawl has not published one for every crawl before "
                              f"2016-40): give the crawl's list of index files in the archive's paths table "
                              f"(paths = {{ \"{crawl}\" = \"FILE\" }}, one path a line as listed under "
                              "cc-index/table/cc-main/warc/), or read the bucket over s3://, which can be listed") from None
    return _index_paths(crawl, raw)


def _index_paths(crawl: str, raw: bytes) -> list[str]:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IndexError_(f"{crawl}: the index listing is not a readable gzip file ({exc})") from None
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if f"crawl={crawl}/" in line and any(f"/subset={s}/" in line for s in SUBSETS) and line.endswith(".parquet"):
            out.append(line)
    if not out:
        raise IndexError_(f"{crawl}: the index listing names no Parquet file of subset warc or crawldiagnostics")
    return sorted(out)


def subset_of(path: str) -> str:
    return next((s for s in SUBSETS if f"/subset={s}/" in path), "warc")


# --- one file ---------------------------------------------------------------------------------


@dataclass
class FileLookup:
    """What one index file gave: the matching rows, and what reading it cost."""

    rows: pa.Table
    row_groups: int
    row_groups_read: int
    strategy: str  # "seek" | "scan" | "skip"


def _key_stats(pf: pq.ParquetFile) -> list[tuple[str | None, str | None]]:
    md = pf.metadata
    col = pf.schema_arrow.get_field_index(KEY)
    out = []
    for i in range(md.num_row_groups):
        st = md.row_group(i).column(col).statistics
        if st is not None and st.has_min_max:
            lo, hi = st.min, st.max
            out.append((lo.decode() if isinstance(lo, bytes) else lo, hi.decode() if isinstance(hi, bytes) else hi))
        else:
            out.append((None, None))  # no statistics: the row group must be read
    return out


def key_range(source: RangeSource, footers: FooterCache, path: str) -> tuple[str | None, str | None]:
    """The smallest and largest key of an index file, from its footer."""
    stats = _key_stats(footers.open(source, path))
    los = [s[0] for s in stats if s[0] is not None]
    his = [s[1] for s in stats if s[1] is not None]
    if len(los) < len(stats):
        return None, None
    return (min(los), max(his)) if los else (None, None)


def lookup_file(source: RangeSource, footers: FooterCache, path: str, bases: list[str],
                scan_share: float = SCAN_SHARE) -> FileLookup:
    """The rows of index file PATH whose key (without its query) is one of BASES (sorted,
    unique), with the columns ``url_surtkey`` + ``CAPTURE_COLUMNS`` (+ ``fetch_redirect``
    where the file has it) and ``base``."""
    pf = footers.open(source, path)
    names = set(pf.schema_arrow.names)
    missing = [c for c in (KEY, *CAPTURE_COLUMNS) if c not in names]
    if missing:
        raise IndexError_(f"{path}: not a cc-index-table file (no column {', '.join(missing)})")
    cols = [KEY, *CAPTURE_COLUMNS, *[c for c in OPTIONAL_COLUMNS if c in names]]
    stats = _key_stats(pf)
    needed = []
    for i, (lo, hi) in enumerate(stats):
        if lo is None:
            needed.append(i)
            continue
        a = bisect.bisect_left(bases, base_of(lo))
        if a < len(bases) and bases[a] <= hi:
            needed.append(i)
    if not needed:
        return FileLookup(_empty(cols), len(stats), 0, "skip")
    strategy = "scan" if len(needed) > scan_share * len(stats) else "seek"
    value_set = pa.array(bases, pa.string())
    parts = []
    for i in needed:
        if strategy == "scan":
            t = pf.read_row_group(i, columns=cols)
            keys = t.column(KEY)
        else:
            keys = pf.read_row_group(i, columns=[KEY]).column(KEY)
        base = pc.list_element(pc.split_pattern(keys, "?", max_splits=1), 0)
        mask = pc.is_in(base, value_set=value_set)
        if not pc.any(mask).as_py():
            continue
        if strategy == "seek":
            t = pf.read_row_group(i, columns=cols)
        t = t.filter(mask).append_column("base", base.filter(mask))
        parts.append(t)
    rows = pa.concat_tables(_conform(parts, cols)) if parts else _empty(cols)
    return FileLookup(rows, len(stats), len(needed), strategy)


def _schema(cols: list[str]) -> pa.Schema:
    types = {KEY: pa.string(), "url": pa.string(), "fetch_time": pa.timestamp("us", "UTC"), "fetch_status": pa.int32(),
             "content_mime_type": pa.string(), "content_mime_detected": pa.string(), "warc_filename": pa.string(),
             "warc_record_offset": pa.int64(), "warc_record_length": pa.int64(), "fetch_redirect": pa.string()}
    return pa.schema([(c, types[c]) for c in (KEY, *CAPTURE_COLUMNS, *OPTIONAL_COLUMNS)] + [("base", pa.string())])


def _empty(cols) -> pa.Table:
    return _schema(cols).empty_table()


def _conform(parts: list[pa.Table], cols) -> list[pa.Table]:
    """Every crawl's rows in one schema: timestamps in microseconds UTC (older files
    store INT96 nanoseconds), offsets as int64, fetch_redirect null where absent."""
    schema = _schema(cols)
    out = []
    for t in parts:
        arrays = []
        for f in schema:
            if f.name in t.column_names:
                c = t.column(f.name)
                if pa.types.is_timestamp(c.type) and c.type.tz is None:
                    c = pc.assume_timezone(c, "UTC")
                arrays.append(c.cast(f.type))
            else:
                arrays.append(pa.nulls(t.num_rows, f.type))
        out.append(pa.Table.from_arrays(arrays, schema=schema))
    return out


# --- many links against one crawl ----------------------------------------------------------


@dataclass
class CrawlLookup:
    crawl: str
    rows: pa.Table  # one row per (link, matching capture): link, level, crawl, subset + capture columns
    files: int = 0
    files_read: int = 0
    row_groups: int = 0
    row_groups_read: int = 0
    strategies: dict = field(default_factory=dict)


def lookup_crawl(source: RangeSource, footers: FooterCache, crawl: str, links: list[dict],
                 paths_file: str | Path | None = None, files: list[str] | None = None) -> CrawlLookup:
    """Every capture in CRAWL of LINKS (dicts with ``id``, ``url``, ``url_norm``): the
    links' keys sorted, each index file asked only about the keys in its range."""
    files = files if files is not None else crawl_index_files(source, crawl, paths_file)
    by_base: dict[str, list[dict]] = {}
    for link in links:
        try:
            base = link.get("base") or link_base(link["url_norm"])
            by_base.setdefault(base, []).append(link)
        except Exception:  # a URL surt cannot key: no capture can be found for it
            continue
    bases = sorted(by_base)
    res = CrawlLookup(crawl, _link_rows([]), files=len(files))
    out = []
    for path in files:
        lo, hi = key_range(source, footers, path)
        if lo is not None:
            a, b = bisect.bisect_left(bases, base_of(lo)), bisect.bisect_right(bases, hi)
            sub = bases[a:b]
        else:
            sub = bases
        if not sub:
            res.strategies["skip"] = res.strategies.get("skip", 0) + 1
            continue
        fl = lookup_file(source, footers, path, sub)
        res.files_read += 1
        res.row_groups += fl.row_groups
        res.row_groups_read += fl.row_groups_read
        res.strategies[fl.strategy] = res.strategies.get(fl.strategy, 0) + 1
        subset = subset_of(path)
        for r in fl.rows.to_pylist():
            for link in by_base.get(r["base"], ()):
                level = match_level(r["url"], link["url"], link["url_norm"])
                if level is not None:
                    out.append({"link": link["id"], "level": level, "crawl": crawl, "subset": subset, **r})
    res.rows = _link_rows(out)
    return res


LINK_ROW_SCHEMA = pa.schema([("link", pa.string()), ("level", pa.int8()), ("crawl", pa.string()),
                             ("subset", pa.string())] + [f for f in _schema([]) if f.name != "base"])


def _link_rows(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in LINK_ROW_SCHEMA.names} for r in rows], schema=LINK_ROW_SCHEMA)


# --- the capture that stands for a link -----------------------------------------------------


def is_html(row: dict) -> bool:
    mime = (row.get("content_mime_detected") or row.get("content_mime_type") or "").split(";", 1)[0].strip().lower()
    return mime in HTML_MIMES


def epoch(row: dict) -> float:
    t = row["fetch_time"]
    return t.timestamp() if hasattr(t, "timestamp") else float(t)


def choose_capture(rows: Iterable[dict], target: float, cutoff: float | None) -> tuple[dict | None, str]:
    """The 200 HTML capture at or before the cut-off, lowest level (exact URL first),
    then closest to TARGET (the link's first submission), ties to the earlier; or None
    and why not (``not_archived``, ``archive_no_html_capture``, ``archive_after_cutoff``)."""
    rows = list(rows)
    if not rows:
        return None, "not_archived"
    ok = [r for r in rows if r["fetch_status"] == 200 and is_html(r)]
    if not ok:
        return None, "archive_no_html_capture"
    inside = [r for r in ok if cutoff is None or epoch(r) < cutoff]
    if not inside:
        return None, "archive_after_cutoff"
    return min(inside, key=lambda r: (r["level"], abs(epoch(r) - target), epoch(r))), "ok"


def redirects(rows: Iterable[dict], cutoff: float | None) -> list[dict]:
    """The 3xx captures at or before the cut-off, to follow within their crawl."""
    return [r for r in rows if 300 <= (r["fetch_status"] or 0) < 400 and (cutoff is None or epoch(r) < cutoff)]
