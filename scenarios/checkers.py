"""Checkers: pure functions that judge a recorded run. They never touch the stack, so a saved run directory can be
re-judged at any time (``tradedrill check RUN_DIR``).

Each checker takes plain data (``Operation``, ``FaultWindow``, ``Deal``, ``Signal``, ``TradeResult`` lists, see
``scenarios.history``) and returns a dataclass with

- ``valid``: True, False, or "unknown" (nothing to judge, or not observed long enough to tell);
- ``metrics``: the numbers, named as in ``targets.toml`` (``rto_s``, ``duplicate_orders``, ``lost_signals``,
  ``state_mismatches``; from the engines' event logs and the RTS/RTRS dumps: ``stale_sends``,
  ``concurrent_active_engines``, ``undelivered_results``, ``repeated_results``, ``stale_writes``; from the Redis
  partition drills' writers, final read, roles and Sentinel logs: ``acknowledged_writes_lost``,
  ``acknowledged_writes_lost_fraction``, ``confirmed_writes_lost``, ``primary_follow_s``, ``client_follow_s``,
  ``unexpected_failovers``, ``roles_diverged``; from the fault log, the engines' store events and the evidence
  folders of the DuckDB damage drills (issue 13): ``undetected_corruptions``, ``restore_s``, ``detection_s``,
  ``repairs_without_evidence``, ``rpo_s``);
- ``evidence``: the offending ids and the events that bound each number;
- ``judgements``: one per (requirement, metric) against the target from ``targets.toml`` (never a number written
  here), with the verdict under every alternative target too.

``check_run(run_dir)`` loads a run directory and applies the checkers its ``scenario.json`` names.
"""
from __future__ import annotations

import bisect
import datetime as _dt
import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from reference.engine import contract
from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.history import Deal, FaultWindow, Operation, Signal, TradeResult
from scenarios.verdicts import (FAIL, PASS, UNKNOWN, UNMEASURED, Judgement, RunValidity, as_json, judge,  # noqa: F401
                                finite_number, percentile, validity)


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
                *, unreadable: dict[str, int] | None = None, **extra) -> CheckResult:
    """A result that says why there was nothing to judge: every claimed metric ``unmeasured``, never a pass;
    ``unreadable`` (file -> lines skipped) is added to its evidence."""
    judgements = judge({m: None for m in metrics}, requirement_ids, targets, unmeasured_reason=reason)
    evidence = [{"kind": "unmeasured", "why": reason}] + (_unreadable_evidence(unreadable) if unreadable else [])
    return cls(name, UNKNOWN, tuple(requirement_ids), {}, evidence, f"unmeasured: {reason}", judgements, **extra)


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
               "signals_executed": len(by_signal), "deals": sum(d.kind == "deal" for d in ledger)}
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
                       backlog: Iterable[str] = (), pending_on: Mapping[str, str] | None = None) -> LostSignalResult:
    """Acknowledged signals that were neither executed at the broker nor rejected with a reason on RTRS.
    The broker ledger is the ground truth for "executed": an RTRS entry saying executed without a deal is lost.

    ``backlog``: signal ids still queued when the run ended (undelivered on RTSS or pending in the consumer
    group, ``backlog.json``): not lost, counted as ``backlog_signals``; ``pending_on`` ({signal id: consumer},
    backlog.json's ``pending_on``) names those delivered to an engine and never answered apart from the undelivered
    (``backlog_pending_signals``; a superseded holder once stranded one: a fresh-clone user's stateful run, seed 22).
    "Lost" keeps its meaning: acknowledged,
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
    delivered = {sid: (pending_on or {})[sid] for sid in in_backlog if sid in (pending_on or {})}
    if pending_on is not None:
        metrics["backlog_pending_signals"] = len(delivered)
    if in_backlog:
        evidence.append({"kind": "backlog", "count": len(in_backlog), "signals": in_backlog[:50],
                         "why": "still queued on RTSS (undelivered or pending) when the run ended: not lost",
                         **({"pending_on": dict(list(delivered.items())[:50])} if delivered else {})})
    judgements = judge({"lost_signals": len(lost)}, requirement_ids, targets)
    summary = (f"{len(lost)} acknowledged signal(s) lost: {', '.join(lost[:10])}" if lost
               else f"all {len(acked) - len(in_backlog)} acknowledged signal(s) that left the queue executed or "
                    f"rejected with a reason")
    if in_backlog:
        summary += f"; backlog {len(in_backlog)} still queued at the end"
        if delivered:
            summary += (f" ({len(delivered)} delivered to an engine and never answered: "
                        + ", ".join(f"{sid} on {who}" for sid, who in list(delivered.items())[:5])
                        + (", ..." if len(delivered) > 5 else "") + ")")
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
    """Net volume per symbol (buy +, sell -) from the ledger, and the deals whose side is unknown. Deals without a
    symbol (balance, credit, charge: MT5's DEAL_TYPE_BALANCE and after, the simulator's "initial deposit") move
    money, not positions, and are left out; before, every run's deposit deal stopped the comparison."""
    net: dict[str, float] = defaultdict(float)
    unknown_side = []
    for d in ledger:
        if d.kind != "deal" or (not d.symbol and _side_sign(d.type) is None):
            continue   # a placed pending order (issue 20) or a balance deal moves no position
        sign = _side_sign(d.type)
        if sign is None:
            unknown_side.append(d.deal)
            continue
        net[d.symbol] += sign * d.volume
    return dict(net), unknown_side


def engine_positions(rts: dict) -> dict[str, float] | None:
    """Net volume per symbol from an RTS dump; accepts {symbol: net}, {symbol: {volume, type|side}}, a list of
    {symbol, volume, type|side}, or the drill's ``positions_raw`` (the engine's RTS positions hash, every broker's:
    ``<broker>:<ticket>`` -> JSON of {symbol, type, volume, ...}, ENG-5). None when the dump has no positions."""
    raw = rts.get("positions")
    if raw is None and isinstance(rts.get("positions_raw"), dict):
        parsed = []
        for ticket, text in rts["positions_raw"].items():
            try:
                p = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                p = None
            if not isinstance(p, dict):
                parsed.append({"symbol": f"<unreadable position {ticket}>", "volume": 0.0})
                continue
            parsed.append(p)
        raw = parsed
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
    from scenarios import positions as positions_mod   # issue 20: sides (hedges) and the broker's own closes

    if eng_net is not None and not unknown_side:
        tickets = positions_mod.ticket_differences(rts, ledger, tolerance)
        for symbol in sorted(set(broker_net) | set(eng_net)):
            b, e = broker_net.get(symbol, 0.0), eng_net.get(symbol, 0.0)
            if abs(b - e) > tolerance:
                # the tickets that differ, per side, when RTS and the ledger name their positions
                named = {side: diff for (sym, side), diff in sorted(tickets.items()) if sym == symbol}
                mismatches.append({"kind": "position", "symbol": symbol, "broker": round(b, 10),
                                   "engine": round(e, 10), **({"tickets": named} if named else {})})

    by_side, side_metrics = positions_mod.compare(rts, ledger)
    net_differs = any(m["kind"] == "position" for m in mismatches)
    mismatches += [m for m in by_side if not (net_differs and m["kind"] == "position_side")]
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
               "signals_compared": len(set(broker_orders) | set(eng_orders)), **side_metrics}
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


read_event_lines = h.read_jsonl_counting   # every JSONL of a run is read the one lenient way (scenarios.history)


_num = finite_number


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


def _unreadable_acquisitions(events: Iterable[dict]) -> list[str]:
    """``lease_acquired`` events :func:`lease_acquisitions` would have to skip (no token, no time), described."""
    out = []
    for e in events:
        if e.get("event") != "lease_acquired":
            continue
        parsed = contract.parse_lease(e.get("value"))
        token = _token(e.get("token"))
        if token is None and e.get("token") is not None:
            out.append(f"instance {e.get('instance')!r} token {e.get('token')!r}")
        elif token is None and not parsed:
            out.append(f"instance {e.get('instance')!r} value {e.get('value')!r}")
        elif _num(e.get("mono")) is None or _num(e.get("ts")) is None:
            out.append(f"instance {e.get('instance')!r} without mono/ts")
    return out


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
                     torn_lines: int = 0, ledger_comments: Iterable[str] | None = None) -> OneActiveResult:
    """ENG-1 "exactly one active instance processes signals", from the engines' event logs: no
    ``order_send_invoke`` by a holder whose token is older than the newest ``lease_acquired`` at that instant
    (``stale_sends``), and the most holders sending at once (``concurrent_active_engines``) with the seconds two
    of them overlapped (``active_overlap_s``). No event logs, no acquisition or no send: ``unmeasured``; so is a
    run whose event logs cannot be complete: a ``lease_acquired`` without a readable token, or a broker order
    (``ledger_comments``: the engine comments in the ledgers) that no ``order_send_invoke`` accounts for (an
    engine's event log missing or cut): judging the sends that remain would pass a run whose evidence is gone."""
    metrics_judged = ("stale_sends", "concurrent_active_engines")
    if not events:
        return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                           f"no engine event log ({ENGINE_EVENTS_GLOB}) in the run: who was active cannot be told")
    bad = _unreadable_acquisitions(events)
    if bad:
        return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                           f"{len(bad)} lease_acquired event(s) without a readable token or time (first: "
                           f"{bad[0]}): the newest holder at each send cannot be told")
    if ledger_comments is not None:
        invoked = {str(e.get("comment")) for e in events if e.get("event") == "order_send_invoke"}
        missing = sorted({c for c in ledger_comments if c and c not in invoked})
        if missing:
            return _unmeasured(OneActiveResult, "one_active", requirement_ids, targets, metrics_judged,
                               f"{len(missing)} broker order(s) (first: {missing[0]}) have no order_send_invoke in "
                               f"the engines' event logs: an event log is missing or cut, so who sent them cannot "
                               f"be told")
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
    bad = _unreadable_acquisitions(events)
    if bad:
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           f"{len(bad)} lease_acquired event(s) without a readable token or time (first: {bad[0]}): "
                           f"which token was newest cannot be told")
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
    if unattributed and not stale:
        # a holder whose acquisition is not in the event logs wrote these: its log is missing or cut, and its
        # writes may be the stale ones; passing on the rest would pass a run whose evidence is gone
        first = unattributed[0]
        return _unmeasured(StaleWriteResult, "stale_writes", requirement_ids, targets, judged,
                           f"{len(unattributed)} RTS/RTRS write(s) (first: {first['what']} under token "
                           f"{first['token']}) by a holder no lease_acquired of the event logs accounts for: an "
                           f"event log is missing or cut", stale=[])
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


# -- Redis under partition: the set checker, following the primary, failovers (issue 12) -----------------------
REDIS_WRITE = "redis_write"                 # the history's f of the per-side writer clients
REDIS_WRITES = "redis_writes.json"          # the final read of every writer's set, after heal and settle
REDIS_ROLES = "redis_roles.json"            # every Redis node's role and every Sentinel's primary, after heal
SENTINEL_LOGS_GLOB = "nodes/sentinel-*.log"  # the Sentinels' own logs
PRIMARY_CHANGE_EVENTS = ("redis_primary_changed", "lease_redis_primary_changed")  # an engine's Redis clients
SWITCH_SLACK_S = 0.5  # a +switch-master this long before an injection's stamp still counts as after it
FIRST_LOST_MAX = 20   # lost members listed per writer; the metrics count them all
WAIT_NOTE = ("a wait writer's ok means WAIT confirmed the write on the replicas it asked for; a write Redis acknowledged "
             "but WAIT did not confirm is unknown, and an unknown write that is missing is not lost")


@dataclass(frozen=True)
class RedisWrite:
    """One ``redis_write`` operation of the history, read leniently: ``writer`` (the process), the ``member`` it
    adds to the writer's ``set``, the ``primary`` ("host:port") it was sent to (None: none known), ``wait``
    (the writer confirms with ``WAIT <n> <ms>``), the outcome, and both clocks (s; None when not recorded)."""

    op: str
    writer: str
    member: str | None
    set: str | None
    primary: str | None
    wait: bool
    outcome: str
    invoke_mono: float | None = None
    complete_mono: float | None = None
    invoke_wall: float | None = None
    complete_wall: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SentinelEvent:
    """One line of a Sentinel log that matters here (``+switch-master``, ``+odown``, ``+try-failover``,
    ``+elected-leader``, ``+new-epoch``, ``-failover-abort-*``): which Sentinel (its log's name), the line number,
    the wall clock of the line (epoch s, read as UTC), the event and its arguments."""

    sentinel: str
    line: int
    ts: float
    event: str
    args: tuple[str, ...]


@dataclass
class Switch:
    """One distinct primary change: ``+switch-master <name> <old ip> <old port> <new ip> <new port>`` as the
    Sentinels logged it (every Sentinel logs the same switch). ``ts`` is the earliest line (epoch s)."""

    master: str
    old: str
    new: str
    ts: float
    seen_by: dict[str, float] = field(default_factory=dict)  # sentinel -> its line's wall clock


@dataclass
class RedisSetResult(CheckResult):
    lost: dict[str, list[str]] = field(default_factory=dict)  # writer -> acknowledged members missing


@dataclass
class PrimaryFollowResult(CheckResult):
    switches: list[dict] = field(default_factory=list)
    engines: list[dict] = field(default_factory=list)
    writers: list[dict] = field(default_factory=list)


@dataclass
class FailoverResult(CheckResult):
    switches: list[dict] = field(default_factory=list)
    diverged: list[dict] = field(default_factory=list)


