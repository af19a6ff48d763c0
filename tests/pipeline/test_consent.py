"""Cookie and consent banners and subscription prompts are removed before extraction,
the page is kept: on the real pages where they became the "main text" or its last
lines (issue 14), and on hand-made ones that must not lose content. And the steps
after trafilatura: the rescue of extractions that kept little of a page, forum posts,
the expansion to the extraction's container, on real pages."""

import json
import lzma
import re

import pytest
from webtext_testlib import pages_by_url, shared

from pipeline.core.config import ExtractConfig
from pipeline.extract.consent import strip_banners, strip_consent
from pipeline.extract.expand import (
    declares_article,
    declares_product,
    drop_repeated_lines,
    expand_to_container,
    rescue_short_extraction,
)
from pipeline.extract.worker import extract_page

BANNERS = ("We process your data", "We value your privacy", "Privacy Preference Center", "Vos préférences",
           "We use cookies and other technologies")
PAGES = ("allrecipes.com/recipes/17562", "seriouseats.com/tomato-sauce-recipes", "avforums.com/threads/discussion-of-our-review",
         "forum.corsair.com/forums/topic/188682", "forum.prestashop.com/topic/1103020", "ebay.com/itm/404928375058")


def words(t: str) -> set[str]:
    return set(re.findall(r"\w+", (t or "").lower()))


@pytest.fixture(scope="module")
def pages():
    return pages_by_url("wcxb_dev.jsonl.xz", PAGES)


@pytest.mark.parametrize("key", PAGES)
def test_consent_text_is_gone_and_the_page_kept(pages, key):
    page = pages[key]
    # trafilatura's text (the forum step off: three of these are forum threads)
    before = extract_page(page["html"], page["url"], ExtractConfig(strip_consent=False, forum_posts=False))[0] or ""
    after = extract_page(page["html"], page["url"], ExtractConfig(forum_posts=False))[0] or ""
    assert any(b in before for b in BANNERS)  # the banner was there without the step
    assert not any(b in after for b in BANNERS)
    assert not any(b in (extract_page(page["html"], page["url"], ExtractConfig())[0] or "") for b in BANNERS)
    assert len(after) > 300
    truth = words(page["truth"])
    # what the extraction finds of the hand-checked main text is not lost with the banner
    assert len(words(after) & truth) >= 0.95 * len(words(before) & truth)


def test_content_that_only_looks_like_a_banner_stays():
    from lxml import html

    article = "<p>" + "Bake the cookies for twelve minutes and let them cool on a rack before icing them. " * 8 + "</p>"
    page = f"""<html><body>
      <div class="cmp-text">{article}</div>
      <div class="cookie-recipes"><p>Our privacy-free cookie recipes: oatmeal, ginger, lemon.</p></div>
      <div id="onetrust-consent-sdk"><p>We and our partners use cookies to process personal data.</p></div>tail text
      <section class="gdpr-banner">Nothing about the subject here.</section>
    </body></html>"""
    tree = html.fromstring(page)
    assert strip_consent(tree) == 1  # only the OneTrust container: it names a manager AND speaks of cookies
    text = tree.text_content()
    assert "Bake the cookies" in text and "oatmeal, ginger" in text and "Nothing about the subject" in text
    assert "our partners use cookies" not in text and "tail text" in text  # the text after it stays


def test_a_wrapper_holding_most_of_the_page_is_never_removed():
    from lxml import html

    body = "<p>" + "A long article about privacy law and cookie consent rules in Europe. " * 30 + "</p>"
    tree = html.fromstring(f'<html><body><div class="privacy-center-article">{body}</div><p>x</p></body></html>')
    assert strip_consent(tree) == 0 and "privacy law" in tree.text_content()


def test_a_consent_class_on_the_pages_frame_is_ignored():
    # msn.com puts its consent manager's name on <body> (two aeb pages lost all their
    # text to an early version of this step)
    from lxml import html

    scripts = "<script>" + "var onetrust = 'cookie consent privacy';" * 500 + "</script>"
    tree = html.fromstring(f'<html><head>{scripts}</head><body class="onetrust-enabled"><article class="cookie-consent-story">'
                           '<p>Our privacy reporter on cookie consent.</p></article><p>' + "Body text. " * 20 + '</p></body></html>')
    assert strip_consent(tree) == 0 and "Body text." in tree.text_content()


