"""The ``broker_fallback`` checker (BRK-2 as a signal sees it, issue 16): a signal acknowledged while the primary
broker is down (the backup up) must get its result within the switch (5 reconnects x 3 s) plus the RTO (5 s)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from scenarios.cadences import check_broker_fallback
from scenarios.checkers import CheckResult
from scenarios.history import FaultWindow, Signal, TradeResult
from scenarios.verdicts import UNKNOWN

T0 = 1_800_000_000.0
BOUND = 20.0


def outage(node="mt5-primary", at=10.0, until=40.0, fault="process-kill"):
    return FaultWindow(fault, f"{fault}-{node}", at, until, inject_wall=T0 + at, heal_wall=T0 + until,
                       details={"node": node})


def signal(sid, at, ack="ok"):
    return Signal(id=sid, ack=ack, mono=at, fields={"wall_ts": T0 + at})


def result(sid, at, status="executed"):
    return TradeResult(signal=sid, status=status, raw={"entry": f"{int((T0 + at) * 1000)}-0"})


def judge(signals, results, windows):
    return check_broker_fallback(signals, results, windows, bound_s=BOUND, result_cls=CheckResult)


def test_signals_answered_after_the_switch_pass_and_a_signal_waiting_for_the_primary_fails_by_name():
    windows = [outage()]
    ok = judge([signal("a", 11), signal("b", 20)], [result("a", 25), result("b", 25.5)], windows)
    assert ok.valid is True and ok.metrics["fallback_result_s"] == 14.0 and ok.metrics["signals_in_outage"] == 2
    late = judge([signal("a", 11), signal("b", 20)], [result("a", 41), result("b", 39.5)], windows)
    assert late.valid is False and late.metrics["late_results"] == 1 and "a" in late.summary
    assert [e["signal"] for e in late.evidence if e.get("kind") == "late"] == ["a"]


def test_a_signal_never_answered_fails_once_its_wait_passes_the_bound():
    got = judge([signal("a", 11), signal("z", 5)], [result("z", 6), result("other", 35)], [outage()])
    assert got.valid is False and got.metrics["fallback_result_s"] == 24.0


def test_duplicate_answers_and_signals_outside_the_outage_are_not_timed():
    got = judge([signal("a", 11), signal("early", 2), signal("refused", 12, ack="fail")],
                [result("a", 12, "duplicate"), result("a", 30), result("early", 45)], [outage()])
    assert got.metrics["signals_in_outage"] == 1 and got.metrics["fallback_result_s"] == 19.0 and got.valid is True


def test_nothing_to_judge_is_unmeasured_never_a_pass():
    none = judge([signal("a", 11)], [result("a", 12)], [])
    assert none.valid == UNKNOWN and "no fault took the primary broker" in none.summary
    # every broker down: BRK-5's span, not the switch's
    both = judge([signal("a", 11)], [result("a", 45)], [outage(), outage("mt5-backup", 5.0, 30.0)])
    assert both.valid == UNKNOWN
    other = judge([signal("a", 11)], [result("a", 45)], [outage("mt5-backup")])
    assert other.valid == UNKNOWN


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 60), st.one_of(st.none(), st.floats(0, 40))), max_size=12))
def test_it_fails_exactly_when_some_signal_of_the_outage_waits_past_the_bound(rows):
    signals = [signal(f"s{i}", at) for i, (at, _w) in enumerate(rows)]
    results = [result(f"s{i}", at + w) for i, (at, w) in enumerate(rows) if w is not None]
    got = judge(signals, results, [outage()])
    end = max([at + w for at, w in rows if w is not None], default=0.0)
    timed = [(w if w is not None else end - at) for at, w in rows if 10 <= at <= 40
             and (w is not None or end - at > BOUND)]
    if not timed:
        assert got.valid == UNKNOWN
    else:
        assert (got.valid is False) == any(t > BOUND + 1e-6 for t in timed), (timed, got.summary)
