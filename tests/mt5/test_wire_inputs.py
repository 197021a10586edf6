"""The simulator's terminal surface from a peer that bypasses the client: any well-formed request (any method, any
arguments) gets an answer with the terminal's error pair, the connection and the server stay up, and nothing the
broker already accepted is lost; request fields are parsed at the server exactly as the client parses them."""
from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.mt5 import constants as c
from reference.mt5.simclient import SimulatorAdmin, SimulatorTerminal
from reference.mt5.simulator import protocol
from reference.mt5.simulator.server import TERMINAL_METHODS
from tests.mt5.conftest import HEDGING
from tradedrill.services.mt5sim import admin_token

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
requests_ = st.fixed_dictionaries({}, optional={
    k: values | st.sampled_from([0, 1, 5, "EURUSD", 0.01, -1.0, 2**64 - 1]) for k in
    ("action", "symbol", "volume", "type", "price", "sl", "tp", "magic", "comment", "type_filling", "position",
     "order", "deviation", "expiration", "bogus")})
methods = st.sampled_from(sorted(TERMINAL_METHODS) + ["initialize", "login", "shutdown", "admin.ping",
                                                       "admin.ledger", "admin.set_behaviour"]) | st.text(max_size=12)
calls = st.tuples(methods, st.lists(values | requests_ | st.sampled_from(["EURUSD", HEDGING]), max_size=5),
                  st.dictionaries(st.sampled_from(["login", "password", "server", "symbol", "group", "ticket",
                                                   "position", "enable"]) | st.text(max_size=6), values, max_size=3))


def _roundtrip(sock: socket.socket, msgid: int, method: str, args, kwargs):
    sock.sendall(protocol.pack([msgid, method, args, kwargs]))
    header = _exactly(sock, protocol.HEADER.size)
    return protocol.unpack(_exactly(sock, protocol.frame_length(header)))


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "the simulator closed the connection"
        buf += chunk
    return buf


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(calls, min_size=1, max_size=4), logged_in=st.booleans())
def test_any_request_is_answered_and_loses_nothing(sim, batch, logged_in):
    with SimulatorAdmin(sim.address, sim.port, token=admin_token(sim)) as admin:
        before = admin.ledger()
    with socket.create_connection((sim.address, sim.port), timeout=5.0) as sock:
        if logged_in:
            assert _roundtrip(sock, 1, "initialize", [], {"login": HEDGING})[1] is True
        for i, (method, args, kwargs) in enumerate(batch, 2):
            try:
                protocol.pack([i, method, args, kwargs])
            except (TypeError, ValueError, OverflowError):
                continue  # not sendable: no peer can put it on the wire
            msgid, value, error = _roundtrip(sock, i, method, args, kwargs)
            assert msgid == i
            assert isinstance(error, list) and len(error) == 2 and isinstance(error[0], int) \
                and isinstance(error[1], str)
            if method.startswith("admin.") and method != "admin.ping":
                assert error[0] == c.RES_E_AUTH_FAILED  # no token on this connection
    with SimulatorAdmin(sim.address, sim.port, token=admin_token(sim)) as admin:
        after = admin.ledger()
        assert after[:len(before)] == before  # nothing accepted was lost or changed
        assert admin.behaviour()["latency_ms"] == 0
    mt5 = SimulatorTerminal(sim.address, sim.port, call_timeout=2.0)
    assert mt5.initialize(login=HEDGING) and mt5.symbol_info_tick("EURUSD") is not None
    mt5.shutdown()


@pytest.mark.parametrize("request_, error", [
    ({"action": 1, "symbol": "EURUSD", "volume": "0.1", "type": 0}, (-2, 'Invalid "volume" argument')),
    ({"action": 1, "symbol": "EURUSD", "volume": float("nan"), "type": 0}, (-2, 'Invalid "volume" argument')),
    ({"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0, "comment": ["x"]},
     (-2, 'Invalid "comment" argument')),
    ({"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0, "magic": -1}, (-2, 'Invalid "magic" argument')),
    ({"symbol": "EURUSD"}, (-2, 'Invalid "action" argument')),
    ("not a request", (-2, "Invalid arguments")),
])
def test_the_server_parses_request_fields_like_the_client(sim, request_, error):
    with socket.create_connection((sim.address, sim.port), timeout=5.0) as sock:
        assert _roundtrip(sock, 1, "initialize", [], {"login": HEDGING})[1] is True
        _, value, got = _roundtrip(sock, 2, "order_send", [request_], {})
        assert value is None and tuple(got) == error
    mt5 = SimulatorTerminal(sim.address, sim.port)
    assert mt5.initialize(login=HEDGING)
    if isinstance(request_, dict):
        assert mt5.order_send(request_) is None and mt5.last_error() == error
    mt5.shutdown()


def test_the_client_never_raises_for_an_argument_it_cannot_send(mt5):
    assert mt5.orders_get(ticket=2**70) is None and mt5.last_error() == (-2, "Invalid arguments")
    assert mt5.positions_get(ticket=2**70) is None
    assert mt5.symbols_total() == 4  # the session is still fine
