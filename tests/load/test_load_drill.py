"""A drill under locust load (issue 16; gated by ``TRADEDRILL_ALL_DRILLS``, ~45 s): engine-kill with 10 users of
every kind; the load's requests are judged by the drill's checkers and its statistics share the fault's timeline."""
from __future__ import annotations

import json
import os

import pytest

from scenarios import registry
from scenarios.checkers import check_run
from scenarios.load import LoadOptions, read_stats, read_summary, with_load_services
from scenarios.runner import DrillOptions, run_once

pytestmark = [pytest.mark.drill,
              pytest.mark.skipif(not os.environ.get("TRADEDRILL_ALL_DRILLS"),
                                 reason="a live drill under load: set TRADEDRILL_ALL_DRILLS=1")]
# its own block, not the drills' 127.0.6: `nox -s tests` runs test folders side by side (tests/conftest.py)
SUBNET = os.environ.get("TRADEDRILL_LOAD_DRILL_SUBNET", "127.0.87")


def test_engine_kill_under_locust_load(tmp_path):
    load = LoadOptions(10, 5.0)
    scenario = with_load_services(registry.get("engine-kill"), load)
    opts = DrillOptions(subnet=SUBNET, seed=16, repeat=1, out_dir=tmp_path, duration_s=20.0, settle_s=5.0)
    run = run_once(scenario, tmp_path / "run", 16, opts, repeat=1, load=load)
    rc = check_run(run)
    assert rc.run_validity.valid, rc.run_validity.reasons
    summary = read_summary(run.path)
    assert summary and summary["total"]["requests"] > 0
    assert set(summary["by_name"]) == {"RTSS submit", "POST webhook", "TICKS latency p50 of 1 s"}
    verdicts = {r.checker: r.valid for r in rc.results}
    assert verdicts.get("duplicates") is not False and verdicts.get("lost_signals") is not False, verdicts
    ops = [json.loads(line) for line in (run.path / "history.jsonl").read_text().splitlines()]
    invoked = {o["op"] for o in ops if o["type"] == "invoke" and o["process"].startswith("locust-rtss")}
    completed = {o["op"]: o["type"] for o in ops if o["type"] != "invoke" and o["op"] in invoked}
    assert invoked and set(completed) == invoked   # every load trade has its outcome (ok, fail or unknown)
    assert "ok" in completed.values()
    fault = next(json.loads(line) for line in (run.path / "faults.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "inject")
    seconds = [r["mono"] for r in read_stats(run.path)]
    assert min(seconds) < fault["mono"] < max(seconds)   # the load's statistics span the fault
