"""Checkers: pure functions that judge a recorded run. They never touch the stack, so a saved run directory can be
re-judged at any time (``tradedrill check RUN_DIR``).

Each checker takes plain data (``Operation``, ``FaultWindow``, ``Deal``, ``Signal``, ``TradeResult`` lists, see
``scenarios.history``) and returns a dataclass with

- ``valid``: True, False, or "unknown" (nothing to judge, or not observed long enough to tell);
- ``metrics``: the numbers, named as in ``targets.toml`` (``rto_s``, ``duplicate_orders``, ``lost_signals``,
  ``state_mismatches``; from the engines' event logs and the RTS/RTRS dumps: ``stale_sends``,
  ``concurrent_active_engines``, ``undelivered_results``, ``repeated_results``, ``stale_writes``);
- ``evidence``: the offending ids and the events that bound each number;
- ``judgements``: one per (requirement, metric) against the target from ``targets.toml`` (never a number written
  here), with the verdict under every alternative target too.

``check_run(run_dir)`` loads a run directory and applies the checkers its ``scenario.json`` names.
"""
from __future__ import annotations

import bisect
import json
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


# -- the engines' own records: leases, sends, fenced writes (issue 18) -----------------------------------------
ENGINE_EVENTS_GLOB = "stack/engines/*/events-*.jsonl"  # where the drill's engines write their event logs
DEFAULT_LEASE_TTL_S = 3.0  # ENG-1: the lease TTL (reference/engine/config.py lease_ttl_s) when the run does not say
STALE_EVIDENCE_MAX = 200   # evidence items listed per checker; the metrics count them all


@dataclass(frozen=True)
class LeaseAcquisition:
    """One ``lease_acquired`` event: who took the lease, under which fencing token, when (both clocks)."""

    instance: str
    token: int
    mono: float | None
    ts: float | None
    pid: Any = None
    previous: str = ""


@dataclass
class OneActiveResult(CheckResult):
    violations: list[dict] = field(default_factory=list)   # stale sends
    overlaps: list[dict] = field(default_factory=list)     # two holders sending at once


@dataclass
class DeliveryResult(CheckResult):
    undelivered: list[str] = field(default_factory=list)
    repeated: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class StaleWriteResult(CheckResult):
    stale: list[dict] = field(default_factory=list)


