"""The training flow: tokenize a shard version -> train -> evaluate -> sample, with its artifacts
(the eval table, the loss as a text chart). ``webtext serve`` runs it on each new corpus version."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json

# --- training ----------------------------------------------------------------------------


@task(name="tokenize", task_run_name="tokenize")
def tokenize_task(shards_dir: str, tokens_dir: str, val_fraction: float, version: int) -> dict:
    from model.data import tokenize_shards
    from model.tokenizer import Tokenizer

    return tokenize_shards(shards_dir, tokens_dir, Tokenizer.load("gpt2"), val_fraction=val_fraction, progress=False,
                           max_version=version)


@task(name="train", task_run_name="train", retries=1)
def train_task(tokens_dir: str, train_dir: str, preset: str, overrides: list[str]) -> dict:
    from model.train import load_train_config, train

    cfg = load_train_config(None, preset, list(overrides) + [f"data_dir={tokens_dir}", f"out_dir={train_dir}"])
    resume = (Path(train_dir) / "ckpt.pt").is_file()  # a retried or restarted run continues
    r = train(cfg, resume=resume, progress=False)
    return {"step": r["step"], "losses": r["losses"][-5:], "val": r["val"], "checkpoint": str(r["checkpoint"])}


@task(name="evaluate", task_run_name="evaluate")
def evaluate_task(train_dir: str, tokens_dir: str, eval_files: dict, limit: int | None, prompt: str) -> dict:
    from model.checkpoint import load_model
    from model.evaluate import evaluate_all
    from model.generate import generate
    from model.tokenizer import Tokenizer

    model, _ = load_model(train_dir)
    tok = Tokenizer.load("gpt2")
    res = evaluate_all(model, tok, tokens_dir, eval_files.get("lambada"), eval_files.get("wikitext2"),
                       eval_files.get("ptb"), limit=limit)
    out = generate(model, [tok.encode(prompt)], 40, temperature=0.8, top_k=40, seed=1)[0]
    res["sample"] = prompt + tok.decode(out)
    atomic_write_json(Path(train_dir) / "eval.json", res)
    return res


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """Values drawn as one line of block characters (bucket means), for markdown views."""
    if not values:
        return ""
    k = max(1, -(-len(values) // width))
    pts = [sum(values[i:i + k]) / len(values[i:i + k]) for i in range(0, len(values), k)]
    lo, hi = min(pts), max(pts)
    return "".join(SPARKS[round((v - lo) / (hi - lo) * 7) if hi > lo else 0] for v in pts)


def loss_markdown(metrics: Path) -> str:
    recs = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()] if metrics.is_file() else []
    if not recs:
        return "no metrics"
    train = [r["loss"] for r in recs]
    lines = [f"train loss, steps {recs[0]['step']}-{recs[-1]['step']} ({train[0]:.3f} -> {train[-1]:.3f}):", "",
             f"`{sparkline(train)}`", "", "| step | train loss | val loss |", "|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['loss']:.4f} | {r['val_loss']:.4f} |" for r in recs if "val_loss" in r]
    return "\n".join(lines)


@flow(name="train-model", log_prints=True)
def train_model(build_dir: str, out: str | None = None, preset: str = "tiny", overrides: list[str] | None = None,
                val_fraction: float = 0.05, eval_files: dict | None = None, eval_limit: int | None = None,
                prompt: str = "The", version: int | str | None = None) -> dict:
    """Tokenize shard version VERSION of BUILD_DIR (default: the newest) with every
    version before it, train PRESET on them, evaluate, sample.

    Tokens go to OUT/tokens-vNNNN, the model to OUT/train-vNNNN (OUT defaults to
    BUILD_DIR/model), so each corpus version gets its own model; a re-run of a
    version whose evaluation exists does nothing, a killed one resumes. VERSION may
    be a string: an event trigger's templates render to strings."""
    from flows.lifecycle import claim_run
    from model.evaluate import format_table
    from pipeline.shards.stage import load_manifest

    claim_run()

    shards = Path(build_dir) / "shards"
    m = load_manifest(shards)
    if not m["versions"]:
        raise ConfigError(f"{shards}: no shards yet (run build-corpus first)")
    known = [x["version"] for x in m["versions"]]
    v = int(version) if version is not None else known[-1]
    if v not in known:
        raise ConfigError(f"{shards}: no shard version {v} (versions: {known})")
    o = Path(out or Path(build_dir) / "model")
    tokens, train_dir = o / f"tokens-v{v:04d}", o / f"train-v{v:04d}"
    if (train_dir / "eval.json").is_file() and (train_dir / "ckpt.pt").is_file():
        print(f"shard version {v} of {build_dir} is trained and evaluated already ({train_dir}); nothing to do")
        return {"skipped": True, "train_dir": str(train_dir), "tokens": str(tokens), "version": v,
                "eval": json.loads((train_dir / "eval.json").read_text())}
    if not (tokens / "manifest.json").is_file():
        tokenize_task(str(shards), str(tokens), val_fraction, v)
    t = train_task(str(tokens), str(train_dir), preset, list(overrides or []))
    res = evaluate_task(str(train_dir), str(tokens), eval_files or {}, eval_limit, prompt)
    from model.checkpoint import load_model

    model, _ = load_model(train_dir)
    table = format_table({k: v for k, v in res.items() if k != "sample"}, model, eval_limit)
    print(table)
    print("sample:", res["sample"])
    create_markdown_artifact(key="train-eval", markdown=f"# webtext train ({preset}, shards v{v} of `{build_dir}`)\n\n"
                             f"```\n{table}\n```\n\nstep {t['step']}; sample:\n\n> {res['sample']}\n\n"
                             + loss_markdown(train_dir / "metrics.jsonl") + f"\n\nfiles: `{train_dir}` (loss.png, eval.json)",
                             description=f"evaluation and loss curve of the model trained on shard version {v}")
    return {"train": t, "eval": res, "train_dir": str(train_dir), "tokens": str(tokens), "version": v}
