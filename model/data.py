"""Token shards: documents -> flat memory-mapped token arrays for training.

``tokenize_shards`` reads Parquet documents (``id``, ``text``) in batches, splits
them by a hash of the document id into train and held-out (val), encodes with
the byte-level BPE on all cores (tiktoken releases the GIL, so threads scale),
and writes:

    train.bin, val.bin   uint16 tokens (uint32 when the vocabulary needs it),
                         <|endoftext|> after every document
    val_docs.npy         the start offset of every held-out document (for
                         per-document perplexity with a sliding window)
    manifest.json        token and document counts, dtype, tokenizer sha256,
                         the source manifest's sha256

``TokenBatches`` draws random-offset (x, y) batches from a ``.bin`` through
``np.memmap`` without ever loading it whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from .tokenizer import Tokenizer, gpt2_tokenizer

TOKENIZER_DIR = "tokenizer"  # a custom tokenizer's files inside a token directory

# GPT-2 paper 2.3/3: model sizes tuned on "a 5% held-out sample of WebText"
# (nanoGPT's OpenWebText prep uses 0.05%).
DEFAULT_VAL_FRACTION = 0.05


def dtype_for(n_vocab: int):
    return np.uint16 if n_vocab <= 2**16 else np.uint32


def is_heldout(doc_id: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(str(doc_id).encode()).digest()[:8], "big")
    return h < fraction * 2**64


def parquet_files(src: str | Path, max_version: int | None = None) -> list[Path]:
    """The document files of SRC: a file, a shard directory's manifest (the shards of
    versions up to ``max_version``, default all), or every Parquet file below it."""
    src = Path(src)
    if src.is_file():
        return [src]
    manifest = src / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        files = [src / s["file"] for s in m.get("shards", []) if max_version is None or s["version"] <= max_version]
        if files:
            return files
    files = sorted(p for p in src.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no Parquet documents under {src}")
    return files


def open_documents(f: Path) -> pq.ParquetFile:
    """The file, checked: readable Parquet (else DamagedFile, naming it) with id and text columns."""
    import pyarrow as pa

    from .errors import DamagedFile

    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DamagedFile(f, str(exc).splitlines()[0][:300]) from exc
    if not {"id", "text"} <= set(pf.schema_arrow.names):
        raise ValueError(f"{f}: documents need columns id and text (has {pf.schema_arrow.names})")
    return pf


def iter_documents(files: list[Path], batch_size: int = 1024) -> Iterator[tuple[list[str], list[str]]]:
    import pyarrow as pa

    from .errors import DamagedFile

    pfs = [open_documents(f) for f in files]  # every footer checked before any work
    for f, pf in zip(files, pfs):
        try:
            for batch in pf.iter_batches(batch_size=batch_size, columns=["id", "text"]):
                yield batch.column("id").to_pylist(), batch.column("text").to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DamagedFile(f, str(exc).splitlines()[0][:300]) from exc


def tokenize_shards(
    src: str | Path,
    out_dir: str | Path,
    tokenizer: Tokenizer | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    num_threads: int | None = None,
    progress: bool = True,
    max_version: int | None = None,
) -> dict:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    tokenizer = tokenizer or Tokenizer.load("gpt2")
    num_threads = num_threads or os.cpu_count() or 1
    files = parquet_files(src, max_version)
    for f in files:  # a damaged or foreign file fails here, before anything is written
        open_documents(f)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for(tokenizer.n_vocab)
    eot = tokenizer.eot_id
    tmp = {s: out / f".{s}.bin.tmp-{os.getpid()}" for s in ("train", "val")}
    fh = {s: open(tmp[s], "wb") for s in tmp}
    counts = {"train": [0, 0], "val": [0, 0]}  # tokens, docs
    val_starts: list[int] = []
    from tqdm.auto import tqdm

    bar = tqdm(desc="tokenize", unit="docs", disable=None if progress else True, dynamic_ncols=True, mininterval=0.5,
               file=sys.stderr)
    eot_arr = np.array([eot], dtype=np.uint32)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(num_threads) if num_threads > 1 else None
    try:
        for ids, texts in iter_documents(files, batch_size=8192):
            encoded = tokenizer.encode_arrays([t or "" for t in texts], pool, num_threads)
            parts: dict[str, list] = {"train": [], "val": []}
            pending = {"train": 0, "val": 0}
            for doc_id, toks in zip(ids, encoded):
                split = "val" if is_heldout(doc_id, val_fraction) else "train"
                if split == "val":
                    val_starts.append(counts["val"][0] + pending["val"])
                parts[split].append(toks)
                parts[split].append(eot_arr)
                pending[split] += toks.size + 1
                counts[split][1] += 1
            for split, arrays in parts.items():
                if arrays:
                    arr = np.concatenate(arrays)
                    if arr.dtype != dtype:
                        arr = arr.astype(dtype)
                    arr.tofile(fh[split])
                    counts[split][0] += arr.size
            bar.update(len(ids))
    except BaseException:
        for f in fh.values():
            f.close()
        for t in tmp.values():
            t.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
        for f in fh.values():
            f.close()
    for s in tmp:
        os.replace(tmp[s], out / f"{s}.bin")
    np.save(out / "val_docs.npy", np.asarray(val_starts, dtype=np.int64))
    is_gpt2 = tokenizer.sha256 == gpt2_tokenizer().sha256
    if not is_gpt2:  # the tokens travel with their vocabulary: training stores it in the checkpoint
        tokenizer.save(out / TOKENIZER_DIR)
    src_manifest = Path(src) / "manifest.json" if Path(src).is_dir() else None
    manifest = {
        "dtype": np.dtype(dtype).name,
        "tokenizer": {"name": tokenizer.name, "sha256": tokenizer.sha256, "n_vocab": tokenizer.n_vocab, "eot_id": eot,
                      **({} if is_gpt2 else {"path": TOKENIZER_DIR})},
        "val_fraction": val_fraction,
        "train": {"file": "train.bin", "tokens": counts["train"][0], "documents": counts["train"][1]},
        "val": {"file": "val.bin", "tokens": counts["val"][0], "documents": counts["val"][1], "doc_starts": "val_docs.npy"},
        "source": {
            "path": str(src),
            "files": [str(f) for f in files],
            "manifest_sha256": hashlib.sha256(src_manifest.read_bytes()).hexdigest() if src_manifest and src_manifest.is_file() else None,
        },
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def load_token_manifest(data_dir: str | Path) -> dict:
    """DATA_DIR/manifest.json, checked (InputError naming the key): a dtype of uint16 or
    uint32, a tokenizer with a whole n_vocab >= 1 the dtype can hold and an eot_id below it,
    and each split's file name and token count."""
    p = Path(data_dir) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"no token shards at {data_dir} (manifest.json missing): run `webtext tokenize` first")
    from .errors import InputError

    fix = "run `webtext tokenize` again to write the token shards"
    try:
        m = json.loads(p.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not JSON ({str(exc)[:200]}); {fix}") from exc

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    tok = m.get("tokenizer") if isinstance(m, dict) else None
    if not isinstance(tok, dict):
        raise InputError(f"{p}: no tokenizer entry; {fix}")
    if m.get("dtype") not in ("uint16", "uint32"):
        raise InputError(f"{p}: dtype {m.get('dtype')!r} is not uint16 or uint32; {fix}")
    n = tok.get("n_vocab")
    if not whole(n) or not 1 <= n <= np.iinfo(m["dtype"]).max + 1:
        raise InputError(f"{p}: tokenizer.n_vocab={n!r} is not a whole number from 1 to what {m['dtype']} holds; {fix}")
    if not whole(tok.get("eot_id")) or not 0 <= tok["eot_id"] < n:
        raise InputError(f"{p}: tokenizer.eot_id={tok.get('eot_id')!r} is not a token id below n_vocab={n}; {fix}")
    if not isinstance(tok.get("sha256"), str):
        raise InputError(f"{p}: tokenizer.sha256 is missing; {fix}")
    for split in ("train", "val"):
        e = m.get(split)
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or Path(e["file"]).name != e["file"] \
                or not whole(e.get("tokens")) or e["tokens"] < 0:
            raise InputError(f"{p}: {split} must name a file in {data_dir} and its token count; {fix}")
    return m


def open_tokens(data_dir: str | Path, split: str) -> np.memmap:
    from .errors import InputError

    m = load_token_manifest(data_dir)
    path = Path(data_dir) / m[split]["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (named by {Path(data_dir) / 'manifest.json'}): run `webtext "
                                "tokenize` again")
    item = np.dtype(m["dtype"]).itemsize
    size = path.stat().st_size
    if size % item or size // item != m[split]["tokens"]:
        raise InputError(f"{path}: {size:,} bytes, but manifest.json says {m[split]['tokens']:,} {m['dtype']} tokens; "
                         "the file is truncated or from another run: run `webtext tokenize` again")
    if size == 0:
        return np.zeros(0, dtype=np.dtype(m["dtype"]))
    return np.memmap(path, dtype=np.dtype(m["dtype"]), mode="r")


class TokenBatches:
    """Random-offset (x, y) batches from a memory-mapped token file.

    Training draws micro-batch ``index`` of optimizer step ``step`` with
    ``batch(step, index)``: its offsets come from a generator seeded with
    (seed, step, index) alone. The sequence of global batches is therefore the
    same whatever the number of processes: under DDP, rank r of W takes the
    micro-batches r, r + W, r + 2W, ... of each step, and one process with W times
    the accumulation takes them all. A resumed run needs only the step number to
    draw what an uninterrupted one would have drawn.

    ``next()`` draws from one running generator (seeded with (seed, rank)): the
    fixed held-out batches of the validation loss."""

    def __init__(self, data_dir: str | Path, split: str, batch_size: int, block_size: int, seed: int = 1337, rank: int = 0):
        from .errors import InputError

        m = load_token_manifest(data_dir)
        self.tokens = open_tokens(data_dir, split)
        self.path = Path(data_dir) / m[split]["file"]
        self.n_vocab = m["tokenizer"]["n_vocab"]
        if len(self.tokens) <= block_size + 1:
            raise InputError(
                f"{data_dir}/{split}.bin holds {len(self.tokens)} tokens, fewer than one context of {block_size + 1}; "
                "use a smaller block_size or more documents"
            )
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64([seed, rank]))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def _gather(self, ix: np.ndarray):
        import torch

        T = self.block_size
        rows = np.stack([self.tokens[i : i + T + 1] for i in ix]).astype(np.int64)
        if rows.size and rows.max() >= self.n_vocab:  # an embedding index out of range is a crash (a device assert on CUDA)
            from .errors import InputError

            r, c = np.unravel_index(int(rows.argmax()), rows.shape)
            raise InputError(f"{self.path}: token {int(rows.max())} at offset {int(ix[r]) + int(c):,} is outside the "
                             f"vocabulary of {self.n_vocab:,}; the file is damaged: run `webtext tokenize` again")
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]

    def batch(self, step: int, index: int):
        """Micro-batch ``index`` of optimizer step ``step`` (see the class doc)."""
        rng = np.random.Generator(np.random.PCG64([self.seed, step, index]))
        return self._gather(rng.integers(0, len(self.tokens) - self.block_size - 1, size=self.batch_size))

    def next(self):
        return self._gather(self.rng.integers(0, len(self.tokens) - self.block_size - 1, size=self.batch_size))


def write_json_atomic(path: str | Path, obj) -> None:
    """OBJ as JSON at PATH, whole or not at all (a temporary file, fsynced, then renamed)."""
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(obj, indent=2, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
