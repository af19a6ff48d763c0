"""The incremental merge of harvested parts into links runs (``runs/links-NNNN.parquet``),
with an index of every URL seen; what the links stage does as a whole is described in
``pipeline/links/__init__.py``."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.config import LinksConfig
from pipeline.core.io import (
    atomic_write_json,
    conform,
    map_arrow,
    read_part,
    write_arrow_atomic,
    write_parquet_atomic,
)
from pipeline.core.schema import LINKS_SCHEMA
from pipeline.core.summary import RunSummary, progress
from pipeline.links.harvest import (
    PARTS,
    _fingerprint_of,
    config_fingerprint,
    harvest_dump_part,
    harvest_url_list_part,
)
from pipeline.links.select import _reduce_ints
from pipeline.links.table import FORMAT, LEDGER, LEGACY, REPLACED, RUNS, _run_path

# --- the incremental merge: one run per merge, an index of every URL seen ----------------------
#
# OUT/links/runs/ holds, per merge run NNNN:
#   links-NNNN.parquet   the URLs that became links in that run (LINKS_SCHEMA)
#   seg-NNNN.arrow       sorted 64-bit keys (the first 8 bytes of the URL's id, i.e. of
#                        sha256(url_norm)) of every URL the run linked or left pending,
#                        with ``pending_row``: -1 for a link, else its row in ...
#   pending-NNNN.arrow   URLs still below min_score after the run (score_mode "sum"),
#                        aggregated so far, sorted by key (LINKS_SCHEMA + key)
#   ledger.json          the runs, and the parts each consumed; written last
# A later run looks its URLs up in the segments (memory-mapped, binary search, newest
# first: a URL pending in run 3 and linked in run 7 is linked), so it reads and writes
# only what is new. Files of a run missing from the ledger (a killed merge) are
# deleted and the run redone. 64-bit keys: the chance of any collision among WebText's
# 20M URLs is ~1e-5 (n^2 / 2^65).

SEG_SCHEMA = pa.schema([("key", pa.uint64()), ("pending_row", pa.int64())])
PENDING_SCHEMA = LINKS_SCHEMA.append(pa.field("key", pa.uint64()))



def url_keys(ids: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """64-bit keys of URL ids (hex sha256 of url_norm): their first 16 hex digits."""
    ids = ids.to_pylist() if not isinstance(ids, list) else ids
    if not ids:
        return np.zeros(0, np.uint64)
    return np.frombuffer(bytes.fromhex("".join(i[:16] for i in ids)), dtype=">u8").astype(np.uint64)


def _map_arrow(path: Path) -> pa.Table:
    return map_arrow(path)


def _write_arrow(table: pa.Table, path: Path) -> None:
    write_arrow_atomic(path, table.schema, [table], max_chunksize=65536)


LIST_COLUMNS = ("reddit_ids", "subreddits", "created_utcs", "titles", "scores")


def _flat(t: pa.Table, name: str, lengths: np.ndarray):
    """The elements of list column NAME, one per submission (LENGTHS: submissions per
    row); a row whose list is missing (a part written before the column existed)
    gives nulls."""
    col = t.column(name)
    arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
    if arr.null_count == 0:
        return arr.flatten()
    lists = arr.to_pylist()
    return pa.array([v for lst, k in zip(lists, lengths) for v in (lst if lst is not None else [None] * int(k))],
                    arr.type.value_type)


def _aggregate(t: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows of the same URL (same ``key``) merged into one, in Arrow and numpy (no
    Python object per row): the submission lists concatenated in T's row order, each
    Reddit submission once (the same id from two inputs: two copies of a month,
    overlapping Pushshift and Arctic Shift files, a pending row and a new one), the
    higher known score, the score total (null once one is unknown), and the
    url/created_utc of the row with the earliest known created_utc (ties: the first).
    Returns the table sorted by key and, per row, the repeated submissions dropped."""
    if t.num_rows == 0:
        return t, np.zeros(0, np.int64)
    key = t.column("key").to_numpy()
    order = np.argsort(key, kind="stable")
    t = t.take(pa.array(order)).combine_chunks()
    key = key[order]
    n = key.size
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    bounds = np.r_[starts, n]
    sizes = np.diff(bounds)
    if starts.size == n:  # every URL once: nothing to merge
        return t, np.zeros(n, np.int64)
    gid = np.repeat(np.arange(starts.size), sizes)
    lengths = pc.fill_null(pc.list_value_length(t.column("reddit_ids")), 0).to_numpy().astype(np.int64)
    ids = _flat(t, "reddit_ids", lengths)
    from pipeline.links.select import first_submissions

    keep = first_submissions(np.repeat(gid, lengths), ids)
    removed = np.zeros(starts.size, np.int64)
    if not keep.all():
        np.add.at(removed, np.repeat(gid, lengths)[~keep], 1)

    created = t.column("created_utc").to_numpy()
    earliest = np.where(created > 0, created, np.iinfo(np.int64).max)
    rep = np.lexsort((earliest, gid))[starts]  # stable: ties keep the first row
    kept_per_group = np.add.reduceat(lengths, starts) - removed
    offsets = pa.array(np.r_[0, np.cumsum(kept_per_group)].astype(np.int32))
    mask = pa.array(keep)
    cols = {}
    for f in LINKS_SCHEMA:
        name = f.name
        if name == "score":
            cols[name] = _reduce_ints(t.column(name), starts, "max")
        elif name == "score_total":
            cols[name] = _reduce_ints(t.column(name), starts, "sum")
        elif name == "n_submissions":
            cols[name] = pa.array(np.add.reduceat(t.column(name).to_numpy().astype(np.int64), starts) - removed,
                                  pa.int32())
        elif pa.types.is_list(f.type):
            flat = ids if name == "reddit_ids" else _flat(t, name, lengths)
            cols[name] = pa.ListArray.from_arrays(offsets, flat.filter(mask))
        else:
            cols[name] = t.column(name).take(pa.array(rep))
    if removed.any():  # the scores again, from each submission once
        g = np.flatnonzero(removed)
        sc = cols["scores"]
        best, total = cols["score"].to_pylist(), cols["score_total"].to_pylist()
        for i in g:
            vals = sc[int(i)].as_py() or []
            known = [v for v in vals if v is not None]
            if len(vals) == kept_per_group[i]:
                best[i] = max(known) if known else None
                total[i] = sum(known) if len(known) == len(vals) else None
        cols["score"], cols["score_total"] = pa.array(best, pa.int64()), pa.array(total, pa.int64())
    cols["key"] = pa.array(key[starts], pa.uint64())
    return pa.table(cols, schema=PENDING_SCHEMA), removed


