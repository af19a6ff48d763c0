import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from webtext_testlib import shared

from model.checkpoint import load_model
from model.data import tokenize_shards
from model.evaluate import heldout, lambada, sequence_nll, wikitext_detokenize, word_ppl
from model.hf import export_hf
from model.tokenizer import Tokenizer
from model.train import TrainingDiverged, load_train_config, lr_at, train


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    import lzma

    text = lzma.decompress(shared("eval", "wikitext-2-raw.test.txt.xz").read_bytes()).decode()
    paras = [p for p in text.split("\n") if len(p) > 200][:600]
    d = tmp_path_factory.mktemp("shards")
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(paras))], "text": paras}), d / "shard.parquet")
    out = d / "tokens"
    m = tokenize_shards(d, out, Tokenizer.load("gpt2"), val_fraction=0.1, progress=False)
    assert m["val"]["documents"] > 20 and m["train"]["tokens"] > 50_000
    train_arr = np.memmap(out / "train.bin", dtype=np.uint16, mode="r")
    assert train_arr[-1] == 50256 and (train_arr == 50256).sum() == m["train"]["documents"]
    return out


def cfg_for(tokens, out, **kw):
    over = [f"data_dir={tokens}", f"out_dir={out}", "block_size=64", "batch_size=8", "eval_interval=10", "eval_iters=4",
            "ckpt_interval=1000", "warmup_steps=5"] + [f"{k}={v}" for k, v in kw.items()]
    return load_train_config(None, "tiny", over)


def test_tiny_preset_learns_and_resume_is_exact(tokens, tmp_path):
    full = train(cfg_for(tokens, tmp_path / "a", max_steps=30), progress=False)
    assert full["val"][-1][1] < full["val"][0][1] - 0.5  # validation loss falls
    assert (tmp_path / "a" / "loss.png").is_file() and (tmp_path / "a" / "metrics.jsonl").is_file()
    first = train(cfg_for(tokens, tmp_path / "b", max_steps=30), stop_after=13, progress=False)
    rest = train(cfg_for(tokens, tmp_path / "b", max_steps=30), resume=True, progress=False)
    assert first["step"] == 13 and rest["step"] == 30
    assert np.allclose(first["losses"] + rest["losses"], full["losses"], rtol=0, atol=1e-5)


def test_lr_schedule_and_bad_options():
    cfg = load_train_config(None, "tiny", ["max_steps=100", "warmup_steps=10", "lr=1e-3", "min_lr=1e-4"])
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-4) and 1e-4 < lr_at(55, cfg) < 1e-3
    with pytest.raises(ValueError, match="unknown training option"):
        load_train_config(None, "tiny", ["learning_rate=1"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tokens, tmp_path):
    train(cfg_for(tokens, tmp_path, max_steps=5, ckpt_interval=5), progress=False)
    good = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg_for(tokens, tmp_path, max_steps=10, lr=1e30, min_lr=1e30, grad_clip=0), resume=True, progress=False)
    assert (tmp_path / "ckpt.pt").read_bytes() == good


def test_eval_agrees_with_transformers(tokens, tmp_path):
    train(cfg_for(tokens, tmp_path, max_steps=10), progress=False)
    model, _ = load_model(tmp_path)
    tok = Tokenizer.load("gpt2")
    export_hf(model, tmp_path / "hf", tok)
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    import lzma

    text = wikitext_detokenize(lzma.decompress(shared("eval", "wikitext-2.test.tokens.xz").read_bytes()).decode()[:3000])
    ids = [tok.eot_id] + tok.encode(text)[:63]
    ours, n = sequence_nll(model, ids)
    with torch.no_grad():
        theirs = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item() * (len(ids) - 1)
    assert n == len(ids) - 1 and abs(ours - theirs) / theirs < 1e-3
    # sliding window over a long text equals the sum of its windows' own predictions
    long_ids = [tok.eot_id] + tok.encode(text)[:200]
    nll, cnt = sequence_nll(model, long_ids)
    assert cnt == len(long_ids) - 1 and math.isfinite(nll)
    h = heldout(model, tokens, tok, max_docs=5)
    assert h["ppl"] > 1 and 0 < h["bits_per_byte"] < 10
    lam = lambada(model, shared("eval", "lambada_test.jsonl.xz"), tok, limit=20)
    assert lam["examples"] == 20 and 0 <= lam["acc"] <= 100 and lam["ppl"] > 1
    w = word_ppl(model, shared("eval", "ptb.test.txt.xz"), tok, lambda s: s, max_words=300)
    assert w["words"] >= 290 and w["ppl"] > w["token_ppl"] * 0.5


def test_token_shards_hold_exactly_tiktokens_encoding(tmp_path):
    texts = ["Hello world, again.", "A literal <|endoftext|> inside text is plain text.", "", "naïve café — 東京 🚀"] * 50
    pq.write_table(pa.table({"id": [f"x{i}" for i in range(len(texts))], "text": texts}), tmp_path / "s.parquet")
    tok = Tokenizer.load("gpt2")
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        m = tokenize_shards(tmp_path / "s.parquet", out, tok, val_fraction=0.2, num_threads=threads, progress=False)
        val_ids = {f"x{i}" for i in range(len(texts)) if __import__("model.data", fromlist=["is_heldout"]).is_heldout(f"x{i}", 0.2)}
        want = {"train": [], "val": []}
        for i, t in enumerate(texts):
            want["val" if f"x{i}" in val_ids else "train"] += tok.encoding.encode_ordinary(t) + [50256]
        for split in ("train", "val"):
            got = np.memmap(out / f"{split}.bin", dtype=np.uint16, mode="r").tolist()
            assert got == want[split], (threads, split)
        assert m["val"]["documents"] == len(val_ids) > 0


def test_generate_cli_samples_from_a_checkpoint(tokens, tmp_path, capsys):
    from flows.cli import main

    train(cfg_for(tokens, tmp_path / "g", max_steps=3), progress=False)
    argv = ["generate", "--checkpoint", str(tmp_path / "g"), "--prompt", "The city", "--max-new-tokens", "12",
            "--seed", "3", "--top-p", "0.9", "--num-samples", "2"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == first  # seeded: the same samples
    assert first.count("The city") >= 2


def test_a_checkpoint_that_would_run_code_is_refused_not_executed(tmp_path):
    """A crafted ckpt.pt whose unpickling calls a function: loading refuses it and the function never runs."""
    import torch

    from model.checkpoint import UnsafeCheckpoint, load_checkpoint, load_model

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model_config": {}, "model": Payload()}, tmp_path / "ckpt.pt")
    for load in (load_checkpoint, load_model):
        with pytest.raises(UnsafeCheckpoint, match="refused to load"):
            load(tmp_path)
    assert not marker.exists()


def test_eval_table_says_when_it_used_subsets_and_what_the_model_is():
    from model.evaluate import format_table
    from model.gpt import GPT, config_for

    model = GPT(config_for("tiny"))
    res = {"heldout": {"ppl": 2.1, "bits_per_byte": 0.5}, "lambada": {"ppl": 900.0, "acc": 1.0}}
    table = format_table(res, model, limit=200)
    assert "at most 200 examples" in table and "not the same measurement" in table
    assert "far smaller than GPT-2 117M" in table and "held-out perplexity is on this corpus" in table
    assert "subsets" not in format_table(res, model)
