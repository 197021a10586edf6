"""The issue-12 checkers on Redis partition runs with a known truth: acknowledged writes lost per writer and side
(Jepsen's set checker, RDS-4), how fast engines and writers follow a primary change (RDS-2), how many failovers
happened and whether the roles agree after heal (RDS-1/RDS-2). Each says ``unmeasured`` (never pass) when the run
holds nothing to judge, and none raises on damaged files: unreadable lines are counted and reported."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from reports import build_report
from scenarios import checkers as c
from scenarios import registry, synthetic
from scenarios import targets as targets_mod
from scenarios.history import RunDir

REDIS_CHECKERS = ("redis_set", "primary_follow", "failovers")


def result_of(run_dir, name, checkers=None):
    [r] = [r for r in c.check_run(run_dir, checkers=checkers).results if r.checker == name]
    return r


def unmeasured(r):
    return r.valid == "unknown" and r.judgements and all(j.verdict == "unmeasured" for j in r.judgements)


def verdicts(r):
    return {(j.requirement_id, j.metric): j.verdict for j in r.judgements}


def write(writer, n, outcome, *, primary="127.0.6.1:6379", wait=False, t=0.0):
    """One redis_write operation as the history reader returns it."""
    return c.RedisWrite(op=str(n), writer=writer, member=str(n), set=f"drill:set:{writer}", primary=primary,
                        wait=wait, outcome=outcome, invoke_mono=t, complete_mono=t + 0.01, invoke_wall=t,
                        complete_wall=t + 0.01)


def final_read(wait=False, **members):
    return {"read_from": "127.0.6.2:6379", "read_error": None,
            "writers": {w: {"side": None, "source": "127.0.7.1", "wait": wait, "set": f"drill:set:{w}",
                            "members": m, "read_error": None} for w, m in members.items()}}


SENTINEL_LOG = """\
31001:X 30 Nov 2026 23:29:40.001 * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo
31001:X 30 Nov 2026 23:29:40.002 # Redis version=7.0.15, bits=64, commit=00000000, modified=0, pid=31001, just started
           _.-``__ ''-._
