"""The engine's fencing check is asked again at the write itself (ENG-5; issue 16's engine-pause drill, CI seed 7).

The engine asks its lease "may I still send?" before each order_send. A process frozen after that answer and
before the request's bytes leave (SIGSTOP, a long GC or swap pause) wrote the order when it woke, 8 s later, under
a lease another instance held by then: the new holder had already sent the same signal, a duplicate at the broker.
The simulator client now asks the same guard at the last instant before the write (``guarded_writes``), so a lease
that lapsed anywhere between the engine's check and the write sends nothing and says so.

Against a real simulator process on 127.0.3.x: a guard that says yes at the engine's check and no at the write
stands for a freeze between the two."""
from __future__ import annotations

from reference.engine.broker import NOT_SENT, BrokerSession
from reference.mt5.simclient import SimulatorTerminal
from tests.mt5.conftest import HEDGING, engine_session

MAGIC = 916016


def _session(sim) -> BrokerSession:
    return engine_session(sim, timeout_s=2.0)


def _request(session: BrokerSession, comment: str) -> dict:
    tick, _ = session.call("symbol_info_tick", "EURUSD")
    return {"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0, "price": tick.ask, "deviation": 20,
            "magic": MAGIC, "comment": comment, "type_filling": 0}


def _orders_with(session: BrokerSession, comment: str) -> list:
    traces = session.traces(MAGIC)
    return [t for t in traces if t.comment == comment]


class _LapsesBetween:
    """True at the engine's check, False from the second question on: the lease lapsed during a freeze between."""

    def __init__(self):
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked == 1


def test_a_lease_that_lapses_between_the_check_and_the_write_sends_nothing(sim):
    session = _session(sim)
    try:
        guard = _LapsesBetween()
        value, err = session.submit_order(0, _request(session, "tdguard-1"), guard=guard).result(timeout=10)
        assert value is None and err[0] == NOT_SENT and "at the write" in err[1], (value, err)
        assert guard.asked == 2                                  # the engine's check, then the write's
        assert _orders_with(session, "tdguard-1") == []          # the broker never saw it
        # the lane is still usable: the next send with a valid lease goes out once
        value, err = session.submit_order(0, _request(session, "tdguard-2"), guard=lambda: True).result(timeout=10)
        assert value is not None and value.retcode == 10009, (value, err)
        assert len({t.order for t in _orders_with(session, "tdguard-2")}) == 1
    finally:
        session.close()


def test_the_guard_is_asked_after_a_reconnect(sim, admin):
    """A lane whose connection the broker closed is connected again before the write; the guard's answer at the
    write counts, not one given before the reconnect (which can take up to the connect deadline)."""
    terminal = SimulatorTerminal(sim.address, sim.port, call_timeout=2.0)
    assert terminal.initialize(login=HEDGING), terminal.last_error()
    try:
        tick = terminal.symbol_info_tick("EURUSD")
        terminal._transport.sock.close()   # the connection is gone; the next call connects again
        seen = []

        def guard():
            seen.append(terminal._transport.sock is not None and terminal._transport.sock.fileno() >= 0)
            return False

        result = "not assigned"   # a refused call raises inside the scope: its result is never assigned
        with terminal.guarded_writes(guard) as stop:
            result = terminal.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0,
                                          "price": tick.ask, "deviation": 20, "magic": MAGIC,
                                          "comment": "tdguard-3", "type_filling": 0})
        assert stop.refused and result == "not assigned" and seen == [True]
        assert "nothing was sent" in terminal.last_error()[1]
        assert not [o for o in terminal.history_orders_get(0, 2**31) or () if o.comment == "tdguard-3"]
    finally:
        terminal.shutdown()
