"""Every setting is typed and checked when the configuration is loaded, before any work."""

import pytest

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError

BAD = {
    '[fetch]\nallow_private_addresses = "false"': "fetch.allow_private_addresses must be true or false",
    "[fetch]\nmax_bytes = 1e6": "fetch.max_bytes must be a whole number",
    '[fetch]\nresolve = "a.example=127.0.0.1:80"': "fetch.resolve must be a table of strings",
    "[fetch]\nretries = -1": "fetch.retries must be >= 0",
    "[fetch]\nbackoff_s = -0.5": "fetch.backoff_s must be >= 0",
    "[fetch]\nmax_attempts = 0": "fetch.max_attempts must be >= 1",
    '[filter]\nlanguages = "en"': "filter.languages must be a list of strings",
    "[filter]\nlanguages = []": "filter.languages must name at least one language",
    '[filter]\nmin_length = "128"': "filter.min_length must be a whole number",
    '[links]\nmin_score = "five"': "links.min_score must be a whole number",
    '[links]\nexclude_nsfw = "no"': "links.exclude_nsfw must be true or false",
    '[extract]\nworkers = "8"': "extract.workers must be a whole number",
    "[dedup]\njaccard_threshold = 2.0": r"dedup.jaccard_threshold must be in \(0, 1\]",
    "[dedup]\nbands = 0": "dedup.bands must be >= 1",
    '[shards]\ncompression = "nope"': "shards.compression must be one of",
    '[dedup]\nredis_url = "localhost:6379"': "dedup.redis_url must look like redis://HOST:PORT",
    "[fetch]\nnot_a_key = 1": "unknown key fetch.not_a_key",
}


@pytest.mark.parametrize("toml", list(BAD))
def test_a_bad_value_fails_at_load_with_the_key_named(tmp_path, toml):
    p = tmp_path / "bad.toml"
    p.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=BAD[toml]):
        Config.load(p)


def test_good_values_are_normalised(tmp_path):
    p = tmp_path / "ok.toml"
    p.write_text('[fetch]\ntotal_timeout_s = 5\n[fetch.resolve]\n"a.example" = "127.0.0.1:8080"\n'
                 '[filter]\nlanguages = ["en", "fr"]\n')
    cfg = Config.load(p)
    assert cfg.fetch.total_timeout_s == 5.0 and isinstance(cfg.fetch.total_timeout_s, float)
    assert cfg.filter.languages == ("en", "fr") and cfg.fetch.resolve == {"a.example": "127.0.0.1:8080"}
    assert Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()  # what the flows pass around round-trips


def test_a_second_build_on_the_same_directory_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    from pipeline.build import BuildLocked, build_lock, run_build

    dump = tmp_path / "RS_2017-07.ndjson"
    dump.write_text("")
    with build_lock(tmp_path / "out"):
        with pytest.raises(BuildLocked, match="another build is running"):
            run_build([dump], tmp_path / "out", Config())
        assert not (tmp_path / "out" / "links").exists()  # refused before any work
    with build_lock(tmp_path / "out"):  # released on exit: the next build may run
        pass


def test_one_file_holds_the_corpus_and_training_settings_and_train_typos_fail(tmp_path):
    from model.errors import ConfigError as TrainConfigError
    from model.train import load_train_config

    p = tmp_path / "webtext.toml"
    p.write_text('[fetch]\nworkers = 8\n[train]\nmax_steps = 7\nlr = 0.002\ncompile = false\n')
    assert Config.load(p).fetch.workers == 8
    t = load_train_config(str(p), "tiny", ["batch_size=4"])
    assert (t.max_steps, t.lr, t.batch_size, t.compile) == (7, 0.002, 4, False)
    p.write_text("[train]\nmax_stepz = 7\n")
    with pytest.raises(TrainConfigError, match="unknown key train.max_stepz"):
        load_train_config(str(p), "tiny", [])
    p.write_text('[train]\nmax_steps = "many"\n')
    with pytest.raises(TrainConfigError, match="train.max_steps must be a whole number"):
        load_train_config(str(p), "tiny", [])
    for bad, msg in [(["lr=abc"], "lr must be a number"), (["compile=maybe"], "compile must be true or false"),
                     (["max_steps=0"], "max_steps must be >= 1"), (["nope=1"], "unknown training option")]:
        with pytest.raises(TrainConfigError, match=msg):
            load_train_config(None, "tiny", bad)
    with pytest.raises(TrainConfigError, match="unknown training preset"):
        load_train_config(None, "huge", [])


