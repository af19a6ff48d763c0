"""`webtext train`: GPT-2 on token shards, reading top to bottom like nanoGPT's train.py.

AdamW (decay on matrices only), linear warm-up then cosine decay, gradient
clipping, gradient accumulation to a target batch in tokens, bf16/fp16 autocast
on GPU (a GradScaler for fp16), optional torch.compile, DDP under torchrun.
Checkpoints are atomic and hold everything a resume needs (model, optimizer,
step, data-sampler RNG, torch RNG, config, tokenizer hash), so a stopped and
resumed run gives the same losses as an uninterrupted one. Options, the token shards'
manifest, the memory the model needs (model/limits.py) and a checkpoint to resume are
checked before anything is allocated, each refusal one line naming the key or file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import tomllib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import checked_config, load_checkpoint, save_checkpoint
from .data import TokenBatches, load_token_manifest, write_json_atomic
from .errors import ConfigError, InputError
from .gpt import GPT, config_for
from .gpt import PRESETS as MODEL_PRESETS
from .limits import check_fits, training_bytes


@dataclass
class TrainConfig:
    data_dir: str = "data/out/tokens"
    out_dir: str = "data/out/train"
    preset: str = "tiny"
    block_size: int | None = None  # None: the preset's
    batch_size: int = 16  # sequences per micro-batch
    tokens_per_step: int | None = None  # target batch in tokens (grad accumulation); None: one micro-batch
    max_steps: int = 300
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 50
    eval_iters: int = 10
    ckpt_interval: int = 100
    seed: int = 1337
    device: str = "auto"  # auto: cuda if available
    dtype: str = "auto"  # auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU
    compile: bool = False
    pad_vocab_to: int = 1
    tensorboard: bool = False
    peak_tflops: float = 0.0  # MFU denominator; 0: measured on the GPU at start (model/perf.py)


# The paper's sizes: context 1024, 512 sequences a batch (GPT-2 paper 2.3);
# learning rates as tuned for these sizes in GPT-3 Table 2.1 (the GPT-2 paper does
# not publish its own). "tiny" learns something in minutes on 2 CPU cores.
PRESETS = {
    "tiny": dict(preset="tiny", batch_size=16, max_steps=300, lr=1e-3, min_lr=1e-4, warmup_steps=30),
    "small": dict(preset="small", batch_size=16, max_steps=2000, lr=6e-4, min_lr=6e-5, warmup_steps=100),
    "gpt2": dict(preset="gpt2", batch_size=16, tokens_per_step=512 * 1024, max_steps=100_000, lr=6e-4, min_lr=6e-5, warmup_steps=2000),
    "gpt2-medium": dict(preset="gpt2-medium", batch_size=8, tokens_per_step=512 * 1024, max_steps=100_000, lr=3e-4, min_lr=3e-5, warmup_steps=2000),
    "gpt2-large": dict(preset="gpt2-large", batch_size=4, tokens_per_step=512 * 1024, max_steps=100_000, lr=2.5e-4, min_lr=2.5e-5, warmup_steps=2000),
    "gpt2-xl": dict(preset="gpt2-xl", batch_size=2, tokens_per_step=512 * 1024, max_steps=100_000, lr=2e-4, min_lr=2e-5, warmup_steps=2000),
}


class TrainingDiverged(RuntimeError):
    pass



def _check_types(cfg: TrainConfig) -> None:
    """Every [train] value has its field's type (TOML: a "false" string is not false, 1e6 is not an int)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        default = getattr(TrainConfig, f.name)
        if v is None and f.name in ("block_size", "tokens_per_step"):
            continue
        want = int if f.name in ("block_size", "tokens_per_step") else type(default)
        ok = isinstance(v, want) and not (want is not bool and isinstance(v, bool))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            object.__setattr__(cfg, f.name, float(v))
            ok = True
        if not ok:
            kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[want]
            raise ConfigError(f"train.{f.name} must be {kind}, not {v!r} ({type(v).__name__})")


