"""The crawl loop: links -> pages in WARC, politely per host, with archive fallback.

Live pages are fetched on an asyncio loop (``[fetch] transport = "async"``, the
default: pipeline/fetch/aiofetch.py, group commits of WARC records and outcome
lines) or on a pool of threads (``"threads"``: pipeline/fetch/webclient.py, one
fsync per record and per outcome line); the archive sources and a proxy use the
threads."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import orjson

from pipeline.core import interrupt
from pipeline.core.config import FetchConfig
from pipeline.core.linkfields import LINK_FIELDS
from pipeline.core.summary import RunSummary, progress
from pipeline.fetch.netsafety import (
    FetchRefused,
    without_credentials,
)
from pipeline.fetch.outcomes import (
    PARTITION_STATE,
    OutcomeLog,
    _count_outcomes,
    host_partition,
    is_transient,
    outcome_files,
    conditional_summary,
    limits_of,
    retry_state,
)
from pipeline.fetch.warcstore import WarcSink, repair_warcs
from pipeline.fetch.webclient import Fetcher, Response


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


_STAMP = (-1, "")


def _utc_now() -> str:
    """The time now as the outcome records and WARC-Date write it (to the second; made
    once a second)."""
    global _STAMP
    second, stamp = _STAMP
    now = int(time.time())
    if now != second:
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        _STAMP = (now, stamp)
    return stamp


def uses_async(cfg: FetchConfig) -> bool:
    """Whether a run fetches on the asyncio transport (pipeline/fetch/aiofetch.py):
    ``[fetch] transport = "async"`` for live pages without a proxy; the archive sources
    (their client is threaded) and a proxy use the threaded transport."""
    return cfg.transport == "async" and cfg.source == "live" and not cfg.proxy


async def _crawl_async(todo: list, awork, sink: WarcSink, log: OutcomeLog, workers: int, logged, fetcher) -> None:
    """Fetches the rows of TODO with AWORK on the running loop, up to 8 x WORKERS rows at
    once: the fetcher's requests in flight are bounded by WORKERS (with those of the
    other partitions on this loop, ``aiofetch.InflightBudget``) and a row waiting for
    its host's turn holds none, so a host's politeness delay does not idle the others.

    A finished row's WARC records are written, not fsynced; its outcome record goes to
    the loop's group commit (pipeline/fetch/groupcommit.py), which fsyncs the WARC
    files before it appends the outcome lines that point at them. The first error (a
    full disk, a bug) cancels the rest and is raised; what was not committed is
    fetched again by the next run."""
    from pipeline.fetch import groupcommit

    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(max(64, 8 * workers))
    commits = groupcommit.for_loop()
    journal = commits.open(sink, log, logged)
    fetcher.open()
    tasks: set = set()
    state: dict = {"error": None}

    def ended(task) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and state["error"] is None:
            state["error"] = task.exception()

    async def one(row: tuple) -> None:
        try:
            commits.add(journal, await awork(row))
        finally:
            slots.release()

    def failed() -> BaseException | None:
        return state["error"] or journal.error

    try:
        for i in range(len(todo)):
            await slots.acquire()
            if failed():
                break
            row, todo[i] = todo[i], None  # drop each row once it is handed out
            t = loop.create_task(one(row))
            tasks.add(t)
            t.add_done_callback(ended)
        while tasks and not failed():
            await asyncio.wait(list(tasks), return_when=asyncio.FIRST_EXCEPTION)
        if not failed():
            await commits.flush(journal)
        if failed():
            raise failed()
    finally:
        for t in list(tasks):
            t.cancel()
        if tasks:
            await asyncio.wait(list(tasks))
        await commits.close(journal)
        fetcher.close()


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
    from pipeline.fetch.archives import (
        ARCHIVE_DEAD_PAGES,
        ARCHIVE_FALLBACK,
        ARCHIVE_TRANSIENT,
        ArchiveClient,
        wants_archive,
    )

    given: set[str] = set()
    for r in links:
        summary.n_in += 1
        given.add(r["url_norm"])
        prev = log.state(r["url_norm"])
        meta = {f: r[f] for f in LINK_FIELDS if r.get(f) is not None} or None
        row = (r.get("id"), r["url"], r["url_norm"], r.get("created_utc"), False, meta)
        if prev is not None:
            if cfg.source != "live" and (prev["outcome"] in ARCHIVE_FALLBACK or prev["outcome"] in ARCHIVE_DEAD_PAGES):
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
    on_loop = uses_async(cfg)
    if on_loop:
        from pipeline.fetch.aiofetch import AsyncFetcher

        fetcher = AsyncFetcher(cfg)
    else:
        fetcher = Fetcher(cfg)
    archives = ArchiveClient(cfg, fetcher, out, part[0] if part else None) if cfg.source != "live" else None

    def from_archives(url: str, created_utc, doc_id: str) -> tuple[str, object, dict]:
        try:
            return archives.lookup(url, created_utc, doc_id)
        except Exception as exc:  # a bug or an unforeseen library error: recorded, never fatal
            return "archive_error", None, {"archive_error": f"{type(exc).__name__}: {exc}"[:500]}

    def start(row: tuple) -> tuple[str, str, dict, dict | None]:
        """(url, fetch time, outcome record so far, previous outcome) of a work row."""
        doc_id, raw_url, url_norm, created_utc, skip_live, meta = row
        url = without_credentials(raw_url)
        fetched_at = _utc_now()
        prev = log.state(url_norm)
        rec = {"id": doc_id, "url": url, "url_norm": url_norm, "fetched_at": fetched_at,
               "attempt": prev["attempt"] + 1 if prev else 1}
        if meta:  # the link's Reddit fields travel with every attempt (extract reads an ok page's;
            rec.update(meta)  # a retry from the log, with no link row, takes them from the last one)
        return url, fetched_at, rec, prev

    def work(row: tuple) -> dict:
        doc_id, raw_url, url_norm, created_utc, skip_live, meta = row
        url, fetched_at, rec, prev = start(row)
        first = None  # archive-then-live: the archives' answer, asked before the live web
        if cfg.source == "archive-then-live" and not skip_live:
            first = from_archives(url, created_utc, doc_id)
        if cfg.source == "archive" or skip_live:
            outcome, resp, info = (prev["outcome"] if skip_live else None), None, {}
        elif first is not None and first[0] == "ok":
            outcome, resp, info = None, None, {}
        else:
            try:
                outcome, resp, info = fetcher.fetch(url)
            except FetchRefused as exc:
                outcome, resp, info = exc.outcome, None, {"error": exc.detail}
            except Exception as exc:  # a bug or an unforeseen library error: recorded, never fatal
                outcome, resp, info = "fetch_error", None, {"error": f"{type(exc).__name__}: {exc}"[:500]}
        return finish(row, url, fetched_at, rec, outcome, resp, info, first)

    async def awork(row: tuple) -> dict:
        """``work`` on the event loop (source "live" only); its WARC records are made
        durable with the outcome lines, by ``_crawl_async``."""
        url, fetched_at, rec, _ = start(row)
        try:
            outcome, resp, info = await fetcher.afetch(url)
        except FetchRefused as exc:
            outcome, resp, info = exc.outcome, None, {"error": exc.detail}
        except Exception as exc:  # a bug or an unforeseen library error: recorded, never fatal
            outcome, resp, info = "fetch_error", None, {"error": f"{type(exc).__name__}: {exc}"[:500]}
        return finish(row, url, fetched_at, rec, outcome, resp, info, None, durable=False)

    def finish(row: tuple, url: str, fetched_at: str, rec: dict, outcome, resp, info: dict, first,
               durable: bool = True) -> dict:
        """The outcome record of a fetched row, its responses written to WARC."""
        doc_id, _, _, created_utc, skip_live, _ = row
        page = None
        if first is not None and first[0] != "ok":
            info["archive_first"] = first[0]  # no archive held it: the live web's answer stands
        elif archives is not None and (cfg.source == "archive" or skip_live or first is not None
                                       or (cfg.source == "live-then-archive" and wants_archive(outcome, info))):
            live_outcome = outcome
            outcome, page, arc_info = first if first is not None else from_archives(url, created_utc, doc_id)
            if outcome != "ok" and live_outcome in ARCHIVE_TRANSIENT:
                # no archive holds it: the live failure stands, with its retry schedule
                rec["archive_outcome"], outcome = outcome, live_outcome
            if live_outcome is not None:
                rec["live_outcome"] = live_outcome
            info.update(arc_info)
            if resp is not None:  # the live answer (a 404 page, ...) stays in the WARC, as a trail record
                info.setdefault("_responses", []).append(resp)
                rec["live_status"] = resp.status
                resp = None
        rec["outcome"] = outcome
        lim = limits_of(outcome, cfg)
        if lim:
            rec["limits"] = lim
        if outcome == "ok":
            rec["source"] = f"archive:{page.archive}" if page is not None else "live"
        trail = info.pop("_responses", [])
        rec.update({k: v for k, v in info.items() if v})
        for earlier_resp in trail:  # redirect hops and retried answers: recorded too, before the last
            name, offset, length, end = sink.write(earlier_resp, fetched_at, durable=durable)
            rec.setdefault("warc_trail", []).append({"url": earlier_resp.url, "status": earlier_resp.status,
                                                     "warc_file": name, "warc_offset": offset, "warc_record_end": end})
        if page is not None:
            # WARC-Target-URI is the link's URL, WARC-Date the capture time, and the
            # provenance in WARC-Source-URI and WebText-* headers (pipeline/fetch/archives.py)
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
            name, offset, length, end = sink.write(resp, fetched_at, warc_extra, with_request, durable=durable)
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
        with progress(total=len(todo), desc=f"fetch {warc_prefix}", unit="urls",
                      disable=None if progress_bar else True) as bar:

            def logged(recs: list[dict]) -> None:
                for rec in recs:
                    outcomes[rec["outcome"]] += 1
                    if rec["outcome"] == "ok":
                        sources[rec["source"]] += 1
                bar.update(len(recs))

            if on_loop:
                from pipeline.fetch.aiofetch import run

                run(_crawl_async(todo, awork, sink, log, cfg.workers, logged, fetcher))
            else:
                with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
                    inflight: set = set()

                    def drain(block_until: int) -> None:
                        nonlocal inflight
                        while len(inflight) > block_until:
                            interrupt.check("fetch")  # a stop asked for: the requests in flight end, no more start
                            finished, inflight = wait(inflight, timeout=interrupt.POLL_S, return_when=FIRST_COMPLETED)
                            for fut in finished:
                                rec = fut.result()
                                log.add(rec)
                                logged([rec])

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
    from pipeline.core.io import atomic_write_json

    atomic_write_json(log_path.with_name(log_path.name.replace(".jsonl", ".state.json")),
                      {"next_due": next_due, "conditional": conditional_summary(log),
                       **{k: summary.extra[k] for k in PARTITION_STATE}})
    summary.check()
    return summary.finish()


