"""The dataset card of a shard directory: ``README.md`` with the YAML header that
Hugging Face ``datasets`` reads (``configs`` -> data files, ``dataset_info`` ->
features), then what the corpus is, how to load it, every version with its
funnel, the fields, and the license and consent note. Rewritten from the
manifest whenever a version is published; nothing else reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.io import atomic_write_bytes

FIELDS = {
    "id": "stable document id (hash of the normalised URL)",
    "url": "the URL as submitted to Reddit",
    "url_norm": "the normalised URL (the dedup key of links)",
    "text": "the extracted main text",
    "title": "the page title (og:title or <title>)",
    "date": "the publication date found in the page, if any",
    "status": "HTTP status of the fetched page",
    "fetched_at": "when the page was fetched (UTC)",
    "warc_file": "the WARC file holding the raw response",
    "warc_offset": "byte offset of the response record in that file",
    "charset": "the character set the page was decoded with",
    "score": "the highest karma of a Reddit submission of the URL",
    "score_total": "the sum of the karma of all its submissions",
    "subreddits": "subreddits it was submitted to",
    "reddit_ids": "ids of the submissions",
    "created_utc": "time of its first submission (Unix seconds)",
    "language": "language detected on the text",
    "language_confidence": "the detector's confidence",
    "source": "where the page came from: live, or archive:<name>",
}


def hf_dtype(t: pa.DataType):
    """The ``datasets`` YAML type of an Arrow type, or None when there is no plain one."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return str(t)  # int8 ... uint64: the same names
    if pa.types.is_floating(t):
        return {"halffloat": "float16", "float": "float32", "double": "float64"}[str(t)]
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}" + (f", tz={t.tz}" if t.tz else "") + "]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = hf_dtype(t.value_type)
        return {"list": inner} if isinstance(inner, str) else None
    return None


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML scalar


def _yaml_header(schema: pa.Schema | None, n_rows: int) -> list[str]:
    size = next((c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                   (1e7, "1M<n<10M"), (1e8, "10M<n<100M")) if n_rows < lim), "100M<n<1B")
    lines = ["---", "pretty_name: WebText rebuild (webtext)", "license: other",
             "license_name: web-content-copyright-of-its-authors", "language:", "- en", "task_categories:",
             "- text-generation", "size_categories:", f"- {size}", "configs:", "- config_name: default",
             "  data_files:", "  - split: train", "    path: data/*.parquet"]
    feats = [(f.name, hf_dtype(f.type)) for f in schema] if schema is not None else []
    if feats and all(d is not None for _, d in feats):  # else datasets infers them from the Parquet schema
        lines += ["dataset_info:", "  features:"]
        for name, d in feats:
            lines.append(f"  - name: {_yaml_str(name)}")
            lines.append(f"    list: {d['list']}" if isinstance(d, dict) else f"    dtype: {d}")
    lines.append("---")
    return lines


def _funnel_rows(funnel: list[dict]) -> list[str]:
    rows = []
    for s in funnel if isinstance(funnel, list) else []:
        if not isinstance(s, dict):
            continue
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted((s.get("dropped") or {}).items(), key=lambda x: -x[1]) if n)
        rows.append(f"| {s.get('stage', '?')} | {s.get('in', 0):,} | {s.get('out', 0):,} | {reasons or '-'} |")
    return rows


def card_text(manifest: dict, schema: pa.Schema | None = None) -> str:
    n_rows, n_bytes = manifest.get("total_rows", 0), manifest.get("total_bytes", 0)
    versions = manifest.get("versions", [])
    lines = _yaml_header(schema, n_rows)
    lines += ["", "# WebText rebuild", "",
              "Web pages linked from Reddit submissions with at least the configured karma (GPT-2's WebText: 3), "
              "fetched, main text extracted, Wikipedia removed, filtered and near-deduplicated by "
              "[webtext](https://github.com/webtext/webtext). This card is written by `webtext shard` from "
              "`manifest.json`, which lists every file with its sha256.", "",
              f"**{n_rows:,} documents** in {len(manifest.get('shards', []))} Parquet files ({n_bytes / 1e6:,.1f} MB), "
              f"{len(versions)} version(s). Files are named `data/shard-vVERSION-NNNNN.parquet`: a new version adds "
              "files and never changes earlier ones.", "", "## Load", "", "```python",
              "import datasets; ds = datasets.load_dataset(\"DIR\", split=\"train\")",
              "import pyarrow.dataset as pads; t = pads.dataset(\"DIR/data\").to_table()",
              "import polars as pl; df = pl.scan_parquet(\"DIR/data/*.parquet\").collect()",
              "import duckdb; duckdb.sql(\"SELECT count(*) FROM read_parquet('DIR/data/*.parquet')\")",
              "```", "", "`DIR` is this folder. The corpus as of version N is the files `data/shard-v0001-*` to "
              "`data/shard-vN-*` (`manifest.json` lists each file with its version).", "", "## Versions", "",
              "| version | created | documents added | files | dumps |", "|---:|---|---:|---:|---|"]
    for v in versions:
        dumps = ", ".join(Path(d).name for d in (v.get("dumps") or [])[:4]) + (" ..." if len(v.get("dumps") or []) > 4 else "")
        lines.append(f"| {v['version']} | {v.get('created', '')} | {v.get('added_rows', 0):,} | "
                     f"{len(v.get('added_shards', []))} | {dumps or '-'} |")
    for v in versions:
        if isinstance(v.get("funnel"), list) and v["funnel"]:
            lines += ["", f"### Funnel of version {v['version']}", "", "| stage | in | out | dropped (by reason) |",
                      "|---|---:|---:|---|"] + _funnel_rows(v["funnel"])
    cfg = (versions[-1].get("config") if versions else None) or {}
    links = cfg.get("links") or {}
    if links:
        lines += ["", "## How the newest version was built", "",
                  f"- links: karma >= {links.get('min_score')} ({links.get('score_mode')} over a URL's submissions), "
                  f"submitted before {links.get('created_before') or 'any date'}"
                  + (f" and after {links['created_after']}" if links.get("created_after") else "")
                  + f"; NSFW {'excluded' if links.get('exclude_nsfw') else 'kept'}, self posts "
                  f"{'excluded' if links.get('exclude_self_posts') else 'kept'}",
                  "- the whole configuration of every version is in `manifest.json` (`versions[].config`)"]
    if schema is not None:
        lines += ["", "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
        lines += [f"| `{f.name}` | {f.type} | {FIELDS.get(f.name, '')} |" for f in schema]
    lines += ["", "## License and consent", "",
              "The texts are web pages written and owned by their authors; collecting them does not grant any "
              "license to them. This corpus is meant for research on language models, as WebText was; "
              "redistributing it may need the rights holders' permission where you are. robots.txt was honoured "
              "when fetching (unless the builder turned that off: see `versions[].config.fetch.respect_robots`). "
              "Reddit metadata (scores, subreddits, ids) comes from Reddit submissions under Reddit's terms. "
              "To have a page removed, give its `url` to whoever published this copy; `webtext decontaminate` "
              "and a filter on `id` remove documents in a new version.", ""]
    return "\n".join(lines)


def write_card(out: str | Path, manifest: dict, schema: pa.Schema | None = None) -> Path:
    out = Path(out)
    if schema is None and manifest.get("shards"):
        try:
            schema = pq.read_schema(out / manifest["shards"][-1]["file"])
        except (OSError, pa.ArrowInvalid):
            schema = None
    path = out / "README.md"
    atomic_write_bytes(path, card_text(manifest, schema).encode())
    return path
