"""Conformance of the simulator client to MT5_API.md, through the network: the same assertions a real terminal
would have to pass (field order, constants, error cases, ticket model, netting vs hedging)."""
from __future__ import annotations

import datetime as dt
import itertools
import time

import numpy as np
import pytest

from reference.mt5.simclient import SimulatorTerminal
from tests.mt5.conftest import NETTING

_magic = itertools.count(1000)

SPEC_FIELDS = {
    "TradePosition": "ticket, time, time_msc, time_update, time_update_msc, type, magic, identifier, reason, volume, "
    "price_open, sl, tp, price_current, swap, profit, symbol, comment, external_id",
    "TradeOrder": "ticket, time_setup, time_setup_msc, time_done, time_done_msc, time_expiration, type, type_time, "
    "type_filling, state, magic, position_id, position_by_id, reason, volume_initial, volume_current, price_open, sl, "
    "tp, price_current, price_stoplimit, symbol, comment, external_id",
    "TradeDeal": "ticket, order, time, time_msc, type, entry, magic, position_id, reason, volume, price, commission, "
    "swap, profit, fee, symbol, comment, external_id",
    "TradeRequest": "action, magic, order, symbol, volume, price, stoplimit, sl, tp, deviation, type, type_filling, "
    "type_time, expiration, comment, position, position_by",
    "OrderSendResult": "retcode, deal, order, volume, price, bid, ask, comment, request_id, retcode_external, request",
    "OrderCheckResult": "retcode, balance, equity, profit, margin, margin_free, margin_level, comment, request",
    "Tick": "time, bid, ask, last, volume, time_msc, flags, volume_real",
    "AccountInfo": "login, trade_mode, leverage, limit_orders, margin_so_mode, trade_allowed, trade_expert, "
    "margin_mode, currency_digits, fifo_close, balance, credit, profit, equity, margin, margin_free, margin_level, "
    "margin_so_call, margin_so_so, margin_initial, margin_maintenance, assets, liabilities, commission_blocked, name, "
    "server, currency, company",
    "TerminalInfo": "community_account, community_connection, connected, dlls_allowed, trade_allowed, "
    "tradeapi_disabled, email_enabled, ftp_enabled, notifications_enabled, mqid, build, maxbars, codepage, ping_last, "
    "community_balance, retransmission, company, name, language, path, data_path, commondata_path",
}

