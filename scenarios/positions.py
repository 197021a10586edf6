"""Open positions, side by side, from the broker ledger and from RTS (issue 20, the state checker's item 5).

The ledger's deals rebuild every position by broker and id (MT5: a position's id is the ticket of the order that
opened it; two brokers number their tickets alike): IN adds volume on the deal's side, OUT/OUT_BY takes it away,
INOUT flips the side. The RTS positions hash holds every broker's positions, each under ``<broker>:<ticket>``
(``reference/engine/contract.py``, ENG-5; an older engine wrote the bare ticket, its broker in the JSON, still read).
The ledger names a broker by its node (``mt5-primary``), the engine by its config name (``primary``): ``broker_name``
makes them one, and :func:`match_rts` pairs each RTS position with the ledger's. What RTS holds is compared per
(symbol, side), so a hedged pair (long 1 + short 1) is not the same as no position, and per position: a position the
broker closed on its own (SL, TP, stop-out) that RTS still holds after the run is named as such.
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


def broker_name(name: Any) -> str:
    """One spelling of a broker's name for both sides: the ledger dump's node name (``mt5-primary``) and the engine
    config's (``primary``, the node's role ``broker-primary`` without its prefix) give ``primary``."""
    name = str(name or "")
    for prefix in ("mt5-", "broker-"):
        name = name.removeprefix(prefix)
    return name


def split_key(key: str) -> tuple[str, str]:
    """(broker, position id) of a ``"<broker>:<id>"`` key (RTS field or :func:`ledger_positions` key); ("", id) for a
    bare id. The id is what follows the last ':'."""
    broker, _sep, ticket = str(key).rpartition(":")
    return broker, ticket


def rts_positions(rts: dict) -> dict[str, dict] | None:
    """{RTS field: {symbol, side, volume, broker, ticket, comment}} of the engine's RTS positions hash
    (``positions_raw``: ``"<broker>:<ticket>"`` -> JSON, ENG-5), or None when the dump has none. ``broker`` is the
    field's, else (a bare-ticket field of an older engine) the JSON's, else ""."""
    raw = rts.get("positions_raw")
    if not isinstance(raw, dict):
        return None
    out = {}
    for field, text in raw.items():
        try:
            p = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            p = None
        if isinstance(p, dict):
            broker, ticket = split_key(field)
            out[str(field)] = {"symbol": p.get("symbol"), "side": _side(p.get("type", p.get("side"))) or "buy",
                               "volume": float(p.get("volume") or 0.0), "broker": broker or p.get("broker") or "",
                               "ticket": ticket, "comment": p.get("comment")}
    return out


def match_rts(engine: dict[str, dict], keys: Iterable[str]) -> dict[str, str | None]:
    """{RTS field: the one of ``keys`` (``"<broker>:<id>"``, the ledger's spelling) that is the same position, or
    None}. Same id and same :func:`broker_name`; when RTS names no broker, or a broker no key of that id has, the only
    key with that id (a dump without brokers, another spelling)."""
    by_id: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        by_id[split_key(key)[1]].append(key)
    out: dict[str, str | None] = {}
    for field, e in engine.items():
        candidates = by_id.get(str(e["ticket"]), [])
        named = [k for k in candidates if e["broker"] and broker_name(split_key(k)[0]) == broker_name(e["broker"])]
        out[field] = named[0] if len(named) == 1 else candidates[0] if not named and len(candidates) == 1 else None
    return out


def _labels(engine: dict[str, dict], keys: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Names for evidence: the bare id when only one broker has it, else ``<broker>:<id>``."""
    keys = list(keys)
    brokers: dict[str, set] = defaultdict(set)
    for e in engine.values():
        brokers[str(e["ticket"])].add(broker_name(e["broker"]))
    for k in keys:
        b, t = split_key(k)
        brokers[t].add(broker_name(b))

    def label(broker: str, ticket: str) -> str:
        return ticket if len(brokers[ticket]) <= 1 else f"{broker_name(broker)}:{ticket}"
    return ({f: label(e["broker"], str(e["ticket"])) for f, e in engine.items()},
            {k: label(*split_key(k)) for k in keys})


def ticket_differences(rts: dict, ledger: Iterable[Any], tolerance: float = 1e-9) -> dict[tuple[str, str], dict]:
    """{(symbol, side): {"only_in_rts": [tickets], "only_at_broker": [tickets]}} for the (symbol, side) pairs where
    the positions RTS holds and those open at the brokers differ (matched by broker and ticket, :func:`match_rts`; a
    ticket two brokers have is named ``<broker>:<ticket>``); {} when RTS has no positions hash."""
    engine = rts_positions(rts)
    if engine is None:
        return {}
    broker, _complete = ledger_positions(ledger)
    matched = match_rts(engine, broker)
    open_keys = {k for k, p in broker.items() if p["volume"] > tolerance}
    rts_label, ledger_label = _labels(engine, open_keys)
    out: dict[tuple[str, str], dict] = defaultdict(lambda: {"only_in_rts": [], "only_at_broker": []})
    for field, p in sorted(engine.items()):
        if matched[field] not in open_keys:
            out[(p["symbol"], p["side"])]["only_in_rts"].append(rts_label[field])
    held = set(matched.values())
    for key in sorted(open_keys):
        if key not in held:
            p = broker[key]
            out[(p["symbol"], p["side"])]["only_at_broker"].append(ledger_label[key])
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
    reason 4/5/6 on it and nothing open left on it), named with its ticket, RTS comment, side and volume. Matched by
    broker and ticket (:func:`match_rts`; a hash written without the broker still matches a ticket one broker has)."""
    engine = rts_positions(rts) or {}
    deals = [d for d in ledger if getattr(d, "kind", "deal") == "deal" and d.position_id]
    closes: dict[str, list] = defaultdict(list)
    for d in deals:
        if d.entry in (OUT, OUT_BY) and d.reason in BROKER_CLOSE_REASONS:
            closes[f"{d.broker}:{d.position_id}"].append(d)
    broker, _complete = ledger_positions(deals)
    matched = match_rts(engine, broker)
    out = []
    for field in sorted(engine):
        e, key = engine[field], matched[field]
        hits = closes.get(key, []) if key is not None else []
        if not hits:
            continue
        p = broker.get(key)
        if p is not None and p["volume"] > 1e-9:
            continue   # partly closed by the broker, still open there: not a close RTS missed
        d = hits[-1]
        why = BROKER_CLOSE_REASONS[d.reason]
        ticket = e["ticket"]
        out.append({"kind": "closed_at_broker", "position": ticket, "symbol": e["symbol"] or d.symbol,
                    "side": e["side"], "volume": e["volume"], "comment": e["comment"],
                    "broker": d.broker or e["broker"], "closed_by": why, "deal": d.deal,
                    "close_comment": getattr(d, "comment", None),
                    "why": f"the broker closed position {ticket} ({why.upper()}, deal {d.deal}); RTS still holds it"})
    return out
