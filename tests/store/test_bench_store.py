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