def read_event_lines(path: str | Path) -> tuple[list[dict], int]:
    """Every JSON object of one engine event log, and how many lines could not be read. Lenient on purpose: a
    SIGKILLed engine leaves a torn last line, and the restarted one appends after it, so a torn line may sit in the
    middle of the file."""
    events, torn = [], 0
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(row, dict):
            events.append(row)
        else:
            torn += 1
    return events, torn


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _token(value: Any) -> int | None:
    """A fencing token as an int (events write ints, Redis hashes strings); None when absent or not a number."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else h._wall_iso(ts)


def lease_acquisitions(events: Iterable[dict], clock: str = "mono") -> list[LeaseAcquisition]:
    """Every ``lease_acquired`` event with a time on ``clock`` ("mono" or "ts"), in time order."""
    out = []
    for e in events:
        if e.get("event") != "lease_acquired":
            continue
        parsed = contract.parse_lease(e.get("value"))
        token = _token(e.get("token"))
        if token is None and parsed:
            token = parsed[1]
        instance = str(e.get("instance") or (parsed[0] if parsed else ""))
        if token is None or _num(e.get(clock)) is None:
            continue
        out.append(LeaseAcquisition(instance, token, _num(e.get("mono")), _num(e.get("ts")), e.get("pid"),
                                    str(e.get("previous") or "")))
    return sorted(out, key=lambda a: getattr(a, clock))


def _newest_at(acquisitions: Sequence[LeaseAcquisition], times: Sequence[float], t: float) -> LeaseAcquisition | None:
    """The latest acquisition at or before ``t`` (``times``: the acquisitions' times on the same clock)."""
    i = bisect.bisect_right(times, t)
    return acquisitions[i - 1] if i else None


def _holder(a: LeaseAcquisition) -> str:
    return f"{a.instance}:{a.token}"


def sending_bursts(sends: Sequence[dict], gap_s: float) -> list[dict]:
    """The periods in which each lease holder (instance, token) was sending: its ``order_send_invoke`` times,
    split wherever it sent nothing for longer than ``gap_s`` (a paused holder's two bursts stay apart)."""
    by_holder: dict[tuple, list[float]] = defaultdict(list)
    for s in sends:
        by_holder[(s["instance"], s["token"])].append(s["mono"])
    bursts = []
    for (instance, token), times in by_holder.items():
        times.sort()
        start = prev = times[0]
        count = 1
        for t in times[1:]:
            if t - prev > gap_s:
                bursts.append({"instance": instance, "token": token, "start": start, "end": prev, "sends": count})
                start, count = t, 0
            prev = t
            count += 1
        bursts.append({"instance": instance, "token": token, "start": start, "end": prev, "sends": count})
    return sorted(bursts, key=lambda b: (b["start"], b["end"]))


def _concurrency(bursts: Sequence[dict]) -> tuple[int, float, list[dict]]:
    """(most holders sending at one instant, seconds with two or more sending, every overlapping pair)."""
    if not bursts:
        return 0, 0.0, []
    points = sorted([(b["start"], 0) for b in bursts] + [(b["end"], 1) for b in bursts])  # starts before ends
    active = most = 0
    overlap, since = 0.0, None
    for t, kind in points:
        if kind == 0:
            active += 1
            most = max(most, active)
            if active == 2:
                since = t
        else:
            if active == 2 and since is not None:
                overlap += t - since
                since = None
            active -= 1
    pairs = []
    for i, a in enumerate(bursts):
        for b in bursts[i + 1:]:
            if (a["instance"], a["token"]) == (b["instance"], b["token"]):
                continue
            lo, hi = max(a["start"], b["start"]), min(a["end"], b["end"])
            if lo <= hi:
                pairs.append({"kind": "overlap", "holders": [f"{a['instance']}:{a['token']}",
                                                             f"{b['instance']}:{b['token']}"],
                              "from_mono": lo, "to_mono": hi, "seconds": round(hi - lo, 6)})
    return most, overlap, pairs


ONE_ACTIVE_RULE = ("A send (order_send_invoke) is stale when the lease holder that sent it (instance, fencing token) "
                   "is not the newest lease_acquired at that instant (monotonic clock: the engines' mono, the same "
                   "clock as history.jsonl and faults.jsonl). An invoke its own sending thread then stopped "
                   "(order_send_fenced, same process, signal and comment) was never sent and is not judged. "
                   "Overlap: the periods in which each holder was sending (its sends, split at gaps longer than the "
                   "lease TTL) that intersect another holder's.")


def check_one_active(events: Sequence[dict] | None, *, gap_s: float = DEFAULT_LEASE_TTL_S,
                     requirement_ids: Sequence[str] = ("ENG-1",), targets: targets_mod.Targets | None = None,
                     torn_lines: int = 0) -> OneActiveResult:
    """ENG-1 "exactly one active instance processes signals", from the engines' event logs: no
    ``order_send_invoke`` by a holder whose token is older than the newest ``lease_acquired`` at that instant
    (``stale_sends``), and the most holders sending at once (``concurrent_active_engines``) with the seconds two
    of them overlapped (``active_overlap_s``). No event logs, no acquisition or no send: ``unmeasured``."""
    metrics_judged = ("stale_sends", "concurrent_active_engines")
    if not events:
        return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                           f"no engine event log ({ENGINE_EVENTS_GLOB}) in the run: who was active cannot be told")
    acquisitions = lease_acquisitions(events, "mono")
    if not acquisitions:
        return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                           f"the engines' event logs ({len(events)} events) hold no lease_acquired: who was active "
                           f"cannot be told")
    sends, open_sends, stopped = [], defaultdict(list), 0
    for e in sorted((e for e in events if _num(e.get("mono")) is not None), key=lambda e: _num(e.get("mono"))):
        key = (e.get("pid"), e.get("instance"), e.get("signal_id"), e.get("comment"))
        if e.get("event") == "order_send_invoke":
            send = {"instance": str(e.get("instance") or ""), "token": _token(e.get("token")),
                    "mono": _num(e.get("mono")), "ts": _num(e.get("ts")), "pid": e.get("pid"),
                    "signal": e.get("signal_id"), "comment": e.get("comment"), "broker": e.get("broker"),
                    "attempt": e.get("attempt"), "sent": True}
            sends.append(send)
            open_sends[key].append(send)
        elif e.get("event") == "order_send_fenced" and open_sends.get(key):
            # the sending thread's own fencing check stopped this order before it was written: never sent
            open_sends[key].pop()["sent"] = False
            stopped += 1
    sends = [s for s in sends if s["sent"]]
    if not sends:
        return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                           f"{len(acquisitions)} lease acquisition(s) but no order_send_invoke in the engines' event "
                           f"logs" + (f" that was not stopped by fencing ({stopped} were)" if stopped else "")
                           + ": no send to judge")
    sends.sort(key=lambda s: s["mono"])
    times = [a.mono for a in acquisitions]
    violations = []
    for s in sends:
        newest = _newest_at(acquisitions, times, s["mono"])
        if newest is None:
            why = "sent before any lease acquisition in the engines' event logs"
        elif s["token"] is None:
            why = None if s["instance"] == newest.instance else \
                f"sent by {s['instance']} while {newest.instance} held the newest lease (no token recorded)"
        elif (s["instance"], s["token"]) != (newest.instance, newest.token):
            why = (f"sent under token {s['token']} by {s['instance']} {s['mono'] - newest.mono:.3f} s after "
                   f"{newest.instance} acquired token {newest.token}")
        else:
            why = None
        if why is None:
            continue
        violations.append({"kind": "stale-send", "instance": s["instance"], "pid": s["pid"], "token": s["token"],
                           "newest_token": newest.token if newest else None,
                           "newest_instance": newest.instance if newest else None,
                           "newest_acquired_mono": newest.mono if newest else None, "mono": s["mono"],
                           "time": _iso(s["ts"]), "signal": s["signal"], "comment": s["comment"],
                           "broker": s["broker"], "why": why})
    bursts = sending_bursts(sends, gap_s)
    most, overlap_s, pairs = _concurrency(bursts)
    refused = [e for e in events if e.get("event") == "fenced_write_refused"]
    metrics = {"stale_sends": len(violations), "concurrent_active_engines": most,
               "active_overlap_s": round(overlap_s, 6), "sends": len(sends), "acquisitions": len(acquisitions),
               "holders": len({(s["instance"], s["token"]) for s in sends}),
               "sends_stopped_by_fencing": stopped, "fenced_writes_refused": len(refused),
               "unreadable_event_lines": torn_lines}
    judgements = judge({k: metrics[k] for k in metrics_judged}, requirement_ids, targets)
    evidence: list[dict] = violations[:STALE_EVIDENCE_MAX] + pairs
    if len(violations) > STALE_EVIDENCE_MAX:
        evidence.append({"kind": "note", "why": f"{len(violations) - STALE_EVIDENCE_MAX} more stale send(s) not "
                                                f"listed"})
    evidence.append({"kind": "acquisitions", "rule": ONE_ACTIVE_RULE,
                     "leases": [{"holder": _holder(a), "mono": a.mono, "time": _iso(a.ts), "previous": a.previous}
                                for a in acquisitions[:50]],
                     "bursts": [{k: b[k] for k in ("instance", "token", "start", "end", "sends")}
                                for b in bursts[:50]]})
    if violations:
        first = violations[0]
        summary = (f"{len(violations)} send(s) by a fenced-out lease holder (first: {first['instance']} token "
                   f"{first['token']} after {first['newest_instance']} took token {first['newest_token']}); "
                   f"{most} holder(s) sending at once, overlap {overlap_s:.3f} s")
    elif most > 1:
        summary = f"{most} holders sending at once for {overlap_s:.3f} s"
    else:
        summary = (f"one active sender at a time: {len(sends)} send(s) by {metrics['holders']} successive lease "
                   f"holder(s), none after a newer acquisition")
    return OneActiveResult("one_active", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                           judgements, violations=violations, overlaps=pairs)


