"""The soak (issue 16, part 3; requirement IDs ENG-1, ENG-5): minutes of open-loop load with a seeded random fault
of the fault table (``scenarios.stateful.FAULT_MOVES``) every ``every_s`` seconds, run as one generated scenario
through the drill runner (``scenarios.runner.run_once``), judged by the library's checkers, while a sampler records
every SAMPLE_S seconds the RSS, fds, threads and sockets (CLOSE_WAIT among them) of every long-running process of
the stack (read from the stack's ``pids.json``, so a restarted engine's new process is followed), of the harness
itself, and each Redis node's ``used_memory`` (``samples.jsonl`` in the run folder).

Figures (``soak.json`` and ``soak.md`` in the run folder and in ``out_dir``; the report section
``reports.verification``): signals sent and acknowledged, faults injected by move, duplicates, lost acknowledged
signals, RTS mismatches ("no fault injected" and fault recovery unmeasured when ``every_s`` leaves no fault in the
soak: ``no_fault_reason``); per process RSS first/last (MB), its slope (MB/min, least squares within steady
segments, each restart a new PID and so a new segment, ``pooled_slope``; each segment's own slope in
``rss_segments``, "unmeasured" when shorter than MIN_SEGMENT_S) against its bound, the RSS it restarts from
(``restart_baselines``), fds at its first/last sample, non-socket fd slope (fds/min), sockets held in CLOSE_WAIT, restarts; the
harness's own fds (with their targets), threads and child processes before the stack and after its teardown
(its leak check: ``harness_before_stack``/``harness_after_teardown``); the stack's live processes at the start of the load, at its end, and after
the teardown. The verdict (``verdict``, ``verdict_word``) and every bound with its reasoning are below;
``judge_run`` judges a run folder again from its samples. ``option_problems`` refuses options a soak cannot run or
judge with (one line each, before any stack starts).
"""
from __future__ import annotations

import gc
import json
import math
import os
import random
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from scenarios import registry
from scenarios.checkers import RunView, check_rto, check_run
from scenarios.environment import DrillError, DrillOptions
from scenarios.runner import DrillInterrupted, run_once
from scenarios.stateful import FAULT_MOVES, SAFETY_CHECKERS, STATEFUL_CHECKERS, SYMBOLS, TICK_CHECKERS
from scenarios.verdicts import percentile
from tradedrill.waiting import DeadlineExceeded, wait_until

SAMPLE_S = 2.0
HARNESS = "harness"           # the soak's own process, sampled beside the stack's
SAMPLES = "samples.jsonl"     # the raw samples, in the run folder
FACTS = "soak-facts.json"     # what run_soak saw around the run (the harness before/after, leftovers), for judge_run

# -- what "flat" means (the soak's own bounds; the design documents set none for memory or descriptors) ----------
# A slope is a least-squares fit of value against time within each *steady segment* of a process (one common
# slope, one intercept per segment), leaving out the first WARMUP_S seconds of every PID (imports, first caches)
# and of every growth of its thread pool: an engine opens its send lanes (a thread and a broker connection each, up
# to send_lanes = 192) only when the orders in flight need them, i.e. after a takeover or a broker fault, and a
# broker serves each new connection on a new thread. In the 2-minute trials an engine grew 5-8 MB/min through such
# steps (16 -> 81 fds in one of them), then stayed level: a pool filling, not a leak. A process whose threads
# keep rising has no steady segment and is "unmeasured", which fails (an unbounded pool is a leak too).
WARMUP_S = 20.0
# What counts as a growth of the pool (``steady_segments``): a new maximum of the thread count held for at least
# GROWTH_HOLD_SAMPLES consecutive samples (2: still there SAMPLE_S later). A thread that lives for one sample (an
# engine's count 19 -> 20 -> 19 for ~2 s in the 2-minute soak of seed 16) is work, not a pool: counting it restarted
# the warm-up and left the active engine with 43 s of steady samples, "not measured".
GROWTH_HOLD_SAMPLES = 2
# Fewer seconds than this of steady samples (summed over a process's segments) and the slope is "unmeasured"
# (a verdict that never passes): a 2 s sampler needs a minute to separate a trend from one allocator step.
MIN_SPAN_S = 60.0
# A steady segment shorter than this is too short to judge: it is reported ("unmeasured", with its own slope) but
# neither fitted nor counted towards MIN_SPAN_S, so "60 s of steady samples" means 60 s in stretches a trend can be
# read from, not 20 fragments of 3 samples. Why 20 s (10 samples): within it one allocator step (RSS_STEP_MB) reads
# as at most 4.5 MB/min, the size of the leaks the 30-minute soak found (+5.6 MB/min), where a 4 s fragment reads
# it as 22 MB/min; the 30-minute soak of 2026-12-01 had engine segments of 2-4 s reading -49 to +191 MB/min, after
# every fault that restarted an engine or grew its pool.
MIN_SEGMENT_S = 20.0
# RSS: a process that keeps no data by design (an engine, a Sentinel) is flat when its RSS grows by at most
# RSS_FLAT_MB_PER_MIN. Why 0.5: the RSS of a Python process moves in steps of pymalloc's 256 KiB arenas and glibc's
# 128 KiB top pad, so one or two steps inside a 2-minute window already read as ~0.2-0.4 MB/min; and a leak of
# 0.5 MB/min is still found by the 30-minute soak as 15 MB of steady growth (720 MB a day: one that matters).
RSS_FLAT_MB_PER_MIN = 0.5
# A slope from a short window cannot tell growth from one step of the allocator: RSS moves in steps of up to
# RSS_STEP_MB (CPython's pymalloc arena is 1 MiB; Redis's jemalloc stepped 0.4-1.3 MB in the trials), so a process
# may also rise by one step over its steady span: the bound gains RSS_STEP_MB / span (minutes). Over a 30-minute
# soak that is ~0.04 MB/min; over a 2-minute one ~0.6 MB/min (seed 16's 2-minute run read one such step of two young
# Redis nodes, flat over 30 minutes, as +1.0 and +1.6 MB/min). Likewise one descriptor (FD_STEP) for the fd slope.
RSS_STEP_MB = 1.0
FD_STEP = 1.0
# A process that keeps data by design may grow by what it keeps, and RSS_FLAT_MB_PER_MIN more:
# - a Redis node keeps every signal and result (the drills' results_maxlen = 0): REDIS_RSS_PER_DATA times its own
#   INFO ``used_memory`` slope, measured in the same samples, is its allowance. Why 2: jemalloc rounds each
#   allocation up to its size class (at most 25 %) and keeps freed extents resident until they decay (10 s), so RSS
#   grows faster than the data it holds; in the 2-minute trials RSS rose 1.3-1.7x as fast as used_memory. A Redis
#   whose RSS grows more than twice as fast as its data (and 0.5 MB/min more) holds memory that is not data;
# - a broker (MT5 simulator) keeps every order, deal and position of its ledger: BROKER_BYTES_PER_DEAL per deal of
#   its ledger in the run. Measured: 2.3 KB of Python heap per market order (tracemalloc over 2,000 orders of an
#   in-process Broker, 2026-12-01; tests/soak/test_soak_figures.py re-measures it and fails if it outgrows this);
#   twice that for pymalloc's arena slack and dict growth steps.
BROKER_BYTES_PER_DEAL = 5000
REDIS_RSS_PER_DATA = 2.0
# - an engine keeps one broker trace per signal of its reconcile lookback (``Engine.known``, 7 days: what its
#   takeover and every lookup of an ambiguous send find at once) and opens a journal whose blocks DuckDB keeps in
#   its buffer pool: ENGINE_BYTES_PER_SIGNAL per signal traded at the brokers in the run (distinct comments of the
#   ledger). Measured: 436 B of Python heap a trace (tracemalloc, tests/soak/test_soak_figures.py re-measures it);
#   an engine start replayed against copies of the 30-minute soak's end state (2026-12-02, 15,670 signals traded,
#   engine-a's 4.7 MB journal) stood 15.3 MB above the same start with no history: the journal's open +9.3 MB,
#   the first broker scan +6.2 MB, i.e. 980 B a signal traded.
ENGINE_BYTES_PER_SIGNAL = 1000
# - the harness keeps every operation of the run in memory until it judges them: its RSS is reported, not judged;
#   its fds, threads and child processes are judged after the teardown (they must be back where they began).
# File descriptors. Sockets come and go with the faults: a failover makes every client open a pool to the new
# primary, a broker fallback makes the engine open its send lanes to the backup (the 2-minute trials: an engine
# 16 -> 81 fds in one step, the harness 42 -> 105, each Sentinel 26 -> 42, then level), so a slope of the fd count
# reads those steps as growth. A leak is judged on what a leak leaves:
# - descriptors that are not sockets (files, pipes, eventfds) are opened for the process's life, not per
#   connection: their within-segment slope is at most FDS_FLAT_PER_MIN (one kept for good every 2 minutes: 15 in
#   30 min); more is a leak ("growing", which fails);
# - a socket whose peer has closed and that the process has not closed stays in CLOSE_WAIT. A PID with CLOSE_WAIT
#   sockets in every sample for CLOSE_WAIT_PERSIST_S holds sockets it no longer uses: reported per process
#   (``close_wait_max_s``) and as a finding of the soak ("held"), not as a leak, because what holds them is a
#   bounded pool (the 2-minute trials: after a broker restart an engine kept 10 idle send lanes to the dead
#   broker in CLOSE_WAIT until the end of the run; a lane is reconnected only when next used, and there are at
#   most send_lanes of them). 20 s: the slowest detection path of the stack is the engine's on a dead broker
#   (heartbeat 3 s + call timeout 5 s: 57 lanes in CLOSE_WAIT for 6-8 s after a broker kill), plus a sample,
#   doubled.
# The total fd count and its slope are reported beside them.
CLOSE_WAIT_PERSIST_S = 20.0
FDS_FLAT_PER_MIN = 0.5
# The engines' settings the soak changes (recorded as overrides, shown in soak.md). The journal keeps the newest
# journal_memory_window final intents in memory by design (~1 KB each, reference.engine.journal): with the default
# 10,000 an engine's window fills only after ~17 minutes of trading alone at 10 signals/s, and two engines taking
# turns through the faults never fill theirs in a 30-minute soak, so every minute of it read the window filling
# (+0.6 MB/min) as growth and no leak could be told from it. With 1,000 the window is full within minutes and the
# rest of the soak measures whether an engine's memory is bounded.
SOAK_ENGINE_SETTINGS = {"journal_memory_window": 1000}
# Positions close: every signal carries a stop loss and a take profit SOAK_STOP_POINTS from the live price, on brokers
# whose symbols walk SOAK_SIGMA_POINTS a tick (250 ms), so a position lives about (200 / 40)^2 = 25 ticks, ~6 s, and
# the account holds some tens of them. A load that only opened positions (the soaks before 2026-12-01 16:00) grew
# the account to 6,940 open positions in 12 minutes, and an engine reads every open position at each close poll
# and takeover: its memory followed the account, not a leak of its own, and no leak could be told from it.
SOAK_STOP_POINTS = 200
SOAK_SIGMA_POINTS = 40.0
# the stateful test's checkers without its tick checker (EA-2): the soak's stack runs no EA and no tick consumer
SOAK_CHECKERS = tuple(c for c in STATEFUL_CHECKERS if c.checker not in TICK_CHECKERS)
# the compound move needs a signal in flight at the right moment: a stateful step, not a timed one
SOAK_MOVES = tuple(sorted(n for n in FAULT_MOVES if n != "engine-pause-in-flight"))
# What a soak's options may be (``option_problems``). The shortest soak is the one that can measure a slope at all:
# the sampler's first sample comes SAMPLE_S into the load, the engines grow their pools (send lanes) as the load
# starts, so WARMUP_S after that is left out, then MIN_SPAN_S of steady samples: (2 + 20 + 60) s = 82 s, 1.37
# minutes (``tradedrill soak --help`` says so). That is the minimum when nothing restarts a process or grows its pool
# again; each restart or lasting pool growth leaves another WARMUP_S out (CI's 2 minutes have room for one). A
# shorter soak could only ever say "memory unmeasured". The other ranges are those of ``tradedrill soak``.
# rounded up to the 0.01 minute the help and the refusal name (82 s is 1.3667 min: 1.369 was accepted while the
# refusal said "at least 1.37", a new user's finding)
MIN_MINUTES = math.ceil((SAMPLE_S + WARMUP_S + MIN_SPAN_S) / 60.0 * 100) / 100
MAX_MINUTES = 24 * 60.0
RATE_RANGE = (1.0, 500.0)
EVERY_RANGE = (5.0, 600.0)
# --seed: what the soak's seeds can be. The seed reaches random.Random (the fault sequence), the drill environment
# and each simulator's --seed; 2**32 - 1 is the largest 32-bit seed, as for every seeded tool the drills use (the
# drills draw theirs below 2**31), and a larger one names no run the harness could tell apart.
SEED_RANGE = (0, 2**32 - 1)
NO_FAULT = "no fault injected"


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


