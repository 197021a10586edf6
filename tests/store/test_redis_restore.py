"""RDS-6's "else restore from DuckDB" (``reference.store.redis_restore``), on a real Redis 7 that listens on a unix
socket only (no address, no port): a node's recovered files lack what the engines' journal snapshots hold; the
restore puts it back before the node serves anyone, under the RTSS ids the journal recorded, fenced, once, and a
second run writes nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reference.engine.contract import Keys
from reference.store.redis_restore import RESTORE, journal_records, restore_offline

pytestmark = pytest.mark.services
KEYS = Keys(group="g")


class Server:
    """redis-server on a unix socket over ``data`` (appendonly, fsync always), stopped by its handle."""

    def __init__(self, data: Path):
        self.sock = data.parent / f"{data.name}.sock"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.sock), "--dir", str(data), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--logfile", str(data.parent / f"{data.name}.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=5, decode_responses=True,
                                  retry=Retry(NoBackoff(), 0))
        for _ in range(2500):   # bounded: about 50 s of 20 ms waits on the server process itself
            try:
                self.client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                try:
                    self.proc.wait(timeout=0.02)
                    raise AssertionError("redis-server exited while starting")
                except subprocess.TimeoutExpired:
                    continue
        raise AssertionError("redis-server did not answer")

    def stop(self) -> None:
        try:
            self.client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        self.proc.wait(timeout=30)


def snapshot(folder: Path, instance: str, rows: list[tuple]) -> None:
    """A journal snapshot as the store keeper names it, with the columns the restore reads."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(folder / f"journal-{instance}.h000000000009.t1000.duckdb"))
    cols = ("signal_id VARCHAR, entry_id VARCHAR, signal VARCHAR, state VARCHAR, attempt INTEGER, comment VARCHAR, "
            "broker VARCHAR, result VARCHAR, published BOOLEAN, updated_ms BIGINT")
    con.execute(f"CREATE TABLE intents ({cols})")
    con.execute(f"CREATE TABLE intent_log (seq BIGINT, {cols})")
    for seq, (sid, entry, state, order) in enumerate(rows):
        sig = {"signal_id": sid, "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01}
        result = {"status": "executed" if state == "DONE" else "rejected", "code": "", "order": order}
        con.execute("INSERT INTO intent_log VALUES (?, ?, ?, ?, ?, 1, ?, 'primary', ?, true, ?)",
                    [seq, sid, entry, json.dumps(sig), state, f"td{sid}-1", json.dumps(result if state in
                                                                                        ("DONE", "REJECTED") else {}),
                     1000 + seq])
    con.close()


@pytest.fixture
def data(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    folder = tmp_path / "redis-1"
    folder.mkdir()
    return folder


def test_what_the_journals_hold_goes_back_under_its_own_ids_once_and_fenced(data, tmp_path):
    # what survived the damage: entries 1-1..1-3 on RTSS, 1-1 handled (RTS, index, RTRS), the group past 1-1, fence 1
    s = Server(data)
    r = s.client
    for i in (1, 2, 3):
        r.xadd(KEYS.rtss, {"signal_id": f"s{i}"}, id=f"1-{i}")
    r.xgroup_create(KEYS.rtss, "g", id="1-1")
    r.hset(KEYS.rts_signal("s1"), mapping={"status": "executed", "order": "11"})
    r.hset(KEYS.rts_results, "1-1", "1")
    r.xadd(KEYS.rtrs, {"signal_id": "s1", "entry_id": "1-1", "status": "executed"})
    r.set(KEYS.fence, 1)
    s.stop()
    # the journals: s1..s4 final (s4's entry lost with the stream's tail), s5 still open (its entry lost too)
    snaps = tmp_path / "engine-a" / "backup" / "duckdb"
    snapshot(snaps, "A", [("s1", "1-1", "DONE", 11), ("s2", "1-2", "DONE", 12), ("s3", "1-3", "REJECTED", ""),
                          ("s4", "1-4", "DONE", 14), ("s5", "1-5", "SENDING", "")])
    lease = tmp_path / "engine-a" / "lease-A"
    lease.write_text("A:3")
    records, notes = journal_records([snaps])
    assert [r.signal_id for r in records if r.final] == ["s1", "s2", "s3", "s4"] and "5 signal(s)" in notes[0]

    rep = restore_offline(data, KEYS, group="g", snapshot_dirs=[snaps], lease_files=[lease])
    assert "error" not in rep, rep
    assert rep["rts_missing_before"] == 3 and rep["rts_restored"] == 3 and rep["rts_missing_after"] == 0
    assert rep["rtrs_restored"] == 3                        # s1's result was there: not appended twice
    assert rep["rtss_missing_before"] == 2 and rep["rtss_restored"] == 2 and rep["rtss_not_restorable"] == 0
    assert rep["group_last_delivered"] == "1-4" and rep["open_stranded"] == 0
    assert rep["fence_before"] == 1 and rep["fence_after"] == 3

    again = restore_offline(data, KEYS, group="g", snapshot_dirs=[snaps], lease_files=[lease])
    assert (again["rts_restored"], again["rtrs_restored"], again["rtss_restored"]) == (0, 0, 0), again

    s = Server(data)   # what the node starts with: everything in its AOF
    r = s.client
    try:
        assert [e for e, _ in r.xrange(KEYS.rtss)] == ["1-1", "1-2", "1-3", "1-4", "1-5"]
        answered = sorted(f["entry_id"] for _e, f in r.xrange(KEYS.rtrs))
        assert answered == ["1-1", "1-2", "1-3", "1-4"]     # one result per handled entry
        assert r.hget(KEYS.rts_signal("s4"), "restored_from") == "duckdb"
        assert r.hget(KEYS.rts_signal("s4"), "order") == "14"
        assert r.hget(KEYS.rts_signal("s1"), "restored_from") is None   # present: never written over
        # an engine reading the group is handed the open signal only, never a handled one
        got = r.xreadgroup("g", "B", {KEYS.rtss: ">"}, count=10)
        assert [e for e, _ in got[0][1]] == ["1-5"]
        # fenced like the engine's PUBLISH: a token below the group's counter writes nothing
        assert r.eval(RESTORE, 5, KEYS.fence, KEYS.rts_signal("s9"), KEYS.rts_results, KEYS.rtrs, KEYS.rtss,
                      2, "g", "1-9", 0, 1, "status", "executed") == -1
        assert not r.exists(KEYS.rts_signal("s9"))
    finally:
        s.stop()
