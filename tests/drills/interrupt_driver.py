"""A drill CLI with one extra scenario for the interrupt tests (``python -m tests.drills.interrupt_driver drill
ARGS``): ``interrupt-probe`` pauses the active engine and cuts a Redis replica off with a kernel rule (nftables)
1 s into the load, both lasting until the load ends, so an interrupt can land on a paused process and an active
partition. With ``TRADEDRILL_TEST_HOLD_REPORT=<folder>`` the report waits until ``<folder>/release`` exists,
after writing ``<folder>/reporting``: the test interrupts it there; with ``TRADEDRILL_TEST_HOLD_TEARDOWN=<folder>``
the first run's teardown does (``<folder>/teardown``), before its nodes are stopped. Test code only; production has no switch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from scenarios import registry
from scenarios.registry import CheckerSpec, FaultStep, Scenario, Workload

registry.register(Scenario(
    name="interrupt-probe",
    requirement_ids=("ENG-5",),
    description="the active engine paused and a Redis replica cut off until the load ends",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=60.0, settle_s=2.0),
    faults=(FaultStep("process-pause", "active-engine", at_s=1.0),
            FaultStep("node-isolate", "redis-replica", at_s=1.0)),
    checkers=(CheckerSpec("duplicates", ("ENG-5",)),),
))

registry.register(Scenario(
    name="interrupt-before-fault",
    requirement_ids=("ENG-5",),
    description="the Redis primary SIGKILLed 0.6 s into the load (restarted by the heal): an interrupt at the start "
                "of the load lands while that step is still pending",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=60.0, settle_s=2.0),
    faults=(FaultStep("process-kill", "redis-primary", at_s=0.6, heal_after_s=30.0),),
    checkers=(CheckerSpec("duplicates", ("ENG-5",)),),
))

hold = os.environ.get("TRADEDRILL_TEST_HOLD_REPORT")
if hold:
    import reports

    from tradedrill.waiting import wait_until

    original = reports.build_report

    def held_build_report(*args, **kwargs):
        Path(hold, "reporting").write_text("")
        wait_until(lambda: Path(hold, "release").exists(), 120, "the test to release the report")
        return original(*args, **kwargs)

    reports.build_report = held_build_report

hold_teardown = os.environ.get("TRADEDRILL_TEST_HOLD_TEARDOWN")
if hold_teardown:   # the first run's teardown waits (nodes still up) until <folder>/release exists
    from scenarios.environment import DrillEnvironment

    from tradedrill.waiting import wait_until

    original_down = DrillEnvironment.down

    def held_down(self):
        marker = Path(hold_teardown, "teardown")
        if not marker.exists():
            marker.write_text(str(self.run.path))
            wait_until(lambda: Path(hold_teardown, "release").exists(), 120, "the test to release the teardown")
        return original_down(self)

    DrillEnvironment.down = held_down

if __name__ == "__main__":
    from tradedrill.cli import main

    sys.exit(main())
