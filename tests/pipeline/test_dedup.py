import json
import lzma
import shutil
import subprocess
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from webtext_testlib import shared

from pipeline.core.config import DedupConfig, ShardConfig
from pipeline.dedup.signatures import MinHasher, estimated_similarity
from pipeline.dedup.stage import dedup_documents, read_duplicates
from pipeline.shards.stage import load_manifest, verify_shards, write_shards


def reuters(n_clusters=150):
    docs = [orjson.loads(l) for l in lzma.decompress(shared("dedup", "reuters_neardup_dev.jsonl.xz").read_bytes()).splitlines()]
    by = {}
    for d in docs:
        by.setdefault(d["cluster"], []).append(d)
    multi = [c for c in by.values() if len(c) > 1][:n_clusters]
    singles = [c[0] for c in by.values() if len(c) == 1][:n_clusters]
    return multi, singles


def test_signature_similarity_tracks_jaccard():
    h = MinHasher(110, 5, 1)
    a = " ".join(f"word{i}" for i in range(400))
    b = " ".join(f"word{i}" for i in range(200))  # the first half: containment 1, Jaccard ~.5
    sa, na = h.signature(a)
    sb, nb = h.signature(b)
    j, c = estimated_similarity(sa, na, sb, nb)
    assert 0.35 < j < 0.65 and c > 0.85
    # reformatting does not hide a copy
    sc, nc = h.signature(a.upper().replace(" ", "  ,\n"))
    assert (sc == sa).all()


def write_docs(path, docs):
    pq.write_table(pa.Table.from_pylist([{"id": d["id"], "text": d["text"], "score": d.get("score", 1)} for d in docs]), path)


def test_dedup_finds_duplicates_and_second_run_checks_against_first(tmp_path):
    multi, singles = reuters()
    first = [c[0] for c in multi] + singles
    second = [d for c in multi for d in c[1:] if d["jaccard_to_base"] >= 0.6]
    (tmp_path / "m1").mkdir()
    write_docs(tmp_path / "m1" / "docs.parquet", first)
    s1 = dedup_documents(tmp_path / "m1", tmp_path / "out", DedupConfig())
    assert s1.n_in == len(first) and s1.balanced()
    assert s1.dropped.get("near_duplicate", 0) <= 3  # bases and singletons are distinct
    (tmp_path / "m2").mkdir()
    write_docs(tmp_path / "m2" / "docs.parquet", second)
    s2 = dedup_documents(tmp_path / "m2", tmp_path / "out", DedupConfig())
    assert s2.balanced()
    # Most variants (Jaccard to their base >= .6) of documents kept last month are
    # found among last month's documents (LSH recall at J=.6 is ~83% per pair)
    assert s2.dropped["near_duplicate"] >= 0.8 * len(second)
    dups = read_duplicates(tmp_path / "out").to_pylist()
    kept = set()
    for p in (tmp_path / "out").glob("documents-*.parquet"):
        kept |= set(pq.read_table(p).column("id").to_pylist())
    cluster = {d["id"]: d["cluster"] for c in multi for d in c}
    for row in dups:  # every removed document points at a kept one of its own cluster
        assert row["duplicate_of"] in kept and row["id"] not in kept
        assert cluster[row["id"]] == cluster[row["duplicate_of"]]
    # Re-running the same month reads nothing: its part is in the ledger
    s3 = dedup_documents(tmp_path / "m2", tmp_path / "out", DedupConfig())
    assert s3.n_in == 0 and s3.n_out == 0 and s3.balanced() and s3.extra["parts_done_before"] == 1


def test_keep_rule_highest_score_then_longest(tmp_path):
    text = "the quick brown fox jumps over the lazy dog near the river bank today " * 10
    docs = [{"id": "a", "text": text, "score": 5}, {"id": "b", "text": text + " extra words here", "score": 50},
            {"id": "c", "text": text + " and more words than b has here", "score": 5}]
    write_docs(tmp_path / "d.parquet", docs)
    s = dedup_documents(tmp_path / "d.parquet", tmp_path / "out", DedupConfig(keep="score"))
    kept = pq.read_table(tmp_path / "out" / "documents-0000.parquet").column("id").to_pylist()
    assert kept == ["b"] and s.dropped["near_duplicate"] == 2


