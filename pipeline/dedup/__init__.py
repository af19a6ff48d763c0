"""Near-duplicate removal at corpus scale: MinHash signatures per part, candidate
pairs from sorted band keys, verification, union-find, and a persisted index of
memory-mapped Arrow segments, one per run.

The stages of a run, each bounded by what is new:

1. **Signatures, per input part** (``part_signatures``, a pure function a flow can
   map over parts on Dask): the part is read in record batches; per document the
   word 5-gram shingles are hashed (xxhash per distinct word, combined in numpy) and
   all permutations applied at once (multiply-shift on 64-bit shingle hashes). The
   text never stays in memory beyond its batch; the result is a small Parquet file
   (id, shingle count, 32-bit min-hashes, created_utc, score, length).
2. **Candidates**: each signature gives ``bands`` band keys (a 64-bit hash of the
   band's rows and the band number). New documents sharing a key are candidates
   (an argsort of the keys, then equal runs; a huge bucket links each member to its
   ``BUCKET_LINKS`` predecessors, enough to join a cluster without m^2 pairs); new
   documents are matched against the index by binary search in each segment's
   sorted keys, which are memory-mapped: only the pages the new keys hit are read.
3. **Verification**: a candidate pair is a duplicate when the signatures'
   estimated Jaccard or estimated containment (from the Jaccard and the two
   shingle-set sizes) passes its threshold, so precision stays high while bands of
   few rows find truncated and boilerplate-wrapped copies.
4. **Keep rule**, per cluster: a document kept by an earlier run stays kept;
   otherwise (``keep="earliest"``, the default) the one first submitted to Reddit,
   or (``keep="score"``) the highest Reddit score; then the higher score, the
   longest text, the smallest id.
5. **Commit**: the kept documents (a second streaming pass over the new parts),
   ``duplicates-NNNN.parquet``, the run's segment, and last the ledger
   (``state/ledger.json``: the parts each run consumed), written atomically. A run
   killed before the ledger leaves files with its run number, deleted by the next
   run, which redoes it. Parts the ledger lists are not read again.

The index (``state/segments/seg-NNNN.{docs,keys,removed}.arrow``) is plain Arrow
IPC data: reading it runs nothing. ``docs``: the kept documents of the run sorted by
a 64-bit hash of their id (id, shingle count, signature); ``keys``: their band keys,
sorted, with the row they belong to; ``removed``: the ids the run removed, sorted by
hash. Id membership (already kept, already removed) is a binary search too. A 64-bit
id hash collides with probability ~n^2/2^65 (3e-6 at 8M documents).

``redis_url`` puts the band buckets in Redis through datasketch's ``MinHashLSH``
storage instead of the segments' key files (the signatures stay in the segments).
"""
