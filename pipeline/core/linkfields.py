"""The link table's columns that travel with a link into fetch's outcome records (no
pyarrow here: a fetch process reads them without importing it)."""

LINK_FIELDS = ("created_utc", "score", "score_total", "subreddits", "reddit_ids")