SPEC_CONSTANTS = {
    "TRADE_ACTION_DEAL": 1, "TRADE_ACTION_PENDING": 5, "TRADE_ACTION_SLTP": 6, "TRADE_ACTION_MODIFY": 7,
    "TRADE_ACTION_REMOVE": 8, "TRADE_ACTION_CLOSE_BY": 10,
    "ORDER_TYPE_BUY": 0, "ORDER_TYPE_SELL": 1, "ORDER_TYPE_BUY_LIMIT": 2, "ORDER_TYPE_SELL_LIMIT": 3,
    "ORDER_TYPE_BUY_STOP": 4, "ORDER_TYPE_SELL_STOP": 5, "ORDER_TYPE_BUY_STOP_LIMIT": 6,
    "ORDER_TYPE_SELL_STOP_LIMIT": 7, "ORDER_TYPE_CLOSE_BY": 8,
    "ORDER_FILLING_FOK": 0, "ORDER_FILLING_IOC": 1, "ORDER_FILLING_RETURN": 2, "ORDER_FILLING_BOC": 3,
    "ORDER_TIME_GTC": 0, "ORDER_TIME_DAY": 1, "ORDER_TIME_SPECIFIED": 2, "ORDER_TIME_SPECIFIED_DAY": 3,
    "ORDER_STATE_PLACED": 1, "ORDER_STATE_CANCELED": 2, "ORDER_STATE_FILLED": 4, "ORDER_STATE_REJECTED": 5,
    "DEAL_ENTRY_IN": 0, "DEAL_ENTRY_OUT": 1, "DEAL_ENTRY_INOUT": 2, "DEAL_ENTRY_OUT_BY": 3,
    "ACCOUNT_MARGIN_MODE_RETAIL_NETTING": 0, "ACCOUNT_MARGIN_MODE_EXCHANGE": 1,
    "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING": 2,
    "TRADE_RETCODE_REQUOTE": 10004, "TRADE_RETCODE_REJECT": 10006, "TRADE_RETCODE_CANCEL": 10007,
    "TRADE_RETCODE_PLACED": 10008, "TRADE_RETCODE_DONE": 10009, "TRADE_RETCODE_DONE_PARTIAL": 10010,
    "TRADE_RETCODE_ERROR": 10011, "TRADE_RETCODE_TIMEOUT": 10012, "TRADE_RETCODE_INVALID": 10013,
    "TRADE_RETCODE_INVALID_VOLUME": 10014, "TRADE_RETCODE_INVALID_PRICE": 10015,
    "TRADE_RETCODE_INVALID_STOPS": 10016, "TRADE_RETCODE_TRADE_DISABLED": 10017,
    "TRADE_RETCODE_MARKET_CLOSED": 10018, "TRADE_RETCODE_NO_MONEY": 10019, "TRADE_RETCODE_PRICE_CHANGED": 10020,
    "TRADE_RETCODE_PRICE_OFF": 10021, "TRADE_RETCODE_INVALID_EXPIRATION": 10022,
    "TRADE_RETCODE_ORDER_CHANGED": 10023, "TRADE_RETCODE_TOO_MANY_REQUESTS": 10024,
    "TRADE_RETCODE_NO_CHANGES": 10025, "TRADE_RETCODE_SERVER_DISABLES_AT": 10026,
    "TRADE_RETCODE_CLIENT_DISABLES_AT": 10027, "TRADE_RETCODE_LOCKED": 10028, "TRADE_RETCODE_FROZEN": 10029,
    "TRADE_RETCODE_INVALID_FILL": 10030, "TRADE_RETCODE_CONNECTION": 10031, "TRADE_RETCODE_ONLY_REAL": 10032,
    "TRADE_RETCODE_LIMIT_ORDERS": 10033, "TRADE_RETCODE_LIMIT_VOLUME": 10034, "TRADE_RETCODE_INVALID_ORDER": 10035,
    "TRADE_RETCODE_POSITION_CLOSED": 10036, "TRADE_RETCODE_INVALID_CLOSE_VOLUME": 10038,
    "TRADE_RETCODE_CLOSE_ORDER_EXIST": 10039, "TRADE_RETCODE_LIMIT_POSITIONS": 10040,
    "TRADE_RETCODE_REJECT_CANCEL": 10041, "TRADE_RETCODE_LONG_ONLY": 10042, "TRADE_RETCODE_SHORT_ONLY": 10043,
    "TRADE_RETCODE_CLOSE_ONLY": 10044, "TRADE_RETCODE_FIFO_CLOSE": 10045,
    "RES_S_OK": 1, "RES_E_FAIL": -1, "RES_E_INVALID_PARAMS": -2, "RES_E_NO_MEMORY": -3, "RES_E_NOT_FOUND": -4,
    "RES_E_INVALID_VERSION": -5, "RES_E_AUTH_FAILED": -6, "RES_E_UNSUPPORTED": -7,
    "RES_E_AUTO_TRADING_DISABLED": -8, "RES_E_INTERNAL_FAIL": -10000, "RES_E_INTERNAL_FAIL_SEND": -10001,
    "RES_E_INTERNAL_FAIL_RECEIVE": -10002, "RES_E_INTERNAL_FAIL_INIT": -10003,
    "RES_E_INTERNAL_FAIL_CONNECT": -10004, "RES_E_INTERNAL_FAIL_TIMEOUT": -10005,
    "TIMEFRAME_M1": 1, "TIMEFRAME_H1": 16385, "TIMEFRAME_D1": 16408, "TIMEFRAME_W1": 32769, "TIMEFRAME_MN1": 49153,
    "COPY_TICKS_ALL": -1, "COPY_TICKS_INFO": 1, "COPY_TICKS_TRADE": 2,
}


def buy(mt5, volume=0.1, symbol="EURUSD", magic=None, comment="", **extra):
    request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume, "type": mt5.ORDER_TYPE_BUY,
               "magic": magic if magic is not None else next(_magic), "comment": comment,
               "type_filling": mt5.ORDER_FILLING_IOC, **extra}
    return mt5.order_send(request)