def load_train_config(path: str | None = None, preset: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Preset, then the TOML file's [train] section, then KEY=VALUE overrides; every
    key and type checked (ConfigError naming the key, before any work)."""
    values: dict = {}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown training preset {preset!r}; known: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file not found: {p}")
        try:
            section = tomllib.loads(p.read_text()).get("train", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: {exc}") from exc
        unknown = sorted(set(section) - set(fields))
        if unknown:
            raise ConfigError(f"unknown key train.{unknown[0]} in {p}; known: {', '.join(fields)}")
        values.update(section)
    for o in overrides or []:
        if "=" not in o:
            raise ConfigError(f"training option {o!r} is not KEY=VALUE")
        k, v = o.split("=", 1)
        if k not in fields:
            raise ConfigError(f"unknown training option {k!r}; known: {', '.join(fields)}")
        default = getattr(TrainConfig(), k)
        try:
            if isinstance(default, bool):
                if v.lower() not in ("1", "true", "yes", "0", "false", "no"):
                    raise ValueError(v)
                values[k] = v.lower() in ("1", "true", "yes")
            elif isinstance(default, int) or k in ("block_size", "tokens_per_step"):
                values[k] = None if v.lower() == "none" else int(v)
            elif isinstance(default, float):
                values[k] = float(v)
            else:
                values[k] = v
        except ValueError:
            kind = "true or false" if isinstance(default, bool) else "a whole number" if isinstance(default, int) or \
                k in ("block_size", "tokens_per_step") else "a number"
            raise ConfigError(f"training option {k} must be {kind}, not {v!r}") from None
    cfg = TrainConfig(**values)
    _check_types(cfg)
    for name in ("batch_size", "max_steps", "eval_interval", "eval_iters", "ckpt_interval", "pad_vocab_to"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, not {getattr(cfg, name)!r}")
    for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip", "peak_tflops"):
        if not math.isfinite(getattr(cfg, name)):
            raise ConfigError(f"train.{name} must be a finite number, not {getattr(cfg, name)!r}")
    if cfg.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"train.dtype must be auto, float32, bfloat16 or float16, not {cfg.dtype!r}")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, not {dev!r}")
    if dev.startswith("cuda"):
        n = torch.cuda.device_count()
        if n == 0 or (dev[5:].isdigit() and int(dev[5:]) >= n):
            raise ConfigError(f"train.device = {dev!r}, but this machine has {n} CUDA device(s): use auto or cpu")
    if cfg.peak_tflops < 0:
        raise ConfigError(f"train.peak_tflops must be >= 0 (0: measure), not {cfg.peak_tflops!r}")
    if cfg.lr <= 0 or cfg.min_lr < 0 or cfg.warmup_steps < 0:
        raise ConfigError("train.lr must be > 0, train.min_lr and train.warmup_steps >= 0")
    for name in ("block_size", "tokens_per_step"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1 (or none: the preset's), not {getattr(cfg, name)!r}")
    if cfg.preset not in MODEL_PRESETS:
        raise ConfigError(f"train.preset {cfg.preset!r} is not a model size; known: {', '.join(MODEL_PRESETS)}")
    if not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"train.seed must be from 0 to 2**63 - 1, not {cfg.seed!r}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"train.{name} must be in [0, 1), not {getattr(cfg, name)!r}")
    for name in ("weight_decay", "grad_clip"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"train.{name} must be >= 0, not {getattr(cfg, name)!r}")
    return cfg


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    ratio = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where this process trains: its rank in a DDP group (torchrun sets RANK), its
    device and the numeric type of the forward pass."""

    ddp: bool
    rank: int
    world: int
    local: int
    device: str
    dev_type: str  # "cuda" | "cpu"
    dtype: str  # "float32" | "bfloat16" | "float16"

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ptdtype(self):
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]

    def autocast(self):
        return nullcontext() if self.dtype == "float32" else torch.autocast(device_type=self.dev_type, dtype=self.ptdtype)


def start_runtime(cfg: TrainConfig) -> Runtime:
    """Join the DDP group when torchrun started this process; choose device and dtype."""
    ddp = int(os.environ.get("RANK", -1)) != -1
    if ddp:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local = 0, 1, 0
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and ddp:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    if cfg.dtype == "auto":
        dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if dev_type == "cuda" else "float32"
    else:
        dtype = cfg.dtype
    if dev_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 work outside autocast on the tensor cores
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(ddp, rank, world, local, device, dev_type, dtype)


