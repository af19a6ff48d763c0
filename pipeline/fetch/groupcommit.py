"""Group commits of the asyncio crawl: WARC records made durable, then the outcome lines that point at them.

Every partition crawled on a process's event loop has a ``Journal``: its WARC sink
(records written, not yet fsynced), its outcome log, and the outcome records of its
finished rows. One ``GroupCommit`` per loop commits all journals together, at most
every ``COMMIT_LINGER_S`` (sooner when a partition ends and ``flush``es): in one
thread hop, for each journal, the WARC files it wrote are fsynced, then its outcome
lines appended with one write and one fsync. No outcome line ever points at a record
that is not on disk, as with a fsync per record; a kill loses at most the rows of
the last ``COMMIT_LINGER_S``, which the next run fetches again (their WARC bytes are
trimmed, pipeline/fetch/warcstore.py ``repair_warcs``). A journal whose commit fails
(a full disk) keeps the error; its crawl stops and raises it.
"""

from __future__ import annotations

import asyncio
import os
import weakref

import orjson

COMMIT_LINGER_S = 0.25


class Journal:
    """One partition's WARC sink, outcome log and finished rows not yet committed;
    ``logged(records)`` is told each committed batch."""

    def __init__(self, sink, log, logged):
        self.sink, self.log, self.logged = sink, log, logged
        self.queued: list[dict] = []
        self.error: BaseException | None = None


def _durable(jobs: list) -> list:
    """In a thread: each journal's WARC files fsynced, then its lines appended and fsynced."""
    errors = []
    for sink, log, lines in jobs:
        try:
            sink.sync()
            with log.lock:
                log.fh.write(lines)
                log.fh.flush()
                os.fsync(log.fh.fileno())
            errors.append(None)
        except Exception as exc:  # a full disk: that journal's crawl raises it
            errors.append(exc)
    return errors


class GroupCommit:
    """The commits of every journal on one event loop (``for_loop``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.journals: list[Journal] = []
        self.busy: list[Journal] = []  # the journals of the batch being made durable
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()
        self.tick = loop.create_future()  # resolved at the end of each batch

    def open(self, sink, log, logged) -> Journal:
        j = Journal(sink, log, logged)
        self.journals.append(j)
        return j

    async def close(self, j: Journal) -> None:
        """JOURNAL leaves (what it has queued is not committed); waits while a batch
        holding its files is under way."""
        if j in self.journals:
            self.journals.remove(j)
        while j in self.busy:
            await asyncio.shield(self.tick)

    def add(self, j: Journal, rec: dict) -> None:
        j.queued.append(rec)
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    async def flush(self, j: Journal) -> None:
        """Until JOURNAL's queued rows are committed (or its commit failed)."""
        while j.error is None and (j.queued or j in self.busy):
            if self.task is None:
                self.task = self.loop.create_task(self._run())
            self.wake.set()
            await asyncio.shield(self.tick)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await asyncio.wait_for(self.wake.wait(), COMMIT_LINGER_S)
                except TimeoutError:
                    pass
                self.wake.clear()
                batch = []
                for j in self.journals:
                    if j.queued and j.error is None:
                        try:
                            batch.append((j, j.queued, b"".join([orjson.dumps(r) + b"\n" for r in j.queued])))
                        except Exception as exc:  # a record orjson cannot write: a bug, raised by that crawl
                            j.error = exc
                        j.queued = []
                if not batch:
                    return
                self.busy = [j for j, _, _ in batch]
                from pipeline.fetch.aiofetch import blocking_pool

                try:
                    errors = await self.loop.run_in_executor(blocking_pool(), _durable,
                                                             [(j.sink, j.log, lines) for j, _, lines in batch])
                finally:
                    self.busy = []
                for (j, recs, _), err in zip(batch, errors):
                    if err is not None:
                        j.error = j.error or err
                        continue
                    try:
                        for rec in recs:
                            j.log._remember(rec)
                        j.logged(recs)
                    except Exception as exc:
                        j.error = j.error or exc
                self._next_tick()
        finally:
            self.task = None
            self._next_tick()

    def _next_tick(self) -> None:
        old, self.tick = self.tick, self.loop.create_future()
        if not old.done():
            old.set_result(None)


_COMMITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def for_loop() -> GroupCommit:
    """The running loop's ``GroupCommit``."""
    loop = asyncio.get_running_loop()
    gc = _COMMITS.get(loop)
    if gc is None:
        gc = _COMMITS[loop] = GroupCommit(loop)
    return gc
