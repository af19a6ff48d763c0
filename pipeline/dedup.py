"""Near-duplicate removal at corpus scale: MinHash signatures per part, candidate
pairs from sorted band keys, verification, union-find, and a persisted index of
memory-mapped Arrow segments, one per run.

The stages of a run, each bounded by what is new:

1. **Signatures, per input part** (``part_signatures``, a pure function a flow can
   map over parts on Dask): the part is read in record batches; per document the
   word 5-gram shingles are hashed (xxhash per distinct word, combined in numpy) and
   all permutations applied at once (multiply-shift on 64-bit shingle hashes). The
   text never stays in memory beyond its batch; the result is a small Parquet file
   (id, shingle count, 32-bit min-hashes, created_utc, score, length).
2. **Candidates**: each signature gives ``bands`` band keys (a 64-bit hash of the
   band's rows and the band number). New documents sharing a key are candidates
   (an argsort of the keys, then equal runs; a huge bucket links each member to its
   ``BUCKET_LINKS`` predecessors, enough to join a cluster without m^2 pairs); new
   documents are matched against the index by binary search in each segment's
   sorted keys, which are memory-mapped: only the pages the new keys hit are read.
3. **Verification**: a candidate pair is a duplicate when the signatures'
   estimated Jaccard or estimated containment (from the Jaccard and the two
   shingle-set sizes) passes its threshold, so precision stays high while bands of
   few rows find truncated and boilerplate-wrapped copies.
4. **Keep rule**, per cluster: a document kept by an earlier run stays kept;
   otherwise (``keep="earliest"``, the default) the one first submitted to Reddit,
   or (``keep="score"``) the highest Reddit score; then the higher score, the
   longest text, the smallest id.
5. **Commit**: the kept documents (a second streaming pass over the new parts),
   ``duplicates-NNNN.parquet``, the run's segment, and last the ledger
   (``state/ledger.json``: the parts each run consumed), written atomically. A run
   killed before the ledger leaves files with its run number, deleted by the next
   run, which redoes it. Parts the ledger lists are not read again.

The index (``state/segments/seg-NNNN.{docs,keys,removed}.arrow``) is plain Arrow
IPC data: reading it runs nothing. ``docs``: the kept documents of the run sorted by
a 64-bit hash of their id (id, shingle count, signature); ``keys``: their band keys,
sorted, with the row they belong to; ``removed``: the ids the run removed, sorted by
hash. Id membership (already kept, already removed) is a binary search too. A 64-bit
id hash collides with probability ~n^2/2^65 (3e-6 at 8M documents).

``redis_url`` puts the band buckets in Redis through datasketch's ``MinHashLSH``
storage instead of the segments' key files (the signatures stay in the segments).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .config import DedupConfig, UnsafeInput
from .io import DamagedPart, conform
from .summary import RunSummary, atomic_write_json, progress

_WORD = re.compile(r"\w+")
BATCH_ROWS = 512  # documents per record batch read (with row groups of ROW_GROUP, memory per batch is bounded)
ROW_GROUP = 1000
SEGMENT_BATCH = 65536  # rows per record batch of a segment's docs file
BUCKET_LINKS = 32  # in a bucket of more members, each is verified against its 32 predecessors
LEDGER = "ledger.json"
FORMAT = "webtext-dedup/2"
BIG = 2**62


def words_of(text: str) -> list[str]:
    """Normalised words: case, punctuation and whitespace removed."""
    return _WORD.findall(text.lower())


class MinHasher:
    def __init__(self, num_perm: int = 112, shingle_words: int = 5, seed: int = 1):
        self.num_perm = num_perm
        self.k = shingle_words
        self.seed = seed
        rng = np.random.Generator(np.random.PCG64(seed))
        self.a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self.mix = rng.integers(1, 2**63, size=shingle_words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.cache: dict[str, int] = {}

    def _word_hashes(self, words: list[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > 2_000_000:
            cache.clear()
        out = np.empty(len(words), dtype=np.uint64)
        seed = self.seed
        for i, w in enumerate(words):
            h = cache.get(w)
            if h is None:
                h = cache[w] = xxhash.xxh64_intdigest(w.encode("utf-8"), seed)
            out[i] = h
        return out

    def shingle_hashes(self, text: str) -> np.ndarray:
        words = words_of(text)
        if not words:
            return np.zeros(1, dtype=np.uint64)
        w = self._word_hashes(words)
        k = min(self.k, len(w))
        n = len(w) - k + 1
        with np.errstate(over="ignore"):
            s = np.zeros(n, dtype=np.uint64)
            for j in range(k):
                s = (s ^ (w[j : j + n] * self.mix[j])) * np.uint64(0x9E3779B97F4A7C15)
        return np.unique(s)

    def signature(self, text: str) -> tuple[np.ndarray, int]:
        """(uint32 array of num_perm min-hashes, number of distinct shingles)."""
        s = self.shingle_hashes(text)
        with np.errstate(over="ignore"):
            h = (np.multiply.outer(self.a, s) + self.b[:, None]) >> np.uint64(32)
        return h.min(axis=1).astype(np.uint32), int(s.size)


def estimated_similarity(sig_a: np.ndarray, size_a: int, sig_b: np.ndarray, size_b: int) -> tuple[float, float]:
    """(estimated Jaccard, estimated containment of the smaller set in the larger)."""
    j = float(np.mean(sig_a == sig_b))
    inter = j * (size_a + size_b) / (1.0 + j)
    return j, min(1.0, inter / max(1, min(size_a, size_b)))


def similar(sig_a: np.ndarray, size_a: np.ndarray, sig_b: np.ndarray, size_b: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Vectorised verification of candidate pairs (rows of SIG_A against rows of SIG_B)."""
    j = (sig_a == sig_b).mean(axis=1)
    inter = j * (size_a + size_b) / (1.0 + j)
    c = np.minimum(1.0, inter / np.maximum(1, np.minimum(size_a, size_b)))
    return (j >= cfg.jaccard_threshold) | (c >= cfg.containment_threshold)


