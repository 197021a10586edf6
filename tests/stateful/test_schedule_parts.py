"""The stateful test's parts that need no stack: the BRK-2 bound read from targets.toml, and how ``minimise`` drops
steps (idle ones; a submit together with its resubmits). The stack-bound parts are tests/stateful/test_stateful.py."""
from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from scenarios import stateful


def test_the_switch_bound_is_brk2s_reconnects_then_its_rto():
    doc = tomllib.loads(Path(stateful.__file__).with_name("targets.toml").read_text())
    values = {t["metric"]: t["value"] for t in doc["requirements"]["BRK-2"]["targets"]}
    expected = values["failures_before_secondary"] * values["broker_retry_interval_s"] + values["rto_s"]
    assert stateful.SWITCH_BOUND_S == expected == 20.0
    assert "BRK-2" in stateful.SWITCH_BOUND_WHY


def test_idle_steps_are_the_ones_that_did_nothing():
    assert stateful._idle({"op": "heal", "note": "nothing to heal"})
    assert stateful._idle({"op": "resubmit", "signal": "s9", "note": "skipped: no such signal in this schedule"})
    assert stateful._idle({"op": "inject", "fault": "engine-kill", "note": "not injected: DrillError: x"})
    assert not stateful._idle({"op": "inject", "fault": "engine-kill", "note": "injected on engine-a"})
    assert not stateful._idle({"op": "wait", "s": 1.0})


def test_dropping_a_submit_drops_its_resubmits_and_nothing_else():
    steps = [{"op": "submit", "kind": "market", "signal": "s1"}, {"op": "inject", "fault": "engine-kill"},
             {"op": "resubmit", "signal": "s1"}, {"op": "submit", "kind": "market", "signal": "s2"},
             {"op": "resubmit", "signal": "s2"}]
    assert stateful._without(steps, 0) == steps[1:2] + steps[3:]
    assert stateful._without(steps, 1) == steps[:1] + steps[2:]
    assert stateful._without(steps, 4) == steps[:4]


ops = st.one_of(
    st.builds(lambda n: {"op": "submit", "kind": "market", "signal": f"s{n}"}, st.integers(1, 4)),
    st.builds(lambda n: {"op": "resubmit", "signal": f"s{n}"}, st.integers(1, 4)),
    st.sampled_from([{"op": "heal"}, {"op": "wait", "s": 1.0}, {"op": "inject", "fault": "engine-kill"}]))


@given(st.lists(ops, min_size=1, max_size=12), st.data())
def test_a_dropped_step_only_ever_shortens_the_schedule_keeping_its_order(steps, data):
    i = data.draw(st.integers(0, len(steps) - 1))
    out = stateful._without(steps, i)
    assert len(out) < len(steps)
    it = iter(steps)
    assert all(any(s is t for t in it) for s in out)   # a subsequence, in order


def test_every_profile_stops_at_the_first_failure_and_leaves_shrinking_to_minimise():
    from hypothesis import Phase

    for name in stateful.PROFILES:
        s = stateful.hypothesis_settings(name, None)
        assert Phase.shrink not in s.phases and Phase.generate in s.phases
        assert s.report_multiple_bugs is False


def test_every_move_the_machine_draws_is_in_exactly_one_inject_rule():
    from scenarios.stateful import DRAWN_MOVES, MOVE_FAMILIES

    drawn = [m for family in MOVE_FAMILIES.values() for m in family]
    assert sorted(drawn) == sorted(DRAWN_MOVES) and len(drawn) == len(set(drawn))
    assert all(MOVE_FAMILIES.values()), MOVE_FAMILIES
