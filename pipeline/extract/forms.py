"""Sign-up, newsletter and form-consent lines and stray cookie notices, removed from an
extracted text wherever they sat on the page (not only inside a consent manager's container)."""

from __future__ import annotations

import re

# A line of the extracted text goes when it is short (FORM_MAX_WORDS words at most) and
# says one of the things a sign-up, newsletter or contact form's box says around its
# fields, or a cookie notice says: the terms one accepts by submitting ("By submitting
# this form, you agree to ... and consent to receive ..."), an invitation to sign up for
# a newsletter or e-mails, the field's label, the thanks after it, or that the site uses
# cookies. Its words are looked for, not its place: trafilatura drops <form> elements
# but keeps the lines beside them, and the consent step (consent.py) only finds notices
# by their container's name. Chosen on wcxb dev and aeb with the pages' outputs cached
# (fires on 40 of 1,497 wcxb pages and 7 of 181 aeb pages; 2 of the ~120 lines it drops
# there are in a page's hand-checked text); the word limit is checked on each half of
# wcxb dev by bench/bench_forum_forms_folds.py.
FORM_MAX_WORDS = 40
_BY_DOING = (r"by (?:submitting|signing up|subscribing|registering|entering|providing|clicking|tapping|checking|"
             r"continuing|creating|joining|completing|sharing)")
_FORM_LINE = re.compile(
    "|".join((
        # the terms one accepts by sending the form
        _BY_DOING + r"\b.{0,160}?\b(?:you|i)(?:'re| are)? (?:agree|consent|accept|acknowledge|confirm)",
        _BY_DOING + r"\b.{0,160}?\b(?:privacy (?:policy|notice|statement)|terms (?:of|and|&) )",
        r"\bconsent(?:ing)? to (?:receive|receiving|be(?:ing)? contacted)",
        r"\b(?:i|you) (?:agree|consent) to (?:receive|receiving|be(?:ing)? contacted)",
        r"^(?:\W*)(?:to |you (?:can|may) )unsubscribe (?:at any time|anytime)",
        r"\byour (?:e-?mail(?: address)?|information|data) will (?:not|never) be (?:published|shared|sold)",
        r"\brequired fields are marked",
        r"\bsave my name, e-?mail,? and website",
        r"\bthis site is protected by recaptcha",
        # an invitation to sign up, its field and its thanks
        r"^(?:[-*•]\s*)?(?:sign up|subscribe|join|register)(?: now| today| here| free)?(?: for| to)? (?:to )?"
        r"(?:our|the|my|a|\w+'s)\b[^.!?]{0,60}\b(?:newsletters?|mailing list|digest)\b",
        r"^(?:[-*•]\s*)?(?:sign up|subscribe|register)(?: now| today| here)?(?: for| to) (?:our|my) (?:free )?(?:\w+ ){0,3}"
        r"(?:e-?mails?|updates)\b",
        r"^(?:[-*•]\s*)?(?:get|receive|have)\b[^.!?]{0,80}\b(?:delivered|sent|straight|right|directly) "
        r"(?:straight |right |directly )?(?:to|into|in) your inbox",
        r"\bsubscribe to (?:our|the|my)\b[^.!?]{0,40}\bnewsletters?\b",
        r"\b(?:sign up|subscribe) (?:for|to) (?:our|the|my) (?:free )?(?:\w+ ){0,3}(?:newsletters?|mailing list)\b",
        r"^(?:[-*•]\s*)?(?:join|get|subscribe to) (?:our|the|my) (?:free )?(?:\w+ ){0,3}(?:newsletters?|mailing list)[.!:]?$",
        r"^(?:[-*•]\s*)?(?:\w+ ){0,3}newsletters?(?: sign[ -]?up)?[.!:]?$",
        r"^(?:enter|type|your) (?:your )?e-?mail(?: address)?(?: here| below)?[.:*]?$",
        r"\bthanks? (?:you )?for (?:subscribing|signing up)",
        r"\byou(?:'re| are|'ve| have) (?:now )?(?:been )?(?:subscribed|signed up)\b",
        r"\bcheck your inbox to confirm",
        # a cookie notice
        r"\b(?:we|this (?:web)?site|our (?:web)?site|the site) (?:use|uses|is using|may use) cookies\b",
        r"\bby (?:continuing to (?:use|browse)|using) (?:this|our) (?:web)?site,? you (?:agree|consent|accept)",
        r"^(?:accept|reject|allow|manage) (?:all )?cookies$",
    )),
    re.I,
)
_WORD = re.compile(r"\w+")
# cheap test of the whole text first: most pages have none of these
_HINTS = ("agree", "consent", "newsletter", "inbox", "unsubscri", "subscri", "sign up", "e-mail", "email", "cookies",
          "required fields", "recaptcha", "accept", "mailing list", "updates", "published")


def drop_form_lines(text: str | None, max_words: int = FORM_MAX_WORDS) -> tuple[str | None, int]:
    """(TEXT without its form, newsletter and cookie-notice lines, how many went): see
    the comment above _FORM_LINE."""
    if not text:
        return text, 0
    low = text.lower()
    if not any(h in low for h in _HINTS):
        return text, 0
    kept, dropped = [], 0
    for line in text.splitlines():
        s = line.strip()
        # the cheap tests first: a line of prose is long, and most short lines hold no hint
        if s and len(s.split()) <= max_words and any(h in s.lower() for h in _HINTS) and _FORM_LINE.search(s) \
                and len(_WORD.findall(s)) <= max_words:
            dropped += 1
            continue
        kept.append(line)
    return ("\n".join(kept), dropped) if dropped else (text, 0)
