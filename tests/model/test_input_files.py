"""The model's other inputs give one line of error naming the file (or option) and what to
do: tokenizer directories, evaluation sets, token shards, `train` options and
checkpoints to resume, `generate` options. Limits are checked before allocating."""

import json
import lzma
import time

import numpy as np
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.errors import ConfigError, InputError
from model.gpt import GPT, GPTConfig, config_for
from model.tokenizer import Tokenizer, TokenizerError, train_bpe
from model.train import load_train_config, train

TEXTS = ["the cat sat on the mat and the dog sat on the log " * 20, "hello world, hello again, and again " * 20]


def cli_error(argv, capsys, named) -> str:
    from flows.cli import main

    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 5.0
    err = capsys.readouterr().err
    assert err.startswith(f"webtext {argv[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(named) in err, err
    return err


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.load("gpt2")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "ckpt.pt", GPT(cfg), tokenizer_path=None)


def tokens_dir(d, gpt2, n_train=4000, n_val=400, fill=None, **manifest):
    """Token shards as `webtext tokenize` writes them (random GPT-2 ids), MANIFEST keys replaced."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    train_ids = rng.integers(0, 50257, size=n_train) if fill is None else np.full(n_train, fill)
    train_ids.astype(np.uint16).tofile(d / "train.bin")
    rng.integers(0, 50257, size=n_val).astype(np.uint16).tofile(d / "val.bin")
    np.save(d / "val_docs.npy", np.array([0, 100, 250], dtype=np.int64))
    m = {"dtype": "uint16", "tokenizer": {"name": "gpt2", "sha256": gpt2.sha256, "n_vocab": 50257, "eot_id": 50256},
         "val_fraction": 0.1, "train": {"file": "train.bin", "tokens": n_train, "documents": 1},
         "val": {"file": "val.bin", "tokens": n_val, "documents": 3, "doc_starts": "val_docs.npy"}}
    for k, v in manifest.items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    (d / "manifest.json").write_text(json.dumps(m))
    return d


# --- tokenizer directories -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    return train_bpe(TEXTS, 300, name="t").save(tmp_path_factory.mktemp("bpe") / "bpe")


def _copy(src, dst, **files):
    dst.mkdir()
    for name in ("merges.txt", "vocab.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    for name, data in files.items():
        name = name.replace("_", ".", 1) if name != "webtext_tokenizer" else "webtext_tokenizer.json"
        if data is None:
            (dst / name).unlink()
        else:
            (dst / name).write_bytes(data)
    return dst


def _swap_ids(vocab: bytes) -> bytes:
    v = json.loads(vocab)
    a, b = list(v)[256:258]
    v[a], v[b] = v[b], v[a]
    return json.dumps(v).encode()


BAD_TOKENIZERS = {
    "three tokens on a merge line": (lambda d: dict(merges_txt=b"#version: 0.2\na b c\n"),
                                     "merges.txt line 2 is 'a b c', not two tokens"),
    "not a byte-level token": (lambda d: dict(merges_txt=b"#version: 0.2\na \x00\n"),
                               r"merges.txt line 2: '\\x00' is not a byte-level BPE token"),
    "vocab not JSON": (lambda d: dict(vocab_json=b"{not json"), "vocab.json or merges.txt is not UTF-8 JSON"),
    "vocab a list": (lambda d: dict(vocab_json=b"[1, 2]"), "vocab.json is not an object of token -> id"),
    "ids disagree": (lambda d: dict(vocab_json=_swap_ids((d / "vocab.json").read_bytes())),
                     "vocab.json and merges.txt disagree"),
    "merges not UTF-8": (lambda d: dict(merges_txt=b"#version\n\xff\xfe x\n"), "is not UTF-8"),
    "meta not JSON": (lambda d: dict(webtext_tokenizer=b"{"), "webtext_tokenizer.json: not a JSON object"),
    "no merges": (lambda d: dict(merges_txt=None), "not a tokenizer directory"),
}


@pytest.mark.parametrize("name", list(BAD_TOKENIZERS))
def test_a_malformed_tokenizer_directory_is_one_line(bpe_dir, tmp_path, name, capsys):
    make, match = BAD_TOKENIZERS[name]
    d = _copy(bpe_dir, tmp_path / "tok", **make(bpe_dir))
    with pytest.raises(TokenizerError, match=match) as exc:
        Tokenizer.load(d)
    assert isinstance(exc.value, InputError) and str(d) in str(exc.value) and "\n" not in str(exc.value)
    cli_error(["tokenize", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--tokenizer", str(d)], capsys, d)


def test_a_tokenizer_written_again_at_the_same_path_is_read_again(tmp_path):
    """tiktoken's loader cached vocab.bpe/encoder.json by path in /tmp/data-gym-cache: a directory written
    again was read as it was the first time (ranks of the old vocabulary, sha256 of the new)."""
    a, b = train_bpe(TEXTS[:1], 300), train_bpe(TEXTS[1:], 300)
    a.save(tmp_path / "tok")
    assert Tokenizer.load(tmp_path / "tok").encode("hello world") == a.encode("hello world")
    b.save(tmp_path / "tok")
    again = Tokenizer.load(tmp_path / "tok")
    assert again.sha256 == b.sha256 and a.encode("hello world") != b.encode("hello world")
    assert again.encode("hello world") == b.encode("hello world")


def test_our_reading_of_the_bpe_files_is_tiktokens(gpt2, bpe_dir, monkeypatch):
    """mergeable_ranks (from the bytes) gives what tiktoken's own reader gives (its cache turned off)."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from model.tokenizer import gpt2_files, mergeable_ranks

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    for vocab_bpe, encoder_json in (gpt2_files(), (bpe_dir / "merges.txt", bpe_dir / "vocab.json")):
        ours = mergeable_ranks(vocab_bpe.read_bytes(), encoder_json.read_bytes())
        assert ours == data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
    assert gpt2.encode("Hello world, it's 2019.") == [15496, 995, 11, 340, 338, 13130, 13]


