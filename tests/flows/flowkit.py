"""What the flow tests share: the `webtext` command as a subprocess, a real `prefect server
start`, a small REST client for it, the demo configuration as a TOML file, process-group kills."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from webtext_testlib import outcome_lines

from pipeline.core.config import Config

REPO = Path(__file__).resolve().parents[2]
WEBTEXT = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_toml(path: Path, cfg: Config, per_host_delay_s: float | None = None) -> Path:
    """CFG (the demo's: its loopback web) as a --config file; PER_HOST_DELAY_S slows fetch down."""
    delay = cfg.fetch.per_host_delay_s if per_host_delay_s is None else per_host_delay_s
    lines = ["[fetch]", "allow_private_addresses = true", f"per_host_delay_s = {delay}",
             f"connect_timeout_s = {cfg.fetch.connect_timeout_s}", f"total_timeout_s = {cfg.fetch.total_timeout_s}",
             "[fetch.resolve]"] + [f'"{h}" = "{a}"' for h, a in cfg.fetch.resolve.items()] + ["[extract]", "workers = 2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def env_for(api_url: str | None, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


def lines(fetch_dir: Path) -> int:
    """Outcome lines a fetch directory holds so far (every partition's log)."""
    return len(outcome_lines(fetch_dir))


def wait_for(what: str, cond, timeout_s: float, alive=None, log=lambda: "", every_s: float = 0.5):
    """Poll COND until it returns something truthy; fail after TIMEOUT_S or when ALIVE (a
    Popen) has exited."""
    t0 = time.monotonic()
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() - t0 < timeout_s, f"{what} (after {timeout_s:.0f} s)\n{log()}"
        assert alive is None or alive.poll() is None, f"{what}: the process exited\n{log()}"
        time.sleep(every_s)


def wait_http(url: str, timeout_s: float) -> bool:
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


def start_prefect_server(tmp_path: Path, **settings) -> tuple[subprocess.Popen, str]:
    """A real `prefect server start` on 127.0.0.1 with its own database under TMP_PATH."""
    port = closed_port()
    api = f"http://127.0.0.1:{port}/api"
    senv = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
                PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port), **settings)
    senv.pop("PREFECT_API_URL", None)
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=senv,
                              cwd=tmp_path, start_new_session=True, stdout=open(tmp_path / "server.log", "wb"),
                              stderr=subprocess.STDOUT)
    assert wait_http(f"{api}/health", 120), (tmp_path / "server.log").read_text()[-3000:]
    return server, api


def stop_group(p: subprocess.Popen, sig=signal.SIGTERM, timeout_s: float = 20) -> None:
    """Signal P's process group (started with start_new_session); SIGKILL it if still there after TIMEOUT_S."""
    try:
        os.killpg(p.pid, sig)
        p.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Api:
    """The Prefect REST API, retrying 429/503 (SQLite busy) as Prefect's own client does."""

    def __init__(self, url: str):
        import httpx

        self.client = httpx.Client(base_url=url, timeout=15)

    def call(self, method: str, path: str, body=None):
        for attempt in range(8):
            r = self.client.request(method, path, json=body)
            if r.status_code not in (429, 503):
                break
            time.sleep(0.5 * 2 ** attempt)
        r.raise_for_status()
        return r.json() if r.content else None

    def runs(self, flow_name: str, **where) -> list[dict]:
        """FLOW_NAME's runs, oldest first, whose parameters include WHERE."""
        rs = self.call("POST", "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}},
                                                    "sort": "EXPECTED_START_TIME_ASC", "limit": 200})
        return [r for r in rs if all(str(r["parameters"].get(k)) == str(v) for k, v in where.items())]

    def run(self, run_id: str) -> dict:
        return self.call("GET", f"/flow_runs/{run_id}")

    def deployment(self, name: str) -> dict:
        return self.call("GET", f"/deployments/name/{name}")

    def run_deployment(self, name: str, parameters: dict) -> dict:
        dep = self.deployment(name)
        return self.call("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": parameters})


def shard_docs(build_dir) -> dict[str, str]:
    """id -> text of every published document (no id twice, every shard verified)."""
    import pyarrow.parquet as pq

    from pipeline.shards.stage import load_manifest, verify_shards

    shards = Path(build_dir) / "shards"
    assert verify_shards(shards) == []
    docs = {}
    for s in load_manifest(shards)["shards"]:
        for row in pq.read_table(shards / s["file"], columns=["id", "text"]).to_pylist():
            assert row["id"] not in docs, "a document twice in the shards"
            docs[row["id"]] = row["text"]
    return docs
