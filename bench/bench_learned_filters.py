"""Would a learned classifier beat the hand-made extraction steps? Two tries, both not kept.

1. **Blocks of the page.** The page is cut into blocks (the text of each block element:
   p, li, h1-h6, td, div ..., less the blocks nested in it); each block gets 72 features
   (its words and characters, link share, position, depth, tag, the landmarks around it:
   nav, header, footer, aside, form, article, main, li, table ...; 24 groups of words
   looked for in its and its ancestors' ids and classes: nav/menu, footer, sidebar,
   comment, share, related, product/card/item, price, content/post/article, title,
   filter/facet ...; a price, digits, end punctuation; the share of its word pairs that
   webtext's own text holds; the page's declared article / product and the share of the
   page webtext kept). A block is main text when half its word pairs are in the
   hand-checked text. A gradient-boosted tree model (scikit-learn's
   HistGradientBoostingClassifier, depth 4, 100 trees) learns on one half of wcxb dev and
   picks the blocks of the other; the page's text is its picked blocks in order.
2. **Lines of webtext's text.** The same model over the lines of webtext's own text, with
   23 features (words, position, digits, a price, capitals, stop words, repeats, the
   neighbours' lengths, the page's flags) decides which lines leave, on pages that
   declare no article.

Halves by a fixed hash of the URL (the first byte of its SHA-1, even or odd); each model
scores only the pages it did not learn from ("held out"), and the pages it learned from
("in-sample") for the gap. Also printed: the blocks' ceiling (the blocks a perfect
classifier would pick) and the same blocks picked by "in webtext's text" alone.

    .venv/bin/python bench/bench_learned_filters.py [--limit N]

needs scikit-learn (the test extra pulls it through lm_eval).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import load, score, tokens  # noqa: E402
from folds import url_halves  # noqa: E402

from pipeline.core.config import ExtractConfig  # noqa: E402
from pipeline.extract.expand import declares_article, declares_product  # noqa: E402
from pipeline.extract.page import page_title  # noqa: E402
from pipeline.extract.worker import extract_page  # noqa: E402

SKIP = {"script", "style", "template", "svg", "iframe", "select", "head", "title", "meta", "link", "object", "canvas",
        "video", "audio", "map"}
BLOCK = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "dd", "dt", "blockquote", "pre", "div", "section",
         "article", "figcaption", "caption", "label", "main", "header", "footer", "nav", "aside", "form", "ul", "ol",
         "dl", "table", "tr", "tbody", "thead", "figure", "body", "address", "summary", "details", "fieldset", "legend",
         "option", "button"}
LANDMARKS = ["nav", "header", "footer", "aside", "form", "main", "article", "li", "table", "button", "a", "h", "figure", "dl"]
NAMES = {k: re.compile(v) for k, v in {
    "nav": r"nav|menu|topbar", "foot": r"foot", "head": r"header|masthead", "side": r"sidebar|widget|rail",
    "comment": r"comment|disqus|respond", "share": r"share|social|follow", "related": r"related|recommend|similar|upsell",
    "crumb": r"breadcrumb", "cookie": r"cookie|consent|gdpr", "ad": r"\bads?\b|advert|sponsor|promo|banner",
    "card": r"product|item|card|tile|grid|result|listing", "price": r"price|cost|amount",
    "content": r"content|main|article|post|entry|body|story|text", "title": r"title|name|heading|headline",
    "desc": r"desc|summary|excerpt|teaser|snippet", "review": r"review|rating|star", "filter": r"filter|facet|sort|refine",
    "pager": r"paginat|pager", "news": r"newsletter|subscribe|signup", "account": r"login|account|cart|checkout|basket",
    "meta": r"meta|date|time|author|byline|tag|categor", "hidden": r"hidden|sr-only|screen-reader",
    "button": r"btn|button|cta", "modal": r"modal|popup|overlay|dialog|drawer",
}.items()}
TAGS = ["p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "dd", "dt", "blockquote", "pre", "div", "a", "span"]
PRICE = re.compile(r"[$€£¥]\s?\d|\d\s?(?:€|USD|EUR)")
STOP = set("the a an and or of to in on for with is are was were be by at as it this that from you your we our".split())


def page_blocks(tree) -> list[tuple[str, str, frozenset, frozenset, int, int]]:
    """(text, tag, landmarks around, id/class word groups around, depth, link characters)
    for each block of TREE's body with a word in it, in document order."""
    body = tree.find(".//body")
    out: list[list] = []
    stack = [(body if body is not None else tree, frozenset(), frozenset(), 0, None)]
    # an explicit stack (deep pages would overflow recursion): items are elements to open,
    # or ("tail", text, block) to add an element's tail to its parent's block
    while stack:
        item = stack.pop()
        if item[0] == "tail":
            if item[2] is not None:
                item[2][0].append(item[1])
            continue
        el, marks, names, depth, cur = item
        tag = el.tag if isinstance(el.tag, str) else None
        if el.tail and cur is not None:
            stack.append(("tail", el.tail, cur))
        if tag is None or tag in SKIP:
            continue
        attrs = f"{el.get('class') or ''} {el.get('id') or ''}".lower()
        own = frozenset(k for k, r in NAMES.items() if r.search(attrs)) if attrs.strip() else frozenset()
        marks = marks | ({tag} if tag in LANDMARKS else set()) | ({"h"} if tag[:1] == "h" and tag[1:].isdigit() else set())
        names = names | own
        if tag in BLOCK or cur is None:
            cur = [[], tag, marks, names, depth, [0]]
            out.append(cur)
        if el.text:
            cur[0].append(el.text)
            if "a" in marks:
                cur[5][0] += len(el.text)
        for child in reversed(el):
            stack.append((child, marks, names, depth + 1, cur))
    blocks = []
    for parts, tag, marks, names, depth, links in out:
        text = " ".join(" ".join(parts).split())
        if re.search(r"\w", text):
            blocks.append((text, tag, marks, names, depth, links[0]))
    return blocks


