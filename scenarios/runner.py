"""The drill runner: brings up the stack a scenario needs, drives its workload, injects its fault schedule, records
everything into a run directory, and hands the run directories to the checkers and the report.

One repetition of one scenario, in order:
1. the run directory (``scenarios.history.RunDir``) with the seed, the scenario and the configuration;
2. the local topology (Redis primary, two replicas, three Sentinels: ``tradedrill.local.LocalStack``), two MT5
   simulators (primary and backup broker) and two trade engines (A and B, active-passive) under the project's
   supervisor (ENG-3 policy);
3. the workload: open-loop clients that put signals on RTSS and wait for each result on RTRS (history op
   ``trade``), and optionally plain writes through the Sentinel-aware client (``redis_write``);
4. the fault schedule of the scenario, every step a fault of ``faults/`` written to the run's fault log;
5. after the load: a settle period in which every acknowledged signal gets its outcome, then the ground truth is
   dumped (both brokers' ledgers, RTRS, RTS) and everything is stopped by its own handle.

A drill is as reproducible as a chaos run can be: the seed picks the signal sequence (ids, sides, volumes,
symbols) and every random choice of the faults; the timing of a real system is not replayable and is measured.
"""
from __future__ import annotations

import contextlib
import json
import random
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import redis

from faults.core import Fault, FaultLog
from faults.process import Kill, Pause
from reference.supervisor import POLICIES, Supervisor
from scenarios import registry
from scenarios.history import OK, FAIL, UNKNOWN, History, RunDir, SignalLog
from tradedrill.local import LocalStack
from tradedrill.process import ProcessNode
from tradedrill.topology import Topology
from tradedrill.waiting import DeadlineExceeded, wait_until

ENGINE_GROUP = "engine"
BROKER_PORT = 18812
ACCOUNT = 5001  # the simulator's default hedging account


class DrillError(RuntimeError):
    """A drill could not run (not: a drill found a problem; that is a verdict, not an error)."""


@dataclass
class DrillOptions:
    subnet: str = "127.0.0"
    seed: int | None = None
    repeat: int = 3
    out_dir: Path = Path("out/drills")
    # scale the workload's duration/settle (tests use short drills; the targets are never scaled)
    duration_s: float | None = None
    settle_s: float | None = None
    rate_per_s: float | None = None
    fault_at_s: float | None = None
    engine_overrides: dict = field(default_factory=dict)
    # the engine's command line before ``run --config ... --instance ...``; tests point it at deliberately broken
    # variants of the engine, so production code carries no switch for them
    engine_command: tuple[str, ...] | None = None
    engine_env: dict = field(default_factory=dict)
    progress: Callable[[str], None] | None = None
    on_run_done: Callable[[], None] | None = None


