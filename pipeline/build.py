"""A whole corpus build, stage after stage, each reading what the one before wrote:

    links -> fetch (WARC) -> extract -> filter -> dedup -> shards (+ manifest)

Plain Python, no orchestrator: the Prefect flows wrap the same stage entry points.
The funnel (every stage's in/out/dropped-by-reason) is written to
``OUT/funnel.json`` and into the shard manifest's version entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .config import Config, ConfigError
from .dedup import dedup_documents
from .extract import extract_documents, load_reddit_meta, tasks_from_fetch
from .fetch import fetch_links
from .filters import filter_documents
from .links import harvest_dump_links, iter_links
from .shards import shard_documents
from .summary import RunSummary, atomic_write_json, plot_funnel

LOCK = ".build.lock"


def expand_dumps(dumps: list[str]) -> list[str]:
    """Paths and glob patterns (a scheduled build reads ``RS_*.zst`` and so sees new months)."""
    from .io import expand_globs

    return expand_globs(dumps, "dump file")



class BuildLocked(RuntimeError):
    """Another build holds the output directory."""


@contextlib.contextmanager
def build_lock(out_dir: str | Path) -> Iterator[None]:
    """One build at a time per output directory (a scheduled build that starts while
    the last one still runs, a manual run beside a scheduled one). An advisory
    ``flock`` on OUT/.build.lock: released by the kernel when the holder dies, so a
    killed build never leaves a stale lock."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise BuildLocked(f"another build is running on {out} (pid {holder}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def run_build(dumps: list[str | Path], out_dir: str | Path, cfg: Config) -> list[RunSummary]:
    cfg.validate()
    missing = [str(d) for d in dumps if not Path(d).is_file()]
    if missing:
        raise FileNotFoundError(f"dump file(s) not found: {', '.join(missing)}")
    with build_lock(out_dir):
        return _run_build(dumps, Path(out_dir), cfg)


def _run_build(dumps: list[str | Path], out: Path, cfg: Config) -> list[RunSummary]:
    stages = []
    stages.append(harvest_dump_links(dumps, out / "links", cfg.links))
    stages.append(fetch_links(iter_links(out / "links", columns=("id", "url", "url_norm", "created_utc")),
                              out / "fetch", cfg.fetch))
    stages.append(extract_documents(tasks_from_fetch(out / "fetch"), out / "extract", cfg.extract,
                                    load_reddit_meta([out / "links"])))
    stages.append(filter_documents(out / "extract", out / "filter", cfg.filter, write_dropped=True))
    stages.append(dedup_documents(out / "filter", out / "dedup", cfg.dedup))
    funnel = [s.to_dict() for s in stages]
    stages.append(shard_documents(out / "dedup", out / "shards", cfg.shards,
                               {"config": cfg.to_dict(), "funnel": funnel, "dumps": [str(d) for d in dumps]}))
    atomic_write_json(out / "funnel.json", [s.to_dict() for s in stages])
    plot_funnel([s.to_dict() for s in stages], out / "funnel.png")
    from .report import write_report

    write_report(out / "shards", out, cfg.report.webtext_domains, cfg.report.token_sample)
    return stages


def funnel_table(stages: list[RunSummary]) -> str:
    return "\n".join(s.table() for s in stages)
