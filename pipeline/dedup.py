"""Near-duplicate removal: MinHash signatures, datasketch's MinHashLSH for
candidates, verification by estimated Jaccard *and* containment, union-find.

Why not datasketch's ``MinHash.update`` per shingle: pure-Python shingling and
per-shingle hashing cost ~500 ns a shingle. Here the words of a document are
hashed once each (xxhash, cached per distinct word), the word 5-gram shingle
hashes are combined in numpy, and all permutations are applied at once
(multiply-shift hashing of 64-bit shingle hashes); the signatures then go into
datasketch's ``MinHashLSH`` as ``LeanMinHash`` objects, so its in-memory or Redis
storage serves as the index. bench/bench_dedup.py measures both.

Why verification: a banded LSH with few rows per band finds pairs with low
Jaccard (truncated copies, copies wrapped in boilerplate) but also false
candidates; each candidate pair is kept only when the signatures' estimated
Jaccard or estimated containment (from the Jaccard and the two shingle-set
sizes) passes its threshold, so precision stays high.

Keep rule, per cluster: a document already kept by an earlier run stays kept;
otherwise (``keep="earliest"``, the default) the one first submitted to Reddit,
or (``keep="score"``) the highest Reddit score; then the higher score, the
longest text, the smallest id (deterministic).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .config import DedupConfig, UnsafeInput
from .io import DamagedPart, read_part
from .summary import RunSummary, progress

_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)


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
        """(uint64 array of num_perm 32-bit min-hashes, number of distinct shingles)."""
        s = self.shingle_hashes(text)
        with np.errstate(over="ignore"):
            h = (np.multiply.outer(self.a, s) + self.b[:, None]) >> np.uint64(32)
        return h.min(axis=1), int(s.size)


def estimated_similarity(sig_a: np.ndarray, size_a: int, sig_b: np.ndarray, size_b: int) -> tuple[float, float]:
    """(estimated Jaccard, estimated containment of the smaller set in the larger)."""
    j = float(np.mean(sig_a == sig_b))
    inter = j * (size_a + size_b) / (1.0 + j)
    return j, min(1.0, inter / max(1, min(size_a, size_b)))


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


@dataclass
class DocInfo:
    id: str
    score: int
    length: int
    old: bool  # kept by an earlier run
    created: int = 0


class MinHashDeduper:
    """An LSH index over every kept document, persisted in ``state_dir`` (or Redis)."""

    # Signatures of every kept document as Parquet (id, size, sig), the parameters in
    # the schema's metadata. Plain data: reading it runs nothing (the pickle it
    # replaces could run code from a shared or downloaded index). The in-memory LSH
    # is rebuilt from the signatures on load.
    STATE = "dedup_index.parquet"
    LEGACY_STATE = "dedup_index.pkl"

    def __init__(self, cfg: DedupConfig, state_dir: str | Path | None = None, kept_files: Iterable[Path] = ()):
        """KEPT_FILES: the documents kept so far, to rebuild the index from when the
        state directory holds only an index of an older webtext (a pickle, never loaded)."""
        from datasketch import MinHashLSH

        cfg.validate()
        self.cfg = cfg
        self.hasher = MinHasher(cfg.num_perm, cfg.shingle_words, cfg.seed)
        self.state_dir = Path(state_dir) if state_dir else None
        self.sigs: dict[str, tuple[np.ndarray, int]] = {}
        self.old_ids: set[str] = set()
        self.skipped: set[str] = set()
        state = self.state_dir / self.STATE if self.state_dir else None
        storage = None
        if cfg.redis_url:
            from urllib.parse import urlsplit

            u = urlsplit(cfg.redis_url)
            storage = {"type": "redis", "basename": b"webtext_dedup", "redis": {"host": u.hostname, "port": u.port or 6379}}
        kw = {"storage_config": storage} if storage else {}
        self.lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows), **kw)
        self.rebuilt_from_legacy = False
        if state is not None and state.is_file():
            self._load(state, rebuild_lsh=storage is None)
        elif self.state_dir is not None and (self.state_dir / self.LEGACY_STATE).is_file():
            kept_files = list(kept_files)
            if not kept_files:
                raise UnsafeInput(f"{self.state_dir / self.LEGACY_STATE}: an index from an older webtext, a pickle, "
                                  "which is not loaded (unpickling can run code), and no kept documents beside it to "
                                  "rebuild the index from. Move it away, or run dedup with --out set to the directory "
                                  "holding the kept documents-*.parquet.")
            # Signatures are a pure function of the text: re-indexing the kept documents
            # gives the index the pickle held, without reading it.
            for f in kept_files:
                for d in pq.read_table(f, columns=["id", "text"]).to_pylist():
                    sig, size = self.hasher.signature(d["text"] or "")
                    self.sigs[d["id"]] = (sig, size)
                    self.lsh.insert(d["id"], self._lean(sig), check_duplication=False)
            self.old_ids = set(self.sigs)
            self.rebuilt_from_legacy = True

    def _load(self, state: Path, rebuild_lsh: bool) -> None:
        try:
            table = pq.read_table(state)
            saved = json.loads((table.schema.metadata or {}).get(b"webtext_params", b"null"))
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise ValueError(f"{state}: unreadable dedup index ({exc}); restore it or start a new state directory") from exc
        if saved != self._params():
            raise ValueError(f"{state}: index built with {saved}, configuration now {self._params()}; "
                             "use a new state directory or the same dedup settings")
        ids = table.column("id").to_pylist()
        sizes = table.column("size").to_numpy()
        sigs = table.column("sig").combine_chunks().flatten().to_numpy().reshape(len(ids), self.cfg.num_perm)
        for i, doc_id in enumerate(ids):
            self.sigs[doc_id] = (sigs[i], int(sizes[i]))
            if rebuild_lsh:
                self.lsh.insert(doc_id, self._lean(sigs[i]), check_duplication=False)
        self.old_ids = set(self.sigs)

    def _params(self) -> dict:
        c = self.cfg
        return {"num_perm": c.num_perm, "bands": c.bands, "rows": c.rows, "shingle_words": c.shingle_words, "seed": c.seed}

    def _lean(self, sig: np.ndarray):
        from datasketch import LeanMinHash

        # our own multiply-shift scheme; "legacy" is the label datasketch gives values it did not make
        return LeanMinHash(seed=self.cfg.seed, hashvalues=sig, scheme="legacy")

    def find_duplicates(self, docs: Iterable[dict], summary: RunSummary | None = None) -> dict[str, str]:
        """Index the documents and return {removed id: kept id} for the duplicates
        among them and against everything kept before."""
        cfg = self.cfg
        uf = UnionFind()
        info: dict[str, DocInfo] = {i: DocInfo(i, 0, 0, True) for i in self.old_ids}
        big = 2**62
        new_ids: list[str] = []
        bar = progress(desc="dedup", unit="docs")
        for d in docs:
            doc_id = d["id"]
            if doc_id in info:
                self.skipped.add(doc_id)
                if summary is not None:
                    summary.drop("already_indexed")
                continue
            text = d.get("text") or ""
            sig, size = self.hasher.signature(text)
            m = self._lean(sig)
            for cand in self.lsh.query(m):
                csig, csize = self.sigs[cand]
                j, c = estimated_similarity(sig, size, csig, csize)
                if j >= cfg.jaccard_threshold or c >= cfg.containment_threshold:
                    uf.union(cand, doc_id)
            self.lsh.insert(doc_id, m, check_duplication=False)
            self.sigs[doc_id] = (sig, size)
            info[doc_id] = DocInfo(doc_id, int(d.get("score") or 0), len(text), False, int(d.get("created_utc") or big))
            new_ids.append(doc_id)
            bar.update(1)
        bar.close()
        clusters: dict[str, list[str]] = {}
        for i in new_ids:
            clusters.setdefault(uf.find(i), []).append(i)
        for i in self.old_ids:
            if i in uf.parent:
                clusters.setdefault(uf.find(i), []).append(i)
        removed: dict[str, str] = {}
        for members in clusters.values():
            if len(members) == 1:
                continue
            if cfg.keep == "earliest":
                keep = min(members, key=lambda i: (not info[i].old, info[i].created, -info[i].score, -info[i].length, i))
            else:
                keep = min(members, key=lambda i: (not info[i].old, -info[i].score, -info[i].length, i))
            for i in members:
                if i != keep and not info[i].old:
                    removed[i] = keep
        for i in removed:
            self.lsh.remove(i)
            del self.sigs[i]
        self.old_ids.update(i for i in new_ids if i not in removed)
        return removed

    def save(self) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ids = list(self.sigs)
        n = self.cfg.num_perm
        flat = np.concatenate([self.sigs[i][0] for i in ids]).astype(np.uint64) if ids else np.zeros(0, np.uint64)
        table = pa.table({"id": pa.array(ids, pa.string()),
                          "size": pa.array([self.sigs[i][1] for i in ids], pa.int64()),
                          "sig": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.uint64()), n)})
        table = table.replace_schema_metadata({"webtext_params": json.dumps(self._params())})
        tmp = self.state_dir / f".{self.STATE}.tmp-{os.getpid()}"
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_dir / self.STATE)
        if self.rebuilt_from_legacy:
            (self.state_dir / self.LEGACY_STATE).unlink(missing_ok=True)


def dedup_documents(src: str | Path, out_dir: str | Path, cfg: DedupConfig, state_dir: str | Path | None = None) -> RunSummary:
    """``webtext dedup``: Parquet documents (id, text; score optional) -> kept
    documents and ``duplicates.parquet`` (id, duplicate_of) in ``out_dir``.
    The index persists in ``state_dir`` (default: ``out_dir/state``)."""
    src, out = Path(src), Path(out_dir)
    files = [src] if src.is_file() else sorted(p for p in src.glob("*.parquet") if not p.name.startswith("."))
    out.mkdir(parents=True, exist_ok=True)
    state_dir = Path(state_dir) if state_dir else out / "state"
    deduper = MinHashDeduper(cfg, state_dir, kept_files=sorted(out.glob("documents*.parquet")))
    summary = RunSummary("dedup", unit="documents")
    if deduper.rebuilt_from_legacy:
        summary.note(f"index rebuilt from the {len(deduper.sigs):,} kept documents; the old pickle index is not read")
    tables, readable = [], []
    for f in files:
        try:
            tables.append(read_part(f))
            readable.append(f)
        except DamagedPart as exc:  # its documents wait for the next run, after the part is restored
            summary.note(str(exc))
            summary.extra.setdefault("damaged_parts", []).append({"file": str(f), "error": exc.reason})
    files = readable
    for t, f in zip(tables, files):
        if "id" not in t.column_names or "text" not in t.column_names:
            raise ValueError(f"{f}: documents need columns id and text (has {t.column_names})")
    if not tables:
        if summary.extra.get("damaged_parts"):
            raise DamagedPart(summary.extra["damaged_parts"][0]["file"], summary.extra["damaged_parts"][0]["error"])
        raise FileNotFoundError(f"no Parquet documents in {src}")
    table = pa.concat_tables(tables, promote_options="default")
    summary.n_in = table.num_rows
    written = _ids_written(out)  # kept by an earlier run into this directory
    dup_path = out / "duplicates.parquet"
    removed_before = set(pq.read_table(dup_path, columns=["id"]).column("id").to_pylist()) if dup_path.is_file() else set()
    cols = ["id", "text"] + [c for c in ("score", "created_utc") if c in table.column_names]
    candidates, take = [], []
    seen: set[str] = set()
    for d in table.select(cols).to_pylist():
        i = d["id"]
        if i in seen:
            summary.drop("repeated_id")  # the same document twice in the input
            take.append(False)
        elif i in written:
            summary.drop("already_kept")
            take.append(False)
        elif i in removed_before:
            summary.drop("already_removed")  # a near-duplicate found by an earlier run
            take.append(False)
        else:
            candidates.append(d)
            take.append(True)
        seen.add(i)
    removed = deduper.find_duplicates(candidates, summary)
    summary.drop("near_duplicate", len(removed))
    ids = table.column("id").to_pylist()
    kept = table.filter(pa.array([t and i not in removed and i not in deduper.skipped
                                  for t, i in zip(take, ids)], type=pa.bool_()))
    # Write documents, then duplicates, then the index: the index never holds a
    # document that is not written.
    n_parts = len(list(out.glob("documents*.parquet")))
    if kept.num_rows or n_parts == 0:
        _write(kept, out / (f"documents-{n_parts:04d}.parquet"))
    dups = pa.table({"id": pa.array(list(removed), pa.string()), "duplicate_of": pa.array(list(removed.values()), pa.string())})
    if dup_path.is_file():
        dups = pa.concat_tables([pq.read_table(dup_path), dups])
    _write(dups, dup_path)
    deduper.save()
    summary.n_out = kept.num_rows
    summary.extra["index_size"] = len(deduper.sigs)
    summary.check()
    summary.finish().write(out)
    return summary


def _ids_written(out: Path) -> set[str]:
    ids: set[str] = set()
    for p in out.glob("documents*.parquet"):
        ids.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return ids


def _write(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
