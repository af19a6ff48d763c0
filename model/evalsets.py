"""The evaluation sets as text: reading them (xz, CRLF) and GPT-2's invertible
de-tokenizers for WikiText and PTB, and WikiText's split into articles.

Plain Python with no torch and no project imports: the corpus side
(``pipeline/report/decontaminate.py``) reads the sets through here without importing the
model.
"""

from __future__ import annotations

import lzma
import re
from pathlib import Path


def read_text(path: str | Path) -> str:
    p = Path(path)
    data = p.read_bytes()
    if p.suffix == ".xz":
        data = lzma.decompress(data)
    # CRLF copies of the sets (e.g. a WikiText raw file saved on Windows) read like the originals:
    # the de-tokenizers' " \n" rules and the article split see the same lines
    return data.decode("utf-8").replace("\r\n", "\n")


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
