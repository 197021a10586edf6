"""Issue 20: a broker that moves. In process (no socket, no sleep): the broker's clock is the test's, so time jumps
and the price walk does the rest. SL/TP and pending orders trigger from the walk (checked against the walk's own
ticks), expirations cancel, profit and margin are in the account currency (hand-computed cases), the deviation is
honoured by execution mode, and weekly sessions and holidays close the market."""
from __future__ import annotations

import pytest

from reference.mt5 import constants as c
from reference.mt5.simclient import SimulatorTerminal
from reference.mt5.simulator.broker import Broker
from reference.mt5.simulator.config import FOREX_WEEK, AccountSpec, SimConfig, SymbolSpec

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday: the walk's origin
HOUR = 3_600_000
USD, EUR = 7001, 7002


class Clock:
    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


def flat(name, price, digits, spread, base, profit, **kw):
    """A symbol whose price never moves (sigma 0): money cases can be computed by hand."""
    return SymbolSpec(name, price, digits=digits, spread=spread, currency_base=base, currency_profit=profit,
                      sigma_points=0.0, **kw)


FLAT = [flat("EURUSD", 1.10000, 5, 10, "EUR", "USD"), flat("USDJPY", 150.000, 3, 12, "USD", "JPY"),
        flat("EURJPY", 165.000, 3, 20, "EUR", "JPY"), flat("GBPUSD", 1.25000, 5, 10, "GBP", "USD")]
ACCOUNTS = [AccountSpec(USD, currency="USD", balance=100_000.0), AccountSpec(EUR, currency="EUR", balance=100_000.0)]


def open_sim(tmp_path, symbols, login=USD, seed=5, at=T0 + HOUR, name="state", accounts=ACCOUNTS):
    clock = Clock(at)
    cfg = SimConfig(tick_origin_ms=T0, tick_step_ms=250, accounts=list(accounts), symbols=list(symbols))
    broker = Broker(cfg, tmp_path / name, seed=seed, clock=clock)
    mt5 = SimulatorTerminal.in_process(broker)
    assert mt5.initialize(login=login), mt5.last_error()
    return broker, mt5, clock


def market(mt5, symbol, side, volume=0.1, **extra):
    tick = mt5.symbol_info_tick(symbol)
    buy = side == "buy"
    return mt5.order_send({"action": c.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume,
                           "type": c.ORDER_TYPE_BUY if buy else c.ORDER_TYPE_SELL,
                           "price": tick.ask if buy else tick.bid, "deviation": 10, "magic": 20,
                           "type_filling": c.ORDER_FILLING_IOC, **extra})


def close(mt5, position):
    p = mt5.positions_get(ticket=position)[0]
    return market(mt5, p.symbol, "sell" if p.type == c.POSITION_TYPE_BUY else "buy", p.volume, position=position)


# -- money: hand-computed -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("login, symbol, margin, profit", [
    # USD account, JPY pair: 100,000 x 0.1 = 10,000 USD / 100 = 100.00; the spread 0.012 x 10,000 = 120 JPY,
    # / USDJPY ask 150.012 = 0.80 USD (the bug booked 120.00 "USD")
    (USD, "USDJPY", 100.00, -0.80),
    # USD account, USD-quoted pair: 10,000 EUR x ask 1.10010 / 100 = 110.01; 0.0001 x 10,000 = 1.00 USD
    (USD, "EURUSD", 110.01, -1.00),
    # USD account, cross pair: 10,000 EUR x EURUSD bid 1.10000 / 100 = 110.00; 0.020 x 10,000 = 200 JPY / 150.012
    (USD, "EURJPY", 110.00, -1.33),
    # EUR account: margin in EUR 10,000 / 100 = 100.00; 1.00 USD / EURUSD ask 1.10010 = 0.91 EUR
    (EUR, "EURUSD", 100.00, -0.91),
    # EUR account, JPY pair: 10,000 USD / EURUSD ask 1.10010 / 100 = 90.90; 120 JPY / EURJPY ask 165.020 = 0.73 EUR
    (EUR, "USDJPY", 90.90, -0.73),
    # EUR account, a pair of neither: 10,000 GBP -> USD at 1.25 -> EUR at 1/1.1001 / 100 = 113.63; 1.00 USD = 0.91 EUR
    (EUR, "GBPUSD", 113.63, -0.91),
])
def test_profit_and_margin_in_the_account_currency(tmp_path, login, symbol, margin, profit):
    _broker, mt5, _clock = open_sim(tmp_path, FLAT, login=login)
    before = mt5.account_info()
    opened = market(mt5, symbol, "buy")
    assert opened.retcode == c.TRADE_RETCODE_DONE
    info = mt5.account_info()
    assert info.margin == margin
    assert info.equity == round(info.balance + mt5.positions_get(ticket=opened.order)[0].profit, 2)
    assert mt5.positions_get(ticket=opened.order)[0].profit == profit
    assert info.margin_level == round(info.equity / info.margin * 100, 2)
    assert info.margin_free == round(info.equity - info.margin, 2)
    closed = close(mt5, opened.order)
    deal = mt5.history_deals_get(ticket=closed.order)[0]
    assert deal.profit == profit and deal.entry == c.DEAL_ENTRY_OUT
    assert mt5.account_info().balance == round(before.balance + profit, 2)


