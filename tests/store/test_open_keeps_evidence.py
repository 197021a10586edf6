"""The evidence of a damaged journal is its files exactly as found, whatever block is damaged (DDB-3, issue 16).

DuckDB's read-write open folds the WAL into the file (at its first checkpoint, or on close), and it reads some
blocks only then: an index's (the intents' primary key, read by the open's fold of the log), which the read-only
inspection's queries never need. Damage there used to show only after the WAL had gone into the file, so the
operator's evidence folder held files the open had rewritten (found by ``test_repair``'s flip-block-1). Each test
writes a journal the way a crashed engine leaves it (a WAL beside the file), damages it, opens it, and compares
the evidence with what was on disk before the open, byte for byte."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

import reference.engine.journal as journal_mod
from reference.engine.journal import Journal
from reference.store.blocks import HEADERS_BYTES, block_checksums

from .conftest import digest, write_journal


def crashed(db: Path, how: str) -> None:
    """``after-a-restart``: 200 in-flight intents, a restart (the open folds them into ``intents`` and builds its
    primary-key index), 5 more, a crash: the 5 are in the WAL. ``after-a-snapshot``: 50, a snapshot (it
    checkpoints), 5 final intents, a crash."""
    if how == "after-a-restart":
        write_journal(db, 200, snapshot=False)
        write_journal(db, 5, first=200, snapshot=False)
    else:
        write_journal(db, 50, after=5)
    assert Path(str(db) + ".wal").stat().st_size > 0


def index_blocks(db: Path) -> tuple[int, list[int]]:
    """(block size, the blocks that hold neither a table's columns nor metadata: the indexes'), asserting the
    file has no free block (so each of them is one DuckDB reads)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        block_size, total, free = con.execute("SELECT block_size, total_blocks, free_blocks FROM "
                                              "pragma_database_size()").fetchone()
        used = {r[0] for r in con.execute("SELECT block_id FROM pragma_metadata_info()").fetchall()}
        for table in ("intents", "intent_log", "journal_meta", "failed_syncs"):
            used |= {r[0] for r in con.execute(f"SELECT block_id FROM pragma_storage_info('{table}') "
                                               f"WHERE block_id >= 0").fetchall()}
    finally:
        con.close()
    assert free == 0, "a free block would be one no open reads"
    blocks = sorted(set(range(total)) - used)
    assert blocks, "no index block in this file"
    return block_size, blocks


def damage_block(db: Path, block: int, block_size: int) -> None:
    """Flip three bytes of ``block`` (at different positions within their 8-byte words: DuckDB's checksum, an xor
    of the block's words, does not see the same flip in two zero words), and check that the block now fails its
    checksum, as DuckDB will say when it reads it."""
    raw = bytearray(db.read_bytes())
    start = HEADERS_BYTES + block * block_size
    for k in range(3):
        raw[start + 1000 + k * 4001] ^= 0xFF
    db.write_bytes(bytes(raw))
    stored, computed = block_checksums(raw[start:start + block_size], block_size)
    assert stored[0] != computed[0]


def as_found(db: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in (db, Path(str(db) + ".wal")) if p.exists()}


@pytest.mark.parametrize("how", ["after-a-restart", "after-a-snapshot"])
def test_damage_in_an_index_block_with_a_wal_keeps_the_files_as_found(tmp_path, how):
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    crashed(pristine / "journal-A.duckdb", how)
    block_size, blocks = index_blocks(pristine / "journal-A.duckdb")
    for block in blocks:
        state = tmp_path / f"block-{block}"
        shutil.copytree(pristine, state)
        db = state / "journal-A.duckdb"
        damage_block(db, block, block_size)
        found = as_found(db)
        journal = Journal(db)
        try:
            repair = journal.repair
            assert repair is not None, f"block {block}: damage in an index block was not detected"
            assert "fails its checksum" in repair.line and "not as found" not in repair.line, repair.line
            evidence = Path(repair.evidence)
            kept = {name: digest(evidence / name) for name in found if (evidence / name).exists()}
            assert kept == found, f"block {block}: the evidence is not the files as found ({repair.line})"
            if how == "after-a-snapshot":
                assert len(journal.in_flight()) == 50, repair.line
            else:   # no snapshot, and the file itself is damaged: said, the engine asks the broker (DDB-4)
                assert "an empty journal" in repair.line and repair.missing_writes == 205, repair.line
        finally:
            journal.close()


