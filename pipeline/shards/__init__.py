"""The shard stage: Parquet shards under a versioned manifest, with a dataset card."""
