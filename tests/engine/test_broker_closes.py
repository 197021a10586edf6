"""BRK-3 between takeovers (issue 20): a position the broker closes on its own initiative (its stop loss or take
profit hit by the price walk) leaves RTS positions while the same engine stays active, within a few sweeps
(``broker_close_poll_s``), not only at the next takeover or broker recovery."""
from __future__ import annotations

import pytest

from reference.engine.contract import parse_position_field, position_field
from reference.mt5.simclient import SimulatorTerminal
from tests.engine.conftest import LOGIN
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services

SL_TP_REASONS = {4, 5}   # DEAL_REASON_SL, DEAL_REASON_TP


def _open_with_tight_stops(harness, terminal, tries: int = 10) -> dict:
    """A buy with its SL and TP 5 points either side of the bid: the walk (2 points a tick) leaves that band
    within a few ticks. The price can move between the quote read here and the engine's send; a request whose
    stops are no longer valid is rejected (INVALID_STOPS) and tried again with a fresh quote, ``tries`` times."""
    point = terminal.symbol_info("EURUSD").point
    for _ in range(tries):
        bid = terminal.symbol_info_tick("EURUSD").bid
        sid, _entry = harness.submit(sl=f"{bid - 5 * point:.5f}", tp=f"{bid + 5 * point:.5f}")
        result = harness.result_for(sid)
        if result["status"] == "executed":
            return result
    raise AssertionError(f"no buy with stops 5 points from the bid executed in {tries} tries")


def test_a_position_closed_by_its_stop_at_the_broker_leaves_rts(harness):
    harness.engine("A", broker_close_poll_s=0.5)
    harness.wait_event("A", "takeover_ready", 20)
    primary = harness.topology.node("mt5-primary")
    terminal = SimulatorTerminal(primary.address, primary.port)
    assert terminal.initialize(login=LOGIN), terminal.last_error()
    try:
        opened = _open_with_tight_stops(harness, terminal)
    finally:
        terminal.shutdown()
    ticket = opened["order"]             # a position's ticket is its opening order's (hedging account)
    positions = f"RTS:{harness.group}:positions"
    field = position_field("primary", ticket)   # RTS positions: <broker>:<ticket> (ENG-5)
    wait_until(lambda: field in harness.redis().hgetall(positions), 10, f"position {field} in RTS")

    def closed_by_broker():
        return next((d for d in harness.ledger(harness.admin)
                     if str(d.get("position_id")) == ticket and d.get("reason") in SL_TP_REASONS), None)
    closing = wait_until(closed_by_broker, 60, f"the broker closing position {ticket} by its SL or TP")
    wait_until(lambda: field not in harness.redis().hgetall(positions), 10,
               f"position {ticket} gone from RTS after the broker closed it ({closing})")
    swept = harness.wait_event("A", "positions_closed_at_broker", 10)
    assert ticket in swept["positions"], swept
    assert not [e for e in harness.events("A") if e["event"] in ("engine_error", "lease_lost")]


def test_a_pending_order_is_no_position_until_the_price_reaches_it(harness):
    """A placed limit order is an order, not a position (RTS listed it as one); once the walk reaches it, the
    position it opened joins RTS without a takeover. A buy limit 2 points under the bid and a sell limit 2 points
    over the ask: the walk leaves that band within a few ticks, so one of them fills."""
    harness.engine("A", broker_close_poll_s=0.5)
    harness.wait_event("A", "takeover_ready", 20)
    primary = harness.topology.node("mt5-primary")
    terminal = SimulatorTerminal(primary.address, primary.port)
    assert terminal.initialize(login=LOGIN), terminal.last_error()
    try:
        point = terminal.symbol_info("EURUSD").point
        tick = terminal.symbol_info_tick("EURUSD")
        far, _ = harness.submit(order_type="limit", side="buy", price=f"{tick.bid - 5000 * point:.5f}")
        low, _ = harness.submit(order_type="limit", side="buy", price=f"{tick.bid - 2 * point:.5f}")
        high, _ = harness.submit(order_type="limit", side="sell", price=f"{tick.ask + 2 * point:.5f}")
    finally:
        terminal.shutdown()
    placed = {sid: harness.result_for(sid) for sid in (far, low, high)}
    assert all(r["status"] == "executed" and r["order"] and not r["deal"] for r in placed.values()), placed
    positions = f"RTS:{harness.group}:positions"

    def filled():
        deals = [d for d in harness.ledger(harness.admin) if d.get("entry") == 0]
        return [d for d in deals if str(d.get("order")) in (placed[low]["order"], placed[high]["order"])]
    fills = wait_until(filled, 60, "one of the two near limit orders filled at the broker")
    ticket = str(fills[0]["position_id"])
    field = position_field("primary", ticket)   # RTS positions: <broker>:<ticket> (ENG-5)
    wait_until(lambda: field in harness.redis().hgetall(positions), 10, f"position {field} of a filled limit in RTS")
    held = harness.redis().hgetall(positions)
    # the unfilled limit order is not a position (at any broker: RTS positions are <broker>:<ticket>)
    assert not [f for f in held if parse_position_field(f)[1] == placed[far]["order"]], held