def id_hash(ids: Iterable[str]) -> np.ndarray:
    return np.fromiter((xxhash.xxh64_intdigest(i.encode("utf-8"), 7) for i in ids), dtype=np.uint64)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a hash of each band's rows, salted with the band number, so
    one sorted array holds every band's buckets."""
    n = sigs.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    s = sigs.astype(np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64(0x243F6A8885A308D3) * np.uint64(b + 1), dtype=np.uint64)
            for r in range(rows):
                h = (h ^ s[:, b * rows + r]) * np.uint64(0x9E3779B97F4A7C15)
                h ^= h >> np.uint64(29)
            out[:, b] = h
    return out


class UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        p = self.parent.setdefault(x, x)
        while p != self.parent.get(p, p):
            self.parent[p] = self.parent.get(self.parent[p], self.parent[p])
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


# --- signatures of one part ----------------------------------------------------------------

SIG_COLUMNS = ("id", "size", "created", "score", "length", "sig")


def _sig_schema(num_perm: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("size", pa.int64()), ("created", pa.int64()), ("score", pa.int64()),
                      ("length", pa.int64()), ("sig", pa.list_(pa.uint32(), num_perm))])


def iter_batches(path: Path, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    try:
        pf = pq.ParquetFile(path)
        have = set(pf.schema_arrow.names)
        for b in pf.iter_batches(batch_size=batch_rows, columns=[c for c in columns if c in have]):
            yield b
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DamagedPart(path, str(exc).splitlines()[0][:300]) from exc


def check_part(path: Path) -> None:
    """Refuse a part without the columns dedup needs; a damaged part is DamagedPart."""
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DamagedPart(path, str(exc).splitlines()[0][:300]) from exc
    if "id" not in names or "text" not in names:
        raise ValueError(f"{path}: documents need columns id and text (has {names})")


def part_signatures(part: str | Path, out_file: str | Path, cfg: DedupConfig) -> dict:
    """One partition's signatures: PART (Parquet documents) -> OUT_FILE (Parquet,
    ``SIG_COLUMNS``). Streams the part in record batches; pure (same input, same
    file), so a flow may run it anywhere and a finished file is not redone."""
    part, out_file = Path(part), Path(out_file)
    if out_file.is_file():
        return {"part": str(part), "docs": pq.ParquetFile(out_file).metadata.num_rows, "reused": True}
    check_part(part)
    hasher = MinHasher(cfg.num_perm, cfg.shingle_words, cfg.seed)
    schema = _sig_schema(cfg.num_perm)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp-{os.getpid()}")
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for batch in iter_batches(part, ["id", "text", "score", "created_utc"]):
            cols = batch.schema.names
            ids = batch.column("id").to_pylist()
            texts = batch.column("text").to_pylist()
            scores = batch.column("score").to_pylist() if "score" in cols else [0] * len(ids)
            created = batch.column("created_utc").to_pylist() if "created_utc" in cols else [None] * len(ids)
            sigs = np.empty((len(ids), cfg.num_perm), dtype=np.uint32)
            sizes = np.empty(len(ids), dtype=np.int64)
            for i, t in enumerate(texts):
                sigs[i], sizes[i] = hasher.signature(t or "")
            w.write_batch(pa.record_batch([
                pa.array(ids, pa.string()), pa.array(sizes), pa.array([BIG if c is None else int(c) for c in created], pa.int64()),
                pa.array([int(s or 0) for s in scores], pa.int64()), pa.array([len(t or "") for t in texts], pa.int64()),
                pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), pa.uint32()), cfg.num_perm)], schema=schema))
            n += len(ids)
    os.replace(tmp, out_file)
    return {"part": str(part), "docs": n, "reused": False}


