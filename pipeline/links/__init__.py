"""Link selection: Reddit submissions -> one row per unique normalised URL.

Every submission read ends in exactly one place: kept as the first submission of
a URL, merged into an earlier submission of the same URL (``duplicate_url``), or
dropped with a named reason. The counts add up to the lines read
(``RunSummary.check``).

Sources: Pushshift / Arctic Shift monthly dumps (``harvest_dump_part``), plain URL
lists (``harvest_url_list_part``, pipeline/sources/urllists.py), both into parts that
``merge_link_parts`` merges, and the live API (pipeline/sources/reddit_api.py, which writes
one ``links.parquet``). Each merge is a run that reads only the parts no earlier
run consumed and writes ``runs/links-NNNN.parquet`` with the URLs that became links
in it (``iter_links``/``read_links`` read every run, or some). An entry
of a URL list may have no karma and no date: ``score``/``score_total`` are then
null (unknown, never 0) and ``created_utc`` 0 (unknown), and the karma rule and
date window are not applied to it (the list's maker filtered it).
"""
