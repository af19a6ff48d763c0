import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from webtext_testlib import aeb_pages

from pipeline.core.config import FilterConfig
from pipeline.core.urls import is_wikipedia_url
from pipeline.filters.rules import apply_filters, junk_filter, wikipedia_filter
from pipeline.filters.stage import filter_documents

ARTICLE = ("The city council met on Tuesday to discuss the new budget proposal, which would increase spending on "
           "public transport and road maintenance over the next five years. ") * 12


@pytest.mark.parametrize("url", [
    "https://en.wikipedia.org/wiki/GPT-2", "http://de.wikipedia.org/wiki/Berlin", "https://fr.m.wikipedia.org/wiki/Paris",
    "https://ja.wikipedia.org/wiki/%E6%9D%B1%E4%BA%AC", "https://zh-yue.wikipedia.org/wiki/X", "https://simple.wikipedia.org/wiki/Cat",
    "https://www.wikiwand.com/en/GPT-2", "https://en.wikiquote.org/wiki/X", "https://commons.wikimedia.org/wiki/File:X.jpg",
    "https://EN.WIKIPEDIA.ORG/wiki/Upper", "http://wikipedia.org/", "https://en.wikipedia.org:443/wiki/Port",
])
def test_wikipedia_in_every_language_and_mirror_is_removed(url):
    assert is_wikipedia_url(url)
    assert wikipedia_filter({"url": url, "text": ARTICLE}) == "wikipedia_url"


@pytest.mark.parametrize("url", ["https://www.nytimes.com/a", "https://wikipediaisgreat.blog/x", "https://github.com/wiki"])
def test_not_wikipedia(url):
    assert not is_wikipedia_url(url)


def test_copied_wikipedia_content_is_removed():
    text = "Alan Turing\nFrom Wikipedia, the free encyclopedia\n" + ARTICLE
    assert wikipedia_filter({"url": "https://some-mirror.example/turing", "text": text}) == "wikipedia_copy"


@pytest.mark.parametrize("text,reason", [
    ("Are you a robot? Please complete the security check to access example.com", "captcha_wall"),
    ("We use cookies to improve your experience. By clicking Accept you agree to our use of cookies.", "cookie_wall"),
    ("Subscribe to continue reading. Already a subscriber? Log in.", "paywall"),
    ("404 - Page Not Found. The page you requested could not be found.", "error_page"),
])
def test_junk_pages(text, reason):
    assert junk_filter({"text": text}) == reason


def test_long_article_mentioning_junk_words_is_kept():
    assert junk_filter({"text": ARTICLE * 2 + " The page not found error confused users."}) is None


def test_funnel_counts_each_reason_and_fixes_mojibake(tmp_path):
    docs = [
        {"id": "ok", "url": "https://news.example.com/a", "text": ARTICLE, "title": "Budget"},
        {"id": "moji", "url": "https://news.example.com/b", "text": ARTICLE.replace("council", "councilâ€™s"), "title": "t"},
        {"id": "wiki", "url": "https://de.wikipedia.org/wiki/X", "text": ARTICLE, "title": "t"},
        {"id": "short", "url": "https://news.example.com/c", "text": "Too short to be a document.", "title": "t"},
        {"id": "fr", "url": "https://news.example.fr/d", "text": ("Le conseil municipal s'est réuni mardi pour discuter du "
                                                                 "nouveau budget, qui augmenterait les dépenses. ") * 15, "title": "t"},
        {"id": "junk", "url": "https://news.example.com/e", "text": "Are you a robot? " * 3, "title": "t"},
    ]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "in.parquet")
    s = filter_documents(tmp_path / "in.parquet", tmp_path / "out", FilterConfig(), write_dropped=True)
    assert s.n_in == 6 and s.n_out == 2 and s.balanced()
    assert dict(s.dropped) == {"wikipedia_url": 1, "too_short": 1, "not_english": 1, "captcha_wall": 1}
    kept = pq.read_table(tmp_path / "out" / "in.parquet").to_pylist()
    assert [d["id"] for d in kept] == ["ok", "moji"]
    assert "council’s" in kept[1]["text"] and "â€" not in kept[1]["text"]
    assert kept[0]["language"] == "en"
    dropped = pq.read_table(tmp_path / "out" / "dropped" / "in.parquet").to_pylist()
    assert {d["id"]: d["drop_reason"] for d in dropped}["fr"] == "not_english"
    # a re-run skips the finished file
    s2 = filter_documents(tmp_path / "in.parquet", tmp_path / "out", FilterConfig())
    assert s2.dropped == {"already_filtered": 6} and s2.balanced()


def test_real_pages_mostly_pass_length_and_language():
    import trafilatura

    docs = [{"id": str(i), "url": p["url"], "text": trafilatura.extract(p["html"], include_comments=False) or ""}
            for i, p in enumerate(aeb_pages(20))]
    results = list(apply_filters(docs, FilterConfig()))
    assert sum(r is None for _, r in results) >= 12
