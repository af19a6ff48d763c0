"""Prefect runs that end (issue 31): what a SIGKILLed `webtext build` or `webtext serve` leaves
behind is ended, with real SIGKILLs against real Prefect servers: the temporary server of a
build dies with it; a killed build's run ends Crashed (at the next build's start, or by the
heartbeat automation with no restart); a restarted serve ends the killed serve's run, frees
the build's concurrency slot and runs the next scheduled build at once; a served run ends
itself when serve alone is killed; and a restarted serve trains the version whose training
was killed."""

import os
import signal
import sqlite3
import subprocess
import time

import psutil
import pytest
from flowkit import (
    WEBTEXT,
    Api,
    env_for,
    lines,
    start_prefect_server,
    stop_group,
    wait_for,
    write_toml,
)

from flows.corpus import build_corpus
from flows.lifecycle import (
    HOST,
    PID,
    UNRESPONSIVE_AUTOMATION,
    ensure_unresponsive_automation,
)
from pipeline.shards.stage import load_manifest

TINY_TRAINING = ["block_size=32", "batch_size=4", "eval_iters=1", "warmup_steps=1"]


def _start(cmd: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def _tail(path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.is_file() else ""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_temporary_server_dies_with_a_killed_build_and_its_run_ends_crashed(world, cfg, tmp_path):
    """No PREFECT_API_URL: SIGKILL of the build process alone takes its temporary server
    (a ~225 MB uvicorn) with it; the next build on the same Prefect home ends the killed
    build's run as Crashed and resumes."""
    home = tmp_path / "home"
    env = env_for(None, PREFECT_HOME=str(home),
                  PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}")
    out, log = tmp_path / "out", tmp_path / "build.log"
    slow = write_toml(tmp_path / "slow.toml", cfg, per_host_delay_s=1.0)
    cmd = WEBTEXT + ["build", "--dump", str(world[1][0]), "--out", str(out)]
    build = _start(cmd + ["--config", str(slow)], env, log)
    try:
        def server():
            kids = psutil.Process(build.pid).children(recursive=True)
            return [k for k in kids if "prefect.server.api.server:create_app" in " ".join(k.cmdline())]

        servers = wait_for("no temporary server", server, 120, alive=build, log=lambda: _tail(log))
        wait_for("the build did not start fetching", lambda: lines(out / "fetch") >= 2, 120, alive=build,
                 log=lambda: _tail(log))
        os.kill(build.pid, signal.SIGKILL)  # the build alone, as the OOM killer would
        build.wait()
        t0 = time.monotonic()
        wait_for("the temporary server outlived the build", lambda: _gone(servers[0].pid), 10)
        print(f"temporary server gone {time.monotonic() - t0:.1f} s after the build was killed")
    finally:
        stop_group(build, signal.SIGKILL)
    again = subprocess.run(cmd + ["--config", str(write_toml(tmp_path / "cfg.toml", cfg))], env=env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    with sqlite3.connect(home / "prefect.db") as db:
        states = [r[0] for r in db.execute("SELECT state_type FROM flow_run ORDER BY created")]
    assert states == ["CRASHED", "COMPLETED"], states
    assert len(load_manifest(out / "shards")["versions"]) == 1


def test_a_killed_builds_run_ends_crashed_at_the_next_build_or_by_its_missing_heartbeats(
        prefect_api, world, cfg, tmp_path):
    """A `webtext build` against a lasting server, SIGKILLed (its process group) mid-fetch,
    leaves its run Running. (1) The next build on any directory ends it as Crashed at its
    start (the run's labels name a pid that is gone), then resumes. (2) With no next
    build, Prefect's zombie detection ends it: heartbeats every 30 s and the automation
    webtext creates (its window shortened here from 90 s to 40 s)."""
    from prefect.client.orchestration import get_client

    api = Api(prefect_api)
    env = env_for(prefect_api)
    slow = write_toml(tmp_path / "slow.toml", cfg, per_host_delay_s=1.0)

    def killed_build(out, log):
        p = _start(WEBTEXT + ["build", "--dump", str(world[1][0]), "--out", str(out), "--config", str(slow)], env, log)
        try:
            wait_for("the build did not start fetching", lambda: lines(out / "fetch") >= 3, 180, alive=p,
                     log=lambda: _tail(log))
        finally:
            stop_group(p, signal.SIGKILL)
        runs = api.runs("build-corpus", out=out.resolve())
        assert [r["state_type"] for r in runs] == ["RUNNING"], runs
        assert runs[0]["labels"][HOST] and runs[0]["labels"][PID]
        return runs[0]

    # (1) the next build ends the ghost at its start
    out = tmp_path / "built-again"
    ghost = killed_build(out, tmp_path / "b1.log")
    build_corpus([str(world[1][0])], str(out), cfg.to_dict())
    ended = api.run(ghost["id"])
    assert ended["state_type"] == "CRASHED" and "is gone" in ended["state"]["message"], ended["state"]
    assert len(load_manifest(out / "shards")["versions"]) == 1

    # (2) no next build: the heartbeat automation
    with get_client(sync_client=True) as client:
        for a in client.read_automations_by_name(UNRESPONSIVE_AUTOMATION):
            client.delete_automation(a.id)
    assert ensure_unresponsive_automation(within_s=40)
    assert not ensure_unresponsive_automation()  # once, by name
    ghost = killed_build(tmp_path / "left-alone", tmp_path / "b2.log")
    t0 = time.monotonic()
    state = wait_for("the unresponsive run was not crashed", lambda: (
        s := api.run(ghost["id"]))["state_type"] == "CRASHED" and s["state"], 120, every_s=2)
    assert "no heartbeat" in state["message"], state
    print(f"run crashed by the automation {time.monotonic() - t0:.0f} s after its build was killed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `prefect server start` (serve needs its scheduler), visiting schedules every second."""
    tmp = tmp_path_factory.mktemp("prefect-server")
    proc, url = start_prefect_server(tmp, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",
                                     PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS="3",
                                     PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS="2")
    yield url, tmp
    stop_group(proc)


def _serve(server, world, toml, out, log, *args) -> subprocess.Popen:
    url, tmp = server
    env = env_for(url, PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_HOME=str(tmp / "client-home"))
    return _start(WEBTEXT + ["serve", "--dump", str(world[1][0]), "--out", str(out), "--config", str(toml), *args],
                  env, log)


@pytest.mark.timeout(600)
def test_a_restarted_serve_ends_the_killed_run_and_builds_at_once(server, world, cfg, tmp_path):
    """`webtext serve --interval 20`, SIGKILLed (serve and its flow-run process) mid-build:
    the run stays Running and holds the deployment's one concurrency slot. The restarted
    serve ends it as Crashed on start and runs the next scheduled build at once (not
    after the ~5 min the slot's lease would take). Then serve alone is SIGKILLed: its
    flow-run process marks its run Crashed and ends, with its children."""
    api = Api(server[0])
    out, log = tmp_path / "out", tmp_path / "serve.log"
    slow = write_toml(tmp_path / "slow.toml", cfg, per_host_delay_s=1.0)
    args = ["--interval", "20", "max_steps=4", "eval_interval=4", *TINY_TRAINING]
    procs = [_serve(server, world, slow, out, log, *args)]
    try:
        running = lambda: [r for r in api.runs("build-corpus", out=out.resolve()) if r["state_type"] == "RUNNING"]
        ghost = wait_for("no scheduled build ran", running, 180, alive=procs[0], log=lambda: _tail(log))[0]
        wait_for("the build did not fetch", lambda: lines(out / "fetch") >= 3, 120, log=lambda: _tail(log))
        stop_group(procs[0], signal.SIGKILL)
        time.sleep(3)
        assert api.run(ghost["id"])["state_type"] == "RUNNING"  # what Prefect alone leaves

        restarted = time.monotonic()
        procs.append(_serve(server, world, slow, out, log, *args))
        ended = wait_for("the killed serve's run was not ended", lambda: (
            r := api.run(ghost["id"]))["state_type"] == "CRASHED" and r, 60, alive=procs[1], log=lambda: _tail(log))
        assert "is gone" in ended["state"]["message"]
        nxt = wait_for("no next build ran after the restart", lambda: [r for r in running() if r["id"] != ghost["id"]],
                       90, alive=procs[1], log=lambda: _tail(log))[0]
        took = time.monotonic() - restarted
        assert nxt["auto_scheduled"] and took < 90
        print(f"restarted serve: killed run ended, next scheduled build running {took:.0f} s after the restart")

        # serve alone killed: the flow-run process ends its run and itself
        pgid = procs[1].pid
        wait_for("the build's process did not start", lambda: psutil.Process(procs[1].pid).children(), 30)
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].wait()
        t0 = time.monotonic()
        crashed = wait_for("the orphaned run was not ended", lambda: (
            r := api.run(nxt["id"]))["state_type"] == "CRASHED" and r, 30)
        # Prefect 3.9's flow-run process also exits on its own when its runner is gone
        # ("Execution was aborted by Python system exit call."); 3.8's stayed: webtext ends it
        assert "serve died" in crashed["state"]["message"] or "system exit" in crashed["state"]["message"], crashed

        def group_left():  # processes of serve's group still running (zombies are dead: nobody reaps them here)
            left = []
            for p in psutil.process_iter(["status"]):
                try:
                    if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                        left.append(p.pid)
                except (OSError, psutil.Error):
                    pass
            return left

        wait_for("processes of the killed serve's run are left", lambda: not group_left(), 30)
        print(f"orphaned run crashed and its processes gone {time.monotonic() - t0:.1f} s after serve was killed")
    finally:
        for p in procs:
            stop_group(p, signal.SIGKILL)
        for r in api.runs("build-corpus"):  # the runs the schedule made ahead: not for the next test
            if r["state_type"] in ("SCHEDULED", "PENDING"):
                api.call("DELETE", f"/flow_runs/{r['id']}")


@pytest.mark.timeout(600)
def test_a_restarted_serve_trains_the_version_whose_training_was_killed(server, world, cfg, tmp_path):
    """A build started by a deployment run publishes version 1 and triggers training;
    serve is SIGKILLed (with its flow-run process) while training runs. The restarted
    serve ends that training run as Crashed and starts a new one for version 1, which
    completes; nothing else is trained."""
    api = Api(server[0])
    out, log = tmp_path / "out", tmp_path / "serve.log"
    toml = write_toml(tmp_path / "cfg.toml", cfg)
    # a training that runs long enough to be killed (no checkpoint before the kill)
    procs = [_serve(server, world, toml, out, log, "--no-schedule", "max_steps=100000", "eval_interval=100000",
                    *TINY_TRAINING)]
    try:
        wait_for("serve did not update its deployments", lambda: _deployed(api, out, "max_steps=100000"), 60,
                 alive=procs[0], log=lambda: _tail(log))
        params = dict(api.deployment("build-corpus/webtext-build")["parameters"])
        build = api.run_deployment("build-corpus/webtext-build", params)
        trains = lambda: api.runs("train-model", build_dir=out.resolve())
        first = wait_for("no training was triggered", lambda: [r for r in trains() if r["state_type"] == "RUNNING"],
                         240, alive=procs[0], log=lambda: _tail(log))[0]
        assert api.run(build["id"])["state_type"] == "COMPLETED"
        wait_for("training did not start", lambda: (out / "model" / "tokens-v0001" / "manifest.json").is_file(), 120)
        time.sleep(2)
        stop_group(procs[0], signal.SIGKILL)
        assert api.run(first["id"])["state_type"] == "RUNNING"
        assert not (out / "model" / "train-v0001" / "eval.json").is_file()

        procs.append(_serve(server, world, toml, out, log, "--no-schedule", "max_steps=4", "eval_interval=4",
                            *TINY_TRAINING))
        again = wait_for("the missed training did not complete", lambda: [
            r for r in trains() if r["id"] != first["id"] and r["state_type"] == "COMPLETED"], 240, alive=procs[1],
            log=lambda: _tail(log))
        assert api.run(first["id"])["state_type"] == "CRASHED"
        assert len(again) == 1 and "webtext-missed-training" in again[0]["tags"]
        assert str(again[0]["parameters"]["version"]) == "1"
        assert (out / "model" / "train-v0001" / "eval.json").is_file()
        time.sleep(3)
        assert len(trains()) == 2, [(r["name"], r["state_type"]) for r in trains()]
    finally:
        for p in procs:
            stop_group(p)


def _deployed(api: Api, out, override: str) -> bool:
    """Whether this serve's deployments are there (an earlier serve made them with other parameters)."""
    import httpx

    try:
        return (api.deployment("build-corpus/webtext-build")["parameters"]["out"] == str(out.resolve())
                and override in api.deployment("train-model/webtext-train")["parameters"]["overrides"])
    except httpx.HTTPStatusError:
        return False
