"""The drill runner: one repetition of one scenario into a run folder, and many of them.

One run, in order (each phase is written to the run folder's ``status.json``):

1. ``start``: the run folder (``scenarios.history.RunDir``) with the seed, the scenario and the configuration; the
   topology of ``scenarios.environment`` (Redis primary, two replicas, three Sentinels, two MT5 simulators, two
   supervised engines);
2. ``load``: the workload (``scenarios.workload``) and the fault schedule (``scenarios.schedule``) side by side;
3. ``settle``: every acknowledged signal gets its result, or the settle period ends;
4. ``dump``: the engines are stopped, then the ground truth is dumped (ledgers, RTRS, RTS, RTSS backlog);
5. everything is stopped by its own handle, and the run is marked ``complete`` (or ``error`` with the reason).

The runner records, it never judges: ``run_drills`` returns the run folders; ``tradedrill drill`` hands them to the
checkers (``scenarios.checkers.check_run``) and the report (``reports.build_report``).

A drill is as reproducible as a chaos run can be: the seed picks the signal sequence (ids, sides, volumes,
symbols) and every random choice of the faults; the timing of a real system is not replayable and is measured.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from scenarios import registry
from scenarios.environment import DrillEnvironment, DrillError, DrillOptions
from scenarios.history import RunDir
from scenarios.schedule import Schedule
from scenarios.workload import TradeClients

__all__ = ["DrillError", "DrillOptions", "DrillResult", "run_drills", "run_once"]


@dataclass
class DrillResult:
    """What ``run_drills`` did: the root folder, the seed, and one run folder per scenario x repeat."""

    root: Path
    seed: int
    runs: list[RunDir] = field(default_factory=list)


def run_once(scenario: registry.Scenario, run_path: Path, seed: int, opts: DrillOptions, repeat: int = 0) -> RunDir:
    """One run of ``scenario`` into ``run_path``. Raises DrillError when the stack cannot run; a fault that could
    not be injected marks the run ``error`` (judged invalid) instead."""
    run = RunDir.create(run_path, seed=seed, scenario={**scenario.to_dict(), "repeat": repeat}, config={})
    run.mark("running", phase="start")
    env = DrillEnvironment(scenario, run, seed, opts)
    schedule = Schedule(env)
    ended = False
    try:
        env.up()
        workload = env.workload()
        stop = threading.Event()
        clients = TradeClients(env, workload, stop)
        run.mark("running", phase="load")
        started = time.monotonic()
        clients.start()
        schedule.start(started)
        stop.wait(workload.duration_s)
        opts.say(f"  load done ({clients.counter} signals); settling up to {workload.settle_s:.0f} s")
        schedule.stop()
        run.mark("running", phase="settle")
        clients.finish(drain_s=workload.settle_s)
        run.mark("running", phase="dump")
        env.stop_engines()
        env.dump_ground_truth()
        ended = True
    finally:
        errors = schedule.heal_all()
        errors += env.down()
        if ended:
            problems = schedule.errors + [f"teardown: {e}" for e in errors]
            run.mark("error" if schedule.errors else "complete", reason="; ".join(problems) or None)
    return run


def run_drills(names: Sequence[str], opts: DrillOptions) -> DrillResult:
    """Run every named scenario ``opts.repeat`` times (seeds ``seed``, ``seed+1``, ...) into
    ``opts.out_dir/drill-<stamp>-<seed>/<scenario>/run-<k>``. Raises DrillError for an unknown scenario."""
    unknown = [n for n in names if registry.get(n) is None]
    if unknown:
        known = ", ".join(s.name for s in registry.all_scenarios())
        raise DrillError(f"unknown scenario(s) {', '.join(unknown)}; known: {known} (see `tradedrill scenarios`)")
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1, 2**31)
    root = Path(opts.out_dir) / f"drill-{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    result = DrillResult(root, seed)
    for name in names:
        scenario = registry.get(name)
        for k in range(opts.repeat):
            run_seed = seed + k
            opts.say(f"{name} [{k + 1}/{opts.repeat}] seed {run_seed}")
            result.runs.append(run_once(scenario, root / name / f"run-{k + 1}", run_seed, opts, repeat=k + 1))
            if opts.on_run_done:
                opts.on_run_done()
    return result
