"""`webtext eval` against EleutherAI's lm-evaluation-harness (issue 15).

Trains a tiny GPT-2 (or takes --checkpoint), exports it with `webtext export-hf`,
and evaluates LAMBADA (OpenAI's) and WikiText-2 twice: with `webtext eval`, and with
the harness (`lm_eval`, Hugging Face backend) on the exported directory through the
task YAMLs in bench/harness_tasks (the stock lambada_openai and wikitext tasks on the
files in ../shared). Prints a table: metric, webtext, harness, relative difference.

    .venv/bin/pip install -q -c constraints.txt -e '.[harness]'
    .venv/bin/python bench/bench_eval_harness.py                    # full sets
    .venv/bin/python bench/bench_eval_harness.py --lambada-limit 500 --wikitext-docs 10

Rows whose protocols are the same must agree to --rtol (exit status 1 otherwise);
the others are shown with the reason they differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASKS = ROOT / "bench" / "harness_tasks"
EVAL = Path(os.environ.get("WEBTEXT_SHARED", ROOT.parent / "shared")) / "data" / "eval"


def training_texts(n: int = 1500) -> list[str]:
    """Main text of real web pages (WCXB dev, ../shared/data/html): not the evaluation sets."""
    src = EVAL.parent / "html" / "wcxb_dev.jsonl.xz"
    out = []
    with lzma.open(src, "rt", encoding="utf-8") as fh:
        for line in fh:
            t = (json.loads(line).get("truth") or "").strip()
            if len(t) > 200:
                out.append(t)
            if len(out) >= n:
                break
    return out


def train_tiny(work: Path, steps: int, block_size: int) -> Path:
    """Token shards from web pages, then `webtext train` with the tiny preset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.cli import main

    texts = training_texts()
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [f"w{i}" for i in range(len(texts))], "text": texts}), docs / "shard.parquet")
    main(["tokenize", "--in", str(docs), "--out", str(work / "tokens"), "--val-fraction", "0.05"])
    main(["train", "--data", str(work / "tokens"), "--out", str(work / "train"), "--preset", "tiny",
          f"max_steps={steps}", f"block_size={block_size}", "eval_interval=100", "eval_iters=5",
          f"ckpt_interval={steps}"])
    return work / "train"


def webtext_eval(ckpt: Path, out: Path, *args: str) -> dict:
    from flows.cli import main

    argv = ["eval", "--checkpoint", str(ckpt), "--out", str(out), *args]
    assert main(argv) == 0
    return json.loads(out.read_text())


