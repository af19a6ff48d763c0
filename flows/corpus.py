"""Prefect 3 flows over the pipeline and model entry points (orchestration, no logic).

``build_corpus``: links (one task per dump file) -> merge -> fetch -> extract ->
filter (one task per extracted part) -> dedup -> shards. The per-file tasks are
what a Dask task runner fans out. Every stage resumes from its own on-disk state
(the links parts keyed by each dump's fingerprint and the configuration, fetch
outcomes, extract done files, the filter log, the dedup index, the shard
manifest), which is finer than a cache key: a killed stage keeps the work it
finished. No Prefect result cache is used (its result files are pickles).
A build that adds a shard version emits ``webtext.corpus.published``.

``train_model``: tokenize a shard version -> train -> evaluate -> sample; the
serve deployment runs it on each ``webtext.corpus.published`` event.

Both publish what they did as artifacts (markdown funnel / eval table with text
charts, a funnel table), visible in the Prefect UI.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from pipeline.build import build_lock, check_inputs
from pipeline.core.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json
from pipeline.core.summary import RunSummary
from pipeline.stages import BuildContext, Stage, part_label

# The event a build emits when it adds a shard version; the training deployment's
# trigger listens for it and takes the build directory and version from its resource.
CORPUS_PUBLISHED = "webtext.corpus.published"


# --- checks before any work ----------------------------------------------------------------


def check_dask_address(address: str, timeout_s: float = 5.0) -> None:
    u = urlsplit(address if "://" in address else f"tcp://{address}")
    if not u.hostname or not u.port:
        raise ConfigError(f"--dask-address {address!r}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((u.hostname, u.port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"Dask scheduler at {address} is unreachable: {exc}") from exc


def preflight(dumps: list[str], out: str | Path, cfg: Config, dask_address: str | None = None,
              url_lists: list[str] | None = None) -> list[str]:
    """``pipeline.build.check_inputs`` (configuration, inputs, a writable OUT), and a
    reachable Dask scheduler, before any work. Returns the expanded dump list."""
    if dask_address:  # before check_inputs makes OUT
        check_dask_address(dask_address)
    files, _ = check_inputs(dumps, url_lists or [], out, cfg)
    return files


# --- corpus tasks: the stages of pipeline/stages.py as Prefect tasks ---------------------


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(stage: str, what: str, ctx: BuildContext, *args):
    """One stage's ``run``/``run_part``/``finish`` (looked up by name on whichever worker
    runs it). No Prefect result cache: each stage keeps its own on-disk state, which is
    finer than a cache key, and a Prefect result file is a pickle a cache hit would load."""
    from pipeline.core import interrupt
    from pipeline.stages import BY_NAME

    probe = _dask_task_given_up()
    if probe is None:
        return getattr(BY_NAME[stage], what)(ctx, *args)
    with interrupt.watching(probe):  # on a Dask worker: stop when the build that sent it is gone
        return getattr(BY_NAME[stage], what)(ctx, *args)


def _dask_task_given_up():
    """On a Dask worker, running a task: a test of whether the scheduler has given the
    task up (its client, the build, was interrupted or died: the worker's state for its
    key turns "cancelled", and Dask lets it run to its end: dask/distributed#3681). None
    elsewhere, and whenever the task's state cannot be read (no false stop)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError, AttributeError):
        return None
    ts = worker.state.tasks.get(key) if key is not None else None
    if ts is None or ts.state == "cancelled":
        return None
    return lambda: ts.state == "cancelled"


class PrefectRunner:
    """The build's runner inside the flow: each stage (or its finishing step) is a task
    run named after it; partitions are task runs (``links-RS_2017-07``, ``filter-part-00000``,
    ``fetch-p0003``, ``extract-f0003``, ``dedup-part-00000``) mapped by the flow's task runner,
    which on Dask puts them on the cluster's workers."""

    def __init__(self):
        from prefect.context import FlowRunContext
        from prefect.task_runners import ThreadPoolTaskRunner

        ctx = FlowRunContext.get()
        self.distributed = ctx is not None and not isinstance(ctx.task_runner, ThreadPoolTaskRunner)

    def call(self, stage: Stage, what: str, ctx: BuildContext, *args):
        if what == "parts":  # listing the work is cheap and happens in the flow
            return stage.parts(ctx)
        name = stage.name if what == "run" else (stage.finish_name or stage.name)
        # submitted, not called: a called task runs in the flow's process, a submitted one
        # where the task runner puts it (a cluster's worker)
        return stage_task.with_options(name=name, task_run_name=name, retries=stage.retries,
                                       retry_delay_seconds=5).submit(stage.name, what, ctx, *args).result()

    def map(self, stage: Stage, ctx: BuildContext, parts: list[str]) -> list[dict]:
        futures = [stage_task.with_options(name=f"{stage.name}-part", task_run_name=f"{stage.name}-{part_label(stage, p)}",
                                           retries=stage.retries, retry_delay_seconds=5)
                   .submit(stage.name, "run_part", ctx, p) for p in parts]
        # a partition that killed every worker it ran on is given up (named in the funnel), not fatal
        from pipeline.build import GIVEN_UP, settle
        from pipeline.core.summary import progress

        results = []  # in submission order; the bar (on a terminal only) counts partitions done
        with progress(total=len(parts), desc=f"{stage.name} partitions", unit="tasks") as bar:
            for f, p in zip(futures, parts):
                results.append(settle(p, f.result))
                bar.update(1)
        for f, r in zip(futures, results):
            if GIVEN_UP in r:
                crash_task_run(f.task_run_id, r["reason"])
        return results


def crash_task_run(task_run_id, reason: str, wait_s: float = 20.0) -> None:
    """A given-up partition's task run (its worker died with it) would stay Running for ever:
    Crashed, with REASON. Its record reaches the server through events, so it may not be
    there yet: asked again for up to WAIT_S."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Crashed

    t0 = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.set_task_run_state(task_run_id, Crashed(message=reason), force=True)
                return
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404 or time.monotonic() - t0 > wait_s:
                    get_run_logger().warning("task run %s not marked Crashed: %s", task_run_id, exc)
                    return
                time.sleep(0.5)


@task(name="publish", task_run_name="publish", retries=2, retry_delay_seconds=10)
def publish_task(shards_dir: str, dest: str) -> str:
    """Copy the shards and manifest to any pyarrow filesystem URI (s3://, gs://, file://, a path)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(dest) if "://" in dest else (pafs.LocalFileSystem(), str(Path(dest).resolve()))
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(Path(shards_dir).resolve()), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return dest


def share_bar(part: int, whole: int, width: int = 20) -> str:
    """A bar drawn in text (renders in any markdown view, the Prefect UI's included)."""
    n = round(width * part / whole) if whole else 0
    return "█" * n + "░" * (width - n)


def funnel_markdown(stages: list[dict]) -> str:
    lines = ["| stage | in | out | kept | dropped (by reason) |", "|---|---:|---:|---|---|"]
    for s in stages:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(s["dropped"].items(), key=lambda x: -x[1]) if n) or "-"
        kept = f"`{share_bar(s['out'], s['in'])}` {100 * s['out'] / s['in']:.0f}%" if s["in"] else "-"
        lines.append(f"| {s['stage']} | {s['in']:,} | {s['out']:,} | {kept} | {reasons} |")
    return "\n".join(lines)


def funnel_rows(stages: list[dict]) -> list[dict]:
    """The funnel as rows for a Prefect table artifact: one per stage and drop reason."""
    rows = []
    for s in stages:
        rows.append({"stage": s["stage"], "what": "kept", "items": s["out"], "of": s["in"]})
        rows += [{"stage": s["stage"], "what": r, "items": n, "of": s["in"]}
                 for r, n in sorted(s["dropped"].items(), key=lambda x: -x[1]) if n]
    return rows


def announce_version(out: Path, version: int, rows: int) -> bool:
    """Emit CORPUS_PUBLISHED for a shard version once (OUT/.prefect/announced.json
    remembers, so a build killed between writing shards and emitting announces it on
    its next run). Returns whether an event was emitted now."""
    path = out / ".prefect" / "announced.json"
    done = json.loads(path.read_text()) if path.is_file() else []
    if version in done:
        return False
    emit_event(event=CORPUS_PUBLISHED,
               resource={"prefect.resource.id": f"webtext.corpus.{hashlib.sha1(str(out).encode()).hexdigest()[:16]}",
                         "prefect.resource.name": str(out), "webtext.build-dir": str(out), "webtext.version": str(version)},
               payload={"build_dir": str(out), "version": version, "rows": rows})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, sorted(done + [version]))
    return True


