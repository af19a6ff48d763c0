"""A whole corpus build, stage after stage, each reading what the one before wrote:

    links -> fetch (WARC) -> extract -> filter -> dedup -> shards (+ manifest)

``run_stages`` is the one driver of a build (the stages are declared in
``pipeline/stages.py``); ``run_build`` runs it in this process, the Prefect flow
runs the same driver with a runner that makes tasks. The funnel (every stage's
in/out/dropped-by-reason) is written to ``OUT/funnel.json``, into the shard
manifest's version entry and, per build, under ``OUT/reports/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json
from pipeline.core.summary import RunSummary
from pipeline.report.funnel import build_history, plot_funnel
from pipeline.stages import STAGES, BuildContext, Stage

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
    by the kernel when the holder dies (a killed run never leaves a stale lock). WHAT
    names the holder in the refusal ("build", "fetch", ...)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.pread(fd, 256, 0).decode(errors="replace").strip().split("\n")
            other, pid = (held[0], held[-1]) if len(held) == 2 else ("webtext run", held[0] or "?")
            raise BuildLocked(f"another {other} is running on {out} (pid {pid}); wait for it or stop it, then run "
                              f"this {what} again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}\n{os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)


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


def run_stages(ctx: BuildContext, runner=None, stages: tuple[Stage, ...] = STAGES) -> list[dict]:
    """The one driver of a build: every stage in order, each with the summaries of
    those before it. RUNNER decides where work runs (``LocalRunner``, or the Prefect
    flow's, which maps partitions as tasks on a cluster). Returns the funnel."""
    runner = runner or LocalRunner()
    funnel: list[dict] = []
    for st in stages:
        if st.applies is not None and not st.applies(ctx):
            continue  # a stage this build's configuration does not use (the funnel leaves it out)
        c = replace(ctx, funnel=tuple(funnel))
        with dir_lock(ctx.out / st.writes.split("/")[0], f"build's {st.name} stage"):
            if st.parts is not None and (st.fan_out == "always" or runner.distributed):
                results = runner.map(st, c, runner.call(st, "parts", c))
                funnel.append(runner.call(st, "finish", c, results))
            else:
                funnel.append(runner.call(st, "run", c))
    return funnel


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
