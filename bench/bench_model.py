"""Training-step speed: webtext's GPT against transformers.GPT2LMHeadModel.

Same configuration, same random batches, same AdamW; forward + backward +
optimizer step, tokens per second, measured in the same run (goal >= 1.1x).

    .venv/bin/python bench/bench_model.py [--layers 4 --embd 256 --block 256 --batch 8 --steps 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.gpt import GPT, GPTConfig  # noqa: E402
from model.hf import hf_config  # noqa: E402


def run(model, batches, steps, fused_loss):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model.train()
    times = []
    for i, (x, y) in enumerate(batches[: steps + 2]):
        t = time.perf_counter()
        if fused_loss:
            _, loss = model(x, y)
        else:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - t)
    return sum(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--pad-vocab", type=int, default=1)
    args = ap.parse_args()
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=args.layers, n_head=args.heads, n_embd=args.embd, block_size=args.block, pad_vocab_to=args.pad_vocab)
    ours = GPT(cfg)
    theirs = GPT2LMHeadModel(hf_config(GPTConfig(**{**cfg.to_dict(), "pad_vocab_to": 1})))
    batches = []
    for _ in range(args.steps + 2):
        x = torch.randint(0, 50257, (args.batch, args.block))
        batches.append((x, torch.roll(x, -1, 1)))
    tokens = args.steps * args.batch * args.block
    t_hf = run(theirs, batches, args.steps, False)
    t_ours = run(ours, batches, args.steps, True)
    print(f"config: {args.layers} layers, {args.embd} wide, block {args.block}, batch {args.batch}, "
          f"{args.steps} timed steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<40}{'tokens/s':>12}{'ratio':>8}")
    print(f"{'transformers GPT2LMHeadModel':<40}{tokens / t_hf:>12,.0f}{1.0:>8.2f}x")
    print(f"{'webtext GPT (vocab padded to ' + str(args.pad_vocab) + ')':<40}{tokens / t_ours:>12,.0f}{t_hf / t_ours:>8.2f}x")


if __name__ == "__main__":
    main()
