"""Every column the stages hand to each other, declared once: the links table and the documents."""

from __future__ import annotations

import pyarrow as pa

DOC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("url_norm", pa.string()),
        ("text", pa.string()),
        ("title", pa.string()),
        ("date", pa.string()),
        ("status", pa.int32()),
        ("fetched_at", pa.string()),
        ("warc_file", pa.string()),
        ("warc_offset", pa.int64()),
        ("charset", pa.string()),
        ("score", pa.int64()),
        ("score_total", pa.int64()),
        ("subreddits", pa.list_(pa.string())),
        ("reddit_ids", pa.list_(pa.string())),
        ("created_utc", pa.int64()),
    ]
)


LINKS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("url_norm", pa.string()),
        ("domain", pa.string()),
        ("score", pa.int64()),
        ("score_total", pa.int64()),
        ("n_submissions", pa.int32()),
        ("created_utc", pa.int64()),
        ("reddit_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
        ("created_utcs", pa.list_(pa.int64())),
        ("titles", pa.list_(pa.string())),
        ("scores", pa.list_(pa.int64())),  # each submission's score (null: unknown), beside reddit_ids
    ]
)


from pipeline.core.linkfields import LINK_FIELDS  # noqa: E402,F401  (re-exported)


# The columns of the links that fetch carries into its outcome records (extract reads them
# from there, not from the links again): created_utc also picks an archived capture.
FETCH_COLUMNS = ("id", "url", "url_norm", "created_utc", "score", "score_total", "subreddits", "reddit_ids")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _kind(t.value_type) == "string":
        return "list of strings"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def check_document_schema(schema: pa.Schema, where, need: tuple[str, ...] = ("id", "text")) -> None:
    """Refuse, in one sentence naming WHERE (a file) and the column, documents whose
    columns cannot be what webtext's documents hold (``DOC_SCHEMA``): a missing ``id``
    or ``text``, a numeric text, a string score, ... A column entirely null passes."""
    from pipeline.core.errors import InputError

    missing = [c for c in need if c not in schema.names]
    if missing:
        raise InputError(f"{where}: documents need the column(s) {', '.join(missing)} (it has "
                         f"{', '.join(schema.names) or 'none'}); give Parquet files written by `webtext extract` or "
                         "with those columns")
    for f in DOC_SCHEMA:
        if f.name not in schema.names:
            continue
        got, want = _kind(schema.field(f.name).type), _kind(f.type)
        if got != want and got != "null":
            raise InputError(f"{where}: column {f.name!r} is {schema.field(f.name).type} ({got}), documents need "
                             f"{want}; fix or drop that column")
