"""A send lane that cannot connect to its terminal never writes the order: the answer is NOT_CONNECTED (a definite
"not sent"), not an ambiguous send the engine would have to wait out for ``ambiguous_grace_s`` before the backup
broker (issue 16's stateful finding: a pending signal into a primary-broker outage answered after ~20.7 s, past
BRK-2's bound). No stack: the terminal is an in-process fake behind the session's factory."""
from __future__ import annotations

from reference.engine.broker import NOT_CONNECTED, BrokerSession
from reference.engine.config import BrokerConfig, EngineConfig

SENT: list[dict] = []
UP = {"main": True}


class FakeTerminal:
    def initialize(self, **kwargs):
        return UP["main"]

    def terminal_info(self):
        return {"connected": True} if UP["main"] else None

    def last_error(self):
        return (-10003, "IPC initialize failed")

    def order_send(self, request):
        SENT.append(request)
        return None

    def shutdown(self):
        return True


def factory():
    return FakeTerminal()


def test_a_lane_that_cannot_connect_sends_nothing_and_says_not_connected():
    cfg = EngineConfig(broker_timeout_s=1.0, order_reply_timeout_s=1.0)
    session = BrokerSession(BrokerConfig(name="primary", factory=f"{__name__}:factory"), cfg)
    session.connect()                      # the main connection is up
    UP["main"] = False                     # the broker goes away before the lane's first connect
    SENT.clear()
    value, err = session.submit_order(0, {"action": 1, "symbol": "EURUSD"}).result(timeout=10)
    assert value is None and err[0] == NOT_CONNECTED and "initialize failed" in err[1]
    assert SENT == []                      # nothing reached the terminal
    UP["main"] = True