def _addr(value: Any) -> str | None:
    """A Redis address as "host:port": from "host:port", [host, port] (the engines' events) or {host, port}."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (str, int)) for v in value) \
            and not any(isinstance(v, bool) for v in value):
        return f"{value[0]}:{value[1]}"
    if isinstance(value, dict) and isinstance(value.get("host"), str) and isinstance(value.get("port"), (str, int)):
        return f"{value['host']}:{value['port']}"
    return None


def _member(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def redis_writes_from_records(records: Iterable[dict]) -> tuple[list[RedisWrite], int]:
    """The ``redis_write`` operations of history records (invoke and completion joined by ``op``), and how many
    of their lines could not be used. Lenient: a record of the wrong shape is counted, never raised on."""
    invokes: dict[str, dict] = {}
    completions: dict[str, dict] = {}
    order: list[str] = []
    bad = 0
    for rec in records:
        if rec.get("f") != REDIS_WRITE:
            continue
        try:
            key = json.dumps(rec.get("op"), sort_keys=True, default=str)
        except (TypeError, ValueError):
            bad += 1
            continue
        kind = rec.get("type")
        if kind == "invoke":
            invokes.setdefault(key, rec)
        elif kind in h.OUTCOMES:
            completions[key] = rec
        else:
            bad += 1
            continue
        if key not in order:
            order.append(key)
    writes = []
    for key in order:
        inv, done = invokes.get(key, {}), completions.get(key)
        value = dict(inv.get("value")) if isinstance(inv.get("value"), dict) else {}
        if done is not None and isinstance(done.get("value"), dict):
            value.update({k: v for k, v in done["value"].items() if v is not None})
        writer = inv.get("process", done.get("process") if done else None)
        op_key = inv.get("key", done.get("key") if done else None)
        member = _member(value.get("member"))
        if member is None:
            member = _member(value.get("n"))
        if member is None and isinstance(op_key, str) and ":" in op_key:
            member = op_key.rsplit(":", 1)[1] or None
        if not isinstance(writer, str) or not writer:
            bad += 1
            continue
        error = done.get("error") if done else "no completion recorded (process died in flight?)"
        writes.append(RedisWrite(
            op=key, writer=writer, member=member,
            set=value.get("set") if isinstance(value.get("set"), str) else None,
            primary=_addr(value.get("primary")), wait=_waits(value.get("wait")),
            outcome=done["type"] if done else h.UNKNOWN,
            invoke_mono=_num(inv.get("mono")), complete_mono=_num(done.get("mono")) if done else None,
            invoke_wall=_num(inv.get("wall_ts")), complete_wall=_num(done.get("wall_ts")) if done else None,
            error=error if isinstance(error, str) else None))
    return writes, bad


def fault_windows_lenient(records: Iterable[dict]) -> tuple[list[FaultWindow], int]:
    """Fault windows of fault-log records like :func:`scenarios.history.fault_windows_from_records`, but an
    inject or heal without a usable clock is counted, not raised on. ``inject_mono``/``heal_mono`` and the wall
    clocks may be None here."""
    windows: list[dict] = []
    open_by_key: dict[str, list[dict]] = {}
    bad = 0
    for rec in records:
        event = rec.get("event")
        if event not in ("inject", "heal"):
            continue
        mono, wall = _num(rec.get("mono", rec.get("monotonic"))), _num(rec.get("wall_ts"))
        if mono is None and wall is None:
            bad += 1
            continue
        name = rec.get("fault") or rec.get("name") or "fault"
        name = name if isinstance(name, str) else json.dumps(name, default=str)
        key = rec.get("fault_id") if isinstance(rec.get("fault_id"), str) and rec.get("fault_id") else name
        if event == "inject":
            reqs = rec.get("requirements")
            w = {"fault": name, "fault_id": key, "inject_mono": mono, "heal_mono": None,
                 "description": rec.get("description") if isinstance(rec.get("description"), str) else "",
                 "requirement_ids": tuple(r for r in reqs if isinstance(r, str)) if isinstance(reqs, list) else (),
                 "inject_wall": wall, "heal_wall": None,
                 "details": rec.get("details") if isinstance(rec.get("details"), dict) else {}}
            windows.append(w)
            open_by_key.setdefault(key, []).append(w)
        elif open_by_key.get(key):
            w = open_by_key[key].pop(0)
            w["heal_mono"], w["heal_wall"] = mono, wall
    return [FaultWindow(**w) for w in windows], bad


_SENTINEL_LINE = re.compile(r"^\s*\d+:[A-Z] (?P<when>\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}\.\d{1,6}) "
                            r"(?P<level>\S) (?P<msg>[+-]\S+.*)$")
_SENTINEL_EVENTS = ("+switch-master", "+odown", "+try-failover", "+elected-leader", "+new-epoch")


def parse_sentinel_log(text: str, sentinel: str) -> tuple[list[SentinelEvent], int]:
    """The failover events of one Sentinel log (Redis's own format, ``<pid>:X 30 Nov 2026 23:29:55.361 #
    +switch-master mymaster 127.0.6.2 6379 127.0.6.3 6379``; the wall clock is read as UTC) and how many lines
    naming ``+switch-master`` could not be read. Other lines (the banner, configuration) are not events."""
    events, bad = [], 0
    for i, line in enumerate(text.splitlines(), start=1):
        m = _SENTINEL_LINE.match(line)
        if m is None:
            bad += "+switch-master" in line
            continue
        words = m.group("msg").split()
        event = words[0]
        if event not in _SENTINEL_EVENTS and not event.startswith("-failover-abort"):
            continue
        try:
            when = _dt.datetime.strptime(m.group("when"), "%d %b %Y %H:%M:%S.%f")
        except ValueError:
            bad += event == "+switch-master"
            continue
        args = tuple(words[1:])
        if event == "+switch-master" and (len(args) < 5 or not args[2].isdigit() or not args[4].isdigit()):
            bad += 1
            continue
        events.append(SentinelEvent(sentinel, i, when.replace(tzinfo=_dt.timezone.utc).timestamp(), event, args))
    return events, bad


def distinct_switches(events: Iterable[SentinelEvent]) -> tuple[list[Switch], list[dict]]:
    """The distinct primary changes among every Sentinel's ``+switch-master`` lines, in time order, and the lines
    left out as shortcuts. The k-th line naming one change (master, old -> new) in each Sentinel's log is one
    switch (each Sentinel logs it once, at its own time; a change back and forth is two). A Sentinel that missed
    changes (partitioned away) logs old -> newest in one line; where another Sentinel logged the chain in between,
    that line is a shortcut, not a failover of its own."""
    per_sentinel: dict[str, list[SentinelEvent]] = defaultdict(list)
    for e in events:
        if e.event == "+switch-master":
            per_sentinel[e.sentinel].append(e)
    keyed: dict[tuple, Switch] = {}
    logged_by: dict[tuple, set[str]] = defaultdict(set)
    chains: dict[str, set[tuple]] = {}
    for sentinel, lines in per_sentinel.items():
        lines.sort(key=lambda e: e.line)
        seen: dict[tuple, int] = defaultdict(int)
        moves = []
        for e in lines:
            master, old, new = e.args[0], f"{e.args[1]}:{e.args[2]}", f"{e.args[3]}:{e.args[4]}"
            moves.append((master, old, new))
            key = (master, old, new, seen[(master, old, new)])
            seen[(master, old, new)] += 1
            sw = keyed.setdefault(key, Switch(master, old, new, e.ts))
            sw.ts = min(sw.ts, e.ts)
            sw.seen_by[sentinel] = min(e.ts, sw.seen_by.get(sentinel, e.ts))
            logged_by[key].add(sentinel)
        shortcuts = set()
        for a in range(len(moves)):
            for b in range(a + 1, len(moves)):
                if any(moves[k][2] != moves[k + 1][1] or moves[k][0] != moves[a][0] for k in range(a, b)):
                    break
                shortcuts.add((moves[a][0], moves[a][1], moves[b][2]))
        chains[sentinel] = shortcuts
    switches, dropped = [], []
    for key, sw in keyed.items():
        explained = [s for s, cuts in chains.items() if key[:3] in cuts and s not in logged_by[key]]
        if explained:
            dropped.append({"kind": "shortcut", "master": sw.master, "old": sw.old, "new": sw.new,
                            "sentinels": sorted(logged_by[key]),
                            "why": f"{', '.join(sorted(explained))} logged the changes in between: this line "
                                   f"is a Sentinel catching up, not another failover"})
            continue
        switches.append(sw)
    return sorted(switches, key=lambda s: s.ts), dropped


def _switch_ref(sw: Switch) -> dict:
    return {"master": sw.master, "old": sw.old, "new": sw.new, "ts": sw.ts, "time": _iso(sw.ts),
            "seen_by": {s: _iso(t) for s, t in sorted(sw.seen_by.items())}}


def _unreadable_evidence(counts: dict[str, int]) -> list[dict]:
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return []
    return [{"kind": "unreadable", "lines": counts,
             "why": "lines that could not be read (torn, not JSON, or not the expected shape): skipped"}]


# the set checker ------------------------------------------------------------------------------------------------
SET_RULE = ("Jepsen's set checker: every member a writer added with an acknowledged (ok) write must be in its set as "
            "read after heal and settle; an acknowledged member that is missing is lost. Writers that confirm with "
            "WAIT count apart (confirmed_writes_lost); unknown and failed writes cannot be lost, and those that "
            "landed anyway are reported. 'During the fault windows': acknowledged between an injection and its "
            "heal (monotonic clock; to the end of the history when never healed).")


def _waits(value: Any) -> bool:
    """A writer's ``wait``: true, or a number of replicas WAIT must confirm (0 or false: no WAIT)."""
    return value is True or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def check_redis_set(writes: Sequence[RedisWrite], final_read: dict | None, windows: Sequence[FaultWindow] = (), *,
                    fault: str | None = None, requirement_ids: Sequence[str] = ("RDS-4",),
                    targets: targets_mod.Targets | None = None, final_read_problem: str | None = None,
                    unreadable: dict[str, int] | None = None) -> RedisSetResult:
    """RDS-4 (RPO 0), Jepsen's set checker over the ``redis_write`` operations and the final read
    (``redis_writes.json``: ``{"read_from", "read_error", "writers": {name: {"side", "source", "wait", "set",
    "members": [str] | None, "read_error"}}}``).

    Metrics (counts of writes; a fraction in 0..1): ``acknowledged_writes_lost`` over writers without WAIT,
    ``acknowledged_writes_lost_fraction`` of their writes acknowledged during the fault windows (of fault
    ``fault``, else every fault), ``confirmed_writes_lost`` over writers with WAIT (must be 0). A writer whose set
    could not be read is not judged. Unmeasured (never pass) without redis_write operations or without a final
    read; a metric whose writers are absent (no WAIT writer, say) is unmeasured on its own."""
    judged = ("acknowledged_writes_lost", "acknowledged_writes_lost_fraction", "confirmed_writes_lost")
    unreadable = dict(unreadable or {})

    def nothing(why: str) -> RedisSetResult:
        return _unmeasured(RedisSetResult, "redis_set", requirement_ids, targets, judged, why, unreadable=unreadable)

    writes = list(writes)
    if not writes:
        return nothing(f"no {REDIS_WRITE} operation in {h.HISTORY}: no Redis write to check")
    if final_read_problem:
        return nothing(f"the final read cannot be judged: {final_read_problem}")
    if final_read is None:
        return nothing(f"no final read ({REDIS_WRITES}) in the run: what survived the failover is unknown")
    read_writers = final_read.get("writers") if isinstance(final_read.get("writers"), dict) else {}
    top_error = final_read.get("read_error") if isinstance(final_read.get("read_error"), str) else None
    in_window = [w for w in windows if (fault is None or w.fault == fault) and w.inject_mono is not None]
    end = max([x for op in writes for x in (op.invoke_mono, op.complete_mono) if x is not None], default=math.inf)

    def during(op: RedisWrite) -> bool:
        t = op.complete_mono if op.complete_mono is not None else op.invoke_mono
        return t is not None and any(w.inject_mono <= t <= (w.heal_mono if w.heal_mono is not None else end)
                                     for w in in_window)

    sides_of: dict[str, str] = {}
    for w in windows:
        sides = w.details.get("sides") if isinstance(w.details.get("sides"), dict) else {}
        for side, members in sides.items():
            for m in members if isinstance(members, list) else ():
                if isinstance(m, str):
                    sides_of.setdefault(m, str(side))
    by_writer: dict[str, list[RedisWrite]] = defaultdict(list)
    for op in writes:
        by_writer[op.writer].append(op)
    totals = defaultdict(int)
    evidence: list[dict] = []
    lost_by_writer: dict[str, list[str]] = {}
    unread: list[str] = []
    for writer in sorted(by_writer):
        ops = by_writer[writer]
        info = read_writers.get(writer) if isinstance(read_writers.get(writer), dict) else {}
        wait = _waits(info["wait"]) if isinstance(info.get("wait"), (bool, int)) else any(op.wait for op in ops)
        side = info.get("side") if isinstance(info.get("side"), str) else sides_of.get(writer)
        members = info.get("members")
        row = {"kind": "writer", "writer": writer, "side": side,
               "source": info.get("source") if isinstance(info.get("source"), str) else None, "wait": wait,
               "set": info.get("set") if isinstance(info.get("set"), str) else next(
                   (op.set for op in ops if op.set), None)}
        acked = [op for op in ops if op.outcome == h.OK and op.member is not None]
        if not isinstance(members, list):
            why = info.get("read_error") if isinstance(info.get("read_error"), str) else (
                top_error or ("the final read has no entry for this writer" if not info else "no members read"))
            unread.append(writer)
            evidence.append({**row, "acknowledged": len(acked), "read": False,
                             "why": f"its set could not be read after heal ({why}): not judged"})
            continue
        present = {m for m in (_member(x) for x in members) if m is not None}
        lost_ops = [op for op in acked if op.member not in present]
        acked_in = [op for op in acked if during(op)]
        lost_in = [op for op in lost_ops if during(op)]
        landed_unknown = [op for op in ops if op.outcome == h.UNKNOWN and op.member in present]
        landed_failed = [op for op in ops if op.outcome == h.FAIL and op.member in present]
        attempted = {op.member for op in ops}
        unexpected = sorted(present - attempted, key=lambda m: (len(m), m))
        prefix = "confirmed" if wait else "acknowledged"
        totals[f"{prefix}"] += len(acked)
        totals[f"{prefix}_lost"] += len(lost_ops)
        totals[f"{prefix}_in_windows"] += len(acked_in)
        totals[f"{prefix}_lost_in_windows"] += len(lost_in)
        totals["writers_" + prefix] += 1
        totals["unknown_writes"] += sum(op.outcome == h.UNKNOWN for op in ops)
        totals["unknown_writes_landed"] += len(landed_unknown)
        totals["failed_writes_landed"] += len(landed_failed)
        totals["unexpected_members"] += len(unexpected)
        lost_by_writer[writer] = [op.member for op in lost_ops]
        row.update({
            "acknowledged": len(acked), "lost": len(lost_ops),
            "acknowledged_in_fault_windows": len(acked_in), "lost_in_fault_windows": len(lost_in),
            "lost_fraction_in_fault_windows": (len(lost_in) / len(acked_in)) if acked_in else None,
            "first_lost": [{"member": op.member, "op": op.op, "primary": op.primary,
                            "acknowledged": _iso(op.complete_wall)} for op in lost_ops[:FIRST_LOST_MAX]],
            "unknown": sum(op.outcome == h.UNKNOWN for op in ops), "unknown_landed": len(landed_unknown),
            "failed_landed": len(landed_failed), "unexpected_members": unexpected[:FIRST_LOST_MAX],
            "read": True})
        if lost_ops:
            row["why"] = (f"{len(lost_ops)} {'WAIT-confirmed' if wait else 'acknowledged'} write(s) missing from "
                          f"{row['set'] or 'its set'} after heal")
        evidence.append(row)
    if len(unread) == len(by_writer):
        return nothing(f"no writer's set could be read after heal ({top_error or 'see redis_writes.json'})")
    metrics: dict[str, Any] = {
        "acknowledged_writes_lost": totals["acknowledged_lost"] if totals["writers_acknowledged"] else None,
        "acknowledged_writes_lost_fraction": (totals["acknowledged_lost_in_windows"]
                                              / totals["acknowledged_in_windows"])
        if totals["acknowledged_in_windows"] else None,
        # nothing confirmed, nothing at risk: WAIT confirming no write (all unknown) is not a pass
        "confirmed_writes_lost": totals["confirmed_lost"] if totals["writers_confirmed"] and totals["confirmed"]
        else None,
        "acknowledged_writes": totals["acknowledged"], "acknowledged_in_fault_windows": totals[
            "acknowledged_in_windows"], "confirmed_writes": totals["confirmed"],
        "unknown_writes": totals["unknown_writes"], "unknown_writes_landed": totals["unknown_writes_landed"],
        "failed_writes_landed": totals["failed_writes_landed"], "unexpected_members": totals["unexpected_members"],
        "writers": len(by_writer), "writers_unread": len(unread),
        "unreadable_lines": sum(unreadable.values())}
    for side in ("minority", "majority"):  # per side of the partition, writers without WAIT (not judged)
        rows = [e for e in evidence if e.get("kind") == "writer" and e.get("read") and not e["wait"]
                and e["side"] == side and e["acknowledged_in_fault_windows"]]
        metrics[f"{side}_lost_fraction"] = (sum(e["lost_in_fault_windows"] for e in rows)
                                            / sum(e["acknowledged_in_fault_windows"] for e in rows)) if rows else None
    reasons = {
        "acknowledged_writes_lost": "no writer without WAIT had its set read",
        "acknowledged_writes_lost_fraction": (
            "no write acknowledged during a fault window by a writer without WAIT"
            + ("" if in_window else f" (no {fault or 'fault'} injection in {h.FAULTS})")),
        "confirmed_writes_lost": "no writer with WAIT in the run, its set was not read, or WAIT confirmed none of "
                                 "its writes (they are unknown, not confirmed)"}
    judgements = []
    for metric in judged:
        judgements += judge({metric: metrics[metric]}, requirement_ids, targets, unmeasured_reason=reasons[metric])
    evidence += _unreadable_evidence(unreadable)
    evidence.append({"kind": "rule", "rule": SET_RULE, "note": WAIT_NOTE})
    parts = []
    if metrics["acknowledged_writes_lost"] is not None:
        frac = metrics["acknowledged_writes_lost_fraction"]
        in_win = totals["acknowledged_in_windows"]
        parts.append(f"{metrics['acknowledged_writes_lost']} of {totals['acknowledged']} acknowledged write(s) lost"
                     + (f" (of the {in_win} acknowledged during the fault window, {round(frac * in_win)} = "
                        f"{frac:.0%} lost)" if frac is not None else ""))
    if metrics["confirmed_writes_lost"] is not None:
        parts.append(f"{metrics['confirmed_writes_lost']} of {totals['confirmed']} WAIT-confirmed write(s) lost")
    losers = [f"{e['writer']} ({e['side'] or 'no side'}): {e['lost']}" for e in evidence
              if e.get("kind") == "writer" and e.get("lost")]
    summary = "; ".join(parts) + (f" - {', '.join(losers)}" if losers else "")
    if metrics["unknown_writes_landed"]:
        summary += f"; {metrics['unknown_writes_landed']} unknown write(s) landed"
    if unread:
        summary += f"; not read: {', '.join(unread)}"
    return RedisSetResult("redis_set", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                          judgements, lost=lost_by_writer)


