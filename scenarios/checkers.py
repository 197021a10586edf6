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
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.history import Deal, FaultWindow, Operation, Signal, TradeResult

PASS, FAIL, UNMEASURED = "pass", "fail", "unmeasured"
UNKNOWN = "unknown"

SignalOf = Callable[[str], "str | None"]

_SIGNAL_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_ENGINE_KEY = re.compile(r"([a-z2-7]{12})-[0-9]+")
ENGINE_COMMENT_PREFIX = "td"


def signal_key(signal_id: str) -> str:
    """The engine's short deterministic key of a signal (12 base32 chars of sha256), as sent in ``comment``.
    The engine's own function is the source of truth; the copy below keeps checkers usable without it."""
    try:
        from reference.engine.signals import signal_key as engine_signal_key
    except Exception:  # noqa: BLE001 - the reference engine is optional for judging a saved run
        import base64
        import hashlib
        return base64.b32encode(hashlib.sha256(signal_id.encode()).digest()).decode().rstrip("=").lower()[:12]
    return engine_signal_key(signal_id)


def default_signal_of(signal_ids: Iterable[str] = (), prefix: str = ENGINE_COMMENT_PREFIX) -> SignalOf:
    """The default comment -> signal id mapping.

    - The engine's form ``<prefix><12-char key>-<attempt>`` (``td3f...q-2``) maps to the submitted signal whose
      key it is (``signal_ids``), or to ``<prefix><key>`` when no submitted signal has that key; every attempt of
      one signal maps to the same id, so two executed attempts are a duplicate.
    - Otherwise the comment is the signal id, optionally behind ``something:`` (``sig:s-0007`` -> ``s-0007``).
    - Broker-made comments (``[sl 1.1]``, ``[tp ...]``, ``[so ...]``) and empty ones map to None.
    Pass another function as ``signal_of`` when the engine encodes ids differently."""
    index = {signal_key(s): s for s in signal_ids}

    def signal_of(comment: str | None) -> str | None:
        c = (comment or "").strip()
        if not c or c.startswith("["):
            return None
        if prefix and c.startswith(prefix):
            m = _ENGINE_KEY.fullmatch(c[len(prefix):])
            if m:
                return index.get(m.group(1), f"{prefix}{m.group(1)}")
        if ":" in c:
            c = c.rsplit(":", 1)[1]
        return c if _SIGNAL_ID.fullmatch(c) else None

    return signal_of


signal_id_from_comment: SignalOf = default_signal_of()


def comment_index(signal_ids: Iterable[str], to_comment: Callable[[str], str]) -> SignalOf:
    """A ``signal_of`` for engines that send some other derived comment: invert the engine's own
    signal -> comment function over the signals the run submitted."""
    index = {to_comment(s): s for s in signal_ids}
    return lambda comment: index.get((comment or "").strip())


# -- judging against targets -----------------------------------------------------------------------------------
@dataclass
class Judgement:
    """One measured metric against one requirement's target (and its alternatives)."""

    requirement_id: str
    metric: str
    comparator: str
    target: Any
    unit: str
    source: str
    measured: Any
    verdict: str  # pass | fail | unmeasured
    lower_bound: bool = False  # measured is only a lower bound (e.g. not recovered before the history ended)
    alternatives: list[dict] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)


def _verdict(target: targets_mod.Target, measured: Any, lower_bound: bool) -> str:
    if measured is None:
        return UNMEASURED
    if lower_bound:
        # we only know the true value is >= measured: a "<"/"<=" target is missed if the bound already misses it
        if target.comparator in ("<", "<=", "=="):
            return FAIL if target.meets(measured) is False else UNMEASURED
        return PASS if target.meets(measured) else UNMEASURED
    met = target.meets(measured)
    return UNMEASURED if met is None else (PASS if met else FAIL)


def judge(metrics: dict[str, Any], requirement_ids: Sequence[str], targets: targets_mod.Targets | None = None,
          lower_bounds: Iterable[str] = ()) -> list[Judgement]:
    """A judgement for every (requirement, metric) pair that targets.toml defines."""
    targets = targets or targets_mod.load()
    lower = set(lower_bounds)
    out = []
    for rid in requirement_ids:
        if rid not in targets:
            continue
        for metric, measured in metrics.items():
            t = targets.target(rid, metric)
            if t is None:
                continue
            alts = [{"value": a.value, "source": a.source, "note": a.note,
                     "verdict": _verdict(alt_t, measured, metric in lower)}
                    for a, alt_t in zip(t.alternatives, t.alternative_targets())]
            out.append(Judgement(rid, metric, t.comparator, t.value, t.unit, t.source, measured,
                                 _verdict(t, measured, metric in lower), metric in lower, alts,
                                 list(t.contradictions)))
    return out


def validity(judgements: Sequence[Judgement], fallback: bool | str = UNKNOWN) -> bool | str:
    verdicts = [j.verdict for j in judgements]
    if FAIL in verdicts:
        return False
    if PASS in verdicts:
        return True
    return fallback if not judgements else UNKNOWN


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
        return _jsonable(asdict(self))


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


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
    judgements = judge(metrics, requirement_ids, targets, lower)
    if not measurements:
        summary = f"no fault{' ' + fault if fault else ''} injected: RTO not measured"
    elif lower:
        summary = f"not recovered: no successful {f or 'operation'} within {metrics['rto_s']:.3f} s of the injection"
    else:
        summary = f"RTO {metrics['rto_s']:.3f} s (worst of {len(measurements)} injection(s))"
    return RtoResult("rto", validity(judgements), tuple(requirement_ids), metrics, evidence, summary, judgements,
                     rule=RTO_RULE, f=f, measurements=measurements)


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
    """Signal ids with more than one order in the broker ledger(s), all brokers together."""
    ledger = list(ledger)
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
EXECUTED_STATUSES = {"executed", "filled", "done", "ok", "done_partial", "partial", "placed"}
REJECTED_STATUSES = {"rejected", "failed", "cancelled", "canceled", "invalid", "expired", "suspended",
                     "stopped", "error"}