def pair_share(toks: list[str], pairs: set, words: set) -> float:
    """The share of TOKS' word pairs in PAIRS (a single word: whether it is in WORDS)."""
    if len(toks) < 2:
        return 1.0 if toks and toks[0] in words else 0.0
    return sum(1 for p in zip(toks, toks[1:]) if p in pairs) / (len(toks) - 1)


def block_features(pages, texts):
    from trafilatura.utils import load_html

    rows, labels, weights, owner, block_text = [], [], [], [], []
    for i, (p, text) in enumerate(zip(pages, texts)):
        tree = load_html(p["html"])
        if tree is None:
            continue
        blocks = page_blocks(tree)
        ours = tokens(text)
        ours_words, ours_pairs = set(ours), set(zip(ours, ours[1:]))
        truth = tokens(p["truth"])
        truth_words, truth_pairs = set(truth), set(zip(truth, truth[1:]))
        total = sum(len(tokens(b[0])) for b in blocks) or 1
        page = [float(declares_article(tree)), float(declares_product(tree)), len(ours) / total,
                math.log1p(len(blocks)), math.log1p(total)]
        for j, (t, tag, marks, names, depth, links) in enumerate(blocks):
            toks = tokens(t)
            row = [math.log1p(len(toks)), math.log1p(len(t)), 1.0 if "a" in marks else min(1.0, links / len(t)),
                   pair_share(toks, ours_pairs, ours_words), j / len(blocks), depth / 30,
                   float(t[-1:] in ".!?:"), sum(c.isdigit() for c in t) / len(t), float(bool(PRICE.search(t))),
                   float(t[:1].isupper()), t.count(",") / len(toks)]
            row += [float(tag == x) for x in TAGS] + [float(tag not in TAGS)]
            row += [float(m in marks) for m in LANDMARKS] + [float(k in names) for k in NAMES] + page
            rows.append(row)
            labels.append(pair_share(toks, truth_pairs, truth_words) >= 0.5)
            weights.append(math.sqrt(len(toks)))
            owner.append(i)
            block_text.append(t)
    return np.array(rows, dtype=np.float32), np.array(labels), np.array(weights), np.array(owner), block_text


