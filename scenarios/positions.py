"""Open positions, side by side, from the broker ledger and from RTS (issue 20, the state checker's item 5).

The ledger's deals rebuild every position by its id (MT5: a position's id is the ticket of the order that opened
it, which is also the RTS positions hash's key): IN adds volume on the deal's side, OUT/OUT_BY takes it away, INOUT
flips the side. What RTS holds is compared per (symbol, side), so a hedged pair (long 1 + short 1) is not the
same as no position, and per ticket: a position the broker closed on its own (SL, TP, stop-out) that RTS still holds
after the run is named as such.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

BROKER_CLOSE_REASONS = {4: "sl", 5: "tp", 6: "so"}  # DEAL_REASON_SL, _TP, _SO
IN, OUT, INOUT, OUT_BY = 0, 1, 2, 3


def _side(value: Any) -> str | None:
    if value in (0, "0", "buy", "long"):
        return "buy"
    if value in (1, "1", "sell", "short"):
        return "sell"
    return None


def ledger_positions(ledger: Iterable[Any]) -> tuple[dict[str, dict], bool]:
    """{"broker:position id": {symbol, side, volume, login, closed_by}} from the deals, and whether every trade deal named
    its position (False: the ledger cannot be rebuilt by position)."""
    positions: dict[str, dict] = {}
    complete = True
    for d in ledger:
        side = _side(d.type)
        if getattr(d, "kind", "deal") != "deal" or not d.symbol or side is None:
            continue
        if not d.position_id:
            complete = False
            continue
        key = f"{d.broker}:{d.position_id}"  # two brokers number their tickets alike
        p = positions.setdefault(key, {"symbol": d.symbol, "side": side, "volume": 0.0, "login": d.login,
                                       "closed_by": None})
        if d.entry in (IN, None):
            p["volume"] += d.volume
            p["side"] = side if p["volume"] == d.volume else p["side"]
        elif d.entry == INOUT:
            p["volume"], p["side"] = round(d.volume - p["volume"], 8), side
        else:  # OUT, OUT_BY: the opposite side's deal takes volume away
            p["volume"] = round(p["volume"] - d.volume, 8)
            if p["volume"] <= 1e-9:
                p["closed_by"] = BROKER_CLOSE_REASONS.get(d.reason)
    return positions, complete


def rts_positions(rts: dict) -> dict[str, dict] | None:
    """{ticket: {symbol, side, volume}} of the engine's RTS positions hash (``positions_raw``), or None."""
    raw = rts.get("positions_raw")
    if not isinstance(raw, dict):
        return None
    out = {}
    for ticket, text in raw.items():
        try:
            p = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            p = None
        if isinstance(p, dict):
            out[str(ticket)] = {"symbol": p.get("symbol"), "side": _side(p.get("type", p.get("side"))) or "buy",
                                "volume": float(p.get("volume") or 0.0), "broker": p.get("broker") or ""}
    return out


def _lookup(broker: dict[str, dict], ticket: str, name: str) -> dict | None:
    """The ledger position of RTS ``ticket``: by "broker:ticket", or, when RTS did not record the broker (or recorded
    another spelling), the only broker position with that id."""
    p = broker.get(f"{name}:{ticket}")
    if p is not None:
        return p
    hits = [v for k, v in broker.items() if k.split(":", 1)[1] == str(ticket)]
    return hits[0] if len(hits) == 1 else None


def ticket_differences(rts: dict, ledger: Iterable[Any], tolerance: float = 1e-9) -> dict[tuple[str, str], dict]:
    """{(symbol, side): {"only_in_rts": [tickets], "only_at_broker": [tickets]}} for the (symbol, side) pairs where
    the tickets RTS holds and the positions open at the broker differ; {} when RTS has no positions hash."""
    engine = rts_positions(rts)
    if engine is None:
        return {}
    broker, _complete = ledger_positions(ledger)
    open_ids = {k.split(":", 1)[1]: p for k, p in broker.items() if p["volume"] > tolerance}
    out: dict[tuple[str, str], dict] = defaultdict(lambda: {"only_in_rts": [], "only_at_broker": []})
    for ticket, p in sorted(engine.items()):
        if ticket not in open_ids:
            out[(p["symbol"], p["side"])]["only_in_rts"].append(ticket)
    for ticket, p in sorted(open_ids.items()):
        if ticket not in engine:
            out[(p["symbol"], p["side"])]["only_at_broker"].append(ticket)
    return dict(out)


