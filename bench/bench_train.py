"""Training throughput: `webtext train` against a plain PyTorch loop over
transformers' GPT2LMHeadModel, same configuration, data, batches, in the same run.

The plain loop is what a user would write: GPT2LMHeadModel(config), AdamW with
the same hyper-parameters, the same random-offset batches from the same token
file, gradient clipping at 1.0, and a final torch.save of model and optimizer.
webtext's `train()` is timed whole (model build, warm-up + cosine schedule, its
final evaluation and checkpoint included). Tokens per second over the whole run.

    .venv/bin/python bench/bench_train.py [--preset tiny] [--steps 40] [--batch 16]
"""

from __future__ import annotations

import argparse
import lzma
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.data import TokenBatches, tokenize_shards  # noqa: E402
from model.gpt import PRESETS as MODEL_PRESETS, GPTConfig  # noqa: E402
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
    args = ap.parse_args()
    text = lzma.decompress((SHARED / "wikitext-2-raw.test.txt.xz").read_bytes()).decode()
    docs = [p for p in text.split("\n") if p.strip()]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        pq.write_table(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}), d / "s.parquet")
        tokenize_shards(d / "s.parquet", d / "tok", Tokenizer.load("gpt2"), 0.05, progress=False)
        cfg = load_train_config(None, args.preset, [f"data_dir={d / 'tok'}", f"out_dir={d / 'ours'}", f"max_steps={args.steps}",
                                                    f"batch_size={args.batch}", "eval_interval=1000000", "eval_iters=1",
                                                    "ckpt_interval=1000000", "warmup_steps=5"])
        block = cfg.block_size or MODEL_PRESETS[cfg.preset]["block_size"]
        tokens = args.steps * args.batch * block
        t_plain = plain_loop(d / "tok", cfg, args.steps, d)
        t = time.perf_counter()
        train(cfg, progress=False)
        t_ours = time.perf_counter() - t
    print(f"preset {args.preset} ({block} context), batch {args.batch}, {args.steps} steps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'training loop':<44}{'tokens/s':>10}{'ratio':>8}")
    print(f"{'plain PyTorch loop, GPT2LMHeadModel':<44}{tokens / t_plain:>10,.0f}{1.0:>7.2f}x")
    print(f"{'webtext train':<44}{tokens / t_ours:>10,.0f}{t_plain / t_ours:>7.2f}x")


if __name__ == "__main__":
    main()