def sell(mt5, volume=0.1, symbol="EURUSD", magic=0, comment="", **extra):
    return buy(mt5, volume, symbol, magic, comment, type=mt5.ORDER_TYPE_SELL, **extra)


# -- surface ----------------------------------------------------------------------------------------------------------
def test_named_tuple_field_order_over_the_network(mt5):
    magic = next(_magic)
    result = buy(mt5, magic=magic, comment="fields")
    samples = {
        "TradePosition": mt5.positions_get(ticket=result.order)[0],
        "TradeOrder": mt5.history_orders_get(ticket=result.order)[0],
        "TradeDeal": mt5.history_deals_get(ticket=result.order)[0],
        "TradeRequest": result.request,
        "OrderSendResult": result,
        "OrderCheckResult": mt5.order_check({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                                             "type": mt5.ORDER_TYPE_BUY}),
        "Tick": mt5.symbol_info_tick("EURUSD"),
        "AccountInfo": mt5.account_info(),
        "TerminalInfo": mt5.terminal_info(),
    }
    for name, spec in SPEC_FIELDS.items():
        assert type(samples[name]).__name__ == name
        assert samples[name]._fields == tuple(f.strip() for f in spec.split(",")), name
    info = mt5.symbol_info("EURUSD")
    assert len(info) == 96
    for field in ("name", "digits", "point", "spread", "trade_mode", "volume_min", "volume_max", "volume_step",
                  "trade_contract_size", "bid", "ask", "filling_mode", "trade_stops_level", "visible", "select"):
        assert field in info._fields
    assert info.name == "EURUSD" and info.digits == 5 and info.point == 0.00001


def test_constant_values(mt5):
    for name, value in SPEC_CONSTANTS.items():
        assert getattr(mt5, name) == value, name
    assert not hasattr(mt5, "TRADE_RETCODE_10005")
    assert 10005 not in {v for k, v in vars(SimulatorTerminal).items() if k.startswith("TRADE_RETCODE_")}


def test_version_and_success_error(mt5):
    version = mt5.version()
    assert version[0] == 500 and isinstance(version[1], int)
    assert mt5.last_error() == (1, "Success")


# -- error cases ------------------------------------------------------------------------------------------------------
def test_not_initialized_every_call_is_no_ipc(sim):
    terminal = SimulatorTerminal(sim.address, sim.port)
    for call in (terminal.positions_get, terminal.account_info, terminal.orders_total, terminal.version,
                 lambda: terminal.symbol_info("EURUSD"), lambda: terminal.order_send({"action": 1})):
        assert call() is None
        assert terminal.last_error() == (-10004, "No IPC connection")
    assert terminal.initialize()
    assert terminal.account_info().login == 5001  # first configured account without login
    terminal.shutdown()
    assert terminal.positions_total() is None and terminal.last_error() == (-10004, "No IPC connection")


def test_initialize_unreachable_and_bad_password(sim):
    terminal = SimulatorTerminal("127.0.3.250", 9, call_timeout=0.5)
    assert terminal.initialize() is False
    assert terminal.last_error()[0] == -10003
    terminal = SimulatorTerminal(sim.address, sim.port)
    assert terminal.initialize(login=999999) is False
    assert terminal.last_error() == (-6, "Terminal: Authorization failed")


def test_unknown_symbol(mt5):
    assert mt5.symbol_info("NOSUCH") is None
    assert mt5.last_error()[0] == -4
    assert mt5.symbol_info_tick("NOSUCH") is None
    assert mt5.last_error()[0] == -4
    assert mt5.copy_ticks_from("NOSUCH", time.time() - 60, 10, mt5.COPY_TICKS_ALL) is None
    assert mt5.last_error()[0] == -4
    assert mt5.symbol_select("NOSUCH", True) is False


def test_positional_filters_are_refused(mt5):
    for call in (mt5.positions_get, mt5.orders_get, mt5.symbols_get):
        assert call("EURUSD") is None
        assert mt5.last_error() == (-2, "Unnamed arguments not allowed")


