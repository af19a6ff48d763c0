"""Malformed or oversized model files (checkpoints, Hugging Face directories) give one
line of error naming the file and the key, before any model is built: no traceback and
no allocation of what a config merely declares."""

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.checkpoint import UnsafeCheckpoint, load_checkpoint, load_model, save_checkpoint
from model.errors import InputError
from model.gpt import GPT, GPTConfig
from model.hf import import_hf
from model.limits import param_count
from model.weights import check_weights, expected_shapes

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=50257)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real small checkpoint (GPT-2's vocabulary, so `generate` can sample from it) and its contents."""
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path_factory.mktemp("base") / "ckpt.pt", GPT(GPTConfig(**SMALL)), tokenizer_path=None)
    return path, torch.load(path, weights_only=True)


def one_line(msg: str, path) -> str:
    assert "\n" not in msg.strip() and "Traceback" not in msg, msg
    assert str(path) in msg, msg
    return msg


def refused(path, match: str, load=load_model) -> str:
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=match) as exc:
        load(path)
    assert time.perf_counter() - t0 < 1.0  # refused from the file alone, nothing built
    return one_line(str(exc.value), path)


def cli_error(argv, capsys, path) -> str:
    from flows.cli import main

    capsys.readouterr()  # what came before (transformers' progress bars) is not this command's
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"webtext {argv[0]}: error: "), err
    return one_line(err, path)


def write(tmp_path, ck, name="ckpt.pt") -> Path:
    p = tmp_path / name
    torch.save(ck, p)
    return p


# --- the declared config against the weights present -----------------------------------

HUGE = [
    ({"n_layer": 1_000_000}, r"config n_layer=1000000 but the weights hold 2 layer\(s\)"),
    ({"n_embd": 2**20}, r"config n_embd=1048576 but transformer.wte.weight has shape \(50257, 16\)"),
    ({"vocab_size": 10**9}, r"config vocab_size=1000000000 but transformer.wte.weight has 50257 rows"),
    ({"block_size": 10**9}, r"config block_size=1000000000 but transformer.wpe.weight has 32 rows"),
    ({"pad_vocab_to": 10**12}, r"vocab_size=50257 \(padded to 1000000000000\) but transformer.wte.weight has 50257"),
]


@pytest.mark.parametrize("change,match", HUGE, ids=[next(iter(c)) for c, _ in HUGE])
def test_a_config_declaring_more_than_its_weights_is_refused_fast(base, tmp_path, change, match, capsys):
    ck = copy.copy(base[1])
    ck["model_config"] = {**ck["model_config"], **change}
    p = write(tmp_path, ck)
    assert p.stat().st_size < 4_000_000
    refused(p, match)
    cli_error(["generate", "--checkpoint", str(p), "--prompt", "hi"], capsys, p)


def test_a_million_layers_fail_under_a_memory_limit_without_allocating(base, tmp_path):
    """In a process limited to 3 GB of address space (a million layers of this width would be ~13 GB of
    weights, and the Python modules far more), loading gives the error, not MemoryError, swap or a hang."""
    ck = copy.copy(base[1])
    ck["model_config"] = {**ck["model_config"], "n_layer": 1_000_000}
    p = write(tmp_path, ck)
    hf = tmp_path / "hf"
    hf.mkdir()
    hf_model(hf)
    conf = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**conf, "n_layer": 1_000_000}))
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, {str(REPO)!r})
from model.checkpoint import load_model
from model.errors import InputError
from model.hf import import_hf
for load, arg in ((load_model, {str(p)!r}), (import_hf, {str(hf)!r})):
    try:
        load(arg)
    except InputError as exc:
        print("refused:", exc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("refused:") == 2 and r.stdout.count("n_layer=1000000 but the weights hold 2 layer") == 2, r.stdout


def test_weights_that_are_broadcast_views_do_not_pass_for_a_big_model(base, tmp_path):
    """torch.save keeps a zero-stride view: a 2 KB file can hold 'tensors' of any shape. Their
    shapes matching a huge config must not let the model be built."""
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=8192, block_size=32, vocab_size=50257)  # ~2.6 G parameters
    fake = {k: torch.zeros(1).expand(*s) for k, s in expected_shapes(cfg).items()}
    p = write(tmp_path, {"model_config": cfg.to_dict(), "model": fake})
    assert p.stat().st_size < 20_000
    refused(p, r"transformer.wte.weight of shape \(50257, 8192\) is a broadcast view")


