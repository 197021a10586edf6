"""Simulator fidelity for filling modes and stops, and the engine's side of it.

A real server refuses a filling policy the symbol does not allow (SymbolInfo.filling_mode, a bit mask:
SYMBOL_FILLING_FOK=1, SYMBOL_FILLING_IOC=2) with TRADE_RETCODE_INVALID_FILL (10030), and a stop loss or take profit
on the wrong side of the price with TRADE_RETCODE_INVALID_STOPS (10016); the simulator does too (properties over
the whole request space, in process), and nothing refused reaches the ledger. The engine's broker session sends a
filling mode the symbol allows and treats a 10030 as a permanent configuration error whose reason names the mode.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.engine.broker import BrokerSession, allowed_fillings, choose_filling
from reference.engine.config import BrokerConfig, EngineConfig
from reference.engine.retcodes import Outcome, RetcodeTable
from reference.mt5 import constants as c
from reference.mt5 import types as t
from reference.mt5.simclient import SimulatorTerminal
from reference.mt5.simulator.broker import Broker
from reference.mt5.simulator.config import SimConfig, SymbolSpec
from tests.mt5.conftest import HEDGING

BID, ASK = 1.08500, 1.08510
POINT = 0.00001
FOK, IOC, RETURN, BOC = c.ORDER_FILLING_FOK, c.ORDER_FILLING_IOC, c.ORDER_FILLING_RETURN, c.ORDER_FILLING_BOC


@pytest.fixture(scope="module")
def broker():
    """An in-process broker (the server's code) whose EURUSD quote stands still at 1.08500/1.08510."""
    with tempfile.TemporaryDirectory() as state:
        b = Broker(SimConfig(), Path(state), seed=3)
        b._prices = lambda symbol: (BID, ASK) if symbol == "EURUSD" else Broker._prices(b, symbol)
        yield b
        b.close()


def _send(broker, **fields):
    request = {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.01, "type": c.ORDER_TYPE_BUY,
               "magic": 4242, "comment": "fill", **fields}
    result, error = broker.order_send(HEDGING, request)
    assert error == c.ERR_SUCCESS, error
    return result[0]


def simulator_allows(mask: int, filling: int) -> bool:
    return filling == RETURN or (filling == FOK and mask & 1) or (filling == IOC and mask & 2)


@settings(max_examples=200)
@given(mask=st.integers(0, 3), filling=st.integers(-3, 12) | st.integers(-2**31, 2**31),
       order_type=st.sampled_from([c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL]))
def test_a_filling_mode_the_symbol_does_not_allow_is_invalid_fill(broker, mask, filling, order_type):
    broker.symbols["EURUSD"].filling_mode = mask
    before = len(broker.ledger(login=HEDGING))
    retcode = _send(broker, type_filling=filling, type=order_type)
    check, _ = broker.order_check(HEDGING, {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.01,
                                            "type": order_type, "type_filling": filling})
    if simulator_allows(mask, filling):
        assert retcode == c.TRADE_RETCODE_DONE and check[0] == 0
        assert len(broker.ledger(login=HEDGING)) == before + 1
    else:
        assert retcode == c.TRADE_RETCODE_INVALID_FILL and check[0] == c.TRADE_RETCODE_INVALID_FILL
        assert len(broker.ledger(login=HEDGING)) == before
    broker.symbols["EURUSD"].filling_mode = 3


offsets = st.none() | st.integers(-300, 300)


def _stops_wrong(buy: bool, reference: float, sl: float, tp: float, level: int) -> bool:
    gap = level * POINT
    if buy:
        return bool((sl and (sl >= reference or reference - sl < gap - 1e-12))
                    or (tp and (tp <= reference or tp - reference < gap - 1e-12)))
    return bool((sl and (sl <= reference or sl - reference < gap - 1e-12))
                or (tp and (tp >= reference or reference - tp < gap - 1e-12)))


@settings(max_examples=300)
@given(buy=st.booleans(), sl=offsets, tp=offsets, level=st.sampled_from([0, 20, 150]), pending=st.booleans())
def test_stops_on_the_wrong_side_are_invalid_stops(broker, buy, sl, tp, level, pending):
    spec = broker.symbols["EURUSD"]
    spec.stops_level = level
    if pending:  # a limit order 500 points away from the market; stops are judged against its price
        reference = round((BID - 500 * POINT) if buy else (ASK + 500 * POINT), 5)
        fields = {"action": c.TRADE_ACTION_PENDING, "price": reference,
                  "type": c.ORDER_TYPE_BUY_LIMIT if buy else c.ORDER_TYPE_SELL_LIMIT}
    else:
        reference = BID if buy else ASK  # a buy position closes at the bid, a sell at the ask
        fields = {"type": c.ORDER_TYPE_BUY if buy else c.ORDER_TYPE_SELL}
    sl_price = 0.0 if sl is None else round(reference + sl * POINT, 5)
    tp_price = 0.0 if tp is None else round(reference + tp * POINT, 5)
    try:
        retcode = _send(broker, sl=sl_price, tp=tp_price, type_filling=IOC, **fields)
    finally:
        spec.stops_level = 0
    if _stops_wrong(buy, reference, sl_price, tp_price, level):
        assert retcode == c.TRADE_RETCODE_INVALID_STOPS
    else:
        assert retcode == c.TRADE_RETCODE_DONE


@pytest.mark.parametrize("fields, retcode", [
    ({"type_filling": 7}, c.TRADE_RETCODE_INVALID_FILL),
    ({"type_filling": BOC}, c.TRADE_RETCODE_INVALID_FILL),
    ({"sl": BID + 10 * POINT}, c.TRADE_RETCODE_INVALID_STOPS),
    ({"tp": BID - 10 * POINT}, c.TRADE_RETCODE_INVALID_STOPS),
    ({"type": c.ORDER_TYPE_SELL, "sl": ASK - 10 * POINT}, c.TRADE_RETCODE_INVALID_STOPS),
    ({"type": c.ORDER_TYPE_SELL, "tp": ASK + 10 * POINT}, c.TRADE_RETCODE_INVALID_STOPS),
    ({"sl": BID - 100 * POINT, "tp": BID + 100 * POINT}, c.TRADE_RETCODE_DONE),
])
def test_reported_requests(broker, fields, retcode):
    assert _send(broker, **fields) == retcode


# -- over the wire: symbols configured FOK-only and IOC-only ---------------------------------------------------------
@pytest.fixture(scope="module")
def picky_sim(tmp_path_factory):
    from tests.mt5.conftest import free_port
    from tradedrill.services.mt5sim import simulator_node

    base = tmp_path_factory.mktemp("picky")
    config = base / "sim.json"
    config.write_text(json.dumps({"symbols": [
        {"name": "EURUSD", "price": 1.085, "filling_mode": c.SYMBOL_FILLING_FOK, "currency_base": "EUR"},
        {"name": "GBPUSD", "price": 1.27, "filling_mode": c.SYMBOL_FILLING_IOC, "currency_base": "GBP"},
        {"name": "USDJPY", "price": 150.0, "digits": 3, "stops_level": 100},
    ]}))
    host = "127.0.3.13"
    node = simulator_node("picky", host, free_port(host), base / "state", config_file=config,
                          log_path=base / "picky.log")
    try:
        node.start().wait_ready()
        yield node
    finally:
        node.stop()


def test_symbol_info_says_the_filling_mode_and_the_server_enforces_it(picky_sim):
    mt5 = SimulatorTerminal(picky_sim.address, picky_sim.port)
    assert mt5.initialize(login=HEDGING)
    assert mt5.symbol_info("EURUSD").filling_mode == 1 and mt5.symbol_info("GBPUSD").filling_mode == 2
    for symbol, refused, accepted in (("EURUSD", IOC, FOK), ("GBPUSD", FOK, IOC)):
        request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": 0.01, "type": mt5.ORDER_TYPE_BUY,
                   "magic": 4343, "comment": f"wire-{symbol}"}
        r = mt5.order_send(dict(request, type_filling=refused))
        assert r.retcode == 10030 and r.order == 0 and r.deal == 0 and r.comment == "Unsupported filling mode"
        assert mt5.order_check(dict(request, type_filling=refused)).retcode == 10030
        assert mt5.order_send(dict(request, type_filling=accepted)).retcode == mt5.TRADE_RETCODE_DONE
    tick = mt5.symbol_info_tick("USDJPY")
    near = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "USDJPY", "volume": 0.01, "type": mt5.ORDER_TYPE_BUY,
            "magic": 4343, "sl": round(tick.bid - 0.01, 3), "type_filling": IOC}  # 10 points: inside stops_level
    assert mt5.order_send(near).retcode == mt5.TRADE_RETCODE_INVALID_STOPS
    mt5.shutdown()


