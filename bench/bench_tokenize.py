"""Tokenize speed: `webtext tokenize` (documents -> token shards) against tiktoken's
own encode_ordinary_batch on the same texts, in the same run, per core count.

    .venv/bin/python bench/bench_tokenize.py
"""

from __future__ import annotations

import lzma
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.data import tokenize_shards  # noqa: E402
from model.tokenizer import Tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"


def main() -> None:
    text = lzma.decompress((SHARED / "wikitext-2-raw.test.txt.xz").read_bytes()).decode()
    docs = [p for p in text.split("\n") if p.strip()] * 4
    tok = Tokenizer.load("gpt2")
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(pa.table({"id": [str(i) for i in range(len(docs))], "text": docs}), Path(d) / "s.parquet")
        print(f"{len(docs):,} documents ({sum(map(len, docs)) / 1e6:.1f} MB of text)")
        print(f"{'threads':>8}{'tiktoken tok/s':>16}{'webtext tok/s':>16}{'ratio':>8}")
        for threads in (1, 2):
            t = time.perf_counter()
            n = sum(map(len, tok.encoding.encode_ordinary_batch(docs, num_threads=threads)))
            t_tk = time.perf_counter() - t
            t = time.perf_counter()
            m = tokenize_shards(Path(d) / "s.parquet", Path(d) / f"out{threads}", tok, 0.05, threads, progress=False)
            t_ours = time.perf_counter() - t
            n2 = m["train"]["tokens"] + m["val"]["tokens"] - len(docs)  # minus the <|endoftext|> separators
            assert n2 == n
            print(f"{threads:>8}{n / t_tk:>16,.0f}{n / t_ours:>16,.0f}{t_tk / t_ours:>7.2f}x")


if __name__ == "__main__":
    main()
