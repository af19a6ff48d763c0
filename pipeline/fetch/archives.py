"""Pages from web archives: the CDX lookup, the choice of capture, the raw record.

``[fetch] source = "archive"`` takes every URL from the archives listed in
``[fetch] archive_cdx`` (the faithful replica: the page as it was when Reddit
voted on it); ``"live-then-archive"`` only the URLs whose live fetch failed for
good (``ARCHIVE_FALLBACK``). The archives are tried in order; for each:

1. CDX lookup: ``{cdx_url}?url=URL&output=json&limit=N``. pywb (the software of
   Common Crawl's index server) answers one JSON object per line with the fields
   ``timestamp url mime status filename offset length`` (pywb manual, "CDX Server
   API": https://pywb.readthedocs.io/en/latest/manual/cdxserver_api.html); the
   Wayback Machine's CDX server answers a JSON array of arrays whose first row
   names the fields (``original mimetype statuscode``; internetarchive/wayback,
   wayback-cdx-server/README.md). Both are read. Common Crawl's index server
   answers 404 with ``{"message": "No Captures found ..."}`` for an unknown URL:
   that is "not archived", not an error. Every answer is kept in a cache on disk
   (``archive_cdx_cache.jsonl`` in the fetch directory), so a re-run, a resumed
   run or a retry never asks the same archive about the same URL twice.
2. The capture: status 200 and an HTML type, none after ``archive_cutoff``
   (default 2017-12-31), closest in time to the URL's first Reddit submission
   (``created_utc`` of the link; without it, the cut-off day or, with no cut-off,
   now).
3. The raw record. ``kind = "cdx"`` (Wayback Machine, pywb): the raw capture at
   ``{replay_prefix}/{timestamp}id_/{url}`` ("id_" replays the original bytes and
   headers without rewriting; checked against pywb 2.10 in
   tests/pipeline/test_archive.py). ``kind = "commoncrawl"``: an HTTP Range
   request for ``length`` bytes at ``offset`` of ``{data_prefix}{filename}``: one
   gzip member holding one WARC record (Sebastian Nagel, common-crawl list, "extract
   data using offset value in CDX API", 2016); the answer must be 206 and exactly
   that long.

The page is written to the project's WARC as a response record whose
``WARC-Target-URI`` is the link's URL and ``WARC-Date`` the capture time, with
its provenance: ``WARC-Source-URI`` (the archive URL read), ``WebText-Archive``
(the archive's name), ``WebText-Capture-Timestamp`` and ``WebText-Capture-URI``
(the URL as the archive holds it). Extraction reads it like any page.

Outcomes (one per URL, see pipeline/fetch/): ``ok`` with ``source =
"archive:<name>"``; ``not_archived`` (no archive holds any capture);
``archive_no_html_capture`` (captures, none a 200 HTML page); ``archive_after_cutoff``
(a 200 HTML page only after the cut-off); ``archive_error`` (an archive could not
be read: 429/503 after retries, no answer in time, an answer that is not a CDX
listing or a WARC record; transient: a later run asks again). When archives
disagree the first of archive_error, archive_after_cutoff, archive_no_html_capture,
not_archived in that order is the outcome; ``archive_tried`` says what each said.

Politeness: each archive has its own limit (``rate`` requests per second,
``concurrency`` requests in flight; both 1 by default: the Wayback Machine's CDX
API allows about 60 requests a minute per address, Common Crawl asks users not to
overload its single index server), retries with back-off on 429 and 503
(``Retry-After`` honoured, and it pauses every worker's requests to that
archive), and ``archive_timeout_s`` bounds the time spent on one URL. Safety:
archive hosts come only from the configuration, every request goes through the
live fetcher's connection layer (the same public-address check and pinning,
``allow_private_addresses`` and ``resolve`` included), answers are read to at
most ``max_bytes``, and no answer is ever executed or unpickled (JSON and WARC
only).
"""

from __future__ import annotations

import gzip
import io
import re
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import orjson

from pipeline.core.archive_tables import Archive, _parse_date
from pipeline.core.config import FetchConfig
from pipeline.core.urls import InvalidURL, normalize_url

CACHE = "archive_cdx_cache.jsonl"


