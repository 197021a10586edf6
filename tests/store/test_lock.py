"""A journal held by another live process is reported as a lock (naming that process) and left untouched; a
journal whose writer died is not (issue 13: a damaged file was misreported as "another engine is running")."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reference.engine.journal import Journal, JournalLocked

from .conftest import REPO, digest, write_journal


@pytest.fixture
def holder(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "tests.store.journal_writer", str(db), "--intents", "5",
                             "--hold"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready"), "the holder did not open the journal"
        yield db, proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_lock_held_by_a_live_process_is_reported_as_such(holder):
    db, proc = holder
    before = {p.name: digest(p) for p in db.parent.glob("journal-A.duckdb*")}
    with pytest.raises(JournalLocked) as info:
        Journal(db)
    message = str(info.value)
    assert "\n" not in message and f"PID {proc.pid}" in message and "same instance name" in message, message
    assert {p.name: digest(p) for p in db.parent.glob("journal-A.duckdb*")} == before
    assert not (db.parent / "backup" / "duckdb" / "damaged").exists()


def test_a_dead_writer_leaves_no_lock(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 5)          # the writer exits without closing (a crash)
    journal = Journal(db)
    try:
        assert journal.repair is None and len(journal.in_flight()) == 5
    finally:
        journal.close()


def test_the_engine_command_reports_the_lock_in_one_line(holder, tmp_path):
    db, proc = holder
    out = subprocess.run([sys.executable, "-m", "reference.engine", "run", "--instance", "A", "--state-dir",
                          str(db.parent)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 75, (out.returncode, out.stderr)  # JournalLocked.exit_status
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"PID {proc.pid}" in lines[0] and "locked" in lines[0], lines[0]
