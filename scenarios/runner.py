"""The drill runner: one repetition of one scenario into a run folder, and many of them.

One run, in order (each phase is written to the run folder's ``status.json``):

1. ``start``: the run folder (``scenarios.history.RunDir``) with the seed, the scenario and the configuration; the
   topology of ``scenarios.environment`` (Redis primary, two replicas, three Sentinels, two MT5 simulators, two
   supervised engines);
2. ``load``: the workload (``scenarios.workload``) and the fault schedule (``scenarios.schedule``) side by side;
   the live configuration read (``scenarios.conformance``) once before it and once before the dump, the folders
   listed about once a second in between (``conformance.json``, issue 19);
3. ``settle``: every acknowledged signal gets its result, or the settle period ends;
4. ``dump``: the engines are stopped, then the ground truth is dumped (ledgers, RTRS, RTS, RTSS backlog);
5. everything is stopped by its own handle, and the run is marked ``complete`` (or ``error`` with the reason).

The runner records, it never judges: ``run_drills`` returns the run folders; ``tradedrill drill`` hands them to the
checkers (``scenarios.checkers.check_run``) and the report (``reports.build_report``).

A drill is as reproducible as a chaos run can be: the seed picks the signal sequence (ids, sides, volumes,
symbols) and every random choice of the faults; the timing of a real system is not replayable and is measured.
"""
from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from scenarios import registry
from scenarios.conformance import ConformanceProbe
from scenarios.environment import DrillEnvironment, DrillError, DrillOptions
from scenarios.history import RunDir
from scenarios.load import LoadOptions, with_load_services
from scenarios.schedule import Schedule
from scenarios.tickclients import start_tick_clients
from scenarios.workload import TradeClients
from tradedrill import process

__all__ = ["DrillError", "DrillInterrupted", "DrillOptions", "DrillResult", "interruptible", "run_drills",
           "run_once"]

INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TEARDOWN_GRACE_S = 10.0    # a second interrupt this soon into the teardown is ignored (the teardown is running)
TEARDOWN_BUDGET_S = 60.0   # a teardown still running after this escalates to SIGKILL of everything it started


class DrillInterrupted(BaseException):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP arrived during a drill; the run was torn down and marked interrupted.
    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int, phase: str | None = None):
        super().__init__(signum)
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.phase = phase
        self.run_dir: Path | None = None   # the run folder the interrupt marked (set by run_once)
        # the run named had finished (history and ground truth written) before the interrupt: it came during its
        # normal teardown, which went on; the run stays complete, and no further run starts
        self.finished = False
        self.root: Path | None = None   # the drill's folder of runs (set by run_drills)

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}" + (f" during {self.phase}" if self.phase else "")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise :class:`DrillInterrupted` in the main thread (after any critical
    section of ``tradedrill.process``, so a started process is always recorded first). A no-op off the main
    thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTS}

    def handler(signum, _frame):
        process.interrupt(DrillInterrupted(signum))

    for sig in INTERRUPTS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class TeardownGuard:
    """What :func:`_teardown_guard` saw: ``late`` is the signal number of an interrupt that arrived during a teardown
    no interrupt had started (a normal one), else None. Its caller finishes the teardown, then raises
    :class:`DrillInterrupted` for it, so no further run starts (a new user's Ctrl-C between two runs of ``drill -n
    2`` and of ``replay --attempts 3`` was taken for the second press of an interrupt and ignored: every run went
    on, exit 0)."""

    def __init__(self) -> None:
        self.late: int | None = None

    def interrupt(self, phase: str = "teardown") -> "DrillInterrupted | None":
        if self.late is None:
            return None
        exc = DrillInterrupted(self.late, phase)
        exc.finished = True
        return exc


