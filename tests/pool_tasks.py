"""Tasks for tests/pipeline/test_pool.py, importable by the pool's fork-server workers."""

import os
import signal
import time

STATE: dict = {}


def square(x):
    return x * x


def slow_or_fast(x):
    """x < 0: sleeps in C code (time.sleep releases no alarm; the worker is killed), else x."""
    if x < 0:
        time.sleep(3600)
    return x


def crash_on_negative(x):
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def raises(x):
    raise ValueError(f"bad task {x}")


def init_fails():
    raise ImportError("no such parser")


def init_sets(v):
    STATE["v"] = v


def uses_init(x):
    return (STATE["v"], x, os.getpid())
