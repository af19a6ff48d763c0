"""The build on a real Dask cluster (issue #28): a `dask scheduler` and `dask worker`
processes started as separate OS processes on 127.0.0.1 (not a LocalCluster), the
`build-corpus` flow sending its tasks to them by address, as `webtext build
--task-runner dask --dask-address tcp://...` does.

- two workers: the shards equal a local build's, and both workers ran tasks;
- a worker SIGKILLed (its whole process group, nanny included: a lost machine) in the
  middle of fetch: the build finishes on the other worker, the next build (a fresh
  worker beside it) adds nothing, and the shards equal the local build's, no page
  fetched twice;
- a poison partition (an extract log holding a page that takes its worker down every
  time, through the test-only ``WEBTEXT_FAULT_KILL_WORKER`` hook of pipeline/core/pool.py)
  is given up after ``distributed.scheduler.allowed-failures`` + 1 worker deaths (1 + 1
  here): the build completes without it (the other partitions' documents published,
  the partition named in the funnel with its reason, its task run Crashed), and the
  next build, the cause gone, runs it and ends with the local build's documents.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from flowkit import outcome_lines, shard_docs, stop_group, wait_for

from flows.corpus import build_corpus, task_runner
from flows.demo import demo_config
from pipeline.build import run_build

REPO = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).with_name("dask"))


class Cluster:
    """`dask scheduler` and `dask worker` processes (each its own process group) on 127.0.0.1."""

    def __init__(self, tmp: Path, allowed_failures: int = 1):
        self.tmp = tmp
        # worker-saturation 1.0: a worker holds only the task it runs (Dask's default 1.1 gives a
        # 1-thread worker a second one, queued, which a death there counts against too)
        self.env = dict(os.environ, PYTHONPATH=str(REPO), DASK_DISTRIBUTED__WORKER__DAEMON="False",
                        DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures),
                        DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
        self.env.pop("PREFECT_API_URL", None)  # tasks report to the flow's API (the context they are sent with)
        sched_file = tmp / "scheduler.json"
        self.scheduler = self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--no-dashboard", "--scheduler-file", str(sched_file)], self.env)
        wait_for("the scheduler writes its address", sched_file.is_file, 60, self.scheduler, lambda: self.log("scheduler"))
        self.address = orjson.loads(sched_file.read_bytes())["address"]
        self.workers: dict[str, subprocess.Popen] = {}
        from distributed import Client

        self.client = Client(self.address, timeout=60)

    def _start(self, name: str, cmd: list[str], env: dict) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, cwd=self.tmp, start_new_session=True, stdout=open(self.tmp / f"{name}.log", "ab"),
                                stderr=subprocess.STDOUT)

    def log(self, name: str, tail: int = 3000) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-tail:]

    def add_worker(self, name: str, **env) -> None:
        """A `dask worker` (with its nanny) of one thread, named NAME; waits until it joined."""
        (self.tmp / name).mkdir(exist_ok=True)
        self.workers[name] = self._start(name, [DASK, "worker", self.address, "--nthreads", "1", "--name", name,
                                                "--host", "127.0.0.1", "--no-dashboard",
                                                "--local-directory", str(self.tmp / name)], dict(self.env, **env))
        wait_for(f"worker {name} joins", lambda: name in self.names().values(), 60, self.workers[name],
                 lambda: self.log(name))

    def names(self) -> dict[str, str]:
        """Worker address -> name, of the workers the scheduler has now."""
        return {a: w["name"] for a, w in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group (nanny, worker, their children): a lost machine."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(10)

    def close(self) -> None:
        self.client.close()
        for p in list(self.workers.values()) + [self.scheduler]:
            stop_group(p, timeout_s=10)


@pytest.fixture(scope="module")
def local(world, web, tmp_path_factory):
    """The reference: the same build in one process (`webtext build --no-prefect`): its
    directory and its published documents."""
    out = tmp_path_factory.mktemp("local")
    run_build(world[1], out, demo_config(world[0], web.address))
    return out, shard_docs(out)


def texts(directory: Path) -> dict[str, str]:
    """id -> text of a stage's document parts (extract, filter)."""
    from pipeline.extract.stage import read_documents

    t = read_documents(directory, ["id", "text"])
    return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))


def build(c: Cluster, world, out: Path, cfg) -> dict:
    return build_corpus.with_options(task_runner=task_runner("dask", dask_address=c.address))(
        [str(p) for p in world[1]], str(out), cfg.to_dict())


def stage(result: dict, name: str) -> dict:
    return next(s for s in result["stages"] if s["stage"] == name)