def test_a_config_is_bounded_by_the_bytes_of_its_file():
    cfg = GPTConfig(**SMALL)
    shapes = expected_shapes(cfg)
    check_weights(cfg, shapes, "ckpt.pt", "fix", file_bytes=4 * param_count(cfg))
    with pytest.raises(InputError, match=r"ckpt.pt: the config makes 811,216 parameters but the file has only "
                                         r"1,000 bytes"):
        check_weights(cfg, shapes, "ckpt.pt", "fix", file_bytes=1000)


@pytest.mark.parametrize("cfg", [GPTConfig(**SMALL), GPTConfig(**SMALL, pad_vocab_to=64), GPTConfig(**SMALL, bias=False),
                                 GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=8, vocab_size=300)])
def test_the_estimates_are_exactly_what_the_model_builds(cfg):
    model = GPT(cfg)
    assert param_count(cfg) == model.num_params()
    assert expected_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --- malformed checkpoints ----------------------------------------------------------------


def _model(ck, f):
    return {**ck, "model": f(dict(ck["model"]))}


def _config(ck, **change):
    return {**ck, "model_config": {**ck["model_config"], **change}}


def _drop(sd, key):
    sd.pop(key)
    return sd


def _rename_layer(sd):
    return {k.replace("transformer.h.1.", "transformer.h.5."): v for k, v in sd.items()}


def _with(sd, key, value):
    sd[key] = value
    return sd


