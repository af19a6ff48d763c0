"""`webtext eval`: held-out perplexity and GPT-2's zero-shot language-modelling tasks.

Held-out: every token of every held-out document (sliding window with half-context
stride for long ones), perplexity per token and bits per byte (comparable across
tokenizers). Zero-shot, from files: LAMBADA (accuracy of greedily predicting every
token of the last word, and its perplexity per word), WikiText-2 and PTB (perplexity
per original word, after GPT-2's invertible de-tokenizers; WikiText-2 article by
article).

The protocol is the one of EleutherAI's lm-evaluation-harness (`lambada_openai`,
`wikitext`) except where noted: sliding windows instead of its disjoint ones
(``stride=block_size`` gives its windows) and WikiText words counted as whitespace
tokens. bench/bench_eval_harness.py checks the agreement.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, InputError
from .evalsets import ptb_detokenize, read_jsonl_texts, read_text, wikitext_articles, wikitext_detokenize  # noqa: F401
from .gpt import GPT
from .tokenizer import Tokenizer

# GPT-2 paper, Table 3 (zero-shot).
PAPER_TABLE3 = {
    "gpt2": {"params": "117M", "lambada_ppl": 35.13, "lambada_acc": 45.99, "wikitext2_ppl": 29.41, "ptb_ppl": 65.85},
    "gpt2-medium": {"params": "345M", "lambada_ppl": 15.60, "lambada_acc": 55.48, "wikitext2_ppl": 22.76, "ptb_ppl": 47.33},
    "gpt2-large": {"params": "762M", "lambada_ppl": 10.87, "lambada_acc": 60.12, "wikitext2_ppl": 19.93, "ptb_ppl": 40.31},
    "gpt2-xl": {"params": "1542M", "lambada_ppl": 8.63, "lambada_acc": 63.24, "wikitext2_ppl": 18.34, "ptb_ppl": 35.76},
}


@torch.no_grad()
def sequence_nll(model: GPT, tokens: list[int], device="cpu", score_from: int = 1,
                 stride: int | None = None) -> tuple[float, int]:
    """Sum of -log p(tokens[i] | tokens[:i]) over i in [score_from, len(tokens)), and the count.

    The first forward pass reads tokens[:block] and scores everything it predicts
    (up to tokens[block]); after it, windows advance ``stride`` targets at a time
    (default half the context), each reading the ``block`` tokens that end just
    before its last target. So every scored token sees at least block - stride + 1
    tokens of context, or all of them where fewer precede it. ``stride=block`` is
    lm-evaluation-harness's ``loglikelihood_rolling`` (disjoint windows whose first
    target sees one token, the last window right-aligned)."""
    block = model.config.block_size
    stride = max(1, block // 2) if stride is None else int(stride)
    if not 1 <= stride <= block:
        raise ValueError(f"stride {stride} must be between 1 and the context, {block}")
    total, count = 0.0, 0
    n = len(tokens)
    start = 1  # the first target of this window
    while start < n:
        end = min(n, block + 1 if start == 1 else start + stride)  # targets tokens[start:end]
        first = max(start, score_from)
        if first < end:
            lo = max(0, end - 1 - block)  # the window reads tokens[lo:end-1]
            window = torch.tensor(tokens[lo:end - 1], dtype=torch.long, device=device)[None]
            logits, _ = model(window)
            logp = F.log_softmax(logits[0, first - 1 - lo:].float(), dim=-1)
            tgt = torch.tensor(tokens[first:end], dtype=torch.long, device=device)
            total -= logp.gather(1, tgt[:, None]).sum().item()
            count += end - first
        start = end
    return total, count


def _doc_starts(data_dir: Path, m: dict, n_tokens: int) -> list[int]:
    """The held-out documents' start offsets (val_docs.npy), checked: increasing, inside val.bin."""
    name = m["val"].get("doc_starts", "val_docs.npy")
    p = data_dir / str(name)
    fix = "run `webtext tokenize` again to write the token shards"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing (named by {data_dir / 'manifest.json'}); {fix}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{p}: damaged or not a .npy array ({str(exc)[:200]}); {fix}") from exc
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{p}: holds a {arr.dtype} array of shape {arr.shape}, not document offsets; {fix}")
    if arr.size and (arr[0] < 0 or arr[-1] >= max(1, n_tokens) or bool((np.diff(arr) <= 0).any())):
        raise InputError(f"{p}: offsets are not increasing within val.bin's {n_tokens:,} tokens; {fix}")
    return arr.tolist()