DUPLICATE_STATUS = contract.ResultStatus.DUPLICATE.value


def check_results_delivered(signals: Iterable[Signal], results: Iterable[TradeResult] | None, *,
                            backlog: Iterable[str] = (), requirement_ids: Sequence[str] = ("ENG-5",),
                            targets: targets_mod.Targets | None = None) -> DeliveryResult:
    """MT5-HA 3.6 (trade results go Redis RTRS -> DuckDB -> ClickHouse): every acknowledged signal ends with
    exactly one result on RTRS, whatever path it took (executed, rejected, adopted after a takeover, flushed
    after a Redis outage). Executed at the broker without a result is ``undelivered_results``; two or more
    results for one signal is ``repeated_results``. A ``duplicate`` result (a second RTSS entry with the same signal
    id) is counted apart; signals still queued at the end (backlog.json) are backlog, not failures. No RTRS dump,
    or no acknowledged signal: ``unmeasured``."""
    judged = ("undelivered_results", "repeated_results")
    signals = list(signals)
    if results is None:
        return _unmeasured(DeliveryResult, "results_delivered", requirement_ids, targets, judged,
                           f"no RTRS dump ({h.RTRS}) in the run: delivered results cannot be counted")
    acked = [s for s in signals if s.ack == h.OK]
    if not acked:
        return _unmeasured(DeliveryResult, "results_delivered", requirement_ids, targets, judged,
                           f"no acknowledged signal among {len(signals)} submitted: nothing had to be delivered")
    by_signal: dict[str, list[TradeResult]] = defaultdict(list)
    duplicate_status: dict[str, int] = defaultdict(int)
    for r in results:
        if r.status.strip().lower() == DUPLICATE_STATUS:
            duplicate_status[r.signal] += 1
        else:
            by_signal[r.signal].append(r)
    queued = set(backlog)

    def ref(r: TradeResult) -> dict:
        raw = r.raw
        return {"entry": raw.get("entry"), "entry_id": raw.get("entry_id"), "status": r.status,
                "instance": raw.get("instance"), "token": raw.get("token"), "order": r.order}

    undelivered, repeated, in_backlog, evidence = [], {}, [], []
    for s in acked:
        rs = by_signal.get(s.id, [])
        if len(rs) == 1:
            continue
        if not rs:
            if s.id in queued:
                in_backlog.append(s.id)
                continue
            undelivered.append(s.id)
            evidence.append({"kind": "undelivered", "signal": s.id, "ack_mono": s.mono,
                             "why": "acknowledged, not in the backlog, and no result on RTRS"
                                    + (" (only a 'duplicate' answer)" if duplicate_status.get(s.id) else "")})
        else:
            repeated[s.id] = [ref(r) for r in rs]
            evidence.append({"kind": "repeated", "signal": s.id, "results": repeated[s.id],
                             "why": f"{len(rs)} results on RTRS for one signal"})
    submitted = {s.id for s in signals}
    unsubmitted = sorted(sid for sid in by_signal if sid not in submitted)
    delivered = sum(1 for s in acked if len(by_signal.get(s.id, ())) == 1)
    metrics = {"undelivered_results": len(undelivered), "repeated_results": len(repeated),
               "acknowledged": len(acked), "delivered_once": delivered, "backlog_signals": len(in_backlog),
               "duplicate_status_results": sum(duplicate_status.values()),
               "results_for_unsubmitted_signals": len(unsubmitted)}
    if in_backlog:
        evidence.append({"kind": "backlog", "count": len(in_backlog), "signals": in_backlog[:50],
                         "why": "still queued on RTSS when the run ended: no result yet, not a failure"})
    if duplicate_status:
        evidence.append({"kind": "duplicate-status", "count": sum(duplicate_status.values()),
                         "signals": sorted(duplicate_status)[:50],
                         "why": "a second RTSS entry with a signal id already handled, answered 'duplicate': "
                                "counted apart"})
    judgements = judge({k: metrics[k] for k in judged}, requirement_ids, targets)
    if undelivered or repeated:
        parts = []
        if undelivered:
            parts.append(f"{len(undelivered)} acknowledged signal(s) without a result on RTRS: "
                         f"{', '.join(undelivered[:10])}")
        if repeated:
            parts.append(f"{len(repeated)} with more than one result: {', '.join(list(repeated)[:10])}")
        summary = "; ".join(parts)
    else:
        summary = f"every one of {delivered} acknowledged signal(s) that left the queue has exactly one RTRS result"
    if in_backlog:
        summary += f"; backlog {len(in_backlog)} still queued at the end"
    return DeliveryResult("results_delivered", validity(judgements), tuple(requirement_ids), metrics, evidence,
                          summary, judgements, undelivered=undelivered, repeated=repeated)