# -- the environment of one run (Locust's Environment: one object that wires everything) -------------------------
class DrillEnvironment:
    def __init__(self, scenario: registry.Scenario, run: RunDir, seed: int, opts: DrillOptions):
        self.scenario = scenario
        self.run = run
        self.seed = seed
        self.opts = opts
        self.rng = random.Random(seed)
        self.subnet = opts.subnet
        self.stack: LocalStack | None = None
        self.brokers: dict[str, ProcessNode] = {}
        self.engines: dict[str, ProcessNode] = {}
        self.supervisor: Supervisor | None = None
        self.fault_log = FaultLog(run.path / "faults.jsonl")
        self.history = History(run.path / "history.jsonl")
        self.signal_log = SignalLog(run.path / "signals.jsonl")
        self._stack_dir = run.path / "stack"
        self.config: dict[str, Any] = {}

    # -- bring-up -------------------------------------------------------------------------------------------------
    def up(self) -> None:
        topo = Topology.default(subnet=self.subnet, services=("redis",))
        self.stack = LocalStack(topo, self._stack_dir).up()
        host = 20
        for name in ("mt5-primary", "mt5-backup"):
            from reference.mt5.simulator.node import simulator_node

            node = simulator_node(
                name, f"{self.subnet}.{host}", BROKER_PORT, self.run.path / "brokers" / name, seed=self.seed,
                log_path=self.run.path / "nodes" / f"{name}.log", server_name=name,
            )
            host += 1
            self.brokers[name] = node
            node.start()
        for node in self.brokers.values():
            node.wait_ready()
        engine_cfg = self.engine_config()
        cfg_path = self.run.path / "engine.json"
        cfg_path.write_text(json.dumps(engine_cfg, indent=2))
        self.supervisor = Supervisor(events_path=self.run.path / "supervisor.jsonl")
        for instance in ("A", "B"):
            name = f"engine-{instance.lower()}"
            node = ProcessNode(
                name=name, role="engine", address="127.0.0.1", port=0,
                argv=[*(self.opts.engine_command or (_python(), "-m", "reference.engine")), "run",
                      "--config", str(cfg_path), "--instance", instance,
                      "--state-dir", str(self.run.path / "engines" / name)],
                log_path=self.run.path / "nodes" / f"{name}.log", ready=lambda: True,
                env=dict(self.opts.engine_env) or None,
            )
            self.engines[name] = node
            self.supervisor.add(node, POLICIES["engine"])
            if instance == "A":  # A is the first active: let it take the lease before B starts
                wait_until(lambda: self.lease_holder() == "A", 20, "engine A to take the lease")
        self.config = {
            "topology": topo.to_dict(), "engine": engine_cfg,
            "brokers": {n: f"{b.address}:{b.port}" for n, b in self.brokers.items()},
            "workload": self.workload().__dict__ if hasattr(self.workload(), "__dict__") else {},
        }
        (self.run.path / "config.json").write_text(json.dumps(self.config, indent=2, default=str))

    def engine_config(self) -> dict:
        brokers = [
            {"name": name, "factory": "reference.mt5.port:open_terminal",
             "params": {"kind": "simulator", "host": node.address, "port": node.port}, "login": ACCOUNT}
            for name, node in self.brokers.items()
        ]
        cfg = {
            "group": ENGINE_GROUP,
            "sentinels": [list(a) for a in self.stack.sentinel_addresses()],
            "master_name": self.stack.master_name,
            "brokers": brokers,
        }
        cfg.update(self.opts.engine_overrides)
        return cfg

    def workload(self) -> registry.Workload:
        w = self.scenario.workload
        changes = {}
        if self.opts.duration_s is not None:
            changes["duration_s"] = self.opts.duration_s
        if self.opts.settle_s is not None:
            changes["settle_s"] = self.opts.settle_s
        if self.opts.rate_per_s is not None:
            changes["rate_per_s"] = self.opts.rate_per_s
        return replace(w, **changes)

    # -- queries of the live stack --------------------------------------------------------------------------------
    def redis(self, timeout: float = 0.5) -> redis.Redis:
        return self.stack.sentinel(timeout).master_for(
            self.stack.master_name, socket_timeout=timeout, socket_connect_timeout=timeout)

    def lease_holder(self) -> str | None:
        try:
            r = self.redis()
            value = r.get(f"{ENGINE_GROUP}:lease") or r.get(f"{ENGINE_GROUP}:lease:holder")
        except redis.RedisError:
            return None
        if not value:
            return None
        return str(value).split(":")[0].split("|")[0]

    def active_engine(self) -> ProcessNode:
        holder = self.lease_holder()
        for name, node in self.engines.items():
            if holder and name.endswith(holder.lower()):
                return node
        return self.engines["engine-a"]

    def redis_primary_node(self) -> ProcessNode:
        primary = self.stack.redis_primary()
        for node in self.stack.nodes.values():
            if (node.address, node.port) == primary:
                return node
        raise DrillError(f"no node is the Redis primary {primary}")

    # -- teardown -------------------------------------------------------------------------------------------------
    def dump_ground_truth(self) -> None:
        from reference.mt5.simclient import SimulatorAdmin

        with open(self.run.path / "ledger.jsonl", "w") as out:
            for name, node in self.brokers.items():
                if not node.is_alive():
                    node.start().wait_ready()
                admin = SimulatorAdmin(node.address, node.port)
                try:
                    for deal in admin.ledger():
                        row = dict(deal._asdict() if hasattr(deal, "_asdict") else deal)
                        row["broker"] = name
                        out.write(json.dumps(row, default=str) + "\n")
                finally:
                    close = getattr(admin, "close", None)
                    if close:
                        close()
        r = self.redis(timeout=2.0)
        with open(self.run.path / "rtrs.jsonl", "w") as out:
            for entry_id, fields in r.xrange("RTRS"):
                out.write(json.dumps({"entry": entry_id, **fields}) + "\n")
        orders = {}
        for key in r.scan_iter(match=f"RTS:{ENGINE_GROUP}:signal:*", count=500):
            orders[key.rsplit(":", 1)[-1]] = r.hgetall(key)
        positions = r.hgetall(f"RTS:{ENGINE_GROUP}:positions")
        (self.run.path / "rts.json").write_text(json.dumps({"orders": orders, "positions_raw": positions}, indent=2))

    def down(self) -> None:
        errors = []
        if self.supervisor:
            try:
                self.supervisor.stop()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                errors.append(repr(exc))
        for node in self.brokers.values():
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
        if self.stack:
            self.stack.down()
            logs = self._stack_dir / "logs"
            if logs.is_dir():
                for log in logs.iterdir():
                    shutil.copy(log, self.run.path / "nodes" / log.name)
        self.history.close()
        self.signal_log.close()
        if errors:
            raise DrillError("teardown: " + "; ".join(errors))


