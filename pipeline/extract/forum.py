"""Forum threads and Q&A pages: the posts their engine marks, as the main text."""

from __future__ import annotations

from lxml import etree

from pipeline.extract.expand import drop_repeated_lines

# Forum threads and Q&A pages by their engine's post markup: (a string every such page
# holds, cheap to look for in the HTML; the XPath of one post's body). trafilatura
# counts posts as comments (dropped with include_comments=False, or mixed with what it
# calls comments otherwise); these engines mark each post's body. Q&A markup (schema.org
# Question/Answer text) counts only on a QAPage: FAQ pages of shops and services use
# the same markup for their own copy. Measured on wcxb dev (bench/RESULTS.md): found on
# 65 of the 113 forum pages and on no other page, forum F1 .704 -> .752.
_CLASS = "contains(concat(' ', normalize-space(@class), ' '), ' {} ')"
FORUM_ENGINES = (
    ("xenforo", "bbWrapper", f"//div[{_CLASS.format('bbWrapper')}]"),
    ("vbulletin", "post_message_", "//div[starts-with(@id, 'post_message_')]"),
    ("phpbb", 'class="postbody"', f"//div[{_CLASS.format('postbody')}]//div[{_CLASS.format('content')}]"),
    ("invision", 'data-role="commentContent"', "//div[@data-role='commentContent']"),
    ("smf", 'id="forumposts"', f"//div[{_CLASS.format('post')}]/div[{_CLASS.format('inner')}]"),
    ("qa", "QAPage", "//*[contains(@itemtype, 'schema.org/Answer') or contains(@itemtype, 'schema.org/Question') "
                     "or contains(@itemtype, 'DiscussionForumPosting')]//div[@itemprop='text']"),
)
_FORUM_XPATHS = {name: etree.XPath(xp) for name, _, xp in FORUM_ENGINES}


def forum_posts(html: str, tree, article: bool = False) -> tuple[str, str] | None:
    """(engine, text) of a forum thread or Q&A page: the page's <h1>, then each post's
    body (its lines, stripped), one after another; None when no engine's markup holds
    two posts or more. A page that declares an ARTICLE is looked at as a Q&A page only
    (no thread engine's page on wcxb declares one; a Q&A page may): most pages are
    articles, and the engines' markers are looked for in the whole HTML."""
    for name, needle, _ in FORUM_ENGINES[-1:] if article else FORUM_ENGINES:
        if needle not in html:
            continue
        posts = _FORUM_XPATHS[name](tree)
        if len(posts) < 2:
            continue
        parts = [" ".join(tree.xpath("string(//h1)").split())]
        for post in posts:
            lines = (" ".join(line.split()) for line in post.text_content().splitlines())
            parts.append("\n".join(line for line in lines if line))
        text = drop_repeated_lines("\n".join(p for p in parts if p))
        if text:
            return name, text
    return None