def test_stop_out_closes_the_biggest_loser_with_reason_so(tmp_path):
    wide = [flat("WIDE", 1.00000, 5, 5000, "EUR", "USD")]  # a 0.05 spread: a buy opens 2,500 USD under water
    _broker, mt5, _clock = open_sim(tmp_path, wide, accounts=[AccountSpec(USD, balance=1_000.0)])
    opened = market(mt5, "WIDE", "buy", 0.5)
    assert opened.retcode == c.TRADE_RETCODE_DONE  # margin 525 of 1,000 free at the send
    assert mt5.positions_get() == ()  # equity -1,500: under the 30 % stop-out level at the next look
    out = mt5.history_deals_get(position=opened.order)[-1]
    assert out.reason == c.DEAL_REASON_SO and out.comment.startswith("[so ")
    assert mt5.account_info().balance == round(1_000.0 + out.profit, 2) == -1_500.0


# -- triggers from the walk ---------------------------------------------------------------------------------------
MOVING = [SymbolSpec("EURUSD", 1.10000, digits=5, spread=10, currency_base="EUR", sigma_points=8.0)]


def first_tick(broker, symbol, after_ms, until_ms, hit):
    """The first tick of the walk after ``after_ms`` (exclusive of its own tick) for which ``hit(tick)``."""
    walk = broker.walks[symbol]
    ticks = walk.ticks(walk.index_at(after_ms) + 1, walk.index_at(until_ms))
    return next(t for t in ticks if hit(t))


