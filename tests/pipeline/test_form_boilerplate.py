"""Sign-up, newsletter and form-consent lines and cookie notices leave the text wherever
they sat on the page (issue 29): on real pages of ../shared/data/html where they reached
the document, and on lines that only look like them."""

import re

import pytest
from webtext_testlib import pages_by_url

from pipeline.core.config import ExtractConfig
from pipeline.extract.forms import drop_form_lines
from pipeline.extract.worker import extract_page

# (file, a part of the page's URL, lines that reached the text without the step)
PAGES = [
    ("wcxb_dev.jsonl.xz", "timeout.com/newyork/things-to-do/best-certificate",
     ("By entering your email address you agree to our Terms of Use and Privacy Policy and consent to receive emails",
      "Thanks for subscribing!", "Sign up for our newsletter for the best of the city.")),
    ("wcxb_dev.jsonl.xz", "cabletv.com/news",
     ("By signing up, you agree to our Privacy Policy & Terms and Conditions.",
      "Sign up for our newsletter to get the latest in streaming and entertainment.")),
    ("wcxb_dev.jsonl.xz", "shop.bombas.com/products/mens-quarter-socks",
     ("By providing my email, l am consenting to receive Bombas emails",)),
    ("wcxb_dev.jsonl.xz", "ifixit.com/products/jimmy",
     ("iFixit uses cookies to enhance site functionality",)),
    ("wcxb_dev.jsonl.xz", "digitalocean.com/community/t",
     ("By submitting your email you agree to our Privacy Policy",)),
    ("aeb.jsonl.xz", "spokesman.com/stories/2019/nov/19/meth",
     ("Subscribe to the Morning Review newsletter", "delivered to your inbox every morning by subscribing to our newsletter")),
    ("aeb.jsonl.xz", "indiewire.com/2019/11/mary-steenburgen",
     ("Sign up for our Email Newsletters here.",)),
]
_WORD = re.compile(r"\w+")


def words(t):
    return _WORD.findall((t or "").lower())


@pytest.fixture(scope="module")
def pages():
    found = {}
    for name in {f for f, _, _ in PAGES}:
        found.update(pages_by_url(name, [k for f, k, _ in PAGES if f == name], first=True))
    return found


@pytest.mark.parametrize("name, key, lines", PAGES, ids=[k for _, k, _ in PAGES])
def test_form_lines_are_gone_and_the_main_text_kept(pages, name, key, lines):
    page = pages[key]
    steps: dict = {}
    before = extract_page(page["html"], page["url"], ExtractConfig(strip_forms=False))[0]
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    assert all(line in before for line in lines)  # the boilerplate reached the text without the step
    assert not any(line in after for line in lines)
    assert steps.get("form_lines_dropped", 0) >= len(lines) - 1
    # the hand-checked words the extraction found are kept (multiset, as the benchmark counts)
    from collections import Counter

    truth = Counter(words(page["truth"]))
    kept = sum((truth & Counter(words(after))).values())
    found = sum((truth & Counter(words(before))).values())
    assert kept >= 0.95 * found > 0


@pytest.mark.parametrize("line", [
    "By submitting this form, you agree to our Terms and consent to receive marketing emails from us.",
    "Sign up for our weekly newsletter",
    "Get the best stories delivered straight to your inbox.",
    "We use cookies to give you the best experience on our website.",
    "Your email address will not be published. Required fields are marked *",
    "Thanks for subscribing!",
    "Enter your email address:",
    "Newsletter",
])
def test_boilerplate_lines(line):
    text = f"A first paragraph of the story, about the harbour.\n{line}\nThe last paragraph of the story."
    out, n = drop_form_lines(text)
    assert n == 1 and out == "A first paragraph of the story, about the harbour.\nThe last paragraph of the story."


@pytest.mark.parametrize("line", [
    "The council said residents can sign up for the Disney+ bundle using the same email as their Hulu account.",
    "The newsletter industry grew fast in 2020, as writers left newsrooms for Substack.",
    "Researchers found that cookies left on the counter went stale within two days.",
    "Users must consent to the processing of their data under the GDPR, the court ruled, in a case brought by "
    "a privacy group that had argued for years that the company's banners did not meet the law's standard.",
    "Bake the cookies at 180 degrees.",
    "Sign up",
])
def test_lines_that_only_look_like_boilerplate_stay(line):
    text = f"First paragraph.\n{line}\nLast paragraph."
    assert drop_form_lines(text) == (text, 0)


def test_a_long_line_stays_and_nothing_is_empty():
    long = "By submitting this form you agree to our terms, " + "and this sentence goes on about the story itself " * 8
    assert drop_form_lines(long) == (long, 0)  # over FORM_MAX_WORDS words: prose, not a form's note
    assert drop_form_lines("") == ("", 0) and drop_form_lines(None) == (None, 0)


# --- lines of machine ids (``drop_id_runs``) -----------------------------------------

EBAY_ITEMS = ["ebay.com/itm/276702815108", "ebay.com/itm/296607459180", "ebay.com/itm/404928375058"]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.parametrize("key", EBAY_ITEMS)
def test_a_stylesheet_hidden_label_of_uuids_leaves_the_text(key):
    # eBay hides "Sponsored" among spans of UUIDs its CSS makes invisible; without the
    # step they reach the text as lines of ~1,000 characters, which the hand-checked text lacks
    page = pages_by_url("wcxb_dev.jsonl.xz", [key], first=True)[key]
    steps: dict = {}
    before = extract_page(page["html"], page["url"], ExtractConfig(drop_id_runs=False))[0]
    after = extract_page(page["html"], page["url"], ExtractConfig(), steps)[0]
    runs = [line for line in before.splitlines() if len(_UUID.findall(line)) >= 3]
    assert runs and all(len(line) > 500 for line in runs)
    assert not _UUID.search(after) and steps["id_runs_dropped"] == len(runs)
    assert not _UUID.search(page["truth"])
    assert [line for line in before.splitlines() if line not in runs] == after.splitlines()


def test_a_uuid_in_prose_or_code_stays():
    from pipeline.extract.expand import drop_id_runs

    text = ("Take note of the UUID, e.g. ba5b7f3a-54d2-4325-80e5-e7a159900d3f, then edit fstab.\n"
            "/dev/sda6 /media/ba5b7f3a-54d2-4325-80e5-e7a159900d3f ext4 defaults 0 2\n"
            "ids: 440b3421-0591-4279-b977-1d34a651ceaf 511e4748-1bce-40c8-9c69-f944ec710640, the two we kept")
    assert drop_id_runs(text) == (text, 0)
    run = "".join(f"{c}{u}" for c, u in zip("Sponsored", [
        "440b3421-0591-4279-b977-1d34a651ceaf", "511e4748-1bce-40c8-9c69-f944ec710640",
        "f0ced053-3062-4987-8a6c-b8dda0b9cdb8", "8eaedc9a-fffb-4d31-b369-f888e1af8ca0"]))
    assert drop_id_runs(f"Item title\n{run}\nCondition: new") == ("Item title\nCondition: new", 1)
    assert drop_id_runs("") == ("", 0) and drop_id_runs(None) == (None, 0)