def carried_tokenizer(data_dir: str | Path, manifest: dict) -> dict:
    """``{"tokenizer_files": ...}`` for tokens of a custom tokenizer (the token directory
    holds its files, checked against the manifest's hash), so that the checkpoint
    carries its vocabulary wherever it goes; ``{}`` for GPT-2's."""
    rel = manifest["tokenizer"].get("path")
    if rel is None:
        return {}
    from .errors import InputError
    from .tokenizer import Tokenizer

    where = Path(data_dir) / str(rel)
    tok = Tokenizer.load(where)
    if tok.sha256 != manifest["tokenizer"]["sha256"]:
        raise InputError(f"{where}: this tokenizer is not the one {data_dir} was tokenized with (sha256 differs from "
                         "manifest.json's): run `webtext tokenize` again")
    return {"tokenizer_files": {"name": tok.name, "merges": tok.vocab_bpe.decode("utf-8"),
                                "vocab": tok.encoder_json.decode("utf-8")}}


def resume_from(ckpt_path: Path, rt: Runtime, model, optimizer, manifest: dict, data_dir: str) -> int:
    """Weights, optimizer state and per-rank RNG streams from CKPT_PATH; returns its step.
    Batches are a function of the step (TokenBatches.batch), so nothing else is needed.
    The checkpoint is checked first (InputError naming it): its model is the one this
    run builds, its weights match its config, and the entries a resume needs are there."""
    fix = "resume with the options that wrote it, or train into another out_dir"
    ck = load_checkpoint(ckpt_path, map_location=rt.device)
    if ck.get("tokenizer_sha256") != manifest["tokenizer"]["sha256"]:
        raise InputError(f"{ckpt_path} was trained with another tokenizer than {data_dir}; {fix}")
    saved = checked_config(ck, ckpt_path)
    if saved != model.config:
        diff = [f"{k}={v!r} (this run: {model.config.to_dict()[k]!r})" for k, v in saved.to_dict().items()
                if model.config.to_dict()[k] != v]
        raise InputError(f"{ckpt_path}: holds another model: {', '.join(diff)}; {fix}")
    step = ck.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(f"{ckpt_path}: step {step!r} is not a whole number >= 0; {fix}")
    if not isinstance(ck.get("optimizer"), dict):
        raise InputError(f"{ckpt_path}: no optimizer state (a checkpoint from `webtext import-hf`?); {fix}")
    model.load_state_dict(ck["model"])
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InputError(f"{ckpt_path}: its optimizer state does not fit this run ({str(exc)[:200]}); {fix}") from exc
    try:
        rngs = ck.get("torch_rng")  # one state per rank (dropout), saved as a list over the ranks
        if isinstance(rngs, list):
            if len(rngs) == rt.world:
                torch.set_rng_state(rngs[rt.rank])
        elif rngs is not None and rt.world == 1:
            torch.set_rng_state(rngs)
        cuda_rngs = ck.get("cuda_rng")
        if rt.dev_type == "cuda" and isinstance(cuda_rngs, list) and len(cuda_rngs) == rt.world:
            torch.cuda.set_rng_state(cuda_rngs[rt.rank].cpu())
    except (TypeError, RuntimeError, AttributeError) as exc:
        raise InputError(f"{ckpt_path}: damaged random-number state ({str(exc)[:200]}); {fix}") from exc
    return step


def rng_states(rt: Runtime) -> tuple[list, list]:
    """Every rank's CPU (and CUDA) RNG state, gathered (every rank must call this)."""
    cpu, cuda = [torch.get_rng_state()], [torch.cuda.get_rng_state()] if rt.dev_type == "cuda" else []
    if rt.ddp:
        import torch.distributed as dist

        everyone = [None] * rt.world
        dist.all_gather_object(everyone, (cpu[0], cuda[0] if cuda else None))
        cpu = [c for c, _ in everyone]
        cuda = [g for _, g in everyone] if cuda else []
    return cpu, cuda