def test_damage_no_checksum_shows_still_leaves_the_files_as_found(tmp_path, monkeypatch):
    """Damage the block check cannot see (here: the check told to see nothing) shows in the read-write open's
    load; that open closes without folding the WAL into the file, so the evidence is still the files as found."""
    db = tmp_path / "journal-A.duckdb"
    crashed(db, "after-a-restart")
    block_size, blocks = index_blocks(db)
    damage_block(db, blocks[0], block_size)
    found = as_found(db)
    monkeypatch.setattr(journal_mod, "verify_whole_file", lambda fd, block_size, total, free=0: None)
    journal = Journal(db)
    try:
        repair = journal.repair
        assert repair is not None and "fails its checksum" in repair.line, repair and repair.line
        evidence = Path(repair.evidence)
        assert {name: digest(evidence / name) for name in found} == found, repair.line
        assert "not as found" not in repair.line, repair.line
    finally:
        journal.close()


def _load_that_fails_after_its_checkpoint(monkeypatch) -> None:
    """The first load checkpoints (the WAL goes into the file) and then meets damage: what is left when damage
    shows only after the read-write open wrote the file."""
    original = Journal._load
    calls = []

    def load(self, con, intents, log):
        calls.append(1)
        if len(calls) > 1:
            return original(self, con, intents, log)
        self._compact(con)
        con.execute("CHECKPOINT")
        raise duckdb.IOException("Corrupt database file: computed checksum 1 does not match stored checksum 2 in "
                                 "block at location 536576")

    monkeypatch.setattr(Journal, "_load", load)


def test_damage_shown_after_the_open_wrote_the_file_is_said_not_hidden(tmp_path, monkeypatch):
    db = tmp_path / "journal-A.duckdb"
    crashed(db, "after-a-snapshot")
    found = as_found(db)
    _load_that_fails_after_its_checkpoint(monkeypatch)
    journal = Journal(db)
    try:
        line = journal.repair.line
        assert "the read-write open changed the files" in line and "not as found" in line, line
        assert "\n" not in line and len(journal.in_flight()) == 50
        evidence = Path(journal.repair.evidence)
        assert digest(evidence / db.name) != found[db.name]      # what the line says is so
    finally:
        journal.close()


def test_without_block_checksums_the_open_keeps_a_copy_as_found(tmp_path, monkeypatch):
    """A DuckDB whose block checksum is not the one measured (``reference.store.blocks``): the open cannot check
    the blocks, so it copies the files before its read-write open; the copy is the evidence, and it is gone once
    a sound journal is loaded."""
    db = tmp_path / "journal-A.duckdb"
    crashed(db, "after-a-snapshot")
    found = as_found(db)
    monkeypatch.setattr(journal_mod, "checksum_scheme_matches", lambda fd: False)
    _load_that_fails_after_its_checkpoint(monkeypatch)
    journal = Journal(db)
    try:
        line = journal.repair.line
        assert "fails its checksum" in line and "not as found" not in line, line
        evidence = Path(journal.repair.evidence)
        assert {name: digest(evidence / name) for name in found} == found, line
        assert (evidence / f"after-open-{db.name}").exists()     # the files as the failed open left them, too
        assert len(journal.in_flight()) == 50
    finally:
        journal.close()
    again = Journal(db)
    try:
        assert again.repair is None and len(again.in_flight()) == 50
    finally:
        again.close()
    assert not list(tmp_path.glob(".*as-found*"))
