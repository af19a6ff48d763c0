"""Candidate pairs from shared band keys, verified by their signatures, grouped into clusters; the keep rule."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa

from pipeline.core.config import DedupConfig
from pipeline.dedup.index import DedupIndex
from pipeline.dedup.signatures import (
    BIG,
    BUCKET_LINKS,
    Batch,
    MinHasher,
    UnionFind,
    band_keys,
    similar,
)

# --- clustering ------------------------------------------------------------------------------


def _pairs_within(keys: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs among the new documents: rows sharing a band key (each member of a
    bucket against up to BUCKET_LINKS predecessors)."""
    rows = np.flatnonzero(active)
    if rows.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r32 = rows.astype(np.int32)
    a_all, b_all = [], []
    for band in range(keys.shape[1]):  # a band at a time: ~24 B a document at once, not ~600
        flat = keys[rows, band]
        o = np.argsort(flat, kind="stable")  # stable: equal keys stay in row order
        flat = flat[o]
        who = r32[o]
        del o
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
