"""Uptime from measured recovery (issue 19 part 3): the computation, its sensitivity, the model in targets.toml and
the EA-5 checker on synthetic measurements. No stack."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from scenarios import uptime as up
from scenarios.checkers import CheckResult
from scenarios.verdicts import FAIL, PASS, UNMEASURED

YEAR = up.YEAR_S


def test_uptime_by_hand():
    # 12 failures a year, 1 h each: 12 h of 8760 h down -> 99.863 %
    assert up.uptime_percent([12], [3600.0]) == pytest.approx(100 * (1 - 12 / 8760))
    assert up.uptime_percent([], []) == 100.0
    assert up.uptime_percent([1e9], [3600.0]) == 0.0                      # never below 0
    with pytest.raises(ValueError):
        up.uptime_percent([1], [-1.0])
    with pytest.raises(ValueError):
        up.uptime_percent([1, 2], [1.0])


def test_sensitivity_allowed_failures():
    budget = YEAR * 0.001                                                # 99.9 %: 31,536 s a year
    assert up.allowed_per_year(3.0, budget) == pytest.approx(10512.0)
    assert up.allowed_per_year(0.0, budget) is None


@settings(max_examples=200, deadline=None)
@given(rates=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=6),
       rtos=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=6, max_size=6),
       i=st.integers(0, 5), more=st.floats(0, 1e4, allow_nan=False))
def test_uptime_never_rises_with_rto_or_failure_rate(rates, rtos, i, more):
    rtos = rtos[:len(rates)]
    i %= len(rates)
    base = up.uptime_percent(rates, rtos)
    slower = list(rtos)
    slower[i] += more
    oftener = list(rates)
    oftener[i] += more
    assert up.uptime_percent(rates, slower) <= base + 1e-9
    assert up.uptime_percent(oftener, rtos) <= base + 1e-9
    assert 0.0 <= base <= 100.0


def test_model_in_targets_toml_states_every_rate_with_a_source():
    m = up.load_model()
    assert m.target_percent == 99.9 and m.budget_s == pytest.approx(31536.0)
    assert "EA-HA" in m.target_source and m.kinds
    for k in m.kinds:
        assert k.source and k.per_year >= 0 and k.fault and k.f and k.component


def test_model_errors_name_the_entry():
    with pytest.raises(up.UptimeError, match=r"\[uptime\]"):
        up.load_model({})
    with pytest.raises(up.UptimeError, match="lacks per_year"):
        up.load_model({"uptime": {"period_hours": 8760, "target_percent": 99.9,
                                  "kinds": [{"kind": "x", "fault": "f", "node": "", "f": "trade", "source": "s"}]}})
    with pytest.raises(up.UptimeError, match="per_year"):
        up.load_model({"uptime": {"period_hours": 8760, "target_percent": 99.9,
                                  "kinds": [{"kind": "x", "fault": "f", "node": "", "f": "trade", "source": "s",
                                             "per_year": -1}]}})


def _model(rate: float = 12.0) -> up.Model:
    kinds = (up.FailureKind("engine-crash", "process-kill", "engine-", "trade", rate, "assumption", ("EA-5",),
                            "trade execution"),
             up.FailureKind("ea-crash", "process-kill", "ea-", "ea_restart", 12.0, "assumption", ("EA-5",), "EA"))
    return up.Model(YEAR, 99.9, "EA-HA 1", kinds)


def test_figures_median_p95_components_and_unmeasured_kinds():
    t = up.figures(_model(), {"engine-crash": [(0.2, False, "r1"), (0.3, False, "r2"), (2.9, False, "r3")]})
    row = next(r for r in t["kinds"] if r["kind"] == "engine-crash")
    assert row["rto_median_s"] == pytest.approx(0.3) and row["rto_p95_s"] == pytest.approx(2.9)
    assert row["allowed_median"] == pytest.approx(31536.0 / 0.3)
    assert row["downtime_p95_s"] == pytest.approx(12 * 2.9)
    assert t["total"]["unmeasured_kinds"] == ["ea-crash"]       # said, never counted as zero downtime
    assert t["total"]["uptime_median_percent"] > t["total"]["uptime_p95_percent"]
    assert [c["component"] for c in t["components"]] == ["trade execution", "EA"]
    assert t["components"][1]["uptime_median_percent"] is None


def test_check_uptime_pass_fail_unmeasured():
    r = up.check_uptime({"engine-crash": [(0.2, False, "r")]}, _model(), result_cls=CheckResult)
    assert r.judgements[0].verdict == PASS and r.metrics["uptime_percent"] > 99.9
    # a recovery of 1 h at one failure a month is 12 h a year: over 99.9 %'s 8.76 h
    r = up.check_uptime({"engine-crash": [(3600.0, False, "r")]}, _model(), result_cls=CheckResult)
    assert r.judgements[0].verdict == FAIL and r.valid is False
    r = up.check_uptime({}, _model(), result_cls=CheckResult)
    assert r.judgements[0].verdict == UNMEASURED and "no failure kind" in r.judgements[0].reason
    # never recovered: the uptime is only an upper bound, so a pass cannot be claimed
    r = up.check_uptime({"engine-crash": [(5.0, True, "r")]}, _model(), result_cls=CheckResult)
    assert r.judgements[0].verdict == UNMEASURED


def test_the_time_a_drill_held_its_fault_is_shown_beside_the_rto():
    t = up.figures(_model(), {"engine-crash": [(14.9, False, "r1", 14.0), (15.1, False, "r2", 14.2)]})
    row = next(r for r in t["kinds"] if r["kind"] == "engine-crash")
    assert row["fault_held_median_s"] == pytest.approx(14.1) and row["rto_median_s"] == pytest.approx(15.0)
    t = up.figures(_model(), {"engine-crash": [(0.2, False, "r1")]})
    assert t["kinds"][0]["fault_held_median_s"] is None


def test_a_run_measuring_some_kinds_names_the_missing_ones_never_zero():
    """Issue 19: 1 of 9 kinds measured showed uptime 100 as a plain pass; the kinds without an RTO are named on the
    judgement (the report lists EA-5 as partly measured), never counted as zero downtime silently."""
    r = up.check_uptime({"engine-crash": [(0.2, False, "r")]}, _model(), result_cls=CheckResult)
    [j] = r.judgements
    assert j.missing and j.missing[0].startswith("ea-crash: no RTO measured")
    assert "no RTO for ea-crash" in j.reason
    both = up.check_uptime({"engine-crash": [(0.2, False, "r")], "ea-crash": [(0.3, False, "r")]}, _model(),
                           result_cls=CheckResult)
    assert both.judgements[0].missing == []


def test_one_event_seen_by_two_kinds_counts_once():
    kinds = (up.FailureKind("redis-all-down", "redis-all-down", "", "trade", 1.0, "a", ("EA-5",), "Redis state"),
             up.FailureKind("session-lost", "redis-all-down", "", "ris_session", 1.0, "a", ("EA-5",), "session"))
    t = up.figures(up.Model(YEAR, 99.9, "EA-HA 1", kinds),
                   {"redis-all-down": [(17.0, False, "r")], "session-lost": [(14.0, False, "r")]})
    assert t["total"]["downtime_median_s"] == pytest.approx(17.0)       # not 31
    assert t["total"]["same_event"] == [["redis-all-down", "session-lost"]]


def test_the_model_has_every_ea_ha_6_component_with_clickhouse_sync():
    m = up.load_model()
    comps = {k.component for k in m.kinds}
    assert "ClickHouse sync" in comps
    ch = next(k for k in m.kinds if k.component == "ClickHouse sync")
    assert ch.f == "clickhouse_sync" and ch.node_prefix == "clickhouse" and "CH-1" in ch.requirement_ids
