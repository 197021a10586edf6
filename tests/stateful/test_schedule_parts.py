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


def test_minimise_tries_the_empty_schedule_first_and_keeps_it_when_the_load_alone_fails(tmp_path, monkeypatch):
    """publish-before-durable shrank to one bad-side submit while its background load alone failed the same way."""
    import json
    from types import SimpleNamespace

    steps = [{"op": "submit", "kind": "bad", "bad": "side", "signal": "s1", "side": "buy", "symbol": "EURUSD"},
             {"op": "heal", "note": "nothing to heal"}]
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 6, "tag": "x00600006", "steps": steps}))
    tried = []

    def load_alone_fails(session, seed, candidate, tag=None):
        tried.append(list(candidate))
        return stateful.Verdict(tmp_path, [{"checker": "lost_signals", "summary": "1 lost", "evidence": []}],
                                list(candidate))

    monkeypatch.setattr(stateful, "try_schedule", load_alone_fails)
    session = SimpleNamespace(opts=SimpleNamespace(say=None), minimised={})
    found = stateful.Verdict(tmp_path, [{"checker": "lost_signals", "summary": "2 lost", "evidence": []}], steps)
    best = stateful.minimise(session, found)
    assert tried == [[]] and best.steps == [] and session.minimised["trials"] == 1


def test_minimise_goes_on_dropping_steps_when_the_empty_schedule_passes(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    steps = [{"op": "submit", "kind": "market", "signal": f"s{n}", "side": "buy", "symbol": "EURUSD"}
             for n in (1, 2)]
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 6, "steps": steps}))
    tried = []

    def needs_s1(session, seed, candidate, tag=None):
        tried.append([s["signal"] for s in candidate])
        fails = any(s["signal"] == "s1" for s in candidate)
        return stateful.Verdict(tmp_path, [{"checker": "duplicates", "summary": "", "evidence": []}] if fails else [],
                                list(candidate))

    monkeypatch.setattr(stateful, "try_schedule", needs_s1)
    best = stateful.minimise(SimpleNamespace(opts=SimpleNamespace(say=None), minimised={}),
                             stateful.Verdict(tmp_path, [{"checker": "duplicates", "summary": "", "evidence": []}],
                                              steps))
    assert tried[0] == [] and [s["signal"] for s in best.steps] == ["s1"]


class _Desk:
    def __init__(self):
        self.sent = []

    def submit(self, fields, wait_s):
        self.sent.append(dict(fields))
        return "refused: BAD_SIDE"


def _example():
    """An Example with a recording desk in place of the stack (only what a submit step reads)."""
    from types import SimpleNamespace

    ex = object.__new__(stateful.Example)
    ex.tag, ex.env, ex.signals, ex.outages, ex.desk = "x00600006", SimpleNamespace(account=1), {}, [], _Desk()
    return ex


def test_a_bad_step_records_the_fields_it_actually_sent():
    ex = _example()
    for bad in sorted(stateful.BAD_SIGNALS):
        step = {"op": "submit", "kind": "bad", "bad": bad, "signal": f"s{bad[0]}", "side": "buy", "symbol": "EURUSD"}
        ex._submit(step)
        sent = ex.desk.sent[-1]
        assert all(step[k] == sent[k] for k in ("side", "symbol", "volume") if k in step), (step, sent)
    assert ex.desk.sent[[b for b in sorted(stateful.BAD_SIGNALS)].index("side")]["side"] == "hold"


def test_a_bad_step_replays_whether_it_records_what_was_sent_or_the_old_buy():
    old = {"op": "submit", "kind": "bad", "bad": "side", "signal": "s1", "side": "buy", "symbol": "EURUSD"}
    new = {**old, "side": "hold"}
    sym = {"op": "submit", "kind": "bad", "bad": "unknown-symbol", "signal": "s2", "side": "buy", "symbol": "XQZ123"}
    assert stateful.schedule_problems({"seed": 1, "steps": [old, new, sym]}) == []
    ex = _example()
    ex._submit(dict(new))
    ex._submit(dict(old, signal="s3"))
    assert ex.desk.sent[0]["side"] == ex.desk.sent[1]["side"] == "hold"
    # "hold" is a bad side's only: a market step saying hold is still refused
    assert stateful.schedule_problems({"seed": 1, "steps": [{**new, "kind": "market"}]})
    assert stateful.schedule_problems({"seed": 1, "steps": [{**new, "bad": "volume"}]})
