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


LINK_FIELDS = ("created_utc", "score", "score_total", "subreddits", "reddit_ids")


# The columns of the links that fetch carries into its outcome records (extract reads them
# from there, not from the links again): created_utc also picks an archived capture.
FETCH_COLUMNS = ("id", "url", "url_norm", "created_utc", "score", "score_total", "subreddits", "reddit_ids")
