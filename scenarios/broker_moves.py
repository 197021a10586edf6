"""What the moving broker did on its own while the engines failed over (issue 20), judged on the recorded run.

``broker_closes``: positions the broker closed by their stop loss, take profit or a stop-out (deal reasons 4/5/6).
Judged: ``closed_at_broker`` (RTS still holds a position the broker closed: ``scenarios.positions.compare``) and
``repeated_closes`` (a position closed more than once: a second closing order in the ledger or orders, or an RTRS
result saying the position was already closed). The engines never send a close order of their own, so a close
that reaches the broker twice can only be the engine acting on a position it wrongly still holds. Measured beside
(not judged): how many closes fell inside a fault window (from the injection to the first ``takeover_ready`` after
it, or the heal, whichever is later) and while no engine was ready, and how long each took to leave RTS (the
sweep's ``positions_closed_at_broker`` event; closes not named there were dropped by a takeover's position sync).
Unmeasured when the broker closed nothing, or nothing inside a fault window: the scenario did not happen.

``pending_fills``: limit and stop orders our signals placed that the price reached (entry IN deals of a pending
order). Judged: ``pending_fills_missing_in_rts`` (a position one of them opened, still open at the broker at the
end, not in RTS) and ``placed_orders_in_rts`` (an order that never filled listed in RTS as a position). Measured:
fills inside a fault window and fills adopted (the engine that placed the order no longer held the lease when the
price reached it). Unmeasured when no pending order was placed, or none filled inside a fault window or after its
placer lost the lease.

The broker keeps moving after the engines stop for the ground-truth dump: its own closes and fills after the final
lease holder's last look (its ``engine_stop`` minus ``broker_close_poll_s``) are left out of both checkers and of the
state checker, and counted (``after_last_look``).

Times: the broker's deal ``time_msc`` (wall clock) against the fault log's and the engines' wall times (one host).
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any, Iterable

from scenarios import history as h
from scenarios import positions as positions_mod
from scenarios import targets as targets_mod
from scenarios.verdicts import judge, validity

CLOSE_REASONS = positions_mod.BROKER_CLOSE_REASONS
IN, OUT, OUT_BY = 0, 1, 3
POSITION_CLOSED = 10036   # TRADE_RETCODE_POSITION_CLOSED


def _ms(row: dict) -> float | None:
    t = row.get("time_msc")
    if t is None and row.get("time") is not None:
        t = float(row["time"]) * 1000
    return None if t is None else float(t)


def outage_windows(windows: Iterable[h.FaultWindow], events: Iterable[dict]) -> list[tuple[float, float, str]]:
    """(start, end, fault) in wall seconds per injected fault: from its injection to the later of its heal and the
    first ``takeover_ready`` after the injection (the end of the load when neither came)."""
    ready = sorted(float(e["ts"]) for e in events if e.get("event") == "takeover_ready" and e.get("ts") is not None)
    out = []
    for w in windows:
        if w.inject_wall is None:
            continue
        i = bisect.bisect_right(ready, w.inject_wall)
        takeover = ready[i] if i < len(ready) else None
        ends = [t for t in (w.heal_wall, takeover) if t is not None]
        out.append((w.inject_wall, max(ends) if ends else float("inf"), w.fault))
    return out


def no_engine_windows(windows: Iterable[h.FaultWindow], events: Iterable[dict]) -> list[tuple[float, float]]:
    """(injection, first ``takeover_ready`` after it) in wall seconds: while no engine was ready to trade."""
    ready = sorted(float(e["ts"]) for e in events if e.get("event") == "takeover_ready" and e.get("ts") is not None)
    out = []
    for w in windows:
        if w.inject_wall is None:
            continue
        i = bisect.bisect_right(ready, w.inject_wall)
        out.append((w.inject_wall, ready[i] if i < len(ready) else float("inf")))
    return out


def _inside(t: float, spans: Iterable[tuple]) -> bool:
    return any(s[0] <= t <= s[1] for s in spans)


def _holder_at(acquisitions: list[tuple[float, str]], t: float) -> str | None:
    """The instance whose lease acquisition is the last at or before wall time ``t``."""
    i = bisect.bisect_right([a[0] for a in acquisitions], t)
    return acquisitions[i - 1][1] if i else None


def check_broker_closes(ledger_rows: list[dict] | None, orders: list[dict], rts: dict | None, results: Iterable[Any],
                        windows: list[h.FaultWindow], events: list[dict], *, requirement_ids, targets,
                        result_cls, unmeasured):
    metrics_judged = ("closed_at_broker", "repeated_closes")
    if ledger_rows is None or rts is None:
        return unmeasured(result_cls, "broker_closes", requirement_ids, targets, metrics_judged,
                          "no broker ledger or no RTS dump in the run")
    closes: dict[tuple, list[dict]] = defaultdict(list)   # (broker, position) -> the broker's closing deals
    outs: dict[tuple, set] = defaultdict(set)             # (broker, position) -> every closing order
    for d in ledger_rows:
        key = (d.get("broker") or "", d.get("position_id"))
        if d.get("entry") in (OUT, OUT_BY) and d.get("position_id"):
            outs[key].add(d.get("order"))
            if d.get("reason") in CLOSE_REASONS:
                closes[key].append(d)
    if not closes:
        return unmeasured(result_cls, "broker_closes", requirement_ids, targets, metrics_judged,
                          f"the broker closed no position by SL, TP or stop-out ({len(ledger_rows)} deals): the price "
                          f"reached no stop")
    spans = outage_windows(windows, events)
    idle = no_engine_windows(windows, events)
    close_s = {k: _ms(v[0]) / 1000 for k, v in closes.items() if _ms(v[0]) is not None}
    during = sorted(str(k[1]) for k, t in close_s.items() if _inside(t, spans))
    while_idle = sorted(str(k[1]) for k, t in close_s.items() if _inside(t, idle))
    # a position closed twice: a second closing order, a later order on it, or the engine told it was closed
    repeated = [{"position": k[1], "broker": k[0], "closing_orders": sorted(outs[k], key=str)}
                for k in closes if len(outs[k]) > 1]
    for o in orders:
        key = (o.get("broker") or "", o.get("position_id"))
        if key in closes and o.get("ticket") not in outs[key] and int(o.get("type", 0) or 0) in (0, 1) and \
                (o.get("time_setup_msc") or 0) >= (_ms(closes[key][0]) or 0):
            repeated.append({"position": key[1], "broker": key[0], "order": o.get("ticket"),
                             "why": "an order on the position after the broker closed it"})
    told_closed = [r for r in results if str(getattr(r, "raw", {}).get("retcode", "")) == str(POSITION_CLOSED)
                   or "POSITION_CLOSED" in str(getattr(r, "raw", {}).get("code", ""))]
    repeated += [{"signal": r.signal, "why": "the engine sent a close the broker answered POSITION_CLOSED"}
                 for r in told_closed]
    # the final RTS positions against the broker's closing deals: every ticket still in RTS is named
    still = positions_mod.closed_at_broker(rts, [h.Deal.from_dict(d) for d in ledger_rows])
    # swept by (broker, ticket): two brokers number their tickets alike; an event naming no broker matches any
    swept: dict[tuple[str, str], float] = {}
    for e in events:
        if e.get("event") == "positions_closed_at_broker" and e.get("ts") is not None:
            for ticket in e.get("positions") or ():
                swept.setdefault((positions_mod.broker_name(e.get("broker")), str(ticket)), float(e["ts"]))

    def swept_at(k) -> float | None:
        at = swept.get((positions_mod.broker_name(k[0]), str(k[1])))
        return at if at is not None else swept.get(("", str(k[1])))
    lags = sorted(round(swept_at(k) - t, 3) for k, t in close_s.items() if swept_at(k) is not None)
    metrics = {"closed_at_broker": len(still), "repeated_closes": len(repeated), "broker_closes": len(closes),
               "by_reason": {r: sum(v[0].get("reason") == code for v in closes.values())
                             for code, r in CLOSE_REASONS.items()},
               "closed_during_fault": len(during), "closed_while_no_engine_ready": len(while_idle),
               "swept_from_rts": len(lags), "left_to_takeover_sync": len(closes) - len(lags),
               "sweep_lag_s_max": lags[-1] if lags else None,
               "sweep_lag_s_p50": lags[len(lags) // 2] if lags else None}
    evidence = [*still, *repeated[:50],
                {"kind": "closed_during_fault", "positions": during[:50], "while_no_engine_ready": while_idle[:50],
                 "windows": [{"from": s, "to": e, "fault": f} for s, e, f in spans]}]
    if not during:
        return unmeasured(result_cls, "broker_closes", requirement_ids, targets, metrics_judged,
                          f"the broker closed {len(closes)} position(s), none inside a fault window: the drill did "
                          f"not close a stop during a failover")
    judgements = judge({"closed_at_broker": len(still), "repeated_closes": len(repeated)}, requirement_ids, targets)
    summary = (f"{len(closes)} position(s) closed by the broker ({len(during)} during a fault, {len(while_idle)} with "
               f"no engine ready); {len(still)} still in RTS"
               f"{' (' + ', '.join(str(m['position']) for m in still[:10]) + ')' if still else ''}, "
               f"{len(repeated)} closed twice")
    return result_cls("broker_closes", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


def check_pending_fills(ledger_rows: list[dict] | None, orders: list[dict], rts: dict | None,
                        windows: list[h.FaultWindow], events: list[dict], signal_of, *, requirement_ids, targets,
                        result_cls, unmeasured):
    metrics_judged = ("pending_fills_missing_in_rts", "placed_orders_in_rts")
    if ledger_rows is None or rts is None:
        return unmeasured(result_cls, "pending_fills", requirement_ids, targets, metrics_judged,
                          "no broker ledger or no RTS dump in the run")
    pending = {(o.get("broker") or "", o.get("ticket")): o for o in orders
               if int(o.get("type", 0) or 0) in h.PENDING_ORDER_TYPES and signal_of(o.get("comment") or "")}
    if not pending:
        return unmeasured(result_cls, "pending_fills", requirement_ids, targets, metrics_judged,
                          "no pending order of a signal at the broker (orders.jsonl)" if orders else
                          "no orders.jsonl in the run (the brokers' orders were not dumped)")
    fills = {}
    for d in ledger_rows:
        key = (d.get("broker") or "", d.get("order"))
        if key in pending and d.get("entry") == IN:
            fills.setdefault(key, d)
    placer: dict[str, str] = {}
    for e in events:
        if e.get("event") == "order_send_invoke" and e.get("signal_id"):
            placer[str(e["signal_id"])] = str(e.get("instance") or "")   # the last send is the one that placed it
    acquisitions = sorted((float(e["ts"]), str(e.get("instance") or "")) for e in events
                          if e.get("event") == "lease_acquired" and e.get("ts") is not None)
    spans = outage_windows(windows, events)
    during, adopted = [], []
    for key, d in fills.items():
        t = (_ms(d) or 0) / 1000
        sid = signal_of(pending[key].get("comment") or "")
        if _inside(t, spans):
            during.append(str(key[1]))
        holder = _holder_at(acquisitions, t)
        if sid in placer and holder is not None and holder != placer[sid] or _inside(t, spans):
            adopted.append({"order": key[1], "signal": sid, "placed_by": placer.get(sid), "holder_at_fill": holder})
    engine = positions_mod.rts_positions(rts) or {}
    broker, _complete = positions_mod.ledger_positions([h.Deal.from_dict(d) for d in ledger_rows])
    held = set(positions_mod.match_rts(engine, broker).values())   # RTS holds every broker's, by broker + ticket
    missing = []
    for key, d in fills.items():
        p = broker.get(f"{key[0]}:{d.get('position_id')}")
        if p is not None and p["volume"] > 1e-9 and f"{key[0]}:{d.get('position_id')}" not in held:
            missing.append({"kind": "pending_fill_missing", "position": d.get("position_id"), "order": key[1],
                            "broker": key[0], "why": "a position our limit/stop order opened, open at the broker, "
                                                     "not in RTS"})
    # matched among every broker's positions and orders, so a backup's position is not a primary's unfilled order
    # of the same ticket
    unfilled = {f"{k[0]}:{k[1]}" for k in pending if k not in fills}
    is_what = positions_mod.match_rts(engine, set(broker) | {f"{k[0]}:{k[1]}" for k in pending})
    phantom = [{"kind": "placed_order_as_position", "order": engine[f]["ticket"], "broker": engine[f]["broker"],
                "why": "an unfilled pending order in RTS positions"} for f in sorted(engine) if is_what[f] in unfilled]
    metrics = {"pending_fills_missing_in_rts": len(missing), "placed_orders_in_rts": len(phantom),
               "pending_orders": len(pending), "pending_filled": len(fills), "filled_during_fault": len(during),
               "adopted_fills": len(adopted)}
    evidence = [*missing, *phantom, {"kind": "adopted", "fills": adopted[:50]}]
    if not adopted:
        return unmeasured(result_cls, "pending_fills", requirement_ids, targets, metrics_judged,
                          f"{len(fills)} of {len(pending)} pending order(s) filled, none inside a fault window or "
                          f"after its placer lost the lease: nothing was adopted")
    judgements = judge({"pending_fills_missing_in_rts": len(missing), "placed_orders_in_rts": len(phantom)},
                       requirement_ids, targets)
    summary = (f"{len(fills)} of {len(pending)} pending order(s) filled ({len(during)} during a fault, "
               f"{len(adopted)} adopted); {len(missing)} open fill(s) missing from RTS, {len(phantom)} unfilled "
               f"order(s) listed as positions")
    return result_cls("pending_fills", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """``broker_closes`` and ``pending_fills`` as ``scenarios.checkers.Checker`` rows."""

    def _rows(view) -> list[dict] | None:
        return view.settled_rows()[0]

    def _late(view, result):
        late = view.settled_rows()[1]
        result.metrics["after_last_look"] = len(late)
        if late:
            result.evidence.append({"kind": "after_last_look", "deals": [r.get("ticket") for r in late][:50],
                                    "why": "the broker's own closes/fills after the final holder's last sweep "
                                           "(its stop minus broker_close_poll_s): no engine's to see, left out"})
        return result

    def closes(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return _late(view, check_broker_closes(_rows(view), view.run.broker_orders(), view.trade_state(), view.trade_results(),
                                   view.fault_windows(), view.engine_events(), requirement_ids=rids, targets=targets,
                                   result_cls=result_cls, unmeasured=unmeasured))

    def fills(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return _late(view, check_pending_fills(_rows(view), view.run.broker_orders(), view.trade_state(), view.fault_windows(),
                                   view.engine_events(), view.signal_of, requirement_ids=rids, targets=targets,
                                   result_cls=result_cls, unmeasured=unmeasured))

    return [
        checker_cls("broker_closes", closes, ("closed_at_broker", "repeated_closes"),
                    "positions the broker closed by SL/TP/stop-out (during a fault window): none left in RTS, none "
                    "closed twice"),
        checker_cls("pending_fills", fills, ("pending_fills_missing_in_rts", "placed_orders_in_rts"),
                    "limit/stop orders the price reached (during a fault, after their placer lost the lease): their "
                    "open positions in RTS, no unfilled order listed as a position"),
    ]
