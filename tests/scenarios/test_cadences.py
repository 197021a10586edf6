"""The cadence checkers (issue 19 part 2) on synthetic event logs: each one passes a conformant history and fails (or
says unmeasured) on a history that breaks its target. No stack."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from scenarios import cadences as cad
from scenarios.checkers import CHECKERS, CheckResult
from scenarios.history import FaultWindow
from scenarios.verdicts import FAIL, PASS, UNMEASURED

T0 = 1_800_000_000.0   # a wall-clock epoch for the synthetic lines
M0 = 5_000.0           # a monotonic clock


def ev(event: str, t: float, *, pid: int = 11, instance: str = "A", **fields) -> dict:
    """An engine event line at ``t`` seconds into the run (both clocks)."""
    return {"event": event, "ts": T0 + t, "mono": M0 + t, "pid": pid, "instance": instance, **fields}


def verdicts(r) -> dict:
    return {(j.requirement_id, j.metric): j.verdict for j in r.judgements}


def window(fault: str, at: float, heal: float | None, node: str = "") -> FaultWindow:
    return FaultWindow(fault, f"{fault}-{at}", M0 + at, None if heal is None else M0 + heal,
                       inject_wall=T0 + at, heal_wall=None if heal is None else T0 + heal,
                       details={"node": node} if node else {})


def test_distribution_shape():
    d = cad.distribution([1.0, 0.5, 0.75, None, float("nan")])
    assert d == {"n": 3, "min": 0.5, "median": 0.75, "p95": 1.0, "max": 1.0}
    assert cad.distribution([]) == {"n": 0}


def test_series_intervals_leave_out_fault_spans():
    pts = [(M0 + t, T0 + t) for t in (0.0, 1.0, 2.0, 6.0, 7.0)]
    iv, out = cad.series_intervals(pts, exclude=[(T0 + 3.0, T0 + 5.0)])
    assert iv == pytest.approx([1.0, 1.0, 1.0]) and out == 1


def test_schedule_at_the_documents_resolution():
    assert cad.schedule_at_resolution([1.2, 2.05, 3.9, 8.1, 16.4], [1, 2, 4, 8, 16]) == [1, 2, 4, 8, 16]
    assert cad.schedule_at_resolution([0.26, 0.51, 1.05], [1, 2, 4, 8, 16]) == [0, 1, 1]
    assert cad.schedule_at_resolution([0.26, 0.51], [0.25, 0.5]) == [0.26, 0.51]


# -- ENG-1 heartbeat ---------------------------------------------------------------------------------------------
def _heartbeats(times, **kw):
    return [ev("heartbeat", t, took_s=0.001, **kw) for t in times]


def test_heartbeat_pass_fail_and_fault_left_out():
    ok = [ev("lease_acquired", 0.0), *_heartbeats([0.97 * i + 0.5 for i in range(10)])]
    r = cad.check_heartbeat(ok, [], result_cls=CheckResult)
    assert verdicts(r)[("ENG-1", "heartbeat_interval_s")] == PASS and r.metrics["heartbeat_interval_s"] <= 1.0
    late = [*ok, *_heartbeats([9.5, 11.0])]              # a 1.5 s gap between two renewals
    r = cad.check_heartbeat(late, [], result_cls=CheckResult)
    assert verdicts(r)[("ENG-1", "heartbeat_interval_s")] == FAIL and r.metrics["heartbeat_interval_s"] == 1.5
    # the same gap inside a fault window is the fault's (judged by the RTO checkers), not the cadence
    r = cad.check_heartbeat(late, [window("process-pause", 9.6, 10.9)], result_cls=CheckResult)
    assert verdicts(r)[("ENG-1", "heartbeat_interval_s")] == PASS and r.metrics["intervals_in_faults_left_out"] == 1
    # ticks inside a long fault of another node are a steady cadence: only intervals across an injection or a heal
    # are the fault's
    r = cad.check_heartbeat(late, [window("process-kill", 0.2, 30.0, "mt5-primary")], result_cls=CheckResult)
    assert verdicts(r)[("ENG-1", "heartbeat_interval_s")] == FAIL and r.metrics["intervals_in_faults_left_out"] == 0


def test_heartbeat_series_split_at_lease_changes_and_unmeasured_without_lines():
    evs = [*_heartbeats([0, 1]), ev("lease_lost", 1.5), ev("lease_acquired", 9.0), *_heartbeats([9.1, 10.0])]
    r = cad.check_heartbeat(evs, [], result_cls=CheckResult)
    assert r.metrics["heartbeat_interval_s"] == 1.0        # 1 -> 9.1 spans no holding period
    r = cad.check_heartbeat([ev("engine_start", 0)], [], result_cls=CheckResult)
    j = r.judgements[0]
    assert j.verdict == UNMEASURED and j.reason.startswith("unmeasured: ") and "heartbeat" in j.reason
    assert r.valid == "unknown"


# -- BRK-1 broker heartbeat ---------------------------------------------------------------------------------------
def test_broker_heartbeat_interval_and_timeout():
    evs = [ev("broker_heartbeat", 2.8 * i, broker="mt5-primary", ok=True, took_s=0.002) for i in range(6)]
    r = cad.check_broker_heartbeat(evs, [], result_cls=CheckResult)
    v = verdicts(r)
    assert v[("BRK-1", "broker_heartbeat_interval_s")] == PASS
    assert v[("BRK-1", "broker_connection_timeout_s")] == UNMEASURED
    hung = [*evs, ev("broker_heartbeat", 23.0, broker="mt5-primary", ok=False, took_s=6.2, error="took longer"),
            ev("broker_connected", 25.0, broker="mt5-backup"),
            *(ev("broker_heartbeat", 25.0 + 3.4 * i, broker="mt5-backup", ok=True, took_s=0.001) for i in range(3))]
    r = cad.check_broker_heartbeat(hung, [], result_cls=CheckResult)
    v = verdicts(r)
    assert v[("BRK-1", "broker_connection_timeout_s")] == FAIL and r.metrics["broker_connection_timeout_s"] == 6.2
    assert v[("BRK-1", "broker_heartbeat_interval_s")] == FAIL and r.metrics["broker_heartbeat_interval_s"] == 3.4


# -- BRK-2 reconnects, BRK-5 every broker down ----------------------------------------------------------------------
def _outage(step: float, n_primary: int = 5, n_backup: int = 2):
    out, t = [], 4.0
    for i in range(n_primary):
        out.append(ev("broker_connect_failed", t, broker="mt5-primary", attempt=i + 1, took_s=0.003))
        t += step
    out.append(ev("broker_switch", t - step + 0.01, old="mt5-primary", new="mt5-backup"))
    t = t - step + 0.02
    for i in range(n_backup):
        out.append(ev("broker_connect_failed", t, broker="mt5-backup", attempt=i + 1, took_s=0.003))
        if i == 0:
            out.append(ev("broker_suspended", t + 0.001, failures=n_primary + 1, every_broker=True))
            out.append(ev("alert", t + 0.002, kind="broker_suspended", message="every broker failed"))
        t += step
    out.append(ev("broker_connected", t, broker="mt5-backup"))
    return out


def test_broker_retry_pass_and_fail():
    r = cad.check_broker_retry(_outage(2.8), result_cls=CheckResult)
    v = verdicts(r)
    assert v[("BRK-2", "broker_retry_interval_s")] == PASS
    assert r.metrics["failures_before_secondary"] == 5 and v[("BRK-2", "failures_before_secondary")] == PASS
    assert r.metrics["failures_before_suspend"] == 6 and v[("BRK-2", "failures_before_suspend")] == PASS
    r = cad.check_broker_retry(_outage(3.3, n_primary=7), result_cls=CheckResult)
    v = verdicts(r)
    assert v[("BRK-2", "broker_retry_interval_s")] == FAIL and v[("BRK-2", "failures_before_secondary")] == FAIL


def test_brokers_down_counts_sends_and_alerts_only_while_every_broker_is_down():
    windows = [window("process-kill", 3.9, 34.0, "mt5-primary"), window("process-kill", 3.9, 20.0, "mt5-backup")]
    good = _outage(2.8)
    r = cad.check_brokers_down(good, windows, result_cls=CheckResult)
    v = verdicts(r)
    assert v[("BRK-5", "alerts_raised")] == PASS and v[("BRK-5", "orders_sent_while_suspended")] == PASS
    assert r.metrics["every_broker_down_s"] == pytest.approx(16.1)
    silent = [e for e in good if e["event"] != "alert"] + [ev("order_send_invoke", 18.0, signal_id="s1")]
    v = verdicts(cad.check_brokers_down(silent, windows, result_cls=CheckResult))
    assert v[("BRK-5", "alerts_raised")] == FAIL and v[("BRK-5", "orders_sent_while_suspended")] == FAIL
    # a send in the instant between the kill and the engine's first sign of it is none it could have held back
    early = [ev("order_send_invoke", 3.95, signal_id="s0"), *good]
    early.sort(key=lambda e: e["ts"])
    assert verdicts(cad.check_brokers_down(early, windows, result_cls=CheckResult))[
        ("BRK-5", "orders_sent_while_suspended")] == PASS
    # one broker down is not "every broker down": nothing to judge, never a pass
    r = cad.check_brokers_down(good, windows[:1], result_cls=CheckResult)
    assert set(verdicts(r).values()) == {UNMEASURED} and "never down at once" in r.summary


# -- ORD-3 Redis reconnects -----------------------------------------------------------------------------------------
def test_redis_retry():
    evs = [ev("redis_attempt", 6.0 + 1.85 * i, ok=False, failures=i + 1, took_s=0.01) for i in range(10)]
    evs += [ev("redis_rediscover", 22.7, failures=10), ev("redis_attempt", 26.0, ok=True, failures=10, took_s=0.02)]
    r = cad.check_redis_retry(evs, result_cls=CheckResult)
    v = verdicts(r)
    assert v[("ORD-3", "redis_retry_interval_s")] == PASS and v[("ORD-3", "attempts_before_sentinel_switch")] == PASS
    slow = [ev("redis_attempt", 2.6 * i, ok=False, failures=i + 1, took_s=0.5) for i in range(4)]
    r = cad.check_redis_retry(slow, result_cls=CheckResult)
    v = verdicts(r)
    assert v[("ORD-3", "redis_retry_interval_s")] == FAIL and r.metrics["redis_retry_interval_s"] == pytest.approx(2.6)
    assert v[("ORD-3", "attempts_before_sentinel_switch")] == UNMEASURED


# -- ORD-1 order backoff --------------------------------------------------------------------------------------------
def _retried(sid: str, delays, t0: float = 1.0, executed: bool = True, to_failed_syncs: bool = False):
    out, t = [], t0
    for d in delays:
        out += [ev("order_send_invoke", t, signal_id=sid), ev("order_send_complete", t + 0.01, signal_id=sid,
                                                              outcome="fail", name="TRADE_RETCODE_TOO_MANY_REQUESTS"),
                ev("deferred", t + 0.011, signal_id=sid, reason="TRADE_RETCODE_TOO_MANY_REQUESTS")]
        t += 0.01 + d
    out.append(ev("order_send_invoke", t, signal_id=sid))
    if to_failed_syncs:
        out += [ev("order_send_complete", t + 0.01, signal_id=sid, outcome="fail",
                   name="TRADE_RETCODE_TOO_MANY_REQUESTS"), ev("failed_sync", t + 0.012, signal_id=sid)]
    elif executed:
        out.append(ev("order_send_complete", t + 0.01, signal_id=sid, outcome="ok"))
    return out


def test_order_backoff_schedule_attempts_and_recovery():
    evs = _retried("s1", [1.1, 2.05, 4.1, 8.2, 16.1], to_failed_syncs=True) + _retried("s2", [1.05], t0=3.0)
    r = cad.check_order_backoff(evs, result_cls=CheckResult)
    v = verdicts(r)
    assert r.metrics["order_backoff_s"] == [1, 2, 4, 8, 16] and v[("ORD-1", "order_backoff_s")] == PASS
    assert r.metrics["order_attempts"] == 6 and v[("ORD-1", "order_attempts")] == FAIL   # five delays, six tries
    assert v[("ORD-1", "order_retry_recovery_s")] == FAIL                            # >= 1 s after a failure
    # a retry at once (no backoff) is measured as such and fails the schedule
    r = cad.check_order_backoff(_retried("s3", [0.05, 0.05]), result_cls=CheckResult)
    assert r.metrics["order_backoff_s"] == [0, 0] and verdicts(r)[("ORD-1", "order_backoff_s")] == FAIL
    # a market-closed requeue is not an ORD-1 retry (the deferred line names another reason)
    evs = [ev("order_send_invoke", 1, signal_id="m"), ev("order_send_complete", 1.01, signal_id="m", outcome="fail",
                                                         name="TRADE_RETCODE_MARKET_CLOSED"),
           ev("deferred", 1.02, signal_id="m", reason="MARKET_CLOSED"), ev("order_send_invoke", 6.0, signal_id="m")]
    r = cad.check_order_backoff(evs, result_cls=CheckResult)
    assert verdicts(r)[("ORD-1", "order_backoff_s")] == UNMEASURED


# -- EA-3 RIS -------------------------------------------------------------------------------------------------------
def ea(event: str, t: float, pid: int = 21, **fields) -> dict:
    return {"event": event, "wall": T0 + t, "mono": M0 + t, "pid": pid, "instance": "ea-1", **fields}


def _ris(step: float, n: int, back_after_heal: float):
    out = [ea("session_new", 0.5, reason="fresh"), ea("ris_lost", 10.2)]
    for i in range(n):
        out.append(ea("ris_attempt", 10.2 + step * i, n=i + 1, ok=False, took_s=0.5))
        if i + 1 == 5:
            out.append(ea("alert", 10.2 + step * i + 0.001, what="ris_session_lost"))
    out.append(ea("session_new" if n >= 5 else "session_resumed", 24.0 + back_after_heal, reason="fresh"))
    return out


def test_ris_reconnect_pass_and_fail():
    windows = [window("redis-all-down", 10.0, 24.0)]
    r = cad.check_ris_reconnect(_ris(2.0, 7, 1.2), windows, result_cls=CheckResult)
    v = verdicts(r)
    assert v[("EA-3", "ris_reconnect_interval_s")] == PASS and v[("EA-3", "recoveries_before_new_session")] == PASS
    assert v[("EA-3", "rto_s")] == PASS and r.metrics["rto_s"] == pytest.approx(1.2)
    r = cad.check_ris_reconnect(_ris(2.5, 7, 4.0), windows, result_cls=CheckResult)
    v = verdicts(r)
    assert v[("EA-3", "ris_reconnect_interval_s")] == FAIL and v[("EA-3", "rto_s")] == FAIL
    r = cad.check_ris_reconnect([ea("session_new", 0.5)], [], result_cls=CheckResult)
    assert set(verdicts(r).values()) == {UNMEASURED}


# -- BE-1 backend health checks -------------------------------------------------------------------------------------
def sup(t: float, pid: int = 31, program: str = "backend-a") -> dict:
    return {"event": "health", "program": program, "wall": T0 + t, "mono": M0 + t, "pid": pid, "took_s": 0.004,
            "ok": True}


def test_backend_health_cadence():
    r = cad.check_backend_health([sup(2.98 * i) for i in range(8)], [], result_cls=CheckResult)
    assert verdicts(r)[("BE-1", "health_check_interval_s")] == PASS
    r = cad.check_backend_health([sup(3.2 * i) for i in range(8)], [], result_cls=CheckResult)
    assert verdicts(r)[("BE-1", "health_check_interval_s")] == FAIL
    # a restart is a new process: no interval across it
    r = cad.check_backend_health([sup(0), sup(2.9), sup(9.0, pid=32), sup(11.9, pid=32)], [], result_cls=CheckResult)
    assert r.metrics["health_check_interval_s"] == pytest.approx(2.9)


def test_registered_and_every_cadence_named():
    for name in ("heartbeat_cadence", "broker_heartbeat", "broker_retry", "brokers_down", "redis_retry",
                 "order_backoff", "ris_reconnect", "backend_health_cadence", "uptime"):
        assert name in CHECKERS
    assert {rid for rid, _m, _c, _e in cad.CADENCES} >= {"ENG-1", "BRK-1", "BRK-2", "ORD-1", "ORD-3", "CH-1",
                                                             "EA-2", "EA-3", "BR-2", "DDB-6", "BE-1"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=10.0, allow_nan=False), min_size=1, max_size=30))
def test_worst_interval_is_the_largest_gap(gaps):
    times, t = [], 0.0
    for g in [0.0, *gaps]:
        t += g
        times.append(t)
    r = cad.check_heartbeat(_heartbeats(times), [], result_cls=CheckResult)
    assert r.metrics["heartbeat_interval_s"] == pytest.approx(max(gaps), abs=1e-3)
    d = r.metrics["heartbeat_interval"]
    assert d["n"] == len(gaps) and d["min"] <= d["median"] <= d["p95"] <= d["max"]


def test_a_refused_broker_connect_measures_nothing_of_the_connection_timeout():
    """BRK-1 (issue 19's known gap): a killed broker's heartbeat fails at once ('No IPC connection', 0.0003 s): the
    5 s timeout never ran, so it is unmeasured with that reason, never a pass of 0.0003 s."""
    evs = [ev("broker_heartbeat", 2.8 * i, broker="primary", ok=True, took_s=0.002) for i in range(4)]
    evs.append(ev("broker_heartbeat", 12.0, broker="primary", ok=False, took_s=0.0003,
                  error="broker primary: terminal_info -> None (-10004, 'No IPC connection')"))
    r = cad.check_broker_heartbeat(evs, [], result_cls=CheckResult)
    j = next(j for j in r.judgements if j.metric == "broker_connection_timeout_s")
    assert j.verdict == UNMEASURED and r.metrics["broker_connection_timeout_s"] is None
    assert "refused connects" in j.reason and "no drill in the library pauses a broker" in j.reason
