"""Forum threads and Q&A pages: the posts their engine marks, as the main text."""

from __future__ import annotations

import re

from lxml import etree

from pipeline.extract.expand import drop_repeated_lines
from pipeline.extract.page import id_class_values

# Forum threads and Q&A pages by their engine's post markup: (a string every such page
# holds, cheap to look for in the HTML; the XPath of one post's body). trafilatura
# counts posts as comments (dropped with include_comments=False, or mixed with what it
# calls comments otherwise); these engines mark each post's body. Q&A markup (schema.org
# Question/Answer text) counts only on a QAPage: FAQ pages of shops and services use
# the same markup for their own copy. Measured on wcxb dev (bench/bench_extract.py): the
# first six engines were found on 65 of the 113 forum pages (forum F1 .704 -> .752);
# with MyBB, FluxBB, GameFAQs, Discourse's crawler view, NodeBB, Flarum, Lobsters,
# Lemmy, old and new Reddit, each post's author and date, a line per block and
# signatures left out: 84 pages, forum .781 -> .824, and still no page of another type
# (nor of aeb).
# A needle is cheap to look for; its XPath is asked only on a page that holds it. "@word":
# lowercase, looked for in the page's id and class values (``id_class_values``, ~1/10 of
# the HTML, read once for the consent step too), for engines whose posts' markup holds
# it in an id or a class; else looked for in the HTML (a data-role, a component, a tag,
# an itemtype). Sixteen scans of the HTML cost 0.9 ms a page on aeb (~5% of extracting
# it); four cost a quarter of that.
_CLASS = "contains(concat(' ', normalize-space(@class), ' '), ' {} ')"
FORUM_ENGINES = (
    ("xenforo", "@bbwrapper", f"//div[{_CLASS.format('bbWrapper')}]"),
    ("vbulletin", "@post_message_", "//div[starts-with(@id, 'post_message_')]"),
    ("phpbb", "@postbody", f"//div[{_CLASS.format('postbody')}]//div[{_CLASS.format('content')}]"),
    ("invision", "commentContent", "//div[@data-role='commentContent']"),
    ("smf", "@forumposts", f"//div[{_CLASS.format('post')}]/div[{_CLASS.format('inner')}]"),
    ("mybb", "@pid_", f"//div[{_CLASS.format('post_body')}][starts-with(@id, 'pid_')]"),
    ("fluxbb", "@postmsg", f"//div[{_CLASS.format('blockpost')}]//div[{_CLASS.format('postmsg')}]"),
    ("gamefaqs", "@msg_text", f"//td[{_CLASS.format('msg')}]//div[{_CLASS.format('msg_text')}]"),
    ("discourse", "@crawler-post", f"//div[{_CLASS.format('crawler-post')}]//div[@itemprop='text']"),
    ("nodebb", 'component="post/content"', "//*[@component='post/content']"),
    ("flarum", "@post-body", f"//div[{_CLASS.format('Post-body')}]"),
    ("lobsters", "@comments_subtree", f"//li[{_CLASS.format('comments_subtree')}]//div[{_CLASS.format('comment_text')}]"),
    ("lemmy", "@md-div", f"//div[{_CLASS.format('comment-content')}]/div[{_CLASS.format('md-div')}]"),
    ("reddit", "@usertext-body", f"//div[{_CLASS.format('usertext-body')}]/div[{_CLASS.format('md')}]"
                                f"[not(ancestor::div[{_CLASS.format('side')}])]"),
    ("reddit", "shreddit-comment", "//shreddit-post//div[@slot='text-body'] | //shreddit-comment/div[@slot='comment']"),
    ("qa", "QAPage", "//*[contains(@itemtype, 'schema.org/Answer') or contains(@itemtype, 'schema.org/Question') "
                     "or contains(@itemtype, 'DiscussionForumPosting')]//div[@itemprop='text']"),
)
# A page that declares itself a thread (schema.org QAPage or DiscussionForumPosting, in
# JSON-LD or microdata) and whose engine's post markup is none of the above: its posts
# are the main text, and trafilatura counts them as comments. On wcxb dev these
# declarations are on forum pages only (85 of 113; on no page of another type), and
# reading such a page's comments changes 2 pages, both forums, both up (.35 -> .88 on
# a Q&A page whose answers trafilatura left out; bench/bench_thread_folds.py).
_THREAD_DECLARED = re.compile(r'"@type"\s*:\s*\[?\s*"(?:QAPage|DiscussionForumPosting)"'
                              r"|schema\.org/(?:QAPage|DiscussionForumPosting)")


def declares_thread(html: str) -> bool:
    """The page says it is a forum thread or a Q&A page: a schema.org QAPage or
    DiscussionForumPosting in its JSON-LD or microdata. The type's name is looked for
    with ``in`` first (0.2 ms a page on wcxb dev, against 1.7 for the pattern alone)."""
    return ("QAPage" in html or "DiscussionForumPosting" in html) and bool(_THREAD_DECLARED.search(html))