HTML_MIMES = ("text/html", "application/xhtml+xml")
# Live outcomes that say the page is gone for good: the archive is asked.
# (dns_error only when the name does not exist; see ``wants_archive``.)
ARCHIVE_FALLBACK = frozenset({"http_404", "http_410", "http_451", "too_many_redirects"})
ARCHIVE_OUTCOMES = ("archive_error", "archive_after_cutoff", "archive_no_html_capture", "not_archived")


class ArchiveFailure(Exception):
    """An archive that could not be read for this URL (the outcome archive_error)."""


@dataclass
class Capture:
    timestamp: str  # 14 digits, UTC
    url: str
    mime: str
    status: str
    filename: str | None = None
    offset: str | None = None
    length: str | None = None
    crawl: str | None = None  # cc-index: the crawl the capture is from

    @property
    def epoch(self) -> float:
        return datetime.strptime(self.timestamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()

    def row(self) -> list:
        return [self.timestamp, self.url, self.mime, self.status, self.filename, self.offset, self.length]


_FIELDS = {"timestamp": "timestamp", "url": "url", "original": "url", "mime": "mime", "mimetype": "mime",
           "status": "status", "statuscode": "status", "filename": "filename", "offset": "offset", "length": "length"}


def _capture(d: dict) -> Capture:
    f = {_FIELDS[k]: v for k, v in d.items() if k in _FIELDS}
    ts = str(f.get("timestamp") or "")
    if not ts.isdigit() or not 4 <= len(ts) <= 14 or not f.get("url"):
        raise ArchiveFailure(f"CDX line without a timestamp or url: {str(d)[:200]}")
    ts = (ts + "0101000000")[:14] if len(ts) < 14 else ts  # pad a short timestamp to its lower bound
    try:
        datetime.strptime(ts, "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise ArchiveFailure(f"CDX timestamp {ts!r} is not a date") from exc
    s = lambda k: None if f.get(k) is None else str(f[k])  # noqa: E731
    return Capture(ts, str(f["url"]), (s("mime") or "").lower(), s("status") or "", s("filename"), s("offset"),
                   s("length"))


def parse_cdx(status: int, body: bytes) -> list[Capture]:
    """A CDX answer -> captures; ArchiveFailure for anything that is not one."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ArchiveFailure("CDX answer is not UTF-8 text") from exc
    if status == 404 and "no captures found" in text.lower():
        return []  # Common Crawl's index server: an unknown URL
    if status != 200:
        raise ArchiveFailure(f"CDX answered HTTP {status}: {text[:200]!r}")
    if not text:
        return []
    try:
        if text.startswith("["):  # the Wayback Machine: [[field names], [values], ...]
            rows = orjson.loads(text)
            if not rows:
                return []
            if not (isinstance(rows, list) and all(isinstance(r, list) for r in rows)):
                raise ArchiveFailure("CDX JSON array is not a list of rows")
            header = rows[0]
            return [_capture(dict(zip(header, r))) for r in rows[1:]]
        out = []
        for line in text.splitlines():  # pywb / Common Crawl: one JSON object a line
            if line.strip():
                d = orjson.loads(line)
                if not isinstance(d, dict):
                    raise ArchiveFailure(f"CDX line is not a JSON object: {line[:200]!r}")
                out.append(_capture(d))
        return out
    except orjson.JSONDecodeError as exc:
        raise ArchiveFailure(f"CDX answer is not JSON: {text[:120]!r}") from exc


def cutoff_epoch(cfg: FetchConfig) -> float | None:
    """The first second after the cut-off day, or None."""
    day = _parse_date(cfg.archive_cutoff, "fetch.archive_cutoff")
    return None if day is None else day + 86_400


def same_page(captured: str, asked: str) -> bool:
    """Is a capture of CAPTURED one of ASKED: the same URL, or the same after webtext's
    normalisation (scheme, ``www``, default port, fragment, tracking arguments,
    argument order), or the same but for letter case."""
    from pipeline.fetch.ccindex import match_level

    try:
        norm = normalize_url(asked)
    except InvalidURL:
        return captured == asked
    return match_level(captured, asked, norm) is not None


def choose_capture(captures: list[Capture], target: float, cutoff: float | None) -> tuple[Capture | None, str]:
    """The 200 HTML capture before the cut-off closest to ``target`` (ties: the
    earlier), or None and why not."""
    if not captures:
        return None, "not_archived"
    ok = [c for c in captures if c.status == "200" and c.mime.split(";", 1)[0].strip() in HTML_MIMES]
    if not ok:
        return None, "archive_no_html_capture"
    inside = [c for c in ok if cutoff is None or c.epoch < cutoff]
    if not inside:
        return None, "archive_after_cutoff"
    return min(inside, key=lambda c: (abs(c.epoch - target), c.epoch)), "ok"


class CdxCache:
    """``archive_cdx_cache.jsonl``: every CDX answer, keyed by archive, CDX URL and
    the URL asked about; appended and fsynced, a torn last line dropped."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.rows: dict[str, list] = {}
        good_end = 0
        if path.is_file():
            with open(path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        rec = orjson.loads(line)
                        self.rows[rec["k"]] = rec["rows"]
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        break
                    good_end += len(line)
            if good_end < path.stat().st_size:
                with open(path, "r+b") as fh:
                    fh.truncate(good_end)
        self.fh = None

    @staticmethod
    def key(archive: Archive, url: str) -> str:
        return f"{archive.name}\t{archive.cdx_url}\t{url}"

    def get(self, archive: Archive, url: str) -> list[Capture] | None:
        rows = self.rows.get(self.key(archive, url))
        return None if rows is None else [Capture(*r) for r in rows]

    def put(self, archive: Archive, url: str, captures: list[Capture]) -> None:
        import os

        k = self.key(archive, url)
        rows = [c.row() for c in captures]
        line = orjson.dumps({"k": k, "rows": rows}) + b"\n"
        with self.lock:
            if self.fh is None:
                self.fh = open(self.path, "ab")
            self.fh.write(line)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.rows[k] = rows

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


@dataclass
class ArchivedPage:
    archive: str
    capture: Capture
    source_uri: str  # the archive URL the record was read from
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def captured_at(self) -> str:
        return datetime.strptime(self.capture.timestamp, "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")

    def warc_headers(self) -> dict:
        h = {"WARC-Date": self.captured_at, "WARC-Source-URI": self.source_uri, "WebText-Archive": self.archive,
             "WebText-Capture-Timestamp": self.capture.timestamp, "WebText-Capture-URI": self.capture.url}
        if self.capture.crawl:  # cc-index: which crawl, and where in its WARC file
            h.update({"WebText-Capture-Crawl": self.capture.crawl, "WebText-Capture-Offset": self.capture.offset or ""})
        return h


def retry_after(resp) -> float | None:
    """A response's Retry-After in seconds (delta-seconds or an HTTP date), None when it
    has none or an unreadable one."""
    ra = {k.lower(): v for k, v in resp.headers}.get("retry-after", "").strip()
    if ra.isdigit():
        return float(ra[:12])
    if ra:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - time.time())
    return None


class ArchiveClient:
    """Looks URLs up in the configured archives, politely; shared by the fetch workers."""

    def __init__(self, cfg: FetchConfig, fetcher, fetch_dir: Path, part: int | None = None):
        from pipeline.fetch.webclient import HostThrottle

        self.cfg = cfg
        self.fetch_dir, self.part = Path(fetch_dir), part
        self._choices: dict[str, dict[str, dict]] = {}  # cc-index: archive -> link id -> chosen capture
        self._s3: dict = {}  # cc-index over s3://: archive -> its S3Source (rate and concurrency per process)
        self._s3_lock = threading.Lock()
        self.fetcher = fetcher
        self.archives = cfg.archives()
        self.cutoff = cutoff_epoch(cfg)
        self.cache = CdxCache(Path(fetch_dir) / CACHE)
        self.throttles = {a.name: HostThrottle(a.concurrency, 1.0 / a.rate) for a in self.archives}
        self.lock = threading.Lock()
        self.counts = {"cdx_requests": 0, "cdx_cached": 0, "record_requests": 0, "retries": 0}

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def close(self) -> None:
        self.cache.close()

    # --- one request, politely ------------------------------------------------------

    def _request(self, archive: Archive, url: str, budget: list[float], headers: dict | None = None,
                 max_bytes: int | None = None):
        """GET through the live fetcher's connection layer, throttled per archive,
        retried on 429/503 and connection errors with back-off, within ``budget``
        (a one-item list: seconds left for this URL)."""
        import requests

        from pipeline.fetch.netsafety import FetchRefused

        cfg = self.cfg
        throttle = self.throttles[archive.name]
        attempt = 0
        while True:
            if budget[0] <= 0:
                raise ArchiveFailure(f"{archive.name}: no answer within archive_timeout_s = {cfg.archive_timeout_s}s")
            if not cfg.allow_private_addresses:
                self.fetcher.check(url)  # the same public-address check and pinning as a live page
            throttle.acquire(archive.name)
            t0 = time.monotonic()
            try:
                resp, err = self.fetcher._get(url, max_bytes or cfg.max_bytes, headers=headers), None
            except FetchRefused as exc:
                resp, err = None, f"{exc.outcome}: {exc.detail}"
            except (requests.exceptions.RequestException, OSError) as exc:
                resp, err = None, f"{type(exc).__name__}: {exc}"
            finally:
                throttle.release(archive.name)
                budget[0] -= time.monotonic() - t0
            if resp is not None and resp.status not in (429, 503):
                return resp
            if attempt >= cfg.retries:
                raise ArchiveFailure(f"{archive.name}: {err or f'HTTP {resp.status}'} after {attempt + 1} attempt(s)")
            attempt += 1
            self._count("retries")
            wait = cfg.backoff_s * 2 ** (attempt - 1)
            asked = retry_after(resp) if resp is not None else None
            if asked is not None:
                wait = asked
            # checked before the throttle is touched: a Retry-After of a billion seconds
            # fails this URL (archive_error, retried next build), it never stalls the others
            if wait > budget[0]:
                raise ArchiveFailure(f"{archive.name}: asked to wait {wait:.0f}s, more than the "
                                     f"{max(budget[0], 0):.0f}s left of archive_timeout_s")
            if asked is not None:  # every worker's requests to this archive wait too
                with throttle.lock:
                    throttle.next_ok[archive.name] = max(throttle.next_ok[archive.name], time.monotonic() + wait)
            time.sleep(wait)
            budget[0] -= wait

    # --- CDX ------------------------------------------------------------------------

    def captures(self, archive: Archive, url: str, budget: list[float]) -> list[Capture]:
        cached = self.cache.get(archive, url)
        if cached is not None:
            self._count("cdx_cached")
            return cached
        sep = "&" if "?" in archive.cdx_url else "?"
        q = f"{archive.cdx_url}{sep}url={quote(url, safe='')}&output=json&limit={archive.limit}"
        self._count("cdx_requests")
        resp = self._request(archive, q, budget)
        if resp.truncated:
            raise ArchiveFailure(f"{archive.name}: CDX answer larger than max_bytes")
        caps = parse_cdx(resp.status, resp.body)
        self.cache.put(archive, url, caps)
        return caps

    # --- the record -----------------------------------------------------------------

    def record(self, archive: Archive, cap: Capture, budget: list[float]) -> ArchivedPage:
        self._count("record_requests")
        if archive.kind in ("commoncrawl", "cc-index"):
            return self._cc_record(archive, cap, budget)
        return self._replay_record(archive, cap, budget)

    def _replay_record(self, archive: Archive, cap: Capture, budget: list[float]) -> ArchivedPage:
        from urllib.parse import urljoin

        src = f"{archive.prefix.rstrip('/')}/{cap.timestamp}id_/{cap.url}"
        host = urlsplit(archive.prefix).netloc
        for _ in range(4):  # the Wayback Machine redirects id_ to the nearest capture it holds
            resp = self._request(archive, src, budget)
            if resp.status in (301, 302, 303, 307, 308):
                loc = dict((k.lower(), v) for k, v in resp.headers).get("location", "")
                nxt = urljoin(src, loc)
                m = re.search(r"/(\d{14})id_/(.+)$", nxt)
                if urlsplit(nxt).netloc != host or not m:
                    raise ArchiveFailure(f"{archive.name}: raw capture redirects away, to {nxt[:200]!r}")
                if not same_page(m.group(2), cap.url):
                    raise ArchiveFailure(f"{archive.name}: raw capture of {cap.url[:200]!r} redirects to a capture of "
                                         f"another page, {m.group(2)[:200]!r}")
                src = nxt
                cap = Capture(m.group(1), m.group(2), cap.mime, cap.status)
                continue
            if resp.status != 200:
                raise ArchiveFailure(f"{archive.name}: raw capture {src} answered HTTP {resp.status}")
            if resp.truncated:
                raise ArchiveFailure(f"{archive.name}: raw capture larger than max_bytes")
            return ArchivedPage(archive.name, cap, src, resp.status, resp.reason, resp.headers, resp.body)
        raise ArchiveFailure(f"{archive.name}: too many redirects for the raw capture")

    def _cc_record(self, archive: Archive, cap: Capture, budget: list[float]) -> ArchivedPage:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        fn, off, ln = cap.filename or "", cap.offset or "", cap.length or ""
        if not (off.isdigit() and ln.isdigit() and int(ln) > 0):
            raise ArchiveFailure(f"{archive.name}: CDX line without a usable offset/length ({off!r}, {ln!r})")
        bad = (not fn or fn.startswith("/") or "\\" in fn or "://" in fn or any(ch in fn for ch in "?#")
               or ".." in fn.split("/") or any(ord(ch) < 33 for ch in fn))
        if bad:
            raise ArchiveFailure(f"{archive.name}: CDX file name {fn[:200]!r} refused (must be a relative path)")
        offset, length = int(off), int(ln)
        if length > self.cfg.max_bytes:
            raise ArchiveFailure(f"{archive.name}: record of {length:,} bytes is larger than max_bytes")
        if archive.local:  # a cc-index mirror in a folder
            src = str(Path(archive.prefix) / fn)
            try:
                with open(src, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(length)
            except OSError as exc:
                raise ArchiveFailure(f"{archive.name}: {src}: {exc}") from exc
            resp = type("R", (), {"status": 206, "body": data, "truncated": False})()
        elif archive.s3:  # Common Crawl's bucket over S3 (pipeline/fetch/ccs3.py)
            from pipeline.fetch.ccindex import IndexError_

            src = archive.prefix + fn
            try:
                data = self._s3_source(archive).read(fn, offset, length)
            except IndexError_ as exc:
                raise ArchiveFailure(f"{archive.name}: {exc}") from exc
            resp = type("R", (), {"status": 206, "body": data, "truncated": False})()
        else:
            src = archive.prefix.rstrip("/") + "/" + quote(fn, safe="/-_.~")
            resp = self._request(archive, src, budget, headers={"Range": f"bytes={offset}-{offset + length - 1}",
                                                                "Accept-Encoding": "identity"}, max_bytes=length)
        if resp.status != 206:
            raise ArchiveFailure(f"{archive.name}: byte range of {src} answered HTTP {resp.status}, not 206")
        if len(resp.body) != length or resp.truncated:
            raise ArchiveFailure(f"{archive.name}: byte range of {src} gave {len(resp.body):,} bytes, not {length:,}")
        if not resp.body.startswith(b"\x1f\x8b"):  # each record is its own gzip member
            raise ArchiveFailure(f"{archive.name}: bytes at {src} {offset}+{length} are not a WARC record "
                                 "(not a gzip member)")
        try:
            it = ArchiveIterator(io.BytesIO(resp.body))
            record = next(iter(it), None)
            if record is None or not record.rec_headers.get_header("WARC-Type"):
                raise ArchiveFailure(f"{archive.name}: bytes at {src} {offset}+{length} are not a WARC record")
            if record.rec_type != "response" or record.http_headers is None:
                raise ArchiveFailure(f"{archive.name}: record at {src} {offset} is a {record.rec_type!r} record, "
                                     "not an HTTP response")
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            if uri != cap.url:
                raise ArchiveFailure(f"{archive.name}: record at {src} {offset} is for {uri[:200]!r}, the index "
                                     f"said {cap.url[:200]!r}")
            status = int(record.http_headers.get_statuscode() or 0)
            body = record.content_stream().read(self.cfg.max_bytes + 1)  # de-chunked and decoded, bounded
        except (ArchiveLoadFailed, OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile) as exc:
            raise ArchiveFailure(f"{archive.name}: bytes at {src} {offset}+{length} are not a WARC record "
                                 f"({type(exc).__name__}: {exc})"[:500]) from exc
        if len(body) > self.cfg.max_bytes:
            raise ArchiveFailure(f"{archive.name}: decoded record larger than max_bytes")
        if status != 200:
            raise ArchiveFailure(f"{archive.name}: record at {src} {offset} has status {status}, the index said 200")
        # The body is stored decoded: its transfer and content encodings are dropped.
        drop = ("content-encoding", "transfer-encoding", "content-length")
        headers = [(k, v) for k, v in record.http_headers.headers if k.lower() not in drop]
        headers.append(("Content-Length", str(len(body))))
        reason = record.http_headers.statusline.split(" ", 1)[1] if " " in record.http_headers.statusline else "OK"
        return ArchivedPage(archive.name, cap, src, status, reason, headers, body)

    # --- one URL --------------------------------------------------------------------

    def _s3_source(self, archive: Archive):
        with self._s3_lock:
            if archive.name not in self._s3:
                from pipeline.fetch.ccs3 import S3Source

                self._s3[archive.name] = S3Source(archive.prefix, archive.rate, archive.concurrency,
                                                  self.cfg.archive_timeout_s)
            return self._s3[archive.name]

    def cc_choice(self, archive: Archive, link_id: str | None) -> tuple[Capture | None, str]:
        """A cc-index archive's answer for a link: the capture the bulk lookup chose
        before the crawl (``pipeline/fetch/ccarchive.py``), or why there is none."""
        if archive.name not in self._choices:
            from pipeline.fetch.ccarchive import read_choices

            self._choices[archive.name] = read_choices(self.fetch_dir, archive, self.part)
        ch = self._choices[archive.name].get(link_id) if link_id else None
        if ch is None:
            return None, "not_archived"  # not looked up (a link not spooled this build): counted as not held
        if ch["outcome"] != "ok":
            return None, ch["outcome"]
        ts = ch["fetch_time"].strftime("%Y%m%d%H%M%S")
        return Capture(ts, ch["url"], ch["mime"] or "", "200", ch["warc_filename"], str(ch["warc_record_offset"]),
                       str(ch["warc_record_length"]), ch.get("crawl")), "ok"

    def lookup(self, url: str, created_utc: float | None, link_id: str | None = None
               ) -> tuple[str, ArchivedPage | None, dict]:
        """(outcome, page or None, details) for one URL, over the archives in order."""
        target = created_utc if created_utc else (self.cutoff - 1 if self.cutoff else time.time())
        budget = [self.cfg.archive_timeout_s]
        tried: dict[str, str] = {}
        errors: list[str] = []
        for archive in self.archives:
            try:
                if archive.kind == "cc-index":
                    cap, why = self.cc_choice(archive, link_id)
                else:
                    caps = self.captures(archive, url, budget)
                    # only captures of the URL asked (or its scheme/www/tracking/case
                    # variants): an archive that answers with another page is not believed
                    mine = [c for c in caps if same_page(c.url, url)]
                    if len(mine) < len(caps):
                        self._count("captures_of_other_urls", len(caps) - len(mine))
                    cap, why = choose_capture(mine, target, self.cutoff)
                if cap is None:
                    tried[archive.name] = why
                    continue
                page = self.record(archive, cap, budget)
                tried[archive.name] = "ok"
                return "ok", page, {"archive_tried": tried}
            except ArchiveFailure as exc:
                tried[archive.name] = "archive_error"
                errors.append(str(exc)[:300])
        outcome = next(o for o in ARCHIVE_OUTCOMES if o in tried.values() or o == "not_archived")
        info: dict = {"archive_tried": tried}
        if errors:
            info["archive_error"] = "; ".join(errors)[:1000]
        return outcome, None, info


# Live failures that may pass (a server down today, a refused or reset connection, a TLS
# failure, a host that never answers): the archives are asked in the same build; when none
# holds the page, the live outcome stands and keeps its retry schedule.
ARCHIVE_TRANSIENT = frozenset({"connection_error", "timeout", "fetch_error"})
# 200 pages that are not the page linked (pipeline/fetch/deadpages.py).
ARCHIVE_DEAD_PAGES = frozenset({"parked_domain", "soft_404"})


def wants_archive(outcome: str, info: dict) -> bool:
    """Is the live answer a dead link (so that live-then-archive asks the archives)? Final
    failures (404, 410, 451, a redirect loop, a name that no longer exists), parked
    domains and soft 404s, and the live failures that may pass (``ARCHIVE_TRANSIENT``)."""
    if outcome in ARCHIVE_FALLBACK or outcome in ARCHIVE_DEAD_PAGES or outcome in ARCHIVE_TRANSIENT:
        return True
    return outcome == "dns_error" and str(info.get("error", "")).startswith("no such host")
