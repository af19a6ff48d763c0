"""The Prefect way to deploy (issue 31): the repository's prefect.yaml, deployed with
`prefect deploy --all` against a real `prefect server start`, gives the build deployment
(schedule, parameters, one run at a time) and the training deployment (its trigger) on
the work pool; a process worker (`prefect worker start`) runs a build started by a
deployment run, and the training that the build's new corpus version triggers."""

import subprocess

import pytest
import yaml
from flowkit import PREFECT, REPO, Api, env_for, start_prefect_server, stop_group, wait_for

TRAIN_OVERRIDES = ["max_steps=4", "block_size=32", "batch_size=4", "eval_interval=4", "eval_iters=1",
                   "warmup_steps=1"]


def _tail(path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.is_file() else ""


@pytest.mark.timeout(600)
def test_prefect_deploy_all_and_a_process_worker_build_and_train(world, cfg, tmp_path):
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} == {"webtext-build", "webtext-train"}
    server, url = start_prefect_server(tmp_path)
    procs = [server]
    out, log = tmp_path / "build", tmp_path / "worker.log"
    env = env_for(url, PREFECT_HOME=str(tmp_path / "client-home"), WEBTEXT_DUMPS=str(world[1][0]),
                  WEBTEXT_OUT=str(out), PREFECT_WORKER_QUERY_SECONDS="1", COLUMNS="200")

    def prefect(*args):
        r = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"prefect {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    try:
        prefect("work-pool", "create", "webtext", "--type", "process")
        prefect("deploy", "--all", "--no-prompt")
        api = Api(url)
        build = api.deployment("build-corpus/webtext-build")
        train = api.deployment("train-model/webtext-train")
        assert build["work_pool_name"] == train["work_pool_name"] == "webtext"
        assert [s["schedule"]["cron"] for s in build["schedules"]] == ["0 6 2 * *"]
        assert build["parameters"]["dumps"] == [str(world[1][0])] and build["parameters"]["out"] == str(out)
        for d in (build, train):
            assert d["global_concurrency_limit"]["limit"] == 1, d
            assert d["concurrency_options"]["collision_strategy"] == "ENQUEUE"
            assert d["path"] == str(REPO) or d["pull_steps"], d  # the worker runs the flows from this checkout
        automations = api.call("POST", "/automations/filter", {})
        trigger = [a for a in automations if a["name"] == "webtext-train-on-new-corpus-version"]
        assert len(trigger) == 1 and trigger[0]["trigger"]["expect"] == ["webtext.corpus.published"], automations
        # a short training for the test (the file's own: the tiny preset's full run)
        api.call("PATCH", f"/deployments/{train['id']}", {"parameters": dict(train["parameters"],
                                                                               overrides=TRAIN_OVERRIDES)})

        procs.append(subprocess.Popen([PREFECT, "worker", "start", "--pool", "webtext"], env=env, cwd=tmp_path,
                                      start_new_session=True, stdout=open(log, "wb"), stderr=subprocess.STDOUT))
        # a deployment run (not the monthly schedule), with the demo web's configuration
        run = api.run_deployment("build-corpus/webtext-build", dict(build["parameters"], config=cfg.to_dict()))
        done = wait_for("the worker did not complete the build", lambda: (
            r := api.run(run["id"]))["state_type"] == "COMPLETED" and r, 300, alive=procs[1], log=lambda: _tail(log))
        assert done["work_pool_name"] == "webtext" and done["labels"].get("webtext.pid")
        trained = wait_for("no training completed after the build", lambda: [
            r for r in api.runs("train-model", build_dir=out.resolve()) if r["state_type"] == "COMPLETED"], 300,
            alive=procs[1], log=lambda: _tail(log))
        assert len(trained) == 1 and str(trained[0]["parameters"]["version"]) == "1"
        assert trained[0]["work_pool_name"] == "webtext"
        assert (out / "model" / "train-v0001" / "eval.json").is_file()
        # the Prefect CLI's list calls work against this server (they got 422 with fastapi >= 0.151)
        listed = prefect("flow-run", "ls")
        assert done["name"] in listed and trained[0]["name"] in listed, listed
        listed = prefect("deployment", "ls")
        assert "build-corpus/webtext-build" in listed and "train-model/webtext-train" in listed, listed
    finally:
        for p in reversed(procs):
            stop_group(p)