# following the primary --------------------------------------------------------------------------------------------
FOLLOW_RULE = ("The switch instant is the earliest +switch-master line of the Sentinel logs (wall clock, UTC) for a "
               "change after an injection. An engine follows when each of its Redis clients that records primary "
               "changes (redis_primary_changed: the engine's link; lease_redis_primary_changed: its lease) names "
               "the new primary in an event after the switch's cause (the injection, or the previous switch); a "
               "writer follows at its first ok redis_write sent to the new primary. A member on the minority side "
               "of a partition cannot reach the new primary before the heal: its delay is timed from the heal. "
               "Following before the switch was logged counts as 0 s. Never followed: the time it was observed is "
               "a lower bound.")


def _follow_of(name: str, followed: float | None, since_switch: float, reachable: float | None, last_seen: float | None,
               **extra) -> dict:
    """A follower's row: the delay from the instant the new primary was reachable to it (or a lower bound)."""
    row: dict[str, Any] = {"name": name, **extra}
    if reachable is None:
        return {**row, "follow_s": None, "judged": False,
                "why": "on the minority side of a partition that was never healed: the new primary was never "
                       "reachable to it"}
    if followed is not None:
        return {**row, "follow_s": round(max(0.0, followed - reachable), 6), "raw_s": round(followed - reachable, 6),
                "since_switch_s": round(followed - since_switch, 6), "followed": _iso(followed),
                "lower_bound": False, "judged": True}
    if last_seen is None or last_seen <= reachable:
        return {**row, "follow_s": None, "judged": False,
                "why": "no record of it after the new primary became reachable (stopped, paused or not running)"}
    return {**row, "follow_s": round(last_seen - reachable, 6), "lower_bound": True, "judged": True,
            "why": f"never named the new primary; observed {last_seen - reachable:.3f} s after it was reachable"}


def _worst(rows: Sequence[dict]) -> tuple[float | None, bool]:
    judged = [r for r in rows if r.get("judged")]
    if not judged:
        return None, False
    return max(r["follow_s"] for r in judged), any(r.get("lower_bound") for r in judged)


def check_primary_follow(switches: Sequence[Switch], windows: Sequence[FaultWindow],
                         engine_logs: Sequence[tuple[str, Sequence[dict]]], writes: Sequence[RedisWrite], *,
                         writer_sides: dict[str, str] | None = None, sentinel_logs: int = 1,
                         requirement_ids: Sequence[str] = ("RDS-2",), targets: targets_mod.Targets | None = None,
                         unreadable: dict[str, int] | None = None) -> PrimaryFollowResult:
    """RDS-2 ("clients switch automatically"; issue 12: the engine writes to the new primary within 1 s of the
    switch). ``switches``: :func:`distinct_switches` of the Sentinel logs; ``engine_logs``: (node, events) per
    engine event log; ``writes``: the history's redis_write operations; ``writer_sides``: writer -> "minority" |
    "majority" (else the partition's ``details.sides``).

    Metrics (s): ``primary_follow_s``, the worst engine's delay from the switch to its first event naming the new
    primary; ``client_follow_s``, the worst writer's delay to its first ok write on the new primary. See
    ``FOLLOW_RULE``. Unmeasured when there is no Sentinel log, no switch after an injection (no primary change
    happened: nothing to follow), or no engine that records primary changes."""
    judged = ("primary_follow_s", "client_follow_s")
    unreadable = dict(unreadable or {})

    def nothing(why: str) -> PrimaryFollowResult:
        return _unmeasured(PrimaryFollowResult, "primary_follow", requirement_ids, targets, judged, why, unreadable=unreadable)

    if not sentinel_logs:
        return nothing(f"no Sentinel log ({SENTINEL_LOGS_GLOB}) in the run: when the primary changed is unknown")
    injections = sorted(w.inject_wall for w in windows if w.inject_wall is not None)
    if injections:
        considered = [s for s in switches if s.ts >= injections[0] - SWITCH_SLACK_S]
    else:
        considered = list(switches)
    if not considered:
        return nothing("no +switch-master in the Sentinel logs" + (" after the injection" if injections else "")
                       + f" ({len(switches)} in all): no primary change happened, so following one cannot be timed")
    sides_by_window = []
    for w in windows:
        sides = w.details.get("sides") if isinstance(w.details.get("sides"), dict) else {}
        minority = sides.get("minority") if isinstance(sides.get("minority"), list) else []
        if w.inject_wall is not None and minority:
            sides_by_window.append((w, {m for m in minority if isinstance(m, str)}))
    writer_sides = writer_sides or {}
    by_writer: dict[str, list[RedisWrite]] = defaultdict(list)
    for op in writes:
        by_writer[op.writer].append(op)
    engine_rows, writer_rows, switch_rows = [], [], []
    recorded_changes = 0
    for k, sw in enumerate(considered):
        causes = [t for t in injections if t - SWITCH_SLACK_S <= sw.ts]
        since = causes[-1] - SWITCH_SLACK_S if causes else -math.inf
        if k:
            since = max(since, considered[k - 1].ts)
        cut = next(((w, names) for w, names in sides_by_window
                    if w.inject_wall <= sw.ts and (w.heal_wall is None or sw.ts <= w.heal_wall)), None)

        def reachable(names: set[str], side: str | None = None) -> tuple[float | None, str | None]:
            minority = side == "minority" or (cut is not None and bool(names & cut[1]))
            if not minority:
                return sw.ts, side
            return (cut[0].heal_wall if cut else sw.ts), "minority"

        switch_rows.append({**_switch_ref(sw), "since": _iso(since) if math.isfinite(since) else None,
                            "partition": cut[0].fault_id if cut else None,
                            "heal": _iso(cut[0].heal_wall) if cut else None})
        records_changes = any(e.get("event") in PRIMARY_CHANGE_EVENTS for _n, evs in engine_logs for e in evs)
        for node, events in engine_logs:
            instance = next((str(e["instance"]) for e in events if isinstance(e.get("instance"), str)), node)
            if not records_changes:
                continue   # engines before issue 12: they do not say which primary they write to
            stamps = [t for t in (_num(e.get("ts")) for e in events) if t is not None]
            started_after = any(e.get("event") == "engine_start" for e in events) and \
                all(t > sw.ts for t in stamps)
            if started_after or not any(t > sw.ts for t in stamps):
                continue   # started after the switch, or gone before it: it never wrote to the old primary
            # every Redis client of a running engine must move (its main link and its lease link), whether the
            # move was seen from the Sentinels or at a reconnect (found by a new user: an engine that logged
            # nothing, or only its lease's move, was skipped or judged on the lease alone)
            kinds = sorted(PRIMARY_CHANGE_EVENTS)
            recorded_changes += 1
            at, side = reachable({node, instance, f"engine-{instance.lower()}"})
            firsts = {}
            for kind in kinds:
                firsts[kind] = min((t for e in events if e.get("event") == kind and _addr(e.get("new")) == sw.new
                                    for t in [_num(e.get("ts"))] if t is not None and t >= since), default=None)
            followed = max(firsts.values()) if all(v is not None for v in firsts.values()) else None
            last = max((t for t in (_num(e.get("ts")) for e in events) if t is not None), default=None)
            engine_rows.append(_follow_of(
                instance, followed, sw.ts, at, last, kind="engine", node=node, side=side, switch=k, new=sw.new,
                clients={kind: _iso(t) for kind, t in firsts.items()}))
        for writer in sorted(by_writer):
            ops = by_writer[writer]
            at, side = reachable({writer}, writer_sides.get(writer))
            first = next((op.complete_wall for op in sorted(ops, key=lambda o: o.complete_wall or math.inf)
                          if op.outcome == h.OK and op.primary == sw.new and op.complete_wall is not None
                          and op.complete_wall >= since), None)
            last = max((t for op in ops for t in (op.invoke_wall, op.complete_wall) if t is not None), default=None)
            writer_rows.append(_follow_of(writer, first, sw.ts, at, last, kind="writer", side=side, switch=k,
                                          new=sw.new))
    if not recorded_changes:
        r = nothing(f"no engine event log records {' or '.join(PRIMARY_CHANGE_EVENTS)} (an engine before issue 12 "
                    f"does not say which primary it writes to)" if engine_logs else
                    f"no engine event log ({ENGINE_EVENTS_GLOB}) in the run")
        r.switches = switch_rows
        return r
    engine_s, engine_lower = _worst(engine_rows)
    client_s, client_lower = _worst(writer_rows)
    metrics = {"primary_follow_s": engine_s, "client_follow_s": client_s, "switches": len(considered),
               "engines_judged": sum(bool(r.get("judged")) for r in engine_rows),
               "writers_judged": sum(bool(r.get("judged")) for r in writer_rows),
               "unreadable_lines": sum(unreadable.values())}
    judgements = judge({"primary_follow_s": engine_s}, requirement_ids, targets,
                       ["primary_follow_s"] if engine_lower else [],
                       unmeasured_reason="no engine had a record after the new primary became reachable")
    judgements += judge({"client_follow_s": client_s}, requirement_ids, targets,
                        ["client_follow_s"] if client_lower else [],
                        unmeasured_reason="no redis_write writer had an operation after the new primary became "
                                          "reachable")
    evidence = [{"kind": "switch", **s} for s in switch_rows] + engine_rows + writer_rows
    evidence += _unreadable_evidence(unreadable)
    evidence.append({"kind": "rule", "rule": FOLLOW_RULE})

    def part(label: str, s: float | None, lower: bool, rows: list[dict]) -> str:
        if s is None:
            return f"{label}: not judged"
        worst = max((r for r in rows if r.get("judged")), key=lambda r: r["follow_s"])
        return f"{label} {'>= ' if lower else ''}{s:.3f} s (worst: {worst['name']})"

    summary = (f"{len(considered)} primary change(s) ({', '.join(f'{s.old} -> {s.new}' for s in considered)}); "
               + part("engines followed in", engine_s, engine_lower, engine_rows) + "; "
               + part("writers in", client_s, client_lower, writer_rows))
    return PrimaryFollowResult("primary_follow", validity(judgements), tuple(requirement_ids), metrics, evidence,
                               summary, judgements, switches=switch_rows, engines=engine_rows, writers=writer_rows)


# failovers and roles after heal -------------------------------------------------------------------------------
EXPECT_FAILOVERS = {"none": 0, "one": 1}


def _expected_failovers(expect: Any) -> tuple[int | None, str | None]:
    if expect is None:
        return None, "the scenario does not say how many failovers to expect (params.expect: \"none\" or \"one\")"
    if isinstance(expect, str) and expect.strip().lower() in EXPECT_FAILOVERS:
        return EXPECT_FAILOVERS[expect.strip().lower()], None
    if isinstance(expect, int) and not isinstance(expect, bool) and expect >= 0:
        return expect, None
    return None, f"params.expect {expect!r} is not \"none\", \"one\" or a count"


def roles_after_heal(doc: dict) -> tuple[str | None, list[dict], dict]:
    """The one primary the Sentinels name in ``redis_roles.json`` (most of them; a tie goes to a node that says it
    is master), and every node or Sentinel that disagrees with it: a node that is not a replica of it with its
    link up (or is it and not master), a Sentinel naming another primary or none."""
    nodes = doc.get("nodes") if isinstance(doc.get("nodes"), dict) else {}
    sentinels = doc.get("sentinels") if isinstance(doc.get("sentinels"), dict) else {}
    named = {name: _addr(s.get("primary")) if isinstance(s, dict) else None for name, s in sentinels.items()}
    votes: dict[str, int] = defaultdict(int)
    for addr in named.values():
        if addr:
            votes[addr] += 1
    node_rows = {name: n if isinstance(n, dict) else {} for name, n in nodes.items()}
    masters = {_addr(n.get("address")) for n in node_rows.values() if n.get("role") == "master"}
    primary = max(sorted(votes), key=lambda a: (votes[a], a in masters), default=None)
    diverged = []
    if primary is None:
        return None, [], {"nodes": len(node_rows), "sentinels": len(named)}
    for name in sorted(node_rows):
        n = node_rows[name]
        addr, role = _addr(n.get("address")), n.get("role")
        error = n.get("error") if isinstance(n.get("error"), str) else None
        if addr == primary:
            if role != "master":
                diverged.append({"kind": "node", "node": name, "address": addr, "role": role, "error": error,
                                 "why": f"the Sentinels name it primary, but it reports role {role!r}"
                                        + (f" ({error})" if error else "")})
            continue
        if role in ("slave", "replica") and _addr(n.get("master")) == primary and n.get("link") == "up":
            continue
        if error and role is None:
            why = f"could not be asked after heal: {error}"
        elif role == "master":
            why = f"still reports role master beside the primary {primary} (split brain)"
        elif _addr(n.get("master")) != primary:
            why = f"replicates {_addr(n.get('master'))}, not the primary {primary}"
        else:
            why = f"replica of {primary} with its link {n.get('link')!r}, not up"
        diverged.append({"kind": "node", "node": name, "address": addr, "role": role,
                         "master": _addr(n.get("master")), "link": n.get("link"), "why": why})
    for name in sorted(named):
        if named[name] != primary:
            s = sentinels[name] if isinstance(sentinels[name], dict) else {}
            error = s.get("error") if isinstance(s.get("error"), str) else None
            diverged.append({"kind": "sentinel", "sentinel": name, "primary": named[name],
                             "why": (f"names {named[name]}" if named[name] else
                                     f"names no primary{f' ({error})' if error else ''}")
                             + f", not {primary}"})
    return primary, diverged, {"nodes": len(node_rows), "sentinels": len(named)}


def check_failovers(switches: Sequence[Switch], sentinel_events: Sequence[SentinelEvent], roles: dict | None, *,
                    expect: Any = None, sentinel_logs: int = 1, roles_problem: str | None = None,
                    shortcuts: Sequence[dict] = (), requirement_ids: Sequence[str] = ("RDS-1",),
                    targets: targets_mod.Targets | None = None,
                    unreadable: dict[str, int] | None = None) -> FailoverResult:
    """RDS-1 ("no failover may happen without quorum": Sentinel quorum 2) and RDS-2 (the old primary rejoins as
    a replica). ``switches``: :func:`distinct_switches` of the Sentinel logs; ``roles``: ``redis_roles.json``
    after heal (``{"nodes": {name: {"address", "role", "master", "link", "error"}}, "sentinels": {name:
    {"primary", "error"}}}``); ``expect``: "none", "one" or a count, from the scenario.

    Metrics (counts): ``failovers`` (distinct +switch-master), ``unexpected_failovers`` = |failovers - expected|
    (judged; unmeasured without ``expect`` or without Sentinel logs), ``roles_diverged`` (nodes that are not a
    replica, link up, of the one primary the Sentinels name, plus Sentinels naming another). Unmeasured (never
    pass) when redis_roles.json is missing or unreadable."""
    judged = ("unexpected_failovers", "roles_diverged")
    unreadable = dict(unreadable or {})

    def nothing(why: str) -> FailoverResult:
        return _unmeasured(FailoverResult, "failovers", requirement_ids, targets, judged, why, unreadable=unreadable)

    if roles_problem:
        return nothing(f"{REDIS_ROLES} cannot be read: {roles_problem}")
    if roles is None:
        return nothing(f"no {REDIS_ROLES} in the run: the roles after heal were not recorded")
    expected, expect_problem = _expected_failovers(expect)
    counts: dict[str, int] = defaultdict(int)
    aborts: dict[str, int] = defaultdict(int)
    for e in sentinel_events:
        counts[e.event] += 1
        if e.event.startswith("-failover-abort"):
            aborts[e.event] += 1
    failovers = len(switches) if sentinel_logs else None
    primary, diverged, seen = roles_after_heal(roles)
    metrics = {"failovers": failovers, "expected_failovers": expected,
               "unexpected_failovers": abs(failovers - expected) if failovers is not None and expected is not None
               else None,
               "roles_diverged": len(diverged) if primary is not None else None,
               "tried_failovers": counts["+try-failover"], "aborted_failovers": sum(aborts.values()),
               "odown": counts["+odown"], "elected_leaders": counts["+elected-leader"],
               "redis_nodes": seen["nodes"], "sentinels": seen["sentinels"],
               "unreadable_lines": sum(unreadable.values())}
    why_failovers = expect_problem or (f"no Sentinel log ({SENTINEL_LOGS_GLOB}) in the run: failovers cannot be "
                                       f"counted")
    why_roles = ("no Sentinel in redis_roles.json named a primary after heal" if seen["sentinels"]
                 else "redis_roles.json lists no Sentinel")
    if primary is not None and not seen["nodes"]:
        metrics["roles_diverged"], why_roles = None, "redis_roles.json lists no Redis node"
    judgements = judge({"unexpected_failovers": metrics["unexpected_failovers"]}, requirement_ids, targets,
                       unmeasured_reason=why_failovers)
    judgements += judge({"roles_diverged": metrics["roles_diverged"]}, requirement_ids, targets,
                        unmeasured_reason=why_roles)
    evidence: list[dict] = [{"kind": "switch", **_switch_ref(s)} for s in switches]
    evidence += [{"kind": "shortcut-line", **d} for d in shortcuts]
    evidence += diverged
    evidence.append({"kind": "sentinel-events", "counts": dict(counts), "aborts": dict(aborts),
                     "why": "what the Sentinels tried: +odown (quorum agreed the primary is down), +try-failover, "
                            "+elected-leader, -failover-abort-* (e.g. not elected: no majority)"})
    evidence += _unreadable_evidence(unreadable)
    if failovers is None:
        head = "failovers not counted (no Sentinel log)"
    else:
        head = f"{failovers} failover(s)" + (f" (expected {expect})" if expected is not None else "")
        if failovers == 0 and counts["+try-failover"]:
            head += f": {counts['+try-failover']} tried, {sum(aborts.values())} aborted"
    if primary is None:
        tail = why_roles
    elif diverged:
        tail = (f"{len(diverged)} disagree(s) with the primary {primary} after heal: "
                + "; ".join(f"{d.get('node') or d.get('sentinel')} {d['why']}" for d in diverged[:5]))
    else:
        tail = f"after heal every node replicates {primary} and every Sentinel names it"
    return FailoverResult("failovers", validity(judgements), tuple(requirement_ids), metrics, evidence,
                          f"{head}; {tail}", judgements, switches=[_switch_ref(s) for s in switches],
                          diverged=diverged)


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
    summary = (f"{metrics['ops']} {f + ' ' if f else ''}op(s): {metrics['ok']} ok, {metrics['fail']} fail, "
               f"{metrics['unknown']} unknown"
               + (f"; steady p95 {metrics['latency_p95_ms']:.1f} ms" if steady else ""))
    return TimelineResult("timeline", True if kind else UNKNOWN, (), metrics, [], summary, [], t0=t0,
                          points=points, bins=bins, fault_windows=fw)