@dataclass
class Batch:
    """Signatures and keep-rule fields of the documents a run considers."""

    ids: list[str]
    sig: np.ndarray  # (n, num_perm) uint32
    size: np.ndarray
    created: np.ndarray
    score: np.ndarray
    length: np.ndarray
    source: np.ndarray  # index of the input part each came from

    @classmethod
    def read(cls, files: list[Path], num_perm: int) -> "Batch":
        """The signature files, into arrays allocated once (no concatenation copies)."""
        n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        sig = np.empty((n, num_perm), np.uint32)
        cols = {c: np.empty(n, np.int64) for c in ("size", "created", "score", "length")}
        source = np.empty(n, np.int32)
        ids: list[str] = []
        at = 0
        for k, f in enumerate(files):
            for b in pq.ParquetFile(f).iter_batches(batch_size=8192):
                m = b.num_rows
                ids.extend(b.column("id").to_pylist())
                sig[at : at + m] = b.column("sig").flatten().to_numpy().reshape(m, num_perm)
                for c, arr in cols.items():
                    arr[at : at + m] = b.column(c).to_numpy()
                source[at : at + m] = k
                at += m
        return cls(ids, sig, cols["size"], cols["created"], cols["score"], cols["length"], source)


# --- the index: one memory-mapped segment per run -------------------------------------------


def _map(path: Path) -> pa.Table:
    from .io import map_arrow

    return map_arrow(path)


def _write_arrow(table: pa.Table, path: Path) -> None:
    from .io import write_arrow_atomic

    write_arrow_atomic(path, table.schema, [table])


