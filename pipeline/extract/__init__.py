"""The extract stage: WARC response records -> main text (trafilatura, with consent, rescue, expansion and forum steps) in Parquet."""
