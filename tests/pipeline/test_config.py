"""Every setting is typed and checked when the configuration is loaded, before any work."""

import pytest

from pipeline.config import Config, ConfigError

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
