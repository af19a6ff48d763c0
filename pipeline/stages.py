"""The stages of a corpus build, declared once.

Every stage says what it reads and writes under the build directory OUT, what it
counts, how its work is partitioned, and how to run it:

- ``run(ctx)``: the whole stage in this process (it may use its own process pool);
- ``parts(ctx)``: the partitions that have work in this build (dump files, fetch
  partitions, outcome logs, document parts), ``run_part(ctx, part)``: one of them, a
  pure function of its files and the configuration that may run in any process (a
  Dask worker), and ``finish(ctx, results)``: the stage's summary from its
  partitions' (and, for dedup, the global step after the signatures).

``pipeline.build.run_stages`` walks this list with a runner: the local runner (the
CLI's ``--no-prefect``) and the Prefect flow (``flows/corpus.py``) use the same
driver; on a cluster the flow maps ``run_part`` over ``parts`` as tasks. Stages whose
``fan_out`` is "always" are mapped on every runner (their partitions are cheap and
single-core); the others parallelise themselves on one machine and fan out only on
a cluster. Every stage resumes from its own on-disk state (see each module), so a
partition that is done is not redone and a killed build resumes.

Nothing here imports Prefect; every function is module-level (picklable by name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.core.config import Config
from pipeline.core.schema import FETCH_COLUMNS


@dataclass(frozen=True)
class BuildContext:
    """What every stage of one build gets: the build directory, the configuration,
    the inputs, when the build started, and the summaries of the stages before it."""

    out: Path
    cfg: Config
    dumps: tuple[str, ...] = ()
    url_lists: tuple[str, ...] = ()
    started: float = field(default_factory=time.time)
    funnel: tuple[dict, ...] = ()
    progress: bool = True  # progress bars (on a terminal); off in tasks

    def dir(self, name: str) -> Path:
        return self.out / name


@dataclass(frozen=True)
class Stage:
    name: str  # as the funnel names it
    reads: tuple[str, ...]  # directories under OUT (or "dumps")
    writes: str
    unit: str
    partition: str  # what one partition is, in words
    run: Callable[[BuildContext], dict]
    parts: Callable[[BuildContext], list[str]] | None = None
    run_part: Callable[[BuildContext, str], dict] | None = None
    finish: Callable[[BuildContext, list[dict]], dict] | None = None
    fan_out: str = "cluster"  # "always": parts are tasks on every runner; "cluster": only on a cluster
    retries: int = 0
    finish_name: str | None = None  # the finishing task's name (default: the stage's)
    doc: str = ""
    applies: Callable[[BuildContext], bool] | None = None  # None: always; else a build without it skips the stage


# --- links ------------------------------------------------------------------------------


def _links_parts(ctx: BuildContext) -> list[str]:
    return [str(p) for p in ctx.dumps] + [str(p) for p in ctx.url_lists]


def _links_part(ctx: BuildContext, path: str) -> dict:
    from pipeline.links.harvest import harvest_dump_part, harvest_url_list_part

    harvest = harvest_url_list_part if path in ctx.url_lists else harvest_dump_part
    return harvest(path, ctx.dir("links"), ctx.cfg.links)


def _links_finish(ctx: BuildContext, results: list[dict]) -> dict:
    from pipeline.links.merge import merge_link_parts

    summary = merge_link_parts(ctx.dir("links"), ctx.cfg.links, since=ctx.started).to_dict()
    _stop_without_links(ctx, summary)
    return summary


def _stop_without_links(ctx: BuildContext, summary: dict) -> None:
    """A build whose links directory holds no link at all (not in this run, not in any
    earlier one) has nothing to fetch: it stops here, saying what the inputs held,
    instead of failing stages later for want of documents."""
    from pipeline.core.errors import InputError

    if summary.get("out") or any(r.get("links") for r in _ledger_runs(ctx)):
        return
    import json

    from pipeline.links.harvest import PARTS

    # what every input harvested into this directory held (a retried finishing step finds
    # this run's parts merged already: the part files say it, not this run's summary)
    n_in, dropped = 0, {}
    for meta in (ctx.dir("links") / PARTS).glob("*.json"):
        m = json.loads(meta.read_text())
        n_in += m.get("in", 0)
        for r, n in (m.get("dropped") or {}).items():
            dropped[r] = dropped.get(r, 0) + n
    files = [Path(f).name for f in list(ctx.dumps) + list(ctx.url_lists)]
    reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items(), key=lambda x: -x[1]) if n) or "none"
    raise InputError(f"links found 0 links in {n_in:,} record(s) of {', '.join(files) or 'the inputs'} "
                     f"(dropped: {reasons}); nothing to fetch. Are these Reddit submission dumps or URL lists?")


def _ledger_runs(ctx: BuildContext) -> list[dict]:
    import json

    from pipeline.links.table import LEDGER, RUNS

    led = ctx.dir("links") / RUNS / LEDGER
    return json.loads(led.read_text()).get("runs", []) if led.is_file() else []


def _links_run(ctx: BuildContext) -> dict:
    return _links_finish(ctx, [_links_part(ctx, p) for p in _links_parts(ctx)])


# --- fetch ------------------------------------------------------------------------------


# Fetch reads only the links runs it has not read (FETCH_DIR/links_read.json, written
# when a fetch finished: a killed fetch reads them again, and the URLs already done are
# skipped by their outcome); URLs waiting for a retry come from the partitions' logs.
# A different [fetch] source than last time reads every run again (earlier dead links
# may now go to the archives).
LINKS_READ = "links_read.json"


def _unread_link_runs(ctx: BuildContext) -> list[int] | None:
    """The links runs fetch has not read (None: all of them)."""
    import json

    from pipeline.links.table import link_runs

    p = ctx.dir("fetch") / LINKS_READ
    if not p.is_file():
        return None
    done = json.loads(p.read_text())
    if done.get("source") != ctx.cfg.fetch.source:
        return None
    return [r for r in link_runs(ctx.dir("links")) if r not in done["runs"]]


def _fetch_rows(ctx: BuildContext):
    from pipeline.links.table import iter_links

    return iter_links(ctx.dir("links"), columns=FETCH_COLUMNS, runs=_unread_link_runs(ctx))


def _links_read(ctx: BuildContext, summary: dict, runs: list[int] | None) -> dict:
    from pipeline.core.io import atomic_write_json
    from pipeline.links.table import link_runs

    done = link_runs(ctx.dir("links"))
    atomic_write_json(ctx.dir("fetch") / LINKS_READ, {"runs": done, "source": ctx.cfg.fetch.source})
    summary["extra"]["link_runs_read"] = done if runs is None else runs
    return summary


def _fetch_parts(ctx: BuildContext) -> list[str]:
    from pipeline.fetch.stage import prepare_partitions

    return [str(p) for p in prepare_partitions(_fetch_rows(ctx), ctx.dir("fetch"), ctx.cfg.fetch)]


def _fetch_part(ctx: BuildContext, part: str) -> dict:
    from pipeline.fetch.stage import fetch_partition

    return fetch_partition(ctx.dir("fetch"), ctx.cfg.fetch, int(part))


def _fetch_finish(ctx: BuildContext, results: list[dict]) -> dict:
    from pipeline.fetch.stage import combine_fetch

    runs = _unread_link_runs(ctx)
    summary = combine_fetch(ctx.dir("fetch"), ctx.cfg.fetch, results).to_dict()
    ran = {r.get("extra", {}).get("partition") for r in results}
    if any(int(p.stem.split("-")[1]) not in ran for p in (ctx.dir("fetch") / "todo").glob("part-*.jsonl")):
        return summary  # a partition given up on a cluster: the next build reads these links runs again
    return _links_read(ctx, summary, runs)


def _fetch_run(ctx: BuildContext) -> dict:
    from pipeline.fetch.stage import fetch_links

    runs = _unread_link_runs(ctx)
    return _links_read(ctx, fetch_links(_fetch_rows(ctx), ctx.dir("fetch"), ctx.cfg.fetch).to_dict(), runs)


# --- lookup (before fetch, with a cc-index archive) -------------------------------------
#
# Every crawl of every cc-index archive asked about the build's new links in bulk: a task
# per (archive, crawl, key range of at most links_per_task links) on a cluster, each
# committing what its crawl said about its range; fetch then
# writes each partition's choice from them (and asks inline what a killed lookup left).


def _lookup_applies(ctx: BuildContext) -> bool:
    from pipeline.fetch.ccarchive import cc_archives

    return bool(cc_archives(ctx.cfg.fetch))


def _lookup_parts(ctx: BuildContext) -> list[str]:
    from pipeline.fetch.ccarchive import spool_lookup

    return spool_lookup(_fetch_rows(ctx), ctx.dir("fetch"), ctx.cfg.fetch)


def _lookup_part(ctx: BuildContext, part: str) -> dict:
    from pipeline.fetch.stage import lookup_index_part

    return lookup_index_part(ctx.dir("fetch"), ctx.cfg.fetch, part)


def _lookup_finish(ctx: BuildContext, results: list[dict]) -> dict:
    """In = out = the links asked (none is dropped here: fetch decides); what each crawl
    cost and said in extra and notes."""
    import pyarrow.parquet as pq

    from pipeline.core.summary import RunSummary
    from pipeline.fetch.ccarchive import TODO, cc_archives, store_dir

    s = RunSummary("lookup", unit="links")
    for a in cc_archives(ctx.cfg.fetch):
        todo = store_dir(ctx.dir("fetch"), a) / TODO
        s.n_in += pq.ParquetFile(todo).metadata.num_rows if todo.is_file() else 0
    s.n_out = s.n_in
    keys = ("links_asked", "rows", "row_groups", "row_groups_read", "requests", "bytes", "tail_bytes")
    s.extra["crawls"] = {r["part"]: {k: r.get(k, 0) for k in keys} for r in results}
    errors = {r["part"]: r["crawl_errors"] for r in results if r.get("crawl_errors")}
    if errors:
        s.extra["crawl_errors"] = errors
        reasons: dict[str, int] = {}
        for r in results:
            for why, n in (r.get("error_reasons") or {}).items():
                reasons[why] = reasons.get(why, 0) + n
        s.extra["index_errors"] = reasons
        s.note("index read errors: " + ", ".join(f"{why} {n}" for why, n in sorted(reasons.items())))
        s.note(f"{len(errors)} crawl(s) could not be read: asked again by fetch, else by the next build")
    s.note(f"{len(results)} crawl lookup(s); {sum(r.get('rows', 0) for r in results):,} capture row(s) found, "
           f"{sum(r.get('bytes', 0) for r in results) / 1e6:,.1f} MB of index read")
    s.close(ctx.dir("fetch") / "ccindex")
    return s.to_dict()


def _lookup_run(ctx: BuildContext) -> dict:
    return _lookup_finish(ctx, [_lookup_part(ctx, p) for p in _lookup_parts(ctx)])


# --- extract ----------------------------------------------------------------------------


def _extract_parts(ctx: BuildContext) -> list[str]:
    from pipeline.extract.stage import pending_logs

    return pending_logs(ctx.dir("fetch"), ctx.dir("extract"))


def _extract_part(ctx: BuildContext, label: str) -> dict:
    from pipeline.extract.stage import extract_log

    # one process per partition on a cluster: the cluster's workers are the parallelism
    return extract_log(ctx.dir("fetch"), ctx.dir("extract"), ctx.cfg.extract, label, [ctx.dir("links")], workers=1,
                       progress_bar=False)


def _extract_finish(ctx: BuildContext, results: list[dict]) -> dict:
    from pipeline.extract.stage import finish_extract

    return finish_extract(ctx.dir("extract"), results).to_dict()


def _extract_run(ctx: BuildContext) -> dict:
    from pipeline.extract.stage import extract_fetched

    return extract_fetched(ctx.dir("fetch"), ctx.dir("extract"), ctx.cfg.extract, [ctx.dir("links")],
                           progress_bar=ctx.progress).to_dict()


# --- filter -----------------------------------------------------------------------------


def _filter_parts(ctx: BuildContext) -> list[str]:
    from pipeline.filters.stage import pending_filter_parts

    return [str(p) for p in pending_filter_parts(ctx.dir("extract"), ctx.dir("filter"))]


def _filter_part(ctx: BuildContext, part: str) -> dict:
    from pipeline.filters.stage import filter_documents

    return filter_documents(part, ctx.dir("filter"), ctx.cfg.filter, write_dropped=True).to_dict()


def _filter_finish(ctx: BuildContext, results: list[dict]) -> dict:
    from pipeline.core.summary import combine_summaries

    s = combine_summaries("filter", "documents", results)
    for r in results:
        for k, v in r.get("extra", {}).items():
            if k == "mojibake_fixed":
                s.extra[k] = s.extra.get(k, 0) + v
            elif k == "damaged_parts":
                s.extra.setdefault(k, []).extend(v)
    s.close(ctx.dir("filter"))
    return s.to_dict()


def _filter_run(ctx: BuildContext) -> dict:
    return _filter_finish(ctx, [_filter_part(ctx, p) for p in _filter_parts(ctx)])


# --- dedup ------------------------------------------------------------------------------


def _dedup_parts(ctx: BuildContext) -> list[str]:
    from pipeline.dedup.stage import pending_parts

    return [str(p) for p in pending_parts(ctx.dir("filter"), ctx.dir("dedup"), ctx.cfg.dedup)]


def _dedup_part(ctx: BuildContext, part: str) -> dict:
    from pipeline.dedup.signatures import part_signatures
    from pipeline.dedup.stage import signature_file

    return part_signatures(part, signature_file(ctx.dir("dedup"), Path(part)), ctx.cfg.dedup)


def _dedup_finish(ctx: BuildContext, results: list[dict]) -> dict:
    """The global step: candidates from the band keys of the new signatures (made by the
    partitions; any missing are made here), verification, clusters, the keep rule."""
    from pipeline.dedup.stage import dedup_documents

    return dedup_documents(ctx.dir("filter"), ctx.dir("dedup"), ctx.cfg.dedup).to_dict()


def _dedup_run(ctx: BuildContext) -> dict:
    return _dedup_finish(ctx, [])


# --- shards -----------------------------------------------------------------------------


def _shards_run(ctx: BuildContext) -> dict:
    from pipeline.shards.stage import shard_documents

    info = {"config": ctx.cfg.to_dict(), "funnel": list(ctx.funnel), "dumps": list(ctx.dumps) + list(ctx.url_lists)}
    return shard_documents(ctx.dir("dedup"), ctx.dir("shards"), ctx.cfg.shards, info).to_dict()


STAGES: tuple[Stage, ...] = (
    Stage("links", ("dumps",), "links", "submissions", "one per dump file or URL list",
          _links_run, _links_parts, _links_part, _links_finish, fan_out="always", retries=1, finish_name="links-merge",
          doc="outbound links of submissions with >= 3 karma; each input harvested once, then merged"),
    Stage("lookup", ("links",), "fetch/ccindex", "links", "one per cc-index archive, crawl and key range",
          _lookup_run, _lookup_parts, _lookup_part, _lookup_finish, retries=1, finish_name="lookup-combine",
          applies=_lookup_applies, doc="the new links joined in bulk with Common Crawl's index (cc-index archives only)"),
    Stage("fetch", ("links",), "fetch", "urls", "one per hash of the URL's host (politeness stays inside one)",
          _fetch_run, _fetch_parts, _fetch_part, _fetch_finish, retries=2, finish_name="fetch-combine",
          doc="pages into WARC, politely, safely, resumably; archives for dead links"),
    Stage("extract", ("fetch", "links"), "extract", "pages", "one per fetch outcome log (its unread lines)",
          _extract_run, _extract_parts, _extract_part, _extract_finish, retries=1, finish_name="extract-combine",
          doc="main text with trafilatura, consent and paywall prompts removed, short extractions of non-articles rescued or widened to their container, forum posts"),
    Stage("filter", ("extract",), "filter", "documents", "one per extracted part",
          _filter_run, _filter_parts, _filter_part, _filter_finish, fan_out="always", retries=1,
          finish_name="filter-combine", doc="Wikipedia, length, language, junk; dropped documents kept aside"),
    Stage("dedup", ("filter",), "dedup", "documents", "signatures: one per filtered part; then one global step",
          _dedup_run, _dedup_parts, _dedup_part, _dedup_finish, finish_name="dedup",
          doc="MinHash LSH near-duplicates against every document kept so far"),
    Stage("shard", ("dedup",), "shards", "documents", "one (a new version's shards)", _shards_run,
          doc="Parquet shards under a new manifest version, dataset card"),
)

BY_NAME = {s.name: s for s in STAGES}


def part_label(stage: Stage, part: str) -> str:
    """A partition as the UI names its task run: RS_2017-07, p0003, f0003, part-00000."""
    if stage.name == "links":
        from pipeline.core.io import input_label

        return input_label(part)
    if stage.name == "fetch":
        return f"p{int(part):04d}"
    if stage.name == "lookup":
        return part.replace("|", "-").replace("/", "of")
    return Path(part).name.split(".")[0]


def describe() -> str:
    """The registry as a table (``webtext stages``)."""
    rows = [("stage", "reads", "writes", "unit", "partitions", "fans out")]
    rows += [(s.name, ", ".join(s.reads), s.writes, s.unit, s.partition,
              "everywhere" if s.fan_out == "always" else ("on a cluster" if s.parts else "no")) for s in STAGES]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
