import lzma

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from webtext_testlib import shared

from flows.cli import main
from pipeline.core.config import ShardConfig
from pipeline.report.decontaminate import decontaminate
from pipeline.shards.stage import load_manifest, write_shards


def test_documents_quoting_an_eval_set_are_reported_and_removed(tmp_path):
    lam = shared("eval", "lambada_test.jsonl.xz")
    passages = [orjson.loads(l)["text"] for l in lzma.decompress(lam.read_bytes()).splitlines()[:3]]
    clean = ["The harbour board met on Tuesday to review plans for the northern quay and its new cranes. " * 5,
             "Volunteers planted four hundred trees along the river during the spring festival this year. " * 5]
    docs = [{"id": "c0", "url": "http://a.example/0", "text": clean[0]},
            {"id": "q1", "url": "http://b.example/1", "text": "Intro paragraph here.\n" + passages[0] + "\nOutro."},
            {"id": "c1", "url": "http://a.example/1", "text": clean[1]},
            # a short quote: 8 words of a passage, under 13 words -> not a 13-gram match
            {"id": "s2", "url": "http://b.example/2", "text": " ".join(passages[1].split()[:8]) + " " + clean[0]}]
    write_shards(pa.Table.from_pylist(docs), tmp_path / "shards", ShardConfig())
    s = decontaminate(tmp_path / "shards", {"lambada": lam}, tmp_path / "out", remove=True)
    assert s.n_in == 4 and s.dropped == {"eval_overlap": 1} and s.balanced()
    assert s.extra["sets"]["lambada"]["examples"] == 5153
    assert s.extra["sets"]["lambada"]["examples_overlapping"] == 1
    kept = pq.read_table(tmp_path / "out" / "shards" / load_manifest(tmp_path / "out" / "shards")["shards"][0]["file"])
    assert sorted(kept.column("id").to_pylist()) == ["c0", "c1", "s2"]
    # 8-grams (the GPT-2 paper's measure) also catch the short quote.
    s8 = decontaminate(tmp_path / "shards", {"lambada": lam}, tmp_path / "out8", n=8)
    assert s8.extra["sets"]["lambada"]["examples_overlapping"] == 2 and s8.n_out == 4  # report only


def test_cli_reports_wikitext_and_ptb(tmp_path, capsys):
    wt = shared("eval", "wikitext-2-raw.test.txt.xz")
    article = lzma.decompress(wt.read_bytes()).decode().splitlines()[1:4]
    write_shards(pa.Table.from_pylist([{"id": "w", "url": "http://w.example/", "text": "\n".join(article)}]),
                 tmp_path / "shards", ShardConfig())
    rc = main(["decontaminate", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "out"),
               "--eval", f"wikitext2raw={wt}", "--ptb", str(shared("eval", "ptb.test.txt.xz"))])
    assert rc == 0
    report = orjson.loads((tmp_path / "out" / "contamination.json").read_bytes())
    assert report["flagged_documents"] == 1 and report["sets"]["wikitext2raw"]["examples_overlapping"] >= 1
    assert report["sets"]["ptb"]["examples_overlapping"] == 0
    assert "wikitext2raw" in capsys.readouterr().out
    # bad input: a missing set file, a malformed --eval, no set at all -> exit 2 with the reason, nothing written
    for extra, msg in ((["--lambada", str(tmp_path / "nope.jsonl")], "nope.jsonl"), (["--eval", "noequals"], "NAME=FILE"),
                       ([], "at least one evaluation set")):
        rc = main(["decontaminate", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "bad")] + extra)
        assert rc == 2 and msg in capsys.readouterr().err and not (tmp_path / "bad").exists()
