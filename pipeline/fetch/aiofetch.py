"""The fetch stage's asyncio transport (``[fetch] transport = "async"``): ``Fetcher.fetch`` on one event loop.

``AsyncFetcher.afetch`` is ``Fetcher.fetch`` (pipeline/fetch/webclient.py) as a
coroutine, rule for rule: redirects followed by hand with every hop's host
checked (the resolver runs in a thread; connections then go to the checked
address, pipeline/fetch/h1client.py), credentials stripped, robots.txt once per
origin (other requests for that origin wait for it), the per-host throttle
(``AsyncHostThrottle``: concurrency and delay between request starts), retries of
connection errors, 429 and 5xx with the same back-off and Retry-After bound, the
whole-response deadline, the size cap, and the same classification. Responses
are ``webclient.Response`` objects with the same fields, so the WARC records are
the same bytes.

Every partition of a process runs on one event loop in a thread of its own
(``run``): the partitions' threads (pipeline/fetch/stage.py) wait on it, so a
worker process has one loop however many partitions it fetches at once. A
configured proxy uses the threaded transport (pipeline/fetch/crawl.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from pipeline.core.config import FetchConfig
from pipeline.fetch import h1client
from pipeline.fetch.h1client import ConnectionPool, DeadlineExpired, TransportError
from pipeline.fetch.netsafety import FetchRefused, resolve_public, without_credentials
from pipeline.fetch.webclient import ROBOTS_MAX_BYTES, Fetcher, Response, robots_rules

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()
_BLOCKING: ThreadPoolExecutor | None = None


def _after_fork() -> None:
    """A forked child has none of its parent's threads: it starts its own loop and pool."""
    global _LOOP, _LOOP_LOCK, _BLOCKING
    _LOOP, _LOOP_LOCK, _BLOCKING = None, threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork)


def shared_loop() -> asyncio.AbstractEventLoop:
    """This process's fetch event loop, running in a daemon thread (started on first use)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="webtext-fetch-loop", daemon=True).start()
            _LOOP = loop
        return _LOOP


def blocking_pool() -> ThreadPoolExecutor:
    """Threads for what blocks: name resolution and fsync."""
    global _BLOCKING
    with _LOOP_LOCK:
        if _BLOCKING is None:
            _BLOCKING = ThreadPoolExecutor(max_workers=32, thread_name_prefix="webtext-fetch-blocking")
        return _BLOCKING


def run(coro, cleanup_s: float = 30.0):
    """Runs CORO on the shared loop and waits for its result (its exception is raised
    here). A stop of the build (pipeline/core/interrupt.py) or an interrupt of this
    thread cancels the coroutine and waits up to CLEANUP_S for it to end (the crawl
    commits what finished and closes its files) before the interrupt is raised here."""
    import concurrent.futures

    from pipeline.core import interrupt

    loop = shared_loop()
    ended: concurrent.futures.Future = concurrent.futures.Future()
    task: list[asyncio.Task] = []

    def start() -> None:
        t = loop.create_task(coro)
        task.append(t)
        t.add_done_callback(lambda _: ended.set_result(None))  # finished, failed or cancelled

    loop.call_soon_threadsafe(start)
    try:
        interrupt.wait_future(ended, "fetch")
    except BaseException:
        loop.call_soon_threadsafe(lambda: task[0].cancel())  # after start(): the loop runs them in order
        try:
            ended.result(timeout=cleanup_s)
        except concurrent.futures.TimeoutError:
            pass
        raise
    return task[0].result()


class InflightBudget:
    """The requests in flight of every crawl on this process's loop, at most the sum of
    the ``workers`` of the crawls that started since it was last idle: the partitions a
    process fetches at once share their workers, so one that ends early leaves its
    share to those still running (politeness is per host, ``AsyncHostThrottle``)."""

    def __init__(self):
        self.total = 0
        self.running = 0
        self.used = 0
        self.waiters: deque[asyncio.Future] = deque()

    def join(self, workers: int) -> None:
        self.running += 1
        self.total += workers
        self._wake()

    def leave(self) -> None:
        self.running -= 1
        if self.running == 0:
            self.total = 0

    async def __aenter__(self) -> None:
        if self.used < self.total and not self.waiters:
            self.used += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # (its waker counted it in ``used``)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()
            else:
                self.waiters.remove(fut)
            raise

    async def __aexit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        self.used -= 1
        self._wake()

    def _wake(self) -> None:
        while self.waiters and self.used < self.total:
            fut = self.waiters.popleft()
            if not fut.done():
                self.used += 1
                fut.set_result(None)


_BUDGETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inflight_budget() -> InflightBudget:
    """The running loop's ``InflightBudget``."""
    loop = asyncio.get_running_loop()
    budget = _BUDGETS.get(loop)
    if budget is None:
        budget = _BUDGETS[loop] = InflightBudget()
    return budget


