"""`webtext eval`: held-out perplexity and GPT-2's zero-shot language-modelling tasks.

Held-out: every token of every held-out document (sliding window with half-context
stride for long ones), perplexity per token and bits per byte (comparable across
tokenizers). Zero-shot, from files: LAMBADA (accuracy of greedily predicting every
token of the last word, and its perplexity), WikiText-2 and PTB (perplexity per
original word, after GPT-2's invertible de-tokenizers).
"""

from __future__ import annotations

import lzma
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .gpt import GPT
from .tokenizer import Tokenizer

# GPT-2 paper, Table 3 (zero-shot).
PAPER_TABLE3 = {
    "gpt2": {"params": "117M", "lambada_ppl": 35.13, "lambada_acc": 45.99, "wikitext2_ppl": 29.41, "ptb_ppl": 65.85},
    "gpt2-medium": {"params": "345M", "lambada_ppl": 15.60, "lambada_acc": 55.48, "wikitext2_ppl": 22.76, "ptb_ppl": 47.33},
    "gpt2-large": {"params": "762M", "lambada_ppl": 10.87, "lambada_acc": 60.12, "wikitext2_ppl": 19.93, "ptb_ppl": 40.31},
    "gpt2-xl": {"params": "1542M", "lambada_ppl": 8.63, "lambada_acc": 63.24, "wikitext2_ppl": 18.34, "ptb_ppl": 35.76},
}


def read_text(path: str | Path) -> str:
    p = Path(path)
    data = p.read_bytes()
    if p.suffix == ".xz":
        data = lzma.decompress(data)
    return data.decode("utf-8")


