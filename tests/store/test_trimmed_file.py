"""A sound journal whose free blocks DuckDB trimmed off the end of the file opens as it is (no repair).

``data/free-tail-trimmed.duckdb.gz`` is the journal an engine of tests/engine/test_rts_recovery.py closed cleanly on
2026-12-01: its header counts 5 blocks of 256 KiB, one of them free, and the file holds 4 (DuckDB trimmed the free
one at the end). The next start called it "truncated", moved it aside as damaged and restored the last snapshot,
one committed write older (the published flag of the last signal): a flaky test, and a sound journal thrown away.
A file cut inside a block, or below its used blocks, is still damage."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import duckdb

from reference.engine.journal import Journal
from reference.store.blocks import HEADERS_BYTES, size_problem

DATA = Path(__file__).with_name("data") / "free-tail-trimmed.duckdb.gz"
BLOCK = 262144


def _unpack(tmp_path: Path) -> Path:
    path = tmp_path / "journal-A.duckdb"
    with gzip.open(DATA, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def test_the_file_is_what_the_engine_left(tmp_path):
    path = _unpack(tmp_path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        total, free = con.execute("SELECT total_blocks, free_blocks FROM pragma_database_size()").fetchone()
        logged = con.execute("SELECT count(*) FROM intent_log").fetchone()[0]
    finally:
        con.close()
    assert (total, free) == (5, 1) and os.path.getsize(path) == HEADERS_BYTES + 4 * BLOCK and logged == 20


def test_a_journal_with_its_free_tail_trimmed_opens_without_a_repair(tmp_path):
    path = _unpack(tmp_path)
    journal = Journal(path)
    try:
        assert journal.repair is None, journal.repair.line
        assert journal.hwm == 20
        assert journal.counts() == {"DONE": 6, "REJECTED": 1}
        assert journal.health() is None
    finally:
        journal.close()
    assert not (tmp_path / "backup" / "duckdb" / "damaged").exists()


def test_a_cut_inside_a_block_or_below_the_used_blocks_is_still_damage(tmp_path):
    assert size_problem(HEADERS_BYTES + 4 * BLOCK, BLOCK, 5, 1) is None
    assert size_problem(HEADERS_BYTES + 5 * BLOCK, BLOCK, 5, 1) is None
    assert "truncated" in size_problem(HEADERS_BYTES + 4 * BLOCK - 100, BLOCK, 5, 1)
    assert "truncated" in size_problem(HEADERS_BYTES + 3 * BLOCK, BLOCK, 5, 1)
    assert "truncated" in size_problem(HEADERS_BYTES + 4 * BLOCK, BLOCK, 5, 0)
    path = _unpack(tmp_path)
    os.truncate(path, HEADERS_BYTES + 3 * BLOCK + 4096)
    journal = Journal(path)
    try:
        assert journal.repair is not None and "truncated" in journal.repair.line, journal.repair
    finally:
        journal.close()
