"""The accelerator's measured matrix-multiply rate: the denominator of MFU.

A datasheet peak (989 TFLOP/s dense bf16 for an H100 SXM) is not what a chip
sustains: clocks drop under load, and a PCIe card, an H200 or an A100 have other
figures. Model FLOPs utilisation is therefore reported against what a large
square product of random matrices reaches on the device itself, measured once at
the start of a run (about a second). ``train.peak_tflops`` overrides it.
"""

from __future__ import annotations

import torch


def measure_matmul_flops(device: str | torch.device = "cuda", dtype: torch.dtype = torch.bfloat16, n: int = 8192,
                         warmup: int = 3, reps: int = 10) -> float:
    """FLOP/s of an n x n x n product of random matrices (median of ``reps`` timed
    products after ``warmup``), on a CUDA device. Random data, not zeros: zeros run
    faster than real operands would."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("measure_matmul_flops times CUDA devices; on a CPU there is no MFU to report")
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b, out
    times.sort()
    return 2 * n**3 / times[len(times) // 2]
