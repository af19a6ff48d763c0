"""WARC storage of the fetch stage: appending records, repairing after a kill, indexing.

``WarcSink`` appends a response (and its request) record pair with one ``write``
+ ``fsync`` to rolling gzip WARC files named PREFIX-<time>-<pid>-<serial>; the
stage writes an outcome line pointing at the record only after that. With
``durable=False`` the fsync is left to ``sync`` (the asyncio crawl commits in
groups: WARC files fsynced, then the outcome lines of the records they hold).
A live page's pair is serialised here (``warc_pair``), byte for byte what warcio
writes (tested against it) at a fraction of its cost; other records go through warcio.
``repair_warcs`` trims a killed run's files back to the last record an outcome
line points at, so warcio always reads every file whole. ``index_warcs`` maps the
response records of existing WARC files by normalised URL (``webtext fetch
--from-warc``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from pipeline.core.urls import InvalidURL, normalize_url
from pipeline.fetch.webclient import Response


_EMPTY_DIGEST = "sha1:" + base64.b32encode(hashlib.sha1(b"").digest()).decode("ascii")


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [_B32[i >> 5] + _B32[i & 31] for i in range(1024)]


def _digest(*parts: bytes) -> str:
    """warcio's "sha1:" + base32 of the SHA-1 (160 bits: 32 characters, no padding)."""
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    n = int.from_bytes(h.digest(), "big")
    return "sha1:" + "".join([_B32_PAIRS[(n >> s) & 1023] for s in range(150, -1, -10)])


def _gzip_member(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS + 16)  # as warcio's GzippingWrapper
    return z.compress(data) + z.flush()