BAD_CHECKPOINTS = {
    "list": (lambda ck: [1, 2], "holds a list, not a webtext checkpoint"),
    "no model": (lambda ck: {k: v for k, v in ck.items() if k != "model"}, "no 'model' entry"),
    "no config": (lambda ck: {k: v for k, v in ck.items() if k != "model_config"}, "no 'model_config' entry"),
    "plain state dict": (lambda ck: ck["model"], "a plain state dict, not a webtext checkpoint"),
    "config a list": (lambda ck: {**ck, "model_config": [2, 2]}, "the config is a list"),
    "string n_layer": (lambda ck: _config(ck, n_layer="2"), "config n_layer='2' is a str, not a whole number"),
    "float n_layer": (lambda ck: _config(ck, n_layer=2.0), "config n_layer=2.0 is a float"),
    "nan n_embd": (lambda ck: _config(ck, n_embd=float("nan")), "config n_embd=nan is a float"),
    "bool n_head": (lambda ck: _config(ck, n_head=True), "config n_head=True is a bool"),
    "zero n_layer": (lambda ck: _config(ck, n_layer=0), "config n_layer=0 must be >= 1"),
    "negative n_embd": (lambda ck: _config(ck, n_embd=-16), "config n_embd=-16 must be >= 1"),
    "negative vocab": (lambda ck: _config(ck, vocab_size=-1), "config vocab_size=-1 must be >= 1"),
    "nan epsilon": (lambda ck: _config(ck, layer_norm_epsilon=float("nan")), "layer_norm_epsilon=nan is not a finite"),
    "zero epsilon": (lambda ck: _config(ck, layer_norm_epsilon=0.0), "layer_norm_epsilon=0.0 must be > 0"),
    "dropout 1.5": (lambda ck: _config(ck, dropout=1.5), r"dropout=1.5 must be in \[0, 1\)"),
    "string bias": (lambda ck: _config(ck, bias="yes"), "config bias='yes' is a str, not true or false"),
    "unknown key": (lambda ck: _config(ck, n_experts=8), "unknown config key 'n_experts'"),
    "heads do not divide": (lambda ck: _config(ck, n_head=3), "n_embd=16 is not a multiple of n_head=3"),
    "model a list": (lambda ck: {**ck, "model": [1]}, "'model' is a list, not the model's tensors"),
    "model empty": (lambda ck: {**ck, "model": {}}, "'model' is an empty dict"),
    "string weight": (lambda ck: _model(ck, lambda sd: _with(sd, "transformer.ln_f.bias", "0")),
                      "entry 'transformer.ln_f.bias' is a str, not a tensor"),
    "int weight": (lambda ck: _model(ck, lambda sd: _with(sd, "transformer.ln_f.bias", torch.zeros(16, dtype=torch.long))),
                   "transformer.ln_f.bias holds torch.int64 values"),
    "missing tensor": (lambda ck: _model(ck, lambda sd: _drop(sd, "transformer.h.1.mlp.c_fc.bias")),
                       "no transformer.h.1.mlp.c_fc.bias among the weights"),
    "extra tensor": (lambda ck: _model(ck, lambda sd: _with(sd, "transformer.extra", torch.zeros(3))),
                     "unexpected tensor transformer.extra"),
    "wrong shape": (lambda ck: _model(ck, lambda sd: _with(sd, "transformer.h.0.attn.c_attn.weight", torch.zeros(16, 48))),
                    r"transformer.h.0.attn.c_attn.weight has shape \(16, 48\), but the config makes it \(48, 16\)"),
    "layers misnumbered": (lambda ck: _model(ck, _rename_layer), r"not numbered 0..1 \(transformer.h.5.\* is there\)"),
    "no embedding": (lambda ck: _model(ck, lambda sd: _drop(sd, "transformer.wpe.weight")), "no transformer.wpe.weight"),
    "nan weight": (lambda ck: _model(ck, lambda sd: _with(sd, "transformer.h.1.ln_2.weight",
                                                          torch.full((16,), float("nan")))),
                   "transformer.h.1.ln_2.weight holds NaN or infinite values"),
}


@pytest.mark.parametrize("name", list(BAD_CHECKPOINTS))
def test_a_malformed_checkpoint_is_one_line_naming_file_and_key(base, tmp_path, name):
    make, match = BAD_CHECKPOINTS[name]
    p = write(tmp_path, make(copy.copy(base[1])))
    refused(p, match)


