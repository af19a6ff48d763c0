"""The filter stage: extracted parts -> kept documents (and dropped ones aside, for audit), a part at a time."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from pipeline.core import interrupt
from pipeline.core.config import FilterConfig
from pipeline.core.errors import DamagedPart
from pipeline.core.io import read_part
from pipeline.core.schema import check_document_schema
from pipeline.core.summary import RunSummary, progress
from pipeline.filters.rules import apply_filters


def pending_filter_parts(src: str | Path, out_dir: str | Path) -> list[Path]:
    """The document parts of SRC that no filter run finished (the build maps
    ``filter_documents`` over them; a finished part is never read again)."""
    import orjson

    src, out = Path(src), Path(out_dir)
    done_log = out / "filter_done.jsonl"
    done = set()
    if done_log.is_file():
        done = {orjson.loads(line)["file"] for line in done_log.read_bytes().splitlines() if line.strip()}
    return [p for p in sorted(src.glob("*.parquet")) if not p.name.startswith(".") and p.name not in done]


def filter_documents(src: str | Path, out_dir: str | Path, cfg: FilterConfig, write_dropped: bool = False) -> RunSummary:
    """``webtext filter``: Parquet documents in ``src`` -> kept documents in ``out_dir``
    (one output part per input file, so a re-run skips finished files)."""
    src, out = Path(src), Path(out_dir)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or directory (give the directory `webtext extract` wrote)")
    files = [src] if src.is_file() else sorted(p for p in src.glob("*.parquet") if not p.name.startswith("."))
    out.mkdir(parents=True, exist_ok=True)
    summary = RunSummary("filter", unit="documents")
    done_log = out / "filter_done.jsonl"
    import orjson

    done = {}
    if done_log.is_file():
        for line in done_log.read_bytes().splitlines():
            if line.strip():
                d = orjson.loads(line)
                done[d["file"]] = d
    with progress(desc="filter", unit="docs") as bar:
        for f in files:
            interrupt.check("filter")  # a stop of the build (Ctrl-C): parts done so far are kept
            if f.name in done:
                prev = done[f.name]
                summary.n_in += prev["in"]
                summary.drop("already_filtered", prev["in"])
                continue
            try:
                table = read_part(f)
            except DamagedPart as exc:  # skipped, named, not marked done: a later run takes it once restored
                summary.note(str(exc))
                summary.extra.setdefault("damaged_parts", []).append({"file": str(f), "error": exc.reason})
                continue
            check_document_schema(table.schema, f)
            part = RunSummary("filter", unit="documents")
            kept, dropped = [], []
            for doc, reason in apply_filters(table.to_pylist(), cfg, part):
                (dropped if reason else kept).append({**doc, "drop_reason": reason} if reason else doc)
                bar.update(1)
            schema = table.schema
            for col, typ in (("language", pa.string()), ("language_confidence", pa.float64())):
                if col not in schema.names:
                    schema = schema.append(pa.field(col, typ))
            _write_parquet(pa.Table.from_pylist(kept, schema=schema), out / f.name)
            if write_dropped and dropped:
                _write_parquet(pa.Table.from_pylist(dropped, schema=schema.append(pa.field("drop_reason", pa.string()))),
                               out / "dropped" / f.name)
            with open(done_log, "ab") as fh:
                fh.write(orjson.dumps({"file": f.name, "in": part.n_in, "out": part.n_out, "dropped": dict(part.dropped)}) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            summary.n_in += part.n_in
            summary.n_out += part.n_out
            summary.dropped.update(part.dropped)
            summary.extra["mojibake_fixed"] = summary.extra.get("mojibake_fixed", 0) + part.extra.get("mojibake_fixed", 0)
    summary.drop("already_filtered", 0)
    if not summary.dropped["already_filtered"]:
        del summary.dropped["already_filtered"]
    summary.close(out)
    return summary


def _write_parquet(table: pa.Table, path: Path) -> None:
    from pipeline.core.io import write_parquet_atomic

    write_parquet_atomic(table, path)
