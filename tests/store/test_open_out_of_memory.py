"""An open of the journal that runs out of memory is not damage (found 2026-12-01 while trying a 16 MB DuckDB
memory_limit for the journal: a sound 12 MB journal failed to open with "Out of Memory Error: could not allocate
block of size 256.0 KiB", and the engine moved it to backup/duckdb/damaged/ and started from a snapshot). Such an
open now refuses in one line (JournalNoMemory, exit status 75) and leaves every file as it was: a lack of memory
says nothing about the file, like a full disk (JournalFull)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from reference.engine import journal as journal_mod
from reference.engine.journal import Journal, JournalNoMemory

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_store  # noqa: E402


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_open_out_of_memory_moves_nothing_and_says_so(tmp_path, monkeypatch):
    db = tmp_path / "journal-A.duckdb"
    rows = bench_store.build_journal(db, 12, 768)
    before = _digest(tmp_path)
    connect = Journal._connect

    def starved(self, *args, **kwargs):   # DuckDB given less memory than the open needs
        con = connect(self, *args, **kwargs)
        con.execute("SET memory_limit = '16MB'")
        return con

    monkeypatch.setattr(Journal, "_connect", starved)
    with pytest.raises(JournalNoMemory) as err:
        Journal(db)
    message = str(err.value)
    assert "ran out of memory" in message and "nothing was moved or changed" in message and "\n" not in message
    assert err.value.exit_status == 75
    assert _digest(tmp_path) == before                      # no evidence folder, no restore, the file as it was
    assert not (tmp_path / "backup").exists()
    monkeypatch.setattr(Journal, "_connect", connect)       # with memory, the same file opens whole
    journal = Journal(db)
    try:
        assert journal.repair is None and journal.hwm == rows
    finally:
        journal.close()


def test_out_of_memory_is_told_from_other_errors():
    import duckdb

    assert journal_mod.out_of_memory(duckdb.OutOfMemoryException("Out of Memory Error: could not allocate"))
    assert not journal_mod.out_of_memory(duckdb.IOException("Could not read enough bytes from file"))
