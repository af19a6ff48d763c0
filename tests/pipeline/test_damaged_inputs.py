"""Damaged files: a truncated Parquet part, a corrupt WARC member. Each is survived
and named (work-in-progress stages) or refused with one clear sentence (the corpus)."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import DedupConfig, FilterConfig
from pipeline.dedup import dedup_documents
from pipeline.filters import filter_documents
from pipeline.io import DamagedPart

REPO = Path(__file__).resolve().parents[2]
WEBTEXT = [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())"]


def doc(i: int) -> dict:
    words = " ".join(f"w{i}x{j}" for j in range(300))
    return {"id": f"d{i:04d}", "url": f"http://news{i}.example/a", "url_norm": f"news{i}.example/a", "text": words,
            "title": f"t{i}", "score": 5, "created_utc": 1500000000 + i}


def write_part(path: Path, docs: list[dict]) -> None:
    pq.write_table(pa.Table.from_pylist(docs), path)


def truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def test_a_truncated_part_is_skipped_and_named_then_taken_once_restored(tmp_path):
    src = tmp_path / "extract"
    src.mkdir()
    write_part(src / "part-00000.parquet", [doc(i) for i in range(5)])
    write_part(src / "part-00001.parquet", [doc(i) for i in range(5, 10)])
    whole = truncate(src / "part-00001.parquet")
    cfg = FilterConfig(min_length=10, length_unit="words", languages=("en",), min_language_confidence=0.0, drop_junk=False)
    cfg.validate()
    s = filter_documents(src, tmp_path / "filter", cfg)
    assert s.n_in == 5 and s.balanced()
    assert [d["file"] for d in s.extra["damaged_parts"]] == [str(src / "part-00001.parquet")]
    assert any("part-00001.parquet: damaged Parquet file" in n for n in s.notes)
    # dedup reads what filter wrote; a damaged filter output is skipped and named too
    write_part(tmp_path / "filter" / "part-00009.parquet", [doc(i) for i in range(20, 22)])
    truncate(tmp_path / "filter" / "part-00009.parquet")
    d = dedup_documents(tmp_path / "filter", tmp_path / "dedup", DedupConfig())
    assert d.extra["damaged_parts"][0]["file"].endswith("part-00009.parquet") and d.balanced()
    # Restored: the next run takes the part it skipped, and only that one.
    (src / "part-00001.parquet").write_bytes(whole)
    s2 = filter_documents(src, tmp_path / "filter", cfg)
    assert s2.dropped["already_filtered"] == 5 and s2.n_in == 10 and "damaged_parts" not in s2.extra


def test_a_damaged_shard_stops_tokenize_and_the_cli_says_which_file(tmp_path):
    from model.data import tokenize_shards

    shards = tmp_path / "shards"
    shards.mkdir()
    write_part(shards / "shard-a.parquet", [doc(i) for i in range(3)])
    write_part(shards / "shard-b.parquet", [doc(i) for i in range(3, 6)])
    truncate(shards / "shard-b.parquet")
    with pytest.raises(DamagedPart, match="shard-b.parquet: damaged Parquet file"):
        tokenize_shards(shards, tmp_path / "tokens", val_fraction=0.0, progress=False)
    assert not (tmp_path / "tokens").exists()  # nothing written
    r = subprocess.run(WEBTEXT + ["tokenize", "--in", str(shards), "--out", str(tmp_path / "t2")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "shard-b.parquet: damaged Parquet file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(WEBTEXT + ["shard", "--in", str(shards), "--out", str(tmp_path / "s2")], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "shard-b.parquet: damaged Parquet file" in r.stderr and "Traceback" not in r.stderr
