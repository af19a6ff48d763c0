"""Stopping a build promptly: one process-wide flag that long waits look at.

Python delivers Ctrl-C (SIGINT) to the main thread only. A build's work often runs in
other threads: the Prefect flow's task runner runs each stage in a worker thread, the
fetch waits there on its event loop, extract waits on its child processes. Before this
module, the main thread got the KeyboardInterrupt at once, but the flow engine then
waited for the running stage to finish (the task runner joins its threads), so Ctrl-C
during a fetch of hours stopped the build only when the fetch was done.

``request_stop`` sets the flag; the places that wait for long (``aiofetch.run``,
``TaskPool.imap``) look at it at least every ``POLL_S`` seconds and raise
``Interrupted`` (a KeyboardInterrupt: not a failure that Prefect's task retries or
the CLI's error handling would take for one). What they committed stays committed;
the next run of the same command resumes from it.

Who sets it: ``install_sigint`` (the CLI's handler for SIGINT: the flag, then the
usual KeyboardInterrupt in the main thread; a second Ctrl-C ends the process at once),
and ``run_stages`` when an interrupt of any kind (KeyboardInterrupt, Prefect's
TerminationSignal for SIGTERM, SystemExit) reaches the build's main thread. A build
clears it when it starts (``reset``).

A thread can also be stopped on its own: inside ``watching(probe)``, ``check`` stops
when PROBE() is true. A stage task on a Dask worker uses it to stop when the scheduler
has given the task up (flows/corpus.py): the flag is the worker process's, shared by
every task it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator

POLL_S = 0.25  # the longest a waiting thread goes without looking at the flag

_STOP = threading.Event()
_why: list[str] = []
_local = threading.local()


class Interrupted(KeyboardInterrupt):
    """The build was asked to stop (Ctrl-C, SIGTERM): raised where work was waiting."""


def request_stop(why: str) -> None:
    if not _STOP.is_set():
        _why.append(why)
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def reason() -> str:
    return _why[0] if _why else ""


def reset() -> None:
    _STOP.clear()
    _why.clear()


def check(where: str) -> None:
    """Raises ``Interrupted`` when a stop was asked for, of the process or of this thread's
    task (``watching``): a cheap test, to call in loops."""
    if _STOP.is_set():
        raise Interrupted(f"{where} stopped: {reason() or 'interrupted'}")
    probe = getattr(_local, "probe", None)
    if probe is not None and probe():
        raise Interrupted(f"{where} stopped: its task was given up by its scheduler")


@contextlib.contextmanager
def watching(probe: Callable[[], bool]) -> Iterator[None]:
    """While inside, ``check`` in this thread also stops when PROBE() is true: a task
    that its scheduler gave up while it ran (a Dask worker cannot stop a running task;
    flows/corpus.py passes a probe of the worker's state for the task's key)."""
    old = getattr(_local, "probe", None)
    _local.probe = probe
    try:
        yield
    finally:
        _local.probe = old


def wait_future(fut, where: str):
    """FUT's result (a concurrent.futures.Future), looking at the flag while waiting:
    ``Interrupted`` once a stop is asked for (FUT is left to its owner to cancel)."""
    import concurrent.futures

    while True:
        check(where)
        try:
            return fut.result(timeout=POLL_S)
        except concurrent.futures.TimeoutError:
            continue


def install_sigint() -> None:
    """Ctrl-C sets the flag, then raises KeyboardInterrupt in the main thread as Python's
    own handler does; a second Ctrl-C while the first is being handled ends the process
    at once (exit status 130), leaving what was committed for the next run."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigint(signum, frame):
        if _STOP.is_set():
            os.write(2, b"\ninterrupted again: exiting now (what was committed is kept; re-run to resume)\n")
            os._exit(130)
        request_stop("SIGINT")
        # os.write, not print: a flow's prints go through logging, whose lock this thread may hold
        os.write(2, b"\ninterrupted: stopping the work in progress (Ctrl-C again to exit at once)\n")
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
