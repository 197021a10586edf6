"""The checkers for ORD-2, CH-2, CH-3, CH-4 and DDB-4 (scenarios.store_gaps) on synthetic records: each judges what
a run recorded and says unmeasured, with the reason, when the run holds nothing to judge (never a pass)."""
from __future__ import annotations

import dataclasses

from scenarios.checkers import CheckResult, _unmeasured
from scenarios.store_gaps import (check_clickhouse_backfill, check_clickhouse_backups, check_clickhouse_failover,
                                  check_journal_rebuild, check_order_failed_syncs)
from scenarios.history import FaultWindow
from scenarios.verdicts import FAIL, PASS, UNMEASURED

KW = {"result_cls": CheckResult, "unmeasured": _unmeasured}


def verdicts(r):
    return {j.metric: j.verdict for j in r.judgements}


def test_ord2_times_each_failed_sync_to_its_retry_and_finds_the_lost_ones():
    events = [{"event": "failed_sync", "signal_id": "s1", "mono": 10.0, "instance": "A"},
              {"event": "order_send_invoke", "signal_id": "s1", "mono": 70.2},
              {"event": "failed_sync", "signal_id": "s2", "mono": 11.0, "instance": "A"},
              {"event": "order_send_invoke", "signal_id": "s2", "mono": 71.0}]
    r = check_order_failed_syncs(events, {"s1"}, {"s2"}, set(), **KW)
    assert verdicts(r) == {"failed_sync_retry_s": FAIL, "lost_signals": PASS}   # 60.2 s > 60 s
    assert r.metrics["failed_sync_retry_s"] == 60.2
    lost = check_order_failed_syncs(events, {"s1"}, set(), set(), **KW)
    assert lost.metrics["lost_signals"] == 1 and verdicts(lost)["lost_signals"] == FAIL
    none = check_order_failed_syncs([{"event": "order_send_invoke", "signal_id": "s1", "mono": 1.0}], set(), set(),
                                    set(), **KW)
    assert none.valid == "unknown" and "no order went to failed_syncs" in none.summary


def W(fault, *, details=None, inject_mono=100.0, inject_wall=1_000.0, node="clickhouse"):
    return FaultWindow(fault, f"{fault}-1", inject_mono, inject_mono + 8.0, f"{node}: {fault}", (), inject_wall,
                       inject_wall + 8.0, {"node": node, **(details or {})})


def test_ch2_is_judged_only_when_clickhouse_lost_data():
    r = check_clickhouse_backfill([W("process-kill")], [{"event": "clickhouse_backfill", "missing": 0}], 0, **KW)
    assert r.valid == "unknown" and "lost no data" in r.summary and "1 backfill check" in r.summary
    empty = check_clickhouse_backfill([W("clickhouse-data-lost", details={"lost_keys": []})], [], 0, **KW)
    assert empty.valid == "unknown" and "deleted no row" in empty.summary


def test_ch2_times_the_lost_rows_back_and_judges_lost_and_doubled():
    lost = W("clickhouse-data-lost", details={"mode": "truncate", "lost_keys": ["o/p/1", "o/p/2", "s/x"]})
    rows = [{"trade_key": "o/p/1", "synced_ms": 1_004_500}, {"trade_key": "o/p/2", "synced_ms": 1_006_250},
            {"trade_key": "s/x", "synced_ms": 1_005_000}]
    events = [{"event": "clickhouse_backfill", "missing": 3, "mono": 105.9, "instance": "A"}]
    r = check_clickhouse_backfill([lost], events, 0, duplicate_trades=0, rows=rows, **KW)
    assert verdicts(r) == {"lost_rows": PASS, "duplicate_rows": PASS}
    assert r.metrics["backfill_s"] == 6.25 and r.metrics["rows_deleted"] == 3
    assert "3/3 back" in r.summary and "5.9 s after" in r.summary
    # a rejection's row (no trade in the ledger) that never came back is lost too; a doubled signal fails
    r = check_clickhouse_backfill([lost], events, 0, duplicate_trades=1, rows=rows[:2], **KW)
    assert r.metrics["lost_rows"] == 1 and r.metrics["backfill_s"] is None
    assert verdicts(r) == {"lost_rows": FAIL, "duplicate_rows": FAIL}


