"""A stop of the build (Ctrl-C, SIGTERM: pipeline/core/interrupt.py) ends the work that
runs outside the main thread at once: a fetch in this process, in child processes or
in threads, and a process pool's tasks. What was committed stays; the next run
fetches the rest, each URL once. Before, a stage running in a task runner's thread
went on to its end (a fetch of hours) after Ctrl-C."""

import asyncio
import threading
import time
from dataclasses import replace

import orjson
import pool_tasks
import pytest
from warcio.archiveiterator import ArchiveIterator
from webtext_testlib import WebServer, aeb_pages, outcome_lines, test_fetch_config

from pipeline.core import interrupt
from pipeline.core.pool import TaskPool
from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch import aiofetch
from pipeline.fetch.stage import fetch_links

HOSTS = [f"site{i}.test" for i in range(4)]


@pytest.fixture(autouse=True)
def clear_stop():
    interrupt.reset()
    yield
    interrupt.reset()


def stop_when(cond, timeout_s: float = 60.0) -> threading.Thread:
    """A thread that asks for a stop once COND() holds (or after TIMEOUT_S)."""
    def watch():
        t0 = time.monotonic()
        while not cond() and time.monotonic() - t0 < timeout_s:
            time.sleep(0.05)
        interrupt.request_stop("test")

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def links(per_host: int):
    rows = []
    for h in HOSTS:
        for i in range(per_host):
            url = f"http://{h}/page/{i}"
            norm = normalize_url(url)
            rows.append({"id": url_id(norm), "url": url, "url_norm": norm, "created_utc": 1_500_000_000 + i,
                         "score": 5, "score_total": 5, "subreddits": ["news"], "reddit_ids": [f"r{h}{i}"]})
    return rows


@pytest.mark.parametrize("plan", [dict(processes=0, transport="async", partitions=2),
                                  dict(processes=2, transport="async", partitions=4),
                                  dict(processes=1, transport="threads", partitions=2)],
                         ids=["async-in-process", "async-two-children", "threads"])
def test_a_stop_ends_a_fetch_at_once_and_the_next_run_fetches_the_rest_once(tmp_path, plan):
    # one page a second per host: 4 hosts x 12 pages would take 11 s or more
    with WebServer([p["html"] for p in aeb_pages(12)]) as srv:
        cfg = test_fetch_config(resolve={h: f"127.0.0.1:{srv.port}" for h in HOSTS}, per_host_delay_s=1.0,
                                per_host_concurrency=1, total_timeout_s=15.0, connect_timeout_s=5.0, **plan)
        rows = links(12)
        stop_when(lambda: len(outcome_lines(tmp_path)) >= 4)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fetch_links(rows, tmp_path, cfg)
        took = time.monotonic() - t0
        first = len(outcome_lines(tmp_path))
        # it stopped where it was: the fetch did not go on to its end (>= 11 s, 48 outcomes)
        assert 4 <= first < len(rows) // 2, (first, took)
        interrupt.reset()
        s = fetch_links(rows, tmp_path, replace(cfg, per_host_delay_s=0.0))  # the rest, without the wait
    urls = [orjson.loads(line)["url_norm"] for line in outcome_lines(tmp_path)]
    assert len(urls) == len(set(urls)) == len(rows)  # nothing lost, nothing logged twice
    assert s.dropped.get("already_fetched", 0) == first
    # every WARC file reads to its end, and each ok outcome points at a record there
    n = 0
    for w in (tmp_path / "warc").glob("*.warc.gz"):
        with open(w, "rb") as fh:
            n += sum(1 for r in ArchiveIterator(fh) if r.rec_type == "response")
    assert n >= len(rows)


def test_a_stop_cancels_the_coroutine_and_waits_for_its_cleanup():
    started, cleaned = [], []

    async def crawl():
        started.append(True)
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # a commit that takes a while
            cleaned.append(True)

    stop_when(lambda: started)
    t0 = time.monotonic()
    with pytest.raises(interrupt.Interrupted, match="fetch stopped: test"):
        aiofetch.run(crawl())
    assert cleaned == [True] and time.monotonic() - t0 < 30


@pytest.mark.timeout(60)
def test_a_stop_ends_a_pool_run_and_its_busy_workers():
    stop_when(lambda: True, 0)
    with TaskPool(pool_tasks.slow_or_fast, 2) as pool:
        with pytest.raises(interrupt.Interrupted):
            list(pool.imap([1, -1, -2, 3]))  # two tasks that sleep for an hour
        procs = [w.proc for w in pool.workers]
    assert procs and not any(p.is_alive() for p in procs)


def test_the_flag_is_cleared_by_the_next_build_and_says_why():
    interrupt.request_stop("SIGINT")
    interrupt.request_stop("SIGTERM")
    assert interrupt.stop_requested() and interrupt.reason() == "SIGINT"
    with pytest.raises(interrupt.Interrupted, match="extract stopped: SIGINT"):
        interrupt.check("extract")
    interrupt.reset()
    interrupt.check("extract")  # nothing raised


class _Raises:
    """A runner whose every stage raises EXC (where a build's main thread would get it)."""

    distributed = False

    def __init__(self, exc):
        self.exc = exc

    def call(self, *a):
        raise self.exc

    map = call


@pytest.mark.parametrize("exc,stops", [(KeyboardInterrupt(), True), (SystemExit(1), True),
                                       (ValueError("a stage's own error"), False)])
def test_an_interrupt_in_the_builds_thread_stops_the_work_in_the_others(tmp_path, exc, stops):
    """The build's thread gets Ctrl-C (or Prefect's TerminationSignal for SIGTERM) while
    a stage runs in a task runner's thread: the flag is set so that stage stops too. A
    stage's own error is not an interrupt: the other work is left to finish."""
    from pipeline.build import run_stages
    from pipeline.core.config import Config
    from pipeline.stages import BuildContext

    interrupt.request_stop("an earlier build")  # cleared when a build starts
    with pytest.raises(type(exc)):
        run_stages(BuildContext(tmp_path, Config(), progress=False), _Raises(exc))
    assert interrupt.stop_requested() is stops
    if stops:
        assert interrupt.reason() == type(exc).__name__
