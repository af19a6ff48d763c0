"""Forum threads on real pages of ../shared/data/html (wcxb dev): the posts of a thread
are the main text for each engine the forum step knows, each post once, with its
author's name and date, signatures out; and pages of other types are left alone."""

import re

import pytest
from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract.forum import forum_posts, post_text
from pipeline.extract.worker import extract_page

# (a part of the page's URL, the engine the step must find there)
THREADS = [
    ("forums.eveonline.com/t/project-discovery", "discourse"),
    ("discuss.flarum.org/d/2068", "flarum"),
    ("bbs.archlinux.org/viewtopic.php?id=298271", "fluxbb"),
    ("community.mybb.com/thread-222085", "mybb"),
    ("community.nodebb.org/topic/18427", "nodebb"),
    ("old.reddit.com/r/science/comments/1rku5x9", "reddit"),
    ("lobste.rs/s/dwip3v", "lobsters"),
    ("gamefaqs.gamespot.com/boards/189706-nintendo-switch/80702016", "gamefaqs"),
    ("linustechtips.com/topic/1571202", "invision"),
]
_WORD = re.compile(r"\w+")


def words(t: str) -> set[str]:
    return set(_WORD.findall((t or "").lower()))


def bag_f1(truth: str, text: str) -> float:
    from collections import Counter

    t, y = Counter(_WORD.findall(truth.lower())), Counter(_WORD.findall((text or "").lower()))
    tp = sum((t & y).values())
    if not tp:
        return 0.0
    p, r = tp / sum(y.values()), tp / sum(t.values())
    return 2 * p * r / (p + r)


@pytest.fixture(scope="module")
def pages():
    keys = [k for k, _ in THREADS] + ["forums.studentdoctor.net/threads/official-2024-2025", "camelsandchocolate.com",
                                      "thefightingcock.co.uk/forum/threads/squad-2024-2025",
                                      "wallstreetoasis.com/forum/consulting/consulting-is-it-worthy",
                                      "linkedin.com/pulse/5-trends-from-nutrition-2025"]
    return pages_by_url("wcxb_dev.jsonl.xz", keys)


@pytest.mark.parametrize("key, engine", THREADS)
def test_each_engine_gives_the_threads_posts(pages, key, engine):
    page = pages[key]
    steps: dict = {}
    text = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    without = extract_page(page["html"], page["url"], ExtractConfig(forum_posts=False))[0] or ""
    assert steps.get(f"forum_{engine}") == 1
    # the hand-checked thread, measured as the benchmark does (bag of words)
    assert bag_f1(page["truth"], text) >= 0.74
    assert bag_f1(page["truth"], text) > bag_f1(page["truth"], without) + 0.05


def test_each_post_once_with_its_author_and_date_and_no_signature(pages):
    page = pages["gamefaqs.gamespot.com/boards/189706-nintendo-switch/80702016"]
    text = extract_page(page["html"], page["url"], ExtractConfig())[0]
    lines = text.splitlines()
    # the first post, once, with its author's name above it
    first = "No YT stream link this time. The VOD will just go up on their channel in exactly 1 hour from now."
    assert lines.count(first) == 1 and "Need2KnowLion" in lines[: lines.index(first)]
    # its author's signature (a quote under every post of theirs) is not in the text
    assert "Pillars of modern warfare" in page["html"] and "Pillars of modern warfare" not in text
    # a post quoting another keeps the quoted line once
    assert lines.count("I'm ready!!") + lines.count("I’m ready!!") == 1


def test_xenforo_posts_once_under_their_authors_without_styles(pages):
    page = pages["forums.studentdoctor.net/threads/official-2024-2025"]
    text = extract_page(page["html"], page["url"], ExtractConfig())[0]
    assert bag_f1(page["truth"], text) >= 0.85
    keys = [" ".join(_WORD.findall(line.lower())) for line in text.splitlines()]
    keys = [k for k in keys if k.count(" ") >= 2]
    assert len(keys) == len(set(keys))  # each post once, quotes not repeated
    # each post under its author's name (the thread's hand-checked text keeps them)
    from lxml import html

    authors = set(html.fromstring(page["html"]).xpath("//article[contains(@class, 'message--post')]/@data-author"))
    assert len(authors) >= 2 and authors <= set(text.splitlines())
    # a <style> inside a post is not text
    page = pages["thefightingcock.co.uk/forum/threads/squad-2024-2025"]
    assert ".avatar--xss {" in page["html"]
    assert ".avatar--xss" not in extract_page(page["html"], page["url"], ExtractConfig())[0]


