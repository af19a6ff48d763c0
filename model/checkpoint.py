"""Checkpoints: one ``.pt`` file holding the model config, weights and, for
training, the optimizer, scheduler, data position and RNG states. Written
atomically (temporary name, fsync, rename), so a crash never leaves a torn file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UnsafeInput
from .gpt import GPT, GPTConfig


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


class UnsafeCheckpoint(UnsafeInput):
    """A checkpoint holding something other than tensors and plain data."""


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Loads with ``weights_only=True``: tensors, numbers, strings, lists and dicts
    only. Checkpoints are downloaded and shared; a pickle with anything else could
    run code on load, so it is refused, never executed."""
    import pickle

    p = resolve_checkpoint(path)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(f"{p}: refused to load: it holds objects other than tensors and plain data, which "
                               f"could run code ({str(exc).splitlines()[0][:200]}). Only load checkpoints you trust "
                               "to be webtext's or plain state dicts.") from exc


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    ckpt = load_checkpoint(path, map_location=device)
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
