"""The simulated trade server: accounts, symbols, orders, positions and deals, with MT5's semantics.

Every call returns ``(value, error)`` where ``error`` is the ``last_error()`` pair the terminal would set; no call
raises for a user mistake. A mutation is computed from the current state as a list of *changes*, written to the
journal (fsync) and only then applied to memory and answered: whatever was answered survives ``kill -9``.

The price walk moves the book (``advance``, run before every call that reads or changes it, journaled like any
trade, so a run replays from its seed): a position's SL closes it at the market price of the first tick through it,
its TP at the TP price (deal and order reason SL/TP, comment ``[sl 1.08450]`` as MT5 writes it); a BUY/SELL LIMIT
fills at its price, a STOP at the market price of the tick that crosses it, a STOP_LIMIT turns into the LIMIT at its
``stoplimit`` price; ORDER_TIME_DAY / SPECIFIED / SPECIFIED_DAY orders expire (state EXPIRED); nothing triggers while
the symbol's market is closed. With ``margin_check`` on, an account whose margin level falls below 30 % is stopped
out (its biggest loser first, reason SO).

Money: profit is taken in the symbol's profit currency and converted to the account currency at the current cross
rate (a pair FROMTO at its bid, a pair TOFROM at 1/ask, else through USD; no pair at all: refused at load,
``SimConfig.check_rates``); margin is volume x
contract size in the margin currency (the base currency for forex) converted the same way (at the open price when
the symbol itself quotes it in the account currency) / leverage.

Deviation: a market DEAL with a price, on a symbol in INSTANT execution, whose price is further than ``deviation``
points from the market is REQUOTE (10004) with the new bid/ask; in REQUEST execution PRICE_OFF (10021); MARKET and
EXCHANGE execution fill at the market price whatever the request's price. ``requote_rate`` / ``price_changed_rate``
with ``requote_points`` move the market between the quote and the send; without it they answer the retcode.

Simplifications (said here so nobody is surprised):
- netting reversal (INOUT) keeps the position's ticket and identifier, flips its type and opens the rest at the deal
  price; ORDER_FILLING_RETURN behaves like IOC (the unfilled rest is cancelled);
- PENDING placement answers 10009 with the order in state PLACED and ``deal=0`` (what brokers answer in practice).

Request checks a real server makes and this one copies: a filling policy the symbol does not allow (its
``filling_mode`` bit mask; RETURN always passes, BOC never) is TRADE_RETCODE_INVALID_FILL (10030); a stop loss or
take profit on the wrong side of the price (bid for buys, ask for sells, the order price for pending orders) or
nearer than ``stops_level`` points is TRADE_RETCODE_INVALID_STOPS (10016).
"""
from __future__ import annotations

import bisect
import hmac
import math
import time
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from reference.mt5 import constants as c
from reference.mt5.simulator.config import EXECUTION_MODES, Behaviour, Dice, SimConfig, SymbolSpec, session_windows
from reference.mt5.simulator.journal import Journal
from reference.mt5.simulator.ticks import TickWalk, rates_from_ticks, valid_timeframe
from reference.mt5.types import (
    ACCOUNT_INFO_FIELDS,
    REQUEST_DEFAULTS,
    SYMBOL_INFO_FIELDS,
    TERMINAL_INFO_FIELDS,
    TRADE_DEAL_FIELDS,
    TRADE_ORDER_FIELDS,
    TRADE_POSITION_FIELDS,
    TRADE_REQUEST_FIELDS,
    parse_request,
)

OK = c.ERR_SUCCESS
BUILD = 4755
MARKET_TYPES = (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL)
PENDING_TYPES = tuple(range(c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT + 1))
STOP_OUT_LEVEL = 30.0  # AccountInfo.margin_so_so, percent


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _row(record: dict, names: list[str]) -> list:
    return [record[name] for name in names]


def group_matches(name: str, group: str) -> bool:
    """MT5 group filter: comma-separated masks with ``*``; a mask starting with ``!`` excludes."""
    included = False
    for mask in (m.strip() for m in group.split(",")):
        if not mask:
            continue
        if mask.startswith("!"):
            if fnmatchcase(name, mask[1:]):
                return False
        elif fnmatchcase(name, mask):
            included = True
    return included


class TradeResult(Exception):
    """Internal: stop processing a request with this retcode (never leaves the broker)."""

    def __init__(self, retcode: int, bid: float | None = None, ask: float | None = None):
        super().__init__(retcode)
        self.retcode = retcode
        self.prices = (bid, ask) if bid is not None else None


