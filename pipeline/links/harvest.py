"""One input (a dump file or a URL list) -> a part of selected links, each input harvested once."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import orjson
import pyarrow.compute as pc

from pipeline.core import interrupt
from pipeline.core.config import LinksConfig
from pipeline.core.io import (
    atomic_write_bytes,
)
from pipeline.core.summary import progress
from pipeline.links.select import BLOCKLIST_PATH, LinkSelector
from pipeline.links.table import write_links_table
from pipeline.sources.dumps import (
    DumpReadStats,
    iter_submission_batches,
)
from pipeline.sources.urllists import UrlListStats, iter_url_list

PARTS = "parts"


def dump_fingerprint(path: str | Path) -> str:
    """A content fingerprint of a dump file: its size and its first and last MiB.

    Cheap on a 40 GB month, survives copying (unlike mtime), changes when the
    file is re-downloaded whole or grown."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(size - (1 << 20))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def config_fingerprint(cfg: LinksConfig) -> str:
    return _fingerprint_of({k: getattr(cfg, k) for k in cfg.__dataclass_fields__})


def _fingerprint_of(d: dict) -> str:
    """The fingerprint of a configuration given as a dict (the same for a LinksConfig
    and for its copy read back from a summary's JSON: both serialise alike)."""
    if d.get("blocklist_path") is None:
        d["blocklist_sha"] = hashlib.sha256(BLOCKLIST_PATH.read_bytes()).hexdigest()
    else:
        d["blocklist_sha"] = hashlib.sha256(Path(d["blocklist_path"]).read_bytes()).hexdigest()
    return hashlib.sha256(orjson.dumps(d, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]


def part_path(out_dir: str | Path, dump: str | Path, cfg: LinksConfig, kind: str = "dump") -> Path:
    name = Path(dump).name.split(".")[0]
    if kind == "urls":  # the same file given as a dump and as a list never shares a part
        name = f"urls-{name}"
    return Path(out_dir) / PARTS / f"{name}.{dump_fingerprint(dump)}.{config_fingerprint(cfg)}.parquet"


def harvest_dump_part(dump: str | Path, out_dir: str | Path, cfg: LinksConfig, bar=None) -> dict:
    """Harvest one dump file into ``out_dir/parts/NAME.DUMPFP.CFGFP.parquet``.

    The part holds the dump's accepted submissions grouped by URL, before the
    rules that need every dump (the OpenWebText2 score sum, duplicates across
    months); its ``.json`` beside it holds the submission-level funnel. A part
    that exists is not read again: this is what makes builds incremental."""
    return _harvest_part(dump, out_dir, cfg, "dump", bar)


def harvest_url_list_part(path: str | Path, out_dir: str | Path, cfg: LinksConfig, bar=None) -> dict:
    """Harvest one URL list (pipeline/sources/urllists.py) into ``out_dir/parts/urls-NAME...``,
    like a dump: the same rules, blocklist and dedup, merged with the dumps' parts."""
    return _harvest_part(path, out_dir, cfg, "urls", bar)


def _harvest_part(dump: str | Path, out_dir: str | Path, cfg: LinksConfig, kind: str, bar=None,
                  fast: bool = True) -> dict:
    """``fast=False``: a dump read line by line and selected submission by submission
    (the reference the fast path is tested against, tests/pipeline/test_links_fast.py)."""
    dump = Path(dump)
    if not dump.is_file():
        raise FileNotFoundError(f"{'URL list' if kind == 'urls' else 'dump file'} not found: {dump}")
    part = part_path(out_dir, dump, cfg, kind)
    meta_path = part.with_suffix(".json")
    if part.is_file() and meta_path.is_file():
        return orjson.loads(meta_path.read_bytes())
    selector = LinkSelector(cfg, from_list=kind == "urls")
    summary = selector.summary
    stats = DumpReadStats(str(dump)) if kind == "dump" else UrlListStats(str(dump))
    own_bar = bar is None
    if own_bar:
        bar = progress(total=dump.stat().st_size, unit="B", unit_scale=True, desc=f"links {dump.name}")
    if kind == "dump":
        add = selector.add_batch if fast else lambda subs: [selector.add(s) for s in subs]
        for subs in iter_submission_batches(dump, stats, progress_bar=bar, per_line=not fast):
            interrupt.check("links")  # a stop of the build (Ctrl-C); the dump is read again next time
            add(subs)
        selector.flush()  # its counts complete before the reader's are added
    else:
        for sub in iter_url_list(dump, stats, progress_bar=bar):
            interrupt.check("links")
            selector.add(sub)
    if own_bar:
        bar.close()
    # Lines that never became a submission are counted as dropped, by reason.
    for reason, n in stats.bad.items():
        summary.n_in += n
        summary.drop(reason, n)
    notes = []
    if stats.error:
        notes.append(
            f"{dump.name}: archive truncated or corrupt ({stats.error}); read {stats.records:,} records "
            f"from {stats.compressed_bytes_read:,} of {stats.compressed_bytes_total:,} compressed bytes"
        )
    if kind == "urls" and stats.no_score:
        notes.append(f"{dump.name}: {stats.no_score:,} of {stats.records:,} URL-list entries carry no score: a plain "
                     "URL list has no karma and was filtered by whoever made it, so links.min_score is not applied "
                     "to them (score null in links.parquet)")
    if kind == "urls" and stats.no_created and (cfg.after_ts is not None or cfg.before_ts is not None):
        notes.append(f"{dump.name}: {stats.no_created:,} of {stats.records:,} URL-list entries carry no date: the "
                     "date window is not applied to them (created_utc 0)")
    table = selector.table(per_url_rules=False)
    accepted = int(pc.sum(table.column("n_submissions")).as_py() or 0)
    write_links_table(table, part)
    meta = {"dump": str(dump), "kind": kind, "part": part.name, "in": summary.n_in, "accepted": accepted,
            "dropped": dict(summary.dropped), "file": stats.to_dict(), "notes": notes, "harvested_at": time.time()}
    assert summary.n_in == accepted + summary.n_dropped, meta
    atomic_write_bytes(meta_path, orjson.dumps(meta))
    return meta
