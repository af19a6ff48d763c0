"""The one process pool (pipeline/core/pool.py): results in task order; a task past its
time limit is stopped by killing its worker from outside (an alarm cannot interrupt C
code), a worker that dies costs only its task, an initializer that fails stops the pool
with the reason, and workers are replaced after a number of tasks."""

import time

import pool_tasks
import pytest

from pipeline.core.pool import TaskFailed, TaskPool, WorkerStartError


def test_results_come_back_in_task_order():
    with TaskPool(pool_tasks.square, 2) as pool:
        assert list(pool.imap(range(50))) == [x * x for x in range(50)]


def test_a_task_past_its_time_limit_is_killed_and_the_rest_goes_on():
    t0 = time.monotonic()
    with TaskPool(pool_tasks.slow_or_fast, 2, time_limit_s=1.0) as pool:
        out = list(pool.imap([1, -1, 2, 3, -2, 4]))
        assert pool.killed == 2
    assert [o if not isinstance(o, TaskFailed) else o.reason for o in out] == [1, "timeout", 2, 3, "timeout", 4]
    assert out[1].task == -1
    assert time.monotonic() - t0 < 30  # not the hour the tasks asked for


def test_a_worker_that_dies_costs_only_its_task():
    with TaskPool(pool_tasks.crash_on_negative, 2) as pool:
        out = list(pool.imap([1, -1, 2, -3, 3]))
        assert pool.died == 2
    assert [o if not isinstance(o, TaskFailed) else o.reason for o in out] == [1, "worker_died", 2, "worker_died", 3]


def test_an_initializer_that_fails_stops_the_pool_with_its_reason():
    with pytest.raises(WorkerStartError, match="ImportError: no such parser"):
        with TaskPool(pool_tasks.square, 2, initializer=pool_tasks.init_fails) as pool:
            list(pool.imap(range(5)))


def test_an_error_in_a_task_is_raised_in_the_parent():
    with pytest.raises(ValueError, match="bad task 0"):
        with TaskPool(pool_tasks.raises, 1) as pool:
            list(pool.imap([0, 1]))


def test_workers_are_replaced_after_max_tasks_and_keep_their_initializer():
    with TaskPool(pool_tasks.uses_init, 1, initializer=pool_tasks.init_sets, initargs=("cfg",),
                  max_tasks_per_worker=3) as pool:
        out = list(pool.imap(range(7)))
    assert [o[:2] for o in out] == [("cfg", i) for i in range(7)]
    assert len({o[2] for o in out}) == 3  # 3 + 3 + 1 tasks: three worker processes


def test_no_tasks_no_workers_needed():
    with TaskPool(pool_tasks.square, 2) as pool:
        assert list(pool.imap([])) == []
