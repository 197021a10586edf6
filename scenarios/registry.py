"""The scenario library: what each drill does, which requirements it measures, and how it is judged.

A :class:`Scenario` is plain data: the runner (``scenarios.runner``) reads the workload and the fault schedule and
drives the stack; the checkers named in ``checkers`` judge the run afterwards. ``Scenario.to_dict()`` is what a
run directory's ``scenario.json`` holds (plus ``repeat``), so a saved run is judged by the definition it ran with.

Workload operations (the history's ``f``), so checkers and runner agree:
- ``trade``: submit one signal and wait for its result on RTRS; ok = executed, fail = rejected with a reason,
  unknown = no result within ``timeout_s``. The signal id is the history key and is also written to signals.jsonl.
- ``submit``: submit one signal to the backend/RTSS only (ok = acknowledged).
- ``redis_write``: one write through the Sentinel-aware client (ok = acknowledged by the primary).
- ``webhook``: post one TradingView alert through the backends' proxy (issue 15; ok = HTTP 202 accepted or 200
  duplicate; retried with the same alert id on 409/5xx/no answer until ``timeout_s``, then unknown).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scenarios.conformance import REQUIREMENT_IDS as CONFORMANCE_IDS


@dataclass(frozen=True)
class Workload:
    """Open-loop client load: ``rate_per_s`` operations ``op`` per second for ``duration_s`` across
    ``concurrency`` client processes, each with a ``timeout_s`` (a timeout is recorded unknown). Open loop keeps
    invoking during an outage, so the first success after a fault is seen when it happens."""

    op: str = "trade"
    rate_per_s: float = 20.0
    duration_s: float = 30.0
    concurrency: int = 4
    timeout_s: float = 2.0
    symbols: tuple[str, ...] = ("EURUSD",)
    volume: float = 0.01
    settle_s: float = 10.0  # after the load stops: let retries finish before the ledger/RTRS/RTS are dumped
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FaultStep:
    """Inject ``fault`` (a name of ``scenarios.packages.FAULTS``) on ``target`` (a role such as ``active-engine`` or
    ``redis-primary``, resolved at injection time, or a node name) at ``at_s`` seconds after the load starts; heal
    it ``heal_after_s`` seconds later (None: the package's heal mode, e.g. a kill the supervisor restarts).

    ``phase_s``: the injection lands at a seeded uniform offset in ``[0, phase_s)`` after ``at_s`` (replayed by the
    run's seed). A freeze or crash of an engine is uncorrelated with its 1 s heartbeat in the field, but a drill
    whose load and engines start at fixed times would otherwise hit the same heartbeat phase every run and measure
    one point of the RTO distribution instead of the distribution (issue 11)."""

    fault: str
    target: str
    at_s: float
    heal_after_s: float | None = None
    params: dict = field(default_factory=dict)
    phase_s: float = 0.0


@dataclass(frozen=True)
class CheckerSpec:
    """A checker of ``scenarios.checkers.CHECKERS``, the requirement IDs it measures (each needs a target in
    targets.toml for every metric the checker judges), and its parameters (rto: ``f`` operation kind, ``fault``)."""

    checker: str
    requirement_ids: tuple[str, ...]
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    requirement_ids: tuple[str, ...]
    description: str
    workload: Workload
    faults: tuple[FaultStep, ...]
    checkers: tuple[CheckerSpec, ...]
    # services the drill's topology runs beside DRILL_SERVICES (issue 13: "postgres", "clickhouse"); their nodes
    # become fault targets and every node's address follows the topology's one allocator
    services: tuple[str, ...] = ()
    # engine settings (reference.engine.config.EngineConfig keys) this scenario runs with instead of the documents'
    # values, when a requirement cannot show within a drill otherwise (ORD-2's 60 s retry, CH-3's 12 h backups).
    # Every one is written to the run folder (scenarios.overrides) and the report marks the verdicts it bears on
    # "overridden" with both values; drill options' engine_overrides win over these
    engine_overrides: dict = field(default_factory=dict)
    # issue 20: symbol settings of the drill's brokers over the simulator's defaults, e.g. a wider price step so
    # stops and pending orders trigger within a drill: {"EURUSD": {"sigma_points": 40}} (SymbolSpec fields)
    broker_symbols: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["requirement_ids"] = list(self.requirement_ids)
        d["services"] = list(self.services)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        return cls(name=d["name"], requirement_ids=tuple(d.get("requirement_ids", ())),
                   description=d.get("description", ""), workload=Workload(**_tuples(d.get("workload", {}))),
                   faults=tuple(FaultStep(**f) for f in d.get("faults", ())),
                   checkers=tuple(CheckerSpec(c["checker"], tuple(c.get("requirement_ids", ())), c.get("params", {}))
                                  for c in d.get("checkers", ())),
                   services=tuple(d.get("services", ())), engine_overrides=dict(d.get("engine_overrides") or {}),
                   broker_symbols=dict(d.get("broker_symbols") or {}))


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


SCENARIOS: dict[str, Scenario] = {}
# the services a drill's topology runs (tradedrill.topology): scenario targets resolve to their nodes
DRILL_SERVICES = ("redis", "mt5", "engine")
WORKLOAD_OPS = ("trade", "webhook")  # what scenarios.workload drives as the main load (webhook: issue 15)
EXTRA_OPS = ("redis_write", "history", "panel")  # Workload.params["also"]: extra clients (history, panel: issue 15)


class ScenarioError(ValueError):
    """A scenario is malformed; the message names the scenario and the field to fix."""


def drill_services(scenario: "Scenario | None" = None) -> tuple[str, ...]:
    """The services a scenario's drill topology runs: DRILL_SERVICES and the scenario's own ``services``."""
    return tuple(dict.fromkeys((*DRILL_SERVICES, *(scenario.services if scenario is not None else ()))))


def drill_node_kinds(scenario: "Scenario | None" = None) -> dict[str, str]:
    """Node name -> kind of the topology every drill runs on (with the scenario's own services, when given)."""
    from tradedrill.topology import Topology

    return {n.name: n.kind for n in Topology.default(services=drill_services(scenario)).nodes}


PENDING_ORDER_TYPES = ("limit", "stop")   # the signal order types scenarios.workload can place (issue 20)


def price_param_problems(params: dict) -> list[str]:
    """What is wrong with ``params["stops"]`` ({sl_points, tp_points}: SL/TP that many points from the live price;
    0 = none) and ``params["pending"]`` ({order_type: limit|stop, points: > 0}) of a workload (issue 20)."""
    problems = []

    def points(where: str, value, low: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= 100_000:
            problems.append(f"{where}: {value!r} must be a number of points in [{low:g}, 100000]")

    stops = params.get("stops")
    if stops is not None:
        if not isinstance(stops, dict) or not stops or set(stops) - {"sl_points", "tp_points"}:
            problems.append(f"stops: {stops!r} must be {{sl_points, tp_points}} (points from the live price)")
        else:
            for key, value in stops.items():
                points(f"stops.{key}", value, 0)
    pending = params.get("pending")
    if pending is not None:
        if not isinstance(pending, dict) or set(pending) != {"order_type", "points"}:
            problems.append(f"pending: {pending!r} must be {{order_type, points}}")
        else:
            if pending["order_type"] not in PENDING_ORDER_TYPES:
                problems.append(f"pending.order_type: {pending['order_type']!r} is not one of "
                                f"{', '.join(PENDING_ORDER_TYPES)}")
            points("pending.points", pending["points"], 1)
    return problems


def broker_symbol_problems(symbols: dict) -> list[str]:
    """What is wrong with a scenario's ``broker_symbols`` ({symbol: {SymbolSpec field: value}}), checked by the
    simulator's own SymbolSpec."""
    from dataclasses import asdict as _asdict

    from reference.mt5.simulator.config import DEFAULT_SYMBOLS, SettingError, SymbolSpec

    known = {s.name: s for s in DEFAULT_SYMBOLS}
    problems = []
    if not isinstance(symbols, dict):
        return [f"{symbols!r} must be a table of symbol -> settings"]
    for name, changes in symbols.items():
        if name not in known:
            problems.append(f"{name!r} is not a symbol of the simulator ({', '.join(known)})")
            continue
        if not isinstance(changes, dict) or "name" in changes:
            problems.append(f"{name}: {changes!r} must be a table of symbol settings (not its name)")
            continue
        try:
            SymbolSpec(**dict(_asdict(known[name]), **changes))
        except (TypeError, SettingError) as exc:
            problems.append(f"{name}: {exc}")
    return problems


def validate(scenario: Scenario) -> None:
    """Raise :class:`ScenarioError` naming the field when the scenario names an unknown fault, a target that
    resolves to no role or node the fault accepts, an unknown checker or parameter, or claims a requirement and
    metric without a target in ``targets.toml`` (chaostoolkit's ``ensure_activity_is_valid``)."""
    from scenarios import targets as targets_mod
    from scenarios.checkers import CHECKERS
    from scenarios import setclients
    from scenarios.packages import check_step

    where = f"scenario {scenario.name!r}"
    problems: list[str] = []
    if not scenario.name or not scenario.name.replace("-", "").isalnum():
        problems.append(f"name: {scenario.name!r} must be letters, digits and dashes")
    targets = targets_mod.load()
    for rid in scenario.requirement_ids:
        if rid not in targets:
            problems.append(f"requirement_ids: {rid!r} is not a requirement of targets.toml")
    w = scenario.workload
    if w.op not in WORKLOAD_OPS:
        problems.append(f"workload.op: {w.op!r} is not an operation the workload drives; known: "
                        f"{', '.join(WORKLOAD_OPS)}")
    also = tuple(w.params.get("also", ()))
    if set(also) - set(EXTRA_OPS) or set(w.params) - {"also", "writers", "copies", "stops", "pending"}:
        problems.append(f"workload.params: only also=[{', '.join(EXTRA_OPS)}], writers=[{{name, side, wait}}], "
                        f"copies=[low, high] (webhook), stops={{sl_points, tp_points}} and pending={{order_type, "
                        f"points}} are understood, not {dict(w.params)}")
    problems += [f"workload.params.{p}" for p in price_param_problems(w.params)]
    problems += [f"broker_symbols: {p}" for p in broker_symbol_problems(scenario.broker_symbols)]
    try:
        kinds = drill_node_kinds(scenario)
    except ValueError as exc:   # TopologyError: a service the topology does not know
        problems.append(f"services: {exc}")
        kinds = drill_node_kinds()
    try:
        specs = setclients.writer_specs(w.params)
        if specs:
            also = (*also, "redis_write")
        replicas = sum(kind == "redis" for kind in kinds.values()) - 1
        for i, spec in enumerate(specs):
            if spec.wait > replicas:
                problems.append(f"workload.params.writers[{i}].wait: WAIT {spec.wait} can never be confirmed by "
                                f"the topology's {replicas} replica(s)")
    except ValueError as exc:
        problems.append(f"workload.{exc}")
    for i, step in enumerate(scenario.faults):
        for problem in check_step(step.fault, step.target, dict(step.params), kinds):
            problems.append(f"faults[{i}]: {problem}")
        if step.at_s < 0 or (step.heal_after_s is not None and step.heal_after_s < 0):
            problems.append(f"faults[{i}]: at_s and heal_after_s must be >= 0 seconds")
        if not isinstance(step.phase_s, (int, float)) or isinstance(step.phase_s, bool) or step.phase_s < 0:
            problems.append(f"faults[{i}].phase_s: must be a number of seconds >= 0, not {step.phase_s!r}")
        elif step.at_s + step.phase_s >= w.duration_s:
            problems.append(f"faults[{i}].phase_s: at_s + phase_s ({step.at_s + step.phase_s:g} s) is not inside the "
                            f"{w.duration_s:g} s of load")
        if step.at_s >= w.duration_s:
            problems.append(f"faults[{i}].at_s: {step.at_s:g} s is not inside the {w.duration_s:g} s of load")
    if not scenario.checkers:
        problems.append("checkers: a scenario needs at least one checker, or nothing is judged")
    from scenarios import overrides as overrides_mod

    for key in scenario.engine_overrides:
        if not overrides_mod.known(key):
            problems.append(f"engine_overrides: {key!r} is not a setting of the engine (reference.engine.config."
                            f"EngineConfig)")
    ops = {w.op, *also}
    for i, spec in enumerate(scenario.checkers):
        if not spec.requirement_ids:
            problems.append(f"checkers[{i}].requirement_ids: name the requirement(s) it measures")
        stray = [r for r in spec.requirement_ids if r not in scenario.requirement_ids]
        if stray:
            problems.append(f"checkers[{i}].requirement_ids: {', '.join(stray)} not in the scenario's "
                            f"requirement_ids {list(scenario.requirement_ids)}")
        if spec.checker == "rto":
            if not scenario.faults:
                problems.append(f"checkers[{i}]: rto needs a fault to measure recovery from")
            f = spec.params.get("f")
            if f is not None and f not in ops:
                problems.append(f"checkers[{i}].params.f: {f!r} is not an operation of the workload "
                                f"({', '.join(sorted(ops))})")
    for i, spec in enumerate(scenario.checkers):
        checker = CHECKERS.get(spec.checker)
        if checker is None:
            problems.append(f"checkers[{i}].checker: {spec.checker!r} is not a known checker; known: "
                            f"{', '.join(CHECKERS)}")
            continue
        extra = sorted(set(spec.params) - set(checker.params))
        if extra:
            problems.append(f"checkers[{i}].params: {spec.checker} takes no {', '.join(map(repr, extra))}")
        fault = spec.params.get("fault")
        if fault is not None and fault not in {s.fault for s in scenario.faults}:
            problems.append(f"checkers[{i}].params.fault: {fault!r} is not a fault this scenario injects")
        for rid in spec.requirement_ids:
            for metric in checker.metrics:
                if targets.target(rid, metric) is None:
                    problems.append(f"checkers[{i}] ({spec.checker}): requirement {rid} has no {metric} target in "
                                    f"targets.toml; add one there or claim another requirement")
    if w.rate_per_s <= 0 or w.duration_s <= 0 or w.concurrency < 1 or w.timeout_s <= 0 or w.settle_s < 0:
        problems.append("workload: rate_per_s, duration_s, timeout_s > 0, concurrency >= 1, settle_s >= 0")
    if problems:
        raise ScenarioError(f"{where}: " + "; ".join(problems))


# the checkers every drill runs whatever its scenario names (issue 19): the documents' settings read from the running
# nodes (scenarios.conformance; the runner takes the reads into conformance.json). check_run adds them to a run's own
EVERY_RUN_CHECKERS: tuple[CheckerSpec, ...] = (CheckerSpec("conformance", CONFORMANCE_IDS),)
EVERY_RUN = "every drill"   # the claimant's name of an every-run checker (coverage gate, report)


def with_every_run(specs) -> list:
    """``specs`` (CheckerSpec or dicts) and every EVERY_RUN_CHECKERS entry they do not name already."""
    named = {(s.get("checker") or s.get("name")) if isinstance(s, dict) else s.checker for s in specs}
    return [*specs, *(s for s in EVERY_RUN_CHECKERS if s.checker not in named)]


def claims() -> dict[str, list[str]]:
    """Requirement ID -> what claims it: ``"<scenario>: <checker>"`` for a scenario's checker, ``"every drill:
    <checker>"`` for EVERY_RUN_CHECKERS (the coverage gate: an ID nothing claims needs ``not_measurable``)."""
    out: dict[str, list[str]] = {}
    for s in SCENARIOS.values():
        for c in s.checkers:
            for rid in c.requirement_ids:
                out.setdefault(rid, []).append(f"{s.name}: {c.checker}")
    for c in EVERY_RUN_CHECKERS:
        for rid in c.requirement_ids:
            out.setdefault(rid, []).append(f"{EVERY_RUN}: {c.checker}")
    return {rid: list(dict.fromkeys(v)) for rid, v in out.items()}


def register(scenario: Scenario) -> Scenario:
    """Validate and add a scenario; raises :class:`ScenarioError` (naming the field) on any problem."""
    if scenario.name in SCENARIOS:
        raise ScenarioError(f"scenario {scenario.name!r} is registered twice")
    validate(scenario)
    SCENARIOS[scenario.name] = scenario
    return scenario


def get(name: str) -> Scenario | None:
    return SCENARIOS.get(name)


def all_scenarios() -> list[Scenario]:
    return list(SCENARIOS.values())


def _consistency(requirements: tuple[str, ...]) -> tuple[CheckerSpec, ...]:
    return (CheckerSpec("duplicates", requirements), CheckerSpec("lost_signals", requirements),
            CheckerSpec("state", requirements))


def _fencing() -> tuple[CheckerSpec, ...]:
    """The guarantees every scenario with an engine is judged by (issue 18): one active sender at a time (ENG-1),
    exactly one RTRS result per acknowledged signal (ENG-5, MT5-HA 3.6), no write under a fenced-out token."""
    return (CheckerSpec("one_active", ("ENG-1",)), CheckerSpec("results_delivered", ("ENG-5",)),
            CheckerSpec("stale_writes", ("ENG-1", "ENG-5")))


register(Scenario(
    name="engine-kill",
    requirement_ids=("ENG-1", "ENG-2", "ENG-3", "ENG-5", "BRK-1", "EA-5"),
    description="SIGKILL the active trade engine under load (at a seeded phase of its heartbeat). Its supervisor reaps "
                "the process and releases its lease, so the passive takes over without waiting out the 3 s TTL "
                "(issue 11) and resumes RTSS from RTS, with no order executed twice and no acknowledged signal lost.",
    workload=Workload(op="trade"),
    faults=(FaultStep("process-kill", "active-engine", at_s=10.0, phase_s=1.0),),
    # ENG-3: the crash is restarted by the supervisor and trading recovers within its RTO; ENG-2: after the
    # takeover RTS agrees with the brokers and every pending RTSS signal was resumed (none lost)
    checkers=(CheckerSpec("rto", ("ENG-1", "ENG-3"), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("ENG-1", "ENG-2")),  # RPO 0
              CheckerSpec("duplicates", ("ENG-5",)), CheckerSpec("lost_signals", ("ENG-5",)),
              CheckerSpec("state", ("ENG-5", "ENG-2")), *_fencing(),
              # issue 19: cadences from the engines' own lines, and the uptime the measured recovery gives
              CheckerSpec("heartbeat_cadence", ("ENG-1",)), CheckerSpec("broker_heartbeat", ("BRK-1",)),
              CheckerSpec("uptime", ("EA-5",))),
))

register(Scenario(
    name="engine-pause",
    requirement_ids=("ENG-1", "ENG-3", "ENG-5", "EA-5"),
    description="SIGSTOP the active engine (a freeze: alive, no progress) for 8 s, then SIGCONT; the passive takes "
                "over, and the resumed old active must not execute anything (fenced by its lost lease).",
    workload=Workload(op="trade"),
    faults=(FaultStep("process-pause", "active-engine", at_s=10.0, heal_after_s=8.0, phase_s=1.0),),
    # ENG-3: a freeze (alive, no progress) counts as a failure: trading must recover within its RTO
    checkers=(CheckerSpec("rto", ("ENG-1", "ENG-3"), {"f": "trade", "fault": "process-pause"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing(), CheckerSpec("heartbeat_cadence", ("ENG-1",)),
              CheckerSpec("uptime", ("EA-5",))),
))

register(Scenario(
    name="redis-primary-kill",
    requirement_ids=("RDS-2", "ENG-1", "ENG-5"),
    description="SIGKILL the Redis primary under load; Sentinel promotes a replica and clients switch. RTO is the "
                "first successful client write after the kill; trades across the failover must not duplicate or "
                "vanish.",
    workload=Workload(op="trade", params={"also": ["redis_write"]}),
    # the old primary comes back 12 s later and must rejoin as a replica of the promoted one
    faults=(FaultStep("process-kill", "redis-primary", at_s=10.0, heal_after_s=12.0),),
    checkers=(CheckerSpec("rto", ("RDS-2",), {"f": "redis_write", "fault": "process-kill"}),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="redis-primary-disconnected",
    requirement_ids=("RDS-2", "ENG-1", "ENG-5"),
    description="The Redis primary cut off entirely for 12 s (docker network disconnect of its container on the "
                "docker provider; every packet to and from its address dropped locally) while it keeps running; "
                "Sentinel promotes a replica and clients switch. On reconnect the old primary must rejoin as a "
                "replica of the promoted one; trades across the failover must not duplicate or vanish.",
    workload=Workload(op="trade", params={"also": ["redis_write"]}),
    faults=(FaultStep("node-disconnect", "redis-primary", at_s=10.0, heal_after_s=12.0),),
    checkers=(CheckerSpec("rto", ("RDS-2",), {"f": "redis_write", "fault": "node-disconnect"}),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="lost-reply",
    requirement_ids=("ENG-1", "ENG-5", "BRK-4", "PERF-1", "ORD-2"),
    description="The broker executes order_send but its reply is lost (the dangerous case: None/-10005 after the "
                "order was applied). The engine must reconcile by magic+comment instead of resending blindly: "
                "no duplicate order, and every signal ends executed or rejected with a reason.",
    workload=Workload(op="trade", timeout_s=10.0),
    faults=(FaultStep("broker-lose-reply", "broker-primary", at_s=5.0, heal_after_s=15.0, params={"rate": 0.3}),),
    checkers=(CheckerSpec("duplicates", ("ENG-5", "BRK-4")), CheckerSpec("lost_signals", ("ENG-5", "BRK-4")),
              CheckerSpec("state", ("ENG-5",)), *_fencing(),
              # ORD-2 when an order fails ORD-1's five tries here (else unmeasured, with the reason)
              CheckerSpec("order_failed_syncs", ("ORD-2",)),
              # issue 11: the other signals keep >= 90 % of the rate the fault leaves (a lost reply stalls one order)
              CheckerSpec("kept_rate", ("PERF-1",), params={"fault": "broker-lose-reply", "loss": 0.3, "prompt_s": 1.0})),
))


# -- faults that land on work in flight (issue 18) -----------------------------------------------------------
# Each run stays near 40 s (load + settle), so `tradedrill drill --all` stays reasonable. Steps run on their own
# threads (scenarios.schedule), so the overlapping ones really overlap.
register(Scenario(
    name="engine-pause-in-flight",
    requirement_ids=("ENG-1", "ENG-5"),
    description="The primary broker takes 300 ms over every order_send for the whole load, so an order is in flight "
                "most of the time, and the active engine is SIGSTOPped for 8 s 10 s in, most likely inside an "
                "order_send: the broker executes the order while its sender is frozen. The passive takes over and "
                "finds it at the broker; the resumed old active must send nothing, and its late outcome and state "
                "writes must be refused (fenced), not written over its successor's.",
    workload=Workload(op="trade", rate_per_s=2.5, duration_s=24.0, timeout_s=5.0, settle_s=10.0),
    faults=(FaultStep("broker-latency", "broker-primary", at_s=0.0, params={"ms": 300}),
            FaultStep("process-pause", "active-engine", at_s=10.0, heal_after_s=8.0)),
    checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-pause"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="redis-restart-in-flight",
    requirement_ids=("ENG-1", "ENG-5", "ORD-3"),
    description="The primary broker takes 300 ms over every order_send, and 8 s in the Redis primary is SIGKILLed "
                "and restarted 0.3 s later (from its AOF, well inside Sentinel's 3 s down-after: no failover). The "
                "outcomes of the orders in flight cannot be published while Redis is down: they wait in the engine's "
                "journal (ORD-3) and must reach RTS and RTRS, exactly once each, when Redis is back, whether the "
                "engine kept its lease or the other one took over.",
    workload=Workload(op="trade", rate_per_s=5.0, duration_s=20.0, timeout_s=5.0, settle_s=12.0),
    faults=(FaultStep("broker-latency", "broker-primary", at_s=0.0, params={"ms": 300}),
            FaultStep("process-kill", "redis-primary", at_s=8.0, heal_after_s=0.3)),
    checkers=(CheckerSpec("lost_signals", ("ORD-3",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="engine-pause-repeated",
    requirement_ids=("ENG-1", "ENG-5", "ENG-6"),
    description="Four short freezes of whichever engine is active at the time: 1.5 s and 2 s (shorter than the 3 s "
                "lease TTL: the holder must resume without a takeover) and 4 s and 3.5 s (longer: the passive takes "
                "over, the old holder must notice it lost the lease before doing anything). Leases change hands "
                "back and forth; never two senders, no stale write, nothing doubled or lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=26.0, settle_s=10.0),
    faults=(FaultStep("process-pause", "active-engine", at_s=4.0, heal_after_s=1.5),
            FaultStep("process-pause", "active-engine", at_s=8.0, heal_after_s=4.0),
            FaultStep("process-pause", "active-engine", at_s=15.0, heal_after_s=2.0),
            FaultStep("process-pause", "active-engine", at_s=20.0, heal_after_s=3.5)),
    # ENG-6: both engine instances run all along and the lease changes hands four times: no order twice
    checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-pause"}),
              CheckerSpec("lost_signals", ("ENG-1",)), CheckerSpec("duplicates", ("ENG-5", "ENG-6")),
              CheckerSpec("lost_signals", ("ENG-5",)), CheckerSpec("state", ("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="engine-kill-reading",
    requirement_ids=("ENG-1", "ENG-5"),
    description="SIGKILL the active engine while it is reading RTSS (XREADGROUP, a batch in hand) with 100 signals "
                "a second arriving: entries delivered to the dead consumer and not yet acknowledged must be claimed "
                "by the passive and executed once each; nothing acknowledged is lost.",
    workload=Workload(op="trade", rate_per_s=100.0, duration_s=16.0, concurrency=8, settle_s=10.0),
    faults=(FaultStep("process-kill", "active-engine", at_s=8.0),),
    checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="broker-backup-down-primary-ambiguous",
    requirement_ids=("ENG-1", "ENG-5", "BRK-4"),
    description="Overlapping broker faults: the backup broker is SIGKILLed 4 s in (back 14 s later), and while it "
                "is still down the primary executes orders but loses 30 % of its replies (8 s to 14 s). There is "
                "nowhere to fail over to: every ambiguous send must be reconciled with the primary by magic and "
                "comment, never resent blindly and never sent to a broker that is down.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=22.0, timeout_s=10.0, settle_s=15.0),
    faults=(FaultStep("process-kill", "broker-backup", at_s=4.0, heal_after_s=14.0),
            FaultStep("broker-lose-reply", "broker-primary", at_s=8.0, heal_after_s=6.0, params={"rate": 0.3})),
    checkers=(CheckerSpec("duplicates", ("ENG-5", "BRK-4")), CheckerSpec("lost_signals", ("ENG-5", "BRK-4")),
              CheckerSpec("state", ("ENG-5",)), *_fencing()),
))

# issue 16: the switch to the backup broker (BRK-2) as the signals see it; the variant sweep's library catch for an
# engine that never falls back (tests/variants, no-broker-fallback)
register(Scenario(
    name="broker-primary-down",
    requirement_ids=("BRK-2", "ENG-1", "ENG-5"),
    description="The primary broker is SIGKILLed 3 s into 10 signals/s and stays down 24 s; the backup stays up. The "
                "active engine retries the primary every 3 s, switches to the backup after 5 failures and trades "
                "there: every signal acknowledged during the outage has its result within 5 x 3 s + the 5 s RTO "
                "(20 s, broker_fallback), however long the primary stays away; nothing doubled, nothing lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=25.0, settle_s=12.0),
    faults=(FaultStep("process-kill", "broker-primary", at_s=3.0, heal_after_s=24.0),),
    checkers=(CheckerSpec("broker_fallback", ("BRK-2",)), CheckerSpec("broker_retry", ("BRK-2",)),
              CheckerSpec("rto", ("BRK-2",), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("BRK-2",)), *_consistency(("ENG-5",)), *_fencing()),
))

# issue 19: the broker connection's own cadence and limits (BRK-1, BRK-2, BRK-5), timed from the engines' lines
register(Scenario(
    name="brokers-down",
    requirement_ids=("BRK-1", "BRK-2", "BRK-5", "ENG-1", "ENG-5", "EA-5"),
    description="Both brokers SIGKILLed 3 s into 10 signals/s: the primary for 24 s, the backup for 14 s. The active "
                "engine retries the primary every 3 s (BRK-2), switches to the backup after 5 failures, finds it down "
                "too: every broker down, so it suspends trading and alerts (BRK-5) and sends nothing meanwhile; it "
                "keeps retrying every 3 s and trades on the backup once it is back. Reconnect intervals, failures "
                "before the switch and before the suspension, and the broker heartbeat (BRK-1) are timed from the "
                "engines' lines; the RTO against BRK-2's 5 s (a primary down longer than 5 x 3 s cannot meet it: "
                "broker-retry-vs-rto); nothing doubled, nothing lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=5.0, settle_s=12.0),
    faults=(FaultStep("process-kill", "broker-primary", at_s=3.0, heal_after_s=24.0),
            FaultStep("process-kill", "broker-backup", at_s=3.0, heal_after_s=14.0)),
    checkers=(CheckerSpec("rto", ("BRK-2",), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("broker_retry", ("BRK-2",)), CheckerSpec("brokers_down", ("BRK-5",)),
              CheckerSpec("broker_heartbeat", ("BRK-1",)), CheckerSpec("lost_signals", ("BRK-2",)),
              CheckerSpec("uptime", ("EA-5",)), *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="engine-pause-during-failover",
    requirement_ids=("ENG-1", "ENG-5", "RDS-2"),
    description="Overlapping faults: the active engine is SIGSTOPped 8 s in for 8 s, and 1 s later the Redis primary "
                "is SIGKILLed (back as a replica 12 s later). The lease lives in Redis: the passive must take it on "
                "the promoted primary, and the old holder, waking after the failover, must find it lost and stay "
                "fenced; client writes resume after the failover.",
    workload=Workload(op="trade", duration_s=26.0, settle_s=10.0, params={"also": ["redis_write"]}),
    faults=(FaultStep("process-pause", "active-engine", at_s=8.0, heal_after_s=8.0),
            FaultStep("process-kill", "redis-primary", at_s=9.0, heal_after_s=12.0)),
    checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-pause"}),
              CheckerSpec("rto", ("RDS-2",), {"f": "redis_write", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

# --- Redis partitions, Jepsen style (issue 12) ---------------------------------------------------------------------
# Writer clients, each from its own address: on the minority side with and without WAIT 1, and on the majority.
# WAIT 1 is what the documents' "RPO 0" would need at least; WAIT 2 (every replica) is the only setting that survives
# a split with a replica on the primary's side.
_SIDED_WRITERS = [{"name": "minority", "side": "minority"}, {"name": "minority-wait", "side": "minority", "wait": 1},
                  {"name": "minority-wait-all", "side": "minority", "wait": 2},
                  {"name": "majority", "side": "majority"}]


def _redis_checks(failovers: str) -> tuple[CheckerSpec, ...]:
    """Every Redis topology drill: acknowledged writes kept (Jepsen's set), the engines' switch to a new primary,
    the failover count against what the shape allows and the roles after heal, and the trade guarantees."""
    follow = (CheckerSpec("primary_follow", ("RDS-2",)),) if failovers == "one" else ()
    rid = ("RDS-2",) if failovers == "one" else ("RDS-1",)   # a failover that must happen, or none without quorum
    return (CheckerSpec("redis_set", ("RDS-4",)), *follow, CheckerSpec("failovers", rid, {"expect": failovers}),
            *_consistency(("ENG-5",)), *_fencing())


register(Scenario(
    name="redis-primary-isolated",
    requirement_ids=("RDS-1", "RDS-2", "RDS-4", "ENG-1", "ENG-5"),
    description="The Redis primary is cut from the Sentinels, its replicas and the majority of clients for 12 s "
                "(four times down-after), while the active engine and two minority writers still reach it; the "
                "majority promotes a replica. On heal the old primary rejoins as a replica and what it acknowledged "
                "alone is gone (asynchronous replication). The engine must stop trading on the isolated node (no "
                "majority of Sentinels names it) and nothing may be duplicated or lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=30.0, timeout_s=5.0, settle_s=10.0,
                      params={"writers": _SIDED_WRITERS}),
    faults=(FaultStep("redis-partition", "redis-primary", at_s=8.0, heal_after_s=12.0,
                      params={"shape": "isolate", "with": ["active-engine"]}),),
    checkers=_redis_checks("one"),
))

register(Scenario(
    name="redis-majority-minority",
    requirement_ids=("RDS-1", "RDS-2", "RDS-4", "ENG-1", "ENG-5"),
    description="The Redis nodes and Sentinels split in two, the primary in the minority with one other node drawn "
                "from the seed; a writer on each side (the minority ones with and without WAIT 1). The majority "
                "fails over; on heal the minority's acknowledged writes are lost. WAIT 1 saves them only when the "
                "other node is on the majority side: when a replica shares the minority, the writes it confirmed "
                "are lost with it (seeds 21, 22); WAIT 2 (every replica) loses none.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=30.0, timeout_s=5.0, settle_s=10.0,
                      params={"writers": _SIDED_WRITERS}),
    faults=(FaultStep("redis-partition", "redis-primary", at_s=8.0, heal_after_s=12.0,
                      params={"shape": "majority-minority"}),),
    checkers=_redis_checks("one"),
))

def _planned_failover(name: str, procedure: str, description: str) -> Scenario:
    """A primary change for maintenance under load, by ``procedure`` (see ``faults.partition.PlannedFailover``),
    with a plain and a WAIT 1 writer on the majority side."""
    return Scenario(
        name=name, requirement_ids=("RDS-2", "RDS-4", "ENG-1", "ENG-4", "ENG-5"), description=description,
        workload=Workload(op="trade", rate_per_s=10.0, duration_s=24.0, timeout_s=5.0, settle_s=10.0,
                          params={"writers": [{"name": "majority", "side": "majority"},
                                              {"name": "majority-wait", "side": "majority", "wait": 1}]}),
        faults=(FaultStep("redis-failover", "redis-primary", at_s=8.0, params={"procedure": procedure}),),
        checkers=_redis_checks("one"))


register(_planned_failover(
    "redis-planned-failover", "paused",
    "A primary change for maintenance, by the reference runbook: CLIENT PAUSE WRITE on the primary (its replicas "
    "catch up while writes wait), SENTINEL FAILOVER, REPLICAOF to the new primary at once, UNPAUSE; every client "
    "connection stays open. The engine must see the change within 1 s (it asks the Sentinels) and write to the new "
    "primary; no acknowledged write and no signal may be lost."))

register(_planned_failover(
    "redis-planned-failover-bare", "sentinel",
    "The same maintenance with the bare SENTINEL FAILOVER: Sentinel demotes the old primary only at its next INFO "
    "poll (about 10 s), and until then the old primary acknowledges every write of the clients still connected to "
    "it: those writes, and the signals XADDed there, are lost when it resyncs. The engine follows within 1 s either "
    "way; what it never read cannot be executed."))

register(Scenario(
    name="redis-sentinel-partition",
    requirement_ids=("RDS-1", "RDS-4", "ENG-1", "ENG-5"),
    description="Every Sentinel cut from the others (no side has the quorum of 2), then the primary is killed for "
                "6 s: no failover may happen. Writes stop while the primary is down and resume on the same primary "
                "(AOF, appendfsync always: nothing acknowledged lost). The Sentinels are cut only from one another: the "
                "engines still reach all three, keep confirming the primary and trade except while it is down.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=5.0, settle_s=12.0,
                      params={"writers": [{"name": "majority", "side": "majority"}]}),
    faults=(FaultStep("redis-partition", "redis-primary", at_s=6.0, heal_after_s=14.0,
                      params={"shape": "sentinels-apart"}),
            FaultStep("process-kill", "redis-primary", at_s=8.0, heal_after_s=6.0)),
    checkers=_redis_checks("none"),
))

register(Scenario(
    name="redis-all-down",
    requirement_ids=("ORD-3", "RDS-1", "RDS-4", "ENG-1", "ENG-5"),
    description="Every Redis node SIGKILLed for 20 s, then started again (AOF). ORD-3: the engines keep trade state "
                "in DuckDB and retry every 2 s; every outcome reaches RTS and RTRS once Redis is back; nothing "
                "acknowledged (AOF, appendfsync always) is lost; no failover (the primary returns as primary).",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=5.0, settle_s=12.0,
                      params={"writers": [{"name": "majority", "side": "majority"}]}),
    faults=(FaultStep("redis-all-down", "redis-primary", at_s=6.0, heal_after_s=20.0),),
    checkers=(*_redis_checks("none"), CheckerSpec("redis_retry", ("ORD-3",))),
))


# -- the DuckDB store under damage (issue 13) ----------------------------------------------------------------------
# Where each corruption mode of faults/files.py really happens, and so how it is injected:
# - on the live file (duckdb-corrupt): a zeroed header (a stray write, a bad sector at offset 0), bytes changed in a
#   data block (bit rot), a file cut short (another process, a filesystem repair): the engine's DDB-6 health check
#   must find it while it runs and rewrite the file from memory;
# - in a crash (duckdb-crash-corrupt: SIGKILL, the damage while nothing holds the file, the supervisor restarts it):
#   a cut, garbled or torn WAL is what a process or machine dying mid-write leaves; the restart must repair it on open
#   (evidence kept, newest valid snapshot restored, the rest reconciled at the broker by magic + comment).
STORE_LIVE_MODES = ("zero-header", "flip-block", "truncate")
STORE_CRASH_MODES = ("wal-truncate", "wal-garble", "torn-write")
_STORE_LOAD = dict(op="trade", rate_per_s=20.0, duration_s=24.0, timeout_s=3.0, settle_s=14.0)

for _mode in STORE_LIVE_MODES:
    register(Scenario(
        name=f"duckdb-corrupt-{_mode}",
        requirement_ids=("DDB-3", "DDB-4", "DDB-6", "ENG-1", "ENG-5"),
        description=f"DuckDB {_mode} on the active engine's live intent journal, 10 s into 20 signals/s: the health "
                    f"check (every 1 s, DDB-6) must find it, the engine rewrite the file from memory (DDB-3: within "
                    f"3 s, no committed write missing), keep the damaged file under backup/duckdb/damaged/ with a "
                    f"diagnosis and raise one alert naming it; trading goes on: nothing doubled, nothing lost.",
        workload=Workload(**_STORE_LOAD),
        faults=(FaultStep("duckdb-corrupt", "active-engine", at_s=10.0, phase_s=1.0, params={"mode": _mode}),),
        checkers=(CheckerSpec("store_repair", ("DDB-3", "DDB-6")), CheckerSpec("store_health", ("DDB-6",)),
                  CheckerSpec("journal_rebuild", ("DDB-4",)),
                  *_consistency(("ENG-5",)), *_fencing()),
    ))

for _mode in STORE_CRASH_MODES:
    register(Scenario(
        name=f"duckdb-corrupt-{_mode}",
        requirement_ids=("DDB-3", "DDB-4", "ENG-1", "ENG-5"),
        description=f"SIGKILL the active engine 10 s into 20 signals/s and leave its journal with a {_mode} (what a "
                    f"crash mid-write leaves); the passive takes over, the supervisor restarts the victim, which must "
                    f"repair the journal on open (DDB-3: within 3 s of the damage, damaged files kept, newest valid "
                    f"snapshot restored, the writes it lacks looked up at the broker); nothing doubled, nothing lost.",
        workload=Workload(**_STORE_LOAD),
        faults=(FaultStep("duckdb-crash-corrupt", "active-engine", at_s=10.0, phase_s=1.0, params={"mode": _mode}),),
        checkers=(CheckerSpec("store_repair", ("DDB-3",)), CheckerSpec("journal_rebuild", ("DDB-4",)),
                  CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "duckdb-crash-corrupt"}),
                  CheckerSpec("lost_signals", ("ENG-1",)),
                  *_consistency(("ENG-5",)), *_fencing()),
    ))

register(Scenario(
    name="engine-kill-heavy-writes",
    requirement_ids=("ENG-1", "ENG-5", "DDB-1", "DDB-2", "DDB-6"),
    description="SIGKILL the active engine while it journals 175 signals a second (group commits of its intents and "
                "outcomes in flight): every signal acknowledged to its sender must be executed once or rejected with "
                "a reason, from the journal, RTSS and the broker's ledger, after the passive takes over and the "
                "victim restarts. The store keeper under that load is timed from its own lines (store_wal, store_snapshots, store_health): "
                "DuckDB's live checkpoint threshold and the largest WAL (DDB-1), the snapshot interval while the "
                "journal changes and the snapshot files kept (DDB-2), the health-check interval (DDB-6).",
    workload=Workload(op="trade", rate_per_s=175.0, duration_s=20.0, concurrency=8, timeout_s=3.0, settle_s=15.0),
    faults=(FaultStep("process-kill", "active-engine", at_s=10.0, phase_s=1.0),),
    checkers=(CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              CheckerSpec("store_wal", ("DDB-1",)), CheckerSpec("store_snapshots", ("DDB-2",)),
              CheckerSpec("store_health", ("DDB-6",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

# -- a full disk under the store (issue 13) -------------------------------------------------------------------------
# Each engine's state dir (journal, snapshots, event log) is a 32 MB tmpfs of its own (scenarios.environment mounts
# it before the engines start, down() copies it back and unmounts it); disk-fill takes every free byte of the active
# engine's for 8 s.
register(Scenario(
    name="disk-full",
    requirement_ids=("DDB-5", "ENG-1", "ENG-5"),
    description="The filesystem of the active engine's journal runs out of space (ENOSPC) for 8 s, 8 s into 10 "
                "signals/s: every journal write is refused with one clear line (a journal_disk_full alert), no "
                "signal whose intent could not be made durable is sent or acknowledged, the engine neither exits "
                "nor moves its healthy journal into the damaged-evidence folder, and it trades again once space "
                "returns: nothing doubled, nothing lost. DDB-5 (failed_writes): every write refused meanwhile (a "
                "signal's intent, a snapshot) is retried and applied after the space returns, or recorded in "
                "failed_syncs / the backlog; none lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=24.0, timeout_s=5.0, settle_s=14.0),
    faults=(FaultStep("disk-fill", "active-engine", at_s=8.0, heal_after_s=8.0),),
    checkers=(CheckerSpec("failed_writes", ("DDB-5",)), *_consistency(("ENG-5",)), *_fencing()),
))


# -- persistence drills: PostgreSQL credentials, JSON config, ClickHouse outage, Redis AOF (issue 13) ---------------
# postgres-restore runs PostgreSQL beside the usual nodes (Scenario.services): the brokers' account has a password,
# the engines' broker entries name no login, so each engine reads its logins from PostgreSQL at start (PG-1).
register(Scenario(
    name="postgres-restore",
    requirement_ids=("PG-1", "ENG-1", "ENG-5"),
    description="The credentials database (sealed broker logins) is pg_dumped and dropped 5 s into 10 signals/s, and "
                "restored from the newest dump 1 s later (PG-1: under 5 s); the logins must decrypt again. Then the "
                "active engine is SIGKILLed twice (9 s, 16 s): the first victim restarts after the restore and reads "
                "its broker logins from the restored database, and after the second kill it is the one trading. No "
                "key or password may be in the run folder; nothing doubled, nothing lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=24.0, timeout_s=5.0, settle_s=12.0),
    faults=(FaultStep("postgres-restore", "postgres", at_s=5.0, heal_after_s=1.0),
            FaultStep("process-kill", "active-engine", at_s=9.0),
            FaultStep("process-kill", "active-engine", at_s=16.0)),
    checkers=(CheckerSpec("pg_restore", ("PG-1",)),
              CheckerSpec("rto", ("ENG-1",), {"f": "trade", "fault": "process-kill"}),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
    services=("postgres",),
))

# config-corrupt: each engine loads its user settings (<state_dir>/config/engine.json, saved four times: three
# backups) at start; the active engine's file is damaged and the engine SIGKILLed, four times, one mode each.
CONFIG_MODES = ("truncate", "invalid-json", "wrong-type", "oversize")
register(Scenario(
    name="config-corrupt",
    requirement_ids=("CFG-1", "CFG-2", "ENG-1", "ENG-5"),
    description="The active engine's JSON user settings are damaged and the engine SIGKILLed, four times 5 s apart "
                "at 10 signals/s (a truncated file, invalid JSON, a setting of the wrong type, a file over the 10 KB "
                "cap); each restart must load the newest valid backup with one line naming the file, the problem and "
                "the backup (CFG-2: under 1 s), keep the damaged file and rewrite it; the passive takes over each "
                "time: nothing doubled, nothing lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=26.0, timeout_s=5.0, settle_s=12.0),
    faults=tuple(FaultStep("config-corrupt", "active-engine", at_s=4.0 + 5.0 * i, params={"mode": mode})
                 for i, mode in enumerate(CONFIG_MODES)),
    checkers=(CheckerSpec("config_fallback", ("CFG-1", "CFG-2")),
              CheckerSpec("lost_signals", ("ENG-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
))

# clickhouse-outage runs ClickHouse beside the usual nodes; the engines sync every final outcome to it (CH-1).
register(Scenario(
    name="clickhouse-outage",
    requirement_ids=("CH-1", "CH-4", "BR-2", "ENG-1", "ENG-5"),
    description="ClickHouse SIGKILLed 4 s into 10 signals/s and started again 21 s later, longer than CH-1's first "
                "try and three retries 5 s apart: the outcomes that could not be sent go to failed_syncs, trading "
                "goes on, and once ClickHouse answers again every waiting row is resent (CH-1: under 5 s). After the "
                "run every trade of the broker ledgers is in ClickHouse exactly once (read with FINAL); nothing "
                "doubled, nothing lost.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=30.0, timeout_s=5.0, settle_s=10.0),
    faults=(FaultStep("process-kill", "clickhouse", at_s=4.0, heal_after_s=21.0),),
    # CH-4 (active-passive ClickHouse, failover under 1 s): the drill runs one ClickHouse node, so the row says
    # "not measurable in this topology" with that reason (never a pass)
    checkers=(CheckerSpec("clickhouse_history", ("CH-1", "BR-2")), CheckerSpec("clickhouse_failover", ("CH-4",)),
              *_consistency(("ENG-5",)), *_fencing()),
    services=("clickhouse",),
))

# CH-2 and CH-3 cannot show with the documents' figures within a drill (a backfill check every minute; backups every
# 12 h / 1 h): the scenario runs them drill-sized, recorded in the run folder (overrides.json) and marked
# "overridden" with both values beside every CH-2 / CH-3 verdict.
register(Scenario(
    name="clickhouse-data-loss",
    requirement_ids=("CH-2", "CH-3", "ENG-1", "ENG-5"),
    description="ClickHouse keeps running but loses rows while 10 signals/s trade: the outcome table is truncated "
                "at 6 s and the newest UTC day deleted (ALTER TABLE DELETE, a dropped day) at 15 s. The engines' "
                "backfill check (every 5 s here; CH-2: every minute) finds the days ClickHouse is short of and resends "
                "the lost outcomes from DuckDB: after the run every trade is in ClickHouse exactly once (FINAL), "
                "timed from each loss to the newest row put back. The engines take ClickHouse backups on a drill-"
                "sized schedule (full every 20 s, incremental every 5 s; CH-3: 12 h / 1 h) with ZSTD level 3, and "
                "after the run each engine's newest backup chain is restored into a scratch table and counted.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=30.0, timeout_s=5.0, settle_s=10.0),
    # losses early, so the backups at the end of the run hold the rows put back (the restore check compares them)
    faults=(FaultStep("clickhouse-data-lost", "clickhouse", at_s=6.0, heal_after_s=7.0, params={"mode": "truncate"}),
            FaultStep("clickhouse-data-lost", "clickhouse", at_s=15.0, heal_after_s=7.0, params={"mode": "day"})),
    checkers=(CheckerSpec("clickhouse_backfill", ("CH-2",)), CheckerSpec("clickhouse_backups", ("CH-3",)),
              *_consistency(("ENG-5",)), *_fencing()),
    services=("clickhouse",),
    engine_overrides={"clickhouse_backfill_check_s": 5.0, "clickhouse_backup_dir": "",
                      "clickhouse_backup_full_s": 20.0, "clickhouse_backup_incremental_s": 5.0},
))

# ORD-2 with the documents' figures needs an order refused for ORD-1's 1+2+4+8+16 s and then ORD-2's 60 s in
# failed_syncs: over 90 s, longer than a drill. The scenario runs both a quarter as long (0.25, 0.5, 1, 2, 4 s; 15 s),
# recorded in the run folder (overrides.json) and marked "overridden" with both values beside the ORD-2 verdicts.
register(Scenario(
    name="order-failed-syncs",
    requirement_ids=("ORD-1", "ORD-2", "ENG-1", "ENG-5"),
    description="The primary broker answers every order_send with TRADE_RETCODE_TOO_MANY_REQUESTS (a retcode ORD-1 "
                "retries) for 10 s under 10 signals/s. Orders refused through all five ORD-1 tries (backoff 0.25, "
                "0.5, 1, 2, 4 s here) go to failed_syncs and are sent again after the failed_syncs retry (15 s "
                "here; ORD-2: 1 minute), when the broker takes them: each is executed or rejected with a reason, "
                "none lost, none doubled.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=30.0, timeout_s=5.0, settle_s=10.0),
    faults=(FaultStep("broker-behaviour", "broker-primary", at_s=4.0, heal_after_s=10.0,
                      params={"too_many_requests_rate": 1.0}),),
    checkers=(CheckerSpec("order_failed_syncs", ("ORD-2",)), CheckerSpec("order_backoff", ("ORD-1",)),
              *_consistency(("ENG-5",)), *_fencing()),
    engine_overrides={"retry_backoff_s": [0.25, 0.5, 1.0, 2.0, 4.0], "failed_sync_retry_s": 15.0},
))

# -- the EA tick stream (issue 14) -----------------------------------------------------------------------------------
# These run the ea service beside the usual nodes: ea-1 streams the primary broker's ticks on UDP and TCP under the
# supervisor's EA-1 policy, and the drill's consumer of ea-1 (scenarios.tickclients, <subnet>.150) records what it
# delivered in ticks-ea-1.jsonl. The trade load runs as usual, light, judged by the engine guarantees like every
# drill with engines.
TICK_LOAD = dict(op="trade", rate_per_s=5.0, timeout_s=5.0)

register(Scenario(
    name="udp-loss",
    requirement_ids=("EA-2", "PERF-1", "ENG-1", "ENG-5"),
    description="30 % of the UDP ticks to the consumer are lost for 5 s at the consumer's side (kernel rule), then "
                "for 5 s through the fault proxy (seeded): every sequence number is still delivered exactly once and "
                "in order (the lost ones from TCP), with tick latency measured outside the faults.",
    workload=Workload(duration_s=20.0, settle_s=4.0, **TICK_LOAD),
    faults=(FaultStep("udp-loss", "ea-1", at_s=4.0, heal_after_s=5.0, params={"percent": 30}),
            FaultStep("udp-loss-proxy", "ea-1", at_s=10.0, heal_after_s=5.0, params={"percent": 30})),
    checkers=(CheckerSpec("ticks", ("EA-2",)),
              CheckerSpec("tick_fallback", ("EA-2",), {"faults": ["udp-loss", "udp-loss-proxy"]}),
              CheckerSpec("tick_latency", ("PERF-1",)), *_fencing()),
    services=("ea",),
))

register(Scenario(
    name="udp-blackhole",
    requirement_ids=("EA-2", "PERF-1", "ENG-1", "ENG-5"),
    description="Every UDP tick to the consumer is dropped for 8 s: TCP serves them within EA-2's 100 ms (our "
                "target 50 ms; the distribution is reported), nothing missed or doubled, and the consumer is back on "
                "UDP after heal.",
    workload=Workload(duration_s=18.0, settle_s=4.0, **TICK_LOAD),
    faults=(FaultStep("udp-blackhole", "ea-1", at_s=4.0, heal_after_s=8.0),),
    checkers=(CheckerSpec("ticks", ("EA-2",)),
              CheckerSpec("tick_fallback", ("EA-2",), {"faults": ["udp-blackhole"]}),
              CheckerSpec("tick_latency", ("PERF-1",)), *_fencing()),
    services=("ea",),
))

register(Scenario(
    name="tcp-cut",
    requirement_ids=("EA-2", "BR-3", "ENG-1", "ENG-5"),
    description="The EA and its consumer are cut apart for 22 s (UDP and TCP down together): the consumer alerts "
                "both-down, retries TCP every 2 s for 10 attempts and alerts again; after heal ticks resume on UDP "
                "with the gap reported, never filled with stale ticks.",
    workload=Workload(duration_s=30.0, settle_s=4.0, **TICK_LOAD),
    faults=(FaultStep("tick-cut", "ea-1", at_s=4.0, heal_after_s=22.0),),
    checkers=(CheckerSpec("ticks", ("EA-2",), {"gaps_expected_in_faults": True}),
              CheckerSpec("tcp_reconnect", ("EA-2",)), CheckerSpec("stale_ticks", ("BR-3",)), *_fencing()),
    services=("ea",),
))

register(Scenario(
    name="ea-kill",
    requirement_ids=("EA-1", "EA-2", "BR-3", "ENG-1", "ENG-5", "EA-5"),
    description="SIGKILL the EA twice, 8 s apart: its supervisor restarts it (EA-1: within 500 ms, EA-HA 1 s, "
                "measured to the first tick of the new stream at the consumer); the consumer starts clean on the new "
                "stream: no stale or doubled tick.",
    workload=Workload(duration_s=20.0, settle_s=4.0, **TICK_LOAD),
    faults=(FaultStep("process-kill", "ea-1", at_s=4.0), FaultStep("process-kill", "ea-1", at_s=12.0)),
    # EA-5: the uptime the failure-rate model gives at the EA's measured restart (issue 19)
    checkers=(CheckerSpec("ea_restart", ("EA-1",)), CheckerSpec("stale_ticks", ("BR-3",)),
              CheckerSpec("ticks", ("EA-2",), {"gaps_expected_in_faults": True}), CheckerSpec("uptime", ("EA-5",)),
              *_fencing()),
    services=("ea",),
))

register(Scenario(
    name="ea-network-down-30s",
    requirement_ids=("EA-4", "BR-3", "ENG-1", "ENG-5"),
    description="The EA is cut from its broker for 33 s: it reconnects with exponential backoff, alerts and exits "
                "once the broker has been unreachable 29 s, and its supervisor restarts it by EA-4's 30 s; after "
                "heal the new stream flows, with no stale tick.",
    workload=Workload(duration_s=37.0, settle_s=3.0, **TICK_LOAD),
    faults=(FaultStep("ea-network-down", "ea-1", at_s=2.0, heal_after_s=33.0),),
    checkers=(CheckerSpec("ea_network_down", ("EA-4",), {"faults": ["ea-network-down"]}),
              CheckerSpec("stale_ticks", ("BR-3",)), *_fencing()),
    services=("ea",),
))

# redis-aof-damaged: BR-1's recovery order, by the stack's own procedure (reference.store.redis_recovery) in the heal.
register(Scenario(
    name="redis-aof-damaged",
    requirement_ids=("RDS-3", "RDS-6", "BR-1", "ENG-1", "ENG-5"),
    description="Every Redis node stopped (SIGTERM: each writes its RDB) 8 s into 10 signals/s, each AOF damaged at a "
                "seeded offset, and 8 s later every node started again through BR-1's order: redis-check-aof refuses "
                "the AOF, redis-check-rdb accepts the RDB, which becomes the base of a fresh AOF (the damaged one kept "
                "under damaged/); every RTS key and RTRS/RTSS entry read before the stop must be there after (BR-1: "
                "verified within 10 s), and RTS must match the broker ledger at the end; nothing doubled, nothing lost. "
                "A damage that lands inside a value's bytes keeps the AOF's framing: redis-check-aof (no checksum) "
                "accepts it and the node loads altered data; the checker counts it as undetected and the keys it "
                "lost (seed 22: 1 RTS key). RDS-3's settings are read with CONFIG GET from every running node before "
                "the stop.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=5.0, settle_s=12.0),
    faults=(FaultStep("redis-aof-damaged", "redis-primary", at_s=8.0, heal_after_s=8.0),),
    checkers=(CheckerSpec("redis_recovery", ("RDS-3", "RDS-6", "BR-1")),
              CheckerSpec("state", ("BR-1", "RDS-6")),
              *_consistency(("ENG-5",)), *_fencing()),
))

# the same with a crash: SIGTERM makes every node write a fresh RDB on the way out, so the "last RDB" branch of BR-1
# above restores a copy taken a moment ago; SIGKILL leaves whatever `save 60 1000` (RDS-3) or a replica's initial
# sync wrote, or none, which is what a crash leaves.
register(Scenario(
    name="redis-aof-damaged-kill",
    requirement_ids=("RDS-3", "RDS-6", "BR-1", "ENG-1", "ENG-4", "ENG-5"),
    description="Every Redis node SIGKILLed (a crash: no RDB written on the way out) 8 s into 10 signals/s, each AOF "
                "damaged at a seeded offset, and 8 s later every node started again through BR-1's order: "
                "redis-check-aof refuses the AOF; the last RDB is only what `save 60 1000` or a replica's initial "
                "sync left (the heal records each node's dump.rdb and its age at the stop), else the AOF is cut at "
                "the damage; then the restored RTS is verified against the engines' DuckDB snapshots. Every key and "
                "RTRS/RTSS entry read before the crash must be there after (BR-1, RDS-3: no acknowledged write "
                "lost) and RTS must match the broker ledger at the end; RDS-3's settings are read with CONFIG GET "
                "from every running node before the crash.",
    workload=Workload(op="trade", rate_per_s=10.0, duration_s=28.0, timeout_s=5.0, settle_s=12.0),
    faults=(FaultStep("redis-aof-damaged", "redis-primary", at_s=8.0, heal_after_s=8.0, params={"stop": "kill"}),),
    # ENG-4: the Redis state the crash lost is rebuilt from the engines' DuckDB journals (redis_restore): RTS must
    # then agree with the broker ledger
    checkers=(CheckerSpec("redis_recovery", ("RDS-3", "RDS-6", "BR-1")),
              CheckerSpec("state", ("BR-1", "RDS-6", "ENG-4")),
              *_consistency(("ENG-5",)), *_fencing()),
))

register(Scenario(
    name="udp-dup-reorder",
    requirement_ids=("EA-2", "PERF-1", "ENG-1", "ENG-5"),
    description="The consumer's UDP passes the fault proxy, which duplicates 30 % of the ticks and delays 30 % by "
                "20 ms (seeded) for 10 s: no duplicate and no reordering reaches the application, nothing missed.",
    workload=Workload(duration_s=20.0, settle_s=4.0, **TICK_LOAD),
    faults=(FaultStep("udp-dup-reorder", "ea-1", at_s=4.0, heal_after_s=10.0,
                      params={"duplicate": 0.3, "reorder": 0.3, "delay_ms": 20.0}),),
    checkers=(CheckerSpec("ticks", ("EA-2",)), CheckerSpec("tick_latency", ("PERF-1",)), *_fencing()),
    services=("ea",),
))

register(Scenario(
    name="ea-crash-loop",
    requirement_ids=("EA-1", "EA-2", "ENG-1", "ENG-5"),
    description="SIGKILL the EA four times 2.5 s apart: the supervisor restarts it three times, then (a fourth "
                "failure within 30 s) stops restarting it and alerts (EA-1); the consumer alerts both paths down and "
                "gives TCP up after 10 attempts; no duplicate or out-of-order tick meanwhile.",
    workload=Workload(duration_s=32.0, settle_s=4.0, **TICK_LOAD),
    faults=tuple(FaultStep("process-kill", "ea-1", at_s=3.0 + 2.5 * i) for i in range(4)),
    checkers=(CheckerSpec("ea_restart", ("EA-1",)), CheckerSpec("tcp_reconnect", ("EA-2",)),
              CheckerSpec("ticks", ("EA-2",), {"gaps_expected_in_faults": True}), *_fencing()),
    services=("ea",),
))


# issue 19: EA-3's session in RIS across Redis outages, and ORD-3's reconnect cadence, timed from the lines written
register(Scenario(
    name="ea-ris-lost",
    requirement_ids=("EA-3", "ORD-3", "ENG-1", "ENG-5"),
    description="The Redis primary SIGKILLed for 1 s 4 s in (back before Sentinel's 3 s down-after: no failover), "
                "then every Redis node down for 14 s from 10 s. The EA keeps streaming ticks and retries its session "
                "in RIS every 2 s (EA-3); after 5 failed recoveries it starts a new session once Redis answers; the "
                "session must be back within 3 s of Redis. The engines retry Redis every 2 s (ORD-3), keep what "
                "they execute in DuckDB and publish it when Redis is back: nothing doubled, nothing lost.",
    workload=Workload(duration_s=30.0, settle_s=8.0, **TICK_LOAD),
    faults=(FaultStep("process-kill", "redis-primary", at_s=4.0, heal_after_s=1.0),
            FaultStep("redis-all-down", "redis-primary", at_s=10.0, heal_after_s=14.0)),
    checkers=(CheckerSpec("ris_reconnect", ("EA-3",)), CheckerSpec("redis_retry", ("ORD-3",)),
              CheckerSpec("lost_signals", ("ORD-3",)), *_consistency(("ENG-5",)), *_fencing()),
    services=("ea",),
))

# -- the backend pair behind nginx, under webhook load (issue 15) ---------------------------------------------------
# Scenario.services runs the backend service: backend-a (active) and backend-b (nginx's backup) under BE-1's
# supervisor, and the proxy; the load is TradingView alerts posted through the proxy (op "webhook").
_WEBHOOK_LOAD = dict(op="webhook", rate_per_s=20.0, concurrency=4, timeout_s=3.0, settle_s=8.0)


def _webhook_checks(failover: str | None) -> tuple[CheckerSpec, ...]:
    # PERF-2's backend failover (< 500 ms) is the same measurement as BE-2's
    gap = (CheckerSpec("http_failover", ("BE-2", "PERF-2"), {"fault": failover}),) if failover else ()
    return (*gap, CheckerSpec("webhook_once", ("BE-4",)), *_consistency(("ENG-5",)), *_fencing())


register(Scenario(
    name="backend-kill",
    requirement_ids=("BE-1", "BE-2", "BE-3", "BE-4", "TV-1", "ENG-1", "ENG-5", "PERF-2", "EA-5"),
    description="SIGKILL the active backend (backend-a) three times under 20 alerts/s posted through nginx; nginx "
                "sends what fails on A to the backup B at once (proxy_next_upstream, max_fails 1), the supervisor "
                "restarts A after 3 s (BE-1) and nginx returns to it after fail_timeout. Clients must keep "
                "succeeding (BE-2: the longest wait a client sees under 500 ms), every accepted alert is one "
                "signal and at most one order, and a local-panel user keeps the session (TV-1).",
    workload=Workload(duration_s=24.0, **_WEBHOOK_LOAD, params={"also": ["panel"]}),
    faults=tuple(FaultStep("process-kill", "backend-a", at_s=at, phase_s=1.0) for at in (5.0, 12.0, 19.0)),
    checkers=(CheckerSpec("rto", ("BE-1",), {"f": "webhook", "fault": "process-kill"}),
              CheckerSpec("session_continuity", ("TV-1",), {"fault": "process-kill"}),
              # BE-3: on recovery the backend reconnects and RTSS processing goes on: no acknowledged signal lost
              CheckerSpec("lost_signals", ("BE-3",)), CheckerSpec("backend_health_cadence", ("BE-1",)),
              CheckerSpec("uptime", ("EA-5",)), *_webhook_checks("process-kill")),
    services=("backend",),
))

register(Scenario(
    name="backend-pause",
    requirement_ids=("BE-2", "BE-4", "TV-1", "ENG-1", "ENG-5", "PERF-2"),
    description="SIGSTOP the active backend (backend-a) for 4 s, twice, under 20 alerts/s through nginx: a frozen "
                "backend accepts connections and never answers, so only nginx's read timeout (300 ms) sends a "
                "request on to B. The longest wait a client sees must stay under 500 ms (BE-2), no request may "
                "fail, every accepted alert is one signal and at most one order, and a local-panel user keeps "
                "the session (TV-1).",
    workload=Workload(duration_s=26.0, **_WEBHOOK_LOAD, params={"also": ["panel"]}),
    faults=tuple(FaultStep("process-pause", "backend-a", at_s=at, heal_after_s=4.0, phase_s=1.0) for at in (6.0, 16.0)),
    checkers=(CheckerSpec("session_continuity", ("TV-1",), {"fault": "process-pause"}),
              *_webhook_checks("process-pause")),
    services=("backend",),
))

register(Scenario(
    name="webhook-retry-storm",
    requirement_ids=("BE-4", "ENG-1", "ENG-5"),
    description="Every alert is posted 1 to 5 times at once (the count drawn from the seed), 10 alerts/s through "
                "nginx for 20 s, the way a webhook sender that retries on timeouts does: one claim per alert id "
                "lets one request put it on RTSS; the others answer duplicate (or 409 while it is in flight). One "
                "signal and one order per alert id.",
    workload=Workload(op="webhook", rate_per_s=10.0, duration_s=20.0, concurrency=4, timeout_s=3.0, settle_s=8.0,
                      params={"copies": [1, 5]}),
    faults=(),
    checkers=_webhook_checks(None),
    services=("backend",),
))

register(Scenario(
    name="clickhouse-down-history",
    requirement_ids=("TV-4", "BE-4", "CH-1", "ENG-1", "ENG-5"),
    description="ClickHouse SIGKILLed 6 s into 10 alerts/s through nginx and started again 10 s later, while a chart "
                "client asks the backends for 1-minute bars 4 times a second (TradingView's UDF /history). During "
                "the outage the backend answers from its DuckDB copy of the fills it read from RTRS (TV 6), and "
                "those bars hold every executed trade; every answer must be bars or a clear 'history is "
                "unavailable' 503 within 1 s, never a hang or a 500; bars from ClickHouse return within 5 s of the "
                "restart (CH-1), and once the engines' sync has resent what waited, they hold every executed "
                "trade.",
    workload=Workload(op="webhook", rate_per_s=10.0, duration_s=24.0, concurrency=2, timeout_s=3.0, settle_s=10.0,
                      params={"also": ["history"]}),
    faults=(FaultStep("process-kill", "clickhouse", at_s=6.0, heal_after_s=10.0),),
    checkers=(CheckerSpec("history_fallback", ("TV-4",), {"fault": "process-kill"}),
              CheckerSpec("clickhouse_history", ("CH-1",)), *_webhook_checks(None)),
    services=("backend", "clickhouse"),
))

register(Scenario(
    name="tradingview-away",
    requirement_ids=("TV-1", "TV-2", "TV-3", "BE-4", "ENG-1", "ENG-5"),
    description="TradingView is cut off from the proxy for 10 s (nftables resets its webhook clients' connections, "
                "6 s into 10 alerts/s), while a local-panel user keeps trading through the same proxy: every panel "
                "order placed meanwhile is accepted (TV-3), executed or rejected with a reason (TV-2), the session "
                "holds (TV-1); when TradingView is back its alerts flow again, one signal and at most one order per "
                "accepted alert id, and RTS agrees with the brokers.",
    workload=Workload(op="webhook", rate_per_s=10.0, duration_s=24.0, concurrency=2, timeout_s=3.0, settle_s=8.0,
                      params={"also": ["panel"]}),
    faults=(FaultStep("webhook-cut", "proxy", at_s=6.0, heal_after_s=10.0),),
    checkers=(CheckerSpec("panel_fallback", ("TV-3",), {"fault": "webhook-cut"}),
              CheckerSpec("session_continuity", ("TV-1",), {"fault": "webhook-cut"}),
              CheckerSpec("lost_signals", ("TV-2",)), *_webhook_checks(None)),
    services=("backend",),
))

# -- a broker that moves (issue 20) -------------------------------------------------------------------------------
register(Scenario(
    name="requote-storm",
    requirement_ids=("BRK-4", "ENG-1", "ENG-5"),
    description="The primary broker executes EURUSD in INSTANT mode and moves the price 30 points between quote and "
                "send on half the orders for 15 s: beyond the engine's 20-point deviation that is REQUOTE (10004) "
                "with the new price. Every signal must end executed (at a price within its deviation) or rejected "
                "with a reason, never sent twice under one comment.",
    workload=Workload(op="trade", timeout_s=10.0),
    faults=(FaultStep("broker-behaviour", "broker-primary", at_s=5.0, heal_after_s=15.0,
                      params={"execution_modes": {"EURUSD": "instant"}, "requote_rate": 0.5,
                              "requote_points": 30}),),
    checkers=(CheckerSpec("duplicates", ("ENG-5", "BRK-4")), CheckerSpec("lost_signals", ("ENG-5", "BRK-4")),
              CheckerSpec("state", ("ENG-5",)), *_fencing()),
))


# -- a broker that moves (issue 20) -----------------------------------------------------------------------------
# EURUSD steps 40 points a tick (250 ms) on the drill's brokers instead of 2, so a stop 200 points away is reached in
# about 6 s and a limit 80 points away in about a second or two (first passage of a random walk; some never are)
MOVING_EURUSD = {"EURUSD": {"sigma_points": 40.0}}

register(Scenario(
    name="stops-during-failover",
    requirement_ids=("BRK-3", "ENG-1", "ENG-5"),
    description="Every signal opens a position with its SL and TP 200 points from the live price on a broker whose "
                "EURUSD walks 40 points a tick; the active engine is SIGSTOPped for 6 s at 8 s and the next active "
                "one SIGKILLed at 20 s while the price runs through the stops. After each takeover RTS must show "
                "the positions the broker closed as closed (closed_at_broker 0), no position closed twice, nothing "
                "duplicated, nothing lost.",
    workload=Workload(op="trade", rate_per_s=5.0, duration_s=30.0, timeout_s=10.0, settle_s=10.0,
                      params={"stops": {"sl_points": 200, "tp_points": 200}}),
    faults=(FaultStep("process-pause", "active-engine", at_s=8.0, heal_after_s=6.0, phase_s=1.0),
            FaultStep("process-kill", "active-engine", at_s=20.0, phase_s=1.0)),
    checkers=(CheckerSpec("broker_closes", ("BRK-3",)), CheckerSpec("duplicates", ("ENG-5",)),
              CheckerSpec("lost_signals", ("ENG-5", "BRK-3")), CheckerSpec("state", ("ENG-5", "BRK-3")),
              *_fencing()),
    broker_symbols=MOVING_EURUSD,
))

register(Scenario(
    name="pending-orders-across-takeover",
    requirement_ids=("BRK-3", "ENG-1", "ENG-5"),
    description="Every signal places a limit order 80 points from the live price (a buy under the ask, a sell over "
                "the bid) on a broker whose EURUSD walks 40 points a tick; the active engine is SIGKILLed at 10 s, so "
                "orders it placed fill while it is dead and after its successor took over. RTS must hold the "
                "positions they opened at the end (adopted), no unfilled order as a position, no signal ordered "
                "twice, none lost.",
    workload=Workload(op="trade", rate_per_s=4.0, duration_s=25.0, timeout_s=10.0, settle_s=10.0,
                      params={"pending": {"order_type": "limit", "points": 80}}),
    faults=(FaultStep("process-kill", "active-engine", at_s=10.0, phase_s=1.0),),
    checkers=(CheckerSpec("pending_fills", ("BRK-3",)), CheckerSpec("duplicates", ("ENG-5",)),
              CheckerSpec("lost_signals", ("ENG-5", "BRK-3")), CheckerSpec("state", ("ENG-5", "BRK-3")),
              *_fencing()),
    broker_symbols=MOVING_EURUSD,
))