def warc_pair(resp: Response, fetched_at: str, request: bool = True) -> tuple[bytes, int] | None:
    """The gzip response (and request) records of a live RESP, byte for byte what
    ``WarcSink._warcio_pair`` (warcio) writes for it: the same WARC headers in the same
    order, digests, Content-Length and gzip member per record (only WARC-Record-ID
    differs, a fresh uuid4 as warcio's). Returns (bytes, length of the response
    member), or None where warcio would percent-encode or refuse a header that is not
    ASCII (then warcio itself writes it)."""
    try:
        head = [f"{resp.http_version} {resp.status} {resp.reason}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in resp.headers]
        head.append("\r\n")
        http_block = "".join(head).encode("ascii")
        if request:
            path = urlsplit(resp.url)
            req_line = (path.path or "/") + (f"?{path.query}" if path.query else "")
            req = [f"GET {req_line} HTTP/1.1\r\n"] + [f"{k}: {v}\r\n" for k, v in resp.request_headers] + ["\r\n"]
            req_block = "".join(req).encode("ascii")
    except UnicodeEncodeError:
        return None
    body = resp.body
    rec_id = f"<urn:uuid:{uuid.uuid4()}>"
    truncated = f"WARC-Truncated: {resp.truncated}\r\n" if resp.truncated else ""
    warc = (f"WARC/1.0\r\nWARC-Date: {fetched_at}\r\n{truncated}WARC-Type: response\r\nWARC-Record-ID: {rec_id}\r\n"
            f"WARC-Target-URI: {resp.url}\r\nWARC-Payload-Digest: {_digest(body)}\r\n"
            f"WARC-Block-Digest: {_digest(http_block, body)}\r\nContent-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http_block) + len(body)}\r\n\r\n").encode("utf-8")
    out = _gzip_member(b"".join((warc, http_block, body, b"\r\n\r\n")))
    response_len = len(out)
    if request:
        warc = (f"WARC/1.0\r\nWARC-Date: {fetched_at}\r\nWARC-Concurrent-To: {rec_id}\r\nWARC-Type: request\r\n"
                f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\nWARC-Target-URI: {resp.url}\r\n"
                f"WARC-Payload-Digest: {_EMPTY_DIGEST}\r\nWARC-Block-Digest: {_digest(req_block)}\r\n"
                f"Content-Type: application/http; msgtype=request\r\nContent-Length: {len(req_block)}\r\n\r\n"
                ).encode("utf-8")
        out += _gzip_member(b"".join((warc, req_block, b"\r\n\r\n")))
    return out, response_len


class WarcSink:
    """Appends request/response record pairs to rolling WARC files, one write each."""

    def __init__(self, warc_dir: Path, max_bytes: int, prefix: str = "webtext"):
        self.dir = warc_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.lock = threading.Lock()
        self.fh = None
        self.path: Path | None = None
        self.serial = 0
        self.unsynced: list = []  # files written with durable=False since the last ``sync``
        self.syncing: list = []  # and those the running ``sync`` is fsyncing

    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        self.serial += 1
        self.path = self.dir / f"{self.prefix}-{stamp}-{os.getpid()}-{self.serial:05d}.warc.gz"
        self.fh = open(self.path, "ab")

    def write(self, resp: Response, fetched_at: str, extra_headers: dict | None = None,
              request: bool = True, durable: bool = True) -> tuple[str, int, int, int]:
        """Returns (file name, offset and length of the response record, end of the pair).
        ``extra_headers``: more WARC headers (an archived page's provenance, its
        capture time as WARC-Date); ``request``: also write the request record;
        ``durable``: fsync before returning (else ``sync`` does, before any outcome
        line may point at the pair)."""
        pair = warc_pair(resp, fetched_at, request) if extra_headers is None else None
        data, response_len = pair if pair is not None else self._warcio_pair(resp, fetched_at, extra_headers, request)
        with self.lock:
            if self.fh is None or (self.fh.tell() + len(data) > self.max_bytes and self.fh.tell() > 0):
                self._roll()
            offset = self.fh.tell()
            self.fh.write(data)
            self.fh.flush()
            if durable:
                os.fsync(self.fh.fileno())
            elif not self.unsynced or self.unsynced[-1] is not self.fh:
                self.unsynced.append(self.fh)
            return self.path.name, offset, response_len, offset + len(data)

    def _roll(self) -> None:
        old, self.fh = self.fh, None
        if old is not None and old not in self.unsynced and old not in self.syncing:
            old.close()  # else ``sync`` closes it once fsynced
        self._open()

    def sync(self) -> None:
        """fsync what ``write(durable=False)`` wrote (every file since the last call;
        rolled ones are then closed). Runs in another thread than ``write``, one call
        at a time."""
        with self.lock:
            files, self.unsynced = self.unsynced, []
            self.syncing = files
        try:
            for fh in files:
                os.fsync(fh.fileno())
        finally:
            with self.lock:
                self.syncing = []
                for fh in files:
                    if fh is not self.fh and fh not in self.unsynced:
                        fh.close()

    @staticmethod
    def _warcio_pair(resp: Response, fetched_at: str, extra_headers: dict | None, request: bool) -> tuple[bytes, int]:
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter

        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=True)
        http_headers = StatusAndHeaders(f"{resp.status} {resp.reason}", resp.headers, protocol=resp.http_version)
        warc_headers = {"WARC-Date": fetched_at, **(extra_headers or {})}
        if resp.truncated:
            warc_headers["WARC-Truncated"] = resp.truncated
        record = writer.create_warc_record(
            resp.url, "response", payload=io.BytesIO(resp.body), http_headers=http_headers,
            warc_headers_dict=warc_headers,
        )
        writer.write_record(record)
        response_len = buf.tell()
        if request:
            path = urlsplit(resp.url)
            req_line = (path.path or "/") + (f"?{path.query}" if path.query else "")
            req_headers = StatusAndHeaders(f"GET {req_line} HTTP/1.1", resp.request_headers, is_http_request=True)
            concurrent = record.rec_headers.get_header("WARC-Record-ID")
            req = writer.create_warc_record(resp.url, "request", http_headers=req_headers,
                                            warc_headers_dict={"WARC-Date": fetched_at, "WARC-Concurrent-To": concurrent})
            writer.write_record(req)
        return buf.getvalue(), response_len

    def close(self) -> None:
        for fh in self.unsynced:  # never synced (a failed run): closed, no outcome points at it
            if fh is not self.fh and not fh.closed:
                fh.close()
        self.unsynced = []
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def repair_warcs(warc_dir: Path, ends: dict[str, int], prefix: str = "") -> list[str]:
    """Trim each WARC file (named PREFIX-...: the files of one outcome log) back to
    the end of its last record that has an outcome line (``ends``: file name -> end
    offset; a killed run can leave a torn or outcome-less tail). Returns what was
    trimmed."""
    trimmed = []
    if not warc_dir.is_dir():
        return trimmed
    for path in sorted(warc_dir.glob(f"{prefix}-*.warc.gz" if prefix else "*.warc.gz")):
        size = path.stat().st_size
        end = ends.get(path.name, 0)
        if end < size:
            if end == 0:
                path.unlink()
            else:
                with open(path, "r+b") as fh:
                    fh.truncate(end)
            trimmed.append(f"{path.name}: {size - end} bytes without an outcome trimmed")
    return trimmed


def index_warcs(paths: Iterable[str | Path], damaged: list[dict] | None = None) -> dict[str, tuple[str, int, int, int, str]]:
    """url_norm -> (warc path, offset, length, status, fetched time) of each response record
    (the last one wins, so a later successful capture replaces an earlier one).
    Damaged stretches are skipped and appended to DAMAGED (``io.iter_warc_records``)."""
    from pipeline.core.io import iter_warc_records

    damaged = damaged if damaged is not None else []
    index: dict[str, tuple[str, int, int, int, str]] = {}
    for p in paths:
        for offset, length, record in iter_warc_records(p, damaged):
            if record.rec_type != "response":
                continue
            uri = record.rec_headers.get_header("WARC-Target-URI")
            status = int(record.http_headers.get_statuscode() or 0) if record.http_headers else 0
            date = record.rec_headers.get_header("WARC-Date") or ""
            try:
                key = normalize_url(uri)
            except (InvalidURL, TypeError):
                continue
            prev = index.get(key)
            if prev is None or not (200 <= prev[3] < 300) or 200 <= status < 300:
                index[key] = (str(Path(p).resolve()), offset, length, status, date)
    return index