class AsyncHostThrottle:
    """At most ``concurrency`` requests in flight per host and ``delay`` seconds
    between the starts of two requests to one host (``HostThrottle`` on one loop)."""

    def __init__(self, concurrency: int, delay: float):
        self.concurrency = concurrency
        self.delay = delay
        self.sems: dict[str, asyncio.Semaphore] = {}
        self.next_ok: dict[str, float] = {}

    async def acquire(self, host: str) -> None:
        sem = self.sems.get(host)
        if sem is None:
            sem = self.sems[host] = asyncio.Semaphore(self.concurrency)
        await sem.acquire()
        try:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                wait = self.next_ok.get(host, 0.0) - now
                if wait <= 0:
                    self.next_ok[host] = now + self.delay
                    return
                await asyncio.sleep(min(wait, 1.0))
        except BaseException:
            sem.release()
            raise

    def release(self, host: str) -> None:
        self.sems[host].release()


class AsyncFetcher(Fetcher):
    """``Fetcher`` whose I/O runs on the running event loop (``afetch``); ``classify``
    and ``dead_page`` are Fetcher's own."""

    def __init__(self, cfg: FetchConfig):
        super().__init__(cfg)
        self.athrottle = AsyncHostThrottle(cfg.per_host_concurrency, cfg.per_host_delay_s)
        self.conns = ConnectionPool(self._apin, cfg.connect_timeout_s, maxsize=max(2, cfg.per_host_concurrency),
                                    num_pools=max(64, 4 * cfg.workers))
        self.robots_waiting: dict[str, asyncio.Future] = {}
        self.inflight: InflightBudget | None = None  # requests under way (connecting, sending, reading): ``open``
        self.header_lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        self.header_items = list(self.headers.items())
        self.read_timeout = min(cfg.connect_timeout_s, cfg.total_timeout_s)
        from pipeline.core.config import _split_target

        self.mapped = {host: _split_target(target) for host, target in cfg.resolve.items()}

    async def _apin(self, host: str, port: int) -> str | tuple[str, int]:
        """``Fetcher._pin`` with the resolver in a thread."""
        mapped = self.mapped.get(host)
        if mapped is not None:
            return mapped
        if self.cfg.allow_private_addresses:
            return host
        ip = self.pins.get((host, port))
        if ip is None:
            ip = await asyncio.get_running_loop().run_in_executor(blocking_pool(), resolve_public, host, port)
            self.pins[(host, port)] = ip
        return ip

    async def acheck(self, url: str) -> None:
        """``Fetcher.check``: the host resolved once (in a thread), every address public;
        connections then go to that address."""
        target = self.check_target(url)
        if target is not None:
            self.pins[target] = await asyncio.get_running_loop().run_in_executor(blocking_pool(), resolve_public, *target)

    async def arobots_allows(self, url: str) -> bool:
        """``Fetcher.robots_allows``: robots.txt once per origin, through the throttle;
        the other requests for the origin wait for it."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self.robots:
            waiting = self.robots_waiting.get(origin)
            if waiting is not None:
                await asyncio.shield(waiting)
            else:
                waiting = self.robots_waiting[origin] = asyncio.get_running_loop().create_future()
                rp = None
                host = parts.netloc.lower()
                try:
                    await self.athrottle.acquire(host)
                    try:
                        rp = robots_rules(await self._aget(origin + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES))
                    except Exception:
                        rp = None  # robots.txt unreachable: allowed, as crawlers commonly do
                    finally:
                        self.athrottle.release(host)
                finally:
                    self.robots[origin] = rp
                    del self.robots_waiting[origin]
                    waiting.set_result(None)
        rp = self.robots.get(origin)
        return True if rp is None else rp.can_fetch(self.cfg.user_agent, url)

    async def _aget(self, url: str, max_bytes: int) -> Response:
        """One GET (no redirects), reading at most ``max_bytes`` of the raw body before
        the whole-response deadline."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        deadline = math.inf  # set once a slot is held: waiting for one is not the request's time
        scheme, host, port, target, host_header = h1client.request_target(url)
        data = f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n{self.header_lines}\r\n".encode("latin-1")
        key = (scheme, host, port)
        try:
            if self.inflight is None:
                self.open()
            async with self.inflight:
                deadline = loop.time() + cfg.total_timeout_s
                conn = await self.conns.acquire(key, deadline)
                try:
                    head, body, truncated, reusable = await conn.exchange(data, max_bytes, deadline, self.read_timeout)
                except asyncio.CancelledError:
                    conn.abort()
                    raise
        except DeadlineExpired as exc:
            raise FetchRefused("timeout", f"whole response not received within {cfg.total_timeout_s}s") from exc
        except TransportError as exc:
            if loop.time() >= deadline:
                raise FetchRefused("timeout", f"whole response not received within {cfg.total_timeout_s}s") from exc
            raise
        if reusable:
            self.conns.release(key, conn)
        return Response(url, head.status, head.reason, head.headers, body, truncated,
                        "HTTP/1.0" if head.version == 10 else "HTTP/1.1", self.header_items)

    async def afetch(self, url: str) -> tuple[str, Response | None, dict]:
        """``Fetcher.fetch``: one URL, redirects followed by hand (each hop checked).
        Returns (outcome, last response or None, details)."""
        cfg = self.cfg
        info: dict = {"redirects": [], "_responses": []}
        current = url
        for hop in range(cfg.max_redirects + 1):
            current = without_credentials(current)
            if not cfg.allow_private_addresses:
                await self.acheck(current)
            host = urlsplit(current).netloc.lower()
            if cfg.respect_robots and not await self.arobots_allows(current):
                return "robots_disallowed", None, info
            attempt = 0
            while True:
                await self.athrottle.acquire(host)
                try:
                    resp = await self._aget(current, cfg.max_bytes)
                    err = None
                except FetchRefused:
                    raise
                except TransportError as exc:
                    resp, err = None, (exc.outcome, exc)
                finally:
                    self.athrottle.release(host)
                wait = self.retry_wait(attempt, resp, err)
                if wait is not None:
                    attempt += 1
                    info["retries"] = attempt
                    if resp is not None:
                        info["_responses"].append(resp)
                    await asyncio.sleep(wait)
                    continue
                break
            step = self.after_answer(url, current, resp, err, info)
            if isinstance(step, tuple):
                return step
            current = step
        return "too_many_redirects", None, info

    def open(self) -> None:
        """Joins the loop's in-flight budget with ``workers`` (on the loop, before any request)."""
        self.inflight = inflight_budget()
        self.inflight.join(self.cfg.workers)

    def close(self) -> None:
        """Leaves the budget and closes the idle connections (on the loop)."""
        if self.inflight is not None:
            self.inflight.leave()
            self.inflight = None
        self.conns.close()
