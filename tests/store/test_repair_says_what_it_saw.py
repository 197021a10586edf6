"""Damage a new user made by hand, each diagnosed for what it is (issue 13: "every diagnosis names what it saw"):
a journal emptied to 0 bytes (``: > journal-A.duckdb``) is not a "zeroed header", a damaged manifest is said even
when a snapshot is restored, and a garbled mark file (the silent-loss detector) is not ignored in silence."""
from __future__ import annotations

import os
from pathlib import Path

from reference.engine.journal import Intent, Journal
from reference.store.keeper import StoreKeeper

from .conftest import write_journal
from .test_keeper import Recorder


def test_a_journal_emptied_to_0_bytes_is_named_empty_not_zeroed(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 10)
    os.truncate(db, 0)
    journal = Journal(db)
    try:
        saw = journal.repair.saw
        assert "empty (0 bytes" in saw and "zeroed" not in saw, saw
        assert str(db) in journal.repair.line and len(journal.in_flight()) == 10
    finally:
        journal.close()


def test_a_journal_emptied_under_the_running_engine_is_named_empty(tmp_path):
    journal = Journal(tmp_path / "journal-A.duckdb")
    try:
        for i in range(5):
            journal.put(Intent(signal_id=f"s{i}", entry_id=f"{i}-0", signal={}, state="SENDING"))
        rec = Recorder()
        keeper = StoreKeeper(journal, emit=rec.emit, alert=rec.alert)
        os.truncate(journal.path, 0)
        keeper.check_health()
        [seen] = rec.named("journal_unhealthy")
        assert "empty (0 bytes" in seen["problem"] and "zeroed" not in seen["problem"], seen
        [(kind, message, _fields)] = rec.alerts
        assert kind == "journal_repaired" and "empty (0 bytes" in message and "\n" not in message
    finally:
        journal.close()


def test_a_damaged_manifest_is_said_when_a_snapshot_is_restored(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 20)
    write_journal(db, 10, first=20)
    folder = tmp_path / "backup" / "duckdb"
    (folder / "journal-A.manifest.json").write_bytes(b"{garbage")
    broken = folder / "journal-A.h999999999999.t1.duckdb"    # newest by name, does not open
    broken.write_bytes(b"\x00" * 8192)
    os.truncate(db, 0)
    journal = Journal(db)
    try:
        repair = journal.repair
        assert repair is not None and "snapshot journal-A.h" in repair.recovered, repair.line
        line = repair.line
        assert "manifest" in line and "is damaged" in line, line
        assert broken.name in line and "does not open" in line, line
        assert "\n" not in line
    finally:
        journal.close()


def test_a_garbled_mark_is_reported_once_by_the_keeper(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 12, snapshot=False)
    mark = Path(str(db) + ".hwm")
    mark.write_text("zzz")
    journal = Journal(db)
    try:
        assert journal.repair is None
        rec = Recorder()
        keeper = StoreKeeper(journal, emit=rec.emit, alert=rec.alert)
        keeper.check_health()
        keeper.check_health()
        [seen] = rec.named("journal_mark_ignored")
        assert seen["file"] == str(mark)
        [(kind, message, fields)] = rec.alerts
        assert kind == "journal_mark_ignored" and fields["file"] == str(mark)
        assert str(db) in message and mark.name in message and "'zzz'" in message and "\n" not in message
    finally:
        journal.close()
