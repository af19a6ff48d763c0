"""Hugging Face interop: export to a directory that ``GPT2LMHeadModel.from_pretrained``
and ``GPT2TokenizerFast.from_pretrained`` load, and import GPT-2 weights from one
(OpenAI's released models in HF form, for users who have them).

HF's GPT2 uses Conv1D, whose weight is the transpose of nn.Linear's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .gpt import GPT, GPTConfig
from .tokenizer import Tokenizer

_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_config(cfg: GPTConfig, eot_id: int = 50256):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function="gelu_new",  # tanh approximation, as in GPT-2
        layer_norm_epsilon=cfg.layer_norm_epsilon,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=eot_id, eos_token_id=eot_id,
        tie_word_embeddings=True,
    )


def to_hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    V = model.config.vocab_size
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied to wte
        if k.endswith(_TRANSPOSED):
            v = v.t()
        if k == "transformer.wte.weight":
            v = v[:V]
        out[k] = v.detach().clone().contiguous()
    return out


def export_hf(model: GPT, out_dir: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    from transformers import GPT2LMHeadModel

    out = Path(out_dir)
    tokenizer = tokenizer or Tokenizer.load("gpt2")
    if tokenizer.n_vocab != model.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.n_vocab} tokens, model {model.config.vocab_size}")
    hf = GPT2LMHeadModel(hf_config(model.config, tokenizer.eot_id))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [m for m in missing if not m.endswith((".attn.bias", ".attn.masked_bias", "lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    hf.save_pretrained(out, safe_serialization=True)
    tokenizer.to_hf().save_pretrained(out)
    return out


def import_hf(hf_dir: str | Path, pad_vocab_to: int = 1) -> GPT:
    """Load GPT-2 weights from a HF directory (config.json + model.safetensors or pytorch_model.bin)."""
    from safetensors.torch import load_file

    d = Path(hf_dir)
    conf_path = d / "config.json"
    if not conf_path.is_file():
        raise FileNotFoundError(f"{d}: no config.json; not a Hugging Face model directory")
    c = json.loads(conf_path.read_text())
    if c.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{d}: model_type {c.get('model_type')!r} is not gpt2")
    act = c.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{d}: activation {act!r} is not GPT-2's tanh GELU")
    cfg = GPTConfig(
        n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"], block_size=c["n_positions"],
        vocab_size=c["vocab_size"], layer_norm_epsilon=c.get("layer_norm_epsilon", 1e-5), pad_vocab_to=pad_vocab_to,
    )
    if (d / "model.safetensors").is_file():
        sd = load_file(str(d / "model.safetensors"))
    elif (d / "pytorch_model.bin").is_file():
        sd = torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{d}: no model.safetensors or pytorch_model.bin")
    model = GPT(cfg)
    own = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")) or k == "lm_head.weight":
            continue
        key = k if k.startswith("transformer.") else "transformer." + k  # OpenAI's release has no prefix
        if key.endswith(_TRANSPOSED):
            v = v.t()
        if key == "transformer.wte.weight" and v.size(0) < own[key].size(0):
            pad = torch.zeros(own[key].size(0) - v.size(0), v.size(1), dtype=v.dtype)
            v = torch.cat([v, pad])
        new[key] = v
    new["lm_head.weight"] = new["transformer.wte.weight"]
    missing, unexpected = model.load_state_dict(new, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"import mismatch: missing {missing}, unexpected {unexpected}")
    return model