# -- the engine's side ---------------------------------------------------------------------------------------------------
@given(mask=st.integers(0, 3), preferred=st.sampled_from([FOK, IOC, RETURN]),
       exemode=st.sampled_from([None, c.SYMBOL_TRADE_EXECUTION_MARKET, c.SYMBOL_TRADE_EXECUTION_INSTANT]))
def test_the_engine_chooses_a_filling_mode_the_symbol_allows(mask, preferred, exemode):
    chosen = choose_filling(c, preferred, mask, exemode)
    allowed = allowed_fillings(c, mask, exemode)
    assert chosen in allowed or not allowed
    if preferred in allowed:
        assert chosen == preferred
    if exemode != c.SYMBOL_TRADE_EXECUTION_INSTANT:
        assert simulator_allows(mask, chosen)


def test_invalid_fill_is_permanent():
    assert RetcodeTable(c).classify(c.TRADE_RETCODE_INVALID_FILL) is Outcome.PERMANENT


def _session(sim) -> BrokerSession:
    config = BrokerConfig(name="picky", params={"kind": "simulator", "host": sim.address, "port": sim.port},
                          login=HEDGING)
    session = BrokerSession(config, EngineConfig())
    session.connect()
    return session


def test_the_engine_session_sends_an_allowed_filling_mode(picky_sim):
    session = _session(picky_sim)
    try:
        for symbol, expected in (("EURUSD", FOK), ("GBPUSD", IOC)):
            tick, _ = session.call("symbol_info_tick", symbol)
            request = {"action": c.TRADE_ACTION_DEAL, "symbol": symbol, "volume": 0.01, "type": c.ORDER_TYPE_BUY,
                       "price": tick.ask, "magic": 4444, "comment": f"eng-{symbol}", "type_filling": IOC
                       if symbol == "EURUSD" else FOK}
            result, err = session.call("order_send", request)
            assert result.retcode == c.TRADE_RETCODE_DONE, (result, err)
            orders, _ = session.call("history_orders_get", ticket=result.order)
            assert orders[0].type_filling == expected
        assert session.filling_choices == {"EURUSD": (IOC, FOK), "GBPUSD": (FOK, IOC)}
    finally:
        session.close()


