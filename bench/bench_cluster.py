"""The build on a real Dask cluster at three sizes (issue #28): a local build (the anchor,
``webtext build --no-prefect`` in one fresh process) against the `build-corpus` flow
sending its tasks to a `dask scheduler` and 1, 2 and 4 `dask worker` processes (one
thread each, nanny included), all on this machine's loopback.

The world: N links in generated Reddit months (one dump per 2,500 links, at least 2;
+25% posts below 3 karma, +5% reposts of a URL), over N/5 host names whose shares
follow 1/(rank+10) (the largest host holds 2-4% of the links, as WebText's most
frequent domains hold a few % each), 5% of the hosts dead (resolved to a closed
port: connection refused), 3% of the pages 404, 5% syndicated near-copies of a page
on another host. The web is an asyncio HTTP/1.1 server in its own process (its CPU is
not counted), answering after 20-80 ms; pages of ~1-4 KB of English-like text from
the demo's grammar with names and numbers. Politeness on: ``per_host_delay_s`` (0.2 s
default here, 1 s in webtext's defaults) between two requests to a host, 2 in flight.

What is measured, per run:
- per stage: wall (the driver's clock around the stage: partitions and finishing
  step) and CPU-s of the worker process trees (nanny, worker, the extract pool's
  children: user + system, reaped children included), the flow's own process (the
  driver: Prefect's engine and client), the scheduler and the Prefect server;
- peak RSS per worker (the Dask worker process's VmHWM) and of the largest child of
  a worker (an extract pool process), sampled every 0.2 s;
- tasks per worker (Dask's task stream), bytes read + written by the scheduler
  process (``/proc/PID/io`` rchar + wchar: its sockets; it writes no files) over the
  build, bytes on disk per published document (the whole build directory);
- that the shards equal the local build's (ids and texts).

    .venv/bin/python bench/bench_cluster.py [--sizes 500,2000,8000] [--workers 1,2,4]
        [--rounds 1] [--delay 0.2] [--nthreads 1] [--json bench/out/cluster.json]

Rounds repeat every run (interleaved: local, 1, 2, 4 workers, local, ...) and give
the median with [min-max].
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DASK = str(Path(sys.executable).with_name("dask"))
STAGES = ("links", "fetch", "extract", "filter", "dedup", "shard")

NAMES = ["Maria Lopez", "John Okafor", "Wei Chen", "Anna Novak", "Pierre Dubois", "Sara Lindqvist", "Omar Haddad",
         "Lucy Grant", "Ivan Petrov", "Keiko Sato", "David Miller", "Fatima Bello", "Tom Walsh", "Elena Rossi"]
PLACES = ["the harbour district", "the northern valley", "the old town", "the river port", "the university campus",
          "the industrial zone", "the coastal towns", "the mountain villages", "the city centre", "the eastern suburbs"]


# --- the world: months of submissions over many hosts, a loopback web in its own process ---


def page_text(key: str) -> list[str]:
    from flows.demo import DETAILS, OBJECTS, SUBJECTS, VERBS

    rng = random.Random(key)
    paras, cur = [], []
    for _ in range(rng.randint(8, 40)):
        s = rng.randrange(4)
        if s == 0:
            cur.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(DETAILS)}.")
        elif s == 1:
            cur.append(f"{rng.choice(NAMES)}, who has worked in {rng.choice(PLACES)} since {rng.randint(1960, 2016)}, "
                       f"said the plan would cost {rng.randint(2, 900)} million and take {rng.randint(2, 30)} years.")
        elif s == 2:
            cur.append(f"In {rng.choice(PLACES)}, {rng.randint(3, 5000)} people {rng.choice(VERBS)} "
                       f"{rng.choice(OBJECTS)}, according to {rng.choice(NAMES)}.")
        else:
            cur.append(f"{rng.choice(SUBJECTS)} said on day {rng.randint(1, 28)} that {rng.choice(OBJECTS)} "
                       f"was {rng.choice(['likely', 'unlikely', 'certain', 'expected'])} {rng.choice(DETAILS)}.")
        if len(cur) >= 4:
            paras.append(" ".join(cur))
            cur = []
    return paras + ([" ".join(cur)] if cur else [])


def page(host: str, path: str) -> tuple[str, bytes]:
    """(status, body) of a page: /a/I articles, /copy/HOST/I near-copies of another host's article, 3% 404."""
    from flows.demo import page as html

    if path.startswith("/copy/"):
        _, _, src_host, i = path.split("/", 3)
        paras = page_text(f"{src_host}/a/{i}")
        return "200 OK", html(host, f"Story {i}", paras[:-1] + [f"This story first appeared on {src_host}."]).encode()
    if random.Random(host + path).random() < 0.03:
        return "404 Not Found", b"<html><body>Not here</body></html>"
    return "200 OK", html(host, f"Story {path}", page_text(host + path)).encode()


