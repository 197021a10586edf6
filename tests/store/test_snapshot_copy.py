"""A snapshot is CHECKPOINT + a copy of the file under the journal's write lock (issue 16; DDB-2, DDB-3): each one
opens alone (no WAL beside it) with exactly the writes its name says, also while another thread writes all along;
the live journal keeps its file lock and goes on writing; a checkpoint that leaves a WAL behind is refused, not
copied; and the time writers waited is said."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from reference.engine.journal import Intent, Journal, _hwm_of
from reference.store.snapshots import SnapshotError, SnapshotSet

from .conftest import REPO


def _intent(i: int, state: str = "SENDING") -> Intent:
    return Intent(signal_id=f"s{i}", entry_id=f"{i}-0", signal={"symbol": "EURUSD", "n": i}, state=state,
                  attempt=1, comment=f"tds{i}-1", broker="primary")


def _alone(snapshot: Path, folder: Path) -> Path:
    """The snapshot copied into an empty folder (nothing beside it: no WAL, no mark)."""
    folder.mkdir()
    return Path(shutil.copy2(snapshot, folder / "journal-A.duckdb"))


def _held(path: Path) -> tuple[int, set[str]]:
    """(high-water mark, signal ids) of a journal file, read read-only."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        ids = {r[0] for r in con.execute("SELECT signal_id FROM intents UNION SELECT signal_id FROM intent_log")
               .fetchall()}
        return _hwm_of(con), ids
    finally:
        con.close()


def test_a_snapshot_opens_alone_with_every_write_and_the_journal_writes_on(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db)
    try:
        for i in range(40):
            journal.put(_intent(i))
        assert Path(str(db) + ".wal").exists()
        info = journal.snapshot()
        assert not Path(str(db) + ".wal").exists() or Path(str(db) + ".wal").stat().st_size == 0  # folded
        assert info.hwm == journal.hwm == 40 and journal.snapshots.verify(info) is None
        assert 0 <= journal.snapshots.last_blocked_s <= info.took_s
        journal.put(_intent(40))                          # the live journal goes on after its snapshot
        assert journal.get("s40") is not None and journal.hwm == 41
    finally:
        journal.close()
    copy = _alone(journal.snapshots.path_of(info), tmp_path / "alone")
    hwm, ids = _held(copy)
    assert hwm == 40 and ids == {f"s{i}" for i in range(40)}
    again = Journal(copy)                                 # what a restore opens: sound, no repair
    try:
        assert again.repair is None and len(again.in_flight()) == 40
    finally:
        again.close()


def test_snapshots_taken_while_a_thread_writes_are_each_one_consistent_state(tmp_path):
    journal = Journal(tmp_path / "journal-A.duckdb", snapshots_kept=10)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        n = 0
        try:
            while not stop.is_set():
                journal.put_many([_intent(n), _intent(n + 1)])
                n += 2
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    taken = []
    try:
        deadline = time.monotonic() + 60
        while len(taken) < 8 and time.monotonic() < deadline:
            if journal.hwm > (taken[-1].hwm if taken else 0):
                taken.append(journal.snapshot(force=True))
                folder = tmp_path / f"alone-{len(taken)}"
                hwm, ids = _held(_alone(journal.snapshots.path_of(taken[-1]), folder))
                # exactly the writes up to its mark: two intents a transaction, none torn, none missing
                assert hwm == taken[-1].hwm and hwm % 2 == 0 and ids == {f"s{i}" for i in range(hwm)}
    finally:
        stop.set()
        thread.join(timeout=30)
        journal.close()
    assert not errors, errors
    assert len(taken) == 8, f"only {len(taken)} snapshots in 60 s"


def test_a_snapshot_keeps_the_journal_locked_against_another_process(tmp_path):
    """The copy reads through the journal's own descriptor: closing another one of the file would drop DuckDB's
    POSIX lock, and a second engine could then open the same journal."""
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db)
    try:
        journal.put(_intent(0))
        journal.snapshot()
        out = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r})"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "lock" in out.stderr.lower(), out.stderr[-400:]
    finally:
        journal.close()


class _NoCheckpoint:
    """A connection whose CHECKPOINT does nothing (as if a commit had slipped past the write lock)."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        return self.con if sql.strip().upper() == "CHECKPOINT" else self.con.execute(sql, *args)


def test_a_checkpoint_that_leaves_a_wal_is_refused_not_copied(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    con = duckdb.connect(str(db))
    fd = None
    try:
        con.execute("CREATE TABLE intent_log (seq BIGINT)")
        con.execute("CREATE TABLE journal_meta (key VARCHAR, value BIGINT)")
        con.execute("CHECKPOINT")
        con.execute("INSERT INTO intent_log VALUES (1)")    # committed, in the WAL only
        assert Path(str(db) + ".wal").stat().st_size > 0
        fd = os.open(db, os.O_RDONLY)
        snaps = SnapshotSet(db, tmp_path / "backup")
        with pytest.raises(SnapshotError, match=r"journal-A\.duckdb\.wal still holds \d+ bytes after CHECKPOINT"):
            snaps.take(threading.Lock(), lambda: (_NoCheckpoint(con), fd), _hwm_of)
        assert snaps.entries() == [] and list((tmp_path / "backup").iterdir()) == []   # no partial left
        info = snaps.take(threading.Lock(), lambda: (con, fd), _hwm_of)                  # a real checkpoint
        assert info.hwm == 1
    finally:
        if fd is not None:
            os.close(fd)
        con.close()
