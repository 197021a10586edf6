"""The checkers for ORD-2, CH-2, CH-3, CH-4 and DDB-4 (scenarios.store_gaps) on synthetic records: each judges what
a run recorded and says unmeasured, with the reason, when the run holds nothing to judge (never a pass)."""
from __future__ import annotations

from scenarios.checkers import CheckResult, _unmeasured
from scenarios.store_gaps import (check_clickhouse_backfill, check_clickhouse_backups, check_clickhouse_failover,
                                  check_journal_rebuild, check_order_failed_syncs)
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


class W:
    def __init__(self, fault):
        self.fault = fault


def test_ch2_is_judged_only_when_clickhouse_lost_data():
    r = check_clickhouse_backfill([W("process-kill")], [{"event": "clickhouse_backfill", "missing": 0}], 0, **KW)
    assert r.valid == "unknown" and "lost no data" in r.summary and "1 backfill check" in r.summary
    lost = check_clickhouse_backfill([W("clickhouse-data-lost")], [], 2, **KW)
    assert verdicts(lost) == {"lost_rows": FAIL}


def test_ch3_reads_the_backups_level_and_says_the_schedule_is_unmeasured():
    events = [{"event": "clickhouse_backup", "kind": "full", "level": 3, "codec": "zstd", "taken_ms": 1000,
               "instance": "A", "pid": 1, "mono": 1.0},
              {"event": "clickhouse_backup", "kind": "incremental", "level": 3, "taken_ms": 2000, "instance": "A",
               "pid": 1, "mono": 30.0}]
    r = check_clickhouse_backups(events, **KW)
    v = verdicts(r)
    assert v["zstd_level"] == PASS and v["full_backup_interval_h"] == UNMEASURED
    assert v["backup_retention_days"] == UNMEASURED and r.valid is True
    assert verdicts(check_clickhouse_backups([{**events[0], "level": 19}], **KW))["zstd_level"] == FAIL
    assert check_clickhouse_backups([], **KW).valid == "unknown"


def test_ch4_with_one_clickhouse_node_is_unmeasured_with_the_reason():
    r = check_clickhouse_failover({"nodes": [{"name": "clickhouse", "kind": "clickhouse"}]}, **KW)
    assert r.valid == "unknown" and "1 ClickHouse node" in r.summary


def test_ddb4_compares_the_repaired_journal_with_the_ledger():
    events = [{"event": "journal_repaired", "file": "/x/journal-A.duckdb", "instance": "A"}]
    orders = {"s1": [{"order": 11}], "s2": [{"order": 12}]}
    good = {"journal-A.duckdb": {"s1": {"state": "DONE", "order": 11}, "s2": {"state": "DONE", "order": 12}}}
    assert verdicts(check_journal_rebuild(events, good, orders, **KW)) == {"state_mismatches": PASS}
    bad = {"journal-A.duckdb": {"s1": {"state": "REJECTED", "order": None}, "s3": {"state": "DONE", "order": 9}}}
    r = check_journal_rebuild(events, bad, orders, **KW)
    assert r.metrics["state_mismatches"] == 2 and r.valid is False
    assert check_journal_rebuild([], good, orders, **KW).valid == "unknown"
