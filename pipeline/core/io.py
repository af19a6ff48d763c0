"""Files the stages hand to each other: atomic writes, Parquet parts (surviving a damaged one), Arrow IPC
segments, WARC records read member by member, input globs.

A part can be damaged by a full disk, a copy cut short or a bad block: pyarrow
then raises ``ArrowInvalid``/``OSError`` deep inside a stage. Here a damaged part
becomes a ``DamagedPart`` that names the file and what is wrong with it; a stage
whose input parts are work in progress (filter, dedup) skips it, names it in its
summary and does not mark it done, so a later run takes it once it is restored or
rebuilt; the final corpus (shards, tokenize) refuses to go on without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pyarrow is imported where it is used: a fetch process never needs it
    import pyarrow as pa

from pipeline.core.errors import DamagedPart


def read_part(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DamagedPart(path, str(exc).splitlines()[0][:300]) from exc


def write_parquet_atomic(table: pa.Table, path: str | Path, compression: str = "zstd", **kwargs) -> Path:
    """Write TABLE to PATH so that PATH is either absent or whole: a temporary file
    beside it (named by pid and thread, so concurrent writers never share one), then
    a rename. Every stage writes its Parquet files through here."""
    import pyarrow.parquet as pq
    import os
    import threading

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    pq.write_table(table, tmp, compression=compression, **kwargs)
    os.replace(tmp, path)
    return path


def map_arrow(path: str | Path) -> pa.Table:
    """An Arrow IPC file, memory-mapped (the index segments of links and dedup: only the
    pages a lookup touches are read)."""
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def write_arrow_atomic(path: str | Path, schema: pa.Schema, batches, max_chunksize: int | None = None) -> Path:
    """Record BATCHES (or tables) as one Arrow IPC file at PATH: a temporary file
    beside it, fsynced, then renamed."""
    import pyarrow as pa
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
        for b in batches:
            if isinstance(b, pa.Table):
                w.write_table(b, max_chunksize=max_chunksize)
            else:
                w.write_batch(b)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """T with SCHEMA's columns in its order: types cast, missing columns as nulls
    (parts written by different versions of a stage go into one file)."""
    import pyarrow as pa

    if t.schema.equals(schema):
        return t
    cols = []
    for f in schema:
        if f.name in t.column_names:
            c = t.column(f.name)
            cols.append(c if c.type == f.type else c.cast(f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


# --- WARC files that may be damaged ---------------------------------------------------------

GZIP_MEMBER = b"\x1f\x8b\x08"


def _next_member(fh, start: int) -> int | None:
    """The offset of the next gzip member at or after START that inflates to ``WARC/``."""
    import zlib

    fh.seek(start)
    carry = b""
    base = start
    needle = GZIP_MEMBER
    while True:
        block = fh.read(1 << 20)
        if not block:
            return None
        data = carry + block
        i = data.find(needle)
        while i != -1:
            at = base - len(carry) + i
            here = fh.tell()
            fh.seek(at)
            head = fh.read(4096)
            fh.seek(here)
            try:
                if zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16).startswith(b"WARC/"):
                    return at
            except zlib.error:
                pass
            i = data.find(needle, i + 1)
        carry = data[-(len(needle) - 1):]
        base += len(block)


def _gzip_members(fh, size: int, damaged: list[dict], path: Path):
    """(offset, raw bytes) of each gzip member, found by inflating it; a member that
    does not inflate is recorded in DAMAGED and skipped to the next intact one."""
    import zlib

    pos = 0
    while pos < size:
        fh.seek(pos)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = bytearray()
        try:
            while not d.eof:
                block = fh.read(1 << 16)
                if not block:
                    raise EOFError("the file ends inside a gzip member")
                d.decompress(block)
                raw += block
            end = pos + len(raw) - len(d.unused_data)
            yield pos, bytes(raw[: end - pos])
            pos = end
        except (zlib.error, EOFError) as exc:
            nxt = _next_member(fh, pos + 1)
            damaged.append({"file": str(path), "start": pos, "end": nxt if nxt is not None else size,
                            "error": f"{type(exc).__name__}: {exc}"[:200]})
            if nxt is None:
                return
            pos = nxt


def iter_warc_records(path: str | Path, damaged: list[dict]):
    """Yield (offset, length, record) for every record of a WARC file that can be
    read, its content read to the end (headers stay readable). In a gzipped WARC
    each record is its own gzip member (record-at-a-time compression, as ours and
    Common Crawl's): a member that does not inflate or parse (a corrupt stretch, a
    cut) is appended to DAMAGED as {file, start, end, error} and reading goes on at
    the next intact member, so one bad member costs only its own record. A file
    that does not start with a WARC record is refused (InputError)."""
    import zlib

    from warcio.archiveiterator import ArchiveIterator

    from pipeline.core.errors import InputError

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4096)
        gzipped = head[:3] == GZIP_MEMBER
        try:
            first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16) if gzipped else head
        except zlib.error:
            first = b""
        if not first.startswith(b"WARC/"):
            raise InputError(f"{path}: not a WARC file (it does not start with a WARC/1.x record"
                             f"{' after gunzip' if gzipped else ''})")
        if not gzipped:  # uncompressed: each record bounded by its checked Content-Length
            from warcio.limitreader import LimitReader

            for offset, length in _plain_records(fh, size, damaged, path):
                fh.seek(offset)
                it = ArchiveIterator(LimitReader(fh, length))
                try:
                    record = next(iter(it))
                    it.read_to_end(record)
                except Exception as exc:  # warcio failing on a malformed record: that record only
                    damaged.append({"file": str(path), "start": offset, "end": offset + length,
                                    "error": f"{type(exc).__name__}: {exc}"[:200]})
                    continue
                yield offset, length, record
            return
        for offset, raw in _gzip_members(fh, size, damaged, path):
            try:
                records = list(_parse_member(raw, ArchiveIterator))
            except Exception as exc:  # warcio fails in many ways on malformed records (no target URI: AttributeError)
                damaged.append({"file": str(path), "start": offset, "end": offset + len(raw),
                                "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            for record in records[:1]:  # only a member's first record can be read again by its offset
                yield offset, len(raw), record
            if len(records) > 1:
                damaged.append({"file": str(path), "start": offset, "end": offset + len(raw),
                                "error": f"{len(records)} records in one gzip member (not record-at-a-time); "
                                         "only the first is read"})


_CONTENT_LENGTH = re.compile(rb"\r?\nContent-Length:[ \t]*(\d{1,15})[ \t]*\r?\n", re.IGNORECASE)
_RECORD_START = re.compile(rb"(?:^|\n)(WARC/1\.[01]\r?\n)")


def _next_start(fh, start: int) -> int | None:
    """The offset of the next line ``WARC/1.x`` at or after START."""
    fh.seek(start)
    carry, base = b"", start
    while True:
        block = fh.read(1 << 20)
        if not block:
            return None
        data = carry + block
        m = _RECORD_START.search(data)
        if m is not None:
            return base - len(carry) + m.start(1)
        carry = data[-16:]
        base += len(block)


def _plain_records(fh, size: int, damaged: list[dict], path: Path):
    """(offset, length) of each record of an uncompressed WARC file, its extent from its
    own Content-Length, checked: the record must end in a blank line followed by the
    next ``WARC/1.x`` line or the end of the file. A record whose length is wrong (or
    whose header block is not a WARC header) is appended to DAMAGED and reading goes on
    at the next record start: one bad record costs only itself."""
    pos = 0
    while pos < size:
        fh.seek(pos)
        head = fh.read(1 << 16)
        hend = head.find(b"\r\n\r\n")
        m = _CONTENT_LENGTH.search(head, 0, hend + 2) if hend != -1 else None
        nxt = None
        if head.startswith(b"WARC/1.") and m is not None:
            end = pos + hend + 4 + int(m.group(1))
            fh.seek(end)
            after = fh.read(4 + 8)
            gap = len(after) - len(after.lstrip(b"\r\n"))
            if end <= size and after[:gap] in (b"\r\n\r\n", b"\n\n", b"\r\n", b"") and (
                    end + gap >= size or after[gap:].startswith(b"WARC/1.")):
                nxt = end + gap
        if nxt is not None:
            yield pos, nxt - pos
            pos = nxt
            continue
        found = _next_start(fh, pos + 1)
        why = ("no WARC header here" if not head.startswith(b"WARC/1.") or hend == -1 else
               "no Content-Length" if m is None else "its Content-Length does not end the record")
        damaged.append({"file": str(path), "start": pos, "end": found if found is not None else size,
                        "error": f"unreadable record: {why}"})
        if found is None:
            return
        pos = found


def _parse_member(raw: bytes, archive_iterator):
    import io

    it = archive_iterator(io.BytesIO(raw))
    for record in it:
        it.read_to_end(record)
        yield record


def expand_globs(patterns: list[str], what: str) -> list[str]:
    """Paths and glob patterns, in order, each file once (a scheduled build reads
    ``RS_*.zst`` and so sees new months). A pattern matching nothing is a
    ConfigError naming WHAT ("dump file", "URL list")."""
    import glob

    from pipeline.core.errors import ConfigError

    out: list[str] = []
    for p in patterns:
        if any(c in p for c in "*?["):
            found = sorted(glob.glob(p))
            if not found:
                raise ConfigError(f"no {what} matches {p!r}")
            out.extend(found)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def input_label(path: str | Path) -> str:
    """RS_2017-07.zst -> RS_2017-07: an input file as a build names its work (task runs, logs)."""
    name = Path(path).name
    for ext in (".zst", ".xz", ".bz2", ".gz", ".ndjson", ".jsonl", ".json", ".plain", ".long31", ".zst_blocks",
                ".parquet", ".csv", ".tsv", ".txt"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: concurrent writers (threaded task runners) never share a temporary file
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=False, default=str).encode() + b"\n")


class LockHeld(Exception):
    """The lock file is held by another process; STAMP is what its holder wrote in it."""

    def __init__(self, path: Path, stamp: str):
        super().__init__(f"{path} is held: {stamp or '?'}")
        self.path, self.stamp = path, stamp


@contextlib.contextmanager
def exclusive_lock(path: str | Path, stamp: str) -> Iterator[None]:
    """One holder at a time: an advisory ``flock`` on the file PATH (made, with its
    folder, if missing), released by the kernel when its holder dies, so a killed run
    never leaves a stale lock. The holder writes STAMP in the file (who it is: a pid, a
    host); a second holder gets ``LockHeld`` with that STAMP at once, without waiting.
    The build's directory lock and the fetch's partition locks are this lock."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(path, os.pread(fd, 256, 0).decode(errors="replace").strip()) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode(), 0)
        yield
    finally:
        os.close(fd)