def test_two_worker_processes_build_what_one_process_builds(prefect_api, world, web, local, tmp_path):
    from distributed import get_task_stream

    local = local[1]

    c = Cluster(tmp_path)
    try:
        c.add_worker("w0")
        c.add_worker("w1")
        with get_task_stream(c.client) as stream:
            r = build(c, world, tmp_path / "out", demo_config(world[0], web.address))
        names = c.names()
        per_worker: dict[str, int] = {}
        for t in stream.data:
            if t.get("worker"):
                per_worker[names[t["worker"]]] = per_worker.get(names[t["worker"]], 0) + 1
    finally:
        c.close()
    print(f"tasks per worker: {per_worker}")
    # (b) both separate worker processes ran tasks (partitions and finishing steps)
    assert set(per_worker) == {"w0", "w1"} and min(per_worker.values()) >= 3, per_worker
    # (a) the same documents, ids and texts, as the build in one process
    assert shard_docs(tmp_path / "out") == local
    assert r["version"] == 1 and stage(r, "shard")["out"] == len(local)


def test_a_worker_killed_mid_fetch_loses_and_repeats_nothing(prefect_api, world, web, local, tmp_path):
    out, local = tmp_path / "out", local[1]
    # 0.25 s between two requests to a host: fetch lasts a few seconds, long enough to kill in
    cfg = demo_config(world[0], web.address).replace("fetch", per_host_delay_s=0.25)
    c = Cluster(tmp_path)
    killed: list[str] = []

    def kill_mid_fetch() -> None:
        """Once fetch has written 5 outcomes and is not done, SIGKILL a worker running a fetch task."""
        def running():
            if len(outcome_lines(out / "fetch")) < 5 or (out / "fetch" / "summary.fetch.json").is_file():
                return None
            busy = [c.names().get(a) for a, keys in c.client.processing().items() if keys]
            return next((n for n in busy if n in c.workers), None)

        victim = wait_for("a worker running a fetch partition", running, 120, every_s=0.05)
        c.kill(victim)
        killed.append(victim)

    try:
        c.add_worker("w0")
        c.add_worker("w1")
        killer = threading.Thread(target=kill_mid_fetch, daemon=True)
        killer.start()
        r1 = build(c, world, out, cfg)  # the lost worker's tasks run again on the other one
        killer.join(5)
        assert killed, "no worker was killed"
        assert stage(r1, "fetch")["extra"].get("given_up_partitions") is None
        c.add_worker("w2")  # a fresh worker for the next build
        r2 = build(c, world, out, cfg)
    finally:
        c.close()
    print(f"killed {killed[0]} during fetch; first build added {stage(r1, 'shard')['out']} documents, the next "
          f"{stage(r2, 'shard')['out']}")
    # nothing lost: the first build, after the kill, published every document; the next one has nothing to add
    assert r1["version"] == 1 and stage(r2, "shard")["out"] == 0 and stage(r2, "fetch")["in"] == 0
    assert shard_docs(out) == local  # ... and nothing repeated: no id twice (shard_docs), the same texts
    ok = [orjson.loads(line)["url_norm"] for line in outcome_lines(out / "fetch") if b'"outcome":"ok"' in line]
    assert len(ok) == len(set(ok)), "a page fetched twice"


