"""Consent banners and subscription prompts, removed from a page before extraction."""

from __future__ import annotations

import re

from lxml import etree

from pipeline.extract.page import id_class_element, id_class_values

# Consent managers, by the ids and classes their scripts give their containers. A
# bare "cmp" is not among them: Adobe's core components use cmp-* for content.
_CONSENT_ATTR = re.compile(
    r"onetrust|\bot-sdk|\bot-pc-|qc-cmp|axeptio|didomi|cookiebot|usercentrics|truste-|trustarc|\bsp_message|"
    r"sp-message-container|gdpr-(?:banner|consent|notice|modal)|cookie[-_]?(?:banner|consent|notice|bar|law|wall|popup|modal)|"
    r"cookies?[-_]?consent|consent[-_]?(?:banner|manager|modal|popup|wall|notice)|\bcc-(?:window|banner)\b|"
    r"privacy[-_]?(?:banner|manager|center|centre|notice|consent)", re.I)
# Subscription walls and prompts (Piano/TinyPass, "restricted content" breakers, reg
# walls), by their containers' ids and classes. Such a prompt is short: a container
# holding more than PAYWALL_MAX_CHARS of text may be the article itself (some sites
# wrap the subscribers' part of a story in a "paywall" element) and stays.
_PAYWALL_ATTR = re.compile(
    r"paywall|pay-wall|regwall|reg-wall|registration-wall|piano-(?:offer|paywall|inline|container|modal|template)|"
    r"\btp-(?:modal|backdrop)|restricted-(?:content|story)|(?:content|article|story)-(?:gate|lock)|"
    r"locked-content|subscri(?:be|ption|ber)[-_]?(?:prompt|wall|box|banner|cta|offer|gate|only|promo)|"
    r"premium-(?:wall|prompt|banner|gate)|meter(?:ed)?[-_](?:wall|banner|prompt)", re.I)
_PAYWALL_WORDS = ("subscri", "log in", "login", "sign in", "unlock", "account", "premium", "trial", "member", "register")
PAYWALL_MAX_CHARS = 1500
# Words every _CONSENT_ATTR / _PAYWALL_ATTR alternative contains (lowercase): looked for
# in all of a page's id and class values at once, they rule out most pages and
# elements before any per-element work.
_BANNER_WORDS = ("onetrust", "ot-", "qc-cmp", "axeptio", "didomi", "cookie", "usercentrics", "truste", "sp_message",
                 "sp-message", "gdpr", "consent", "cc-", "privacy", "paywall", "pay-wall", "regwall", "reg-wall",
                 "registration-wall", "piano-", "tp-modal", "tp-backdrop", "restricted-", "-gate", "-lock", "locked-",
                 "subscri", "premium-", "meter-", "metered")
_NEVER_STRIPPED = {"html", "head", "body", "main", "article"}  # a page's frame: a banner class on it means nothing
# Dialogs (<dialog>, role="dialog"/"alertdialog", aria-modal="true") that speak of cookies
# or consent: a consent prompt whose container no known consent manager's id or class names
# (a site's own banner, a "We Care About Your Privacy" dialog, a newsletter pop-up's cookie
# notice). Measured on wcxb dev (bench/bench_consent_dialog_folds.py): F1 .8488 -> .8496,
# 5 of 1,497 pages change by more than .005, none for the worse; aeb unchanged. Dialogs
# are taken on their words (_DIALOG_WORDS) only: a product's size guide or description
# drawer is a dialog too, and some shops keep their newsletter form's "privacy policy"
# link inside the item grid's container.
# Through the attribute axis: the same elements as
# //dialog|//*[@role='dialog' or @role='alertdialog' or @aria-modal='true'] at 2-3x less
# CPU (0.28 against 0.81 ms a page on aeb, 0.62 against 1.22 on wcxb dev)
_DIALOGS = etree.XPath("//@role[.='dialog' or .='alertdialog']/.. | //@aria-modal[.='true']/.. | //dialog")
_DIALOG_WORDS = ("cookie", "consent", "gdpr")
_CONSENT_WORDS = ("cookie", "consent", "privacy", "personal data", "données", "datenschutz", "gdpr", "partners",
                  "préférences", "datos personales", "privacidad")