@torch.no_grad()
def sequence_nll(model: GPT, tokens: list[int], device="cpu", score_from: int = 1) -> tuple[float, int]:
    """Sum of -log p over tokens[score_from:], sliding a window with half-context
    stride so every scored token sees at least half a context."""
    block = model.config.block_size
    stride = max(1, block // 2)
    total, count = 0.0, 0
    n = len(tokens)
    prev_end = score_from
    for begin in range(0, n, stride):
        end = min(begin + block, n)
        first = max(prev_end, begin + 1)  # the first token this window scores
        if first < end:
            window = torch.tensor(tokens[begin:end], dtype=torch.long, device=device)[None]
            logits, _ = model(window)
            logp = F.log_softmax(logits[0].float(), dim=-1)
            tgt = torch.tensor(tokens[first:end], dtype=torch.long, device=device)
            pos = torch.arange(first - begin - 1, end - begin - 1, device=device)
            total -= logp[pos, tgt].sum().item()
            count += end - first
            prev_end = end
        if end == n:
            break
    return total, count


def heldout(model: GPT, data_dir: str | Path, tokenizer: Tokenizer, device="cpu", max_docs: int | None = None) -> dict:
    from .data import load_token_manifest, open_tokens

    m = load_token_manifest(data_dir)
    toks = open_tokens(data_dir, "val")
    starts = np.load(Path(data_dir) / m["val"]["doc_starts"]).tolist()
    ends = starts[1:] + [len(toks)]
    nll = n = 0
    nbytes = 0
    eot = tokenizer.eot_id
    for i, (s, e) in enumerate(zip(starts, ends)):
        if max_docs is not None and i >= max_docs:
            break
        doc = [eot] + toks[s:e].tolist()  # each document is predicted from <|endoftext|> on, incl. its closing eot
        a, b = sequence_nll(model, doc, device)
        nll += a
        n += b
        nbytes += len(tokenizer.decode(doc[1:-1]).encode("utf-8")) + 1
    return {"documents": min(len(starts), max_docs or len(starts)), "tokens": n, "loss": nll / max(1, n),
            "ppl": math.exp(nll / max(1, n)), "bits_per_byte": nll / math.log(2) / max(1, nbytes)}


def lambada(model: GPT, path: str | Path, tokenizer: Tokenizer, device="cpu", limit: int | None = None) -> dict:
    import json

    lines = [json.loads(l) for l in read_text(path).splitlines() if l.strip()]
    if limit:
        lines = lines[:limit]
    correct = 0
    nll = 0.0
    ntok = 0
    block = model.config.block_size
    for rec in lines:
        text = rec["text"].strip()
        ctx, last = text.rsplit(" ", 1)
        c = tokenizer.encode(ctx)
        t = tokenizer.encode(" " + last)
        seq = (c + t)[-block:]
        x = torch.tensor(seq[:-1], dtype=torch.long, device=device)[None]
        with torch.no_grad():
            logits, _ = model(x)
        logp = F.log_softmax(logits[0, -len(t):].float(), dim=-1)
        tgt = torch.tensor(t, device=device)
        nll -= logp[torch.arange(len(t)), tgt].sum().item()
        ntok += len(t)
        correct += int(bool((logp.argmax(-1) == tgt).all()))
    return {"examples": len(lines), "acc": 100.0 * correct / max(1, len(lines)), "ppl": math.exp(nll / max(1, ntok))}


def wikitext_detokenize(s: str) -> str:
    """Invertible de-tokenizer for WikiText's tokenization (as in Megatron-LM's
    zero-shot evaluation, after the GPT-2 paper)."""
    s = s.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    s = s.replace(" : ", ": ").replace(" ; ", "; ").replace(" . ", ". ").replace(" ! ", "! ").replace(" ? ", "? ")
    s = s.replace(" , ", ", ")
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    s = s.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    s = s.replace(" " + chr(176) + " ", chr(176)).replace(" \n", "\n").replace("\n ", "\n")
    s = s.replace(" N ", " 1 ").replace(" 's", "'s")
    return s


def ptb_detokenize(s: str) -> str:
    s = s.replace(" 's", "'s").replace(" n't", "n't").replace(" 're", "'re").replace(" 've", "'ve").replace(" 'm", "'m")
    s = s.replace(" 'll", "'ll").replace(" 'd", "'d").replace(" , ", ", ").replace(" . ", ". ")
    s = s.replace("<unk>", "<unk>").replace(" \n", "\n").replace("\n ", "\n")
    return s


def word_ppl(model: GPT, path: str | Path, tokenizer: Tokenizer, detok, device="cpu", max_words: int | None = None) -> dict:
    """Perplexity per original word (whitespace tokens of the file), the GPT-2 paper's normalisation."""
    raw = read_text(path)
    if max_words:
        raw = " ".join(raw.split()[:max_words])
    n_words = len(raw.split())
    text = detok(raw)
    toks = [tokenizer.eot_id] + tokenizer.encode(text)
    nll, n = sequence_nll(model, toks, device)
    return {"words": n_words, "tokens": n, "ppl": math.exp(nll / n_words), "token_ppl": math.exp(nll / n)}


def closest_paper_size(model: GPT) -> str:
    n = model.num_params()
    sizes = {"gpt2": 124e6, "gpt2-medium": 355e6, "gpt2-large": 774e6, "gpt2-xl": 1558e6}
    return min(sizes, key=lambda k: abs(math.log(sizes[k] / n)))


def format_table(results: dict, model: GPT) -> str:
    ref_name = closest_paper_size(model)
    ref = PAPER_TABLE3[ref_name]
    rows = [("held-out PPL", results.get("heldout", {}).get("ppl"), None),
            ("held-out bits/byte", results.get("heldout", {}).get("bits_per_byte"), None),
            ("LAMBADA PPL", results.get("lambada", {}).get("ppl"), ref["lambada_ppl"]),
            ("LAMBADA ACC", results.get("lambada", {}).get("acc"), ref["lambada_acc"]),
            ("WikiText-2 PPL", results.get("wikitext2", {}).get("ppl"), ref["wikitext2_ppl"]),
            ("PTB PPL", results.get("ptb", {}).get("ppl"), ref["ptb_ppl"])]
    lines = [f"{'metric':<22}{'this model':>14}{'GPT-2 ' + ref['params'] + ' (paper)':>24}",
             f"{'':<22}{f'{model.num_params() / 1e6:.1f}M params':>14}"]
    for name, v, r in rows:
        if v is None:
            continue
        lines.append(f"{name:<22}{v:>14.3f}{(f'{r:.2f}' if r is not None else '-'):>24}")
    return "\n".join(lines)