@pytest.mark.parametrize("kind", ["sl", "tp"])
def test_sl_and_tp_close_at_the_first_tick_through_them(tmp_path, kind):
    broker, mt5, clock = open_sim(tmp_path, MOVING)
    tick = mt5.symbol_info_tick("EURUSD")
    sl, tp = round(tick.bid - 0.00040, 5), round(tick.bid + 0.00040, 5)
    if kind == "sl":
        tp = 0.0
    else:
        sl = 0.0
    opened = market(mt5, "EURUSD", "buy", sl=sl, tp=tp)
    assert opened.retcode == c.TRADE_RETCODE_DONE
    opened_at = clock.now
    clock.now += 6 * HOUR  # nobody looks for six hours
    assert mt5.positions_get(ticket=opened.order) == ()
    expected = first_tick(broker, "EURUSD", opened_at, clock.now,
                          (lambda t: t["bid"] <= sl) if kind == "sl" else (lambda t: t["bid"] >= tp))
    deals = mt5.history_deals_get(position=opened.order)
    out = deals[-1]
    reason = c.DEAL_REASON_SL if kind == "sl" else c.DEAL_REASON_TP
    assert len(deals) == 2 and out.reason == reason and out.entry == c.DEAL_ENTRY_OUT
    assert out.time_msc == int(expected["time_msc"])
    price = float(expected["bid"]) if kind == "sl" else tp
    # the comment carries the SL/TP level, the price the fill (a stop fills at the first tick through its level)
    assert out.price == price and out.comment == f"[{kind} {(sl if kind == 'sl' else tp):.5f}]"
    order = mt5.history_orders_get(ticket=out.order)[0]
    assert order.reason == (c.ORDER_REASON_SL if kind == "sl" else c.ORDER_REASON_TP)
    assert out.profit == round((price - opened.price) * 0.1 * 100_000, 2)
    # a close sent afterwards finds the position gone (the engine must not close it twice)
    late = mt5.order_send({"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                           "type": c.ORDER_TYPE_SELL, "position": opened.order, "type_filling": c.ORDER_FILLING_IOC})
    assert late.retcode == c.TRADE_RETCODE_POSITION_CLOSED


def pending(mt5, otype, price, **extra):
    return mt5.order_send({"action": c.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": 0.1, "type": otype,
                           "price": price, "magic": 21, "type_filling": c.ORDER_FILLING_RETURN, **extra})


@pytest.mark.parametrize("otype, offset", [(c.ORDER_TYPE_BUY_LIMIT, -40), (c.ORDER_TYPE_SELL_LIMIT, 40),
                                           (c.ORDER_TYPE_BUY_STOP, 40), (c.ORDER_TYPE_SELL_STOP, -40)])
def test_pending_orders_fill_when_the_price_crosses_them(tmp_path, otype, offset):
    broker, mt5, clock = open_sim(tmp_path, MOVING)
    tick = mt5.symbol_info_tick("EURUSD")
    buy = otype % 2 == 0
    price = round((tick.ask if buy else tick.bid) + offset * 0.00001, 5)
    placed = pending(mt5, otype, price)
    assert placed.retcode == c.TRADE_RETCODE_DONE and mt5.orders_total() == 1
    placed_at = clock.now
    clock.now += 6 * HOUR
    assert mt5.orders_get() == ()
    side = "ask" if buy else "bid"
    crosses = {c.ORDER_TYPE_BUY_LIMIT: lambda t: t["ask"] <= price, c.ORDER_TYPE_SELL_LIMIT: lambda t: t["bid"] >= price,
               c.ORDER_TYPE_BUY_STOP: lambda t: t["ask"] >= price, c.ORDER_TYPE_SELL_STOP: lambda t: t["bid"] <= price}
    expected = first_tick(broker, "EURUSD", placed_at, clock.now, crosses[otype])
    order = mt5.history_orders_get(ticket=placed.order)[0]
    assert order.state == c.ORDER_STATE_FILLED and order.time_done_msc == int(expected["time_msc"])
    deal = mt5.history_deals_get(ticket=placed.order)[0]
    limit = otype in (c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT)
    assert deal.price == (price if limit else float(expected[side])) and deal.entry == c.DEAL_ENTRY_IN
    position = mt5.positions_get(ticket=placed.order)[0]  # MT5: the position's ticket is the opening order's
    assert position.identifier == placed.order and position.type == (0 if buy else 1)


def test_stop_limit_places_its_limit_then_fills_it(tmp_path):
    broker, mt5, clock = open_sim(tmp_path, MOVING)
    ask = mt5.symbol_info_tick("EURUSD").ask
    stop, limit = round(ask + 0.00030, 5), round(ask + 0.00010, 5)
    placed = pending(mt5, c.ORDER_TYPE_BUY_STOP_LIMIT, stop, stoplimit=limit)
    assert placed.retcode == c.TRADE_RETCODE_DONE
    start = clock.now
    reached = first_tick(broker, "EURUSD", start, start + 6 * HOUR, lambda t: t["ask"] >= stop)
    clock.now = int(reached["time_msc"])
    (order,) = mt5.orders_get(ticket=placed.order)
    assert order.type == c.ORDER_TYPE_BUY_LIMIT and order.price_open == limit
    filled = first_tick(broker, "EURUSD", clock.now, clock.now + 6 * HOUR, lambda t: t["ask"] <= limit)
    clock.now = int(filled["time_msc"]) + 1
    assert mt5.orders_get() == ()
    assert mt5.history_deals_get(ticket=placed.order)[0].price == limit


@pytest.mark.parametrize("type_time, expiration_s, expires_ms", [
    (c.ORDER_TIME_SPECIFIED, (T0 + HOUR) // 1000 + 90, T0 + HOUR + 90_000),
    (c.ORDER_TIME_DAY, 0, T0 + 24 * HOUR),
    (c.ORDER_TIME_SPECIFIED_DAY, (T0 + 30 * HOUR) // 1000, T0 + 48 * HOUR),
])
def test_expirations_cancel_at_their_time(tmp_path, type_time, expiration_s, expires_ms):
    _broker, mt5, clock = open_sim(tmp_path, MOVING)
    far = round(mt5.symbol_info_tick("EURUSD").ask - 0.5, 5)  # never reached
    placed = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, far, type_time=type_time, expiration=expiration_s)
    assert placed.retcode == c.TRADE_RETCODE_DONE
    clock.now = expires_ms - 1
    assert mt5.orders_total() == 1
    clock.now = expires_ms + 5 * HOUR
    assert mt5.orders_total() == 0
    order = mt5.history_orders_get(ticket=placed.order)[0]
    assert order.state == c.ORDER_STATE_EXPIRED and order.time_done_msc == expires_ms


def test_an_expiration_already_past_is_refused(tmp_path):
    _broker, mt5, clock = open_sim(tmp_path, MOVING)
    far = round(mt5.symbol_info_tick("EURUSD").ask - 0.5, 5)
    late = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, far, type_time=c.ORDER_TIME_SPECIFIED, expiration=clock.now // 1000)
    assert late.retcode == c.TRADE_RETCODE_INVALID_EXPIRATION


def _book(mt5):
    return ([tuple(d) for d in mt5.history_deals_get(0, 2**40)], [tuple(o) for o in mt5.history_orders_get(0, 2**40)],
            mt5.account_info().balance)


def _trade_a_while(broker, mt5, clock, look_every_ms):
    ask = mt5.symbol_info_tick("EURUSD").ask
    market(mt5, "EURUSD", "buy", sl=round(ask - 0.0004, 5), tp=round(ask + 0.0004, 5))
    market(mt5, "EURUSD", "sell", sl=round(ask + 0.0005, 5), tp=round(ask - 0.0005, 5))
    pending(mt5, c.ORDER_TYPE_BUY_LIMIT, round(ask - 0.0003, 5), sl=round(ask - 0.0009, 5), tp=round(ask + 0.001, 5))
    pending(mt5, c.ORDER_TYPE_SELL_STOP_LIMIT, round(ask - 0.0006, 5), stoplimit=round(ask - 0.0003, 5))
    end = clock.now + 4 * HOUR
    while clock.now < end:
        clock.now = min(end, clock.now + look_every_ms)
        mt5.positions_total()
    return _book(mt5)


def test_triggers_are_the_same_whenever_one_looks_and_replay_from_the_journal(tmp_path):
    """The same seed gives the same deals whether the book is read every minute or once after four hours, and a
    broker restarted on the journal holds exactly that book."""
    b1, m1, k1 = open_sim(tmp_path, MOVING, name="often")
    b2, m2, k2 = open_sim(tmp_path, MOVING, name="once")
    often = _trade_a_while(b1, m1, k1, 60_000)
    once = _trade_a_while(b2, m2, k2, 4 * HOUR)
    assert often == once and len(often[0]) > 4  # the deposit, 2 opens, fills and closes
    b2.close()
    again = Broker(b2.config, tmp_path / "once", seed=5, clock=k2)
    m3 = SimulatorTerminal.in_process(again)
    assert m3.initialize(login=USD)
    assert _book(m3) == once


# -- deviation -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, retcode", [("instant", c.TRADE_RETCODE_REQUOTE), ("request", c.TRADE_RETCODE_PRICE_OFF),
                                           ("market", c.TRADE_RETCODE_DONE), ("exchange", c.TRADE_RETCODE_DONE)])
def test_a_price_beyond_the_deviation_by_execution_mode(tmp_path, mode, retcode):
    broker, mt5, _clock = open_sim(tmp_path, FLAT)
    broker.behaviour.update(execution_modes={"EURUSD": mode})
    assert mt5.symbol_info("EURUSD").trade_exemode == {"request": 0, "instant": 1, "market": 2, "exchange": 3}[mode]
    stale = mt5.order_send({"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                            "type": c.ORDER_TYPE_BUY, "price": 1.10040, "deviation": 20,
                            "type_filling": c.ORDER_FILLING_IOC})
    assert stale.retcode == retcode and (stale.bid, stale.ask) == (1.1, 1.1001)
    if retcode == c.TRADE_RETCODE_DONE:
        assert stale.price == 1.1001  # market execution: the market price, whatever was asked
    near = mt5.order_send({"action": c.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
                           "type": c.ORDER_TYPE_BUY, "price": 1.10030, "deviation": 20,
                           "type_filling": c.ORDER_FILLING_IOC})
    assert near.retcode == c.TRADE_RETCODE_DONE and near.price == 1.1001


@pytest.mark.parametrize("deviation, retcode", [(20, c.TRADE_RETCODE_DONE), (4, c.TRADE_RETCODE_REQUOTE)])
def test_requotes_move_the_price_and_the_deviation_decides(tmp_path, deviation, retcode):
    broker, mt5, _clock = open_sim(tmp_path, FLAT)
    broker.behaviour.update(execution_modes={"EURUSD": "instant"}, requote_rate=1.0, requote_points=5)
    result = market(mt5, "EURUSD", "buy", deviation=deviation)
    assert result.retcode == retcode
    assert abs(round(result.ask - 1.1001, 5)) == 0.00005  # the new quote is in the answer
    if retcode == c.TRADE_RETCODE_DONE:
        assert result.price == result.ask and abs(result.price - 1.1001) <= deviation * 0.00001


# -- sessions ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("when, open_", [
    ("2026-01-02T21:59", True),   # Friday before the weekend close
    ("2026-01-02T22:00", False),  # Friday 22:00: closed for the weekend
    ("2026-01-03T12:00", False),  # Saturday
    ("2026-01-04T21:59", False),  # Sunday before the open
    ("2026-01-04T22:00", True),   # Sunday 22:00: open
    ("2026-01-05T10:00", True),   # Monday
    ("2026-01-06T10:00", False),  # a configured holiday
])
def test_weekly_sessions_and_holidays(tmp_path, when, open_):
    import datetime as dt

    at = int(dt.datetime.fromisoformat(when).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    broker, mt5, _clock = open_sim(tmp_path, FLAT, at=at)
    broker.behaviour.update(sessions={"EURUSD": FOREX_WEEK}, holidays={"*": ["2026-01-06"]})
    result = market(mt5, "EURUSD", "buy")
    assert result.retcode == (c.TRADE_RETCODE_DONE if open_ else c.TRADE_RETCODE_MARKET_CLOSED)


def test_nothing_triggers_while_the_market_is_closed(tmp_path):
    broker, mt5, clock = open_sim(tmp_path, MOVING)
    ask = mt5.symbol_info_tick("EURUSD").ask
    placed = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, round(ask - 0.0002, 5))
    broker.behaviour.update(holidays={"EURUSD": ["2026-01-01"]})  # the rest of today
    clock.now = T0 + 23 * HOUR
    assert mt5.orders_total() == 1
    clock.now = T0 + 24 * HOUR  # looked at while the holiday is configured: its ticks are passed over
    assert mt5.orders_total() == 1
    broker.behaviour.update(holidays={})
    clock.now = T0 + 30 * HOUR
    order = mt5.history_orders_get(ticket=placed.order)
    assert order and order[0].state == c.ORDER_STATE_FILLED and order[0].time_done_msc >= T0 + 24 * HOUR