# --- evaluation sets ----------------------------------------------------------------------


BAD_LAMBADA = {
    "not JSON": (b'{"text": "a b"}\n{"text": broken\n', "line 2 is not JSON"),
    "no text": (b'{"text": "a b"}\n{"passage": "a b"}\n', 'line 2 has no string "text" field'),
    "a list": (b'["a b"]\n', 'line 1 has no string "text" field'),
    "one word": (b'{"text": "a b"}\n{"text": "alone"}\n', "record 2 has no context before its last word"),
    "not UTF-8": (b'{"text": "caf\xe9 au lait"}\n', "not UTF-8 text"),
    "truncated xz": (lzma.compress(b'{"text": "a b c"}\n' * 50)[:40], "damaged or truncated .xz file"),
}


@pytest.mark.parametrize("name", list(BAD_LAMBADA))
def test_a_malformed_lambada_file_is_one_line(ckpt, tmp_path, name, capsys):
    data, match = BAD_LAMBADA[name]
    f = tmp_path / ("lambada.jsonl.xz" if name == "truncated xz" else "lambada.jsonl")
    f.write_bytes(data)
    err = cli_error(["eval", "--checkpoint", str(ckpt), "--lambada", str(f), "--out", str(tmp_path / "e.json")], capsys, f)
    assert match in err
    assert not (tmp_path / "e.json").exists()


def test_damaged_wikitext_and_ptb_files_are_one_line(ckpt, tmp_path, capsys):
    (tmp_path / "wiki.xz").write_bytes(b"\xfd7zXZ\x00 not really")
    (tmp_path / "ptb.txt").write_bytes(b"\xff\xfe\x00p\x00t\x00b")
    for opt, f in (("--wikitext2", tmp_path / "wiki.xz"), ("--ptb", tmp_path / "ptb.txt")):
        cli_error(["eval", "--checkpoint", str(ckpt), opt, str(f), "--out", str(tmp_path / "e.json")], capsys, f)


def test_eval_limit_and_stride_are_checked(ckpt, tmp_path, gpt2):
    from model.checkpoint import load_model
    from model.evaluate import evaluate_all

    model, _ = load_model(ckpt)
    data = tokens_dir(tmp_path / "tok", gpt2)
    with pytest.raises(ConfigError, match="limit must be a whole number >= 1"):
        evaluate_all(model, gpt2, data, limit=0)
    for stride in (0, 33):
        with pytest.raises(ConfigError, match="stride must be between 1 and the model's context of 32"):
            evaluate_all(model, gpt2, data, stride=stride)
    assert evaluate_all(model, gpt2, data, limit=2)["heldout"]["documents"] == 2  # the good shards evaluate