def strip_consent(tree) -> int:
    """Remove consent-manager containers from an lxml tree (in place); returns how many
    (``strip_banners`` with consent only)."""
    return strip_banners(tree, consent=True, paywall=False)["consent"]


def strip_banners(tree, consent: bool = True, paywall: bool = True,
                  index: tuple[list[str], str] | None = None) -> dict[str, int]:
    """Remove consent-manager containers and subscription prompts from an lxml tree (in
    place); returns how many of each ({"consent": n, "paywall": n}).

    An element goes when its id or class names a consent manager (a paywall) AND its
    text speaks of cookies, consent or privacy (of subscribing, logging in, unlocking)
    AND it holds less than half the page's text (a wrapper of the whole page is never
    removed); a paywall element also holds at most PAYWALL_MAX_CHARS. With CONSENT, a
    dialog (<dialog>, role="dialog", aria-modal) whose text speaks of cookies or consent
    goes too (counted as consent), under the same half-the-page limit. The outermost
    match goes whole; the text after it stays. INDEX: the tree's ``id_class_values``,
    when the caller has them already."""
    def text_of(el) -> str:  # the visible text below EL (scripts and styles left out)
        parts = []
        for n in el.iter():
            if isinstance(n.tag, str) and n.tag not in ("script", "style", "noscript") and n.text:
                parts.append(n.text)
            if n is not el and n.tail:
                parts.append(n.tail)
        return "".join(parts)

    removed = {"consent": 0, "paywall": 0}
    # Candidates from the page's id and class strings, as plain strings (a page holds
    # about a thousand): only a value that names a consent manager or a paywall has its
    # element looked up (by its position among them), so elements become Python objects
    # only there.
    hits, last = [], None
    # document order: an element's id and class come together; JOINED: one search over all
    # of them, most pages have no candidate
    values, joined = index if index is not None else id_class_values(tree)
    found = []  # str.find per word: several times faster than one regex of alternatives
    for word in _BANNER_WORDS:
        at = joined.find(word)
        while at != -1:
            found.append(at)
            at = joined.find(word, at + 1)
    seen, i, pos = -1, 0, 0
    for at in sorted(found):
        i += joined.count("\0", pos, at)  # the value the word is in
        pos = at
        if i == seen:
            continue
        seen = i
        low = values[i].lower()
        if not ((consent and _CONSENT_ATTR.search(low)) or (paywall and _PAYWALL_ATTR.search(low))):
            continue
        el = id_class_element(tree, i)
        if el is last or el.tag in _NEVER_STRIPPED:
            continue
        last = el
        attrs = f"{el.get('id') or ''} {el.get('class') or ''}".lower()
        if consent and _CONSENT_ATTR.search(attrs):
            hits.append((el, "consent"))
        elif paywall and _PAYWALL_ATTR.search(attrs):
            hits.append((el, "paywall"))
    if consent:
        hits += [(el, "dialog") for el in _DIALOGS(tree) if el.tag not in _NEVER_STRIPPED]
    if not hits:
        return removed
    body = tree.find(".//body") if tree.tag != "body" else tree
    body_len = len(text_of(body if body is not None else tree))
    root = tree.getroottree().getroot()
    for el, kind in hits:  # document order: an outer match goes before its descendants are looked at
        parent = el.getparent()
        if parent is None or el.getroottree().getroot() is not root:
            continue  # inside a container removed already
        text = text_of(el)
        low = text.lower()
        words = {"consent": _CONSENT_WORDS, "dialog": _DIALOG_WORDS}.get(kind, _PAYWALL_WORDS)
        if not any(w in low for w in words) or (body_len and len(text) > 0.5 * body_len):
            continue
        kind = "consent" if kind == "dialog" else kind
        if kind == "paywall" and len(" ".join(text.split())) > PAYWALL_MAX_CHARS:
            continue
        if el.tail:  # the text after the element belongs to the page: keep it
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + el.tail
            else:
                parent.text = (parent.text or "") + el.tail
        parent.remove(el)
        removed[kind] += 1
    return removed