def heldout(model: GPT, data_dir: str | Path, tokenizer: Tokenizer, device="cpu", max_docs: int | None = None,
            stride: int | None = None) -> dict:
    from .data import load_token_manifest, open_tokens

    m = load_token_manifest(data_dir)
    if m["tokenizer"]["sha256"] != tokenizer.sha256 or m["tokenizer"]["n_vocab"] > model.config.vocab_size:
        raise InputError(f"{data_dir}: tokenized with {m['tokenizer'].get('name')!r} ({m['tokenizer']['n_vocab']:,} "
                         f"tokens), not with the model's tokenizer {tokenizer.name!r} ({tokenizer.n_vocab:,}): "
                         "tokenize the held-out documents with the model's tokenizer")
    toks = open_tokens(data_dir, "val")
    starts = _doc_starts(Path(data_dir), m, len(toks))
    ends = starts[1:] + [len(toks)]
    nll = n = 0
    nbytes = 0
    eot = tokenizer.eot_id
    for i, (s, e) in enumerate(zip(starts, ends)):
        if max_docs is not None and i >= max_docs:
            break
        doc = [eot] + toks[s:e].tolist()  # each document is predicted from <|endoftext|> on, incl. its closing eot
        a, b = sequence_nll(model, doc, device, stride=stride)
        nll += a
        n += b
        nbytes += len(tokenizer.decode(doc[1:-1]).encode("utf-8")) + 1
    return {"documents": min(len(starts), max_docs or len(starts)), "tokens": n, "loss": nll / max(1, n),
            "ppl": math.exp(nll / max(1, n)), "bits_per_byte": nll / math.log(2) / max(1, nbytes)}


def lambada(model: GPT, path: str | Path, tokenizer: Tokenizer, device="cpu", limit: int | None = None) -> dict:
    """LAMBADA (OpenAI's jsonl): the passage up to its last space is the context, " " + the
    last word the target. ``acc``: every target token is the model's greedy choice;
    ``ppl``: per word, exp of the mean target negative log-likelihood over passages
    (the paper's rule of normalising by the canonical unit, here the target word, as
    lm-evaluation-harness's ``lambada_openai``); ``token_ppl``: per target token."""
    lines = read_jsonl_texts(path)
    if limit:
        lines = lines[:limit]
    for n, text in enumerate(lines, 1):
        if " " not in text.strip():
            raise InputError(f"{path}: record {n} has no context before its last word ({text[:60]!r}); LAMBADA "
                             "passages end in the word to predict")
    correct = 0
    nll = 0.0
    ntok = 0
    block = model.config.block_size
    for text in lines:
        ctx, last = text.strip().rsplit(" ", 1)
        c = tokenizer.encode(ctx)
        t = tokenizer.encode(" " + last)
        seq = (c + t)[-(block + 1):]  # the model reads up to block tokens: all but the last target
        x = torch.tensor(seq[:-1], dtype=torch.long, device=device)[None]
        with torch.no_grad():
            logits, _ = model(x)
        logp = F.log_softmax(logits[0, -len(t):].float(), dim=-1)
        tgt = torch.tensor(t, device=device)
        nll -= logp[torch.arange(len(t)), tgt].sum().item()
        ntok += len(t)
        correct += int(bool((logp.argmax(-1) == tgt).all()))
    n = max(1, len(lines))
    return {"examples": len(lines), "acc": 100.0 * correct / n, "ppl": math.exp(nll / n),
            "token_ppl": math.exp(nll / max(1, ntok)), "target_tokens": ntok}


