"""The WebText likeness report: domains as OpenAI's domains.txt counts them, the
comparison with a reference list, lengths, languages, drops; per-version profiles
computed once, so a report after a new version reads only that version's shards."""

import json
import math

import pyarrow as pa
import pytest
from webtext_testlib import shared

from pipeline.core.config import ShardConfig
from pipeline.report.likeness import (
    domain_of,
    likeness,
    read_reference,
    spearman,
    write_report,
)
from pipeline.shards.stage import write_shards


@pytest.mark.parametrize("url,domain", [
    ("https://www.google.co.uk/search?q=x", "google"), ("http://news.bbc.co.uk/a", "bbc"),
    ("https://someone.blogspot.com/2017/01/p.html", "blogspot"), ("https://www.nytimes.com/2017/x", "nytimes"),
    ("http://archive.org/details/x", "archive"), ("http://93.184.216.34/x", "93.184.216.34"),
    ("http://localhost:8000/x", "localhost"), ("not a url", ""), ("http://[::1/", ""),
])
def test_domains_are_counted_as_webtexts_list_counts_them(url, domain):
    assert domain_of(url) == domain


def test_openais_domains_list_reads_whole():
    path = shared("webtext_domains.txt")
    ref = read_reference(path)
    assert len(ref) == 1000 and ref["google"] == 1542261 and ref["nytimes"] == 333160
    assert ref[""] == 20068  # the list's one line with a count and no domain


def corpus(spec: dict[str, int], start: int = 0, lang: str = "en") -> pa.Table:
    rows, i = [], start
    for host, n in spec.items():
        for _ in range(n):
            rows.append({"id": f"d{i:06d}", "url": f"https://www.{host}/a/{i}", "text": "word " * (20 + i % 400),
                         "language": lang})
            i += 1
    return pa.Table.from_pylist(rows)


def test_likeness_against_a_reference_and_profiles_computed_once(tmp_path):
    ref = tmp_path / "domains.txt"
    ref.write_text("5000 alpha\n3000 beta\n1000 gamma\n500 delta\n")
    shards = tmp_path / "shards"
    funnel = [{"stage": "filter", "in": 140, "out": 100, "dropped": {"too_short": 30, "not_english": 10}}]
    write_shards(corpus({"alpha.com": 10, "beta.co.uk": 40, "gamma.org": 20, "other.net": 30}), shards,
                 ShardConfig(), {"funnel": funnel})
    rep = likeness(shards, ref, token_sample=50, progress_bar=False)
    assert rep["documents"] == 100 and rep["domains_total"] == 4
    r = rep["reference"]
    assert r["share_in_reference_domains"] == pytest.approx(0.70)
    assert r["reference_domains_present"] == 3
    # ranks over the reference's domains: ours (10, 40, 20, 0) against (5000, 3000, 1000, 500)
    assert r["spearman_over_reference_domains"] == pytest.approx(spearman([10, 40, 20, 0], [5000, 3000, 1000, 500]))
    assert r["over_represented"][0]["domain"] == "other" and r["under_represented"][0]["domain"] in ("alpha", "delta")
    assert rep["languages"] == {"en": 1.0}
    assert rep["drop_counts"]["filter"] == {"too_short": 30, "not_english": 10}
    assert rep["drop_reasons"]["filter"]["too_short"] == pytest.approx(0.75)
    assert 0 < rep["token_sample_documents"] <= 100 and rep["tokens_per_document"] > 20
    q = rep["length_quantiles_chars"]
    assert q["p10"] <= q["p50"] <= q["p90"] and 100 <= q["p50"] <= 2100  # lengths are 5 x (20..419) characters

    prof1 = shards / "profiles" / "v0001.json"
    stamp = prof1.stat().st_mtime_ns
    write_shards(corpus({"alpha.com": 30}, start=1000, lang="fr"), shards, ShardConfig())
    rep2 = write_report(shards, tmp_path / "report", ref, token_sample=50, progress_bar=False)
    assert prof1.stat().st_mtime_ns == stamp  # version 1 not read again
    assert json.loads((shards / "profiles" / "v0002.json").read_text())["documents"] == 30
    assert rep2["documents"] == 130 and rep2["languages"]["fr"] == pytest.approx(30 / 130)
    assert rep2["reference"]["share_in_reference_domains"] == pytest.approx(100 / 130)
    assert (tmp_path / "report" / "likeness.png").stat().st_size > 5000
    assert "WebText likeness" in (tmp_path / "report" / "likeness.md").read_text()


def test_a_malformed_reference_is_an_error_naming_the_line(tmp_path):
    bad = tmp_path / "domains.txt"
    bad.write_text("10 alpha\nbeta 20\n")
    with pytest.raises(ValueError, match=r"domains.txt:2: expected 'COUNT DOMAIN'"):
        read_reference(bad)


def test_spearman_matches_the_textbook_formula_without_ties():
    a, b = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7.5]
    # ranks of b: 5 6 7 8 7.5 -> 1 2 3 5 4: d = (0, 0, 0, -1, 1)
    assert spearman(a, b) == pytest.approx(1 - 6 * 2 / (5 * (25 - 1)))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_funnel_plot_covers_every_build(tmp_path):
    from pipeline.report.funnel import build_history, plot_funnel

    for i, stamp in enumerate(["20261001T000000Z-v0001", "20261101T000000Z", "20261201T000000Z-v0002"]):
        d = tmp_path / "reports" / f"build-{stamp}"
        d.mkdir(parents=True)
        (d / "funnel.json").write_text(json.dumps([
            {"stage": "links", "unit": "urls", "in": 100 * (i + 1), "out": 50, "dropped": {"score_below_min": 50 * (i + 1) + 50 * i}},
            {"stage": "fetch", "unit": "urls", "in": 50, "out": 40, "dropped": {"http_404": 9, "timeout": 1}},
            {"stage": "shards", "unit": "documents", "in": 30, "out": 30 - 10 * (i == 1), "dropped": {"already_in_shards": 10 * (i == 1)}}]))
    (tmp_path / "reports" / "build-20261215T000000Z").mkdir()
    (tmp_path / "reports" / "build-20261215T000000Z" / "funnel.json").write_text('[{"stage": "links"')  # torn
    hist = build_history(tmp_path / "reports")
    assert [h[0] for h in hist] == ["20261001T000000Z-v0001", "20261101T000000Z", "20261201T000000Z-v0002"]
    one = plot_funnel(hist[-1][1], tmp_path / "one.png")
    both = plot_funnel(hist[-1][1], tmp_path / "all.png", hist)
    from PIL import Image

    assert Image.open(both).size[1] > Image.open(one).size[1]  # the second panel: every build
