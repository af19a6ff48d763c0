"""A whole corpus build, stage after stage, each reading what the one before wrote:

    links -> fetch (WARC) -> extract -> filter -> dedup -> shards (+ manifest)

``run_stages`` is the one driver of a build (the stages are declared in
``pipeline/stages.py``); ``run_build`` runs it in this process, the Prefect flow
runs the same driver with a runner that makes tasks. The funnel (every stage's
in/out/dropped-by-reason) is written to ``OUT/funnel.json``, into the shard
manifest's version entry and, per build, under ``OUT/reports/``. On a cluster, a
partition whose task killed every worker that ran it is given up (``settle``): its stage
finishes with the others, the funnel names it, and the next build runs it again.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.io import LockHeld, atomic_write_json, exclusive_lock
from pipeline.core.summary import RunSummary
from pipeline.report.funnel import build_history, plot_funnel
from pipeline.stages import STAGES, BuildContext, Stage, part_label

LOCK = ".build.lock"


def expand_dumps(dumps: list[str]) -> list[str]:
    """Paths and glob patterns (a scheduled build reads ``RS_*.zst`` and so sees new months)."""
    from pipeline.core.io import expand_globs

    return expand_globs(dumps, "dump file")



class BuildLocked(RuntimeError):
    """Another build (or stage command) holds the output directory."""


STAGE_LOCK = ".webtext.lock"


@contextlib.contextmanager
def dir_lock(path: str | Path, what: str, name: str = STAGE_LOCK) -> Iterator[None]:
    """One writer at a time per directory: an advisory ``flock`` on PATH/NAME, released
    by the kernel when the holder dies (a killed run never leaves a stale lock;
    ``exclusive_lock``). WHAT names the holder in the refusal ("build", "fetch", ...)."""
    out = Path(path)
    try:
        with exclusive_lock(out / name, f"{what}\n{os.getpid()}"):
            yield
    except LockHeld as held:
        if held.path != out / name:
            raise  # another lock, taken inside this one
        lines = held.stamp.split("\n")
        other, pid = (lines[0], lines[-1]) if len(lines) == 2 else ("webtext run", lines[0] or "?")
        raise BuildLocked(f"another {other} is running on {out} (pid {pid}); wait for it or stop it, then run "
                          f"this {what} again") from None


@contextlib.contextmanager
def build_lock(out_dir: str | Path) -> Iterator[None]:
    """One build at a time per output directory (a scheduled build that starts while
    the last one still runs, a manual run beside a scheduled one); each stage's own
    directory is locked too while the stage runs (``run_stages``), so a stage command
    on it (``webtext fetch --out OUT/fetch --retry-failed``) waits its turn."""
    with dir_lock(out_dir, "build", LOCK):
        yield


class LocalRunner:
    """Runs stages in this process, one after another (each may use its own process
    pool); a stage whose partitions fan out everywhere runs them one by one."""

    distributed = False

    def call(self, stage: Stage, what: str, ctx: BuildContext, *args):
        return getattr(stage, what)(ctx, *args)

    def map(self, stage: Stage, ctx: BuildContext, parts: list[str]) -> list[dict]:
        return [stage.run_part(ctx, p) for p in parts]


# A partition the cluster gave up on: every worker that ran its task died (Dask's
# KilledWorker once ``distributed.scheduler.allowed-failures`` is spent: a partition that
# exhausts memory or crashes C code in its worker, every time). ``settle`` turns that one
# error into this record; the stage finishes with its other partitions and the build goes
# on. Nothing of a given-up partition is marked done (each stage lists its partitions from
# its own on-disk state), so the next build tries it again.
GIVEN_UP = "given_up"


def settle(part: str, result: Callable[[], dict]) -> dict:
    """RESULT() (a mapped partition's result), or ``{GIVEN_UP: PART, "reason": ...}`` when
    the cluster gave the task up because it killed every worker that ran it. Any other
    error is raised: the build stops, as it always did."""
    try:
        return result()
    except Exception as exc:  # only KilledWorker is caught; the rest is raised
        if type(exc).__name__ != "KilledWorker":  # distributed.scheduler.KilledWorker (no import of distributed here)
            raise
        m = re.search(r"on (\d+) different workers", str(exc))
        tries = f"{m.group(1)} workers died running it" if m else "its workers died running it"
        return {GIVEN_UP: part, "reason": f"worker_died: {tries} (distributed.scheduler.allowed-failures spent)"}


def note_given_up(stage: Stage, summary: dict, given_up: list[dict]) -> dict:
    """STAGE's SUMMARY with its given-up partitions named (extra["given_up_partitions"]:
    task name -> reason) and a note saying they are tried again by the next build."""
    names = {f"{stage.name}-{part_label(stage, g[GIVEN_UP])}": g["reason"] for g in given_up}
    summary = dict(summary, extra=dict(summary.get("extra", {}), given_up_partitions=names),
                   notes=list(summary.get("notes", [])))
    summary["notes"].append(f"{len(names)} partition(s) given up: " + "; ".join(f"{n} ({r})" for n, r in names.items())
                            + "; left pending, the next build runs them again")
    return summary


def run_stages(ctx: BuildContext, runner=None, stages: tuple[Stage, ...] = STAGES) -> list[dict]:
    """The one driver of a build: every stage in order, each with the summaries of
    those before it. RUNNER decides where work runs (``LocalRunner``, or the Prefect
    flow's, which maps partitions as tasks on a cluster). Returns the funnel."""
    from pipeline.core import interrupt

    runner = runner or LocalRunner()
    funnel: list[dict] = []
    interrupt.reset()  # a stop asked of an earlier build of this process is not this one's
    try:
        _run_stages(ctx, runner, stages, funnel)
    except BaseException as exc:
        # An interrupt reached the build's thread (KeyboardInterrupt, Prefect's
        # TerminationSignal for SIGTERM, SystemExit): the work running in other threads
        # stops too, rather than the task runner waiting for it to finish. (By name:
        # the stages' layer does not import Prefect.)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or type(exc).__name__ == "TerminationSignal":
            interrupt.request_stop(type(exc).__name__)
        raise
    return funnel


def _run_stages(ctx: BuildContext, runner, stages: tuple[Stage, ...], funnel: list[dict]) -> None:
    for st in stages:
        if st.applies is not None and not st.applies(ctx):
            continue  # a stage this build's configuration does not use (the funnel leaves it out)
        c = replace(ctx, funnel=tuple(funnel))
        with dir_lock(ctx.out / st.writes.split("/")[0], f"build's {st.name} stage"):
            if st.parts is not None and (st.fan_out == "always" or runner.distributed):
                results = runner.map(st, c, runner.call(st, "parts", c))
                given_up = [r for r in results if GIVEN_UP in r]
                summary = runner.call(st, "finish", c, [r for r in results if GIVEN_UP not in r])
                funnel.append(note_given_up(st, summary, given_up) if given_up else summary)
            else:
                funnel.append(runner.call(st, "run", c))


def write_build_record(out: Path, stages: list[dict], started: float, report_cfg) -> Path:
    """What a build leaves for people: OUT/reports/build-<UTC>[-vNNNN]/ (funnel.json,
    funnel.png, likeness.{json,md,png}; never overwritten by a later build) and the
    latest at OUT/funnel.{json,png} (with every build's history) and OUT/likeness.*."""
    import shutil

    from pipeline.report.likeness import write_report
    from pipeline.shards.stage import load_manifest

    manifest = load_manifest(out / "shards")
    added = stages[-1]["out"]
    version = manifest["versions"][-1]["version"] if manifest["versions"] and added else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    report = out / "reports" / (f"build-{stamp}" + (f"-v{version:04d}" if version else ""))
    report.mkdir(parents=True, exist_ok=True)
    atomic_write_json(report / "funnel.json", stages)
    plot_funnel(stages, report / "funnel.png")
    atomic_write_json(out / "funnel.json", stages)
    plot_funnel(stages, out / "funnel.png", build_history(out / "reports"))
    # each version's profile is computed once (shards/profiles/): this reads only the new shards
    write_report(out / "shards", report, report_cfg.webtext_domains, report_cfg.token_sample, progress_bar=False)
    for name in ("likeness.json", "likeness.md", "likeness.png"):
        if (report / name).is_file():
            shutil.copyfile(report / name, out / name)
    return report


def check_inputs(dumps: list[str], url_lists: list[str], out: str | Path, cfg: Config) -> tuple[list[str], list[str]]:
    """Fails with one clear sentence, before any work, on: a bad configuration, no
    input, a missing dump file or URL list, an output directory that cannot be
    written. Returns the dump files and URL lists, globs expanded."""
    from pipeline.sources.urllists import expand_url_lists

    files = expand_dumps(list(dumps or []))
    lists = expand_url_lists(list(url_lists)) if url_lists else []
    if not files and not lists:
        raise ConfigError("no dump files given" + (" and no URL lists" if url_lists else ""))
    missing = [f for f in files + lists if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"input file(s) not found: {', '.join(missing)}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable: {exc}") from exc
    return files, lists


def run_build(dumps: list[str | Path], out_dir: str | Path, cfg: Config, url_lists: list[str | Path] = (),
              runner=None) -> list[RunSummary]:
    """``webtext build --no-prefect``: the whole build in this process, through the same
    driver as the Prefect flow."""
    files, lists = check_inputs([str(d) for d in dumps], [str(u) for u in url_lists], out_dir, cfg)
    out = Path(out_dir).resolve()
    with build_lock(out):
        ctx = BuildContext(out, cfg, tuple(str(Path(d).resolve()) for d in files),
                           tuple(str(Path(u).resolve()) for u in lists))
        stages = run_stages(ctx, runner)
        write_build_record(out, stages, ctx.started, cfg.report)
    return [RunSummary.from_dict(s) for s in stages]


def funnel_table(stages: list[RunSummary]) -> str:
    return "\n".join(s.table() for s in stages)