async def _handle(reader, writer) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode("latin-1")
            host = next((ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"host:")), "").split(":")[0]
            await asyncio.sleep(random.uniform(0.02, 0.08))
            status, body = ("404 Not Found", b"none") if path == "/robots.txt" else page(host, path)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}"
                         f"\r\nConnection: keep-alive\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve() -> None:
    async def main():
        srv = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=2048)
        print(srv.sockets[0].getsockname()[1], flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def make_world(n: int, directory: Path, seed: int = 0) -> tuple[list[Path], list[str], list[str]]:
    """N link posts (unique URLs, >= 3 karma) in generated months; returns (dumps, hosts, dead hosts)."""
    import orjson
    import zstandard

    rng = random.Random(seed)
    hosts = [f"site{i}.bench.test" for i in range(max(20, n // 5))]
    weights = [1 / (r + 10) for r in range(len(hosts))]
    dead = [h for i, h in enumerate(hosts) if i >= 10 and i % 20 == 7]  # 5% of hosts, not the largest
    months = max(2, n // 2500)
    subs: list[dict] = []
    for i in range(n):
        host = rng.choices(hosts, weights)[0]
        if i % 20 == 3 and i > 20:  # a near-copy of an earlier article, on this host
            src = subs[rng.randrange(len(subs))]["url"].split("/")
            url = f"http://{host}/copy/{src[2]}/{src[-1]}" if src[3] == "a" else f"http://{host}/a/{i}"
        else:
            url = f"http://{host}/a/{i}"
        subs.append({"url": url, "score": rng.choice([3, 5, 8, 20, 100, 2000])})
    posts = [dict(s) for s in subs]
    posts += [{"url": f"http://{rng.choices(hosts, weights)[0]}/low/{i}", "score": rng.choice([0, 1, 2])}
              for i in range(n // 4)]
    posts += [{"url": rng.choice(subs)["url"] + "?utm_source=reddit", "score": 7} for _ in range(n // 20)]
    rng.shuffle(posts)
    directory.mkdir(parents=True, exist_ok=True)
    dumps = []
    for m in range(months):
        t0 = calendar.timegm((2017, m + 1, 2, 0, 0, 0))
        lines = [orjson.dumps({"id": f"b{m}x{j}", "created_utc": t0 + j * 7, "subreddit": "news", "author": "u",
                               "title": "A story", "url": p["url"], "score": p["score"], "is_self": False,
                               "over_18": False}) for j, p in enumerate(posts[m::months])]
        p = directory / f"RS_2017-{m + 1:02d}.zst"
        p.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
        dumps.append(p)
    return dumps, hosts, dead


def config(hosts: list[str], dead: list[str], web_port: int, dead_port: int, delay: float):
    from pipeline.core.config import Config

    resolve = {h: f"127.0.0.1:{dead_port if h in dead else web_port}" for h in hosts}
    return Config().replace("fetch", resolve=resolve, allow_private_addresses=True, per_host_delay_s=delay,
                            connect_timeout_s=2.0, total_timeout_s=10.0)


# --- measurement ---------------------------------------------------------------------------


def tree_cpu(pid: int, self_only: bool = False) -> float:
    """CPU-s of PID and its live descendants (user + system + their reaped children's)."""
    try:
        root = psutil.Process(pid)
        procs = [root] if self_only else [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + (0 if self_only else t.children_user + t.children_system)
        except psutil.NoSuchProcess:
            pass
    return total


def hwm_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def io_bytes(pid: int) -> int:
    try:
        d = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
        return int(d["rchar"]) + int(d["wchar"])
    except OSError:
        return 0


class PeakSampler(threading.Thread):
    """Every 0.2 s: the largest VmHWM of each root's main process and of any of its descendants."""

    def __init__(self, roots: dict[str, int], main_of=lambda p: p):
        super().__init__(daemon=True)
        self.roots, self.main_of, self.stop = roots, main_of, threading.Event()
        self.main = {n: 0.0 for n in roots}
        self.child = {n: 0.0 for n in roots}

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for n, pid in self.roots.items():
                try:
                    kids = psutil.Process(pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    continue
                main = self.main_of(pid)
                self.main[n] = max(self.main[n], hwm_mb(main))
                for k in kids:
                    if k.pid != main:
                        self.child[n] = max(self.child[n], hwm_mb(k.pid))


def stage_clock(base, snapshot):
    """A runner class (subclass of BASE) that records each stage's wall and SNAPSHOT() deltas."""

    class Clocked(base):
        marks: dict = {}

        def call(self, stage, what, ctx, *args):
            if what in ("parts", "run"):
                Clocked.marks[stage.name] = (time.monotonic(), snapshot())
            r = super().call(stage, what, ctx, *args)
            if what in ("finish", "run"):
                t0, s0 = Clocked.marks[stage.name]
                s1 = snapshot()
                Clocked.marks[stage.name] = {"wall_s": time.monotonic() - t0, **{k: s1[k] - s0[k] for k in s1}}
            return r

    return Clocked


def docs_digest(build_dir: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    from pipeline.shards.stage import load_manifest, verify_shards

    shards = build_dir / "shards"
    assert verify_shards(shards) == []
    out = {}
    for s in load_manifest(shards)["shards"]:
        for row in pq.read_table(shards / s["file"], columns=["id", "text"]).to_pylist():
            assert row["id"] not in out, "a document twice in the shards"
            out[row["id"]] = hashlib.sha1(row["text"].encode()).hexdigest()
    return out


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


# --- the runs ------------------------------------------------------------------------------


def local_main(spec: dict) -> None:
    """`--local-run SPEC`: the anchor build in this fresh process; its figures as JSON on stdout."""
    from pipeline import build as b

    me = os.getpid()
    runner = stage_clock(b.LocalRunner, lambda: {"cpu_workers": tree_cpu(me)})
    sampler = PeakSampler({"local": me})
    sampler.start()
    t0 = time.monotonic()
    cfg = config(spec["hosts"], spec["dead"], spec["web_port"], spec["dead_port"], spec["delay"])
    stages = b.run_build(spec["dumps"], spec["out"], cfg, runner=runner())
    wall = time.monotonic() - t0
    sampler.stop.set()
    print(json.dumps({"wall_s": wall, "stages": runner.marks, "cpu_s": tree_cpu(me),
                      "peak_worker_mb": max(hwm_mb(me), sampler.main["local"]), "peak_child_mb": sampler.child["local"],
                      "funnel": {s.stage: [s.n_in, s.n_out] for s in stages}}))


def run_local(spec: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, "--local-run", json.dumps(spec)], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if r.returncode:
        raise RuntimeError(r.stderr[-4000:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["docs"] = docs_digest(Path(spec["out"]))
    return res


def run_cluster(spec: dict, n_workers: int, tmp: Path, prefect_pid: int, nthreads: int = 1) -> dict:
    from distributed import Client, get_task_stream

    import flows.corpus as fc

    tmp.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), DASK_DISTRIBUTED__WORKER__DAEMON="False",
               DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")
    env.pop("PREFECT_API_URL", None)
    log = open(tmp / "cluster.log", "ab")
    sched = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                              "--scheduler-file", str(tmp / "s.json")], env=env, cwd=tmp, stdout=log, stderr=log)
    workers = []
    try:
        while not (tmp / "s.json").is_file():
            time.sleep(0.2)
        addr = json.loads((tmp / "s.json").read_text())["address"]
        workers = [subprocess.Popen([DASK, "worker", addr, "--nthreads", str(nthreads), "--name", f"w{i}", "--host", "127.0.0.1",
                                     "--no-dashboard", "--local-directory", str(tmp / f"w{i}")], env=env, cwd=tmp,
                                    stdout=log, stderr=log) for i in range(n_workers)]
        client = Client(addr, timeout=60)
        client.wait_for_workers(n_workers, timeout=120)
        info = client.scheduler_info(n_workers=-1)["workers"]
        names = {a: w["name"] for a, w in info.items()}
        worker_pid = {names[a]: pid for a, pid in client.run(os.getpid).items()}
        nanny = {f"w{i}": p.pid for i, p in enumerate(workers)}
        me = os.getpid()

        def snapshot():
            return {"cpu_workers": sum(tree_cpu(p.pid) for p in workers), "cpu_driver": tree_cpu(me, self_only=True),
                    "cpu_scheduler": tree_cpu(sched.pid), "cpu_prefect": tree_cpu(prefect_pid)}

        runner = stage_clock(fc.PrefectRunner, snapshot)
        sampler = PeakSampler(nanny, lambda p: worker_pid[next(n for n, q in nanny.items() if q == p)])
        sampler.start()
        cfg = config(spec["hosts"], spec["dead"], spec["web_port"], spec["dead_port"], spec["delay"])
        real, fc.PrefectRunner = fc.PrefectRunner, runner
        io0, s0, t0 = io_bytes(sched.pid), snapshot(), time.monotonic()
        try:
            with get_task_stream(client) as stream:
                r = fc.build_corpus.with_options(task_runner=fc.task_runner("dask", dask_address=addr))(
                    spec["dumps"], spec["out"], cfg.to_dict())
        finally:
            fc.PrefectRunner = real
        wall, s1, moved = time.monotonic() - t0, snapshot(), io_bytes(sched.pid) - io0
        sampler.stop.set()
        tasks: dict[str, int] = {}
        for t in stream.data:
            if t.get("worker") in names:
                tasks[names[t["worker"]]] = tasks.get(names[t["worker"]], 0) + 1
        client.close()
        return {"wall_s": wall, "stages": runner.marks, **{k: s1[k] - s0[k] for k in s1},
                "peak_worker_mb": max(sampler.main.values()), "peak_child_mb": max(sampler.child.values()),
                "tasks_per_worker": dict(sorted(tasks.items())), "scheduler_bytes": moved,
                "funnel": {s["stage"]: [s["in"], s["out"]] for s in r["stages"]}, "docs": docs_digest(Path(spec["out"]))}
    finally:
        for p in workers + [sched]:
            p.terminate()
        for p in workers + [sched]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


# --- report --------------------------------------------------------------------------------


def med(xs: list[float], fmt: str = "{:.1f}") -> str:
    m = statistics.median(xs)
    return fmt.format(m) + (f" [{fmt.format(min(xs))}-{fmt.format(max(xs))}]" if len(xs) > 1 else "")


def cpu_of(r: dict) -> float:
    return sum(v for k, v in r.items() if k.startswith("cpu_")) if "cpu_workers" in r else r["cpu_s"]


def tables(results: dict) -> str:
    out = ["| links | run | wall s | CPU-s (workers + driver + scheduler + Prefect server) | peak RSS per worker MB "
           "(largest child) | tasks per worker | scheduler I/O KB | disk KB per document | documents | shards = local |",
           "|---:|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for size, runs in results.items():
        for name, rs in runs.items():
            r0 = rs[0]
            cpu = med([cpu_of(r) for r in rs])
            if "cpu_workers" in r0:
                cpu += " (" + " + ".join(f"{statistics.median([r[k] for r in rs]):.0f}"
                                         for k in ("cpu_workers", "cpu_driver", "cpu_scheduler", "cpu_prefect")) + ")"
            tasks = " / ".join(str(v) for v in r0.get("tasks_per_worker", {}).values()) or "-"
            io = f"{statistics.median([r['scheduler_bytes'] for r in rs]) / 1024:,.0f}" if "scheduler_bytes" in r0 else "-"
            out.append(f"| {int(size):,} | {name} | {med([r['wall_s'] for r in rs])} | {cpu} | "
                       f"{max(r['peak_worker_mb'] for r in rs):.0f} ({max(r['peak_child_mb'] for r in rs):.0f}) | {tasks} | "
                       f"{io} | {r0['disk_per_doc'] / 1024:.1f} | {r0['n_docs']:,} | {r0['equal']} |")
    size = list(results)[-1]
    runs = results[size]
    out += ["", f"Per stage at {int(size):,} links: wall s / CPU-s of the workers (median over rounds)", "",
            "| stage | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for st in STAGES:
        cells = []
        for rs in runs.values():
            w = statistics.median([r["stages"][st]["wall_s"] for r in rs])
            c = statistics.median([r["stages"][st]["cpu_workers"] for r in rs])
            cells.append(f"{w:.1f} / {c:.1f}")
        out.append(f"| {st} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="500,2000,8000")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--nthreads", type=int, default=1, help="threads per Dask worker (default 1)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "cluster.json"))
    ap.add_argument("--local-run", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve()
    if args.local_run:
        return local_main(json.loads(args.local_run))
    import socket

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.testing.utilities import prefect_test_harness

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to the dead hosts are refused
    web = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    web_port = int(web.stdout.readline())
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict = {}
    try:
        with prefect_test_harness(server_startup_timeout=180):
            prefect_pid = next(p.pid for p in psutil.Process().children() if p.pid != web.pid)
            for n in [int(x) for x in args.sizes.split(",")]:
                dumps, hosts, dead = make_world(n, tmp / f"world-{n}")
                runs: dict[str, list[dict]] = {}
                for rnd in range(args.rounds):
                    for w in ["local"] + [int(x) for x in args.workers.split(",")]:
                        name = "local (anchor)" if w == "local" else f"{w} worker{'s' if w > 1 else ''}" + (
                            f" x {args.nthreads} threads" if args.nthreads > 1 else "")
                        out = tmp / f"out-{n}-{w}-{rnd}"
                        spec = {"dumps": [str(d) for d in dumps], "out": str(out), "hosts": hosts, "dead": dead,
                                "web_port": web_port, "dead_port": closed.getsockname()[1], "delay": args.delay}
                        r = run_local(spec) if w == "local" else run_cluster(spec, w, tmp / f"cl-{n}-{w}-{rnd}",
                                                                              prefect_pid, args.nthreads)
                        docs = r.pop("docs")
                        ref = runs.get("local (anchor)", [{}])[0].get("_docs", docs)
                        r.update(n_docs=len(docs), equal="yes" if docs == ref else "NO",
                                 disk_per_doc=disk_bytes(out) / max(1, len(docs)), _docs=docs)
                        runs.setdefault(name, []).append(r)
                        print(f"{n:,} links, {name}, round {rnd + 1}: {r['wall_s']:.1f} s, {cpu_of(r):.1f} CPU-s, "
                              f"{len(docs):,} documents, shards = local: {r['equal']}", flush=True)
                        shutil.rmtree(out, ignore_errors=True)
                for rs in runs.values():
                    for r in rs:
                        r.pop("_docs", None)
                results[str(n)] = runs
    finally:
        web.terminate()
        closed.close()
    print()
    print(tables(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                                           "delay_s": args.delay, "results": results}, indent=1))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
