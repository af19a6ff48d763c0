"""Pages that answer 200 but are not the page linked: a parked domain, a "page not found".

A link from 2005-2017 whose domain lapsed often answers today with a parking or
for-sale page, and a removed story with a "page not found" under status 200 (a soft
404) or a redirect of the deep link to the site's front page. Kept as documents, they
would put parking ads and error pages into the corpus; recognised, they are outcomes
of their own (``parked_domain``, ``soft_404``), not documents, and ``live-then-archive``
asks the archives for the page as it was.

Only short pages are judged (a parking or error page is a few hundred words; a story
that mentions "page not found" or a domain sale is longer), and only on strong signs:

- parked: a resource of a domain-parking or domain-sale service (Sedo, ParkingCrew,
  Bodis, Above, GoDaddy's parking lander, Dan, Afternic, HugeDomains, Undeveloped,
  DomainMarket, Efty) in the HTML, or for-sale wording ("this domain is for sale",
  "buy this domain", "make an offer on this domain");
- soft 404: a title or first heading that says the page is not there ("404", "page not
  found", "page doesn't exist", "no longer available"), or a deep link (a path beyond
  ``/``) that ended, after redirects, at the same site's front page.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Hosts and paths of parking and domain-sale services, as they appear in their landers' HTML.
PARKING_MARKERS = (
    "sedoparking.com", "sedo.com/search/details", "parkingcrew.net", "bodis.com", "above.com/marketplace",
    "img1.wsimg.com/parking-lander", "parked-content.godaddy.com", "dan.com/buy-domain", "afternic.com/forsale",
    "hugedomains.com/domain_profile", "undeveloped.com", "domainmarket.com/buynow", "efty.com", "parklogic.com",
    "domainnamesales.com",
)
FOR_SALE = re.compile(
    r"\b(?:this|the)\s+domain(?:\s+name)?\s+(?:[\w.-]+\s+)?(?:is|may\s+be)\s+for\s+sale\b"
    r"|\bbuy\s+this\s+domain\b|\bmake\s+an\s+offer\s+on\s+this\s+domain\b|\bthis\s+domain\s+is\s+parked\b"
    r"|\bdomain\s+parked\s+free\b",
    re.I,
)
NOT_FOUND = re.compile(
    r"\berror\s*404\b|\b404\s*(?:error|[-:|])|^\s*404\s*$|\bpage\s+not\s+found\b|\bnot\s+found\b|\bpage\s+(?:does\s+not|doesn'?t|no\s+longer)\s+exists?\b"
    r"|\bno\s+longer\s+available\b|\bpage\s+(?:cannot|can'?t)\s+be\s+found\b|\bcouldn'?t\s+find\s+(?:that|this|the)\s+page\b",
    re.I,
)
MAX_TEXT_CHARS = 3000  # visible characters above which a page is never judged dead
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.I | re.S)
_TAGS = re.compile(r"<script\b.*?</script>|<style\b.*?</style>|<[^>]+>", re.I | re.S)
_SPACE = re.compile(r"\s+")
_DOMAIN = re.compile(r"domain", re.I)  # in every FOR_SALE wording: the cheap test first


def visible_text(html: str) -> str:
    return " ".join(_TAGS.sub(" ", html).split())  # = _SPACE.sub(" ", ...).strip(): both split on str.isspace


def _host(url: str) -> str:
    h = (urlsplit(url).hostname or "").lower()
    return h[4:] if h.startswith("www.") else h


def dead_page(asked: str, final: str, html: str) -> str | None:
    """``parked_domain``, ``soft_404`` or None for a 200 HTML page: ASKED the URL linked,
    FINAL the URL answered after redirects, HTML the page (its first ~200 KB is enough)."""
    html = html[:200_000]
    text = visible_text(html)
    if len(text) > MAX_TEXT_CHARS:
        return None
    low = html.lower()
    if any(m in low for m in PARKING_MARKERS) or (_DOMAIN.search(text) and FOR_SALE.search(text)):
        return "parked_domain"
    heads = " ".join(visible_text(m) for m in (_TITLE.findall(html)[:1] + _H1.findall(html)[:1]))
    if heads and NOT_FOUND.search(heads):
        return "soft_404"
    a, f = urlsplit(asked), urlsplit(final)
    if a.path.strip("/") and not f.path.strip("/") and not f.query and _host(asked) == _host(final):
        return "soft_404"  # a deep link sent to the front page
    return None
