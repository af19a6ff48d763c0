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
    from pipeline.stages import BY_NAME

    return getattr(BY_NAME[stage], what)(ctx, *args)


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
        return [f.result() for f in futures]


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
    under a new manifest version."""
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


# --- training ----------------------------------------------------------------------------


@task(name="tokenize", task_run_name="tokenize")
def tokenize_task(shards_dir: str, tokens_dir: str, val_fraction: float, version: int) -> dict:
    from model.data import tokenize_shards
    from model.tokenizer import Tokenizer

    return tokenize_shards(shards_dir, tokens_dir, Tokenizer.load("gpt2"), val_fraction=val_fraction, progress=False,
                           max_version=version)


@task(name="train", task_run_name="train", retries=1)
def train_task(tokens_dir: str, train_dir: str, preset: str, overrides: list[str]) -> dict:
    from model.train import load_train_config, train

    cfg = load_train_config(None, preset, list(overrides) + [f"data_dir={tokens_dir}", f"out_dir={train_dir}"])
    resume = (Path(train_dir) / "ckpt.pt").is_file()  # a retried or restarted run continues
    r = train(cfg, resume=resume, progress=False)
    return {"step": r["step"], "losses": r["losses"][-5:], "val": r["val"], "checkpoint": str(r["checkpoint"])}


@task(name="evaluate", task_run_name="evaluate")
def evaluate_task(train_dir: str, tokens_dir: str, eval_files: dict, limit: int | None, prompt: str) -> dict:
    from model.checkpoint import load_model
    from model.evaluate import evaluate_all
    from model.generate import generate
    from model.tokenizer import Tokenizer

    model, _ = load_model(train_dir)
    tok = Tokenizer.load("gpt2")
    res = evaluate_all(model, tok, tokens_dir, eval_files.get("lambada"), eval_files.get("wikitext2"),
                       eval_files.get("ptb"), limit=limit)
    out = generate(model, [tok.encode(prompt)], 40, temperature=0.8, top_k=40, seed=1)[0]
    res["sample"] = prompt + tok.decode(out)
    atomic_write_json(Path(train_dir) / "eval.json", res)
    return res


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """Values drawn as one line of block characters (bucket means), for markdown views."""
    if not values:
        return ""
    k = max(1, -(-len(values) // width))
    pts = [sum(values[i:i + k]) / len(values[i:i + k]) for i in range(0, len(values), k)]
    lo, hi = min(pts), max(pts)
    return "".join(SPARKS[round((v - lo) / (hi - lo) * 7) if hi > lo else 0] for v in pts)


def loss_markdown(metrics: Path) -> str:
    recs = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()] if metrics.is_file() else []
    if not recs:
        return "no metrics"
    train = [r["loss"] for r in recs]
    lines = [f"train loss, steps {recs[0]['step']}-{recs[-1]['step']} ({train[0]:.3f} -> {train[-1]:.3f}):", "",
             f"`{sparkline(train)}`", "", "| step | train loss | val loss |", "|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['loss']:.4f} | {r['val_loss']:.4f} |" for r in recs if "val_loss" in r]
    return "\n".join(lines)


@flow(name="train-model", log_prints=True)
def train_model(build_dir: str, out: str | None = None, preset: str = "tiny", overrides: list[str] | None = None,
                val_fraction: float = 0.05, eval_files: dict | None = None, eval_limit: int | None = None,
                prompt: str = "The", version: int | str | None = None) -> dict:
    """Tokenize shard version VERSION of BUILD_DIR (default: the newest) with every
    version before it, train PRESET on them, evaluate, sample.

    Tokens go to OUT/tokens-vNNNN, the model to OUT/train-vNNNN (OUT defaults to
    BUILD_DIR/model), so each corpus version gets its own model; a re-run of a
    version whose evaluation exists does nothing, a killed one resumes. VERSION may
    be a string: an event trigger's templates render to strings."""
    from model.evaluate import format_table
    from pipeline.shards.stage import load_manifest

    shards = Path(build_dir) / "shards"
    m = load_manifest(shards)
    if not m["versions"]:
        raise ConfigError(f"{shards}: no shards yet (run build-corpus first)")
    known = [x["version"] for x in m["versions"]]
    v = int(version) if version is not None else known[-1]
    if v not in known:
        raise ConfigError(f"{shards}: no shard version {v} (versions: {known})")
    o = Path(out or Path(build_dir) / "model")
    tokens, train_dir = o / f"tokens-v{v:04d}", o / f"train-v{v:04d}"
    if (train_dir / "eval.json").is_file() and (train_dir / "ckpt.pt").is_file():
        print(f"shard version {v} of {build_dir} is trained and evaluated already ({train_dir}); nothing to do")
        return {"skipped": True, "train_dir": str(train_dir), "tokens": str(tokens), "version": v,
                "eval": json.loads((train_dir / "eval.json").read_text())}
    if not (tokens / "manifest.json").is_file():
        tokenize_task(str(shards), str(tokens), val_fraction, v)
    t = train_task(str(tokens), str(train_dir), preset, list(overrides or []))
    res = evaluate_task(str(train_dir), str(tokens), eval_files or {}, eval_limit, prompt)
    from model.checkpoint import load_model

    model, _ = load_model(train_dir)
    table = format_table({k: v for k, v in res.items() if k != "sample"}, model, eval_limit)
    print(table)
    print("sample:", res["sample"])
    create_markdown_artifact(key="train-eval", markdown=f"# webtext train ({preset}, shards v{v} of `{build_dir}`)\n\n"
                             f"```\n{table}\n```\n\nstep {t['step']}; sample:\n\n> {res['sample']}\n\n"
                             + loss_markdown(train_dir / "metrics.jsonl") + f"\n\nfiles: `{train_dir}` (loss.png, eval.json)",
                             description=f"evaluation and loss curve of the model trained on shard version {v}")
    return {"train": t, "eval": res, "train_dir": str(train_dir), "tokens": str(tokens), "version": v}