# -- a new user's findings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("otype, ref, offset, stoplimit", [
    (c.ORDER_TYPE_BUY_LIMIT, "ask", 40, None),        # a buy limit above the ask
    (c.ORDER_TYPE_SELL_LIMIT, "bid", -40, None),      # a sell limit below the bid
    (c.ORDER_TYPE_BUY_STOP, "ask", -40, None),        # a buy stop below the ask
    (c.ORDER_TYPE_SELL_STOP, "bid", 40, None),        # a sell stop above the bid
    (c.ORDER_TYPE_BUY_STOP_LIMIT, "ask", -40, -60),   # its stop below the ask
    (c.ORDER_TYPE_BUY_STOP_LIMIT, "ask", 40, 0),      # no stoplimit
    (c.ORDER_TYPE_BUY_STOP_LIMIT, "ask", 40, 60),     # its limit above its stop
    (c.ORDER_TYPE_SELL_STOP_LIMIT, "bid", 40, 60),    # its stop above the bid
    (c.ORDER_TYPE_SELL_STOP_LIMIT, "bid", -40, 0),    # no stoplimit
    (c.ORDER_TYPE_SELL_STOP_LIMIT, "bid", -40, -60),  # its limit below its stop
])
def test_a_pending_order_on_the_wrong_side_of_the_price_is_invalid_price(tmp_path, otype, ref, offset, stoplimit):
    _broker, mt5, _clock = open_sim(tmp_path, FLAT)
    tick = mt5.symbol_info_tick("EURUSD")
    base = getattr(tick, ref)
    extra = {} if stoplimit is None else {"stoplimit": round(base + stoplimit * 0.00001, 5) if stoplimit else 0.0}
    result = pending(mt5, otype, round(base + offset * 0.00001, 5), **extra)
    assert result.retcode == c.TRADE_RETCODE_INVALID_PRICE and mt5.orders_total() == 0


