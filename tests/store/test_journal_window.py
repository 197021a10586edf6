"""The journal keeps only a window of final intents in memory (ENG-5, DDB-3/6): a signal executed long ago is still
found (duplicate check), still counted and published (ENG-4's RTS rebuild), still sent to ClickHouse when its sync
starts late or a backfill clears it (CH-1/CH-2), survives a restart, and survives a rewrite of a damaged file from
memory, from the damaged file or, when that cannot be read, from the newest snapshot."""
from __future__ import annotations

import random

import duckdb
import pytest

from faults.files import CorruptDuckDB
from reference.engine.config import ConfigError, EngineConfig
from reference.engine.journal import MEMORY_WINDOW_MIN, Intent, Journal, JournalError

WINDOW = MEMORY_WINDOW_MIN
SIGNALS = 1000


def _executed(journal: Journal, first: int, count: int, published: bool = True) -> None:
    """``count`` signals the way the engine writes them: the intent before the send, the outcome, the flag."""
    intents = [Intent(signal_id=f"w{n:06d}", entry_id=f"{n}-0", signal={"symbol": "EURUSD", "n": n},
                      state="SENDING", attempt=1, comment=f"tdw{n:06d}-1", broker="mt5-primary")
               for n in range(first, first + count)]
    for start in range(0, count, 50):
        part = intents[start:start + 50]
        journal.put_many(part)
        for it in part:
            it.state = "DONE"
            it.result = {"status": "executed", "order": 100000 + int(it.signal_id[1:])}
        journal.put_many(part)
        if published:
            journal.mark_published_many([it.signal_id for it in part])
    journal.flush_published()


def _assert_everything_there(journal: Journal, in_flight: int = 0) -> None:
    expected = {"DONE": SIGNALS, **({"SENDING": in_flight} if in_flight else {})}
    assert journal.counts() == expected
    first = journal.get("w000000")
    assert first is not None and first.final and first.result["order"] == 100000 and first.published
    assert journal.get("w000999").result["order"] == 100999
    assert journal.get("never-sent") is None
    assert len(journal.published_final()) == SIGNALS


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb", memory_window=WINDOW)
    _executed(j, 0, SIGNALS)
    j.put(Intent(signal_id="open-1", entry_id="x-0", signal={"symbol": "EURUSD"}, state="SENDING", attempt=1))
    yield j
    j.close()


def test_memory_holds_the_window_and_every_signal_is_still_found(journal):
    assert len(journal._mem) <= WINDOW + 1
    _assert_everything_there(journal, in_flight=1)
    assert [i.signal_id for i in journal.in_flight()] == ["open-1"]
    assert {i.signal_id for i in journal.where_state(("DONE",), published=True)} == \
        {f"w{n:06d}" for n in range(SIGNALS)}


def test_a_restart_loads_only_the_window_and_still_finds_every_signal(journal, tmp_path):
    journal.close()
    again = Journal(tmp_path / "journal-A.duckdb", memory_window=WINDOW)
    try:
        assert again.repair is None
        assert len(again._mem) == WINDOW + 1   # the window and the signal in flight
        _assert_everything_there(again, in_flight=1)
        assert [i.signal_id for i in again.in_flight()] == ["open-1"]
        _executed(again, SIGNALS, 10)   # new signals after the restart: the old ones still answer
        assert again.get("w000000").result["order"] == 100000
    finally:
        again.close()


def test_unpublished_outcomes_stay_until_published(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb", memory_window=WINDOW)
    try:
        _executed(j, 0, SIGNALS, published=False)   # Redis down: every outcome waits to be published (ORD-3)
        assert len(j.unpublished()) == SIGNALS
        j.mark_published_many([i.signal_id for i in j.unpublished()])
        j.flush_published()
        assert j.unpublished() == [] and len(j._mem) <= WINDOW
        _assert_everything_there(j)
    finally:
        j.close()


def test_clickhouse_sync_started_late_still_gets_every_outcome_and_a_backfill_of_an_old_one(journal):
    waiting = journal.ch_unsynced()   # the sync's first call: outcomes that left memory are its work too
    assert len(waiting) == SIGNALS
    journal.mark_ch_synced_many(waiting)
    journal.flush_published()
    assert journal.ch_unsynced() == [] and len(journal._mem) <= WINDOW + 1
    assert len(journal.ch_synced_final()) == SIGNALS
    old = journal.get("w000001")
    assert old.ch_synced and "w000001" not in journal._mem
    assert journal.mark_ch_synced_many([old], synced=False) == 1   # CH-2: ClickHouse lost it
    assert [i.signal_id for i in journal.ch_unsynced()] == ["w000001"]
    assert len(journal.ch_synced_final()) == SIGNALS - 1


@pytest.mark.parametrize("source", ["damaged file", "snapshot"])
def test_a_rewrite_from_memory_keeps_the_outcomes_that_left_memory(journal, tmp_path, monkeypatch, source):
    assert journal.snapshot() is not None
    if source == "snapshot":   # the damaged file cannot be read either: the newest snapshot has the older ones
        def unreadable(*_a, **_k):
            raise duckdb.IOException("Corrupt database file: computed checksum 1 does not match stored checksum 2")
        monkeypatch.setattr(Journal, "_stored", unreadable)
    with CorruptDuckDB(journal.path, "truncate", random.Random(1), restore_on_heal=False):
        pass
    repair = journal.rebuild_from_memory(journal.health())
    monkeypatch.undo()
    assert f"and {SIGNALS - WINDOW} older intents from" in repair.line and "\n" not in repair.line
    assert ("snapshot" in repair.recovered) == (source == "snapshot"), repair.recovered
    assert journal.health() is None
    _assert_everything_there(journal, in_flight=1)
    journal.close()
    again = Journal(tmp_path / "journal-A.duckdb", memory_window=WINDOW)
    try:
        assert again.repair is None
        _assert_everything_there(again, in_flight=1)
    finally:
        again.close()


def test_a_window_below_the_minimum_is_refused_in_one_line(tmp_path):
    with pytest.raises(JournalError, match=f"at least {MEMORY_WINDOW_MIN} recent final intents") as err:
        Journal(tmp_path / "journal-A.duckdb", memory_window=5)
    assert "\n" not in str(err.value)
    for bad in (5, 0, "many", True, 1000.5):
        with pytest.raises(ConfigError, match="journal_memory_window") as err:
            EngineConfig(journal_memory_window=bad)
        assert "\n" not in str(err.value)
    assert EngineConfig().journal_memory_window == 10_000
