"""ClickHouse sync against a real 18.16 server (CH-1, CH-2, BR-2): every final outcome of the journal reaches
ClickHouse exactly once (count with FINAL) across resends, outages and data loss."""
from __future__ import annotations

import pytest

from reference.engine.journal import Journal
from reference.store.clickhouse_sync import KIND, TARGET, ClickHouseSync

from .conftest import Recorder, final_outcomes
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services
CH_HOST = 2


def drain(sync: ClickHouseSync, now: float = 0.0, now_ms: int | None = None) -> None:
    """Tick until no new outcome waits."""
    for _ in range(1000):
        if not sync.run_once(now, now_ms) and not sync.journal.ch_unsynced(exclude=sync._held):
            return
    raise AssertionError("the sync never caught up")


def test_every_outcome_reaches_clickhouse_once_across_a_resend_and_a_restart(server, table, journal, tmp_path):
    rec = Recorder()
    target = server.target(table, batch_rows=128)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    sent = final_outcomes(journal, 300)
    drain(sync)
    assert target.count_final() == 300 and sync.inserts == 3      # 300 outcomes in batches of 128
    assert journal.ch_unsynced() == []

    # a resend of everything (what a crash before the marks were written does): rows twice, trades once
    journal.mark_ch_synced_many(journal.ch_synced_final(), synced=False)
    drain(sync)
    assert sync.rows_sent == 600            # sent twice (a background merge may already have collapsed them)
    assert target.count_final() == 300 and target.count_final("A") == 300

    # a newer state of a trade replaces its row; the marks survive a restart (nothing is sent again)
    again = journal.get("sig-3")
    again.result = {**again.result, "reason": "adopted after reconcile"}
    journal.put(again)
    drain(sync)
    assert target.count_final() == 300
    assert server.sql(f"SELECT reason FROM {table} FINAL WHERE signal_id = 'sig-3'").strip() == \
        "adopted after reconcile"
    sync.stop()
    journal.close()
    reopened = Journal(tmp_path / "journal-A.duckdb")
    try:
        assert reopened.ch_unsynced() == []
    finally:
        reopened.close()
    assert rec.alerts == [] and len(sent) == 300


def test_outage_three_retries_5s_apart_then_failed_syncs_then_exactly_once(server, table, journal):
    rec = Recorder()
    target = server.target(table)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    final_outcomes(journal, 50)
    drain(sync)
    assert target.count_final() == 50

    server.node.terminate()
    try:
        final_outcomes(journal, 100, first=50)
        t0, ms0 = 1000.0, 1_800_000_000_000
        tries = []
        for dt in (0.0, 4.9, 5.0, 9.9, 10.0, 14.9, 15.0):     # CH-1: a try, then every 5 s, 3 times
            before = sync.failures
            sync.run_once(t0 + dt, ms0 + int(dt * 1000))
            if sync.failures > before:
                tries.append(dt)
        assert tries == [0.0, 5.0, 10.0, 15.0]
        # each failure says when its try began: the retry interval is measured between try starts (issue 13 drill)
        assert [e["started"] for e in rec.named("clickhouse_sync_failed")][:4] == [1000.0, 1005.0, 1010.0, 1015.0]
        rows = journal.failed_syncs(TARGET)
        assert len(rows) == 1 and rows[0]["kind"] == KIND and rows[0]["attempts"] == 4
        assert len(rows[0]["payload"]["signal_ids"]) == 100
        assert rows[0]["next_retry_ms"] == ms0 + 15_000 + 60_000   # CH-1: then every minute
        assert "connection refused" in rows[0]["last_error"]
        assert [a[0] for a in rec.alerts] == ["clickhouse_sync_failed"]

        # newer outcomes start their own cycle and are not sent twice meanwhile
        final_outcomes(journal, 20, first=150)
        sync.run_once(t0 + 15.1, ms0 + 15_100)
        assert {i.signal_id for i in journal.ch_unsynced(exclude=sync._held)} == {f"sig-{k}" for k in range(150, 170)}

        # the failed_syncs row: every minute; BR-2's 5th failed try tells the user once
        for minute in range(1, 6):
            sync.run_once(t0 + 15 + 60 * minute, ms0 + 15_000 + 60_000 * minute)
        exhausted = [a for a in rec.alerts if a[0] == "failed_sync_exhausted"]
        assert len(exhausted) == 1 and "100 outcome(s)" in exhausted[0][1]
    finally:
        server.node.start().wait_ready()

    # back: the next tick resends everything (CH-1: recovery under 5 s), each trade once
    sync.run_once(t0 + 400, ms0 + 400_000)
    drain(sync, t0 + 400, ms0 + 400_000)
    assert journal.failed_syncs(TARGET) == []
    assert target.count_final() == 170 and journal.ch_unsynced() == []
    assert rec.named("clickhouse_sync_recovered")


