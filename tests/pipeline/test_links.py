import random

import pytest
from webtext_testlib import shared

from pipeline.core.config import LinksConfig
from pipeline.core.errors import ConfigError
from pipeline.core.urls import (
    _FAST_URL,
    InvalidURL,
    _url_forms_parsed,
    clean_url,
    host_of,
    normalize_url,
    url_forms,
)
from pipeline.links.select import Blocklist
from pipeline.links.table import select_links
from pipeline.sources.dumps import Submission


@pytest.mark.parametrize(
    "variant",
    [
        "http://example.com/story",
        "https://example.com/story",
        "https://www.example.com/story",
        "http://EXAMPLE.com/story/",
        "http://example.com:80/story",
        "https://example.com:443/story#comments",
        "https://example.com/story?utm_source=reddit&utm_medium=social",
        "https://example.com/story?fbclid=IwAR0abc",
        "example.com/story",
        "https://example.com/st%6Fry",
    ],
)
def test_url_variants_normalise_to_one_key(variant):
    assert normalize_url(variant) == "example.com/story"


def test_normalisation_keeps_what_matters():
    assert normalize_url("http://example.com/a?id=2&b=1") == normalize_url("http://example.com/a?b=1&id=2")
    assert normalize_url("http://example.com/a?id=2") != normalize_url("http://example.com/a?id=3")
    assert normalize_url("http://example.com:8080/a") == "example.com:8080/a"
    assert normalize_url("http://blog.example.com/") == "blog.example.com"
    # The URL to fetch keeps scheme and www (some sites only answer there).
    assert clean_url("https://www.Example.com/a?utm_source=x#frag") == "https://www.example.com/a"
    for bad in ["", "ftp://example.com/x", "javascript:alert(1)", "http://", "http://exa mple.com/"]:
        with pytest.raises(InvalidURL):
            normalize_url(bad)


def test_default_blocklist_spares_every_webtext_domain():
    rows = [line.split() for line in shared("webtext_domains.txt").read_text().splitlines()]
    names = {r[1].lower() for r in rows if len(r) == 2}  # one line of the list has a count but no name
    assert len(names) == 999
    bl = Blocklist.load()
    assert {"imgur.com", "youtube.com", "i.redd.it", "gfycat.com"} <= bl.domains
    for domain in bl.domains:
        labels = domain.split(".")
        # WebText's list names the registrable label: google, github, blogspot, ...
        assert labels[-2] not in names, f"{domain} blocks a WebText domain"
    # and none of WebText's domains is blocked on its common .com host
    for name in names:
        assert bl.reason(f"{name}.com", "/page") is None


def sub(**kw) -> Submission:
    base = dict(id="x", url="http://news.example.com/a", score=10, is_self=False, over_18=False,
                subreddit="news", created_utc=1400000000, title="t")
    base.update(kw)
    return Submission(**base)


def test_each_rule_drops_with_its_reason():
    subs = [
        sub(id="ok"),
        sub(id="low", url="http://e.com/low", score=2),
        sub(id="self", url="https://www.reddit.com/r/x/comments/1/x/", is_self=True),
        sub(id="nsfw", url="http://e.com/n", over_18=True),
        sub(id="late", url="http://e.com/late", created_utc=1514764800),  # 2018-01-01
        sub(id="img", url="https://i.imgur.com/abc.jpg"),
        sub(id="ext", url="http://e.com/pic.PNG"),
        sub(id="vid", url="https://www.youtube.com/watch?v=1"),
        sub(id="int", url="https://www.reddit.com/r/x/comments/2/y/"),
        sub(id="xpost", url="/r/x/comments/3/z/", crosspost_parent="t3_3"),
        sub(id="bad", url="mailto:a@b.c"),
        sub(id="dup", url="https://www.news.example.com/a/?utm_source=x", score=50, subreddit="world"),
        sub(id="rg", url="http://redditgifts.com/exchange"),  # WebText had redditgifts
    ]
    rows, s = select_links(subs, LinksConfig())
    assert dict(s.dropped) == {
        "low_score": 1, "self_post": 1, "nsfw": 1, "outside_date_window": 1, "media_host": 2,
        "media_extension": 1, "reddit_internal": 1, "crosspost": 1, "invalid_url": 1, "duplicate_url": 1,
    }
    assert s.n_in == len(subs) and s.balanced()
    by = {r["url_norm"]: r for r in rows}
    assert set(by) == {"news.example.com/a", "redditgifts.com/exchange"}
    merged = by["news.example.com/a"]
    assert merged["reddit_ids"] == ["ok", "dup"] and merged["subreddits"] == ["news", "world"]
    assert merged["score"] == 50 and merged["score_total"] == 60 and merged["n_submissions"] == 2


