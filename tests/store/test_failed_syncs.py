"""failed_syncs (DDB-5, ORD-2, BR-2): one durable table for writes that could not reach their target; retried
within 1 s of a start, then after 1, 2, 4, 8, 16 s, then the user is told once and it is still retried."""
from __future__ import annotations

import time

import duckdb
import pytest

from reference.engine.journal import Intent, Journal
from reference.store.failed_syncs import Resync, RetryPolicy


class Target:
    """A Redis/ClickHouse stand-in that refuses the first ``refuse`` writes."""

    def __init__(self, refuse: int):
        self.refuse = refuse
        self.received: list[dict] = []

    def __call__(self, row: dict) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise ConnectionRefusedError("Connection refused (127.0.71.9:8123)")
        self.received.append(row["payload"])


def drive(resync: Resync, journal: Journal, start_ms: int, until_ms: int) -> list[int]:
    """Run the resync at every due time between start and until; returns the times (ms after start) it ran."""
    tries, now = [], start_ms
    while now <= until_ms:
        due = [r for r in journal.failed_syncs() if r["next_retry_ms"] <= now]
        if due:
            tries.append(now - start_ms)
            resync.run_due(now)
        upcoming = [r["next_retry_ms"] for r in journal.failed_syncs()]
        if not upcoming:
            break
        now = max(now + 1, min(upcoming))
    return tries


def test_backoff_then_one_alert_then_every_minute_and_nothing_dropped(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db)
    journal.add_failed_sync("ord-1", "result", {"order": 1}, 0, "ClickHouse down", target="clickhouse")
    journal.close()
    journal = Journal(db)                                    # a start: the row is due at once (BR-2)
    try:
        start = journal.failed_syncs()[0]["next_retry_ms"]
        told: list[dict] = []
        target = Target(refuse=7)
        resync = Resync(journal, RetryPolicy(), notify=told.append)
        resync.register("clickhouse", "result", target)
        tries = drive(resync, journal, start, start + 200_000)
        # first try at the start, then 1, 2, 4, 8, 16 s apart, then 60 s, until ClickHouse takes it
        assert tries == [0, 1000, 3000, 7000, 15000, 31000, 91000, 151000]
        assert len(told) == 1 and told[0]["attempts"] == 6 and "Connection refused" in told[0]["last_error"]
        assert target.received == [{"order": 1}] and journal.failed_syncs() == []
    finally:
        journal.close()
    again = Journal(db)
    try:
        assert again.failed_syncs() == []                   # the success is durable too
    finally:
        again.close()


def test_rows_survive_a_restart_and_are_due_at_once_after_it(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db)
    journal.add_failed_sync("e-1", "outcome", {"status": "executed"}, 0, "Redis down", target="redis")
    resync = Resync(journal, RetryPolicy(), notify=lambda row: None)
    resync.register("redis", "outcome", Target(refuse=3))
    now = journal.failed_syncs()[0]["next_retry_ms"]
    for _ in range(3):
        resync.run_due(now)
        now = journal.failed_syncs()[0]["next_retry_ms"]
    row = journal.failed_syncs()[0]
    assert row["attempts"] == 3 and row["step"] == 3 and row["last_error"].startswith("ConnectionRefusedError")
    journal.close()
    reopened = Journal(db)
    try:
        row = reopened.failed_syncs()[0]
        assert row["attempts"] == 3 and row["step"] == 0 and row["payload"] == {"status": "executed"}
        assert row["next_retry_ms"] <= int(time.time() * 1000) + 1000   # BR-2: within 1 s of the start
    finally:
        reopened.close()


def test_an_order_in_failed_syncs_is_due_at_once_after_a_restart(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    journal = Journal(db)
    far = int(time.time() * 1000) + 3_600_000   # an hour away (ORD-2's minute, and more)
    journal.put(Intent(signal_id="s1", entry_id="1-0", signal={}, state="DEFERRED", next_try_ms=far))
    journal.add_failed_sync("s1", "order", {"symbol": "EURUSD"}, far, "TRADE_RETCODE_ERROR", 1)
    journal.close()
    reopened = Journal(db)
    try:
        assert reopened.get("s1").next_try_ms < far
        assert reopened.failed_syncs()[0]["target"] == "broker"
    finally:
        reopened.close()


def test_the_table_of_an_older_journal_is_kept(tmp_path):
    db = tmp_path / "journal-A.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE failed_syncs (signal_id VARCHAR PRIMARY KEY, kind VARCHAR, payload VARCHAR, "
                "attempts INTEGER, next_retry_ms BIGINT, last_error VARCHAR, created_ms BIGINT)")
    con.execute("INSERT INTO failed_syncs VALUES ('s9', 'order', '{\"a\": 1}', 1, 5, 'no price', 7)")
    con.close()
    journal = Journal(db)
    try:
        [row] = journal.failed_syncs()
        assert (row["sync_id"], row["target"], row["kind"], row["payload"], row["attempts"], row["last_error"]) == \
            ("s9", "broker", "order", {"a": 1}, 1, "no price")
        journal.remove_failed_sync("s9")
        assert journal.failed_syncs() == []
    finally:
        journal.close()


def test_a_policy_without_delays_is_refused():
    with pytest.raises(ValueError, match="BR-2"):
        RetryPolicy(backoff_s=())
