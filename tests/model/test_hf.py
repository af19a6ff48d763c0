import torch
from transformers import GPT2LMHeadModel, GPT2TokenizerFast

from model.gpt import GPT, GPTConfig
from model.hf import export_hf, import_hf


def test_export_then_transformers_logits_agree(tmp_path):
    torch.manual_seed(1)
    m = GPT(GPTConfig(n_layer=3, n_head=4, n_embd=64, block_size=128, pad_vocab_to=64)).eval()
    export_hf(m, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    tok = GPT2TokenizerFast.from_pretrained(tmp_path)
    assert tok.encode("Hello world") == [15496, 995]
    x = torch.randint(0, 50257, (2, 100))
    with torch.no_grad():
        ours, _ = m(x)
        theirs = hf(x).logits
    assert (ours - theirs).abs().max().item() < 1e-4


def test_import_from_transformers_logits_agree(tmp_path):
    from transformers import GPT2Config

    torch.manual_seed(2)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=48, n_positions=64, vocab_size=50257)
    hf = GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    m = import_hf(tmp_path).eval()
    x = torch.randint(0, 50257, (3, 64))
    with torch.no_grad():
        assert (m(x)[0] - hf(x).logits).abs().max().item() < 1e-4


def test_an_untied_output_layer_is_refused_not_dropped(tmp_path):
    """A GPT-2 whose lm_head is not its token embedding cannot be webtext's tied GPT:
    importing it would silently predict with the embedding instead."""
    import pytest
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config

    from model.errors import InputError

    torch.manual_seed(3)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=32, vocab_size=50257)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    sd = load_file(str(tmp_path / "model.safetensors"))
    wte = next(v for k, v in sd.items() if k.endswith("wte.weight"))
    sd["lm_head.weight"] = wte.clone()  # present and equal: still tied, imported
    save_file(sd, str(tmp_path / "model.safetensors"))
    import_hf(tmp_path)
    sd["lm_head.weight"] = wte + 0.5  # its own output layer
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(InputError, match="lm_head.weight is not the token embedding"):
        import_hf(tmp_path)