@pytest.mark.parametrize("type_time", [c.ORDER_TIME_SPECIFIED, c.ORDER_TIME_SPECIFIED_DAY])
def test_a_specified_expiration_of_zero_is_invalid_expiration_not_a_server_error(tmp_path, type_time):
    _broker, mt5, _clock = open_sim(tmp_path, FLAT)
    far = round(mt5.symbol_info_tick("EURUSD").ask - 0.05, 5)
    result = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, far, type_time=type_time, expiration=0)
    assert result is not None, mt5.last_error()
    assert result.retcode == c.TRADE_RETCODE_INVALID_EXPIRATION and mt5.orders_total() == 0
    placed = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, far)
    modified = mt5.order_send({"action": c.TRADE_ACTION_MODIFY, "order": placed.order, "price": far,
                               "type_time": type_time, "expiration": 0})
    assert modified is not None and modified.retcode == c.TRADE_RETCODE_INVALID_EXPIRATION


def test_modifications_while_the_market_is_closed_are_market_closed(tmp_path):
    broker, mt5, _clock = open_sim(tmp_path, FLAT)
    tick = mt5.symbol_info_tick("EURUSD")
    opened = market(mt5, "EURUSD", "buy")
    far = round(tick.ask - 0.05, 5)
    placed = pending(mt5, c.ORDER_TYPE_BUY_LIMIT, far)
    assert opened.retcode == placed.retcode == c.TRADE_RETCODE_DONE
    broker.behaviour.update(holidays={"EURUSD": ["2026-01-01"]})
    sltp = mt5.order_send({"action": c.TRADE_ACTION_SLTP, "symbol": "EURUSD", "position": opened.order,
                           "sl": round(tick.bid - 0.01, 5), "tp": 0.0})
    modify = mt5.order_send({"action": c.TRADE_ACTION_MODIFY, "order": placed.order, "price": round(far - 0.001, 5)})
    remove = mt5.order_send({"action": c.TRADE_ACTION_REMOVE, "order": placed.order})
    assert [r.retcode for r in (sltp, modify, remove)] == [c.TRADE_RETCODE_MARKET_CLOSED] * 3
    assert mt5.positions_get(ticket=opened.order)[0].sl == 0.0 and mt5.orders_total() == 1
    broker.behaviour.update(holidays={})
    assert mt5.order_send({"action": c.TRADE_ACTION_REMOVE, "order": placed.order}).retcode == c.TRADE_RETCODE_DONE