def option_problems(opts: SoakOptions) -> list[str]:
    """What is wrong with ``opts`` for a soak, one line each saying what to pass instead ([] when it can run):
    ``minutes`` in [MIN_MINUTES, MAX_MINUTES], ``rate_per_s`` in RATE_RANGE (signals/s), ``every_s`` in
    EVERY_RANGE (s), all finite numbers; ``seed`` an integer in SEED_RANGE; ``subnet`` a loopback /24 the drill topology
    accepts (three octets like 127.0.95). An ``every_s`` that leaves no fault in the soak is not a problem
    (``soak_moves`` is then empty: a load-only soak, whose fault figures say NO_FAULT)."""
    problems = []
    shown = lambda x: f"{math.ceil(x * 100) / 100:g}"   # noqa: E731 - 4/3 min as 1.34: a value that is accepted
    for flag, value, (low, high), unit in (
            ("--minutes", opts.minutes, (MIN_MINUTES, MAX_MINUTES), "minutes"),
            ("--rate", opts.rate_per_s, RATE_RANGE, "signals/s"),
            ("--every", opts.every_s, EVERY_RANGE, "s")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")):
            problems.append(f"{flag} {value!r} is not a number: give {shown(low)} to {high:g} {unit}")
        elif not low <= value <= high:
            if flag == "--minutes" and value < low:
                problems.append(
                    f"--minutes {value:g} is too short to measure memory: a soak needs at least {shown(low)} minutes "
                    f"(the first sample {SAMPLE_S:g} s into the load, {WARMUP_S:g} s of warm-up, then {MIN_SPAN_S:g} s "
                    f"of steady samples for an RSS slope); pass "
                    f"--minutes 2 (CI's) or more")
            else:
                problems.append(f"{flag} {value:g} is out of range: give {shown(low)} to {high:g} {unit}")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int) \
            or not SEED_RANGE[0] <= opts.seed <= SEED_RANGE[1]:
        problems.append(f"--seed {opts.seed!r} must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")
    from tradedrill.topology import Topology, TopologyError

    try:
        Topology.default(subnet=opts.subnet, services=registry.drill_services(soak_scenario(SoakOptions())))
    except TopologyError as exc:
        problems.append(f"--subnet: {exc} (the soak's own block is 127.0.95)")
    return problems


def no_fault_reason(opts: SoakOptions) -> str | None:
    """Why the soak of ``opts`` injects no fault (None when it injects at least one): the first fault is at
    ``every_s`` and none is in the last interval, so a soak needs at least 2 x ``every_s`` seconds for one."""
    if soak_moves(opts):
        return None
    return (f"--every {opts.every_s:g} s leaves no fault in a {opts.minutes:g}-minute soak (the first fault comes "
            f"at {opts.every_s:g} s and none in the last interval, so one needs at least {2 * opts.every_s:g} s): "
            f"a load-only soak; leave --every at 10 for a fault every 10 s")


