"""Fixtures for the drill tests: one short repetition of a scenario through the real runner (``run_once``) on
127.0.6.x, judged by the real checkers; afterwards, proof that every process the drill started has stopped.

Environment:
- ``TRADEDRILL_ALL_DRILLS=1`` runs every scenario (the default run keeps only the quickest one, CI stays fast);
- ``TRADEDRILL_DRILL_SUBNET`` moves the drills off 127.0.6 when another drill already holds it on this machine;
- ``TRADEDRILL_DRILL_SEED`` replays another seed (the signal sequence and every fault's random choice).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from scenarios import registry
from scenarios.checkers import CheckResult, RunCheck, check_run
from scenarios.history import RunDir
from scenarios.runner import DrillOptions, run_once
from tradedrill.waiting import DeadlineExceeded, wait_until

REPO = Path(__file__).resolve().parents[2]
SUBNET = os.environ.get("TRADEDRILL_DRILL_SUBNET", "127.0.6")
SEED = int(os.environ.get("TRADEDRILL_DRILL_SEED", "7"))
ALL_DRILLS = bool(os.environ.get("TRADEDRILL_ALL_DRILLS"))

# a short drill: 12 s of load at 10 signals/s, the fault 4 s in, 8 s for every acknowledged signal to settle
SHORT = {"duration_s": 12.0, "settle_s": 8.0, "rate_per_s": 10.0, "fault_at_s": 4.0}


@dataclass
class Drill:
    """One finished run: its directory (history, ledgers, node logs, engine events) and the checkers' verdicts."""

    scenario: str
    run: RunDir
    check: RunCheck

    def results(self, checker: str) -> list[CheckResult]:
        found = [r for r in self.check.results if r.checker == checker]
        assert found, f"{self.scenario}: the scenario has no {checker} checker ({self.run.path})"
        return found

    def result(self, checker: str) -> CheckResult:
        return self.results(checker)[0]

    def engine_events(self, event: str) -> list[dict]:
        """Every ``event`` in the engines' event logs (all instances, every restart)."""
        out = []
        for path in sorted(self.run.path.rglob("events-*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a SIGKILLed engine may be cut short
                if row.get("event") == event:
                    out.append(row)
        return out


def _drill_processes(run_path: Path) -> list[psutil.Process]:
    """Live processes of this drill: those whose command line or working directory is inside its run directory
    (engines and simulators name it in their arguments; redis-server and the sentinels run in their data dirs)."""
    marker = str(run_path)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(proc.info.get("cmdline") or ())
        cwd = proc.info.get("cwd") or ""
        if marker in cmdline or cwd.startswith(marker):
            found[proc.pid] = proc
    alive = []
    for proc in found.values():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def _describe(procs: list[psutil.Process]) -> str:
    rows = []
    for proc in procs:
        try:
            rows.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            rows.append(f"pid {proc.pid}")
    return "; ".join(rows)


@pytest.fixture
def drill(tmp_path: Path, record_property):
    """``drill(scenario, seed=SEED, variant=None, engine_overrides=None, **DrillOptions changes) -> Drill``;
    ``scenario`` is a name in ``scenarios.registry`` or a ``registry.Scenario`` the test built.

    ``variant`` names a broken engine of ``tests.drills.broken_engines``; both engines of the drill run it."""
    runs: list[Path] = []

    def run(scenario: str | registry.Scenario, *, seed: int = SEED, variant: str | None = None,
            engine_overrides: dict | None = None, **changes) -> Drill:
        # a Scenario: a test's own variation of a library scenario (its name names the run folder)
        spec = scenario if isinstance(scenario, registry.Scenario) else registry.get(scenario)
        assert spec is not None, f"no scenario {scenario!r} in scenarios.registry"
        scenario = spec.name
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        opts = DrillOptions(
            subnet=SUBNET, seed=seed, repeat=1, out_dir=tmp_path, **{**SHORT, **changes},
            engine_overrides=dict(engine_overrides or {}), engine_env={"PYTHONPATH": pythonpath},
            engine_command=(sys.executable, "-m", "tests.drills.broken_engines", variant) if variant else None,
        )
        run_path = tmp_path / "-".join([scenario, *([str(seed)] if seed != SEED else []), *([variant] if variant else [])])
        runs.append(run_path)
        record_property("run_dir", str(run_path))
        record_property("seed", seed)
        run_dir = run_once(spec, run_path, seed, opts, repeat=1)
        return Drill(scenario, run_dir, check_run(run_dir))

    yield run

    # the runner stops every node by its handle; a process still here is a leak of the drill (or of this fixture)
    leftovers: list[psutil.Process] = []
    for run_path in runs:
        try:
            wait_until(lambda: not _drill_processes(run_path), 10, f"every process of {run_path.name} to exit")
        except DeadlineExceeded:
            leftovers += _drill_processes(run_path)
    if leftovers:
        described = _describe(leftovers)
        for proc in leftovers:  # started by this test (found by its run directory): stop them by their pid
            try:
                proc.kill()
            except psutil.Error:
                pass
        pytest.fail(f"processes left running after the drill: {described}")