def test_a_symbol_without_a_cross_rate_to_the_account_currency_is_refused_at_load(tmp_path):
    from reference.mt5.simulator.config import SettingError

    lonely = flat("USDCHF", 0.90000, 5, 10, "USD", "CHF")  # CHF -> EUR: no CHF pair with EUR, none EURUSD either
    with pytest.raises(SettingError, match=r"symbol USDCHF: no cross rate CHF->EUR") as err:
        open_sim(tmp_path, [lonely], login=EUR)
    assert "\n" not in str(err.value)
    raw = {"accounts": [{"login": EUR, "currency": "EUR"}],
           "symbols": [{"name": "USDCHF", "price": 0.9, "currency_base": "USD", "currency_profit": "CHF"}]}
    with pytest.raises(SettingError, match=r"USDCHF.*CHF->EUR"):
        SimConfig.from_dict(raw)
    # with EURUSD beside it the rate goes through USD: accepted, and converted (not 1:1)
    _broker, mt5, _clock = open_sim(tmp_path, [lonely, FLAT[0]], login=EUR, name="ok")
    opened = market(mt5, "USDCHF", "buy")
    profit = mt5.positions_get(ticket=opened.order)[0].profit
    assert profit == round(-0.0001 * 10_000 / 0.9 / 1.1001, 2)   # 1 CHF of spread -> USD at 1/0.9001 -> EUR


def test_the_sl_close_comment_carries_the_sl_level_not_the_fill_price(tmp_path):
    broker, mt5, clock = open_sim(tmp_path, MOVING)
    bid = mt5.symbol_info_tick("EURUSD").bid
    sl = round(bid - 0.00037, 5)
    opened = market(mt5, "EURUSD", "buy", sl=sl)
    clock.now += 6 * HOUR
    out = mt5.history_deals_get(position=opened.order)[-1]
    assert out.reason == c.DEAL_REASON_SL and out.comment == f"[sl {sl:.5f}]"
    assert out.price < sl   # the walk went through the level: the fill is beyond it, the comment is not
    assert mt5.history_orders_get(ticket=out.order)[0].comment == f"[sl {sl:.5f}]"


