"""Issue 20: the state checker compares open positions by (symbol, side) and names a position the broker closed by
SL/TP that RTS still holds."""
from __future__ import annotations

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
