"""The soak (issue 16, part 3): minutes of open-loop load with a seeded random fault of the fault table
(``scenarios.stateful.FAULT_MOVES``) every ``every_s`` seconds, run as one generated scenario through the drill
runner (``scenarios.runner.run_once``), judged by the library's checkers, while a sampler records the RSS and
open fds of every long-running process of the stack (read from the stack's ``pids.json``, so a restarted engine's
new process is followed) and of the harness itself.

Figures (``soak.json`` in the run folder and in ``out_dir``; the report section ``reports.verification``):
duplicates, lost acknowledged signals, RTS mismatches; per process the RSS first/last and its slope (MB/min, least
squares over the samples of its longest-lived PID), fds first/last and restarts; the harness's fds and threads
before and after; the stack's live processes at the start of the load, at its end, and after the teardown (0).
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from scenarios import registry
from scenarios.checkers import check_run
from scenarios.environment import DrillError, DrillOptions
from scenarios.runner import run_once
from scenarios.stateful import FAULT_MOVES, STATEFUL_CHECKERS, SYMBOLS
from tradedrill.waiting import DeadlineExceeded, wait_until

SAMPLE_S = 2.0
# the compound move needs a signal in flight at the right moment: a stateful step, not a timed one
SOAK_MOVES = tuple(sorted(n for n in FAULT_MOVES if n != "engine-pause-in-flight"))


@dataclass
class SoakOptions:
    minutes: float = 30.0
    seed: int = 16
    rate_per_s: float = 10.0
    every_s: float = 10.0
    subnet: str = "127.0.95"
    out_dir: Path = Path("out/soak")
    say: Callable[[str], None] | None = None


@dataclass
class SoakResult:
    run_dir: Path
    summary: dict
    report: Path
    passed: bool
    processes: dict = field(default_factory=dict)


def soak_scenario(opts: SoakOptions) -> registry.Scenario:
    """The soak as a scenario: the load, and one seeded move of the fault table every ``every_s`` seconds (none in
    the last interval, so the last fault has healed before the load ends)."""
    rng = random.Random(f"{opts.seed}:soak")
    duration = opts.minutes * 60.0
    steps = []
    for i in range(1, int(duration // opts.every_s)):
        move = FAULT_MOVES[rng.choice(SOAK_MOVES)]
        heal = None if move.heal_after_s is None else min(move.heal_after_s, opts.every_s * 0.6)
        steps.append(registry.FaultStep(move.package, move.target, at_s=i * opts.every_s, heal_after_s=heal,
                                        params=dict(move.params)))
    return registry.Scenario(
        name="soak", requirement_ids=("ENG-1", "ENG-5"),
        description=f"{opts.minutes:g} min at {opts.rate_per_s:g} signals/s, a seeded fault every {opts.every_s:g} s",
        workload=registry.Workload(op="trade", rate_per_s=opts.rate_per_s, duration_s=duration, concurrency=4,
                                   timeout_s=5.0, settle_s=30.0, symbols=SYMBOLS),
        faults=tuple(steps), checkers=STATEFUL_CHECKERS)


class Sampler:
    """Every SAMPLE_S while the run is in its load or settle phase: RSS and fds of each process in the stack's
    ``pids.json``, and the count of those alive."""

    def __init__(self, run_path: Path):
        self.run_path = run_path
        self.rows: list[dict] = []
        self.alive: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="soak-sampler")
        self.harness_first: dict | None = None

    def _phase(self) -> str | None:
        try:
            doc = json.loads((self.run_path / "status.json").read_text())
        except (OSError, ValueError):
            return None
        return doc.get("phase") if doc.get("state") == "running" else None

    def _loop(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(SAMPLE_S):
            if self._phase() not in ("load", "settle"):
                continue
            if self.harness_first is None:
                self.harness_first = {"fds": me.num_fds(), "threads": me.num_threads()}
            try:
                entries = json.loads((self.run_path / "stack" / "pids.json").read_text())
            except (OSError, ValueError):
                continue
            t, alive = time.monotonic(), 0
            for name, entry in entries.items():
                try:
                    proc = psutil.Process(int(entry["pid"]))
                    with proc.oneshot():
                        rss, fds = proc.memory_info().rss, proc.num_fds()
                except (psutil.Error, KeyError, ValueError, TypeError):
                    continue
                alive += 1
                self.rows.append({"t": t, "name": name, "pid": int(entry["pid"]), "rss": rss, "fds": fds})
            self.alive.append(alive)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def per_process(self) -> dict:
        import numpy as np

        out = {}
        for name in sorted({r["name"] for r in self.rows}):
            rows = [r for r in self.rows if r["name"] == name]
            pids = Counter(r["pid"] for r in rows)
            longest = [r for r in rows if r["pid"] == pids.most_common(1)[0][0]]
            slope = 0.0
            if len(longest) >= 3 and longest[-1]["t"] > longest[0]["t"]:
                ts = np.array([(r["t"] - longest[0]["t"]) / 60.0 for r in longest])
                mb = np.array([r["rss"] / 2**20 for r in longest])
                slope = float(np.polyfit(ts, mb, 1)[0])
            out[name] = {"rss_first_mb": rows[0]["rss"] / 2**20, "rss_last_mb": rows[-1]["rss"] / 2**20,
                         "rss_slope_mb_per_min": slope, "fds_first": rows[0]["fds"], "fds_last": rows[-1]["fds"],
                         "pids": len(pids), "samples": len(rows)}
        return out


def _stack_processes(run_path: Path) -> int:
    """Live processes started for this run (their command line or working folder inside the run folder)."""
    marker = str(run_path.resolve())
    n = 0
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if marker in " ".join(proc.info.get("cmdline") or ()) or (proc.info.get("cwd") or "").startswith(marker):
            n += 1
    return n


def run_soak(opts: SoakOptions) -> SoakResult:
    """Run the soak into ``opts.out_dir/soak-<stamp>-<seed>`` and write its figures. Raises DrillError when the
    stack cannot run."""
    from reports.verification import write_section

    scenario = soak_scenario(opts)
    out = Path(opts.out_dir)
    run_path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}-{opts.seed}"
    drill_opts = DrillOptions(subnet=opts.subnet, seed=opts.seed, repeat=1, out_dir=out, progress=opts.say)
    sampler = Sampler(run_path)
    me = psutil.Process()
    sampler.start()
    try:
        run = run_once(scenario, run_path, opts.seed, drill_opts, repeat=1)
    finally:
        sampler.finish()
    with_leftovers = 0
    try:
        wait_until(lambda: _stack_processes(run_path) == 0, 10, "every process of the soak to exit")
    except DeadlineExceeded:
        with_leftovers = _stack_processes(run_path)
    check = check_run(run)
    res = {r.checker: r for r in check.results}
    faults = [json.loads(line) for line in (run.path / "faults.jsonl").read_text().splitlines() if line.strip()]
    injected = Counter(f.get("fault") for f in faults if f.get("event") == "inject")
    first = sampler.harness_first or {"fds": None, "threads": None}
    summary = {
        "minutes": opts.minutes, "rate_per_s": opts.rate_per_s, "every_s": opts.every_s, "seed": opts.seed,
        "faults_scheduled": len(scenario.faults), "faults_injected": sum(injected.values()),
        "fault_counts": dict(injected),
        "acknowledged": res["lost_signals"].metrics.get("acknowledged"),
        "duplicate_orders": res["duplicates"].metrics.get("duplicate_orders"),
        "lost_signals": res["lost_signals"].metrics.get("lost_signals"),
        "state_mismatches": res["state"].metrics.get("state_mismatches"),
        "valid": check.valid, "run_validity": check.run_validity.reasons,
        "failed_checkers": {r.checker: r.summary for r in check.results if r.valid is False},
        "harness_fds_before": first["fds"], "harness_fds_after": me.num_fds(),
        "harness_threads_before": first["threads"], "harness_threads_after": me.num_threads(),
        "processes_before": sampler.alive[0] if sampler.alive else None,
        "processes_after": sampler.alive[-1] if sampler.alive else None,
        "processes_left_after_teardown": with_leftovers,
    }
    processes = sampler.per_process()
    doc = {"summary": summary, "processes": processes, "run_dir": str(run.path)}
    (run.path / "soak.json").write_text(json.dumps(doc, indent=2, default=str))
    (out / "soak.json").write_text(json.dumps(doc, indent=2, default=str))
    report = write_section(out)
    passed = (summary["duplicate_orders"] == 0 and summary["lost_signals"] == 0 and check.run_validity.valid
              and with_leftovers == 0)
    return SoakResult(run.path, summary, report, passed, processes)


__all__ = ["DrillError", "SoakOptions", "SoakResult", "run_soak", "soak_scenario"]
