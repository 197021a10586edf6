"""Every corruption mode of ``faults/files.py`` against a journal holding 50 in-flight intents: detected, the
damaged files kept byte for byte, the snapshot restored, one clear line (DDB-3, issue 13)."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from faults.files import CorruptDuckDB, LostUnfsyncedWrites
from reference.engine.journal import Intent, Journal

from .conftest import digest, write_journal

# what the diagnosis must say for each mode (a torn WAL page is either a failed checksum or a cut tail; a garbled
# WAL byte either fails its checksum or, where DuckDB stops replaying without an error, leaves fewer writes than
# the high-water mark: both are found, each named for what was seen)
SAW = {
    "flip-block": ["fails its checksum"],
    "zero-header": ["not a DuckDB header"],
    "truncate": ["truncated"],
    "wal-truncate": ["silently lost"],
    "wal-garble": ["WAL fails its checksum", "silently lost"],
    "torn-write": ["WAL fails its checksum", "silently lost"],
}


# seed 1's flip lands on a block the read-only inspection's queries do not read (DuckDB reads it first in the
# read-write open's fold, once the WAL may already be in the file): its files are kept as found too, because the
# open checks every block's checksum before it writes anything (issue 16; index blocks: test_open_keeps_evidence)
@pytest.mark.parametrize("mode, seed", [(m, s) for m in CorruptDuckDB.MODES for s in (1, 2)])
def test_each_corruption_is_repaired_from_the_snapshot(crashed_journal, mode, seed):
    db = crashed_journal
    with CorruptDuckDB(db, mode, random.Random(seed), restore_on_heal=False) as fault:
        damaged = {p.name: digest(p) for p in (db, Path(str(db) + ".wal")) if p.exists()}
    journal = Journal(db)
    try:
        repair = journal.repair
        assert repair is not None, f"{fault.describe()} was not detected"
        line = repair.line
        assert "\n" not in line and str(db) in line and "snapshot" in line, line
        assert any(s in line for s in SAW[mode]), f"{mode}: {line}"
        # the 50 in-flight intents are back, so the engine's start reconciles each of them with the broker
        assert sorted(i.signal_id for i in journal.in_flight()) == sorted(f"s{i}" for i in range(50))
        evidence = Path(repair.evidence)
        kept = {name: digest(evidence / name) for name in damaged}
        assert kept == damaged, "the damaged files must be kept exactly as they were found"
        assert str(db) in (evidence / "diagnosis.txt").read_text()
        journal.put(Intent(signal_id="after", entry_id="1-1", signal={}, state="SENDING"))
    finally:
        journal.close()
    again = Journal(db)
    try:
        assert again.repair is None and again.get("after") is not None and len(again.in_flight()) == 51
    finally:
        again.close()


def test_a_snapshot_that_fails_its_checksum_is_skipped(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 20)                  # snapshot 1: s0..s19
    write_journal(db, 10, first=20)        # snapshot 2: s0..s29
    snaps = sorted((tmp_path / "backup" / "duckdb").glob("journal-A.h*.duckdb"))
    assert len(snaps) == 2
    newest = snaps[-1]
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(bytes(raw))
    with CorruptDuckDB(db, "zero-header", random.Random(0), restore_on_heal=False):
        pass
    journal = Journal(db)
    try:
        line = journal.repair.line
        assert f"skipped: snapshot {newest.name} fails its sha256" in line, line
        assert snaps[0].name in line and len(journal.in_flight()) == 20
        assert journal.repair.missing_writes == 10, line   # said, not hidden: s20..s29 go to the broker lookup
        assert "10 committed write(s) newer than that" in line
    finally:
        journal.close()


def test_no_snapshot_at_all_starts_empty_and_says_so(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 10, snapshot=False)
    with CorruptDuckDB(db, "zero-header", random.Random(0), restore_on_heal=False):
        pass
    journal = Journal(db)
    try:
        assert "an empty journal" in journal.repair.line and journal.repair.missing_writes == 10
        assert journal.in_flight() == []
        assert (Path(journal.repair.evidence) / db.name).exists()
    finally:
        journal.close()


def test_a_garbled_wal_without_snapshot_falls_back_to_the_file_without_its_wal(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 10, snapshot=False)
    write_journal(db, 5, first=10, snapshot=False)   # the first 10 are checkpointed into the file at open
    with CorruptDuckDB(db, "wal-garble", random.Random(3), restore_on_heal=False):
        pass
    journal = Journal(db)
    try:
        assert "the damaged file without its WAL" in journal.repair.line, journal.repair.line
        assert len(journal.in_flight()) == 10
    finally:
        journal.close()


# --- silent loss ------------------------------------------------------------------------------------------------

def test_lost_unfsynced_writes_are_detected_by_the_high_water_mark(tmp_path):
    """The disk drops the last 20 commits (files back to an older state) yet the file opens fine: the mark
    beside it says more was committed, so the snapshot is restored."""
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 30, snapshot=False)
    lost = LostUnfsyncedWrites([db, Path(str(db) + ".wal")], restart_on_heal=False)   # the durable state: 30
    write_journal(db, 20, first=30)                                                    # 20 more + a snapshot
    with lost:
        pass
    journal = Journal(db)
    try:
        line = journal.repair.line
        assert "silently lost" in line and "20 committed write(s)" in line, line
        assert len(journal.in_flight()) == 50
    finally:
        journal.close()


def test_silent_loss_is_detected_by_the_manifest_without_the_mark(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 30, snapshot=False)
    older = tmp_path / "older"
    older.mkdir()
    for p in (db, Path(str(db) + ".wal")):
        shutil.copy2(p, older / p.name)
    write_journal(db, 20, first=30)
    for p in older.iterdir():
        shutil.copy2(p, tmp_path / p.name)       # an old copy put back, e.g. by a careless restore
    Path(str(db) + ".hwm").unlink()
    journal = Journal(db)
    try:
        assert "snapshot journal-A.h" in journal.repair.saw and "silently lost" in journal.repair.saw
        assert len(journal.in_flight()) == 50
    finally:
        journal.close()


def test_a_missing_journal_with_snapshots_is_restored(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 12)
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)   # no WAL after a snapshot (it checkpoints) unless a write followed
    journal = Journal(db)
    try:
        assert "the file is missing" in journal.repair.line and len(journal.in_flight()) == 12
    finally:
        journal.close()


def test_a_sound_journal_is_not_touched(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 12)
    journal = Journal(db)
    try:
        assert journal.repair is None and len(journal.in_flight()) == 12
        assert not (tmp_path / "backup" / "duckdb" / "damaged").exists()
    finally:
        journal.close()


@pytest.mark.parametrize("garble", ["99999999999", "00000000000000000999 deadbeef", "x" * 30, "\x00" * 30])
def test_a_garbled_mark_does_not_move_a_sound_journal_aside(tmp_path, garble):
    """A new user wrote 99999999999 into the mark file beside a sound journal: it was moved aside as 99999999769
    committed writes lost. A mark that is not one the journal wrote (no valid CRC) is no evidence of loss."""
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 12, snapshot=False)
    Path(str(db) + ".hwm").write_text(garble)
    journal = Journal(db)
    try:
        assert journal.repair is None and len(journal.in_flight()) == 12
        assert journal.mark_garbled and "ignored" in journal.mark_garbled
        assert not (tmp_path / "backup" / "duckdb" / "damaged").exists()
    finally:
        journal.close()


def test_a_sound_mark_ahead_of_the_journal_still_means_lost_writes(tmp_path):
    """The CRC keeps the detection: a mark the journal wrote, ahead of what it holds, is silent loss."""
    from reference.engine.journal import _format_mark

    db = tmp_path / "journal-A.duckdb"
    written = write_journal(db, 12, snapshot=False)
    Path(str(db) + ".hwm").write_bytes(_format_mark(written + 5))
    journal = Journal(db)
    try:
        assert journal.repair is not None and "5 committed write(s) silently lost" in journal.repair.line
    finally:
        journal.close()


def test_manifest_lists_checksummed_snapshots_and_keeps_the_configured_count(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db, snapshots_kept=3)
    try:
        for i in range(5):
            journal.put(Intent(signal_id=f"s{i}", entry_id=f"{i}-0", signal={}, state="SENDING"))
            assert journal.snapshot() is not None
        assert journal.snapshot() is None      # nothing new: no snapshot
    finally:
        journal.close()
    folder = tmp_path / "backup" / "duckdb"
    manifest = json.loads((folder / "journal-A.manifest.json").read_text())
    listed = [s["file"] for s in manifest["snapshots"]]
    assert len(listed) == 3 and sorted(p.name for p in folder.glob("journal-A.h*.duckdb")) == sorted(listed)
    for s in manifest["snapshots"]:
        assert digest(folder / s["file"]) == s["sha256"]
    assert manifest["snapshots"][0]["hwm"] == 5


def test_a_damaged_manifest_deletes_no_snapshot_and_a_damaged_journal_still_restores_the_newest(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    write_journal(db, 20)                  # snapshot 1: s0..s19
    write_journal(db, 10, first=20)        # snapshot 2: s0..s29
    folder = tmp_path / "backup" / "duckdb"
    snaps = sorted(folder.glob("journal-A.h*.duckdb"))
    assert len(snaps) == 2
    manifest = folder / "journal-A.manifest.json"
    garbled = manifest.read_bytes()[:40] + b"\x00garbled"
    manifest.write_bytes(garbled)
    journal = Journal(db)                  # a sound journal beside a damaged manifest
    try:
        assert journal.repair is None
        journal.put(Intent(signal_id="s30", entry_id="30-0", signal={}, state="SENDING"))
        assert journal.snapshot() is not None
    finally:
        journal.close()
    for snap in snaps:                     # the good snapshots were not deleted as strays
        assert snap.exists(), snap
    kept = list((folder / "damaged").glob("journal-A.manifest.json.*"))
    assert len(kept) == 1 and kept[0].read_bytes() == garbled   # the damaged manifest is evidence
    listed = json.loads(manifest.read_text())["snapshots"]
    assert [s["hwm"] for s in listed][:3] == sorted((s["hwm"] for s in listed), reverse=True)[:3]
    assert {p.name for p in snaps} <= {s["file"] for s in listed}
    for s in listed:
        assert digest(folder / s["file"]) == s["sha256"]

    # now the manifest and the journal are both damaged: the newest snapshot that opens is restored
    manifest.write_bytes(b"{not json")
    newest = max(folder.glob("journal-A.h*.duckdb"))
    broken = folder / "journal-A.h999999999999.t1.duckdb"   # a snapshot file that does not open: not used
    broken.write_bytes(b"\x00" * 8192)
    with CorruptDuckDB(db, "zero-header", random.Random(0), restore_on_heal=False):
        pass
    journal = Journal(db)
    try:
        assert journal.repair is not None and newest.name in journal.repair.recovered, journal.repair.line
        assert len(journal.in_flight()) == 31
    finally:
        journal.close()
    assert newest.exists() and (folder / "damaged" / broken.name).exists()
    assert len(list((folder / "damaged").glob("journal-A.manifest.json.*"))) == 2
