"""webtext's zero-shot protocol, and its agreement with EleutherAI's lm-evaluation-harness.

The harness test runs where `lm_eval` is installed (`pip install -e '.[harness]'`);
bench/bench_eval_harness.py runs the full sets."""

import json
import lzma
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from webtext_testlib import shared

from model.evaluate import (
    lambada,
    read_text,
    sequence_nll,
    wikitext_articles,
    wikitext_ppl,
)
from model.gpt import GPT, config_for
from model.hf import export_hf
from model.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 64  # shorter than most LAMBADA passages: their context is cut, as the harness cuts it


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.load("gpt2")


@pytest.fixture(scope="module")
def model(tok):
    """The tiny preset with a 64-token context, after a few steps on real web text, so its
    predictions are not uniform."""
    torch.manual_seed(0)
    m = GPT(config_for("tiny", block_size=BLOCK))
    with lzma.open(shared("html", "aeb.jsonl.xz"), "rt", encoding="utf-8") as fh:
        text = " ".join(json.loads(line)["truth"] for _, line in zip(range(40), fh))
    ids = torch.tensor(tok.encode(text)[: 8 * 20 * (BLOCK + 1)]).view(-1, BLOCK + 1)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for i in range(0, len(ids), 8):
        batch = ids[i : i + 8]
        _, loss = m(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def hf_dir(model, tok, tmp_path_factory):
    return export_hf(model, tmp_path_factory.mktemp("hf"), tok)


def token_nll(model, context: list[int], target: int) -> float:
    with torch.no_grad():
        logits, _ = model(torch.tensor([context]))
    return -F.log_softmax(logits[0, -1].float(), -1)[target].item()


def test_sliding_windows(model, tok):
    ids = [tok.eot_id] + tok.encode(read_text(shared("eval", "wikitext-2.test.tokens.xz"))[:3000])[: 3 * BLOCK + 20]
    n = len(ids)
    # stride 1: every token after the first window sees exactly a full context
    full = [token_nll(model, ids[max(0, i - BLOCK) : i], ids[i]) for i in range(1, n)]
    nll, cnt = sequence_nll(model, ids, stride=1)
    assert cnt == n - 1 and nll == pytest.approx(sum(full), rel=1e-5)
    # stride = context: the harness's rolling windows. Tokens 1..BLOCK from the start; then
    # blocks of BLOCK targets whose first sees only the token before it; the last block
    # right-aligned (it reads the BLOCK tokens before its last target).
    want, i = sum(full[:BLOCK]), BLOCK + 1
    while i < n:
        j = min(n, i + BLOCK)
        lo = i - 1 if j - i == BLOCK else j - 1 - BLOCK
        want += sum(token_nll(model, ids[lo:k], ids[k]) for k in range(i, j))
        i = j
    nll, cnt = sequence_nll(model, ids, stride=BLOCK)
    assert cnt == n - 1 and nll == pytest.approx(want, rel=1e-5)
    # the default (half a context) lies between: more context than disjoint windows
    half, _ = sequence_nll(model, ids)
    assert half != pytest.approx(nll, rel=1e-7)
    with pytest.raises(ValueError, match="stride"):
        sequence_nll(model, ids, stride=BLOCK + 1)


def test_lambada_perplexity_is_per_word_with_the_whole_context(model, tok, hf_dir):
    """Checked against transformers on the exported model: the model reads up to BLOCK
    tokens (context cut on the left), perplexity is per passage (the target word)."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    path = shared("eval", "lambada_test.jsonl.xz")
    texts = [json.loads(l)["text"] for l in read_text(path).splitlines()[:25]]
    nlls, ntok, greedy, cut = [], 0, 0, 0
    for text in texts:
        ctx, last = text.rsplit(" ", 1)
        c, t = tok.encode(ctx), tok.encode(" " + last)
        cut += len(c) + len(t) > BLOCK + 1
        x = torch.tensor([(c + t)[-(BLOCK + 1) :][:-1]])
        with torch.no_grad():
            logp = F.log_softmax(hf(x).logits[0, -len(t) :].float(), -1)
        nlls.append(-logp[torch.arange(len(t)), torch.tensor(t)].sum().item())
        ntok += len(t)
        greedy += int(logp.argmax(-1).tolist() == t)
    assert cut > len(texts) // 2  # the context is cut for most passages
    r = lambada(model, path, tok, limit=25)
    assert r["ppl"] == pytest.approx(math.exp(sum(nlls) / len(texts)), rel=1e-4)
    assert r["token_ppl"] == pytest.approx(math.exp(sum(nlls) / ntok), rel=1e-4)
    assert r["acc"] == pytest.approx(100 * greedy / len(texts)) and r["target_tokens"] == ntok


def test_wikitext_articles_as_the_document_level_dataset():
    tokens = read_text(shared("eval", "wikitext-2.test.tokens.xz"))
    arts = wikitext_articles(tokens)
    assert len(arts) == 62  # wikitext_document_level, wikitext-2 test: 62 pages
    assert all(re.match(r" = [^=].* = $", a.split("\n")[0]) for a in arts)
    assert sum(len(a.split()) for a in arts) == 241_211
    assert " = = " in arts[0] and arts[1].startswith(" = Du Fu = ")
    # the raw copy in ../shared has CRLF line ends and no blank lines: the same articles and words
    raw = wikitext_articles(read_text(shared("eval", "wikitext-2-raw.test.txt.xz")))
    assert [len(a.split()) for a in raw] == [len(a.split()) for a in arts]
    assert not any("\r" in a for a in raw)


def test_wikitext_scores_each_article_from_endoftext(model, tok):
    path = shared("eval", "wikitext-2.test.tokens.xz")
    from model.evaluate import wikitext_detokenize

    arts = wikitext_articles(read_text(path))[:2]
    r = wikitext_ppl(model, path, tok, max_docs=2)
    parts = [sequence_nll(model, [tok.eot_id] + tok.encode(wikitext_detokenize(a))) for a in arts]
    assert r["documents"] == 2 and r["tokens"] == sum(c for _, c in parts)
    assert r["nll"] == pytest.approx(sum(n for n, _ in parts), rel=1e-9)
    assert r["ppl"] == pytest.approx(math.exp(r["nll"] / sum(len(a.split()) for a in arts)))


def test_task_yamls_keep_the_stock_harness_protocol():
    """Our tasks differ from lm_eval's lambada_openai / wikitext only in where the data come from."""
    pytest.importorskip("lm_eval", reason="lm_eval not installed (pip install -e '.[harness]')")
    import lm_eval.tasks as t
    import yaml

    stock_dir = Path(t.__file__).parent

    def load(p):
        class L(yaml.SafeLoader):
            pass

        L.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))
        return yaml.load(Path(p).read_text(), Loader=L)

    ours, stock = load(ROOT / "bench/harness_tasks/webtext_lambada_openai.yaml"), load(stock_dir / "lambada/lambada_openai.yaml")
    for k in ("output_type", "doc_to_text", "doc_to_target", "metric_list", "test_split"):
        assert ours[k] == stock[k], k
    assert ours.get("target_delimiter", " ") == stock.get("target_delimiter", " ")
    ours, stock = load(ROOT / "bench/harness_tasks/webtext_wikitext2.yaml"), load(stock_dir / "wikitext/wikitext.yaml")
    assert ours["output_type"] == stock["output_type"] == "loglikelihood_rolling"
    assert stock["doc_to_target"].endswith("wikitext_detokenizer") and stock["process_results"].endswith("process_results")
    assert [m["metric"] for m in stock["metric_list"]] == [m["metric"] for m in ours["metric_list"]][:3]