def test_keep_rule_earliest_submission_and_removed_ones_not_redone(tmp_path):
    text = "the quick brown fox jumps over the lazy dog near the river bank today " * 10
    docs = [{"id": "a", "text": text, "score": 5, "created_utc": 300}, {"id": "b", "text": text + " extra words", "score": 50, "created_utc": 200},
            {"id": "c", "text": text + " and more words here", "score": 9, "created_utc": 100}]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "d.parquet")
    s = dedup_documents(tmp_path / "d.parquet", tmp_path / "out", DedupConfig())
    kept = pq.read_table(tmp_path / "out" / "documents-0000.parquet").column("id").to_pylist()
    assert kept == ["c"] and s.dropped["near_duplicate"] == 2
    # A re-run over the same input does no work: the part is in the ledger.
    s2 = dedup_documents(tmp_path / "d.parquet", tmp_path / "out", DedupConfig())
    assert s2.n_in == 0 and s2.n_out == 0
    # The same documents in another part: the kept one and the removed ones are known by id.
    (tmp_path / "again").mkdir()
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "again" / "d2.parquet")
    s3 = dedup_documents(tmp_path / "again", tmp_path / "out", DedupConfig())
    assert s3.n_out == 0 and +s3.dropped == {"already_kept": 1, "already_removed": 2}
    assert read_duplicates(tmp_path / "out").num_rows == 2


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (.ci/run installs it)")
def test_redis_backed_index(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        import redis

        r = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        multi, _ = reuters(40)
        write_docs(tmp_path / "a.parquet", [c[0] for c in multi])
        write_docs(tmp_path / "b.parquet", [d for c in multi for d in c[1:] if d["jaccard_to_base"] >= 0.7])
        cfg = DedupConfig(redis_url=f"redis://127.0.0.1:{port}")
        dedup_documents(tmp_path / "a.parquet", tmp_path / "out", cfg)
        assert r.dbsize() > 0  # the LSH tables live in Redis
        s = dedup_documents(tmp_path / "b.parquet", tmp_path / "out", cfg)
        assert s.dropped["near_duplicate"] >= 1 and s.balanced()
    finally:
        proc.terminate()
        proc.wait()


def test_shards_manifest_counts_hashes_and_versions(tmp_path):
    docs = [{"id": f"{i:04d}", "text": f"document {i} " * 50, "url": f"http://e.com/{i}"} for i in range(300)]
    t = pa.Table.from_pylist(docs)
    s = write_shards(t.slice(0, 200), tmp_path, ShardConfig(max_shard_bytes=20_000), {"funnel": {"x": 1}})
    m = load_manifest(tmp_path)
    assert s.n_out == 200 and len(m["shards"]) > 1 and m["total_rows"] == 200
    assert verify_shards(tmp_path) == []
    total = sum(pq.read_table(tmp_path / sh["file"]).num_rows for sh in m["shards"])
    assert total == 200
    def data_files():  # the shards and the manifest (the run summary is a log of each run)
        return {p.relative_to(tmp_path).as_posix(): p.stat().st_mtime_ns for p in tmp_path.rglob("*")
                if p.is_file() and not p.name.startswith("summary")}

    before = data_files()
    s2 = write_shards(t.slice(0, 200), tmp_path, ShardConfig(max_shard_bytes=20_000))
    assert s2.n_out == 0 and data_files() == before
    s3 = write_shards(t, tmp_path, ShardConfig(max_shard_bytes=20_000))
    m3 = load_manifest(tmp_path)
    assert s3.n_out == 100 and len(m3["versions"]) == 2 and m3["total_rows"] == 300
    assert all(sh in m3["shards"] for sh in m["shards"])  # old shards untouched
    assert verify_shards(tmp_path) == []
    import pyarrow.dataset as ds

    assert ds.dataset(tmp_path / "data").count_rows() == 300
    # tampering is detected
    victim = tmp_path / m3["shards"][0]["file"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    assert verify_shards(tmp_path)


def test_unknown_keep_rule_is_a_configuration_error():
    from pipeline.core.config import Config
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="dedup.keep"):
        Config.from_dict({"dedup": {"keep": "newest"}})


def test_index_is_plain_arrow_and_older_indexes_are_converted_never_unpickled(tmp_path):
    """The index is Arrow IPC (nothing in it can run code). A state directory of an
    earlier webtext is taken over: its Parquet index (id, size, sig) is converted, and
    an old pickle index (here a malicious one) is never unpickled: the index is rebuilt
    from the kept documents. Dedup against either works as against the new index."""
    import pickle

    multi, singles = reuters(60)
    first = [c[0] for c in multi] + singles
    second = [d for c in multi for d in c[1:] if d["jaccard_to_base"] >= 0.6]
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    write_docs(tmp_path / "m1" / "docs.parquet", first)
    write_docs(tmp_path / "m2" / "docs.parquet", second)
    ref = tmp_path / "ref"
    dedup_documents(tmp_path / "m1", ref, DedupConfig())
    with pa.memory_map(str(ref / "state" / "segments" / "seg-0000.docs.arrow")) as src:
        index = pa.ipc.open_file(src).read_all()
    assert index.num_rows == len(first) - read_duplicates(ref).num_rows
    assert index.column("id_hash").to_numpy().tolist() == sorted(index.column("id_hash").to_numpy().tolist())
    month1 = tmp_path / "month1"
    shutil.copytree(ref, month1)
    expected = dedup_documents(tmp_path / "m2", ref, DedupConfig())
    assert expected.dropped["near_duplicate"] >= 0.8 * len(second)

    def older_webtext(name, pickle_payload=None):
        """The state an earlier webtext left after month 1: documents-0000.parquet,
        one duplicates.parquet, state/dedup_index.parquet (or .pkl)."""
        d = tmp_path / name
        (d / "state").mkdir(parents=True)
        kept = pq.read_table(month1 / "documents-0000.parquet")
        pq.write_table(kept, d / "documents-0000.parquet")
        pq.write_table(read_duplicates(month1), d / "duplicates.parquet")
        if pickle_payload is not None:
            (d / "state" / "dedup_index.pkl").write_bytes(pickle_payload)
        else:
            h = MinHasher(110, 5, 1)
            sigs = [h.signature(t) for t in kept.column("text").to_pylist()]
            t = pa.table({"id": kept.column("id"), "size": pa.array([z for _, z in sigs], pa.int64()),
                          "sig": pa.FixedSizeListArray.from_arrays(
                              pa.array([int(v) for s, _ in sigs for v in s], pa.uint64()), 110)})
            t = t.replace_schema_metadata({"webtext_params": json.dumps(
                {"num_perm": 110, "bands": 22, "rows": 5, "shingle_words": 5, "seed": 1})})
            pq.write_table(t, d / "state" / "dedup_index.parquet")
        return d

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name, payload in (("v1", None), ("pickle", pickle.dumps(Payload()))):
        d = older_webtext(name, payload)
        s = dedup_documents(tmp_path / "m2", d, DedupConfig())
        assert not marker.exists()
        assert any(("rebuilt" if payload else "converted") in n for n in s.notes)
        assert s.dropped == expected.dropped and s.n_out == expected.n_out, name
        assert not list((d / "state").glob("dedup_index.*")) and (d / "state" / "ledger.json").is_file()
        assert read_duplicates(d).num_rows == read_duplicates(ref).num_rows
    # A wrong-parameter index is refused with a clear message, not misread.
    with pytest.raises(ValueError, match="index built with"):
        dedup_documents(tmp_path / "m2", ref, DedupConfig(num_perm=128, bands=16, rows=8))


def test_segments_in_many_record_batches_give_the_same_result(tmp_path, monkeypatch):
    """A segment's signatures are read from its memory-mapped record batches: with
    batches of 7 rows, month 2 finds exactly what it finds with one batch."""
    import pipeline.dedup.index as dd

    multi, singles = reuters(40)
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    write_docs(tmp_path / "m1" / "a.parquet", [c[0] for c in multi] + singles)
    write_docs(tmp_path / "m2" / "b.parquet", [d for c in multi for d in c[1:]])
    results = []
    for step in (65536, 7):
        monkeypatch.setattr(dd, "SEGMENT_BATCH", step)
        out = tmp_path / f"out{step}"
        dedup_documents(tmp_path / "m1", out, DedupConfig())
        dedup_documents(tmp_path / "m2", out, DedupConfig())
        results.append(sorted(map(tuple, (r.values() for r in read_duplicates(out).to_pylist()))))
    with pa.memory_map(str(tmp_path / "out7" / "state" / "segments" / "seg-0000.docs.arrow")) as src:
        assert pa.ipc.open_file(src).num_record_batches > 1
    assert results[0] == results[1] and len(results[0]) > 20


def test_files_of_a_run_killed_before_its_ledger_entry_are_replaced(tmp_path):
    """A run killed after writing its documents and segment but before the ledger:
    the next run deletes those files and redoes the run, so nothing is kept twice."""
    multi, singles = reuters(30)
    (tmp_path / "m1").mkdir()
    write_docs(tmp_path / "m1" / "a.parquet", [c[0] for c in multi] + singles)
    out = tmp_path / "out"
    ref = dedup_documents(tmp_path / "m1", tmp_path / "ref", DedupConfig())
    # What a killed run 0 leaves: a partial documents file, a segment file, no ledger.
    out.mkdir()
    pq.write_table(pa.table({"id": ["stale"], "text": ["left by a killed run"]}), out / "documents-0000.parquet")
    pq.write_table(pa.table({"id": ["stale"], "duplicate_of": ["x"]}), out / "duplicates-0001.parquet")
    (out / "state" / "segments").mkdir(parents=True)
    (out / "state" / "segments" / "seg-0000.docs.arrow").write_bytes(b"torn")
    (out / "state" / "segments" / "seg-0001.keys.arrow").write_bytes(b"torn")
    s = dedup_documents(tmp_path / "m1", out, DedupConfig())
    kept = pq.read_table(out / "documents-0000.parquet").column("id").to_pylist()
    assert "stale" not in kept and s.n_out == ref.n_out == len(kept)
    assert not (out / "duplicates-0001.parquet").exists() and not (out / "state" / "segments" / "seg-0001.keys.arrow").exists()
    assert "stale" not in read_duplicates(out).column("id").to_pylist()
    assert json.loads((out / "state" / "ledger.json").read_text())["runs"][0]["kept"] == len(kept)


def _docs(path, texts):
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": pa.array(texts, pa.string()),
                             "score": [5] * len(texts)}), path)
    return path


