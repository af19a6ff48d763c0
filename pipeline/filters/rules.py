"""Document filters: each keeps a document or drops it with a named reason.

As in datatrove, a filter is a small function ``(doc) -> reason | None``; the
reasons are counted in the run summary and, with ``write_dropped``, dropped
documents are written aside (``dropped/``) for audit. Mojibake is fixed with
ftfy before the filters run, not dropped.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from pipeline.core.config import FilterConfig
from pipeline.core.summary import RunSummary
from pipeline.core.urls import has_wikipedia_marker, is_wikipedia_url

Doc = dict
Filter = Callable[[Doc], "str | None"]


def wikipedia_filter(doc: Doc) -> str | None:
    """GPT-2 paper 2.2: all Wikipedia documents removed (they overlap test sets)."""
    if doc.get("url") and is_wikipedia_url(doc["url"]):
        return "wikipedia_url"
    if has_wikipedia_marker(doc.get("text") or ""):
        return "wikipedia_copy"
    return None


def length_filter(cfg: FilterConfig) -> Filter:
    if cfg.length_unit == "tokens":
        from model.tokenizer import gpt2_tokenizer

        enc = gpt2_tokenizer().encoding

        def measure(t: str) -> int:
            # Only the first min_length tokens matter; bound the work on long texts.
            return len(enc.encode_ordinary(t[: cfg.min_length * 20]))
    elif cfg.length_unit == "words":
        def measure(t: str) -> int:
            return len(t.split())
    else:
        measure = len

    def too_short(doc: Doc) -> str | None:
        return "too_short" if measure(doc.get("text") or "") < cfg.min_length else None

    return too_short


_DETECTOR = None


def _detector():
    global _DETECTOR
    if _DETECTOR is None:
        from lingua import LanguageDetectorBuilder

        _DETECTOR = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    return _DETECTOR


def detect_language(text: str) -> tuple[str | None, float]:
    """(ISO 639-1 code, confidence) from lingua on the first 2,000 characters."""
    vals = _detector().compute_language_confidence_values(text[:2000])
    if not vals:
        return None, 0.0
    top = vals[0]
    return top.language.iso_code_639_1.name.lower(), float(top.value)


def language_filter(cfg: FilterConfig) -> Filter:
    wanted = {c.lower() for c in cfg.languages}

    def not_wanted(doc: Doc) -> str | None:
        lang, conf = detect_language(doc.get("text") or "")
        doc["language"] = lang
        doc["language_confidence"] = round(conf, 4)
        if lang not in wanted or conf < cfg.min_language_confidence:
            return "not_english" if wanted == {"en"} else "language"
        return None

    return not_wanted


# Walls and error pages served with status 200 that earlier clones kept. They are
# short; a long article that merely mentions "page not found" is not junk.
JUNK_MAX_CHARS = 3000
JUNK_PATTERNS = {
    "captcha_wall": re.compile(
        r"are you a robot|verify (?:that )?you are (?:a )?human|complete the security check|checking your browser"
        r"|please enable (?:javascript and )?cookies|unusual traffic from your computer|press (?:and hold|& hold)"
        r"|captcha", re.I),
    "cookie_wall": re.compile(
        r"(?:we|this (?:web)?site) uses? cookies.{0,200}(?:accept|agree|consent)|manage (?:cookie|privacy) (?:settings|preferences)"
        r"|your privacy choices|consent to (?:the use of )?cookies", re.I | re.S),
    "paywall": re.compile(
        r"subscribe (?:now )?to (?:continue|keep) reading|(?:for|available to) subscribers only|you have reached your"
        r" (?:limit|maximum) of free articles|already a subscriber\?|this article is for (?:paid )?subscribers|"
        r"sign in to (?:continue|read) (?:reading|this article)", re.I),
    "error_page": re.compile(
        r"\b404\b.{0,40}not found|page (?:was )?not found|page you (?:requested|are looking for) (?:could not|cannot|can't|does not|doesn't)"
        r"|403 forbidden|access (?:to this page (?:has been|is) )?denied|service (?:temporarily )?unavailable"
        r"|internal server error|this (?:domain|site) (?:is|may be) for sale|account (?:has been )?suspended", re.I | re.S),
}


def junk_filter(doc: Doc) -> str | None:
    text = doc.get("text") or ""
    if len(text) > JUNK_MAX_CHARS:
        return None
    probe = text + "\n" + (doc.get("title") or "")
    for reason, pat in JUNK_PATTERNS.items():
        if pat.search(probe):
            return reason
    return None


def build_filters(cfg: FilterConfig) -> list[tuple[str, Filter]]:
    filters: list[tuple[str, Filter]] = []
    if cfg.remove_wikipedia:
        filters.append(("wikipedia", wikipedia_filter))
    if cfg.drop_junk:
        filters.append(("junk", junk_filter))
    filters.append(("length", length_filter(cfg)))
    if cfg.languages:
        filters.append(("language", language_filter(cfg)))
    return filters


def fix_text(doc: Doc) -> bool:
    """Fix mojibake in place with ftfy; True when the text changed."""
    import ftfy

    # Fix encoding damage only; keep the author's curly quotes, ligatures and widths.
    conf = ftfy.TextFixerConfig(uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
    text = doc.get("text") or ""
    fixed = ftfy.fix_text(text, conf)
    if doc.get("title"):
        doc["title"] = ftfy.fix_text(doc["title"], conf)
    if fixed != text:
        doc["text"] = fixed
        return True
    return False


def apply_filters(docs: Iterable[Doc], cfg: FilterConfig, summary: RunSummary | None = None):
    """Yield (doc, reason-or-None) for every document, counting in ``summary``."""
    summary = summary or RunSummary("filter", unit="documents")
    filters = build_filters(cfg)
    fixed = 0
    for doc in docs:
        summary.n_in += 1
        if cfg.fix_mojibake and fix_text(doc):
            fixed += 1
        reason = None
        for _, f in filters:
            reason = f(doc)
            if reason:
                break
        if reason:
            summary.drop(reason)
        else:
            summary.n_out += 1
        yield doc, reason
    summary.extra["mojibake_fixed"] = fixed


