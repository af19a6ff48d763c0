"""Prefect 3 flows over the pipeline and model entry points (orchestration, no logic).

``build_corpus``: links (one task per dump file, cached by the file's content
fingerprint and the configuration: INPUTS + TASK_SOURCE, results on disk under
OUT/.prefect) -> merge -> fetch -> extract -> filter (one task per extracted
part) -> dedup -> shards. The per-file tasks are what a Dask task runner fans
out. Every other stage resumes from its own on-disk state (fetch outcomes,
extract done files, the filter log, the dedup index, the shard manifest), which
is finer than a cache key: a killed stage keeps the work it finished.

``train_model``: tokenize the newest shards -> train -> evaluate -> sample.

Both publish what they did as artifacts (markdown funnel / eval table, links to
the plots), visible in the Prefect UI.
"""

from __future__ import annotations

import glob
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from pipeline.config import Config, ConfigError
from pipeline.summary import RunSummary, atomic_write_json, plot_funnel

CACHE = INPUTS + TASK_SOURCE


# --- checks before any work ----------------------------------------------------------------


def expand_dumps(dumps: list[str]) -> list[str]:
    """Paths and glob patterns (a scheduled build reads ``RS_*.zst`` and so sees new months)."""
    out: list[str] = []
    for d in dumps:
        if any(c in d for c in "*?["):
            found = sorted(glob.glob(d))
            if not found:
                raise ConfigError(f"no dump file matches {d!r}")
            out.extend(found)
        else:
            out.append(d)
    return list(dict.fromkeys(out))


def check_dask_address(address: str, timeout_s: float = 5.0) -> None:
    u = urlsplit(address if "://" in address else f"tcp://{address}")
    if not u.hostname or not u.port:
        raise ConfigError(f"--dask-address {address!r}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((u.hostname, u.port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"Dask scheduler at {address} is unreachable: {exc}") from exc


def preflight(dumps: list[str], out: str | Path, cfg: Config, dask_address: str | None = None) -> list[str]:
    """Fails with a clear message, before any work, on: a bad configuration, a
    missing dump file, an output directory that cannot be written, an
    unreachable Dask scheduler. Returns the expanded dump list."""
    cfg.validate()
    files = expand_dumps(dumps)
    if not files:
        raise ConfigError("no dump files given")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"dump file(s) not found: {', '.join(missing)}")
    if dask_address:
        check_dask_address(dask_address)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable: {exc}") from exc
    return files


# --- corpus tasks -------------------------------------------------------------------------


@task(name="links-dump", cache_policy=CACHE, persist_result=True, retries=1, retry_delay_seconds=5)
def harvest_dump_task(dump: str, fingerprint: str, links_dir: str, links_cfg: dict) -> dict:
    from pipeline.links import harvest_dump_part

    return harvest_dump_part(dump, links_dir, Config.from_dict({"links": links_cfg}).links)


@task(name="links-merge")
def merge_links_task(links_dir: str, links_cfg: dict, since: float) -> dict:
    from pipeline.links import merge_link_parts

    return merge_link_parts(links_dir, Config.from_dict({"links": links_cfg}).links, since).to_dict()


@task(name="fetch", retries=2, retry_delay_seconds=10)
def fetch_task(links_dir: str, fetch_dir: str, fetch_cfg: dict) -> dict:
    from pipeline.fetch import fetch_links
    from pipeline.links import read_links

    rows = read_links(links_dir).select(["id", "url", "url_norm"]).to_pylist()
    return fetch_links(rows, fetch_dir, Config.from_dict({"fetch": fetch_cfg}).fetch).to_dict()


@task(name="extract", retries=1)
def extract_task(fetch_dir: str, links_dir: str, extract_dir: str, extract_cfg: dict) -> dict:
    from pipeline.extract import extract_documents, load_reddit_meta, tasks_from_fetch

    cfg = Config.from_dict({"extract": extract_cfg}).extract
    return extract_documents(tasks_from_fetch(fetch_dir), extract_dir, cfg, load_reddit_meta([links_dir])).to_dict()


@task(name="filter-part", retries=1)
def filter_part_task(part: str, filter_dir: str, filter_cfg: dict) -> dict:
    from pipeline.filters import filter_documents

    return filter_documents(part, filter_dir, Config.from_dict({"filter": filter_cfg}).filter, write_dropped=True).to_dict()


@task(name="dedup")
def dedup_task(filter_dir: str, dedup_dir: str, dedup_cfg: dict) -> dict:
    from pipeline.dedup import dedup_documents

    return dedup_documents(filter_dir, dedup_dir, Config.from_dict({"dedup": dedup_cfg}).dedup).to_dict()


