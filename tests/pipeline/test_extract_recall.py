"""A page of which trafilatura keeps nothing is read again in its recall mode
(pipeline/extract/worker.py RECALL_BELOW_WORDS, with ``[extract] rescue``), on a real
page of ../shared/data/html whose whole body sits in an unclosed pop-up <aside>, and on
a made-up page built the same way."""

import re

from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract import worker
from pipeline.extract.worker import extract_page

_WORD = re.compile(r"\w+")
SENTENCES = " ".join(f"Sentence {i} tells of cotton shirts that last for many years of wear." for i in range(12))
POPUP = ('<html><head><title>Shirts</title></head><body><aside class="Popup-Overlay" id="Popup-Newsletter">'
         '<div class="Popup-Outer"><header class="Header-Main"><div class="Content"><article class="Entry">'
         f"<h1>Shirts that last</h1><p>{SENTENCES}</p><p>{SENTENCES}</p></article></div></header></div></aside>"
         "</body></html>")


def words(t: str | None) -> set[str]:
    return set(_WORD.findall((t or "").lower()))


def test_a_page_inside_an_unclosed_popup_is_read_in_recall_mode(monkeypatch):
    page = pages_by_url("wcxb_dev.jsonl.xz", ("ecocult.com/the-18-most-affordable",))["ecocult.com/the-18-most-affordable"]
    steps: dict = {}
    text = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    assert steps.get("rescued_recall") == 1
    truth = words(page["truth"])
    assert len(words(text) & truth) >= 0.95 * len(truth)  # the hand-checked main text is there
    assert len(words(text)) <= 1.2 * len(truth)  # and little else
    monkeypatch.setattr(worker, "RECALL_BELOW_WORDS", 0)  # without the step: nothing at all
    assert extract_page(page["html"], page["url"], ExtractConfig())[0] is None


def test_a_made_up_page_in_a_popup_and_the_rescue_switch(monkeypatch):
    steps: dict = {}
    text = extract_page(POPUP, "https://example.org/shirts", ExtractConfig(), steps)[0]
    assert steps == {"rescued_recall": 1} and "Sentence 11 tells of cotton shirts" in text
    assert extract_page(POPUP, "https://example.org/shirts", ExtractConfig(rescue=False))[0] is None
    monkeypatch.setattr(worker, "RECALL_BELOW_WORDS", 0)
    assert extract_page(POPUP, "https://example.org/shirts", ExtractConfig())[0] is None


def test_a_text_is_read_again_only_below_the_word_count(monkeypatch):
    calls = []
    real = worker.extract_text

    def counted(html, url, cfg):
        calls.append(cfg.favor_recall)
        return real(html, url, cfg)

    monkeypatch.setattr(worker, "extract_text", counted)
    page = f"<html><body><article><h1>Shirts</h1><p>{SENTENCES}</p></article></body></html>"
    assert extract_page(page, "https://example.org/a", ExtractConfig())[0]
    assert calls == [False]  # a text was kept: one reading
    assert worker._fewer_words("", 1) and not worker._fewer_words("one", 1) and not worker._fewer_words("", 0)
    assert worker._fewer_words("a b c", 4) and not worker._fewer_words("a b c d", 4)
