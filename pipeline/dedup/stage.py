"""The dedup stage: the signatures of the new parts, then one global step (candidates from
the index, verification, clusters, the keep rule) and the commit of a run; the design
and the on-disk index are described in ``pipeline/dedup/__init__.py``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import interrupt
from pipeline.core.config import DedupConfig
from pipeline.core.errors import DamagedPart
from pipeline.core.io import conform
from pipeline.core.pool import TaskFailed, TaskPool
from pipeline.core.summary import RunSummary, progress
from pipeline.dedup.clusters import find_clusters
from pipeline.dedup.index import LEDGER, DedupIndex
from pipeline.dedup.signatures import (
    BATCH_ROWS,
    ROW_GROUP,
    SKIP_REASONS,
    Batch,
    check_part,
    id_hash,
    part_signatures,
)

# --- the stage -------------------------------------------------------------------------------


def input_parts(src: Path) -> list[Path]:
    return [src] if src.is_file() else sorted(p for p in src.glob("*.parquet") if not p.name.startswith("."))


def signature_file(out: Path, part: Path) -> Path:
    return out / "signatures" / f"{part.name}.{part.stat().st_size}.sig.parquet"


def pending_parts(src: str | Path, out_dir: str | Path, cfg: DedupConfig, state_dir: str | Path | None = None) -> list[Path]:
    """The input parts no committed run consumed (the flow maps ``part_signatures`` over them)."""
    src, out = Path(src), Path(out_dir)
    led = Path(state_dir or out / "state") / LEDGER
    done = {}
    if led.is_file():
        for r in json.loads(led.read_text())["runs"]:
            done.update(r.get("parts") or {})
    return [p for p in input_parts(src) if done.get(p.name) != p.stat().st_size]


def dedup_documents(src: str | Path, out_dir: str | Path, cfg: DedupConfig, state_dir: str | Path | None = None
                    ) -> RunSummary:
    """``webtext dedup``: Parquet documents (id, text; score, created_utc optional) ->
    kept documents (``documents-NNNN.parquet``, one per run) and ``duplicates-NNNN.parquet``
    (id, duplicate_of) in OUT_DIR. Only input parts no earlier run consumed are read.
    The index persists in STATE_DIR (default OUT_DIR/state)."""
    src, out = Path(src), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = Path(state_dir) if state_dir else out / "state"
    index = DedupIndex(cfg, state, out)
    index.discard_uncommitted(out)
    summary = RunSummary("dedup", unit="documents")
    for n in index.notes:
        summary.note(n)
    files = input_parts(src)
    if not files:
        raise FileNotFoundError(f"no Parquet documents in {src}")
    done = index.consumed()
    new_files, damaged = [], []
    for f in files:
        if done.get(f.name) == f.stat().st_size:
            continue
        try:
            check_part(f)
            new_files.append(f)
        except DamagedPart as exc:  # its documents wait for the next run, after the part is restored
            summary.note(str(exc))
            damaged.append({"file": str(f), "error": exc.reason})
    if damaged:
        summary.extra["damaged_parts"] = damaged
        if not new_files and not done:
            raise DamagedPart(damaged[0]["file"], damaged[0]["error"])
    summary.extra["parts_new"] = len(new_files)
    summary.extra["parts_done_before"] = len(files) - len(new_files) - len(damaged)
    # 1. signatures, part by part (in parallel when WORKERS > 1); already made ones are reused
    sig_files = [signature_file(out, f) for f in new_files]
    _signatures(new_files, sig_files, cfg, cfg.workers or os.cpu_count() or 1)
    batch = Batch.read(sig_files, cfg.num_perm)
    n = len(batch.ids)
    summary.n_in = n
    # 2. what is not new: a repeated id, an id kept or removed by an earlier run
    h = id_hash(batch.ids)
    _, first = np.unique(h, return_index=True)
    repeated = np.ones(n, bool)
    repeated[first] = False
    kept_before, removed_before = index.known(h)
    active = ~repeated & ~kept_before & ~removed_before
    for reason, mask in (("repeated_id", repeated), ("already_kept", kept_before & ~repeated),
                         ("already_removed", removed_before & ~kept_before & ~repeated)):
        if mask.any():
            summary.drop(reason, int(mask.sum()))
    # documents with no text, or longer than dedup.max_chars: counted, never kept or indexed
    for code, reason in SKIP_REASONS.items() if batch.skip is not None else ():
        mask = active & (batch.skip == code)
        if mask.any():
            summary.drop(reason, int(mask.sum()))
            active &= ~mask
    # 3. candidates, verification, clusters, the keep rule
    removed, keys = find_clusters(batch, active, cfg, index)
    if removed:
        summary.drop("near_duplicate", len(removed))
    keep = active.copy()
    if removed:
        keep &= ~np.isin(h, id_hash(list(removed)))
    keep_rows = np.flatnonzero(keep)
    # 4. commit: documents, duplicates, segment, then the ledger
    run = index.next_run
    doc_files = sorted(out.glob("documents-*.parquet"))
    written = 0
    if keep_rows.size or not doc_files:
        written = _write_kept(new_files, batch, keep, out / f"documents-{run:04d}.parquet")
    if removed:
        _write_parquet(pa.table({"id": pa.array(list(removed), pa.string()),
                                 "duplicate_of": pa.array(list(removed.values()), pa.string())}),
                       out / f"duplicates-{run:04d}.parquet")
    seg = index.write_segment(run, batch, keep_rows, keys, removed)
    index.commit({"run": run, "parts": {f.name: f.stat().st_size for f in new_files}, "kept": int(keep_rows.size),
                  "removed": len(removed), "segment": seg, "finished": time.time()})
    for f in sig_files:
        f.unlink(missing_ok=True)
    summary.n_out = written
    summary.extra["index_size"] = sum(r.get("kept", 0) for r in index.ledger["runs"])
    summary.extra["run"] = run
    summary.close(out)
    return summary


def _part_signatures(task: tuple) -> dict:
    part, out_file, cfg = task
    return part_signatures(part, out_file, cfg)


def _signatures(parts: list[Path], sig_files: list[Path], cfg: DedupConfig, workers: int) -> None:
    todo = [(p, s) for p, s in zip(parts, sig_files) if not s.is_file()]
    bar = progress(total=len(todo), desc="dedup signatures", unit="parts")
    if workers > 1 and len(todo) > 1:
        with TaskPool(_part_signatures, workers) as pool:
            for r in pool.imap([(p, s, cfg) for p, s in todo]):
                if isinstance(r, TaskFailed):  # a worker killed by the OOM killer, say: stop with the part's name
                    raise RuntimeError(f"dedup signatures of {r.task[0]}: the worker process died ({r.reason})")
                bar.update(1)
    else:
        for p, s in todo:
            interrupt.check("dedup")  # a stop of the build (Ctrl-C): signatures made so far are kept
            part_signatures(p, s, cfg)
            bar.update(1)
    bar.close()


def _write_kept(parts: list[Path], batch: Batch, keep: np.ndarray, path: Path) -> int:
    """Second streaming pass: the kept rows of each part, in input order, to PATH."""
    schemas = []
    for p in parts:
        schemas.append(pq.ParquetFile(p).schema_arrow)
    if not schemas:
        from pipeline.core.schema import DOC_SCHEMA

        schemas = [DOC_SCHEMA]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for k, p in enumerate(parts):  # row groups of ROW_GROUP rows: later stages read them a batch at a time
            rows = np.flatnonzero(batch.source == k)
            mask = keep[rows]
            at = 0
            for b in pq.ParquetFile(p, pre_buffer=False).iter_batches(batch_size=BATCH_ROWS):
                m = mask[at : at + b.num_rows]
                at += b.num_rows
                if not m.any():
                    continue
                t = pa.Table.from_batches([b]).filter(pa.array(m))
                w.write_table(conform(t, schema), row_group_size=ROW_GROUP)
                n += t.num_rows
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return n


def _write_parquet(table: pa.Table, path: Path) -> None:
    from pipeline.core.io import write_parquet_atomic

    write_parquet_atomic(table, path)


def read_duplicates(dedup_dir: str | Path) -> pa.Table:
    """Every (id, duplicate_of) pair the runs into DEDUP_DIR removed."""
    files = sorted(Path(dedup_dir).glob("duplicates-*.parquet"))
    if not files:
        return pa.table({"id": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})
    return pa.concat_tables([pq.read_table(f, columns=["id", "duplicate_of"]) for f in files])
