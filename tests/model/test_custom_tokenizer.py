"""A model trained on tokens of a custom tokenizer (`webtext train-tokenizer`) is read
back with that tokenizer by generate, eval and export-hf, wherever the checkpoint goes:
the token directory holds the tokenizer's files, and training stores them in the
checkpoint. A checkpoint that names another vocabulary than the one it carries, or
none it can be read with, is refused in one line."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from model.checkpoint import load_checkpoint, save_checkpoint
from model.gpt import GPT, GPTConfig
from model.tokenizer import Tokenizer, gpt2_tokenizer, train_bpe

TEXTS = [f"the river number {i} runs past the old mill and the green hills of the valley. " * 8 for i in range(60)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    docs = root / "docs"
    docs.mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(TEXTS))], "text": TEXTS}), docs / "part.parquet")
    bpe = train_bpe(TEXTS, 400, name="river-bpe").save(root / "bpe")
    assert main(["tokenize", "--in", str(docs), "--out", str(root / "tokens"), "--tokenizer", str(bpe),
                 "--val-fraction", "0.1"]) == 0
    assert main(["train", "--data", str(root / "tokens"), "--out", str(root / "run"), "--preset", "tiny",
                 "max_steps=3", "block_size=32", "batch_size=2", "eval_interval=3", "eval_iters=1",
                 "ckpt_interval=3"]) == 0
    # the checkpoint must stand alone: the token directory and the tokenizer's directory go away
    moved = root / "elsewhere"
    shutil.copytree(root / "run", moved)
    shutil.rmtree(root / "tokens")
    shutil.rmtree(bpe)
    return moved / "ckpt.pt", train_bpe(TEXTS, 400, name="river-bpe")


def test_the_token_directory_carries_its_tokenizer(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": [TEXTS[0]]}), docs / "p.parquet")
    bpe = train_bpe(TEXTS, 400, name="river-bpe").save(tmp_path / "bpe")
    assert main(["tokenize", "--in", str(docs), "--out", str(tmp_path / "t"), "--tokenizer", str(bpe)]) == 0
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["tokenizer"]["path"] == "tokenizer"
    assert Tokenizer.load(tmp_path / "t" / "tokenizer").sha256 == m["tokenizer"]["sha256"]
    assert main(["tokenize", "--in", str(docs), "--out", str(tmp_path / "g")]) == 0  # GPT-2's: nothing copied
    assert "path" not in json.loads((tmp_path / "g" / "manifest.json").read_text())["tokenizer"]
    assert not (tmp_path / "g" / "tokenizer").exists()


def test_generate_eval_and_export_read_the_checkpoint_with_its_own_tokenizer(trained, tmp_path, capsys):
    ckpt, tok = trained
    ck = load_checkpoint(ckpt)
    assert ck["tokenizer_files"]["name"] == "river-bpe" and ck["tokenizer_sha256"] == tok.sha256
    assert ck["model_config"]["vocab_size"] >= tok.n_vocab and tok.n_vocab < 1000  # not GPT-2's 50,257
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(ckpt), "--prompt", "the river", "--max-new-tokens", "5"]) == 0
    assert "the river" in capsys.readouterr().out
    (tmp_path / "lam.jsonl").write_text("".join(json.dumps({"text": t[:80] + " valley"}) + "\n" for t in TEXTS[:3]))
    assert main(["eval", "--checkpoint", str(ckpt), "--lambada", str(tmp_path / "lam.jsonl"),
                 "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["lambada"]["examples"] == 3
    assert main(["export-hf", str(ckpt), str(tmp_path / "hf")]) == 0
    exported = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())["model"]["vocab"]
    assert exported == json.loads(ck["tokenizer_files"]["vocab"])


def test_a_checkpoint_without_its_custom_tokenizer_is_refused(tmp_path, capsys):
    tok = train_bpe(TEXTS, 400, name="river-bpe")
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=400))
    cases = {
        "lost": ({"tokenizer_sha256": tok.sha256}, "carries no copy of it"),
        "damaged": ({"tokenizer_sha256": tok.sha256, "tokenizer_files": {"name": "x", "merges": 3}},
                    "tokenizer_files is not a mapping"),
        "swapped": ({"tokenizer_sha256": gpt2_tokenizer().sha256,
                     "tokenizer_files": {"name": tok.name, "merges": tok.vocab_bpe.decode(), "vocab": tok.encoder_json.decode()}},
                    "carries no copy of it"),
    }
    for name, (extra, match) in cases.items():
        p = save_checkpoint(tmp_path / name / "ckpt.pt", model, **extra)
        for argv in (["generate", "--checkpoint", str(p), "--prompt", "hi"], ["export-hf", str(p), str(tmp_path / "x")]):
            capsys.readouterr()
            assert main(argv) != 0, (name, argv)
            err = capsys.readouterr().err
            assert match in err and "Traceback" not in err, (name, err)