# -- the DuckDB store under damage (issue 13) -------------------------------------------------------------------
STORE_DAMAGE_FAULTS = ("duckdb-corrupt", "duckdb-crash-corrupt")   # faults that damage an engine's journal
STORE_EVENTS = ("journal_unhealthy", "journal_repaired", "journal_repair_failed")
STORE_GRACE_S = 0.25   # a health check may find the damage before the fault log's inject line is written
DAMAGED_GLOB = "stack/engines/*/backup/duckdb/damaged/*"
STORE_REPAIR_RULE = ("Per damage that landed (an inject line of duckdb-corrupt or duckdb-crash-corrupt in faults.jsonl, "
                     "naming the journal file): detection = the first journal_unhealthy, journal_repaired or "
                     "journal_repair_failed event naming that file at or after the injection (engine event logs, the "
                     "same monotonic clock); restore_s = injection to the journal_repaired event (a usable journal "
                     "again); evidence = the repair's folder under backup/duckdb/damaged/ holding at least one "
                     "damaged file besides diagnosis.txt; rpo_s = 0 when the repair lost no committed write, else the "
                     "time from the snapshot restored to the journal owner's last event before the damage (an upper "
                     "bound of the span of committed writes the restored copy lacks).")


@dataclass
class StoreRepairResult(CheckResult):
    damages: list[dict] = field(default_factory=list)


def _same_file(a: Any, b: Any) -> bool:
    """Two spellings of one journal file (absolute paths of the run, or a moved run folder): the same name in a
    folder of the same name."""
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        return False
    pa, pb = Path(a), Path(b)
    return pa.name == pb.name and pa.parent.name == pb.parent.name


def _rebased(path: Any, run_path: Path) -> Path | None:
    """A path recorded during the run, found again in the run folder (which may have moved since)."""
    if not isinstance(path, str) or not path:
        return None
    p = Path(path)
    if p.exists():
        return p
    marker = "/stack/engines/"
    text = str(p)
    if marker in text:
        candidate = run_path / "stack" / "engines" / text.split(marker, 1)[1]
        if candidate.exists():
            return candidate
    return None


