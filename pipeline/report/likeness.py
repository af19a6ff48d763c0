"""How WebText-like is a build? ``webtext report`` and the build's likeness report.

Per shard version a *profile* is computed once, from that version's shards only,
and kept in ``SHARDS/profiles/vNNNN.json``: documents per domain, a histogram
of document lengths (characters, bins a quarter-octave wide), languages, and the
GPT-2 token count of a sample of the documents (chosen by a hash of the id, so
the same documents every time). The report merges the profiles of every
version, so a monthly build reads only what it added.

Domains are the registered name without its public suffix, as OpenAI's
``domains.txt`` counts them (``google`` for google.com and google.co.uk,
``blogspot`` for every *.blogspot.com: the public suffix list without its
private section). Against that list (WebText's top 1,000 domains with document
counts) the report gives: the share of the build's documents in those domains
(WebText: 100% of its top-1000 share by construction; the list covers about
half of WebText's documents, see ``reference_share``), Spearman's rank
correlation over the reference's domains, and the most over- and
under-represented domains (log2 of the ratio of shares, with add-one smoothing).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from pipeline.core.io import atomic_write_json

PROFILE_VERSION = 1
# Length histogram: bin k holds lengths in [2**(k/4), 2**((k+1)/4)); 120 bins reach 2**30 characters.
N_BINS = 120


def domain_of(url: str) -> str:
    """The registered domain's name without its public suffix ('' if there is no host)."""
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""
    if not host:
        return ""
    if host.replace(".", "").isdigit() or ":" in host:
        return host  # an IP address
    from tld import get_tld

    res = get_tld(f"http://{host}", as_object=True, fail_silently=True, search_private=False)
    if res is not None and res.domain:
        return res.domain
    labels = [x for x in host.split(".") if x]
    if labels and labels[0] == "www":
        labels = labels[1:]
    return labels[-2] if len(labels) >= 2 else (labels[0] if labels else "")


def length_bin(n: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(4 * np.log2(np.maximum(n, 1))).astype(np.int64), 0, N_BINS - 1)


def read_reference(path: str | Path) -> dict[str, int]:
    """OpenAI's domains.txt: 'COUNT DOMAIN' per line (a line with a count alone is the
    documents with no domain name, ''); a malformed line is an error naming it."""
    ref: dict[str, int] = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) == 1 and parts[0].isdigit():
            parts.append("")  # OpenAI's list has a count with no domain (URLs without a registered name)
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{i}: expected 'COUNT DOMAIN', got {line[:80]!r}")
        ref[parts[1].lower()] = ref.get(parts[1].lower(), 0) + int(parts[0])
    if not ref:
        raise ValueError(f"{path}: no domains")
    return ref