class _RefusingTerminal:
    """An mt5-like object whose broker refuses every filling mode (as a broker whose settings changed would)."""

    def __init__(self):
        for name, value in c.public_constants().items():
            setattr(self, name, value)

    def symbol_info(self, symbol):
        return t.SymbolInfo(*[0] * len(t.SymbolInfo._fields))._replace(name=symbol, filling_mode=2,
                                                                         trade_exemode=2)

    def order_send(self, request):
        return t.OrderSendResult(10030, 0, 0, 0.0, 0.0, 0.0, 0.0, "Unsupported filling mode", 1, 0,
                                 t.TradeRequest(*[0] * len(t.TradeRequest._fields)))

    def last_error(self):
        return c.ERR_SUCCESS


def test_invalid_fill_comes_back_with_a_reason_naming_the_mode():
    session = BrokerSession(BrokerConfig(name="refusing"), EngineConfig())
    session.mt5 = _RefusingTerminal()
    try:
        request = {"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.01, "type": c.ORDER_TYPE_BUY,
                   "type_filling": IOC}
        result, err = session.call("order_send", request)
        assert result.retcode == 10030
        assert err[0] == 10030
        assert "ORDER_FILLING_IOC (1)" in err[1] and "EURUSD" in err[1] and "configuration error" in err[1]
        assert "'filling'" in err[1]
        assert RetcodeTable(session.mt5).classify(result.retcode) is Outcome.PERMANENT
    finally:
        session.close()