def test_a_poison_partition_is_given_up_and_the_rest_published(prefect_api, world, web, local, tmp_path):
    out, (local_out, local) = tmp_path / "out", local
    cfg = demo_config(world[0], web.address)
    poison = "morningpost.example/2017/story-1"  # a kept document: its extract log is the poison partition
    c = Cluster(tmp_path, allowed_failures=1)
    t0 = time.monotonic()
    try:
        for n in ("w0", "w1"):
            c.add_worker(n, WEBTEXT_FAULT_KILL_WORKER=poison)
        r1 = build(c, world, out, cfg)
        t1 = time.monotonic() - t0
        def deaths() -> int:  # the nannies log each death of their worker (and restart it)
            return sum(c.log(n, tail=0).count("was killed by signal 9") for n in ("w0", "w1"))

        wait_for("the nannies log both deaths", lambda: deaths() >= 2, 20, log=lambda: c.log("w0") + c.log("w1"))
        time.sleep(1)
        died = deaths()
        verdict = "marked as failed because 2 workers died" in c.log("scheduler", tail=0)
        given_up = stage(r1, "extract")["extra"].get("given_up_partitions") or {}
        first = shard_docs(out)
        # the cause gone (more memory, a fixed extractor): workers without the hook
        for n in ("w0", "w1"):
            stop_group(c.workers.pop(n), timeout_s=10)
        c.add_worker("w2")
        c.add_worker("w3")
        r2 = build(c, world, out, cfg)
    finally:
        c.close()
    print(f"given up: {given_up} after {died} worker deaths; first build {t1:.0f} s, {len(first)} documents")
    # bounded: allowed-failures (1) + 1 deaths, then the partition is given up with its reason
    assert died == 2 and verdict
    assert len(given_up) == 1 and next(iter(given_up.values())).startswith("worker_died: 2 workers died")
    label = next(iter(given_up))
    assert label.startswith("extract-f") and any("given up" in n and label in n for n in stage(r1, "extract")["notes"])
    # ... its task run ended Crashed with that reason, not left Running
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r1["flow_run_id"]])),
                                     limit=200)
    states = {t.name: t.state for t in runs}
    assert states[label].is_crashed() and "worker_died" in states[label].message
    assert all(s.is_completed() for n, s in states.items() if n != label), {n: s.type for n, s in states.items()}
    # the rest completed: a version published with the other partitions' documents, not the poison's
    from pipeline.core.urls import url_id

    assert r1["version"] == 1 and url_id(poison) in local and url_id(poison) not in first
    assert 0 < len(first) < len(local) and all(first[i] == local[i] for i in set(first) & set(local))
    # the next build ran the given-up log (it was left pending) and nothing else of extract
    assert stage(r2, "extract")["extra"]["logs_read"] == [label.split("-", 1)[1]]
    assert stage(r2, "extract")["extra"].get("given_up_partitions") is None
    # every page is now extracted and filtered as in the local build
    assert texts(out / "extract") == texts(local_out / "extract") and texts(out / "filter") == texts(local_out / "filter")
    # ... and published once: the local build's documents, except where the first build, without the
    # given-up log, kept a syndicated near-copy of an original in it (published shards are never rewritten;
    # the original, extracted by the next build, is recorded as that copy's duplicate)
    final = shard_docs(out)
    from pipeline.dedup.stage import read_duplicates

    dup_of = dict(zip(*read_duplicates(local_out / "dedup").to_pydict().values()))
    kept_copies, originals = set(final) - set(local), set(local) - set(final)
    assert len(final) == len(local) and kept_copies <= set(first) and not originals & set(first)
    assert {dup_of.get(c) for c in kept_copies} == originals, (kept_copies, originals)
    assert all(final[i] == local[i] for i in set(final) & set(local))
    print(f"near-copies kept for an original in the given-up log: {len(kept_copies)}")


def held_partitions(fetch_dir: Path) -> list[str]:
    """The fetch partition locks someone holds now (pipeline/fetch/stage.py ``_partition_lock``)."""
    import fcntl

    held = []
    for lock in sorted((fetch_dir / "outcomes").glob(".part-*.lock")):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(lock.name)
        finally:
            os.close(fd)
    return held


@pytest.mark.timeout(300)
def test_an_interrupted_build_leaves_no_task_fetching_on_the_cluster(prefect_api, world, web, tmp_path):
    """Ctrl-C of `webtext build --dask-address` while a worker runs a fetch partition: the
    scheduler gives the task up and Dask lets a running task go on (dask/distributed#3681),
    so without more the partition went on fetching for its whole length beside whatever
    ran next. The task sees its worker's state turn "cancelled" and stops within
    seconds (its partition lock released); the next build fetches the rest, each URL once."""
    from flowkit import WEBTEXT, lines, write_toml

    cfg = demo_config(world[0], web.address)
    c = Cluster(tmp_path)
    try:
        c.add_worker("w0")
        # 6 s between a host's pages: what is left of the partition takes 20 s or more
        slow = write_toml(tmp_path / "slow.toml", cfg, per_host_delay_s=6.0)
        out, log = tmp_path / "out", tmp_path / "build.log"
        cmd = WEBTEXT + ["build", "--dump", str(world[1][0]), "--out", str(out), "--task-runner", "dask",
                         "--dask-address", c.address]
        env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_API_URL=prefect_api)
        b = subprocess.Popen(cmd + ["--config", str(slow)], env=env, cwd=REPO, stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT)
        wait_for("the build fetches on the worker", lambda: lines(out / "fetch") >= 2, 180, b, lambda: log.read_text())
        assert held_partitions(out / "fetch"), "no partition is being fetched"
        b.send_signal(signal.SIGINT)
        assert b.wait(timeout=60) == 130, log.read_text()[-3000:]
        t0 = time.monotonic()
        wait_for("the worker's fetch task stops", lambda: not held_partitions(out / "fetch"), 5, None,
                 lambda: c.log("w0"))
        print(f"the worker's partition was released {time.monotonic() - t0:.1f}s after the build ended")
        stopped_at = lines(out / "fetch")
        todo = sum(len(p.read_bytes().splitlines()) for p in (out / "fetch" / "todo").glob("part-*.jsonl"))
        fast = write_toml(tmp_path / "fast.toml", cfg)
        again = subprocess.run(cmd + ["--config", str(fast)], env=env, cwd=REPO, capture_output=True, text=True,
                               timeout=240)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    finally:
        c.close()
    urls = [orjson.loads(line)["url"] for line in outcome_lines(out / "fetch")]
    assert len(urls) == len(set(urls)) == todo > stopped_at
