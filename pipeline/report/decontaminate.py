"""Evaluation-set contamination: n-gram overlap between corpus documents and the
evaluation sets (LAMBADA, WikiText-2, PTB, or any text file).

As Megatron-LM's OpenWebText tools (tools/openwebtext/filter_ngrams.py) do, text
is lowercased and split into words (``\\w+``) and 13-grams are compared; the GPT-2
paper measured 8-gram overlap (section 4, Table 6), so ``n`` is an option. Each
evaluation set is read as a list of examples (LAMBADA passages, WikiText-2
articles, PTB lines), detokenized first where the set is tokenized.

Reports, per evaluation set, how many examples share at least one n-gram with
the corpus and what fraction of the set's n-grams occur in it; per corpus
document, how many evaluation n-grams it holds. ``remove=True`` writes the
corpus without the documents holding at least ``min_matches`` of them (whole
documents are dropped, not cut: simpler to audit, and the counts are reported).
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.io import atomic_write_json
from pipeline.core.summary import RunSummary, progress

_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> set[int]:
    words = _WORD.findall(text.lower())
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


def read_examples(name: str, path: str | Path) -> list[str]:
    """Examples of an evaluation set, by its kind: the set's name when it is
    lambada / wikitext2 / ptb, else guessed from the file name."""
    from model.evalsets import ptb_detokenize, read_text, wikitext_detokenize

    text = read_text(path)
    p = f"{name} {Path(path).name}".lower()
    if "lambada" in p or p.endswith((".jsonl", ".jsonl.xz")):
        return [orjson.loads(line)["text"] for line in text.splitlines() if line.strip()]
    if "wikitext" in p:
        detok = wikitext_detokenize if ".tokens" in p else (lambda s: s)
        arts, cur = [], []
        for line in text.splitlines():
            if re.match(r"^ ?= [^=].* = ?$", line) and cur:  # a top-level " = Title = " starts an article
                arts.append(detok("\n".join(cur)))
                cur = []
            cur.append(line)
        if cur:
            arts.append(detok("\n".join(cur)))
        return arts
    if "ptb" in p:
        return [ptb_detokenize(line) for line in text.splitlines() if line.strip()]
    return [para for para in re.split(r"\n\s*\n", text) if para.strip()]


def decontaminate(
    shards: str | Path,
    eval_sets: dict[str, str | Path],
    out_dir: str | Path,
    n: int = 13,
    remove: bool = False,
    min_matches: int = 1,
) -> RunSummary:
    """Report (and with ``remove`` drop) corpus documents overlapping the evaluation sets.

    Writes OUT/contamination.json (per set and the flagged documents); with
    ``remove``, OUT/shards/ holds the corpus without them under a new manifest."""
    if n < 1 or min_matches < 1:
        raise ValueError("n and min_matches must be >= 1")
    missing = [f"{name}: {path}" for name, path in eval_sets.items() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"evaluation set file(s) not found: {', '.join(missing)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grams_of_set: dict[str, list[set[int]]] = {}
    owner: dict[int, set[str]] = {}
    for name, path in eval_sets.items():
        per_example = [ngrams(t, n) for t in read_examples(name, path)]
        grams_of_set[name] = per_example
        for g in per_example:
            for h in g:
                owner.setdefault(h, set()).add(name)
    summary = RunSummary("decontaminate", unit="documents")
    from pipeline.shards.stage import shard_files

    files = shard_files(shards)
    if not files:
        raise FileNotFoundError(f"no Parquet shards in {shards}")
    seen_in_corpus: set[int] = set()
    flagged: list[dict] = []
    keep_tables = []
    for f in progress(files, desc="decontaminate", unit="shards"):
        t = pq.read_table(f)
        mask = []
        for doc_id, url, text in zip(t.column("id").to_pylist(), t.column("url").to_pylist() if "url" in t.column_names
                                     else [None] * t.num_rows, t.column("text").to_pylist()):
            summary.n_in += 1
            hits = ngrams(text or "", n) & owner.keys()
            seen_in_corpus |= hits
            bad = len(hits) >= min_matches
            if hits:
                sets = sorted({s for h in hits for s in owner[h]})
                flagged.append({"id": doc_id, "url": url, "matches": len(hits), "sets": sets, "removed": remove and bad})
            if remove and bad:
                summary.drop("eval_overlap")
            mask.append(not (remove and bad))
        keep_tables.append(t.filter(pa.array(mask, type=pa.bool_())))
    report = {"n": n, "min_matches": min_matches, "sets": {}, "flagged_documents": len(flagged),
              "documents": flagged[:10_000]}
    for name, per_example in grams_of_set.items():
        total = set().union(*per_example) if per_example else set()
        report["sets"][name] = {
            "examples": len(per_example),
            "examples_overlapping": sum(1 for g in per_example if g & seen_in_corpus),
            "ngrams": len(total),
            "ngrams_in_corpus": len(total & seen_in_corpus),
            "ngram_overlap_pct": 100.0 * len(total & seen_in_corpus) / max(1, len(total)),
        }
    summary.n_out = summary.n_in - summary.n_dropped
    summary.extra["sets"] = report["sets"]
    if remove:
        from pipeline.core.config import ShardConfig
        from pipeline.shards.stage import write_shards

        table = pa.concat_tables(keep_tables, promote_options="default")
        write_shards(table, out / "shards", ShardConfig(), {"decontaminated_from": str(shards), "n": n,
                                                             "removed": summary.n_dropped})
    atomic_write_json(out / "contamination.json", report)
    summary.close(out)
    return summary


def format_report(summary: RunSummary) -> str:
    lines = [f"{'eval set':12} {'examples':>9} {'overlapping':>12} {'n-grams in corpus':>18}"]
    for name, s in summary.extra["sets"].items():
        lines.append(f"{name:12} {s['examples']:>9,} {s['examples_overlapping']:>12,} "
                     f"{s['ngrams_in_corpus']:>9,} ({s['ngram_overlap_pct']:.2f}%)")
    return "\n".join(lines)
