"""Common Crawl's bucket over S3 (``base_url = "s3://commoncrawl/"``): index files, listings
and WARC records read by byte range through pyarrow's S3 filesystem.

Since 2022 ``s3://commoncrawl/`` answers only signed requests: the usual AWS
configuration is used, as every AWS tool reads it (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``~/.aws/credentials`` and
``~/.aws/config`` with ``AWS_PROFILE``, or an instance role), the region from
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``, where the bucket
lives), and an endpoint from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (an
S3-compatible store: a mirror, or moto's server in the tests). pyarrow's S3 client
does not read the endpoint variables itself; this module passes them on.

Requests keep the archive's ``rate`` and ``concurrency`` (per process, as over HTTP),
and a throttled or failed request (503 SlowDown, a reset) is retried with back-off
within ``archive_timeout_s``. A crawl without ``cc-index-table.paths.gz`` is listed
from the bucket (``list_index_files``). Nothing read is executed: Parquet, gzip and
WARC only.
"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlsplit

from pipeline.fetch.ccindex import IndexError_, RangeSource

INDEX_PREFIX = "cc-index/table/cc-main/warc/"
_TRANSIENT = ("503", "SlowDown", "Throttl", "RequestTimeout", "NETWORK_CONNECTION", "Connection reset",
              "InternalError", "500")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


def s3_filesystem():
    """pyarrow's S3 filesystem configured the way AWS's own tools are."""
    import pyarrow.fs as pafs

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kw = {"region": region, "connect_timeout": 10, "request_timeout": 60}
    if endpoint:
        kw["endpoint_override"] = endpoint
        if endpoint.startswith("http://"):
            kw["scheme"] = "http"
    return pafs.S3FileSystem(**kw)


class S3Source(RangeSource):
    """Byte ranges of objects under ``s3://bucket/prefix/``, at RATE requests a second and
    CONCURRENCY at once, each request retried on throttling within BUDGET_S seconds."""

    def __init__(self, url: str, rate: float = 2.0, concurrency: int = 2, budget_s: float = 120.0, fs=None):
        super().__init__()
        self.bucket, self.prefix = split_s3(url)
        self.fs = fs if fs is not None else s3_filesystem()
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.slots = threading.BoundedSemaphore(max(1, concurrency))
        self.budget_s = budget_s
        self._lock = threading.Lock()
        self._next = 0.0

    def _key(self, path: str) -> str:
        if path.startswith("/") or ".." in path.split("/") or "://" in path or "\\" in path:
            raise IndexError_(f"path {path[:200]!r} refused (must be relative)")
        return f"{self.bucket}/{self.prefix}/{path}" if self.prefix else f"{self.bucket}/{path}"

    def _call(self, what: str, fn):
        """FN() at the archive's pace, retried on a transient S3 error within the budget."""
        deadline = time.monotonic() + self.budget_s
        wait = 0.5
        while True:
            with self.slots:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._next)
                    self._next = start + self.interval
                if start > now:
                    time.sleep(start - now)
                try:
                    return fn()
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    msg = str(exc)
                    if not any(t in msg for t in _TRANSIENT) or time.monotonic() + wait > deadline:
                        raise IndexError_(f"s3://{what}: {msg[:400]}") from exc
            time.sleep(wait)
            wait = min(wait * 2, 30.0)

    def _read_at(self, key: str, start: int | None, length: int | None) -> tuple[int, bytes]:
        with self.fs.open_input_file(key) as fh:
            size = fh.size()
            if start is None:  # the last LENGTH bytes
                start = max(0, size - length)
                length = size - start
            if length is None:
                length = size
            return size, fh.read_at(length, start)

    def tail(self, path: str, n: int) -> tuple[int, bytes]:
        key = self._key(path)
        try:
            size, data = self._call(key, lambda: self._read_at(key, None, n))
        except FileNotFoundError:
            raise IndexError_(f"no index file s3://{key}") from None
        self.stats.add(len(data), tail=True)
        return size, data

    def read(self, path: str, start: int, length: int, tail: bool = False) -> bytes:
        key = self._key(path)
        try:
            _, data = self._call(key, lambda: self._read_at(key, start, length))
        except FileNotFoundError:
            raise IndexError_(f"no such object s3://{key}") from None
        if len(data) != length:
            raise IndexError_(f"s3://{key}: {length:,} bytes at {start:,} asked, {len(data):,} read (a short object)")
        self.stats.add(len(data), tail)
        return data

    def read_all(self, path: str, limit: int) -> bytes:
        key = self._key(path)

        def whole():
            with self.fs.open_input_file(key) as fh:
                if fh.size() > limit:
                    raise IndexError_(f"s3://{key} is larger than {limit:,} bytes")
                return fh.read()

        data = self._call(key, whole)  # FileNotFoundError passes through: the caller says what to do
        self.stats.add(len(data))
        return data

    def list_index_files(self, crawl: str) -> list[str]:
        """The index files of CRAWL from a listing of the bucket (for a crawl without
        ``cc-index-table.paths.gz``), relative to the base."""
        import pyarrow.fs as pafs

        folder = self._key(f"{INDEX_PREFIX}crawl={crawl}")
        sel = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
        infos = self._call(folder, lambda: self.fs.get_file_info(sel))
        self.stats.add(0)
        root = self._key("")
        return sorted(i.path[len(root):] for i in infos
                      if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
