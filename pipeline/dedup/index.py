"""The dedup index: one memory-mapped Arrow segment per run (signatures, band keys, removed ids)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.config import DedupConfig
from pipeline.core.errors import UnsafeInput
from pipeline.core.io import atomic_write_json
from pipeline.dedup.signatures import (
    BUCKET_LINKS,
    ArrowIds,
    Batch,
    MinHasher,
    band_keys,
    id_hash,
    iter_batches,
)

SEGMENT_BATCH = 65536  # rows per record batch of a segment's docs file
LEDGER = "ledger.json"
FORMAT = "webtext-dedup/2"

# --- the index: one memory-mapped segment per run -------------------------------------------


def _map(path: Path) -> pa.Table:
    from pipeline.core.io import map_arrow

    return map_arrow(path)


def _write_arrow(table: pa.Table, path: Path) -> None:
    from pipeline.core.io import write_arrow_atomic

    write_arrow_atomic(path, table.schema, [table])


def _write_arrow_batches(schema: pa.Schema, path: Path, batches) -> None:
    from pipeline.core.io import write_arrow_atomic

    write_arrow_atomic(path, schema, batches)


@dataclass
class Segment:
    run: int
    docs: pa.Table | None  # id_hash (sorted), id, size, sig; memory-mapped, in record batches
    keys: np.ndarray | None  # sorted band keys
    key_rows: np.ndarray | None
    removed: pa.Table | None  # id_hash (sorted), id, duplicate_of
    _hash: np.ndarray | None = field(default=None, repr=False)
    _views: list | None = field(default=None, repr=False)

    @property
    def id_hash(self) -> np.ndarray:
        if self._hash is None:
            self._hash = self.docs.column("id_hash").to_numpy() if self.docs is not None else np.zeros(0, np.uint64)
        return self._hash

    def sigs(self, rows: np.ndarray, num_perm: int) -> np.ndarray:
        """The signatures of ROWS, read from the mapped batches (only their pages)."""
        if self._views is None:
            self._views, start = [], 0
            for chunk in self.docs.column("sig").chunks:
                self._views.append((start, chunk.flatten().to_numpy().reshape(len(chunk), num_perm)))
                start += len(chunk)
        out = np.empty((rows.size, num_perm), np.uint32)
        starts = np.array([s for s, _ in self._views])
        which = np.searchsorted(starts, rows, "right") - 1
        for c in np.unique(which):
            m = which == c
            s0, view = self._views[c]
            out[m] = view[rows[m] - s0]
        return out


def _member(sorted_hashes: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of Q found in SORTED_HASHES, their positions)."""
    if sorted_hashes.size == 0 or q.size == 0:
        return np.zeros(q.size, bool), np.zeros(q.size, np.int64)
    pos = np.searchsorted(sorted_hashes, q)
    pos_c = np.minimum(pos, sorted_hashes.size - 1)
    return sorted_hashes[pos_c] == q, pos_c


