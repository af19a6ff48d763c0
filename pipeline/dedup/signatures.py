"""MinHash signatures of documents (word shingles), their band keys, and the signatures of one input part."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipeline.core.config import DedupConfig
from pipeline.core.errors import DamagedPart

_WORD = re.compile(r"\w+")
BATCH_ROWS = 512  # documents per record batch read (with row groups of ROW_GROUP, memory per batch is bounded)
ROW_GROUP = 1000
BUCKET_LINKS = 32  # in a bucket of more members, each is verified against its 32 predecessors
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
        """(uint32 array of num_perm min-hashes, number of distinct shingles). The
        permutations are applied SHINGLE_CHUNK shingles at a time: memory stays
        num_perm x SHINGLE_CHUNK x 8 bytes (~30 MB) whatever the document's length."""
        s = self.shingle_hashes(text)
        out = None
        with np.errstate(over="ignore"):
            for i in range(0, s.size, SHINGLE_CHUNK):
                h = ((np.multiply.outer(self.a, s[i:i + SHINGLE_CHUNK]) + self.b[:, None]) >> np.uint64(32)).min(axis=1)
                out = h if out is None else np.minimum(out, h)
        return out.astype(np.uint32), int(s.size)


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
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64(0x243F6A8885A308D3) * np.uint64(b + 1), dtype=np.uint64)
            for r in range(rows):  # one column widened at a time (a uint64 copy of every signature: 880 B a document)
                h = (h ^ sigs[:, b * rows + r].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
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


SHINGLE_CHUNK = 32_768

# Why a document takes no part in dedup (the signature file's ``skip`` column): it is
# counted under this reason and never kept, removed or indexed.
SKIP_REASONS = {1: "empty_text", 2: "too_long"}


def skip_code(text, max_chars: int) -> int:
    if text is None or not text.strip():
        return 1
    return 2 if len(text) > max_chars else 0


def _sig_schema(num_perm: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("size", pa.int64()), ("created", pa.int64()), ("score", pa.int64()),
                      ("length", pa.int64()), ("sig", pa.list_(pa.uint32(), num_perm)), ("skip", pa.int8())])


def iter_batches(path: Path, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    try:
        pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering holds several row groups: RSS grew per document
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
    from pipeline.core.schema import check_document_schema

    check_document_schema(pq.ParquetFile(path).schema_arrow, path)


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
            sigs = np.zeros((len(ids), cfg.num_perm), dtype=np.uint32)
            sizes = np.zeros(len(ids), dtype=np.int64)
            skips = np.zeros(len(ids), dtype=np.int8)
            for i, t in enumerate(texts):
                skips[i] = skip_code(t, cfg.max_chars)
                if not skips[i]:
                    sigs[i], sizes[i] = hasher.signature(t)
            w.write_batch(pa.record_batch([
                pa.array(ids, pa.string()), pa.array(sizes), pa.array([BIG if c is None else int(c) for c in created], pa.int64()),
                pa.array([int(s or 0) for s in scores], pa.int64()), pa.array([len(t or "") for t in texts], pa.int64()),
                pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), pa.uint32()), cfg.num_perm),
                pa.array(skips, pa.int8())], schema=schema))
            n += len(ids)
    os.replace(tmp, out_file)
    return {"part": str(part), "docs": n, "reused": False}


class ArrowIds:
    """Document ids held as one Arrow string array (a few bytes each beyond the text of
    the id), not a Python string per document: a list of 8M ids is ~600 MB of objects.
    Indexing gives a str; iteration goes a chunk at a time."""

    def __init__(self, arr: pa.Array):
        self.arr = arr

    def __len__(self) -> int:
        return len(self.arr)

    def __getitem__(self, i) -> str:
        return self.arr[int(i)].as_py()

    def __iter__(self):
        for at in range(0, len(self.arr), 65_536):
            yield from self.arr.slice(at, 65_536).to_pylist()


@dataclass
class Batch:
    """Signatures and keep-rule fields of the documents a run considers."""

    ids: "list[str] | ArrowIds"
    sig: np.ndarray  # (n, num_perm) uint32
    size: np.ndarray
    created: np.ndarray
    score: np.ndarray
    length: np.ndarray
    source: np.ndarray  # index of the input part each came from
    skip: np.ndarray | None = None  # 0, or the SKIP_REASONS code of a document that takes no part

    @classmethod
    def read(cls, files: list[Path], num_perm: int) -> "Batch":
        """The signature files, into arrays allocated once (no concatenation copies)."""
        n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        sig = np.empty((n, num_perm), np.uint32)
        cols = {c: np.empty(n, np.int64) for c in ("size", "created", "score", "length")}
        source = np.empty(n, np.int32)
        skip = np.zeros(n, np.int8)
        ids: list[pa.Array] = []
        at = 0
        for k, f in enumerate(files):
            for b in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=8192):
                m = b.num_rows
                ids.append(b.column("id"))
                sig[at : at + m] = b.column("sig").flatten().to_numpy().reshape(m, num_perm)
                for c, arr in cols.items():
                    arr[at : at + m] = b.column(c).to_numpy()
                source[at : at + m] = k
                if "skip" in b.schema.names:  # (a signature file of an earlier webtext has none)
                    skip[at : at + m] = b.column("skip").to_numpy()
                at += m
        arr = pa.concat_arrays([a.cast(pa.string()) for a in ids]) if ids else pa.array([], pa.string())
        return cls(ArrowIds(arr), sig, cols["size"], cols["created"], cols["score"], cols["length"], source, skip)
