"""WARC storage of the fetch stage: appending records, repairing after a kill, indexing.

``WarcSink`` appends a response (and its request) record pair with one ``write``
+ ``fsync`` to rolling gzip WARC files named PREFIX-<time>-<pid>-<serial>; the
stage writes an outcome line pointing at the record only after that.
``repair_warcs`` trims a killed run's files back to the last record an outcome
line points at, so warcio always reads every file whole. ``index_warcs`` maps the
response records of existing WARC files by normalised URL (``webtext fetch
--from-warc``).
"""

from __future__ import annotations

import io
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.core.urls import InvalidURL, normalize_url
from pipeline.fetch.webclient import Response


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

    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        self.serial += 1
        self.path = self.dir / f"{self.prefix}-{stamp}-{os.getpid()}-{self.serial:05d}.warc.gz"
        self.fh = open(self.path, "ab")

    def write(self, resp: Response, fetched_at: str, extra_headers: dict | None = None,
              request: bool = True) -> tuple[str, int, int, int]:
        """Returns (file name, offset and length of the response record, end of the pair).
        ``extra_headers``: more WARC headers (an archived page's provenance, its
        capture time as WARC-Date); ``request``: also write the request record."""
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
            req = writer.create_warc_record(resp.url, "request", http_headers=req_headers,
                                            warc_headers_dict={"WARC-Date": fetched_at,
                                                               "WARC-Concurrent-To": record.rec_headers.get_header("WARC-Record-ID")})
            writer.write_record(req)
        data = buf.getvalue()
        with self.lock:
            if self.fh is None or (self.fh.tell() + len(data) > self.max_bytes and self.fh.tell() > 0):
                self.close()
                self._open()
            offset = self.fh.tell()
            self.fh.write(data)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            return self.path.name, offset, response_len, offset + len(data)

    def close(self) -> None:
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