class DedupIndex:
    """The persisted index: segments under ``state/segments`` and ``state/ledger.json``."""

    def __init__(self, cfg: DedupConfig, state_dir: str | Path, out_dir: Path | None = None):
        self.cfg = cfg
        self.state = Path(state_dir)
        self.seg_dir = self.state / "segments"
        self.out = out_dir
        self.notes: list[str] = []
        self.lsh = None
        if cfg.redis_url:
            from urllib.parse import urlsplit

            from datasketch import MinHashLSH

            u = urlsplit(cfg.redis_url)
            storage = {"type": "redis", "basename": b"webtext_dedup", "redis": {"host": u.hostname, "port": u.port or 6379}}
            self.lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows), storage_config=storage)
        ledger = self.state / LEDGER
        if ledger.is_file():
            self.ledger = json.loads(ledger.read_text())
            if self.ledger.get("params") != self.params():
                raise ValueError(f"{ledger}: index built with {self.ledger.get('params')}, configuration now "
                                 f"{self.params()}; use a new state directory or the same dedup settings")
        else:
            self.ledger = {"format": FORMAT, "params": self.params(), "runs": []}
            self._migrate()
        self.segments = [self._open(r["run"]) for r in self.ledger["runs"] if r.get("segment")]

    def params(self) -> dict:
        c = self.cfg
        return {"num_perm": c.num_perm, "bands": c.bands, "rows": c.rows, "shingle_words": c.shingle_words, "seed": c.seed}

    @property
    def next_run(self) -> int:
        return self.ledger["runs"][-1]["run"] + 1 if self.ledger["runs"] else 0

    def consumed(self) -> dict[str, int]:
        done: dict[str, int] = {}
        for r in self.ledger["runs"]:
            done.update(r.get("parts") or {})
        return done

    def _paths(self, run: int) -> dict[str, Path]:
        return {k: self.seg_dir / f"seg-{run:04d}.{k}.arrow" for k in ("docs", "keys", "removed")}

    def _open(self, run: int) -> Segment:
        p = self._paths(run)
        docs = _map(p["docs"]) if p["docs"].is_file() else None
        keys = _map(p["keys"]) if p["keys"].is_file() else None
        removed = _map(p["removed"]) if p["removed"].is_file() else None
        return Segment(run, docs, keys.column("key").to_numpy() if keys is not None else None,
                       keys.column("row").to_numpy() if keys is not None else None, removed)

    # Membership ------------------------------------------------------------------------
    def known(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(already kept, already removed) masks for id hashes."""
        kept = np.zeros(hashes.size, bool)
        removed = np.zeros(hashes.size, bool)
        for s in self.segments:
            if s.docs is not None:
                kept |= _member(s.id_hash, hashes)[0]
            if s.removed is not None:
                removed |= _member(s.removed.column("id_hash").to_numpy(), hashes)[0]
        return kept, removed

    # Candidates against the index --------------------------------------------------------
    def candidates(self, keys: np.ndarray, batch: Batch) -> Iterator[tuple[np.ndarray, Segment, np.ndarray]]:
        """(new rows, segment, segment rows) candidate pairs sharing a band key."""
        if self.lsh is not None:
            yield from self._redis_candidates(batch)
            return
        if not any(s.keys is not None and s.keys.size for s in self.segments):
            return
        flat = keys.reshape(-1)
        order = np.argsort(flat, kind="stable")
        q = flat[order]
        qrow = (order // keys.shape[1]).astype(np.int32)  # the new row each key belongs to
        del order
        for s in self.segments:
            if s.keys is None or s.keys.size == 0:
                continue
            lo = np.searchsorted(s.keys, q, "left")
            hi = np.searchsorted(s.keys, q, "right")
            hit = hi > lo
            if not hit.any():
                continue
            lo, hi, rows = lo[hit], np.minimum(hi[hit], lo[hit] + BUCKET_LINKS), qrow[hit]
            counts = hi - lo
            a = np.repeat(rows, counts)
            starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
            b = s.key_rows[starts + np.arange(counts.sum())]
            yield a, s, b

    def _redis_candidates(self, batch: Batch):
        from datasketch import LeanMinHash

        by_seg: dict[int, tuple[list[int], list[int]]] = {}
        for i in range(len(batch.ids)):
            m = LeanMinHash(seed=self.cfg.seed, hashvalues=batch.sig[i].astype(np.uint64), scheme="legacy")
            cands = list(self.lsh.query(m))
            if not cands:
                continue
            h = id_hash(cands)
            for k, s in enumerate(self.segments):
                if s.docs is None:
                    continue
                found, pos = _member(s.id_hash, h)
                a, b = by_seg.setdefault(k, ([], []))
                a.extend([i] * int(found.sum()))
                b.extend(pos[found].tolist())
        for k, (a, b) in by_seg.items():
            yield np.array(a, np.int64), self.segments[k], np.array(b, np.int64)

    # Commit ------------------------------------------------------------------------------
    def write_segment(self, run: int, batch: Batch, keep_rows: np.ndarray, keys: np.ndarray,
                      removed: dict[str, str]) -> bool:
        self.seg_dir.mkdir(parents=True, exist_ok=True)
        p = self._paths(run)
        n = self.cfg.num_perm
        wrote = False
        if keep_rows.size:
            kept_ids = _take_ids(batch.ids, keep_rows)
            h = id_hash(ArrowIds(kept_ids))  # a chunk of Python strings at a time
            order = np.argsort(h, kind="stable")
            rows = keep_rows[order]
            h = h[order]
            schema = pa.schema([("id_hash", pa.uint64()), ("id", pa.string()), ("size", pa.int64()),
                                ("sig", pa.list_(pa.uint32(), n))])
            step = SEGMENT_BATCH  # written in slices: no second copy of every signature
            _write_arrow_batches(schema, p["docs"], (pa.record_batch([
                pa.array(h[c : c + step]), kept_ids.take(pa.array(order[c : c + step])),
                pa.array(batch.size[rows[c : c + step]]),
                pa.FixedSizeListArray.from_arrays(pa.array(batch.sig[rows[c : c + step]].reshape(-1), pa.uint32()), n)],
                schema=schema) for c in range(0, rows.size, step)))
            flat = keys[rows].reshape(-1)  # (m * bands) in the segment's row order
            o = np.argsort(flat, kind="stable")
            flat = flat[o]
            seg_row = (o // keys.shape[1]).astype(np.uint32)
            del o
            _write_arrow(pa.table({"key": pa.array(flat), "row": pa.array(seg_row)}), p["keys"])
            wrote = True
            if self.lsh is not None:
                from datasketch import LeanMinHash

                for i in rows:
                    self.lsh.insert(batch.ids[i], LeanMinHash(seed=self.cfg.seed, hashvalues=batch.sig[i].astype(np.uint64),
                                                              scheme="legacy"), check_duplication=False)
        if removed:
            rid = list(removed)
            h = id_hash(rid)
            o = np.argsort(h, kind="stable")
            _write_arrow(pa.table({"id_hash": pa.array(h[o]), "id": pa.array([rid[i] for i in o], pa.string()),
                                   "duplicate_of": pa.array([removed[rid[i]] for i in o], pa.string())}), p["removed"])
            wrote = True
        return wrote

    def commit(self, entry: dict) -> None:
        self.ledger["runs"].append(entry)
        atomic_write_json(self.state / LEDGER, self.ledger)

    def discard_uncommitted(self, out: Path) -> None:
        """Files a killed run left (its run number is not in the ledger)."""
        nxt = self.next_run
        for pattern, dir_ in (("seg-*.arrow", self.seg_dir), ("documents-*.parquet", out), ("duplicates-*.parquet", out)):
            for p in dir_.glob(pattern) if dir_.is_dir() else ():
                m = re.search(r"-(\d+)\.", p.name)
                if m and int(m.group(1)) >= nxt:
                    p.unlink()
        for d in (self.seg_dir, out, out / "signatures"):
            for p in d.glob(".*.tmp-*") if d.is_dir() else ():
                p.unlink()

    # Indexes of older webtexts ------------------------------------------------------------
    def _migrate(self) -> None:
        """A state directory of an earlier webtext becomes run 0 of this one: a Parquet
        index (id, size, sig) is converted; a pickle is never unpickled, the kept
        documents beside it are re-indexed instead (signatures are a pure function of
        the text). Removed ids come from the old single duplicates.parquet."""
        v1 = self.state / "dedup_index.parquet"
        pkl = self.state / "dedup_index.pkl"
        if not v1.is_file() and not pkl.is_file():
            return
        out = self.out if self.out is not None else self.state.parent
        kept_files = sorted(out.glob("documents*.parquet"))
        if v1.is_file():
            try:
                t = pq.read_table(v1)
                saved = json.loads((t.schema.metadata or {}).get(b"webtext_params", b"null"))
            except (pa.ArrowInvalid, OSError, ValueError) as exc:
                raise ValueError(f"{v1}: unreadable dedup index ({exc}); restore it or start a new state directory") from exc
            if saved != self.params():
                raise ValueError(f"{v1}: index built with {saved}, configuration now {self.params()}; "
                                 "use a new state directory or the same dedup settings")
            ids = t.column("id").to_pylist()
            sig = t.column("sig").combine_chunks().flatten().to_numpy().reshape(len(ids), self.cfg.num_perm).astype(np.uint32)
            size = t.column("size").to_numpy()
            how = f"converted the index of an earlier webtext ({len(ids):,} documents)"
        else:
            if not kept_files:
                raise UnsafeInput(f"{pkl}: an index from an older webtext, a pickle, which is not loaded (unpickling can "
                                  "run code), and no kept documents beside it to rebuild the index from. Move it away, "
                                  "or run dedup with --out set to the directory holding the kept documents-*.parquet.")
            hasher = MinHasher(self.cfg.num_perm, self.cfg.shingle_words, self.cfg.seed)
            ids, sigs, sizes = [], [], []
            for f in kept_files:
                for b in iter_batches(f, ["id", "text"]):
                    for i, text in zip(b.column("id").to_pylist(), b.column("text").to_pylist()):
                        s, z = hasher.signature(text or "")
                        ids.append(i)
                        sigs.append(s)
                        sizes.append(z)
            sig = np.array(sigs, np.uint32).reshape(len(ids), self.cfg.num_perm)
            size = np.array(sizes, np.int64)
            how = (f"index rebuilt from the {len(ids):,} kept documents; the old pickle index is not read")
        z = np.zeros(len(ids), np.int64)
        batch = Batch(ids, sig, size, z, z, z, z.astype(np.int32))
        removed = {}
        old_dups = out / "duplicates.parquet"
        if old_dups.is_file():
            for r in pq.read_table(old_dups, columns=["id", "duplicate_of"]).to_pylist():
                removed[r["id"]] = r["duplicate_of"]
        nums = [int(m.group(1)) for p in kept_files if (m := re.search(r"-(\d+)\.parquet$", p.name))]
        run = max(nums, default=0)
        self.write_segment(run, batch, np.arange(len(ids)), band_keys(sig, self.cfg.bands, self.cfg.rows), removed)
        self.commit({"run": run, "parts": {}, "kept": len(ids), "removed": len(removed), "segment": True,
                     "migrated": how, "finished": time.time()})
        if old_dups.is_file():  # its rows now live in the segment; later runs write duplicates-NNNN.parquet
            os.replace(old_dups, out / f"duplicates-{run:04d}.parquet")
        v1.unlink(missing_ok=True)
        pkl.unlink(missing_ok=True)
        self.notes.append(how)


def _take_ids(ids, rows: np.ndarray) -> pa.Array:
    """The ids at ROWS as an Arrow string array (``ArrowIds`` or a list of str)."""
    arr = getattr(ids, "arr", None)
    if arr is not None:
        return arr.take(pa.array(rows))
    return pa.array([ids[i] for i in rows], pa.string())
