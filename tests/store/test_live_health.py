"""DDB-6 on a live journal: bytes changed in a data block or a file cut short under the running engine (which
DuckDB itself would only notice at the next open: it answers from the blocks it holds in memory) are found by the
next health check, the file is rewritten from memory, the damaged copy kept as evidence; and a journal under
steady writes and checkpoints never raises a false alarm."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from faults.files import CorruptDuckDB
from reference.engine.journal import Intent, Journal, JournalError
from reference.store.blocks import HEADERS_BYTES, BlockVerifier, block_checksums, checksum_scheme_matches
from reference.store.keeper import StoreKeeper

from .test_keeper import Recorder

SAW = {"flip-block": "fails its checksum (bytes changed on disk)", "truncate": "the file ends before its own blocks"}


def _intent(i: int, state: str = "SENDING") -> Intent:
    return Intent(signal_id=f"s{i}", entry_id=f"{i}-0", signal={"symbol": "EURUSD", "pad": "x" * 200}, state=state)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb")
    j.put_many([_intent(i) for i in range(2000)])   # a few blocks once checkpointed
    j._db.execute("CHECKPOINT")
    yield j
    j.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["flip-block", "truncate"])
def test_damage_under_the_running_engine_is_found_by_the_next_check_and_repaired(journal, mode, seed):
    rec = Recorder()
    keeper = StoreKeeper(journal, emit=rec.emit, alert=rec.alert)
    keeper.check_health()
    assert rec.named("journal_unhealthy") == [] and journal.block_check_off == ""
    # DuckDB itself does not see it: it answers from its buffer pool
    with CorruptDuckDB(journal.path, mode, random.Random(seed), restore_on_heal=False) as fault:
        damaged = journal.path.read_bytes()
    assert journal._db.execute("SELECT count(*) FROM intents").fetchone()[0] >= 0
    keeper.check_health()                                         # one check
    [seen] = rec.named("journal_unhealthy")
    assert SAW[mode] in seen["problem"], (fault.details(), seen)
    [(kind, message, fields)] = rec.alerts
    assert kind == "journal_repaired" and str(journal.path) in message and SAW[mode] in message
    assert "from the engine's memory (2000 intents" in message and "\n" not in message
    evidence = Path(fields["evidence"])
    assert (evidence / journal.path.name).read_bytes() == damaged          # the damage, as found
    assert SAW[mode] in (evidence / "diagnosis.txt").read_text()
    journal.put(_intent(5000))
    keeper.check_health()
    assert len(rec.named("journal_unhealthy")) == 1                       # the fresh file is sound
    path = journal.path
    journal.close()
    reopened = Journal(path)
    try:
        assert reopened.repair is None and len(reopened.in_flight()) == 2001
    finally:
        reopened.close()


def test_a_journal_larger_than_one_checks_budget_is_verified_over_several_checks(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb", verify_mb_per_check=1)
    try:
        j.put_many([_intent(i) for i in range(20000)])
        j._db.execute("CHECKPOINT")
        size = j.path.stat().st_size
        blocks = (size - HEADERS_BYTES) // 262144
        assert blocks >= 5, size
        last = BlockVerifier.offset(blocks - 1, 262144)
        with open(j.path, "r+b") as fh:                # one byte of the last block changed
            fh.seek(last + 1000)
            b = fh.read(1)
            fh.seek(last + 1000)
            fh.write(bytes([b[0] ^ 0x01]))
        found = [j.health() for _ in range(blocks)]   # 1 MB = 4 blocks per check: found within one pass
        first = next(i for i, p in enumerate(found) if p)
        assert first < -(-blocks // 4) and f"offset {last} fails its checksum" in found[first], found
    finally:
        j.close()


def test_no_false_alarm_while_the_engine_writes_and_checkpoints(tmp_path):
    """Health checks racing commits, auto-checkpoints (1 MB threshold) and snapshots: a block read while DuckDB
    writes it is read again under the journal's lock before it is called damage."""
    j = Journal(tmp_path / "journal-A.duckdb", checkpoint_threshold_mb=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            n = 0
            while not stop.is_set():
                j.put_many([_intent(n + k, "DONE") for k in range(50)])
                n += 50
                if n % 1000 == 0:
                    j.snapshot()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        problems = [j.health() for _ in range(300)]
    finally:
        stop.set()
        t.join(30)
        j.close()
    assert not errors and not [p for p in problems if p], [p for p in problems if p][:3]


def test_the_checksum_scheme_is_duckdbs(tmp_path):
    """The scheme reference.store.blocks recomputes is the one this DuckDB writes: the header and every block of
    a checkpointed file verify."""
    db = tmp_path / "plain.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t AS SELECT i, md5(i::varchar) AS s FROM range(200000) r(i)")
    con.execute("CHECKPOINT")
    con.close()
    fd = os.open(db, os.O_RDONLY)
    try:
        assert checksum_scheme_matches(fd)
    finally:
        os.close(fd)
    raw = db.read_bytes()
    stored, computed = block_checksums(raw[HEADERS_BYTES:], 262144)
    assert len(stored) >= 2 and (stored == computed).all()



def test_a_duckdb_with_another_checksum_turns_the_block_check_off_and_says_so(tmp_path, monkeypatch):
    import reference.engine.journal as journal_mod

    monkeypatch.setattr(journal_mod, "checksum_scheme_matches", lambda path: False)
    j = Journal(tmp_path / "journal-A.duckdb")
    try:
        j.put_many([_intent(i) for i in range(100)])
        assert "not verified" in j.block_check_off and "DDB-6" in j.block_check_off
        rec = Recorder()
        keeper = StoreKeeper(j, emit=rec.emit, alert=rec.alert)
        keeper.check_health()
        keeper.check_health()
        assert [k for k, _m, _f in rec.alerts] == ["journal_block_check_off"]       # said once
        assert rec.named("journal_unhealthy") == []                               # the size check still runs
        with open(j.path, "r+b") as fh:
            fh.truncate(HEADERS_BYTES + 100)
        keeper.check_health()
        assert "the file ends before its own blocks" in rec.named("journal_unhealthy")[0]["problem"]
    finally:
        j.close()


def test_health_checks_keep_duckdbs_lock(journal):
    """DuckDB's lock is a POSIX record lock, dropped for the whole process when any descriptor of the file is
    closed: after health checks (and a repair) a second process must still find the journal locked."""
    for _ in range(3):
        assert journal.health() is None
    with CorruptDuckDB(journal.path, "truncate", random.Random(1), restore_on_heal=False):
        pass
    journal.rebuild_from_memory(journal.health())
    assert journal.health() is None
    probe = ("import sys; from reference.engine.journal import Journal, JournalLocked\n"
             "try:\n    Journal(sys.argv[1])\nexcept JournalLocked as e:\n    print('locked', e)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(journal.path)], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("locked") and f"PID {os.getpid()}" in out.stdout, (out.stdout, out.stderr)


def test_a_budget_below_one_mb_is_refused(tmp_path):
    with pytest.raises(JournalError, match="at least 1 MB.*DDB-6"):
        Journal(tmp_path / "journal-A.duckdb", verify_mb_per_check=0)