def test_bad_field_types(mt5):
    base = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1, "type": mt5.ORDER_TYPE_BUY}
    for field, bad in (("volume", "0.1"), ("symbol", 5), ("magic", 1.5), ("comment", 7), ("type", "buy"),
                       ("sl", "x"), ("action", None)):
        assert mt5.order_send({**base, field: bad}) is None, field
        assert mt5.last_error() == (-2, f'Invalid "{field}" argument')
    assert mt5.order_send("not a dict") is None and mt5.last_error()[0] == -2
    assert mt5.order_send({"symbol": "EURUSD"}) is None and mt5.last_error() == (-2, 'Invalid "action" argument')
    assert mt5.positions_get(ticket="1") is None and mt5.last_error() == (-2, 'Invalid "ticket" argument')
    assert mt5.positions_get(symbol=1) is None and mt5.last_error() == (-2, 'Invalid "symbol" argument')
    assert mt5.history_deals_get() is None and mt5.last_error() == (-2, "Invalid arguments")
    assert mt5.history_deals_get("yesterday", "today") is None and mt5.last_error()[0] == -2


def test_comment_limit(mt5, admin):
    assert buy(mt5, comment="x" * 31).retcode == mt5.TRADE_RETCODE_DONE
    assert buy(mt5, comment="x" * 32) is None
    assert mt5.last_error() == (-2, 'Invalid "comment" argument')
    admin.set_behaviour(comment_limit=28)
    assert buy(mt5, comment="x" * 29) is None
    assert buy(mt5, comment="x" * 28).retcode == mt5.TRADE_RETCODE_DONE


# -- ticket model -----------------------------------------------------------------------------------------------------
def test_market_deal_ticket_model(mt5):
    magic = next(_magic)
    first = buy(mt5, magic=magic, comment="sig-1")
    second = buy(mt5, magic=magic, comment="sig-2")
    assert first.retcode == 10009 and first.comment == "Request executed"
    assert second.request_id == first.request_id + 1
    assert first.deal and first.order and first.deal != first.order and first.volume == 0.1
    assert first.price == first.ask
    position = mt5.positions_get(ticket=first.order)[0]
    assert position.ticket == position.identifier == first.order
    assert position.magic == magic and position.comment == "sig-1" and position.volume == 0.1
    (order,) = mt5.history_orders_get(ticket=first.order)
    assert order.state == mt5.ORDER_STATE_FILLED and order.position_id == first.order and order.magic == magic
    (deal,) = mt5.history_deals_get(ticket=first.order)  # ticket= is the ORDER ticket
    assert deal.ticket == first.deal and deal.order == first.order and deal.entry == mt5.DEAL_ENTRY_IN
    assert deal.magic == magic and deal.comment == "sig-1" and deal.position_id == first.order
    assert mt5.history_deals_get(ticket=first.deal) == ()  # a deal ticket is not an order ticket
    assert mt5.history_deals_get(position=first.order) == (deal,)
    assert mt5.history_orders_get(position=first.order) == (order,)


def test_history_date_form_and_group(mt5):
    magic = next(_magic)
    result = buy(mt5, magic=magic, symbol="GBPUSD")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    deals = mt5.history_deals_get(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    assert result.deal in {d.ticket for d in deals}
    only_gbp = mt5.history_deals_get(int(time.time()) - 3600, int(time.time()) + 3600, group="GBP*")
    assert only_gbp and {d.symbol for d in only_gbp} == {"GBPUSD"}
    assert mt5.history_deals_get(0, 1) == ()
    orders = mt5.history_orders_get(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1), group="*,!EUR*")
    assert result.order in {o.ticket for o in orders} and "EURUSD" not in {o.symbol for o in orders}
    assert mt5.history_orders_total(0, int(time.time()) + 60) >= 1
    assert mt5.orders_get(symbol="NOSUCH") == () and mt5.positions_get(ticket=1) == ()


