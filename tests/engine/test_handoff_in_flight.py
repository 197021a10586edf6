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


def test_a_dead_engine_with_an_order_in_flight_names_it_for_the_successor(tmp_path):
    import subprocess
    import redis

    from reference.engine.contract import Keys
    from tradedrill.waiting import wait_until

    server = subprocess.Popen(["redis-server", "--bind", "127.0.5.231", "--port", "6391", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis("127.0.5.231", 6391)
        wait_until(lambda: _pings(r), timeout=10, what="redis-server on 127.0.5.231:6391")
        cfg = EngineConfig(instance="A", state_dir=str(tmp_path), redis_host="127.0.5.231", redis_port=6391)
        keys = Keys.of(cfg)
        r.set(keys.lease, "A:7:1")
        lease_value_file(tmp_path, "A").write_text("A:7:1")
        _journal_of_a_dead_process(tmp_path / "journal-A.duckdb",
                                   [Intent(signal_id="s-1", entry_id="1-1", signal={}, state="SENDING"),
                                    Intent(signal_id="s-2", entry_id="2-1", signal={}, state="DONE")])
        said = release_after_exit(cfg)
        assert said.startswith("released A:7:1") and "1 order(s) in flight" in said
        assert r.get(keys.lease) is None and r.get(keys.lease_released) == b"exit"
        assert set(r.hgetall(keys.lease_in_flight)) == {b"s-1"} and r.pttl(keys.lease_in_flight) > 0
    finally:
        server.terminate()
        server.wait(10)


def _pings(r) -> bool:
    try:
        return bool(r.ping())
    except Exception:  # noqa: BLE001
        return False


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