class LinkIndex:
    """The runs of a links directory: ledger, segments, pending rows."""

    def __init__(self, links_dir: Path, cfp: str, summary: RunSummary):
        self.dir = Path(links_dir)
        self.runs_dir = self.dir / RUNS
        self.cfp = cfp
        self.summary = summary
        ledger = self.runs_dir / LEDGER
        self.ledger = orjson.loads(ledger.read_bytes()) if ledger.is_file() else None
        if self.ledger is not None and self.ledger.get("config") != cfp:
            self._replace(f"the {len(self.ledger['runs'])} links run(s) made under another links configuration "
                          f"({self.ledger.get('config')}) were replaced by this configuration's ({cfp})")
        if self.ledger is None:
            self.ledger = {"format": FORMAT, "config": cfp, "runs": []}
        self.discard_uncommitted()
        if not self.ledger["runs"] and (self.dir / LEGACY).is_file():
            self._take_over_legacy()
        self.segments = []
        for r in self.ledger["runs"]:
            seg = _map_arrow(_run_path(self.dir, r["run"], "seg"))
            pending = _run_path(self.dir, r["run"], "pending")
            self.segments.append((r["run"], seg.column("key").to_numpy(), seg.column("pending_row").to_numpy(),
                                  _map_arrow(pending) if pending.is_file() else None))

    @property
    def next_run(self) -> int:
        runs = self.ledger["runs"]
        return runs[-1]["run"] + 1 if runs else 0

    def consumed(self) -> dict[str, int]:
        return {p: r["run"] for r in self.ledger["runs"] for p in r["parts"]}

    def earlier_dumps(self) -> list[str]:
        return [d for r in self.ledger["runs"] for d in r["dumps"]]

    def _replace(self, note: str) -> None:
        """Another configuration's runs: gone (they are derived from the parts, which stay)."""
        self.summary.note(note)
        legacy = any(r.get("legacy") for r in self.ledger["runs"])
        (self.runs_dir / LEDGER).unlink()  # first: from here on every run file is uncommitted
        if legacy and (self.dir / LEGACY).is_file():
            os.replace(self.dir / LEGACY, self.dir / REPLACED)
        self.ledger = None

    def discard_uncommitted(self) -> None:
        """Files of runs the ledger does not list (a merge killed before its ledger), and temporaries."""
        nxt = self.next_run
        for p in self.runs_dir.glob("*") if self.runs_dir.is_dir() else ():
            m = re.fullmatch(r"(links|seg|pending)-(\d+)\.(parquet|arrow)", p.name)
            if (m and int(m.group(2)) >= nxt) or p.name.startswith("."):
                p.unlink()

    def _take_over_legacy(self) -> None:
        """A directory of the earlier layout: its links.parquet becomes run 0 (indexed
        once, left in place) when its summary says it was merged under this
        configuration; the parts it merged are marked consumed. Otherwise it is set
        aside as links.replaced.parquet, as a merge under a new configuration replaced it."""
        legacy = self.dir / LEGACY
        old = self.dir / "summary.links.json"
        extra = orjson.loads(old.read_bytes()).get("extra", {}) if old.is_file() else {}
        if not extra.get("config") or _fingerprint_of(dict(extra["config"])) != self.cfp:
            os.replace(legacy, self.dir / REPLACED)
            self.summary.note(f"{legacy} was not merged from this links configuration's parts (another configuration, "
                              f"or the API); moved to {REPLACED}, the links are merged anew from the parts")
            return
        dumps = set(extra.get("harvested_now", [])) | set(extra.get("reused_parts", []))
        parts = []
        for meta_path in sorted((self.dir / PARTS).glob(f"*.{self.cfp}.json")):
            meta = orjson.loads(meta_path.read_bytes())
            if meta["dump"] in dumps:
                parts.append(meta["part"])
        pf = pq.ParquetFile(legacy)
        keys = np.concatenate([url_keys(b.column("id")) for b in pf.iter_batches(columns=["id"], batch_size=65536)]
                              or [np.zeros(0, np.uint64)])
        keys.sort()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        _write_arrow(pa.table({"key": keys, "pending_row": np.full(keys.size, -1, np.int64)}, schema=SEG_SCHEMA),
                     _run_path(self.dir, 0, "seg"))
        self.commit({"run": 0, "legacy": True, "parts": parts, "dumps": sorted(dumps), "links": int(keys.size),
                     "pending": 0})
        self.summary.note(f"{legacy} (earlier layout, {keys.size:,} links) taken over as links run 0; "
                          f"new links go to {RUNS}/")

    def commit(self, entry: dict) -> None:
        self.ledger["runs"].append(entry)
        atomic_write_json(self.runs_dir / LEDGER, self.ledger)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, pa.Table | None]:
        """(state per key: 0 new, 1 linked by an earlier run, 2 pending; the pending
        rows of the keys in state 2, in key order), from the newest segment back."""
        state = np.zeros(keys.size, np.int8)
        todo = np.arange(keys.size)
        pending = []
        for run, skeys, prow, ptable in reversed(self.segments):
            if not todo.size:
                break
            if not skeys.size:
                continue
            pos = np.minimum(np.searchsorted(skeys, keys[todo]), skeys.size - 1)
            hit = skeys[pos] == keys[todo]
            rows = prow[pos[hit]]
            state[todo[hit]] = np.where(rows < 0, 1, 2)
            if (rows >= 0).any():
                pending.append(ptable.take(pa.array(rows[rows >= 0])))
            todo = todo[~hit]
        return state, (pa.concat_tables(pending) if pending else None)


