"""Checkpoints: one ``.pt`` file holding the model config, weights and, for
training, the optimizer, scheduler, data position and RNG states. Written
atomically (temporary name, fsync, rename), so a crash never leaves a torn file.

Read without running code from them (``torch.load(weights_only=True)``), and checked
before a model is built: the config's types, then the config against the weights the
file holds (model/weights.py), so a damaged or crafted file is one line of error, not a
traceback or an allocation of what its config claims."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import ConfigError, InputError
from .gpt import GPT, GPTConfig
from .weights import UnsafeCheckpoint, check_finite, check_weights, parse_config, read_torch_file, tensor_shapes

__all__ = ["UnsafeCheckpoint", "checked_config", "load_checkpoint", "load_model", "resolve_checkpoint",
           "save_checkpoint"]

FIX = "give a checkpoint written by `webtext train` or `webtext import-hf`, or write it again"


def save_checkpoint(path: str | Path, model: GPT, **extra) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = getattr(model, "_orig_mod", model)
    raw = getattr(raw, "module", raw)
    state = {"model_config": raw.config.to_dict(), "model": raw.state_dict(), **extra}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "ckpt.pt"
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (give a ckpt.pt file or the directory holding one)")
    return p


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Loads with ``weights_only=True``: tensors, numbers, strings, lists and dicts
    only. Checkpoints are downloaded and shared; a pickle with anything else could
    run code on load, so it is refused (UnsafeCheckpoint), never executed. Anything
    but a dict with 'model_config' and 'model' entries is an InputError naming the file."""
    p = resolve_checkpoint(path)
    ck = read_torch_file(p, "webtext checkpoint", FIX, map_location)
    if not isinstance(ck, dict):
        raise InputError(f"{p}: holds a {type(ck).__name__}, not a webtext checkpoint (a dict with 'model_config' "
                         f"and 'model'); {FIX}")
    for entry in ("model_config", "model"):
        if entry not in ck:
            plain = all(isinstance(v, torch.Tensor) for v in ck.values()) and ck
            what = "a plain state dict, not a webtext checkpoint" if plain else "not a webtext checkpoint"
            raise InputError(f"{p}: no '{entry}' entry: {what} (entries: {', '.join(map(str, list(ck)[:6])) or 'none'})"
                             f"; {FIX}")
    return ck


def checked_config(ck: dict, path: str | Path) -> GPTConfig:
    """The checkpoint's model config, checked against the weights it holds (before any model is built)."""
    p = Path(path)
    cfg = parse_config(ck["model_config"], p, FIX)
    shapes = tensor_shapes(ck["model"], p, FIX)
    check_weights(cfg, shapes, p, FIX, p.stat().st_size)
    return cfg


def check_device(device: str) -> None:
    """ConfigError for a device name torch does not know, or a CUDA device this machine lacks."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s): "
                          "use cpu")


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    check_device(device)
    p = resolve_checkpoint(path)
    ck = load_checkpoint(p, map_location=device)
    cfg = checked_config(ck, p)
    check_finite(ck["model"], p, FIX)
    model = GPT(cfg)
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return model, ck