@flow(name="build-corpus", log_prints=True)
def build_corpus(dumps: list[str], out: str, config: dict | None = None, publish: str | None = None,
                 urls: list[str] | None = None) -> dict:
    """links -> fetch -> extract -> filter -> dedup -> shards over DUMPS (and URL lists
    URLS) into OUT: ``pipeline.build.run_stages``, each stage a task, partitions mapped.

    Incremental: a dump harvested before is not read again, URLs fetched before
    are not fetched again, pages extracted before are not extracted again, and new
    documents are deduplicated against every document kept so far; new shards go
    under a new manifest version. On start it ends runs whose process is gone and
    starts the training this directory's newest version missed (``flows.lifecycle``)."""
    from flows.lifecycle import claim_run, reconcile

    claim_run()
    # runs a killed process left "Running" end as Crashed; this directory's newest
    # published version gets the training it missed (a serve killed during it)
    reconcile([Path(out).resolve()], log=get_run_logger().info)
    cfg = Config.from_dict(config or {})
    files, lists = check_inputs(dumps, urls or [], out, cfg)
    o = Path(out).resolve()
    with build_lock(o):
        return _build(files, lists, o, cfg, publish)


def _build(files: list[str], lists: list[str], o: Path, cfg: Config, publish: str | None) -> dict:
    from pipeline.build import run_stages, write_build_record
    from pipeline.report.likeness import likeness_markdown
    from pipeline.shards.stage import load_manifest

    logger = get_run_logger()
    ctx = BuildContext(o, cfg, tuple(str(Path(f).resolve()) for f in files),
                       tuple(str(Path(u).resolve()) for u in lists), progress=False)
    stages = run_stages(ctx, PrefectRunner())
    links = stages[0]["extra"]
    logger.info("links: %d input(s), %d harvested now, %d reused", len(files) + len(lists),
                len(links.get("harvested_now", [])), len(links.get("reused_parts", [])))
    report = write_build_record(o, stages, ctx.started, cfg.report)
    manifest = load_manifest(o / "shards")
    version = manifest["versions"][-1]["version"] if manifest["versions"] else None
    added = stages[-1]["out"]
    likeness = json.loads((report / "likeness.json").read_text()) if (report / "likeness.json").is_file() else None
    fetch = next(s for s in stages if s["stage"] == "fetch")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ctx.started))
    head = (f"# webtext build {stamp}\n\n{len(files)} dump(s), {len(lists)} URL list(s) into `{o}`; "
            + (f"new shard version **v{version}** ({added:,} documents)" if added else "no new documents: no new version")
            + f"; corpus: {manifest['total_rows']:,} documents in {len(manifest['shards'])} shards."
            + f"\n\nURLs waiting for a retry: {fetch['extra'].get('waiting_retry', 0):,}; given up: "
            + f"{fetch['extra'].get('given_up', 0):,}. Report files: `{report}`\n\n")
    create_markdown_artifact(key="build-funnel", markdown=head + funnel_markdown(stages)
                             + ("\n\n" + likeness_markdown(likeness) if likeness else ""),
                             description="what this build did, per stage and drop reason")
    create_table_artifact(key="build-funnel-table", table=funnel_rows(stages),
                          description=f"build {stamp}: items kept and dropped per stage and reason")
    if publish:
        publish_task(str(o / "shards"), publish)
    if version is not None and announce_version(o, version, manifest["versions"][-1]["added_rows"]):
        logger.info("announced shard version %d of %s (%s)", version, o, CORPUS_PUBLISHED)
    for s in stages:
        print(RunSummary.from_dict(s).table())
    from prefect.runtime import flow_run

    return {"out": str(o), "stages": stages, "shards": str(o / "shards"), "version": version if added else None,
            "report": str(report), "flow_run_id": str(flow_run.id)}


# --- task runners -------------------------------------------------------------------------


def task_runner(kind: str, dask_address: str | None = None, workers: int | None = None):
    if kind == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        # extract's partitions run trafilatura in a child process (a page past its time
        # limit is stopped by a signal, which only a process's main thread gets): the
        # workers of a cluster started here may have children
        dask.config.set({"distributed.worker.daemon": False})

        if dask_address:
            check_dask_address(dask_address)
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers or os.cpu_count() or 1, "processes": True,
                                              "threads_per_worker": 1, "dashboard_address": None})
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    raise ConfigError(f"--task-runner must be threads or dask, not {kind!r}")