def test_ch3_judges_level_and_restore_and_calls_the_schedule_configuration():
    events = [{"event": "clickhouse_backup_settings", "full_s": 20.0, "incremental_s": 5.0, "keep_days": 7.0,
               "level": 3, "instance": "A", "mono": 0.5},
              {"event": "clickhouse_backup", "kind": "full", "level": 3, "codec": "zstd", "taken_ms": 1000,
               "instance": "A", "pid": 1, "mono": 1.0},
              {"event": "clickhouse_backup", "kind": "incremental", "level": 3, "taken_ms": 6000, "instance": "A",
               "pid": 1, "mono": 6.0},
              {"event": "clickhouse_backup", "kind": "incremental", "level": 3, "taken_ms": 11000, "instance": "A",
               "pid": 1, "mono": 11.0}]
    restore = {"engines": [{"engine": "engine-a", "chain": ["f", "i"], "restored_rows": 40, "expected_rows": 38,
                            "missing": 0, "seconds": 0.05}]}
    r = check_clickhouse_backups(events, restore, **KW)
    v = verdicts(r)
    assert v["zstd_level"] == PASS and v["restore_missing_rows"] == PASS and r.valid is True
    for metric in ("full_backup_interval_h", "incremental_backup_interval_h", "backup_retention_days"):
        assert v[metric] == UNMEASURED
    why = next(j.reason for j in r.judgements if j.metric == "full_backup_interval_h")
    assert "configuration, not measured" in why and "full every 20 s, incremental every 5 s" in why
    assert "incremental backups 5.0-5.0 s apart" in why
    assert verdicts(check_clickhouse_backups([{**events[1], "level": 19}], **KW))["zstd_level"] == FAIL
    bad = check_clickhouse_backups(events, {"engines": [{"engine": "engine-a", "missing": 2}]}, **KW)
    assert verdicts(bad)["restore_missing_rows"] == FAIL
    none = check_clickhouse_backups([], **KW)
    assert none.valid == "unknown" and "restore not checked" in none.summary


def test_ch4_with_one_clickhouse_node_is_not_measurable_with_the_reason():
    r = check_clickhouse_failover({"nodes": [{"name": "clickhouse", "kind": "clickhouse"}]}, [W("process-kill")],
                                  **KW)
    assert r.valid == "unknown"
    assert all(j.reason.startswith("not measurable in this topology: single ClickHouse node") for j in r.judgements)
    assert "lost the only node 1 time(s)" in r.summary
    assert all(j.verdict == UNMEASURED for j in r.judgements)


def test_ddb4_compares_the_repaired_journal_with_the_ledger():
    events = [{"event": "journal_repaired", "file": "/x/journal-A.duckdb", "instance": "A"}]
    orders = {"s1": [{"order": 11}], "s2": [{"order": 12}]}
    good = {"journal-A.duckdb": {"s1": {"state": "DONE", "order": 11}, "s2": {"state": "DONE", "order": 12}}}
    assert verdicts(check_journal_rebuild(events, good, orders, **KW)) == {"state_mismatches": PASS}
    bad = {"journal-A.duckdb": {"s1": {"state": "REJECTED", "order": None}, "s3": {"state": "DONE", "order": 9}}}
    r = check_journal_rebuild(events, bad, orders, **KW)
    assert r.metrics["state_mismatches"] == 2 and r.valid is False
    assert check_journal_rebuild([], good, orders, **KW).valid == "unknown"


def test_ch2_times_a_loss_at_its_heal_when_a_later_loss_deleted_the_same_rows_again():
    first = W("clickhouse-data-lost", details={"lost_keys": ["o/p/1"], "back_at_heal": None})
    later = W("clickhouse-data-lost", details={"lost_keys": ["o/p/1"]}, inject_mono=200.0, inject_wall=1_100.0)
    later = dataclasses.replace(later, fault_id="clickhouse-data-lost-2")
    rows = [{"trade_key": "o/p/1", "synced_ms": 1_105_000}]
    heals = {first.fault_id: {"back_at_heal": 1, "back_synced_ms_max": 1_004_000}}   # the heal line's details
    r = check_clickhouse_backfill([first, later], [], 0, duplicate_trades=0, rows=rows, heals=heals, **KW)
    losses = [e for e in r.evidence if e.get("kind") == "loss"]
    assert [(x["backfill_s"], x["timed_by"]) for x in losses] == [(4.0, "heal"), (5.0, "rows after the run")]
    assert r.metrics["backfill_s"] == 5.0