def soak_moves(opts: SoakOptions) -> list[str]:
    """The seeded sequence of fault-table moves (names of ``FAULT_MOVES``), one every ``every_s`` seconds from
    ``every_s`` on, none in the last interval. The same seed gives the same sequence."""
    rng = random.Random(f"{opts.seed}:soak")
    return [rng.choice(SOAK_MOVES) for _ in range(1, int(opts.minutes * 60.0 // opts.every_s))]


def soak_scenario(opts: SoakOptions) -> registry.Scenario:
    """The soak as a scenario: the load, and one seeded move of the fault table every ``every_s`` seconds
    (``soak_moves``; none in the last interval, so the last fault has healed before the load ends)."""
    duration = opts.minutes * 60.0
    steps = []
    for i, name in enumerate(soak_moves(opts), start=1):
        move = FAULT_MOVES[name]
        heal = None if move.heal_after_s is None else min(move.heal_after_s, opts.every_s * 0.6)
        steps.append(registry.FaultStep(move.package, move.target, at_s=i * opts.every_s, heal_after_s=heal,
                                        params=dict(move.params)))
    return registry.Scenario(
        name="soak", requirement_ids=("ENG-1", "ENG-5"),
        description=f"{opts.minutes:g} min at {opts.rate_per_s:g} signals/s, a seeded fault every {opts.every_s:g} s",
        workload=registry.Workload(op="trade", rate_per_s=opts.rate_per_s, duration_s=duration, concurrency=4,
                                   timeout_s=5.0, settle_s=30.0, symbols=SYMBOLS,
                                   params={"stops": {"sl_points": SOAK_STOP_POINTS, "tp_points": SOAK_STOP_POINTS}}),
        faults=tuple(steps), checkers=SOAK_CHECKERS, engine_overrides=dict(SOAK_ENGINE_SETTINGS),
        broker_symbols={symbol: {"sigma_points": SOAK_SIGMA_POINTS} for symbol in SYMBOLS})


class Sampler:
    """Every SAMPLE_S while the run is in its load or settle phase: RSS and fds of each process in the stack's
    ``pids.json`` and of the harness itself (``HARNESS``), each row with the PID's age (seconds since it started);
    for each Redis node also ``used_memory`` (INFO memory: the bytes of data it holds). Rows go to ``rows`` and, as
    they are taken, to ``samples.jsonl`` in the run folder (a crashed soak keeps what it measured)."""

    def __init__(self, run_path: Path):
        self.run_path = run_path
        self.rows: list[dict] = []
        self.alive: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="soak-sampler")
        self._redis: dict[str, object] = {}
        self._t0: float | None = None

    def _phase(self) -> str | None:
        try:
            doc = json.loads((self.run_path / "status.json").read_text())
        except (OSError, ValueError):
            return None
        return doc.get("phase") if doc.get("state") == "running" else None

    def _redis_used_memory(self, name: str) -> int | None:
        """``used_memory`` of Redis node ``name`` (None: not a Redis node, or it does not answer: killed, paused)."""
        if name not in self._redis:
            try:
                from tradedrill.credentials import StackSecrets
                from tradedrill.services import redis as redis_service

                topo = json.loads((self.run_path / "stack" / "topology.json").read_text())
                node = next(n for n in topo["nodes"] if n["name"] == name)
                if node["kind"] != "redis":
                    self._redis[name] = None
                    return None
                secrets = StackSecrets.load(self.run_path / "stack")
                self._redis[name] = redis_service.client(node["address"], node["port"], timeout=0.3,
                                                         credential=secrets.harness if secrets else None)
            except (OSError, ValueError, KeyError, StopIteration):
                return None
        client = self._redis[name]
        if client is None:
            return None
        try:
            return int(client.info("memory")["used_memory"])
        except Exception:  # noqa: BLE001 - a node down or partitioned away: no figure for this sample
            return None

    def sample(self, now: float | None = None) -> None:
        """One sample of every process (the loop calls it every SAMPLE_S)."""
        t = time.time() if now is None else now
        if self._t0 is None:
            self._t0 = t
        try:
            entries = json.loads((self.run_path / "stack" / "pids.json").read_text())
        except (OSError, ValueError):
            entries = {}
        alive = 0
        rows = []
        for name, entry in [(HARNESS, {"pid": os.getpid()}), *entries.items()]:
            try:
                proc = psutil.Process(int(entry["pid"]))
                with proc.oneshot():
                    rss, fds, started = proc.memory_info().rss, proc.num_fds(), proc.create_time()
                    threads = proc.num_threads()
                    # each row is stamped when its process was read, not when the pass began: a pass waits on
                    # every Redis node's INFO (0.3 s each for one down or cut off), and the 30-minute soak of
                    # 2026-12-02 read an engine's takeover (RSS +8 MB) 67 ms after the takeover's event under the
                    # pass's earlier time, so the sample closed the steady segment before it (+10 MB/min: failed)
                    read = time.time() if now is None else t
                conns = proc.net_connections(kind="inet")
            except (psutil.Error, KeyError, ValueError, TypeError):
                continue
            if name != HARNESS:
                alive += 1
            row = {"t": round(read - self._t0, 3), "wall": round(read, 3), "name": name, "pid": int(entry["pid"]),
                   "age_s": round(read - started, 3), "rss": rss, "fds": fds, "threads": threads,
                   "sockets": len(conns),
                   "other_fds": fds - len(conns),
                   "close_wait": sum(1 for c in conns if c.status == psutil.CONN_CLOSE_WAIT)}
            used = self._redis_used_memory(name) if name != HARNESS else None
            if used is not None:
                row["used_memory"] = used
            rows.append(row)
        self.rows.extend(rows)
        self.alive.append(alive)
        with open(self.run_path / SAMPLES, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def _loop(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            if self._phase() in ("load", "settle"):
                self.sample()

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        for client in self._redis.values():
            if client is not None:
                client.close()
        self._redis.clear()


def steady_segments(rows: list[dict], warmup_s: float = WARMUP_S, hold: int | None = None,
                    steps: dict[int, list[float]] | None = None) -> dict[tuple[int, int], list[dict]]:
    """``rows`` (one process's samples) in steady segments: per PID, a new segment starts at each *lasting growth*
    of its thread pool (``row["threads"]``: an engine's send lanes, a broker's thread per connection), and every
    sample within ``warmup_s`` of the PID's start (``age_s``) or of the growth that began its segment is left out.

    Lasting growth, precisely: the PID's pool level is the thread count of its first sample, later the highest count
    it has *held*; a growth is a sample whose count is above that level in it and in each of the next ``hold - 1``
    samples of the PID (``GROWTH_HOLD_SAMPLES``, 2: a new maximum still there one sample, 2 s, later). The segment
    then starts at that sample, and the level becomes the lowest count of those ``hold`` samples. A transient thread
    (19 -> 20 -> 19: above the level in one sample only, the count back at the next) is not a growth and does not
    split the segment; nor is a return to a level the pool held before (a pool that shrank and refilled). A rise in
    the PID's last ``hold - 1`` samples cannot be told lasting and is not a growth.
    ``steps``: ``{pid: [t, ...]}`` (the rows' time base) of events that load state by design (an engine's takeover,
    ``takeover_steps``): each also starts a new segment, its first ``warmup_s`` left out.
    Returns ``{(pid, k): [rows in time order]}``. A process whose threads keep rising never has a steady sample
    (its slope is then unmeasured, which fails the verdict: an unbounded thread pool is a leak too)."""
    hold = GROWTH_HOLD_SAMPLES if hold is None else max(1, int(hold))
    by_pid: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["t"]):
        by_pid.setdefault(r["pid"], []).append(r)
    out: dict[tuple[int, int], list[dict]] = {}
    for pid, samples in by_pid.items():
        counts = [r.get("threads") for r in samples]
        k, since, level = 0, None, None
        pending = sorted((steps or {}).get(pid, ()))
        for i, r in enumerate(samples):
            while pending and pending[0] <= r["t"]:
                k, since = k + 1, pending.pop(0)
            n = counts[i]
            if level is None:
                level = n
            elif n is not None and n > level:
                window = counts[i:i + hold]
                if len(window) == hold and all(c is not None and c > level for c in window):
                    k, since, level = k + 1, r["t"], min(window)
            if r.get("age_s", 0.0) < warmup_s or (since is not None and r["t"] - since < warmup_s):
                continue
            out.setdefault((pid, k), []).append(r)
    return out


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``(sum of (t - mean t)(y - mean y), sum of (t - mean t)^2)`` of one segment's ``(t, y)`` points."""
    tm = sum(t for t, _ in points) / len(points)
    ym = sum(y for _, y in points) / len(points)
    return sum((t - tm) * (y - ym) for t, y in points), sum((t - tm) ** 2 for t, _ in points)


def pooled_slope(rows: list[dict], key: str, warmup_s: float = WARMUP_S, min_span_s: float = MIN_SPAN_S,
                 unit: float = 1.0, min_segment_s: float = MIN_SEGMENT_S,
                 steps: dict[int, list[float]] | None = None) -> dict:
    """The least-squares slope of ``row[key] / unit`` per minute over one process's ``rows`` (each ``{"t": s, "pid",
    "age_s": s since the PID started, "threads" (optional), key: number}``; rows without ``key`` are skipped), within
    the steady segments of ``steady_segments`` (the warm-up after a start or a pool's growth left out): one common
    slope, one intercept per segment, so a restart's drop to a new baseline is not read as a fall, nor a pool's
    step as a rise. A segment spanning less than ``min_segment_s`` is too short to judge: listed, not fitted.
    Returns ``{"slope_per_min": float | None, "span_s", "samples", "pids", "segments", "short_segments",
    "detail", "reason"}``: ``span_s``/``samples``/``segments`` count the judged segments only; ``detail`` is one
    ``{"pid", "start_t", "span_s", "samples", "slope_per_min" (its own, None under 2 samples), "verdict": "judged" |
    "unmeasured", "reason"}`` per segment in time order; slope None (reason says why) when the judged segments
    span less than ``min_span_s`` seconds in all."""
    num = den = span = 0.0
    n = judged = short = 0
    detail = []
    segments = steady_segments([r for r in rows if r.get(key) is not None], warmup_s, steps=steps)
    for (pid, _), seg in sorted(segments.items(), key=lambda kv: kv[1][0]["t"]):
        points = [(float(r["t"]), float(r[key]) / unit) for r in seg]
        length = points[-1][0] - points[0][0]
        s_num, s_den = _fit(points) if len(points) >= 2 else (0.0, 0.0)
        row = {"pid": pid, "start_t": points[0][0], "span_s": round(length, 1), "samples": len(points),
               "slope_per_min": s_num / s_den * 60.0 if s_den > 0 else None, "verdict": "judged", "reason": None}
        detail.append(row)
        if length < min_segment_s or s_den <= 0.0:
            short += 1
            row["verdict"] = "unmeasured"
            row["reason"] = f"{length:.0f} s of steady samples: too short to judge (needs {min_segment_s:g} s)"
            continue
        num, den, span, n, judged = num + s_num, den + s_den, span + length, n + len(points), judged + 1
    out = {"slope_per_min": None, "span_s": round(span, 1), "samples": n, "pids": len({p for p, _ in segments}),
           "segments": judged, "short_segments": short, "detail": detail, "reason": None}
    if span < min_span_s or den <= 0.0:
        out["reason"] = (f"{span:.0f} s of steady samples (after each start, thread-pool growth or takeover, "
                         f"{warmup_s:g} s "
                         f"left out; needs {min_span_s:g} s)"
                         + (f"; {short} segment(s) shorter than {min_segment_s:g} s left out as too short to judge"
                            if short else ""))
        return out
    out["slope_per_min"] = num / den * 60.0
    return out


def restart_baselines(rows: list[dict], warmup_s: float = WARMUP_S, window_s: float = 20.0) -> dict:
    """How the RSS a process *starts* from moves across its restarts: per PID (in order of start) the median RSS
    (MB) of its samples aged ``warmup_s`` to ``warmup_s + window_s``, and the least-squares slope (MB/min) of those
    baselines against the time of the PID's first such sample. A process that reloads state it keeps (an engine
    reads its whole journal into memory at start) starts higher each time; within-PID slopes cannot see that.
    Returns ``{"baselines_mb": [...], "slope_mb_per_min": float | None, "span_s": seconds from the first
    baseline to the last}`` (slope None: fewer than 3 PIDs). ``judge_process`` judges it (``restart_verdict``)."""
    by_pid: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["t"]):
        if warmup_s <= r.get("age_s", 0.0) < warmup_s + window_s:
            by_pid.setdefault(r["pid"], []).append(r)
    points = []
    for samples in by_pid.values():
        values = sorted(r["rss"] / 2**20 for r in samples)
        points.append((samples[0]["t"], values[len(values) // 2]))
    points.sort()
    out = {"baselines_mb": [round(v, 1) for _, v in points], "slope_mb_per_min": None,
           "span_s": round(points[-1][0] - points[0][0], 1) if points else 0.0}
    if len(points) >= 3:
        tm = sum(t for t, _ in points) / len(points)
        ym = sum(v for _, v in points) / len(points)
        den = sum((t - tm) ** 2 for t, _ in points)
        if den > 0:
            out["slope_mb_per_min"] = sum((t - tm) * (v - ym) for t, v in points) / den * 60.0
    return out


# An engine's takeover loads the account's state by design: the broker scan reads every order with the engine's
# magic in the lookback (7 days; 10,545 -> 13,032 orders in one PID's four minutes of the 30-minute soak of seed 1650),
# then positions and RTS. In that soak one engine PID's RSS stepped up 10-15 MB at each of its takeovers and was level
# between them (193.7 MB for 60 s), and the pooled slope read the steps as +7.5 MB/min of growth. Each takeover
# (the ``lease_acquired`` event, in the engine's event log) therefore starts a new segment like a pool growth, its
# first WARMUP_S left out. What that leaves: a leak that happens *per takeover* is not in any segment's slope; the
# process's ``takeovers`` count and its restart baselines are reported beside the slope.
TAKEOVER_EVENT = "lease_acquired"


def takeover_steps(run_path: Path, rows: list[dict]) -> dict[int, list[float]]:
    """``{pid: [t, ...]}``: when each engine PID of the soak in ``run_path`` acquired the lease (TAKEOVER_EVENT of
    ``stack/engines/*/events-*.jsonl``), in the samples' time base (``t``: seconds from the first sample; the
    rows' ``wall`` gives the offset). ``{}`` when the rows carry no ``wall`` (soaks judged before it was sampled)."""
    offsets = [r["wall"] - r["t"] for r in rows if r.get("wall") is not None]
    if not offsets:
        return {}
    t0 = offsets[0]
    out: dict[int, list[float]] = {}
    for path in sorted((run_path / "stack" / "engines").glob("*/events-*.jsonl")):
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    if TAKEOVER_EVENT not in line:
                        continue
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("event") == TAKEOVER_EVENT and e.get("pid") is not None and e.get("ts") is not None:
                        out.setdefault(int(e["pid"]), []).append(round(float(e["ts"]) - t0, 3))
        except OSError:
            continue
    return out


def kind_of(name: str) -> str:
    """The role kind of a sampled process name: ``redis``, ``sentinel``, ``broker``, ``engine``, ``harness`` or
    ``other``."""
    if name == HARNESS:
        return "harness"
    for prefix, kind in (("sentinel", "sentinel"), ("redis", "redis"), ("mt5", "broker"), ("engine", "engine")):
        if name.startswith(prefix):
            return kind
    return "other"


# Restart baselines are judged (``restart_verdict``) when a process started at least 3 times over at least
# BASELINE_MIN_SPAN_S: by the same bound as a slope (what it keeps by design, RSS_FLAT_MB_PER_MIN, one step over
# the span). Why: a faulted soak restarts an engine every minute or so (the 30-minute soak of seed 1650: engine-a 33
# PIDs), so its within-process slopes are short and few, and what grew was what each start reloads: its start RSS
# rose 147 -> 197 MB over 24 starts (+1.85 MB/min), reported but not judged, while the soak "passed".
BASELINE_MIN_SPAN_S = 300.0


def judge_process(name: str, rows: list[dict], deals_per_min: float = 0.0,
                  steps: dict[int, list[float]] | None = None, signals_per_min: float = 0.0) -> dict:
    """Figures and verdicts of one process from its samples (``Sampler`` rows): RSS first/last (MB), its slope
    (MB/min, ``pooled_slope``), the allowance for data it keeps by design (MB/min; see the bounds above), fds
    first/last and slope (fds/min), restarts. ``rss_verdict`` and ``fds_verdict``: ``flat``, ``growing``,
    ``unmeasured`` (with ``*_reason``) or, for the harness's RSS, ``reported`` (kept data, not judged); ``held``
    (only when it happened): sockets left in CLOSE_WAIT longer than CLOSE_WAIT_PERSIST_S.
    ``deals_per_min``: a broker's ledger deals per minute of the run; ``signals_per_min``: signals traded at every
    broker per minute (an engine's allowance, ENGINE_BYTES_PER_SIGNAL). ``steps``: an engine's takeovers
    (``takeover_steps``), each the start of a new segment (``steady_segments``). ``restart_verdict``: ``flat``,
    ``growing`` (fails the soak) or None (fewer than 3 starts over BASELINE_MIN_SPAN_S: not judged), with
    ``restart_reason``."""
    rows = sorted(rows, key=lambda r: r["t"])
    kind = kind_of(name)
    mb = float(2**20)
    rss = pooled_slope(rows, "rss", unit=mb, steps=steps)
    fds = pooled_slope(rows, "fds", steps=steps)
    out = {"kind": kind, "rss_first_mb": rows[0]["rss"] / mb if rows else None,
           "rss_last_mb": rows[-1]["rss"] / mb if rows else None, "rss_slope_mb_per_min": rss["slope_per_min"],
           # fds at the process's first and last sample while the stack ran (the harness's own leak check, before
           # the stack and after its teardown, is the summary's harness_before_stack / harness_after_teardown)
           "fds_first_sample": rows[0]["fds"] if rows else None,
           "fds_last_sample": rows[-1]["fds"] if rows else None,
           "fds_slope_per_min": fds["slope_per_min"], "pids": len({r["pid"] for r in rows}), "samples": len(rows),
           "span_s": rss["span_s"], "segments": rss.get("segments"), "allowance_mb_per_min": 0.0,
           "restart_baselines": restart_baselines(rows),
           "takeovers": sum(len((steps or {}).get(pid, ())) for pid in {r["pid"] for r in rows}),
           "threads_first": rows[0].get("threads") if rows else None,
           "threads_last": rows[-1].get("threads") if rows else None,
           "short_segments": rss.get("short_segments"),
           # each steady segment of each PID (a restart is a new PID, so a new segment) with its own slope (MB/min),
           # "unmeasured" when too short to judge (MIN_SEGMENT_S)
           "rss_segments": [{**{k: v for k, v in d.items() if k != "slope_per_min"},
                             "slope_mb_per_min": d["slope_per_min"]} for d in rss.get("detail", [])]}
    if kind == "redis":
        used = pooled_slope(rows, "used_memory", unit=mb)
        out["used_memory_slope_mb_per_min"] = used["slope_per_min"]
        out["allowance_mb_per_min"] = (None if used["slope_per_min"] is None
                                       else REDIS_RSS_PER_DATA * max(0.0, used["slope_per_min"]))
        if used["slope_per_min"] is None:
            rss = {**rss, "slope_per_min": None, "reason": f"its used_memory: {used['reason']}"}
    elif kind == "broker":
        out["allowance_mb_per_min"] = deals_per_min * BROKER_BYTES_PER_DEAL / mb
    elif kind == "engine":
        out["allowance_mb_per_min"] = signals_per_min * ENGINE_BYTES_PER_SIGNAL / mb
    if kind == "harness":
        out["rss_verdict"], out["rss_reason"] = "reported", "keeps the run's operations in memory until it judges them"
    elif rss["slope_per_min"] is None:
        out["rss_verdict"], out["rss_reason"] = "unmeasured", rss["reason"]
    else:
        out["rss_resolution_mb_per_min"] = RSS_STEP_MB / (rss["span_s"] / 60.0)
        bound = out["allowance_mb_per_min"] + RSS_FLAT_MB_PER_MIN + out["rss_resolution_mb_per_min"]
        out["rss_bound_mb_per_min"] = bound
        out["rss_verdict"] = "flat" if rss["slope_per_min"] <= bound else "growing"
        out["rss_reason"] = f"{rss['slope_per_min']:+.3f} MB/min against at most {bound:.3f}"
    base = out["restart_baselines"]
    out["restart_verdict"] = out["restart_reason"] = None
    if kind != "harness" and base["slope_mb_per_min"] is not None and base["span_s"] >= BASELINE_MIN_SPAN_S \
            and out["allowance_mb_per_min"] is not None:
        bound = out["allowance_mb_per_min"] + RSS_FLAT_MB_PER_MIN + RSS_STEP_MB / (base["span_s"] / 60.0)
        out["restart_bound_mb_per_min"] = bound
        out["restart_verdict"] = "flat" if base["slope_mb_per_min"] <= bound else "growing"
        out["restart_reason"] = (f"{len(base['baselines_mb'])} starts, {base['baselines_mb'][0]:.1f} -> "
                                 f"{base['baselines_mb'][-1]:.1f} MB: {base['slope_mb_per_min']:+.3f} MB/min against "
                                 f"at most {bound:.3f}")
    other = pooled_slope(rows, "other_fds", steps=steps)
    out["other_fds_slope_per_min"] = other["slope_per_min"]
    out["close_wait_max_s"] = close_wait_s = close_wait_persistence(rows)
    out["close_wait_max"] = max((r.get("close_wait", 0) for r in rows), default=0)
    if close_wait_s >= CLOSE_WAIT_PERSIST_S:
        out["held"] = (f"up to {out['close_wait_max']} socket(s) left in CLOSE_WAIT for {close_wait_s:.0f} s "
                       f"(their peer closed them; more than {CLOSE_WAIT_PERSIST_S:g} s)")
    if other["slope_per_min"] is None:
        out["fds_verdict"], out["fds_reason"] = "unmeasured", f"its non-socket fds: {other['reason']}"
    else:
        fd_bound = FDS_FLAT_PER_MIN + FD_STEP / (other["span_s"] / 60.0)
        out["fds_bound_per_min"] = fd_bound
        out["fds_verdict"] = "flat" if other["slope_per_min"] <= fd_bound else "growing"
        out["fds_reason"] = f"non-socket fds {other['slope_per_min']:+.2f}/min against at most {fd_bound:.2f}"
    return out


def close_wait_persistence(rows: list[dict]) -> float:
    """The longest time (s) one PID had CLOSE_WAIT sockets in every sample in a row (``row["close_wait"]`` > 0),
    from the first to the last sample of that run of samples; 0.0 when it never had one."""
    longest = 0.0
    by_pid: dict[int, list[dict]] = {}
    for r in rows:
        by_pid.setdefault(r["pid"], []).append(r)
    for samples in by_pid.values():
        since = None
        for r in sorted(samples, key=lambda r: r["t"]):
            if r.get("close_wait", 0) > 0:
                since = r["t"] if since is None else since
                longest = max(longest, r["t"] - since)
            else:
                since = None
    return longest


def harness_leaks(before: dict, after: dict) -> dict:
    """What the soak's own process kept after the teardown: ``before``/``after`` are ``harness_state()`` taken
    before the stack starts and after it is down. Returns ``{"fds": n, "threads": n, "children": [pids],
    "fd_targets": [what the extra fds point at]}``, each what is more after than before (0 / [] when nothing
    leaked)."""
    extra = Counter(after.get("fd_targets", [])) - Counter(before.get("fd_targets", []))
    return {"fds": max(0, after["fds"] - before["fds"]), "threads": max(0, after["threads"] - before["threads"]),
            "children": sorted(set(after["children"]) - set(before["children"])),
            "fd_targets": sorted(extra.elements())}


def harness_state() -> dict:
    """This process's open fds (and what each points at: a path, ``socket:[inode]`` shown as ``socket``, ...),
    threads and live (non-zombie) child processes: ``{"fds", "fd_targets", "threads", "children"}``. Garbage is
    collected first: a socket only unreachable objects hold is closed by that, not kept."""
    gc.collect()
    me = psutil.Process()
    children = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                children.append(child.pid)
        except psutil.Error:
            continue
    targets = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:   # the listing's own fd, closed by now
            continue
        targets.append(target.split(":[")[0] if ":[" in target else target)
    return {"fds": me.num_fds(), "fd_targets": targets, "threads": me.num_threads(), "children": children}


def moves_of_injections(scenario: registry.Scenario, moves: list[str], fault_log: list[dict]) -> list[tuple[str, str]]:
    """``(fault_id, move)`` of every ``inject`` line of the fault log, in order: the k-th ``inject`` of a package is
    the k-th step of that package in ``scenario`` (steps inject in order); ``moves`` names each step (``engine-kill``,
    ``broker-primary-down``, ...; ``<package> (unscheduled)`` past the schedule)."""
    steps_of: dict[str, list[str]] = {}
    for step, move in zip(scenario.faults, moves):
        steps_of.setdefault(step.fault, []).append(move)
    seen: Counter = Counter()
    out = []
    for line in fault_log:
        if line.get("event") != "inject":
            continue
        package = line.get("fault")
        k = seen[package]
        seen[package] += 1
        names = steps_of.get(package, [])
        out.append((str(line.get("fault_id") or package), names[k] if k < len(names) else f"{package} (unscheduled)"))
    return out


def faults_by_move(scenario: registry.Scenario, moves: list[str], fault_log: list[dict]) -> dict[str, int]:
    """Injected faults counted by move of the fault table (``moves_of_injections``)."""
    return dict(sorted(Counter(move for _, move in moves_of_injections(scenario, moves, fault_log)).items()))


def _stack_processes(run_path: Path) -> list[int]:
    """PIDs of live processes started for this run (their command line or working folder inside the run folder)."""
    marker = str(run_path.resolve())
    pids = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if marker in " ".join(proc.info.get("cmdline") or ()) or (proc.info.get("cwd") or "").startswith(marker):
            pids.append(proc.pid)
    return pids


def _stack_pids_alive(run_path: Path) -> dict[str, int]:
    """Nodes of the stack's last ``pids.json`` whose process (same PID, same start time) still runs: name -> PID."""
    try:
        entries = json.loads((run_path / "stack" / "pids.json").read_text())
    except (OSError, ValueError):
        return {}
    alive = {}
    for name, entry in entries.items():
        try:
            proc = psutil.Process(int(entry["pid"]))
            if proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - float(entry["create_time"])) < 1.0:
                alive[name] = proc.pid
        except (psutil.Error, KeyError, ValueError, TypeError):
            continue
    return alive


def verdict(summary: dict, processes: dict) -> tuple[bool, list[str], list[str]]:
    """The soak's verdict from its figures. It fails on: a duplicate or a lost acknowledged signal (or either
    unmeasured), no acknowledged signal, a run that cannot be judged, a failed safety checker of the stateful test
    (``safety_failed``: duplicates, lost_signals, state, one_active), a process ``growing`` in RSS or fds, no
    process with a measured RSS slope, anything left after the teardown (stack processes, the harness's fds,
    threads, children). A process whose slope is ``unmeasured`` (too few steady samples: an engine killed or
    taking over every few seconds) is named in the third list, never counted as flat, and does not fail the soak
    (the drills' rule: exit 0 when every target is met or unmeasured). A soak that injected no fault
    (``faults_injected`` 0, or ``fault_recovery`` other than ``measured``) names ``fault recovery: no fault
    injected`` among the unmeasured: what it passes is the load alone (``verdict_word``). Returns ``(passed,
    why it failed, unmeasured)``."""
    why, unmeasured = [], []
    for key, what in (("duplicate_orders", "duplicate orders"), ("lost_signals", "lost acknowledged signals")):
        if summary.get(key) != 0:
            why.append(f"{what}: {summary.get(key) if summary.get(key) is not None else 'unmeasured'}")
    if not summary.get("acknowledged"):
        why.append("no acknowledged signal: the load never ran")
    if not summary.get("valid", False):
        why.append("the run cannot be judged: " + "; ".join(summary.get("run_validity") or ["see its status.json"]))
    for checker, text in sorted((summary.get("safety_failed") or {}).items()):
        why.append(f"{checker}: {text}")
    if summary.get("fault_recovery", "measured") != "measured" or summary.get("faults_injected") == 0:
        unmeasured.append(f"fault recovery: {NO_FAULT}")   # why: summary["no_fault_reason"], on the faults line
    for name, p in sorted(processes.items()):
        for what, label in (("rss", "RSS"), ("fds", "fds")):
            state = p.get(f"{what}_verdict")
            if state == "growing":
                why.append(f"{name} {label} growing: {p[f'{what}_reason']}")
            elif state == "unmeasured":
                unmeasured.append(f"{name} {label}: {p[f'{what}_reason']}")
        if p.get("restart_verdict") == "growing":
            why.append(f"{name} RSS at start growing across restarts: {p['restart_reason']}")
    if not any(p.get("rss_verdict") in ("flat", "growing") for p in processes.values()):
        why.append("no process has a measured RSS slope (memory unmeasured)")
    if summary.get("processes_left_after_teardown") != 0:
        why.append(f"processes left after the teardown: {summary.get('processes_left_after_teardown')}")
    leaks = summary.get("harness_leaked") or {}
    if leaks.get("fds") or leaks.get("threads") or leaks.get("children"):
        why.append(f"the harness kept after the teardown: {leaks}")
    return not why, why, unmeasured


def verdict_word(summary: dict) -> str:
    """The soak's verdict in words: ``failed``, ``passed``, ``passed under load only (fault recovery
    unmeasured: no fault injected)`` when the soak passed without a fault to recover from (``fault_recovery`` of
    ``judge_run``): a load-only soak never claims a pass for a recovery it did not measure; ``passed (what was
    measured passed)`` when something was not measured (``summary["unmeasured"]``). The exit status is 0 for all
    three (the drills' rule: every target met or unmeasured)."""
    if not summary.get("passed"):
        return "failed"
    if summary.get("fault_recovery") != "measured":
        return f"passed under load only (fault recovery unmeasured: {NO_FAULT})"
    if summary.get("unmeasured"):
        # a new user's finding: CI's 2-minute soak measured neither engine's memory and soak.json said "passed"
        return "passed (what was measured passed)"
    return "passed"


def run_soak(opts: SoakOptions) -> SoakResult:
    """Run the soak into ``opts.out_dir/soak-<stamp>-<seed>`` and judge it (``judge_run``: ``soak.json`` and
    ``soak.md`` in the run folder and in ``opts.out_dir``). Raises DrillError (one line, before any stack starts)
    for options ``option_problems`` refuses, and when the stack cannot run. A soak whose ``every_s`` leaves no
    fault (``no_fault_reason``) runs as a load-only soak and says so. A soak whose stack never started a process
    (the subnet in use, a port taken) leaves no run folder behind (nor ``opts.out_dir`` when it created it)."""

    problems = option_problems(opts)
    if problems:
        raise DrillError("; ".join(problems))
    quiet = no_fault_reason(opts)
    if quiet and opts.say:
        opts.say(f"no fault will be injected: {quiet}")
    scenario = soak_scenario(opts)
    moves = soak_moves(opts)
    out = Path(opts.out_dir)
    out_existed = out.exists()
    run_path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}-{opts.seed}"
    drill_opts = DrillOptions(subnet=opts.subnet, seed=opts.seed, repeat=1, out_dir=out, progress=opts.say)
    sampler = Sampler(run_path)
    harness_before = harness_state()
    sampler.start()
    try:
        run = run_once(scenario, run_path, opts.seed, drill_opts, repeat=1)
    except DrillInterrupted as exc:
        # the runner healed every fault, stopped every node and marked the run folder interrupted (its teardown
        # ignores a second interrupt); say where it is, so the CLI can name it
        sampler.finish()
        exc.run_dir = run_path if run_path.exists() else None
        exc.judge_again = exc.finished   # it came in the finished run's teardown: the run can still be judged
        raise
    except DrillError:
        sampler.finish()
        if not _started_anything(run_path):
            shutil.rmtree(run_path, ignore_errors=True)
            if not out_existed:
                try:
                    out.rmdir()
                except OSError:   # something else is in it now
                    pass
        raise
    finally:
        sampler.finish()
    leftovers: list[str] = []

    def gone() -> bool:
        nonlocal leftovers
        nodes = _stack_pids_alive(run_path)
        leftovers = [f"{name} (pid {pid})" for name, pid in sorted(nodes.items())] + [
            f"pid {pid}" for pid in _stack_processes(run_path) if pid not in nodes.values()]
        return not leftovers

    try:
        return _judge_soak(opts, run, run_path, out, scenario, moves, sampler, harness_before, gone, lambda: leftovers)
    except DrillInterrupted as exc:   # the run is complete, its stack down: only the judging was cut short
        exc.phase = exc.phase or "judging"
        exc.run_dir = run.path
        exc.judge_again = True
        raise


def _judge_soak(opts: SoakOptions, run, run_path: Path, out: Path, scenario: registry.Scenario, moves: list[str],
                sampler: "Sampler", harness_before: dict, gone: Callable[[], bool],
                left: Callable[[], list[str]]) -> SoakResult:
    """``run_soak`` after its run: wait (bounded) for the stack's processes to exit, write FACTS, judge."""
    try:
        wait_until(gone, 10, "every process of the soak to exit")
    except DeadlineExceeded:
        pass
    leftovers = left()
    facts = {
        "minutes": opts.minutes, "rate_per_s": opts.rate_per_s, "every_s": opts.every_s, "seed": opts.seed,
        "faults_scheduled": len(scenario.faults), "moves": moves,
        "harness_before": harness_before, "harness_after": harness_state(),
        "processes_before": sampler.alive[0] if sampler.alive else None,
        "processes_after": sampler.alive[-1] if sampler.alive else None,
        "processes_left_after_teardown": len(leftovers), "left_after_teardown": leftovers,
    }
    (run.path / FACTS).write_text(json.dumps(facts, indent=2))
    doc = judge_run(run.path, out)
    s = doc["summary"]
    return SoakResult(run.path, s, out / "soak.md", s["passed"], doc["processes"])


def _started_anything(run_path: Path) -> bool:
    """Whether the run in ``run_path`` got as far as starting a process of its stack (a PID in its ``pids.json``,
    a node log) or sampling one: a soak refused before that (the subnet in use by another harness) has nothing in
    its run folder worth keeping."""
    try:
        if json.loads((run_path / "stack" / "pids.json").read_text()):
            return True
    except (OSError, ValueError):
        pass
    nodes = run_path / "nodes"
    return (run_path / SAMPLES).exists() or (nodes.is_dir() and any(nodes.iterdir()))


def console_lines(result: SoakResult) -> list[str]:
    """What ``tradedrill soak`` prints when the soak is judged (``soak.json`` keeps every figure): signals, faults,
    duplicates, lost, each process whose RSS or fds grew or went unmeasured, the harness's own leak check (its fds
    before the stack started -> after its teardown), where the files are, and the verdict
    (``reports.verification.soak_verdict_line``, with what was not measured counted, listed in soak.md)."""
    from reports.verification import soak_verdict_line

    s = result.summary
    lines = []
    if s.get("minutes") is not None:
        lines.append(f"soak: {s['minutes']:g} min at {s.get('rate_per_s', 0):g} signals/s, a seeded fault every "
                     f"{s.get('every_s', 0):g} s (seed {s.get('seed')})")
    if "signals" in s:
        lines.append(f"signals: {s.get('signals')} sent, {s.get('acknowledged')} acknowledged; duplicates: "
                     f"{s.get('duplicate_orders')}; lost acknowledged: {s.get('lost_signals')}")
    if "faults_injected" in s:
        counts = ", ".join(f"{k} x{v}" for k, v in (s.get("fault_counts") or {}).items())
        lines.append(f"faults: {s['faults_injected']} of {s.get('faults_scheduled')} injected"
                     + (f" ({counts})" if counts else f" ({NO_FAULT}: fault recovery not measured)"))
    for name, p in sorted((result.processes or {}).items()):
        for what, label in (("rss", "RSS"), ("fds", "fds")):
            state = p.get(f"{what}_verdict")
            if state in ("growing", "unmeasured"):
                lines.append(f"{name} {label} {'not measured' if state == 'unmeasured' else state}: "
                             f"{p.get(f'{what}_reason')}")
    before, after = s.get("harness_before_stack") or {}, s.get("harness_after_teardown") or {}
    if before or after:
        leaked = s.get("harness_leaked") or {}
        lines.append(f"harness leak check (before the stack started -> after its teardown): fds {before.get('fds')}"
                     f" -> {after.get('fds')}, threads {before.get('threads')} -> {after.get('threads')}, child "
                     f"processes {len(before.get('children') or [])} -> {len(after.get('children') or [])}"
                     f" (leaked: fds {leaked.get('fds')}, threads {leaked.get('threads')}, children "
                     f"{len(leaked.get('children') or [])})")
    report = Path(result.report)
    lines.append(f"figures: {report} and {report.with_name('soak.json')} (also in the run folder {result.run_dir})")
    lines.append(soak_verdict_line({"passed": result.passed, **s}, where=f"see {report.name}").replace("**", ""))
    return lines


def recovery_figures(ops, windows, move_of: dict[str, str]) -> dict[str, dict]:
    """Per move of the fault table (``move_of``: fault_id -> move, ``moves_of_injections``), how long the load took
    to trade again (``scenarios.checkers.check_rto``'s rule: the first acknowledged trade invoked at or after the
    injection, its completion minus the injection; monotonic clock): ``{move: {"n", "recovered", "rto_median_s",
    "rto_p95_s", "rto_max_s", "unrecovered_observed_max_s"}}``, seconds. A fault after which no trade succeeded
    before the history ended counts in ``n``, not in the RTOs (``unrecovered_observed_max_s``: the longest such
    wait, a lower bound). Reported, not judged: a fault comes every ``every_s`` seconds, so one fault's recovery
    may run into the next fault."""
    by_move: dict[str, list] = {}
    for w in windows:
        by_move.setdefault(move_of.get(w.fault_id, w.fault), []).append(w)
    out: dict[str, dict] = {}
    for move, mine in sorted(by_move.items()):
        res = check_rto(ops, mine, f="trade", requirement_ids=())
        rtos = sorted(m.rto_s for m in res.measurements if m.recovered)
        waits = [m.observed_s for m in res.measurements if not m.recovered]
        out[move] = {"n": len(res.measurements), "recovered": len(rtos),
                     "rto_median_s": None if not rtos else round(percentile(rtos, 50), 3),
                     "rto_p95_s": None if not rtos else round(percentile(rtos, 95), 3),
                     "rto_max_s": None if not rtos else round(rtos[-1], 3),
                     "unrecovered_observed_max_s": round(max(waits), 3) if waits else None}
    return out


def judge_run(run_path: Path | str, out_dir: Path | str | None = None) -> dict:
    """Judge a finished soak's run folder: its checkers (``check_run``), its ``samples.jsonl`` (``judge_process``
    per process), its ``soak-facts.json`` (what ``run_soak`` saw around the run: the harness before and after, what
    was left after the teardown) and the verdict; writes ``soak.json`` and ``soak.md`` into the run folder and
    ``out_dir`` (when given) and returns the document ``{"summary", "processes", "run_dir"}``. Judging again after
    a change of the bounds reads the same samples. Raises OSError/ValueError for a folder that is not a soak's."""
    from reports.verification import soak_lines
    from scenarios.history import RunDir

    run_path = Path(run_path)
    try:
        facts = json.loads((run_path / FACTS).read_text())
    except FileNotFoundError:
        status = run_path / "status.json"
        cut = status.exists() and "interrupted" in status.read_text(errors="replace")
        raise FileNotFoundError(
            f"{run_path} holds no {FACTS}: " + ("the soak was interrupted, and an interrupted soak is not judged "
                                                "(run it again)" if cut else "it is not a finished soak's run folder"))
    run = RunDir(run_path)
    view = RunView(run)   # the history parsed once, for the checkers and the recovery figures
    check = check_run(run, view=view)
    res = {r.checker: r for r in check.results}
    # the fault log exists once a fault was injected: a load-only soak (``no_fault_reason``) has none
    fault_path = run_path / "faults.jsonl"
    faults = ([json.loads(line) for line in fault_path.read_text().splitlines() if line.strip()]
              if fault_path.exists() else [])
    injected = Counter(f.get("fault") for f in faults if f.get("event") == "inject")
    opts = SoakOptions(minutes=facts["minutes"], seed=facts["seed"], rate_per_s=facts["rate_per_s"],
                       every_s=facts["every_s"])
    deals: Counter = Counter()
    traded: set[str] = set()   # the signals at any broker: distinct comment prefixes of deals with a magic
    try:
        for line in (run_path / "ledger.jsonl").read_text().splitlines():
            if line.strip():
                deal = json.loads(line)
                deals[deal.get("broker")] += 1
                comment = str(deal.get("comment") or "")
                if deal.get("magic") and "-" in comment:
                    traded.add(comment[:comment.rfind("-") + 1])
    except OSError:
        pass
    rows = [json.loads(line) for line in (run_path / SAMPLES).read_text().splitlines() if line.strip()] \
        if (run_path / SAMPLES).exists() else []
    rows_of: dict[str, list[dict]] = {}
    for r in rows:
        rows_of.setdefault(r["name"], []).append(r)
    span_min = max(1e-9, max((r["t"] for r in rows), default=0.0) / 60.0)
    takeovers = takeover_steps(run_path, rows)
    processes = {name: judge_process(name, prow, deals_per_min=deals.get(name, 0) / span_min,
                                     steps=takeovers if kind_of(name) == "engine" else None,
                                     signals_per_min=len(traded) / span_min)
                 for name, prow in sorted(rows_of.items())}
    metric = lambda checker, key: res[checker].metrics.get(key) if checker in res else None   # noqa: E731
    summary = {
        **{k: v for k, v in facts.items() if k not in ("moves", "harness_before", "harness_after")},
        # the harness's own fds, threads, children before the stack started and after its teardown (its leak
        # check), named apart from the fds each process had at its first/last sample while the stack ran
        "harness_before_stack": facts["harness_before"], "harness_after_teardown": facts["harness_after"],
        "signals": _count_lines(run_path / "signals.jsonl"),
        "faults_injected": sum(injected.values()),
        "fault_counts": faults_by_move(soak_scenario(opts), facts["moves"], faults), "fault_packages": dict(injected),
        "acknowledged": metric("lost_signals", "acknowledged"),
        "duplicate_orders": metric("duplicates", "duplicate_orders"),
        "lost_signals": metric("lost_signals", "lost_signals"),
        "state_mismatches": metric("state", "state_mismatches"),
        "valid": bool(check.run_validity.valid), "run_validity": check.run_validity.reasons,
        "safety_failed": {r.checker: r.summary for r in check.results
                          if r.checker in SAFETY_CHECKERS and r.valid is False},
        "findings": {r.checker: r.summary for r in check.results
                     if r.checker not in SAFETY_CHECKERS and r.valid is False},
        "harness_leaked": harness_leaks(facts["harness_before"], facts["harness_after"]),
        # the engines' settings of the run (overrides.json: the soak's SOAK_ENGINE_SETTINGS), with the defaults
        "engine_settings": _engine_settings(run_path),
        # the soak's other change (scenario.json as it ran): stops on every signal, brokers whose prices walk
        "price_settings": _price_settings(run_path),
        "bounds": {"warmup_s": WARMUP_S, "min_span_s": MIN_SPAN_S, "rss_flat_mb_per_min": RSS_FLAT_MB_PER_MIN,
                   "broker_bytes_per_deal": BROKER_BYTES_PER_DEAL, "redis_rss_per_data": REDIS_RSS_PER_DATA,
                   "engine_bytes_per_signal": ENGINE_BYTES_PER_SIGNAL, "baseline_min_span_s": BASELINE_MIN_SPAN_S,
                   "rss_step_mb": RSS_STEP_MB, "fd_step": FD_STEP,
                   "fds_flat_per_min": FDS_FLAT_PER_MIN,
                   "close_wait_persist_s": CLOSE_WAIT_PERSIST_S},
    }
    summary["sockets_held"] = {name: p["held"] for name, p in processes.items() if p.get("held")}
    if not summary["faults_injected"]:
        summary["fault_recovery"] = "unmeasured"
        summary["no_fault_reason"] = (no_fault_reason(opts) if not facts["moves"] else
                                      f"none of the {facts.get('faults_scheduled')} scheduled faults was injected")
    else:
        summary["fault_recovery"] = "measured"
        try:
            summary["recovery_by_fault"] = recovery_figures(
                view.operations(), view.fault_windows(),
                dict(moves_of_injections(soak_scenario(opts), facts["moves"], faults)))
        except (OSError, ValueError) as exc:   # a history or fault log the checkers could not read either
            summary["recovery_not_computed"] = str(exc).splitlines()[0][:300]
    passed, why, unmeasured = verdict(summary, processes)
    summary["passed"], summary["failed_because"], summary["unmeasured"] = passed, why, unmeasured
    summary["verdict"] = verdict_word(summary)
    doc = {"summary": summary, "processes": processes, "run_dir": str(run_path)}
    text = json.dumps(doc, indent=2, default=str)
    md = "\n".join(["# Soak (issue 16)", "", *soak_lines(doc), ""])
    for folder in [run_path] + ([Path(out_dir)] if out_dir is not None else []):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "soak.json").write_text(text)
        (folder / "soak.md").write_text(md)
    return doc


def _price_settings(run_path: Path) -> dict:
    """``{"stop_points", "sigma_points"}`` of the run's scenario.json (SOAK_STOP_POINTS, SOAK_SIGMA_POINTS as it
    ran); ``{}`` when it records neither."""
    try:
        doc = json.loads((run_path / "scenario.json").read_text())
    except (OSError, ValueError):
        return {}
    stops = ((doc.get("workload") or {}).get("params") or {}).get("stops") or {}
    sigmas = {v.get("sigma_points") for v in (doc.get("broker_symbols") or {}).values() if isinstance(v, dict)}
    out = {}
    if stops.get("sl_points") is not None:
        out["stop_points"] = stops["sl_points"]
    if len(sigmas) == 1 and None not in sigmas:
        out["sigma_points"] = sigmas.pop()
    return out


def _engine_settings(run_path: Path) -> list[dict]:
    """The settings the soak ran with that differ from the documents' (``overrides.json`` of the run folder,
    ``scenarios.overrides``): ``[{"key", "value", "default"}]``; [] for a run folder without it."""
    from scenarios import overrides as overrides_mod

    return [{"key": e["key"], "value": e.get("drill"), "default": e.get("document")}
            for e in overrides_mod.load(run_path)]


def _count_lines(path: Path) -> int | None:
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


__all__ = ["DrillError", "SoakOptions", "SoakResult", "console_lines", "judge_run", "run_soak", "soak_scenario"]
