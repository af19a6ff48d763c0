"""The fetch stage: URLs split by a hash of their host into partitions, each fetched by a process of its own."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import orjson

from pipeline.core import interrupt
from pipeline.core.config import FetchConfig
from pipeline.core.summary import RunSummary, progress
from pipeline.fetch.crawl import _fetch
from pipeline.fetch.outcomes import (
    LAYOUT,
    LEGACY,
    OUTCOMES,
    PARTITION_STATE,
    host_partition,
    recheck_due,
)

# --- partitions -----------------------------------------------------------------------
#
# A fetch directory's URLs are split by a hash of their host into [fetch] partitions
# partitions (recorded in partitions.json; another value later is refused). Each has its
# own outcome log (outcomes/part-PPPP.jsonl), its own WARC files (warc/webtext-pPPPP-*)
# and its own work list for this build (todo/part-PPPP.jsonl, written by spool_links),
# so partitions run in separate processes (or on a cluster's workers) without sharing
# anything, and a host's politeness limits stay inside one partition.





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
            from pipeline.core.errors import ConfigError

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
    from pipeline.core.io import atomic_write_json

    atomic_write_json(path, lay)
    return lay




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
        if st is None or (st.get("next_due") is not None and st["next_due"] <= now) \
                or recheck_due(st.get("conditional"), cfg):
            work.add(k)
    return sorted(work)


def _index_get(cfg: FetchConfig, fetch_dir: Path, archive):
    """GET for the index files over HTTP: through the fetch stage's archive client (the
    public-address check and pinning, the archive's rate and concurrency, back-off on
    429/503 within ``archive_timeout_s`` a request)."""
    from pipeline.fetch.archives import ArchiveClient, ArchiveFailure
    from pipeline.fetch.ccindex import IndexError_
    from pipeline.fetch.webclient import Fetcher

    client = ArchiveClient(cfg, Fetcher(cfg), fetch_dir)

    def get(url: str, headers: dict, limit: int) -> tuple[int, dict, bytes]:
        try:
            resp = client._request(archive, url, [cfg.archive_timeout_s], headers=headers, max_bytes=limit)
        except ArchiveFailure as exc:
            raise IndexError_(str(exc)) from exc
        if resp.truncated:
            raise IndexError_(f"{url}: the answer is larger than the {limit:,} bytes asked")
        return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body

    return get


def lookup_index_part(fetch_dir: str | Path, cfg: FetchConfig, part: str) -> dict:
    """The lookup stage's partition: one crawl of one cc-index archive asked about the
    build's new links (``pipeline/fetch/ccarchive.py``)."""
    from pipeline.fetch.ccarchive import lookup_part

    return lookup_part(fetch_dir, cfg, part, lambda a: _index_get(cfg, Path(fetch_dir), a))


def prepare_partitions(rows: Iterable[dict], fetch_dir: str | Path, cfg: FetchConfig) -> list[int]:
    """The links spooled into their partitions (``spool_links``) and, with a cc-index
    archive, looked up in bulk in Common Crawl's index before any page is fetched
    (``pipeline/fetch/ccarchive.py``). Returns the partitions that have work."""
    parts = spool_links(rows, fetch_dir, cfg)
    # a live fetch never needs the cc-index lookup: not importing it keeps pyarrow (0.17 CPU-s)
    # out of the process that fetches
    if cfg.source != "live" and parts and any(a.kind == "cc-index" for a in cfg.archives()):
        from pipeline.core.io import atomic_write_json
        from pipeline.fetch.ccarchive import lookup_partitions

        report = lookup_partitions(fetch_dir, cfg, parts, lambda a: _index_get(cfg, Path(fetch_dir), a))
        atomic_write_json(Path(fetch_dir) / "ccindex" / "last_lookup.json", report)
    return parts


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
    with _partition_lock(out, part):
        s = _fetch(_todo_rows(out / "todo" / f"part-{part:04d}.jsonl"), out, cfg, partition_log(out, part),
                   f"webtext-p{part:04d}", reuse_outcomes, retry_failed, progress_bar, (part, n))
    s.extra["partition"] = part
    return s.to_dict()


class PartitionBusy(RuntimeError):
    """Another process (or thread) is fetching this partition now."""


