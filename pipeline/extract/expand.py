"""After trafilatura: rescue a short extraction of a page that is not an article, widen it to the
container of what it kept, and the line steps (a repeated quoted line, the headline)."""

from __future__ import annotations

import re

from lxml import etree

from pipeline.extract.page import _JSON_LD

# The rescue of an extraction that kept little of the page (extract_page). Chosen on
# wcxb's dev pages and checked on aeb's articles (bench/bench_extract.py; bench/RESULTS.md
# "Rescue"): where trafilatura keeps under RESCUE_SHARE of the page's visible characters
# and the page does not declare itself an article (og:type, schema.org Article types:
# there trafilatura's article model is right, and a short story beside a long comment
# thread is still short) and the extraction holds no paragraph of RESCUE_PROSE_WORDS
# words (prose: the story was found, as on an old news site that declares nothing),
# trafilatura's baseline (JSON-LD body, <article>, the page's paragraphs) replaces the
# extraction when it holds RESCUE_BASELINE_RATIO times the words. Listing, collection,
# service and product pages are where it fires: their item lists are what an article
# model leaves out. An earlier version first put the page's whole visible text
# (html2txt) in place of an extraction under 6% of the page; with the later steps in
# place that lost on both halves of wcxb dev (bench/bench_rescue_folds.py;
# bench/RESULTS.md "The page-text rescue taken out") and was removed.
RESCUE_SHARE = 0.4
RESCUE_BASELINE_RATIO = 3
RESCUE_PROSE_WORDS = 60
_WORD = re.compile(r"\w+")
_HIDDEN = "self::script or self::style or self::noscript or self::template or self::svg or self::aside or self::footer"
_PAGE_CHARS = etree.XPath("string-length(normalize-space(//body))")
_HIDDEN_ELEMENTS = etree.XPath(f"//body//*[{_HIDDEN}][not({_HIDDEN.replace('self::', 'ancestor::')})]")
_SPACED_CHARS = etree.XPath("string-length(normalize-space(.))")
_OG_TYPE = etree.XPath("//meta[@property='og:type']/@content")
_ARTICLE_TYPE = re.compile(r'"@type"\s*:\s*\[?\s*"(?:News|Blog|Scholarly|Tech|Report|Reportage|Analysis|Opinion)?(?:Article|Posting)"')


def declares_article(tree) -> bool:
    """The page says it is an article: og:type "article", or a schema.org Article,
    NewsArticle, BlogPosting (...) in its JSON-LD."""
    if any(v.strip().lower() == "article" for v in _OG_TYPE(tree)):
        return True
    return any(_ARTICLE_TYPE.search(t) for t in _JSON_LD(tree))


def visible_chars(tree) -> int:
    """About how many characters of text the page shows: the body's text, whitespace
    runs counted once, less scripts, styles, templates, SVG, asides and footers."""
    total = _PAGE_CHARS(tree)
    for el in _HIDDEN_ELEMENTS(tree):
        total -= _SPACED_CHARS(el)
    return max(0, int(total))


def rescue_short_extraction(tree, text: str | None, article: bool | None = None) -> tuple[str | None, str | None]:
    """(text, how) where HOW is "baseline" when trafilatura's baseline replaced TEXT,
    None when TEXT stays. TREE is the parsed page, left unchanged."""
    from trafilatura import baseline

    # the cheap tests first: prose and a declared article rule out most article pages
    if any(len(_WORD.findall(line)) >= RESCUE_PROSE_WORDS for line in (text or "").splitlines()):
        return text, None
    if article if article is not None else declares_article(tree):
        return text, None
    page = visible_chars(tree)
    got = len(" ".join((text or "").split()))
    if not page or got >= RESCUE_SHARE * page:
        return text, None
    words = len(_WORD.findall(text or ""))
    base = baseline(tree)[1]
    if len(_WORD.findall(base)) > RESCUE_BASELINE_RATIO * words:
        return base, "baseline"
    return text, None


# Expansion to the extraction's container. On service, listing and collection pages
# trafilatura keeps a section's paragraphs but drops its headings, short list items and
# table cells (the truth of such a page keeps them). The container that holds the
# paragraphs trafilatura kept is found back in the page: the deepest element holding
# EXPAND_COVER of the page's block elements (p, li, h1-h6, td ...) whose text is one of
# the extraction's lines of EXPAND_MIN_WORDS words or more. Its text (less scripts,
# styles, navigation, headers, footers, asides, forms and buttons) replaces the
# extraction when it holds EXPAND_RATIO times the words or more; never the whole body,
# and never on a page that declares a product (schema.org Product, og:type product):
# there the container holds prices, variant pickers and cart widgets. Measured on wcxb
# dev (bench/RESULTS.md "Container"): fires on 10% of the pages, .831 -> .844 overall;
# chosen on that split, checked on each half (bench/bench_expand_folds.py) and on aeb.
EXPAND_MIN_WORDS = 3
EXPAND_COVER = 0.8
EXPAND_RATIO = 1.25
_BLOCKS = etree.XPath("//p|//li|//h1|//h2|//h3|//h4|//h5|//h6|//td|//th|//dd|//dt|//blockquote|//pre")
_NOT_TEXT = etree.XPath("//script|//style|//noscript|//template|//svg|//nav|//header|//footer|//aside|//form"
                        "|//button|//select|//iframe")
_PRODUCT_TYPE = re.compile(r'"@type"\s*:\s*\[?\s*"Product"')
# through the attribute axis: the same elements as //*[@itemtype=...], 0.35 against 0.78 ms a page
_PRODUCT_ITEM = etree.XPath("//@itemtype[.='https://schema.org/Product' or .='http://schema.org/Product']/..")