def documents_word_ppl(model: GPT, docs: list[str], tokenizer: Tokenizer, detok, device="cpu",
                       stride: int | None = None) -> dict:
    """Perplexity per original word over documents, each de-tokenized and predicted from
    <|endoftext|> on (as GPT-2 saw documents in training). Words are the whitespace
    tokens of the original text: the paper's normalisation by canonical units."""
    nll, n, n_words = 0.0, 0, 0
    for doc in docs:
        toks = [tokenizer.eot_id] + tokenizer.encode(detok(doc))
        a, b = sequence_nll(model, toks, device, stride=stride)
        nll += a
        n += b
        n_words += len(doc.split())
    return {"documents": len(docs), "words": n_words, "tokens": n, "nll": nll,
            "ppl": math.exp(nll / max(1, n_words)), "token_ppl": math.exp(nll / max(1, n)),
            "stride": stride or max(1, model.config.block_size // 2)}


def wikitext_ppl(model: GPT, path: str | Path, tokenizer: Tokenizer, device="cpu", max_docs: int | None = None,
                 stride: int | None = None) -> dict:
    """WikiText-2 (the test file, tokenized ``wiki.test.tokens`` or raw) perplexity per word,
    article by article (``max_docs``: the first articles only)."""
    docs = wikitext_articles(read_text(path))
    return documents_word_ppl(model, docs[:max_docs] if max_docs else docs, tokenizer, wikitext_detokenize,
                              device, stride)


def word_ppl(model: GPT, path: str | Path, tokenizer: Tokenizer, detok, device="cpu", max_words: int | None = None,
             stride: int | None = None) -> dict:
    """Perplexity per original word (whitespace tokens of the file), the whole file as one
    document (PTB, which has no document boundaries)."""
    raw = read_text(path)
    if max_words:
        raw = " ".join(raw.split()[:max_words])
    return documents_word_ppl(model, [raw], tokenizer, detok, device, stride)


def evaluate_all(model: GPT, tokenizer: Tokenizer, data: str | Path | None = None, lambada_file: str | Path | None = None,
                 wikitext2: str | Path | None = None, ptb: str | Path | None = None, device="cpu",
                 limit: int | None = None, stride: int | None = None) -> dict:
    """Everything ``webtext eval`` and the train-model flow report, from the inputs given:
    held-out perplexity on DATA's val split, LAMBADA, WikiText-2 (per article), PTB.
    LIMIT: held-out documents / LAMBADA examples / WikiText-2 articles / PTB words."""
    block = model.config.block_size
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a whole number >= 1, not {limit!r}")
    if stride is not None and (not isinstance(stride, int) or not 1 <= stride <= block):
        raise ConfigError(f"stride must be between 1 and the model's context of {block}, not {stride!r}")
    if tokenizer.n_vocab > model.config.vocab_size:
        raise InputError(f"the tokenizer {tokenizer.name!r} has {tokenizer.n_vocab:,} tokens, more than the model's "
                         f"vocabulary of {model.config.vocab_size:,}: the checkpoint was trained with another tokenizer")
    res = {}
    if data:
        res["heldout"] = heldout(model, data, tokenizer, device, limit, stride=stride)
    if lambada_file:
        res["lambada"] = lambada(model, lambada_file, tokenizer, device, limit)
    if wikitext2:
        res["wikitext2"] = wikitext_ppl(model, wikitext2, tokenizer, device, limit, stride=stride)
    if ptb:
        res["ptb"] = word_ppl(model, ptb, tokenizer, ptb_detokenize, device, limit, stride=stride)
    return res


def closest_paper_size(model: GPT) -> str:
    n = model.num_params()
    sizes = {"gpt2": 124e6, "gpt2-medium": 355e6, "gpt2-large": 774e6, "gpt2-xl": 1558e6}
    return min(sizes, key=lambda k: abs(math.log(sizes[k] / n)))


def format_table(results: dict, model: GPT, limit: int | None = None) -> str:
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
    notes = []
    if limit:
        notes.append(f"subsets: at most {limit:,} examples / documents / articles / words per set (--limit); the paper's "
                     "figures are on the full sets, so the two columns are not the same measurement")
    if model.num_params() < 100e6:
        notes.append(f"this model ({model.num_params() / 1e6:.1f}M parameters) is far smaller than GPT-2 {ref['params']}, "
                     "the smallest of the paper; the paper column is a reference point, not a target")
    if "heldout" in results:
        notes.append("held-out perplexity is on this corpus's own held-out documents: it depends on the corpus (a small "
                     "or templated one, like the demo's, gives a low figure) and is not comparable with the paper's columns")
    return "\n".join(lines + [f"note: {n}" for n in notes])
