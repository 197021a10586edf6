"""Repeats into distributions and verdicts."""
from __future__ import annotations

import pytest

from scenarios import checkers, distributions, synthetic


def test_distribution_of_values():
    d = distributions.Distribution.of([3.0, 1.0, 2.0, None, 4.0])
    assert (d.n, d.min, d.median, d.p95, d.max) == (4, 1.0, 2.5, 4.0, 4.0)
    assert distributions.Distribution.of([]).n == 0


def test_combine_is_worst_case():
    assert distributions.combine(["pass", "fail", "pass"]) == "fail"
    assert distributions.combine(["pass", "unmeasured"]) == "pass"
    assert distributions.combine([]) == "unmeasured"


@pytest.fixture(scope="module")
def repeats(tmp_path_factory):
    root = tmp_path_factory.mktemp("drill")
    outages = {"engine-kill": [1.0, 2.0, 3.6], "redis-primary-kill": [4.3, 4.2, 4.4]}
    runs = []
    for name, values in outages.items():
        for k, outage in enumerate(values):
            synthetic.write_run(root / name / f"run-{k}", scenario=name, seed=k + 1, repeat=k, outage_s=outage,
                                rate_per_s=5.0)
            runs.append(checkers.check_run(root / name / f"run-{k}"))
    return runs


def test_summarize_over_repeats(repeats):
    vs = {(v.scenario, v.requirement_id, v.metric): v for v in distributions.summarize(repeats)}
    eng = vs[("engine-kill", "ENG-1", "rto_s")]
    assert eng.distribution.n == 3 and eng.verdict == "fail"  # one of three runs took > 3 s
    assert [r["verdict"] for r in eng.runs].count("fail") == 1
    rds = vs[("redis-primary-kill", "RDS-2", "rto_s")]
    assert 4.0 < rds.distribution.min <= rds.distribution.max < 5.0
    assert rds.verdict == "fail" and {a["value"]: a["verdict"] for a in rds.alternatives} == {1.0: "fail",
                                                                                             3.0: "fail"}
    assert "sentinel-down-after" in rds.contradictions
    assert vs[("engine-kill", "ENG-5", "duplicate_orders")].verdict == "pass"


def test_requirement_table_has_every_id(repeats):
    from scenarios import targets as targets_mod
    rows = distributions.requirement_table(distributions.summarize(repeats))
    assert [r.requirement_id for r in rows] == targets_mod.load().ids()
    by_id = {r.requirement_id: r for r in rows}
    assert by_id["ENG-1"].verdict == "fail" and by_id["CFG-1"].verdict == "unmeasured"
    assert any(c["id"] == "sentinel-down-after" for c in by_id["RDS-2"].contradictions)


def test_a_verdict_standing_for_parts_no_run_measured_says_in_part_beside_it():
    """A new user read "EA-5 uptime_percent 100 pass" for an engine-kill drill that timed 1 of the uptime model's 10
    failure kinds (the other 9 listed far below): the verdict line now carries "in part" and what was not measured,
    the parts every run left out (a kind one run timed is not missing over the runs)."""
    from types import SimpleNamespace

    from reports.build import _verdict_line
    from scenarios.verdicts import Judgement

    def run(missing):
        j = Judgement("EA-5", "uptime_percent", ">=", 99.9, "%", "d", 100.0, "pass", missing=missing)
        return SimpleNamespace(scenario="engine-kill", run_dir="r", repeat=1, seed=1, judgements=[j])

    runs = [run(["ea-crash: no RTO measured", "broker-loss: no RTO measured"]),
            run(["broker-loss: no RTO measured", "engine-crash: no RTO measured"])]
    (v,) = distributions.summarize(runs)
    assert v.verdict == "pass" and v.in_part == ["broker-loss: no RTO measured"]
    assert "in part: 1 part(s) not measured (broker-loss: no RTO measured)" in _verdict_line(v)
    runs[1].judgements[0].missing = []            # one run timed every kind: nothing is missing over the runs
    (v,) = distributions.summarize(runs)
    assert v.in_part == [] and "in part" not in _verdict_line(v)