@contextlib.contextmanager
def _teardown_guard(env: DrillEnvironment, opts: DrillOptions, interrupted: bool = True) -> Iterator[TeardownGuard]:
    """While the teardown runs. ``interrupted``: an interrupt started it; a further one within TEARDOWN_GRACE_S is
    ignored (with a message), after it everything the run started is SIGKILLed by PID. A normal teardown
    (``interrupted`` False) is not cut short by the first interrupt either: it is recorded (``TeardownGuard.late``)
    and said, and from then on the same rule holds. A teardown outliving TEARDOWN_BUDGET_S is escalated too."""
    guard = TeardownGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    started = time.monotonic() if interrupted else None

    def escalate(why: str) -> None:
        registry = env.stack.registry if env.stack else None
        if registry is not None:
            killed = registry.kill_all()
            opts.say(f"  teardown escalated ({why}): SIGKILL {', '.join(killed) or 'nothing left'}")

    def handler(signum, _frame):
        nonlocal started
        name = signal.Signals(signum).name
        if started is None:   # the first interrupt, in a normal teardown: finish it, then stop
            started, guard.late = time.monotonic(), signum
            opts.say(f"  {name}: finishing this run's teardown (healing faults, stopping nodes), then stopping; "
                     f"interrupt again after {TEARDOWN_GRACE_S:.0f} s to kill everything at once")
        elif time.monotonic() - started < TEARDOWN_GRACE_S:
            opts.say(f"  {name} ignored: healing faults and stopping nodes; interrupt again "
                     f"after {TEARDOWN_GRACE_S:.0f} s to kill everything at once")
        else:
            threading.Thread(target=escalate, args=(name,), daemon=True).start()

    previous = {sig: signal.getsignal(sig) for sig in INTERRUPTS}
    for sig in INTERRUPTS:
        signal.signal(sig, handler)
    budget = threading.Timer(TEARDOWN_BUDGET_S, escalate, args=(f"teardown over {TEARDOWN_BUDGET_S:.0f} s",))
    budget.daemon = True
    budget.start()
    try:
        yield guard
    finally:
        budget.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class DrillResult:
    """What ``run_drills`` did: the root folder, the seed, and one run folder per scenario x repeat."""

    root: Path
    seed: int
    runs: list[RunDir] = field(default_factory=list)


def _refuse_busy_subnet(opts: DrillOptions) -> None:
    """DrillError (the claim's own one line) when another live harness process or an `up` stack runs a stack on
    the local provider's subnet; nothing is claimed or written."""
    if opts.provider != "local":
        return
    from tradedrill.process import StackIndex, SubnetBusy

    try:
        StackIndex().check(opts.subnet)
    except SubnetBusy as exc:
        raise DrillError(str(exc)) from None


def run_once(scenario: registry.Scenario, run_path: Path, seed: int, opts: DrillOptions, repeat: int = 0,
             load: "LoadOptions | None" = None) -> RunDir:
    """One run of ``scenario`` into ``run_path``. Raises DrillError when the stack cannot run; a fault that could
    not be injected marks the run ``error`` (judged invalid) instead. ``load``: locust users beside the scenario's
    workload (``scenarios.load``, issue 16)."""
    ran = scenario.to_dict()
    # the workload as it ran (--rate/--duration/--settle), so the report says 200/s when it ran at 200/s
    ran["workload"] = {**ran.get("workload", {}),
                       **{k: v for k, v in (("duration_s", opts.duration_s), ("settle_s", opts.settle_s),
                                            ("rate_per_s", opts.rate_per_s)) if v is not None}}
    _refuse_busy_subnet(opts)   # before the run folder is made (none left half-made)
    try:
        run = RunDir.create(run_path, seed=seed, scenario={**ran, "repeat": repeat}, config={})
    except OSError as exc:
        raise DrillError(f"cannot write the run folder {run_path}: {exc.strerror or exc}; choose a writable folder "
                         f"with --out") from None
    phase = "start"
    run.mark("running", phase=phase)
    env = DrillEnvironment(scenario, run, seed, opts)
    schedule = Schedule(env)
    stop = threading.Event()   # the clients' stop: set on every way out, so none invokes after teardown
    ended = False
    failure: BaseException | None = None
    ticks = None   # the tick consumers of a topology with EA nodes (issue 14)
    locust = None  # the locust load process (issue 16)

    def enter(name: str) -> None:
        nonlocal phase
        phase = name
        run.mark("running", phase=name)

    probe = None   # the live configuration read (issue 19: scenarios.conformance)
    clients = None
    try:
        env.up()
        probe = ConformanceProbe(env.stack, env.topology, run.path / "stack", run.path).start()
        workload = env.workload()
        clients = TradeClients(env, workload, stop)
        enter("load")
        ticks = start_tick_clients(env)
        started = time.monotonic()
        if load is not None:
            from scenarios.load import LoadProcess

            locust = LoadProcess(env, load).start(started, workload.duration_s)
        clients.start()
        schedule.start(started)
        stop.wait(workload.duration_s)
        opts.say(f"  load done ({clients.counter} signals); settling up to {workload.settle_s:.0f} s")
        schedule.stop()
        enter("settle")
        clients.finish(drain_s=workload.settle_s)
        if clients.not_sent:
            opts.say(f"  {clients.not_sent} of {clients.counter} signals not sent: the harness's senders were behind "
                     f"the offered {workload.rate_per_s:g}/s until each one's {workload.timeout_s:g} s timeout "
                     f"(completed fail in history.jsonl)")
        if locust is not None:
            opts.say("  " + locust.finish(workload.settle_s))
        if "panel" in workload.params.get("also", ()):   # issue 15: the panel as its user sees it, for the report
            enter("screenshot")
            shot = _panel_screenshot(env, run)
            opts.say(f"  panel screenshot: {'panel.png' if shot['captured'] else 'not captured: ' + shot['reason']}")
        enter("dump")
        probe.finish()   # the second read while every node still runs, then conformance.json
        env.stop_engines()
        env.dump_ground_truth()
        ended = True
    except DrillInterrupted as exc:
        exc.phase, exc.run_dir = phase, run.path
        failure = exc
        opts.say(f"  {exc}: healing faults, stopping every node")
        raise
    except DrillError as exc:
        failure = exc
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user; the run folder keeps the details
        failure = exc
        raise DrillError(f"{scenario.name} (seed {seed}) failed during {phase}: {type(exc).__name__}: {exc}; "
                         f"the run folder {run.path} is marked error, its node logs are in nodes/") from exc
    except BaseException as exc:
        failure = exc
        raise
    finally:
        with _teardown_guard(env, opts, interrupted=isinstance(failure, DrillInterrupted)) as guard:
            stop.set()
            if clients is not None:   # before env.down() closes the history: no client may write after it
                stuck = clients.halt()
                if stuck:
                    opts.say(f"  clients still running after the halt's deadline: {', '.join(stuck)}")
            if probe is not None:
                probe.stop()
            if locust is not None:
                locust.stop()
            if ticks is not None:
                ticks.stop()
            # cancel every step still waiting and let a step that is injecting right now finish and heal (a heal
            # that restarts a node must come before the nodes are stopped, or it leaves an orphan behind)
            schedule.stop()
            errors = schedule.heal_all()
            errors += env.down()
        problems = schedule.errors + [f"teardown: {e}" for e in errors]
        if isinstance(failure, DrillInterrupted):
            run.mark("interrupted", phase=phase, reason=f"{failure.signal_name}; " + "; ".join(problems)
                     if problems else failure.signal_name)
        elif failure is not None:
            run.mark("error", phase=phase, reason=f"{type(failure).__name__}: {failure}")
        elif ended:
            run.mark("error" if schedule.errors else "complete", reason="; ".join(problems) or None)
        late = guard.interrupt()
        if late is not None and not isinstance(failure, DrillInterrupted):
            # the run's own state stands (a run that ended is complete: its history and ground truth were written
            # before the teardown); no further run starts
            late.run_dir, late.finished = run.path, ended and failure is None
            opts.say(f"  {late.signal_name} during the teardown: the teardown finished; stopping before any "
                     f"further run")
            raise late
    return run