_FORUM_XPATHS = [(name, needle, etree.XPath(xp)) for name, needle, xp in FORUM_ENGINES]
# Inside a post: what is not its text. Signatures, the "Click to expand..." links of
# quotes, scripts and styles.
_SKIP_TAGS = {"script", "style", "noscript", "template", "button", "svg"}
_SKIP_CLASS = ("signature", "expandlink", "shrinklink", "js-extratext", "onebox")
_BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
               "section", "article", "aside", "header", "footer", "dd", "dt", "dl", "figure", "figcaption", "hr"}
# Who wrote a post and when, from its container (the largest element around the post
# that holds no other post): the hand-checked text of a thread keeps both above each post.
_AUTHOR = etree.XPath("(.//*[@itemprop='author']//*[@itemprop='name'] | .//*[@itemprop='author'][not(*)]"
                      f" | .//*[{_CLASS.format('username')}] | .//*[{_CLASS.format('creator')}]//a"
                      f" | .//*[{_CLASS.format('byline')}]//a[normalize-space()] | .//*[@data-username])[1]")
_TIME = etree.XPath("(.//time)[1]")
# Q&A pages' hand-checked text leaves the user cards out, threads keep the name and date
HEADER_ENGINES = frozenset(name for name, _, _ in FORUM_ENGINES) - {"qa"}


def _skipped(el) -> bool:
    if el.tag in _SKIP_TAGS:
        return True
    cls = el.get("class")
    return bool(cls) and any(s in cls.lower() for s in _SKIP_CLASS)


def post_text(post) -> str:
    """A post's text, a line per block and per <br>, whitespace runs made one space,
    less its signature, scripts, styles and buttons."""
    parts: list[str] = []
    skipping = None
    for event, el in etree.iterwalk(post, events=("start", "end")):
        if not isinstance(el.tag, str):
            if event == "end" and skipping is None and el.tail and el is not post:
                parts.append(el.tail)
            continue
        if event == "start":
            if skipping is None and _skipped(el):
                skipping = el
            if skipping is None:
                if el.tag in _BLOCK_TAGS or el.tag == "br":
                    parts.append("\n")
                if el.text:
                    parts.append(el.text)
        else:
            if skipping is el:
                skipping = None
            elif skipping is not None:
                continue
            if el.tag in _BLOCK_TAGS:
                parts.append("\n")
            if el is not post and el.tail:
                parts.append(el.tail)
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return "\n".join(line for line in lines if line)


def _header(container, post) -> list[str]:
    """The author's name and the date above POST in its CONTAINER, where marked."""
    out = []
    author = container.get("data-author")
    if not author:
        for el in _AUTHOR(container):
            if not _inside(el, post):
                author = " ".join(el.text_content().split()) or el.get("content")
    if author and len(author) <= 60:
        out.append(author)
    for el in _TIME(container):
        if not _inside(el, post):
            when = " ".join(el.text_content().split())
            if when and len(when) <= 60:
                out.append(when)
    return out


def _inside(el, post) -> bool:
    return any(a is post for a in el.iterancestors())


def _containers(posts) -> list:
    """For each post, the largest element around it that holds no other post (itself
    when its parent holds another)."""
    count: dict = {}
    for p in posts:
        for a in p.iterancestors():
            count[a] = count.get(a, 0) + 1
    out = []
    for p in posts:
        c = p
        for a in p.iterancestors():
            if count[a] > 1 or a.tag in ("body", "html"):
                break
            c = a
        out.append(c)
    return out


def forum_posts(html: str, tree, article: bool = False, attrs: str | None = None) -> tuple[str, str] | None:
    """(engine, text) of a forum thread or Q&A page: the page's <h1>, then each post's
    author and date (where its container marks them; not on Q&A pages) and its body
    (a line per block, less signatures), one after another; a line of 3+ words
    repeated from an earlier post (a quote) is kept once; None when no engine's markup
    holds two posts or more. A post inside another post (a quoted post) is not a post
    of its own. ARTICLE (the page declares an article) is not a reason to skip: forum
    engines declare their threads articles too (NodeBB, Lobsters, ...); the engines'
    markers are looked for with ``in``, which rules out most pages: in the HTML, or in
    ATTRS (the page's ids and classes, ``id_class_values(tree)[1]``; made here when not
    given)."""
    for name, needle, xpath in _FORUM_XPATHS:
        if needle[0] == "@":
            if attrs is None:
                attrs = id_class_values(tree)[1]
            if needle[1:] not in attrs:
                continue
        elif needle not in html:
            continue
        posts = xpath(tree)
        if len(posts) < 2:
            continue
        ids = {id(p) for p in posts}
        posts = [p for p in posts if not any(id(a) in ids for a in p.iterancestors())]
        if len(posts) < 2:
            continue
        parts = [" ".join(tree.xpath("string(//h1)").split())]
        for post, container in zip(posts, _containers(posts)):
            parts.extend(_header(container, post) if container is not post and name in HEADER_ENGINES else ())
            parts.append(post_text(post))
        text = drop_repeated_lines("\n".join(p for p in parts if p))
        if text:
            return name, text
    return None