def evidence_files(folder: Path | None) -> list[str]:
    """The damaged files kept in one evidence folder (its diagnosis.txt apart)."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(f.name for f in folder.iterdir() if f.is_file() and f.name != "diagnosis.txt")


_SNAPSHOT_TAKEN = re.compile(r"\.t(\d{10,})\.duckdb")


def check_store_repair(windows: Sequence[FaultWindow], events: Sequence[dict] | None, run_path: str | Path, *,
                       requirement_ids: Sequence[str] = ("DDB-3", "DDB-6"),
                       targets: targets_mod.Targets | None = None, end_mono: float | None = None,
                       unreadable: dict[str, int] | None = None) -> StoreRepairResult:
    """DDB-3/DDB-6 for every damage done to an engine's DuckDB journal: was it detected (``undetected_corruptions``),
    how long from the damage to a usable journal (``restore_s``, the worst; ``detection_s`` the worst time to the
    first finding), were the damaged files kept (``repairs_without_evidence``), what was recovered and how many
    committed writes the restored copy lacks (``missing_writes``; ``rpo_s``). Damage never followed by a repair
    makes ``restore_s`` a lower bound (the time observed). No damage landed, or no engine event log: ``unmeasured``."""
    names = ("undetected_corruptions", "restore_s", "detection_s", "repairs_without_evidence", "rpo_s")
    run_path = Path(run_path)
    damages = sorted((w for w in windows if w.fault in STORE_DAMAGE_FAULTS and w.inject_mono is not None),
                     key=lambda w: w.inject_mono)
    if not damages:
        return _unmeasured(StoreRepairResult, "store_repair", requirement_ids, targets, names,
                           f"no {' or '.join(STORE_DAMAGE_FAULTS)} injection in the fault log: no damage landed in a "
                           f"journal, nothing to detect or repair", damages=[])
    if not events:
        return _unmeasured(StoreRepairResult, "store_repair", requirement_ids, targets, names,
                           f"{len(damages)} damage(s) landed but the run has no engine event log "
                           f"({ENGINE_EVENTS_GLOB}): whether the engines found them cannot be told", damages=[])
    store = sorted((e for e in events if e.get("event") in STORE_EVENTS and _num(e.get("mono")) is not None),
                   key=lambda e: _num(e.get("mono")))
    end = end_mono if end_mono is not None else max(
        [_num(e.get("mono")) for e in events if _num(e.get("mono")) is not None]
        + [w.heal_mono or w.inject_mono for w in windows], default=0.0)
    used: set[int] = set()
    rows: list[dict] = []
    for i, w in enumerate(damages):
        file = (w.details or {}).get("path") or (w.details or {}).get("file")
        later = [d for d in damages[i + 1:] if _same_file(d.details.get("path"), file)]
        until = later[0].inject_mono - STORE_GRACE_S if later else math.inf
        mine = [(k, e) for k, e in enumerate(store) if k not in used and _same_file(e.get("file"), file)
                and w.inject_mono - STORE_GRACE_S <= _num(e.get("mono")) < until]
        first = mine[0][1] if mine else None
        repaired = next(((k, e) for k, e in mine if e.get("event") == "journal_repaired"), None)
        failed = next((e for _k, e in mine if e.get("event") == "journal_repair_failed"), None)
        used.update(k for k, _e in mine)
        row: dict[str, Any] = {
            "kind": "damage", "fault": w.fault, "fault_id": w.fault_id, "description": w.description,
            "mode": w.details.get("mode"), "file": file, "node": Path(file).parent.name if file else None,
            "damage": {k: v for k, v in w.details.items() if k in ("offsets", "block", "zeroed", "from", "to")},
            "inject_mono": w.inject_mono, "detected": first is not None,
            "detected_by": None, "detection_s": None, "restore_s": None, "restore_lower_bound": False,
            "repair_s": None, "saw": None, "recovered": None, "committed": None, "restored": None,
            "missing_writes": None, "rpo_s": None, "evidence": None, "files_kept": [], "problem": None}
        if first is not None:
            row["detection_s"] = round(max(0.0, _num(first["mono"]) - w.inject_mono), 6)
            row["detected_by"] = ("health check (DDB-6)" if first.get("event") == "journal_unhealthy"
                                  else "open (repair at start)" if first.get("event") == "journal_repaired"
                                  else "health check, repair failed")
            if first.get("event") == "journal_unhealthy":
                row["saw"] = first.get("problem")
        if repaired is not None:
            e = repaired[1]
            row["restore_s"] = round(max(0.0, _num(e["mono"]) - w.inject_mono), 6)
            row["repair_s"] = _num(e.get("seconds"))
            row["saw"] = e.get("saw") or row["saw"]
            row["recovered"] = e.get("recovered")
            for key in ("committed", "restored", "missing_writes"):
                row[key] = int(_num(e.get(key))) if _num(e.get(key)) is not None else None
            folder = _rebased(e.get("evidence"), run_path)
            row["evidence"] = str(folder) if folder else e.get("evidence")
            row["files_kept"] = evidence_files(folder)
            if not row["files_kept"]:
                row["problem"] = (f"evidence folder {e.get('evidence')!r} " +
                                  ("holds no damaged file" if folder else "is not in the run folder"))
            if row["missing_writes"] == 0:
                row["rpo_s"] = 0.0
            else:
                m = _SNAPSHOT_TAKEN.search(str(e.get("recovered") or ""))
                if m and w.inject_wall is not None:
                    # no write the restored copy lacks is newer than the journal owner's last event before the
                    # damage (nor than the damage itself)
                    instance = Path(file).stem.rpartition("-")[2] if file else ""
                    before = [_num(x.get("ts")) for x in events if str(x.get("instance") or "") == instance
                              and _num(x.get("mono")) is not None and _num(x.get("mono")) < w.inject_mono
                              and _num(x.get("ts")) is not None]
                    newest = min(w.inject_wall, max(before)) if before else w.inject_wall
                    row["rpo_s"] = round(max(0.0, newest - int(m.group(1)) / 1000.0), 6)
        else:
            row["restore_s"] = round(max(0.0, end - w.inject_mono), 6)
            row["restore_lower_bound"] = True
            row["problem"] = ("found, but the repair failed: " + str(failed.get("error")) if failed is not None
                              else "found, but no journal_repaired before the run ended" if first is not None
                              else "never found: no engine event names the damaged file before the run ended")
        rows.append(row)
    unexpected = [e for k, e in enumerate(store) if k not in used and e.get("event") == "journal_repaired"]
    kept_folders = sorted(run_path.glob(DAMAGED_GLOB))
    undetected = sum(not r["detected"] for r in rows)
    lower = any(r["restore_lower_bound"] for r in rows)
    detections = [r["detection_s"] for r in rows if r["detection_s"] is not None]
    repaired_rows = [r for r in rows if not r["restore_lower_bound"]]
    rpos = [r["rpo_s"] for r in repaired_rows]
    metrics: dict[str, Any] = {
        "undetected_corruptions": undetected,
        "restore_s": max(r["restore_s"] for r in rows),
        "detection_s": max(detections) if detections and not undetected else None,
        "repairs_without_evidence": sum(1 for r in repaired_rows if not r["files_kept"]),
        "rpo_s": max(rpos) if rpos and all(x is not None for x in rpos) and not lower else None,
        "damages": len(rows), "detected": len(rows) - undetected, "repaired": len(repaired_rows),
        "damaged_files_kept": sum(len(r["files_kept"]) for r in rows),
        "evidence_folders": len(kept_folders),
        "missing_writes": sum(r["missing_writes"] or 0 for r in repaired_rows),
        "repair_s": max((r["repair_s"] for r in repaired_rows if r["repair_s"] is not None), default=None),
        "unexpected_repairs": len(unexpected),
        "unreadable_lines": sum((unreadable or {}).values()),
    }
    if not repaired_rows:
        metrics["repairs_without_evidence"] = None
    reasons = []
    if metrics["detection_s"] is None:
        reasons.append("detection_s: a damage was never found" if undetected else "detection_s: no finding")
    if metrics["rpo_s"] is None:
        reasons.append("rpo_s: a damage was not repaired, or the copy restored names no snapshot time")
    if metrics["repairs_without_evidence"] is None:
        reasons.append("repairs_without_evidence: no repair to look at")
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets,
                       lower_bounds=("restore_s",) if lower else (), unmeasured_reason="; ".join(reasons))
    evidence: list[dict] = [*rows]
    for e in unexpected[:20]:
        evidence.append({"kind": "unexpected-repair", "why": "a journal_repaired event no damage of the fault log "
                                                             "accounts for", "event": e})
    evidence.append({"kind": "rule", "rule": STORE_REPAIR_RULE,
                     "evidence_folders": [str(p.relative_to(run_path)) for p in kept_folders[:50]]})
    if lower or undetected:
        worst = next(r for r in rows if r["problem"] and r["restore_lower_bound"])
        summary = (f"{undetected} of {len(rows)} damage(s) never found; " if undetected else "") + \
            f"{worst['mode'] or worst['fault']} on {worst['node']}: {worst['problem']} " \
            f"(observed {worst['restore_s']:.3f} s)"
    else:
        worst = max(rows, key=lambda r: r["restore_s"])
        summary = (f"{len(rows)} damage(s) found and repaired; worst restore {metrics['restore_s']:.3f} s "
                   f"({worst['mode']} on {worst['node']}, found by {worst['detected_by']} after "
                   f"{worst['detection_s']:.3f} s: {worst['saw']}; recovered {worst['recovered']}); "
                   f"{metrics['damaged_files_kept']} damaged file(s) kept, {metrics['missing_writes']} committed "
                   f"write(s) not in the restored copy")
    return StoreRepairResult("store_repair", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                             judgements, damages=rows)


# -- persistence drills: PostgreSQL credentials, JSON config, ClickHouse outage, Redis AOF (issue 13) -----------
PG_RESTORE_FAULT = "postgres-restore"
SECRETS_SCAN = "secrets_scan.json"   # scenarios.pglogins.SCAN_FILE
PG_RESTORE_RULE = ("Per postgres-restore of faults.jsonl: restore_s = the heal line's restore_s (pg_dump's newest "
                   "intact dump loaded into a staging database and swapped in); logins_not_decrypted = the brokers of "
                   "logins_expected not in logins_decrypted (read back and opened with the key after the restore); "
                   "engine_logins_after_restore = engine instances with a broker_logins_read event (source "
                   "postgresql) after the heal and a broker_connected event after that read (they logged in to a "
                   "broker with the restored logins); secret_leaks = files of the run folder holding the key or a "
                   "broker password outside the brokers' own account state (secrets_scan.json, written at teardown before the key is "
                   "removed).")


@dataclass
class PgRestoreResult(CheckResult):
    restores: list[dict] = field(default_factory=list)


def check_pg_restore(records: Sequence[dict], events: Sequence[dict] | None, scan: dict | None, *,
                     requirement_ids: Sequence[str] = ("PG-1",), targets: targets_mod.Targets | None = None,
                     unreadable: dict[str, int] | None = None) -> PgRestoreResult:
    """PG-1 for every dump-drop-restore of the credentials database: the restore time, the logins decrypting
    again, an engine logging in to its broker with them after the restore, and no key or password in the run
    folder. No postgres-restore injected: ``unmeasured``."""
    names = ("restore_s", "logins_not_decrypted", "engine_logins_after_restore", "secret_leaks")
    records = [r for r in records if isinstance(r, dict)]
    injects = [r for r in records if r.get("event") == "inject" and r.get("fault") == PG_RESTORE_FAULT]
    if not injects:
        return _unmeasured(PgRestoreResult, "pg_restore", requirement_ids, targets, names,
                           f"no {PG_RESTORE_FAULT} injection in the fault log: the credentials database was never "
                           f"dropped, nothing was restored", unreadable=unreadable)
    heals = {r.get("fault_id"): r for r in records if r.get("fault") == PG_RESTORE_FAULT
             and r.get("event") in ("heal", "heal-failed")}
    events = [e for e in (events or []) if isinstance(e, dict)]
    rows, lower = [], False

    def names_of(value: Any) -> list[str]:
        return [str(v) for v in value if isinstance(v, str)] if isinstance(value, list) else []

    for inj in injects:
        heal = heals.get(inj.get("fault_id"))
        d = heal.get("details") if heal and isinstance(heal.get("details"), dict) else {}
        di = inj.get("details") if isinstance(inj.get("details"), dict) else {}
        row = {"fault_id": inj.get("fault_id"), "dump": di.get("dump"), "dump_bytes": _num(di.get("dump_bytes")),
               "dump_s": _num(di.get("dump_s")), "healed": bool(heal and heal["event"] == "heal"),
               "restore_s": _num(d.get("restore_s")), "outage_s": _num(d.get("outage_s")),
               "expected": names_of(d.get("logins_expected")) or names_of(di.get("logins_expected")),
               "decrypted": names_of(d.get("logins_decrypted")), "verify_error": d.get("verify_error"),
               "heal_mono": _num(heal.get("mono")) if heal and heal["event"] == "heal" else None}
        if row["heal_mono"] is None and row["healed"]:
            row["healed"] = False
        if row["restore_s"] is None or not row["healed"]:   # never restored: what was observed is a lower bound
            start = _num(inj.get("mono")) or 0.0
            ends = [_num(e.get("mono")) for e in events if _num(e.get("mono")) is not None]
            row["restore_s"] = round(max(0.0, max(ends, default=start) - start), 6)
            row["healed"], row["heal_mono"] = False, None
            row["problem"] = (f"the restore failed: {heal.get('error')}" if heal else
                              "no heal line: the database was never restored")
            lower = True
        rows.append(row)
    healed = [r for r in rows if r["healed"]]
    last_heal = max((r["heal_mono"] for r in healed), default=None)
    logged_in: list[dict] = []
    if last_heal is not None and events:
        reads = [e for e in events if e.get("event") == "broker_logins_read" and e.get("source") == "postgresql"
                 and (_num(e.get("mono")) or 0.0) > last_heal]
        for read in reads:
            t = _num(read.get("mono"))
            connected = next((e for e in events if e.get("event") == "broker_connected"
                              and e.get("instance") == read.get("instance") and (_num(e.get("mono")) or 0.0) >= t),
                             None)
            if connected is not None and all(x["instance"] != read.get("instance") for x in logged_in):
                logged_in.append({"instance": read.get("instance"), "read_after_restore_s": round(t - last_heal, 3),
                                  "brokers": read.get("brokers"), "connected_to": connected.get("broker"),
                                  "connected_after_read_s": round((_num(connected.get("mono")) or t) - t, 3)})
    metrics: dict[str, Any] = {
        "restore_s": max(r["restore_s"] for r in rows),
        "logins_not_decrypted": (sum(len(set(r["expected"]) - set(r["decrypted"])) for r in healed)
                                 if healed and all(r["expected"] for r in healed) else None),
        "engine_logins_after_restore": len(logged_in) if events and last_heal is not None else None,
        "secret_leaks": (len(scan["key_found_in"]) + len(scan["password_found_in"])
                         if isinstance(scan, dict) and isinstance(scan.get("key_found_in"), list)
                         and isinstance(scan.get("password_found_in"), list) else None),
        "restores": len(rows), "outage_s": max((r["outage_s"] or 0.0 for r in healed), default=None),
        "dump_bytes": max((r["dump_bytes"] or 0 for r in rows), default=None),
        "scanned_files": scan.get("scanned_files") if isinstance(scan, dict) else None,
    }
    reasons = []
    if metrics["logins_not_decrypted"] is None:
        reasons.append("logins_not_decrypted: no completed restore naming the logins it expected")
    if metrics["engine_logins_after_restore"] is None:
        reasons.append("engine_logins_after_restore: no engine event log or no completed restore")
    if metrics["secret_leaks"] is None:
        reasons.append(f"secret_leaks: the run has no readable {SECRETS_SCAN} (key_found_in, password_found_in)")
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets,
                       lower_bounds=("restore_s",) if lower else (), unmeasured_reason="; ".join(reasons))
    # PG-1's schedule is hours long: a drill of a minute sees one dump (the fault's own), never the 6-hourly ones,
    # so these are said unmeasured, not passed (the schedule is in reference.settings.policy.DumpPolicy and
    # reference.settings.pgdumps, exercised with a clock of their own in tests/settings)
    judgements += judge({"dump_interval_h": None}, requirement_ids, targets, unmeasured_reason=(
        "dump_interval_h: a drill lasts about a minute and sees only the dump its fault takes; the 6-hourly schedule "
        "(DumpPolicy.interval_s) is never observed running here"))
    judgements += judge({"dumps_kept": None}, requirement_ids, targets, unmeasured_reason=(
        "dumps_kept: the drill takes one dump; the rotation to 14 (DumpPolicy.dumps_kept) needs 14 scheduled dumps, "
        "3.5 days at 6 h"))
    evidence: list[dict] = [*rows, *({"kind": "engine-login", **x} for x in logged_in)]
    if isinstance(scan, dict):
        evidence.append({"kind": "secrets-scan", **{k: scan.get(k) for k in ("scanned_files", "key_found_in",
                                                                             "password_found_in", "password_in_broker_state",
                                                                             "key_id")}})
    evidence.append({"kind": "rule", "rule": PG_RESTORE_RULE})
    if unreadable:
        evidence += _unreadable_evidence(unreadable)
    worst = max(rows, key=lambda r: r["restore_s"])
    summary = (f"{len(rows)} restore(s); worst {worst['restore_s']:.3f} s"
               + (f" ({worst['problem']})" if worst.get("problem") else
                  f" from {worst['dump']} ({worst['dump_bytes']} B), database gone {worst['outage_s']} s")
               + f"; logins decrypted {sum(len(r['decrypted']) for r in healed)}/"
                 f"{sum(len(r['expected']) for r in healed)}; {len(logged_in)} engine(s) logged in with them after "
                 f"the restore; key/password found in {metrics['secret_leaks']} run file(s)")
    return PgRestoreResult("pg_restore", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                           judgements, restores=rows)


CONFIG_FAULT = "config-corrupt"
CONFIG_WHAT = {"truncate": "not valid JSON", "invalid-json": "not valid JSON", "wrong-type": "field '",
               "oversize": "cap"}   # what a clear message says for each damage (reference.settings.schema's words)
CONFIG_RULE = ("Per config-corrupt of faults.jsonl (the engine's user settings damaged, then the engine SIGKILLed): the "
               "victim's first user_settings_loaded event after the damage (its own event log, the same monotonic "
               "clock). Recovered = it fell back to a backup file (*.bak); clear = its message names the file, says "
               "what was wrong in the words of the damage (truncate/invalid-json: 'not valid JSON', wrong-type: "
               "\"field '<name>'\", oversize: 'cap') and names the backup it loaded; config_load_s = its load_s (file, "
               "fallback and rewrite); config_backups_kept = the fewest *.bak files beside a damaged file at the end; "
               "the file must be valid again at the end and the damaged one kept (<name>.damaged).")


@dataclass
class ConfigFallbackResult(CheckResult):
    damages: list[dict] = field(default_factory=list)


def check_config_fallback(records: Sequence[dict], logs: Sequence[tuple[str, Sequence[dict]]], run_path: str | Path,
                          *, requirement_ids: Sequence[str] = ("CFG-1", "CFG-2"),
                          targets: targets_mod.Targets | None = None,
                          unreadable: dict[str, int] | None = None) -> ConfigFallbackResult:
    """CFG-1/CFG-2 for every damage done to an engine's JSON settings file: did its restart load the newest valid
    backup (``config_damages_not_recovered``) with a message that names the file, the problem and the backup
    (``unclear_config_messages``), how long the load took (``config_load_s``), how many backups were kept
    (``config_backups_kept``). No damage injected, or no engine event log: ``unmeasured``."""
    from reference.settings import EngineUserSettings, SettingsError, parse_settings

    names = ("config_damages_not_recovered", "unclear_config_messages", "config_load_s", "config_backups_kept")
    run_path = Path(run_path)
    records = [r for r in records if isinstance(r, dict)]
    damages = [r for r in records if r.get("event") == "inject" and r.get("fault") == CONFIG_FAULT
               and _num(r.get("mono")) is not None]
    if not damages:
        return _unmeasured(ConfigFallbackResult, "config_fallback", requirement_ids, targets, names,
                           f"no {CONFIG_FAULT} injection in the fault log: no settings file was damaged",
                           unreadable=unreadable, damages=[])
    by_node = {str(node): [e for e in rows if isinstance(e, dict)] for node, rows in logs}
    if not any(by_node.values()):
        return _unmeasured(ConfigFallbackResult, "config_fallback", requirement_ids, targets, names,
                           f"{len(damages)} damage(s) injected but the run has no engine event log: whether the "
                           f"engines loaded a backup cannot be told", unreadable=unreadable, damages=[])
    rows: list[dict] = []
    for dmg in sorted(damages, key=lambda r: _num(r.get("mono"))):
        d = dmg.get("details") if isinstance(dmg.get("details"), dict) else {}
        node, mode, file = str(d.get("node") or ""), str(d.get("mode") or ""), str(d.get("file") or "")
        t = _num(dmg.get("mono"))
        load = next((e for e in by_node.get(node, []) if e.get("event") == "user_settings_loaded"
                     and (_num(e.get("mono")) or -math.inf) >= t), None)
        row: dict[str, Any] = {"node": node, "mode": mode, "file": file, "what": d.get("what"),
                               "loaded": load is not None}
        if load is None:
            row.update(recovered=False, clear=False, problem="the engine never loaded its settings after the damage")
            rows.append(row)
            continue
        message = str(load.get("message") or "")
        source = str(load.get("source") or "")
        fell_back = load.get("fell_back") is True and source.endswith(".bak")
        name = Path(file).name if file else "engine.json"
        clear_parts = {"names the file": name in message, "names the problem": CONFIG_WHAT.get(mode, "\0") in message,
                       "names the backup": bool(source) and Path(source).name in message}
        row.update(recovered=fell_back, clear=fell_back and all(clear_parts.values()),
                   message=message[:400], source=Path(source).name if source else None,
                   load_s=_num(load.get("load_s")), after_damage_s=round((_num(load.get("mono")) or t) - t, 3),
                   damaged_kept=load.get("damaged_kept") is True,
                   missing_from_message=[k for k, ok in clear_parts.items() if not ok])
        if not fell_back:
            row["problem"] = f"loaded {row['source'] or 'nothing'} instead of a backup"
        rows.append(row)
    finals, backups_kept = [], []
    for file in sorted({r["file"] for r in rows if r["file"]}):
        try:
            found = _rebased(file, run_path)
        except (ValueError, OSError):   # not a path this system can look up (a NUL byte, too long)
            found = None
        if found is not None and not found.is_file():
            found = None
        if found is None:
            finals.append({"file": file, "valid_at_end": None, "why": "not in the run folder"})
            continue
        try:
            parse_settings(found.read_bytes(), EngineUserSettings, max_bytes=10 * 1024, source=found.name)
            valid, why = True, ""
        except (SettingsError, OSError) as exc:
            valid, why = False, str(exc)[:200]
        kept = sorted(p.name for p in found.parent.glob(found.name + ".*.bak"))
        backups_kept.append(len(kept))
        finals.append({"file": str(found.relative_to(run_path)) if run_path in found.parents else str(found),
                       "valid_at_end": valid, "why": why, "backups": kept,
                       "damaged_kept": any(found.parent.glob(found.name + "*.damaged")),
                       "damaged_copies": sum(1 for _ in found.parent.glob(found.name + "*.damaged"))})
    loads = [r["load_s"] for r in rows if r.get("load_s") is not None]
    not_recovered = sum(not r["recovered"] for r in rows) + sum(f["valid_at_end"] is False for f in finals)
    metrics: dict[str, Any] = {
        "config_damages_not_recovered": not_recovered,
        "unclear_config_messages": sum(1 for r in rows if r["recovered"] and not r["clear"]),
        "config_load_s": max(loads) if loads else None,
        "config_backups_kept": min(backups_kept) if backups_kept else None,
        "damages": len(rows), "recovered": sum(r["recovered"] for r in rows),
        "modes": sorted({r["mode"] for r in rows}), "damaged_files_kept": sum(f.get("damaged_kept") is True
                                                                              for f in finals),
    }
    if not any(r["recovered"] for r in rows):
        metrics["unclear_config_messages"] = None
    reasons = []
    if metrics["config_load_s"] is None:
        reasons.append("config_load_s: no load after a damage")
    if metrics["config_backups_kept"] is None:
        reasons.append("config_backups_kept: no damaged settings file found in the run folder")
    if metrics["unclear_config_messages"] is None:
        reasons.append("unclear_config_messages: no fallback to judge a message of")
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets, unmeasured_reason="; ".join(reasons))
    evidence: list[dict] = [*rows, *({"kind": "settings-file-at-end", **f} for f in finals),
                            {"kind": "rule", "rule": CONFIG_RULE}]
    if unreadable:
        evidence += _unreadable_evidence(unreadable)
    bad = [r for r in rows if not r["recovered"] or not r["clear"]]
    summary = (f"{metrics['recovered']} of {len(rows)} damaged settings file(s) ({', '.join(metrics['modes'])}) "
               f"loaded from the newest valid backup")
    if loads:
        summary += f"; slowest load {max(loads):.3f} s"
    if bad:
        summary += f"; {bad[0]['mode']} on {bad[0]['node']}: {bad[0].get('problem') or 'message lacks ' + ', '.join(bad[0].get('missing_from_message') or [])}"
    elif rows and rows[0].get("message"):
        summary += f"; e.g. {rows[0]['message'][:160]}"
    return ConfigFallbackResult("config_fallback", validity(judgements), tuple(requirement_ids), metrics, evidence,
                                summary, judgements, damages=rows)


CLICKHOUSE_ROWS = "clickhouse_rows.json"   # scenarios.environment.CLICKHOUSE_ROWS
CH_OUTAGE_FAULTS = ("process-kill", "process-terminate", "node-isolate")
CH_RULE = ("ClickHouse rows = clickhouse_rows.json, read with FINAL after both engines stopped (one row per trade "
           "key). clickhouse_missing_trades = signals with an order in a broker ledger and no DONE row of that "
           "signal naming one of its orders; clickhouse_duplicate_trades = signals with more than one row under "
           "FINAL. Per outage of the clickhouse node (its fault window): retries before failed_syncs = the largest "
           "'attempts' of clickhouse_failed_sync_added minus the first try; sync_retry_interval_s = the longest gap "
           "between the starts of two consecutive failed tries of one engine in one cycle, to 10 ms; rto_s and failed_trades_recovery_s = "
           "ClickHouse back (heal) to the first clickhouse_sync_recovered event (every waiting failed_syncs row "
           "resent).")


def failed_sync_tries(events: Sequence[dict]) -> tuple[dict[str, Any], dict[str, str], list[dict]]:
    """The failed_syncs retries of the ClickHouse rows as the engines logged them (``clickhouse_failed_syncs``: one
    line per try that had rows due, with synced/failed counts), per engine process: ``failed_sync_retry_s`` (CH-1,
    ORD-2: the largest interval between two consecutive tries of one process), ``first_resync_s`` (BR-2: an
    engine's start to its first try, when rows were waiting at that start) and ``resync_backoff_s`` (BR-2: the
    intervals between the tries that followed a start, in order). None with the reason when the run has no such
    tries (the rows were resent before a retry of failed_syncs fell due, or no engine started with rows waiting)."""
    procs: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        if e.get("event") in ("engine_start", "clickhouse_failed_syncs") and _num(e.get("mono")) is not None:
            procs[(str(e.get("instance")), e.get("pid"))].append(e)
    gaps, firsts, backoffs, rows = [], [], [], []
    for (instance, pid), evs in procs.items():
        evs.sort(key=lambda e: _num(e["mono"]))
        start = next((e for e in evs if e.get("event") == "engine_start"), None)
        tries = [e for e in evs if e.get("event") == "clickhouse_failed_syncs"]
        times = [_num(e["mono"]) for e in tries]
        seq = [round(b - a, 3) for a, b in zip(times, times[1:])]
        gaps += seq
        if start is not None and tries:
            first = round(times[0] - _num(start["mono"]), 3)
            # a first try soon after the start: rows were waiting (a try later on is a row added since)
            if first <= 5.0:
                firsts.append(first)
                backoffs.append([s for s, e in zip(seq, tries) if int(_num(e.get("failed")) or 0) > 0])
        if tries:
            rows.append({"kind": "failed-syncs-tries", "instance": instance, "pid": pid, "tries": len(tries),
                         "intervals_s": seq[:20], "failed": [int(_num(e.get("failed")) or 0) for e in tries][:20]})
    out = {"failed_sync_retry_s": max(gaps) if gaps else None,
           "first_resync_s": max(firsts) if firsts else None,
           "resync_backoff_s": next((b for b in backoffs if b), None)}
    why = {"failed_sync_retry_s": "no engine process tried its failed_syncs rows twice (ClickHouse was back, and the "
                                  "rows resent, before a 60 s failed_syncs retry fell due)",
           "first_resync_s": "no engine started while ClickHouse rows waited in its failed_syncs (this drill restarts "
                             "no engine during the outage)",
           "resync_backoff_s": "no failed_syncs try failed after an engine start. Note: the reference stack's "
                               "ClickHouse rows follow CH-1 (a failed_syncs retry every 60 s, an alert after 5), not "
                               "BR-2's 1, 2, 4, 8, 16 s, and no other failed_syncs target is resynced on that "
                               "schedule (orders follow ORD-2's 60 s)"}
    return out, why, rows


@dataclass
class ClickHouseHistoryResult(CheckResult):
    outages: list[dict] = field(default_factory=list)


def check_clickhouse_history(dump: dict | None, ledger: Iterable[Deal] | None, windows: Sequence[FaultWindow],
                             events: Sequence[dict] | None, *, signal_of: SignalOf = signal_id_from_comment,
                             requirement_ids: Sequence[str] = ("CH-1", "BR-2"),
                             targets: targets_mod.Targets | None = None,
                             unreadable: dict[str, int] | None = None) -> ClickHouseHistoryResult:
    """CH-1/BR-2: every trade the brokers executed is in ClickHouse exactly once (FINAL), and an outage longer than
    the three retries went through failed_syncs and recovered. ``unmeasured`` without the dump, without a ledger
    with trades, or when the dump could not be read."""
    names = ("clickhouse_missing_trades", "clickhouse_duplicate_trades", "rto_s", "sync_attempts",
             "sync_retry_interval_s", "failed_trades_recovery_s")
    if not isinstance(dump, dict):
        return _unmeasured(ClickHouseHistoryResult, "clickhouse_history", requirement_ids, targets, names,
                           f"the run has no readable {CLICKHOUSE_ROWS}: ClickHouse's rows were never dumped",
                           unreadable=unreadable)
    if dump.get("error") or not isinstance(dump.get("rows"), list):
        return _unmeasured(ClickHouseHistoryResult, "clickhouse_history", requirement_ids, targets, names,
                           f"ClickHouse's rows could not be read after the run: {str(dump.get('error'))[:200]}",
                           unreadable=unreadable)
    if ledger is None:
        return _unmeasured(ClickHouseHistoryResult, "clickhouse_history", requirement_ids, targets, names,
                           "the run has no broker ledger to compare ClickHouse with", unreadable=unreadable)
    orders = orders_by_signal(ledger, signal_of)
    if not orders:
        return _unmeasured(ClickHouseHistoryResult, "clickhouse_history", requirement_ids, targets, names,
                           "no trade was executed at the brokers: nothing had to reach ClickHouse",
                           unreadable=unreadable)
    rows = [r for r in dump["rows"] if isinstance(r, dict)]
    by_signal: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_signal[str(r.get("signal_id"))].append(r)
    missing, duplicates = [], []
    for sid, sent in sorted(orders.items()):
        done = {str(r.get("order_id")) for r in by_signal.get(sid, []) if r.get("state") == "DONE"}
        if not done & {str(o["order"]) for o in sent}:
            missing.append({"signal": sid, "orders": [str(o["order"]) for o in sent],
                            "clickhouse": by_signal.get(sid, [])[:3]})
    for sid, found in sorted(by_signal.items()):
        if len(found) > 1:
            duplicates.append({"signal": sid, "rows": found[:4]})
    events = [e for e in (events or []) if isinstance(e, dict) and _num(e.get("mono")) is not None]
    outages = sorted((w for w in windows if w.fault in CH_OUTAGE_FAULTS and "clickhouse" in
                      str((w.details or {}).get("node") or w.description)), key=lambda w: w.inject_mono)
    rows_out: list[dict] = []
    for w in outages:
        end = w.heal_mono if w.heal_mono is not None else math.inf
        inside = [e for e in events if w.inject_mono <= _num(e["mono"]) <= end + 1.0]
        added = [e for e in inside if e.get("event") == "clickhouse_failed_sync_added"]
        attempts = [int(a) for e in added if (a := _num(e.get("attempts"))) is not None]
        gaps: list[float] = []
        last: dict[Any, tuple[float, int]] = {}
        for e in inside:
            if e.get("event") != "clickhouse_sync_failed" or _num(e.get("attempt")) is None:
                continue
            key, k = e.get("instance"), int(_num(e["attempt"]))
            t = _num(e.get("started")) if _num(e.get("started")) is not None else _num(e["mono"])
            if key in last and k == last[key][1] + 1:
                gaps.append(t - last[key][0])
            last[key] = (t, k)
        recovered = next((e for e in events if e.get("event") == "clickhouse_sync_recovered"
                          and w.heal_mono is not None and _num(e["mono"]) >= w.heal_mono), None)
        rows_out.append({"fault": w.fault, "fault_id": w.fault_id,
                         "outage_s": round(w.heal_mono - w.inject_mono, 3) if w.heal_mono is not None else None,
                         "failed_syncs_added": len(added), "outcomes_to_failed_syncs": sum(
                             int(_num(e.get("outcomes")) or 0) for e in added),
                         "retries_before_failed_syncs": (max(attempts) - 1) if attempts else None,
                         "max_retry_gap_s": round(max(gaps), 2) if gaps else None,   # to 10 ms
                         "recovery_s": round(_num(recovered["mono"]) - w.heal_mono, 3) if recovered else None,
                         "failed_syncs_resent": recovered.get("failed_syncs_resent") if recovered else None})
    through = [r for r in rows_out if r["failed_syncs_added"]]
    recov = [r["recovery_s"] for r in through]
    metrics: dict[str, Any] = {
        "clickhouse_missing_trades": len(missing), "clickhouse_duplicate_trades": len(duplicates),
        "rto_s": (max(recov) if recov and all(x is not None for x in recov) else None),
        "sync_attempts": max((r["retries_before_failed_syncs"] for r in through
                              if r["retries_before_failed_syncs"] is not None), default=None),
        "sync_retry_interval_s": max((r["max_retry_gap_s"] for r in rows_out if r["max_retry_gap_s"] is not None),
                                     default=None),
        "trades": len(orders), "clickhouse_rows_final": len(rows), "clickhouse_rows_raw": dump.get("raw_rows"),
        "outages": len(rows_out), "outages_through_failed_syncs": len(through),
    }
    metrics["failed_trades_recovery_s"] = metrics["rto_s"]
    lower = ()
    if through and any(x is None for x in recov):   # never recovered before the run ended
        metrics["rto_s"] = metrics["failed_trades_recovery_s"] = None
    reasons = []
    if not rows_out:
        reasons.append("rto_s, sync_attempts, sync_retry_interval_s: no outage of the clickhouse node in the fault "
                       "log")
    elif not through:
        reasons.append("rto_s, sync_attempts: no outage lasted past the retries (nothing went to failed_syncs)")
    elif metrics["rto_s"] is None:
        reasons.append("rto_s: failed_syncs rows were never resent after ClickHouse came back")
    if metrics["sync_retry_interval_s"] is None and rows_out:
        reasons.append("sync_retry_interval_s: no two consecutive failed tries")
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets, lower_bounds=lower,
                       unmeasured_reason="; ".join(reasons))
    resync, resync_why, resync_rows = failed_sync_tries(events)
    metrics.update(resync)
    for metric, value in resync.items():
        judgements += judge({metric: value}, requirement_ids, targets, unmeasured_reason=resync_why.get(metric, ""))
    if through and any(r["recovery_s"] is None for r in through):
        judgements = [j if j.metric not in ("rto_s", "failed_trades_recovery_s") else
                      Judgement(j.requirement_id, j.metric, j.comparator, j.target, j.unit, j.source, None, FAIL,
                                False, j.alternatives, j.contradictions,
                                reason="failed_syncs rows were never resent after ClickHouse came back")
                      for j in judgements]
    evidence: list[dict] = [*({"kind": "outage", **r} for r in rows_out), *resync_rows,
                            *({"kind": "missing-in-clickhouse", **m} for m in missing[:20]),
                            *({"kind": "duplicate-in-clickhouse", **d} for d in duplicates[:20]),
                            {"kind": "rule", "rule": CH_RULE}]
    if unreadable:
        evidence += _unreadable_evidence(unreadable)
    summary = (f"{len(orders)} trade(s) at the brokers, {len(orders) - len(missing)} in ClickHouse (FINAL: "
               f"{len(rows)} row(s), {dump.get('raw_rows')} before merging); {len(missing)} missing, "
               f"{len(duplicates)} duplicated")
    for r in rows_out:
        summary += (f"; ClickHouse down {r['outage_s']} s: {r['outcomes_to_failed_syncs']} outcome(s) to "
                    f"failed_syncs after {r['retries_before_failed_syncs']} retries (gap <= {r['max_retry_gap_s']} s), "
                    f"recovered {r['recovery_s']} s after it was back")
    return ClickHouseHistoryResult("clickhouse_history", validity(judgements), tuple(requirement_ids), metrics,
                                   evidence, summary, judgements, outages=rows_out)


REDIS_AOF_FAULT = "redis-aof-damaged"
REDIS_RECOVERY_RULE = ("Per redis-aof-damaged of faults.jsonl (every Redis node stopped, each AOF damaged): the heal "
                       "line's recovery decision per node. undetected_corruptions = damaged nodes whose redis-check-aof "
                       "did not refuse the AOF and whose heal's verification against the engines' DuckDB "
                       "snapshots (published outcomes without their RTS hash) found nothing; recovery_order_violations = nodes that did not start from what BR-1's "
                       "order gives (a valid AOF; else a valid RDB; else the AOF cut at the damage), or whose damaged "
                       "AOF was not kept; lost_acknowledged_writes = RTS keys, RTRS and RTSS entries read from the "
                       "primary before the stop and missing after the restart (an RTRS result named by the RTSS entry "
                       "it answers), after RDS-6's restore from DuckDB (journal_restore: the engines' journal snapshots "
                       "written back into the primary's files before it serves); rtss_unrecoverable = acknowledged "
                       "RTSS entries still missing then (no journal holds a signal no engine had read: only its "
                       "sender has it); rto_s = heal start (files checked, restored, nodes started) to that "
                       "verification done.")


REDIS_SETTINGS_RULE = ("RDS-3 from CONFIG GET on every running Redis node just before the stop (config_before of "
                       "the inject line; config_after of the heal line once they are back): appendfsync, "
                       "aof_rewrite_min_size_mb (auto-aof-rewrite-min-size / 2^20), rdb_save (save); a node whose value "
                       "differs from the first node's is reported as that node's value, so one diverging node fails")


def redis_persistence_settings(injects: Sequence[dict]) -> tuple[dict[str, Any], str, list[dict]]:
    """RDS-3's settings as the running nodes had them (the fault's CONFIG GET before each stop): the metrics
    (``appendfsync``, ``aof_rewrite_min_size_mb``, ``rdb_save``; None when no node answered), why not, and the
    evidence rows."""
    seen: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for inj in injects:
        d = inj.get("details") if isinstance(inj.get("details"), dict) else {}
        cfg = d.get("config_before")
        if not isinstance(cfg, dict):
            continue
        for node, values in cfg.items():
            if not isinstance(values, dict) or "error" in values:
                problems.append(f"{node}: {values.get('error') if isinstance(values, dict) else values}")
                continue
            seen[str(node)] = {str(k): str(v) for k, v in values.items()}
    out: dict[str, Any] = {"appendfsync": None, "aof_rewrite_min_size_mb": None, "rdb_save": None}
    for metric, key, conv in (("appendfsync", "appendfsync", str),
                              ("aof_rewrite_min_size_mb", "auto-aof-rewrite-min-size",
                               lambda v: round(int(v) / (1 << 20), 3)),
                              ("rdb_save", "save", lambda v: " ".join(v.split()))):
        values = []
        for node in sorted(seen):
            if key in seen[node]:
                try:
                    values.append(conv(seen[node][key]))
                except (TypeError, ValueError):
                    values.append(seen[node][key])
        if values:
            out[metric] = next((v for v in values if v != values[0]), values[0])
    reason = ("no CONFIG GET of the running nodes in the fault log (a run older than this check, or every node "
              "refused: " + "; ".join(problems)[:200] + ")") if not seen else ""
    rows = [{"kind": "redis-settings", "rule": REDIS_SETTINGS_RULE, "nodes": seen, "problems": problems}] if (
        seen or problems) else []
    return out, reason, rows


@dataclass
class RedisRecoveryResult(CheckResult):
    nodes: list[dict] = field(default_factory=list)


def _expected_source(decision: dict) -> str:
    if decision.get("aof_ok") is True:
        return "aof"
    if decision.get("rdb_ok") is True:
        return "rdb"
    return "aof-truncated"


def check_redis_recovery(records: Sequence[dict], *, requirement_ids: Sequence[str] = ("RDS-3", "RDS-6", "BR-1"),
                         targets: targets_mod.Targets | None = None,
                         unreadable: dict[str, int] | None = None) -> RedisRecoveryResult:
    """RDS-3/RDS-6/BR-1 for every stop-damage-restart of the Redis nodes: the damage found, BR-1's order followed,
    the state read before the stop all there after, and how long to a verified state. No injection: ``unmeasured``;
    never healed: the restart is a failure (lower bound unknown)."""
    names = ("undetected_corruptions", "recovery_order_violations", "lost_acknowledged_writes", "rto_s")
    records = [r for r in records if isinstance(r, dict)]
    injects = [r for r in records if r.get("event") == "inject" and r.get("fault") == REDIS_AOF_FAULT]
    if not injects:
        return _unmeasured(RedisRecoveryResult, "redis_recovery", requirement_ids, targets, names,
                           f"no {REDIS_AOF_FAULT} injection in the fault log: no AOF was damaged",
                           unreadable=unreadable, nodes=[])
    heals = {r.get("fault_id"): r for r in records if r.get("fault") == REDIS_AOF_FAULT
             and r.get("event") in ("heal", "heal-failed")}
    rows: list[dict] = []
    journal_checks: list[dict] = []
    restores: list[dict] = []
    rtss_unrecoverable: int | None = 0
    undetected = violations = 0
    lost_total: int | None = 0
    rtos: list[float] = []
    failed: list[str] = []
    for inj in injects:
        di = inj.get("details") if isinstance(inj.get("details"), dict) else {}
        heal = heals.get(inj.get("fault_id"))
        dh = heal.get("details") if heal and isinstance(heal.get("details"), dict) else {}
        if not heal or heal.get("event") != "heal":
            failed.append(str(heal.get("error"))[:200] if heal else "never healed")
        damaged = di.get("damaged") if isinstance(di.get("damaged"), dict) else {}
        recovery = dh.get("recovery") if isinstance(dh.get("recovery"), dict) else {}
        jc = dh.get("journal_check") if isinstance(dh.get("journal_check"), dict) else {}
        jr = dh.get("journal_restore") if isinstance(dh.get("journal_restore"), dict) else {}
        if jr:
            restores.append(jr)
        # BR-1's verification before RDS-6's restore (what the files lacked), else the one after the start
        journal_missing = max(int(_num(jc.get("missing")) or 0), int(_num(jr.get("rts_missing_before")) or 0))
        if jc:
            journal_checks.append({"checked": jc.get("checked"), "missing": jc.get("missing"),
                                   "missing_examples": jc.get("missing_examples"), "error": jc.get("error"),
                                   "snapshots": jc.get("snapshots")})
        for node in sorted(set(damaged) | set(recovery)):
            dec = recovery.get(node) if isinstance(recovery.get(node), dict) else {}
            was_damaged = node in damaged
            found = dec.get("aof_ok") is False
            expected = _expected_source(dec) if dec else None
            row = {"node": node, "damaged": damaged.get(node), "source": dec.get("source"), "expected": expected,
                   "aof_report": dec.get("aof_report"), "rdb_report": dec.get("rdb_report"),
                   "damaged_kept": dec.get("damaged_kept"), "steps": dec.get("steps"), "seconds": dec.get("seconds")}
            if was_damaged and dec and not found:
                if journal_missing:   # BR-1's last step saw what the framing check could not
                    row["detected_by"] = (f"verification against DuckDB ({journal_missing} published outcome(s) "
                                          f"missing from RTS); redis-check-aof accepted the AOF")
                else:
                    undetected += 1
                    row["problem"] = "the damaged AOF passed redis-check-aof and the verification found nothing"
            if not dec:
                row["problem"] = "no recovery decision for this node"
                violations += 1
            elif dec.get("source") != expected or (was_damaged and found and not dec.get("damaged_kept")):
                violations += 1
                row["problem"] = (f"started from {dec.get('source')}, BR-1's order gives {expected}"
                                  if dec.get("source") != expected else "the damaged AOF was not kept")
            rows.append(row)
        lost = dh.get("lost") if isinstance(dh.get("lost"), dict) else None
        if lost is None or lost_total is None:
            lost_total = None
        else:
            lost_total += sum(int(_num(v) or 0) for v in lost.values())
        if lost is None or rtss_unrecoverable is None:
            rtss_unrecoverable = None
        else:
            rtss_unrecoverable += int(_num(lost.get("rtss")) or 0)
        if _num(dh.get("verified_s")) is not None:
            rtos.append(_num(dh["verified_s"]))
    metrics: dict[str, Any] = {
        # no node decision recorded: nothing to judge the order or the detection by (never a pass)
        "undetected_corruptions": undetected if rows else None,
        "recovery_order_violations": violations if rows else None,
        "lost_acknowledged_writes": None if failed else lost_total,
        "rto_s": max(rtos) if rtos and not failed else None,
        "nodes": len(rows), "from_rdb": sum(r["source"] == "rdb" for r in rows),
        "from_aof": sum(r["source"] == "aof" for r in rows),
        "damaged_files_kept": sum(bool(r["damaged_kept"]) for r in rows),
        # BR-1's own verification (RTS against the engines' DuckDB snapshots): outcomes checked / missing
        "journal_checked": sum(int(_num(j.get("checked")) or 0) for j in journal_checks) if journal_checks else None,
        "journal_missing": sum(int(_num(j.get("missing")) or 0) for j in journal_checks) if journal_checks else None,
        # RDS-6's restore from DuckDB (None: the run had none, or it failed: restore_errors)
        **{f"restored_{k}": (sum(int(_num(r.get(f"{k}_restored")) or 0) for r in restores)
                             if restores and not any(r.get("error") for r in restores) else None)
           for k in ("rts", "rtrs", "rtss")},
        "rts_missing_before_restore": sum(int(_num(r.get("rts_missing_before")) or 0) for r in restores)
        if restores else None,
        "restore_errors": [str(r["error"])[:200] for r in restores if r.get("error")],
        "rtss_unrecoverable": None if failed else rtss_unrecoverable,
    }
    config_metrics, config_reason, config_rows = redis_persistence_settings(injects)
    metrics.update(config_metrics)
    metrics["stop"] = sorted({str((i.get("details") or {}).get("stop") or "SIGTERM") for i in injects
                              if isinstance(i.get("details"), dict)})
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets,
                       unmeasured_reason="; ".join(failed) if failed else
                       "the heal recorded no recovery decision or no verification")
    judgements += judge(config_metrics, requirement_ids, targets, unmeasured_reason=config_reason)
    if failed:   # the nodes never came back through the recovery: a failure, not "nothing to judge"
        judgements = [Judgement(j.requirement_id, j.metric, j.comparator, j.target, j.unit, j.source, None, FAIL,
                                False, j.alternatives, j.contradictions, reason=f"recovery failed: {failed[0]}")
                      if j.metric in ("lost_acknowledged_writes", "rto_s") else j for j in judgements]
    evidence: list[dict] = [*({"kind": "node", **r} for r in rows)]
    for inj in injects:
        heal = heals.get(inj.get("fault_id")) or {}
        dh = heal.get("details") if isinstance(heal.get("details"), dict) else {}
        evidence.append({"kind": "verification", "before": (inj.get("details") or {}).get("before")
                         if isinstance(inj.get("details"), dict) else None, "after": dh.get("after"),
                         "lost": dh.get("lost"), "lost_examples": dh.get("lost_examples"),
                         "recovery_s": dh.get("recovery_s"), "verified_s": dh.get("verified_s")})
    evidence += [{"kind": "journal-verification", **j} for j in journal_checks]
    evidence += [{"kind": "journal-restore", **{k: v for k, v in r.items() if k != "notes" or v}} for r in restores]
    evidence += config_rows
    evidence.append({"kind": "rule", "rule": REDIS_RECOVERY_RULE})
    if unreadable:
        evidence += _unreadable_evidence(unreadable)
    summary = (f"{'/'.join(metrics['stop'])}; {len(rows)} node(s): {metrics['from_rdb']} from the RDB, "
               f"{metrics['from_aof']} from the AOF, {sum(r['source'] == 'aof-truncated' for r in rows)} from the AOF "
               f"cut at the damage; "
               f"verification against DuckDB: {metrics['journal_missing']} of {metrics['journal_checked']} published "
               f"outcome(s) missing from RTS; "
               f"{undetected} damaged AOF(s) not found, {violations} out of BR-1's order; "
               + (f"restored from DuckDB: {metrics['restored_rts']} RTS hash(es), {metrics['restored_rtrs']} RTRS "
                  f"result(s), {metrics['restored_rtss']} RTSS entr(y/ies) ({metrics['rts_missing_before_restore']} "
                  f"published outcome(s) missing before), {metrics['rtss_unrecoverable']} acknowledged RTSS "
                  f"entr(y/ies) no journal holds; " if restores and not metrics["restore_errors"] else
                  f"the restore from DuckDB failed: {metrics['restore_errors'][0]}; " if restores else "")
               + f"{metrics['lost_acknowledged_writes']} acknowledged write(s) lost; state verified "
               f"{metrics['rto_s']} s after the restart began")
    if failed:
        summary = f"the recovery failed ({failed[0]}); " + summary
    return RedisRecoveryResult("redis_recovery", validity(judgements), tuple(requirement_ids), metrics, evidence,
                               summary, judgements, nodes=rows)


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

    def placed_orders(self) -> list[Deal]:
        """Pending orders the brokers placed with no deal (``orders.jsonl``; [] without it), as ``Deal`` rows of
        kind ``order``."""
        return self._once("placed", self.run.placed_orders)

    def orders_ledger(self) -> list[Deal] | None:
        """The ledger's deals and the placed pending orders without a deal (issue 20): what a signal's order is at
        the broker, for the duplicate, lost-signal and state checkers. None when the run has no ledger.jsonl."""
        ledger = self.ledger()
        return None if ledger is None else self._once("orders_ledger", lambda: ledger + self.placed_orders())

    def signals(self) -> list[Signal]:
        return self._once("signals", self.run.signals)

    def trade_results(self) -> list[TradeResult]:
        return self._once("results", self.run.trade_results)

    def trade_state(self) -> dict | None:
        return self._once("rts", self.run.trade_state)

    def backlog(self) -> list[str]:
        return self._once("backlog", lambda: list((self.run.backlog() or {}).get("signals", [])))

    def pending_on(self) -> dict[str, str] | None:
        """backlog.json's ``pending_on`` ({signal id: consumer}); None for a run dumped before it was recorded."""
        doc = self.run.backlog() or {}
        return dict(doc["pending_on"]) if isinstance(doc.get("pending_on"), dict) else None

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

    def broker_close_poll_s(self) -> float:
        """How often the active engine reads the broker's own closes and fills (config.json, else 1 s; issue 20)."""
        config = self.run.config if isinstance(self.run.config, dict) else {}
        engine = config.get("engine") if isinstance(config.get("engine"), dict) else {}
        overrides = engine.get("overrides") if isinstance(engine.get("overrides"), dict) else {}
        poll = _num(engine.get("broker_close_poll_s")) or _num(overrides.get("broker_close_poll_s"))
        return poll if poll and poll > 0 else 1.0

    def last_look_ms(self) -> float | None:
        """Wall ms until which the final lease holder can have seen what the broker did on its own: its last
        ``engine_stop`` minus one ``broker_close_poll_s`` (issue 20). The ledger is dumped after the engines stop,
        while the broker's price walk goes on: a stop or a limit reached after this moment is no engine's to see.
        None when the events do not say (then nothing is cut)."""
        events = self.engine_events()
        holders = [e for e in events if e.get("event") == "lease_acquired" and _num(e.get("ts")) is not None]
        if not holders:
            return None
        last = max(holders, key=lambda e: _num(e.get("ts")))["instance"]
        stops = [_num(e.get("ts")) for e in events if e.get("event") == "engine_stop" and e.get("instance") == last
                 and _num(e.get("ts")) is not None]
        return (max(stops) - self.broker_close_poll_s()) * 1000 if stops else None

    def settled_rows(self) -> tuple[list[dict] | None, list[dict]]:
        """ledger.jsonl's rows without the broker's own moves (SL/TP/stop-out closes, fills of pending orders) after
        :meth:`last_look_ms` that RTS does not show (a move inside the last look that the engine did record is
        kept), and those left out (None when the run has no ledger)."""
        def load():
            if not self.run.has(h.LEDGER):
                return None, []
            rows = h.read_jsonl(self.run.path / h.LEDGER)
            cut = self.last_look_ms()
            if cut is None:
                return rows, []
            pending = {(o.get("broker") or "", o.get("ticket")) for o in self.run.broker_orders()
                       if int(o.get("type", 0) or 0) in h.PENDING_ORDER_TYPES}
            late = [r for r in rows if float(r.get("time_msc") or 0) > cut
                    and (r.get("reason") in (4, 5, 6) or ((r.get("broker") or "", r.get("order")) in pending
                                                          and r.get("entry") == 0))]
            # inside the last look RTS may or may not show a move yet: a position whose end state at the broker is
            # what RTS shows keeps its late deals; the others lose them (the engine could not have seen them)
            from scenarios import positions as positions_mod

            rts_held = positions_mod.rts_positions(self.trade_state() or {}) or {}
            end, _complete = positions_mod.ledger_positions(Deal.from_dict(r) for r in rows)
            held = set(positions_mod.match_rts(rts_held, end).values())   # by broker + ticket (ENG-5)
            seen = {key for key, p in end.items() if (p["volume"] > 1e-9) == (key in held)}
            late = [r for r in late if f"{r.get('broker') or ''}:{r.get('position_id')}" not in seen]
            late_ids = {id(r) for r in late}
            return [r for r in rows if id(r) not in late_ids], late
        return self._once("settled_rows", load)

    def settled_ledger(self) -> list[Deal] | None:
        """The deals of :meth:`settled_rows` and the placed pending orders (those filled only after the last look
        among them), for the state checker."""
        rows, late = self.settled_rows()
        if rows is None:
            return None
        late_orders = {(r.get("broker") or "", r.get("order")) for r in late if r.get("entry") == 0}
        placed = [Deal(deal=None, order=r.get("order"), comment=r.get("comment") or "", magic=r.get("magic"),
                       symbol=r.get("symbol") or "", broker=r.get("broker") or "", kind="order") for r in late
                  if (r.get("broker") or "", r.get("order")) in late_orders and r.get("entry") == 0]
        return [Deal.from_dict(r) for r in rows] + self.placed_orders() + placed

    def lease_ttl_s(self) -> float:
        """The engines' lease TTL as the run configured it (config.json's engine settings), else the default."""
        config = self.run.config
        config = config if isinstance(config, dict) else {}
        engine = config.get("engine") if isinstance(config.get("engine"), dict) else {}
        ttl = _num(engine.get("lease_ttl_s")) or _num((engine.get("overrides") or {}).get("lease_ttl_s")
                                                      if isinstance(engine.get("overrides"), dict) else None)
        return ttl if ttl and ttl > 0 else DEFAULT_LEASE_TTL_S

    # -- Redis under partition (issue 12): read leniently, every unreadable line counted --------------------------
    def redis_writes(self) -> tuple[list[RedisWrite], int]:
        """The history's ``redis_write`` operations, and the lines of history.jsonl that could not be used."""
        def load():
            rows, torn = read_event_lines(self.run.path / h.HISTORY)
            writes, bad = redis_writes_from_records(rows)
            return writes, torn + bad
        return self._once("redis_writes", load)

    def fault_windows_lenient(self) -> tuple[list[FaultWindow], int]:
        """The fault windows (see :func:`fault_windows_lenient`), and the unreadable lines of faults.jsonl."""
        def load():
            rows, torn = read_event_lines(self.run.path / h.FAULTS)
            windows, bad = fault_windows_lenient(rows)
            return windows, torn + bad
        return self._once("windows_lenient", load)

    def json_doc(self, name: str) -> tuple[dict | None, str | None]:
        """A JSON object file of the run: (document, None); (None, None) when absent; (None, why) when damaged."""
        def load():
            path = self.run.path / name
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None, None
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                return None, f"{name} is not JSON ({type(exc).__name__}: {str(exc)[:80]})"
            if not isinstance(doc, dict):
                return None, f"{name} holds a JSON {type(doc).__name__}, not an object"
            return doc, None
        return self._once(f"json:{name}", load)

    def sentinel_logs(self) -> tuple[list[SentinelEvent], int, int]:
        """Every Sentinel log's failover events (:func:`parse_sentinel_log`), the unreadable +switch-master lines,
        and how many Sentinel logs the run has."""
        def load():
            events, bad = [], 0
            paths = sorted(self.run.path.glob(SENTINEL_LOGS_GLOB))
            for path in paths:
                try:
                    text = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    bad += 1
                    continue
                rows, torn = parse_sentinel_log(text, path.stem)
                events += rows
                bad += torn
            return events, bad, len(paths)
        return self._once("sentinel_logs", load)

    def engine_logs(self) -> tuple[list[tuple[str, list[dict]]], int]:
        """(engine node, its events in file order) per engine event log, and the unreadable lines of them all."""
        def load():
            logs, bad = [], 0
            for path in self.engine_event_files():
                rows, torn = read_event_lines(path)
                logs.append((path.parent.name if path.parent != self.run.path else path.stem, rows))
                bad += torn
            return logs, bad
        return self._once("engine_logs", load)

    @property
    def signal_of(self) -> SignalOf:
        if self._signal_of is None:
            config = self.run.config
            config = config if isinstance(config, dict) else {}
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
    return check_duplicates(view.orders_ledger(), signal_of=view.signal_of, requirement_ids=rids, targets=targets)


