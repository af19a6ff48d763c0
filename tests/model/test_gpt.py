import pytest
import torch

from model.generate import filter_logits, generate
from model.gpt import GPT, GPTConfig, config_for

# Totals of OpenAI's released checkpoints (tied embeddings, 1024 positions).
PAPER_SIZES = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200}


@pytest.mark.parametrize("preset,total", PAPER_SIZES.items())
def test_parameter_counts_match_the_released_models(preset, total):
    with torch.device("meta"):
        model = GPT(config_for(preset))
    assert model.num_params() == total


def small(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64, **kw})).eval()


def test_architecture_details():
    m = small()
    assert m.lm_head.weight is m.transformer.wte.weight
    std = m.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / (2 * 2) ** 0.5) < 0.003
    # padding the vocabulary keeps logits over the real one
    p = small(pad_vocab_to=64)
    assert p.transformer.wte.weight.shape[0] == 50304
    logits, _ = p(torch.randint(0, 50257, (1, 8)))
    assert logits.shape[-1] == 50257


def test_causal_and_context_limit():
    m = small()
    x = torch.randint(0, 50257, (1, 16))
    a, _ = m(x)
    x2 = x.clone()
    x2[0, 10:] = 7
    b, _ = m(x2)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])
    with pytest.raises(ValueError, match="context"):
        m(torch.zeros(1, 65, dtype=torch.long))


def test_kv_cache_logits_equal_uncached():
    m = small()
    x = torch.randint(0, 50257, (3, 40))
    with torch.no_grad():
        full, _ = m(x)
        l1, _, past = m(x[:, :17], use_cache=True)
        l2, _, past = m(x[:, 17:30], past=past, use_cache=True)
        steps = []
        for t in range(30, 40):
            lt, _, past = m(x[:, t : t + 1], past=past, use_cache=True)
            steps.append(lt)
    cached = torch.cat([l1, l2] + steps, dim=1)
    assert torch.allclose(cached, full, atol=1e-4), (cached - full).abs().max()


def test_sampling_filters_and_determinism():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, :2]).all()
    assert not torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).any()
    # top_p: softmax is (.032, .087, .237, .644): 0.8 keeps the top two
    kept = ~torch.isinf(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[False, False, True, True]]
    m = small()
    prompts = [[1, 2, 3], [4, 5], [6]]
    a = generate(m, prompts, max_new_tokens=6, seed=3, top_p=0.9)
    b = generate(m, prompts, max_new_tokens=6, seed=3, top_p=0.9, use_cache=False)
    assert a == b and all(len(o) == 6 for o in a)
    greedy = generate(m, [[1, 2, 3]], max_new_tokens=5, temperature=0)
    assert greedy == generate(m, [[1, 2, 3]], max_new_tokens=5, temperature=0, seed=99)


def test_generation_stops_at_endoftext():
    m = small()
    with torch.no_grad():
        # the final hidden state becomes <|endoftext|>'s own embedding: it is then the likeliest token
        m.transformer.ln_f.weight.zero_()
        m.transformer.ln_f.bias.copy_(m.transformer.wte.weight[50256] * 10)
    out = generate(m, [[1, 2, 3]], max_new_tokens=20, temperature=0)
    assert out == [[]]


def test_fused_chunked_loss_equals_the_plain_loss_and_gradients():
    import torch

    torch.manual_seed(0)
    for pad in (1, 64):
        cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, pad_vocab_to=pad)
        m = GPT(cfg)
        x = torch.randint(0, 50257, (3, 16))
        y = torch.roll(x, -1, 1)
        y[0, :4] = -1  # ignored positions
        grads = []
        for fused in (False, True):
            m.zero_grad(set_to_none=True)
            logits, loss = m(x, y, fused_loss=fused)
            loss.backward()
            grads.append((loss.item(), [p.grad.clone() for p in m.parameters()]))
            assert (logits is None) == fused
        (l0, g0), (l1, g1) = grads
        assert abs(l0 - l1) < 1e-5
        for a, b in zip(g0, g1):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    # The default path in training on CPU is the fused one; under no_grad (eval) it is not.
    _, loss = m(x, y)
    with torch.no_grad():
        logits, loss2 = m(x, y)
    assert logits is not None and abs(loss.item() - loss2.item()) < 1e-5
