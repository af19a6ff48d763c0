"""Prefect runs that end: nothing a killed process leaves behind stays "Running" for ever.

- ``temporary_server``: the temporary Prefect server of a ``webtext build`` / ``demo``
  without ``PREFECT_API_URL`` is a child that dies with the process that started it,
  SIGKILL included (Linux: ``PR_SET_PDEATHSIG``; elsewhere a small supervisor that polls
  its parent). Prefect's own temporary server outlived a killed parent (~225 MB each).
- ``claim_run``: each build and training run records on itself (flow-run labels) the
  host, pid and process start time that run it; a run served by ``webtext serve`` ends
  itself, marked Crashed, when serve dies under it (SIGKILL, OOM).
- ``crash_dead_runs``: Running/Cancelling runs of our flows whose process is gone (same
  host, pid dead or reused) are set Crashed/Cancelled, which frees a deployment's
  concurrency slot at once. ``webtext serve`` does this on start, every build at its start.
- ``ensure_unresponsive_automation``: runs on other hosts, or whose process died with no
  restart after it, are ended by Prefect's own zombie detection: heartbeats every 30 s
  and an automation that marks a run Crashed 90 s after its last heartbeat.
- ``train_missed_versions``: the newest published corpus version of a build directory
  that has no finished training and no training run under way gets one (a serve killed
  during training, a trigger that never fired).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

BUILD_FLOW, TRAIN_FLOW = "build-corpus", "train-model"
BUILD_DEPLOYMENT, TRAIN_DEPLOYMENT = f"{BUILD_FLOW}/webtext-build", f"{TRAIN_FLOW}/webtext-train"
# the flow-run labels claim_run writes
HOST, PID, STARTED = "webtext.host", "webtext.pid", "webtext.pid-started"
# set by `webtext serve` for the flow-run processes it starts (their parent)
SERVE_PID_ENV = "WEBTEXT_SERVE_PID"
# set while a temporary server of ours is the API (no automation, nobody else sees it)
TEMPORARY_ENV = "WEBTEXT_TEMPORARY_PREFECT_SERVER"
UNRESPONSIVE_AUTOMATION = "webtext-crash-unresponsive-runs"
HEARTBEAT_S = 30  # Prefect's minimum
UNRESPONSIVE_AFTER_S = 90  # after the last heartbeat (Prefect's documented zombie window)


# --- a temporary server that dies with its process ----------------------------------------

# Runs in the server's process before uvicorn: asks the kernel to SIGKILL it when its
# parent dies, then becomes uvicorn (the request survives exec). Elsewhere than Linux it
# stays as a supervisor that polls its parent and kills the server when the parent is gone.
_TRAMPOLINE = r"""
import ctypes, os, signal, subprocess, sys, time
parent, cmd = int(sys.argv[1]), [sys.executable] + sys.argv[2:]
if sys.platform.startswith("linux"):
    if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the parent died before the request was made
        sys.exit(1)
    os.execv(sys.executable, cmd)
child = subprocess.Popen(cmd)
signal.signal(signal.SIGTERM, lambda *a: (child.terminate(), sys.exit(0)))
while child.poll() is None:
    if os.getppid() != parent:
        child.kill()
        break
    time.sleep(0.5)
sys.exit(child.wait())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def temporary_server(timeout_s: float | None = None) -> Iterator[str | None]:
    """Without PREFECT_API_URL: a Prefect API on 127.0.0.1 (Prefect's ephemeral server
    app, as Prefect starts it itself) for the duration, in a child process that the
    kernel kills when this process dies, however it dies. Yields its API URL (None, and
    does nothing, when PREFECT_API_URL is set)."""
    import httpx
    import prefect
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield None
        return
    timeout_s = timeout_s or max(60.0, float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    proc, api = None, ""
    for _ in range(3):  # a port taken between the choice and uvicorn's bind: another one
        port = _free_port()
        api = f"http://127.0.0.1:{port}/api"
        proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), "-m", "uvicorn", "--app-dir",
             str(Path(prefect.__file__).parent.parent), "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"], env=env,
            # a session of its own: Ctrl-C at a terminal (SIGINT to the whole foreground group)
            # must not stop the server before the interrupted run has reported its state to it
            start_new_session=True)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < timeout_s:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            break
    if proc is None or proc.poll() is not None or time.monotonic() - t0 >= timeout_s:
        if proc is not None and proc.poll() is None:
            proc.kill()
        raise RuntimeError(f"the temporary Prefect server did not start in {timeout_s:.0f} s")
    old = {k: os.environ.get(k) for k in ("PREFECT_API_URL", TEMPORARY_ENV)}
    os.environ.update({"PREFECT_API_URL": api, TEMPORARY_ENV: "1"})  # for child processes (Dask workers)
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            yield api
    finally:
        _drain_queued()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain_queued() -> None:
    """Send the logs and events still queued while the server is up (at exit Prefect's
    workers would try a stopped server for a minute and more)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=15)


# --- who runs a flow run -------------------------------------------------------------------


def _started(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def claim_run() -> None:
    """Inside a flow run: label it with this host, pid and process start time (what
    ``crash_dead_runs`` checks), and when ``webtext serve`` started this process, end
    the run as Crashed if serve dies. Never fails the run."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    run_id = ctx.flow_run.id
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(run_id, {HOST: socket.gethostname(), PID: str(os.getpid()),
                                                   STARTED: f"{_started(os.getpid()):.2f}"})
    except Exception as exc:  # an old server without labels: only the heartbeats then
        print(f"could not label the flow run with its process: {type(exc).__name__}: {exc}", flush=True)
    serve_pid = os.environ.get(SERVE_PID_ENV)
    if serve_pid and serve_pid == str(os.getppid()):
        threading.Thread(target=_end_with_parent, args=(int(serve_pid), run_id), daemon=True,
                         name="webtext-serve-watch").start()


