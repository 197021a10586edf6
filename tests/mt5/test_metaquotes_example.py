"""MetaQuotes' documented ``order_send`` example (docs: python_order_send), run unchanged through the
``MetaTrader5`` module shim over the simulator client: open a market buy of 0.1 lot USDJPY with SL/TP 100 points
away, then close it by ``position``. In process, the broker's clock is the test's: the example's
``time.sleep(2)`` moves that clock instead of waiting."""
from __future__ import annotations

import contextlib
import io
import time

import pytest

from reference.mt5 import shim
from reference.mt5.simclient import SimulatorTerminal
from reference.mt5.simulator.broker import Broker
from reference.mt5.simulator.config import SimConfig

# verbatim from MetaQuotes' documentation of order_send (the printing of the close result shortened)
EXAMPLE = '''
import time
import MetaTrader5 as mt5

print("MetaTrader5 package author: ",mt5.__author__)
print("MetaTrader5 package version: ",mt5.__version__)

if not mt5.initialize():
    print("initialize() failed, error code =",mt5.last_error())
    quit()

symbol = "USDJPY"
symbol_info = mt5.symbol_info(symbol)
if symbol_info is None:
    print(symbol, "not found, can not call order_check()")
    mt5.shutdown()
    quit()

if not symbol_info.visible:
    print(symbol, "is not visible, trying to switch on")
    if not mt5.symbol_select(symbol,True):
        print("symbol_select({}}) failed, exit",symbol)
        mt5.shutdown()
        quit()

lot = 0.1
point = mt5.symbol_info(symbol).point
price = mt5.symbol_info_tick(symbol).ask
deviation = 20
request = {
    "action": mt5.TRADE_ACTION_DEAL,
    "symbol": symbol,
    "volume": lot,
    "type": mt5.ORDER_TYPE_BUY,
    "price": price,
    "sl": price - 100 * point,
    "tp": price + 100 * point,
    "deviation": deviation,
    "magic": 234000,
    "comment": "python script open",
    "type_time": mt5.ORDER_TIME_GTC,
    "type_filling": mt5.ORDER_FILLING_RETURN,
}

result = mt5.order_send(request)
print("1. order_send(): by {} {} lots at {} with deviation={} points".format(symbol,lot,price,deviation));
if result.retcode != mt5.TRADE_RETCODE_DONE:
    print("2. order_send failed, retcode={}".format(result.retcode))
    result_dict=result._asdict()
    for field in result_dict.keys():
        print("   {}={}".format(field,result_dict[field]))
        if field=="request":
            traderequest_dict=result_dict[field]._asdict()
            for tradereq_filed in traderequest_dict:
                print("       traderequest: {}={}".format(tradereq_filed,traderequest_dict[tradereq_filed]))
    print("shutdown() and quit")
    mt5.shutdown()
    quit()

print("2. order_send done, ", result)
print("   opened position with POSITION_TICKET={}".format(result.order))
print("   sleep 2 seconds before closing position #{}".format(result.order))
time.sleep(2)
position_id=result.order
price=mt5.symbol_info_tick(symbol).bid
deviation=20
request={
    "action": mt5.TRADE_ACTION_DEAL,
    "symbol": symbol,
    "volume": lot,
    "type": mt5.ORDER_TYPE_SELL,
    "position": position_id,
    "price": price,
    "deviation": deviation,
    "magic": 234000,
    "comment": "python script close",
    "type_time": mt5.ORDER_TIME_GTC,
    "type_filling": mt5.ORDER_FILLING_RETURN,
}
result=mt5.order_send(request)
print("3. close position #{}: sell {} {} lots at {} with deviation={} points".format(position_id,symbol,lot,price,deviation));
if result.retcode != mt5.TRADE_RETCODE_DONE:
    print("4. order_send failed, retcode={}".format(result.retcode))
    print("   result",result)
else:
    print("4. position #{} closed, {}".format(position_id,result))

mt5.shutdown()
'''


class Clock:
    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def metatrader5(tmp_path, monkeypatch):
    clock = Clock(1_767_225_600_000 + 3_600_000)
    broker = Broker(SimConfig(tick_origin_ms=1_767_225_600_000), tmp_path / "state", seed=20, clock=clock)
    terminal = SimulatorTerminal.in_process(broker)
    shim.install(terminal)
    monkeypatch.setattr(time, "sleep", lambda s: setattr(clock, "now", clock.now + int(s * 1000)))
    try:
        yield broker, SimulatorTerminal.in_process(broker)
    finally:
        shim.uninstall()
        broker.close()


def test_the_documented_order_send_example_runs_unchanged(metatrader5):
    broker, mt5 = metatrader5
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(EXAMPLE, "metaquotes_order_send_example.py", "exec"), {"quit": _quit})
    text = out.getvalue()
    assert "2. order_send done" in text and "4. position #" in text and "failed" not in text, text
    assert mt5.initialize(login=5001)
    (opening, closing) = [d for d in mt5.history_deals_get(0, 2**40) if d.magic == 234000]
    assert opening.position_id == closing.position_id == opening.order  # the position ticket is the order's
    assert closing.reason == mt5.DEAL_REASON_EXPERT and closing.entry == mt5.DEAL_ENTRY_OUT
    (order,) = mt5.history_orders_get(ticket=opening.order)
    assert round(order.sl, 3) == round(opening.price - 0.1, 3) and round(order.tp, 3) == round(opening.price + 0.1, 3)
    # the profit is in the account's USD: the JPY move of 0.1 lot over USDJPY's ask, not the JPY amount
    jpy = (closing.price - opening.price) * 0.1 * 100_000
    rate = mt5.symbol_info_tick("USDJPY").ask
    assert closing.profit == round(jpy / rate, 2) and abs(closing.profit) < abs(jpy) / 100
    balance = sum(d.profit for d in mt5.history_deals_get(0, 2**40))
    assert mt5.account_info().balance == round(balance, 2)


def _quit():
    raise SystemExit("the example quit early")