def _write_arrow_batches(schema: pa.Schema, path: Path, batches) -> None:
    from .io import write_arrow_atomic

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
        cfg.validate()
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
            h = id_hash(batch.ids[i] for i in keep_rows)
            order = np.argsort(h, kind="stable")
            rows = keep_rows[order]
            h = h[order]
            schema = pa.schema([("id_hash", pa.uint64()), ("id", pa.string()), ("size", pa.int64()),
                                ("sig", pa.list_(pa.uint32(), n))])
            step = SEGMENT_BATCH  # written in slices: no second copy of every signature
            _write_arrow_batches(schema, p["docs"], (pa.record_batch([
                pa.array(h[c : c + step]), pa.array([batch.ids[i] for i in rows[c : c + step]], pa.string()),
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


# --- clustering ------------------------------------------------------------------------------


def _pairs_within(keys: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs among the new documents: rows sharing a band key (each member of a
    bucket against up to BUCKET_LINKS predecessors)."""
    rows = np.flatnonzero(active)
    if rows.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = keys[rows].reshape(-1)
    o = np.argsort(flat, kind="stable")  # stable: equal keys stay in row order
    flat = flat[o]
    who = rows.astype(np.int32)[o // keys.shape[1]]
    del o
    a_all, b_all = [], []
    for d in range(1, BUCKET_LINKS + 1):
        same = flat[d:] == flat[:-d]
        if not same.any():
            break
        a_all.append(who[d:][same])
        b_all.append(who[:-d][same])
    if not a_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a_all).astype(np.int64), np.concatenate(b_all).astype(np.int64)
    pair = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    pair = pair[pair[:, 0] != pair[:, 1]]
    return pair[:, 0], pair[:, 1]


def _verified(a: np.ndarray, b: np.ndarray, sig_a: np.ndarray, size_a: np.ndarray, sig_b: np.ndarray,
              size_b: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    ok = np.zeros(a.size, bool)
    for s in range(0, a.size, 65536):
        e = s + 65536
        ok[s:e] = similar(sig_a[s:e], size_a[s:e], sig_b[s:e], size_b[s:e], cfg)
    return ok


def find_clusters(batch: Batch, active: np.ndarray, cfg: DedupConfig, index: DedupIndex | None = None
                  ) -> tuple[dict[str, str], np.ndarray]:
    """{removed id: kept id} among the active rows of BATCH and against INDEX, and the
    band keys of the batch."""
    keys = band_keys(batch.sig, cfg.bands, cfg.rows)
    uf = UnionFind()
    a, b = _pairs_within(keys, active)
    if a.size:
        ok = _verified(a, b, batch.sig[a], batch.size[a], batch.sig[b], batch.size[b], cfg)
        for x, y in zip(a[ok].tolist(), b[ok].tolist()):
            uf.union(x, y)
    old_name: dict[tuple[int, int], str] = {}
    if index is not None:
        for rows, seg, seg_rows in index.candidates(keys, batch):  # inactive rows' candidates are dropped below
            keep = active[rows]
            rows, seg_rows = rows[keep], seg_rows[keep]
            if rows.size == 0:
                continue
            pair = np.unique(np.stack([rows, seg_rows.astype(np.int64)], axis=1), axis=0)
            rows, seg_rows = pair[:, 0], pair[:, 1]
            ssize = seg.docs.column("size").take(pa.array(seg_rows)).to_numpy()
            ok = _verified(rows, seg_rows, batch.sig[rows], batch.size[rows], seg.sigs(seg_rows, cfg.num_perm), ssize, cfg)
            for x, y in zip(rows[ok].tolist(), seg_rows[ok].tolist()):
                node = ("old", seg.run, y)
                if node not in old_name:
                    old_name[node] = seg.docs.column("id")[y].as_py()
                uf.union(node, x)
    clusters: dict = {}
    for node in list(uf.parent):
        clusters.setdefault(uf.find(node), []).append(node)
    removed: dict[str, str] = {}
    for members in clusters.values():
        new = [m for m in members if isinstance(m, (int, np.integer))]
        old = sorted(old_name[m] for m in members if not isinstance(m, (int, np.integer)))
        if old:
            keep_id, losers = old[0], new
        else:
            if cfg.keep == "earliest":
                k = min(new, key=lambda i: (batch.created[i], -batch.score[i], -batch.length[i], batch.ids[i]))
            else:
                k = min(new, key=lambda i: (-batch.score[i], -batch.length[i], batch.ids[i]))
            keep_id, losers = batch.ids[k], [i for i in new if i != k]
        for i in losers:
            removed[batch.ids[i]] = keep_id
    return removed, keys


class NearDedup:
    """In-memory use (benchmarks, notebooks): documents -> {removed id: kept id}."""

    def __init__(self, cfg: DedupConfig):
        cfg.validate()
        self.cfg = cfg
        self.hasher = MinHasher(cfg.num_perm, cfg.shingle_words, cfg.seed)

    def find_duplicates(self, docs: Iterable[dict]) -> dict[str, str]:
        ids, sigs, sizes, created, score, length = [], [], [], [], [], []
        for d in docs:
            s, z = self.hasher.signature(d.get("text") or "")
            ids.append(d["id"])
            sigs.append(s)
            sizes.append(z)
            created.append(int(d.get("created_utc") or BIG))
            score.append(int(d.get("score") or 0))
            length.append(len(d.get("text") or ""))
        n = len(ids)
        batch = Batch(ids, np.array(sigs, np.uint32).reshape(n, self.cfg.num_perm), np.array(sizes, np.int64),
                      np.array(created, np.int64), np.array(score, np.int64), np.array(length, np.int64),
                      np.zeros(n, np.int32))
        return find_clusters(batch, np.ones(n, bool), self.cfg)[0]


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
    summary.check()
    summary.finish().write(out)
    return summary


def _signatures(parts: list[Path], sig_files: list[Path], cfg: DedupConfig, workers: int) -> None:
    todo = [(p, s) for p, s in zip(parts, sig_files) if not s.is_file()]
    bar = progress(total=len(todo), desc="dedup signatures", unit="parts")
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver")) as pool:
            for _ in pool.map(part_signatures, [p for p, _ in todo], [s for _, s in todo], [cfg] * len(todo)):
                bar.update(1)
    else:
        for p, s in todo:
            part_signatures(p, s, cfg)
            bar.update(1)
    bar.close()


def _write_kept(parts: list[Path], batch: Batch, keep: np.ndarray, path: Path) -> int:
    """Second streaming pass: the kept rows of each part, in input order, to PATH."""
    schemas = []
    for p in parts:
        schemas.append(pq.ParquetFile(p).schema_arrow)
    if not schemas:
        from .extract import DOC_SCHEMA

        schemas = [DOC_SCHEMA]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for k, p in enumerate(parts):  # row groups of ROW_GROUP rows: later stages read them a batch at a time
            rows = np.flatnonzero(batch.source == k)
            mask = keep[rows]
            at = 0
            for b in pq.ParquetFile(p).iter_batches(batch_size=BATCH_ROWS):
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
    from .io import write_parquet_atomic

    write_parquet_atomic(table, path)


def read_duplicates(dedup_dir: str | Path) -> pa.Table:
    """Every (id, duplicate_of) pair the runs into DEDUP_DIR removed."""
    files = sorted(Path(dedup_dir).glob("duplicates-*.parquet"))
    if not files:
        return pa.table({"id": pa.array([], pa.string()), "duplicate_of": pa.array([], pa.string())})
    return pa.concat_tables([pq.read_table(f, columns=["id", "duplicate_of"]) for f in files])
