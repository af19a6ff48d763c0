"""Limits checked before allocating: how many parameters a GPT config builds, at least how
many bytes training or sampling it needs, and how much memory the device has.

The byte counts are lower bounds (the weights, gradients and AdamW moments; the
smallest activations a step keeps), so a check never refuses what would fit: a config it
refuses would fail anyway, after building a model of hundreds of GB or after the machine
swapped to a halt. ``check_fits`` raises ConfigError naming the option to change.
"""

from __future__ import annotations

import os

from .errors import ConfigError
from .gpt import GPTConfig


def param_count(cfg: GPTConfig, padded: bool = True) -> int:
    """The parameters GPT(cfg) builds, the tied embedding counted once (as GPT.num_params),
    from the config alone: nothing is allocated. ``padded=False``: the embedding's rows
    are the real vocabulary (a Hugging Face file's)."""
    C, L = cfg.n_embd, cfg.n_layer
    V = cfg.padded_vocab_size if padded else cfg.vocab_size
    norm = 2 * C if cfg.bias else C  # a LayerNorm: weight (+ bias)
    linear_bias = 9 * C if cfg.bias else 0  # c_attn 3C, attn c_proj C, c_fc 4C, mlp c_proj C
    block = 12 * C * C + linear_bias + 2 * norm
    return V * C + cfg.block_size * C + L * block + norm


def gib(n: int | float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def memory_bytes(device: str = "cpu") -> int | None:
    """The memory a model on DEVICE can use: a GPU's total memory, or on the CPU the least
    of the physical memory, the cgroup's limit and the address-space limit; None if unknown."""
    if str(device).startswith("cuda"):
        try:
            import torch

            if not torch.cuda.is_available():
                return None
            idx = int(str(device)[5:]) if str(device)[5:].isdigit() else torch.cuda.current_device()
            return int(torch.cuda.get_device_properties(idx).total_memory)
        except Exception:  # noqa: BLE001 - no limit known is not an error
            return None
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        text = open("/sys/fs/cgroup/memory.max").read().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def training_bytes(cfg: GPTConfig, batch_size: int, device_type: str = "cpu") -> int:
    """At least what a training step holds: float32 weights and gradients and AdamW's two
    moments (16 bytes a parameter), one 2-byte activation per layer, position and
    channel, and on a GPU the logits of the micro-batch."""
    n = param_count(cfg)
    tokens = batch_size * cfg.block_size
    act = 2 * tokens * cfg.n_layer * cfg.n_embd
    logits = 2 * tokens * cfg.padded_vocab_size if device_type == "cuda" else 0
    return 16 * n + act + logits


def sampling_bytes(cfg: GPTConfig, batch: int, prompt_tokens: int, new_tokens: int) -> int:
    """At least what sampling holds: float32 weights, the float32 logits of the prompts'
    first forward pass and the key/value cache of every layer."""
    ctx = min(cfg.block_size, prompt_tokens + new_tokens)
    kv = 2 * 4 * cfg.n_layer * batch * ctx * cfg.n_embd
    logits = 4 * batch * min(prompt_tokens, cfg.block_size) * cfg.padded_vocab_size
    return 4 * param_count(cfg) + kv + logits


def check_fits(need: int, device: str, what: str, fix: str) -> None:
    """ConfigError when NEED bytes exceed the memory of DEVICE (unknown memory: no check)."""
    have = memory_bytes(device)
    if have is not None and need > have:
        raise ConfigError(f"{what} needs at least {gib(need)}, more than the {gib(have)} of memory of this "
                          f"{'GPU' if str(device).startswith('cuda') else 'machine'}; {fix}")