def test_forex_week_is_accepted_by_name_in_a_config_file(tmp_path):
    cfg = SimConfig.from_dict({"behaviour": {"sessions": {"EURUSD": "FOREX_WEEK"}}})
    assert cfg.behaviour.sessions == {"EURUSD": FOREX_WEEK}
    broker, mt5, _clock = open_sim(tmp_path, FLAT, at=T0 + 2 * 24 * HOUR + 12 * HOUR)   # Saturday noon
    broker.behaviour.update(sessions={"EURUSD": "FOREX_WEEK"})
    assert broker.behaviour.sessions["EURUSD"] == FOREX_WEEK
    assert market(mt5, "EURUSD", "buy").retcode == c.TRADE_RETCODE_MARKET_CLOSED
    assert market(mt5, "USDJPY", "buy").retcode == c.TRADE_RETCODE_DONE   # not listed: trades all week


# -- order_calc_margin / order_calc_profit (MetaQuotes' API, in the account currency) --------------------------------
@pytest.mark.parametrize("login, action, symbol, volume, price, margin", [
    (USD, c.ORDER_TYPE_BUY, "USDJPY", 0.1, 150.0, 100.00),     # 10,000 USD / 100
    (USD, c.ORDER_TYPE_SELL, "EURUSD", 0.1, 1.2, 120.00),      # 10,000 EUR at the given 1.2 USD / 100
    (EUR, c.ORDER_TYPE_BUY, "EURUSD", 0.1, 1.2, 100.00),       # 10,000 EUR / 100, in EUR
    (EUR, c.ORDER_TYPE_BUY, "USDJPY", 0.1, 150.0, 90.90),      # 10,000 USD / EURUSD ask 1.10010 / 100
])
def test_order_calc_margin_in_the_account_currency(tmp_path, login, action, symbol, volume, price, margin):
    from reference.mt5 import shim

    _broker, mt5, _clock = open_sim(tmp_path, FLAT, login=login)
    assert mt5.order_calc_margin(action, symbol, volume, price) == margin
    assert shim.module(mt5).order_calc_margin(action, symbol, volume, price) == margin


@pytest.mark.parametrize("login, action, symbol, open_, close_, profit", [
    (USD, c.ORDER_TYPE_BUY, "USDJPY", 150.0, 150.1, 6.67),     # 1,000 JPY / USDJPY ask 150.012
    (USD, c.ORDER_TYPE_SELL, "EURUSD", 1.1, 1.0999, 1.00),     # 10,000 x 0.0001 USD
    (USD, c.ORDER_TYPE_BUY, "EURJPY", 165.0, 164.9, -6.67),    # -1,000 JPY / 150.012
    (EUR, c.ORDER_TYPE_BUY, "EURUSD", 1.1, 1.1011, 10.00),     # 11 USD / EURUSD ask 1.10010
])
def test_order_calc_profit_in_the_account_currency(tmp_path, login, action, symbol, open_, close_, profit):
    from reference.mt5 import shim

    _broker, mt5, _clock = open_sim(tmp_path, FLAT, login=login)
    assert mt5.order_calc_profit(action, symbol, 0.1, open_, close_) == profit
    assert shim.module(mt5).order_calc_profit(action, symbol, 0.1, open_, close_) == profit


def test_order_calc_refuses_wrong_arguments(tmp_path):
    _broker, mt5, _clock = open_sim(tmp_path, FLAT)
    assert mt5.order_calc_margin(c.ORDER_TYPE_BUY_LIMIT, "EURUSD", 0.1, 1.1) is None
    assert mt5.last_error()[0] == c.ERR_INVALID_ARGUMENTS[0]
    assert mt5.order_calc_margin(c.ORDER_TYPE_BUY, "NOPE", 0.1, 1.1) is None
    assert mt5.last_error() == c.ERR_NOT_FOUND
    assert mt5.order_calc_profit(c.ORDER_TYPE_BUY, "EURUSD", 0.0, 1.1, 1.2) is None
    assert mt5.order_calc_profit(c.ORDER_TYPE_SELL, "EURUSD", 0.1, 1.1, -1) is None