def check_lost_signals(signals: Iterable[Signal], ledger: Iterable[Deal], results: Iterable[TradeResult] = (), *,
                       signal_of: SignalOf | None = None, requirement_ids: Sequence[str] = ("ENG-5",),
                       targets: targets_mod.Targets | None = None) -> LostSignalResult:
    """Acknowledged signals that were neither executed at the broker nor rejected with a reason on RTRS.
    The broker ledger is the ground truth for "executed": an RTRS entry saying executed without a deal is lost.
    Also reported (not judged): signals whose submission definitely failed yet executed, and orders for
    signals never submitted."""
    signals = list(signals)
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
               "failed_but_executed": len(failed_but_executed), "orders_for_unsubmitted_signals": len(never_submitted)}
    judgements = judge({"lost_signals": len(lost)}, requirement_ids, targets)
    summary = (f"{len(lost)} acknowledged signal(s) lost: {', '.join(lost[:10])}" if lost
               else f"all {len(acked)} acknowledged signal(s) executed or rejected with a reason")
    if not acked:
        summary = "no acknowledged signals: nothing to lose"
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
    executed (and with which order)."""
    ledger = list(ledger)
    if rts is None:
        return StateResult("state", UNKNOWN, tuple(requirement_ids), {}, [], "no RTS dump (rts.json): state not "
                           "checked", [])
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
def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return s[rank - 1]


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
DEFAULT_CHECKERS = [
    {"checker": "rto", "requirement_ids": ["ENG-1"], "params": {}},
    {"checker": "duplicates", "requirement_ids": ["ENG-5"], "params": {}},
    {"checker": "lost_signals", "requirement_ids": ["ENG-5"], "params": {}},
    {"checker": "state", "requirement_ids": ["ENG-5"], "params": {}},
]


@dataclass
class RunCheck:
    """Every checker's result for one run directory, plus its timeline."""

    run_dir: str
    scenario: str
    repeat: int | None
    seed: int | None
    results: list[CheckResult]
    timeline: TimelineResult
    fault_windows: list[FaultWindow]

    @property
    def valid(self) -> bool | str:
        vals = [r.valid for r in self.results]
        if False in vals:
            return False
        if vals and all(v is True for v in vals):
            return True
        return UNKNOWN if UNKNOWN in vals or not vals else True

    @property
    def judgements(self) -> list[Judgement]:
        return [j for r in self.results for j in r.judgements]

    def to_dict(self) -> dict:
        return _jsonable({"run_dir": self.run_dir, "scenario": self.scenario, "repeat": self.repeat,
                          "seed": self.seed, "valid": self.valid, "results": [r.to_dict() for r in self.results],
                          "timeline": self.timeline.to_dict(),
                          "fault_windows": [asdict(w) for w in self.fault_windows]})


def _spec_dict(spec: Any) -> dict:
    if isinstance(spec, dict):
        return {"checker": spec.get("checker") or spec.get("name"), "requirement_ids": spec.get("requirement_ids", []),
                "params": spec.get("params", {})}
    return {"checker": spec.checker, "requirement_ids": list(spec.requirement_ids), "params": dict(spec.params)}


def run_checker(spec: Any, run: h.RunDir, *, ops: list[Operation], windows: list[FaultWindow],
                signal_of: SignalOf, targets: targets_mod.Targets) -> CheckResult:
    spec = _spec_dict(spec)
    name, rids, params = spec["checker"], tuple(spec["requirement_ids"]), spec["params"]
    if name == "rto":
        return check_rto(ops, windows, f=params.get("f"), fault=params.get("fault"), requirement_ids=rids,
                         targets=targets)
    if name == "duplicates":
        return check_duplicates(run.ledger(), signal_of=signal_of, requirement_ids=rids, targets=targets)
    if name == "lost_signals":
        return check_lost_signals(run.signals(), run.ledger(), run.trade_results(), signal_of=signal_of,
                                  requirement_ids=rids, targets=targets)
    if name == "state":
        return check_state(run.trade_state(), run.ledger(), signal_of=signal_of, requirement_ids=rids,
                           targets=targets)
    raise ValueError(f"unknown checker {name!r}; known: rto, duplicates, lost_signals, state")


def check_run(run_dir: str | Path | h.RunDir, *, checkers: Sequence[Any] | None = None,
              signal_of: SignalOf | None = None, targets: targets_mod.Targets | None = None) -> RunCheck:
    """Apply the checkers of the run's scenario.json (or ``checkers``; or the registry's definition of the
    scenario; or DEFAULT_CHECKERS) to a saved run directory."""
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
    if signal_of is None:
        config = run.config if isinstance(run.config, dict) else {}
        signal_of = default_signal_of((s.id for s in run.signals()),
                                      config.get("comment_prefix", ENGINE_COMMENT_PREFIX))
    ops, windows = run.operations(), run.fault_windows()
    results = [run_checker(spec, run, ops=ops, windows=windows, signal_of=signal_of, targets=targets)
               for spec in checkers]
    tl_f = next((_spec_dict(s)["params"].get("f") for s in checkers if _spec_dict(s)["checker"] == "rto"), None)
    return RunCheck(str(run.path), scenario.get("name") or run.path.name, scenario.get("repeat"), run.seed,
                    results, timeline(ops, windows, f=tl_f), windows)