def _panel_screenshot(env: DrillEnvironment, run: RunDir) -> dict:
    """The local panel in headless Chromium through the proxy, into the run folder (``scenarios.panelshot``);
    never raises: a screenshot that cannot be taken is recorded as such."""
    from scenarios import panelshot

    try:
        from tradedrill.services.backend import read_passphrase

        proxy = env.topology.node("proxy")
        return panelshot.capture(f"http://{proxy.address}:{proxy.port}", read_passphrase(env.stack.run_dir), run.path)
    except Exception as exc:  # noqa: BLE001 - e.g. no proxy node: said in the record, the drill goes on
        return panelshot.not_captured(run.path, f"{type(exc).__name__}: {exc}")


def run_drills(names: Sequence[str], opts: DrillOptions, load: "LoadOptions | None" = None) -> DrillResult:
    """Run every named scenario ``opts.repeat`` times (seeds ``seed``, ``seed+1``, ...) into
    ``opts.out_dir/drill-<stamp>-<seed>/<scenario>/run-<k>``, each with the locust ``load`` when given (its
    topology then also runs what the load's users need). Raises DrillError for an unknown scenario."""
    names = list(dict.fromkeys(names))   # a name given twice runs once (its runs would share run-1, run-2, ...)
    unknown = [n for n in names if registry.get(n) is None]
    if unknown:
        known = ", ".join(s.name for s in registry.all_scenarios())
        raise DrillError(f"unknown scenario(s) {', '.join(unknown)}; known: {known} (see `tradedrill scenarios`)")
    _refuse_busy_subnet(opts)   # before the first progress line (run_once checks again before each run)
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1, 2**31)
    root = Path(opts.out_dir) / f"drill-{time.strftime('%Y%m%d-%H%M%S')}-{seed}"
    result = DrillResult(root, seed)
    for name in names:
        scenario = with_load_services(registry.get(name), load)
        for k in range(opts.repeat):
            run_seed = seed + k
            opts.say(f"{name} [{k + 1}/{opts.repeat}] seed {run_seed}")
            try:
                result.runs.append(run_once(scenario, root / name / f"run-{k + 1}", run_seed, opts, repeat=k + 1,
                                            load=load))
            except DrillInterrupted as exc:
                exc.root = root   # the folder of this drill's runs: what `tradedrill check` judges
                if exc.finished and opts.on_run_done:
                    opts.on_run_done()   # the run is complete: the progress counts it (it said 0/2 beside it)
                raise
            if opts.on_run_done:
                opts.on_run_done()
    return result
