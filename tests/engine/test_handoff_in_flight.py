"""The crash handoff keeps the lease to its lapse while the dead engine's journal holds an order in flight
(issue 16's stateful finding: a kill while an order waited 1.5 s at a slow broker was sent twice after an
instant release; ENG-1, ENG-5). The full path, a kill in flight under the supervisor, is
``tests/stateful/test_stateful.py::test_a_takeover_after_a_kill_with_an_order_in_flight_sends_it_once``."""
from __future__ import annotations

import multiprocessing
import os

from reference.engine.config import EngineConfig
from reference.engine.handoff import lease_value_file, release_after_exit
from reference.engine.journal import Intent, Journal, in_flight_in_file


def _write_and_die(path, intents):
    journal = Journal(path)
    for intent in intents:
        journal.put(intent)
    os._exit(0)   # no close, no compaction: as a SIGKILL leaves the file (its WAL beside it)


def _journal_of_a_dead_process(path, intents) -> None:
    child = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(path, intents))
    child.start()
    child.join(30)
    assert child.exitcode == 0


def test_the_newest_state_of_each_signal_decides_what_is_in_flight(tmp_path):
    path = tmp_path / "journal-A.duckdb"
    _journal_of_a_dead_process(path, [
        Intent(signal_id="sent", entry_id="1-1", signal={}, state="SENDING"),
        Intent(signal_id="done", entry_id="2-1", signal={}, state="SENDING"),
        Intent(signal_id="done", entry_id="2-1", signal={}, state="DONE"),
        Intent(signal_id="unknown", entry_id="3-1", signal={}, state="UNKNOWN"),
        Intent(signal_id="deferred", entry_id="4-1", signal={}, state="DEFERRED"),
    ])
    assert in_flight_in_file(path) == ["sent", "unknown"]
    assert in_flight_in_file(tmp_path / "journal-none.duckdb") == []


def test_a_dead_engine_with_an_order_in_flight_keeps_its_lease_to_the_lapse(tmp_path):
    cfg = EngineConfig(instance="A", state_dir=str(tmp_path), redis_port=1)   # no Redis: it must not be asked
    lease_value_file(tmp_path, "A").write_text("A:7:1")
    _journal_of_a_dead_process(tmp_path / "journal-A.duckdb",
                               [Intent(signal_id="s-1", entry_id="1-1", signal={}, state="SENDING")])
    said = release_after_exit(cfg)
    assert said.startswith("not released: 1 order(s) in flight") and "s-1" in said


def test_an_unreadable_journal_keeps_the_lease_too(tmp_path):
    cfg = EngineConfig(instance="A", state_dir=str(tmp_path), redis_port=1)
    lease_value_file(tmp_path, "A").write_text("A:7:1")
    (tmp_path / "journal-A.duckdb").write_bytes(b"not a duckdb file" * 100)
    assert release_after_exit(cfg).startswith("not released: the journal could not be read")


def test_a_dead_engine_with_nothing_in_flight_is_released_for(tmp_path):
    cfg = EngineConfig(instance="A", state_dir=str(tmp_path), redis_port=1)
    lease_value_file(tmp_path, "A").write_text("A:7:1")
    _journal_of_a_dead_process(tmp_path / "journal-A.duckdb",
                               [Intent(signal_id="s-1", entry_id="1-1", signal={}, state="DONE")])
    # it goes on to the release: with no Redis on port 1 that says so (the TTL then runs out)
    assert release_after_exit(cfg).startswith("redis unavailable")
