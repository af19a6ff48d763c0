"""Plain URL lists as a link source (``webtext links --urls FILE``).

The Pushshift dump torrents were taken down in September 2026; what still
circulates besides Arctic Shift's months are the URL lists of earlier clones
(OpenWebText's deduplicated Reddit URLs, one per line) and lists people make
themselves. A list is read into the same ``Submission`` records as a dump, so
it goes through the same normalisation, blocklist and URL dedup and ends in the
same ``links.parquet`` rows (``links.harvest_url_list_part``).

Accepted shapes, whatever the compression (xz, bz2, gzip, zstd, sniffed from the
bytes like a dump):

- text, one URL per line: UTF-8 with or without a BOM, LF or CRLF; blank lines
  and lines starting with ``#`` are not entries (counted apart as ``skipped``);
- CSV (``.csv``, or a first line with a ``url`` column) and TSV (``.tsv``, or a
  tab-separated header) with a ``url`` column and optional ``score``,
  ``created``/``created_utc`` (Unix seconds or an ISO date/time, UTC when no
  offset), ``title`` and ``subreddit`` columns; column names are case-insensitive;
- Parquet (``PAR1`` magic) with the same columns.

What a list cannot say is decided here, and said in the run's notes:

- no score (no column, or an empty cell): a plain URL list carries no karma; it
  was filtered by whoever made it (OpenWebText's list is already the >= 3 karma
  links), so ``links.min_score`` is not applied to that entry and its ``score``
  is null in links.parquet (``score_total`` too; a known score of another
  submission of the URL still shows in ``score``). An entry with a score goes
  through the karma rule like a submission;
- no date: the date window is not applied to that entry and ``created_utc`` is 0,
  the links file's "unknown" (the archive fallback then aims at the cut-off day).

Every line/row read ends as an entry or a counted reason: ``bad_utf8``,
``malformed_row`` (a CSV row the csv module rejects or without the url cell),
``damaged_row_group`` (the rows of a Parquet row group that cannot be read; the
others are), ``unterminated_quote`` (a quote still open MAX_RECORD_LINES lines on: that line
alone is dropped, the rows after it are read),
``bad_field_type`` (a score/date cell that is not a number or date), ``bad_number``
(out of range), then the link rules' reasons (``invalid_url`` for a line that is
not an http(s) URL, also one with white space inside, ``media_host``, ...). A file
that cannot be a list (a CSV/Parquet without a ``url`` column, UTF-16 text, not
Parquet inside a ``.parquet`` name) is refused with an ``InputError`` naming the
file and what it has.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from pipeline.core.errors import InputError
from pipeline.sources.dumps import (
    DumpError,
    Submission,
    numbers_ok,
    open_dump,
)
from pipeline.sources.lines import DECOMPRESS_ERRORS, iter_lines

COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".zstd")
URL_COLUMN = "url"
COLUMN_ALIASES = {
    "url": ("url",),
    "score": ("score",),
    "created": ("created_utc", "created"),
    "title": ("title",),
    "subreddit": ("subreddit",),
}
_WS = re.compile(r"\s")
_BOMS_UTF16 = (b"\xff\xfe", b"\xfe\xff")


@dataclass
class UrlListStats:
    path: str
    format: str = ""
    codec: str = ""
    columns: list[str] = field(default_factory=list)
    lines: int = 0  # lines (text) or data rows (CSV/Parquet) read
    records: int = 0  # entries handed to the link rules
    skipped: int = 0  # blank lines, comments, the header: not entries
    no_score: int = 0  # entries without karma: min_score not applied
    no_created: int = 0  # entries without a date: the date window not applied
    bad: Counter = field(default_factory=Counter)
    compressed_bytes_read: int = 0
    compressed_bytes_total: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        return {
            "path": self.path, "kind": "urls", "format": self.format, "codec": self.codec, "columns": self.columns,
            "lines": self.lines, "records": self.records, "skipped": self.skipped, "no_score": self.no_score,
            "no_created": self.no_created, "bad": dict(self.bad),
            "compressed_bytes_read": self.compressed_bytes_read,
            "compressed_bytes_total": self.compressed_bytes_total, "error": self.error,
        }


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for suf in COMPRESSED_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _find_columns(names: list[str], path: Path) -> dict[str, int]:
    """Positions of the known columns (case-insensitive); InputError without a url column."""
    lowered = [str(n).strip().lower() for n in names]
    found: dict[str, int] = {}
    for key, aliases in COLUMN_ALIASES.items():
        for a in aliases:
            if a in lowered:
                found[key] = lowered.index(a)
                break
    if "url" not in found:
        shown = ", ".join(repr(str(n)) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        raise InputError(f"{path}: a URL list table needs a 'url' column; its columns are: {shown or '(none)'}")
    return found


def parse_score(value) -> int | None:
    """None for no score; ValueError/OverflowError for a cell that is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a score")
    if isinstance(value, int):
        return value
    return int(float(value))  # "12", "12.0", 12.0; nan/inf raise