BAD_SHARDS = {
    "manifest not JSON": (lambda d: (d / "manifest.json").write_text("{"), "manifest.json: not JSON"),
    "huge n_vocab": (lambda d: _manifest(d, tokenizer={"n_vocab": 10**9}), "tokenizer.n_vocab=1000000000 is not"),
    "string n_vocab": (lambda d: _manifest(d, tokenizer={"n_vocab": "50257"}), "tokenizer.n_vocab='50257' is not"),
    "eot outside": (lambda d: _manifest(d, tokenizer={"eot_id": 50257}), "tokenizer.eot_id=50257 is not a token id"),
    "dtype": (lambda d: _manifest(d, dtype="float64"), "dtype 'float64' is not uint16 or uint32"),
    "path in file name": (lambda d: _manifest(d, val={"file": "../val.bin"}), "val must name a file in"),
    "truncated tokens": (lambda d: (d / "val.bin").write_bytes((d / "val.bin").read_bytes()[:-3]),
                         "says 400 uint16 tokens; the file is truncated"),
    "doc starts not npy": (lambda d: (d / "val_docs.npy").write_bytes(b"nope"), "damaged or not a .npy array"),
    "doc starts unordered": (lambda d: np.save(d / "val_docs.npy", np.array([0, 300, 200])),
                             "offsets are not increasing"),
    "another tokenizer": (lambda d: _manifest(d, tokenizer={"name": "bpe", "sha256": "x", "n_vocab": 8000,
                                                            "eot_id": 7999}), "tokenized with 'bpe'"),
}


def _manifest(d, **change):
    m = json.loads((d / "manifest.json").read_text())
    for k, v in change.items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("name", list(BAD_SHARDS))
def test_malformed_token_shards_are_one_line_in_eval(ckpt, tmp_path, gpt2, name, capsys):
    damage, match = BAD_SHARDS[name]
    d = tokens_dir(tmp_path / "tok", gpt2)
    damage(d)
    err = cli_error(["eval", "--checkpoint", str(ckpt), "--data", str(d), "--out", str(tmp_path / "e.json")], capsys, d)
    assert match in err, err


# --- train: options, shards, checkpoints to resume ----------------------------------------


