"""A scenario is validated when it is registered: every mistake fails at import time, naming the field."""
from __future__ import annotations

import dataclasses

import pytest

from scenarios import registry
from scenarios.checkers import CHECKERS
from scenarios.packages import FAULTS
from scenarios.registry import CheckerSpec, FaultStep, Scenario, ScenarioError, Workload


def example(**changes) -> Scenario:
    """A complete, valid scenario (the one docs/CONVENTIONS.md shows)."""
    base = Scenario(
        name="example-backup-broker-kill",
        requirement_ids=("ENG-5",),
        description="SIGKILL the backup broker under load; nothing duplicated, nothing lost.",
        workload=Workload(op="trade", duration_s=20.0),
        faults=(FaultStep("process-kill", "broker-backup", at_s=5.0, heal_after_s=5.0),),
        checkers=(CheckerSpec("duplicates", ("ENG-5",)), CheckerSpec("lost_signals", ("ENG-5",))),
    )
    return dataclasses.replace(base, **changes)


def test_a_valid_scenario_validates_and_round_trips():
    s = example()
    registry.validate(s)
    assert Scenario.from_dict(s.to_dict()) == s


def test_unknown_fault_fails_at_registration_naming_the_field():
    bad = example(faults=(FaultStep("process-explode", "active-engine", at_s=1.0),))
    with pytest.raises(ScenarioError, match=r"faults\[0\].*'process-explode' is not a known fault"):
        registry.register(bad)
    assert registry.get(bad.name) is None


def test_unknown_target_role_fails_at_registration_naming_the_field():
    bad = example(faults=(FaultStep("process-kill", "leader-engine", at_s=1.0),))
    with pytest.raises(ScenarioError, match=r"faults\[0\].*target 'leader-engine' is neither a role"):
        registry.register(bad)


def test_target_of_the_wrong_kind_fails():
    bad = example(faults=(FaultStep("broker-lose-reply", "redis-primary", at_s=1.0),))
    with pytest.raises(ScenarioError, match=r"faults\[0\].*redis node; fault broker-lose-reply acts on mt5"):
        registry.register(bad)


def test_requirement_without_a_target_fails_naming_checker_and_metric():
    # RDS-3 (AOF/RDB persistence) has no duplicate_orders target in targets.toml
    bad = example(checkers=(CheckerSpec("duplicates", ("RDS-3",)),))
    with pytest.raises(ScenarioError, match=r"checkers\[0\] \(duplicates\): requirement RDS-3 has no "
                                            r"duplicate_orders target"):
        registry.register(bad)


def test_unknown_checker_and_parameters_fail():
    with pytest.raises(ScenarioError, match=r"checkers\[0\]\.checker: 'nope' is not a known checker"):
        registry.register(example(checkers=(CheckerSpec("nope", ("ENG-5",)),)))
    with pytest.raises(ScenarioError, match=r"checkers\[0\]\.params: rto takes no 'window'"):
        registry.register(example(checkers=(CheckerSpec("rto", ("ENG-1",), {"window": 3}),)))
    with pytest.raises(ScenarioError, match=r"faults\[0\]: fault broker-lose-reply takes no parameter 'ratio'"):
        registry.register(example(faults=(FaultStep("broker-lose-reply", "broker-primary", 1.0, 2.0,
                                                    {"ratio": 0.3}),)))
    with pytest.raises(ScenarioError, match=r"params.fault: 'process-pause' is not a fault this scenario"):
        registry.register(example(checkers=(CheckerSpec("rto", ("ENG-1",), {"fault": "process-pause"}),)))


def test_unknown_requirement_and_duplicate_name_fail():
    with pytest.raises(ScenarioError, match=r"requirement_ids: 'ENG-99'"):
        registry.register(example(requirement_ids=("ENG-99",)))
    with pytest.raises(ScenarioError, match="registered twice"):
        registry.register(registry.get("engine-kill"))


