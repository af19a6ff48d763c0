"""Cookie and consent banners are removed before extraction, the page is kept: on
the real pages where they became the "main text" (issue 14), and on hand-made ones
that must not lose content."""

import json
import lzma
import re

import pytest

from pipeline.config import ExtractConfig
from pipeline.extract import extract_page, strip_consent

from webtext_testlib import shared

BANNERS = ("We process your data", "We value your privacy", "Privacy Preference Center", "Vos préférences",
           "We use cookies and other technologies")
PAGES = ("allrecipes.com/recipes/17562", "seriouseats.com/tomato-sauce-recipes", "avforums.com/threads/discussion-of-our-review",
         "forum.corsair.com/forums/topic/188682", "forum.prestashop.com/topic/1103020", "ebay.com/itm/404928375058")


def words(t: str) -> set[str]:
    return set(re.findall(r"\w+", (t or "").lower()))


@pytest.fixture(scope="module")
def pages():
    found = {}
    with lzma.open(shared("html", "wcxb_dev.jsonl.xz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            for key in PAGES:
                if key in r["url"]:
                    found[key] = r
    assert len(found) == len(PAGES)
    return found


@pytest.mark.parametrize("key", PAGES)
def test_consent_text_is_gone_and_the_page_kept(pages, key):
    page = pages[key]
    before = extract_page(page["html"], page["url"], ExtractConfig(strip_consent=False))[0] or ""
    after = extract_page(page["html"], page["url"], ExtractConfig())[0] or ""
    assert any(b in before for b in BANNERS)  # the banner was there without the step
    assert not any(b in after for b in BANNERS)
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
