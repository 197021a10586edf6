"""The CI soak (issue 16, part 3): 2 minutes of load at 10 signals/s with a seeded fault of the fault table every
10 s against the real local stack: no duplicate order, no lost acknowledged signal, every process gone after the
teardown. About 3 minutes, so it runs only with ``TRADEDRILL_SOAK=1`` (``nox -s soak -- --minutes 2`` runs the
same through the command line); ``TRADEDRILL_SOAK_MINUTES`` changes its length."""
from __future__ import annotations

import os

import pytest

from scenarios.soak import SoakOptions, run_soak

MINUTES = float(os.environ.get("TRADEDRILL_SOAK_MINUTES", "2"))
SUBNET = os.environ.get("TRADEDRILL_SOAK_SUBNET", "127.0.95")

pytestmark = [pytest.mark.drill, pytest.mark.timeout(int(MINUTES * 60 + 600)),
              pytest.mark.skipif(not os.environ.get("TRADEDRILL_SOAK"),
                                 reason="a soak takes minutes; TRADEDRILL_SOAK=1 runs it")]


def test_a_soak_under_a_fault_every_10_s_loses_nothing_and_leaks_no_process(tmp_path, record_property):
    result = run_soak(SoakOptions(minutes=MINUTES, seed=16, subnet=SUBNET, out_dir=tmp_path))
    s = result.summary
    for key in ("faults_injected", "acknowledged", "duplicate_orders", "lost_signals", "harness_fds_before",
                "harness_fds_after", "processes_before", "processes_after"):
        record_property(key, s[key])
    for name, p in result.processes.items():
        record_property(f"rss_slope_{name}", round(p["rss_slope_mb_per_min"], 3))
    assert s["faults_injected"] >= 1, f"no fault was injected ({result.run_dir})"
    assert s["acknowledged"], f"no signal was acknowledged: the load never ran ({result.run_dir})"
    assert s["duplicate_orders"] == 0, f"{s['failed_checkers']} ({result.run_dir})"
    assert s["lost_signals"] == 0, f"{s['failed_checkers']} ({result.run_dir})"
    assert s["processes_left_after_teardown"] == 0, f"processes of the soak left running ({result.run_dir})"