def test_failed_syncs_are_resent_within_1s_of_a_start(server, table, tmp_path):
    """BR-2: rows left by a previous run go at once after a start, with no new outcome to carry them."""
    db = tmp_path / "journal-B.duckdb"
    journal = Journal(db)
    final_outcomes(journal, 30)
    journal.add_failed_sync("sig-0+30@1", KIND, {"signal_ids": [f"sig-{k}" for k in range(30)]},
                            2_000_000_000_000, "ClickHouse down", attempts=4, target=TARGET)
    journal.close()
    journal = Journal(db)
    try:
        rec = Recorder()
        target = server.target(table)
        sync = ClickHouseSync(journal, target, instance="B", emit=rec.emit, alert=rec.alert)
        assert journal.ch_unsynced(exclude=sync._held) == []   # held by the row: not sent twice
        sync.start()
        try:
            wait_until(lambda: target.count_final() == 30 and not journal.failed_syncs(TARGET), 1.0,
                       "the failed_syncs row resent within 1 s of the start (BR-2)")
        finally:
            sync.stop()
    finally:
        journal.close()


def test_backfill_after_clickhouse_lost_its_data(server, table, journal):
    """CH-2: after a TRUNCATE (and after a partial loss) the running sync notices and resends what is missing."""
    rec = Recorder()
    target = server.target(table, backfill_check_s=0.2)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    final_outcomes(journal, 200)
    sync.start()
    try:
        wait_until(lambda: target.count_final() == 200, 10, "200 outcomes in ClickHouse")
        server.sql(f"TRUNCATE TABLE {table}")
        wait_until(lambda: target.count_final() == 200, 10, "the 200 outcomes backfilled after a TRUNCATE")
        server.sql(f"ALTER TABLE {table} DELETE WHERE signal_id IN ('sig-7', 'sig-8', 'sig-9')")
        wait_until(lambda: int(server.sql(f"SELECT count() FROM {table} FINAL WHERE signal_id = 'sig-8'")) == 0,
                   10, "the mutation to apply")
        wait_until(lambda: target.count_final() == 200, 10, "the 3 deleted outcomes backfilled")
    finally:
        sync.stop()
    resent = [f["missing"] for f in rec.named("clickhouse_backfill") if f["missing"]]
    assert resent[:2] == [200, 3]
    assert [a[0] for a in rec.alerts] == ["clickhouse_backfill", "clickhouse_backfill"]
    assert "lacks 200 outcome(s)" in rec.alerts[0][1]


def test_bad_credentials_give_one_line_that_says_what_to_fix(server, table, journal, tmp_path):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    rec = Recorder()
    target = server.target(table)
    target = type(target)(type(target.settings)(**{**target.settings.__dict__, "password_file": str(wrong)}))
    with pytest.raises(Exception) as err:
        target.ensure_table()
    message = str(err.value)
    assert type(err.value).__name__ == "ClickHouseError" and "\n" not in message
    assert "refused the login of user 'default'" in message and "clickhouse_password_file" in message
    assert "not-the-password" not in message and server.credential.password not in message

    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    final_outcomes(journal, 5)
    sync.run_once(0.0, 1_800_000_000_000)
    assert "refused the login" in rec.named("clickhouse_sync_failed")[0]["error"]
    assert "not-the-password" not in rec.text() and server.credential.password not in rec.text()


def test_stop_sends_the_outcomes_still_waiting(server, table, journal):
    """An engine stops a few ms after its last ack, before the next tick: stop() sends what waits (it only wrote
    the marks, and the last trades reached ClickHouse only at the next start, if ever)."""
    rec = Recorder()
    target = server.target(table)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    final_outcomes(journal, 30)          # final, never ticked: what the thread had not seen yet
    sync.stop()
    assert server.target(table).count_final() == 30
    assert journal.ch_unsynced() == [] and journal.failed_syncs(TARGET) == []
    assert rec.named("clickhouse_sync_stop_flush")[0]["sent"] == 30


def test_stop_leaves_what_it_could_not_send_in_failed_syncs(server, table, journal):
    rec = Recorder()
    target = server.target(table)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    final_outcomes(journal, 12)
    server.node.terminate()
    try:
        sync.stop(flush_s=2.0)
    finally:
        server.node.start().wait_ready()
    rows = journal.failed_syncs(TARGET)
    assert len(rows) == 1 and len(rows[0]["payload"]["signal_ids"]) == 12, rows
    flushed = rec.named("clickhouse_sync_stop_flush")[0]
    assert flushed["sent"] == 0 and flushed["failed_syncs"] == 12 and flushed["error"]
