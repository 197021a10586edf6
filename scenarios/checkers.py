"""Checkers: pure functions that judge a recorded run. They never touch the stack, so a saved run directory can be
re-judged at any time (``tradedrill check RUN_DIR``).

Each checker takes plain data (``Operation``, ``FaultWindow``, ``Deal``, ``Signal``, ``TradeResult`` lists, see
``scenarios.history``) and returns a dataclass with

- ``valid``: True, False, or "unknown" (nothing to judge, or not observed long enough to tell);
- ``metrics``: the numbers, named as in ``targets.toml`` (``rto_s``, ``duplicate_orders``, ``lost_signals``,
  ``state_mismatches``);
- ``evidence``: the offending ids and the events that bound each number;
- ``judgements``: one per (requirement, metric) against the target from ``targets.toml`` (never a number written
  here), with the verdict under every alternative target too.

``check_run(run_dir)`` loads a run directory and applies the checkers its ``scenario.json`` names.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from reference.engine import contract
from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.history import Deal, FaultWindow, Operation, Signal, TradeResult
from scenarios.verdicts import (FAIL, PASS, UNKNOWN, UNMEASURED, Judgement, RunValidity, as_json, judge,  # noqa: F401
                                percentile, validity)


SignalOf = Callable[[str], "str | None"]

ENGINE_COMMENT_PREFIX = contract.COMMENT_PREFIX
signal_key = contract.signal_key


def default_signal_of(signal_ids: Iterable[str] = (), prefix: str = ENGINE_COMMENT_PREFIX) -> SignalOf:
    """The default comment -> signal id mapping: the engine's own (``reference.engine.contract.signal_of_comment``).
    Pass another function as ``signal_of`` when the engine under test encodes ids differently."""
    return contract.signal_of_comment(signal_ids, prefix)


signal_id_from_comment: SignalOf = default_signal_of()


def comment_index(signal_ids: Iterable[str], to_comment: Callable[[str], str]) -> SignalOf:
    """A ``signal_of`` for engines that send some other derived comment: invert the engine's own
    signal -> comment function over the signals the run submitted."""
    index = {to_comment(s): s for s in signal_ids}
    return lambda comment: index.get((comment or "").strip())


# -- results ---------------------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    checker: str
    valid: bool | str
    requirement_ids: tuple[str, ...]
    metrics: dict[str, Any]
    evidence: list[dict]
    summary: str
    judgements: list[Judgement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return as_json(asdict(self))


@dataclass
class RtoMeasurement:
    fault: str
    fault_id: str
    description: str
    inject_mono: float
    heal_mono: float | None
    rto_s: float | None  # None: no successful operation after the injection before the history ended
    observed_s: float  # injection to the end of the history
    last_ok_before: dict | None
    first_ok_after: dict | None
    failed_in_window: int
    unknown_in_window: int

    @property
    def recovered(self) -> bool:
        return self.rto_s is not None


@dataclass
class RtoResult(CheckResult):
    rule: str = ""
    f: str | None = None
    measurements: list[RtoMeasurement] = field(default_factory=list)


@dataclass
class DuplicateResult(CheckResult):
    duplicates: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class LostSignalResult(CheckResult):
    lost: list[str] = field(default_factory=list)


@dataclass
class StateResult(CheckResult):
    mismatches: list[dict] = field(default_factory=list)


@dataclass
class TimelineResult(CheckResult):
    t0: float = 0.0
    points: list[dict] = field(default_factory=list)  # per op: t, latency_ms, outcome, f, process, key
    bins: list[dict] = field(default_factory=list)  # per bin: t, ok, fail, unknown, ok_per_s
    fault_windows: list[dict] = field(default_factory=list)  # fault, description, start, end (relative s)


_jsonable = as_json  # older name, kept for saved tooling


def _op_ref(op: Operation | None, t0: float = 0.0) -> dict | None:
    if op is None:
        return None
    return {"op": op.id, "process": op.process, "f": op.f, "key": op.key, "outcome": op.outcome,
            "invoke_mono": op.invoke_mono, "complete_mono": op.complete_mono,
            "invoke_wall": op.invoke_wall, "complete_wall": op.complete_wall}


# -- RTO -------------------------------------------------------------------------------------------------------
RTO_RULE = ("RTO = completion time of the first successful (ok) operation of the measured kind that was INVOKED at "
            "or after the fault's injection, minus the injection time (monotonic clock; the fault log stamps "
            "injection after the fault took effect). Operations in flight across the injection do not count: they "
            "may have been served before the fault. Bounded below by the last ok completion before the injection.")


def check_rto(ops: Sequence[Operation], faults: Sequence[FaultWindow], *, f: str | None = None,
              fault: str | None = None, requirement_ids: Sequence[str] = ("ENG-1",),
              targets: targets_mod.Targets | None = None) -> RtoResult:
    """RTO per injected fault (optionally only faults named ``fault``), over operations of kind ``f`` (all kinds
    when None). The run's ``rto_s`` is the worst injection. A fault never followed by a success makes ``rto_s``
    a lower bound (the time observed), which fails a target it already exceeds and is otherwise unknown."""
    kind = [op for op in ops if f is None or op.f == f]
    windows = [w for w in faults if fault is None or w.fault == fault]
    end = max([op.complete_mono or op.invoke_mono for op in ops] + [w.heal_mono or w.inject_mono for w in faults],
              default=0.0)
    measurements, evidence = [], []
    for w in sorted(windows, key=lambda w: w.inject_mono):
        before = [op for op in kind if op.outcome == h.OK and op.complete_mono is not None
                  and op.complete_mono < w.inject_mono]
        after = [op for op in kind if op.outcome == h.OK and op.invoke_mono >= w.inject_mono
                 and op.complete_mono is not None]
        last_before = max(before, key=lambda op: op.complete_mono, default=None)
        first_after = min(after, key=lambda op: op.complete_mono, default=None)
        upto = first_after.complete_mono if first_after else end
        in_window = [op for op in kind if op.invoke_mono >= w.inject_mono and (op.complete_mono or end) <= upto
                     and op.outcome != h.OK]
        m = RtoMeasurement(
            fault=w.fault, fault_id=w.fault_id, description=w.description, inject_mono=w.inject_mono,
            heal_mono=w.heal_mono, rto_s=(first_after.complete_mono - w.inject_mono) if first_after else None,
            observed_s=end - w.inject_mono, last_ok_before=_op_ref(last_before), first_ok_after=_op_ref(first_after),
            failed_in_window=sum(op.outcome == h.FAIL for op in in_window),
            unknown_in_window=sum(op.outcome == h.UNKNOWN for op in in_window))
        measurements.append(m)
        evidence.append({
            "fault_id": w.fault_id, "fault": w.fault, "description": w.description,
            "inject_mono": w.inject_mono, "heal_mono": w.heal_mono, "rto_s": m.rto_s,
            "last_ok_before": m.last_ok_before, "first_ok_after": m.first_ok_after,
            "failed_in_window": m.failed_in_window, "unknown_in_window": m.unknown_in_window,
            "note": None if m.recovered else f"no successful {f or 'operation'} after the injection; "
                                             f"observed {m.observed_s:.3f} s until the history ended"})
    metrics: dict[str, Any] = {}
    lower: list[str] = []
    if measurements:
        if all(m.recovered for m in measurements):
            metrics["rto_s"] = max(m.rto_s for m in measurements)
        else:
            metrics["rto_s"] = max(m.observed_s for m in measurements if not m.recovered)
            lower.append("rto_s")
    if not measurements:
        reason = f"no fault{' ' + fault if fault else ''} injection in the fault log"
        judgements = judge({"rto_s": None}, requirement_ids, targets, unmeasured_reason=reason)
        summary = f"{reason}: RTO unmeasured"
        return RtoResult("rto", UNKNOWN, tuple(requirement_ids), {}, [{"kind": "unmeasured", "why": reason}],
                         summary, judgements, rule=RTO_RULE, f=f, measurements=[])
    if not any(op.f == f or f is None for op in ops):
        reason = f"no {f or 'client'} operation in the history"
        judgements = judge({"rto_s": None}, requirement_ids, targets, unmeasured_reason=reason)
        return RtoResult("rto", UNKNOWN, tuple(requirement_ids), {}, [{"kind": "unmeasured", "why": reason}],
                         f"{reason}: RTO unmeasured", judgements, rule=RTO_RULE, f=f, measurements=measurements)
    judgements = judge(metrics, requirement_ids, targets, lower)
    if lower:
        summary = f"not recovered: no successful {f or 'operation'} within {metrics['rto_s']:.3f} s of the injection"
    else:
        summary = f"RTO {metrics['rto_s']:.3f} s (worst of {len(measurements)} injection(s))"
    return RtoResult("rto", validity(judgements), tuple(requirement_ids), metrics, evidence, summary, judgements,
                     rule=RTO_RULE, f=f, measurements=measurements)


def _unmeasured(cls, name: str, requirement_ids: Sequence[str], targets, metrics: Sequence[str], reason: str,
                **extra) -> CheckResult:
    """A result that says why there was nothing to judge: every claimed metric ``unmeasured``, never a pass."""
    judgements = judge({m: None for m in metrics}, requirement_ids, targets, unmeasured_reason=reason)
    return cls(name, UNKNOWN, tuple(requirement_ids), {}, [{"kind": "unmeasured", "why": reason}],
               f"unmeasured: {reason}", judgements, **extra)


# -- duplicates ------------------------------------------------------------------------------------------------
def orders_by_signal(ledger: Iterable[Deal], signal_of: SignalOf = signal_id_from_comment) -> dict[str, list[dict]]:
    """Distinct broker orders per signal id (deals of one order, e.g. partial fills, are one order)."""
    orders: dict[str, dict[tuple, dict]] = defaultdict(dict)
    for d in ledger:
        sid = signal_of(d.comment)
        if sid is None:
            continue
        key = (d.broker, d.order)
        entry = orders[sid].setdefault(key, {"broker": d.broker, "order": d.order, "deals": [], "volume": 0.0,
                                             "time": d.time, "comment": d.comment, "symbol": d.symbol})
        entry["deals"].append(d.deal)
        entry["volume"] += d.volume
    return {sid: list(v.values()) for sid, v in orders.items()}


def check_duplicates(ledger: Iterable[Deal], *, signal_of: SignalOf = signal_id_from_comment,
                     requirement_ids: Sequence[str] = ("ENG-5",),
                     targets: targets_mod.Targets | None = None) -> DuplicateResult:
    """Signal ids with more than one order in the broker ledger(s), all brokers together. ``ledger`` None (no
    ledger dumped) or without one order the engine sent is ``unmeasured``: no duplicate can be seen there."""
    if ledger is None:
        return _unmeasured(DuplicateResult, "duplicates", requirement_ids, targets, ("duplicate_orders",),
                           "no broker ledger (ledger.jsonl) in the run", duplicates={})
    ledger = list(ledger)
    if not orders_by_signal(ledger, signal_of):
        return _unmeasured(DuplicateResult, "duplicates", requirement_ids, targets, ("duplicate_orders",),
                           f"the broker ledger ({len(ledger)} deal(s)) holds no order for any signal",
                           duplicates={})
    by_signal = orders_by_signal(ledger, signal_of)
    dups = {sid: orders for sid, orders in sorted(by_signal.items()) if len(orders) > 1}
    metrics = {"duplicate_orders": len(dups), "extra_orders": sum(len(o) - 1 for o in dups.values()),
               "signals_executed": len(by_signal), "deals": len(ledger)}
    judgements = judge(metrics, requirement_ids, targets)
    evidence = [{"signal": sid, "orders": [{k: o[k] for k in ("broker", "order", "deals", "volume", "time")}
                                           for o in orders]} for sid, orders in dups.items()]
    summary = (f"{len(dups)} signal(s) ordered more than once: {', '.join(list(dups)[:10])}" if dups
               else f"no duplicate orders among {len(by_signal)} executed signal(s)")
    return DuplicateResult("duplicates", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                           judgements, duplicates=dups)


# -- lost signals ----------------------------------------------------------------------------------------------
EXECUTED_STATUSES = contract.EXECUTED_STATUSES
REJECTED_STATUSES = contract.REJECTED_STATUSES


def check_lost_signals(signals: Iterable[Signal], ledger: Iterable[Deal] | None, results: Iterable[TradeResult] = (),
                       *, signal_of: SignalOf | None = None, requirement_ids: Sequence[str] = ("ENG-5",),
                       targets: targets_mod.Targets | None = None,
                       backlog: Iterable[str] = ()) -> LostSignalResult:
    """Acknowledged signals that were neither executed at the broker nor rejected with a reason on RTRS.
    The broker ledger is the ground truth for "executed": an RTRS entry saying executed without a deal is lost.

    ``backlog``: signal ids still queued when the run ended (undelivered on RTSS or pending in the consumer
    group, ``backlog.json``): not lost, counted as ``backlog_signals``. "Lost" keeps its meaning: acknowledged,
    gone, never executed, never rejected. Also reported (not judged): signals whose submission definitely failed
    yet executed, and orders for signals never submitted. No ledger, or no acknowledged signal: ``unmeasured``."""
    signals = list(signals)
    if ledger is None:
        return _unmeasured(LostSignalResult, "lost_signals", requirement_ids, targets, ("lost_signals",),
                           "no broker ledger (ledger.jsonl) in the run: executed signals cannot be told", lost=[])
    if not any(s.ack == h.OK for s in signals):
        return _unmeasured(LostSignalResult, "lost_signals", requirement_ids, targets, ("lost_signals",),
                           f"no acknowledged signal among {len(signals)} submitted: nothing could be lost", lost=[])
    queued = set(backlog)
    in_backlog: list[str] = []
    signal_of = signal_of or default_signal_of(s.id for s in signals)
    executed = set(orders_by_signal(ledger, signal_of))
    results_by_signal: dict[str, list[TradeResult]] = defaultdict(list)
    for r in results:
        results_by_signal[r.signal].append(r)

    def rejected_with_reason(sid: str) -> TradeResult | None:
        return next((r for r in results_by_signal.get(sid, ())
                     if r.status.lower() in REJECTED_STATUSES and (r.reason or "").strip()), None)

    acked = [s for s in signals if s.ack == h.OK]
    lost, evidence, rejected = [], [], []
    for s in acked:
        if s.id in executed:
            continue
        rej = rejected_with_reason(s.id)
        if rej is not None:
            rejected.append(s.id)
            continue
        rs = results_by_signal.get(s.id, [])
        if not rs and s.id in queued:
            in_backlog.append(s.id)
            continue
        if not rs:
            why = "acknowledged, no deal at the broker, no result on RTRS"
        elif any(r.status.lower() in EXECUTED_STATUSES for r in rs):
            why = "RTRS says executed but the broker ledger has no deal for it"
        elif any(r.status.lower() in REJECTED_STATUSES for r in rs):
            why = "rejected on RTRS without a reason"
        else:
            why = f"RTRS status {rs[-1].status!r} is neither executed nor rejected"
        lost.append(s.id)
        evidence.append({"signal": s.id, "ack_mono": s.mono, "why": why,
                         "rtrs": [{"status": r.status, "reason": r.reason, "order": r.order} for r in rs]})
    submitted = {s.id for s in signals}
    failed_but_executed = sorted(s.id for s in signals if s.ack == h.FAIL and s.id in executed)
    never_submitted = sorted(executed - submitted) if signals else []
    for sid in failed_but_executed:
        evidence.append({"signal": sid, "why": "submission recorded as a definite failure, yet executed at the broker",
                         "kind": "failed-but-executed"})
    metrics = {"lost_signals": len(lost), "acknowledged": len(acked), "executed": len(executed & submitted),
               "rejected_with_reason": len(rejected), "unknown_acks": sum(s.ack == h.UNKNOWN for s in signals),
               "failed_but_executed": len(failed_but_executed), "orders_for_unsubmitted_signals": len(never_submitted),
               "backlog_signals": len(in_backlog)}
    if in_backlog:
        evidence.append({"kind": "backlog", "count": len(in_backlog), "signals": in_backlog[:50],
                         "why": "still queued on RTSS (undelivered or pending) when the run ended: not lost"})
    judgements = judge({"lost_signals": len(lost)}, requirement_ids, targets)
    summary = (f"{len(lost)} acknowledged signal(s) lost: {', '.join(lost[:10])}" if lost
               else f"all {len(acked) - len(in_backlog)} acknowledged signal(s) that left the queue executed or "
                    f"rejected with a reason")
    if in_backlog:
        summary += f"; backlog {len(in_backlog)} still queued at the end"
    return LostSignalResult("lost_signals", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                            judgements, lost=lost)


# -- engine state against the broker ---------------------------------------------------------------------------
_SELL = {1, "1", "sell", "short", "SELL", "Sell"}
_BUY = {0, "0", "buy", "long", "BUY", "Buy"}


def _side_sign(value: Any) -> int | None:
    if value in _BUY:
        return 1
    if value in _SELL:
        return -1
    return None


def broker_positions(ledger: Iterable[Deal]) -> tuple[dict[str, float], list[Any]]:
    """Net volume per symbol (buy +, sell -) from the ledger, and the deals whose side is unknown."""
    net: dict[str, float] = defaultdict(float)
    unknown_side = []
    for d in ledger:
        sign = _side_sign(d.type)
        if sign is None:
            unknown_side.append(d.deal)
            continue
        net[d.symbol] += sign * d.volume
    return dict(net), unknown_side


def engine_positions(rts: dict) -> dict[str, float] | None:
    """Net volume per symbol from an RTS dump; accepts {symbol: net}, {symbol: {volume, type|side}} or a list of
    {symbol, volume, type|side}. None when the dump has no positions."""
    raw = rts.get("positions")
    if raw is None:
        return None
    items: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    else:
        items = [(p.get("symbol", ""), p) for p in raw]
    net: dict[str, float] = defaultdict(float)
    for symbol, p in items:
        if isinstance(p, (int, float)):
            net[symbol] += float(p)
        else:
            sign = _side_sign(p.get("type", p.get("side", 0)))
            net[p.get("symbol", symbol)] += (sign or 1) * float(p.get("volume", 0.0))
    return dict(net)


def engine_orders(rts: dict) -> dict[str, dict]:
    raw = rts.get("orders", rts.get("signals")) or {}
    if isinstance(raw, list):
        return {str(o.get("signal", o.get("signal_id", o.get("id")))): o for o in raw}
    return {str(k): (v if isinstance(v, dict) else {"status": v}) for k, v in raw.items()}


def check_state(rts: dict | None, ledger: Iterable[Deal], *, signal_of: SignalOf = signal_id_from_comment,
                tolerance: float = 1e-9, requirement_ids: Sequence[str] = ("ENG-5",),
                targets: targets_mod.Targets | None = None) -> StateResult:
    """The engine's state (RTS) against the broker ledger: net volume per symbol, and per signal whether it was
    executed (and with which order). No RTS dump or no ledger: ``unmeasured``."""
    if rts is None:
        return _unmeasured(StateResult, "state", requirement_ids, targets, ("state_mismatches",),
                           "no RTS dump (rts.json) in the run", mismatches=[])
    if ledger is None:
        return _unmeasured(StateResult, "state", requirement_ids, targets, ("state_mismatches",),
                           "no broker ledger (ledger.jsonl) in the run", mismatches=[])
    ledger = list(ledger)
    if not ledger and not engine_orders(rts):
        return _unmeasured(StateResult, "state", requirement_ids, targets, ("state_mismatches",),
                           "neither the broker ledger nor RTS holds an order: nothing to compare", mismatches=[])
    mismatches: list[dict] = []
    broker_net, unknown_side = broker_positions(ledger)
    eng_net = engine_positions(rts)
    if eng_net is not None and not unknown_side:
        for symbol in sorted(set(broker_net) | set(eng_net)):
            b, e = broker_net.get(symbol, 0.0), eng_net.get(symbol, 0.0)
            if abs(b - e) > tolerance:
                mismatches.append({"kind": "position", "symbol": symbol, "broker": round(b, 10),
                                   "engine": round(e, 10)})
    broker_orders = orders_by_signal(ledger, signal_of)
    eng_orders = engine_orders(rts)
    for sid in sorted(set(broker_orders) | set(eng_orders)):
        eo, bo = eng_orders.get(sid), broker_orders.get(sid)
        eng_exec = eo is not None and str(eo.get("status", "")).lower() in EXECUTED_STATUSES
        if bo and not eng_exec and eng_orders:
            mismatches.append({"kind": "missed", "signal": sid, "broker_orders": [o["order"] for o in bo],
                               "engine": eo, "why": "executed at the broker, not recorded as executed in RTS"})
        elif eng_exec and not bo:
            mismatches.append({"kind": "phantom", "signal": sid, "engine": eo,
                               "why": "RTS says executed, the broker ledger has no deal for it"})
        elif eng_exec and bo and eo.get("order") is not None and \
                str(eo["order"]) not in {str(o["order"]) for o in bo}:
            mismatches.append({"kind": "order", "signal": sid, "engine_order": eo["order"],
                               "broker_orders": [o["order"] for o in bo]})
    metrics = {"state_mismatches": len(mismatches),
               "positions_compared": len(set(broker_net) | set(eng_net or {})) if eng_net is not None else 0,
               "signals_compared": len(set(broker_orders) | set(eng_orders))}
    evidence = list(mismatches)
    if unknown_side:
        evidence.append({"kind": "note", "why": f"{len(unknown_side)} ledger deal(s) without a side: positions "
                                                f"not compared", "deals": unknown_side[:20]})
    judgements = judge({"state_mismatches": len(mismatches)}, requirement_ids, targets)
    summary = (f"{len(mismatches)} disagreement(s) between RTS and the broker ledger" if mismatches
               else "RTS agrees with the broker ledger")
    return StateResult("state", validity(judgements), tuple(requirement_ids), metrics, evidence, summary, judgements,
                       mismatches=mismatches)


# -- latency and throughput timeline ---------------------------------------------------------------------------
_percentile = percentile


def timeline(ops: Sequence[Operation], faults: Sequence[FaultWindow] = (), *, f: str | None = None,
             bin_s: float = 1.0, t0: float | None = None) -> TimelineResult:
    """Per-operation latency and per-bin throughput on a time axis relative to ``t0`` (default: the first
    invoke or injection), with fault windows, for plotting. Latency stats are over ok operations outside every
    fault window. Not a judgement: ``valid`` is True whenever there are operations."""
    kind = [op for op in ops if f is None or op.f == f]
    starts = [op.invoke_mono for op in kind] + [w.inject_mono for w in faults]
    if t0 is None:
        t0 = min(starts, default=0.0)
    end = max([op.complete_mono or op.invoke_mono for op in kind] + [w.heal_mono or w.inject_mono for w in faults],
              default=t0)
    points = [{"t": op.invoke_mono - t0, "done": None if op.complete_mono is None else op.complete_mono - t0,
               "latency_ms": None if op.latency is None else op.latency * 1000.0, "outcome": op.outcome,
               "f": op.f, "process": op.process, "key": op.key, "op": op.id} for op in kind]
    n_bins = max(1, int(math.ceil((end - t0) / bin_s)) + 1) if kind else 0
    bins = [{"t": i * bin_s, "ok": 0, "fail": 0, "unknown": 0} for i in range(n_bins)]
    for op in kind:
        at = (op.complete_mono if op.complete_mono is not None else op.invoke_mono) - t0
        i = min(n_bins - 1, max(0, int(at // bin_s)))
        bins[i][op.outcome] += 1
    for b in bins:
        b["ok_per_s"] = b["ok"] / bin_s
    fw = [{"fault": w.fault, "fault_id": w.fault_id, "description": w.description, "start": w.inject_mono - t0,
           "end": None if w.heal_mono is None else w.heal_mono - t0} for w in faults]

    def in_fault(op: Operation) -> bool:
        return any(op.invoke_mono <= (w.heal_mono if w.heal_mono is not None else end) and
                   (op.complete_mono or end) >= w.inject_mono for w in faults)

    steady = [op.latency * 1000.0 for op in kind if op.outcome == h.OK and op.latency is not None
              and not in_fault(op)]
    duration = max(end - t0, 1e-9)
    metrics = {"ops": len(kind), "ok": sum(op.outcome == h.OK for op in kind),
               "fail": sum(op.outcome == h.FAIL for op in kind),
               "unknown": sum(op.outcome == h.UNKNOWN for op in kind),
               "duration_s": end - t0, "throughput_ok_per_s": sum(op.outcome == h.OK for op in kind) / duration,
               "latency_p50_ms": _percentile(steady, 50), "latency_p95_ms": _percentile(steady, 95),
               "latency_max_ms": max(steady) if steady else None}
    summary = (f"{metrics['ops']} op(s): {metrics['ok']} ok, {metrics['fail']} fail, {metrics['unknown']} unknown"
               + (f"; steady p95 {metrics['latency_p95_ms']:.1f} ms" if steady else ""))
    return TimelineResult("timeline", True if kind else UNKNOWN, (), metrics, [], summary, [], t0=t0,
                          points=points, bins=bins, fault_windows=fw)


# -- a whole run directory -------------------------------------------------------------------------------------
class RunView:
    """A run directory's data, each file loaded at most once (checkers share one view). ``ledger()`` is None
    when the run has no ledger.jsonl, so a checker can tell "no deals" from "never dumped"."""

    def __init__(self, run: h.RunDir, signal_of: SignalOf | None = None):
        self.run = run
        self._cache: dict[str, Any] = {}
        self._signal_of = signal_of

    def _once(self, name: str, load: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = load()
        return self._cache[name]

    def operations(self) -> list[Operation]:
        return self._once("ops", self.run.operations)

    def fault_windows(self) -> list[FaultWindow]:
        return self._once("windows", self.run.fault_windows)

    def ledger(self) -> list[Deal] | None:
        return self._once("ledger", lambda: self.run.ledger() if self.run.has(h.LEDGER) else None)

    def signals(self) -> list[Signal]:
        return self._once("signals", self.run.signals)

    def trade_results(self) -> list[TradeResult]:
        return self._once("results", self.run.trade_results)

    def trade_state(self) -> dict | None:
        return self._once("rts", self.run.trade_state)

    def backlog(self) -> list[str]:
        return self._once("backlog", lambda: list((self.run.backlog() or {}).get("signals", [])))

    @property
    def signal_of(self) -> SignalOf:
        if self._signal_of is None:
            config = self.run.config if isinstance(self.run.config, dict) else {}
            self._signal_of = default_signal_of((s.id for s in self.signals()),
                                                config.get("comment_prefix", ENGINE_COMMENT_PREFIX))
        return self._signal_of


@dataclass(frozen=True)
class Checker:
    """One entry of the checker table (Jepsen's ``checker.clj`` ``compose`` over a map of names):
    ``fn(view, params, requirement_ids, targets) -> CheckResult``; ``metrics``: the targets.toml metrics it
    judges (a scenario claiming a requirement through it needs a target for each); ``params``: the parameters it
    reads from a scenario's ``CheckerSpec.params``."""

    name: str
    fn: Callable[[RunView, dict, tuple[str, ...], targets_mod.Targets], CheckResult]
    metrics: tuple[str, ...]
    description: str
    params: tuple[str, ...] = ()


def _rto(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_rto(view.operations(), view.fault_windows(), f=params.get("f"), fault=params.get("fault"),
                     requirement_ids=rids, targets=targets)


def _duplicates(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_duplicates(view.ledger(), signal_of=view.signal_of, requirement_ids=rids, targets=targets)


def _lost(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_lost_signals(view.signals(), view.ledger(), view.trade_results(), signal_of=view.signal_of,
                              requirement_ids=rids, targets=targets, backlog=view.backlog())


def _state(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_state(view.trade_state(), view.ledger(), signal_of=view.signal_of, requirement_ids=rids,
                       targets=targets)


CHECKERS: dict[str, Checker] = {c.name: c for c in (
    Checker("rto", _rto, ("rto_s",), "fault injection to the first successful operation of kind f invoked after it",
            ("f", "fault")),
    Checker("duplicates", _duplicates, ("duplicate_orders",), "signal ids with more than one broker order"),
    Checker("lost_signals", _lost, ("lost_signals",),
            "acknowledged signals neither executed at the broker nor rejected with a reason (backlog apart)"),
    Checker("state", _state, ("state_mismatches",), "RTS against the broker ledger: positions and signals"),
)}

DEFAULT_CHECKERS = [{"checker": name, "requirement_ids": ["ENG-1" if name == "rto" else "ENG-5"], "params": {}}
                    for name in CHECKERS]


@dataclass
class RunCheck:
    """Every checker's result for one run directory, plus its timeline and whether the run can be judged."""

    run_dir: str
    scenario: str
    repeat: int | None
    seed: int | None
    results: list[CheckResult]
    timeline: TimelineResult
    fault_windows: list[FaultWindow]
    run_validity: RunValidity = field(default_factory=lambda: RunValidity(True))

    @property
    def valid(self) -> bool | str:
        """Jepsen's merge-valid over the checkers; ``"invalid"`` when the run itself cannot be judged."""
        if not self.run_validity.valid:
            return "invalid"
        vals = [r.valid for r in self.results]
        if False in vals:
            return False
        if vals and all(v is True for v in vals):
            return True
        return UNKNOWN

    @property
    def judgements(self) -> list[Judgement]:
        """The judgements of a valid run; an invalid run's numbers prove nothing and are not aggregated."""
        if not self.run_validity.valid:
            return []
        return [j for r in self.results for j in r.judgements]

    def to_dict(self) -> dict:
        return as_json({"run_dir": self.run_dir, "scenario": self.scenario, "repeat": self.repeat,
                        "seed": self.seed, "valid": self.valid, "run_validity": asdict(self.run_validity),
                        "results": [r.to_dict() for r in self.results], "timeline": self.timeline.to_dict(),
                        "fault_windows": [asdict(w) for w in self.fault_windows]})


def _spec_dict(spec: Any) -> dict:
    if isinstance(spec, dict):
        return {"checker": spec.get("checker") or spec.get("name"), "requirement_ids": spec.get("requirement_ids", []),
                "params": spec.get("params", {})}
    return {"checker": spec.checker, "requirement_ids": list(spec.requirement_ids), "params": dict(spec.params)}


def run_checker(spec: Any, view: RunView, targets: targets_mod.Targets) -> CheckResult:
    """Look the checker up and run it, Jepsen's ``check-safe``: an unknown name or an exception becomes a result
    with ``valid="unknown"`` and the error as evidence, so one broken checker never hides the others."""
    spec = _spec_dict(spec)
    name, rids, params = spec["checker"], tuple(spec["requirement_ids"]), spec["params"]
    checker = CHECKERS.get(name)
    if checker is None:
        why = f"unknown checker {name!r}; known: {', '.join(CHECKERS)}"
        return CheckResult(str(name), UNKNOWN, rids, {}, [{"kind": "error", "why": why}], why,
                           judge({}, rids, targets))
    try:
        return checker.fn(view, params, rids, targets)
    except Exception as exc:  # noqa: BLE001 - check-safe: the error is the evidence
        why = f"checker {name} raised {type(exc).__name__}: {exc}"
        return CheckResult(name, UNKNOWN, rids, {}, [{"kind": "error", "why": why}], why,
                           judge({m: None for m in checker.metrics}, rids, targets, unmeasured_reason=why))


def run_validity(run: h.RunDir, scenario: dict, ops: Sequence[Operation], fault_records: Sequence[dict]) -> RunValidity:
    """Whether a run holds enough to be judged: it finished (not interrupted or crashed), its history has
    operations, and every fault step of its scenario was injected (the fault log's ``inject`` records)."""
    reasons = []
    for name, read in ((h.LEDGER, run.ledger), (h.RTRS, run.trade_results), (h.RTS, run.trade_state),
                       (h.BACKLOG, run.backlog), (h.SIGNALS, run.signals)):
        try:
            read()
        except (ValueError, TypeError, KeyError) as exc:  # a damaged file: its verdicts would be guesses
            reasons.append(f"{name} cannot be read: {exc}")
    status = run.status()
    if status is not None and status.get("state") != "complete":
        reasons.append(f"the drill did not finish: {status.get('state')}"
                       + (f" during {status['phase']}" if status.get("phase") else "")
                       + (f" ({status['reason']})" if status.get("reason") else ""))
    if not scenario:
        reasons.append(f"no {h.SCENARIO} in {run.path}: the run never started")
    if not run.has(h.HISTORY):
        reasons.append(f"no {h.HISTORY}: the run recorded no client operation")
    elif not ops:
        reasons.append(f"{h.HISTORY} is empty: the run recorded no client operation")
    injected: dict[str, int] = defaultdict(int)
    for rec in fault_records:
        if rec.get("event") == "inject":
            injected[str(rec.get("fault"))] += 1
    wanted: dict[str, int] = defaultdict(int)
    for step in scenario.get("faults", ()) or ():
        wanted[str(step.get("fault"))] += 1
    for fault, n in wanted.items():
        if injected.get(fault, 0) < n:
            reasons.append(f"the scenario schedules {n} {fault} fault(s); the fault log shows "
                           f"{injected.get(fault, 0)} injected")
    return RunValidity(not reasons, reasons)


def check_run(run_dir: str | Path | h.RunDir, *, checkers: Sequence[Any] | None = None,
              signal_of: SignalOf | None = None, targets: targets_mod.Targets | None = None) -> RunCheck:
    """Apply the checkers of the run's scenario.json (or ``checkers``; or the registry's definition of the
    scenario; or DEFAULT_CHECKERS) to a saved run directory, and say whether the run can be judged at all.
    Raises FileNotFoundError when ``run_dir`` is not a folder."""
    run = run_dir if isinstance(run_dir, h.RunDir) else h.RunDir(run_dir)
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path} is not a run directory; pass the folder a drill wrote "
                                f"(it holds history.jsonl)")
    targets = targets or targets_mod.load()
    scenario = run.scenario
    if checkers is None:
        checkers = scenario.get("checkers")
    if not checkers and scenario.get("name"):
        from scenarios import registry
        known = registry.get(scenario["name"])
        checkers = known.checkers if known else None
    checkers = checkers or DEFAULT_CHECKERS
    view = RunView(run, signal_of)
    ops, windows = view.operations(), view.fault_windows()
    results = [run_checker(spec, view, targets) for spec in checkers]
    tl_f = next((_spec_dict(s)["params"].get("f") for s in checkers if _spec_dict(s)["checker"] == "rto"), None)
    return RunCheck(str(run.path), scenario.get("name") or run.path.name, scenario.get("repeat"), run.seed,
                    results, timeline(ops, windows, f=tl_f), windows,
                    run_validity(run, scenario, ops, run.fault_events()))