def test_user_errors_end_in_one_sentence_with_exit_2_and_nothing_written(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))

    def webtext(*args):
        return subprocess.run([sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())", *args],
                              cwd=repo, capture_output=True, text=True, timeout=120, env=env)

    nowhere = str(tmp_path / "nowhere")
    cases = [
        (["filter", "--in", nowhere, "--out", str(tmp_path / "f")], "no such file or directory"),
        (["shard", "--in", nowhere, "--out", str(tmp_path / "s")], "no such file or directory"),
        (["links", "--dump", str(tmp_path / "RS_*.zst"), "--out", str(tmp_path / "l")], "no dump file matches"),
        (["build", "--no-prefect", "--task-runner", "dask", "--dump", nowhere, "--out", str(tmp_path / "b")],
         "need the Prefect flow"),
        (["train", "--data", nowhere, "--out", str(tmp_path / "t"), "lrr=1"], "unknown training option 'lrr'"),
        (["train", "--data", nowhere, "--out", str(tmp_path / "t"), "--preset", "huge"], "unknown training preset"),
    ]
    for args, message in cases:
        r = webtext(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-1500:])
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written by any of them
    # eval with nothing to evaluate leaves an existing eval.json alone
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "eval.json").write_text('{"kept": 1}')
    (ck / "ckpt.pt").write_bytes(b"not read")
    r = webtext("eval", "--checkpoint", str(ck))
    assert r.returncode == 2 and "nothing to evaluate" in r.stderr and (ck / "eval.json").read_text() == '{"kept": 1}'


def test_set_overrides_keys_after_the_file_checked_like_the_file(tmp_path):
    p = tmp_path / "webtext.toml"
    p.write_text("[fetch]\nworkers = 8\n")
    cfg = Config.load(p).with_overrides(["fetch.workers=3", 'filter.languages=["en", "de"]', "links.created_before=none",
                                         "extract.page_timeout_s=5"])
    assert (cfg.fetch.workers, cfg.filter.languages, cfg.links.created_before) == (3, ("en", "de"), "none")
    assert cfg.extract.page_timeout_s == 5.0 and isinstance(cfg.extract.page_timeout_s, float)
    assert Config.load(p).fetch.workers == 8  # a copy: the loaded one is unchanged (frozen)
    for pairs, msg in [(["fetch.workrs=3"], "unknown key fetch.workrs; did you mean workers?"),
                       (["fetch.workers=many"], "fetch.workers must be a whole number"),
                       (["fetch.workers=0"], "fetch.workers must be >= 1"),
                       (["fetc.workers=3"], r"unknown configuration section \[fetc\]; did you mean fetch\?"),
                       (["workers=3"], "expected SECTION.KEY=VALUE")]:
        with pytest.raises(ConfigError, match=msg):
            Config().with_overrides(pairs)


def test_a_configuration_cannot_be_changed_in_place_only_copied():
    import dataclasses

    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.fetch.workers = 3
    assert cfg.replace("fetch", workers=3).fetch.workers == 3 and cfg.fetch.workers == 32
    with pytest.raises(ConfigError, match="fetch.workers must be >= 1"):
        cfg.replace("fetch", workers=0)


def test_the_cli_takes_set_on_every_stage_command(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "flows.cli", "filter", "--in", str(tmp_path / "none"), "--out",
                        str(tmp_path / "o"), "--set", "filter.min_lenght=3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown key filter.min_lenght; did you mean min_length?" in r.stderr, r.stderr


def test_nan_and_inf_are_refused_for_every_number_naming_the_key():
    for section, key in [("fetch", "total_timeout_s"), ("fetch", "per_host_delay_s"), ("extract", "page_timeout_s"),
                         ("dedup", "jaccard_threshold"), ("filter", "min_language_confidence")]:
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=f"{section}.{key} must be a finite number"):
                Config.from_dict({section: {key: bad}})
    p = Config().with_overrides(["fetch.total_timeout_s=7.5"])
    assert p.fetch.total_timeout_s == 7.5
    with pytest.raises(ConfigError, match="extract.page_timeout_s must be a finite number"):
        Config().with_overrides(["extract.page_timeout_s=inf"])


def test_impossible_training_options_are_refused_before_any_work():
    import torch

    from model.errors import ConfigError as TrainConfigError
    from model.train import load_train_config

    beyond = f"device=cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 on a CPU machine)
    for opts, msg in [(["lr=nan"], "train.lr must be a finite number"), (["grad_clip=inf"], "train.grad_clip"),
                      (["dtype=int8"], "train.dtype must be auto"), (["device=tpu"], "train.device must be"),
                      ([beyond], "CUDA device")]:
        with pytest.raises(TrainConfigError, match=msg):
            load_train_config(None, "tiny", opts)