@pytest.mark.parametrize("option,match", [
    ("block_size=0", "train.block_size must be >= 1"), ("block_size=-5", "train.block_size must be >= 1"),
    ("tokens_per_step=0", "train.tokens_per_step must be >= 1"), ("seed=-1", "train.seed must be from 0"),
    ("beta1=1.0", r"train.beta1 must be in \[0, 1\)"), ("beta2=-0.1", r"train.beta2 must be in \[0, 1\)"),
    ("weight_decay=-1", "train.weight_decay must be >= 0"), ("grad_clip=-0.5", "train.grad_clip must be >= 0"),
    ("preset=huge", "train.preset 'huge' is not a model size"),
])
def test_train_options_that_cannot_work_are_refused(option, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config(None, "tiny", [option])


def _cfg(data, out, *options):
    return load_train_config(None, "tiny", [f"data_dir={data}", f"out_dir={out}", "batch_size=2", "max_steps=1",
                                            "eval_interval=1", "eval_iters=1", "device=cpu", *options])


@pytest.mark.parametrize("options,manifest,match", [
    (["block_size=1000000000000"], {}, r"training preset tiny \(context 1,000,000,000,000, vocabulary 50,257\)"),
    (["batch_size=1000000000000", "block_size=16"], {}, "with batch_size 1000000000000 needs at least"),
    ([], {"dtype": "uint32", "tokenizer": {"n_vocab": 2**32, "eot_id": 0}}, "vocabulary 4,294,967,296"),
])
def test_a_model_the_machine_cannot_hold_is_refused_before_allocating(tmp_path, gpt2, options, manifest, match):
    data = tokens_dir(tmp_path / "tok", gpt2, **manifest)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as exc:
        train(_cfg(data, tmp_path / "out", *options), progress=False)
    assert time.perf_counter() - t0 < 2.0 and "of memory of this machine; use a smaller preset" in str(exc.value)
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_train_cli_gives_one_line_for_options_and_shards(tmp_path, gpt2, capsys):
    data = tokens_dir(tmp_path / "tok", gpt2, n_train=10)
    base = ["train", "--data", str(data), "--out", str(tmp_path / "out")]
    cli_error(base + ["block_size=0"], capsys, "train.block_size")
    cli_error(base + ["block_size=1000000000000"], capsys, "needs at least")
    cli_error(base + ["block_size=16", "device=cpu"], capsys, data / "train.bin")  # fewer tokens than one context


def test_tokens_outside_the_vocabulary_stop_training_with_the_file_named(tmp_path, gpt2):
    data = tokens_dir(tmp_path / "tok", gpt2, fill=60000)
    with pytest.raises(InputError, match=r"train.bin: token 60000 at offset [\d,]+ is outside the vocabulary of 50,257"):
        train(_cfg(data, tmp_path / "out", "block_size=16"), progress=False)


def test_a_checkpoint_to_resume_is_checked_against_the_run(tmp_path, gpt2):
    data = tokens_dir(tmp_path / "tok", gpt2)
    out = tmp_path / "out"
    run = config_for("tiny", vocab_size=50257, block_size=16)
    save_checkpoint(out / "ckpt.pt", GPT(config_for("tiny", vocab_size=50257, block_size=8)),
                    tokenizer_sha256=gpt2.sha256, step=1, optimizer={})
    with pytest.raises(InputError, match=r"ckpt.pt: holds another model: block_size=8 \(this run: 16\)"):
        train(_cfg(data, out, "block_size=16"), resume=True, progress=False)
    save_checkpoint(out / "ckpt.pt", GPT(run), tokenizer_sha256=gpt2.sha256, step=1)  # as import-hf writes
    with pytest.raises(InputError, match="ckpt.pt: no optimizer state"):
        train(_cfg(data, out, "block_size=16"), resume=True, progress=False)
    save_checkpoint(out / "ckpt.pt", GPT(run), tokenizer_sha256=gpt2.sha256, step="3", optimizer={})
    with pytest.raises(InputError, match="ckpt.pt: step '3' is not a whole number"):
        train(_cfg(data, out, "block_size=16"), resume=True, progress=False)
    save_checkpoint(out / "ckpt.pt", GPT(run), tokenizer_sha256=gpt2.sha256, step=0, optimizer={"state": 1})
    with pytest.raises(InputError, match="ckpt.pt: its optimizer state does not fit this run"):
        train(_cfg(data, out, "block_size=16"), resume=True, progress=False)
    (out / "ckpt.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="ckpt.pt: not a webtext checkpoint"):
        train(_cfg(data, out, "block_size=16"), resume=True, progress=False)


# --- generate -----------------------------------------------------------------------------


@pytest.mark.parametrize("options,match", [
    (["--temperature", "nan"], "temperature must be a finite number >= 0"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["--top-p", "1.5"], r"top-p must be in \(0, 1\]"), (["--top-k", "-3"], "top-k must be >= 0"),
    (["--max-new-tokens", "-1"], "max-new-tokens must be a whole number >= 0"),
    (["--num-samples", "0"], "--num-samples must be >= 1"),
    (["--num-samples", "1000000000"], "sampling 1,000,000,000 sequence(s) needs at least"),
    (["--device", "gpu"], "device 'gpu' is not cpu, cuda or cuda:N"),
    (["--device", "cuda:7"], "device 'cuda:7', but this machine has"),
])
def test_generate_options_that_cannot_work_are_one_line(ckpt, options, match, capsys):
    err = cli_error(["generate", "--checkpoint", str(ckpt), "--prompt", "Hello", *options], capsys, "error")
    assert match in err or __import__("re").search(match, err), err


def test_a_model_whose_vocabulary_is_not_its_tokenizers_is_refused(tmp_path, capsys):
    from model.generate import generate

    small = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=300))
    p = save_checkpoint(tmp_path / "ckpt.pt", small, tokenizer_path=None)
    err = cli_error(["generate", "--checkpoint", str(p), "--prompt", "Hello"], capsys, p)
    assert "vocabulary of 300 tokens, its tokenizer 'gpt2' 50,257" in err
    with pytest.raises(InputError, match="token id 15496, outside the model's vocabulary of 300"):
        generate(small, [[15496, 995]], 3)
