"""Hugging Face interop: export to a directory that ``GPT2LMHeadModel.from_pretrained``
and ``GPT2TokenizerFast.from_pretrained`` load, and import GPT-2 weights from one
(OpenAI's released models in HF form, for users who have them). An imported directory's
config.json is checked against its weights before anything is built (model/weights.py).

HF's GPT2 uses Conv1D, whose weight is the transpose of nn.Linear's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import InputError
from .gpt import GPT, GPTConfig
from .tokenizer import Tokenizer
from .weights import TRANSPOSED as _TRANSPOSED
from .weights import check_finite, check_weights, parse_config, read_torch_file, tensor_shapes

# config.json's names of GPTConfig's sizes
_HF_NAMES = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "block_size": "n_positions",
             "vocab_size": "vocab_size"}


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


def read_hf_config(d: Path, pad_vocab_to: int = 1) -> GPTConfig:
    """config.json of a Hugging Face GPT-2 directory as a GPTConfig, every key checked (InputError naming it)."""
    conf_path = d / "config.json"
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such directory; give a Hugging Face GPT-2 directory (config.json + weights)")
    if not conf_path.is_file():
        raise FileNotFoundError(f"{d}: no config.json; not a Hugging Face model directory (give the directory that "
                                "holds config.json and model.safetensors or pytorch_model.bin)")
    fix = "give the config.json of a GPT-2 model (transformers' GPT2Config.save_pretrained writes one)"
    try:
        c = json.loads(conf_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{conf_path}: not JSON ({str(exc).splitlines()[0][:200]}); {fix}") from exc
    if not isinstance(c, dict):
        raise InputError(f"{conf_path}: holds a JSON {type(c).__name__}, not an object of settings; {fix}")
    if c.get("model_type", "gpt2") != "gpt2":
        raise InputError(f"{conf_path}: model_type {c.get('model_type')!r} is not gpt2; {fix}")
    act = c.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise InputError(f"{conf_path}: activation_function {act!r} is not GPT-2's tanh GELU; {fix}")
    if not isinstance(pad_vocab_to, int) or isinstance(pad_vocab_to, bool) or pad_vocab_to < 1:
        raise InputError(f"pad_vocab_to must be a whole number >= 1, not {pad_vocab_to!r}")
    raw = {ours: c[theirs] for ours, theirs in _HF_NAMES.items() if theirs in c}
    raw["layer_norm_epsilon"] = c.get("layer_norm_epsilon", 1e-5)
    raw["pad_vocab_to"] = pad_vocab_to
    return parse_config(raw, conf_path, fix, names=_HF_NAMES, defaults=False)


def _hf_key(k: str) -> str | None:
    """Our name of a Hugging Face weight, None for what GPT-2 files hold besides weights
    (attention-mask buffers, the tied lm_head)."""
    if k.endswith((".attn.bias", ".attn.masked_bias")) or k == "lm_head.weight":
        return None
    return k if k.startswith("transformer.") else "transformer." + k  # OpenAI's release has no prefix


def _hf_shapes(path: Path, fix: str) -> tuple[dict[str, tuple[int, ...]], dict | None]:
    """Our weight names and their shapes in a HF weights file; for safetensors read from its
    header only (no tensor loaded), for pytorch_model.bin also the tensors (read without code).
    What is not a weight (the attention masks, often bool or uint8) is left out first."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                raw = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 - safetensors' errors for a damaged file vary
            raise InputError(f"{path}: damaged or not a safetensors file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); {fix}") from exc
        sd = None
        raw = {k: v for k, v in raw.items() if _hf_key(k) is not None}
        for k, (_, dtype) in raw.items():
            if dtype not in ("F16", "BF16", "F32", "F64"):
                raise InputError(f"{path}: {k} holds {dtype} values, not floating point weights; {fix}")
        shapes = {k: s for k, (s, _) in raw.items()}
    else:
        sd = read_torch_file(path, "PyTorch weights file", fix)
        if isinstance(sd, dict):
            sd = {k: v for k, v in sd.items() if not isinstance(k, str) or _hf_key(k) is not None}
        shapes = tensor_shapes(sd, path, fix, entry="the file")
    out: dict[str, tuple[int, ...]] = {}
    for k, s in shapes.items():
        key = _hf_key(k)
        if key in out:
            raise InputError(f"{path}: {k} is there twice (with and without the 'transformer.' prefix); {fix}")
        out[key] = s
    return out, sd


def import_hf(hf_dir: str | Path, pad_vocab_to: int = 1) -> GPT:
    """Load GPT-2 weights from a HF directory (config.json + model.safetensors or pytorch_model.bin).

    The config is checked against the weights' names and shapes (for safetensors, from the
    file's header) before the model is built, so a config that declares more than the
    weights hold is refused in milliseconds (InputError naming the file and key)."""
    from safetensors.torch import load_file

    d = Path(hf_dir)
    cfg = read_hf_config(d, pad_vocab_to)
    path = next((d / n for n in ("model.safetensors", "pytorch_model.bin") if (d / n).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{d}: no model.safetensors or pytorch_model.bin; put the weights beside config.json")
    fix = f"download the model again (config.json and {path.name} must come from the same model)"
    shapes, sd = _hf_shapes(path, fix)
    check_weights(cfg, shapes, path, fix, path.stat().st_size, hf=True, names=_HF_NAMES)
    if sd is None:
        try:
            sd = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path}: damaged safetensors file ({type(exc).__name__}: {exc}); {fix}") from exc
    model = GPT(cfg)
    own = model.state_dict()
    new = {}
    for k, v in sd.items():
        key = _hf_key(k)
        if key is None:
            continue
        if key.endswith(_TRANSPOSED):
            v = v.t()
        if key == "transformer.wte.weight" and v.size(0) < own[key].size(0):
            pad = torch.zeros(own[key].size(0) - v.size(0), v.size(1), dtype=v.dtype)
            v = torch.cat([v, pad])
        new[key] = v
    check_finite(new, path, fix)
    head = sd.get("lm_head.weight")
    wte = sd.get("transformer.wte.weight", sd.get("wte.weight"))
    if head is not None and wte is not None and not (head.shape == wte.shape and torch.equal(head, wte)):
        raise InputError(f"{path}: lm_head.weight is not the token embedding (an untied output layer); webtext's "
                         "GPT-2 ties the two, as OpenAI's models do, so importing it would change what the model "
                         "predicts: give a model with tied embeddings")
    new["lm_head.weight"] = new["transformer.wte.weight"]
    missing, unexpected = model.load_state_dict(new, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"import mismatch: missing {missing}, unexpected {unexpected}")
    return model
