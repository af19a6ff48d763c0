"""The final corpus: Parquet shards of bounded size with a versioned manifest.

The shard directory is a dataset in the Hugging Face Hub's layout, so it loads
whole with any Parquet reader:

    data/shard-vNNNN-NNNNN.parquet   the documents (only Parquet here: pyarrow,
                                     polars and DuckDB read the folder or a glob)
    README.md                        the dataset card: a YAML header that
                                     ``datasets.load_dataset(DIR)`` reads (data
                                     files, features), then how it was built, the
                                     funnel of every version, the license note
    manifest.json                    every shard (file, rows, bytes, sha256, the
                                     version that added it) and, per version, the
                                     build's configuration, funnel and sources

Names sort by version, then by shard: a new month adds files and never touches
the earlier ones. A run adds only documents whose id no shard holds yet: nothing
new changes nothing. Shards are written to a temporary name and renamed; the
manifest after them, the card last, so a reader never sees a shard the manifest
does not list as complete. A directory of an older webtext (shards beside the
manifest) is moved into this layout by the next run (files renamed, not
rewritten: their sha256 stays).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core import interrupt
from pipeline.core.config import ShardConfig
from pipeline.core.schema import check_document_schema
from pipeline.core.io import atomic_write_json, conform
from pipeline.core.summary import RunSummary, progress
from pipeline.shards.card import write_card

MANIFEST = "manifest.json"
DATA = "data"  # the folder of the Parquet files
CARD = "README.md"


def load_manifest(out_dir: str | Path) -> dict:
    p = Path(out_dir) / MANIFEST
    if p.is_file():
        return json.loads(p.read_text())
    return {"format": "webtext-shards/1", "versions": [], "shards": [], "total_rows": 0, "total_bytes": 0}


def shard_files(src: str | Path) -> list[Path]:
    """The Parquet files of a shard directory (the manifest's, in order), or every
    Parquet file in SRC and SRC/data when there is no manifest; SRC itself if a file."""
    src = Path(src)
    if src.is_file():
        return [src]
    m = load_manifest(src)
    if m["shards"]:
        return [src / s["file"] for s in m["shards"]]
    return sorted(p for folder in (src, src / DATA) for p in folder.glob("*.parquet") if not p.name.startswith("."))


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


def _prepare(out: Path, cfg: ShardConfig) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA).mkdir(exist_ok=True)
    manifest = load_manifest(out)
    # An older webtext's shards sit beside the manifest: move them into data/.
    moved = False
    for s in manifest["shards"]:
        if "/" not in s["file"]:
            old, new = out / s["file"], out / DATA / s["file"]
            if old.is_file():
                os.replace(old, new)
            s["file"] = f"{DATA}/{s['file']}"
            moved = True
    for v in manifest["versions"]:
        v["added_shards"] = [f if "/" in f else f"{DATA}/{f}" for f in v.get("added_shards", [])]
    if moved:
        atomic_write_json(out / MANIFEST, manifest)
        write_card(out, manifest)
    # A killed run may leave temporary files or shards the manifest does not list.
    listed = {s["file"] for s in manifest["shards"]}
    for folder in (out, out / DATA):
        for p in folder.glob("*.parquet"):
            if p.relative_to(out).as_posix() not in listed:
                p.unlink()
        for p in folder.glob(".*.tmp-*"):
            p.unlink()
    return manifest


class _VersionWriter:
    """Rows in, shards of about ``max_shard_bytes`` out (text bytes + 200 a row as the
    estimate), each written to a temporary name, fsynced and renamed."""

    # Row groups of 1,000 documents (~5 MB of text; as dedup writes its parts): a reader
    # streams a shard a few MB at a time, and writing holds one group, not 50 MB of text
    # (bench_scale: peak RSS growth 1.0-1.7 KB a document with 10,000, ~0.3 KB with 1,000).
    ROW_GROUP = 1_000

    def __init__(self, out: Path, version: int, cfg: ShardConfig, schema: pa.Schema):
        self.out, self.version, self.cfg, self.schema = out, version, cfg, schema
        self.added: list[dict] = []
        self.rows = 0
        self._w = None
        self._buf: list[pa.Table] = []
        self._buf_rows = 0
        self._est = 0

    def write(self, t: pa.Table) -> None:
        if t.num_rows == 0:
            return
        t = conform(t, self.schema)
        sizes = pc_text_bytes(t)
        start = 0
        for i, b in enumerate(sizes):  # cut where the running estimate reaches the limit
            self._est += b
            if self._est >= self.cfg.max_shard_bytes:
                self._add(t.slice(start, i + 1 - start))
                self._roll()
                start = i + 1
        if start < t.num_rows:
            self._add(t.slice(start))

    def _add(self, t: pa.Table) -> None:
        self._buf.append(t)
        self._buf_rows += t.num_rows
        self.rows += t.num_rows
        if self._buf_rows >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._buf_rows:
            return
        if self._w is None:
            self._name = f"shard-v{self.version:04d}-{len(self.added):05d}.parquet"
            self._tmp = self.out / DATA / f".{self._name}.tmp-{os.getpid()}"
            self._w = pq.ParquetWriter(self._tmp, self.schema, compression=self.cfg.compression)
        self._w.write_table(pa.concat_tables(self._buf), row_group_size=self.ROW_GROUP)
        self._buf, self._buf_rows = [], 0

    def _roll(self) -> None:
        self._flush()
        if self._w is None:
            return
        self._w.close()
        self._w = None
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        path = self.out / DATA / self._name
        os.replace(self._tmp, path)
        self.added.append({"file": f"{DATA}/{self._name}", "rows": pq.ParquetFile(path).metadata.num_rows,
                           "bytes": path.stat().st_size, "sha256": sha256_file(path), "version": self.version})
        self._est = 0

    def close(self) -> list[dict]:
        self._roll()
        return self.added


def pc_text_bytes(t: pa.Table) -> list[int]:
    if "text" not in t.column_names:
        return [200] * t.num_rows
    n = pc.binary_length(t.column("text").cast(pa.string())).fill_null(0)
    return [x + 200 for x in n.to_pylist()]


def _publish_version(out: Path, manifest: dict, version: int, added: list[dict], n_rows: int, schema: pa.Schema,
                     build_info: dict | None, extra: dict | None = None) -> None:
    manifest["shards"].extend(added)
    manifest["versions"].append({"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "added_shards": [a["file"] for a in added], "added_rows": n_rows,
                                 **(extra or {}), **(build_info or {})})
    manifest["total_rows"] = sum(s["rows"] for s in manifest["shards"])
    manifest["total_bytes"] = sum(s["bytes"] for s in manifest["shards"])
    manifest["schema"] = [f"{f.name}: {f.type}" for f in schema]
    atomic_write_json(out / MANIFEST, manifest)
    write_card(out, manifest, schema)


def _with_text(t: pa.Table, mask: list[bool], summary: RunSummary) -> list[bool]:
    """MASK with the documents whose text is missing, null or only white space taken
    out (counted as ``empty_text``): a corpus row always has text."""
    if "text" not in t.column_names:
        raise ValueError("documents need a text column (shards publish text)")
    text = t.column("text")
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        raise ValueError(f"documents' text column is {text.type}, not a string")
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True).to_pylist()
    out = []
    for m, e in zip(mask, empty):
        if m and e:
            summary.drop("empty_text")
        out.append(m and not e)
    return out


def write_shards(
    table: pa.Table, out_dir: str | Path, cfg: ShardConfig, build_info: dict[str, Any] | None = None
) -> RunSummary:
    """Any table of documents -> a new version of the documents no shard holds yet
    (sorted by id). Reads every shard's ids: for ad-hoc use; a build uses
    ``shard_documents``, which reads only the deduplicated parts it has not seen."""
    out = Path(out_dir)
    manifest = _prepare(out, cfg)
    check_document_schema(table.schema, "the documents given")
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
    mask = _with_text(table, mask, summary)
    new = table.filter(pa.array(mask, type=pa.bool_())).sort_by("id")
    summary.n_out = new.num_rows
    if new.num_rows == 0:
        summary.note("nothing new: manifest and shards unchanged")
        summary.finish().write(out)
        return summary
    version = (manifest["versions"][-1]["version"] + 1) if manifest["versions"] else 1
    w = _VersionWriter(out, version, cfg, new.schema)
    w.write(new)
    added = w.close()
    _publish_version(out, manifest, version, added, new.num_rows, new.schema, build_info)
    summary.extra["version"] = version
    summary.extra["shards_added"] = len(added)
    summary.close(out)
    return summary


def committed_parts(dedup_dir: Path, pattern: str = "documents-*.parquet") -> list[Path]:
    """The document parts of DEDUP_DIR that finished runs wrote (a part of a run killed
    before its ledger entry is not taken; the next dedup run rewrites it)."""
    files = sorted(p for p in dedup_dir.glob(pattern) if not p.name.startswith("."))
    ledger = dedup_dir / "state" / "ledger.json"
    if not ledger.is_file():
        return files
    import re

    runs = {r["run"] for r in json.loads(ledger.read_text())["runs"]}
    return [p for p in files if (m := re.search(r"-(\d+)\.parquet$", p.name)) is None or int(m.group(1)) in runs]


def shard_documents(src: str | Path, out_dir: str | Path, cfg: ShardConfig, build_info: dict[str, Any] | None = None,
                    pattern: str = "documents-*.parquet") -> RunSummary:
    """The build's shard stage: the document parts in SRC that no version consumed
    (``sources`` in each version entry) -> a new version, streamed in record batches
    (memory: a batch and a row group). Nothing new: nothing changes."""
    from pipeline.core.errors import DamagedPart

    src, out = Path(src), Path(out_dir)
    manifest = _prepare(out, cfg)
    summary = RunSummary("shard", unit="documents")
    files = committed_parts(src, pattern) if src.is_dir() else [src]
    consumed: dict[str, int] = {}
    legacy = bool(manifest["shards"]) and not any("sources" in v for v in manifest["versions"])
    for v in manifest["versions"]:
        consumed.update(v.get("sources") or {})
    new_files = [f for f in files if consumed.get(f.name) != f.stat().st_size]
    schemas = []
    for f in new_files:
        try:
            schemas.append(pq.ParquetFile(f).schema_arrow)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
            raise DamagedPart(f, str(exc).splitlines()[0][:300]) from exc
        check_document_schema(schemas[-1], f)
    summary.extra["parts_new"] = len(new_files)
    if not new_files:
        summary.note("nothing new: manifest and shards unchanged")
        summary.finish().write(out)
        return summary
    have = existing_ids(out, manifest) if legacy else set()  # once, for a manifest of an older webtext
    if legacy:
        summary.note("manifest of an earlier webtext: ids of every shard read once; later runs read only new parts")
    version = (manifest["versions"][-1]["version"] + 1) if manifest["versions"] else 1
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    w = _VersionWriter(out, version, cfg, schema)
    seen: set[int] = set()
    import xxhash

    for f in progress(new_files, desc="shards", unit="parts"):
        for b in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=1000):
            interrupt.check("shard")  # a stop of the build (Ctrl-C): no version is published
            ids = b.column("id").to_pylist()
            mask = []
            for i in ids:
                h = xxhash.xxh64_intdigest(i.encode("utf-8"))
                if i in have:
                    summary.drop("already_in_shards")
                    mask.append(False)
                elif h in seen:
                    summary.drop("repeated_id")
                    mask.append(False)
                else:
                    mask.append(True)
                seen.add(h)
            summary.n_in += len(ids)
            t = pa.Table.from_batches([b])
            mask = _with_text(t, mask, summary)
            w.write(t if all(mask) else t.filter(pa.array(mask)))
    added = w.close()
    summary.n_out = w.rows
    sources = {f.name: f.stat().st_size for f in new_files}
    if legacy:
        sources = {f.name: f.stat().st_size for f in files}
    if w.rows == 0:
        # nothing to publish; remember the parts so they are not read again
        if manifest["versions"]:
            manifest["versions"][-1].setdefault("sources", {}).update(sources)
            atomic_write_json(out / MANIFEST, manifest)
        summary.note("nothing new: no shard added")
        summary.close(out)
        return summary
    _publish_version(out, manifest, version, added, w.rows, schema, build_info, {"sources": sources})
    summary.extra["version"] = version
    summary.extra["shards_added"] = len(added)
    summary.close(out)
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
