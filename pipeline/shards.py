"""The final corpus: Parquet shards of bounded size with a versioned manifest.

``manifest.json`` lists every shard (file, rows, bytes, sha256, the version that
added it) and, per version, the build's configuration and funnel. A run adds
only documents whose id no shard holds yet: nothing new changes nothing; new
documents become new shards under a new version, old shards are never
rewritten. Shards are written to a temporary name and renamed; the manifest
last, so a reader never sees a shard the manifest does not list as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .config import ShardConfig
from .summary import RunSummary, atomic_write_json

MANIFEST = "manifest.json"


def load_manifest(out_dir: str | Path) -> dict:
    p = Path(out_dir) / MANIFEST
    if p.is_file():
        return json.loads(p.read_text())
    return {"format": "webtext-shards/1", "versions": [], "shards": [], "total_rows": 0, "total_bytes": 0}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def existing_ids(out_dir: Path, manifest: dict) -> set[str]:
    ids: set[str] = set()
    for s in manifest["shards"]:
        ids.update(pq.read_table(out_dir / s["file"], columns=["id"]).column("id").to_pylist())
    return ids


def write_shards(
    table: pa.Table, out_dir: str | Path, cfg: ShardConfig, build_info: dict[str, Any] | None = None
) -> RunSummary:
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A killed run may leave temporary files or shards the manifest does not list.
    manifest = load_manifest(out)
    listed = {s["file"] for s in manifest["shards"]}
    for p in out.glob("*.parquet"):
        if p.name not in listed:
            p.unlink()
    for p in out.glob(".*.tmp-*"):
        p.unlink()
    summary = RunSummary("shard", unit="documents")
    summary.n_in = table.num_rows
    have = existing_ids(out, manifest)
    ids = table.column("id").to_pylist()
    mask, seen = [], set()
    for i in ids:
        mask.append(i not in have and i not in seen)
        if i in have:
            summary.drop("already_in_shards")
        elif i in seen:
            summary.drop("repeated_id")
        seen.add(i)
    new = table.filter(pa.array(mask, type=pa.bool_())).sort_by("id")
    summary.n_out = new.num_rows
    if new.num_rows == 0:
        summary.note("nothing new: manifest and shards unchanged")
        summary.finish().write(out)
        return summary
    version = (manifest["versions"][-1]["version"] + 1) if manifest["versions"] else 1
    # Rows per shard from the average serialised size (text dominates).
    text_bytes = sum(len(t.encode("utf-8")) for t in new.column("text").to_pylist() if t) + 200 * new.num_rows
    per_row = max(1, text_bytes // max(1, new.num_rows))
    rows_per_shard = max(1, cfg.max_shard_bytes // per_row)
    added = []
    for n, start in enumerate(range(0, new.num_rows, rows_per_shard)):
        part = new.slice(start, rows_per_shard)
        name = f"shard-v{version:04d}-{n:05d}.parquet"
        tmp = out / f".{name}.tmp-{os.getpid()}"
        pq.write_table(part, tmp, compression=cfg.compression, row_group_size=min(part.num_rows, 10_000))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        added.append({"file": name, "rows": part.num_rows, "bytes": (out / name).stat().st_size,
                      "sha256": sha256_file(out / name), "version": version})
    manifest["shards"].extend(added)
    manifest["versions"].append({"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "added_shards": [a["file"] for a in added], "added_rows": new.num_rows,
                                 **(build_info or {})})
    manifest["total_rows"] = sum(s["rows"] for s in manifest["shards"])
    manifest["total_bytes"] = sum(s["bytes"] for s in manifest["shards"])
    manifest["schema"] = [f"{f.name}: {f.type}" for f in new.schema]
    atomic_write_json(out / MANIFEST, manifest)
    summary.extra["version"] = version
    summary.extra["shards_added"] = len(added)
    summary.check()
    summary.finish().write(out)
    return summary


def verify_shards(out_dir: str | Path) -> list[str]:
    """Problems found comparing shards with the manifest (empty: all good)."""
    out = Path(out_dir)
    m = load_manifest(out)
    problems = []
    for s in m["shards"]:
        p = out / s["file"]
        if not p.is_file():
            problems.append(f"{s['file']}: missing")
            continue
        if sha256_file(p) != s["sha256"]:
            problems.append(f"{s['file']}: sha256 differs")
        try:
            rows = pq.ParquetFile(p).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            problems.append(f"{s['file']}: unreadable ({exc})")
            continue
        if rows != s["rows"]:
            problems.append(f"{s['file']}: row count differs")
    if m["shards"] and m["total_rows"] != sum(s["rows"] for s in m["shards"]):
        problems.append("total_rows differs from the shards' sum")
    return problems
