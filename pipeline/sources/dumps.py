"""Reading Pushshift / Arctic-Shift monthly submission dumps of every era.

Codecs are detected from the file's magic bytes, not its name: xz (2005-2010,
2017-12..2018-10), bz2 (2011-2014, 2017-01..11), zstd (2015-2016, 2018-11 on,
all of today's torrents; written with ``--long=31`` so the decoder needs
``max_window_size=2**31``), Arctic Shift's ``zst_blocks`` container, gzip, and
plain NDJSON.

Arctic Shift (github.com/ArthurHeitmann/arctic_shift) publishes the months after
Pushshift in the same shape: ``RS_YYYY-MM.zst``, zstd NDJSON, one submission
object per line as the Reddit API returned it. What its notes say differs
(file_content_explanations.md, schemas/RS/*.ts, download_links.md; read 2026-02):
from 2023-04 the keys are sorted, ``retrieved_on`` (int seconds) is added (Pushshift
wrote ``retrieved_on``, and ``retrieved_utc`` in 2020-06..2022-06), ``body_html``
is dropped; from 2023-11 every object has a ``_meta`` object (``retrieved_2nd_on``,
``was_deleted_later``, ``removal_type``, ``note``...) and ``score``/``over_18`` are
the values of a second retrieval 36 hours later; ``created_utc`` is an int;
``edited`` is a bool or an int; ads made in the ads UI carry ``call_to_action``,
``href_url``, ``outbound_link`` and friends (``promoted`` is false on them), and
nested objects (``crosspost_parent_list``, ``ad_promoted_user_posts``,
``media``...) hold their own ``url``/``created_utc``. The reader decodes only the
top-level fields in ``Submission`` and skips every other key whatever its type,
so none of these changes the links. The 2023-04..2024-03 torrents also came as
``.zst_blocks`` (github.com/ArthurHeitmann/zst_blocks_format): a series of
``[uint32 size][zstd frame]`` blocks, each frame ``[uint32 n][n x (uint32 offset,
uint32 size)][rows]``; ``ZstBlocksStream`` reads it as NDJSON. From 2024-04 the
months come only as ``.zst``.

The reader streams in constant memory (regions of whole lines in one reused buffer,
pipeline/sources/lines.py) and decodes each line with msgspec into a struct holding
only the fields the link stage needs, which skips the rest of each record without
building Python objects for it; that is where its speed over ``json.loads`` per
line comes from (bench/bench_dumps.py). A region's lines are decoded in one call
straight from the buffer (``iter_submission_batches``) by a struct whose types carry
the bounds of ``numbers_ok``; a region with any line that fails it is decoded again
line by line, which names each bad line's reason.

Nothing is silently lost: a malformed line, a bad UTF-8 sequence or a record of
the wrong shape is counted with a reason and reading goes on; a truncated or
corrupt archive stops that file, and the summary says how far it got.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, BinaryIO, Iterator

import msgspec
import orjson
import zstandard

from pipeline.sources.lines import CHUNK, iter_regions, region_lines

ZSTD_INPUT = 16 << 10  # compressed bytes fed to zstd per step

_MAGIC = [
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x1f\x8b", "gzip"),
]


class DumpError(OSError):
    """A dump that cannot be read at all (missing, unreadable)."""


class Submission(msgspec.Struct, frozen=False, gc=False):
    """The fields of a submission the link stage uses; every one may be missing.

    Only those: every other key is skipped without being decoded, which is ~9% faster
    than decoding ``author``, ``domain`` and ``permalink`` as well (they were, until
    issue 30). Skipped values are still checked to be well-formed JSON, but bytes that
    are not UTF-8 inside them do not cost the record, as in any other unread field
    (``selftext``...); in a field read here they do (``bad_utf8``). In the dumps' key
    order (alphabetical: Pushshift's and Arctic Shift's records),
    which msgspec matches first when it looks a key up (~3% of the decoding). Not
    tracked by the garbage collector (``gc=False``): its fields are strings and numbers,
    never part of a cycle, and a month's ~200k instances would otherwise trigger
    collections that walk them all."""

    created_utc: float | str | None = None  # int, float (API, 2023+) or str (2014-01..2015-11)
    crosspost_parent: str | None = None  # from 2017-08
    id: str | None = None
    is_self: bool | None = None
    over_18: bool | None = None
    score: int | None = None  # null in 2017-10 and 2017-11
    subreddit: str | None = None
    title: str | None = None
    url: str | None = None
    url_overridden_by_dest: str | None = None  # from 2020-05


_decoder = msgspec.json.Decoder(Submission)

# the order in which ``_coerce`` converts the fields (the first that fails names the
# record's reason), as it was before the fields were put in the dumps' order
_COERCE_ORDER = ("id", "created_utc", "subreddit", "title", "url", "url_overridden_by_dest",
                 "is_self", "score", "over_18", "crosspost_parent")


def _coerce(obj: object) -> Submission:
    """Slow path for records whose fields have unexpected types (e.g. score as a string)."""
    if not isinstance(obj, dict):
        raise ValueError("record is not a JSON object")
    s = Submission()
    for name in _COERCE_ORDER:
        v = obj.get(name)
        if v is None:
            continue
        if name == "score":
            v = int(float(v))
        elif name == "created_utc":
            v = float(v) if not isinstance(v, str) else v
        elif name in ("is_self", "over_18"):
            v = v if isinstance(v, bool) else str(v).lower() in ("true", "1")
        else:
            v = str(v)
        setattr(s, name, v)
    return s


def created_ts(value: float | str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


# Sane bounds: Reddit scores are well inside +-2**31, and times between Reddit's
# start (2005) and ~2100. A value outside (inf, 1e300, >= 2**63) is a damaged record,
# counted as ``bad_number`` instead of overflowing an int64 column downstream.
MAX_ABS_SCORE = 2**40
MAX_CREATED = 4_102_444_800  # 2100-01-01


def numbers_ok(sub: Submission) -> bool:
    if sub.score is not None and not -MAX_ABS_SCORE < sub.score < MAX_ABS_SCORE:
        return False
    if sub.created_utc is not None:
        try:
            t = float(sub.created_utc)
        except (TypeError, ValueError):
            return True  # not a number at all: the link stage counts it as missing_created_utc
        if not 0 <= t < MAX_CREATED:  # also False for nan and inf
            return False
    return True


class _CheckedSubmission(Submission):
    """``Submission`` as the fast pass of ``iter_submission_batches`` decodes it: the
    bounds of ``numbers_ok`` are type constraints, so a record the decoder accepts needs
    no check in Python. A ``created_utc`` string is accepted only when it is plain digits
    below 4e9 (numbers_ok holds for it); any other string fails here and its chunk
    goes through the reference path."""

    created_utc: Annotated[float, msgspec.Meta(ge=0, lt=MAX_CREATED)] | \
        Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9]{1,9}|[1-3][0-9]{9})\Z")] | None = None
    score: Annotated[int, msgspec.Meta(gt=-MAX_ABS_SCORE, lt=MAX_ABS_SCORE)] | None = None


_checked_decoder = msgspec.json.Decoder(_CheckedSubmission)


ZSTD_MAGIC = 0xFD2FB528


def zstd_truncation(fh: BinaryIO) -> int | None:
    """Walk the frames of a zstd file by their headers (no decompression): the
    offset of a frame the file ends inside of, or None when it ends on a frame
    boundary. Skippable frames are stepped over."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    pos = 0
    while pos < size:
        fh.seek(pos)
        head = fh.read(18)
        if len(head) < 4:
            return pos
        magic = int.from_bytes(head[:4], "little")
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
            if len(head) < 8:
                return pos
            pos += 8 + int.from_bytes(head[4:8], "little")
            if pos > size:
                return pos
            continue
        if magic != ZSTD_MAGIC or len(head) < 5:
            return pos  # not a frame where one should start: treated like a cut
        fhd = head[4]
        fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
        frame = pos
        pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
        while True:
            fh.seek(pos)
            bh = fh.read(3)
            if len(bh) < 3:
                return frame
            v = int.from_bytes(bh, "little")
            last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
            pos += 3 + (1 if btype == 1 else bsize)
            if pos > size:
                return frame
            if last:
                break
        pos += 4 if checksum else 0
        if pos > size:
            return frame
    return None