def line_features(pages, texts):
    rows, labels, weights, owner, line_text = [], [], [], [], []
    for i, (p, text) in enumerate(zip(pages, texts)):
        lines = [line for line in (text or "").splitlines() if tokens(line)]
        truth = tokens(p["truth"])
        truth_words, truth_pairs = set(truth), set(zip(truth, truth[1:]))
        counts = Counter(" ".join(tokens(line)) for line in lines)
        lengths = [len(tokens(line)) for line in lines]
        median = float(np.median(lengths)) if lengths else 1.0
        from trafilatura.utils import load_html

        tree = load_html(p["html"])
        article = float(tree is not None and declares_article(tree))
        product = float(tree is not None and declares_product(tree))
        n = len(lines)
        for j, line in enumerate(lines):
            toks = tokens(line)
            words = line.split()
            rows.append([math.log1p(len(toks)), math.log1p(len(line)), j / n, float(j == 0), float(j == n - 1),
                         math.log1p(n), float(line.rstrip()[-1:] in ".!?:"), sum(c.isdigit() for c in line) / len(line),
                         float(bool(PRICE.search(line))), sum(1 for w in words if w[:1].isupper()) / max(1, len(words)),
                         sum(1 for w in toks if w in STOP) / len(toks), counts[" ".join(toks)], len(toks) / max(median, 1),
                         math.log1p(sum(lengths)), article, product, float(line.lstrip().startswith(("-", "•", "*"))),
                         line.count("|") + line.count("·"), float(bool(re.search(r"\d{4}", line))),
                         math.log1p(lengths[j - 1]) if j else -1.0, math.log1p(lengths[j + 1]) if j < n - 1 else -1.0,
                         float(len(toks) >= 60), float(line.isupper())])
            labels.append(pair_share(toks, truth_pairs, truth_words) >= 0.5)
            weights.append(len(toks))
            owner.append(i)
            line_text.append(line)
    return np.array(rows, dtype=np.float32), np.array(labels), np.array(weights), np.array(owner), line_text


def two_fold(X, y, w, owner, halves):
    """P(main text) for each row from the model fitted on the other half (held out) and
    from the model fitted on its own half (in-sample)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    half = np.array(halves)[owner]
    held, own = np.zeros(len(y)), np.zeros(len(y))
    for h in (0, 1):
        fit = half == h
        model = HistGradientBoostingClassifier(max_depth=4, max_iter=100, learning_rate=0.1, min_samples_leaf=200,
                                               random_state=0)
        model.fit(X[fit], y[fit], sample_weight=w[fit])
        held[~fit] = model.predict_proba(X[~fit])[:, 1]
        own[fit] = model.predict_proba(X[fit])[:, 1]
    return held, own


def assemble(n_pages, owner, parts, keep) -> list[str]:
    out: list[list[str]] = [[] for _ in range(n_pages)]
    for i in np.nonzero(keep)[0]:
        out[owner[i]].append(parts[i])
    return ["\n".join(o) for o in out]


def report(label, truths, types, texts, ours) -> None:
    a, b = score("wcxb", truths, ours, types), score("wcxb", truths, texts, types)
    by = ", ".join(f"{t} {b['by_type'][t][0]:.3f} ({b['by_type'][t][0] - f:+.3f})" for t, (f, _) in a["by_type"].items())
    print(f"{label:42} {b['F1']:.4f} ({b['F1'] - a['F1']:+.4f} on webtext's {a['F1']:.4f}); {by}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="pages (default: all of wcxb dev)")
    args = ap.parse_args()
    pages = load("wcxb_dev.jsonl.xz", args.limit)
    truths, types = [p["truth"] for p in pages], [p["page_type"] for p in pages]
    halves = url_halves(pages)
    cfg = ExtractConfig()
    ours = [extract_page(p["html"], p["url"], cfg, title=page_title(p["html"]))[0] or "" for p in pages]
    print(f"wcxb dev, {len(pages)} pages; F1 (gain on webtext as shipped); by page type")
    X, y, w, owner, parts = block_features(pages, ours)
    report("blocks: ceiling (the main-text blocks)", truths, types, assemble(len(pages), owner, parts, y), ours)
    report("blocks: those in webtext's text", truths, types, assemble(len(pages), owner, parts, X[:, 3] >= 0.5), ours)
    held, own = two_fold(X, y, w, owner, halves)
    report("blocks: learned, held out", truths, types, assemble(len(pages), owner, parts, held >= 0.5), ours)
    report("blocks: learned, in-sample", truths, types, assemble(len(pages), owner, parts, own >= 0.5), ours)
    X, y, w, owner, parts = line_features(pages, ours)
    article = X[:, 14] > 0
    held, own = two_fold(X, y, w, owner, halves)
    for cut in (0.3, 0.5):
        for label, p in (("held out", held), ("in-sample", own)):
            report(f"lines: learned, drop under {cut}, {label}", truths, types,
                   assemble(len(pages), owner, parts, article | (p >= cut)), ours)


if __name__ == "__main__":
    main()