def test_pending_modify_remove(mt5):
    tick = mt5.symbol_info_tick("EURUSD")
    price = round(tick.ask - 0.01, 5)
    request = {"action": mt5.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": 0.2,
               "type": mt5.ORDER_TYPE_BUY_LIMIT, "price": price, "magic": next(_magic), "comment": "limit"}
    placed = mt5.order_send(request)
    assert placed.retcode == mt5.TRADE_RETCODE_DONE and placed.deal == 0 and placed.order
    (order,) = mt5.orders_get(ticket=placed.order)
    assert order.state == mt5.ORDER_STATE_PLACED and order.price_open == price and order.volume_current == 0.2
    assert mt5.orders_total() >= 1
    modified = mt5.order_send({"action": mt5.TRADE_ACTION_MODIFY, "order": placed.order, "price": price - 0.001})
    assert modified.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.orders_get(ticket=placed.order)[0].price_open == pytest.approx(price - 0.001)
    removed = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": placed.order})
    assert removed.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.orders_get(ticket=placed.order) == ()
    assert mt5.history_orders_get(ticket=placed.order)[0].state == mt5.ORDER_STATE_CANCELED
    again = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": placed.order})
    assert again.retcode == mt5.TRADE_RETCODE_INVALID_ORDER
    assert mt5.order_send({**request, "price": 0.0}).retcode == mt5.TRADE_RETCODE_INVALID_PRICE


def test_sltp(mt5):
    opened = buy(mt5)
    bid = mt5.symbol_info_tick("EURUSD").bid
    sl, tp = round(bid - 0.01, 5), round(bid + 0.01, 5)
    r = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": opened.order, "sl": sl, "tp": tp})
    assert r.retcode == mt5.TRADE_RETCODE_DONE
    position = mt5.positions_get(ticket=opened.order)[0]
    assert (position.sl, position.tp) == (sl, tp)
    bad = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": opened.order, "sl": bid + 0.01})
    assert bad.retcode == mt5.TRADE_RETCODE_INVALID_STOPS
    gone = mt5.order_send({"action": mt5.TRADE_ACTION_SLTP, "position": 1, "sl": sl})
    assert gone.retcode == mt5.TRADE_RETCODE_POSITION_CLOSED


# -- netting vs hedging -----------------------------------------------------------------------------------------------
def test_hedging_keeps_positions_and_closes_by_position(mt5):
    assert mt5.account_info().margin_mode == mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    magic = next(_magic)
    a = buy(mt5, 0.1, "XAUUSD", magic)
    b = buy(mt5, 0.2, "XAUUSD", magic)
    mine = [p for p in mt5.positions_get(symbol="XAUUSD") if p.magic == magic]
    assert sorted(p.ticket for p in mine) == sorted([a.order, b.order])
    balance = mt5.account_info().balance
    close = sell(mt5, 0.1, "XAUUSD", magic, position=a.order)
    assert close.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.positions_get(ticket=a.order) == ()
    assert mt5.positions_get(ticket=b.order)[0].volume == 0.2
    (deal,) = mt5.history_deals_get(ticket=close.order)
    assert deal.entry == mt5.DEAL_ENTRY_OUT and deal.position_id == a.order
    assert deal.profit == pytest.approx(round((close.price - a.price) * 0.1 * 100, 2))
    assert mt5.account_info().balance == pytest.approx(balance + deal.profit)
    partial = sell(mt5, 0.05, "XAUUSD", magic, position=b.order)
    assert partial.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.positions_get(ticket=b.order)[0].volume == pytest.approx(0.15)
    too_much = sell(mt5, 1.0, "XAUUSD", magic, position=b.order)
    assert too_much.retcode == mt5.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    closed = sell(mt5, 0.1, "XAUUSD", magic, position=a.order)
    assert closed.retcode == mt5.TRADE_RETCODE_POSITION_CLOSED


def test_hedging_close_by(mt5):
    magic = next(_magic)
    a = buy(mt5, 0.3, "GBPUSD", magic)
    b = sell(mt5, 0.1, "GBPUSD", magic)
    r = mt5.order_send({"action": mt5.TRADE_ACTION_CLOSE_BY, "position": a.order, "position_by": b.order})
    assert r.retcode == mt5.TRADE_RETCODE_DONE
    assert mt5.positions_get(ticket=b.order) == ()
    assert mt5.positions_get(ticket=a.order)[0].volume == pytest.approx(0.2)
    deals = mt5.history_deals_get(ticket=r.order)
    assert [d.entry for d in deals] == [mt5.DEAL_ENTRY_OUT_BY] * 2


