"""The local, durable intent journal (DuckDB, one file per engine instance), with snapshots and repair.

Why local: Redis replication is asynchronous, so a Sentinel failover can lose acknowledged writes (REQUIREMENTS,
"Known contradictions"). The engine therefore records each intent here, committed (DuckDB fsyncs its WAL on
commit) *before* ``order_send``, and records the outcome here before it publishes it to Redis. Redis (RTS/RTRS) is
the shared, replicated view; this file is the instance's own memory; the broker's ledger (magic + comment) is the
final arbiter for "was it executed". While Redis is unreachable the trade state stays here (ORD-3) and outcomes not
yet published are flushed when Redis is back (``published = false``).

Intent states: SENDING (written before order_send) -> DONE | REJECTED (final) or UNKNOWN (ambiguous reply: must be
reconciled with the broker, never resent blindly) or DEFERRED (market closed / backoff / failed_syncs).

Durability and repair (issue 13, DDB-1..6):

- WAL: DuckDB always logs commits to ``<file>.wal``; it is folded into the file at ``checkpoint_threshold``
  (DDB-1: at most 256 MB; smaller keeps the replay at start short).
- High-water mark: every commit gets the next number (``seq``); the number survives in ``journal_meta`` and is
  mirrored, after each commit, into ``<file>.hwm`` beside the file (not fsynced: it is a lower bound of what is
  durable, so it never raises a false alarm after a power cut). A file that opens but holds a lower number than
  the mark or than its newest snapshot silently lost committed writes, and is treated as damaged.
- Snapshots: :meth:`Journal.snapshot` (the engine's store keeper calls it every 500 ms after changes, DDB-2) into
  ``backup/duckdb/`` with a sha256 manifest (``reference.store.snapshots``): a CHECKPOINT and a copy of the file
  under the write lock (writers wait for them: milliseconds, see there), so each snapshot also folds the WAL into
  the file.
- Open: a file that does not open, fails a block or WAL checksum, cannot be read, is missing while snapshots
  exist, or lost writes is moved aside (never deleted) into ``backup/duckdb/damaged/<name>-<time>/`` with a
  ``diagnosis.txt``; the newest snapshot that verifies is restored (else the file without its WAL, else an empty
  journal: DDB-4, the engine then learns what it sent from the broker by magic + comment and from Redis). The
  outcome is :attr:`Journal.repair`, whose ``line`` names the file, what was seen and what was recovered. A lock
  held by another live process is reported as such (:class:`JournalLocked`) and nothing is touched. The evidence
  is the files exactly as found: every block's checksum is checked, read-only, before the read-write open (which
  folds the WAL into the file and is the first to read an index's blocks), and that open does not checkpoint on
  close until the journal is loaded (issue 16; why this and not a copy: :meth:`Journal._open`).
- Health (DDB-6): :meth:`Journal.health` checks the file is still the one opened, still a DuckDB file, that no
  write failed, and looks at the bytes on disk, which the running DuckDB would only read again at the next open
  (``reference.store.blocks``): the file must hold every block DuckDB says it occupies (a cut file), and the block
  checksums are recomputed from plain reads, ``verify_mb_per_check`` MB per check, resuming where the last check
  stopped (bytes changed in a block). :meth:`Journal.rebuild_from_memory` writes a fresh file from the in-memory
  copy and the intents no longer in memory (read from the damaged file, else from the newest snapshot).

- A full disk is not damage (``reference.store.nospace``): a commit that fails for lack of space raises
  :class:`JournalFull` (the transaction rolled back, nothing in memory changed, :attr:`Journal.disk_full` says
  so until a commit succeeds again); opening on a full disk raises it too and moves nothing aside; a rewrite from
  memory first writes the fresh file and only then keeps the evidence and swaps, so a full disk leaves the open
  file in use.

``failed_syncs`` holds every write that could not reach its target (the broker for ORD-2's orders, Redis,
ClickHouse): attempts, next try, last error; the schedule is ``reference.store.failed_syncs`` (BR-2).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import zlib
from dataclasses import dataclass, field, asdict
from pathlib import Path

import duckdb

from reference.store.blocks import (BlockVerifier, bad_block_finding, checksum_scheme_matches, size_problem,
                                    verify_whole_file)
from reference.store.diagnosis import describe, lock_holder, short_file
from reference.store.nospace import no_space
from reference.store.failed_syncs import RetryPolicy
from reference.store.snapshots import SnapshotError, SnapshotInfo, SnapshotSet, fsync_dir

FINAL_STATES = ("DONE", "REJECTED")
IN_FLIGHT_STATES = ("SENDING", "UNKNOWN")
MAX_CHECKPOINT_MB = 256   # DDB-1: WAL size limit
JOURNAL_THREADS = 1       # DuckDB worker threads of the journal's connection (see Journal._connect)
# DDB-6: MB of block checksums the health check (every 1 s) recomputes per call. Measured (duckdb 2.0.0, numpy,
# page cache, 2 shared cores): a whole check costs 2.3 ms on a 1.5 MB journal, 151 ms on a 270 MB one (0.4 ms of
# it the size check); with 64 MB per call a check costs at most 37 ms (about 4 % of a core). So a journal up to
# 64 MB is verified whole on every check (flipped bytes found within one check, <= 1 s); a larger one over
# ceil(size / 64 MB) checks (256 MB: 4 s). A cut file is found on every check whatever the size.
VERIFY_MB_PER_CHECK = 64
# How many final intents with no work left (published; in ClickHouse while its sync runs) the journal keeps in
# memory besides every intent that still has work: the newest ones (a resent recent signal is answered from memory).
# Older ones are read from the file (:meth:`Journal.get`). ~0.9 KB of Python objects each: 10,000 is ~9 MB, about
# 17 minutes at 10 signals/s. Below MEMORY_WINDOW_MIN a final outcome could leave memory before the next snapshot
# holds it (DDB-2's 500 ms at 200 signals/s is 100 signals), and a rewrite of a damaged file that cannot be read
# takes the older outcomes from the newest snapshot (:meth:`Journal.rebuild_from_memory`).
MEMORY_WINDOW = 10_000
MEMORY_WINDOW_MIN = 100
# the filter of signal ids that may be in the file but not in memory (:class:`_IdFilter`): 2**23 bits (1 MB), 4
# probes: under 0.1 % false answers up to 500,000 ids, 2.4 % at 1,000,000 (each false answer costs one lookup in
# the file, 1-2 ms, see Journal.get; never a wrong answer)
_ID_FILTER_BITS = 1 << 23
_ID_FILTER_PROBES = 4


class JournalError(RuntimeError):
    """The journal cannot be used; the message is one line that says what to do. ``exit_status`` is the process
    exit status a command line should use for it (74, EX_IOERR: the state folder cannot be written)."""

    exit_status = 74


class JournalLocked(JournalError):
    """Another live process holds the journal's lock (the same instance name runs twice). Exit status 75
    (EX_TEMPFAIL: it may work once that process is gone)."""

    exit_status = 75


class _FoundDamage(Exception):
    """Damage the open found by itself (not through a DuckDB error): ``saw`` is the one-clause finding."""

    def __init__(self, saw: str):
        super().__init__(saw)
        self.saw = saw


class JournalFull(JournalError):
    """A write (or the open) failed because the state folder's filesystem has no free space: nothing was
    written, nothing is damaged; try again once space is freed. Exit status 75 (EX_TEMPFAIL)."""

    exit_status = 75


class JournalNoMemory(JournalError):
    """DuckDB ran out of memory opening the journal (its memory_limit, or the machine's): a sound file cannot be told
    from a damaged one then, so nothing is moved or changed. Exit status 75 (EX_TEMPFAIL: it may work with more
    memory)."""

    exit_status = 75


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (a DuckDB error) is DuckDB's "Out of Memory Error": no evidence about the file."""
    return isinstance(exc, getattr(duckdb, "OutOfMemoryException", ())) or "Out of Memory Error" in str(exc)


@dataclass
class Repair:
    """What opening (or the health check) found and did. ``line``: the one-line diagnosis; ``saw``: what was
    wrong; ``recovered``: what the journal holds now; ``evidence``: folder of the damaged files; ``committed``:
    the highest write number known to have been committed; ``restored``: the highest write number the journal
    holds now (writes in between are not in it: the engine's start reconciliation looks them up at the broker);
    ``seconds``: time from detection to a usable journal."""

    file: str
    saw: str
    recovered: str
    evidence: str
    committed: int
    restored: int
    seconds: float
    skipped: list[str] = field(default_factory=list)

    @property
    def missing_writes(self) -> int:
        return max(0, self.committed - self.restored)

    @property
    def line(self) -> str:
        gap = (f"; {self.missing_writes} committed write(s) newer than that are not in it: the engine's start "
               f"reconciliation looks their signals up at the broker by magic + comment") if self.missing_writes \
            else ""
        skipped = f"; skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return (f"intent journal {self.file}: {self.saw}; damaged files kept in {self.evidence}; recovered "
                f"{self.recovered} in {self.seconds:.3f} s{gap}{skipped}")

    def fields(self) -> dict:
        return {"file": self.file, "saw": self.saw, "recovered": self.recovered, "evidence": self.evidence,
                "committed": self.committed, "restored": self.restored, "missing_writes": self.missing_writes,
                "seconds": round(self.seconds, 3), "skipped": self.skipped}