def test_post_text_is_a_line_per_block_less_signatures_and_scripts():
    from lxml import html

    post = html.fromstring('<div class="post"><p>First line<br>second line</p><div>Next block <b>bold</b> end</div>'
                           '<script>var x = 1;</script><div class="message-signature">My signature</div>tail text</div>')
    assert post_text(post) == "First line\nsecond line\nNext block bold end\ntail text"


def test_a_thread_by_its_markup_with_names_and_dates():
    from lxml import html

    posts = "".join(f'<article class="message" data-author="user{i}"><time>Jan {i}, 2024</time>'
                    f'<div class="bbWrapper">Post number {i} says something.<div class="signature">sig</div></div></article>'
                    for i in range(1, 4))
    page = f"<html><body><h1>A thread</h1>{posts}<div class='bbWrapper'><p>x</p></div></body></html>"
    name, text = forum_posts(page, html.fromstring(page))
    assert name == "xenforo"
    assert text.splitlines()[:4] == ["A thread", "user1", "Jan 1, 2024", "Post number 1 says something."]
    assert "sig" not in text.split()
    # one post is not a thread
    one = "<html><body><div class='bbWrapper'>Only post.</div></body></html>"
    assert forum_posts(one, html.fromstring(one)) is None


def test_comment_markup_on_an_article_is_not_a_thread(pages):
    # a blog's comments share class names with forum engines (comment_text): the
    # engines' XPaths ask for their own structure, and the article stays trafilatura's
    page = pages["camelsandchocolate.com"]
    assert "comment_text" in page["html"]
    steps: dict = {}
    extract_page(page["html"], page["url"], ExtractConfig(), steps)
    assert not any(k.startswith("forum_") for k in steps)


def test_id_and_class_markers_are_lowercase_and_named_by_their_engines_markup():
    # an "@" marker is looked for in the page's lowercased ids and classes: an uppercase
    # one would never be found, and one the engine's XPath does not name could miss its
    # posts (SMF's is the id of its thread's container, checked on real pages instead)
    from pipeline.extract.forum import FORUM_ENGINES

    markers = [(name, needle[1:], xp) for name, needle, xp in FORUM_ENGINES if needle.startswith("@")]
    assert len(markers) == 12
    for name, marker, xp in markers:
        assert marker == marker.lower(), name
        assert marker in xp.lower() or name == "smf", name


def test_a_declared_thread_of_an_unknown_engine_keeps_its_answers(pages, monkeypatch):
    # a Q&A page (schema.org QAPage) whose answers no engine above marks: trafilatura
    # counts them as comments, and they are the page's main text
    from pipeline.extract import worker

    page = pages["wallstreetoasis.com/forum/consulting/consulting-is-it-worthy"]
    steps: dict = {}
    on = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    assert steps.get("thread_comments") == 1 and not any(k.startswith("forum_") for k in steps)
    assert bag_f1(page["truth"], on) > 0.8
    assert len(words(on) & words(page["truth"])) >= 0.8 * len(words(page["truth"]))
    monkeypatch.setattr(worker, "declares_thread", lambda html: False)  # without the step
    off = extract_page(page["html"], page["url"], ExtractConfig())[0]
    assert bag_f1(page["truth"], off) < 0.5
    # with the forum step off, nothing of it runs
    monkeypatch.undo()
    steps = {}
    extract_page(page["html"], page["url"], ExtractConfig(forum_posts=False), steps)
    assert "thread_comments" not in steps


def test_an_article_with_comment_markup_is_not_read_with_its_comments(pages):
    from pipeline.extract.forum import declares_thread

    page = pages["linkedin.com/pulse/5-trends-from-nutrition-2025"]
    assert "Comment" in page["html"] and not declares_thread(page["html"])
    steps: dict = {}
    extract_page(page["html"], page["url"], ExtractConfig(), steps)
    assert "thread_comments" not in steps
    made = ('<html><head><script type="application/ld+json">{"@type": "QAPage", "mainEntity": {}}</script>'
            "</head><body></body></html>")
    assert declares_thread(made) and declares_thread('<div itemtype="https://schema.org/DiscussionForumPosting">')
