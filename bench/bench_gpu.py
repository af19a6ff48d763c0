"""GPU training speed of the GPT-2 124M configuration: tokens/s and MFU.

Runs `webtext train` itself (model/train.py: bf16 autocast, fused AdamW, flash
attention through scaled_dot_product_attention, optional torch.compile) on
synthetic token shards (uniform random GPT-2 token ids: the speed of a step does
not depend on what the tokens say) for --steps optimizer steps per variant, and
reports, per variant, the median tokens/s of the steps after the first --warmup
(torch.compile's compilation and the allocator's growth happen there) with the
spread (10th-90th percentile of the steps), and MFU against the device's own
measured bf16 matrix rate (an 8192^3 product of random matrices, median of 10,
taken --peak-reps times: the spread is shown), not the datasheet's 989 TFLOP/s.

FLOPs per token are model.gpt.GPT.flops_per_token (PaLM appendix B: 6N + 12 L H Q T,
N without the position embedding; attention counted in full, as nanoGPT and llm.c
count it).

    python3 bench/bench_gpu.py                       # on a CUDA machine: the default variants
    python3 bench/bench_gpu.py --variants compile:32:1 eager:32:1 --steps 100
    python3 bench/bench_gpu.py --device cpu --preset tiny --steps 6 --warmup 2 --variants eager:4:1   # smoke test

A variant is MODE:MICRO_BATCH:ACCUMULATION (MODE compile or eager). Writes
bench_gpu.json (and each variant's metrics) under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.gpt import PRESETS as MODEL_PRESETS  # noqa: E402
from model.train import TrainConfig, train  # noqa: E402


def synthetic_tokens(d: Path, n_train: int, n_val: int, vocab: int = 50257, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    rng.integers(0, vocab, size=n_train, dtype=np.uint16).tofile(d / "train.bin")
    rng.integers(0, vocab, size=n_val, dtype=np.uint16).tofile(d / "val.bin")
    np.save(d / "val_docs.npy", np.zeros(1, dtype=np.int64))
    (d / "manifest.json").write_text(json.dumps({
        "dtype": "uint16",
        "tokenizer": {"name": "synthetic", "sha256": "synthetic", "n_vocab": vocab, "eot_id": vocab - 1},
        "val_fraction": 0.0,
        "train": {"file": "train.bin", "tokens": n_train, "documents": 1},
        "val": {"file": "val.bin", "tokens": n_val, "documents": 1, "doc_starts": "val_docs.npy"},
        "source": {"path": "synthetic", "files": [], "manifest_sha256": None},
    }))
    return d


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="steps left out of the figures")
    ap.add_argument("--variants", nargs="+", default=["compile:32:1", "compile:16:1", "compile:64:1", "eager:32:1"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="where to write bench_gpu.json (default: a temporary directory)")
    args = ap.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run this on a GPU machine, or --device cpu for a smoke test")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_gpu-"))
    out.mkdir(parents=True, exist_ok=True)
    block = MODEL_PRESETS[args.preset].get("block_size", 1024)

    info = {"torch": torch.__version__, "device": args.device, "preset": args.preset, "block_size": block,
            "steps": args.steps, "warmup": args.warmup, "date": time.strftime("%Y-%m-%d")}
    peaks = []
    if on_gpu:
        from model.perf import measure_matmul_flops

        info["device_name"] = torch.cuda.get_device_name()
        peaks = [measure_matmul_flops(args.device, torch.bfloat16) for _ in range(args.peak_reps)]
        info["peak_bf16_flops"] = statistics.median(peaks)
        info["peak_bf16_flops_all"] = peaks
        print(f"{info['device_name']}, torch {torch.__version__}: measured bf16 matmul "
              f"{statistics.median(peaks) / 1e12:.0f} TFLOP/s (runs {', '.join(f'{p / 1e12:.0f}' for p in peaks)})",
              flush=True)
    n_train = max(4_000_000, 8 * block * 64)
    tokens = synthetic_tokens(out / "tokens", n_train, max(200_000, 4 * block * 64))

    results = []
    for v in args.variants:
        mode, micro, accum = v.split(":")
        micro, accum = int(micro), int(accum)
        run_dir = out / f"run-{mode}-{micro}-{accum}"
        cfg = TrainConfig(data_dir=str(tokens), out_dir=str(run_dir), preset=args.preset, batch_size=micro,
                          tokens_per_step=micro * block * accum, max_steps=args.steps, warmup_steps=10, lr=6e-4,
                          min_lr=6e-5, eval_interval=10**9, eval_iters=1, ckpt_interval=10**9, device=args.device,
                          compile=mode == "compile", pad_vocab_to=64,
                          peak_tflops=(statistics.median(peaks) / 1e12) if peaks else 0.0)
        t0 = time.perf_counter()
        try:
            train(cfg, progress=False)
        except torch.OutOfMemoryError as exc:
            print(f"{v}: out of memory ({str(exc).splitlines()[0][:120]})", flush=True)
            results.append({"variant": v, "error": "out of memory"})
            torch.cuda.empty_cache()
            continue
        wall = time.perf_counter() - t0
        recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        timed = [r for r in recs if r["step"] > args.warmup]
        tps = [r["tokens_per_s"] for r in timed]
        r = {"variant": v, "mode": mode, "micro_batch": micro, "accum": accum, "tokens_per_step": micro * block * accum,
             "tokens_per_s_median": statistics.median(tps), "tokens_per_s_p10": pct(tps, 0.1),
             "tokens_per_s_p90": pct(tps, 0.9), "timed_steps": len(tps), "wall_s": wall,
             "warmup_steps_s": sum(micro * block * accum / r["tokens_per_s"] for r in recs if r["step"] <= args.warmup),
             "final_loss": recs[-1]["loss"]}
        run = json.loads((run_dir / "run.json").read_text())
        r["flops_per_token"] = run["flops_per_token"]
        if on_gpu:
            r["mfu_median"] = run["flops_per_token"] * r["tokens_per_s_median"] / info["peak_bf16_flops"]
            r["mfu_p10"] = run["flops_per_token"] * r["tokens_per_s_p10"] / info["peak_bf16_flops"]
            r["mfu_p90"] = run["flops_per_token"] * r["tokens_per_s_p90"] / info["peak_bf16_flops"]
            r["mfu_vs_989"] = run["flops_per_token"] * r["tokens_per_s_median"] / 989e12
            r["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
        results.append(r)
        print(f"{v}: {r['tokens_per_s_median']:,.0f} tok/s (p10-p90 {r['tokens_per_s_p10']:,.0f}-"
              f"{r['tokens_per_s_p90']:,.0f})" + (f", MFU {r['mfu_median']:.1%}" if on_gpu else "") +
              f", wall {wall:.0f} s", flush=True)
        for p in run_dir.glob("ckpt.pt"):
            p.unlink()  # 1.5 GB each; the figures do not need it
    (out / "bench_gpu.json").write_text(json.dumps({"info": info, "results": results}, indent=1))

    print()
    print(f"{info.get('device_name', args.device)}, torch {torch.__version__}, preset {args.preset} (context {block}), "
          f"{args.steps} steps per variant, the first {args.warmup} left out")
    if peaks:
        print(f"measured bf16 matmul peak: {info['peak_bf16_flops'] / 1e12:.0f} TFLOP/s "
              f"(8192^3, median of {len(peaks)} measurements: {', '.join(f'{p / 1e12:.0f}' for p in peaks)})")
    print(f"{'variant':<16}{'tokens/step':>12}{'tok/s median':>14}{'p10-p90':>20}{'MFU':>8}{'MFU p10-p90':>14}"
          f"{'vs 989':>8}{'GiB':>6}")
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<16}{r['error']:>12}")
            continue
        mfu = (f"{r['mfu_median']:>8.1%}{r['mfu_p10']:>7.1%}-{r['mfu_p90']:<6.1%}{r['mfu_vs_989']:>8.1%}"
               f"{r['max_memory_gib']:>6.1f}") if on_gpu else ""
        print(f"{r['variant']:<16}{r['tokens_per_step']:>12,}{r['tokens_per_s_median']:>14,.0f}"
              f"{r['tokens_per_s_p10']:>10,.0f}-{r['tokens_per_s_p90']:<9,.0f}{mfu}")


if __name__ == "__main__":
    main()