def _lost(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_lost_signals(view.signals(), view.orders_ledger(), view.trade_results(), signal_of=view.signal_of,
                              requirement_ids=rids, targets=targets, backlog=view.backlog(),
                              pending_on=view.pending_on())


def _state(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_state(view.trade_state(), view.settled_ledger(), signal_of=view.signal_of, requirement_ids=rids,
                       targets=targets)


def _one_active(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    gap = _num(params.get("gap_s")) or view.lease_ttl_s()
    ledger = view.ledger()
    comments = None if ledger is None else [d.comment for d in ledger
                                            if str(d.comment or "").startswith(ENGINE_COMMENT_PREFIX)]
    return check_one_active(view.engine_events(), gap_s=gap, requirement_ids=rids, targets=targets,
                            torn_lines=view.unreadable_event_lines(), ledger_comments=comments)


def _results_delivered(view: RunView, params: dict, rids: tuple[str, ...],
                       targets: targets_mod.Targets) -> CheckResult:
    return check_results_delivered(view.signals(), view.trade_results_or_none(), backlog=view.backlog(),
                                   requirement_ids=rids, targets=targets)


def _stale_writes(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    return check_stale_writes(view.engine_events(), view.rtrs_rows(), view.trade_state(), requirement_ids=rids,
                              targets=targets)


def _redis_set(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    writes, bad_history = view.redis_writes()
    windows, bad_faults = view.fault_windows_lenient()
    doc, problem = view.json_doc(REDIS_WRITES)
    fault = params.get("fault") if isinstance(params.get("fault"), str) else None
    return check_redis_set(writes, doc, windows, fault=fault, requirement_ids=rids, targets=targets,
                           final_read_problem=problem, unreadable={h.HISTORY: bad_history, h.FAULTS: bad_faults})


def _writer_sides(view: RunView) -> dict[str, str]:
    doc, _problem = view.json_doc(REDIS_WRITES)
    writers = (doc or {}).get("writers")
    return {name: w["side"] for name, w in (writers.items() if isinstance(writers, dict) else ())
            if isinstance(w, dict) and isinstance(w.get("side"), str)}


def _primary_follow(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    events, bad_sentinel, n_logs = view.sentinel_logs()
    switches, _shortcuts = distinct_switches(events)
    writes, bad_history = view.redis_writes()
    windows, bad_faults = view.fault_windows_lenient()
    logs, bad_events = view.engine_logs()
    return check_primary_follow(switches, windows, logs, writes, writer_sides=_writer_sides(view),
                                sentinel_logs=n_logs, requirement_ids=rids, targets=targets,
                                unreadable={h.HISTORY: bad_history, h.FAULTS: bad_faults,
                                            SENTINEL_LOGS_GLOB: bad_sentinel, ENGINE_EVENTS_GLOB: bad_events})


def _failovers(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    events, bad_sentinel, n_logs = view.sentinel_logs()
    switches, shortcuts = distinct_switches(events)
    roles, problem = view.json_doc(REDIS_ROLES)
    return check_failovers(switches, events, roles, expect=params.get("expect"), sentinel_logs=n_logs,
                           roles_problem=problem, shortcuts=shortcuts, requirement_ids=rids, targets=targets,
                           unreadable={SENTINEL_LOGS_GLOB: bad_sentinel})


def _store_repair(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    windows, bad_faults = view.fault_windows_lenient()
    return check_store_repair(windows, view.engine_events(), view.run.path, requirement_ids=rids, targets=targets,
                              unreadable={h.FAULTS: bad_faults, ENGINE_EVENTS_GLOB: view.unreadable_event_lines()})


def _pg_restore(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    records, bad = read_event_lines(view.run.path / h.FAULTS)
    scan, why = view.json_doc(SECRETS_SCAN)
    unreadable = {h.FAULTS: bad, ENGINE_EVENTS_GLOB: view.unreadable_event_lines()}
    if why:
        unreadable[SECRETS_SCAN] = 1
    return check_pg_restore(records, view.engine_events(), scan, requirement_ids=rids, targets=targets,
                            unreadable=unreadable)


def _config_fallback(view: RunView, params: dict, rids: tuple[str, ...],
                     targets: targets_mod.Targets) -> CheckResult:
    records, bad = read_event_lines(view.run.path / h.FAULTS)
    logs, torn = view.engine_logs()
    return check_config_fallback(records, logs, view.run.path, requirement_ids=rids, targets=targets,
                                 unreadable={h.FAULTS: bad, ENGINE_EVENTS_GLOB: torn})


def _clickhouse_history(view: RunView, params: dict, rids: tuple[str, ...],
                        targets: targets_mod.Targets) -> CheckResult:
    dump, why = view.json_doc(CLICKHOUSE_ROWS)
    windows, bad = view.fault_windows_lenient()
    unreadable = {h.FAULTS: bad, ENGINE_EVENTS_GLOB: view.unreadable_event_lines()}
    if why:
        unreadable[CLICKHOUSE_ROWS] = 1
    return check_clickhouse_history(dump, view.ledger(), windows, view.engine_events(), signal_of=view.signal_of,
                                    requirement_ids=rids, targets=targets, unreadable=unreadable)


def _redis_recovery(view: RunView, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets) -> CheckResult:
    records, bad = read_event_lines(view.run.path / h.FAULTS)
    return check_redis_recovery(records, requirement_ids=rids, targets=targets, unreadable={h.FAULTS: bad})


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
    Checker("redis_set", _redis_set,
            ("acknowledged_writes_lost", "acknowledged_writes_lost_fraction", "confirmed_writes_lost"),
            "Jepsen's set checker: acknowledged redis_write members missing from each writer's set after heal",
            ("fault",)),
    Checker("primary_follow", _primary_follow, ("primary_follow_s", "client_follow_s"),
            "+switch-master (Sentinel logs) to each engine's and writer's first use of the new primary"),
    Checker("failovers", _failovers, ("unexpected_failovers", "roles_diverged"),
            "distinct +switch-master against the failovers expected; roles after heal against the Sentinels' primary",
            ("expect",)),
    # judges undetected_corruptions for every requirement it claims, and restore_s, detection_s,
    # repairs_without_evidence, rpo_s wherever targets.toml has a target for them (DDB-3: restore, evidence, RPO;
    # DDB-6: detection)
    Checker("store_repair", _store_repair, ("undetected_corruptions",),
            "damage to an engine's DuckDB journal: found (health check or open), restored from memory or a snapshot "
            "within the target, damaged files kept as evidence, committed writes missing from the restored copy"),
    Checker("pg_restore", _pg_restore, ("restore_s", "logins_not_decrypted", "engine_logins_after_restore",
                                        "secret_leaks"),
            "credentials database dumped, dropped, restored: restore time, logins decrypt again, an engine logs in "
            "with them, no key or password in the run folder"),
    # judges config_damages_not_recovered for every requirement it claims, and unclear_config_messages,
    # config_load_s (CFG-2), config_backups_kept (CFG-1) where targets.toml has a target for them
    Checker("config_fallback", _config_fallback, ("config_damages_not_recovered",),
            "damaged JSON settings: the restart loads the newest valid backup with a message naming the file, the "
            "problem and the backup; load time; backups kept; the file valid again at the end"),
    # judges the two counts for every requirement it claims, and rto_s, sync_attempts, sync_retry_interval_s (CH-1),
    # failed_trades_recovery_s (BR-2) where targets.toml has them
    Checker("clickhouse_history", _clickhouse_history, ("clickhouse_missing_trades", "clickhouse_duplicate_trades"),
            "every trade of the broker ledgers in ClickHouse exactly once (FINAL) after an outage; the outage went "
            "through failed_syncs after the CH-1 retries and was resent once ClickHouse was back"),
    # judges undetected_corruptions for every requirement it claims, and lost_acknowledged_writes (RDS-3),
    # recovery_order_violations and rto_s (BR-1) where targets.toml has them
    Checker("redis_recovery", _redis_recovery, ("undetected_corruptions",),
            "every Redis node stopped and its AOF damaged: the damage found by redis-check-aof, BR-1's order (AOF, "
            "else the last RDB) followed with the damaged files kept, the state read before the stop all there "
            "after the restart, time to that verification"),
)}

# the EA tick-stream checkers (issue 14): ticks, stale_ticks, tick_latency, tick_fallback, tcp_reconnect, ea_restart
from scenarios import ticks as _ticks  # noqa: E402 - needs Checker above; scenarios.ticks never imports this module
CHECKERS.update({c.name: c for c in _ticks.checker_entries(Checker)})
# the rate kept while some orders stall (issue 11): kept_rate
from scenarios import throughput as _throughput  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _throughput.checker_entries(Checker, CheckResult, _unmeasured)})
# the webhook's exactly-once and the client-seen backend failover gap (issue 15): webhook_once, http_failover
from scenarios import webhook as _webhook  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _webhook.checker_entries(Checker, CheckResult, _unmeasured)})
# the persistence targets the others left unmeasured (issue 13): order_failed_syncs (ORD-2), clickhouse_backfill
# (CH-2), clickhouse_backups (CH-3), clickhouse_failover (CH-4), journal_rebuild (DDB-4)
from scenarios import store_gaps as _store_gaps  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _store_gaps.checker_entries(Checker, CheckResult, _unmeasured)})
# the local store as it ran, and the writes it refused (issue 13): store_wal, store_snapshots, store_health
# (DDB-1/2/6), failed_writes (DDB-5)
from scenarios import persistence as _persistence  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _persistence.checker_entries(Checker, CheckResult, _unmeasured)})
# the moving broker's own closes and fills during failovers (issue 20): broker_closes, pending_fills
from scenarios import broker_moves as _broker_moves  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _broker_moves.checker_entries(Checker, CheckResult, _unmeasured)})
# cadences measured from the components' own lines (issue 19): heartbeat_cadence (ENG-1), broker_heartbeat (BRK-1),
# broker_retry (BRK-2), brokers_down (BRK-5), redis_retry (ORD-3), order_backoff (ORD-1), ris_reconnect (EA-3),
# backend_health_cadence (BE-1); and uptime (EA-5) from the measured recoveries and the model of targets.toml
from scenarios import cadences as _cadences  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _cadences.checker_entries(Checker, CheckResult, _unmeasured)})
from scenarios import uptime as _uptime  # noqa: E402 - needs Checker above; it imports this module only when run
CHECKERS.update({c.name: c for c in _uptime.checker_entries(Checker, CheckResult, _unmeasured)})
# the documents' settings read from the running nodes of every drill (issue 19): conformance
from scenarios import conformance as _conformance  # noqa: E402 - needs Checker above; it never imports this module
CHECKERS.update({c.name: c for c in _conformance.checker_entries(Checker, CheckResult, _unmeasured)})