@contextlib.contextmanager
def _partition_lock(out: Path, part: int):
    """One writer per partition: an advisory ``flock`` on outcomes/.part-NNNN.lock, released
    by the kernel when its holder dies. The build's directory lock keeps a second build
    out; this keeps out a partition task that outlived its build: an interrupted build's
    task still running on a Dask cluster's worker (a worker cannot stop a running task),
    or a task the scheduler ran again while its first worker still ran it. Two writers
    of one outcome log would log URLs twice."""
    import socket

    from pipeline.core.io import LockHeld, exclusive_lock

    path = out / "outcomes" / f".part-{part:04d}.lock"
    try:
        with exclusive_lock(path, f"pid {os.getpid()} on {socket.gethostname()}"):
            yield
    except LockHeld as held:
        if held.path != path:
            raise  # another lock, taken inside this one
        raise PartitionBusy(f"fetch partition {part} of {out} is being fetched by {held.stamp or 'another process'}: "
                            "a task of an earlier, interrupted build still running on a cluster worker? It ends by "
                            "itself (or restart that worker); then run the build again") from None


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
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    procs = []
    try:
        for out, cfg, parts, retry_failed, reuse in groups:
            p = subprocess.Popen([sys.executable, "-c", "from pipeline.fetch.stage import _group_main; _group_main()"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            p.stdin.write(orjson.dumps({"out": out, "cfg": dataclasses.asdict(cfg), "parts": parts,
                                        "retry_failed": retry_failed, "reuse": list(reuse)}) + b"\n")
            p.stdin.flush()
            procs.append(p)
        data = _read_children(procs, groups)
        results = []
        for p, g in zip(procs, groups):
            if p.returncode != 0 or not data[p].strip():
                raise RuntimeError(f"fetch of partitions {g[2]} failed (exit status {p.returncode}; its error above)")
            results += orjson.loads(data[p])
        return results
    except KeyboardInterrupt:  # interrupt.Interrupted included
        # a stop of the build: each child is interrupted the same way (it cancels its
        # crawl, commits what finished and closes its files), then killed if still there
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()


def _read_children(procs: list, groups: list[tuple]) -> dict:
    """Each child's whole stdout (its one line, at its end), read as the children end;
    a stop of the build (pipeline/core/interrupt.py) raises ``Interrupted`` meanwhile."""
    import selectors

    data = {p: b"" for p in procs}
    with selectors.DefaultSelector() as sel, \
            progress(total=sum(len(g[2]) for g in groups), desc="fetch partitions", unit="partitions") as bar:
        for p, g in zip(procs, groups):
            sel.register(p.stdout, selectors.EVENT_READ, (p, len(g[2])))
        while sel.get_map():
            interrupt.check("fetch")
            for key, _ in sel.select(timeout=interrupt.POLL_S):
                p, n = key.data
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    data[p] += chunk
                    continue
                sel.unregister(key.fileobj)
                p.wait()
                bar.update(n)
    return data


def _group_main() -> None:
    """A child of ``_run_groups``: its partitions, then their summaries as JSON on stdout."""
    args = orjson.loads(sys.stdin.buffer.readline())

    def watch() -> None:
        while os.read(0, 4096):  # b"" when the parent closes the pipe or is gone
            pass
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="webtext-parent-watch").start()
    # SIGINT (from the parent, or Ctrl-C at a terminal: the whole group gets it) asks the
    # crawl to stop; a second one changes nothing while it commits and closes its files
    signal.signal(signal.SIGINT, lambda *_: interrupt.request_stop("SIGINT"))
    cfg = FetchConfig(**args["cfg"])
    try:
        res = _fetch_group((args["out"], cfg, args["parts"], args["retry_failed"], tuple(args["reuse"])))
    except KeyboardInterrupt:  # the parent's stop (or Ctrl-C at a terminal): the crawl ended cleanly
        sys.stderr.flush()
        os._exit(130)
    sys.stdout.buffer.write(orjson.dumps(res) + b"\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # not a normal shutdown: the watching thread is blocked reading stdin


def combine_fetch(fetch_dir: str | Path, cfg: FetchConfig, parts: list[dict]) -> RunSummary:
    """The fetch stage's summary from its partitions' (counts, drop reasons, and the
    per-source and retry figures added up); writes summary.fetch.json."""
    from pipeline.core.summary import combine_summaries

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
    s.close(fetch_dir)
    return s


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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = prepare_partitions(links, out, cfg)
    reuse = tuple(str(d) for d in reuse_outcomes)
    if cfg.source != "live":
        # the archives' request rates are per ArchiveClient (one per partition): partitions
        # one after another in one process keep them as configured
        results = [fetch_partition(out, cfg, p, retry_failed, reuse, progress_bar=True) for p in parts]
        return combine_fetch(out, cfg, results)
    # Each process fetches its share of the partitions at once, its cfg.workers threads
    # shared among them: a partition alone may hold too few hosts to keep them busy.
    # ``fetch_partition`` alone (a cluster's task) is the same work for one partition.
    procs, workers = cfg.process_plan(os.cpu_count() or 1)
    if workers != cfg.workers:
        cfg = dataclasses.replace(cfg, workers=workers)
    procs = max(1, min(procs, len(parts)))
    groups = [(str(out), cfg, parts[i::procs], retry_failed, reuse) for i in range(procs)]
    if procs == 1:
        results = _fetch_group(groups[0]) if parts else []
    else:
        results = _run_groups(groups)
    return combine_fetch(out, cfg, results)
