"""Fetching pages politely and safely into WARC files, resumably, or replaying WARCs.

URLs are partitioned by a hash of their host (see "partitions" below); each
partition is fetched by one process with its own outcome log
(``outcomes/part-PPPP.jsonl``) and WARC files. Every URL ends in exactly one
recorded outcome, appended to its partition's log:

    ok            HTML kept (a response record in a WARC)
    http_<code>   a non-2xx final status (404, 410, 500 after retries, ...)
    not_html      a content type that is not HTML/XHTML (images, PDFs, ...)
    binary        served as HTML, but the bytes are binary
    too_large     Content-Length or the body passed ``max_bytes`` (stopped reading)
    decoded_too_large  the gzip/deflate body expands past ``max_bytes`` (a gzip bomb)
    timeout       connect or whole-response deadline passed (a trickling server)
    too_many_redirects, refused_private_address, robots_disallowed,
    connection_error, invalid_url, not_in_archive (replay)
    not_archived, archive_no_html_capture, archive_after_cutoff, archive_error
                  ``[fetch] source = "archive"`` or ``"live-then-archive"``: no
                  archive had the page (pipeline/archive.py); an ``ok`` page from
                  an archive has ``source = "archive:<name>"``, a live one ``"live"``

Raw responses go to WARC (warcio, pipeline/warcstore.py): a request and a response record for every
HTTP response received, the body cut at ``max_bytes`` with ``WARC-Truncated``
when it was too long. Each record is serialised in memory and written with one
``write`` + ``fsync`` before its outcome line is appended; a new run opens a new
WARC file and first trims any file of a killed run back to its last complete
record, so warcio always reads every file whole.

Safety: unless ``allow_private_addresses``, each host is resolved once per hop
and every address it has must be public; connections then go to that checked
address (pinned in the connection layer, TLS still verified against the host
name), so a second DNS answer cannot point the request at 127.0.0.1 or a cloud
metadata address (DNS rebinding).

Final and transient outcomes: ``timeout``, ``connection_error``, ``dns_error``,
``fetch_error``, ``http_429`` and ``http_5xx`` say nothing about the page, only
about the site or the network at that moment: they are *transient*. Every other
outcome is *final*. Resuming: a URL with a final outcome is never fetched again;
one with a transient outcome is fetched again by a later run once its back-off
has passed (``retry_after_s`` doubling per attempt), up to ``max_attempts``
attempts, after which it counts as ``given_up``. Each attempt appends a line;
the last line of a URL is its outcome.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import orjson
import xxhash

from .config import FetchConfig
from .netsafety import FetchRefused, check_public, is_public_address, without_credentials  # noqa: F401 (re-exported)
from .summary import RunSummary, progress
from .warcstore import WarcSink, index_warcs, repair_warcs
from .webclient import DEADLINES, Fetcher, HostThrottle, Response  # noqa: F401 (re-exported)

# The stage's parts live in three modules: pipeline/netsafety.py (public addresses,
# pinned connections, credentials), pipeline/webclient.py (Fetcher: HTTP, robots.txt,
# throttle, deadlines, classify), pipeline/warcstore.py (WARC records, repair, index).
# The names above stay importable from here for older callers.

OUTCOMES = "outcomes.jsonl"


TRANSIENT = frozenset({"timeout", "connection_error", "dns_error", "fetch_error", "http_429", "archive_error"})


def is_transient(outcome: str) -> bool:
    """Could a later attempt succeed where this one failed (see the module's docstring)?"""
    return outcome in TRANSIENT or (outcome.startswith("http_5") and len(outcome) == 8)


def _epoch(stamp: str | None) -> float:
    try:
        return datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def retry_state(rec: dict, cfg: FetchConfig, now: float, retry_failed: bool = False) -> str:
    """What a run does with a URL whose last outcome is ``rec``: ``already_fetched``
    (final), ``retry`` (transient, back-off passed), ``waiting_retry`` or ``given_up``."""
    if not is_transient(rec.get("outcome", "")):
        return "already_fetched"
    if retry_failed:
        return "retry"
    attempts = int(rec.get("attempt") or 1)
    if attempts >= cfg.max_attempts:
        return "given_up"
    at = rec["fetched_epoch"] if "fetched_epoch" in rec else _epoch(rec.get("fetched_at"))
    due = at + cfg.retry_after_s * 2 ** (attempts - 1)
    return "retry" if now >= due else "waiting_retry"




























class OutcomeLog:
    """``outcomes.jsonl``: one line per attempt, appended and fsynced; the resume point.

    In memory only what resuming needs, per URL: (outcome, attempt, fetch time) of
    its last line (~150 bytes a URL), read line by line; the full records stay on
    disk (``read_outcomes``)."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done: dict[str, tuple[str, int, float]] = {}
        # url_norm -> "archive:<name>" for the URLs whose last outcome is a page from
        # an archive (the others' pages, if any, came live)
        self.archived: dict[str, str] = {}
        # url_norm -> (id, url, created_utc, Reddit fields) of the URLs whose last outcome is
        # transient: a build that reads only the new links retries them from here
        self.retry_rows: dict[str, tuple] = {}
        # The end of the last record of each WARC file that any line (not only a URL's
        # last) points at: a superseded attempt's record is still part of its file.
        self.warc_ends: dict[str, int] = defaultdict(int)
        outcomes: dict[str, str] = {}  # one string object per distinct outcome
        if path.is_file():
            good_end = 0
            torn = False
            with open(path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        torn = True
                        break  # a torn last line of a killed run
                    try:
                        rec = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        torn = True
                        break
                    self._remember(rec, outcomes)
                    good_end += len(line)
            if torn:
                with open(path, "r+b") as fh:
                    fh.truncate(good_end)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "ab")

    def _remember(self, rec: dict, outcomes: dict | None = None) -> None:
        o = rec["outcome"]
        if outcomes is not None:
            o = outcomes.setdefault(o, o)
        self.done[rec["url_norm"]] = (o, int(rec.get("attempt") or 1), _epoch(rec.get("fetched_at")))
        src = rec.get("source")
        if o == "ok" and src and src != "live":
            self.archived[rec["url_norm"]] = sys.intern(src)
        else:
            self.archived.pop(rec["url_norm"], None)
        if is_transient(o):  # what retrying it needs when no link row names it again
            self.retry_rows[rec["url_norm"]] = (rec.get("id"), rec["url"], rec.get("created_utc"),
                                                {f: rec[f] for f in LINK_FIELDS if rec.get(f) is not None} or None)
        else:
            self.retry_rows.pop(rec["url_norm"], None)
        self._note_end(rec)

    def state(self, url_norm: str) -> dict | None:
        """{outcome, attempt, fetched_epoch} of the URL's last attempt, or None."""
        t = self.done.get(url_norm)
        return None if t is None else {"outcome": t[0], "attempt": t[1], "fetched_epoch": t[2]}

    def add(self, rec: dict) -> None:
        line = orjson.dumps(rec) + b"\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self._remember(rec)

    def _note_end(self, rec: dict) -> None:
        for r in [rec] + rec.get("warc_trail", []):
            if r.get("warc_file") and r.get("warc_record_end"):
                self.warc_ends[r["warc_file"]] = max(self.warc_ends[r["warc_file"]], r["warc_record_end"])

    def close(self) -> None:
        self.fh.close()








def _interleave_by_host(rows: list) -> list:
    """Round-robin over hosts so the workers spread across domains (rows are
    (id, url, url_norm) tuples or dicts)."""
    from collections import deque

    by_host: dict[str, deque] = {}
    for r in rows:
        norm = r[2] if isinstance(r, tuple) else r["url_norm"]
        by_host.setdefault(norm.split("/", 1)[0], deque()).append(r)
    queues = deque(by_host.values())
    out = []
    while queues:
        q = queues.popleft()
        out.append(q.popleft())
        if q:
            queues.append(q)
    return out


def _fetch(links: Iterable[dict], out: Path, cfg: FetchConfig, log_path: Path, warc_prefix: str,
           reuse_outcomes: Iterable[str | Path] = (), retry_failed: bool = False, progress_bar: bool = True,
           part: tuple[int, int] | None = None) -> RunSummary:
    """Fetch LINKS with the outcome log LOG_PATH and WARC files named WARC_PREFIX-...
    (PART: (partition, partitions): only its URLs of REUSE_OUTCOMES are kept in memory);
    returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    log = OutcomeLog(log_path)
    summary = RunSummary("fetch", unit="urls")
    for note in repair_warcs(out / "warc", log.warc_ends, warc_prefix):
        summary.note(note)
    earlier: set[str] = set()
    for d in reuse_outcomes:
        if Path(d).resolve() == out.resolve():
            continue
        for p in outcome_files(d):
            with open(p, "rb") as fh:
                for line in fh:
                    if line.strip():
                        u = orjson.loads(line)["url_norm"]
                        if part is None or host_partition(u, part[1]) == part[0]:
                            earlier.add(u)
    # The links are read as a stream; what is pending is kept as compact tuples
    # (~300 bytes a URL), then interleaved by host.
    todo: list[tuple] = []
    now = time.time()
    retrying = 0
    archive_only = 0
    from .archive import ARCHIVE_FALLBACK, ArchiveClient, wants_archive

    given: set[str] = set()
    for r in links:
        summary.n_in += 1
        given.add(r["url_norm"])
        prev = log.state(r["url_norm"])
        meta = {f: r[f] for f in LINK_FIELDS if r.get(f) is not None} or None
        row = (r.get("id"), r["url"], r["url_norm"], r.get("created_utc"), False, meta)
        if prev is not None:
            if cfg.source != "live" and prev["outcome"] in ARCHIVE_FALLBACK:
                archive_only += 1  # dead in an earlier live run, never asked of the archives
                todo.append(row[:4] + (True, meta))
                continue
            state = retry_state(prev, cfg, now, retry_failed)
            if state != "retry":
                summary.drop(state)
                continue
            retrying += 1
            todo.append(row)
        elif r["url_norm"] in earlier:
            summary.drop("fetched_in_earlier_build")
        else:
            todo.append(row)
    del earlier
    # URLs whose last attempt failed transiently and whose back-off has passed, that no
    # row named (a monthly build gives fetch only the links new since its last run):
    # retried from the log. Those still waiting are counted in extra, not as input.
    for url_norm, (doc_id, url, created_utc, meta) in list(log.retry_rows.items()):
        if url_norm not in given and retry_state(log.state(url_norm), cfg, now, retry_failed) == "retry":
            summary.n_in += 1
            retrying += 1
            todo.append((doc_id, url, url_norm, created_utc, False, meta))
    del given
    todo = _interleave_by_host(todo)
    sink = WarcSink(out / "warc", cfg.warc_max_bytes, prefix=warc_prefix)
    fetcher = Fetcher(cfg)
    archives = ArchiveClient(cfg, fetcher, out) if cfg.source != "live" else None

    def work(row: tuple) -> dict:
        doc_id, raw_url, url_norm, created_utc, skip_live, meta = row
        url = without_credentials(raw_url)
        fetched_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        prev = log.state(url_norm)
        rec = {"id": doc_id, "url": url, "url_norm": url_norm, "fetched_at": fetched_at,
               "attempt": prev["attempt"] + 1 if prev else 1}
        if meta:  # the link's Reddit fields travel with every attempt (extract reads an ok page's;
            rec.update(meta)  # a retry from the log, with no link row, takes them from the last one)
        if cfg.source == "archive" or skip_live:
            outcome, resp, info = (prev["outcome"] if skip_live else None), None, {}
        else:
            try:
                outcome, resp, info = fetcher.fetch(url)
            except FetchRefused as exc:
                outcome, resp, info = exc.outcome, None, {"error": exc.detail}
            except Exception as exc:  # a bug or an unforeseen library error: recorded, never fatal
                outcome, resp, info = "fetch_error", None, {"error": f"{type(exc).__name__}: {exc}"[:500]}
        page = None
        if archives is not None and (cfg.source == "archive" or skip_live or wants_archive(outcome, info)):
            live_outcome = outcome
            try:
                outcome, page, arc_info = archives.lookup(url, created_utc)
            except Exception as exc:  # a bug or an unforeseen library error: recorded, never fatal
                outcome, page, arc_info = "archive_error", None, {"archive_error": f"{type(exc).__name__}: {exc}"[:500]}
            if live_outcome is not None:
                rec["live_outcome"] = live_outcome
            info.update(arc_info)
            if resp is not None:  # the live answer (a 404 page, ...) stays in the WARC, as a trail record
                info.setdefault("_responses", []).append(resp)
                rec["live_status"] = resp.status
                resp = None
        rec["outcome"] = outcome
        if outcome == "ok":
            rec["source"] = f"archive:{page.archive}" if page is not None else "live"
        trail = info.pop("_responses", [])
        rec.update({k: v for k, v in info.items() if v})
        for earlier_resp in trail:  # redirect hops and retried answers: recorded too, before the last
            name, offset, length, end = sink.write(earlier_resp, fetched_at)
            rec.setdefault("warc_trail", []).append({"url": earlier_resp.url, "status": earlier_resp.status,
                                                     "warc_file": name, "warc_offset": offset, "warc_record_end": end})
        if page is not None:
            # WARC-Target-URI is the link's URL, WARC-Date the capture time, and the
            # provenance in WARC-Source-URI and WebText-* headers (pipeline/archive.py)
            resp = Response(url, page.status, page.reason, page.headers, page.body, None)
            rec.update(captured_at=page.captured_at, capture_timestamp=page.capture.timestamp,
                       capture_url=page.capture.url, archive_url=page.source_uri)
            warc_extra, with_request = page.warc_headers(), False
        else:
            warc_extra, with_request = None, True
        if resp is not None:
            rec["status"] = resp.status
            rec["final_url"] = resp.url
            rec["content_type"] = dict((k.lower(), v) for k, v in resp.headers).get("content-type")
            name, offset, length, end = sink.write(resp, fetched_at, warc_extra, with_request)
            rec["warc_file"] = name
            rec["warc_offset"] = offset
            rec["warc_length"] = length
            rec["warc_record_end"] = end
        return rec

    outcomes: dict[str, int] = defaultdict(int)
    sources: dict[str, int] = defaultdict(int)
    # At most a few tasks per worker are queued: memory does not follow the URL list,
    # and outcomes are written from the first response on.
    window = max(4, 2 * cfg.workers)
    try:
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool, \
                progress(total=len(todo), desc=f"fetch {warc_prefix}", unit="urls", disable=None if progress_bar else True) as bar:
            inflight: set = set()

            def drain(block_until: int) -> None:
                nonlocal inflight
                while len(inflight) > block_until:
                    finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        rec = fut.result()
                        log.add(rec)
                        outcomes[rec["outcome"]] += 1
                        if rec["outcome"] == "ok":
                            sources[rec["source"]] += 1
                        bar.update(1)

            for i in range(len(todo)):
                row, todo[i] = todo[i], None  # drop each row once it is handed out
                inflight.add(pool.submit(work, row))
                drain(window - 1)
            drain(0)
    finally:
        sink.close()
        log.close()
        if archives is not None:
            archives.close()
    summary.n_out = outcomes.get("ok", 0)
    # The funnel's sources: pages live and from each archive, this run and over all runs.
    summary.extra["ok_by_source"] = dict(sorted(sources.items()))
    all_ok = sum(1 for t in log.done.values() if t[0] == "ok")
    by_source_all = _count_outcomes(log.archived.values())
    summary.extra["ok_by_source_all_runs"] = {"live": all_ok - sum(by_source_all.values()), **by_source_all}
    if archives is not None:
        summary.extra["archive_requests"] = dict(archives.counts)
        summary.extra["archive_only"] = archive_only
        for reason in ("not_archived", "archive_no_html_capture", "archive_after_cutoff", "archive_error"):
            summary.extra.setdefault("not_from_an_archive", {})[reason] = outcomes.get(reason, 0)
        summary.note("pages by source: " + (", ".join(f"{k} {v:,}" for k, v in sorted(sources.items())) or "none")
                     + f"; in no archive {sum(summary.extra['not_from_an_archive'].values()):,}")
    for k, v in outcomes.items():
        if k != "ok":
            summary.drop(k, v)
    summary.extra["outcomes_all_runs"] = _count_outcomes(t[0] for t in log.done.values())
    summary.extra["ok_all_runs"] = summary.extra["outcomes_all_runs"].get("ok", 0)
    summary.extra["retried"] = retrying
    # Where every URL with a transient last outcome stands after this run (the funnel's "waiting" and "given up").
    states: dict[str, int] = defaultdict(int)
    later = time.time()
    next_due = None
    for url_norm, (outcome, attempt, at) in log.done.items():
        if is_transient(outcome):
            given_up = retry_state({"outcome": outcome, "attempt": attempt, "fetched_epoch": at}, cfg, later) == "given_up"
            states["given_up" if given_up else "waiting_retry"] += 1
            if not given_up:
                due = at + cfg.retry_after_s * 2 ** (attempt - 1)
                next_due = due if next_due is None else min(next_due, due)
    summary.extra["waiting_retry"] = states.get("waiting_retry", 0)
    summary.extra["given_up"] = states.get("given_up", 0)
    # What a later build needs to know of this log without reading it: whether a retry
    # falls due (then the partition runs with no new link), and its all-runs figures.
    from .summary import atomic_write_json

    atomic_write_json(log_path.with_name(log_path.name.replace(".jsonl", ".state.json")),
                      {"next_due": next_due, **{k: summary.extra[k] for k in PARTITION_STATE}})
    summary.check()
    return summary.finish()


def fetch_links(links: Iterable[dict], out_dir: str | Path, cfg: FetchConfig, reuse_outcomes: Iterable[str | Path] = (),
                retry_failed: bool = False) -> RunSummary:
    """``webtext fetch``: fetch every link that has no final outcome yet into ``out_dir``.

    A link whose last outcome was transient is fetched again once its back-off
    has passed (``retry_failed``: now, given up or not); see the module's docstring.
    ``reuse_outcomes``: other fetch directories whose outcomes count as done (an
    incremental build reuses earlier WARCs instead of fetching again).

    ``cfg.source``: "live", "archive" (every URL from the archives) or
    "live-then-archive" (the archives for URLs whose live fetch failed for good,
    ``archive.wants_archive``). A URL whose last outcome is such a failure from an
    earlier live run is looked up in the archives without being fetched live again.
    A link's ``created_utc`` (its first Reddit submission), when the rows have it,
    is the time the archived capture is chosen closest to."""
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = spool_links(links, out, cfg)
    procs = cfg.processes or os.cpu_count() or 1
    reuse = tuple(str(d) for d in reuse_outcomes)
    if cfg.source != "live":
        # the archives' request rates are per ArchiveClient (one per partition): partitions
        # one after another in one process keep them as configured
        results = [fetch_partition(out, cfg, p, retry_failed, reuse, progress_bar=True) for p in parts]
        return combine_fetch(out, cfg, results)
    # Each process fetches its share of the partitions at once, its cfg.workers threads
    # shared among them: a partition alone may hold too few hosts to keep them busy.
    # ``fetch_partition`` alone (a cluster's task) is the same work for one partition.
    procs = max(1, min(procs, len(parts)))
    groups = [(str(out), cfg, parts[i::procs], retry_failed, reuse) for i in range(procs)]
    if procs == 1:
        results = _fetch_group(groups[0]) if parts else []
    else:
        results = _run_groups(groups)
    return combine_fetch(out, cfg, results)


# --- partitions -----------------------------------------------------------------------
#
# A fetch directory's URLs are split by a hash of their host into [fetch] partitions
# partitions (recorded in partitions.json; another value later is refused). Each has its
# own outcome log (outcomes/part-PPPP.jsonl), its own WARC files (warc/webtext-pPPPP-*)
# and its own work list for this build (todo/part-PPPP.jsonl, written by spool_links),
# so partitions run in separate processes (or on a cluster's workers) without sharing
# anything, and a host's politeness limits stay inside one partition.

LINK_FIELDS = ("created_utc", "score", "score_total", "subreddits", "reddit_ids")
LEGACY = "outcomes.legacy.jsonl"  # the first layout's single log, once split into partitions
LAYOUT = "partitions.json"


def host_partition(url_norm: str, n: int) -> int:
    """The partition of a normalised URL: a stable hash of its host (xxh64) mod N."""
    return xxhash.xxh64_intdigest(url_norm.split("/", 1)[0].encode("utf-8", "surrogatepass")) % n


def partition_log(fetch_dir: str | Path, part: int) -> Path:
    return Path(fetch_dir) / "outcomes" / f"part-{part:04d}.jsonl"


def layout(fetch_dir: str | Path, cfg: FetchConfig) -> dict:
    """FETCH_DIR's partitioning ({"partitions": N, "legacy_prefix": {"PPPP": bytes}}),
    made on first use. A directory of the first layout (one outcomes.jsonl) is taken
    over: its lines are split into the partition logs (their first legacy_prefix bytes,
    which extract knows it read as the old log) and the old log is kept as
    outcomes.legacy.jsonl; its WARC files stay where they are. A different
    ``partitions`` than the directory's is refused."""
    out = Path(fetch_dir)
    path = out / LAYOUT
    if path.is_file():
        lay = orjson.loads(path.read_bytes())
        if lay["partitions"] != cfg.partitions:
            from .config import ConfigError

            raise ConfigError(f"{out}: fetched with [fetch] partitions = {lay['partitions']}, not {cfg.partitions}; "
                              f"use {lay['partitions']} for this directory")
        return lay
    lay = {"partitions": cfg.partitions, "legacy_prefix": {}}
    legacy = out / OUTCOMES if (out / OUTCOMES).is_file() else out / LEGACY
    if legacy.is_file():  # split it; a kill on the way redoes the split (the logs are rewritten whole)
        (out / "outcomes").mkdir(parents=True, exist_ok=True)
        handles: dict[int, object] = {}
        try:
            with open(legacy, "rb") as fh:
                for line in fh:
                    try:
                        rec = orjson.loads(line) if line.endswith(b"\n") else None
                    except orjson.JSONDecodeError:
                        rec = None
                    if rec is None:
                        break  # a torn last line of a killed run, as OutcomeLog reads it
                    k = host_partition(rec["url_norm"], cfg.partitions)
                    if k not in handles:
                        handles[k] = open(partition_log(out, k).with_suffix(".jsonl.split"), "wb")
                    handles[k].write(line)
        finally:
            for h in handles.values():
                h.flush()
                os.fsync(h.fileno())
                h.close()
        for k in handles:
            os.replace(partition_log(out, k).with_suffix(".jsonl.split"), partition_log(out, k))
            lay["legacy_prefix"][f"{k:04d}"] = partition_log(out, k).stat().st_size
        if legacy.name == OUTCOMES:
            os.replace(legacy, out / LEGACY)
    from .summary import atomic_write_json

    atomic_write_json(path, lay)
    return lay


# The all-runs figures a partition records beside its log (outcomes/part-PPPP.state.json),
# which combine_fetch adds for partitions that had nothing to do in a build.
PARTITION_STATE = ("waiting_retry", "given_up", "ok_all_runs", "outcomes_all_runs", "ok_by_source_all_runs")


def partition_state(fetch_dir: str | Path, part: int) -> dict | None:
    p = partition_log(fetch_dir, part).with_name(f"part-{part:04d}.state.json")
    return orjson.loads(p.read_bytes()) if p.is_file() else None


def spool_links(rows: Iterable[dict], fetch_dir: str | Path, cfg: FetchConfig) -> list[int]:
    """Streams link rows into this build's per-partition work lists (todo/part-PPPP.jsonl;
    memory: one open file per partition). Returns the partitions that have work: new
    rows, or a URL whose retry falls due (or a log without its state file)."""
    out = Path(fetch_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = layout(out, cfg)["partitions"]
    todo = out / "todo"
    if todo.is_dir():
        for p in todo.glob("part-*.jsonl"):
            p.unlink()
    todo.mkdir(exist_ok=True)
    handles: dict[int, object] = {}
    try:
        for r in rows:
            k = host_partition(r["url_norm"], n)
            fh = handles.get(k)
            if fh is None:
                fh = handles[k] = open(todo / f"part-{k:04d}.jsonl", "wb")
            fh.write(orjson.dumps(r) + b"\n")
    finally:
        for fh in handles.values():
            fh.close()
    work = set(handles)
    now = time.time()
    for log in (out / "outcomes").glob("part-*.jsonl"):
        k = int(log.stem.split("-")[1])
        st = partition_state(out, k)
        if st is None or (st.get("next_due") is not None and st["next_due"] <= now):
            work.add(k)
    return sorted(work)


def _todo_rows(path: Path):
    if path.is_file():
        with open(path, "rb") as fh:
            for line in fh:
                yield orjson.loads(line)


def fetch_partition(fetch_dir: str | Path, cfg: FetchConfig, part: int, retry_failed: bool = False,
                    reuse_outcomes: Iterable[str | Path] = (), progress_bar: bool = False) -> dict:
    """One partition of the fetch stage: its work list from ``spool_links``, fetched with
    its own outcome log and WARC files. A pure function of its files and CFG (any
    process, a cluster's worker). Returns its summary as a dict."""
    out = Path(fetch_dir)
    n = layout(out, cfg)["partitions"]
    if not 0 <= part < n:
        raise ValueError(f"partition {part} of a fetch directory with {n} partitions")
    s = _fetch(_todo_rows(out / "todo" / f"part-{part:04d}.jsonl"), out, cfg, partition_log(out, part),
               f"webtext-p{part:04d}", reuse_outcomes, retry_failed, progress_bar, (part, n))
    s.extra["partition"] = part
    return s.to_dict()


def _fetch_group(a: tuple) -> list[dict]:
    """Partitions fetched at the same time in this process (threads), cfg.workers
    threads shared among them; their summaries."""
    from dataclasses import replace

    out, cfg, parts, retry_failed, reuse = a
    if len(parts) == 1:
        return [fetch_partition(out, cfg, parts[0], retry_failed, reuse)]
    each = replace(cfg, workers=max(2, cfg.workers // len(parts)))
    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="webtext-partition") as pool:
        return list(pool.map(lambda p: fetch_partition(out, each, p, retry_failed, reuse), parts))


def _run_groups(groups: list[tuple]) -> list[dict]:
    """Each group of partitions in a child process of its own (a fresh interpreter, not a
    fork of this threaded one), given its arguments as JSON on stdin. The pipe stays open
    while the child runs: a child whose parent is gone (a killed build) reads its end
    and stops at once, so no partition is left writing beside the next run's."""
    import dataclasses
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    procs = []
    try:
        for out, cfg, parts, retry_failed, reuse in groups:
            p = subprocess.Popen([sys.executable, "-c", "from pipeline.fetch import _group_main; _group_main()"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            p.stdin.write(orjson.dumps({"out": out, "cfg": dataclasses.asdict(cfg), "parts": parts,
                                        "retry_failed": retry_failed, "reuse": list(reuse)}) + b"\n")
            p.stdin.flush()
            procs.append(p)
        results = []
        with progress(total=sum(len(g[2]) for g in groups), desc="fetch partitions", unit="partitions") as bar:
            for p, g in zip(procs, groups):
                data = p.stdout.read()  # its one line, at its end
                if p.wait() != 0 or not data.strip():
                    raise RuntimeError(f"fetch of partitions {g[2]} failed (exit status {p.returncode}; its error above)")
                results += orjson.loads(data)
                bar.update(len(g[2]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()


def _group_main() -> None:
    """A child of ``_run_groups``: its partitions, then their summaries as JSON on stdout."""
    args = orjson.loads(sys.stdin.buffer.readline())

    def watch() -> None:
        while os.read(0, 4096):  # b"" when the parent closes the pipe or is gone
            pass
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="webtext-parent-watch").start()
    cfg = FetchConfig(**args["cfg"])
    res = _fetch_group((args["out"], cfg, args["parts"], args["retry_failed"], tuple(args["reuse"])))
    sys.stdout.buffer.write(orjson.dumps(res) + b"\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # not a normal shutdown: the watching thread is blocked reading stdin


def combine_fetch(fetch_dir: str | Path, cfg: FetchConfig, parts: list[dict]) -> RunSummary:
    """The fetch stage's summary from its partitions' (counts, drop reasons, and the
    per-source and retry figures added up); writes summary.fetch.json."""
    from .summary import combine_summaries

    s = combine_summaries("fetch", "urls", parts)
    s.notes = [n for n in s.notes if not n.startswith("pages by source: ")]
    # partitions that had nothing to do in this build still count in the all-runs figures
    ran = {p.get("extra", {}).get("partition") for p in parts}
    idle = []
    for log in sorted((Path(fetch_dir) / "outcomes").glob("part-*.jsonl")):
        k = int(log.stem.split("-")[1])
        st = partition_state(fetch_dir, k) if k not in ran else None
        if st is not None:
            idle.append({"extra": {f: st[f] for f in PARTITION_STATE if f in st}})
    for p in list(parts) + idle:
        for k, v in p.get("extra", {}).items():
            if isinstance(v, dict):
                d = s.extra.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            elif isinstance(v, int) and not isinstance(v, bool) and k != "partition":
                s.extra[k] = s.extra.get(k, 0) + v
    for k in ("ok_by_source", "ok_by_source_all_runs", "outcomes_all_runs"):
        if k in s.extra:
            s.extra[k] = dict(sorted(s.extra[k].items(), key=lambda kv: (-kv[1], kv[0]) if k == "outcomes_all_runs"
                                     else kv[0]))
    s.extra["partitions"] = len(parts)
    if "not_from_an_archive" in s.extra:
        s.note("pages by source: " + (", ".join(f"{k} {v:,}" for k, v in s.extra.get("ok_by_source", {}).items())
                                      or "none") + f"; in no archive {sum(s.extra['not_from_an_archive'].values()):,}")
    s.check()
    s.finish().write(fetch_dir)
    return s


def outcome_files(fetch_dir: str | Path) -> list[Path]:
    """The append-only outcome logs of a fetch directory: the first layout's single
    log (kept as outcomes.legacy.jsonl once split), then each partition's."""
    d = Path(fetch_dir)
    files = [p for p in (d / OUTCOMES, d / LEGACY) if p.is_file()]
    return files + sorted((d / "outcomes").glob("part-*.jsonl"))




def _count_outcomes(outcomes: Iterable[str]) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for o in outcomes:
        c[o] += 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


def read_outcomes(fetch_dir: str | Path) -> dict[str, dict]:
    """{url_norm: its last outcome record} over every outcome log of FETCH_DIR (in memory:
    for tests and small directories; the stages stream the logs)."""
    out: dict[str, dict] = {}
    for p in outcome_files(fetch_dir):
        for line in p.read_bytes().splitlines():
            if line.strip():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                out[rec["url_norm"]] = rec
    return out


# --- replay -------------------------------------------------------------------------




def replay_links(links: Iterable[dict], out_dir: str | Path, warcs: list[str | Path]) -> RunSummary:
    """``webtext fetch --from-warc``: outcomes from existing WARC files, no network.

    An outcome points at the record in the source WARC file (absolute path)."""
    missing = [str(w) for w in warcs if not Path(w).is_file()]
    if missing:
        raise FileNotFoundError(f"WARC file(s) not found: {', '.join(missing)}")
    out = Path(out_dir)
    if (out / LAYOUT).is_file():
        from .config import ConfigError

        raise ConfigError(f"{out} holds a fetch of the web (partitions.json); replay into a directory of its own")
    out.mkdir(parents=True, exist_ok=True)
    damaged: list[dict] = []
    index = index_warcs(warcs, damaged)
    log = OutcomeLog(out / OUTCOMES)
    summary = RunSummary("fetch", unit="urls")
    summary.note(f"replay from {len(warcs)} WARC file(s) holding {len(index):,} responses")
    for d in damaged:
        summary.note(f"{d['file']}: bytes {d['start']:,}-{d['end']:,} unreadable ({d['error']}); URLs whose records were "
                     "there are not_in_archive")
    if damaged:
        summary.extra["damaged_warc_regions"] = damaged
    try:
        for r in links:
            summary.n_in += 1
            if r["url_norm"] in log.done:
                summary.drop("already_fetched")
                continue
            hit = index.get(r["url_norm"])
            rec = {"id": r.get("id"), "url": r["url"], "url_norm": r["url_norm"]}
            if hit is None:
                rec["outcome"] = "not_in_archive"
            else:
                path, offset, length, status, date = hit
                rec.update(outcome="ok" if 200 <= status < 300 else f"http_{status}", status=status,
                           warc_file=path, warc_offset=offset, warc_length=length, fetched_at=date, replayed=True)
            log.add(rec)
            if rec["outcome"] == "ok":
                summary.n_out += 1
            else:
                summary.drop(rec["outcome"])
    finally:
        log.close()
    summary.check()
    summary.finish().write(out)
    return summary