# the requirements each checker claims when a run names no checkers of its own
DEFAULT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "rto": ("ENG-1",), "duplicates": ("ENG-5",), "lost_signals": ("ENG-5",), "state": ("ENG-5",),
    "one_active": ("ENG-1",), "results_delivered": ("ENG-5",), "stale_writes": ("ENG-1", "ENG-5"),
}
# the Redis partition checkers (redis_set, primary_follow, failovers) need their scenario's parameters and dumps
# (redis_writes.json, redis_roles.json): only the scenarios that write those name them
DEFAULT_CHECKERS = [{"checker": name, "requirement_ids": list(DEFAULT_REQUIREMENTS.get(name, ("ENG-5",))),
                     "params": {}} for name in DEFAULT_REQUIREMENTS]


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
    provider: dict = field(default_factory=lambda: {"provider": "local"})   # provider.json of the run

    @property
    def valid(self) -> bool | str:
        """Jepsen's merge-valid over the scenario's checkers; ``"invalid"`` when the run itself cannot be judged.
        The checkers every drill runs (``registry.EVERY_RUN_CHECKERS``: the stack's configuration, issue 19) are
        judged per requirement (report, exit status), not as this run's behaviour."""
        if not self.run_validity.valid:
            return "invalid"
        from scenarios.registry import EVERY_RUN_CHECKERS

        every_run = {s.checker for s in EVERY_RUN_CHECKERS}
        vals = [r.valid for r in self.results if r.checker not in every_run]
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
                        "fault_windows": [asdict(w) for w in self.fault_windows], "provider": self.provider})


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
    if status is None:
        reasons.append(f"no {h.STATUS}: whether the drill finished cannot be told (a drill writes it at its "
                       f"start and end; re-run the scenario)")
    elif status.get("state") != "complete":
        reasons.append(f"the drill did not finish: {status.get('state')}"
                       + (f" during {status['phase']}" if status.get("phase") else "")
                       + (f" ({status['reason']})" if status.get("reason") else ""))
    if not scenario:
        reasons.append(f"no {h.SCENARIO} in {run.path}: the run never started")
    if not run.has(h.HISTORY):
        reasons.append(f"no {h.HISTORY}: the run recorded no client operation")
    elif not ops:
        try:
            text = (run.path / h.HISTORY).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        if text:   # a new user's finding: one garbage line (read as a torn last line) was called "empty"
            reasons.append(f"{h.HISTORY} holds no client operation: none of its {len(text.splitlines())} line(s) "
                           f"is an operation a drill records (a JSON object per invoke and per completion; a last "
                           f"line that is not JSON is read as torn and skipped)")
        else:
            reasons.append(f"{h.HISTORY} is empty: the run recorded no client operation")
    injected: dict[str, int] = defaultdict(int)
    for rec in fault_records:
        if rec.get("event") == "inject":
            injected[str(rec.get("fault"))] += 1
    if ops:
        # a cut history (found by a new user: a history cut to its first quarter was judged "not recovered"):
        # every scheduled fault lands inside the load, so the operations must reach past the last injection and
        # span the load's duration
        last = max(max(o.invoke_mono, o.complete_mono or o.invoke_mono) for o in ops)
        first = min(o.invoke_mono for o in ops)
        injections = [m for rec in fault_records if rec.get("event") == "inject"
                      and (m := _num(rec.get("mono"))) is not None]
        if injections and last < max(injections):
            reasons.append(f"{h.HISTORY} ends {max(injections) - last:.1f} s before the last fault injection: the "
                           f"history is cut")
        config = run.config   # read from its file on every access: once here
        workload = config.get("workload") if isinstance(config, dict) else None
        duration = _num(workload.get("duration_s")) if isinstance(workload, dict) else None
        rate = _num(workload.get("rate_per_s")) if isinstance(workload, dict) else None
        if duration and rate and rate > 0:
            span = max(o.invoke_mono for o in ops) - first
            slack = max(2.0, 3.0 * max(1, int(_num(workload.get("concurrency")) or 1)) / rate)
            if span < duration - slack:
                reasons.append(f"{h.HISTORY} covers {span:.1f} s of the {duration:g} s load: the history is cut")
    wanted: dict[str, int] = defaultdict(int)
    for step in scenario.get("faults", ()) or ():
        wanted[str(step.get("fault"))] += 1
    for skipped in run_provider(run).get("skipped_faults", ()):   # the provider cannot inject it: said, not owed
        wanted[str(skipped.get("fault"))] -= 1
    for fault, n in wanted.items():
        if injected.get(fault, 0) < n:
            reasons.append(f"the scenario schedules {n} {fault} fault(s); the fault log shows "
                           f"{injected.get(fault, 0)} injected")
    return RunValidity(not reasons, reasons)