31001:X 30 Nov 2026 23:29:40.010 # +monitor master mymaster 127.0.6.1 6379 quorum 2
31001:X 30 Nov 2026 23:29:52.300 # +sdown master mymaster 127.0.6.1 6379
31001:X 30 Nov 2026 23:29:52.372 # +odown master mymaster 127.0.6.1 6379 #quorum 2/2
31001:X 30 Nov 2026 23:29:52.372 # +new-epoch 1
31001:X 30 Nov 2026 23:29:52.372 # +try-failover master mymaster 127.0.6.1 6379
31001:X 30 Nov 2026 23:29:52.380 # +vote-for-leader 5b2f1e0c9d 1
31001:X 30 Nov 2026 23:29:52.450 # +elected-leader master mymaster 127.0.6.1 6379
31001:X 30 Nov 2026 23:29:55.361 # +switch-master mymaster 127.0.6.1 6379 127.0.6.2 6379
31001:X 30 Nov 2026 23:29:55.362 * +slave slave 127.0.6.3:6379 127.0.6.3 6379 @ mymaster 127.0.6.2 6379
"""
SWITCH_TS = 1_796_081_395.361  # 30 Nov 2026 23:29:55.361 UTC


# -- the set checker (RDS-4) ---------------------------------------------------------------------------------------
def test_a_lost_acknowledged_write_on_the_minority_side_is_found_and_named(tmp_path):
    truth = synthetic.write_redis_run(tmp_path / "r")
    lost = truth.lost["writer-minority"]
    assert len(lost) > 20 and not truth.lost["writer-majority"]
    r = result_of(tmp_path / "r", "redis_set")
    assert r.valid is False
    assert r.lost["writer-minority"] == lost and r.lost["writer-majority"] == []
    assert r.metrics["acknowledged_writes_lost"] == len(lost)
    assert 0 < r.metrics["acknowledged_writes_lost_fraction"] <= 1
    assert r.metrics["minority_lost_fraction"] == 1.0 and r.metrics["majority_lost_fraction"] == 0.0
    row = next(e for e in r.evidence if e.get("writer") == "writer-minority")
    assert (row["side"], row["source"], row["wait"]) == ("minority", "127.0.7.1", False)
    assert row["lost"] == row["lost_in_fault_windows"] == len(lost)
    assert [x["member"] for x in row["first_lost"]] == lost[:c.FIRST_LOST_MAX]
    assert all(x["primary"] == "127.0.6.1:6379" for x in row["first_lost"])
    assert "writer-minority (minority)" in r.summary
    assert verdicts(r) == {("RDS-4", "acknowledged_writes_lost"): "fail",
                           ("RDS-4", "acknowledged_writes_lost_fraction"): "fail",
                           ("RDS-4", "confirmed_writes_lost"): "pass"}
    assert all("redis-async-replication" in j.contradictions for j in r.judgements
               if j.metric != "confirmed_writes_lost")


def test_a_wait_writers_unconfirmed_write_is_not_lost(tmp_path):
    truth = synthetic.write_redis_run(tmp_path / "r")
    r = result_of(tmp_path / "r", "redis_set")
    row = next(e for e in r.evidence if e.get("writer") == "writer-minority-wait")
    assert row["wait"] and row["lost"] == 0 and row["unknown"] > 50  # unknown during the cut, never counted
    assert r.metrics["confirmed_writes_lost"] == 0
    assert row["unknown_landed"] == 1 and truth.unknown_landed == {"writer-minority-wait": ["51"]}
    assert "1 unknown write(s) landed" in r.summary
    # by hand: WAIT confirmed 1 and 2; 3 unknown and missing; 4 failed yet present
    writes = [write("w", 1, "ok", wait=True), write("w", 2, "ok", wait=True), write("w", 3, "unknown", wait=True),
              write("w", 4, "fail", wait=True)]
    ok = c.check_redis_set(writes, final_read(True, w=["1", "2", "4"]))
    assert ok.metrics["confirmed_writes_lost"] == 0 and ok.metrics["failed_writes_landed"] == 1
    assert verdicts(ok)[("RDS-4", "confirmed_writes_lost")] == "pass"
    assert verdicts(ok)[("RDS-4", "acknowledged_writes_lost")] == "unmeasured"  # no writer without WAIT
    gone = c.check_redis_set(writes, final_read(True, w=["1"]))
    assert gone.valid is False and gone.metrics["confirmed_writes_lost"] == 1 and gone.lost == {"w": ["2"]}


def test_the_fraction_counts_only_writes_acknowledged_during_the_fault_window():
    windows = [c.FaultWindow("redis-partition", "p-1", inject_mono=10.0, heal_mono=20.0)]
    writes = [write("w", n, "ok", t=t) for n, t in ((1, 1.0), (2, 12.0), (3, 13.0), (4, 14.0), (5, 25.0))]
    r = c.check_redis_set(writes, final_read(w=["1", "2", "5"]), windows)
    assert r.metrics["acknowledged_writes_lost"] == 2
    assert r.metrics["acknowledged_in_fault_windows"] == 3
    assert r.metrics["acknowledged_writes_lost_fraction"] == pytest.approx(2 / 3)
    no_window = c.check_redis_set(writes, final_read(w=["1", "2", "5"]))
    assert no_window.metrics["acknowledged_writes_lost_fraction"] is None
    assert verdicts(no_window)[("RDS-4", "acknowledged_writes_lost_fraction")] == "unmeasured"


def test_nothing_to_judge_is_unmeasured_never_a_pass(tmp_path):
    assert unmeasured(none := c.check_redis_set([], final_read(w=[])))
    assert "no redis_write operation" in none.summary
    writes = [write("w", 1, "ok")]
    no_read = c.check_redis_set(writes, None)
    assert unmeasured(no_read) and "redis_writes.json" in no_read.summary
    failed = c.check_redis_set(writes, {"read_from": None, "read_error": "no primary reachable",
                                        "writers": {"w": {"members": None, "read_error": "no primary reachable"}}})
    assert unmeasured(failed) and "no primary reachable" in failed.summary
    synthetic.write_redis_run(tmp_path / "r", final_read=False)
    r = result_of(tmp_path / "r", "redis_set")
    assert unmeasured(r) and "no final read" in r.summary
    # a run of the older scenarios (no redis_write at all): each of the three says why it has nothing to judge
    synthetic.write_run(tmp_path / "old", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    specs = [{"checker": n, "requirement_ids": ["RDS-1", "RDS-2", "RDS-4"], "params": {}} for n in REDIS_CHECKERS]
    for r in c.check_run(tmp_path / "old", checkers=specs).results:
        assert unmeasured(r), (r.checker, r.summary)
        assert r.evidence[0]["kind"] == "unmeasured" and r.evidence[0]["why"]


def test_a_writer_whose_set_could_not_be_read_is_not_judged():
    writes = [write("a", 1, "ok"), write("b", 1, "ok")]
    doc = final_read(a=["1"])
    doc["writers"]["b"] = {"members": None, "read_error": "ConnectionError: refused"}
    r = c.check_redis_set(writes, doc)
    assert r.valid is True and r.metrics["writers_unread"] == 1 and "not read: b" in r.summary
    assert "ConnectionError: refused" in next(e for e in r.evidence if e.get("writer") == "b")["why"]


# -- following the primary (RDS-2) ---------------------------------------------------------------------------------
def test_the_switch_is_read_from_real_sentinel_log_lines():
    events, bad = c.parse_sentinel_log(SENTINEL_LOG, "sentinel-1")
    assert bad == 0
    assert [e.event for e in events] == ["+odown", "+new-epoch", "+try-failover", "+elected-leader",
                                         "+switch-master"]
    [sw], dropped = c.distinct_switches(events)
    assert (sw.old, sw.new, sw.master) == ("127.0.6.1:6379", "127.0.6.2:6379", "mymaster") and not dropped
    assert sw.ts == pytest.approx(SWITCH_TS, abs=1e-3)
    # the same switch in three logs, a few ms apart, is one switch at the earliest line
    later = SENTINEL_LOG.replace("23:29:55.361", "23:29:55.390")
    more = c.parse_sentinel_log(later, "sentinel-2")[0] + c.parse_sentinel_log(later, "sentinel-3")[0]
    [one], _ = c.distinct_switches(events + more)
    assert one.ts == pytest.approx(SWITCH_TS, abs=1e-3) and sorted(one.seen_by) == ["sentinel-1", "sentinel-2",
                                                                                    "sentinel-3"]


def test_back_and_forth_is_two_switches_and_a_catching_up_sentinel_is_not_a_third():
    a, b, x = "127.0.6.1 6379", "127.0.6.2 6379", "127.0.6.3 6379"
    s1 = (f"1:X 30 Nov 2026 23:29:55.361 # +switch-master mymaster {a} {b}\n"
          f"1:X 30 Nov 2026 23:30:15.100 # +switch-master mymaster {b} {x}\n"
          f"1:X 30 Nov 2026 23:30:35.100 # +switch-master mymaster {x} {b}\n")
    s2 = f"2:X 30 Nov 2026 23:30:40.000 # +switch-master mymaster {a} {b}\n"   # was away: old -> newest in one
    s3 = f"3:X 30 Nov 2026 23:29:55.370 # +switch-master mymaster {a} {b}\n"
    events = [e for text, name in ((s1, "s1"), (s2, "s2"), (s3, "s3")) for e in c.parse_sentinel_log(text, name)[0]]
    switches, _ = c.distinct_switches(events)
    assert [(s.old, s.new) for s in switches] == [("127.0.6.1:6379", "127.0.6.2:6379"),
                                                  ("127.0.6.2:6379", "127.0.6.3:6379"),
                                                  ("127.0.6.3:6379", "127.0.6.2:6379")]
    catching_up = (f"1:X 30 Nov 2026 23:29:55.361 # +switch-master mymaster {a} {b}\n"
                   f"1:X 30 Nov 2026 23:30:15.100 # +switch-master mymaster {b} {x}\n")
    late = f"2:X 30 Nov 2026 23:30:40.000 # +switch-master mymaster {a} {x}\n"
    events = c.parse_sentinel_log(catching_up, "s1")[0] + c.parse_sentinel_log(late, "s2")[0]
    switches, dropped = c.distinct_switches(events)
    assert len(switches) == 2 and [d["sentinels"] for d in dropped] == [["s2"]]


def test_the_follow_delays_of_engines_and_writers_are_measured_from_the_switch(tmp_path):
    truth = synthetic.write_redis_run(tmp_path / "r", engine_follow_s={"A": 0.3, "B": 0.7})
    r = result_of(tmp_path / "r", "primary_follow")
    assert r.valid is True, r.summary
    [switch] = r.switches
    assert switch["ts"] == pytest.approx(truth.switch_wall, abs=1e-3) and len(switch["seen_by"]) == 3
    assert r.metrics["primary_follow_s"] == pytest.approx(0.7, abs=2e-3)
    assert {e["name"]: e["follow_s"] for e in r.engines} == pytest.approx({"A": 0.3, "B": 0.7}, abs=2e-3)
    assert r.metrics["client_follow_s"] == pytest.approx(max(truth.writer_follow_s.values()), abs=2e-3)
    minority = next(w for w in r.writers if w["name"] == "writer-minority")
    assert minority["side"] == "minority"   # cut off with the old primary: timed from the heal
    assert minority["since_switch_s"] > 3.0 and minority["follow_s"] < 1.0
    assert "worst: B" in r.summary
    slow = synthetic.write_redis_run(tmp_path / "slow", engine_follow_s={"A": 0.3, "B": 1.6})
    r = result_of(tmp_path / "slow", "primary_follow")
    assert r.valid is False and verdicts(r)[("RDS-2", "primary_follow_s")] == "fail"


def test_an_engine_whose_link_stays_on_the_demoted_primary_has_not_followed():
    # issue 12's bug: the lease follows at once, the engine's own link keeps writing to the old primary for 11 s
    old, new = ["127.0.6.1", 6379], ["127.0.6.2", 6379]
    sw = c.Switch("mymaster", "127.0.6.1:6379", "127.0.6.2:6379", 100.0, {"sentinel-1": 100.0})
    events = [{"ts": 100.2, "mono": 1.2, "instance": "A", "event": "lease_redis_primary_changed", "old": old,
               "new": new},
              {"ts": 111.0, "mono": 12.0, "instance": "A", "event": "redis_primary_changed", "old": old, "new": new}]
    r = c.check_primary_follow([sw], [], [("engine-a", events)], [])
    assert r.metrics["primary_follow_s"] == pytest.approx(11.0)
    assert r.valid is False and r.engines[0]["clients"]["lease_redis_primary_changed"]
    # never followed at all: the time it was observed is a lower bound that already fails 1 s
    never = events[:1] + [{"ts": 104.0, "mono": 5.0, "instance": "A", "event": "heartbeat"},
                          {"ts": 90.0, "mono": -9.0, "instance": "A", "event": "redis_primary_changed", "old": new,
                           "new": old}]
    r = c.check_primary_follow([sw], [], [("engine-a", never)], [])
    [j] = [j for j in r.judgements if j.metric == "primary_follow_s"]
    assert j.lower_bound and j.verdict == "fail" and r.metrics["primary_follow_s"] == pytest.approx(4.0)


def test_no_switch_leaves_primary_follow_unmeasured_and_counts_zero_failovers(tmp_path):
    synthetic.write_redis_run(tmp_path / "r", switch_after_s=None)
    follow = result_of(tmp_path / "r", "primary_follow")
    assert unmeasured(follow) and "no primary change happened" in follow.summary
    none = result_of(tmp_path / "r", "failovers")
    assert none.valid is True and none.metrics["failovers"] == 0
    assert verdicts(none) == {("RDS-1", "unexpected_failovers"): "pass", ("RDS-1", "roles_diverged"): "pass"}
    one = [{"checker": "failovers", "requirement_ids": ["RDS-2"], "params": {"expect": "one"}}]
    r = result_of(tmp_path / "r", "failovers", one)
    assert r.valid is False and r.metrics["unexpected_failovers"] == 1
    assert verdicts(r)[("RDS-2", "unexpected_failovers")] == "fail" and "expected one" in r.summary


def test_a_failover_without_quorum_fails_expect_none(tmp_path):
    synthetic.write_redis_run(tmp_path / "r")
    spec = [{"checker": "failovers", "requirement_ids": ["RDS-1"], "params": {"expect": "none"}}]
    r = result_of(tmp_path / "r", "failovers", spec)
    assert r.valid is False and r.metrics["failovers"] == 1 and r.metrics["tried_failovers"] == 1
    assert r.switches[0]["new"] == "127.0.6.2:6379"
    no_expect = result_of(tmp_path / "r", "failovers", [{"checker": "failovers", "requirement_ids": ["RDS-1"]}])
    assert verdicts(no_expect)[("RDS-1", "unexpected_failovers")] == "unmeasured"
    [j] = [j for j in no_expect.judgements if j.metric == "unexpected_failovers"]
    assert "params.expect" in j.reason


def test_roles_diverged_after_heal_fails(tmp_path):
    synthetic.write_redis_run(tmp_path / "r", roles_diverged=["redis-1"])
    r = result_of(tmp_path / "r", "failovers")
    assert r.valid is False and r.metrics["roles_diverged"] == 1
    [d] = r.diverged
    assert d["node"] == "redis-1" and "still reports role master" in d["why"]
    assert verdicts(r)[("RDS-1", "roles_diverged")] == "fail" and "redis-1" in r.summary
    roles = json.loads((tmp_path / "r" / "redis_roles.json").read_text())
    roles["nodes"]["redis-3"].update(link="down")
    roles["sentinels"]["sentinel-3"] = {"primary": None, "error": "timed out"}
    primary, diverged, _ = c.roles_after_heal(roles)
    assert primary == "127.0.6.2:6379"
    assert {d.get("node") or d.get("sentinel") for d in diverged} == {"redis-1", "redis-3", "sentinel-3"}


def test_failovers_is_unmeasured_without_the_roles_after_heal(tmp_path):
    synthetic.write_redis_run(tmp_path / "r")
    (tmp_path / "r" / "redis_roles.json").unlink()
    r = result_of(tmp_path / "r", "failovers")
    assert unmeasured(r) and "redis_roles.json" in r.summary
    (tmp_path / "r" / "redis_roles.json").write_text("[1, 2")
    r = result_of(tmp_path / "r", "failovers")
    assert unmeasured(r) and "cannot be read" in r.summary


# -- damaged files, registration, the report ----------------------------------------------------------------------
def test_unreadable_lines_are_counted_not_raised_on(tmp_path):
    synthetic.write_redis_run(tmp_path / "r")
    run = tmp_path / "r"
    for name in ("history.jsonl", "faults.jsonl"):
        lines = (run / name).read_text().splitlines()
        (run / name).write_text("\n".join(lines[:1] + ['{"torn', "[1, 2]"] + lines[1:]) + "\n")
    with open(run / "nodes" / "sentinel-2.log", "a") as fh:
        fh.write("31002:X 31 Foo 2026 99:99:99.000 # +switch-master mymaster 127.0.6.1 6379\n")
    with pytest.raises(ValueError, match="damaged in the middle"):
        c.check_run(run)   # the strict readers refuse the run; the Redis checkers still read what they can
    view, t = c.RunView(RunDir(run)), targets_mod.load()
    sets, follow = (c.run_checker({"checker": name, "requirement_ids": ["RDS-2", "RDS-4"]}, view, t)
                    for name in ("redis_set", "primary_follow"))
    assert sets.valid is False and sets.metrics["unreadable_lines"] == 4
    [bad] = [e for e in sets.evidence if e["kind"] == "unreadable"]
    assert bad["lines"] == {"history.jsonl": 2, "faults.jsonl": 2}
    assert follow.valid is True and follow.metrics["unreadable_lines"] == 5


def test_the_lead_scenarios_checker_specs_register():
    s = registry.Scenario(
        name="redis-checkers-probe", requirement_ids=("RDS-1", "RDS-2", "RDS-4"), description="probe",
        workload=registry.Workload(op="trade", params={"also": ["redis_write"]}), faults=(),
        checkers=(registry.CheckerSpec("redis_set", ("RDS-4",)), registry.CheckerSpec("primary_follow", ("RDS-2",)),
                  registry.CheckerSpec("failovers", ("RDS-1",), {"expect": "none"}),
                  registry.CheckerSpec("failovers", ("RDS-2",), {"expect": "one"})))
    registry.validate(s)
    t = targets_mod.load()
    assert t.contradictions["redis-async-replication"].measured
    assert "redis-primary-isolated" in t.contradictions["redis-async-replication"].evidence  # measured here
    for name in REDIS_CHECKERS:
        assert name not in {d["checker"] for d in c.DEFAULT_CHECKERS}


def test_the_report_shows_the_redis_checkers(tmp_path):
    synthetic.write_redis_run(tmp_path / "runs" / "r0")

    class DrillResult:
        run_dirs = [tmp_path / "runs" / "r0"]

    html = build_report(DrillResult(), tmp_path / "report", bench_dir=tmp_path / "no-bench").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {(r["requirement_id"], t["metric"]): t["verdict"] for r in report["requirements"] for t in r["targets"]}
    assert rows[("RDS-4", "acknowledged_writes_lost")] == "fail"
    assert rows[("RDS-4", "confirmed_writes_lost")] == "pass"
    assert rows[("RDS-2", "primary_follow_s")] == "pass" and rows[("RDS-1", "roles_diverged")] == "pass"
    for text in ("acknowledged_writes_lost_fraction", "primary_follow_s", "unexpected_failovers"):
        assert text in html


# -- never raise on damaged files ---------------------------------------------------------------------------------
KEYS = ["f", "type", "op", "process", "key", "value", "mono", "wall_ts", "member", "n", "set", "primary", "wait",
        "event", "fault", "fault_id", "details", "sides", "minority", "writers", "members", "side", "read_error",
        "nodes", "sentinels", "role", "master", "link", "address", "error", "instance", "new", "old", "ts",
        "writer-minority", "redis-1", "sentinel-1"]
SCALARS = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["redis_write", "ok", "unknown", "fail", "invoke", "inject", "heal", "redis-partition",
                              "127.0.6.2:6379", "minority", "master", "slave", "up", "redis_primary_changed", "1"])
           | st.text(max_size=6))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6), max_leaves=25)
LINES = st.lists(JSON.map(json.dumps) | st.text(max_size=30) | st.sampled_from([
    '{"torn', "31001:X 30 Nov 2026 23:29:55.361 # +switch-master mymaster 127.0.6.1",
    "1:X 31 Feb 2026 23:29:55.361 # +switch-master m 127.0.6.1 6379 127.0.6.2 6379",
    "1:X 30 Nov 2026 23:29:59.999 # +switch-master m 127.0.6.2 6379 127.0.6.9 6379",
    '{"f": "redis_write", "type": "ok", "op": [1], "process": "w", "value": {"primary": [1, 2, 3]}}',
    '{"event": "inject", "mono": "soon", "details": {"sides": {"minority": "everyone"}}}']), max_size=8)
_BASE: list[Path] = []


def _base_run() -> Path:
    if not _BASE:
        _BASE.append(Path(tempfile.mkdtemp(prefix="redis-checkers-")) / "base")
        synthetic.write_redis_run(_BASE[0], duration_s=4.0, partition_at_s=1.0, partition_s=2.0,
                                  switch_after_s=1.0)
    return _BASE[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=LINES, faults=LINES, sentinel=LINES, events=LINES, writes_doc=JSON | st.text(max_size=20),
       roles_doc=JSON | st.text(max_size=20), expect=JSON)
def test_the_redis_checkers_never_raise_on_damaged_files(history, faults, sentinel, events, writes_doc, roles_doc,
                                                         expect):
    run = Path(tempfile.mkdtemp(prefix="redis-fuzz-")) / "r"
    try:
        shutil.copytree(_base_run(), run)
        for name, lines in ((run / "history.jsonl", history), (run / "faults.jsonl", faults),
                            (run / "nodes" / "sentinel-1.log", sentinel),
                            (run / "stack" / "engines" / "engine-a" / "events-A.jsonl", events)):
            old = name.read_text().splitlines()
            name.write_text("\n".join(old[:2] + lines + old[2:]) + "\n")
        (run / "redis_writes.json").write_text(writes_doc if isinstance(writes_doc, str) else json.dumps(writes_doc))
        (run / "redis_roles.json").write_text(roles_doc if isinstance(roles_doc, str) else json.dumps(roles_doc))
        view = c.RunView(RunDir(run))
        t = targets_mod.load()
        for name in REDIS_CHECKERS:
            params = {"expect": expect} if name == "failovers" else {}
            r = c.CHECKERS[name].fn(view, params, ("RDS-1", "RDS-2", "RDS-4"), t)   # not run_checker: no net
            assert r.valid in (True, False, "unknown") and r.summary
            json.dumps(r.to_dict())
            if r.valid == "unknown":
                assert all(j.verdict == "unmeasured" for j in r.judgements)
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)


def test_an_engine_running_across_the_switch_that_logs_no_move_has_not_followed():
    """Found by a new user: engine A kept sending for 15 s and logged no primary change while B logged its move
    0.2 s after the switch: A was skipped and the run passed with 0.2 s."""
    old, new = ["127.0.6.1", 6379], ["127.0.6.2", 6379]
    sw = c.Switch("mymaster", "127.0.6.1:6379", "127.0.6.2:6379", 100.0, {"sentinel-1": 100.0})
    a = [{"ts": 99.0 + k, "mono": k, "instance": "A", "event": "order_send_invoke"} for k in range(16)]
    b = [{"ts": 99.5, "mono": 0.5, "instance": "B", "event": "heartbeat"}] + [
        {"ts": 100.2, "mono": 1.2, "instance": "B", "event": kind, "old": old, "new": new}
        for kind in ("redis_primary_changed", "lease_redis_primary_changed")]
    r = c.check_primary_follow([sw], [], [("engine-a", a), ("engine-b", b)], [])
    assert r.valid is False and r.metrics["primary_follow_s"] >= 14.0, r.summary
    # and an engine that moved only its lease has not followed either
    only_lease = a + [{"ts": 100.3, "mono": 1.3, "instance": "A", "event": "lease_redis_primary_changed",
                       "old": old, "new": new}]
    r = c.check_primary_follow([sw], [], [("engine-a", only_lease), ("engine-b", b)], [])
    assert r.valid is False and r.metrics["primary_follow_s"] >= 14.0, r.summary