@task(name="shards")
def shards_task(dedup_dir: str, shards_dir: str, shard_cfg: dict, build_info: dict) -> dict:
    from pipeline.extract import read_documents
    from pipeline.shards import write_shards

    table = read_documents(dedup_dir, pattern="documents*.parquet")
    return write_shards(table, shards_dir, Config.from_dict({"shards": shard_cfg}).shards, build_info).to_dict()


@task(name="publish", retries=2, retry_delay_seconds=10)
def publish_task(shards_dir: str, dest: str) -> str:
    """Copy the shards and manifest to any pyarrow filesystem URI (s3://, gs://, file://, a path)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(dest) if "://" in dest else (pafs.LocalFileSystem(), str(Path(dest).resolve()))
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(Path(shards_dir).resolve()), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return dest


def combine(stage: str, parts: list[dict], unit: str) -> RunSummary:
    s = RunSummary(stage, unit=unit)
    for p in parts:
        s.n_in += p["in"]
        s.n_out += p["out"]
        for r, n in p["dropped"].items():
            s.drop(r, n)
    return s


def funnel_markdown(stages: list[dict]) -> str:
    lines = ["| stage | in | out | dropped (by reason) |", "|---|---:|---:|---|"]
    for s in stages:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(s["dropped"].items(), key=lambda x: -x[1]) if n) or "-"
        lines.append(f"| {s['stage']} | {s['in']:,} | {s['out']:,} | {reasons} |")
    return "\n".join(lines)


@flow(name="build-corpus", log_prints=True)
def build_corpus(dumps: list[str], out: str, config: dict | None = None, publish: str | None = None) -> dict:
    """links -> fetch -> extract -> filter -> dedup -> shards over DUMPS into OUT.

    Incremental: a dump harvested before is not read again, URLs fetched before
    are not fetched again, pages extracted before are not extracted again, and new
    documents are deduplicated against every document kept so far; new shards go
    under a new manifest version."""
    logger = get_run_logger()
    started = time.time()
    cfg = Config.from_dict(config or {})
    files = preflight(dumps, out, cfg)
    o = Path(out).resolve()
    d = cfg.to_dict()
    from pipeline.links import dump_fingerprint

    results = o / ".prefect" / "results"
    harvest = harvest_dump_task.with_options(result_storage=results)
    futures = [harvest.submit(str(Path(f).resolve()), dump_fingerprint(f), str(o / "links"), d["links"]) for f in files]
    # A cached task returns the meta of the run that harvested it: "now" is decided by when.
    fresh = sum(f.result()["harvested_at"] >= started for f in futures)
    logger.info("links: %d dump(s), %d harvested now, %d reused", len(futures), fresh, len(futures) - fresh)
    stages = [merge_links_task(str(o / "links"), d["links"], started)]
    stages.append(fetch_task(str(o / "links"), str(o / "fetch"), d["fetch"]))
    stages.append(extract_task(str(o / "fetch"), str(o / "links"), str(o / "extract"), d["extract"]))
    parts = sorted(p for p in (o / "extract").glob("part-*.parquet"))
    filter_futures = filter_part_task.map([str(p) for p in parts], unmapped(str(o / "filter")), unmapped(d["filter"]))
    fs = combine("filter", [f.result() for f in filter_futures], "documents")
    fs.check()
    fs.finish().write(o / "filter")
    stages.append(fs.to_dict())
    stages.append(dedup_task(str(o / "filter"), str(o / "dedup"), d["dedup"]))
    info = {"config": d, "funnel": list(stages), "dumps": files}
    stages.append(shards_task(str(o / "dedup"), str(o / "shards"), d["shards"], info))
    atomic_write_json(o / "funnel.json", stages)
    png = plot_funnel(stages, o / "funnel.png")
    md = f"# webtext build\n\n{len(files)} dump(s) into `{o}`\n\n" + funnel_markdown(stages)
    create_markdown_artifact(key="build-funnel", markdown=md, description="what this build did, per stage and drop reason")
    create_link_artifact(key="build-manifest", link=(o / "shards" / "manifest.json").as_uri(), link_text="shard manifest")
    if png:
        create_link_artifact(key="build-funnel-plot", link=png.as_uri(), link_text="funnel plot")
    if publish:
        publish_task(str(o / "shards"), publish)
    for s in stages:
        print(RunSummary.from_dict(s).table())
    return {"out": str(o), "stages": stages, "shards": str(o / "shards")}


# --- training ----------------------------------------------------------------------------


@task(name="tokenize")
def tokenize_task(shards_dir: str, tokens_dir: str, val_fraction: float) -> dict:
    from model.data import tokenize_shards
    from model.tokenizer import Tokenizer

    return tokenize_shards(shards_dir, tokens_dir, Tokenizer.load("gpt2"), val_fraction=val_fraction, progress=False)


@task(name="train", retries=1)
def train_task(tokens_dir: str, train_dir: str, preset: str, overrides: list[str]) -> dict:
    from model.train import load_train_config, train

    cfg = load_train_config(None, preset, list(overrides) + [f"data_dir={tokens_dir}", f"out_dir={train_dir}"])
    resume = (Path(train_dir) / "ckpt.pt").is_file()  # a retried or restarted run continues
    r = train(cfg, resume=resume, progress=False)
    return {"step": r["step"], "losses": r["losses"][-5:], "val": r["val"], "checkpoint": str(r["checkpoint"])}


@task(name="evaluate")
def evaluate_task(train_dir: str, tokens_dir: str, eval_files: dict, limit: int | None, prompt: str) -> dict:
    from model.checkpoint import load_model
    from model.evaluate import heldout, lambada, ptb_detokenize, wikitext_detokenize, word_ppl
    from model.generate import generate
    from model.tokenizer import Tokenizer

    model, _ = load_model(train_dir)
    tok = Tokenizer.load("gpt2")
    res = {"heldout": heldout(model, tokens_dir, tok, max_docs=limit)}
    if eval_files.get("lambada"):
        res["lambada"] = lambada(model, eval_files["lambada"], tok, limit=limit)
    if eval_files.get("wikitext2"):
        res["wikitext2"] = word_ppl(model, eval_files["wikitext2"], tok, wikitext_detokenize, max_words=limit)
    if eval_files.get("ptb"):
        res["ptb"] = word_ppl(model, eval_files["ptb"], tok, ptb_detokenize, max_words=limit)
    out = generate(model, [tok.encode(prompt)], 40, temperature=0.8, top_k=40, seed=1)[0]
    res["sample"] = prompt + tok.decode(out)
    atomic_write_json(Path(train_dir) / "eval.json", res)
    return res


@flow(name="train-model", log_prints=True)
def train_model(build_dir: str, out: str | None = None, preset: str = "tiny", overrides: list[str] | None = None,
                val_fraction: float = 0.05, eval_files: dict | None = None, eval_limit: int | None = None,
                prompt: str = "The") -> dict:
    """Tokenize the newest shards of BUILD_DIR, train PRESET on them, evaluate, sample.

    Tokens go to OUT/tokens-vNNNN (the shard manifest's version), the model to
    OUT/train-vNNNN, so a new build trains a new model and a re-run resumes."""
    from model.evaluate import format_table
    from pipeline.shards import load_manifest

    shards = Path(build_dir) / "shards"
    m = load_manifest(shards)
    if not m["versions"]:
        raise ConfigError(f"{shards}: no shards yet (run build-corpus first)")
    v = m["versions"][-1]["version"]
    o = Path(out or Path(build_dir) / "model")
    tokens, train_dir = o / f"tokens-v{v:04d}", o / f"train-v{v:04d}"
    if not (tokens / "manifest.json").is_file():
        tokenize_task(str(shards), str(tokens), val_fraction)
    t = train_task(str(tokens), str(train_dir), preset, list(overrides or []))
    res = evaluate_task(str(train_dir), str(tokens), eval_files or {}, eval_limit, prompt)
    from model.checkpoint import load_model

    model, _ = load_model(train_dir)
    table = format_table({k: v for k, v in res.items() if k != "sample"}, model)
    print(table)
    print("sample:", res["sample"])
    create_markdown_artifact(key="train-eval", markdown=f"# webtext train ({preset}, shards v{v})\n\n```\n{table}\n```\n\n"
                             f"step {t['step']}; sample:\n\n> {res['sample']}", description="evaluation of the trained model")
    if (train_dir / "loss.png").is_file():
        create_link_artifact(key="train-loss-plot", link=(train_dir / "loss.png").resolve().as_uri(), link_text="loss curve")
    return {"train": t, "eval": res, "train_dir": str(train_dir), "tokens": str(tokens)}


# --- task runners -------------------------------------------------------------------------


def task_runner(kind: str, dask_address: str | None = None, workers: int | None = None):
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            check_dask_address(dask_address)
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers or os.cpu_count() or 1, "processes": True,
                                              "threads_per_worker": 1, "dashboard_address": None})
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    raise ConfigError(f"--task-runner must be threads or dask, not {kind!r}")