def run_provider(run: h.RunDir) -> dict:
    """The run's ``provider.json`` (which provider ran the stack, the faults it could not inject); runs from before
    providers existed ran on the local one."""
    try:
        doc = json.loads((run.path / "provider.json").read_text())
        return doc if isinstance(doc, dict) else {"provider": "local"}
    except (OSError, ValueError):
        return {"provider": "local"}


def check_run(run_dir: str | Path | h.RunDir, *, checkers: Sequence[Any] | None = None,
              signal_of: SignalOf | None = None, targets: targets_mod.Targets | None = None,
              view: "RunView | None" = None) -> RunCheck:
    """Apply the checkers of the run's scenario.json (or ``checkers``; or the registry's definition of the
    scenario; or DEFAULT_CHECKERS) to a saved run directory, and say whether the run can be judged at all.
    Raises FileNotFoundError when ``run_dir`` is not a folder. Unless ``checkers`` is given, the checkers every drill
    runs (``scenarios.registry.EVERY_RUN_CHECKERS``: the live configuration read, issue 19) are added. ``view``: a
    :class:`RunView` of the same run to load the files into (a caller that reads them too parses them once)."""
    run = run_dir if isinstance(run_dir, h.RunDir) else h.RunDir(run_dir)
    if not run.path.is_dir():
        raise FileNotFoundError(f"{run.path} is not a run directory; pass the folder a drill wrote "
                                f"(it holds history.jsonl)")
    targets = targets or targets_mod.load()
    scenario = run.scenario
    explicit = checkers is not None
    if checkers is None:
        checkers = scenario.get("checkers")
    if not checkers and scenario.get("name"):
        from scenarios import registry
        known = registry.get(scenario["name"])
        checkers = known.checkers if known else None
    checkers = checkers or DEFAULT_CHECKERS
    if not explicit:
        from scenarios import registry
        checkers = registry.with_every_run(checkers)
    view = view if view is not None else RunView(run, signal_of)
    ops, windows = view.operations(), view.fault_windows()
    results = [run_checker(spec, view, targets) for spec in checkers]
    from scenarios import overrides as overrides_mod   # engine settings not the documents': never a silent pass

    overridden = overrides_mod.load(run.path)
    if overridden:
        # the conformance read attaches to each setting the override of that setting only (scenarios.conformance)
        overrides_mod.annotate((j for r in results if r.checker != "conformance" for j in r.judgements), overridden)
    tl_f = next((_spec_dict(s)["params"].get("f") for s in checkers if _spec_dict(s)["checker"] == "rto"), None)
    return RunCheck(str(run.path), scenario.get("name") or run.path.name, scenario.get("repeat"), run.seed,
                    results, timeline(ops, windows, f=tl_f), windows,
                    run_validity(run, scenario, ops, run.fault_events()), run_provider(run))
