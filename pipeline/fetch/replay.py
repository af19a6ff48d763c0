"""Replay: pages for links from existing WARC files (anyone's) instead of the web."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pipeline.core.summary import RunSummary
from pipeline.fetch.outcomes import OUTCOMES, OutcomeLog
from pipeline.fetch.stage import LAYOUT
from pipeline.fetch.warcstore import index_warcs

# --- replay -------------------------------------------------------------------------




def replay_links(links: Iterable[dict], out_dir: str | Path, warcs: list[str | Path]) -> RunSummary:
    """``webtext fetch --from-warc``: outcomes from existing WARC files, no network.

    An outcome points at the record in the source WARC file (absolute path)."""
    missing = [str(w) for w in warcs if not Path(w).is_file()]
    if missing:
        raise FileNotFoundError(f"WARC file(s) not found: {', '.join(missing)}")
    out = Path(out_dir)
    if (out / LAYOUT).is_file():
        from pipeline.core.errors import ConfigError

        raise ConfigError(f"{out} holds a fetch of the web (partitions.json); replay into a directory of its own")
    out.mkdir(parents=True, exist_ok=True)
    damaged: list[dict] = []
    index = index_warcs(warcs, damaged)
    log = OutcomeLog(out / OUTCOMES)
    summary = RunSummary("fetch", unit="urls")
    summary.note(f"replay from {len(warcs)} WARC file(s) holding {len(index):,} responses")
    for d in damaged:
        summary.note(f"{d['file']}: bytes {d['start']:,}-{d['end']:,} unreadable ({d['error']}); URLs whose records were "
                     "there are not_in_archive")
    if damaged:
        summary.extra["damaged_warc_regions"] = damaged
    try:
        for r in links:
            summary.n_in += 1
            if r["url_norm"] in log.done:
                summary.drop("already_fetched")
                continue
            hit = index.get(r["url_norm"])
            rec = {"id": r.get("id"), "url": r["url"], "url_norm": r["url_norm"]}
            if hit is None:
                rec["outcome"] = "not_in_archive"
            else:
                path, offset, length, status, date = hit
                rec.update(outcome="ok" if 200 <= status < 300 else f"http_{status}", status=status,
                           warc_file=path, warc_offset=offset, warc_length=length, fetched_at=date, replayed=True)
            log.add(rec)
            if rec["outcome"] == "ok":
                summary.n_out += 1
            else:
                summary.drop(rec["outcome"])
    finally:
        log.close()
    summary.close(out)
    return summary