MERGE_BATCH_ROWS = 1_000_000  # URL rows of parts per merge run (~1.1 KB of memory each, bench_scale)


def merge_link_parts(out_dir: str | Path, cfg: LinksConfig, since: float | None = None) -> RunSummary:
    """Merge the parts in ``out_dir/parts`` (made under this configuration) that no
    earlier merge consumed into a new run, ``out_dir/runs/links-NNNN.parquet``: the
    URLs that became links now. Its cost follows the new parts, not the months
    before them: earlier URLs are looked up in the runs' memory-mapped key segments.

    The summary counts this run's submissions: ones of a URL an earlier run linked
    are dropped as ``already_linked`` (the link keeps its first run's row: score,
    ids and titles as of that run); with score_mode "sum" a URL below min_score is
    kept pending (``low_score_total`` for now) and becomes a link in the run where
    its running total reaches it, with every submission so far. The union of the
    runs is the links a single merge of all parts gives (months merged in order:
    created_utc/url are those of the earliest submission seen by the linking run).

    ``extra["run"]`` is the run's number (None when no part was new: nothing is
    written) and ``extra["new_links"]`` its links. Parts harvested at or after
    ``since`` (a time.time()) are reported as harvested now, the others as reused."""
    out_dir = Path(out_dir)
    cfp = config_fingerprint(cfg)
    summary = RunSummary("links", unit="submissions")
    index = LinkIndex(out_dir, cfp, summary)
    consumed = index.consumed()
    parts = sorted((out_dir / PARTS).glob(f"*.{cfp}.parquet"))
    others = [p for p in (out_dir / PARTS).glob("*.parquet") if not p.name.endswith(f".{cfp}.parquet")]
    if others:
        summary.note(f"{len(others)} part(s) harvested under another links configuration are not used")
    new_parts = [p for p in parts if p.name not in consumed]
    if not new_parts:
        return _merge_run(out_dir, cfg, cfp, index, summary, [], since, len(consumed))
    # Parts are merged in batches of at most MERGE_BATCH_ROWS URL rows, one run each, in
    # name (month) order: a backlog of many months never sits in memory at once, and
    # the runs equal one merge's links (a later batch looks up the earlier ones).
    batches, batch, rows = [], [], 0
    for p in new_parts:
        n = pq.ParquetFile(p).metadata.num_rows
        if batch and rows + n > MERGE_BATCH_ROWS:
            batches.append(batch)
            batch, rows = [], 0
        batch.append(p)
        rows += n
    batches.append(batch)
    results = []
    for k, b in enumerate(batches):
        s = summary if k == 0 else RunSummary("links", unit="submissions")
        results.append(_merge_run(out_dir, cfg, cfp, index if k == 0 else LinkIndex(out_dir, cfp, s), s, b, since,
                                  len(consumed)))
    if len(results) == 1:
        return results[0]
    total = RunSummary("links", unit="submissions")
    for r in results:
        total.n_in += r.n_in
        total.n_out += r.n_out
        total.dropped.update(r.dropped)
        total.notes.extend(r.notes)
    total.extra.update(results[0].extra)
    total.extra["files"] = [x for r in results for x in r.extra["files"]]
    total.extra["harvested_now"] = [x for r in results for x in r.extra["harvested_now"]]
    total.extra["reused_parts"] = sorted({x for r in results for x in r.extra["reused_parts"]}
                                         - set(total.extra["harvested_now"]))
    total.extra.update(run=results[-1].extra["run"], runs=[r.extra["run"] for r in results],
                       new_links=sum(r.extra["new_links"] for r in results))
    total.close(out_dir)
    return total


