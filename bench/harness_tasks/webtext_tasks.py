"""Local data for lm-evaluation-harness tasks (``lm_eval --include_path bench/harness_tasks``).

The harness's own ``lambada_openai`` and ``wikitext`` tasks download
EleutherAI/lambada_openai and EleutherAI/wikitext_document_level from the Hugging
Face Hub. These loaders build the same datasets from the files in ../shared/data/eval
(read in place), so the harness runs offline; the task YAMLs beside this file keep
the stock tasks' prompts, targets and metrics. Files: the ``lambada_file`` /
``wikitext_file`` metadata (``--metadata '{"wikitext_file": "..."}'``), else
$WEBTEXT_LAMBADA_FILE / $WEBTEXT_WIKITEXT_FILE, else the default names in
$WEBTEXT_EVAL_DIR, else in ../shared/data/eval next to the repository.

The WikiText article split is written here on its own (not imported from
model.evaluate) from the rule of the wikitext_document_level dataset script, so
that the comparison also checks webtext's split.
"""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

from lm_eval.tasks.wikitext import preprocess_wikitext as _stock

EVAL_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eval"


def _path(given: str | None, env: str, name: str) -> Path:
    given = given or os.environ.get(env)
    if given:
        return Path(given)
    return Path(os.environ.get("WEBTEXT_EVAL_DIR") or EVAL_DIR) / name


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    return data.decode("utf-8")


def load_lambada(lambada_file: str | None = None, **_) -> dict:
    """OpenAI's LAMBADA test jsonl (EleutherAI/lambada_openai ``default`` is this file)."""
    import datasets

    text = _read(_path(lambada_file, "WEBTEXT_LAMBADA_FILE", "lambada_test.jsonl.xz"))
    rows = [{"text": json.loads(line)["text"]} for line in text.splitlines()
            if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _pages(text: str) -> list[str]:
    pages, current = [], []
    for line in text.split("\n"):
        stripped = line.replace("= = =", "===").replace("= =", "==").strip()
        is_title = stripped.startswith("= ") and stripped.endswith(" =")
        if is_title:
            if "\n".join(current).strip():
                pages.append("\n".join(current))
            current = []
        current.append(line)
    if "\n".join(current).strip():
        pages.append("\n".join(current))
    return pages


def load_wikitext(wikitext_file: str | None = None, **_) -> dict:
    """WikiText-2 test as one row per article (``page``), like wikitext_document_level.
    Default file: the tokenized test set (the original line layout; the raw copy in
    ../shared has its blank lines removed). CRLF line ends are read as LF."""
    import datasets

    text = _read(_path(wikitext_file, "WEBTEXT_WIKITEXT_FILE", "wikitext-2.test.tokens.xz")).replace("\r\n", "\n")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"page": p} for p in _pages(text)])})


# The stock task's de-tokenizer and metrics, imported so they are the harness's own.
wikitext_detokenizer = _stock.wikitext_detokenizer


def wikitext_results(doc, results):
    """The stock metrics (words counted as ``len(re.split(r"\\s+", page))``, which counts
    the empty strings before a page's leading space and after its final newline) and
    ``word_perplexity_ws``: words as whitespace tokens (``page.split()``), webtext's count."""
    out = _stock.process_results(doc, results)
    (loglikelihood,) = results
    out["word_perplexity_ws"] = (loglikelihood, len(doc["page"].split()))
    return out