def harness_eval(hf_dir: Path, task: str, limit: int | None, batch_size: int) -> dict:
    """One harness task through lm_eval's Python API (the CLI equivalent is printed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import lm_eval
    from lm_eval.tasks import TaskManager

    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={hf_dir},dtype=float32", tasks=[task], device="cpu",
        batch_size=batch_size, limit=limit, task_manager=TaskManager(include_path=str(TASKS)),
        log_samples=False, bootstrap_iters=0,
    )
    return {k.split(",")[0]: v for k, v in res["results"][task].items() if k.endswith(",none")}


def harness_words(path: Path, max_docs: int | None) -> tuple[int, int]:
    """Words as the harness's wikitext counts them (re.split(r"\\s+") per article) and as
    whitespace tokens, over the same articles."""
    from model.evaluate import read_text, wikitext_articles

    docs = wikitext_articles(read_text(path))[: max_docs or None]
    return sum(len(re.split(r"\s+", d)) for d in docs), sum(len(d.split()) for d in docs)


def spread(xs: list[float], fmt: str = ".0f") -> str:
    return f"{statistics.median(xs):{fmt}} [{min(xs):{fmt}}-{max(xs):{fmt}}]"


def timing_line(times: dict, rounds: int) -> str:
    """Durations, median [min-max] over the rounds: the same two tasks on the same protocol."""
    (ww, wc), (hw, hc) = zip(*times["webtext"]), zip(*times["harness"])
    ratio = [h / w for (w, _), (h, _) in zip(times["webtext"], times["harness"])]
    sw, sc = times["webtext_sliding"][0]
    return (f"same protocol (LAMBADA + WikiText-2 disjoint windows), {rounds} round(s): webtext eval "
            f"{spread(list(ww))} s wall, {spread(list(wc))} CPU-s; harness {spread(list(hw))} s wall, "
            f"{spread(list(hc))} CPU-s; harness wall / webtext wall {spread(ratio, '.2f')}x; "
            f"webtext's sliding-window WikiText-2 alone {sw:.0f} s wall, {sc:.0f} CPU-s")


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def run(args) -> int:
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ckpt = Path(args.checkpoint) if args.checkpoint else train_tiny(work, args.steps, args.block_size)
    from flows.cli import main
    from model.checkpoint import load_model

    block = load_model(ckpt)[0].config.block_size
    hf_dir = work / "hf"
    assert main(["export-hf", str(ckpt), str(hf_dir)]) == 0
    t_train = time.time() - t0

    lam_file, wt_file = Path(args.lambada), Path(args.wikitext)
    lam_lim = ["--limit", str(args.lambada_limit)] if args.lambada_limit else []
    wt_lim = ["--limit", str(args.wikitext_docs)] if args.wikitext_docs else []
    os.environ["WEBTEXT_EVAL_DIR"] = str(EVAL)
    # the task reads the default WikiText file unless told otherwise
    os.environ["WEBTEXT_WIKITEXT_FILE"] = str(wt_file)
    # Like-for-like timing: webtext eval on the harness's protocol (LAMBADA, WikiText-2
    # in disjoint windows) against the harness on the same two tasks, interleaved over
    # --rounds rounds; webtext's own sliding-window WikiText-2 run is timed apart.
    times: dict[str, list[tuple[float, float]]] = {"webtext": [], "harness": [], "webtext_sliding": []}
    for r in range(args.rounds):
        w, c = time.time(), time.process_time()
        ours_lam = webtext_eval(ckpt, work / "eval_lambada.json", "--lambada", str(lam_file), *lam_lim)["lambada"]
        ours_wt_h = webtext_eval(ckpt, work / "eval_wikitext_disjoint.json", "--wikitext2", str(wt_file), *wt_lim,
                                 "--stride", str(block))["wikitext2"]
        times["webtext"].append((time.time() - w, time.process_time() - c))
        w, c = time.time(), time.process_time()
        h_lam = harness_eval(hf_dir, "webtext_lambada_openai", args.lambada_limit, args.batch_size)
        h_wt = harness_eval(hf_dir, "webtext_wikitext2", args.wikitext_docs, args.batch_size)
        times["harness"].append((time.time() - w, time.process_time() - c))
        if r == 0:
            w, c = time.time(), time.process_time()
            ours_wt = webtext_eval(ckpt, work / "eval_wikitext.json", "--wikitext2", str(wt_file), *wt_lim)["wikitext2"]
            times["webtext_sliding"].append((time.time() - w, time.process_time() - c))
        print(f"round {r + 1}/{args.rounds}: webtext {times['webtext'][-1][0]:.0f}s, "
              f"harness {times['harness'][-1][0]:.0f}s (wall)", flush=True)

    hw, ww = harness_words(wt_file, args.wikitext_docs)
    assert ww == ours_wt["words"], (ww, ours_wt["words"])
    nll_h = ours_wt_h["nll"]
    rows = [
        # name, webtext, harness, must agree, note
        ("LAMBADA acc (%)", ours_lam["acc"], 100 * h_lam["acc"], True, "same protocol"),
        ("LAMBADA ppl (per word)", ours_lam["ppl"], h_lam["perplexity"], True, "same protocol"),
        ("LAMBADA ppl (per token)", ours_lam["token_ppl"], None, False, "harness reports per word only"),
        ("WikiText-2 word ppl, disjoint windows, harness word count", math.exp(nll_h / hw), h_wt["word_perplexity"],
         True, f"webtext eval --stride {block}"),
        ("WikiText-2 word ppl, disjoint windows, whitespace words", ours_wt_h["ppl"], h_wt["word_perplexity_ws"],
         True, f"webtext eval --stride {block}"),
        ("WikiText-2 word ppl, webtext protocol", ours_wt["ppl"], h_wt["word_perplexity_ws"], False,
         f"sliding windows (stride {ours_wt['stride']}) vs the harness's disjoint ones"),
        ("WikiText-2 word ppl, webtext protocol vs stock task", ours_wt["ppl"], h_wt["word_perplexity"], False,
         "windows and word count both differ"),
    ]
    n_lam = ours_lam["examples"]
    print(f"\nmodel: {ckpt} (block {block}); LAMBADA {n_lam} passages, WikiText-2 {ours_wt['documents']} articles "
          f"({ours_wt['words']:,} words; harness count {hw:,}), {wt_file.name}")
    print(f"time: train+export {t_train:.0f}s; {timing_line(times, args.rounds)}\n")
    print("| metric | webtext | harness | rel. difference | note |")
    print("|---|---:|---:|---:|---|")
    bad = []
    for name, a, b, must, note in rows:
        d = rel(a, b) if b is not None else None
        print(f"| {name} | {a:.6f} | {'-' if b is None else f'{b:.6f}'} | "
              f"{'-' if d is None else f'{d:.1e}'} | {note} |")
        if must and d is not None and d > args.rtol:
            bad.append(name)
    if bad:
        print(f"\nDISAGREE beyond rtol {args.rtol}: {', '.join(bad)}")
        return 1
    print(f"\nall same-protocol rows agree within rtol {args.rtol}")
    return 0


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training one")
    ap.add_argument("--steps", type=int, default=120, help="training steps of the tiny preset")
    ap.add_argument("--block-size", type=int, default=128, help="context of the trained model")
    ap.add_argument("--lambada", default=str(EVAL / "lambada_test.jsonl.xz"))
    ap.add_argument("--wikitext", default=str(EVAL / "wikitext-2.test.tokens.xz"),
                    help="WikiText-2 test file (the tokenized one keeps the original line layout)")
    ap.add_argument("--lambada-limit", type=int, default=None, help="first N passages (default: all 5,153)")
    ap.add_argument("--wikitext-docs", type=int, default=None, help="first N articles (default: all 62)")
    ap.add_argument("--batch-size", type=int, default=16, help="harness batch size")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (webtext and harness interleaved)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "eval_harness"))
    return ap.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse()))
