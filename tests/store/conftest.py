"""Fixtures for the store tests: real DuckDB journals written by a separate process that dies without closing
them (so the WAL holds the last writes, as after a crash)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def write_journal(db: Path, intents: int = 50, *, first: int = 0, snapshot: bool = True,
                  state: str = "SENDING", after: int = 0) -> int:
    """Write ``intents`` intents into ``db`` from another process that then crashes; returns the high-water mark
    it reached. ``snapshot``: one snapshot after them (it checkpoints: the file then holds them all, no WAL);
    ``after``: final intents written after the snapshot (in the WAL only, as between two snapshots)."""
    cmd = [sys.executable, "-m", "tests.store.journal_writer", str(db), "--intents", str(intents),
           "--first", str(first), "--state", state, "--after", str(after)] + (["--snapshot"] if snapshot else [])
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[1])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def crashed_journal(tmp_path) -> Path:
    """``journal-A.duckdb`` with 50 in-flight (SENDING) intents, a snapshot of all of them, and a WAL (5 final
    intents written after the snapshot)."""
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, after=5)
    assert Path(str(db) + ".wal").exists()
    return db