def version_profile(files: list[Path], token_fraction: float, tokenizer=None) -> dict:
    """The profile of the documents in FILES (one shard version), streamed in batches."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import xxhash

    domains: Counter = Counter()
    langs: Counter = Counter()
    hist = np.zeros(N_BINS, dtype=np.int64)
    n = chars = 0
    tok_docs = tok_tokens = tok_chars = 0
    threshold = int(min(1.0, max(0.0, token_fraction)) * (2**64 - 1))
    for f in files:
        pf = pq.ParquetFile(f)
        cols = [c for c in ("id", "url", "url_norm", "text", "language") if c in pf.schema_arrow.names]
        for b in pf.iter_batches(batch_size=4096, columns=cols):
            n += b.num_rows
            urls = b.column("url" if "url" in cols else "url_norm").to_pylist() if ("url" in cols or "url_norm" in cols) \
                else [""] * b.num_rows
            domains.update(domain_of(u or "") for u in urls)
            if "language" in cols:
                langs.update(l or "unknown" for l in b.column("language").to_pylist())
            if "text" in cols:
                lens = pc.utf8_length(b.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
                chars += int(lens.sum())
                np.add.at(hist, length_bin(lens), 1)
                if tokenizer is not None and threshold and "id" in cols:
                    ids, texts = b.column("id").to_pylist(), b.column("text").to_pylist()
                    pick = [t or "" for i, t in zip(ids, texts) if xxhash.xxh64_intdigest(str(i).encode("utf-8")) <= threshold]
                    if pick:
                        tok_docs += len(pick)
                        tok_tokens += sum(len(x) for x in tokenizer.encode_batch(pick))
                        tok_chars += sum(len(t) for t in pick)
    return {"format": PROFILE_VERSION, "documents": n, "characters": chars, "domains": dict(domains),
            "languages": dict(langs), "length_hist": hist.tolist(),
            "token_sample": {"documents": tok_docs, "tokens": tok_tokens, "characters": tok_chars}}


def update_profiles(shards_dir: str | Path, token_sample: int = 20_000, progress_bar: bool = True) -> list[dict]:
    """Profiles of every published version (computing only the missing ones)."""
    from pipeline.core.summary import progress
    from pipeline.shards.stage import load_manifest

    shards_dir = Path(shards_dir)
    m = load_manifest(shards_dir)
    total = max(1, m.get("total_rows", 0))
    tokenizer = None
    if token_sample:
        from model.tokenizer import Tokenizer

        tokenizer = Tokenizer.load("gpt2")
    out = []
    versions = m.get("versions", [])
    for v in progress(versions, desc="profile", unit="versions", disable=None if progress_bar else True):
        p = shards_dir / "profiles" / f"v{v['version']:04d}.json"
        if p.is_file():
            prof = json.loads(p.read_text())
            if prof.get("format") == PROFILE_VERSION:
                out.append(prof)
                continue
        files = [shards_dir / s["file"] for s in m["shards"] if s["version"] == v["version"]]
        prof = version_profile(files, token_sample / total if token_sample else 0.0, tokenizer)
        prof["version"] = v["version"]
        atomic_write_json(p, prof)
        out.append(prof)
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), largest first."""
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def likeness(shards_dir: str | Path, webtext_domains: str | Path | None = None, token_sample: int = 20_000,
             progress_bar: bool = True) -> dict:
    from pipeline.shards.stage import load_manifest

    shards_dir = Path(shards_dir)
    profiles = update_profiles(shards_dir, token_sample, progress_bar)
    domains: Counter = Counter()
    langs: Counter = Counter()
    hist = np.zeros(N_BINS, dtype=np.int64)
    n = chars = 0
    tok = Counter()
    for p in profiles:
        domains.update(p["domains"])
        langs.update(p["languages"])
        hist += np.asarray(p["length_hist"], dtype=np.int64)
        n += p["documents"]
        chars += p["characters"]
        tok.update(p["token_sample"])
    drops: dict[str, Counter] = {}
    for v in load_manifest(shards_dir).get("versions", []):
        for s in v.get("funnel") or []:
            if isinstance(s, dict) and s.get("dropped"):
                # already_* are work an earlier build did (incremental bookkeeping), not drops
                real = {k: x for k, x in s["dropped"].items() if x and not k.startswith("already_")}
                if real:
                    drops.setdefault(s.get("stage", "?"), Counter()).update(real)
    cum = np.cumsum(hist)

    def quantile(q: float) -> int | None:
        if n == 0:
            return None
        k = int(np.searchsorted(cum, q * n))
        return int(round(2 ** ((k + 0.5) / 4)))  # the bin's middle: accurate to ~9%

    rep = {
        "documents": n, "domains_total": len(domains), "characters_mean": chars / n if n else None,
        "length_quantiles_chars": {f"p{int(q * 100)}": quantile(q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        "length_hist": hist.tolist(),
        "languages": {k: v / n for k, v in langs.most_common()} if n else {},
        "tokens_per_document": (tok["tokens"] / tok["characters"]) * (chars / n) if tok["characters"] and n else None,
        "token_sample_documents": tok["documents"],
        "top_domains": [(d, c, c / n) for d, c in domains.most_common(50)] if n else [],
        "drop_reasons": {stage: {r: c / sum(cs.values()) for r, c in cs.most_common()} for stage, cs in drops.items()},
        "drop_counts": {stage: dict(cs.most_common()) for stage, cs in drops.items()},
        "reference": None,
    }
    if webtext_domains and n:
        ref = read_reference(webtext_domains)
        ref_total = sum(ref.values())
        names = sorted(ref, key=lambda d: -ref[d])
        ours = np.array([domains.get(d, 0) for d in names])
        theirs = np.array([ref[d] for d in names])
        in_ref = int(ours.sum())
        union = set(names[:50]) | {d for d, _ in domains.most_common(50)}
        build_total = n + len(union)
        ratios = sorted(((math.log2(((domains.get(d, 0) + 1) / build_total) / ((ref.get(d, 0) + 1) / (ref_total + len(union)))), d)
                         for d in union if d), reverse=True)
        rep["reference"] = {
            "file": str(webtext_domains), "domains": len(ref), "documents": ref_total,
            "share_in_reference_domains": in_ref / n,
            "reference_domains_present": int((ours > 0).sum()),
            "spearman_over_reference_domains": spearman(ours, theirs),
            "over_represented": [{"domain": d, "log2_ratio": r, "ours": domains.get(d, 0), "webtext": ref.get(d, 0)}
                                 for r, d in ratios[:10] if r > 0],
            "under_represented": [{"domain": d, "log2_ratio": r, "ours": domains.get(d, 0), "webtext": ref.get(d, 0)}
                                  for r, d in ratios[::-1][:10] if r < 0],
        }
    return rep


def likeness_markdown(rep: dict) -> str:
    n = rep["documents"]
    lines = [f"**WebText likeness**: {n:,} documents from {rep['domains_total']:,} domains"]
    if not n:
        return lines[0] + " (nothing to describe yet)"
    q = rep["length_quantiles_chars"]
    lines[0] += (f"; length (characters) median ~{q['p50']:,}, 10-90% ~{q['p10']:,}-{q['p90']:,}"
                 + (f"; ~{rep['tokens_per_document']:,.0f} GPT-2 tokens per document (sample of {rep['token_sample_documents']:,})"
                    if rep["tokens_per_document"] else ""))
    if rep["languages"]:
        lines.append("languages: " + ", ".join(f"{k} {v:.0%}" for k, v in list(rep["languages"].items())[:5]))
    r = rep["reference"]
    if r:
        lines.append(f"against WebText's top {r['domains']:,} domains ({r['file']}): {r['share_in_reference_domains']:.0%} of "
                     f"the documents are in them ({r['reference_domains_present']} of the {r['domains']} present); "
                     f"Spearman rank correlation over them {r['spearman_over_reference_domains']:.2f}")
        if r["over_represented"]:
            lines.append("over-represented: " + ", ".join(f"{x['domain']} ({x['ours']:,} vs {x['webtext']:,}, x{2 ** x['log2_ratio']:.1f})"
                                                          for x in r["over_represented"][:5]))
        if r["under_represented"]:
            lines.append("under-represented: " + ", ".join(f"{x['domain']} ({x['ours']:,} vs {x['webtext']:,}, x{2 ** x['log2_ratio']:.2f})"
                                                           for x in r["under_represented"][:5]))
    else:
        lines.append("no WebText reference given ([report] webtext_domains = OpenAI's domains.txt): the build is described alone")
    lines.append("top domains: " + ", ".join(f"{d} {s:.1%}" for d, _, s in rep["top_domains"][:10]))
    for stage, reasons in rep["drop_reasons"].items():
        lines.append(f"{stage} drops: " + ", ".join(f"{k} {v:.0%}" for k, v in list(reasons.items())[:5]))
    return "\n\n".join(lines)


def plot_likeness(rep: dict, out_png: str | Path) -> Path | None:
    if not rep["documents"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.5))
    top = rep["top_domains"][:20][::-1]
    y = np.arange(len(top))
    a.barh(y - 0.2, [s * 100 for _, _, s in top], height=0.4, label="this build")
    r = rep["reference"]
    if r:
        ref = read_reference(r["file"])
        total = sum(ref.values())
        a.barh(y + 0.2, [ref.get(d, 0) / total * 100 for d, _, _ in top], height=0.4, label="WebText (domains.txt)")
    a.set_yticks(y, [d or "(none)" for d, _, _ in top], fontsize=8)
    a.set_xlabel("share of documents (%)")
    a.set_title("top domains of the build")
    a.legend(loc="lower right")
    hist = np.asarray(rep["length_hist"])
    nz = np.nonzero(hist)[0]
    lo, hi = (nz[0], nz[-1] + 1) if len(nz) else (0, 1)
    edges = 2 ** (np.arange(lo, hi + 1) / 4)
    b.stairs(hist[lo:hi], edges, fill=True)
    b.set_xscale("log")
    b.set_xlabel("document length (characters, log scale)")
    b.set_ylabel("documents")
    b.set_title(f"{rep['documents']:,} documents")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def write_report(shards_dir: str | Path, out_dir: str | Path, webtext_domains: str | Path | None = None,
                 token_sample: int = 20_000, progress_bar: bool = True) -> dict:
    """likeness.json, likeness.md and likeness.png in OUT_DIR."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = likeness(shards_dir, webtext_domains, token_sample, progress_bar)
    atomic_write_json(out / "likeness.json", rep)
    (out / "likeness.md").write_text(likeness_markdown(rep) + "\n")
    plot_likeness(rep, out / "likeness.png")
    return rep