def test_agrees_with_lm_eval_harness(model, tok, hf_dir, monkeypatch, tmp_path):
    """`webtext eval`'s functions and lm_eval on the exported model: LAMBADA (30 passages,
    contexts cut to 64 tokens) and the first WikiText-2 article (disjoint windows,
    stride = context, as the harness has no other)."""
    pytest.importorskip("lm_eval", reason="lm_eval not installed (pip install -e '.[harness]')")
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    wt_path = shared("eval", "wikitext-2.test.tokens.xz")
    # A tiny model guesses no LAMBADA word, so every other passage here ends with the word
    # the model predicts (when that is one token, space + letters): accuracy is not 0 on
    # either side, and the two must agree passage by passage to give the same figure.
    rows, rewritten = [], 0
    for i, line in enumerate(read_text(shared("eval", "lambada_test.jsonl.xz")).splitlines()[:30]):
        text = json.loads(line)["text"]
        ctx = text.rsplit(" ", 1)[0]
        with torch.no_grad():
            guess = tok.decode([int(model(torch.tensor([tok.encode(ctx)[-BLOCK:]]))[0][0, -1].argmax())])
        if i % 2 == 0 and guess.startswith(" ") and guess[1:].isalpha():
            text, rewritten = ctx + guess, rewritten + 1
        rows.append(json.dumps({"text": text}))
    assert rewritten >= 5
    lam_path = tmp_path / "lambada.jsonl"
    lam_path.write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("WEBTEXT_LAMBADA_FILE", str(lam_path))
    monkeypatch.setenv("WEBTEXT_WIKITEXT_FILE", str(wt_path))
    tm = TaskManager(include_path=str(ROOT / "bench" / "harness_tasks"))

    def harness(task, limit):
        r = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={hf_dir},dtype=float32", tasks=[task],
                                    device="cpu", batch_size=8, limit=limit, task_manager=tm, bootstrap_iters=0)
        return {k.split(",")[0]: v for k, v in r["results"][task].items() if k.endswith(",none")}

    h = harness("webtext_lambada_openai", 30)
    ours = lambada(model, lam_path, tok, limit=30)
    assert ours["acc"] >= 100 * 5 / 30 and ours["acc"] == pytest.approx(100 * h["acc"], abs=1e-9)
    assert ours["ppl"] == pytest.approx(h["perplexity"], rel=1e-4)

    h = harness("webtext_wikitext2", 1)
    ours = wikitext_ppl(model, wt_path, tok, max_docs=1, stride=BLOCK)
    page = wikitext_articles(read_text(wt_path))[0]
    assert ours["ppl"] == pytest.approx(h["word_perplexity_ws"], rel=1e-4)
    assert math.exp(ours["nll"] / len(re.split(r"\s+", page))) == pytest.approx(h["word_perplexity"], rel=1e-4)
    # webtext's own protocol (overlapping windows, the default stride) is another figure
    assert wikitext_ppl(model, wt_path, tok, max_docs=1)["ppl"] != pytest.approx(ours["ppl"], rel=1e-4)
