"""store_wal / store_snapshots / store_health (DDB-1, DDB-2, DDB-6) and failed_writes (DDB-5) on synthetic event logs with a known truth: the
numbers come from the engines' own lines, idle stretches are not counted as missed snapshots, a refused write that
came back later is not lost, one that never did is, and nothing to judge is unmeasured with its reason."""
from __future__ import annotations

import pytest

from scenarios import checkers as c
from scenarios import registry
from scenarios.history import FaultWindow, Signal
from scenarios.persistence import check_failed_writes, check_store_cadence
from scenarios.verdicts import FAIL, PASS, UNMEASURED


def cadence(events, rids=("DDB-1", "DDB-2", "DDB-6")):
    return check_store_cadence(events, requirement_ids=rids, result_cls=c.CheckResult, unmeasured=c._unmeasured)


def verdicts(res):
    return {(j.requirement_id, j.metric): (j.verdict, j.measured) for j in res.judgements}


def keeper_run(*, health_every=0.98, snap_every=0.48, seconds=10.0, idle_from=None, wal=4096, kept=5,
               threshold="15.2 MiB"):
    """One engine process: a store_settings line, a journal_health line per check, a write every 0.05 s (none after
    ``idle_from``), a snapshot every ``snap_every`` s while writes come (the keeper's rule)."""
    ev = [{"event": "store_settings", "mono": 100.0, "instance": "A", "pid": 7, "checkpoint_threshold": threshold,
           "checkpoint_threshold_mib": float(threshold.split()[0]), "access_mode": "automatic",
           "snapshots_kept": kept, "snapshot_interval_s": 0.5, "health_interval_s": 1.0, "wal_file_bytes": 0}]
    t = 100.0
    while t < 100.0 + seconds:
        ev.append({"event": "journal_health", "mono": t + 0.004, "took_s": 0.004, "ok": True, "wal_bytes": wal,
                   "instance": "A", "pid": 7})
        t += health_every
    t, n = 100.0, 0
    while t < 100.0 + seconds:
        if idle_from is None or t < 100.0 + idle_from:
            ev.append({"event": "intent_written", "mono": t, "instance": "A", "pid": 7})
        t = round(t + 0.05, 6)
    t = 100.01
    last_write = max(e["mono"] for e in ev if e["event"] == "intent_written")
    while t < 100.0 + seconds:
        if t <= last_write + snap_every:
            n += 1
            ev.append({"event": "snapshot", "mono": t + 0.01, "took_s": 0.01, "instance": "A", "pid": 7,
                       "on_disk": min(n, kept), "file": f"journal-A.h{n:012d}.t{int(t * 1000)}.duckdb"})
        t += snap_every
    return sorted(ev, key=lambda e: e["mono"])


def test_store_cadence_measures_the_keeper_from_its_own_lines():
    res = cadence(keeper_run())
    v = verdicts(res)
    assert v[("DDB-6", "health_check_interval_s")] == (PASS, pytest.approx(0.98))
    assert v[("DDB-2", "snapshot_interval_s")] == (PASS, pytest.approx(0.48))
    assert v[("DDB-2", "snapshots_kept")][1] == 5   # 5 files listed; >= 10 (MT5-HA) fails, >= 5 (EA-BR) passes
    j = next(j for j in res.judgements if j.metric == "snapshots_kept")
    assert j.verdict == FAIL and {a["value"]: a["verdict"] for a in j.alternatives} == {5: PASS}
    assert v[("DDB-1", "wal_enabled")] == (PASS, True)
    assert v[("DDB-1", "wal_limit_mb")] == (PASS, pytest.approx(15.2 * 1.048576, abs=0.01))


def test_slow_snapshots_and_checks_fail_and_idle_stretches_do_not_count():
    v = verdicts(cadence(keeper_run(health_every=1.3, snap_every=2.03)))
    assert v[("DDB-6", "health_check_interval_s")] == (FAIL, pytest.approx(1.3))
    assert v[("DDB-2", "snapshot_interval_s")] == (FAIL, pytest.approx(2.03))
    # no write after 3 s: the keeper takes no snapshot, and the long quiet gap is not a missed one
    assert verdicts(cadence(keeper_run(idle_from=3.0)))[("DDB-2", "snapshot_interval_s")][0] == PASS


def test_store_cadence_without_keeper_lines_is_unmeasured_with_the_reason():
    res = cadence([{"event": "intent_written", "mono": 1.0, "instance": "A", "pid": 1}])
    assert res.valid == c.UNKNOWN and all(j.verdict == UNMEASURED for j in res.judgements) and res.judgements
    res = cadence([e for e in keeper_run() if e["event"] != "journal_health"])
    j = {x.metric: x for x in res.judgements}
    assert j["health_check_interval_s"].verdict == UNMEASURED and "journal_health" in j["health_check_interval_s"].reason
    assert j["wal_enabled"].verdict == UNMEASURED and j["snapshot_interval_s"].verdict == PASS


