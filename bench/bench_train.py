"""Training throughput: `webtext train` against a plain PyTorch loop over
transformers' GPT2LMHeadModel, same configuration, data, batches, in the same run.

The plain loop is what a user would write: GPT2LMHeadModel(config), AdamW with
the same hyper-parameters, the same random-offset batches from the same token
file, gradient clipping at 1.0, and a final torch.save of model and optimizer.
webtext's `train()` is timed whole (model build, warm-up + cosine schedule, its
final evaluation and checkpoint included). Tokens per second over the whole run.
The two alternate for --rounds rounds, the order swapped every round (drift in
the machine's speed falls on both); the ratio is the median of the rounds'
ratios, with their range.

    .venv/bin/python bench/bench_train.py [--preset tiny] [--steps 40] [--batch 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import lzma
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.data import TokenBatches, tokenize_shards  # noqa: E402
from model.gpt import PRESETS as MODEL_PRESETS  # noqa: E402
from model.gpt import GPTConfig
from model.hf import hf_config  # noqa: E402
from model.tokenizer import Tokenizer  # noqa: E402
from model.train import load_train_config, train  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"


def plain_loop(tokens_dir: Path, cfg, steps: int, out: Path) -> float:
    from transformers import GPT2LMHeadModel

    torch.manual_seed(cfg.seed)
    mcfg = GPTConfig(**MODEL_PRESETS[cfg.preset], **({"block_size": cfg.block_size} if cfg.block_size else {}))
    model = GPT2LMHeadModel(hf_config(mcfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    batches = TokenBatches(tokens_dir, "train", cfg.batch_size, mcfg.block_size, seed=cfg.seed)
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        x, y = batches.next()
        loss = model(input_ids=torch.as_tensor(x, dtype=torch.long), labels=torch.as_tensor(x, dtype=torch.long)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, out / "plain.pt")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    text = lzma.decompress((SHARED / "wikitext-2-raw.test.txt.xz").read_bytes()).decode()
    docs = [p for p in text.split("\n") if p.strip()]
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        pq.write_table(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}), d / "s.parquet")
        tokenize_shards(d / "s.parquet", d / "tok", Tokenizer.load("gpt2"), 0.05, progress=False)
        for r in range(args.rounds):
            cfg = load_train_config(None, args.preset, [f"data_dir={d / 'tok'}", f"out_dir={d / f'ours{r}'}",
                                                        f"max_steps={args.steps}", f"batch_size={args.batch}",
                                                        "eval_interval=1000000", "eval_iters=1", "ckpt_interval=1000000",
                                                        "warmup_steps=5"])
            block = cfg.block_size or MODEL_PRESETS[cfg.preset]["block_size"]
            tokens = args.steps * args.batch * block

            def run_plain():
                plain.append(tokens / plain_loop(d / "tok", cfg, args.steps, d))

            def run_ours():
                t = time.perf_counter()
                train(cfg, progress=False)
                ours.append(tokens / (time.perf_counter() - t))

            for f in ((run_plain, run_ours) if r % 2 == 0 else (run_ours, run_plain)):
                f()
    ratios = sorted(o / p for o, p in zip(ours, plain))
    print(f"preset {args.preset} ({block} context), batch {args.batch}, {args.steps} steps, {args.rounds} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'training loop':<44}{'tokens/s (median)':>18}{'rounds':>20}")
    print(f"{'plain PyTorch loop, GPT2LMHeadModel':<44}{statistics.median(plain):>18,.0f}{min(plain):>10,.0f}-{max(plain):,.0f}")
    print(f"{'webtext train':<44}{statistics.median(ours):>18,.0f}{min(ours):>10,.0f}-{max(ours):,.0f}")
    print(f"ratio webtext/plain: {statistics.median(ratios):.2f}x (median of {len(ratios)} rounds; "
          f"range {ratios[0]:.2f}x-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
