"""Sampling: temperature, top-k, top-p (nucleus), batched prompts, a KV cache so
each new token costs one position's work, and a stop at <|endoftext|>. Options, prompt
token ids and the memory the batch needs are checked before any sampling."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .errors import ConfigError, InputError
from .gpt import GPT
from .limits import check_fits, sampling_bytes


def check_options(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Sampling options that cannot work, refused before anything runs (ConfigError naming the option)."""
    import math

    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"max-new-tokens must be a whole number >= 0, not {max_new_tokens!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), not {temperature!r}")
    if top_k is not None and top_k < 0:
        raise ConfigError(f"top-k must be >= 0 (0: off), not {top_k!r}")
    if top_p is not None and not (0 < top_p <= 1):
        raise ConfigError(f"top-p must be in (0, 1], not {top_p!r}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest set whose
    probability reaches top_p (Holtzman et al. 2019). logits: (B, V)."""
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def generate(
    model: GPT,
    prompts: list[list[int]],
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = 40,
    top_p: float | None = None,
    eot_id: int | None = 50256,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Continue each prompt; returns the new tokens of each (without the stop token).

    Prompts of different lengths are left-aligned and stepped together: each row
    feeds its own prompt tokens until they run out, then its samples."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    check_options(max_new_tokens, temperature, top_k, top_p)
    V = model.config.vocab_size
    bad = next((t for p in prompts for t in p if not 0 <= t < V), None)
    if bad is not None:
        raise InputError(f"the prompt holds token id {bad}, outside the model's vocabulary of {V:,}: the tokenizer is "
                         "not the one the model was trained with")
    device = next(model.parameters()).device
    check_fits(sampling_bytes(model.config, len(prompts), max(map(len, prompts)), max_new_tokens), str(device),
               f"sampling {len(prompts)} sequence(s) of up to {max(map(len, prompts)) + max_new_tokens:,} tokens",
               "give fewer or shorter prompts, fewer samples or fewer new tokens")
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else torch.seed())
    block = model.config.block_size
    B = len(prompts)
    min_len = min(len(p) for p in prompts)
    max_total = max(len(p) for p in prompts) + max_new_tokens
    if use_cache and max_total > block:
        use_cache = False  # sliding window beyond the context: recompute
    seqs = [list(p) for p in prompts]
    done = [False] * B
    out: list[list[int]] = [[] for _ in range(B)]
    past = None
    pos = min_len  # tokens fed so far (common prefix length step)
    idx = torch.tensor([s[:min_len] for s in seqs], dtype=torch.long, device=device)
    while not all(done):
        if use_cache:
            logits, _, past = model(idx, past=past, use_cache=True)
        else:
            ctx = torch.tensor([s[max(0, pos - block) : pos] for s in seqs], dtype=torch.long, device=device)
            logits, _ = model(ctx)
        logits = logits[:, -1, :].float()
        if temperature <= 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        step = []
        for b in range(B):
            if pos < len(prompts[b]):
                tok = prompts[b][pos]  # still inside this row's prompt
            else:
                tok = int(nxt[b])
                if not done[b]:
                    if tok == eot_id or len(out[b]) >= max_new_tokens:
                        done[b] = True
                    else:
                        out[b].append(tok)
                        if len(out[b]) >= max_new_tokens:
                            done[b] = True
            if pos >= len(seqs[b]):
                seqs[b].append(tok)
            step.append(tok)
        pos += 1
        if pos >= max_total:
            break
        idx = torch.tensor(step, dtype=torch.long, device=device).unsqueeze(1)
    return out
