"""One process pool for every stage that spreads work over cores: tasks in, results out in
task order, with a time limit per task that holds against C code.

``TaskPool(fn, workers, ...)`` starts WORKERS processes from a fork server (a fresh,
single-threaded process: forking a process with threads, such as Prefect's client or
a task runner, can copy a held lock into the child and hang it). Each worker runs
``fn(task)`` for one task at a time; the parent gives it the next when it answers.

A task that runs past ``time_limit_s`` has its worker killed from outside (SIGKILL)
and replaced, and its result is ``TaskFailed("timeout")``: an alarm inside the worker
cannot stop libxml2 or another C extension in the middle of a call, a kill can. A
worker that dies on a task (a crash in C code, the kernel's OOM killer) gives
``TaskFailed("worker_died")`` for that task and is replaced; the rest of the run goes
on. An exception ``fn`` raises is raised in the parent (``fn`` turns a task's expected
failures into results). A worker whose ``initializer`` raises stops the pool with
``WorkerStartError`` (a pool that restarted it forever would hang the run).

Workers are replaced after ``max_tasks_per_worker`` tasks, so memory a long-lived
parser holds on to is given back.

Test-only fault injection: with ``WEBTEXT_FAULT_KILL_WORKER=TEXT`` in its environment,
the process that runs a pool SIGKILLs itself when it is about to hand out a task whose
``repr`` contains TEXT (an extract task's holds the page's URL). A pool's own workers
are isolated (a page that crashes one costs that page only); this stands for what
takes down the process *around* them -- on a Dask cluster the worker that runs the
partition -- as the kernel's OOM killer or a crash in C code would, every time that
partition runs. ``tests/flows/test_cluster.py`` uses it for the poison-task bound
(docs/cluster.md). Unset, as it is outside those tests, it costs one lookup per ``imap``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator

from pipeline.core import interrupt


class WorkerStartError(RuntimeError):
    """A pool worker's initializer raised: the pool cannot run (the message says why)."""


class TaskFailed:
    """The result of a task whose worker was killed (``timeout``) or died (``worker_died``)."""

    __slots__ = ("reason", "task")

    def __init__(self, reason: str, task: Any):
        self.reason = reason
        self.task = task

    def __repr__(self) -> str:
        return f"TaskFailed({self.reason!r})"


def _worker_main(conn, fn, initializer, initargs) -> None:
    # Ctrl-C at a terminal reaches the whole process group: the parent decides (it stops
    # the pool, pipeline/core/interrupt.py); a worker that died of it would count as a
    # page's failure
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the pool
            conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
            return
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        try:
            conn.send(("ok", fn(msg)))
        except BaseException as exc:  # noqa: BLE001 - the task's error goes back to the parent
            tb = traceback.format_exc()
            try:
                conn.send(("error", (exc, tb)))
            except Exception:  # an exception that does not pickle: its text
                conn.send(("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), tb)))


class _Worker:
    def __init__(self, ctx, fn, initializer, initargs):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, initializer, initargs), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.job: tuple[int, Any] | None = None
        self.deadline: float | None = None
        self.done = 0

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class TaskPool:
    """See the module's docstring. Use as a context manager; ``imap`` once or more."""

    def __init__(self, fn: Callable[[Any], Any], workers: int | None = None, *, initializer: Callable | None = None,
                 initargs: tuple = (), time_limit_s: float | None = None, max_tasks_per_worker: int | None = None,
                 start_method: str = "forkserver", preload: tuple[str, ...] = ()):
        self.fn, self.initializer, self.initargs = fn, initializer, initargs
        self.n = max(1, workers or os.cpu_count() or 1)
        self.time_limit_s = time_limit_s
        self.max_tasks = max_tasks_per_worker
        self.ctx = mp.get_context(start_method)
        if start_method == "forkserver" and preload:
            self.ctx.set_forkserver_preload(list(preload))
        self.workers: list[_Worker] = []
        self.killed = 0  # workers killed for a task past its time limit
        self.died = 0  # workers that died on a task

    def __enter__(self) -> "TaskPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        w = _Worker(self.ctx, self.fn, self.initializer, self.initargs)
        self.workers.append(w)
        return w

    def _retire(self, w: _Worker, kill: bool) -> None:
        self.workers.remove(w)
        w.kill() if kill else w.stop()

    def close(self) -> None:
        for w in list(self.workers):
            self._retire(w, kill=w.job is not None)

    def imap(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """``fn(task)`` for each task, in task order: its return value, or a ``TaskFailed``.
        An exception ``fn`` raised is raised here (the task's own errors are ``fn``'s to
        turn into results)."""
        todo = deque(enumerate(tasks))
        kill_on = os.environ.get("WEBTEXT_FAULT_KILL_WORKER")  # test-only: see the module's docstring
        results: dict[int, Any] = {}
        nxt = 0
        while len(self.workers) < min(self.n, max(1, len(todo))):
            self._spawn()
        while todo or any(w.job is not None for w in self.workers) or nxt in results:
            while nxt in results:
                yield results.pop(nxt)
                nxt += 1
            if not todo and not any(w.job is not None for w in self.workers):
                break
            for w in self.workers:
                if w.ready and w.job is None and todo:
                    if kill_on and kill_on in repr(todo[0][1]):
                        os.kill(os.getpid(), signal.SIGKILL)
                    w.job = todo.popleft()
                    w.deadline = time.monotonic() + self.time_limit_s if self.time_limit_s else None
                    w.conn.send(w.job[1])
            interrupt.check("a pool's work")  # a stop of the build: close() kills the busy workers
            deadlines = [w.deadline for w in self.workers if w.deadline is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            timeout = interrupt.POLL_S if timeout is None else min(timeout, interrupt.POLL_S)
            for conn in wait([w.conn for w in self.workers] + [w.proc.sentinel for w in self.workers], timeout):
                w = next((x for x in self.workers if conn is x.conn or conn == x.proc.sentinel), None)
                if w is None:
                    continue
                try:
                    kind, value = w.conn.recv() if w.conn.poll() else (None, None)
                except (EOFError, OSError):
                    kind, value = None, None
                if kind is None:
                    if w.proc.is_alive() and conn is w.conn:
                        continue
                    self._worker_died(w, results, todo)
                elif kind == "init_error":
                    self.close()
                    raise WorkerStartError(value)
                elif kind == "ready":
                    w.ready = True
                elif kind == "ok" or kind == "error":
                    i, _ = w.job
                    w.job, w.deadline = None, None
                    w.done += 1
                    if kind == "error":
                        exc, tb = value
                        self.close()
                        exc.add_note(f"in a pool worker:\n{tb}")
                        raise exc
                    results[i] = value
                    if self.max_tasks and w.done >= self.max_tasks:
                        self._retire(w, kill=False)
                        if todo:
                            self._spawn()
            now = time.monotonic()
            for w in [x for x in self.workers if x.deadline is not None and x.deadline <= now]:
                i, task = w.job
                results[i] = TaskFailed("timeout", task)
                self.killed += 1
                self._retire(w, kill=True)
                if todo:
                    self._spawn()

    def _worker_died(self, w: _Worker, results: dict, todo: deque) -> None:
        if w.job is None and not w.ready:
            self._retire(w, kill=True)
            self.close()
            raise WorkerStartError(f"a pool worker exited before it started (exit code {w.proc.exitcode})")
        if w.job is not None:
            i, task = w.job
            results[i] = TaskFailed("worker_died", task)
            self.died += 1
        self._retire(w, kill=True)
        if todo:
            self._spawn()