def _stream_ms(entry_id: Any) -> int | None:
    ms, sep, seq = str(entry_id or "").partition("-")
    return int(ms) if sep and ms.isdigit() and seq.isdigit() else None


def shared_state_writes(rtrs_rows: Iterable[dict] | None, rts: dict | None) -> list[dict]:
    """Every RTRS entry and RTS signal hash of the dump as a write: what, when (epoch s: an RTRS entry id's server
    milliseconds, an RTS hash's ``ts_ms``), its fencing ``token`` (None when not recorded) and instance."""
    writes = []
    for row in rtrs_rows or ():
        ms = _stream_ms(row.get("entry"))
        writes.append({"what": f"RTRS entry {row.get('entry')}", "store": "RTRS",
                       "signal": row.get("signal_id", row.get("signal")), "status": row.get("status"),
                       "t": None if ms is None else ms / 1000.0, "token": _token(row.get("token")),
                       "instance": row.get("instance") or None})
    orders = engine_orders(rts) if rts else {}
    for sid, fields in orders.items():
        ms = _num(fields.get("ts_ms"))
        writes.append({"what": f"RTS signal {sid}", "store": "RTS", "signal": sid, "status": fields.get("status"),
                       "t": None if ms is None else ms / 1000.0, "token": _token(fields.get("token")),
                       "instance": fields.get("instance") or None,
                       "restored": fields.get("restored_from") or None})
    return writes