@dataclass
class Intent:
    signal_id: str
    entry_id: str
    signal: dict
    state: str = "NEW"
    attempt: int = 0              # number of order_send calls made (comment suffix of the last one)
    comment: str = ""
    broker: str = ""
    retries: int = 0              # ORD-1 failures so far
    requotes: int = 0
    failed_sync_attempts: int = 0
    next_try_ms: int = 0          # wall-clock epoch ms when a DEFERRED/UNKNOWN intent is due
    ambiguous_since_ms: int = 0
    result: dict = field(default_factory=dict)
    published: bool = False
    updated_ms: int = 0
    ch_synced: bool = False       # this final outcome is in ClickHouse (CH-1; reference.store.clickhouse_sync)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


_COLUMNS = [
    ("signal_id", "VARCHAR PRIMARY KEY"), ("entry_id", "VARCHAR"), ("signal", "VARCHAR"), ("state", "VARCHAR"),
    ("attempt", "INTEGER"), ("comment", "VARCHAR"), ("broker", "VARCHAR"), ("retries", "INTEGER"),
    ("requotes", "INTEGER"), ("failed_sync_attempts", "INTEGER"), ("next_try_ms", "BIGINT"),
    ("ambiguous_since_ms", "BIGINT"), ("result", "VARCHAR"), ("published", "BOOLEAN"), ("updated_ms", "BIGINT"),
    ("ch_synced", "BOOLEAN"),   # CH-1: added after issue 13's first files; older files get it (false) at open
]
_INDEX = {n: i for i, (n, _t) in enumerate(_COLUMNS)}
_NAMES = ", ".join(n for n, _ in _COLUMNS)
_FINAL_SQL = ", ".join(f"'{s}'" for s in ("DONE", "REJECTED"))
# the latest state of every signal in the file: ``intents`` overlaid by ``intent_log`` (newest seq wins)
_LATEST = (f"SELECT {_NAMES} FROM (SELECT {_NAMES}, seq FROM intent_log UNION ALL SELECT {_NAMES}, -1 AS seq "
           f"FROM intents) QUALIFY row_number() OVER (PARTITION BY signal_id ORDER BY seq DESC) = 1")
# a journal write of more rows than this binds one list per column (``_UNNEST_INSERT``); fewer, one scalar per value
# (cheaper for a single row: 0.94 ms against 1.10 ms)
_VALUES_MAX_ROWS = 4
_UNNEST_INSERT = ("INSERT INTO intent_log SELECT "
                  + ", ".join(f"unnest(${i + 1})" for i in range(len(_COLUMNS) + 1)))

# one row per write that could not reach its target; (target, kind, sync_id) is the key: an order (target
# "broker", kind "order", the signal id), a result for Redis or a row for ClickHouse
_FAILED_COLUMNS = [
    ("sync_id", "VARCHAR"), ("target", "VARCHAR"), ("kind", "VARCHAR"), ("payload", "VARCHAR"),
    ("attempts", "INTEGER"), ("step", "INTEGER"), ("next_retry_ms", "BIGINT"), ("last_error", "VARCHAR"),
    ("notified", "BOOLEAN"), ("created_ms", "BIGINT"), ("updated_ms", "BIGINT"),
]
_FAILED_NAMES = [n for n, _ in _FAILED_COLUMNS]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _IdFilter:
    """A Bloom filter of signal ids (fixed size, ``_ID_FILTER_BITS`` bits): ``maybe(sid)`` is False only for an id
    never added. Built at each open (Python's string hash is per process), so its size does not grow with the
    journal; its false answers do (see ``_ID_FILTER_BITS``)."""

    __slots__ = ("_bits", "_mask")

    def __init__(self, bits: int = _ID_FILTER_BITS):
        self._bits = bytearray(bits >> 3)
        self._mask = bits - 1

    def _probes(self, sid: str):
        h = hash(sid) & 0xFFFFFFFFFFFFFFFF
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        return [(h1 + i * h2) & self._mask for i in range(_ID_FILTER_PROBES)]

    def add(self, sid: str) -> None:
        bits = self._bits
        for b in self._probes(sid):
            bits[b >> 3] |= 1 << (b & 7)

    def maybe(self, sid: str) -> bool:
        bits = self._bits
        return all(bits[b >> 3] & (1 << (b & 7)) for b in self._probes(sid))


def _format_mark(seq: int) -> bytes:
    """The mark file's one line: the write number (20 digits) and a CRC-32 of it, so a garbled mark is told from a
    mark: ``b"00000000000000000042 1a2b3c4d\n"`` (30 bytes, written in place)."""
    digits = b"%020d" % seq
    return digits + b" %08x\n" % zlib.crc32(digits)


def _parse_mark(text: str) -> int | None:
    """The write number of a mark line, or None when it is not one this journal wrote (garbled, cut, foreign). A
    bare 20-digit line (the format before the CRC) is still read."""
    parts = text.split()
    if len(parts) == 2 and len(parts[0]) == 20 and parts[0].isdigit() and len(parts[1]) == 8:
        if "%08x" % zlib.crc32(parts[0].encode()) == parts[1].lower():
            return int(parts[0])
        return None
    if len(parts) == 1 and len(parts[0]) == 20 and parts[0].isdigit():
        return int(parts[0])
    return None


def _hwm_of(con: duckdb.DuckDBPyConnection, catalog: str = "") -> int:
    """The highest write number a journal database holds (``catalog``: an attached copy's name)."""
    prefix = f'"{catalog}".' if catalog else ""
    log = con.execute(f"SELECT max(seq) FROM {prefix}intent_log").fetchone()[0] or 0
    meta = con.execute(f"SELECT max(value) FROM {prefix}journal_meta WHERE key = 'hwm'").fetchone()[0] or 0
    return int(max(log, meta))