def _words_key(line: str) -> str:
    return " ".join(_WORD.findall(line.lower()))


def declares_product(tree) -> bool:
    """The page says it sells one product: og:type product, or a schema.org Product in
    its JSON-LD or microdata."""
    if any(v.strip().lower() in ("product", "og:product") for v in _OG_TYPE(tree)):
        return True
    return any(_PRODUCT_TYPE.search(t) for t in _JSON_LD(tree)) or bool(_PRODUCT_ITEM(tree))


def expand_to_container(tree, text: str | None, min_words: int = EXPAND_MIN_WORDS, cover: float = EXPAND_COVER,
                        ratio: float = EXPAND_RATIO) -> str | None:
    """The text of the element that holds what TEXT (trafilatura's extraction of the
    page TREE) was taken from, when it holds RATIO times TEXT's words or more; else
    None. TREE loses its scripts, navigation, forms (...): call it last."""
    if not text:
        return None
    lines = {_words_key(line) for line in text.splitlines()}
    lines = {k for k in lines if k.count(" ") + 1 >= min_words}
    if not lines:
        return None
    for el in _NOT_TEXT(tree):
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)
    hits = [el for el in _BLOCKS(tree) if _words_key(el.text_content()) in lines]
    if len(hits) < 2:
        return None
    held: dict = {}
    for el in hits:
        for anc in el.iterancestors():
            held[anc] = held.get(anc, 0) + 1
    need = cover * len(hits)
    best, depth = None, -1
    for anc, n in held.items():
        if n >= need:
            d = sum(1 for _ in anc.iterancestors())
            if d > depth:
                best, depth = anc, d
    if best is None or best.tag in ("body", "html"):
        return None
    parts = (" ".join(t.split()) for t in best.itertext())
    found = "\n".join(t for t in parts if t)
    if len(_WORD.findall(found)) < ratio * len(_WORD.findall(text)):
        return None
    return found


# Repeated lines on pages that are not articles (extract_page, ``[extract] dedup_lines``):
# a shop's or service page's tabs, carousels and mobile/desktop copies of the same block
# give the same lines twice in the extraction; the hand-checked text has them once. A
# line that looks like code (brackets, braces, "=", ";", a shell prompt) stays, and pages
# holding <pre> or <code> are left alone: code repeats by nature. Measured on wcxb dev
# (bench/RESULTS.md "Repeated lines"), the word count chosen on each half of the pages and
# checked on the other (bench/bench_extract_folds.py).
DEDUP_MIN_WORDS = 3
_CODE_LINE = re.compile(r"[{};=<>()\[\]]|^\s*[$#>]")


def drop_repeated_lines(text: str, min_words: int = 3, keep_code: bool = False) -> str:
    """TEXT without the lines of MIN_WORDS words or more that repeat an earlier line
    (word for word, case aside): a forum post quoting an earlier one, a shop page's
    block shown twice. With KEEP_CODE, lines that look like code always stay."""
    seen: set[str] = set()
    out = []
    for line in text.splitlines():
        key = _words_key(line)
        if key.count(" ") + 1 >= min_words and not (keep_code and _CODE_LINE.search(line)):
            if key in seen:
                continue
            seen.add(key)
        out.append(line)
    return "\n".join(out)


# Runs of machine ids (``[extract] drop_id_runs``). Some shops hide a label such as
# "Sponsored" among spans whose text is UUIDs that their stylesheet makes invisible
# (eBay's item pages: "9303097ac-d3e5-41e1-baf5-...X2bf8403c-..."); trafilatura reads no
# CSS and keeps them as lines of ~1,000 characters. A line holding ID_RUN_MIN UUIDs or
# more that make ID_RUN_SHARE of its characters (spaces aside) is no one's text and
# leaves. On wcxb dev it fires on the 3 eBay item pages that carry such labels and on no
# other page of wcxb or aeb at every count (2, 3, 5) and share (.5, .8, .9) tried
# (bench/bench_id_runs_folds.py); a UUID inside a line of prose or code stays.
ID_RUN_MIN = 3
ID_RUN_SHARE = 0.8
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# the cheap test first: led by a literal "-", the regex engine jumps from hyphen to hyphen
# (the whole step: 8 µs a text on wcxb dev, against 330 µs with _UUID's search, which starts at
# every character; bench/RESULTS.md "Machine-id lines")
_UUID_MIDDLE = re.compile(r"-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-", re.I)


def drop_id_runs(text: str | None, min_ids: int = ID_RUN_MIN, share: float = ID_RUN_SHARE) -> tuple[str | None, int]:
    """(TEXT without its lines made of machine ids, how many went): a line goes when it
    holds MIN_IDS UUIDs or more and they make SHARE of its characters, spaces aside."""
    if not text or not _UUID_MIDDLE.search(text):
        return text, 0
    kept, dropped = [], 0
    for line in text.splitlines():
        ids = _UUID.findall(line) if _UUID_MIDDLE.search(line) else ()
        if len(ids) >= min_ids and 36 * len(ids) >= share * len("".join(line.split())):
            dropped += 1
            continue
        kept.append(line)
    return ("\n".join(kept), dropped) if dropped else (text, 0)


def drop_title_line(text: str | None, title: str | None) -> str | None:
    """TEXT without its first line when that line (3 words or more) is the page's
    TITLE or a part of it ("Headline | Site"): the document keeps its title in its own
    field, and the text is the body."""
    if not text or not title:
        return text
    first, _, rest = text.partition("\n")
    key = _words_key(first)
    if key.count(" ") >= 2 and key in _words_key(title):
        return rest
    return text