def _end_with_parent(parent: int, run_id) -> None:
    """A served run's process when serve is gone: nobody can cancel it or renew its
    concurrency slot any more. Mark it Crashed, stop its own children, exit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Crashed(message="webtext serve died during this run; "
                                                               "the next build resumes from what it wrote"), force=True)
    except Exception:
        pass
    _kill_children_and_exit()


def _kill_children_and_exit() -> None:
    import psutil

    for c in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            c.kill()
    os.kill(os.getpid(), signal.SIGKILL)


def process_gone(labels: dict) -> bool | None:
    """Whether the process a run's labels name is gone: True / False, None when they
    name none or another host (then only the heartbeats can tell)."""
    import psutil

    if str(labels.get(HOST)) != socket.gethostname() or PID not in labels:
        return None
    try:
        pid, started = int(labels[PID]), float(labels.get(STARTED, 0))
        return abs(_started(pid) - started) > 1.0  # the pid was reused by another process
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, ValueError):
        return None


# --- reconciliation ------------------------------------------------------------------------


def crash_dead_runs(flows: tuple[str, ...] = (BUILD_FLOW, TRAIN_FLOW)) -> list[str]:
    """Set Running runs of FLOWS whose process is gone Crashed (Cancelling ones
    Cancelled). Forced: a deployment's concurrency slot is released with it. Returns
    the names of the runs ended."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Crashed

    ended = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows))),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.RUNNING, StateType.CANCELLING]))), limit=200)
        for r in runs:
            if not process_gone(r.labels or {}):
                continue
            why = (f"its process ({r.labels[HOST]} pid {r.labels[PID]}) is gone; found by webtext on "
                   "start; the next build resumes from what it wrote")
            state = Cancelled(message=why) if r.state_type == StateType.CANCELLING else Crashed(message=why)
            client.set_flow_run_state(r.id, state, force=True)
            ended.append(r.name)
    return ended


def ensure_unresponsive_automation(within_s: int = UNRESPONSIVE_AFTER_S) -> bool:
    """Prefect's zombie detection for our flows: an automation that marks a build or
    training run Crashed when WITHIN_S pass after a heartbeat with no other heartbeat
    and no final state. Created once (by name); edit it in the UI to change the window.
    Returns whether it was created now."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(UNRESPONSIVE_AUTOMATION):
            return False
        client.create_automation(AutomationCore(
            name=UNRESPONSIVE_AUTOMATION,
            description=f"webtext: a {BUILD_FLOW} or {TRAIN_FLOW} run that sent no heartbeat for {within_s} s "
                        "(its process was killed, or its machine lost) is marked Crashed, freeing its "
                        "deployment's concurrency slot",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                        "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ResourceSpecification({"prefect.resource.role": "flow",
                                                     "prefect.resource.name": [BUILD_FLOW, TRAIN_FLOW]}),
                for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                within=timedelta(seconds=within_s)),
            actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                        message=f"no heartbeat for {within_s} s: its process is gone")]))
    return True


def newest_published(build_dir: Path) -> int | None:
    """The newest shard version a build announced (``webtext.corpus.published``)."""
    path = build_dir / ".prefect" / "announced.json"
    done = json.loads(path.read_text()) if path.is_file() else []
    return max(done) if done else None


def train_missed_versions(build_dirs: list[str | Path], deployment: str = TRAIN_DEPLOYMENT) -> list[str]:
    """For each build directory: if its newest published version has no finished
    training (``train-vNNNN/eval.json`` and ``ckpt.pt``) and no training run for it is
    scheduled, pending or running, create one from DEPLOYMENT (nothing when that
    deployment does not exist). Older untrained versions are left: the newest
    version's model is trained on them too. Returns the new runs' names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return created
        in_flight = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
                StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED]))),
            limit=200)
        busy = {(str(r.parameters.get("build_dir")), str(r.parameters.get("version"))) for r in in_flight}
        for d in build_dirs:
            d = Path(d).resolve()
            v = newest_published(d)
            if v is None or (str(d), str(v)) in busy:
                continue
            out = Path((dep.parameters or {}).get("out") or d / "model")
            trained = out / f"train-v{v:04d}"
            if (trained / "eval.json").is_file() and (trained / "ckpt.pt").is_file():
                continue
            run = client.create_flow_run_from_deployment(dep.id, parameters={"build_dir": str(d), "version": str(v)},
                                                         tags=["webtext-missed-training"])
            created.append(f"{run.name} ({d} v{v})")
    return created


def reconcile(build_dirs: list[str | Path], log=print) -> None:
    """What a serve or a build does on start: end runs whose process is gone, make sure
    Prefect's zombie detection covers our flows (on a lasting server), and train the
    newest published version of BUILD_DIRS if its training was missed. Each step only
    logs when it fails: none of it may stop a build."""
    steps = [("end runs whose process is gone", lambda: crash_dead_runs(), "ended as crashed: {}"),
             ("train missed corpus versions", lambda: train_missed_versions(build_dirs), "training started: {}")]
    if not os.environ.get(TEMPORARY_ENV):
        steps.insert(1, ("create the unresponsive-run automation", lambda: ensure_unresponsive_automation(),
                         f"created the automation {UNRESPONSIVE_AUTOMATION}"))
    for what, step, done in steps:
        try:
            got = step()
        except Exception as exc:
            log(f"could not {what}: {type(exc).__name__}: {exc}")
            continue
        if got:
            log(done.format(", ".join(got) if isinstance(got, list) else got))