STALE_WRITE_RULE = ("A write (an RTRS entry, timed by its id's Redis server milliseconds; an RTS signal hash, timed by "
                    "its ts_ms) is stale when the lease holder whose token it carries had already been superseded by "
                    "a newer lease_acquired (the engines' wall-clock ts) at that time. A write stamped before its own "
                    "token was acquired (e.g. an RTS hash restored from the journal) cannot be placed and is not "
                    "judged. Only the last write of each RTS hash survives in the dump.")


def check_stale_writes(events: Sequence[dict] | None, rtrs_rows: Sequence[dict] | None, rts: dict | None, *,
                       requirement_ids: Sequence[str] = ("ENG-1", "ENG-5"),
                       targets: targets_mod.Targets | None = None) -> StaleWriteResult:
    """ENG-1/ENG-5: no RTS or RTRS value written by a fenced-out token, i.e. a token older than the newest lease
    acquisition at the time of the write (``stale_writes``). Unmeasured without engine event logs or
    acquisitions, without an RTRS/RTS dump, or when the writes carry no ``token`` field."""
    judged = ("stale_writes",)
    if not events:
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           f"no engine event log ({ENGINE_EVENTS_GLOB}) in the run: lease acquisitions unknown")
    acquisitions = lease_acquisitions(events, "ts")
    if not acquisitions:
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           "the engines' event logs hold no lease_acquired: which token was newest cannot be told")
    if rtrs_rows is None and rts is None:
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           f"no RTRS or RTS dump ({h.RTRS}, {h.RTS}) in the run: no write to judge")
    writes = shared_state_writes(rtrs_rows, rts)
    tokened = [w for w in writes if w["token"] is not None and w["t"] is not None]
    if not tokened:
        why = (f"none of the {len(writes)} RTRS/RTS write(s) records the fencing token that made it (no 'token' "
               f"field in {h.RTRS} or {h.RTS}): writes by a fenced-out instance cannot be told"
               if writes else "the RTRS and RTS dumps are empty: no write to judge")
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged, why)
    times = [a.ts for a in acquisitions]
    stale, unattributed, undated = [], [], []
    for w in sorted(tokened, key=lambda w: w["t"]):
        newest = _newest_at(acquisitions, times, w["t"])
        mine = [a for a in acquisitions if a.token == w["token"]
                and (w["instance"] is None or a.instance == w["instance"])]
        if newest is None or not mine:
            unattributed.append(w)
            continue
        if newest.token == w["token"] and (w["instance"] is None or newest.instance == w["instance"]):
            continue
        own = [a for a in mine if a.ts <= w["t"]]
        if not own:
            undated.append(w)   # stamped before its own token existed: not the time of the write
            continue
        stale.append({"kind": "stale-write", "what": w["what"], "signal": w["signal"], "status": w["status"],
                      "token": w["token"], "instance": w["instance"], "written": _iso(w["t"]),
                      "newest_token": newest.token, "newest_instance": newest.instance,
                      "newest_acquired": _iso(newest.ts), "after_newest_s": round(w["t"] - newest.ts, 6),
                      "why": f"written under token {w['token']} {w['t'] - newest.ts:.3f} s after "
                             f"{newest.instance} acquired token {newest.token}"})
    refused = [e for e in events if e.get("event") == "fenced_write_refused"]
    metrics = {"stale_writes": len(stale), "writes_checked": len(tokened) - len(unattributed) - len(undated),
               "rtrs_entries": sum(w["store"] == "RTRS" for w in writes),
               "rts_signals": sum(w["store"] == "RTS" for w in writes),
               "writes_without_token": len(writes) - len(tokened), "unattributed_writes": len(unattributed),
               "undated_writes": len(undated), "fenced_writes_refused": len(refused),
               "acquisitions": len(acquisitions)}
    if metrics["writes_checked"] == 0:
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           f"none of the {len(tokened)} tokened write(s) can be placed against the "
                           f"{len(acquisitions)} lease acquisition(s) of the event logs", stale=[])
    judgements = judge({"stale_writes": len(stale)}, requirement_ids, targets)
    evidence: list[dict] = stale[:STALE_EVIDENCE_MAX]
    if len(stale) > STALE_EVIDENCE_MAX:
        evidence.append({"kind": "note", "why": f"{len(stale) - STALE_EVIDENCE_MAX} more stale write(s) not listed"})
    if unattributed:
        evidence.append({"kind": "unattributed", "count": len(unattributed),
                         "writes": [{k: w[k] for k in ("what", "token", "instance")} for w in unattributed[:20]],
                         "why": "the token is not among the lease acquisitions of the event logs (or the write "
                                "precedes every acquisition): not judged"})
    if refused:
        evidence.append({"kind": "fenced-refused", "count": len(refused),
                         "first": [{k: e.get(k) for k in ("instance", "token", "newest", "what")}
                                   for e in refused[:10]],
                         "why": "writes Redis refused because a newer token existed: fencing at work"})
    evidence.append({"kind": "rule", "rule": STALE_WRITE_RULE})
    if stale:
        first = stale[0]
        summary = (f"{len(stale)} RTS/RTRS value(s) written by a fenced-out token (first: {first['what']} under "
                   f"token {first['token']} after token {first['newest_token']} was acquired)")
    else:
        summary = (f"no stale write among {metrics['writes_checked']} tokened RTS/RTRS write(s)"
                   + (f"; {len(refused)} fenced write(s) refused by Redis" if refused else ""))
    return StaleWriteResult("stale_writes", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                            judgements, stale=stale)


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

    def trade_results_or_none(self) -> list[TradeResult] | None:
        """RTRS as dumped, or None when the run has no rtrs.jsonl (never dumped, not "no results")."""
        return self.trade_results() if self.run.has(h.RTRS) else None

    def rtrs_rows(self) -> list[dict] | None:
        """The raw rows of rtrs.jsonl (entry id, token, instance, ...), or None when there is no dump."""
        results = self.trade_results_or_none()
        return None if results is None else [r.raw for r in results]

    def engine_event_files(self) -> list[Path]:
        """The engines' event logs of the run (``stack/engines/<node>/events-<instance>.jsonl``; every restart of an
        instance appends to its file)."""
        return self._once("event_files", lambda: sorted(self.run.path.glob(ENGINE_EVENTS_GLOB))
                          or sorted(p for p in self.run.path.rglob("events-*.jsonl") if p.is_file()))

    def engine_events(self) -> list[dict]:
        """Every event of every engine event log, in monotonic-clock order ([] when there is none)."""
        return self._once("events", self._load_events)[0]

    def unreadable_event_lines(self) -> int:
        return self._once("events", self._load_events)[1]

    def _load_events(self) -> tuple[list[dict], int]:
        events, torn = [], 0
        for path in self.engine_event_files():
            rows, bad = read_event_lines(path)
            events += rows
            torn += bad
        events.sort(key=lambda e: _num(e.get("mono")) if _num(e.get("mono")) is not None else math.inf)
        return events, torn

    def lease_ttl_s(self) -> float:
        """The engines' lease TTL as the run configured it (config.json's engine settings), else the default."""
        config = self.run.config if isinstance(self.run.config, dict) else {}
        engine = config.get("engine") if isinstance(config.get("engine"), dict) else {}
        ttl = _num(engine.get("lease_ttl_s")) or _num((engine.get("overrides") or {}).get("lease_ttl_s")
                                                      if isinstance(engine.get("overrides"), dict) else None)
        return ttl if ttl and ttl > 0 else DEFAULT_LEASE_TTL_S

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


