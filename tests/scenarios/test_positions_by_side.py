"""Issue 20: the state checker compares open positions by (symbol, side) and names a position the broker closed by
SL/TP that RTS still holds."""
from __future__ import annotations

import dataclasses
import json

from scenarios.checkers import check_state
from scenarios.history import Deal


def deal(ticket, position, side, entry, volume=0.1, reason=3, symbol="EURUSD"):
    return Deal.from_dict({"ticket": ticket, "order": ticket, "position_id": position, "type": side, "entry": entry,
                           "volume": volume, "symbol": symbol, "reason": reason, "login": 5001, "comment": ""})


def rts(**positions):
    return {"positions_raw": {t: json.dumps({"symbol": "EURUSD", "type": side, "volume": v})
                              for t, (side, v) in positions.items()}}


def test_a_hedge_is_not_the_same_as_no_position():
    ledger = [deal(1, 1, 0, 0), deal(2, 2, 1, 0)]  # long 0.1 and short 0.1: net 0
    result = check_state(rts(), ledger)
    kinds = sorted(m["kind"] for m in result.mismatches)
    assert kinds == ["position_side", "position_side"] and result.metrics["positions_compared_by_side"] == 2
    assert check_state(rts(**{"1": (0, 0.1), "2": (1, 0.1)}), ledger).mismatches == []


def test_a_position_closed_at_the_broker_by_its_stop_must_leave_rts():
    ledger = [deal(1, 1, 0, 0), deal(3, 1, 1, 1, reason=4)]  # opened, then closed by its SL
    stale = check_state(rts(**{"1": (0, 0.1)}), ledger)
    closed = [m for m in stale.mismatches if m["kind"] == "closed_at_broker"]
    assert closed == [{"kind": "closed_at_broker", "position": "1", "symbol": "EURUSD", "side": "buy", "volume": 0.1,
                       "comment": None, "broker": "", "closed_by": "sl", "deal": 3, "close_comment": "",
                       "why": "the broker closed position 1 (SL, deal 3); RTS still holds it"}]
    assert stale.metrics["closed_at_broker"] == 1 and stale.metrics["state_mismatches"] >= 1
    assert check_state(rts(), ledger).mismatches == []


def at(broker, ticket, position, side, entry, volume=0.01, reason=3):
    return dataclasses.replace(deal(ticket, position, side, entry, volume=volume, reason=reason), broker=broker)


def test_positions_at_two_brokers_with_the_same_tickets_are_compared_per_broker():
    """ENG-5, the brokers-down drill (seed 19): RTS holds every broker's positions under ``<broker>:<ticket>``
    (the engine's names, ``primary``), the ledger names brokers by node (``mt5-primary``), and both simulators number
    their tickets from 10000001. The primary's positions, still open after the switch to the backup, must be in RTS."""
    ledger = [at("mt5-primary", 10000002, 10000002, 0, 0), at("mt5-primary", 10000003, 10000003, 0, 0),
              at("mt5-backup", 10000002, 10000002, 1, 0, volume=0.05),
              at("mt5-backup", 10000004, 10000002, 0, 1, volume=0.05, reason=4)]   # the backup's SL closed it
    both = {"positions_raw": {f"{b}:{t}": json.dumps({"symbol": "EURUSD", "type": 0, "volume": 0.01, "broker": b})
                              for b, t in (("primary", 10000002), ("primary", 10000003))}}
    result = check_state(both, ledger)
    assert result.mismatches == [] and result.metrics["positions_compared_by_side"] == 1
    # the defect: only the active broker's list in RTS, the primary's two gone (and the backup's SL-closed one kept)
    backup_only = {"positions_raw": {"backup:10000002": json.dumps({"symbol": "EURUSD", "type": 1, "volume": 0.05,
                                                                    "broker": "backup"})}}
    lost = check_state(backup_only, ledger)
    net = [m for m in lost.mismatches if m["kind"] == "position"]
    assert net and net[0]["tickets"] == {"buy": {"only_in_rts": [], "only_at_broker": ["primary:10000002",
                                                                                        "10000003"]},
                                         "sell": {"only_in_rts": ["backup:10000002"], "only_at_broker": []}}, net
    closed = [m for m in lost.mismatches if m["kind"] == "closed_at_broker"]
    assert [(m["position"], m["broker"], m["closed_by"]) for m in closed] == [("10000002", "mt5-backup", "sl")]