def _python() -> str:
    import sys

    return sys.executable


# -- workload --------------------------------------------------------------------------------------------------
class TradeClients:
    """Open-loop signal producers plus one RTRS reader that completes their ``trade`` operations."""

    def __init__(self, env: DrillEnvironment, workload: registry.Workload, stop: threading.Event):
        self.env = env
        self.w = workload
        self.stop = stop
        self.pending: dict[str, tuple[int, str, float]] = {}  # signal id -> (op id, process, deadline)
        # acknowledged signals with no result on RTRS yet; a client gives up after timeout_s, the settle does not
        self.awaiting: set[str] = set()
        self.lock = threading.Lock()
        self.counter = 0
        self.threads: list[threading.Thread] = []
        self.rng = random.Random(env.seed)
        self.run_tag = f"{env.scenario.name[:6]}{env.seed % 100000:05d}"

    def start(self) -> None:
        for i in range(self.w.concurrency):
            t = threading.Thread(target=self._producer, args=(f"client-{i}", i), daemon=True)
            self.threads.append(t)
        self.threads.append(threading.Thread(target=self._results, daemon=True))
        if "redis_write" in self.w.params.get("also", ()):
            self.threads.append(threading.Thread(target=self._writer, daemon=True))
        for t in self.threads:
            t.start()

    def _next_signal(self) -> dict:
        with self.lock:
            self.counter += 1
            n = self.counter
            side = self.rng.choice(("buy", "sell"))
            symbol = self.rng.choice(self.w.symbols)
        return {"signal_id": f"{self.run_tag}-{n:05d}", "account": str(ACCOUNT), "symbol": symbol, "side": side,
                "volume": f"{self.w.volume}", "order_type": "market", "source": "drill",
                "created_ms": str(int(time.time() * 1000))}

    def _producer(self, process: str, index: int) -> None:
        interval = self.w.concurrency / self.w.rate_per_s
        next_at = time.monotonic() + index * interval / self.w.concurrency
        r = None
        while not self.stop.is_set():
            if self.stop.wait(max(0.0, next_at - time.monotonic())):
                break
            next_at += interval
            sig = self._next_signal()
            sid = sig["signal_id"]
            op = self.env.history.invoke(process, "trade", sid, {k: sig[k] for k in ("symbol", "side", "volume")})
            try:
                if r is None:
                    r = self.env.redis(timeout=0.5)
                r.xadd("RTSS", sig)
            except redis.TimeoutError as exc:
                r = None
                self.env.signal_log.record(sid, UNKNOWN, symbol=sig["symbol"], side=sig["side"])
                self.env.history.complete(op, process, "trade", sid, UNKNOWN, error=f"submit: {exc!r}")
                continue
            except (redis.ConnectionError, redis.RedisError) as exc:
                r = None
                # a refused connection never reached Redis; anything else may have
                outcome = FAIL if isinstance(exc, redis.ConnectionError) and "refused" in str(exc).lower() else UNKNOWN
                self.env.signal_log.record(sid, outcome, symbol=sig["symbol"], side=sig["side"])
                self.env.history.complete(op, process, "trade", sid, outcome, error=f"submit: {exc!r}")
                continue
            self.env.signal_log.record(sid, OK, symbol=sig["symbol"], side=sig["side"], volume=self.w.volume)
            with self.lock:
                self.pending[sid] = (op, process, time.monotonic() + self.w.timeout_s)
                self.awaiting.add(sid)

    def _results(self) -> None:
        last = "0-0"
        r = None
        while not (self.stop.is_set() and not self.pending and not self.awaiting):
            self._expire()
            try:
                if r is None:
                    r = self.env.redis(timeout=1.0)
                batches = r.xread({"RTRS": last}, count=500, block=200)
            except redis.RedisError:
                r = None
                if self.stop.wait(0.1) and not self.pending and not self.awaiting:
                    break
                continue
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._complete(fields)
            if self.stop.is_set() and time.monotonic() > getattr(self, "_drain_deadline", float("inf")):
                break

    def _complete(self, fields: dict) -> None:
        sid = fields.get("signal_id") or fields.get("signal")
        with self.lock:
            self.awaiting.discard(sid)
            item = self.pending.pop(sid, None)
        if item is None:
            return
        op, process, _deadline = item
        status = (fields.get("status") or "").lower()
        outcome = OK if status in ("executed", "filled", "done", "partial") else FAIL
        self.env.history.complete(op, process, "trade", sid, outcome, value=fields,
                                  error=None if outcome == OK else fields.get("reason") or status)

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            late = [(sid, v) for sid, v in self.pending.items() if v[2] <= now]
            for sid, _ in late:
                del self.pending[sid]
        for sid, (op, process, _d) in late:
            self.env.history.complete(op, process, "trade", sid, UNKNOWN, error="no result on RTRS within timeout")

    def _writer(self) -> None:
        """One write every 50 ms through the Sentinel-aware client (op ``redis_write``)."""
        n = 0
        r = None
        while not self.stop.wait(0.05):
            n += 1
            key = f"drill:w:{n}"
            op = self.env.history.invoke("writer", "redis_write", key, n)
            try:
                if r is None:
                    r = self.env.redis(timeout=0.3)
                r.set(key, n)
                self.env.history.complete(op, "writer", "redis_write", key, OK)
            except redis.TimeoutError as exc:
                r = None
                self.env.history.complete(op, "writer", "redis_write", key, UNKNOWN, error=repr(exc))
            except redis.RedisError as exc:
                r = None
                outcome = FAIL if "refused" in str(exc).lower() or "master" in str(exc).lower() else UNKNOWN
                self.env.history.complete(op, "writer", "redis_write", key, outcome, error=repr(exc))

    def finish(self, drain_s: float) -> None:
        self._drain_deadline = time.monotonic() + drain_s
        self.stop.set()
        for t in self.threads:
            t.join(timeout=drain_s + 5)
        self._expire_all()

    def _expire_all(self) -> None:
        with self.lock:
            left = list(self.pending.items())
            self.pending.clear()
        for sid, (op, process, _d) in left:
            self.env.history.complete(op, process, "trade", sid, UNKNOWN, error="no result on RTRS before the end")


