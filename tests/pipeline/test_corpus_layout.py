"""The shard directory is a dataset that loads whole: Parquet only under data/, a
dataset card (README.md) that `datasets` reads, the manifest beside it; pyarrow,
polars and DuckDB read data/ or a glob; a new version adds files and leaves the
old ones byte for byte; a directory of an older webtext is moved into the layout."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core.config import ShardConfig
from pipeline.core.schema import DOC_SCHEMA
from pipeline.shards.stage import (
    load_manifest,
    sha256_file,
    shard_files,
    verify_shards,
    write_shards,
)


def docs(lo: int, hi: int) -> pa.Table:
    rows = [{"id": f"{i:05d}", "url": f"http://site{i % 7}.example/{i}", "url_norm": f"site{i % 7}.example/{i}",
             "text": f"document {i} " * 40, "title": f"t{i}", "date": None, "status": 200, "fetched_at": "2026-11-01T00:00:00Z",
             "warc_file": "w.warc.gz", "warc_offset": i * 1000, "charset": "utf-8", "score": 3 + i % 5, "score_total": 9,
             "subreddits": ["news", "science"][: 1 + i % 2], "reddit_ids": [f"r{i}"], "created_utc": 1_500_000_000 + i}
            for i in range(lo, hi)]
    return pa.Table.from_pylist(rows, schema=DOC_SCHEMA)


def card_header(d):
    text = (d / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_shards_load_whole_with_datasets_pyarrow_polars_and_duckdb(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    out = tmp_path / "shards"
    cfg = ShardConfig(max_shard_bytes=40_000)
    write_shards(docs(0, 300), out, cfg, {"funnel": [{"stage": "links", "in": 900, "out": 300, "dropped": {"score_below_min": 600}}]})
    v1 = {p.name: sha256_file(p) for p in (out / "data").iterdir()}
    write_shards(docs(0, 450), out, cfg)  # 150 new documents: version 2
    m = load_manifest(out)
    assert m["total_rows"] == 450 and [v["version"] for v in m["versions"]] == [1, 2]
    assert {p.name for p in out.iterdir()} >= {"data", "README.md", "manifest.json"}
    assert not list(out.glob("*.parquet")) and all(p.suffix == ".parquet" for p in (out / "data").iterdir())
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == sorted(names, key=lambda n: (int(n[7:11]), int(n[12:17])))  # by version, then shard
    assert all(sha256_file(out / "data" / n) == h for n, h in v1.items())  # version 1 untouched
    assert verify_shards(out) == []

    header, text = card_header(out)
    assert header["configs"][0]["data_files"][0]["path"] == "data/*.parquet"
    assert [f["name"] for f in header["dataset_info"]["features"]] == DOC_SCHEMA.names
    assert "450 documents" in text.replace(",", "") and "score_below_min 600" in text

    import datasets

    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == m["total_rows"]
    assert ds.features["subreddits"].feature.dtype == "string" and ds.features["status"].dtype == "int32"
    assert sorted(ds["id"]) == [f"{i:05d}" for i in range(450)]

    import pyarrow.dataset as pads

    assert pads.dataset(out / "data").count_rows() == m["total_rows"]

    import polars as pl

    assert pl.scan_parquet(str(out / "data" / "*.parquet")).select(pl.len()).collect().item() == m["total_rows"]
    assert pl.read_parquet(out / "data").height == m["total_rows"]

    import duckdb

    n, k = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{out}/data/*.parquet')").fetchall()[0]
    assert n == k == m["total_rows"]


def test_a_shard_directory_of_an_older_webtext_is_moved_into_the_layout(tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    old = out / "shard-v0001-00000.parquet"
    pq.write_table(docs(0, 50), old)
    digest = sha256_file(old)
    manifest = {"format": "webtext-shards/1", "shards": [{"file": old.name, "rows": 50, "bytes": old.stat().st_size,
                                                          "sha256": digest, "version": 1}],
                "versions": [{"version": 1, "created": "2026-10-01T00:00:00Z", "added_shards": [old.name], "added_rows": 50}],
                "total_rows": 50, "total_bytes": old.stat().st_size}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "stray.parquet").write_bytes(b"left by a killed run")
    s = write_shards(docs(0, 80), out, ShardConfig())
    assert s.n_out == 30 and s.dropped["already_in_shards"] == 50
    m = load_manifest(out)
    assert m["shards"][0]["file"] == "data/shard-v0001-00000.parquet" and m["versions"][0]["added_shards"] == [m["shards"][0]["file"]]
    assert sha256_file(out / "data" / "shard-v0001-00000.parquet") == digest  # moved, not rewritten
    assert not old.exists() and not (out / "stray.parquet").exists()
    assert verify_shards(out) == [] and [p.name for p in shard_files(out)] == ["shard-v0001-00000.parquet", "shard-v0002-00000.parquet"]
    header, _ = card_header(out)
    assert header["configs"][0]["config_name"] == "default"


@pytest.mark.parametrize("typ,expected", [(pa.float32(), "float32"), (pa.timestamp("us", tz="UTC"), "timestamp[us, tz=UTC]"),
                                          (pa.list_(pa.int64()), {"list": "int64"}), (pa.struct([("a", pa.int8())]), None)])
def test_card_types(typ, expected):
    from pipeline.shards.card import hf_dtype

    assert hf_dtype(typ) == expected
