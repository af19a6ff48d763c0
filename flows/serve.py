"""``webtext serve``: the scheduled monthly build and the training each new corpus version triggers,
served as Prefect deployments from one process. On start it ends the runs a killed serve left
"Running" and starts the training a killed serve missed (``flows.lifecycle``)."""

from __future__ import annotations

from pathlib import Path

from flows.corpus import CORPUS_PUBLISHED, build_corpus
from flows.train import train_model

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
    import asyncio
    import os

    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.events import DeploymentEventTrigger
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from flows.lifecycle import (
        BUILD_DEPLOYMENT,
        HEARTBEAT_S,
        SERVE_PID_ENV,
        TRAIN_DEPLOYMENT,
        reconcile,
    )

    # the flow-run processes this runner starts end themselves (marked Crashed) if serve dies
    os.environ[SERVE_PID_ENV] = str(os.getpid())
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
    # prefect.serve(), with what a restart needs between creating the deployments and
    # serving them: runs a killed serve left Running are ended (their concurrency slot
    # freed), and a corpus version whose training was missed gets a training run
    runner = Runner(pause_on_shutdown=False, heartbeat_seconds=HEARTBEAT_S)
    try:
        for d in (build, train):
            runner.add_deployment(d)
        reconcile([Path(out).resolve()], log=lambda m: print(m, flush=True))
        try:
            asyncio.run(runner.start())
        except (KeyboardInterrupt, TerminationSignal):
            pass
    finally:
        try:
            stopped = stop_unfinished_runs([BUILD_DEPLOYMENT, TRAIN_DEPLOYMENT])
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