def test_sum_mode_sums_scores_per_url_like_openwebtext2():
    subs = [sub(id="a", score=1), sub(id="b", score=2, url="https://news.example.com/a/"), sub(id="c", url="http://e.com/z", score=2)]
    rows, s = select_links(subs, LinksConfig(score_mode="sum"))
    assert [r["url_norm"] for r in rows] == ["news.example.com/a"]
    assert rows[0]["score_total"] == 3
    assert s.dropped == {"duplicate_url": 1, "low_score_total": 1} and s.balanced()
    rows_max, _ = select_links(subs, LinksConfig())
    assert rows_max == []


def test_date_window_and_bad_configuration():
    subs = [sub(id="a", created_utc=1300000000), sub(id="b", url="http://e.com/b", created_utc="1450000000")]
    rows, s = select_links(subs, LinksConfig(created_after="2012-01-01", created_before=None))
    assert [r["reddit_ids"] for r in rows] == [["b"]]
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        LinksConfig(created_before="last year").validate()
    with pytest.raises(ConfigError, match="score_mode"):
        LinksConfig(score_mode="avg").validate()
    with pytest.raises(ConfigError, match="before"):
        LinksConfig(created_after="2019-01-01", created_before="2018-01-01").validate()


def test_host_of():
    assert host_of("https://De.Wikipedia.org/wiki/X") == "de.wikipedia.org"


def _forms(fn, url):
    try:
        return fn(url)
    except InvalidURL as exc:
        return ("invalid", type(exc).__name__)


def test_fast_url_path_equals_the_urlsplit_path_on_every_real_url():
    """url_forms builds the common URL shapes with string operations; on every URL of the
    real dumps and the API sample it must give exactly what the urlsplit path gives."""
    import lzma

    import orjson

    urls = []
    for name in ("RS_v2_2005-06.xz", "RS_v2_2005-07.xz", "api_submissions.ndjson.xz"):
        for line in lzma.decompress(shared("reddit", name).read_bytes()).splitlines():
            rec = orjson.loads(line)
            urls += [rec[k] for k in ("url", "url_overridden_by_dest") if rec.get(k)]
    assert len(urls) > 7000
    fast = [u for u in urls if _FAST_URL.fullmatch(u.strip())]
    assert len(fast) > 0.9 * len(urls)  # the fast path really is the common one
    assert [_forms(url_forms, u) for u in urls] == [_forms(_url_forms_parsed, u) for u in urls]


def test_fast_url_path_equals_the_urlsplit_path_on_edge_cases():
    rng = random.Random(1)
    pick = lambda xs, k: "".join(rng.choice(xs) for _ in range(rng.randint(0, k)))
    schemes = ["http://", "HTTPS://", "https://", "hTTp://", "//", "", "ftp://", "http:/"]
    hosts = ["a.com", "www.Ex.Co.uk", "WWW.a-b.org", "localhost", "a..com", "a.com.", "é.com", "\u212a.com",
             "user:pw@a.com", "[::1]", "a_b.com", "1.2.3.4", ""]
    ports = ["", "", ":80", ":443", ":8080", ":99999", ":0", ":080", ":", ":x"]
    path = ["/", "//", "a", "b/", "%20", "%", "A.JPG", "~", "-", ".", "@", ":", ";", "=", "&", "+", " ", "\t", "é",
            "\u017f", "\x7f", "\\", "|", '"', "<", "%2C", "%2c", "%41", "%7e", "%7E", "%25", "%2541", "%2F", "%3F", "%3f",
            "%23", "%00", "%0A", "%7F", "%80", "%C3%A9", "%e9", "%zz", "%4", "%%", "%20%20", "%3D", "%3b", "%2B", "%40", "%5F"]
    query = ["&", "=", "a=1", "b=", "utm_source=x", "UTM_Medium=y", "fbclid=1", "x=1=2", "+", " ", "%41", "%", "%zz",
             "%e9", "%C3%A9", ";", "amp;", '"', "'", "<", "|", "\\", "^", "`", "~", "é", "\t", "?"]
    urls = []
    for _ in range(60_000):
        u = rng.choice(schemes) + rng.choice(hosts) + rng.choice(ports) + ("/" + pick(path, 5) if rng.random() < .8 else "")
        if rng.random() < .6:
            u += "?" + pick(query, 6)
        if rng.random() < .2:
            u += "#" + pick(query, 2)
        urls.append(rng.choice(["", " ", "\t"]) + u + rng.choice(["", " "]))
    assert sum(1 for u in urls if _FAST_URL.fullmatch(u.strip())) > 2_000  # the fast path is exercised
    assert [_forms(url_forms, u) for u in urls] == [_forms(_url_forms_parsed, u) for u in urls]