def test_every_registered_scenario_is_valid_and_claims_only_targets_that_exist():
    for s in registry.all_scenarios():
        registry.validate(s)
        for spec in s.checkers:
            assert spec.checker in CHECKERS
        for step in s.faults:
            assert step.fault in FAULTS


def test_fault_and_checker_tables_describe_themselves():
    for name, pkg in FAULTS.items():
        assert pkg.name == name and pkg.label and pkg.color.startswith("#") and pkg.description
        assert pkg.heal in ("after", "supervisor", "end")
    for name, checker in CHECKERS.items():
        assert checker.name == name and checker.metrics and checker.description


def test_the_gaps_a_new_user_found_fail_at_registration():
    with pytest.raises(ScenarioError, match=r"workload.op: 'trad'"):
        registry.register(example(workload=Workload(op="trad")))
    with pytest.raises(ScenarioError, match=r"faults\[0\]: fault broker-lose-reply: .*lose_reply_rate"):
        registry.register(example(faults=(FaultStep("broker-lose-reply", "broker-primary", 1.0, 2.0,
                                                    {"rate": "lots"}),)))
    with pytest.raises(ScenarioError, match=r"faults\[0\].at_s: 25 s is not inside the 20 s of load"):
        registry.register(example(faults=(FaultStep("process-kill", "broker-backup", at_s=25.0),)))
    with pytest.raises(ScenarioError, match=r"checkers\[0\].requirement_ids: ENG-1 not in the scenario"):
        registry.register(example(checkers=(CheckerSpec("lost_signals", ("ENG-1",)),)))
    with pytest.raises(ScenarioError, match=r"checkers\[0\].requirement_ids: name the requirement"):
        registry.register(example(checkers=(CheckerSpec("lost_signals", ()),)))
    with pytest.raises(ScenarioError, match=r"rto needs a fault"):
        registry.register(example(requirement_ids=("ENG-1",), faults=(),
                                  checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade"}),)))
    with pytest.raises(ScenarioError, match=r"checkers: a scenario needs at least one checker"):
        registry.register(example(checkers=()))
    with pytest.raises(ScenarioError, match=r"params.f: 'redis_write' is not an operation of the workload"):
        registry.register(example(requirement_ids=("ENG-1", "ENG-5"),
                                  checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "redis_write"}),)))
    with pytest.raises(ScenarioError, match=r"mode 'sideways' must be drop or reset"):
        registry.register(example(faults=(FaultStep("node-isolate", "redis-replica", 1.0, 2.0,
                                                    {"mode": "sideways"}),)))


def test_a_fault_phase_lands_inside_its_window_and_replays_from_the_seed():
    """A freeze lands at a seeded offset in [at_s, at_s + phase_s): the same seed replays the same instant, other
    seeds spread over the window (the heartbeat phase is sampled, not fixed), and a phase past the load fails."""
    from types import SimpleNamespace

    from scenarios.schedule import Schedule

    step = FaultStep("process-pause", "active-engine", at_s=5.0, heal_after_s=2.0, phase_s=1.0)
    registry.validate(example(faults=(step,)))
    offsets = [Schedule(SimpleNamespace(seed=seed)).phase(0, step) for seed in range(200)]
    assert all(0.0 <= o < 1.0 for o in offsets)
    assert Schedule(SimpleNamespace(seed=7)).phase(0, step) == Schedule(SimpleNamespace(seed=7)).phase(0, step)
    assert min(offsets) < 0.1 and max(offsets) > 0.9, "200 seeds should cover the whole heartbeat period"
    assert Schedule(SimpleNamespace(seed=7)).phase(0, dataclasses.replace(step, phase_s=0.0)) == 0.0
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.phase_s: at_s \+ phase_s \(20\.5 s\) is not inside"):
        registry.validate(example(faults=(dataclasses.replace(step, at_s=19.5),)))
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.phase_s: must be a number of seconds >= 0"):
        registry.validate(example(faults=(dataclasses.replace(step, phase_s=-1.0),)))
    assert Scenario.from_dict(example(faults=(step,)).to_dict()).faults[0].phase_s == 1.0
