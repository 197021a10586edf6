"""The fault schedule of one run: every step of the scenario injected at its time and healed by its package's heal
mode (``scenarios.packages``), each step on its own thread so steps may overlap (a broker down while the other
dies; an engine paused during a Redis failover). Every injection and heal goes to the run's fault log.

Errors do not vanish in a thread: a step whose target cannot be resolved or whose injection fails is recorded in
``Schedule.errors`` (and the fault log's ``inject-failed``), and the run is judged invalid, never "not measured".
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from typing import TYPE_CHECKING

from faults.core import Fault
from scenarios.packages import FAULTS
from tradedrill.providers.base import CAPABILITIES, missing_capabilities
from tradedrill.waiting import DeadlineExceeded, wait_until

if TYPE_CHECKING:
    from scenarios.environment import DrillEnvironment
    from scenarios.registry import FaultStep

SUPERVISOR_RESTART_S = 15.0  # how long a supervised victim may take to come back before the window closes anyway


class Schedule:
    """``start(t0)`` launches one thread per step; ``stop()`` (the load ended) heals every fault still active and
    joins the threads. ``made`` lists every fault built; ``errors`` every step that could not run."""

    def __init__(self, env: "DrillEnvironment"):
        self.env = env
        self.made: list[Fault] = []
        self.errors: list[str] = []
        self._end = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, t0: float) -> None:
        for i, step in enumerate(self.env.scenario.faults):
            at = self.env.opts.fault_at_s if self.env.opts.fault_at_s is not None else step.at_s
            at += self.phase(i, step)
            t = threading.Thread(target=self._run_step, args=(i, step, t0 + at), daemon=True,
                                 name=f"fault-step-{i}")
            self._threads.append(t)
            t.start()

    def phase(self, i: int, step: "FaultStep") -> float:
        """Seconds added to step ``i``'s time: seeded uniform in ``[0, step.phase_s)``, the same for the same seed."""
        if not step.phase_s:
            return 0.0
        return random.Random(f"{self.env.seed}:phase:{i}").uniform(0.0, step.phase_s)

    def _run_step(self, i: int, step: "FaultStep", at_mono: float) -> None:
        if self._end.wait(max(0.0, at_mono - time.monotonic())):
            return
        package = FAULTS[step.fault]
        missing = missing_capabilities(step.fault, getattr(self.env.stack, "capabilities", CAPABILITIES))
        if missing:   # this provider cannot inject it: listed as skipped in the run and the report
            self.env.skip_fault(i, step.fault, step.target, missing)
            self.env.opts.say(f"  skipped {step.fault} on {step.target}: the provider lacks {', '.join(missing)}")
            return
        try:
            target = self.env.resolve(step.target)
            fault = package.build(self.env, target, dict(step.params))
            getattr(self.env.stack, "place_fault", lambda f: f)(fault)   # the provider puts it where its nodes are
            with self._lock:
                self.made.append(fault)
            fault.inject()
        except Exception as exc:  # noqa: BLE001 - recorded; the run is judged invalid
            with self._lock:
                self.errors.append(f"faults[{i}] {step.fault} on {step.target}: {exc}")
            return
        self.env.opts.say(f"  injected {fault.describe()}")
        if step.heal_after_s is not None:
            self._end.wait(step.heal_after_s)
        elif package.heal == "supervisor" and target.supervised:
            node = target.node
            with contextlib.suppress(DeadlineExceeded):
                wait_until(lambda: node.is_alive() or self._end.is_set(), SUPERVISOR_RESTART_S,
                           f"the supervisor to restart {node.name}")
        else:  # nobody heals this but the heal: it lasts until the load ends
            self._end.wait()
        try:
            fault.heal()
        except Exception as exc:  # noqa: BLE001 - recorded (heal-failed in the fault log)
            with self._lock:
                self.errors.append(f"faults[{i}] {step.fault}: heal failed: {exc}")

    def stop(self, timeout: float = 60.0) -> None:
        """End of the load: every step still waiting is cancelled, every active fault healed."""
        self._end.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self.heal_all()

    def heal_all(self) -> list[str]:
        """Heal every fault this schedule made; returns the errors (teardown goes on)."""
        errors = []
        with self._lock:
            made = list(self.made)
        for fault in made:
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{fault.fault_id}: {exc}")
        return errors