def _one_active(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    gap = _num(params.get("gap_s")) or view.lease_ttl_s()
    return check_one_active(view.engine_events(), gap_s=gap, requirement_ids=rids, targets=targets,
                            torn_lines=view.unreadable_event_lines())


def _results_delivered(view: RunView, params: dict, rids: tuple[str, ...],
                       targets: targets_mod.Targets) -> CheckResult:
    return check_results_delivered(view.signals(), view.trade_results_or_none(), backlog=view.backlog(),
                                   requirement_ids=rids, targets=targets)


def _stale_writes(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_stale_writes(view.engine_events(), view.rtrs_rows(), view.trade_state(), requirement_ids=rids,
                              targets=targets)


CHECKERS: dict[str, Checker] = {c.name: c for c in (
    Checker("rto", _rto, ("rto_s",), "fault injection to the first successful operation of kind f invoked after it",
            ("f", "fault")),
    Checker("duplicates", _duplicates, ("duplicate_orders",), "signal ids with more than one broker order"),
    Checker("lost_signals", _lost, ("lost_signals",),
            "acknowledged signals neither executed at the broker nor rejected with a reason (backlog apart)"),
    Checker("state", _state, ("state_mismatches",), "RTS against the broker ledger: positions and signals"),
    Checker("one_active", _one_active, ("stale_sends", "concurrent_active_engines"),
            "no order sent by a lease holder older than the newest acquisition; most holders sending at once",
            ("gap_s",)),
    Checker("results_delivered", _results_delivered, ("undelivered_results", "repeated_results"),
            "every acknowledged signal ends with exactly one result on RTRS (backlog apart)"),
    Checker("stale_writes", _stale_writes, ("stale_writes",),
            "no RTS/RTRS value written under a fencing token older than the newest acquisition"),
)}

# the requirements each checker claims when a run names no checkers of its own
DEFAULT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "rto": ("ENG-1",), "duplicates": ("ENG-5",), "lost_signals": ("ENG-5",), "state": ("ENG-5",),
    "one_active": ("ENG-1",), "results_delivered": ("ENG-5",), "stale_writes": ("ENG-1", "ENG-5"),
}
DEFAULT_CHECKERS = [{"checker": name, "requirement_ids": list(DEFAULT_REQUIREMENTS.get(name, ("ENG-5",))),
                     "params": {}} for name in CHECKERS]


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