def parse_created(value) -> float | None:
    """Unix seconds from seconds (int, float, numeric text), an ISO date or date-time
    (UTC when it has no offset), or a datetime/date; None for no date; ValueError
    for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)  # ValueError when not a date
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _entry(stats: UrlListStats, url, score=None, created=None, title=None, subreddit=None) -> Submission | None:
    """A Submission for one entry, or None after counting why it is not one."""
    if not isinstance(url, str):
        url = None if url is None else str(url)
    if url is not None:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in url):  # undecodable bytes (surrogateescape)
            stats.bad["bad_utf8"] += 1
            return None
        url = url.strip()
    try:
        sc = parse_score(score)
        cr = parse_created(created)
    except (TypeError, ValueError, OverflowError):
        stats.bad["bad_field_type"] += 1
        return None
    if cr is not None and not math.isfinite(cr):
        stats.bad["bad_number"] += 1
        return None
    sub = Submission(url=url or None, score=sc, created_utc=cr,
                     title=None if title is None else str(title), subreddit=None if subreddit is None else str(subreddit))
    if not numbers_ok(sub):
        stats.bad["bad_number"] += 1
        return None
    if url and _WS.search(url):
        # A URL has no white space in it: "url score" lines, two URLs on a line, prose.
        # (urls.url_forms would quote a space in the path; a list line is stricter.)
        stats.bad["invalid_url"] += 1
        return None
    stats.records += 1
    stats.no_score += sc is None
    stats.no_created += cr is None
    return sub


def _iter_text(stream: BinaryIO, raw: BinaryIO, stats: UrlListStats, progress_bar) -> Iterator[Submission]:
    first = True
    last = [0]

    def on_chunk(pos: int) -> None:
        if progress_bar is not None and pos > last[0]:
            progress_bar.update(pos - last[0])
            last[0] = pos

    for line in iter_lines(stream, stats, raw, on_chunk):
        if first:
            first = False
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            stats.bad["bad_utf8"] += 1
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            stats.skipped += 1
            continue
        sub = _entry(stats, text)
        if sub is not None:
            yield sub


MAX_RECORD_LINES = 32  # a quoted cell may span lines (a title with a line break), at most this many
MAX_RECORD_CHARS = 1 << 16


def _csv_records(text, stats: UrlListStats) -> Iterator[str]:
    """Logical CSV records from physical lines: a record whose quotes are still open at
    the end of a line takes the next line, up to MAX_RECORD_LINES / MAX_RECORD_CHARS.
    A quote that never closes within that is one malformed row (its first line,
    counted as ``unterminated_quote``), and reading goes on at the line after it: one
    stray quote never swallows the rows below it."""
    pending: list[str] = []  # lines read but not yet a record
    lines = iter(text)
    while True:
        if pending:
            line = pending.pop(0)
        else:
            line = next(lines, None)
            if line is None:
                return
        if line.count('"') % 2 == 0:
            yield line
            continue
        record, used = [line], 1
        quotes = line.count('"')
        size = len(line)
        while quotes % 2 and used <= MAX_RECORD_LINES and size <= MAX_RECORD_CHARS:
            nxt = pending.pop(0) if pending else next(lines, None)
            if nxt is None:
                break
            record.append(nxt)
            used += 1
            quotes += nxt.count('"')
            size += len(nxt)
        if quotes % 2 == 0:
            yield "".join(record)
            continue
        stats.lines += 1
        stats.bad["unterminated_quote"] += 1
        pending = record[1:] + pending


def _iter_csv(stream: BinaryIO, raw: BinaryIO, stats: UrlListStats, delimiter: str, path: Path) -> Iterator[Submission]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    records = _csv_records(text, stats)

    def parse(record: str) -> list[str]:
        if '"' not in record:  # the common case: no quoting, a plain split
            return record.rstrip("\r\n").split(delimiter)
        return next(csv.reader(io.StringIO(record), delimiter=delimiter), [])

    header = None
    while header is None:
        try:
            record = next(records)
        except StopIteration:
            raise InputError(f"{path}: an empty table (no header line with a 'url' column)") from None
        try:
            row = parse(record)
        except csv.Error:
            row = []
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#"):
            header = row
        stats.skipped += 1
    cols = _find_columns(header, path)
    stats.columns = [h.strip() for h in header]
    iu = cols["url"]
    get = {k: cols.get(k) for k in ("score", "created", "title", "subreddit")}
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except DECOMPRESS_ERRORS as exc:  # a truncated or corrupt archive
            stats.error = f"{type(exc).__name__}: {exc}"
            break
        try:
            row = parse(record)
        except csv.Error:
            stats.lines += 1
            stats.bad["malformed_row"] += 1
            continue
        if not row or not any(c.strip() for c in row):
            stats.skipped += 1
            continue
        stats.lines += 1
        if len(row) <= iu:
            stats.bad["malformed_row"] += 1
            continue
        vals = {k: (row[i] if i is not None and i < len(row) else None) for k, i in get.items()}
        sub = _entry(stats, row[iu], vals["score"], vals["created"], vals["title"], vals["subreddit"])
        if sub is not None:
            yield sub
    try:
        stats.compressed_bytes_read = raw.tell()
    except (OSError, ValueError):
        pass


def _iter_parquet(path: Path, stats: UrlListStats) -> Iterator[Submission]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged footer
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = list(pf.schema_arrow.names)
    cols = _find_columns(names, path)
    stats.columns = names
    wanted = {k: names[i] for k, i in cols.items()}
    import pyarrow as pa

    columns = list(dict.fromkeys(wanted.values()))
    for rg in range(pf.num_row_groups):  # one damaged row group costs its own rows only
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=8192, row_groups=[rg], columns=columns):
                data = {k: batch.column(batch.schema.get_field_index(n)).to_pylist() for k, n in wanted.items()}
                for i in range(batch.num_rows):
                    stats.lines += 1
                    done += 1
                    sub = _entry(stats, data["url"][i], *(data[k][i] if k in data else None
                                                           for k in ("score", "created", "title", "subreddit")))
                    if sub is not None:
                        yield sub
        except (OSError, pa.ArrowException) as exc:
            lost = max(0, pf.metadata.row_group(rg).num_rows - done)
            stats.lines += lost
            stats.bad["damaged_row_group"] += lost
            stats.error = f"row group {rg}: {type(exc).__name__}: {str(exc)[:200]}"
    stats.compressed_bytes_read = stats.compressed_bytes_total


def expand_url_lists(patterns: list[str]) -> list[str]:
    """Paths and glob patterns, like ``--dump``."""
    from pipeline.core.io import expand_globs

    return expand_globs(patterns, "URL list")


def list_format(path: Path, head: bytes) -> str:
    """'parquet', 'csv', 'tsv' or 'text', from the decompressed head and the name."""
    base = _base_name(path)
    if head.startswith(b"PAR1"):
        return "parquet"
    if base.endswith(".parquet"):
        raise InputError(f"{path}: named .parquet but not a Parquet file (no PAR1 magic)")
    if head[257:262] == b"ustar" or head.startswith(b"PK\x03\x04"):
        # jcpeterson/openwebtext's pre-filtered URL lists come as an archive of monthly .txt files
        kind = "tar" if head[257:262] == b"ustar" else "zip"
        raise InputError(f"{path}: a {kind} archive, not a URL list; unpack it and give its files, "
                         "e.g. --urls 'urls/*.txt'")
    if head.startswith(_BOMS_UTF16):
        raise InputError(f"{path}: UTF-16 text; save the list as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    if base.endswith(".csv"):
        return "csv"
    if base.endswith(".tsv"):
        return "tsv"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip().strip('"').lower() for c in re.split(r"[,\t]", line)]
        if "url" in cells:
            return "tsv" if "\t" in line and "," not in line else "csv"
        break
    return "text"


def iter_url_list(path: str | Path, stats: UrlListStats | None = None, progress_bar=None) -> Iterator[Submission]:
    """The entries of one URL list as Submissions (url, and score/created/title/
    subreddit where the list has them). Bad lines are counted in ``stats.bad``."""
    path = Path(path)
    stats = stats if stats is not None else UrlListStats(str(path))
    try:
        stream, raw, codec = open_dump(path)
    except DumpError as exc:
        raise FileNotFoundError(f"URL list not found: {path}") from exc
    stats.codec = codec
    stats.compressed_bytes_total = os.path.getsize(path)
    try:
        try:
            head = stream.read1(64 << 10) if hasattr(stream, "read1") else stream.read(64 << 10)
        except DECOMPRESS_ERRORS as exc:
            raise InputError(f"{path}: cannot be read as a {codec} file ({type(exc).__name__}: {exc})") from exc
        fmt = list_format(path, head)
        stats.format = fmt
        if fmt == "parquet":
            if codec != "plain":
                raise InputError(f"{path}: a compressed Parquet file; Parquet compresses its own columns, "
                                 "give the .parquet file itself")
            yield from _iter_parquet(path, stats)
        elif fmt == "text":
            yield from _iter_text(_Rewound(head, stream), raw, stats, progress_bar)
        else:
            body = _Rewound(head, stream)
            yield from _iter_csv(io.BufferedReader(body), raw, stats, "," if fmt == "csv" else "\t", path)
        if progress_bar is not None and fmt != "text":
            progress_bar.update(stats.compressed_bytes_total)
    finally:
        stream.close()
        raw.close()


class _Rewound(io.RawIOBase):
    """The decompressed stream with its already-read head put back in front."""

    def __init__(self, head: bytes, stream):
        self.head = head
        self.stream = stream
        self._read = getattr(stream, "read1", stream.read)

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        if self.head:
            n = len(self.head) if size is None or size < 0 else size
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self._read(size if size and size > 0 else 1 << 20)

    read = read1

    def readinto(self, b) -> int:
        data = self.read1(len(b))
        b[: len(data)] = data
        return len(data)
