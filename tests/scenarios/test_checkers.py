"""Checkers on synthetic histories: hand-built timelines with a known answer, and hypothesis-generated ones."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from scenarios import checkers as c
from scenarios import targets as targets_mod
from scenarios.history import Deal, FaultWindow, Operation, Signal, TradeResult


def op(i, invoke, done, outcome="ok", f="trade", key=None):
    return Operation(id=i, process=f"c{i % 3}", f=f, key=key or f"s{i}", outcome=outcome, invoke_mono=invoke,
                     complete_mono=done)


def deal(n, comment, order=None, broker="primary", volume=0.01, side=0, symbol="EURUSD"):
    return Deal(deal=n, order=order if order is not None else 1000 + n, comment=comment, symbol=symbol,
                volume=volume, broker=broker, type=side)


KILL = FaultWindow("process-kill", "process-kill-1", inject_mono=10.0, heal_mono=None, description="kill engine-a")


# -- RTO -------------------------------------------------------------------------------------------------------
def test_rto_by_the_rule_on_a_known_timeline():
    ops = [
        op(1, 9.0, 9.01),
        op(2, 9.9, 9.95),  # last ok before the injection
        op(3, 9.99, 10.2),  # in flight across the injection, ok: must NOT count
        op(4, 10.5, 12.5, "unknown"),  # timed out during the outage
        op(5, 11.0, 11.1, "fail"),
        op(6, 12.0, 13.25),  # invoked after the injection: first ok after -> RTO 3.25
        op(7, 13.0, 13.1),  # completes earlier than 6 but... 13.1 < 13.25: this is the first ok completion
    ]
    r = c.check_rto(ops, [KILL], f="trade", requirement_ids=("ENG-1",))
    [m] = r.measurements
    assert m.first_ok_after["op"] == 7 and m.rto_s == pytest.approx(3.1)
    assert m.last_ok_before["op"] == 2
    assert (m.failed_in_window, m.unknown_in_window) == (1, 1)
    assert r.metrics["rto_s"] == pytest.approx(3.1)
    assert r.valid is False  # ENG-1 target is 3 s (from targets.toml)
    [j] = r.judgements
    assert (j.requirement_id, j.metric, j.target, j.verdict) == ("ENG-1", "rto_s", 3.0, "fail")
    assert "INVOKED at or after" in r.rule


def test_rto_within_target_passes_and_other_kinds_are_ignored():
    ops = [op(1, 9.0, 9.01), op(2, 10.1, 10.2, f="redis_write"), op(3, 10.5, 12.0)]
    r = c.check_rto(ops, [KILL], f="trade")
    assert r.metrics["rto_s"] == pytest.approx(2.0) and r.valid is True


def test_rto_not_recovered_is_a_lower_bound():
    ops = [op(1, 9.0, 9.01), op(2, 10.5, 12.5, "unknown"), op(3, 14.5, 16.5, "unknown")]
    r = c.check_rto(ops, [KILL], f="trade")
    assert r.metrics["rto_s"] == pytest.approx(6.5) and r.judgements[0].lower_bound
    assert r.valid is False and "not recovered" in r.summary  # 6.5 s observed already misses 3 s
    short = c.check_rto([op(1, 9.0, 9.01), op(2, 10.5, 11.5, "unknown")], [KILL], f="trade")
    assert short.valid == "unknown"  # observed 1.5 s: cannot tell yet


def test_rto_without_a_fault_is_unknown():
    r = c.check_rto([op(1, 1.0, 1.1)], [], f="trade")
    assert r.valid == "unknown" and r.metrics == {}


def test_rto_reads_its_target_from_targets():
    lenient = targets_mod.parse({"requirements": {"ENG-1": {"title": "t", "targets": [
        {"metric": "rto_s", "comparator": "<=", "value": 10.0, "unit": "s", "source": "test"}]}}})
    ops = [op(1, 9.0, 9.01), op(2, 12.0, 15.0)]
    assert c.check_rto(ops, [KILL], f="trade").valid is False
    assert c.check_rto(ops, [KILL], f="trade", targets=lenient).valid is True


def test_rto_alternative_targets_get_their_own_verdicts():
    ops = [op(1, 9.0, 9.01), op(2, 10.0, 12.3, f="redis_write")]
    r = c.check_rto(ops, [KILL], f="redis_write", requirement_ids=("RDS-2",))
    [j] = r.judgements
    assert j.target == 0.5 and j.verdict == "fail"
    assert {a["value"]: a["verdict"] for a in j.alternatives} == {1.0: "fail", 3.0: "pass"}
    assert "sentinel-down-after" in j.contradictions


timelines = st.lists(st.tuples(st.floats(0, 30), st.floats(0.001, 5), st.sampled_from(["ok", "fail", "unknown"])),
                     min_size=1, max_size=60)


@given(timelines, st.floats(0, 30))
def test_rto_properties_on_random_timelines(raw, inject):
    ops = [op(i, t, t + lat, outcome) for i, (t, lat, outcome) in enumerate(raw)]
    w = FaultWindow("process-kill", "k1", inject_mono=inject)
    r = c.check_rto(ops, [w], f="trade")
    [m] = r.measurements
    eligible = [o for o in ops if o.outcome == "ok" and o.invoke_mono >= inject]
    if not eligible:
        assert m.rto_s is None and r.judgements[0].lower_bound
    else:
        assert m.rto_s >= 0
        assert m.rto_s == pytest.approx(min(o.complete_mono for o in eligible) - inject)
        assert m.first_ok_after["invoke_mono"] >= inject
    before = [o for o in ops if o.outcome == "ok" and o.complete_mono < inject]
    assert (m.last_ok_before is None) == (not before)
    if before:
        assert m.last_ok_before["complete_mono"] == max(o.complete_mono for o in before)


# -- duplicates ------------------------------------------------------------------------------------------------
def test_duplicate_injected_is_detected_with_the_signal_named():
    ledger = [deal(1, "s1"), deal(2, "s2"), deal(3, "s2"), deal(4, "s3", order=77), deal(5, "s3", order=77)]
    r = c.check_duplicates(ledger)
    assert r.valid is False and list(r.duplicates) == ["s2"]  # s3: two deals of ONE order (partial fills)
    assert r.metrics["duplicate_orders"] == 1 and r.evidence[0]["signal"] == "s2"
    assert "s2" in r.summary


def test_duplicates_across_brokers_and_engine_comment_attempts():
    ids = ["sig-a", "sig-b"]
    comment = lambda s, n: f"td{c.signal_key(s)}-{n}"  # noqa: E731 - the engine's format
    ledger = [deal(1, comment("sig-a", 1)), deal(2, comment("sig-a", 2), broker="backup"),
              deal(3, comment("sig-b", 1)), deal(4, "[sl 1.0950]")]
    r = c.check_duplicates(ledger, signal_of=c.default_signal_of(ids))
    assert list(r.duplicates) == ["sig-a"]
    assert {o["broker"] for o in r.duplicates["sig-a"]} == {"primary", "backup"}
    # without the submitted ids the duplicate is still found, named by its comment key
    assert list(c.check_duplicates(ledger).duplicates) == [f"td{c.signal_key('sig-a')}"]


def test_comment_mapping_is_a_parameter():
    ledger = [deal(1, "X|a"), deal(2, "X|a"), deal(3, "X|b")]
    r = c.check_duplicates(ledger, signal_of=lambda cm: cm.split("|")[1])
    assert list(r.duplicates) == ["a"]


@given(st.data())
def test_duplicates_detected_exactly(data):
    n = data.draw(st.integers(1, 30))
    ids = [f"s{i}" for i in range(n)]
    dup = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    ledger, k = [], 0
    for sid in ids:
        orders = 1 + (data.draw(st.integers(1, 3)) if sid in dup else 0)
        for o in range(orders):
            broker = data.draw(st.sampled_from(["primary", "backup"]))
            for _fill in range(data.draw(st.integers(1, 3))):  # partial fills of one order
                k += 1
                ledger.append(deal(k, f"td:{sid}", order=f"{sid}-{o}", broker=broker))
    data.draw(st.randoms()).shuffle(ledger)
    r = c.check_duplicates(ledger)
    assert set(r.duplicates) == dup
    assert r.valid is (not dup)


# -- lost signals ----------------------------------------------------------------------------------------------
def test_lost_acknowledged_signal_is_named():
    signals = [Signal("s1", "ok"), Signal("s2", "ok"), Signal("s3", "ok"), Signal("s4", "unknown"),
               Signal("s5", "fail"), Signal("s6", "ok"), Signal("s7", "ok")]
    ledger = [deal(1, "s1"), deal(2, "s5")]
    results = [TradeResult("s2", "rejected", "NO_MONEY"), TradeResult("s6", "rejected", None),
               TradeResult("s7", "executed", None, order=5)]
    r = c.check_lost_signals(signals, ledger, results)
    assert r.lost == ["s3", "s6", "s7"] and r.valid is False
    why = {e["signal"]: e["why"] for e in r.evidence}
    assert "without a reason" in why["s6"] and "no deal" in why["s7"]
    assert why["s5"].startswith("submission recorded as a definite failure")
    assert r.metrics["failed_but_executed"] == 1 and r.metrics["rejected_with_reason"] == 1
    assert r.metrics["lost_signals"] == 3


def test_a_backlog_signal_delivered_to_an_engine_is_named_with_its_consumer():
    """A fresh-clone user's stateful run: a signal stranded in a superseded engine's pending list read as plain
    backlog. Still not lost (it is on RTSS), but named apart from the undelivered ones, with its consumer."""
    signals = [Signal("s1", "ok"), Signal("s2", "ok"), Signal("s3", "ok")]
    r = c.check_lost_signals(signals, [deal(1, "s1")], [], backlog=["s2", "s3"], pending_on={"s2": "engine-A"})
    assert r.valid is True and r.lost == []
    assert r.metrics["backlog_signals"] == 2 and r.metrics["backlog_pending_signals"] == 1
    assert r.summary.endswith("backlog 2 still queued at the end (1 delivered to an engine and never answered: "
                              "s2 on engine-A)"), r.summary
    assert next(e for e in r.evidence if e.get("kind") == "backlog")["pending_on"] == {"s2": "engine-A"}
    # a run dumped before pending_on was recorded: no such metric, the summary as before
    old = c.check_lost_signals(signals, [deal(1, "s1")], [], backlog=["s2", "s3"])
    assert "backlog_pending_signals" not in old.metrics and old.summary.endswith("backlog 2 still queued at the end")


@given(st.lists(st.tuples(st.sampled_from(["ok", "fail", "unknown"]),
                          st.sampled_from(["executed", "rejected", "rejected-no-reason", "nothing"])), max_size=40))
def test_lost_signals_exactly_the_acknowledged_unresolved(spec):
    signals, ledger, results, expected = [], [], [], []
    for i, (ack, fate) in enumerate(spec):
        sid = f"s{i}"
        signals.append(Signal(sid, ack))
        if fate == "executed":
            ledger.append(deal(i, sid))
        elif fate == "rejected":
            results.append(TradeResult(sid, "rejected", "INVALID_VOLUME"))
        elif fate == "rejected-no-reason":
            results.append(TradeResult(sid, "rejected", ""))
        if ack == "ok" and fate in ("rejected-no-reason", "nothing"):
            expected.append(sid)
    r = c.check_lost_signals(signals, ledger, results)
    assert r.lost == expected
    if any(s.ack == "ok" for s in signals):
        assert r.valid is (not expected)
    else:  # nothing acknowledged: nothing could be lost, so nothing is judged (never a pass)
        assert r.valid == "unknown" and all(j.verdict == "unmeasured" for j in r.judgements)


# -- RTS against the ledger ------------------------------------------------------------------------------------
def test_state_agrees_and_disagrees():
    ledger = [deal(1, "s1", volume=0.1), deal(2, "s2", volume=0.05, side=1), deal(3, "s3", volume=0.2)]
    good = {"positions": {"EURUSD": 0.25}, "orders": {"s1": {"status": "executed"}, "s2": {"status": "filled"},
                                                      "s3": {"status": "executed", "order": 1003}}}
    assert c.check_state(good, ledger).valid is True
    bad = {"positions": [{"symbol": "EURUSD", "volume": 0.3, "type": 0}],
           "orders": {"s1": {"status": "executed"}, "s2": {"status": "pending"}, "s3": {"status": "executed",
                                                                                      "order": 9},
                      "s9": {"status": "executed"}}}
    r = c.check_state(bad, ledger)
    kinds = {(m["kind"], m.get("signal", m.get("symbol"))) for m in r.mismatches}
    assert kinds == {("position", "EURUSD"), ("missed", "s2"), ("order", "s3"), ("phantom", "s9")}
    assert r.valid is False and r.metrics["state_mismatches"] == 4


def test_state_without_a_dump_is_unknown():
    assert c.check_state(None, [deal(1, "s1")]).valid == "unknown"


# -- timeline --------------------------------------------------------------------------------------------------
def test_timeline_bins_and_steady_latency():
    ops = [op(1, 0.0, 0.01), op(2, 0.5, 0.52), op(3, 10.2, 12.2, "unknown"), op(4, 13.0, 13.01)]
    w = FaultWindow("process-kill", "k", inject_mono=10.0, heal_mono=12.5)
    tl = c.timeline(ops, [w], bin_s=1.0)
    assert tl.t0 == 0.0 and len(tl.points) == 4
    assert sum(b["ok"] for b in tl.bins) == 3 and sum(b["unknown"] for b in tl.bins) == 1
    assert tl.fault_windows == [{"fault": "process-kill", "fault_id": "k", "description": "", "start": 10.0,
                                 "end": 12.5}]
    assert tl.metrics["latency_max_ms"] == pytest.approx(20.0)  # the op inside the fault window is excluded
    # the run line says which operations it counts (a new user read "1276 op(s)" against 1,943 in the history)
    assert c.timeline(ops, [w], f="trade").summary.startswith("4 trade op(s): 3 ok, 0 fail, 1 unknown")
