"""Model files checked before a model is built from them.

A checkpoint (``ckpt.pt``) or a Hugging Face directory declares a config and holds
weights. Building the model allocates what the config declares, so a damaged or crafted
file (a 1.5 KB ckpt.pt declaring a million layers) would ask for hundreds of GB before
anything compared the two. Here the config is read and typed first (whole numbers >= 1,
finite numbers, no unknown keys), then compared with the tensors actually present: the
number of layers from the keys, n_embd, vocabulary and context from the embeddings'
shapes, then every tensor's name and shape. Last, its parameter count is bounded by the
bytes of the file (a saved tensor can be a broadcast view far larger than what the file
stores). Every refusal is an InputError of one line naming the file, the key and what to do.

Files are read without running code from them: ``torch.load(weights_only=True)`` (a
pickle naming any function or class is refused: UnsafeCheckpoint) and safetensors.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from pathlib import Path

import torch

from .errors import InputError, UnsafeInput
from .gpt import GPTConfig
from .limits import param_count

# Weight names whose Hugging Face (Conv1D) layout is the transpose of ours (nn.Linear).
TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SIZES = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "pad_vocab_to")
_LAYER = re.compile(r"^transformer\.h\.(\d+)\.")


class UnsafeCheckpoint(UnsafeInput):
    """A checkpoint holding something other than tensors and plain data."""


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch's message starts with advice that does not apply here
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return f"{type(exc).__name__}: {lines[0].split('. Please')[0][:200]}" if lines else type(exc).__name__


def read_torch_file(path: Path, what: str, fix: str, map_location="cpu"):
    """``torch.load(weights_only=True)`` of PATH, every failure one InputError naming it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); {fix}") from exc
    if not head:
        raise InputError(f"{path}: empty file, not a {what}; {fix}")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a legacy pickle
        raise InputError(f"{path}: not a {what} (no PyTorch zip or pickle header); {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise UnsafeCheckpoint(f"{path}: refused to load: it holds objects other than tensors and plain data, "
                                   f"which could run code ({_first_line(exc)}). Only load checkpoints you trust to be "
                                   "webtext's or plain state dicts.") from exc
        raise InputError(f"{path}: damaged or not a {what} ({_first_line(exc)}); {fix}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in any of torch's readers
        raise InputError(f"{path}: damaged or truncated {what} ({_first_line(exc)}); {fix}") from exc


def parse_config(raw, where, fix: str, names: dict[str, str] | None = None, defaults: bool = True) -> GPTConfig:
    """A GPTConfig from a dict read from a file: known keys, whole sizes >= 1, finite numbers.
    ``names``: the file's own name of a key (Hugging Face's n_positions for block_size)."""
    names = names or {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: the config is a {type(raw).__name__}, not a dict of the model's sizes; {fix}")
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        raise InputError(f"{where}: unknown config key {unknown[0]!r} (known: {', '.join(sorted(fields))}); {fix}")
    if not defaults:
        absent = [k for k in SIZES[:5] if k not in raw]
        if absent:
            raise InputError(f"{where}: config has no {names.get(absent[0], absent[0])}; {fix}")
    for k, v in raw.items():
        shown = f"config {names.get(k, k)}={v!r}"
        if k in SIZES:
            if not isinstance(v, int) or isinstance(v, bool):
                raise InputError(f"{where}: {shown} is a {type(v).__name__}, not a whole number; {fix}")
            if v < 1:
                raise InputError(f"{where}: {shown} must be >= 1; {fix}")
        elif k == "bias":
            if not isinstance(v, bool):
                raise InputError(f"{where}: {shown} is a {type(v).__name__}, not true or false; {fix}")
        else:  # dropout, layer_norm_epsilon
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise InputError(f"{where}: {shown} is not a finite number; {fix}")
            if k == "dropout" and not 0 <= v < 1:
                raise InputError(f"{where}: {shown} must be in [0, 1); {fix}")
            if k == "layer_norm_epsilon" and not v > 0:
                raise InputError(f"{where}: {shown} must be > 0; {fix}")
    cfg = GPTConfig(**raw)
    if cfg.n_embd % cfg.n_head:
        raise InputError(f"{where}: config n_embd={cfg.n_embd} is not a multiple of n_head={cfg.n_head}; {fix}")
    return cfg


def tensor_shapes(sd, where, fix: str, entry: str = "'model'") -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of a state dict read from a file, each checked: a floating
    point tensor that stores its own elements (not a broadcast view of a smaller storage)."""
    if not isinstance(sd, dict) or not sd:
        kind = "an empty dict" if isinstance(sd, dict) else f"a {type(sd).__name__}"
        raise InputError(f"{where}: {entry} is {kind}, not the model's tensors; {fix}")
    shapes = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise InputError(f"{where}: {entry} entry {k!r} is a {type(v).__name__}, not a tensor; {fix}")
        if not v.is_floating_point():
            raise InputError(f"{where}: {k} holds {v.dtype} values, not floating point weights; {fix}")
        if v.numel() and v.numel() * v.element_size() > v.untyped_storage().nbytes():
            raise InputError(f"{where}: {k} of shape {tuple(v.shape)} is a broadcast view of "
                             f"{v.untyped_storage().nbytes()} bytes, not stored weights; {fix}")
        shapes[k] = tuple(v.shape)
    return shapes


def expected_shapes(cfg: GPTConfig, hf: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor GPT(cfg).state_dict() holds and its shape, without building it.
    ``hf``: a Hugging Face file's (real vocabulary rows, Conv1D weights transposed, no lm_head)."""
    C, V = cfg.n_embd, (cfg.vocab_size if hf else cfg.padded_vocab_size)
    out = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (cfg.block_size, C)}
    linears = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[p + ln + ".weight"] = (C,)
            if cfg.bias:
                out[p + ln + ".bias"] = (C,)
        for name, (o, n) in linears.items():
            out[p + name + ".weight"] = (n, o) if hf else (o, n)
            if cfg.bias:
                out[p + name + ".bias"] = (o,)
    out["transformer.ln_f.weight"] = (C,)
    if cfg.bias:
        out["transformer.ln_f.bias"] = (C,)
    if not hf:
        out["lm_head.weight"] = (V, C)
    return out


def check_weights(cfg: GPTConfig, shapes: dict[str, tuple[int, ...]], where, fix: str, file_bytes: int,
                  hf: bool = False, names: dict[str, str] | None = None) -> None:
    """The declared config against the tensors present, then its size against the file's."""
    names = names or {}
    layers = {int(m.group(1)) for k in shapes if (m := _LAYER.match(k))}
    if cfg.n_layer != len(layers):
        raise InputError(f"{where}: config n_layer={cfg.n_layer} but the weights hold {len(layers)} layer(s); {fix}")
    stray = sorted(layers - set(range(len(layers))))
    if stray:
        raise InputError(f"{where}: the weights' layers are not numbered 0..{len(layers) - 1} (transformer.h.{stray[0]}.* "
                         f"is there); {fix}")
    rows = cfg.vocab_size if hf else cfg.padded_vocab_size
    padded = "" if hf or rows == cfg.vocab_size else f" (padded to {rows})"
    for key, n, what in (("transformer.wte.weight", rows, f"vocab_size={cfg.vocab_size}{padded}"),
                         ("transformer.wpe.weight", cfg.block_size, f"{names.get('block_size', 'block_size')}="
                                                                    f"{cfg.block_size}")):
        s = shapes.get(key)
        if s is None:
            raise InputError(f"{where}: no {key} among the weights; {fix}")
        if len(s) != 2 or s[1] != cfg.n_embd:
            raise InputError(f"{where}: config n_embd={cfg.n_embd} but {key} has shape {s}; {fix}")
        if s[0] != n:
            raise InputError(f"{where}: config {what} but {key} has {s[0]} rows; {fix}")
    want = expected_shapes(cfg, hf)
    missing = [k for k in want if k not in shapes]
    if missing:
        raise InputError(f"{where}: no {missing[0]} among the weights ({len(missing)} missing); {fix}")
    extra = [k for k in shapes if k not in want]
    if extra:
        raise InputError(f"{where}: unexpected tensor {extra[0]} in the weights ({len(extra)} unexpected); {fix}")
    for k, s in want.items():
        if shapes[k] != s:
            raise InputError(f"{where}: {k} has shape {shapes[k]}, but the config makes it {s}; {fix}")
    n = param_count(cfg, padded=not hf)
    if n > file_bytes:
        raise InputError(f"{where}: the config makes {n:,} parameters but the file has only {file_bytes:,} bytes, "
                         f"too few to hold them; {fix}")


def check_finite(sd: dict[str, torch.Tensor], where, fix: str) -> None:
    """Every weight a finite number (NaN or inf: a damaged file or a diverged run)."""
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or not v.is_floating_point() or math.isfinite(v.sum().item()):
            continue  # a finite sum: no NaN or inf (one pass, no mask allocated)
        if not bool(torch.isfinite(v).all()):  # the sum may overflow where every weight is finite
            raise InputError(f"{where}: {k} holds NaN or infinite values; {fix}")