class Journal:
    """The journal: a compacted ``intents`` table (one row per signal) plus an append-only ``intent_log``, and an
    in-memory copy of the latest state of the intents that matter now; ``failed_syncs``; ``journal_meta`` (the
    high-water mark).

    What is in memory (bounded: the engine's memory stays flat over a long run): every intent that is not final,
    every final one with work left (not yet published to Redis; not yet in ClickHouse once its sync has asked,
    :meth:`ch_unsynced`), and the ``memory_window`` newest final intents with no work left. One leaves memory only
    once its latest state is written (every change is, a flag with the next transaction), so every signal ever
    written is found: in memory, else in the file (:meth:`get`, ENG-5's duplicate check: ``intents`` by primary key,
    this run's ``intent_log`` by a scan; a fixed-size filter of the ids in the file answers a never-seen id without
    a query). Queries over every intent (:meth:`where_state` with a final state,
    :meth:`published_final`, :meth:`counts`, :meth:`ch_synced_final`) read the file for the rest.

    Why append-only: DuckDB is a column store; an ``INSERT OR REPLACE`` on a primary key costs about 4 ms per row
    here, a plain append 1.4 ms for one row and 0.17 ms per row in a batch of 100 (measured, issue 11). Each
    write is one transaction, committed (WAL fsync) before the call returns; :meth:`put_many` commits a whole batch
    in one transaction (group commit). Reads come from memory. Opening the journal folds the log into ``intents``
    (latest row per signal wins) and empties the log.

    ``path``: the DuckDB file; ``backup_dir``: where snapshots go (default ``<path's folder>/backup/duckdb``);
    ``snapshots_kept``: 1..10 (DDB-2); ``checkpoint_threshold_mb``: 1..256 (DDB-1); ``verify_mb_per_check``: MB of
    block checksums the health check recomputes per call (>= 1; DDB-6, see ``VERIFY_MB_PER_CHECK``);
    ``memory_window``: final intents with no work left kept in memory (>= ``MEMORY_WINDOW_MIN``, default
    ``MEMORY_WINDOW``; see there). Opening repairs a damaged
    file (see the module docstring; the result is :attr:`repair`, None when the file was sound). Raises
    :class:`JournalLocked` when another process holds the file, :class:`JournalError` when the folder cannot be
    written or a setting is out of range."""

    def __init__(self, path: str | Path, *, backup_dir: str | Path | None = None, snapshots_kept: int = 5,
                 checkpoint_threshold_mb: int = 16, verify_mb_per_check: int = VERIFY_MB_PER_CHECK,
                 memory_window: int = MEMORY_WINDOW):
        self.path = Path(path)
        if isinstance(memory_window, bool) or not isinstance(memory_window, int) or \
                memory_window < MEMORY_WINDOW_MIN:
            raise JournalError(f"memory_window {memory_window!r}: keep at least {MEMORY_WINDOW_MIN} recent final "
                               f"intents in memory (a whole number; default {MEMORY_WINDOW})")
        self.memory_window = memory_window
        self.wal_path = Path(str(self.path) + ".wal")
        self.mark_path = Path(str(self.path) + ".hwm")
        if not 1 <= int(checkpoint_threshold_mb) <= MAX_CHECKPOINT_MB:
            raise JournalError(f"checkpoint threshold {checkpoint_threshold_mb} MB: use 1 to {MAX_CHECKPOINT_MB} "
                               f"MB (DDB-1 caps the WAL at 256 MB)")
        self.checkpoint_threshold_mb = int(checkpoint_threshold_mb)
        if int(verify_mb_per_check) < 1:
            raise JournalError(f"verify_mb_per_check {verify_mb_per_check}: verify at least 1 MB of blocks per "
                               f"health check (DDB-6; default {VERIFY_MB_PER_CHECK})")
        self._blocks = BlockVerifier(self.path, int(verify_mb_per_check) << 20)
        # why the block checksums are not verified ("" when they are): see reference.store.blocks
        self.block_check_off = ""
        self.backup_dir = Path(backup_dir) if backup_dir else self.path.parent / "backup" / "duckdb"
        try:
            self.snapshots = SnapshotSet(self.path, self.backup_dir, snapshots_kept)
        except ValueError as exc:
            raise JournalError(str(exc)) from None
        self._lock = threading.Lock()
        self.repair: Repair | None = None
        self.last_snapshot: SnapshotInfo | None = None
        self._write_error = ""
        self.disk_full = ""        # why the last commit failed for lack of space; "" once one succeeds again
        self._seq = 0
        self._mark_fd: int | None = None
        self._read_fd: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
            self._identity = self._file_identity()
            self._mark_fd = os.open(self.mark_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if no_space(exc):
                raise self._full_at_open(exc) from None
            raise JournalError(f"cannot use the intent journal {self.path}: {exc.strerror or exc}; check that the "
                               f"state folder exists, is writable and has free space") from None
        self._write_mark()
        newest = self.snapshots.newest()
        self._snapshot_hwm = newest.hwm if newest and newest.hwm == self._seq else -1
        # every read of the file by this process goes through this descriptor, kept open while DuckDB holds the
        # file: closing any descriptor of it would drop DuckDB's POSIX lock (reference.store.blocks)
        self._read_fd = os.open(self.path, os.O_RDONLY)
        if not checksum_scheme_matches(self._read_fd):
            self.block_check_off = (f"the block checksums of {self.path} are not verified by the health check: this "
                                    f"DuckDB ({duckdb.__version__}) checksums its header differently from the scheme "
                                    f"measured with 2.0.0; only a cut file is found while it runs (DDB-6)")

    # --- open and repair ----------------------------------------------------------------------------------------
    mark_garbled: str | None = None   # why the mark file beside the journal was ignored at open, if it was

    def _committed_mark(self) -> tuple[int, str]:
        """The highest write number known to be committed, and who says so (the mark file, the newest snapshot)."""
        mark, said = 0, ""
        try:
            text = self.mark_path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            text = ""   # no mark (a journal older than issue 13) or an unreadable one: no evidence either way
        if text:
            value = _parse_mark(text)
            if value is None:
                # a garbled mark is no evidence of lost writes (a new user's '99999999999' moved a sound journal
                # aside as 99999999769 writes lost): kept as found for the record, rewritten at the next commit
                self.mark_garbled = f"{self.mark_path.name} is not a mark this journal wrote ({text[:40]!r}): ignored"
            else:
                mark, said = value, f"{self.mark_path.name} says #{value} was committed"
        newest = self.snapshots.newest()
        if newest is not None and newest.hwm > mark:
            mark, said = newest.hwm, f"snapshot {newest.file} holds #{newest.hwm}"
        return mark, said

    def _connect(self, path: Path | None = None, fold_on_close: bool = True) -> duckdb.DuckDBPyConnection:
        """A read-write connection with the journal's schema. ``fold_on_close=False``: closing it does not
        checkpoint (DuckDB's default folds the WAL into the file on close), so a load that fails leaves the files
        as they were (see :meth:`_open`); :meth:`_activate` turns it back on once the journal is loaded."""
        con = duckdb.connect(str(path or self.path))
        try:
            if not fold_on_close:
                con.execute("PRAGMA disable_checkpoint_on_shutdown")
            con.execute(f"SET checkpoint_threshold = '{self.checkpoint_threshold_mb}MB'")   # DDB-1
            # one DuckDB worker thread: the journal's statements are single-row writes and point reads, and with
            # the default (one per core) its native memory grew with every snapshot and health check the store
            # keeper's thread made beside the engine's writes: +0.77 KB a signal over 16,000 signals (a snapshot
            # every 5, a health check every 10, from a second thread), +2.1 MB/min in a load-only soak at 10
            # signals/s; with one thread -0.2 KB a signal, flat (issue 16's soak, 2026-12-01)
            con.execute(f"SET threads = {JOURNAL_THREADS}")
            self._ensure_schema(con)
        except BaseException:
            _close_quietly(con)
            raise
        return con

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Inspect the files read-only, then open the file for writing; repair on any failure. The evidence of a
        damaged journal is its files exactly as found, so nothing may write them before the damage is known.

        Why this order: the read-write open is the first to write (it folds the WAL into the file at its first
        checkpoint, or on close), and it reads blocks the inspection's queries never need: an index's (the
        intents' primary key, read by the fold's ``INSERT OR REPLACE``), the free blocks. Damage there showed
        only after the WAL had gone into the file (issue 16's flip-block-1). So, before it:

        1. :meth:`_inspect`: a read-only session (it replays the WAL in memory and writes nothing) reads every
           row, then every block of the file is checked against its checksum with plain reads
           (``reference.store.blocks.verify_whole_file``): all damage to the bytes of any block, index or free,
           is found here, with the files untouched. Cost: one read of the file, 2.3-4.6 ms for a journal of
           20,000 signals (2.6 MB) against an open of 95-210 ms (no WAL / a WAL; the same before and after this
           check, within the host's noise); 120 ms for 257 MB (DDB-1's 256 MB); ``benchmarks/bench_store.py``
           (``open``, ``block_check_s``). Chosen over the alternatives, measured the same way: a copy of the
           files before every read-write open costs about the same time (1.5-2.1 ms; 160 ms for 257 MB) but needs
           the file's size in free disk on every start (a full disk would then stop a sound journal's start) and
           finds nothing, so the damage would still show only in DuckDB's error after the fold; hard links keep
           nothing (DuckDB writes its file in place: a link is the same bytes); a copy of the WAL alone plus a
           check that the file did not change cannot keep the file, which the fold rewrites.
        2. The read-write session does not checkpoint on close until the journal is loaded, so a load that
           still fails (damage no checksum shows) closes without folding the WAL: the files stay as found.
        3. What is left, a failure after the load's own checkpoint wrote the file, is not hidden: the files'
           identity, size and times are compared with what the open found, and when they differ the diagnosis
           says the evidence is the files as that open left them. Where the block checksums cannot be verified
           (a DuckDB whose checksum is not the one measured, see ``reference.store.blocks``), step 1 is a copy of
           the files into ``.<name>.as-found/`` beside them instead, deleted once the journal is loaded."""
        started = time.perf_counter()
        committed, said = self._committed_mark()
        if not self.path.exists():
            if committed > 0:
                return self._recover(f"the file is missing while {said}", committed, started)
            self._seq = 0
            return self._activate()
        try:
            held = self._inspect()
        except _FoundDamage as found:
            return self._recover(found.saw, committed, started)
        except duckdb.Error as exc:
            if no_space(exc):
                raise self._full_at_open(exc) from None
            if out_of_memory(exc):
                raise self._no_memory_at_open(exc) from None
            holder = lock_holder(exc)
            if holder:
                raise JournalLocked(f"the intent journal {self.path} is locked by {holder}: an engine with the same "
                                    f"instance name is running; stop it, or give this instance a name of its "
                                    f"own") from None
            return self._recover(describe(exc, self.path), committed, started)
        if held < committed:
            return self._recover(f"it opens but holds writes only up to #{held} while {said}: "
                                 f"{committed - held} committed write(s) silently lost", committed, started,
                                 held=held)
        self._seq = held
        found = self._file_states()
        as_found = None if self._blocks_verified_at_open else self._keep_as_found()
        try:
            con = self._activate()
        except duckdb.Error as exc:
            if no_space(exc):   # not damage: the file stays where it is, as it is
                self._drop_as_found(as_found)
                raise self._full_at_open(exc) from None
            if out_of_memory(exc):   # not damage either
                self._drop_as_found(as_found)
                raise self._no_memory_at_open(exc) from None
            holder = lock_holder(exc)
            if holder:   # taken between the two opens
                self._drop_as_found(as_found)
                raise JournalLocked(f"the intent journal {self.path} is locked by {holder}: an engine with the same "
                                    f"instance name is running; stop it, or give this instance a name of its "
                                    f"own") from None
            return self._recover(describe(exc), committed, started, found=found, as_found=as_found)
        self._drop_as_found(as_found)
        return con

    # whether the last inspection verified every block's checksum (False: this DuckDB's checksum is not the one
    # reference.store.blocks computes, and the open keeps a copy of the files instead, see _open)
    _blocks_verified_at_open = True

    def _file_states(self) -> tuple:
        """(inode, size, mtime ns, ctime ns) of the file and of its WAL (None when absent): what a write changes.
        The kernel stamps times at its clock tick (a few ms); the open runs tens of ms after the last write of a
        crashed engine, so a write by the open shows."""
        states = []
        for p in (self.path, self.wal_path):
            try:
                st = p.stat()
                states.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except FileNotFoundError:
                states.append(None)
        return tuple(states)

    def _keep_as_found(self) -> Path:
        """Copy the file and its WAL into ``.<name>.as-found/`` beside them (the evidence, should the read-write
        open fail; see :meth:`_open`). Raises OSError (a full disk: :class:`JournalFull` at the caller's)."""
        folder = self.path.with_name(f".{self.path.name}.as-found")
        shutil.rmtree(folder, ignore_errors=True)   # left by an open that was killed: its files are still in place
        folder.mkdir()
        for src in (self.path, self.wal_path):
            if src.exists():
                shutil.copy2(src, folder / src.name)
        return folder

    @staticmethod
    def _drop_as_found(folder: Path | None) -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _full_at_open(self, exc: BaseException) -> JournalFull:
        return JournalFull(f"the intent journal {self.path} cannot be opened: no space left on the filesystem of "
                           f"{self.path.parent} ({describe(exc)}); nothing was moved or changed; free space there "
                           f"and start the engine again")

    def _no_memory_at_open(self, exc: BaseException) -> JournalNoMemory:
        return JournalNoMemory(f"the intent journal {self.path} cannot be opened: DuckDB ran out of memory "
                               f"({describe(exc)}); nothing was moved or changed (an open that runs out of memory says "
                               f"nothing about the file); free memory and start the engine again")

    def _refused(self, exc: BaseException) -> JournalFull:
        """A commit that failed for lack of space: recorded in :attr:`disk_full`, returned to raise."""
        self.disk_full = (f"intent journal {self.path}: a write was refused, no space left on the filesystem of "
                          f"{self.path.parent}; nothing was acknowledged for it and the file is not damaged; free "
                          f"space there (writes are retried)")
        return JournalFull(self.disk_full)

    def _inspect(self) -> int:
        """Read the whole file read-only; returns its high-water mark. Every value of every row is read (hashed
        inside DuckDB, not copied into Python: the load keeps only some rows, :meth:`_load`), which verifies every
        block that holds one; then every block of the file, whatever it holds, is checked against its checksum
        (see :meth:`_open`). Raises duckdb.Error (DuckDB could not read it) or _FoundDamage."""
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main'").fetchall()}
            logged = 0
            for table in ("intents", "intent_log"):
                if table in tables:
                    have = _select_columns(con, table, bare=True)
                    top = ", max(seq)" if table == "intent_log" else ", 0"
                    logged = max(logged, int(con.execute(
                        f"SELECT count(*), bit_xor(hash({have})){top} FROM {table}").fetchone()[2] or 0))
            meta = con.execute("SELECT max(value) FROM journal_meta WHERE key = 'hwm'").fetchone()[0] \
                if "journal_meta" in tables else 0
            if "failed_syncs" in tables:
                con.execute("SELECT * FROM failed_syncs").fetchall()
            block_size, total, free = self._layout(con)
        finally:
            _close_quietly(con)
        problem = self._verify_closed_file(block_size, total, free)
        if problem:
            raise _FoundDamage(problem)
        return max(int(meta or 0), logged)

    def _verify_closed_file(self, block_size: int, total: int, free: int = 0) -> str | None:
        """Every block of the file (no DuckDB session holds it: the descriptor opened and closed here would drop
        its lock) against its checksum, and its size against the blocks; the finding or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            return f"the file cannot be read: {exc.strerror}"
        try:
            self._blocks_verified_at_open = checksum_scheme_matches(fd)
            if not self._blocks_verified_at_open:
                return size_problem(os.fstat(fd).st_size, block_size, total, free)
            return verify_whole_file(fd, block_size, total, free)
        except OSError as exc:
            return f"the file cannot be read: {exc.strerror}"
        finally:
            os.close(fd)

    def _activate(self) -> duckdb.DuckDBPyConnection:
        """Open the file for writing and load it. Until it is loaded, closing the session does not fold the WAL
        into the file (see :meth:`_open`)."""
        con = self._connect(fold_on_close=False)
        try:
            self._load(con, None, None)
            con.execute("PRAGMA enable_checkpoint_on_shutdown")
        except BaseException:
            _close_quietly(con)
            raise
        return con

    def _recover(self, saw: str, committed: int, started: float, held: int | None = None, *,
                 found: tuple | None = None, as_found: Path | None = None) -> duckdb.DuckDBPyConnection:
        """Move the damaged files aside and open the best copy: the newest snapshot that verifies and opens;
        else the damaged file itself (without its WAL when the file failed to open); else an empty journal.
        After a failed read-write open: ``found``, the files' states before it (:meth:`_file_states`);
        ``as_found``, the folder of their copies made before it, if any (they are the evidence then)."""
        had_wal = self.wal_path.exists() if found is None else found[1] is not None
        if found is not None and as_found is None and self._file_states() != found:
            saw += ("; the read-write open changed the files before the damage showed: the evidence holds them as "
                    "that open left them, not as found")
        evidence = self._move_aside(saw, as_found=as_found)
        skipped: list[str] = []
        entries = self.snapshots.entries()
        if self.snapshots.manifest_note:   # said whichever copy is restored: a damaged manifest is damage too
            skipped.append(self.snapshots.manifest_note)
        for info in entries:
            if held is not None and info.hwm <= held:
                break   # the file that lost writes still holds more than this snapshot
            try:
                self.snapshots.restore(info, self.path)
            except SnapshotError as exc:
                skipped.append(str(exc))
                continue
            con, got, problem = self._try_candidate(committed)
            if con is not None:
                return self._repaired(con, saw, f"snapshot {info.file} (writes up to #{got})", evidence,
                                      committed, got, started, skipped)
            skipped.append(f"snapshot {info.file} does not open ({problem})")
            self._set_aside(evidence, f"unusable-{info.file}")
        original = evidence / self.path.name
        if original.exists() and (held is not None or had_wal):
            shutil.copyfile(original, self.path)      # a copy: the evidence stays as it was found
            if held is not None and (evidence / self.wal_path.name).exists():
                shutil.copyfile(evidence / self.wal_path.name, self.wal_path)
            con, got, problem = self._try_candidate(committed)
            if con is not None:
                what = "the file as it was (no snapshot holds more)" if held is not None \
                    else "the damaged file without its WAL"
                return self._repaired(con, saw, f"{what} (writes up to #{got})", evidence, committed, got,
                                      started, skipped)
            skipped.append(f"the damaged file without its WAL does not open ({problem})")
            self._set_aside(evidence, f"unusable-without-wal-{self.path.name}")
        self._seq = committed
        con = self._activate()
        return self._repaired(con, saw, "no copy: an empty journal (DDB-4: the engine rebuilds from the broker and "
                                        "Redis at start)", evidence, committed, 0, started, skipped)

    def _try_candidate(self, committed: int) -> tuple[duckdb.DuckDBPyConnection | None, int, str]:
        try:
            got = self._inspect()
            self._seq = max(got, committed)   # new writes are numbered after every write ever committed
            return self._activate(), got, ""
        except _FoundDamage as exc:
            return None, 0, exc.saw
        except duckdb.Error as exc:
            return None, 0, describe(exc)

    def _repaired(self, con, saw: str, recovered: str, evidence: Path, committed: int, restored: int,
                  started: float, skipped: list[str]) -> duckdb.DuckDBPyConnection:
        self.repair = Repair(str(self.path), saw, recovered, str(evidence), committed, restored,
                             time.perf_counter() - started, skipped)
        with open(evidence / "diagnosis.txt", "a", encoding="utf-8") as fh:
            fh.write(self.repair.line + "\n")
        return con

    def _move_aside(self, saw: str, copy: bool = False, as_found: Path | None = None) -> Path:
        """Move (or, for a file still in use, copy) the journal's files into a new evidence folder; the mark file
        is always copied (it still says what was committed). ``as_found``: a folder of copies made before a
        read-write open (:meth:`_keep_as_found`): they are the evidence, the files as that open left them join it
        as ``after-open-<name>``. Returns the folder."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        folder = self.backup_dir / "damaged" / f"{self.path.stem}-{stamp}"
        n = 1
        while folder.exists():
            n += 1
            folder = folder.with_name(f"{self.path.stem}-{stamp}-{n}")
        folder.mkdir(parents=True)
        for src in (self.path, self.wal_path):
            if as_found is not None:
                if (as_found / src.name).exists():
                    shutil.move(as_found / src.name, folder / src.name)
                if src.exists():
                    shutil.move(src, folder / f"after-open-{src.name}")
            elif src.exists():
                if copy:
                    shutil.copy2(src, folder / src.name)
                else:
                    shutil.move(src, folder / src.name)
        self._drop_as_found(as_found)
        if self.mark_path.exists():
            shutil.copy2(self.mark_path, folder / self.mark_path.name)
        (folder / "diagnosis.txt").write_text(f"seen: {saw}\n", encoding="utf-8")
        fsync_dir(folder)
        fsync_dir(self.path.parent)
        return folder

    def _set_aside(self, folder: Path, name: str) -> None:
        """A candidate that did not open joins the evidence (never deleted)."""
        for src, suffix in ((self.path, ""), (self.wal_path, ".wal")):
            if src.exists():
                shutil.move(src, folder / f"{name}{suffix}")

    @staticmethod
    def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        cols = ", ".join(f"{n} {t}" for n, t in _COLUMNS)
        log_cols = ", ".join(f"{n} {t.replace(' PRIMARY KEY', '')}" for n, t in _COLUMNS)
        con.execute(f"CREATE TABLE IF NOT EXISTS intents ({cols})")
        con.execute(f"CREATE TABLE IF NOT EXISTS intent_log (seq BIGINT, {log_cols})")
        con.execute("CREATE TABLE IF NOT EXISTS journal_meta (key VARCHAR PRIMARY KEY, value BIGINT)")
        for table in ("intents", "intent_log"):   # files written before the ClickHouse sync mark (CH-1)
            if not con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = "
                               "'ch_synced' AND database_name = current_database() AND schema_name = 'main'",
                               [table]).fetchone()[0]:
                con.execute(f"ALTER TABLE {table} ADD COLUMN ch_synced BOOLEAN DEFAULT false")
        failed = ", ".join(f"{n} {t}" for n, t in _FAILED_COLUMNS)
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'failed_syncs' "
            "AND database_name = current_database() AND schema_name = 'main'").fetchall()}
        if not have:
            con.execute(f"CREATE TABLE failed_syncs ({failed}, PRIMARY KEY (target, kind, sync_id))")
        elif "sync_id" not in have:
            # the table before issue 13 (orders only, keyed by signal id): the same rows, target "broker"
            con.execute("BEGIN")
            con.execute(f"CREATE TABLE failed_syncs_v2 ({failed}, PRIMARY KEY (target, kind, sync_id))")
            con.execute("INSERT INTO failed_syncs_v2 SELECT signal_id, 'broker', kind, payload, attempts, 0, "
                        "next_retry_ms, last_error, false, created_ms, created_ms FROM failed_syncs")
            con.execute("DROP TABLE failed_syncs")
            con.execute("ALTER TABLE failed_syncs_v2 RENAME TO failed_syncs")
            con.execute("COMMIT")

    def _load(self, con: duckdb.DuckDBPyConnection, _intents=None, _log=None) -> None:
        """Fold the log into ``intents``, checkpoint, and load what memory keeps (see :class:`Journal`): every
        intent that is not final or not published, and the ``memory_window`` newest published final ones; the id
        filter gets every signal id of the file. (The two unused arguments keep the signature of the load that
        took the inspection's rows: tests wrap it.)"""
        self._compact(con)
        con.execute("CHECKPOINT")
        final = _FINAL_SQL
        self._mem: dict[str, tuple] = {row[0]: tuple(row) for row in con.execute(
            f"SELECT {_NAMES} FROM intents WHERE state NOT IN ({final}) OR NOT coalesce(published, false)"
        ).fetchall()}
        # final intents with no work left, oldest first: the first to leave memory (:meth:`_trim`)
        self._recent: dict[str, None] = {}
        for row in reversed(con.execute(
                f"SELECT {_NAMES} FROM intents WHERE state IN ({final}) AND coalesce(published, false) "
                f"ORDER BY updated_ms DESC NULLS LAST, signal_id DESC LIMIT ?", [self.memory_window]).fetchall()):
            self._mem[row[0]] = tuple(row)
            self._recent[row[0]] = None
        self._ids = _IdFilter()
        for (sid,) in con.execute("SELECT signal_id FROM intents").fetchall():
            self._ids.add(sid)
        # ClickHouse's pending work is followed once its sync asks (:meth:`_ch_start`): an engine without it would
        # otherwise keep every outcome in memory as "not in ClickHouse"
        self._ch_on = False
        now = _now_ms()
        self._failed: dict[tuple[str, str, str], dict] = {}
        cur = con.execute(f"SELECT {', '.join(_FAILED_NAMES)} FROM failed_syncs")
        for values in cur.fetchall():
            row = dict(zip(_FAILED_NAMES, values))
            row["payload"] = _json_or_text(row["payload"])
            row["step"], row["next_retry_ms"] = 0, now        # BR-2: every row is tried again right after a start
            self._failed[(row["target"], row["kind"], row["sync_id"])] = row
        i_state, i_next = _INDEX["state"], _INDEX["next_try_ms"]
        for target, kind, sync_id in self._failed:
            row = self._mem.get(sync_id)
            if kind == "order" and row is not None and row[i_state] == "DEFERRED":
                self._mem[sync_id] = (*row[:i_next], now, *row[i_next + 1:])   # the engine retries it at once
        # final outcomes not yet on Redis: looked at on every loop of the engine, so kept as a set
        self._unpublished = {sid for sid, r in self._mem.items() if r[_INDEX["state"]] in FINAL_STATES
                             and not r[_INDEX["published"]]}
        # final outcomes not yet in ClickHouse (CH-1), looked at by the sync thread on every tick (from _ch_start)
        self._ch_unsynced: set[str] = set()
        self._published_pending: dict[str, tuple] = {}

    def _compact(self, con: duckdb.DuckDBPyConnection) -> None:
        """Fold the log into ``intents`` (the latest logged row of each signal replaces its row), keeping the
        high-water mark in ``journal_meta``."""
        names = ", ".join(n for n, _ in _COLUMNS)
        con.execute("BEGIN")
        try:
            con.execute(
                f"INSERT OR REPLACE INTO intents ({names}) SELECT {names} FROM intent_log "
                f"QUALIFY row_number() OVER (PARTITION BY signal_id ORDER BY seq DESC) = 1")
            logged = con.execute("SELECT max(seq) FROM intent_log").fetchone()[0] or 0
            self._seq = max(self._seq, int(logged))
            con.execute("INSERT OR REPLACE INTO journal_meta VALUES ('hwm', ?)", [self._seq])
            con.execute("DELETE FROM intent_log")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _write_mark(self) -> None:
        """Mirror the high-water mark beside the file (after the commit it follows; no fsync, see the module)."""
        if self._mark_fd is not None:
            os.pwrite(self._mark_fd, _format_mark(self._seq), 0)

    @property
    def hwm(self) -> int:
        """The number of the last write committed (monotonic across restarts)."""
        return self._seq

    def close(self) -> None:
        try:
            self.flush_published()
        except Exception:  # noqa: BLE001 - closing anyway; the flags only save a republish
            pass
        with self._lock:
            try:
                self._db.close()
            except Exception:  # noqa: BLE001
                pass
            if self._mark_fd is not None:
                os.close(self._mark_fd)
                self._mark_fd = None
            if self._read_fd is not None:
                os.close(self._read_fd)
                self._read_fd = None

    # --- intents ------------------------------------------------------------------------------------------------
    @staticmethod
    def _row(intent: Intent) -> tuple:
        row = asdict(intent)
        row["signal"] = json.dumps(row["signal"])
        row["result"] = json.dumps(row["result"])
        return tuple(row[n] for n, _ in _COLUMNS)

    def put(self, intent: Intent) -> None:
        """Write an intent's state and commit; returns only once the commit is durable."""
        self.put_many([intent])

    def put_many(self, intents: list[Intent]) -> None:
        """Write several intents' states in one transaction (group commit); durable when it returns. Published
        flags set since the last write ride along in the same transaction (older rows first)."""
        if not intents:
            return
        now = int(time.time() * 1000)
        rows = []
        for intent in intents:
            intent.updated_ms = now
            intent.ch_synced = False   # a new state of the intent: ClickHouse holds an older one at best
            rows.append(self._row(intent))
        self._write_rows(rows)

    def flush_published(self) -> None:
        """Write the published flags that wait for the next transaction (also called on close)."""
        self._write_rows([])

    def _write_rows(self, rows: list[tuple]) -> None:
        width = len(_COLUMNS) + 1
        with self._lock:
            pending = self._published_pending
            if pending:
                rows = [*pending.values(), *rows]
                self._published_pending = {}
            if not rows:
                return
            seqs = list(range(self._seq + 1, self._seq + 1 + len(rows)))
            self._seq += len(rows)
            try:
                if len(rows) <= _VALUES_MAX_ROWS:
                    values = [v for seq, row in zip(seqs, rows) for v in (seq, *row)]
                    self._db.execute(f"INSERT INTO intent_log VALUES "
                                     f"{', '.join(['(' + ', '.join('?' * width) + ')'] * len(rows))}", values)
                else:
                    # one list parameter per column, unnested: DuckDB binds 17 lists instead of 17 x N scalars,
                    # 3.2 ms instead of 29.9 ms for 256 rows (issue 11's profile: the scalar binding was 29 % of
                    # the engine's busy samples at 1,000 signals/s)
                    self._db.execute(_UNNEST_INSERT, [seqs, *map(list, zip(*rows))])
            except duckdb.Error as exc:
                if no_space(exc):
                    # rolled back: the published flags that rode along wait for the next transaction again
                    self._published_pending = {**pending, **self._published_pending}
                    raise self._refused(exc) from None
                self._write_error = describe(exc)   # seen by the health check (DDB-6)
                raise
            self.disk_full = ""
            self._write_mark()
            for row in rows:
                self._mem[row[0]] = row
                if row[_INDEX["state"]] in FINAL_STATES and not row[_INDEX["published"]]:
                    self._unpublished.add(row[0])
                else:
                    self._unpublished.discard(row[0])
                if self._ch_on and row[_INDEX["state"]] in FINAL_STATES and not row[_INDEX["ch_synced"]]:
                    self._ch_unsynced.add(row[0])
                else:
                    self._ch_unsynced.discard(row[0])
                self._follow(row)
            self._trim()

    # --- what memory keeps (see the class) ----------------------------------------------------------------------
    def _clean(self, row: tuple) -> bool:
        """A final intent with no work left: published, and in ClickHouse once its sync runs."""
        return row[_INDEX["state"]] in FINAL_STATES and bool(row[_INDEX["published"]]) and (
            not self._ch_on or bool(row[_INDEX["ch_synced"]]))

    def _follow(self, row: tuple) -> None:
        """Put the intent of ``row`` (just stored in memory) at the new end of the window, or out of it when it has
        work left (caller holds the lock)."""
        self._recent.pop(row[0], None)
        if self._clean(row):
            self._recent[row[0]] = None

    def _trim(self) -> int:
        """Drop the oldest final intents beyond ``memory_window`` from memory (their latest state is in the file
        already: every change in memory is written, a flag with the next transaction, so one whose flag waits
        stays); their ids join the id filter. Returns how many left memory. Caller holds the lock."""
        excess = len(self._recent) - self.memory_window
        if excess <= 0:
            return 0
        leaving = []
        for sid in self._recent:
            if len(leaving) >= excess:
                break
            if sid not in self._published_pending:
                leaving.append(sid)
        if not leaving:
            return 0
        for sid in leaving:
            del self._mem[sid]
            del self._recent[sid]
            self._ids.add(sid)
        return len(leaving)

    def _stored(self, where: str = "true", params: list | None = None) -> list[tuple]:
        """The latest state in the file (:data:`_LATEST`) of the signals not in memory (memory holds theirs),
        where it matches ``where``. Caller holds the lock."""
        params = list(params or [])
        rows = self._db.execute(f"SELECT {_NAMES} FROM ({_LATEST}) WHERE ({where}) AND signal_id NOT IN "
                                f"(SELECT unnest(${len(params) + 1}::VARCHAR[]))", [*params, list(self._mem)]
                                ).fetchall()
        return [tuple(r) for r in rows]

    def _lookup(self, signal_id: str) -> tuple | None:
        """The latest state of one signal: memory, else the file (``intents`` by primary key, this run's
        ``intent_log`` by a scan of its ``signal_id`` column), which is skipped when the id filter says the file
        never had it. Caller holds the lock."""
        row = self._mem.get(signal_id)
        if row is None and self._ids.maybe(signal_id):
            found = self._db.execute(
                f"SELECT {_NAMES} FROM (SELECT {_NAMES}, seq FROM intent_log WHERE signal_id = $1 UNION ALL "
                f"SELECT {_NAMES}, -1 AS seq FROM intents WHERE signal_id = $1) ORDER BY seq DESC LIMIT 1",
                [signal_id]).fetchone()
            row = tuple(found) if found else None
        return row

    def get(self, signal_id: str) -> Intent | None:
        """The latest state of the signal ``signal_id``, or None when it was never written (ENG-5's duplicate
        check): from memory (a recent or unfinished one: ~5 us; a never-seen id, by the id filter: ~1.3 us), else
        from the file (20,000 signals: 1.3 ms after a start, by primary key; 2.0 ms with 60,000 rows in this run's
        log, which is scanned, so it grows with the run's writes until the next start folds the log;
        ``benchmarks/bench_journal.py``). Raises duckdb.Error when the file cannot be read."""
        with self._lock:
            row = self._lookup(signal_id)
        return self._to_intent(row) if row else None

    def where_state(self, states: tuple[str, ...], published: bool | None = None) -> list[Intent]:
        """Intents in ``states`` (and with ``published`` when given), oldest update first. Final states are also
        read from the file (older outcomes are not in memory)."""
        i_state, i_pub, i_upd = _INDEX["state"], _INDEX["published"], _INDEX["updated_ms"]
        with self._lock:
            rows = [r for r in self._mem.values()
                    if r[i_state] in states and (published is None or bool(r[i_pub]) == published)]
            if set(states) & set(FINAL_STATES):
                where = "state IN (SELECT unnest($1::VARCHAR[]))"
                if published is not None:
                    where += " AND coalesce(published, false) = $2"
                rows += self._stored(where, [list(states)] + ([bool(published)] if published is not None else []))
        return [self._to_intent(r) for r in sorted(rows, key=lambda r: r[i_upd] or 0)]

    def in_flight(self) -> list[Intent]:
        return self.where_state(IN_FLIGHT_STATES)

    def open_intents(self) -> list[Intent]:
        """Every intent that is not final (all in memory), oldest update first."""
        with self._lock:
            states = {r[_INDEX["state"]] for r in self._mem.values()}
        return self.where_state(tuple(states - set(FINAL_STATES)))

    def unpublished(self) -> list[Intent]:
        """Final outcomes not yet published to Redis, oldest first."""
        with self._lock:
            if not self._unpublished:
                return []
            rows = [self._mem[s] for s in self._unpublished]
        return [self._to_intent(r) for r in sorted(rows, key=lambda r: r[_INDEX["updated_ms"]] or 0)]

    def published_final(self) -> list[Intent]:
        return self.where_state(FINAL_STATES, published=True)

    def mark_published(self, signal_id: str) -> None:
        self.mark_published_many([signal_id])

    def mark_published_many(self, signal_ids: list[str]) -> None:
        """Record that these outcomes are on Redis. Not a commit of its own: the flags are written with the next
        transaction (or :meth:`flush_published`). A crash before that only republishes them, which is idempotent
        (the RTRS index admits one result per entry)."""
        i_pub = _INDEX["published"]
        with self._lock:
            for sid in signal_ids:
                row = self._mem.get(sid)
                if row is None:
                    continue
                row = (*row[:i_pub], True, *row[i_pub + 1:])
                self._mem[sid] = row
                self._unpublished.discard(sid)
                self._published_pending[sid] = row
                self._follow(row)
            self._trim()

    # --- ClickHouse sync mark (CH-1, CH-2; reference.store.clickhouse_sync) ---------------------------------------
    def ch_unsynced(self, limit: int | None = None, exclude: set[str] | frozenset = frozenset()) -> list[Intent]:
        """Final outcomes not yet marked as in ClickHouse (except the signal ids in ``exclude``), oldest update
        first, at most ``limit``."""
        i_upd = _INDEX["updated_ms"]
        with self._lock:
            self._ch_start()
            if not self._ch_unsynced:
                return []
            rows = [self._mem[s] for s in self._ch_unsynced if s not in exclude]
        rows.sort(key=lambda r: r[i_upd] or 0)
        return [self._to_intent(r) for r in rows[:limit]]

    def ch_synced_final(self) -> list[Intent]:
        """Final outcomes marked as in ClickHouse (what a backfill check compares with it, CH-2)."""
        i_state, i_ch = _INDEX["state"], _INDEX["ch_synced"]
        with self._lock:
            self._ch_start()
            rows = [r for r in self._mem.values() if r[i_state] in FINAL_STATES and r[i_ch]]
            rows += self._stored(f"state IN ({_FINAL_SQL}) AND coalesce(ch_synced, false)")
        return [self._to_intent(r) for r in rows]

    def _ch_start(self) -> None:
        """From the ClickHouse sync's first call on: final outcomes not in ClickHouse are its work, kept in memory
        (those that left memory before are read back from the file). Caller holds the lock."""
        if self._ch_on:
            return
        i_state, i_ch = _INDEX["state"], _INDEX["ch_synced"]
        for row in self._stored(f"state IN ({_FINAL_SQL}) AND NOT coalesce(ch_synced, false)"):
            self._mem[row[0]] = row
        self._ch_on = True
        self._ch_unsynced = {sid for sid, r in self._mem.items() if r[i_state] in FINAL_STATES and not r[i_ch]}
        for sid in self._ch_unsynced:
            self._recent.pop(sid, None)

    def mark_ch_synced_many(self, intents: list[Intent], synced: bool = True) -> int:
        """Set (or, ``synced=False``, clear: a backfill, CH-2) the ClickHouse mark of these outcomes. An intent
        whose journal state, result or update time changed since it was read is left alone (its new state still has to be sent). Like
        the published flags, not a commit of its own: written with the next transaction or
        :meth:`flush_published` (a crash before that only resends, which ClickHouse's ReplacingMergeTree
        absorbs). Returns how many marks changed."""
        i_ch, i_upd, i_state, i_res = _INDEX["ch_synced"], _INDEX["updated_ms"], _INDEX["state"], _INDEX["result"]
        changed = 0
        with self._lock:
            self._ch_start()
            for intent in intents:
                row = self._mem.get(intent.signal_id)
                if row is None and not synced:
                    row = self._lookup(intent.signal_id)   # a backfill of an outcome no longer in memory
                if row is None or bool(row[i_ch]) == synced:
                    continue
                if row[i_upd] != intent.updated_ms or row[i_state] != intent.state or \
                        row[i_res] != json.dumps(intent.result):
                    continue   # a newer state was written meanwhile
                row = (*row[:i_ch], synced, *row[i_ch + 1:])
                self._mem[intent.signal_id] = row
                self._published_pending[intent.signal_id] = row
                if synced:
                    self._ch_unsynced.discard(intent.signal_id)
                elif row[_INDEX["state"]] in FINAL_STATES:
                    self._ch_unsynced.add(intent.signal_id)
                self._follow(row)
                changed += 1
            self._trim()
        return changed

    def live_settings(self) -> dict:
        """DDB-1 as the running DuckDB has it (read from this connection, not from our configuration):
        ``checkpoint_threshold`` (DuckDB's own spelling, e.g. '15.2 MiB' for 16 MB), ``access_mode``,
        ``skip_wal_threshold`` (DuckDB writes a commit estimated above this many bytes straight to the file, not
        the WAL), ``wal_bytes`` (pragma database_size) and the WAL file's size on disk (0 when there is none)."""
        with self._lock:
            cur = self._db.cursor()
            try:
                threshold, mode, skip = cur.execute(
                    "SELECT current_setting('checkpoint_threshold'), current_setting('access_mode'), "
                    "current_setting('auto_checkpoint_skip_wal_threshold')").fetchone()
                wal_text = cur.execute("SELECT wal_size FROM pragma_database_size()").fetchone()[0]
            finally:
                cur.close()
        try:
            on_disk = os.stat(self.wal_path).st_size
        except OSError:
            on_disk = 0
        return {"checkpoint_threshold": str(threshold), "access_mode": str(mode),
                "skip_wal_threshold": str(skip), "wal_size": str(wal_text), "wal_file_bytes": on_disk}

    def counts(self) -> dict[str, int]:
        """Intents per state ({"DONE": 120, "SENDING": 1, ...}), every intent of the journal (memory and file)."""
        out: dict[str, int] = {}
        with self._lock:
            for r in self._mem.values():
                out[r[_INDEX["state"]]] = out.get(r[_INDEX["state"]], 0) + 1
            for state, n in self._db.execute(
                    f"SELECT state, count(*) FROM ({_LATEST}) WHERE signal_id NOT IN (SELECT unnest($1::VARCHAR[])) "
                    f"GROUP BY state", [list(self._mem)]).fetchall():
                out[state] = out.get(state, 0) + int(n)
        return out

    @staticmethod
    def _to_intent(row) -> Intent:
        names = [n for n, _ in _COLUMNS]
        d = dict(zip(names, row))
        d["signal"] = json.loads(d["signal"] or "{}")
        d["result"] = json.loads(d["result"] or "{}")
        d["published"] = bool(d["published"])
        return Intent(**d)

    # --- failed_syncs (DDB-5, ORD-2, BR-2) ------------------------------------------------------------------------
    def add_failed_sync(self, signal_id: str, kind: str, payload: dict, next_retry_ms: int, last_error: str,
                        attempts: int = 0, *, target: str = "broker") -> None:
        """Record (or replace) a write that could not reach ``target`` ("broker" for ORD-2's orders, "redis",
        "clickhouse"): ``signal_id`` is its key within (target, kind), ``payload`` what to send again (JSON-able),
        ``next_retry_ms`` wall-clock epoch ms of the next try. Durable when it returns."""
        now = _now_ms()
        key = (target, kind, signal_id)
        with self._lock:
            old = self._failed.get(key)
            row = {"sync_id": signal_id, "target": target, "kind": kind, "payload": payload,
                   "attempts": int(attempts), "step": old["step"] if old else 0, "next_retry_ms": int(next_retry_ms),
                   "last_error": str(last_error)[:500], "notified": bool(old and old["notified"]),
                   "created_ms": old["created_ms"] if old else now, "updated_ms": now}
            self._commit_failed(row)
            self._failed[key] = row

    def remove_failed_sync(self, signal_id: str, kind: str | None = None, target: str | None = None) -> None:
        """Forget the failed write(s) with this key (of every kind/target unless given): it reached its target."""
        with self._lock:
            keys = [k for k in self._failed if k[2] == signal_id and (kind is None or k[1] == kind)
                    and (target is None or k[0] == target)]
            if not keys:
                return  # nearly every outcome: no DuckDB statement
            self._commit([("DELETE FROM failed_syncs WHERE target = ? AND kind = ? AND sync_id = ?", list(k))
                          for k in keys])
            for k in keys:
                del self._failed[k]

    def failed_syncs(self, target: str | None = None) -> list[dict]:
        """Every failed write (of ``target`` when given), oldest first: dicts with sync_id, target, kind, payload,
        attempts (tries so far), step (failed tries since this start), next_retry_ms (epoch ms), last_error,
        notified, created_ms, updated_ms."""
        with self._lock:
            rows = [dict(r) for r in self._failed.values() if target is None or r["target"] == target]
        return sorted(rows, key=lambda r: r["created_ms"])

    def due_failed_syncs(self, now_ms: int, targets: set[str] | None = None) -> list[dict]:
        """The failed writes whose next try is due at ``now_ms`` (of ``targets`` when given), oldest first."""
        return [r for r in self.failed_syncs() if r["next_retry_ms"] <= now_ms
                and (targets is None or r["target"] in targets)]

    def failed_sync_done(self, target: str, kind: str, sync_id: str) -> None:
        """The write reached its target: its row goes."""
        self.remove_failed_sync(sync_id, kind, target)

    def failed_sync_failed(self, target: str, kind: str, sync_id: str, error: str, policy: RetryPolicy,
                           now_ms: int) -> tuple[dict, bool]:
        """One more failed try: attempts and step grow, the next try follows ``policy`` (BR-2). Returns the row
        and whether the user must be notified now (once, when BR-2's retries are spent). Raises KeyError for a
        row that is not there."""
        key = (target, kind, sync_id)
        with self._lock:
            row = dict(self._failed[key])
            step = row["step"] + 1
            wait_s, tell = policy.after_failure(step)
            row.update(attempts=row["attempts"] + 1, step=step, next_retry_ms=now_ms + int(wait_s * 1000),
                       last_error=str(error)[:500], notified=row["notified"] or tell, updated_ms=_now_ms())
            self._commit_failed(row)
            self._failed[key] = row
        return dict(row), tell

    def _commit_failed(self, row: dict) -> None:
        values = [json.dumps(row["payload"]) if n == "payload" else row[n] for n in _FAILED_NAMES]
        self._commit([(f"INSERT OR REPLACE INTO failed_syncs ({', '.join(_FAILED_NAMES)}) VALUES "
                       f"({', '.join('?' * len(_FAILED_NAMES))})", values)])

    def _commit(self, statements: list[tuple[str, list]]) -> None:
        """Run ``statements`` in one transaction that also moves the high-water mark (caller holds the lock)."""
        self._seq += 1
        try:
            self._db.execute("BEGIN")
            for sql, params in statements:
                self._db.execute(sql, params)
            self._db.execute("INSERT OR REPLACE INTO journal_meta VALUES ('hwm', ?)", [self._seq])
            self._db.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                self._db.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if no_space(exc):
                raise self._refused(exc) from None
            self._write_error = describe(exc)
            raise
        self.disk_full = ""
        self._write_mark()

    # --- snapshots and health (DDB-2, DDB-3, DDB-6) -----------------------------------------------------------------
    def snapshot(self, force: bool = False) -> SnapshotInfo | None:
        """A consistent snapshot into ``backup_dir`` when something was written since the last one (or
        ``force``); None when there was nothing new. Writers wait while it checkpoints and copies the file
        (``snapshots.last_blocked_s`` seconds; the fsync and sha256 run after, without the lock; DDB-2). Raises SnapshotError (also once the journal is closed)."""
        if not force and self._seq == self._snapshot_hwm:
            return None
        info = self.snapshots.take(self._lock, self._live, _hwm_of)
        self._snapshot_hwm = info.hwm
        self.last_snapshot = info
        return info

    def _live(self) -> tuple[duckdb.DuckDBPyConnection, int]:
        """The live connection and the descriptor the file is read through (caller holds the lock: a repair
        replaces both under it)."""
        if self._read_fd is None:
            raise SnapshotError(f"snapshot of {self.path} failed: the journal is closed")
        return self._db, self._read_fd

    def health(self) -> str | None:
        """DDB-6: None when the journal is sound, else what is wrong in one clause: a write failed, the file is
        gone or was replaced, its header is no longer DuckDB's, it is shorter than the blocks DuckDB says it
        occupies (cut), a block's bytes on disk fail their checksum (the next ``verify_mb_per_check`` MB of
        blocks, one pass over the file every ceil(size / that) calls), or a read of it fails."""
        if self._write_error:
            return f"a write failed: {self._write_error}"
        identity = self._file_identity()
        if identity is None:
            return "the file is gone"
        if identity != self._identity:
            return "the file was replaced by another one while open"
        try:
            head = os.pread(self._read_fd, 12, 0)
        except OSError as exc:
            return f"the file cannot be read: {exc.strerror}"
        if head[8:12] != b"DUCK":
            try:
                short = short_file(os.fstat(self._read_fd).st_size)
            except OSError:
                short = None
            return short or "the file header is no longer a DuckDB header (zeroed or overwritten)"
        with self._lock:   # no commit (and so no checkpoint) between the pragma and the stat
            cur = self._db.cursor()
            try:
                block_size, total, free = self._layout(cur)
                size = os.stat(self.path).st_size
            except duckdb.Error as exc:
                cur.close()
                return describe(exc)
            except OSError as exc:
                cur.close()
                return f"the file cannot be read: {exc.strerror}"
        try:
            problem = size_problem(size, block_size, total, free)
            if problem:
                return problem
            if not self.block_check_off:
                problem = self._verify_blocks(block_size, total)
                if problem:
                    return problem
            cur.execute("SELECT count(*) FROM intents").fetchone()
        except duckdb.Error as exc:
            return describe(exc)
        finally:
            cur.close()
        return None

    @staticmethod
    def _layout(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
        """(block size in bytes, blocks the database occupies, how many of them are free) as DuckDB says."""
        row = cur.execute("SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
                          "WHERE database_name = current_database()").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def _verify_blocks(self, block_size: int, total: int) -> str | None:
        """The next slice of block checksums, read without the lock; a failure is read again under the lock (no
        write then) before it is called damage."""
        try:
            step = self._blocks.step(self._read_fd, block_size, total)
            if not step.bad:
                return None
            with self._lock:
                bad = self._blocks.confirm(self._read_fd, step.bad, block_size)
        except OSError as exc:
            return f"the file cannot be read: {exc.strerror}"
        if not bad:
            return None
        return bad_block_finding(bad, block_size)

    def rebuild_from_memory(self, saw: str) -> Repair:
        """Replace a file found damaged while open with a fresh one written from the in-memory copy plus the
        intents no longer in memory (:meth:`_older_rows`: read from the open file, which DuckDB answers from its
        buffer pool and verified blocks; when that read fails, from the newest snapshot that verifies, which
        holds every outcome older than the window). The fresh file is written first; only then is the damaged
        file kept (copied as it was, then moved aside once closed) and replaced. Returns the repair (``line`` for the alert); raises
        :class:`JournalFull` when there is no space for the fresh file or the evidence (nothing moved, the open
        file stays in use, the next health check tries again), JournalError when the swap itself failed."""
        started = time.perf_counter()
        with self._lock:
            tmp = self.path.with_name(f".{self.path.name}.rebuilding")
            evidence = None
            try:
                for leftover in (tmp, Path(str(tmp) + ".wal")):
                    leftover.unlink(missing_ok=True)
                older, source = self._older_rows()
                con = self._connect(tmp)
                try:
                    self._fill(con, older)
                finally:
                    _close_quietly(con)
                evidence = self._move_aside(saw, copy=True)
            except (OSError, duckdb.Error) as exc:
                for leftover in (tmp, Path(str(tmp) + ".wal")):
                    leftover.unlink(missing_ok=True)
                if no_space(exc):
                    raise JournalFull(f"intent journal {self.path}: {saw}, and there is no space for a fresh file "
                                      f"and the evidence in {self.path.parent}; nothing was moved, the file stays "
                                      f"in use; free space there (the health check tries again)") from None
                raise JournalError(f"intent journal {self.path}: {saw}, and a fresh file could not be written "
                                   f"({describe(exc)}); the file stays in use; restart the engine") from None
            try:
                _close_quietly(self._db)
                self._set_aside(evidence, f"after-close-{self.path.name}")
                os.replace(tmp, self.path)
                fsync_dir(self.path.parent)
                self._db = self._connect()
                old_fd, self._read_fd = self._read_fd, os.open(self.path, os.O_RDONLY)
                os.close(old_fd)   # the damaged file's: its lock went with its connection
            except (OSError, duckdb.Error) as exc:
                raise JournalError(f"intent journal {self.path}: {saw}, and the fresh file could not replace it "
                                   f"({describe(exc)}); damaged files in {evidence}; restart the engine") from None
            self._identity = self._file_identity()
            self._write_error = ""
            self._published_pending = {}
            self._blocks.reset()
            self._write_mark()
            self.repair = Repair(str(self.path), saw, f"a fresh file written from the engine's memory "
                                 f"({len(self._mem)} intents, {len(self._failed)} failed syncs, writes up to "
                                 f"#{self._seq}) and {len(older)} older intents from {source}", str(evidence),
                                 self._seq, self._seq,
                                 time.perf_counter() - started)
            with open(evidence / "diagnosis.txt", "a", encoding="utf-8") as fh:
                fh.write(self.repair.line + "\n")
        self._snapshot_hwm = -1
        return self.repair

    def _older_rows(self) -> tuple[list[tuple], str]:
        """The intents not in memory, and where they were read: the open file, else the newest snapshot that
        verifies (its ``intents`` overlaid by its ``intent_log``). Caller holds the lock."""
        try:
            return self._stored(), "the damaged file (DuckDB read it)"
        except duckdb.Error as exc:
            unread = describe(exc)
        tried = []
        for info in self.snapshots.entries():
            copy = self.path.with_name(f".{self.path.name}.older")
            try:
                self.snapshots.restore(info, copy)
                con = duckdb.connect(str(copy), read_only=True)
                try:
                    rows = con.execute(
                        f"SELECT {_NAMES} FROM (SELECT {_select_columns(con, 'intents')}, -1 AS seq FROM intents "
                        f"UNION ALL SELECT {_select_columns(con, 'intent_log')}, seq FROM intent_log) "
                        f"QUALIFY row_number() OVER (PARTITION BY signal_id ORDER BY seq DESC) = 1").fetchall()
                finally:
                    _close_quietly(con)
            except (SnapshotError, duckdb.Error, OSError) as exc:
                tried.append(f"snapshot {info.file}: {describe(exc) if isinstance(exc, duckdb.Error) else exc}")
                continue
            finally:
                for leftover in (copy, Path(str(copy) + ".wal")):
                    leftover.unlink(missing_ok=True)
            return ([tuple(r) for r in rows if r[0] not in self._mem],
                    f"snapshot {info.file} (the damaged file could not be read: {unread})")
        return [], (f"nowhere: the damaged file could not be read ({unread}) and no snapshot could"
                    + (f" ({'; '.join(tried)})" if tried else "") + "; older outcomes are only at the broker and in "
                    "Redis")

    def _fill(self, con: duckdb.DuckDBPyConnection, older: list[tuple], chunk: int = 500) -> None:
        rows = [*self._mem.values(), *older]
        width = len(_COLUMNS)
        con.execute("BEGIN")
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            con.execute(f"INSERT INTO intents VALUES {', '.join(['(' + ', '.join('?' * width) + ')'] * len(part))}",
                        [v for r in part for v in r])
        for row in self._failed.values():
            con.execute(f"INSERT INTO failed_syncs ({', '.join(_FAILED_NAMES)}) VALUES "
                        f"({', '.join('?' * len(_FAILED_NAMES))})",
                        [json.dumps(row["payload"]) if n == "payload" else row[n] for n in _FAILED_NAMES])
        con.execute("INSERT OR REPLACE INTO journal_meta VALUES ('hwm', ?)", [self._seq])
        con.execute("COMMIT")
        con.execute("CHECKPOINT")


def in_flight_in_file(path: str | Path) -> list[str]:
    """The signal ids whose newest state in the journal file ``path`` is in flight (``SENDING`` or ``UNKNOWN``:
    an ``order_send`` that may have reached the broker with no answer recorded), read read-only from the compacted
    ``intents`` table overlaid by ``intent_log`` (newest ``seq`` wins). For the supervisor's crash handoff
    (``handoff.release_after_exit``, ENG-1/ENG-5) after the writer has exited; a missing file is ``[]``.
    Raises duckdb.Error when the file cannot be read (the caller then keeps the lease TTL)."""
    path = Path(path)
    if not path.exists():
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main'").fetchall()}
        parts = []
        if "intents" in tables:
            parts.append("SELECT signal_id, state, -1 AS seq FROM intents")
        if "intent_log" in tables:
            parts.append("SELECT signal_id, state, seq FROM intent_log")
        if not parts:
            return []
        states = ", ".join(f"'{s}'" for s in IN_FLIGHT_STATES)
        rows = con.execute(f"SELECT signal_id FROM ({' UNION ALL '.join(parts)}) "
                           f"QUALIFY row_number() OVER (PARTITION BY signal_id ORDER BY seq DESC) = 1 "
                           f"AND state IN ({states}) ORDER BY signal_id").fetchall()
        return [r[0] for r in rows]
    finally:
        _close_quietly(con)


def _select_columns(con: duckdb.DuckDBPyConnection, table: str, bare: bool = False) -> str:
    """The select list of ``table`` in ``_COLUMNS`` order; a column an older file lacks reads as false/NULL
    (``bare``: only the columns it has)."""
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name = current_database() "
        "AND schema_name = 'main'", [table]).fetchall()}
    if bare:
        return ", ".join(n for n, _t in _COLUMNS if n in have)
    return ", ".join(n if n in have else ("false" if t == "BOOLEAN" else "NULL") + f" AS {n}" for n, t in _COLUMNS)


def _close_quietly(con) -> None:
    try:
        con.close()
    except Exception:  # noqa: BLE001 - a damaged database may fail its checkpoint on close; it is evidence now
        pass


def _json_or_text(value):
    try:
        return json.loads(value) if value else {}
    except (TypeError, ValueError):
        return value