def compare(rts: dict, ledger: Iterable[Any], tolerance: float = 1e-9) -> tuple[list[dict], dict]:
    """Mismatches (kinds ``position_side`` and ``closed_at_broker``) and metrics; nothing when RTS has no positions
    hash or the ledger's deals do not name their positions."""
    ledger = list(ledger)
    engine = rts_positions(rts)
    broker, complete = ledger_positions(ledger)
    if engine is None:
        return [], {"positions_compared_by_side": 0, "closed_at_broker": 0}
    closed_by = closed_at_broker(rts, ledger)
    if not complete:
        return closed_by, {"positions_compared_by_side": 0, "closed_at_broker": len(closed_by)}
    mismatches: list[dict] = []
    open_at_broker: dict[tuple[str, str], float] = defaultdict(float)
    logins: dict[tuple[str, str], set] = defaultdict(set)
    for p in broker.values():
        if p["volume"] > tolerance:
            open_at_broker[(p["symbol"], p["side"])] += p["volume"]
            logins[(p["symbol"], p["side"])].add(p["login"])
    held: dict[tuple[str, str], float] = defaultdict(float)
    for p in engine.values():
        held[(p["symbol"], p["side"])] += p["volume"]
    tickets = ticket_differences(rts, ledger, tolerance)
    for key in sorted(set(open_at_broker) | set(held)):
        b, e = open_at_broker.get(key, 0.0), held.get(key, 0.0)
        if abs(b - e) > 1e-6:
            mismatches.append({"kind": "position_side", "symbol": key[0], "side": key[1], "broker": round(b, 8),
                               "engine": round(e, 8), "accounts": sorted(x for x in logins.get(key, ()) if x),
                               **tickets.get(key, {})})
    mismatches += closed_by
    return mismatches, {"positions_compared_by_side": len(set(open_at_broker) | set(held)),
                        "closed_at_broker": len(closed_by)}


def closed_at_broker(rts: dict, ledger: Iterable[Any]) -> list[dict]:
    """Each position in the final RTS positions hash that the broker closed by SL, TP or stop-out (a closing deal of
    reason 4/5/6 on its ticket and nothing open left on it), named with its RTS comment, side and volume. Matched by
    ticket, and by broker when RTS recorded one (a position hash written without the broker still matches)."""
    engine = rts_positions(rts) or {}
    raw = rts.get("positions_raw") or {}
    deals = [d for d in ledger if getattr(d, "kind", "deal") == "deal" and d.position_id]
    closes: dict[str, list] = defaultdict(list)
    for d in deals:
        if d.entry in (OUT, OUT_BY) and d.reason in BROKER_CLOSE_REASONS:
            closes[str(d.position_id)].append(d)
    broker, _complete = ledger_positions(deals)
    out = []
    for ticket in sorted(engine):
        e = engine[ticket]
        hits = [d for d in closes.get(str(ticket), ()) if not e["broker"] or not d.broker or d.broker == e["broker"]]
        if not hits:
            continue
        p = _lookup(broker, ticket, e["broker"])
        if p is not None and p["volume"] > 1e-9:
            continue   # partly closed by the broker, still open there: not a close RTS missed
        d = hits[-1]
        why = BROKER_CLOSE_REASONS[d.reason]
        try:
            held = json.loads(raw[ticket]) if isinstance(raw.get(ticket), str) else raw.get(ticket) or {}
        except (ValueError, KeyError):
            held = {}
        out.append({"kind": "closed_at_broker", "position": ticket, "symbol": e["symbol"] or d.symbol,
                    "side": e["side"], "volume": e["volume"], "comment": held.get("comment") if isinstance(held, dict)
                    else None, "broker": d.broker or e["broker"], "closed_by": why, "deal": d.deal,
                    "close_comment": getattr(d, "comment", None),
                    "why": f"the broker closed position {ticket} ({why.upper()}, deal {d.deal}); RTS still holds it"})
    return out
