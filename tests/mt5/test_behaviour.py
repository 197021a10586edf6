"""Broker behaviours switched at run time through the admin interface, seen through the client."""
from __future__ import annotations

import itertools

import pytest

from reference.mt5.simclient import AdminError
from tradedrill.waiting import wait_until
from tests.mt5.test_conformance import buy, sell

_magic = itertools.count(50_000)


def test_market_closed_outside_sessions(mt5, admin):
    admin.set_behaviour(sessions={"EURUSD": []})
    assert buy(mt5).retcode == mt5.TRADE_RETCODE_MARKET_CLOSED
    assert buy(mt5, symbol="GBPUSD").retcode == mt5.TRADE_RETCODE_DONE
    admin.set_behaviour(sessions={"EURUSD": ["00:00-24:00"]})
    assert buy(mt5).retcode == mt5.TRADE_RETCODE_DONE


def test_no_money_past_margin(mt5, admin):
    free = mt5.account_info().margin_free
    check = mt5.order_check({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 100.0,
                             "type": mt5.ORDER_TYPE_BUY})
    assert check.retcode == mt5.TRADE_RETCODE_NO_MONEY and check.margin > free
    result = buy(mt5, 100.0)
    assert result.retcode == mt5.TRADE_RETCODE_NO_MONEY and result.order == 0 and result.deal == 0
    assert mt5.order_check({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                            "type": mt5.ORDER_TYPE_BUY}).retcode == 0
    admin.set_behaviour(margin_check=False)
    big = buy(mt5, 100.0)
    assert big.retcode == mt5.TRADE_RETCODE_DONE
    # close it again so later tests on this shared simulator have their margin back
    assert sell(mt5, 100.0, position=big.order).retcode == mt5.TRADE_RETCODE_DONE


def test_requote_and_price_changed(mt5, admin):
    admin.set_behaviour(requote_rate=1.0)
    r = buy(mt5)
    assert r.retcode == mt5.TRADE_RETCODE_REQUOTE and r.bid > 0 and r.ask > r.bid and r.order == 0
    admin.set_behaviour(requote_rate=0.0, price_changed_rate=1.0)
    assert buy(mt5).retcode == mt5.TRADE_RETCODE_PRICE_CHANGED
    admin.set_behaviour(price_changed_rate=0.3)
    codes = {buy(mt5).retcode for _ in range(40)}
    assert codes == {mt5.TRADE_RETCODE_DONE, mt5.TRADE_RETCODE_PRICE_CHANGED}


def test_partial_fill(mt5, admin):
    admin.set_behaviour(partial_fill_rate=1.0, partial_fill_ratio=0.5)
    r = buy(mt5, 0.4)
    assert r.retcode == mt5.TRADE_RETCODE_DONE_PARTIAL and r.volume == pytest.approx(0.2)
    assert mt5.positions_get(ticket=r.order)[0].volume == pytest.approx(0.2)
    order = mt5.history_orders_get(ticket=r.order)[0]
    assert order.volume_initial == pytest.approx(0.4) and order.volume_current == pytest.approx(0.2)
    fok = buy(mt5, 0.4, type_filling=mt5.ORDER_FILLING_FOK)
    assert fok.retcode == mt5.TRADE_RETCODE_DONE and fok.volume == pytest.approx(0.4)


def test_too_many_requests(mt5, admin):
    admin.set_behaviour(too_many_requests_rate=1.0)
    assert buy(mt5).retcode == mt5.TRADE_RETCODE_TOO_MANY_REQUESTS
    admin.set_behaviour(too_many_requests_rate=0.0, max_orders_per_second=3)
    codes = [buy(mt5).retcode for _ in range(6)]
    assert codes[:3] == [mt5.TRADE_RETCODE_DONE] * 3
    assert mt5.TRADE_RETCODE_TOO_MANY_REQUESTS in codes[3:]


def test_algo_trading_off(mt5, admin):
    admin.set_behaviour(trade_allowed=False)
    assert mt5.terminal_info().trade_allowed is False
    r = buy(mt5)
    assert r.retcode == mt5.TRADE_RETCODE_CLIENT_DISABLES_AT == 10027
    admin.set_behaviour(trade_allowed=True)
    assert mt5.terminal_info().trade_allowed is True


def test_latency_beyond_call_timeout_is_ipc_timeout(mt5, admin):
    mt5.call_timeout = 0.3
    admin.set_behaviour(order_latency_ms=600)
    magic = next(_magic)
    assert buy(mt5, magic=magic, comment="slow") is None
    assert mt5.last_error() == (-10005, "IPC timeout")
    admin.set_behaviour(order_latency_ms=0)
    assert mt5.account_info() is not None  # reconnects on the next call
    # the slow order is executed after all, once its latency has passed: the engine must find it by magic + comment
    wait_until(lambda: [d["comment"] for d in admin.ledger() if d["magic"] == magic] == ["slow"], 5.0,
               "the timed-out order to appear in the ledger")


def test_lost_reply_is_executed_but_unknown(mt5, admin):
    mt5.call_timeout = 0.3
    magic = next(_magic)
    admin.set_behaviour(lose_next_replies=1)
    assert buy(mt5, magic=magic, comment="lost-1") is None
    assert mt5.last_error() == (-10005, "IPC timeout")
    assert admin.behaviour()["lose_next_replies"] == 0
    executed = [d for d in admin.ledger() if d["magic"] == magic]
    assert len(executed) == 1 and executed[0]["comment"] == "lost-1"
    # the reconciliation the engine does: find it through the MT5 API by magic and comment
    found = [p for p in mt5.positions_get(symbol="EURUSD") if p.magic == magic and p.comment == "lost-1"]
    assert len(found) == 1 and found[0].ticket == executed[0]["order"]
    assert buy(mt5, magic=magic, comment="lost-2").retcode == mt5.TRADE_RETCODE_DONE


def test_ambiguous_retcodes_with_and_without_execution(mt5, admin):
    magic = next(_magic)
    admin.set_behaviour(retcode_faults=[{"retcode": 10012, "rate": 1.0, "executed": True}])
    r = buy(mt5, magic=magic, comment="t-exec")
    assert r.retcode == mt5.TRADE_RETCODE_TIMEOUT
    admin.set_behaviour(retcode_faults=[{"retcode": 10031, "rate": 1.0, "executed": False}])
    assert buy(mt5, magic=magic, comment="t-none").retcode == mt5.TRADE_RETCODE_CONNECTION
    assert [d["comment"] for d in admin.ledger() if d["magic"] == magic] == ["t-exec"]


def test_admin_refuses_unknown_setting(admin):
    with pytest.raises(AdminError, match="unknown behaviour"):
        admin.set_behaviour(requote_ratio=1)
    assert admin.ping()["server"] == "TradeDrill-Sim"