# -- the fault schedule -----------------------------------------------------------------------------------------
class BrokerBehaviour(Fault):
    """Switch a broker simulator's behaviour through its admin interface (e.g. lose the reply after executing);
    heal restores the behaviour it had."""

    name = "broker-behaviour"

    def __init__(self, node: ProcessNode, changes: dict, *, name: str | None = None, **kw):
        if name:
            self.name = name
        super().__init__(**kw)
        self.node = node
        self.changes = changes
        self.before: dict = {}

    def _admin(self):
        from reference.mt5.simclient import SimulatorAdmin

        return SimulatorAdmin(self.node.address, self.node.port)

    def _inject(self) -> None:
        admin = self._admin()
        current = admin.behaviour()
        self.before = {k: current.get(k) for k in self.changes}
        admin.set_behaviour(**self.changes)

    def _heal(self) -> None:
        self._admin().set_behaviour(**self.before)

    def describe(self) -> str:
        return f"{self.node.name}: {self.changes}"

    def details(self) -> dict:
        return {"node": self.node.name, "changes": self.changes, "before": self.before}


def make_fault(step: registry.FaultStep, env: DrillEnvironment) -> Fault:
    reqs = env.scenario.requirement_ids
    if step.target.startswith("engine"):
        node = env.active_engine()
    elif step.target == "redis-primary":
        node = env.redis_primary_node()
    elif step.target in env.brokers:
        node = env.brokers[step.target]
    else:
        node = env.stack.node(step.target)
    if step.fault == "process-kill":
        # a supervised engine is restarted by the supervisor, not by the heal
        return Kill(node, restart_on_heal=not step.target.startswith("engine"), log=env.fault_log, requirements=reqs)
    if step.fault == "process-pause":
        return Pause(node, log=env.fault_log, requirements=reqs)
    if step.fault == "broker-lose-reply":
        return BrokerBehaviour(node, {"lose_reply_rate": step.params.get("rate", 0.3)}, name="broker-lose-reply",
                               log=env.fault_log, requirements=reqs)
    if step.fault == "broker-behaviour":
        return BrokerBehaviour(node, dict(step.params), log=env.fault_log, requirements=reqs)
    raise DrillError(f"scenario {env.scenario.name}: unknown fault {step.fault!r}")


