"""The Prefect flows over the demo world (two Reddit months, a web on 127.0.0.1):
incremental builds, Dask, SIGKILL restarts, bad configuration, serve + trigger."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.corpus import build_corpus, preflight, task_runner
from pipeline.config import Config, ConfigError
from pipeline.extract import read_documents
from pipeline.demo import DemoWeb, DemoWorld, demo_config
from pipeline.shards import load_manifest, verify_shards

REPO = Path(__file__).resolve().parents[2]
WEBTEXT = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = DemoWorld()
    d = tmp_path_factory.mktemp("dumps")
    return w, w.write_dumps(d)


@pytest.fixture(scope="module")
def web(world):
    with DemoWeb(world[0]) as web:
        yield web


@pytest.fixture(scope="module")
def cfg(world, web):
    return demo_config(world[0], web.address)


def shard_docs(build_dir) -> dict[str, str]:
    shards = Path(build_dir) / "shards"
    assert verify_shards(shards) == []
    docs = {}
    for s in load_manifest(shards)["shards"]:
        for row in pq.read_table(shards / s["file"], columns=["id", "text"]).to_pylist():
            assert row["id"] not in docs, "a document twice in the shards"
            docs[row["id"]] = row["text"]
    return docs


@pytest.fixture(scope="module")
def single_build(prefect_api, world, cfg, tmp_path_factory):
    """One build over both months: the reference every other way of building must equal."""
    out = tmp_path_factory.mktemp("single")
    r = build_corpus([str(p) for p in world[1]], str(out), cfg.to_dict())
    return out, r, shard_docs(out)


def stage(result, name):
    return next(s for s in result["stages"] if s["stage"] == name)


def test_incremental_month_by_month_equals_one_build(prefect_api, world, web, cfg, single_build, tmp_path):
    w, (m1, m2) = world
    hits_before = dict(web.hits)  # the web is shared with the other builds of this module
    r1 = build_corpus([str(m1)], str(tmp_path), cfg.to_dict())
    hits_after_1 = dict(web.hits)
    r2 = build_corpus([str(m1), str(m2)], str(tmp_path), cfg.to_dict())  # month 1 given again: not re-read
    # The second build did only the new work.
    f1, f2 = stage(r1, "fetch"), stage(r2, "fetch")
    assert f2["dropped"]["already_fetched"] == f1["in"]
    new_urls = f2["in"] - f1["in"]
    assert new_urls > 0 and f2["out"] + sum(v for k, v in f2["dropped"].items() if k != "already_fetched") == new_urls
    pages_1 = {k for k in hits_after_1 if k[1] != "/robots.txt" and hits_after_1[k] > hits_before.get(k, 0)}
    assert len(pages_1) > 20
    again = {k: (hits_after_1[k], web.hits[k]) for k in pages_1 if web.hits[k] != hits_after_1[k]}
    assert not again, f"month-1 pages fetched again: {again}"
    assert stage(r2, "extract")["dropped"]["already_extracted"] == stage(r1, "extract")["out"]
    assert stage(r2, "links")["extra"]["harvested_now"] == [str(m2)]
    d2 = stage(r2, "dedup")
    assert d2["dropped"]["already_kept"] == stage(r1, "dedup")["out"]
    m = load_manifest(tmp_path / "shards")
    assert [v["version"] for v in m["versions"]] == [1, 2]
    assert (tmp_path / "funnel.png").stat().st_size > 10_000 and (tmp_path / "funnel.json").is_file()
    # The union equals one build over both months: same documents, same texts.
    assert shard_docs(tmp_path) == single_build[2]
    # The late syndicated copy in month 2 lost to its month-1 original.
    kept = set(read_documents(tmp_path / "dedup", ["url_norm"], pattern="documents*.parquet").column("url_norm").to_pylist())
    assert "latewire.example/copy-1" not in kept and w.late_copy_of in kept
    # A third run with nothing new adds no version; --publish copies shards + manifest to a filesystem URI.
    pub = tmp_path / "published" / "shards"
    build_corpus([str(m1), str(m2)], str(tmp_path), cfg.to_dict(), publish=pub.as_uri())
    assert len(load_manifest(tmp_path / "shards")["versions"]) == 2
    assert shard_docs(tmp_path / "published") == single_build[2]  # read back: manifest hashes and rows verified


def test_build_on_a_dask_cluster_of_two_worker_processes_equals_the_local_run(prefect_api, world, cfg, single_build, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        runner = task_runner("dask", dask_address=cluster.scheduler_address)  # an existing cluster, by address
        with get_task_stream(client) as stream:
            r = build_corpus.with_options(task_runner=runner)([str(p) for p in world[1]], str(tmp_path), cfg.to_dict())
        # The per-dump and per-part tasks (2 dumps, at least one extracted part) ran on the cluster's workers.
        ran = [t for t in stream.data if t.get("worker")]
        assert len(ran) >= 3 and len(client.scheduler_info()["workers"]) == 2
    assert shard_docs(tmp_path) == single_build[2]
    assert [s["out"] for s in r["stages"]] == [s["out"] for s in single_build[1]["stages"]]


def _write_toml(path: Path, cfg: Config) -> Path:
    lines = ["[fetch]", "allow_private_addresses = true", f"per_host_delay_s = {cfg.fetch.per_host_delay_s}",
             f"connect_timeout_s = {cfg.fetch.connect_timeout_s}", f"total_timeout_s = {cfg.fetch.total_timeout_s}",
             "[fetch.resolve]"] + [f'"{h}" = "{a}"' for h, a in cfg.fetch.resolve.items()] + ["[extract]", "workers = 2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(api_url: str) -> dict:
    return dict(os.environ, PREFECT_API_URL=api_url, PYTHONPATH=str(REPO))


def test_build_killed_at_random_points_resumes_to_the_same_shards(prefect_api, world, cfg, single_build, tmp_path):
    toml = _write_toml(tmp_path / "cfg.toml", cfg)
    out = tmp_path / "build"
    cmd = WEBTEXT + ["build", "--dump", str(world[1][0]), "--dump", str(world[1][1]), "--out", str(out), "--config", str(toml)]
    rng = random.Random(1234)

    def lines(p):
        return len(p.read_bytes().splitlines()) if p.is_file() else 0

    # Kill points chosen by progress, not by the clock (machines differ in speed):
    # mid-fetch after a random number of outcomes, at the end of extraction, after
    # filtering, after dedup; each with a random extra delay of up to 0.2 s.
    fetch_n = rng.randint(3, 30)
    points = [lambda: lines(out / "fetch" / "outcomes.jsonl") >= fetch_n,
              lambda: any((out / "extract").glob("part-*.done.json")),
              lambda: (out / "filter" / "summary.filter.json").is_file(),
              lambda: any((out / "dedup").glob("documents-*.parquet"))]
    kills = 0
    for reached in points:
        proc = subprocess.Popen(cmd, env=_env(prefect_api), cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while proc.poll() is None and not reached() and time.monotonic() - t0 < 180:
            time.sleep(0.02)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.2))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills >= 3, f"only {kills} of 4 kills landed before the build finished"
    done = subprocess.run(cmd, env=_env(prefect_api), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert shard_docs(out) == single_build[2]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_bad_configuration_fails_at_start_with_a_clear_message(world, tmp_path):
    cfg = Config()
    with pytest.raises(FileNotFoundError, match="nope.zst"):
        preflight([str(world[1][0]), str(tmp_path / "nope.zst")], tmp_path / "o1", cfg)
    with pytest.raises(ConfigError, match="no dump file matches"):
        preflight([str(tmp_path / "RS_*.zst")], tmp_path / "o1", cfg)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        preflight([str(world[1][0])], tmp_path / "afile" / "out", cfg)
    with pytest.raises(ConfigError, match="unreachable"):
        preflight([str(world[1][0])], tmp_path / "o2", cfg, dask_address=f"tcp://127.0.0.1:{_closed_port()}")
    bad = tmp_path / "bad.toml"
    bad.write_text("[dedup]\nbands = 50\n")
    r = subprocess.run(WEBTEXT + ["build", "--dump", str(world[1][0]), "--out", str(tmp_path / "o3"), "--config", str(bad)],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "exceeds num_perm" in r.stderr
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o2").exists()
    # serve without a lasting Prefect server: refused at start, with the commands to start one
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    r = subprocess.run(WEBTEXT + ["serve", "--dump", str(world[1][0]), "--out", str(tmp_path / "o4")],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=dict(env, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "prefect server start" in r.stderr and not (tmp_path / "o4").exists()


def _wait_http(url: str, timeout_s: float) -> bool:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def test_serve_runs_the_build_and_a_completed_build_triggers_training(world, cfg, tmp_path):
    """A real `prefect server start` on 127.0.0.1, `webtext serve`, one build run: training follows, once."""
    import httpx

    port = _closed_port()
    api = f"http://127.0.0.1:{port}/api"
    senv = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
                PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port))
    senv.pop("PREFECT_API_URL", None)
    procs = []
    try:
        server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env=senv, cwd=tmp_path, start_new_session=True,
                                  stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(server)
        assert _wait_http(f"{api}/health", 120), (tmp_path / "server.log").read_text()[-3000:]
        toml = _write_toml(tmp_path / "cfg.toml", cfg)
        out = tmp_path / "build"
        env = dict(_env(api), PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_HOME=str(tmp_path / "prefect-home"))
        serve = subprocess.Popen(WEBTEXT + ["serve", "--dump", str(world[1][0]), "--out", str(out), "--config", str(toml),
                                            "--no-schedule", "max_steps=4", "block_size=32", "batch_size=4",
                                            "eval_interval=4", "eval_iters=1", "warmup_steps=1"],
                                 env=env, cwd=REPO, start_new_session=True,
                                 stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
        procs.append(serve)
        client = httpx.Client(base_url=api, timeout=10)

        def deployment(name):
            r = client.get(f"/deployments/name/{name}")
            return r.json() if r.status_code == 200 else None

        t0 = time.monotonic()
        while not (deployment("build-corpus/webtext-build") and deployment("train-model/webtext-train")):
            assert time.monotonic() - t0 < 90 and serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        build_id = deployment("build-corpus/webtext-build")["id"]
        client.post(f"/deployments/{build_id}/create_flow_run", json={}).raise_for_status()

        def runs(flow_name):
            r = client.post("/flow_runs/filter", json={"flows": {"name": {"any_": [flow_name]}}})
            r.raise_for_status()
            return r.json()

        t0 = time.monotonic()
        while True:
            trains = runs("train-model")
            if trains and all(t["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for t in trains):
                break
            assert time.monotonic() - t0 < 240, f"no training run finished; serve log:\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
            time.sleep(1)
        builds = runs("build-corpus")
        assert [b["state_type"] for b in builds] == ["COMPLETED"]
        time.sleep(3)  # a second, duplicate trigger would show up by now
        trains = runs("train-model")
        assert [t["state_type"] for t in trains] == ["COMPLETED"], (tmp_path / "serve.log").read_text()[-3000:]
        assert len(load_manifest(out / "shards")["versions"]) == 1
        assert (out / "model" / "train-v0001" / "ckpt.pt").is_file()
        assert (out / "model" / "train-v0001" / "eval.json").is_file()
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def test_plain_build_without_prefect_equals_the_flow(world, cfg, single_build, tmp_path):
    from pipeline.build import run_build

    stages = run_build([str(p) for p in world[1]], tmp_path, cfg)
    assert shard_docs(tmp_path) == single_build[2]
    assert [s.n_out for s in stages] == [s["out"] for s in single_build[1]["stages"]]
    assert (tmp_path / "funnel.png").is_file()
