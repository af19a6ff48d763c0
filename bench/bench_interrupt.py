"""How fast Ctrl-C stops a `webtext build` in the middle of its fetch, and what it leaves.

Each round builds the demo's first month (its web served on 127.0.0.1 by this script)
with one second between a host's pages, so the fetch would take a while, and sends
SIGINT to the build's whole process group, as a terminal's Ctrl-C does, once 3 fetch
outcomes are logged. The build runs with no PREFECT_API_URL (its own temporary Prefect
server, which gets the signal too unless it runs in a session of its own). Printed
per round: the exit status, the seconds from the signal to the exit, the fetch
outcomes logged at the signal and at the exit, of how many to fetch; then whether the
same command, run again without the delay, fetches the rest with each URL once.
Summary: the median seconds to exit with the range.

    .venv/bin/python bench/bench_interrupt.py [--rounds 5] [--processes 0]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WEBTEXT = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


def outcome_count(fetch_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (fetch_dir / "outcomes").glob("part-*.jsonl")) \
        if (fetch_dir / "outcomes").is_dir() else 0


def todo_count(fetch_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (fetch_dir / "todo").glob("part-*.jsonl"))


def config_file(path: Path, cfg, delay: float, processes: int) -> Path:
    lines = ["[fetch]", "allow_private_addresses = true", f"per_host_delay_s = {delay}", f"processes = {processes}",
             "[fetch.resolve]"] + [f'"{h}" = "{a}"' for h, a in cfg.fetch.resolve.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_round(tmp: Path, dump: Path, cfg, processes: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp / "prefect-home"))
    env.pop("PREFECT_API_URL", None)
    out = tmp / "build"
    cmd = WEBTEXT + ["build", "--dump", str(dump), "--out", str(out), "--config"]
    with open(tmp / "build.log", "wb") as log:
        b = subprocess.Popen(cmd + [str(config_file(tmp / "slow.toml", cfg, 1.0, processes))], env=env, cwd=REPO,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while outcome_count(out / "fetch") < 3:
            if b.poll() is not None:
                raise SystemExit(f"the build ended before its fetch: {(tmp / 'build.log').read_text()[-2000:]}")
            time.sleep(0.1)
        at = outcome_count(out / "fetch")
        t0 = time.monotonic()
        os.killpg(b.pid, signal.SIGINT)
        rc = b.wait(timeout=600)
        took = time.monotonic() - t0
    end, todo = outcome_count(out / "fetch"), todo_count(out / "fetch")
    again = subprocess.run(cmd + [str(config_file(tmp / "fast.toml", cfg, 0.0, processes))], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    import orjson

    urls = [orjson.loads(line)["url"] for p in (out / "fetch" / "outcomes").glob("part-*.jsonl")
            for line in p.read_bytes().splitlines()]
    return {"rc": rc, "seconds": took, "at": at, "end": end, "todo": todo, "resume_rc": again.returncode,
            "each_once": len(urls) == len(set(urls)) == todo}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--processes", type=int, default=0, help="[fetch] processes (0: the fetch in the build's process)")
    args = ap.parse_args()
    from flows.demo import DemoWeb, DemoWorld, demo_config

    world = DemoWorld()
    with tempfile.TemporaryDirectory() as d, DemoWeb(world) as web:
        dump = world.write_dumps(Path(d) / "dumps")[0]
        cfg = demo_config(world, web.address)
        secs = []
        for i in range(args.rounds):
            tmp = Path(d) / f"round{i}"
            tmp.mkdir()
            r = one_round(tmp, dump, cfg, args.processes)
            secs.append(r["seconds"])
            print(f"round {i}: exit {r['rc']} {r['seconds']:.1f} s after SIGINT; fetch outcomes {r['at']} at the signal, "
                  f"{r['end']} at the exit, of {r['todo']}; the same command again: exit {r['resume_rc']}, "
                  f"each URL once: {r['each_once']}", flush=True)
    print(f"seconds from SIGINT to exit: median {statistics.median(secs):.1f} [{min(secs):.1f}-{max(secs):.1f}] "
          f"over {len(secs)} rounds (processes = {args.processes})")


if __name__ == "__main__":
    main()
