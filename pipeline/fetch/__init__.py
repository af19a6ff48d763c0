"""Fetching pages politely and safely into WARC files, resumably, or replaying WARCs.

URLs are partitioned by a hash of their host (see "partitions" below); each
partition is fetched by one process with its own outcome log
(``outcomes/part-PPPP.jsonl``) and WARC files. Every URL ends in exactly one
recorded outcome, appended to its partition's log:

    ok            HTML kept (a response record in a WARC)
    http_<code>   a non-2xx final status (404, 410, 500 after retries, ...)
    not_html      a content type that is not HTML/XHTML (images, PDFs, ...)
    binary        served as HTML, but the bytes are binary
    too_large     Content-Length or the body passed ``max_bytes`` (stopped reading)
    decoded_too_large  the gzip/deflate body expands past ``max_bytes`` (a gzip bomb)
    timeout       connect or whole-response deadline passed (a trickling server)
    too_many_redirects, refused_private_address, robots_disallowed,
    connection_error, invalid_url, not_in_archive (replay)
    not_archived, archive_no_html_capture, archive_after_cutoff, archive_error
                  ``[fetch] source = "archive"`` or ``"live-then-archive"``: no
                  archive had the page (pipeline/fetch/archives.py); an ``ok`` page from
                  an archive has ``source = "archive:<name>"``, a live one ``"live"``

Raw responses go to WARC (warcio, pipeline/fetch/warcstore.py): a request and a response record for every
HTTP response received, the body cut at ``max_bytes`` with ``WARC-Truncated``
when it was too long. Each record is serialised in memory and written with one
``write``; the WARC file is fsynced before any outcome line pointing into it is
appended (per record on the threaded transport; on the asyncio one, the default for
live pages, in group commits at most every 0.25 s: pipeline/fetch/groupcommit.py,
aiofetch.py, h1client.py); a new run opens a new
WARC file and first trims any file of a killed run back to its last complete
record, so warcio always reads every file whole.

Safety: unless ``allow_private_addresses``, each host is resolved once per hop
and every address it has must be public; connections then go to that checked
address (pinned in the connection layer, TLS still verified against the host
name), so a second DNS answer cannot point the request at 127.0.0.1 or a cloud
metadata address (DNS rebinding).

Final and transient outcomes: ``timeout``, ``connection_error``, ``dns_error``,
``fetch_error``, ``http_429`` and ``http_5xx`` say nothing about the page, only
about the site or the network at that moment: they are *transient*. Every other
outcome is *final*. Resuming: a URL with a final outcome is never fetched again;
one with a transient outcome is fetched again by a later run once its back-off
has passed (``retry_after_s`` doubling per attempt), up to ``max_attempts``
attempts, after which it counts as ``given_up``. Each attempt appends a line;
the last line of a URL is its outcome.
"""
