"""Training-step speed: webtext's GPT against transformers.GPT2LMHeadModel.

Same configuration, same random batches, same AdamW; forward + backward +
optimizer step, tokens per second, measured in the same run (goal >= 1.1x).
The two alternate: --rounds rounds of --steps timed steps each (after 2 warm-up
steps per model), the order swapped every round, so drift in the machine's speed
(other tenants, clocks) falls on both; the ratio is the median of the rounds'
ratios, with their range.

    .venv/bin/python bench/bench_model.py [--layers 4 --embd 256 --block 256 --batch 8 --steps 5 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.gpt import GPT, GPTConfig  # noqa: E402
from model.hf import hf_config  # noqa: E402


def run(model, opt, batches, fused_loss):
    model.train()
    t = time.perf_counter()
    for x, y in batches:
        if fused_loss:
            _, loss = model(x, y)
        else:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pad-vocab", type=int, default=1)
    args = ap.parse_args()
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=args.layers, n_head=args.heads, n_embd=args.embd, block_size=args.block, pad_vocab_to=args.pad_vocab)
    ours = GPT(cfg)
    theirs = GPT2LMHeadModel(hf_config(GPTConfig(**{**cfg.to_dict(), "pad_vocab_to": 1})))
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1) for m in (ours, theirs)}
    batches = []
    for _ in range(args.steps):
        x = torch.randint(0, 50257, (args.batch, args.block))
        batches.append((x, torch.roll(x, -1, 1)))
    tokens = args.steps * args.batch * args.block
    run(theirs, opts[theirs], batches[:2], False)  # warm-up (allocator, thread pools, optimizer state)
    run(ours, opts[ours], batches[:2], True)
    hf, we = [], []
    for r in range(args.rounds):
        pair = [(theirs, False, hf), (ours, True, we)]
        for model, fused, out in (pair if r % 2 == 0 else pair[::-1]):
            out.append(tokens / run(model, opts[model], batches, fused))
    ratios = sorted(w / h for w, h in zip(we, hf))
    print(f"config: {args.layers} layers, {args.embd} wide, block {args.block}, batch {args.batch}, "
          f"{args.rounds} rounds of {args.steps} timed steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<40}{'tokens/s (median)':>18}{'rounds':>22}")
    print(f"{'transformers GPT2LMHeadModel':<40}{statistics.median(hf):>18,.0f}{min(hf):>12,.0f}-{max(hf):,.0f}")
    print(f"{'webtext GPT (vocab padded to ' + str(args.pad_vocab) + ')':<40}{statistics.median(we):>18,.0f}"
          f"{min(we):>12,.0f}-{max(we):,.0f}")
    print(f"ratio webtext/transformers: {statistics.median(ratios):.2f}x (median of {len(ratios)} rounds; "
          f"range {ratios[0]:.2f}x-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