def run_schedule(env: DrillEnvironment, started: float, stop: threading.Event) -> list[Fault]:
    """Inject and heal the scenario's faults at their times; return every fault made (healed on the way out)."""
    made: list[Fault] = []
    steps = sorted(env.scenario.faults, key=lambda s: s.at_s)
    try:
        for step in steps:
            at = env.opts.fault_at_s if env.opts.fault_at_s is not None else step.at_s
            if stop.wait(max(0.0, started + at - time.monotonic())):
                break
            fault = make_fault(step, env)
            made.append(fault)
            fault.inject()
            _progress(env.opts, f"  injected {fault.describe()}")
            if step.heal_after_s is not None:
                stop.wait(step.heal_after_s)
                fault.heal()
            elif isinstance(fault, Kill) and not fault.restart_on_heal:
                node = fault.node
                with contextlib.suppress(DeadlineExceeded):
                    wait_until(lambda: node.is_alive(), 15, f"the supervisor to restart {node.name}")
                fault.heal()
            else:  # nobody restarts this node but the heal: it stays down until the load ends
                stop.wait()
                fault.heal()
    finally:
        for fault in made:
            fault.heal()
    return made


# -- one run and many ------------------------------------------------------------------------------------------
def run_once(scenario: registry.Scenario, run_path: Path, seed: int, opts: DrillOptions, repeat: int = 0) -> RunDir:
    run = RunDir.create(run_path, seed=seed, scenario={**scenario.to_dict(), "repeat": repeat}, config={})
    (run.path / "nodes").mkdir(exist_ok=True)
    env = DrillEnvironment(scenario, run, seed, opts)
    try:
        env.up()
        workload = env.workload()
        stop = threading.Event()
        clients = TradeClients(env, workload, stop)
        started = time.monotonic()
        clients.start()
        schedule_stop = threading.Event()
        schedule = threading.Thread(target=run_schedule, args=(env, started, schedule_stop), daemon=True)
        schedule.start()
        stop.wait(workload.duration_s)
        _progress(opts, f"  load done ({clients.counter} signals); settling up to {workload.settle_s:.0f} s")
        schedule_stop.set()
        schedule.join(timeout=60)
        clients.finish(drain_s=workload.settle_s)
        env.dump_ground_truth()
    finally:
        env.down()
    return run


def run_drills(names: Sequence[str], opts: DrillOptions) -> dict:
    """Run every named scenario ``opts.repeat`` times; judge every run; build the report.
    Returns {"report": path, "runs": [run dirs], "checks": [...], "passed": bool}."""
    from scenarios.checkers import check_run

    unknown = [n for n in names if registry.get(n) is None]
    if unknown:
        known = ", ".join(s.name for s in registry.all_scenarios())
        raise DrillError(f"unknown scenario(s) {', '.join(unknown)}; known: {known} (see `tradedrill scenarios`)")
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1, 2**31)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(opts.out_dir) / f"drill-{stamp}-{seed}"
    runs: list[RunDir] = []
    for name in names:
        scenario = registry.get(name)
        for k in range(opts.repeat):
            run_seed = seed + k
            _progress(opts, f"{name} [{k + 1}/{opts.repeat}] seed {run_seed}")
            runs.append(run_once(scenario, root / name / f"run-{k + 1}", run_seed, opts, repeat=k + 1))
            if opts.on_run_done:
                opts.on_run_done()
    checks = [check_run(run) for run in runs]
    report = _build_report(runs, root)
    passed = all(c.valid is True for c in checks)
    return {"root": root, "report": report, "runs": runs, "checks": checks, "passed": passed, "seed": seed}


def _build_report(runs: list[RunDir], root: Path) -> Path | None:
    try:
        from reports import build_report
    except ImportError:
        return None
    return build_report([r.path for r in runs], root)


def _progress(opts: DrillOptions, message: str) -> None:
    if opts.progress:
        opts.progress(message)
