"""Main-text extraction from WARC response records into Parquet documents.

Reads any WARC with response records (ours, Common Crawl's, a web archive's),
or exactly the records a fetch directory's outcomes point at. trafilatura
extracts the main text with settings chosen by measurement
(bench/bench_extract.py): ``include_comments=False``, URL passed; consent banners
and subscription prompts are removed first, and an extraction that kept little of
a page that is not an article is rescued after, or widened to the container of what
trafilatura kept (its headings and lists); forum threads give their posts
(``extract_page``). The title is
read from the page's ``<title>``/``og:title`` (cheap; a first line of the text that
repeats it leaves the text, which is the body) and the publication date
from the page's metadata (``with_date``, on by default; htmldate's fast mode where the
metadata has none with ``date_htmldate``), since trafilatura's full metadata pass costs a third of the
extraction time.

Work is split into chunks; each chunk writes ``part-NNNNN.parquet`` (kept
documents) and then ``part-NNNNN.done.json`` (every key it handled, kept or
dropped with a reason), both atomically. A restarted run skips every key in a
done file, so nothing is lost or repeated. Pages are extracted on all cores; a
page that makes the extractor raise or run past ``page_timeout_s`` is dropped
with a reason and the run goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Iterable, Iterator

import orjson
import pyarrow as pa

from pipeline.core.config import ExtractConfig
from pipeline.core.io import atomic_write_bytes, atomic_write_json, write_parquet_atomic
from pipeline.core.schema import DOC_SCHEMA
from pipeline.core.summary import RunSummary, progress
from pipeline.core.urls import InvalidURL, normalize_url, url_id
from pipeline.extract.worker import (
    ExtractorUnavailable,
    check_extractor,
    count_steps,
    extracted,
    note_steps,
    page_pool,
)

CHUNK = 256


def tasks_from_warcs(paths: Iterable[str | Path], damaged: list[dict] | None = None) -> Iterator[tuple[str, int, str | None]]:
    """The response records of WARC files (anyone's) as extraction tasks. Damaged
    stretches are skipped and appended to DAMAGED (see ``io.iter_warc_records``)."""
    from pipeline.core.io import iter_warc_records

    damaged = damaged if damaged is not None else []
    for p in paths:
        p = str(Path(p).resolve())
        for offset, _, record in iter_warc_records(p, damaged):
            if record.rec_type == "response":
                uri = record.rec_headers.get_header("WARC-Target-URI")
                try:
                    key = normalize_url(uri)
                except (InvalidURL, TypeError):
                    key = None  # no or a bad WARC-Target-URI: the worker records invalid_url
                yield p, offset, key


def tasks_from_fetch(fetch_dir: str | Path) -> Iterator[tuple[str, int, str | None]]:
    from pipeline.fetch.outcomes import read_outcomes

    fetch_dir = Path(fetch_dir)
    for key, rec in read_outcomes(fetch_dir).items():
        if rec.get("outcome") == "ok" and rec.get("warc_file"):
            wf = Path(rec["warc_file"])
            path = wf if wf.is_absolute() else fetch_dir / "warc" / wf
            yield str(path.resolve()), rec["warc_offset"], key


def load_reddit_meta(links_paths: Iterable[str | Path]) -> dict[str, dict]:
    from pipeline.links.table import read_links

    meta: dict[str, dict] = {}
    for p in links_paths:
        t = read_links(p).select(["url_norm", "score", "score_total", "subreddits", "reddit_ids", "created_utc"])
        for row in t.to_pylist():
            old = meta.get(row["url_norm"])
            if old is None or (row["score"] or 0) > (old["score"] or 0):
                meta[row["url_norm"]] = row
    return meta


def done_keys(out_dir: Path) -> tuple[set[str], int]:
    keys: set[str] = set()
    n = 0
    for p in sorted(out_dir.glob("part-*.done.json")):
        d = orjson.loads(p.read_bytes())
        keys.update(d["kept"])
        keys.update(k for k, _ in d["dropped"])
        n = max(n, int(p.name.split("-")[1].split(".")[0]) + 1)
    return keys, n


def extract_documents(
    tasks: Iterable[tuple[str, int, str | None]],
    out_dir: str | Path,
    cfg: ExtractConfig,
    reddit_meta: dict[str, dict] | None = None,
    start_method: str = "forkserver",
    damaged: list[dict] | None = None,
) -> RunSummary:
    """``webtext extract``: run the tasks not yet done; write parts and the summary.

    Workers start from a fork server (a fresh single-threaded process), not by
    forking this process: a fork of a process with threads (Prefect's client,
    a task runner) can copy a held lock and hang the child.

    DAMAGED: the list ``tasks_from_warcs`` fills; each damaged WARC stretch counts
    as one unit dropped as ``warc_damaged`` and is named in the summary."""
    check_extractor()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Parts left without a done file by a killed run are not counted; they will be rewritten.
    for p in out.glob("part-*.parquet"):
        if not p.with_name(p.name.replace(".parquet", ".done.json")).exists():
            p.unlink()
    seen, next_part = done_keys(out)
    reddit_meta = reddit_meta or {}
    summary = RunSummary("extract", unit="pages")
    todo = []
    in_run: set = set()
    for t in tasks:
        summary.n_in += 1
        key = t[2]
        if key is not None and key in seen:
            summary.drop("already_extracted")
        elif key is not None and key in in_run:
            summary.drop("duplicate_capture")
        else:
            if key is not None:
                in_run.add(key)
            todo.append(t)
    for d in damaged or []:
        summary.n_in += 1
        summary.drop("warc_damaged")
        summary.note(f"{d['file']}: bytes {d['start']:,}-{d['end']:,} unreadable ({d['error']}); the records "
                     "around them were read")
    if damaged:
        summary.extra["damaged_warc_regions"] = list(damaged)
    workers = cfg.workers or os.cpu_count() or 1
    kept_total = 0
    with page_pool(cfg, workers, start_method) as pool, \
            progress(total=len(todo), desc="extract", unit="pages") as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            docs, kept, dropped = [], [], []
            for key, doc, reason in extracted(pool, chunk):
                bar.update(1)
                if doc is None:
                    dropped.append((key, reason))
                    summary.drop(reason.split(":", 1)[0])
                    continue
                if doc["url_norm"] in seen:
                    dropped.append((key, "duplicate_capture"))
                    summary.drop("duplicate_capture")
                    continue
                seen.add(doc["url_norm"])
                count_steps(summary, doc)
                m = reddit_meta.get(doc["url_norm"], {})
                doc.update(
                    id=url_id(doc["url_norm"]), score=m.get("score"), score_total=m.get("score_total"),
                    subreddits=m.get("subreddits"), reddit_ids=m.get("reddit_ids"), created_utc=m.get("created_utc"),
                )
                docs.append(doc)
                kept.append(doc["url_norm"])
            part = out / f"part-{next_part:05d}.parquet"
            if docs:
                write_parquet_atomic(pa.Table.from_pylist(docs, schema=DOC_SCHEMA), part)
            atomic_write_bytes(part.with_name(f"part-{next_part:05d}.done.json"),
                               orjson.dumps({"kept": kept, "dropped": dropped}))
            next_part += 1
            kept_total += len(docs)
    summary.n_out = kept_total
    note_steps(summary)
    summary.close(out)
    return summary


# --- the build's extract: a fetch directory's outcome logs, each read once ------------------
#
# A fetch directory's outcome logs only grow (one line per attempt). Each log is a
# partition of this stage: a ledger per log (LEDGER_DIR/<label>.json) records how many
# of its bytes were consumed and the next part number, so a later build reads only
# the lines appended since, and nothing is read twice. A chunk of CHUNK pages writes
# part-<label>-NNNNN.parquet, then the ledger: parts numbered at or past the ledger's
# next_part are a killed run's and are deleted and redone.

LEDGER_DIR = "ledger"
META_FIELDS = ("score", "score_total", "subreddits", "reddit_ids", "created_utc")


def outcome_logs(fetch_dir: str | Path) -> dict[str, Path]:
    """{label: outcome log} of a fetch directory: the single log of the first layout
    (label ``f-all``) and the per-partition logs (``outcomes/part-0003.jsonl`` -> ``f0003``)."""
    fetch_dir = Path(fetch_dir)
    logs = {}
    for name in ("outcomes.jsonl", "outcomes.legacy.jsonl"):  # the second: the first once split (fetch.layout)
        if (fetch_dir / name).is_file() and "f-all" not in logs:
            logs["f-all"] = fetch_dir / name
    for p in sorted((fetch_dir / "outcomes").glob("part-*.jsonl")):
        logs["f" + p.stem.split("-", 1)[1]] = p
    return logs


def _start_of(fetch_dir: Path, label: str) -> int:
    """Where a partition log's own lines begin: after the lines fetch copied into it
    from the first layout's single log, which extract reads as that log (``f-all``)."""
    lay = fetch_dir / "partitions.json"
    if label == "f-all" or not lay.is_file():
        return 0
    return int(orjson.loads(lay.read_bytes()).get("legacy_prefix", {}).get(label[1:], 0))


def _ledger(out: Path, label: str, fetch_dir: Path) -> dict:
    p = out / LEDGER_DIR / f"{label}.json"
    if p.is_file():
        return orjson.loads(p.read_bytes())
    return {"consumed": _start_of(fetch_dir, label), "next_part": 0, "pages": 0}


def pending_logs(fetch_dir: str | Path, out_dir: str | Path) -> list[str]:
    """The labels of the outcome logs with lines this stage has not read yet."""
    out, fetch_dir = Path(out_dir), Path(fetch_dir)
    return [label for label, p in outcome_logs(fetch_dir).items()
            if p.stat().st_size > _ledger(out, label, fetch_dir)["consumed"]]


def _ok_records(path: Path, start: int, bad: list[int]) -> Iterator[tuple[dict, int]]:
    """(ok outcome record, byte offset just past its line) from START on; only whole
    lines (a line still being written is left for the next run). Unreadable lines
    are counted in BAD."""
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        for line in fh:
            if not line.endswith(b"\n"):
                break
            pos += len(line)
            if not line.strip():
                yield None, pos
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad[0] += 1
                yield None, pos
                continue
            if rec.get("outcome") == "ok" and rec.get("warc_file"):
                yield rec, pos
            else:
                yield None, pos


def extract_log(fetch_dir: str | Path, out_dir: str | Path, cfg: ExtractConfig, label: str,
                links_dirs: Iterable[str | Path] = (), workers: int | None = None,
                start_method: str = "forkserver", progress_bar: bool = True) -> dict:
    """One partition of the build's extract: the pages of outcome log LABEL of FETCH_DIR
    not read by an earlier run. A pure function of its files (any process, a Dask
    worker's included). Returns its summary as a dict.

    Reddit fields come with each ok outcome record (fetch copies them from the
    links); records of an older fetch that lack them are joined from LINKS_DIR."""
    check_extractor()
    fetch_dir, out = Path(fetch_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = outcome_logs(fetch_dir)[label]
    led = _ledger(out, label, fetch_dir)
    for p in out.glob(f"part-{label}-*.parquet"):  # a killed run's uncommitted parts
        if int(p.stem.rsplit("-", 1)[1]) >= led["next_part"]:
            p.unlink()
    # A directory of the first layout (part-NNNNN.done.json per chunk): its keys are done.
    done_before = done_keys(out)[0] if not (out / LEDGER_DIR / f"{label}.json").is_file() else set()
    summary = RunSummary("extract", unit="pages")
    summary.extra.update(log=label, pages_done_before=led["pages"])
    meta_of_links: dict | None = None
    bad = [0]
    end = log.stat().st_size
    in_run: set[str] = set()
    n_workers = workers or cfg.workers or os.cpu_count() or 1

    def commit(pool, chunk: list, records: dict, upto: int) -> None:
        nonlocal meta_of_links
        docs = []
        for key, doc, reason in extracted(pool, chunk):
            if doc is None:
                summary.drop(reason.split(":", 1)[0])
                continue
            count_steps(summary, doc)
            rec = records[key]
            if not any(f in rec for f in META_FIELDS) and links_dirs:
                if meta_of_links is None:  # an outcome log written before fetch carried them
                    meta_of_links = load_reddit_meta(links_dirs)
                rec = meta_of_links.get(key, {})
            doc.update(id=url_id(key), **{f: rec.get(f) for f in META_FIELDS})
            docs.append(doc)
        part = out / f"part-{label}-{led['next_part']:05d}.parquet"
        if docs:
            write_parquet_atomic(pa.Table.from_pylist(docs, schema=DOC_SCHEMA), part)
        summary.n_out += len(docs)
        led.update(consumed=upto, next_part=led["next_part"] + 1, pages=led["pages"] + len(chunk))
        atomic_write_json(out / LEDGER_DIR / f"{label}.json", led)

    if mp.current_process().daemon:
        raise ExtractorUnavailable(
            "extract runs trafilatura in child processes, which a daemonic process (a Dask worker started with "
            "distributed.worker.daemon: true, Dask's default) may not start: start the workers with "
            "DASK_DISTRIBUTED__WORKER__DAEMON=False (webtext's own local cluster does)")
    with page_pool(cfg, n_workers, start_method) as pool, \
            progress(total=end - led["consumed"], desc=f"extract {label}", unit="B", unit_scale=True,
                     disable=None if progress_bar else True) as bar:
        chunk, records, pos = [], {}, led["consumed"]
        for rec, pos_next in _ok_records(log, led["consumed"], bad):
            if pos_next > end:  # appended after this run started: the next run's
                break
            bar.update(pos_next - pos)
            pos = pos_next
            if rec is None:
                continue
            summary.n_in += 1
            key = rec["url_norm"]
            if key in done_before:
                summary.drop("already_extracted")
            elif key in in_run or key in records:
                summary.drop("duplicate_capture")
            else:
                wf = Path(rec["warc_file"])
                path = wf if wf.is_absolute() else fetch_dir / "warc" / wf
                chunk.append((str(path.resolve()), rec["warc_offset"], key))
                records[key] = rec
            if len(chunk) >= CHUNK:
                commit(pool, chunk, records, pos)
                in_run.update(records)
                chunk, records = [], {}
        if chunk or pos > led["consumed"]:
            commit(pool, chunk, records, pos)
    if bad[0]:
        summary.note(f"{log.name}: {bad[0]} unreadable line(s) skipped")
        summary.extra["unreadable_outcome_lines"] = bad[0]
    summary.check()
    return summary.finish().to_dict()


def extract_fetched(fetch_dir: str | Path, out_dir: str | Path, cfg: ExtractConfig,
                    links_dirs: Iterable[str | Path] = (), progress_bar: bool = True) -> RunSummary:
    """The build's extract: every outcome log's new pages (``extract_log`` for each
    log with unread lines, one after another, each on all cores); writes and returns
    the stage's summary."""
    parts = [extract_log(fetch_dir, out_dir, cfg, label, links_dirs, progress_bar=progress_bar)
             for label in pending_logs(fetch_dir, out_dir)]
    return finish_extract(out_dir, parts)


def finish_extract(out_dir: str | Path, parts: list[dict]) -> RunSummary:
    """The stage's summary from its partitions' (``extract_log``) summaries."""
    from pipeline.core.summary import combine_summaries

    s = combine_summaries("extract", "pages", parts)
    s.extra["logs_read"] = [p["extra"]["log"] for p in parts]
    # pages extracted by earlier runs: those of the logs read now, and of every other log
    others = sum(orjson.loads(p.read_bytes()).get("pages", 0) for p in (Path(out_dir) / LEDGER_DIR).glob("*.json")
                 if p.stem not in s.extra["logs_read"])
    s.extra["pages_done_before"] = others + sum(p["extra"].get("pages_done_before", 0) for p in parts)
    bad = sum(p["extra"].get("unreadable_outcome_lines", 0) for p in parts)
    if bad:
        s.extra["unreadable_outcome_lines"] = bad
    steps: dict[str, int] = {}
    for p in parts:
        for k, v in p["extra"].get("extraction_steps", {}).items():
            steps[k] = steps.get(k, 0) + v
    s.extra["extraction_steps"] = steps
    note_steps(s)
    s.close(out_dir)
    return s


def read_documents(src: str | Path, columns: list[str] | None = None, pattern: str = "*.parquet") -> pa.Table:
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.glob(pattern) if not p.name.startswith("."))
    if not files:
        return DOC_SCHEMA.empty_table() if columns is None else DOC_SCHEMA.empty_table().select(columns)
    from pipeline.core.io import read_part

    return pa.concat_tables([read_part(f, columns=columns) for f in files], promote_options="default")