def test_netting_merges_and_reverses(netting):
    mt5 = netting
    assert mt5.account_info().margin_mode == mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING
    for p in mt5.positions_get(symbol="USDJPY"):  # start flat
        opposite = sell if p.type == mt5.POSITION_TYPE_BUY else buy
        opposite(mt5, p.volume, "USDJPY", position=p.ticket)
    first = buy(mt5, 0.1, "USDJPY")
    second = buy(mt5, 0.2, "USDJPY")
    (position,) = mt5.positions_get(symbol="USDJPY")
    assert position.ticket == position.identifier == first.order
    assert position.volume == pytest.approx(0.3)
    assert position.price_open == pytest.approx((first.price * 0.1 + second.price * 0.2) / 0.3, abs=1e-3)
    assert mt5.history_deals_get(ticket=second.order)[0].position_id == first.order
    reverse = sell(mt5, 0.5, "USDJPY")
    (position,) = mt5.positions_get(symbol="USDJPY")
    assert position.type == mt5.POSITION_TYPE_SELL and position.volume == pytest.approx(0.2)
    assert mt5.history_deals_get(ticket=reverse.order)[0].entry == mt5.DEAL_ENTRY_INOUT
    flat = buy(mt5, 0.2, "USDJPY")
    assert mt5.history_deals_get(ticket=flat.order)[0].entry == mt5.DEAL_ENTRY_OUT
    assert mt5.positions_get(symbol="USDJPY") == ()


def test_login_switches_account(mt5):
    assert mt5.login(NETTING)
    assert mt5.account_info().login == NETTING
    assert mt5.login(424242) is False and mt5.last_error()[0] == -6
    assert mt5.account_info().login == NETTING


# -- market data ------------------------------------------------------------------------------------------------------
def test_ticks_and_rates_arrays(mt5):
    ticks = mt5.copy_ticks_from("EURUSD", dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5), 100,
                                mt5.COPY_TICKS_ALL)
    assert ticks.dtype.names == ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")
    assert len(ticks) == 100 and np.all(np.diff(ticks["time_msc"]) > 0) and np.all(ticks["ask"] > ticks["bid"])
    span = mt5.copy_ticks_range("EURUSD", ticks["time"][0], ticks["time"][-1], mt5.COPY_TICKS_ALL)
    assert len(span) >= 95 and span["time"][0] == ticks["time"][0] and span["time"][-1] <= ticks["time"][-1]
    rates = mt5.copy_rates_from_pos("EURUSD", mt5.TIMEFRAME_M1, 0, 10)
    assert rates.dtype.names == ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
    assert len(rates) == 10 and np.all(rates["high"] >= rates["low"]) and np.all(np.diff(rates["time"]) == 60)
    assert len(mt5.copy_rates_from("EURUSD", mt5.TIMEFRAME_M5, time.time(), 3)) == 3
    hourly = mt5.copy_rates_range("EURUSD", mt5.TIMEFRAME_M15, time.time() - 1800, time.time())
    assert 1 <= len(hourly) <= 3
    assert mt5.copy_rates_from_pos("EURUSD", 12345, 0, 10) is None and mt5.last_error()[0] == -2


def test_symbols(mt5):
    assert mt5.symbols_total() == 4
    names = {s.name for s in mt5.symbols_get(group="*USD*,!XAU*")}
    assert names == {"EURUSD", "GBPUSD", "USDJPY"}
    tick = mt5.symbol_info_tick("XAUUSD")
    assert tick.ask > tick.bid and round(tick.bid, 2) == tick.bid
    assert mt5.symbol_select("EURUSD", True) is True


def test_order_check_without_symbol_and_unknown_action(mt5):
    check = mt5.order_check({"action": mt5.TRADE_ACTION_DEAL, "volume": 0.1, "type": mt5.ORDER_TYPE_BUY})
    assert check.retcode == mt5.TRADE_RETCODE_INVALID
    assert mt5.order_send({"action": 99, "symbol": "EURUSD"}).retcode == mt5.TRADE_RETCODE_INVALID
    assert buy(mt5, 0.001).retcode == mt5.TRADE_RETCODE_INVALID_VOLUME
    assert buy(mt5, 0.015).retcode == mt5.TRADE_RETCODE_INVALID_VOLUME
