"""The evaluation sets as text: reading them (xz, CRLF) and GPT-2's invertible
de-tokenizers for WikiText and PTB, and WikiText's split into articles.

Plain Python with no torch and no project imports but model/errors.py: the corpus side
(``pipeline/report/decontaminate.py``) reads the sets through here without importing the
model. A file that cannot be read as text (damaged .xz, not UTF-8) is an InputError
naming it.
"""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

from .errors import InputError


def read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"evaluation set not found: {p}")
    data = p.read_bytes()
    if p.suffix == ".xz":
        try:
            data = lzma.decompress(data)
        except (lzma.LZMAError, EOFError) as exc:
            raise InputError(f"{p}: damaged or truncated .xz file ({exc}); download the evaluation set again") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); give the evaluation set as UTF-8 "
                         "(or .xz of it)") from exc
    # CRLF copies of the sets (e.g. a WikiText raw file saved on Windows) read like the originals:
    # the de-tokenizers' " \n" rules and the article split see the same lines
    return text.replace("\r\n", "\n")


def read_jsonl_texts(path: str | Path) -> list[str]:
    """The ``text`` of every record of a JSON-lines file (LAMBADA's form), each line
    checked: a JSON object with a string ``text``; else an InputError naming the line."""
    texts = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}: line {n} is not JSON ({exc}); give LAMBADA as JSON lines "
                             '{"text": "..."}') from exc
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise InputError(f"{path}: line {n} has no string \"text\" field; give LAMBADA as JSON lines "
                             '{"text": "..."}')
        texts.append(rec["text"])
    return texts


def wikitext_detokenize(s: str) -> str:
    """Invertible de-tokenizer for WikiText's tokenization (as in Megatron-LM's
    zero-shot evaluation, after the GPT-2 paper)."""
    s = s.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    s = s.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    s = s.replace(" : ", ": ").replace(" ; ", "; ").replace(" . ", ". ").replace(" ! ", "! ").replace(" ? ", "? ")
    s = s.replace(" , ", ", ")
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    s = s.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    s = s.replace(" " + chr(176) + " ", chr(176)).replace(" \n", "\n").replace("\n ", "\n")
    s = s.replace(" N ", " 1 ").replace(" 's", "'s")
    return s


def ptb_detokenize(s: str) -> str:
    s = s.replace(" 's", "'s").replace(" n't", "n't").replace(" 're", "'re").replace(" 've", "'ve").replace(" 'm", "'m")
    s = s.replace(" 'll", "'ll").replace(" 'd", "'d").replace(" , ", ", ").replace(" . ", ". ")
    s = s.replace("<unk>", "<unk>").replace(" \n", "\n").replace("\n ", "\n")
    return s


def wikitext_articles(text: str) -> list[str]:
    """WikiText split into its articles, the documents of EleutherAI's
    ``wikitext_document_level`` (what lm-evaluation-harness's ``wikitext`` task reads):
    an article starts at each top-level heading line (`` = Title = ``; `` = = Section = = ``
    lines stay inside it) and is its lines joined by newlines; whitespace-only pieces
    are dropped."""
    articles: list[str] = []
    lines: list[str] = []

    def close():
        page = "\n".join(lines)
        if page.strip():
            articles.append(page)

    for line in text.split("\n"):
        head = line.replace("= = =", "===").replace("= =", "==").strip()
        if head.startswith("= ") and head.endswith(" ="):
            close()
            lines = []
        lines.append(line)
    close()
    return articles