# --- subscription prompts (paywalls) ----------------------------------------------

STATNEWS = "statnews.com/2025/12/18/weight-loss-drugs"
PROMPTS = ("exclusive to STAT+ subscribers", "Unlock this article", "Already have an account? Log in")


def _page(key):
    with lzma.open(shared("html", "wcxb_dev.jsonl.xz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if key in (r["url"] or ""):
                return r
    raise AssertionError(f"no page {key} in wcxb_dev")


def test_a_subscription_prompt_is_gone_and_the_article_kept():
    page = _page(STATNEWS)
    before = extract_page(page["html"], page["url"], ExtractConfig(strip_paywall=False))[0] or ""
    after = extract_page(page["html"], page["url"], ExtractConfig())[0] or ""
    assert all(p in before for p in PROMPTS)  # the prompt reached the document without the step
    assert not any(p in after for p in PROMPTS)
    truth = words(page["truth"])
    assert len(words(after) & truth) >= 0.99 * len(truth)  # all of the article's text stays
    assert after.rstrip().endswith("at this time.”")  # its last sentence, just above the prompt


def test_a_paywall_element_holding_the_story_stays():
    # some sites wrap the subscribers' part of a story in a "paywall" element: more text
    # than a prompt ever holds, so it is not removed (nor is a short one that asks nothing)
    from lxml import html

    story = "<p>" + "The council voted to rebuild the bridge after the floods of the spring. " * 40 + "</p>"
    tree = html.fromstring(f"""<html><body><article><p>{'Lead paragraph of the story. ' * 10}</p>
      <div class="paywall-content">{story}<p>Subscribe to read more from our members.</p></div>
      <div class="subscribe-box"><p>Photo: the old bridge.</p></div>
      <div class="paywall-prompt">Already a subscriber? <a>Log in</a> or start your free trial.</div>tail stays
    </article></body></html>""")
    assert strip_banners(tree, consent=False) == {"consent": 0, "paywall": 1}
    text = tree.text_content()
    assert "rebuild the bridge" in text and "Photo: the old bridge" in text and "tail stays" in text
    assert "free trial" not in text


# --- the rescue of extractions that kept little of the page ------------------------

@pytest.mark.parametrize("key", ["bbc.com/news/technology", "dev.events/AM/tech"])
def test_a_listing_whose_items_trafilatura_drops_is_rescued(key):
    page = _page(key)
    truth = words(page["truth"])
    plain = extract_page(page["html"], page["url"], ExtractConfig(rescue=False, expand=False, add_missed_grid=False))[0] or ""
    rescued = extract_page(page["html"], page["url"], ExtractConfig())[0] or ""
    assert len(words(plain) & truth) < 0.3 * len(truth)  # trafilatura alone keeps a header
    assert len(words(rescued) & truth) >= 0.9 * len(truth)  # the items come back


def test_the_rescue_leaves_articles_alone():
    from trafilatura.utils import load_html

    page = _page(STATNEWS)
    plain = extract_page(page["html"], page["url"], ExtractConfig(rescue=False))[0]
    tree = load_html(page["html"])
    assert declares_article(tree)
    assert rescue_short_extraction(tree, plain) == (plain, None)
    # a page that declares an article is trusted to trafilatura's article model even
    # when little was kept; a listing that kept nothing gets trafilatura's baseline
    assert rescue_short_extraction(tree, "") == ("", None)
    listing = load_html(_page("dev.events/AM/tech")["html"])
    assert not declares_article(listing) and rescue_short_extraction(listing, "")[1] == "baseline"


@pytest.mark.parametrize("key", ["arc.dev/remote-jobs", "shopinthekitchen.com/collections/lodge",
                                 "viewsonic.com/us/products/shop/monitors"])
def test_a_short_extraction_of_a_listing_is_not_replaced_by_the_whole_page(key):
    # the rescue once put the page's whole visible text in place of an extraction under
    # 6% of the page: on these pages the short extraction was the hand-checked text, and
    # the page's text was 3 to 20 times longer (bench/bench_rescue_folds.py)
    page = _page(key)
    truth = page["truth"].split()
    text = (extract_page(page["html"], page["url"], ExtractConfig())[0] or "").split()
    assert len(words(" ".join(text)) & words(page["truth"])) >= 0.95 * len(words(page["truth"]))
    assert len(text) <= 1.5 * len(truth)


def test_the_run_summary_counts_what_the_steps_did(tmp_path):
    # real pages in a real WARC through the extract stage: the summary says how many
    # pages lost a consent banner or a subscription prompt and how many were rescued
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from pipeline.extract.stage import (
        extract_documents,
        read_documents,
        tasks_from_warcs,
    )

    pages = [_page(STATNEWS), _page("allrecipes.com/recipes/17562"), _page("dev.events/AM/tech")]
    warc = tmp_path / "pages.warc.gz"
    with open(warc, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for p in pages:
            body = p["html"].encode("utf-8")
            h = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(p["url"], "response", payload=io.BytesIO(body), http_headers=h))
    s = extract_documents(tasks_from_warcs([warc]), tmp_path / "docs", ExtractConfig(workers=1))
    assert s.n_out == 3
    steps = s.extra["extraction_steps"]
    assert steps["pages_paywall_removed"] >= 1 and steps["pages_consent_removed"] >= 1
    assert steps.get("rescued_baseline") == 1
    docs = read_documents(tmp_path / "docs")
    assert "_steps" not in docs.column_names and not any(p in t for t in docs.column("text").to_pylist() for p in PROMPTS)


# --- the publication date from the page's metadata ---------------------------------

@pytest.mark.parametrize("head, want", [
    ('<meta property="article:published_time" content="2019-03-04T10:00:00+01:00">', "2019-03-04"),
    ('<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "2018-11-30"}</script>', "2018-11-30"),
    ('<meta itemprop="datePublished" content="2017-01-02">', "2017-01-02"),
    ('<meta property="article:published_time" content="2019-13-45">', None),  # not a date
    ('<meta name="description" content="2019-03-04 was a Monday">', None),  # not a date field
])
def test_the_date_the_metadata_declares(head, want):
    from lxml import html

    from pipeline.extract.page import page_date

    tree = html.fromstring(f"<html><head>{head}</head><body><p>Published on 2001-01-01.</p></body></html>")
    assert page_date(tree, htmldate=False) == want


# --- forum threads and Q&A pages: their posts are the text -------------------------

@pytest.mark.parametrize("key, engine", [
    ("australianfrequentflyer.com.au/community/threads", "xenforo"),
    ("simplemachines.org/community/index.php?topic=589", "smf"),
    ("stackoverflow.com/questions/21553327", "qa"),
    ("discussion.evernote.com/forums/topic/150745", "invision"),
])
def test_a_forum_thread_gives_its_posts(key, engine):
    page = _page(key)
    truth = words(page["truth"])
    steps: dict = {}
    posts = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    plain = extract_page(page["html"], page["url"], ExtractConfig(forum_posts=False, expand=False))[0] or ""
    assert steps.get(f"forum_{engine}") == 1
    found, found_plain = len(words(posts) & truth), len(words(plain) & truth)
    assert found >= 0.9 * len(truth) and found > found_plain  # the posts trafilatura left out are back


def test_faq_markup_outside_a_qa_page_is_not_a_forum():
    # a service page marks its FAQ with schema.org Question/Answer text, as Q&A sites do
    page = _page("manifest.ly/use-cases/transportation/vehicle-mai")
    assert 'itemprop="text"' in page["html"] and "schema.org/Question" in page["html"]
    steps: dict = {}
    text = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    assert not any(k.startswith("forum_") for k in steps)
    assert text == extract_page(page["html"], page["url"], ExtractConfig(forum_posts=False))[0]


def test_a_quoted_post_is_kept_once():
    text = "Title\nI think the red one is better.\nok\nI think the red one is better.\nok\nAgreed, the red one."
    assert drop_repeated_lines(text) == "Title\nI think the red one is better.\nok\nok\nAgreed, the red one."
    page = _page("usingenglish.com/forum/threads/car-rental-or-car-rent")
    posts = extract_page(page["html"], page["url"], ExtractConfig())[0]
    lines = [" ".join(re.findall(r"\w+", l.lower())) for l in posts.splitlines()]
    long = [l for l in lines if len(l.split()) >= 3]
    assert len(long) == len(set(long))  # the thread's quotes of earlier posts are not repeated


# --- the expansion to the container of what trafilatura kept -----------------------

SECTION = """<html><body><nav><ul><li>Home page of the site</li><li>About the whole company</li></ul></nav>
  <div id="page"><div class="services">
    <h2>Flexible rentals for every need</h2>
    <p>Whether you need equipment for a day or a month, we deliver and set it up for you.</p>
    <h3>Private clients</h3><ul><li>Try before you buy</li><li>Temporary home gyms</li></ul>
    <p>Perfect for home trials and for trying a machine before buying it outright.</p>
    <p>Production-ready equipment for film, television and commercial shoots anywhere.</p>
    <form><button>Book a call with the team now</button></form>
  </div><footer><p>Copyright and the legal notices of the company</p></footer></div></body></html>"""


def test_the_container_of_the_kept_paragraphs_gives_their_headings_and_lists():
    from lxml import html

    kept = ("Whether you need equipment for a day or a month, we deliver and set it up for you.\n"
            "Perfect for home trials and for trying a machine before buying it outright.\n"
            "Production-ready equipment for film, television and commercial shoots anywhere.")
    text = expand_to_container(html.fromstring(SECTION), kept)
    for want in ("Flexible rentals for every need", "Private clients", "Try before you buy", "Perfect for home trials"):
        assert want in text
    for gone in ("Home page", "Book a call", "Copyright"):  # navigation, forms, footers stay out
        assert gone not in text
    # a container no wider than the extraction, or the whole body, is not taken
    assert expand_to_container(html.fromstring(SECTION), kept + "\nFlexible rentals for every need\nTry before you buy") is None
    body = "<html><body>" + "".join(f"<p>Paragraph number {i} of the page body.</p><h2>Heading {i}</h2>" for i in range(6))
    assert expand_to_container(html.fromstring(body), "Paragraph number 1 of the page body.\nParagraph number 2 of the page body.") is None
    assert expand_to_container(html.fromstring(SECTION), "") is None


@pytest.mark.parametrize("key", ["professional.mit.edu/certificate-programs", "petplace.com/insurance/"])
def test_a_page_whose_headings_and_lists_trafilatura_drops_gets_its_section(key):
    page = _page(key)
    truth = words(page["truth"])
    steps: dict = {}
    plain = extract_page(page["html"], page["url"], ExtractConfig(expand=False))[0] or ""
    wider = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0] or ""
    assert steps.get("expanded") == 1
    assert len(words(wider) & truth) >= 0.9 * len(truth) > len(words(plain) & truth) / 0.9  # what it adds is the truth's
    assert len(words(wider) - truth) <= 0.2 * len(words(wider))  # and not the page's chrome


def test_articles_and_product_pages_are_not_expanded():
    for key in (STATNEWS, "allbirds.com/products/mens-wool-runners"):
        page = _page(key)
        steps: dict = {}
        text = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
        assert "expanded" not in steps
        assert text == extract_page(page["html"], page["url"], ExtractConfig(expand=False))[0]
    from trafilatura.utils import load_html

    assert declares_product(load_html(_page("allbirds.com/products/mens-wool-runners")["html"]))
    assert not declares_product(load_html(_page("petplace.com/insurance/")["html"]))


# --- the headline is the title's, not the text's -----------------------------------

def test_a_first_line_that_repeats_the_title_is_dropped():
    from pipeline.extract.expand import drop_title_line
    from pipeline.extract.page import page_title

    body = "Ten things in tech you need to know today\nGood morning! This is the tech news you need to know."
    assert drop_title_line(body, "Ten things in tech you need to know today | Business Insider") == body.split("\n", 1)[1]
    assert drop_title_line(body, "Tech news") == body  # another title: the line stays
    assert drop_title_line("Home\nThe first paragraph of the page.", "Home | Example") != "The first paragraph of the page."
    assert drop_title_line(body, None) == body and drop_title_line(None, "x") is None
    # through the page: the headline leaves the text, the title keeps it; title_line=True keeps both
    page = _page("popsugar.com/fitness/amp-fitness-review")
    steps: dict = {}
    text = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    kept = extract_page(page["html"], page["url"], ExtractConfig(title_line=True))[0]
    assert steps.get("title_line_dropped") == 1 and kept.endswith(text) and len(kept) > len(text)
    assert words(kept.split("\n", 1)[0]) <= words(page_title(page["html"]))