def test_documents_without_text_are_counted_in_dedup_and_never_published(tmp_path):
    body = "a story about the harbour and its ships, told in many words " * 20
    texts = [body + "one", None, "", "   \n\t ", body + "two different ending " * 30, "!!!"]
    src = _docs(tmp_path / "docs.parquet", texts)
    s = dedup_documents(src, tmp_path / "dedup", DedupConfig())
    assert s.dropped["empty_text"] == 3 and s.balanced()
    kept = pq.read_table(next((tmp_path / "dedup").glob("documents-*.parquet")))
    assert all(t and t.strip() for t in kept.column("text").to_pylist())
    # shards refuse them too when given such documents directly
    sh = write_shards(pq.read_table(src), tmp_path / "shards", ShardConfig())
    assert sh.dropped["empty_text"] == 3 and sh.n_out == 3 and sh.balanced()


def test_a_huge_document_is_dropped_as_too_long_and_the_hash_memory_stays_bounded(tmp_path):
    """A 70 MB "document" once made dedup ask for 6.5 GiB at once. Over dedup.max_chars
    it is counted as too_long; under it, the signature is computed a chunk of shingles
    at a time (the same signature as all at once), in a child process that grows under
    1.5 GB (it measures its own peak RSS)."""
    import sys

    import numpy as np

    h = MinHasher(110, 5, 1)
    text = " ".join(f"w{i}" for i in range(100_000))
    sig, n = h.signature(text)
    s = h.shingle_hashes(text)
    whole = ((np.multiply.outer(h.a, s) + h.b[:, None]) >> np.uint64(32)).min(axis=1)
    assert n == s.size and (sig == whole.astype(np.uint32)).all()

    big = "word " * 14_000_000  # 70 MB
    src = _docs(tmp_path / "big.parquet", ["a small page about boats " * 40, big])
    s = dedup_documents(src, tmp_path / "dedup", DedupConfig())
    assert s.dropped["too_long"] == 1 and s.n_out == 1 and s.balanced()
    # with the cap lifted the same document is hashed in bounded memory
    code = ("import resource, sys; from pipeline.dedup.signatures import MinHasher; "
            "t = 'word ' * 2_000_000 + ' '.join(f'x{i}' for i in range(1_500_000)); "
            "soft = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "sig, n = MinHasher(110, 5, 1).signature(t); "
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; print(n, (peak - soft) // 1024)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    n, grew_mb = map(int, r.stdout.split())
    assert n > 1_500_000 and grew_mb < 1500  # chunked: ~430 MB here; all at once: ~2.8 GB