class ZstdStream:
    """A zstd reader over concatenated frames (Pushshift's --long=31 ones too) whose
    every read returns at most ``size`` bytes, however well the data compresses (a
    70 MB line of one repeated byte is a few KB of zstd: decompressing it in one
    step would need the whole line in memory at once). A truncated last frame is
    told apart from a clean end by walking the frame headers at the end of the data
    (``zstd_truncation``): EOFError, after every byte before the cut was returned."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        self.reader = dctx.stream_reader(raw, read_size=ZSTD_INPUT, read_across_frames=True, closefd=False)
        self.done = False

    def read1(self, size: int = CHUNK) -> bytes:
        if self.done:
            return b""
        chunk = self.reader.read1(size)
        if not chunk:
            self._end()
        return chunk

    read = read1

    def readinto1(self, view) -> int:
        """``read1`` into VIEW (a writable buffer): no bytes object per step."""
        if self.done:
            return 0
        n = self.reader.readinto1(view)
        if not n:
            self._end()
        return n

    def _end(self) -> None:
        """The data ended: a clean end, or EOFError when the file stops inside a frame."""
        self.done = True
        cut = zstd_truncation(self.raw)
        if cut is not None:
            raise EOFError(f"zstd frame truncated: the file ends inside the frame at byte {cut:,}")

    def close(self) -> None:
        self.reader.close()


class ZstBlocksStream:
    """Arctic Shift's ``zst_blocks`` container read as NDJSON: each ``read1`` returns
    rows of one block (each followed by a newline), at most ``size`` bytes. A block
    header or block the file ends inside of raises EOFError (the rest of the file
    cannot be found); a block that does not decompress, or whose row table points
    outside it, is skipped and listed in ``damaged``: its length prefix still says where
    the next block starts."""

    MAX_BLOCK = 1 << 30  # decompressed bytes of one block; real blocks are a few MB

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        self.pending = memoryview(b"")
        self.damaged: list[str] = []  # blocks that could not be read (skipped; counted by the reader)

    def _next_block(self) -> bytes | None:
        head = self.raw.read(4)
        if not head:
            return None
        start = self.raw.tell() - len(head)
        if len(head) < 4:
            raise EOFError(f"zst_blocks: the file ends inside the block header at byte {start:,}")
        n = int.from_bytes(head, "little")
        data = self.raw.read(n)
        if len(data) < n:
            raise EOFError(f"zst_blocks: the file ends inside the block at byte {start:,} ({len(data):,} of {n:,} bytes)")
        try:
            return self._rows(data, start)
        except (zstandard.ZstdError, ValueError) as exc:
            # the block's own length is intact (the next block starts where it says): this
            # block is lost, counted, and reading goes on
            self.damaged.append(f"{exc}"[:200])
            return b""

    def _rows(self, data: bytes, start: int) -> bytes:
        block = self.dctx.decompress(data, max_output_size=self.MAX_BLOCK)
        if len(block) < 4:
            raise ValueError(f"zst_blocks: block at byte {start:,} has no row count")
        count = int.from_bytes(block[:4], "little")
        base = 4 + 8 * count
        if base > len(block):
            raise ValueError(f"zst_blocks: block at byte {start:,} claims {count:,} rows, more than it holds")
        rows = []
        for i in range(count):
            off = int.from_bytes(block[4 + 8 * i : 8 + 8 * i], "little")
            size = int.from_bytes(block[8 + 8 * i : 12 + 8 * i], "little")
            if base + off + size > len(block):
                raise ValueError(f"zst_blocks: row {i} of the block at byte {start:,} lies outside the block")
            rows.append(block[base + off : base + off + size])
        return b"".join(r + b"\n" for r in rows)

    def read1(self, size: int = CHUNK) -> bytes:
        while not self.pending:
            block = self._next_block()
            if block is None:
                return b""
            self.pending = memoryview(block)
        out, self.pending = bytes(self.pending[:size]), self.pending[size:]
        return out

    read = read1

    def close(self) -> None:
        pass


def is_zst_blocks(head: bytes) -> bool:
    """A uint32 block size, then a zstd frame: Arctic Shift's zst_blocks (checked
    before the other magics: the size's low bytes could look like gzip's)."""
    return len(head) >= 8 and head[4:8] == b"\x28\xb5\x2f\xfd" and int.from_bytes(head[:4], "little") >= 9


def detect_codec(path: str | Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if is_zst_blocks(head):
        return "zst_blocks"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "plain"


def open_dump(path: str | Path) -> tuple[BinaryIO, BinaryIO, str]:
    """Open a dump: (decompressed stream, raw file for progress, codec name)."""
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"dump file not found: {path}")
    codec = detect_codec(path)
    raw = open(path, "rb")
    if codec == "xz":
        stream = lzma.LZMAFile(raw)
    elif codec == "bz2":
        stream = bz2.BZ2File(raw)
    elif codec == "gzip":
        stream = gzip.GzipFile(fileobj=raw)
    elif codec == "zst":
        stream = ZstdStream(raw)
    elif codec == "zst_blocks":
        stream = ZstBlocksStream(raw)
    else:
        stream = raw
    return stream, raw, codec


@dataclass
class DumpReadStats:
    path: str
    codec: str = ""
    lines: int = 0
    records: int = 0
    bad: Counter = field(default_factory=Counter)
    compressed_bytes_read: int = 0
    compressed_bytes_total: int = 0
    error: str | None = None  # why reading stopped early (truncated/corrupt archive)
    damaged_blocks: list = field(default_factory=list)  # zst_blocks blocks skipped, and why

    def to_dict(self) -> dict:
        return {
            "damaged_blocks": self.damaged_blocks[:20],
            "path": self.path,
            "codec": self.codec,
            "lines": self.lines,
            "records": self.records,
            "bad": dict(self.bad),
            "compressed_bytes_read": self.compressed_bytes_read,
            "compressed_bytes_total": self.compressed_bytes_total,
            "error": self.error,
        }


def iter_submissions(path: str | Path, stats: DumpReadStats | None = None, progress_bar=None) -> Iterator[Submission]:
    """Stream the submissions of one dump file. Bad lines are counted in ``stats.bad``."""
    for subs in iter_submission_batches(path, stats, progress_bar):
        yield from subs


def iter_submission_batches(path: str | Path, stats: DumpReadStats | None = None, progress_bar=None,
                            per_line: bool = False) -> Iterator[list[Submission]]:
    """``iter_submissions`` a decompressed region (what one read gives, ~128 KiB of
    zstd) at a time: lists of submissions, in file order, with the same counts.

    A region is decoded in one call, straight from the reader's buffer
    (``_decode_region``: msgspec's ``decode_lines`` with ``_checked_decoder``'s
    bounds, no copy or Python step per line); when that fails or cannot be shown to
    hold exactly one record per line (a malformed line, a field of another type, a
    number out of bounds, a blank line, a record over two lines...), the region's
    lines are decoded again one by one by the reference path (``_decode_lines``),
    which names each bad line's reason. The fast pass only ever accepts lines the
    reference path accepts, with the same values, so the result is the same either
    way. ``per_line=True``: every region by the reference path
    (tests/pipeline/test_links_fast.py compares them)."""
    path = Path(path)
    stats = stats if stats is not None else DumpReadStats(str(path))
    stream, raw, codec = open_dump(path)
    stats.codec = codec
    stats.compressed_bytes_total = os.path.getsize(path)
    last = [0]

    def on_chunk(pos: int) -> None:
        if progress_bar is not None and pos > last[0]:
            progress_bar.update(pos - last[0])
            last[0] = pos

    try:
        for region in iter_regions(stream, stats, raw, on_chunk):
            subs = None if per_line else _decode_region(region)
            if subs is not None:
                stats.lines += len(subs)
                stats.records += len(subs)
            else:
                lines = region_lines(region)
                stats.lines += len(lines)
                subs = _decode_lines(lines, stats)
            if subs:
                yield subs
    finally:
        for why in getattr(stream, "damaged", ()):
            stats.bad["damaged_block"] += 1  # a block's rows are unknown: the block counts as one
            stats.damaged_blocks.append(why)
        stream.close()
        raw.close()


def _decode_region(region) -> list[Submission] | None:
    """The records of a region of whole lines in one ``decode_lines`` call, or None when
    it fails or the region is not exactly one object per line. ``decode_lines`` is
    laxer than a line-by-line read: it takes blank lines, two objects on one line and
    an object spread over lines. So the region must also start with "{" and every
    newline in it follow a "}" and (but the last) precede a "{", as many newlines as
    records. Then no record spans a newline: inside an object, a "}" then "{" is not
    valid JSON, and a raw newline cannot sit in a string; and no line holds two
    records, for each line starts one. A region with carriage returns, blank lines or
    spaces around a record goes to the reference path, which takes them."""
    if not region or region[0] != 123 or region[-1] != 10:  # "{" ... "\n"
        return None
    try:
        subs = _checked_decoder.decode_lines(region)
    except Exception:  # noqa: BLE001 - whatever it was, the reference path replays the region
        return None
    n = len(subs)
    end = len(region) - 1  # the last newline
    find = region.find if isinstance(region, bytes) else region.obj.find
    p = find(b"\n", 0, end + 1)
    while p >= 0:
        n -= 1
        if region[p - 1] != 125 or (p != end and region[p + 1] != 123):  # "}" before, "{" after
            return None
        p = find(b"\n", p + 1, end + 1)
    return subs if n == 0 else None


def _decode_lines(lines: list[bytes], stats: DumpReadStats) -> list[Submission]:
    """The reference decoding of a chunk's lines, one at a time: each bad line counted
    in ``stats.bad`` with its reason, blank lines not counted at all."""
    decode = _decoder.decode
    bad = stats.bad
    out = []
    for line in lines:
        if not line or line.isspace():
            stats.lines -= 1  # blank lines are not records
            continue
        try:
            sub = decode(line)
        except msgspec.ValidationError:
            try:
                sub = _coerce(orjson.loads(line))
            except orjson.JSONDecodeError:
                bad["malformed_json"] += 1
                continue
            except UnicodeDecodeError:
                bad["bad_utf8"] += 1
                continue
            except (TypeError, ValueError, OverflowError):
                bad["bad_field_type"] += 1
                continue
            except RecursionError:
                bad["too_deeply_nested"] += 1
                continue
        except UnicodeDecodeError:
            bad["bad_utf8"] += 1
            continue
        except RecursionError:  # nesting deeper than the decoder follows, in any field
            bad["too_deeply_nested"] += 1
            continue
        except msgspec.DecodeError:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad["bad_utf8"] += 1
            else:
                bad["malformed_json"] += 1
            continue
        if not numbers_ok(sub):
            bad["bad_number"] += 1
            continue
        stats.records += 1
        out.append(sub)
    return out


def plain_reader_count(path: str | Path) -> int:
    """The anchor of bench/bench_dumps.py: what the community scripts do (a zstandard
    stream, text lines, ``json.loads`` per line). Only used for benchmarks."""
    import json

    n = 0
    with open(path, "rb") as fh:
        dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        with dctx.stream_reader(fh) as reader:
            text = io.TextIOWrapper(reader, encoding="utf-8")
            for line in text:
                obj = json.loads(line)
                n += obj.get("score", 0) is not None
    return n