class Broker:
    def __init__(self, config: SimConfig, state_dir: Path, seed: int = 0, clock=None):
        # refused: a symbol with no cross rate to an account's currency (was taken 1:1), a per-symbol behaviour
        # setting naming a symbol the broker does not have (was ignored); and later set_behaviour calls are checked
        config.check()
        self.clock = clock or now_ms  # epoch ms; a test passes its own to move time without sleeping
        self.config = config
        self.seed = seed
        self.behaviour: Behaviour = config.behaviour
        self.dice = Dice(seed)
        self.journal = Journal(state_dir)
        self.symbols: dict[str, SymbolSpec] = {s.name: s for s in config.symbols}
        self.meta: dict = {}
        self.accounts: dict[int, dict] = {}
        # login -> ticket -> record
        self.orders: dict[int, dict[int, dict]] = {}
        self.positions: dict[int, dict[int, dict]] = {}
        self.deals: dict[int, dict[int, dict]] = {}
        self.request_id = 0
        self._order_times: list[float] = []
        # login -> symbol -> [buy volume, buy sum(volume*open), sell volume, sell sum(volume*open)]: margin and
        # floating profit in O(symbols) per order instead of O(positions) (a hedging account may hold thousands)
        self.exposure: dict[int, dict[str, list[float]]] = {}
        # (login, "pos"|"order", ticket) of every position with an SL/TP and every placed pending order: what the
        # price walk can trigger, so advance() never walks every position of the book
        self._armed: set[tuple[int, str, int]] = set()
        self._scanned: dict[str, int] = {}  # symbol -> last tick index advance() has looked at (memory only)
        self._load()
        origin = self.meta["tick_origin_ms"]
        self.walks = {
            s.name: TickWalk(seed, s.name, s.price, s.point, s.digits, s.spread, origin, config.tick_step_ms,
                             s.sigma_points)
            for s in config.symbols
        }

    # -- durability ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        snapshot, records = self.journal.load()
        if snapshot:
            self.meta = snapshot["meta"]
            self.accounts = {int(k): v for k, v in snapshot["accounts"].items()}
            for name in ("orders", "positions", "deals"):
                table = {int(login): {int(t): r for t, r in rows.items()} for login, rows in snapshot[name].items()}
                setattr(self, name, table)
        for login, positions in self.positions.items():
            for p in positions.values():
                self._expose(login, p, +1)
        for changes in records:
            self._apply(changes)
        for login in self.positions:
            for p in self.positions[login].values():
                self._arm(login, "pos", p)
        for login in self.orders:
            for o in self.orders[login].values():
                self._arm(login, "order", o)
        fresh = not self.meta
        if fresh:
            origin = self.config.tick_origin_ms or self.clock() - 3600 * 1000  # an hour of history for copy_* calls
            self.meta = {"next_ticket": self.config.first_ticket, "tick_origin_ms": origin}
        for login in list(self.accounts):
            for name in ("orders", "positions", "deals"):
                getattr(self, name).setdefault(login, {})
        self.journal.compact(self._state())
        changes: list = []
        for spec in self.config.accounts:
            if spec.login not in self.accounts:
                self._open_account(spec, changes)
        if changes:
            self._commit(changes)

    def _state(self) -> dict:
        return {
            "meta": self.meta,
            "accounts": self.accounts,
            "orders": self.orders,
            "positions": self.positions,
            "deals": self.deals,
        }

    def _apply(self, changes: list) -> None:
        self._ledger_version = getattr(self, "_ledger_version", 0) + 1   # what _history_times' cache is keyed on
        for kind, key, value in changes:
            if kind == "meta":
                self.meta[key] = value
            elif kind == "acct":
                self.accounts[key] = value
                for name in ("orders", "positions", "deals"):
                    getattr(self, name).setdefault(key, {})
            elif kind == "order":
                self.orders[key][value["ticket"]] = value
                self._arm(key, "order", value)
            elif kind == "pos":
                self._expose(key, self.positions[key].get(value["ticket"]), -1)
                self.positions[key][value["ticket"]] = value
                self._expose(key, value, +1)
                self._arm(key, "pos", value)
            elif kind == "pos_del":
                self._expose(key[0], self.positions[key[0]].pop(key[1], None), -1)
                self._armed.discard((key[0], "pos", key[1]))
            elif kind == "deal":
                self.deals[key][value["ticket"]] = value

    def _arm(self, login: int, kind: str, record: dict) -> None:
        key = (login, kind, record["ticket"])
        if kind == "pos":
            armed = bool(record["sl"] or record["tp"])
        else:
            armed = record["state"] == c.ORDER_STATE_PLACED and record["type"] in PENDING_TYPES
        if armed:
            self._armed.add(key)
        else:
            self._armed.discard(key)

    def _expose(self, login: int, position: dict | None, sign: int) -> None:
        if position is None:
            return
        sums = self.exposure.setdefault(login, {}).setdefault(position["symbol"], [0.0, 0.0, 0.0, 0.0])
        side = 0 if position["type"] == c.POSITION_TYPE_BUY else 2
        sums[side] += sign * position["volume"]
        sums[side + 1] += sign * position["volume"] * position["price_open"]

    def _commit(self, changes: list) -> None:
        self.journal.append(changes)
        self._apply(changes)

    def _ticket(self, changes: list) -> int:
        # tickets are allocated from the last pending meta change so one request can take several
        current = self.meta["next_ticket"]
        for kind, key, value in changes:
            if kind == "meta" and key == "next_ticket":
                current = value
        changes.append(("meta", "next_ticket", current + 1))
        return current

    def _open_account(self, spec, changes: list) -> None:
        account = {
            "login": spec.login, "password": spec.password, "name": spec.name, "margin_mode": spec.margin_mode,
            "balance": 0.0, "leverage": spec.leverage, "currency": spec.currency, "trade_mode": spec.trade_mode,
        }
        changes.append(("acct", spec.login, account))
        # the opening balance is a balance deal, as on a real server: balance == sum of deal profits
        ticket = self._ticket(changes)
        t = self.clock()
        deal = self._deal_record(ticket, 0, t, c.DEAL_TYPE_BALANCE, c.DEAL_ENTRY_IN, 0, 0, c.DEAL_REASON_CLIENT, 0.0,
                                 0.0, spec.balance, "", "initial deposit")
        changes.append(("deal", spec.login, deal))
        changes.append(("acct", spec.login, dict(account, balance=round(spec.balance, 2))))

    def close(self) -> None:
        self.journal.close()

    # -- prices ---------------------------------------------------------------------------------------------------
    def tick(self, symbol: str, at_ms: int | None = None) -> list:
        walk = self.walks[symbol]
        index = max(0, walk.index_at(self.clock() if at_ms is None else at_ms))
        return list(walk.tick(index))

    def _prices(self, symbol: str) -> tuple[float, float]:
        t = self.tick(symbol)
        return t[1], t[2]

    # -- session ----------------------------------------------------------------------------------------------------
    def authorize(self, login: int | None = None, password: str | None = None, server: str | None = None):
        """(login, OK) or (None, error): a passworded account needs its password (a missing one is -6, as on a
        real terminal); without a login, the first configured account."""
        for name, value, kind in (("login", login, int), ("password", password, str), ("server", server, str)):
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                return None, c.invalid_argument(name)
        if login is None:
            login = self.config.accounts[0].login
        account = self.accounts.get(login)
        if account is None:
            return None, c.ERR_AUTH_FAILED
        if account["password"] and not hmac.compare_digest((password or "").encode(), account["password"].encode()):
            return None, c.ERR_AUTH_FAILED
        if server is not None and server not in ("", self.config.server):
            return None, c.ERR_AUTH_FAILED
        return login, OK

    def version(self, login: int):
        return [500, BUILD, "20 Mar 2025"], OK

    def terminal_info(self, login: int):
        info = dict.fromkeys(TERMINAL_INFO_FIELDS, 0)
        info.update(
            community_account=False, community_connection=False, connected=True, dlls_allowed=False,
            trade_allowed=bool(self.behaviour.trade_allowed), tradeapi_disabled=False, email_enabled=False,
            ftp_enabled=False, notifications_enabled=False, mqid=False, build=BUILD, maxbars=100000, codepage=0,
            ping_last=100, community_balance=0.0, retransmission=0.0, company=self.config.company,
            name="TradeDrill MT5 simulator", language="English", path="/sim", data_path="/sim",
            commondata_path="/sim",
        )
        return _row(info, TERMINAL_INFO_FIELDS), OK

    def _floating(self, login: int) -> tuple[float, float]:
        """(floating profit, used margin) of the account, from the per-symbol exposure sums."""
        profit = margin = 0.0
        leverage = self.accounts[login]["leverage"]
        account_ccy = self.accounts[login]["currency"]
        for symbol, (buy_vol, buy_cost, sell_vol, sell_cost) in self.exposure.get(login, {}).items():
            if abs(buy_vol) < 1e-9 and abs(sell_vol) < 1e-9:
                continue
            spec = self.symbols[symbol]
            size = spec.contract_size
            bid, ask = self._prices(symbol)
            raw = size * (bid * buy_vol - buy_cost) + size * (sell_cost - ask * sell_vol)
            profit += raw * self._rate(spec.currency_profit, account_ccy)
            rate = self._margin_rate(spec, login, None)
            margin += size * ((buy_cost + sell_cost) if rate is None else (buy_vol + sell_vol) * rate) / leverage
        return round(profit, 2), round(margin, 2)

    def account_info(self, login: int):
        self.advance()
        a = self.accounts[login]
        profit, margin = self._floating(login)
        equity = round(a["balance"] + profit, 2)
        info = {
            "login": login, "trade_mode": a["trade_mode"], "leverage": a["leverage"], "limit_orders": 200,
            "margin_so_mode": c.ACCOUNT_STOPOUT_MODE_PERCENT, "trade_allowed": True, "trade_expert": True,
            "margin_mode": a["margin_mode"], "currency_digits": 2, "fifo_close": False, "balance": a["balance"],
            "credit": 0.0, "profit": profit, "equity": equity, "margin": margin,
            "margin_free": round(equity - margin, 2), "margin_level": round(equity / margin * 100, 2) if margin else 0.0,
            "margin_so_call": 50.0, "margin_so_so": 30.0, "margin_initial": 0.0, "margin_maintenance": 0.0,
            "assets": 0.0, "liabilities": 0.0, "commission_blocked": 0.0, "name": a["name"],
            "server": self.config.server, "currency": a["currency"], "company": self.config.company,
        }
        return _row(info, ACCOUNT_INFO_FIELDS), OK

    # -- symbols ----------------------------------------------------------------------------------------------------
    def symbols_total(self, login: int):
        return len(self.symbols), OK

    def _symbol_info(self, spec: SymbolSpec) -> list:
        t = self.tick(spec.name)
        info = dict.fromkeys(SYMBOL_INFO_FIELDS, 0)
        for name in SYMBOL_INFO_FIELDS:
            if name in ("bank", "category", "currency_margin", "exchange", "formula", "isin", "page", "basis"):
                info[name] = ""
        info.update(
            custom=False, chart_mode=c.SYMBOL_CHART_MODE_BID, select=True, visible=True, time=t[0],
            digits=spec.digits, spread=spec.spread, spread_float=False, trade_calc_mode=c.SYMBOL_CALC_MODE_FOREX,
            trade_mode=spec.trade_mode, trade_stops_level=spec.stops_level,
            trade_exemode=self._execution_mode(spec), swap_mode=c.SYMBOL_SWAP_MODE_POINTS,
            swap_rollover3days=c.DAY_OF_WEEK_WEDNESDAY,
            expiration_mode=c.SYMBOL_EXPIRATION_GTC | c.SYMBOL_EXPIRATION_DAY | c.SYMBOL_EXPIRATION_SPECIFIED
            | c.SYMBOL_EXPIRATION_SPECIFIED_DAY,
            filling_mode=spec.filling_mode, order_mode=127,
            order_gtc_mode=c.SYMBOL_ORDERS_GTC, bid=t[1], bidhigh=t[1], bidlow=t[1], ask=t[2], askhigh=t[2],
            asklow=t[2], last=0.0, lasthigh=0.0, lastlow=0.0, volume_real=0.0, volumehigh_real=0.0,
            volumelow_real=0.0, option_strike=0.0, point=spec.point, trade_tick_value=spec.contract_size * spec.point,
            trade_tick_value_profit=spec.contract_size * spec.point,
            trade_tick_value_loss=spec.contract_size * spec.point, trade_tick_size=spec.point,
            trade_contract_size=spec.contract_size, trade_accrued_interest=0.0, trade_face_value=0.0,
            trade_liquidity_rate=0.0, volume_min=spec.volume_min, volume_max=spec.volume_max,
            volume_step=spec.volume_step, volume_limit=0.0, swap_long=0.0, swap_short=0.0, margin_initial=0.0,
            margin_maintenance=0.0, margin_hedged=spec.contract_size, currency_base=spec.currency_base,
            currency_profit=spec.currency_profit, currency_margin=spec.currency_base,
            description=spec.description or spec.name, name=spec.name, path=spec.path or spec.name,
        )
        for name in SYMBOL_INFO_FIELDS:
            if info[name] == 0 and name.startswith(("session_", "price_")) or name in ("margin_hedged_use_leg",):
                info[name] = False if name == "margin_hedged_use_leg" else 0.0
        return _row(info, SYMBOL_INFO_FIELDS)

    def symbols_get(self, login: int, group: str | None = None):
        specs = [s for s in self.symbols.values() if group is None or group_matches(s.name, group)]
        return [self._symbol_info(s) for s in specs], OK

    def symbol_info(self, login: int, symbol: str):
        spec = self.symbols.get(symbol)
        if spec is None:
            return None, c.ERR_NOT_FOUND
        return self._symbol_info(spec), OK

    def symbol_info_tick(self, login: int, symbol: str):
        if symbol not in self.symbols:
            return None, c.ERR_NOT_FOUND
        return self.tick(symbol), OK

    def symbol_select(self, login: int, symbol: str, enable: bool = True):
        if symbol not in self.symbols:
            return False, c.ERR_NOT_FOUND
        return True, OK

    # -- history of prices ----------------------------------------------------------------------------------------
    def copy_ticks_from(self, login: int, symbol: str, date_from: int, count: int, flags: int):
        if symbol not in self.symbols:
            return None, c.ERR_NOT_FOUND
        walk = self.walks[symbol]
        current = walk.index_at(self.clock())
        first = max(0, -(-(date_from * 1000 - walk.origin_ms) // walk.step_ms))
        last = min(current, first + count - 1)
        return walk.ticks(first, last), OK

    def copy_ticks_range(self, login: int, symbol: str, date_from: int, date_to: int, flags: int):
        if symbol not in self.symbols:
            return None, c.ERR_NOT_FOUND
        walk = self.walks[symbol]
        current = walk.index_at(self.clock())
        first = max(0, -(-(date_from * 1000 - walk.origin_ms) // walk.step_ms))
        last = min(current, walk.index_at(date_to * 1000))
        return walk.ticks(first, last), OK

    def _rates(self, symbol: str, timeframe: int):
        walk = self.walks[symbol]
        ticks = walk.ticks(0, walk.index_at(self.clock()))
        return rates_from_ticks(ticks, timeframe, self.symbols[symbol].spread)

    def _rates_check(self, symbol: str, timeframe: int):
        if symbol not in self.symbols:
            return c.ERR_NOT_FOUND
        if not valid_timeframe(timeframe):
            return c.invalid_argument("timeframe")
        return None

    def copy_rates_from(self, login: int, symbol: str, timeframe: int, date_from: int, count: int):
        error = self._rates_check(symbol, timeframe)
        if error:
            return None, error
        rates = self._rates(symbol, timeframe)
        rates = rates[rates["time"] <= date_from]
        return rates[max(0, len(rates) - count):], OK

    def copy_rates_from_pos(self, login: int, symbol: str, timeframe: int, start_pos: int, count: int):
        error = self._rates_check(symbol, timeframe)
        if error:
            return None, error
        rates = self._rates(symbol, timeframe)
        end = len(rates) - start_pos
        return rates[max(0, end - count):max(0, end)], OK

    def copy_rates_range(self, login: int, symbol: str, timeframe: int, date_from: int, date_to: int):
        error = self._rates_check(symbol, timeframe)
        if error:
            return None, error
        rates = self._rates(symbol, timeframe)
        return rates[(rates["time"] >= date_from) & (rates["time"] <= date_to)], OK

    # -- queries ----------------------------------------------------------------------------------------------------
    def _refresh_position(self, p: dict) -> None:
        bid, ask = self._prices(p["symbol"])
        spec = self.symbols[p["symbol"]]
        current = bid if p["type"] == c.POSITION_TYPE_BUY else ask
        sign = 1 if p["type"] == c.POSITION_TYPE_BUY else -1
        p["price_current"] = current
        p["profit"] = round(self._convert_profit(p["login"], sign * (current - p["price_open"]) * p["volume"]
                                                 * spec.contract_size, spec), 2)

    def _convert_profit(self, login: int, amount: float, spec: SymbolSpec) -> float:
        return amount * self._rate(spec.currency_profit, self.accounts[login]["currency"])

    @staticmethod
    def _filter(rows, symbol, group, ticket):
        if ticket is not None:
            return [r for r in rows if r["ticket"] == ticket]
        if symbol is not None:
            return [r for r in rows if r["symbol"] == symbol]
        if group is not None:
            return [r for r in rows if group_matches(r["symbol"], group)]
        return list(rows)

    def positions_total(self, login: int):
        self.advance()
        return len(self.positions[login]), OK

    def positions_get(self, login: int, symbol=None, group=None, ticket=None):
        self.advance()
        rows = [dict(p, login=login) for p in self._filter(self.positions[login].values(), symbol, group, ticket)]
        for p in rows:  # on copies: price_current and profit are quotes, not state
            self._refresh_position(p)
        return [_row(p, TRADE_POSITION_FIELDS) for p in sorted(rows, key=lambda r: r["ticket"])], OK

    def _active_orders(self, login: int):
        return [o for o in self.orders[login].values() if o["state"] == c.ORDER_STATE_PLACED]

    def orders_total(self, login: int):
        self.advance()
        return len(self._active_orders(login)), OK

    def orders_get(self, login: int, symbol=None, group=None, ticket=None):
        self.advance()
        rows = [dict(o) for o in self._filter(self._active_orders(login), symbol, group, ticket)]
        for o in rows:
            bid, ask = self._prices(o["symbol"])
            o["price_current"] = ask if o["type"] % 2 == 0 else bid
        return [_row(o, TRADE_ORDER_FIELDS) for o in sorted(rows, key=lambda r: r["ticket"])], OK

    def history_orders_total(self, login: int, date_from: int, date_to: int):
        # counted by bisection of a sorted index of the history's times (``_history_times``), not by building the
        # rows: the engine counts a window before it reads it (its scan reads a long history in pieces), and a count
        # that cost a whole read made a 9,000-signal scan 2.5 s instead of 0.4 s
        self.advance()
        return self._count_between(self._history_times(login, "orders"), date_from, date_to), OK

    def history_orders_get(self, login: int, date_from=None, date_to=None, group=None, ticket=None, position=None):
        self.advance()
        history = [o for o in self.orders[login].values() if o["state"] != c.ORDER_STATE_PLACED]
        rows = _history_form(history, "ticket", "time_setup", date_from, date_to, group, ticket, position)
        return [_row(o, TRADE_ORDER_FIELDS) for o in rows], OK

    def history_deals_total(self, login: int, date_from: int, date_to: int):
        self.advance()
        return self._count_between(self._history_times(login, "deals"), date_from, date_to), OK

    def _history_times(self, login: int, which: str) -> list:
        """The sorted times of the history orders (``time_setup``, every state but placed) or deals (``time``) of
        ``login``, rebuilt after any change of the ledger (``_apply``)."""
        cache = self.__dict__.setdefault("_history_time_index", {})
        version = getattr(self, "_ledger_version", 0)
        hit = cache.get((login, which))
        if hit is None or hit[0] != version:
            if which == "orders":
                times = sorted(o["time_setup"] for o in self.orders[login].values()
                               if o["state"] != c.ORDER_STATE_PLACED)
            else:
                times = sorted(d["time"] for d in self.deals[login].values())
            hit = cache[(login, which)] = (version, times)
        return hit[1]

    @staticmethod
    def _count_between(times: list, date_from: int, date_to: int) -> int:
        return max(0, bisect.bisect_right(times, date_to) - bisect.bisect_left(times, date_from))

    def history_deals_get(self, login: int, date_from=None, date_to=None, group=None, ticket=None, position=None):
        # ticket= is an ORDER ticket here: the deals that order produced
        self.advance()
        rows = _history_form(self.deals[login].values(), "order", "time", date_from, date_to, group, ticket, position)
        return [_row(d, TRADE_DEAL_FIELDS) for d in rows], OK

    # -- trading ------------------------------------------------------------------------------------------------------
    def _margin(self, symbol: str, volume: float, price: float, login: int) -> float:
        spec = self.symbols[symbol]
        return volume * spec.contract_size * self._margin_rate(spec, login, price) / self.accounts[login]["leverage"]

    def _market_open(self, symbol: str, at_ms: int | None = None) -> bool:
        """Whether ``symbol`` trades at ``at_ms`` (now): not a holiday of it (or of "*"), inside a session window."""
        t = time.gmtime((self.clock() if at_ms is None else at_ms) / 1000)
        holidays = self.behaviour.holidays
        if holidays:
            date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            if date in holidays.get(symbol, ()) or date in holidays.get("*", ()):
                return False
        windows = self.behaviour.sessions.get(symbol)
        if windows is None:
            return True
        minute = t.tm_hour * 60 + t.tm_min
        return any(t.tm_wday in days and start <= minute < end for days, start, end in session_windows(windows))

    def _sessions_apply(self, symbol: str) -> bool:
        return symbol in self.behaviour.sessions or symbol in self.behaviour.holidays or "*" in self.behaviour.holidays

    # -- money ---------------------------------------------------------------------------------------------------------
    def _rate(self, src: str, dst: str, depth: int = 0) -> float:
        """How much ``dst`` one ``src`` is worth now: a pair SRCDST at its bid, a pair DSTSRC at 1/ask, else
        through USD. A configuration where no pair links them is refused when the broker starts
        (``SimConfig.check_rates``)."""
        if not src or not dst or src == dst:
            return 1.0
        for spec in self.symbols.values():
            if spec.currency_base == src and spec.currency_profit == dst:
                return self._prices(spec.name)[0]
            if spec.currency_base == dst and spec.currency_profit == src:
                return 1.0 / self._prices(spec.name)[1]
        if depth == 0 and "USD" not in (src, dst):
            return self._rate(src, "USD", 1) * self._rate("USD", dst, 1)
        return 1.0

    def _to_account(self, login: int, amount: float, currency: str) -> float:
        """``amount`` of ``currency`` in the account's currency, to the cent."""
        return round(amount * self._rate(currency, self.accounts[login]["currency"]), 2)

    def _margin_rate(self, spec: SymbolSpec, login: int, price: float | None) -> float | None:
        """Account currency per unit of the symbol's margin currency; None: the symbol quotes its base in the
        account currency, so the margin is taken at the position's own price (``price`` when given)."""
        margin_ccy = spec.currency_margin or spec.currency_base or spec.currency_profit
        account_ccy = self.accounts[login]["currency"]
        if margin_ccy == account_ccy:
            return 1.0
        if margin_ccy == spec.currency_base and spec.currency_profit == account_ccy:
            return price
        return self._rate(margin_ccy, account_ccy)

    def _throttled(self) -> bool:
        if self.dice.roll(self.behaviour.too_many_requests_rate):
            return True
        limit = self.behaviour.max_orders_per_second
        if limit > 0:
            now = time.monotonic()
            self._order_times = [t for t in self._order_times if now - t < 1.0]
            if len(self._order_times) >= limit:
                return True
            self._order_times.append(now)
        return False

    def _check_volume(self, spec: SymbolSpec, volume: float) -> None:
        steps = volume / spec.volume_step
        if volume < spec.volume_min - 1e-9 or volume > spec.volume_max + 1e-9 or abs(steps - round(steps)) > 1e-6:
            raise TradeResult(c.TRADE_RETCODE_INVALID_VOLUME)

    @staticmethod
    def _check_filling(spec: SymbolSpec, order_type: int, filling: int) -> None:
        """TRADE_RETCODE_INVALID_FILL unless the symbol allows the filling policy: FOK and IOC need their bit in
        ``filling_mode``; RETURN is always allowed (market execution); BOC and anything else never."""
        allowed = {c.ORDER_FILLING_RETURN}
        if spec.filling_mode & c.SYMBOL_FILLING_FOK:
            allowed.add(c.ORDER_FILLING_FOK)
        if spec.filling_mode & c.SYMBOL_FILLING_IOC:
            allowed.add(c.ORDER_FILLING_IOC)
        if filling not in allowed:
            raise TradeResult(c.TRADE_RETCODE_INVALID_FILL)

    @staticmethod
    def _check_stops(spec: SymbolSpec, buy: bool, reference: float, sl: float, tp: float) -> None:
        """TRADE_RETCODE_INVALID_STOPS for a stop loss or take profit on the wrong side of ``reference`` (the bid
        for a buy position, the ask for a sell one, the order price for a pending order), or nearer to it than
        the symbol's ``stops_level`` points."""
        distance = spec.stops_level * spec.point - 1e-9 * max(1.0, reference)
        if buy:
            bad = (sl and (sl >= reference or reference - sl < distance)) or \
                  (tp and (tp <= reference or tp - reference < distance))
        else:
            bad = (sl and (sl <= reference or sl - reference < distance)) or \
                  (tp and (tp >= reference or reference - tp < distance))
        if bad or sl < 0 or tp < 0:
            raise TradeResult(c.TRADE_RETCODE_INVALID_STOPS)

    @staticmethod
    def _order_record(ticket, t, req, state, volume_initial, volume_current, price, position_id, symbol) -> dict:
        return {
            "ticket": ticket, "time_setup": t // 1000, "time_setup_msc": t,
            "time_done": t // 1000 if state != c.ORDER_STATE_PLACED else 0,
            "time_done_msc": t if state != c.ORDER_STATE_PLACED else 0, "time_expiration": req["expiration"],
            "type": req["type"], "type_time": req["type_time"], "type_filling": req["type_filling"], "state": state,
            "magic": req["magic"], "position_id": position_id, "position_by_id": 0, "reason": c.ORDER_REASON_EXPERT,
            "volume_initial": volume_initial, "volume_current": volume_current, "price_open": price,
            "sl": req["sl"], "tp": req["tp"], "price_current": price, "price_stoplimit": req["stoplimit"],
            "symbol": symbol, "comment": req["comment"], "external_id": "",
        }

    @staticmethod
    def _deal_record(ticket, order, t, dtype, entry, magic, position_id, reason, volume, price, profit, symbol,
                     comment) -> dict:
        return {
            "ticket": ticket, "order": order, "time": t // 1000, "time_msc": t, "type": dtype, "entry": entry,
            "magic": magic, "position_id": position_id, "reason": reason, "volume": volume, "price": price,
            "commission": 0.0, "swap": 0.0, "profit": profit, "fee": 0.0, "symbol": symbol, "comment": comment,
            "external_id": "",
        }

    def _result(self, retcode: int, req: dict, deal=0, order=0, volume=0.0, price=0.0, bid=0.0, ask=0.0,
                comment=None) -> list:
        self.request_id += 1
        request = [req[f] for f in TRADE_REQUEST_FIELDS]
        return [retcode, deal, order, volume, price, bid, ask,
                comment if comment is not None else c.RETCODE_COMMENTS.get(retcode, ""), self.request_id, 0, request]

    def order_send(self, login: int, request: dict):
        parsed, error = parse_request(request)  # again here: a peer may bypass the client's parsing
        if error is not None:
            return None, error
        req = dict(REQUEST_DEFAULTS)
        req.update(parsed)
        if len(req["comment"]) > self.behaviour.comment_limit:
            return None, c.invalid_argument("comment")
        if req["symbol"] and req["symbol"] not in self.symbols:
            return None, c.ERR_NOT_FOUND
        self.advance()
        bid, ask = self._prices(req["symbol"]) if req["symbol"] else (0.0, 0.0)
        if self._throttled():
            return self._result(c.TRADE_RETCODE_TOO_MANY_REQUESTS, req, bid=bid, ask=ask), OK
        if not self.behaviour.trade_allowed:
            return self._result(c.TRADE_RETCODE_CLIENT_DISABLES_AT, req), OK
        fault = next((f for f in self.behaviour.retcode_faults if self.dice.roll(f.get("rate", 0.0))), None)
        if fault is not None and not fault.get("executed", False):
            return self._result(int(fault["retcode"]), req, bid=bid, ask=ask), OK
        handler = {
            c.TRADE_ACTION_DEAL: self._deal,
            c.TRADE_ACTION_PENDING: self._pending,
            c.TRADE_ACTION_SLTP: self._sltp,
            c.TRADE_ACTION_MODIFY: self._modify,
            c.TRADE_ACTION_REMOVE: self._remove,
            c.TRADE_ACTION_CLOSE_BY: self._close_by,
        }.get(req["action"])
        if handler is None:
            return self._result(c.TRADE_RETCODE_INVALID, req), OK
        try:
            result = handler(login, req, bid, ask)
        except TradeResult as outcome:
            bid, ask = outcome.prices or (bid, ask)
            return self._result(outcome.retcode, req, bid=bid, ask=ask), OK
        if fault is not None:  # executed, but the terminal is told something ambiguous
            result[0] = int(fault["retcode"])
            result[7] = c.RETCODE_COMMENTS.get(result[0], "")
        return result, OK

    def _calc_args(self, action, symbol, volume, prices) -> tuple | None:
        """ERR_* for order_calc_*'s arguments, or None: a BUY/SELL action, a known symbol, a positive volume and
        positive finite prices."""
        def number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        if not isinstance(action, int) or isinstance(action, bool) or action not in MARKET_TYPES:
            return c.invalid_argument("action")
        if not isinstance(symbol, str):
            return c.invalid_argument("symbol")
        if symbol not in self.symbols:
            return c.ERR_NOT_FOUND
        if not number(volume) or volume <= 0:
            return c.invalid_argument("volume")
        if not all(number(p) and p > 0 for p in prices):
            return c.invalid_argument("price")
        return None

    def order_calc_margin(self, login: int, action, symbol, volume, price):
        """MetaQuotes' ``order_calc_margin(action, symbol, volume, price)``: the margin of ``volume`` lots of
        ``symbol`` bought (ORDER_TYPE_BUY) or sold at ``price``, in the account currency; None and the error for a
        wrong argument."""
        error = self._calc_args(action, symbol, volume, (price,))
        if error is not None:
            return None, error
        self.advance()
        return round(self._margin(symbol, float(volume), float(price), login), 2), OK

    def order_calc_profit(self, login: int, action, symbol, volume, price_open, price_close):
        """MetaQuotes' ``order_calc_profit(action, symbol, volume, price_open, price_close)``: the profit of a
        ``volume``-lot buy (ORDER_TYPE_BUY) or sell of ``symbol`` from ``price_open`` to ``price_close``, in the
        account currency at the current cross rates (as the broker books it); None and the error for a wrong
        argument."""
        error = self._calc_args(action, symbol, volume, (price_open, price_close))
        if error is not None:
            return None, error
        self.advance()
        spec = self.symbols[symbol]
        sign = 1 if action == c.ORDER_TYPE_BUY else -1
        raw = sign * (float(price_close) - float(price_open)) * float(volume) * spec.contract_size
        return round(self._convert_profit(login, raw, spec), 2), OK

    def order_check(self, login: int, request: dict):
        parsed, error = parse_request(request)  # again here: a peer may bypass the client's parsing
        if error is not None:
            return None, error
        req = dict(REQUEST_DEFAULTS)
        req.update(parsed)
        if len(req["comment"]) > self.behaviour.comment_limit:
            return None, c.invalid_argument("comment")
        if req["symbol"] and req["symbol"] not in self.symbols:
            return None, c.ERR_NOT_FOUND
        self.advance()
        account = self.accounts[login]
        profit, margin = self._floating(login)
        equity = round(account["balance"] + profit, 2)
        retcode, comment, need = 0, "Done", 0.0
        try:
            if not self.behaviour.trade_allowed:
                raise TradeResult(c.TRADE_RETCODE_CLIENT_DISABLES_AT)
            if req["action"] in (c.TRADE_ACTION_DEAL, c.TRADE_ACTION_PENDING):
                spec = self.symbols.get(req["symbol"])
                if spec is None:
                    raise TradeResult(c.TRADE_RETCODE_INVALID)
                self._check_volume(spec, req["volume"])
                self._check_filling(spec, req["type"], req["type_filling"])
                bid, ask = self._prices(spec.name)
                buy = req["type"] % 2 == 0
                if req["action"] == c.TRADE_ACTION_DEAL:
                    self._check_stops(spec, buy, bid if buy else ask, req["sl"], req["tp"])
                elif req["price"] > 0:
                    self._check_stops(spec, buy, req["price"], req["sl"], req["tp"])
                if not self._market_open(spec.name):
                    raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
                price = req["price"] or (ask if buy else bid)
                need = self._margin(spec.name, req["volume"], price, login)
                if self.behaviour.margin_check and need > equity - margin:
                    raise TradeResult(c.TRADE_RETCODE_NO_MONEY)
        except TradeResult as outcome:
            retcode, comment = outcome.retcode, c.RETCODE_COMMENTS.get(outcome.retcode, "")
        total = round(margin + need, 2)
        request = [req[f] for f in TRADE_REQUEST_FIELDS]
        return [retcode, account["balance"], equity, profit, total, round(equity - total, 2),
                round(equity / total * 100, 2) if total else 0.0, comment, request], OK

    def _execution_mode(self, spec: SymbolSpec) -> int:
        mode = self.behaviour.execution_modes.get(spec.name)
        return EXECUTION_MODES[mode] if mode is not None else spec.execution_mode

    def _deal(self, login: int, req: dict, bid: float, ask: float) -> list:
        spec = self.symbols.get(req["symbol"])
        if spec is None:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        if req["type"] not in MARKET_TYPES:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        self._check_volume(spec, req["volume"])
        self._check_filling(spec, req["type"], req["type_filling"])
        buy = req["type"] == c.ORDER_TYPE_BUY
        self._check_stops(spec, buy, bid if buy else ask, req["sl"], req["tp"])
        if spec.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise TradeResult(c.TRADE_RETCODE_TRADE_DISABLED)
        if not self._market_open(spec.name):
            raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
        for rate, retcode in ((self.behaviour.requote_rate, c.TRADE_RETCODE_REQUOTE),
                              (self.behaviour.price_changed_rate, c.TRADE_RETCODE_PRICE_CHANGED)):
            if self.dice.roll(rate):
                if self.behaviour.requote_points <= 0:
                    raise TradeResult(retcode)
                # the market moved between the terminal's quote and this send: the deviation decides below
                move = self.behaviour.requote_points * spec.point * (1 if self.dice.roll(0.5) else -1)
                bid, ask = round(bid + move, spec.digits), round(ask + move, spec.digits)
                break
        price = ask if buy else bid
        mode = self._execution_mode(spec)
        if req["price"] > 0 and mode in (c.SYMBOL_TRADE_EXECUTION_INSTANT, c.SYMBOL_TRADE_EXECUTION_REQUEST) and \
                abs(price - req["price"]) > req["deviation"] * spec.point + spec.point / 10:
            raise TradeResult(c.TRADE_RETCODE_REQUOTE if mode == c.SYMBOL_TRADE_EXECUTION_INSTANT
                              else c.TRADE_RETCODE_PRICE_OFF, bid, ask)
        account = self.accounts[login]
        netting = account["margin_mode"] != c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
        positions = self.positions[login]
        target = None
        if req["position"]:
            target = positions.get(req["position"])
            if target is None or target["symbol"] != spec.name:
                raise TradeResult(c.TRADE_RETCODE_POSITION_CLOSED)
            if (target["type"] == c.POSITION_TYPE_BUY) == buy:
                raise TradeResult(c.TRADE_RETCODE_INVALID)
            if req["volume"] > target["volume"] + 1e-9:
                raise TradeResult(c.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
        elif netting:
            target = next((p for p in positions.values() if p["symbol"] == spec.name), None)

        volume = req["volume"]
        retcode = c.TRADE_RETCODE_DONE
        if req["type_filling"] != c.ORDER_FILLING_FOK and self.dice.roll(self.behaviour.partial_fill_rate):
            part = math.floor(volume * self.behaviour.partial_fill_ratio / spec.volume_step + 1e-9) * spec.volume_step
            part = round(part, 8)
            if spec.volume_min - 1e-9 <= part < volume - 1e-9:
                volume, retcode = part, c.TRADE_RETCODE_DONE_PARTIAL

        if not self._margin_ok(login, spec, buy, volume, price, target):
            raise TradeResult(c.TRADE_RETCODE_NO_MONEY)

        changes: list = []
        t = self.clock()
        order_ticket = self._ticket(changes)
        deal_ticket, position_id = self._book(login, spec, buy, volume, price, t, changes, order_ticket, target,
                                              req, c.DEAL_REASON_EXPERT)
        remaining = round(req["volume"] - volume, 8)
        changes.append(("order", login, self._order_record(
            order_ticket, t, req, c.ORDER_STATE_FILLED, req["volume"], remaining, price, position_id, spec.name)))
        self._commit(changes)
        return self._result(retcode, req, deal=deal_ticket, order=order_ticket, volume=volume, price=price,
                            bid=bid, ask=ask)

    def _margin_ok(self, login: int, spec: SymbolSpec, buy: bool, volume: float, price: float, target) -> bool:
        opening = volume
        if target is not None and (target["type"] == c.POSITION_TYPE_BUY) != buy:
            opening = max(0.0, volume - target["volume"])
        if opening > 0 and self.behaviour.margin_check:
            profit, used = self._floating(login)
            free = self.accounts[login]["balance"] + profit - used
            return self._margin(spec.name, opening, price, login) <= free
        return True

    def _book(self, login: int, spec: SymbolSpec, buy: bool, volume: float, price: float, t: int, changes: list,
              order_ticket: int, target: dict | None, req: dict, reason: int) -> tuple[int, int]:
        """The deal of a fill of ``volume`` at ``price`` and what it does to the positions (a new one whose ticket
        and identifier are the order's, added to, reduced, closed or reversed) and the balance, appended to
        ``changes``; (deal ticket, position id)."""
        account = self.accounts[login]
        deal_ticket = self._ticket(changes)
        dtype = c.DEAL_TYPE_BUY if buy else c.DEAL_TYPE_SELL
        ptype = c.POSITION_TYPE_BUY if buy else c.POSITION_TYPE_SELL
        profit = 0.0
        if target is None:
            entry, position_id = c.DEAL_ENTRY_IN, order_ticket
            changes.append(("pos", login, {
                "ticket": order_ticket, "time": t // 1000, "time_msc": t, "time_update": t // 1000,
                "time_update_msc": t, "type": ptype, "magic": req["magic"], "identifier": order_ticket,
                "reason": c.POSITION_REASON_EXPERT, "volume": volume, "price_open": price, "sl": req["sl"],
                "tp": req["tp"], "price_current": price, "swap": 0.0, "profit": 0.0, "symbol": spec.name,
                "comment": req["comment"], "external_id": "",
            }))
        else:
            position_id = target["identifier"]
            updated = dict(target, time_update=t // 1000, time_update_msc=t)
            if target["type"] == ptype:  # netting: add to the position at the average price
                entry = c.DEAL_ENTRY_IN
                total = round(target["volume"] + volume, 8)
                updated["price_open"] = round((target["price_open"] * target["volume"] + price * volume) / total,
                                              spec.digits + 3)
                updated["volume"] = total
                changes.append(("pos", login, updated))
            else:
                closed = min(volume, target["volume"])
                sign = 1 if target["type"] == c.POSITION_TYPE_BUY else -1
                profit = round(self._convert_profit(login, sign * (price - target["price_open"]) * closed
                                                    * spec.contract_size, spec), 2)
                rest = round(target["volume"] - volume, 8)
                if rest > 1e-9:
                    entry = c.DEAL_ENTRY_OUT
                    updated["volume"] = rest
                    changes.append(("pos", login, updated))
                elif rest < -1e-9:  # netting reversal
                    entry = c.DEAL_ENTRY_INOUT
                    updated.update(type=ptype, volume=-rest, price_open=price, sl=0.0, tp=0.0)
                    changes.append(("pos", login, updated))
                else:
                    entry = c.DEAL_ENTRY_OUT
                    changes.append(("pos_del", (login, target["ticket"]), None))
        changes.append(("deal", login, self._deal_record(
            deal_ticket, order_ticket, t, dtype, entry, req["magic"], position_id, reason, volume, price, profit,
            spec.name, req["comment"])))
        if profit:
            changes.append(("acct", login, dict(account, balance=round(account["balance"] + profit, 2))))
        return deal_ticket, position_id

    # -- the price walk acts ---------------------------------------------------------------------------------------
    def advance(self) -> int:
        """Apply what the price walk did since the last look, in time order, each event journaled (one commit per
        event): SL/TP hits, pending fills, STOP_LIMIT turning LIMIT, expirations, then a stop-out. Deterministic
        from the seed and the book: a restart looks again from each item's arming time and finds the same ticks.
        Returns the number of events applied."""
        now = self.clock()
        applied = 0
        for _ in range(100_000):  # bounded: every event removes or changes one armed item
            event = self._next_event(now)
            if event is None:
                break
            self._fire(*event)
            applied += 1
        for symbol, walk in self.walks.items():
            self._scanned[symbol] = walk.index_at(now)
        if self.behaviour.margin_check:
            applied += self._stop_out(now)
        return applied

    @staticmethod
    def _expiry_ms(o: dict) -> int | None:
        kind = o["type_time"]
        if kind == c.ORDER_TIME_SPECIFIED and o["time_expiration"]:
            return o["time_expiration"] * 1000
        if kind == c.ORDER_TIME_DAY:  # the end of the (server, UTC) day it was placed
            return (o["time_setup_msc"] // 86_400_000 + 1) * 86_400_000
        if kind == c.ORDER_TIME_SPECIFIED_DAY and o["time_expiration"]:
            return (o["time_expiration"] // 86_400 + 1) * 86_400_000
        return None

    def _next_event(self, now: int):
        """(time_msc, ticket, what, login, record, tick or None) of the earliest event before ``now``, or None."""
        best = None
        for login, kind, ticket in self._armed:
            rec = (self.positions if kind == "pos" else self.orders)[login].get(ticket)
            if rec is None:
                continue
            walk = self.walks[rec["symbol"]]
            armed_ms = rec["time_update_msc"] if kind == "pos" else rec.get("armed_msc", rec["time_setup_msc"])
            first = max(walk.index_at(armed_ms) + 1, self._scanned.get(rec["symbol"], -1) + 1, 0)
            last = walk.index_at(now)
            found = None
            expiry = self._expiry_ms(rec) if kind == "order" else None
            if expiry is not None and expiry <= now:
                found = (expiry, ticket, "expire", login, rec, None)
                last = min(last, walk.index_at(expiry - 1))
            if last >= first:
                hit = self._first_hit(kind, rec, walk.ticks(first, last))
                if hit is not None:
                    found = (int(hit[1]["time_msc"]), ticket, hit[0], login, rec, hit[1])
            if found is not None and (best is None or found[:2] < best[:2]):
                best = found
        return best

    def _first_hit(self, kind: str, rec: dict, ticks):
        """(what, tick) of the first tick of ``ticks`` that triggers ``rec``, or None."""
        bid, ask = ticks["bid"], ticks["ask"]
        eps = self.symbols[rec["symbol"]].point / 10
        if kind == "pos":
            buy = rec["type"] == c.POSITION_TYPE_BUY
            masks = []
            if rec["sl"]:
                masks.append(("sl", bid <= rec["sl"] + eps if buy else ask >= rec["sl"] - eps))
            if rec["tp"]:
                masks.append(("tp", bid >= rec["tp"] - eps if buy else ask <= rec["tp"] + eps))
        else:
            price, otype = rec["price_open"], rec["type"]
            mask = {c.ORDER_TYPE_BUY_LIMIT: ask <= price + eps, c.ORDER_TYPE_SELL_LIMIT: bid >= price - eps,
                    c.ORDER_TYPE_BUY_STOP: ask >= price - eps, c.ORDER_TYPE_SELL_STOP: bid <= price + eps,
                    c.ORDER_TYPE_BUY_STOP_LIMIT: ask >= price - eps,
                    c.ORDER_TYPE_SELL_STOP_LIMIT: bid <= price + eps}[otype]
            masks = [("stoplimit" if otype >= c.ORDER_TYPE_BUY_STOP_LIMIT else "fill", mask)]
        if self._sessions_apply(rec["symbol"]):
            open_ = np.array([self._market_open(rec["symbol"], int(ms)) for ms in ticks["time_msc"]], dtype=bool)
            masks = [(what, m & open_) for what, m in masks]
        best = None
        for what, m in masks:  # SL before TP on the same tick
            if m.any():
                i = int(np.argmax(m))
                if best is None or i < best[0]:
                    best = (i, what)
        return None if best is None else (best[1], ticks[best[0]])

    def _fire(self, t: int, ticket: int, what: str, login: int, rec: dict, tick) -> None:
        changes: list = []
        spec = self.symbols[rec["symbol"]]
        if what == "expire":
            changes.append(("order", login, dict(rec, state=c.ORDER_STATE_EXPIRED, time_done=t // 1000,
                                                 time_done_msc=t)))
        elif what == "stoplimit":  # the stop price was reached: the order becomes the limit at its stoplimit price
            limit = c.ORDER_TYPE_BUY_LIMIT if rec["type"] == c.ORDER_TYPE_BUY_STOP_LIMIT else c.ORDER_TYPE_SELL_LIMIT
            changes.append(("order", login, dict(rec, type=limit, price_open=rec["price_stoplimit"],
                                                 price_stoplimit=0.0, armed_msc=t)))
        elif what == "fill":
            buy = rec["type"] % 2 == 0
            limit = rec["type"] in (c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT)
            price = rec["price_open"] if limit else float(tick["ask"] if buy else tick["bid"])
            positions = self.positions[login]
            target = None
            if self.accounts[login]["margin_mode"] != c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
                target = next((p for p in positions.values() if p["symbol"] == spec.name), None)
            volume = rec["volume_current"]
            if not self._margin_ok(login, spec, buy, volume, price, target):
                changes.append(("order", login, dict(rec, state=c.ORDER_STATE_REJECTED, time_done=t // 1000,
                                                     time_done_msc=t)))
            else:
                req = {"magic": rec["magic"], "sl": rec["sl"], "tp": rec["tp"], "comment": rec["comment"]}
                _deal, position_id = self._book(login, spec, buy, volume, price, t, changes, rec["ticket"], target,
                                                req, c.DEAL_REASON_EXPERT)
                changes.append(("order", login, dict(rec, state=c.ORDER_STATE_FILLED, time_done=t // 1000,
                                                     time_done_msc=t, volume_current=0.0, price_current=price,
                                                     position_id=position_id)))
        else:  # "sl" / "tp": the position is closed whole by the server
            buy = rec["type"] == c.POSITION_TYPE_BUY
            price = rec["tp"] if what == "tp" else float(tick["bid"] if buy else tick["ask"])
            self._server_close(login, rec, price, t, what, changes, level=rec[what])
        self._commit(changes)

    def _server_close(self, login: int, p: dict, price: float, t: int, what: str, changes: list,
                      level: float | None = None) -> None:
        """Close position ``p`` whole at ``price`` on the server's own initiative (SL, TP, stop-out): an order and
        a deal of that reason, comment ``[sl 1.08450]`` as MT5 writes it: the SL/TP ``level`` that triggered, not
        the fill price (a stop fills at the first tick through it, often beyond the level)."""
        spec = self.symbols[p["symbol"]]
        buy = p["type"] == c.POSITION_TYPE_BUY
        reasons = {"sl": (c.ORDER_REASON_SL, c.DEAL_REASON_SL), "tp": (c.ORDER_REASON_TP, c.DEAL_REASON_TP),
                   "so": (c.ORDER_REASON_SO, c.DEAL_REASON_SO)}
        order_reason, deal_reason = reasons[what]
        comment = f"[{what} {(price if level is None else level):.{spec.digits}f}]"
        order_ticket = self._ticket(changes)
        req = dict(REQUEST_DEFAULTS, type=c.ORDER_TYPE_SELL if buy else c.ORDER_TYPE_BUY, magic=p["magic"],
                   comment=comment, sl=0.0, tp=0.0, position=p["ticket"], volume=p["volume"])
        _deal, position_id = self._book(login, spec, not buy, p["volume"], price, t, changes, order_ticket, p, req,
                                        deal_reason)
        order = self._order_record(order_ticket, t, req, c.ORDER_STATE_FILLED, p["volume"], 0.0, price, position_id,
                                   spec.name)
        order["reason"] = order_reason
        changes.append(("order", login, order))

    def _stop_out(self, now: int) -> int:
        """Close the biggest loser of every account whose margin level is under ``margin_so_so`` (30 %) until it is
        not; at the current prices."""
        closed = 0
        for login, positions in self.positions.items():
            for _ in range(len(positions)):
                if not positions:
                    break
                profit, margin = self._floating(login)
                equity = self.accounts[login]["balance"] + profit
                if margin <= 0 or equity / margin * 100 >= STOP_OUT_LEVEL:
                    break
                rows = [dict(p, login=login) for p in positions.values()]
                for p in rows:
                    self._refresh_position(p)
                worst = min(rows, key=lambda r: (r["profit"], r["ticket"]))
                changes: list = []
                self._server_close(login, positions[worst["ticket"]], worst["price_current"], now, "so", changes)
                self._commit(changes)
                closed += 1
        return closed

    @staticmethod
    def _check_pending_side(otype: int, price: float, stoplimit: float, bid: float, ask: float) -> None:
        """INVALID_PRICE (10015) for a pending order on the wrong side of the market, as MT5 answers: BUY_LIMIT
        above the ask, SELL_LIMIT below the bid, BUY_STOP (and BUY_STOP_LIMIT's stop) below the ask, SELL_STOP
        (and SELL_STOP_LIMIT's stop) above the bid; a STOP_LIMIT whose stoplimit is 0 or on the wrong side of its
        stop price (a buy limit above it, a sell limit below it)."""
        wrong = {c.ORDER_TYPE_BUY_LIMIT: price > ask, c.ORDER_TYPE_SELL_LIMIT: price < bid,
                 c.ORDER_TYPE_BUY_STOP: price < ask, c.ORDER_TYPE_SELL_STOP: price > bid,
                 c.ORDER_TYPE_BUY_STOP_LIMIT: price < ask or stoplimit <= 0 or stoplimit > price,
                 c.ORDER_TYPE_SELL_STOP_LIMIT: price > bid or stoplimit <= 0 or stoplimit < price}.get(otype, False)
        if wrong:
            raise TradeResult(c.TRADE_RETCODE_INVALID_PRICE)

    def _check_expiration(self, req: dict) -> None:
        """INVALID_EXPIRATION (10022): an unknown ``type_time``, or ORDER_TIME_SPECIFIED(_DAY) with no expiration
        (0) or one already past."""
        if req["type_time"] not in (c.ORDER_TIME_GTC, c.ORDER_TIME_DAY, c.ORDER_TIME_SPECIFIED,
                                    c.ORDER_TIME_SPECIFIED_DAY):
            raise TradeResult(c.TRADE_RETCODE_INVALID_EXPIRATION)
        if req["type_time"] in (c.ORDER_TIME_SPECIFIED, c.ORDER_TIME_SPECIFIED_DAY):
            expiry = self._expiry_ms({"type_time": req["type_time"], "time_expiration": req["expiration"],
                                      "time_setup_msc": 0})
            if expiry is None or expiry <= self.clock():
                raise TradeResult(c.TRADE_RETCODE_INVALID_EXPIRATION)

    def _pending(self, login: int, req: dict, bid: float, ask: float) -> list:
        spec = self.symbols.get(req["symbol"])
        if spec is None or req["type"] not in PENDING_TYPES:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        self._check_volume(spec, req["volume"])
        self._check_filling(spec, req["type"], req["type_filling"])
        if req["price"] <= 0:
            raise TradeResult(c.TRADE_RETCODE_INVALID_PRICE)
        self._check_pending_side(req["type"], req["price"], req["stoplimit"], bid, ask)
        stop_limit = req["type"] in (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT)
        reference = req["stoplimit"] if stop_limit and req["stoplimit"] > 0 else req["price"]
        self._check_stops(spec, req["type"] % 2 == 0, reference, req["sl"], req["tp"])
        if not self._market_open(spec.name):
            raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
        self._check_expiration(req)
        changes: list = []
        t = self.clock()
        ticket = self._ticket(changes)
        order = self._order_record(ticket, t, req, c.ORDER_STATE_PLACED, req["volume"], req["volume"], req["price"], 0,
                                   spec.name)
        order["armed_msc"] = t  # the price walk triggers it from the next tick on
        changes.append(("order", login, order))
        self._commit(changes)
        return self._result(c.TRADE_RETCODE_DONE, req, order=ticket, volume=req["volume"], price=req["price"],
                            bid=bid, ask=ask)

    def _sltp(self, login: int, req: dict, bid: float, ask: float) -> list:
        p = self.positions[login].get(req["position"])
        if p is None:
            raise TradeResult(c.TRADE_RETCODE_POSITION_CLOSED)
        bid, ask = self._prices(p["symbol"])
        if not self._market_open(p["symbol"]):
            raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
        sl, tp = req["sl"], req["tp"]
        buy = p["type"] == c.POSITION_TYPE_BUY
        self._check_stops(self.symbols[p["symbol"]], buy, bid if buy else ask, sl, tp)
        if sl == p["sl"] and tp == p["tp"]:
            raise TradeResult(c.TRADE_RETCODE_NO_CHANGES)
        t = self.clock()
        self._commit([("pos", login, dict(p, sl=sl, tp=tp, time_update=t // 1000, time_update_msc=t))])
        return self._result(c.TRADE_RETCODE_DONE, req, bid=bid, ask=ask)

    def _placed(self, login: int, ticket: int) -> dict:
        """The placed order ``ticket`` to MODIFY or REMOVE: INVALID_ORDER when there is none, MARKET_CLOSED (10018)
        while its symbol's market is closed (as MT5 answers every trade request then)."""
        o = self.orders[login].get(ticket)
        if o is None or o["state"] != c.ORDER_STATE_PLACED:
            raise TradeResult(c.TRADE_RETCODE_INVALID_ORDER)
        if not self._market_open(o["symbol"]):
            raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
        return o

    def _modify(self, login: int, req: dict, bid: float, ask: float) -> list:
        o = self._placed(login, req["order"])
        if req["price"] <= 0:
            raise TradeResult(c.TRADE_RETCODE_INVALID_PRICE)
        self._check_stops(self.symbols[o["symbol"]], o["type"] % 2 == 0, req["price"], req["sl"], req["tp"])
        self._check_expiration(req)
        changed = dict(o, price_open=req["price"], sl=req["sl"], tp=req["tp"], type_time=req["type_time"],
                       time_expiration=req["expiration"], price_stoplimit=req["stoplimit"])
        if changed == o:
            raise TradeResult(c.TRADE_RETCODE_NO_CHANGES)
        changed["armed_msc"] = self.clock()
        self._commit([("order", login, changed)])
        return self._result(c.TRADE_RETCODE_DONE, req, order=o["ticket"], bid=bid, ask=ask)

    def _remove(self, login: int, req: dict, bid: float, ask: float) -> list:
        o = self._placed(login, req["order"])
        t = self.clock()
        self._commit([("order", login, dict(o, state=c.ORDER_STATE_CANCELED, time_done=t // 1000, time_done_msc=t))])
        return self._result(c.TRADE_RETCODE_DONE, req, order=o["ticket"], bid=bid, ask=ask)

    def _close_by(self, login: int, req: dict, bid: float, ask: float) -> list:
        if self.accounts[login]["margin_mode"] != c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        a = self.positions[login].get(req["position"])
        b = self.positions[login].get(req["position_by"])
        if a is None or b is None:
            raise TradeResult(c.TRADE_RETCODE_POSITION_CLOSED)
        if a["symbol"] != b["symbol"] or a["type"] == b["type"]:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        spec = self.symbols[a["symbol"]]
        volume = min(a["volume"], b["volume"])
        changes: list = []
        t = self.clock()
        order_ticket = self._ticket(changes)
        account = self.accounts[login]
        total = 0.0
        req = dict(req, type=c.ORDER_TYPE_CLOSE_BY, symbol=a["symbol"], volume=volume)
        order = self._order_record(order_ticket, t, req, c.ORDER_STATE_FILLED, volume, 0.0, b["price_open"],
                                   a["identifier"], a["symbol"])
        order["position_by_id"] = b["identifier"]
        changes.append(("order", login, order))
        for p, close_price in ((a, b["price_open"]), (b, b["price_open"])):
            sign = 1 if p["type"] == c.POSITION_TYPE_BUY else -1
            profit = round(self._convert_profit(login, sign * (close_price - p["price_open"]) * volume
                                                * spec.contract_size, spec), 2)
            total += profit
            dtype = c.DEAL_TYPE_SELL if p["type"] == c.POSITION_TYPE_BUY else c.DEAL_TYPE_BUY
            changes.append(("deal", login, self._deal_record(
                self._ticket(changes), order_ticket, t, dtype, c.DEAL_ENTRY_OUT_BY, p["magic"], p["identifier"],
                c.DEAL_REASON_EXPERT, volume, close_price, profit, p["symbol"], req["comment"])))
            rest = round(p["volume"] - volume, 8)
            if rest > 1e-9:
                changes.append(("pos", login, dict(p, volume=rest, time_update=t // 1000, time_update_msc=t)))
            else:
                changes.append(("pos_del", (login, p["ticket"]), None))
        changes.append(("acct", login, dict(account, balance=round(account["balance"] + total, 2))))
        self._commit(changes)
        return self._result(c.TRADE_RETCODE_DONE, req, order=order_ticket, volume=volume, bid=bid, ask=ask)

    # -- the harness's view ------------------------------------------------------------------------------------------
    def take_lost_reply(self) -> bool:
        """Whether the reply to the order_send just executed is to be dropped (the dangerous case)."""
        if self.behaviour.lose_next_replies > 0:
            self.behaviour.lose_next_replies -= 1
            return True
        return self.dice.roll(self.behaviour.lose_reply_rate)

    def ledger(self, login: int | None = None, since_ticket: int = 0) -> list[dict]:
        """Every deal the server executed (ground truth), oldest first, each with its account login."""
        self.advance()
        rows = []
        for account, deals in self.deals.items():
            if login is not None and account != login:
                continue
            rows.extend(dict(d, login=account) for d in deals.values() if d["ticket"] > since_ticket)
        return sorted(rows, key=lambda r: r["ticket"])

    def ledger_orders(self, login: int | None = None) -> list[dict]:
        self.advance()
        rows = []
        for account, orders in self.orders.items():
            if login is None or account == login:
                rows.extend(dict(o, login=account) for o in orders.values())
        return sorted(rows, key=lambda r: r["ticket"])

    def accounts_summary(self) -> list[dict]:
        """Every account without its password (``has_password`` instead) and with its number of positions."""
        self.advance()
        rows = []
        for login, a in sorted(self.accounts.items()):
            row = {k: v for k, v in a.items() if k != "password"}
            rows.append(dict(row, has_password=bool(a.get("password")), positions=len(self.positions[login])))
        return rows

    def reset_request_times(self) -> None:
        self._order_times.clear()


def _history_form(records, ticket_field: str, time_field: str, date_from, date_to, group, ticket, position) -> list:
    """The three call forms of history_orders_get / history_deals_get: by ticket, by position, or by date range
    (with an optional group filter); sorted by ticket."""
    if ticket is not None:
        rows = [r for r in records if r[ticket_field] == ticket]
    elif position is not None:
        rows = [r for r in records if r["position_id"] == position]
    else:
        rows = [r for r in records if date_from <= r[time_field] <= date_to]
        if group is not None:
            rows = [r for r in rows if group_matches(r["symbol"], group)]
    return sorted(rows, key=lambda r: r["ticket"])