def _merge_run(out_dir: Path, cfg: LinksConfig, cfp: str, index: "LinkIndex", summary: RunSummary,
               new_parts: list[Path], since: float | None, n_consumed: int) -> RunSummary:
    """One merge run over NEW_PARTS (see ``merge_link_parts``)."""
    files, harvested, reused, tables, dumps = [], [], list(index.earlier_dumps()), [], []
    for p in new_parts:
        meta = orjson.loads(p.with_suffix(".json").read_bytes())
        summary.n_in += meta["in"]
        for reason, n in meta["dropped"].items():
            summary.drop(reason, n)
        for n in meta["notes"]:
            summary.note(n)
        if any("truncated" in n for n in meta["notes"]):
            summary.drop("truncated_archive", 0)
        files.append(meta["file"])
        dumps.append(meta["dump"])
        fresh = since is not None and meta["harvested_at"] >= since
        (harvested if fresh else reused).append(meta["dump"])
        tables.append(conform(read_part(p), LINKS_SCHEMA))
    extra = dict(files=files, harvested_now=harvested, reused_parts=reused,
                 config={k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
    if not new_parts:
        summary.note(f"no new part: the {n_consumed} part(s) here were merged by earlier runs")
        summary.extra.update(run=None, new_links=0, **extra)
        summary.close(out_dir)
        return summary
    run = index.next_run
    t = pa.concat_tables(tables)
    del tables
    t = t.append_column("key", pa.array(url_keys(t.column("id")), pa.uint64()))
    now, removed = _aggregate(t)  # one row per URL of this run
    del t
    if removed.any():
        summary.drop("duplicate_submission", int(removed.sum()))
    keys = now.column("key").to_numpy()
    n_now = now.column("n_submissions").to_numpy().astype(np.int64)
    state, pending_rows = index.lookup(keys)
    already = state == 1
    if already.any():
        summary.drop("already_linked", int(n_now[already].sum()))
    keep = ~already
    now, n_now, state = now.filter(pa.array(keep)), n_now[keep], state[keep]
    if pending_rows is not None:  # earlier submissions first, then this run's
        was_pending = pa.array(state == 2)
        merged, removed = _aggregate(pa.concat_tables([conform(pending_rows, PENDING_SCHEMA), now.filter(was_pending)]))
        if removed.any():  # this run's copies of submissions a pending row already holds
            summary.drop("duplicate_submission", int(removed.sum()))
        now = pa.concat_tables([now.filter(pc.invert(was_pending)), merged])
        # merged is sorted by key, as now's rows (both from _aggregate) are
        n_now = np.concatenate([n_now[state != 2], n_now[state == 2] - removed])
    below = np.zeros(now.num_rows, bool)
    if cfg.score_mode == "sum":
        total = now.column("score_total")
        below = pc.fill_null(pc.less(total, cfg.min_score), False).to_numpy(zero_copy_only=False)
        if below.any():
            summary.drop("low_score_total", int(n_now[below].sum()))
    dups = int((n_now[~below] - 1).sum())
    if dups:
        summary.drop("duplicate_url", dups)
    links = now.filter(pa.array(~below))
    pending = now.filter(pa.array(below))
    pending = pending.take(pc.sort_indices(pending, [("key", "ascending")]))
    summary.n_out = links.num_rows
    index.runs_dir.mkdir(parents=True, exist_ok=True)
    out = links.drop_columns(["key"])
    out = out.take(pc.sort_indices(out, [("created_utc", "ascending"), ("url_norm", "ascending")]))
    write_parquet_atomic(out, _run_path(out_dir, run))
    seg_keys = np.concatenate([links.column("key").to_numpy(), pending.column("key").to_numpy()])
    seg_rows = np.concatenate([np.full(links.num_rows, -1, np.int64), np.arange(pending.num_rows, dtype=np.int64)])
    order = np.argsort(seg_keys, kind="stable")
    _write_arrow(pa.table({"key": seg_keys[order], "pending_row": seg_rows[order]}, schema=SEG_SCHEMA),
                 _run_path(out_dir, run, "seg"))
    if pending.num_rows:
        _write_arrow(pending, _run_path(out_dir, run, "pending"))
    summary.check()
    index.commit({"run": run, "parts": [p.name for p in new_parts], "dumps": dumps, "links": links.num_rows,
                  "pending": pending.num_rows, "at": time.time()})
    summary.extra.update(run=run, new_links=links.num_rows, **extra)
    summary.finish().write(out_dir)
    return summary


def harvest_dump_links(dumps: Iterable[str | Path], out_dir: str | Path, cfg: LinksConfig,
                       url_lists: Iterable[str | Path] = ()) -> RunSummary:
    """``webtext links --dump ... --urls ...``: harvest each dump and URL list not
    harvested yet into ``out_dir/parts/``, then merge the new parts into a new run
    (``merge_link_parts``) and write ``summary.links.json`` (this run's funnel).
    Links accumulate: a later call with next month's dump reads only that dump, and
    the runs together (``iter_links(out_dir)``) cover every month and every list
    harvested into ``out_dir``."""
    dumps = [Path(d) for d in dumps]
    url_lists = [Path(u) for u in url_lists]
    missing = [str(d) for d in dumps if not d.is_file()]
    if missing:
        raise FileNotFoundError(f"dump file(s) not found: {', '.join(missing)}")
    missing = [str(u) for u in url_lists if not u.is_file()]
    if missing:
        raise FileNotFoundError(f"URL list(s) not found: {', '.join(missing)}")
    started = time.time()
    total = sum(d.stat().st_size for d in dumps + url_lists)
    with progress(total=total, unit="B", unit_scale=True, desc="links") as bar:
        for d in dumps:
            harvest_dump_part(d, out_dir, cfg, bar=bar)
        for u in url_lists:
            harvest_url_list_part(u, out_dir, cfg, bar=bar)
    return merge_link_parts(out_dir, cfg, since=started)
