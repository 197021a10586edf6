"""benchmarks/bench_store.py builds its journal through the journal's own schema (a column added later, such as
``ch_synced``, broke its hand-written INSERT: 'table "intents" has 16 columns but 15 values were supplied'), and the
file is the size asked for (DDB-3's 256 MB file came out 354 MB)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_store  # noqa: E402

from reference.engine.journal import Journal  # noqa: E402


def test_build_journal_fills_every_column_and_reaches_the_size(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    rows = bench_store.build_journal(db, 12, 768)
    size = db.stat().st_size
    assert abs(size - 12_000_000) <= 12_000_000 * 0.05, size   # within DuckDB's block granularity
    journal = Journal(db)
    try:
        assert journal.repair is None
        assert journal.hwm == rows
        assert journal.counts().get("DONE") == rows
        one = journal.get("sig-7")
        assert one.state == "DONE" and one.result["order"] == 7 and one.published and not one.ch_synced
    finally:
        journal.close()


def test_open_figures_time_a_crashed_journal_with_its_wal_and_a_clean_one(tmp_path):
    """The open figures are of the journal as a crash leaves it (a WAL) and after a clean restart, every open
    sound (no timing asserted: figures only)."""
    figures = bench_store.open_figures(tmp_path, 300, 1)
    assert figures["signals"] == 300 and figures["wal_bytes"] > 0
    for case in ("with_wal", "no_wal"):
        assert set(figures[case]) == {"journal_open_s", "floor_duckdb_open_s", "block_check_s", "copy_files_s"}
        assert all(figures[case][k]["samples"] == 1 for k in figures[case])