@torch.no_grad()
def evaluate_loss(model, cfg: TrainConfig, rt: Runtime, block: int) -> float:
    """Mean loss over ``eval_iters`` held-out batches (the same batches every time)."""
    model.eval()
    val = TokenBatches(cfg.data_dir, "val", cfg.batch_size, block, cfg.seed + 1)
    losses = []
    for _ in range(cfg.eval_iters):
        x, y = val.next()
        with rt.autocast():
            _, loss = model(x.to(rt.device), y.to(rt.device))
        losses.append(loss.item())
    model.train()
    return sum(losses) / len(losses)


def peak_flops(cfg: TrainConfig, rt: Runtime) -> float | None:
    """FLOP/s of one device, MFU's denominator: ``peak_tflops``, or measured on the GPU
    (never a datasheet constant); None on a CPU."""
    if rt.dev_type != "cuda":
        return None
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    from .perf import measure_matmul_flops

    return measure_matmul_flops(rt.device, rt.ptdtype if rt.dtype != "float32" else torch.float32)


def train_step(model, optimizer, scaler, train_data, step: int, accum: int, rt: Runtime, cfg: TrainConfig,
               raw_model) -> float:
    """One optimizer step over ACCUM micro-batches; returns the global batch's loss."""
    lr = lr_at(step, cfg)
    for g in optimizer.param_groups:
        g["lr"] = lr
    total = torch.zeros((), device=rt.device)
    for micro in range(accum):
        # global micro-batch micro * world + rank: the same batches for any world size
        x, y = train_data.batch(step, micro * rt.world + rt.rank)
        if rt.dev_type == "cuda":
            x, y = x.pin_memory().to(rt.device, non_blocking=True), y.pin_memory().to(rt.device, non_blocking=True)
        if rt.ddp:
            model.require_backward_grad_sync = micro == accum - 1
        with rt.autocast():
            _, loss = model(x, y)
        scaler.scale(loss / accum).backward()
        total += loss.detach().float() / accum
    if rt.ddp:  # the logged loss is the global batch's, as one process with accumulation would log it
        import torch.distributed as dist

        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        total /= rt.world
    loss = total.item()  # one synchronisation a step, before the update
    if not math.isfinite(loss):
        return loss
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None, progress: bool = True) -> dict:
    """Train; returns {'losses': [...], 'val': [...], 'checkpoint': path}.

    ``stop_after``: stop (with a checkpoint) after this many steps of this call,
    as if interrupted; used by the resume test."""
    rt = start_runtime(cfg)
    manifest = load_token_manifest(cfg.data_dir)
    tokenizer_files = carried_tokenizer(cfg.data_dir, manifest)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = config_for(cfg.preset, vocab_size=manifest["tokenizer"]["n_vocab"], pad_vocab_to=cfg.pad_vocab_to,
                           **({"block_size": cfg.block_size} if cfg.block_size else {}))
    block = model_cfg.block_size
    # before anything is allocated: a block_size, preset or vocabulary this device cannot hold is one line of error
    check_fits(training_bytes(model_cfg, cfg.batch_size, rt.dev_type), rt.device,
               f"training preset {cfg.preset} (context {block:,}, vocabulary {model_cfg.vocab_size:,}) with "
               f"batch_size {cfg.batch_size}", "use a smaller preset, block_size or batch_size")
    micro_tokens = cfg.batch_size * block * rt.world
    accum = max(1, math.ceil((cfg.tokens_per_step or micro_tokens) / micro_tokens))

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP checks they agree)
    model = GPT(model_cfg).to(rt.device)
    torch.manual_seed(cfg.seed + rt.rank)  # dropout: a stream per rank
    optimizer = torch.optim.AdamW(model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  fused=rt.dev_type == "cuda")
    train_data = TokenBatches(cfg.data_dir, "train", cfg.batch_size, block, cfg.seed)
    ckpt_path = out / "ckpt.pt"
    step = resume_from(ckpt_path, rt, model, optimizer, manifest, cfg.data_dir) if resume and ckpt_path.is_file() else 0
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if rt.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[rt.local] if rt.dev_type == "cuda" else None)
    scaler = torch.amp.GradScaler(rt.dev_type, enabled=(rt.dtype == "float16"))

    def checkpoint() -> None:
        cpu_rng, cuda_rng = rng_states(rt)  # every rank takes part in the gather
        if rt.master:
            save_checkpoint(ckpt_path, raw_model, optimizer=optimizer.state_dict(), step=step,
                            sampler="step-indexed", torch_rng=cpu_rng, cuda_rng=cuda_rng,
                            train_config=dataclasses.asdict(cfg), tokenizer_sha256=manifest["tokenizer"]["sha256"],
                            data_manifest=manifest, **tokenizer_files)

    log_path = out / "metrics.jsonl"
    log = open(log_path, "a") if rt.master else None
    tb = None
    if cfg.tensorboard and rt.master:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / "tensorboard"))
    losses, vals = [], []
    flops_per_token = raw_model.flops_per_token()
    peak = peak_flops(cfg, rt)
    if rt.master:  # what this call ran on: MFU's denominator and how it was obtained
        write_json_atomic(out / "run.json", {
            "start_step": step, "world": rt.world, "device": rt.device, "dtype": rt.dtype,
            "device_name": torch.cuda.get_device_name(rt.device) if rt.dev_type == "cuda" else None,
            "tokens_per_step": accum * micro_tokens, "micro_batch": cfg.batch_size, "accum": accum,
            "flops_per_token": flops_per_token, "peak_flops_per_device": peak,
            "peak_source": None if peak is None else ("train.peak_tflops" if cfg.peak_tflops else "measured bf16/fp16 matmul"
                                                      if rt.dtype != "float32" else "measured fp32 matmul"),
            "torch": torch.__version__, "compile": cfg.compile})
    from tqdm.auto import tqdm

    # a bar on a terminal only (disable=None: off when stderr is not a TTY, e.g. a log file)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", disable=None if (rt.master and progress) else True,
               dynamic_ncols=True)
    model.train()
    steps_this_call = 0
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        total = train_step(model, optimizer, scaler, train_data, step, accum, rt, cfg, raw_model)
        if not math.isfinite(total):
            bar.close()
            raise TrainingDiverged(
                f"loss became {total} at step {step}; stopped. The last good checkpoint is kept at {ckpt_path}. "
                "Try a lower learning rate (lr=...), more warm-up, or grad_clip."
            )
        step += 1
        steps_this_call += 1
        tok_s = accum * micro_tokens / (time.perf_counter() - t0)
        rec = {"step": step, "loss": total, "lr": lr, "tokens_per_s": round(tok_s, 1)}
        if peak:
            rec["mfu"] = round(flops_per_token * tok_s / (peak * rt.world), 4)
        losses.append(total)
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            rec["val_loss"] = evaluate_loss(model, cfg, rt, block)
            vals.append((step, rec["val_loss"]))
        if rt.master:
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if tb:
                for k, v in rec.items():
                    if k != "step":
                        tb.add_scalar(k, v, step)
            bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{tok_s:,.0f}", **({"mfu": rec["mfu"]} if peak else {}))
            bar.update(1)
            if progress and bar.disable and ("val_loss" in rec or step == cfg.max_steps):
                # no terminal (a log file): a plain line at each evaluation instead of a bar
                print(f"step {step}/{cfg.max_steps}: loss {total:.4f}" + (f", val {rec['val_loss']:.4f}" if "val_loss" in rec else "")
                      + f", {tok_s:,.0f} tokens/s" + (f", MFU {rec['mfu']:.1%}" if peak else ""), flush=True)
        if step % cfg.ckpt_interval == 0 or step == cfg.max_steps:
            checkpoint()
        if stop_after is not None and steps_this_call >= stop_after:
            checkpoint()
            break
    bar.close()
    if rt.master:
        log.close()
        plot_losses(log_path, out / "loss.png")
    if rt.ddp:
        import torch.distributed as dist

        dist.destroy_process_group()
    return {"losses": losses, "val": vals, "checkpoint": str(ckpt_path), "step": step}


def plot_losses(metrics: Path, out_png: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], label="train", lw=1)
    v = [r for r in recs if "val_loss" in r]
    if v:
        ax.plot([r["step"] for r in v], [r["val_loss"] for r in v], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
