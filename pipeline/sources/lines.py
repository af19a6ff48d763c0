"""Lines of a decompressed stream in constant memory: regions of whole lines read into one reused buffer.

``iter_regions`` is what the dump reader decodes from: each region is a view of one
buffer from the start of a line to just after a newline, so a chunk of NDJSON goes to
msgspec's ``decode_lines`` as it came out of the decompressor, without a copy per line
(``bytes.split`` copied every byte once and made an object per line: ~25% of reading
a zstd month, bench/bench_dumps.py). ``iter_line_batches`` and ``iter_lines`` give the
same lines as lists of bytes (URL lists, and the dump reader's reference path).

The counts are the callers' ``stats`` (``lines``, ``bad``, ``error``,
``compressed_bytes_read``): a line longer than MAX_LINE is counted as
``line_too_long`` and skipped without being held whole; on a decompression error
(a truncated or corrupt archive) reading stops with the reason in ``stats.error``,
every line before the damage given, and the unterminated last line counted as
``truncated_record``."""

from __future__ import annotations

import lzma
from typing import BinaryIO, Iterator

import zstandard

CHUNK = 1 << 20  # decompressed bytes asked for at a time (a zstd step gives ~128 KiB)
MAX_LINE = 64 << 20  # a "line" longer than this is not a record: counted and skipped

DECOMPRESS_ERRORS = (EOFError, lzma.LZMAError, OSError, zstandard.ZstdError, ValueError)


def _reader(stream: BinaryIO):
    """A ``readinto1``-like function of STREAM: fills a writable view with what one
    decompression step gives (so a truncated archive still yields every line before
    the damage), 0 at the end."""
    into = getattr(stream, "readinto1", None)
    if into is not None:
        return into
    read = getattr(stream, "read1", stream.read)

    def readinto(view) -> int:
        data = read(len(view))
        view[:len(data)] = data
        return len(data)

    return readinto


def iter_regions(stream: BinaryIO, stats, raw: BinaryIO | None = None, on_chunk=None) -> Iterator[memoryview | bytes]:
    """The stream's whole lines, a region at a time: a memoryview of the reader's buffer
    from the start of a line to just after a newline, valid until the next region is
    asked for and always starting at the start of its buffer (``region.obj``, whose
    ``find`` then gives positions in the region); the last line, when the stream ends
    without a newline, comes as bytes (only when it is not blank). Lines are not
    counted here (the caller knows how many it found); overlong lines and a truncated
    last line are."""
    buf = bytearray(2 * CHUNK)
    view = memoryview(buf)
    have = 0  # bytes of an unfinished line at the start of BUF
    clean = 0  # how many of them are known to hold no newline (all: only a newline ends a line)
    readinto = _reader(stream)
    while True:
        if len(buf) - have < CHUNK:  # an unfinished line longer than the buffer: a bigger one
            buf, view = _moved(view, have, max(min(2 * len(buf), MAX_LINE + 2 * CHUNK), have + CHUNK))
        failed = False
        try:
            got = readinto(view[have:have + CHUNK])
        except DECOMPRESS_ERRORS as exc:
            stats.error = f"{type(exc).__name__}: {exc}"
            got, failed = 0, True
        if raw is not None:
            try:
                stats.compressed_bytes_read = raw.tell()
            except (OSError, ValueError):
                pass
        if on_chunk is not None:
            on_chunk(stats.compressed_bytes_read)
        if not got:
            last = bytes(view[:have])
            if last.strip():
                if failed:
                    stats.lines += 1
                    stats.bad["truncated_record"] += 1
                else:
                    yield last
            return
        end = have + got
        nl = buf.rfind(b"\n", clean, end)
        if nl < 0 and end > MAX_LINE:
            stats.lines += 1
            stats.bad["line_too_long"] += 1
            end = _skip_line(readinto, buf, view, stats)  # what followed it, now at the start
            if end < 0:
                return
            nl = buf.rfind(b"\n", 0, end)
        if nl < 0:
            have = clean = end
            continue
        yield view[:nl + 1]
        have = clean = end - nl - 1
        if len(buf) > 2 * CHUNK:  # back to the usual size after a long line
            buf, view = _moved(view[nl + 1:end], have, 2 * CHUNK)
        else:
            buf[:have] = view[nl + 1:end].tobytes()  # the two places overlap: through a copy


def _moved(view: memoryview, n: int, size: int) -> tuple[bytearray, memoryview]:
    """A new buffer of SIZE bytes starting with the first N of VIEW, and a view of it
    (through memoryviews: a bytearray's slice assignment would copy the bytes first)."""
    buf = bytearray(size)
    out = memoryview(buf)
    out[:n] = view[:n]
    return buf, out


def _skip_line(readinto, buf: bytearray, view: memoryview, stats) -> int:
    """Read on to the end of an overlong line, a chunk at a time into BUF: the number
    of bytes after its newline, now at the start of BUF; -1 when the stream ended
    (or failed: ``stats.error``) first."""
    while True:
        try:
            got = readinto(view[:CHUNK])
        except DECOMPRESS_ERRORS as exc:
            stats.error = f"{type(exc).__name__}: {exc}"
            return -1
        if not got:
            return -1
        nl = buf.find(b"\n", 0, got)
        if nl >= 0:
            buf[:got - nl - 1] = view[nl + 1:got].tobytes()
            return got - nl - 1


def region_lines(region) -> list[bytes]:
    """The lines of a region of ``iter_regions`` (without their newlines)."""
    lines = bytes(region).split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # after the region's last newline
    return lines


def iter_line_batches(stream: BinaryIO, stats, raw: BinaryIO | None = None, on_chunk=None) -> Iterator[list[bytes]]:
    """``iter_lines`` a region at a time: each item is the list of the complete lines
    one read ended (never empty), each counted in ``stats.lines``."""
    for region in iter_regions(stream, stats, raw, on_chunk):
        lines = region_lines(region)
        stats.lines += len(lines)
        yield lines


def iter_lines(stream: BinaryIO, stats, raw: BinaryIO | None = None, on_chunk=None) -> Iterator[bytes]:
    """Yield complete lines (without the newline) from a binary stream, in constant memory."""
    for lines in iter_line_batches(stream, stats, raw, on_chunk):
        yield from lines
