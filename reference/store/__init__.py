"""Local storage with recovery: DuckDB snapshots, repair on open, the high-water mark, failed_syncs (issue 13).

Why our own: DuckDB is an embedded library with no replication, no backup daemon and no repair tool; a damaged
file simply fails to open (or, with a cut WAL, opens without its last commits and says nothing). The design
(DDB-1..6) asks for snapshots every 500 ms, checksummed, restored within 3 s, so this package does it, on top of
DuckDB's own ``COPY FROM DATABASE`` (a transactionally consistent copy that does not block writers).

Modules, one concern each:

- ``snapshots``     the snapshot set of one DuckDB file: take, sha256 manifest, verify, prune (DDB-2, DDB-3).
- ``diagnosis``     what a DuckDB error means for an operator, in one line; a lock held by another process.
- ``failed_syncs``  the retry schedule of writes that could not reach Redis or ClickHouse (DDB-5, ORD-2, BR-2).
- ``blocks``        the file's bytes on disk checked without DuckDB's cache: size and block checksums (DDB-6).
- ``keeper``        the thread that snapshots after changes, checks health every second and resyncs (DDB-2, DDB-6).

The engine's journal (``reference.engine.journal``) is the first user; nothing here knows about trading.
"""