def _truncated(b: bytes) -> bytes:
    return b[: len(b) // 2]


RAW_FILES = {
    "text": (lambda b: b"hello, not a checkpoint\n", r"not a webtext checkpoint \(no PyTorch zip or pickle header\)"),
    "empty": (lambda b: b"", "empty file"),
    "json": (lambda b: b'{"model": 1}', "not a webtext checkpoint"),
    "truncated": (_truncated, "damaged or truncated webtext checkpoint"),
    "cut at the end": (lambda b: b[:-100], "damaged or truncated webtext checkpoint"),
    "plain pickle": (lambda b: __import__("pickle").dumps({"model": 1}, protocol=4), "damaged or not a webtext checkpoint"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("name", list(RAW_FILES))
def test_a_file_that_is_not_a_checkpoint_is_one_line(base, tmp_path, name, capsys):
    make, match = RAW_FILES[name]
    p = tmp_path / "ckpt.pt"
    p.write_bytes(make(base[0].read_bytes()))
    msg = refused(p, match, load=load_checkpoint)
    assert "could run code" not in msg  # damaged is not unsafe
    cli_error(["export-hf", str(tmp_path), str(tmp_path / "out")], capsys, p)
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_naming_a_function_is_still_refused_as_unsafe(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    p = write(tmp_path, {"model_config": {}, "model": Payload()})
    with pytest.raises(UnsafeCheckpoint, match="could run code .*Unsupported global: GLOBAL print"):
        load_model(p)
    cli_error(["generate", "--checkpoint", str(p), "--prompt", "x"], capsys, p)
    assert "ran" not in capsys.readouterr().out


def test_the_good_checkpoint_still_loads_and_samples(base, capsys):
    from flows.cli import main

    model, _ = load_model(base[0])
    assert model.config == GPTConfig(**SMALL)
    assert main(["generate", "--checkpoint", str(base[0]), "--prompt", "Hello", "--max-new-tokens", "3", "--seed", "1"]) == 0
    assert "Hello" in capsys.readouterr().out


# --- Hugging Face directories ------------------------------------------------------------


def hf_model(d: Path, safe: bool = True):
    """A small GPT-2 saved by transformers; ``safe=False``: its weights as pytorch_model.bin instead,
    in the form of the gpt2 files on the Hub (no 'transformer.' prefix, uint8 attention masks)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=50257))
    hf.save_pretrained(d)
    if not safe:
        sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
        for i in range(2):
            sd[f"h.{i}.attn.bias"] = torch.ones(32, 32, dtype=torch.uint8).tril().view(1, 1, 32, 32)
            sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        torch.save(sd, d / "pytorch_model.bin")
        (d / "model.safetensors").unlink()
    return hf


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    hf_model(d)
    return d


def hf_copy(hf_dir, tmp_path, config=None, weights=None) -> Path:
    d = tmp_path / "hfcopy"
    d.mkdir()
    conf = json.loads((hf_dir / "config.json").read_text())
    (d / "config.json").write_text(config(conf) if callable(config) else json.dumps(conf))
    data = (hf_dir / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(weights(data) if weights else data)
    return d


def _conf(**change):
    return lambda c: json.dumps({**c, **change})


HF_HUGE = [
    ("n_layer", 1_000_000, r"model.safetensors: config n_layer=1000000 but the weights hold 2 layer\(s\)"),
    ("n_embd", 2**20, r"config n_embd=1048576 but transformer.wte.weight has shape \(50257, 16\)"),
    ("vocab_size", 10**9, r"config vocab_size=1000000000 but transformer.wte.weight has 50257 rows"),
    ("n_positions", 10**9, r"config n_positions=1000000000 but transformer.wpe.weight has 32 rows"),
]


@pytest.mark.parametrize("key,value,match", HF_HUGE, ids=[k for k, _, _ in HF_HUGE])
def test_a_hf_config_declaring_more_than_its_weights_is_refused_fast(hf_dir, tmp_path, key, value, match, capsys):
    d = hf_copy(hf_dir, tmp_path, config=_conf(**{key: value}))
    refused(d / "model.safetensors", match, load=lambda p: import_hf(d))
    cli_error(["import-hf", str(d)], capsys, d)
    assert not (d / "ckpt.pt").exists()


def _safetensors(f):
    """Weights rewritten by F (a dict of tensors -> a dict of tensors), as model.safetensors bytes."""
    def make(data: bytes) -> bytes:
        from safetensors.torch import load, save

        return save(f(load(data)))
    return make


HF_BAD = {
    "config not JSON": (dict(config=lambda c: "{n_layer: 2"), "config.json: not JSON"),
    "config a list": (dict(config=lambda c: "[1, 2]"), "config.json: holds a JSON list, not an object"),
    "no n_layer": (dict(config=lambda c: json.dumps({k: v for k, v in c.items() if k != "n_layer"})),
                   "config.json: config has no n_layer"),
    "string n_layer": (dict(config=_conf(n_layer="2")), "config n_layer='2' is a str"),
    "negative n_head": (dict(config=_conf(n_head=-2)), "config n_head=-2 must be >= 1"),
    "zero positions": (dict(config=_conf(n_positions=0)), "config n_positions=0 must be >= 1"),
    "nan epsilon": (dict(config=lambda c: json.dumps({**c, "layer_norm_epsilon": float("nan")})),
                    "layer_norm_epsilon=nan is not a finite number"),
    "bert": (dict(config=_conf(model_type="bert")), "model_type 'bert' is not gpt2"),
    "relu": (dict(config=_conf(activation_function="relu")), "activation_function 'relu' is not GPT-2's"),
    "truncated weights": (dict(weights=lambda b: b[: len(b) // 2]), "model.safetensors: damaged or not a safetensors"),
    "weights not safetensors": (dict(weights=lambda b: b"hello"), "model.safetensors: damaged or not a safetensors"),
    "wrong shape": (dict(weights=_safetensors(lambda sd: {**sd, "transformer.h.0.attn.c_attn.weight": torch.zeros(48, 16)})),
                    r"transformer.h.0.attn.c_attn.weight has shape \(48, 16\), but the config makes it \(16, 48\)"),
    "missing tensor": (dict(weights=_safetensors(lambda sd: {k: v for k, v in sd.items() if "h.1.mlp.c_proj.bias" not in k})),
                       "no transformer.h.1.mlp.c_proj.bias among the weights"),
    "int tensor": (dict(weights=_safetensors(lambda sd: {**sd, "transformer.ln_f.bias": torch.zeros(16, dtype=torch.int32)})),
                   "transformer.ln_f.bias holds I32 values"),
    "nan tensor": (dict(weights=_safetensors(lambda sd: {**sd, "transformer.ln_f.bias": torch.full((16,), float("inf"))})),
                   "transformer.ln_f.bias holds NaN or infinite values"),
}


@pytest.mark.parametrize("name", list(HF_BAD))
def test_a_malformed_hf_directory_is_one_line(hf_dir, tmp_path, name, capsys):
    kw, match = HF_BAD[name]
    d = hf_copy(hf_dir, tmp_path, **kw)
    with pytest.raises(InputError, match=match) as exc:
        import_hf(d)
    one_line(str(exc.value), d)
    cli_error(["import-hf", str(d)], capsys, d)


def test_a_hf_directory_without_its_files_is_one_line(hf_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "no config.json" in cli_error(["import-hf", str(tmp_path / "empty")], capsys, tmp_path / "empty")
    assert "no such directory" in cli_error(["import-hf", str(tmp_path / "nowhere")], capsys, tmp_path / "nowhere")
    d = hf_copy(hf_dir, tmp_path)
    (d / "model.safetensors").unlink()
    assert "no model.safetensors or pytorch_model.bin" in cli_error(["import-hf", str(d)], capsys, d)


def test_pytorch_model_bin_is_checked_the_same_way(tmp_path, capsys):
    d = tmp_path / "bin"
    hf = hf_model(d, safe=False)
    assert (d / "pytorch_model.bin").is_file() and not (d / "model.safetensors").exists()
    x = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        assert (import_hf(d).eval()(x)[0] - hf.eval()(x).logits).abs().max() < 1e-4
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**conf, "n_layer": 1_000_000}))
    assert "n_layer=1000000 but the weights hold 2 layer" in cli_error(["import-hf", str(d)], capsys, d)
    (d / "config.json").write_text(json.dumps(conf))
    b = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(b[: len(b) // 2])
    assert "pytorch_model.bin: damaged or truncated" in cli_error(["import-hf", str(d)], capsys, d)


def test_the_hf_shapes_are_transformers_own(hf_dir):
    from transformers import GPT2LMHeadModel

    from model.hf import read_hf_config

    cfg = read_hf_config(hf_dir)
    theirs = {k: tuple(v.shape) for k, v in GPT2LMHeadModel.from_pretrained(hf_dir).state_dict().items()
              if not k.endswith((".attn.bias", ".attn.masked_bias")) and k != "lm_head.weight"}
    assert expected_shapes(cfg, hf=True) == theirs
    assert param_count(cfg, padded=False) == sum(torch.Size(s).numel() for s in theirs.values())
