"""A whole corpus build, stage after stage, each reading what the one before wrote:

    links -> fetch (WARC) -> extract -> filter -> dedup -> shards (+ manifest)

Plain Python, no orchestrator: the Prefect flows wrap the same stage entry points.
The funnel (every stage's in/out/dropped-by-reason) is written to
``OUT/funnel.json`` and into the shard manifest's version entry.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .dedup import dedup_documents
from .extract import extract_documents, load_reddit_meta, read_documents, tasks_from_fetch
from .fetch import fetch_links
from .filters import filter_documents
from .links import harvest_dump_links, read_links
from .shards import write_shards
from .summary import RunSummary, atomic_write_json, plot_funnel


def run_build(dumps: list[str | Path], out_dir: str | Path, cfg: Config) -> list[RunSummary]:
    cfg.validate()
    missing = [str(d) for d in dumps if not Path(d).is_file()]
    if missing:
        raise FileNotFoundError(f"dump file(s) not found: {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = []
    stages.append(harvest_dump_links(dumps, out / "links", cfg.links))
    rows = read_links(out / "links").select(["id", "url", "url_norm"]).to_pylist()
    stages.append(fetch_links(rows, out / "fetch", cfg.fetch))
    stages.append(extract_documents(tasks_from_fetch(out / "fetch"), out / "extract", cfg.extract,
                                    load_reddit_meta([out / "links"])))
    stages.append(filter_documents(out / "extract", out / "filter", cfg.filter, write_dropped=True))
    stages.append(dedup_documents(out / "filter", out / "dedup", cfg.dedup))
    funnel = [s.to_dict() for s in stages]
    stages.append(write_shards(read_documents(out / "dedup", pattern="documents*.parquet"), out / "shards", cfg.shards,
                               {"config": cfg.to_dict(), "funnel": funnel, "dumps": [str(d) for d in dumps]}))
    atomic_write_json(out / "funnel.json", [s.to_dict() for s in stages])
    plot_funnel([s.to_dict() for s in stages], out / "funnel.png")
    return stages


def funnel_table(stages: list[RunSummary]) -> str:
    return "\n".join(s.table() for s in stages)
