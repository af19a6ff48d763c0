"""Checkpoints: one ``.pt`` file holding the model config, weights and, for
training, the optimizer, scheduler, data position and RNG states. Written
atomically (temporary name, fsync, rename), so a crash never leaves a torn file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

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


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    return torch.load(resolve_checkpoint(path), map_location=map_location, weights_only=False)


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    ckpt = load_checkpoint(path, map_location=device)
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