# --- serving: the monthly build and the training it triggers ------------------------------


def serve_deployments(dumps: list[str], out: str, config: dict, schedule: dict | None, train_params: dict,
                      publish: str | None = None) -> None:
    """Serve build-corpus/webtext-build (on SCHEDULE: {"cron": ...} or {"interval": s}, or
    none) and train-model/webtext-train until stopped.

    Training is triggered by the CORPUS_PUBLISHED event a build emits when it adds a
    shard version, whoever started the build (schedule, UI, CLI, API): the event's
    resource carries the build directory and version, which become the training
    run's parameters. A build that adds nothing emits nothing. Each deployment runs
    one flow run at a time (later ones wait). On SIGINT/SIGTERM, runs still going
    are stopped and marked cancelled on the server, never left "Running"."""
    from prefect import serve
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.events import DeploymentEventTrigger

    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    build = build_corpus.to_deployment(
        name="webtext-build", **(schedule or {}), concurrency_limit=one_at_a_time,
        parameters={"dumps": dumps, "out": str(Path(out).resolve()), "config": config, "publish": publish})
    train = train_model.to_deployment(
        name="webtext-train", concurrency_limit=one_at_a_time, parameters=train_params,
        triggers=[DeploymentEventTrigger(
            name="webtext-train-on-new-corpus-version", expect={CORPUS_PUBLISHED},
            match={"prefect.resource.id": "webtext.corpus.*"},
            parameters={"build_dir": "{{ event.resource['webtext.build-dir'] }}",
                        "version": "{{ event.resource['webtext.version'] }}"})])
    try:
        serve(build, train, print_starting_message=False)
    finally:
        try:
            stopped = stop_unfinished_runs(["build-corpus/webtext-build", "train-model/webtext-train"])
        except Exception as exc:  # the server itself may be gone: say so, do not hide why serve stopped
            print(f"could not mark unfinished runs cancelled: {type(exc).__name__}: {exc}", flush=True)
        else:
            if stopped:
                print(f"marked {len(stopped)} unfinished run(s) cancelled: {', '.join(stopped)}", flush=True)


def stop_unfinished_runs(deployments: list[str], grace_s: float = 20.0) -> list[str]:
    """After the runner stopped: end this process's child flow-run processes (SIGTERM,
    then SIGKILL after GRACE_S), then mark runs of DEPLOYMENTS that are still
    pending/running/cancelling as Cancelled, so the server shows what happened and
    the next build resumes from disk as after any stop."""
    import psutil
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    children = psutil.Process().children(recursive=True)
    for c in children:
        try:
            c.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for c in alive:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass
    names = []
    with get_client(sync_client=True) as client:
        ids = []
        for name in deployments:
            try:
                ids.append(client.read_deployment_by_name(name).id)
            except Exception:  # not created (serve failed early): nothing of it can be running
                continue
        if not ids:
            return names
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))))
        for r in runs:
            client.set_flow_run_state(r.id, Cancelled(message="webtext serve was stopped during this run; "
                                                                "the next build resumes from what it wrote"), force=True)
            names.append(r.name)
    return names


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