def disk_run(*, lost: bool = False, recorded: bool = False):
    window = FaultWindow("disk-fill", "disk-fill-1", 10.0, 18.0, details={"folder": "/x/stack/engines/engine-a"})
    signals = [Signal(f"s{i}", "ok", 9.0 + 0.5 * i) for i in range(20)]   # 9.0 .. 18.5
    events = [{"event": "intent_written", "signal_id": s.id, "mono": s.mono + 0.01, "instance": "A"}
              for s in signals if not 10.0 <= s.mono < 18.0]
    refused = [s for s in signals if 10.0 <= s.mono < 18.0]
    events += [{"event": "snapshot_failed", "mono": 10.2, "instance": "A", "error": "No space left on device"},
               {"event": "journal_disk_ok", "mono": 18.15, "instance": "A"},
               {"event": "snapshot", "mono": 18.6, "instance": "A"}]
    back = refused[:-1] if lost or recorded else refused
    events += [{"event": "intent_written", "signal_id": s.id, "mono": 18.2, "instance": "A"} for s in back]
    outcomes = {e["signal_id"]: "executed" for e in events if e["event"] == "intent_written"}
    failed = [{"target": "journal", "kind": "order", "sync_id": refused[-1].id}] if recorded else []
    return window, sorted(events, key=lambda e: e["mono"]), signals, outcomes, failed, refused


def failed_writes(window, events, signals, outcomes, failed):
    return check_failed_writes([window], events, signals, outcomes, [], failed, result_cls=c.CheckResult,
                               unmeasured=c._unmeasured)


def test_writes_refused_by_a_full_disk_and_applied_after_it_are_not_lost():
    window, events, signals, outcomes, failed, refused = disk_run()
    res = failed_writes(window, events, signals, outcomes, failed)
    assert res.valid is True, res.summary
    assert res.metrics["refused_writes"] == len(refused) + 1 and res.metrics["lost_writes"] == 0
    assert res.metrics["resync_s"] == pytest.approx(0.01)   # the signal sent at the heal, journalled 10 ms later


def test_a_refused_write_never_applied_nor_recorded_is_lost_and_one_in_failed_syncs_is_not():
    window, events, signals, outcomes, failed, refused = disk_run(lost=True)
    res = failed_writes(window, events, signals, outcomes, failed)
    assert res.valid is False and res.metrics["lost_writes"] == 1
    assert refused[-1].id in res.evidence[0]["never_applied"]
    window, events, signals, outcomes, failed, refused = disk_run(recorded=True)
    res = failed_writes(window, events, signals, outcomes, failed)
    assert res.valid is True and res.metrics["lost_writes"] == 0 and res.metrics["recorded_writes"] == 1


def test_failed_writes_with_nothing_refused_or_no_journal_is_unmeasured():
    window, events, signals, outcomes, failed, _ = disk_run()
    none = check_failed_writes([], events, signals, outcomes, [], failed, result_cls=c.CheckResult,
                               unmeasured=c._unmeasured)
    assert none.valid == c.UNKNOWN and "disk-fill" in none.summary
    quiet = failed_writes(window, [e for e in events if e["event"] != "snapshot_failed"], [], outcomes, failed)
    assert quiet.valid == c.UNKNOWN and quiet.judgements[0].verdict == UNMEASURED
    unread = check_failed_writes([window], events, signals, outcomes, [], None, result_cls=c.CheckResult,
                                 unmeasured=c._unmeasured, problems=["journal-A.duckdb: locked"])
    assert unread.judgements[0].verdict == UNMEASURED and "failed_syncs" in unread.judgements[0].reason


def test_the_scenarios_claim_ddb_1_2_5_6_through_these_checkers():
    claims = {(s.name, spec.checker, r) for s in registry.all_scenarios() for spec in s.checkers
              for r in spec.requirement_ids}
    assert ("disk-full", "failed_writes", "DDB-5") in claims
    assert {("engine-kill-heavy-writes", "store_wal", "DDB-1"), ("engine-kill-heavy-writes", "store_snapshots", "DDB-2"),
            ("engine-kill-heavy-writes", "store_health", "DDB-6")} <= claims


def test_failed_sync_tries_time_the_first_resync_and_the_backoff_after_a_start():
    from scenarios.checkers import failed_sync_tries

    start = {"event": "engine_start", "mono": 50.0, "instance": "A", "pid": 9}
    tries = [{"event": "clickhouse_failed_syncs", "mono": 50.0 + t, "instance": "A", "pid": 9, "failed": 1,
              "synced": 0} for t in (0.4, 1.4, 3.4, 7.4)]
    got, why, rows = failed_sync_tries([start, *tries])
    assert got == {"failed_sync_retry_s": 4.0, "first_resync_s": 0.4, "resync_backoff_s": [1.0, 2.0, 4.0]}
    nothing, why, rows = failed_sync_tries([start])
    assert set(nothing.values()) == {None} and "CH-1" in why["resync_backoff_s"] and rows == []
