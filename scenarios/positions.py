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


def compare(rts: dict, ledger: Iterable[Any], tolerance: float = 1e-9) -> tuple[list[dict], dict]:
    """Mismatches (kinds ``position_side`` and ``closed_at_broker``) and metrics; nothing when RTS has no positions
    hash or the ledger's deals do not name their positions."""
    engine = rts_positions(rts)
    broker, complete = ledger_positions(ledger)
    if engine is None or not complete:
        return [], {"positions_compared_by_side": 0, "closed_at_broker": 0}
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
    for key in sorted(set(open_at_broker) | set(held)):
        b, e = open_at_broker.get(key, 0.0), held.get(key, 0.0)
        if abs(b - e) > 1e-6:
            mismatches.append({"kind": "position_side", "symbol": key[0], "side": key[1], "broker": round(b, 8),
                               "engine": round(e, 8), "accounts": sorted(x for x in logins.get(key, ()) if x)})
    closed = 0
    for ticket in sorted(engine):
        p = broker.get(f"{engine[ticket]['broker']}:{ticket}")
        if p is not None and p["volume"] <= 1e-9 and p["closed_by"]:
            closed += 1
            mismatches.append({"kind": "closed_at_broker", "position": ticket, "symbol": p["symbol"],
                               "closed_by": p["closed_by"], "why": f"the broker closed it ({p['closed_by'].upper()}); "
                                                                   f"RTS still holds it"})
    return mismatches, {"positions_compared_by_side": len(set(open_at_broker) | set(held)),
                        "closed_at_broker": closed}
