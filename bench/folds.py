"""The 2-fold check the extraction benches share: is a choice fitted to the pages it was made on?

wcxb dev's pages are split in two halves; for each half the best of the OPTIONS (texts
per page, one list per option) is chosen on that half alone and scored on the other,
beside the shipped option. A held-out gain close to the in-sample gain says the choice
is not a fit to these particular pages (issue 29 asks for them within .005). Used by
bench_expand_folds.py, bench_forum_forms_folds.py, bench_gate_dedup_folds.py,
bench_consent_dialog_folds.py and bench_items_folds.py.
"""

from __future__ import annotations

import hashlib

from bench_extract import score


def url_halves(pages: list[dict]) -> list[int]:
    """Each page's half by a fixed hash of its URL (the first byte of its SHA-1, even or odd)."""
    return [hashlib.sha1(p["url"].encode()).digest()[0] & 1 for p in pages]


def position_halves(n: int) -> list[int]:
    """Each page's half by its position (even / odd): the split of the earlier benches,
    kept so that their figures in bench/RESULTS.md stay reproducible."""
    return [i % 2 for i in range(n)]


def half_f1(truths: list[str], texts: list, halves: list[int], half: int) -> float:
    idx = [i for i, h in enumerate(halves) if h == half]
    return score("wcxb", [truths[i] for i in idx], [texts[i] for i in idx])["F1"]


def fold_report(name: str, options: dict, shipped, baseline: list, truths: list[str], halves: list[int]) -> None:
    """Print, for each half, the option best there: its F1 gain over BASELINE there and
    on the other half (held out), and the shipped option's gain on both."""
    def gain(texts, half):
        return half_f1(truths, texts, halves, half) - half_f1(truths, baseline, halves, half)

    for half in (0, 1):
        other = 1 - half
        best = max(options, key=lambda k: half_f1(truths, options[k], halves, half))
        print(f"{name} half {half}: best here {best!r}: {gain(options[best], half):+.4f} here, "
              f"{gain(options[best], other):+.4f} on half {other} (held out); "
              f"shipped {shipped!r}: {gain(options[shipped], half):+.4f} here, {gain(options[shipped], other):+.4f} there")


def type_report(truths: list[str], types: list[str], before: list, after: list) -> None:
    """Print the F1 over all pages and per page type, before and after a step."""
    a = score("wcxb", truths, before, types)
    b = score("wcxb", truths, after, types)
    print(f"all pages: {a['F1']:.4f} -> {b['F1']:.4f}")
    for ty, (f, n) in a["by_type"].items():
        print(f"  {ty:14} {n:4} {f:.4f} -> {b['by_type'][ty][0]:.4f} ({b['by_type'][ty][0] - f:+.4f})")
