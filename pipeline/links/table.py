"""The links table on disk: its runs, read whole or a batch at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.config import LinksConfig
from pipeline.core.io import (
    conform,
    write_parquet_atomic,
)
from pipeline.core.schema import LINKS_SCHEMA
from pipeline.core.summary import RunSummary
from pipeline.links.select import LinkSelector
from pipeline.sources.dumps import (
    Submission,
)

RUNS = "runs"
LEDGER = "ledger.json"
LEGACY = "links.parquet"  # the layout before runs: one file rewritten by every merge
REPLACED = "links.replaced.parquet"
FORMAT = 1


# Columns worth a Parquet dictionary (few distinct values); the others (ids, URLs,
# titles: nearly all distinct) are written plain, smaller and faster than a dictionary
# Parquet would build and then abandon.
DICTIONARY_COLUMNS = ["domain", "subreddits.list.element"]


def write_links_table(table: pa.Table, path: str | Path) -> Path:
    """Write a LINKS_SCHEMA table as one zstd Parquet file, atomically."""
    return write_parquet_atomic(table, path, use_dictionary=DICTIONARY_COLUMNS)


def write_links(rows: list[dict], path: str | Path) -> Path:
    """Write link rows as one zstd Parquet file, atomically."""
    rows = sorted(rows, key=lambda r: (r["created_utc"], r["url_norm"]))
    return write_links_table(pa.Table.from_pylist(rows, schema=LINKS_SCHEMA), path)


def _run_files(links_dir: Path) -> list[tuple[int, Path]]:
    """(run, file) of every committed run of LINKS_DIR, oldest first; an old
    single ``links.parquet`` (a directory not taken over yet, or one the API
    harvest wrote) is run 0."""
    ledger = links_dir / RUNS / LEDGER
    if ledger.is_file():
        runs = orjson.loads(ledger.read_bytes())["runs"]
        return [(r["run"], links_dir / LEGACY if r.get("legacy") else _run_path(links_dir, r["run"])) for r in runs]
    return [(0, links_dir / LEGACY)] if (links_dir / LEGACY).is_file() else []


def link_runs(links_dir: str | Path) -> list[int]:
    """The run numbers of LINKS_DIR's merge runs, oldest first (``iter_links(runs=...)``)."""
    return [r for r, _ in _run_files(Path(links_dir))]


def _links_files(path: str | Path, runs: Iterable[int | None] | None = None) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    files = _run_files(path)
    if not files:
        raise FileNotFoundError(f"no links at {path} (neither {RUNS}/{LEDGER} nor {LEGACY}): run `webtext links` first")
    if runs is not None:
        wanted = {r for r in runs if r is not None}
        unknown = wanted - {r for r, _ in files}
        if unknown:
            raise ValueError(f"{path}: no links run {sorted(unknown)}; its runs are {[r for r, _ in files]}")
        files = [(r, f) for r, f in files if r in wanted]
    return [f for _, f in files]


def read_links(path: str | Path, runs: Iterable[int | None] | None = None) -> pa.Table:
    """Every link of a links directory (all its runs, or RUNS) or of one links file, as one table."""
    tables = [conform(pq.read_table(f), LINKS_SCHEMA) for f in _links_files(path, runs)]
    return pa.concat_tables(tables) if tables else LINKS_SCHEMA.empty_table()


def iter_links(path: str | Path, columns: tuple[str, ...] = ("id", "url", "url_norm"), batch_rows: int = 8192,
               runs: Iterable[int | None] | None = None):
    """The links' rows as dicts, a record batch at a time (memory: one batch): every
    run of a links directory, oldest first, or only the run numbers in RUNS (e.g.
    ``[summary.extra["run"]]``: the links one merge added; ``None`` in it is skipped,
    which is what a merge with nothing new returns); PATH may also be one links file."""
    for f in _links_files(path, runs):
        for b in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=list(columns)):
            yield from b.to_pylist()


def select_links(
    submissions: Iterable[Submission], cfg: LinksConfig, summary: RunSummary | None = None
) -> tuple[list[dict], RunSummary]:
    selector = LinkSelector(cfg, summary)
    for s in submissions:
        selector.add(s)
    rows = selector.rows()
    return rows, selector.summary

def _run_path(links_dir: Path, run: int, kind: str = "links") -> Path:
    ext = "parquet" if kind == "links" else "arrow"
    return links_dir / RUNS / f"{kind}-{run:04d}.{ext}"
