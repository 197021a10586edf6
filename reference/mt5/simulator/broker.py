"""The simulated trade server: accounts, symbols, orders, positions and deals, with MT5's semantics.

Every call returns ``(value, error)`` where ``error`` is the ``last_error()`` pair the terminal would set; no call
raises for a user mistake. A mutation is computed from the current state as a list of *changes*, written to the
journal (fsync) and only then applied to memory and answered: whatever was answered survives ``kill -9``.

Simplifications (said here so nobody is surprised):
- profit and margin are computed in the account currency for every symbol: profit = price move x volume x
  contract size; margin = volume x contract size x open price / leverage;
- pending orders are placed, modified and removed, but never triggered by the price walk; SL/TP never trigger;
- a market DEAL fills at the current ask (buy) or bid (sell), whatever the request's price and deviation;
- netting reversal (INOUT) keeps the position's ticket and identifier, flips its type and opens the rest at the deal
  price; ORDER_FILLING_RETURN behaves like IOC (the unfilled rest is cancelled);
- PENDING placement answers 10009 with the order in state PLACED and ``deal=0`` (what brokers answer in practice).

Request checks a real server makes and this one copies: a filling policy the symbol does not allow (its
``filling_mode`` bit mask; RETURN always passes, BOC never) is TRADE_RETCODE_INVALID_FILL (10030); a stop loss or
take profit on the wrong side of the price (bid for buys, ask for sells, the order price for pending orders) or
nearer than ``stops_level`` points is TRADE_RETCODE_INVALID_STOPS (10016).
"""
from __future__ import annotations

import hmac
import math
import time
from fnmatch import fnmatchcase
from pathlib import Path

from reference.mt5 import constants as c
from reference.mt5.simulator.config import Behaviour, Dice, SimConfig, SymbolSpec
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

    def __init__(self, retcode: int):
        super().__init__(retcode)
        self.retcode = retcode


class Broker:
    def __init__(self, config: SimConfig, state_dir: Path, seed: int = 0):
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
        fresh = not self.meta
        if fresh:
            origin = self.config.tick_origin_ms or now_ms() - 3600 * 1000  # an hour of history for copy_* calls
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
        for kind, key, value in changes:
            if kind == "meta":
                self.meta[key] = value
            elif kind == "acct":
                self.accounts[key] = value
                for name in ("orders", "positions", "deals"):
                    getattr(self, name).setdefault(key, {})
            elif kind == "order":
                self.orders[key][value["ticket"]] = value
            elif kind == "pos":
                self._expose(key, self.positions[key].get(value["ticket"]), -1)
                self.positions[key][value["ticket"]] = value
                self._expose(key, value, +1)
            elif kind == "pos_del":
                self._expose(key[0], self.positions[key[0]].pop(key[1], None), -1)
            elif kind == "deal":
                self.deals[key][value["ticket"]] = value

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
        t = now_ms()
        deal = self._deal_record(ticket, 0, t, c.DEAL_TYPE_BALANCE, c.DEAL_ENTRY_IN, 0, 0, c.DEAL_REASON_CLIENT, 0.0,
                                 0.0, spec.balance, "", "initial deposit")
        changes.append(("deal", spec.login, deal))
        changes.append(("acct", spec.login, dict(account, balance=round(spec.balance, 2))))

    def close(self) -> None:
        self.journal.close()

    # -- prices ---------------------------------------------------------------------------------------------------
    def tick(self, symbol: str, at_ms: int | None = None) -> list:
        walk = self.walks[symbol]
        index = max(0, walk.index_at(now_ms() if at_ms is None else at_ms))
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
        for symbol, (buy_vol, buy_cost, sell_vol, sell_cost) in self.exposure.get(login, {}).items():
            if abs(buy_vol) < 1e-9 and abs(sell_vol) < 1e-9:
                continue
            size = self.symbols[symbol].contract_size
            bid, ask = self._prices(symbol)
            profit += size * (bid * buy_vol - buy_cost) + size * (sell_cost - ask * sell_vol)
            margin += size * (buy_cost + sell_cost) / leverage
        return round(profit, 2), round(margin, 2)

    def account_info(self, login: int):
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
            trade_exemode=c.SYMBOL_TRADE_EXECUTION_MARKET, swap_mode=c.SYMBOL_SWAP_MODE_POINTS,
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
        current = walk.index_at(now_ms())
        first = max(0, -(-(date_from * 1000 - walk.origin_ms) // walk.step_ms))
        last = min(current, first + count - 1)
        return walk.ticks(first, last), OK

    def copy_ticks_range(self, login: int, symbol: str, date_from: int, date_to: int, flags: int):
        if symbol not in self.symbols:
            return None, c.ERR_NOT_FOUND
        walk = self.walks[symbol]
        current = walk.index_at(now_ms())
        first = max(0, -(-(date_from * 1000 - walk.origin_ms) // walk.step_ms))
        last = min(current, walk.index_at(date_to * 1000))
        return walk.ticks(first, last), OK

    def _rates(self, symbol: str, timeframe: int):
        walk = self.walks[symbol]
        ticks = walk.ticks(0, walk.index_at(now_ms()))
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
        p["profit"] = round(sign * (current - p["price_open"]) * p["volume"] * spec.contract_size, 2)

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
        return len(self.positions[login]), OK

    def positions_get(self, login: int, symbol=None, group=None, ticket=None):
        rows = [dict(p) for p in self._filter(self.positions[login].values(), symbol, group, ticket)]
        for p in rows:  # on copies: price_current and profit are quotes, not state
            self._refresh_position(p)
        return [_row(p, TRADE_POSITION_FIELDS) for p in sorted(rows, key=lambda r: r["ticket"])], OK

    def _active_orders(self, login: int):
        return [o for o in self.orders[login].values() if o["state"] == c.ORDER_STATE_PLACED]

    def orders_total(self, login: int):
        return len(self._active_orders(login)), OK

    def orders_get(self, login: int, symbol=None, group=None, ticket=None):
        rows = [dict(o) for o in self._filter(self._active_orders(login), symbol, group, ticket)]
        for o in rows:
            bid, ask = self._prices(o["symbol"])
            o["price_current"] = ask if o["type"] % 2 == 0 else bid
        return [_row(o, TRADE_ORDER_FIELDS) for o in sorted(rows, key=lambda r: r["ticket"])], OK

    def history_orders_total(self, login: int, date_from: int, date_to: int):
        rows, error = self.history_orders_get(login, date_from, date_to)
        return len(rows), error

    def history_orders_get(self, login: int, date_from=None, date_to=None, group=None, ticket=None, position=None):
        history = [o for o in self.orders[login].values() if o["state"] != c.ORDER_STATE_PLACED]
        rows = _history_form(history, "ticket", "time_setup", date_from, date_to, group, ticket, position)
        return [_row(o, TRADE_ORDER_FIELDS) for o in rows], OK

    def history_deals_total(self, login: int, date_from: int, date_to: int):
        rows, error = self.history_deals_get(login, date_from, date_to)
        return len(rows), error

    def history_deals_get(self, login: int, date_from=None, date_to=None, group=None, ticket=None, position=None):
        # ticket= is an ORDER ticket here: the deals that order produced
        rows = _history_form(self.deals[login].values(), "order", "time", date_from, date_to, group, ticket, position)
        return [_row(d, TRADE_DEAL_FIELDS) for d in rows], OK

    # -- trading ------------------------------------------------------------------------------------------------------
    def _margin(self, symbol: str, volume: float, price: float, login: int) -> float:
        spec = self.symbols[symbol]
        return volume * spec.contract_size * price / self.accounts[login]["leverage"]

    def _market_open(self, symbol: str) -> bool:
        windows = self.behaviour.sessions.get(symbol)
        if windows is None:
            return True
        t = time.gmtime()
        minute = t.tm_hour * 60 + t.tm_min
        for window in windows:
            start, end = window.split("-")
            h1, m1 = (int(x) for x in start.split(":"))
            h2, m2 = (int(x) for x in end.split(":"))
            if h1 * 60 + m1 <= minute < h2 * 60 + m2:
                return True
        return False

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
            return self._result(outcome.retcode, req, bid=bid, ask=ask), OK
        if fault is not None:  # executed, but the terminal is told something ambiguous
            result[0] = int(fault["retcode"])
            result[7] = c.RETCODE_COMMENTS.get(result[0], "")
        return result, OK

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
        if self.dice.roll(self.behaviour.requote_rate):
            raise TradeResult(c.TRADE_RETCODE_REQUOTE)
        if self.dice.roll(self.behaviour.price_changed_rate):
            raise TradeResult(c.TRADE_RETCODE_PRICE_CHANGED)
        buy = req["type"] == c.ORDER_TYPE_BUY
        price = ask if buy else bid
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

        opening = volume
        if target is not None and (target["type"] == c.POSITION_TYPE_BUY) != buy:
            opening = max(0.0, volume - target["volume"])
        if opening > 0 and self.behaviour.margin_check:
            profit, used = self._floating(login)
            free = account["balance"] + profit - used
            if self._margin(spec.name, opening, price, login) > free:
                raise TradeResult(c.TRADE_RETCODE_NO_MONEY)

        changes: list = []
        t = now_ms()
        order_ticket = self._ticket(changes)
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
                profit = round(sign * (price - target["price_open"]) * closed * spec.contract_size, 2)
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
        remaining = round(req["volume"] - volume, 8)
        changes.append(("order", login, self._order_record(
            order_ticket, t, req, c.ORDER_STATE_FILLED, req["volume"], remaining, price, position_id, spec.name)))
        changes.append(("deal", login, self._deal_record(
            deal_ticket, order_ticket, t, dtype, entry, req["magic"], position_id, c.DEAL_REASON_EXPERT, volume,
            price, profit, spec.name, req["comment"])))
        if profit:
            changes.append(("acct", login, dict(account, balance=round(account["balance"] + profit, 2))))
        self._commit(changes)
        return self._result(retcode, req, deal=deal_ticket, order=order_ticket, volume=volume, price=price,
                            bid=bid, ask=ask)

    def _pending(self, login: int, req: dict, bid: float, ask: float) -> list:
        spec = self.symbols.get(req["symbol"])
        if spec is None or req["type"] not in PENDING_TYPES:
            raise TradeResult(c.TRADE_RETCODE_INVALID)
        self._check_volume(spec, req["volume"])
        self._check_filling(spec, req["type"], req["type_filling"])
        if req["price"] <= 0:
            raise TradeResult(c.TRADE_RETCODE_INVALID_PRICE)
        stop_limit = req["type"] in (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT)
        reference = req["stoplimit"] if stop_limit and req["stoplimit"] > 0 else req["price"]
        self._check_stops(spec, req["type"] % 2 == 0, reference, req["sl"], req["tp"])
        if not self._market_open(spec.name):
            raise TradeResult(c.TRADE_RETCODE_MARKET_CLOSED)
        if req["type_time"] == c.ORDER_TIME_SPECIFIED and req["expiration"] <= time.time():
            raise TradeResult(c.TRADE_RETCODE_INVALID_EXPIRATION)
        changes: list = []
        t = now_ms()
        ticket = self._ticket(changes)
        changes.append(("order", login, self._order_record(
            ticket, t, req, c.ORDER_STATE_PLACED, req["volume"], req["volume"], req["price"], 0, spec.name)))
        self._commit(changes)
        return self._result(c.TRADE_RETCODE_DONE, req, order=ticket, volume=req["volume"], price=req["price"],
                            bid=bid, ask=ask)

    def _sltp(self, login: int, req: dict, bid: float, ask: float) -> list:
        p = self.positions[login].get(req["position"])
        if p is None:
            raise TradeResult(c.TRADE_RETCODE_POSITION_CLOSED)
        bid, ask = self._prices(p["symbol"])
        sl, tp = req["sl"], req["tp"]
        buy = p["type"] == c.POSITION_TYPE_BUY
        self._check_stops(self.symbols[p["symbol"]], buy, bid if buy else ask, sl, tp)
        if sl == p["sl"] and tp == p["tp"]:
            raise TradeResult(c.TRADE_RETCODE_NO_CHANGES)
        t = now_ms()
        self._commit([("pos", login, dict(p, sl=sl, tp=tp, time_update=t // 1000, time_update_msc=t))])
        return self._result(c.TRADE_RETCODE_DONE, req, bid=bid, ask=ask)

    def _placed(self, login: int, ticket: int) -> dict:
        o = self.orders[login].get(ticket)
        if o is None or o["state"] != c.ORDER_STATE_PLACED:
            raise TradeResult(c.TRADE_RETCODE_INVALID_ORDER)
        return o

    def _modify(self, login: int, req: dict, bid: float, ask: float) -> list:
        o = self._placed(login, req["order"])
        if req["price"] <= 0:
            raise TradeResult(c.TRADE_RETCODE_INVALID_PRICE)
        self._check_stops(self.symbols[o["symbol"]], o["type"] % 2 == 0, req["price"], req["sl"], req["tp"])
        changed = dict(o, price_open=req["price"], sl=req["sl"], tp=req["tp"], type_time=req["type_time"],
                       time_expiration=req["expiration"], price_stoplimit=req["stoplimit"])
        if changed == o:
            raise TradeResult(c.TRADE_RETCODE_NO_CHANGES)
        self._commit([("order", login, changed)])
        return self._result(c.TRADE_RETCODE_DONE, req, order=o["ticket"], bid=bid, ask=ask)

    def _remove(self, login: int, req: dict, bid: float, ask: float) -> list:
        o = self._placed(login, req["order"])
        t = now_ms()
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
        t = now_ms()
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
            profit = round(sign * (close_price - p["price_open"]) * volume * spec.contract_size, 2)
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
        rows = []
        for account, deals in self.deals.items():
            if login is not None and account != login:
                continue
            rows.extend(dict(d, login=account) for d in deals.values() if d["ticket"] > since_ticket)
        return sorted(rows, key=lambda r: r["ticket"])

    def ledger_orders(self, login: int | None = None) -> list[dict]:
        rows = []
        for account, orders in self.orders.items():
            if login is None or account == login:
                rows.extend(dict(o, login=account) for o in orders.values())
        return sorted(rows, key=lambda r: r["ticket"])

    def accounts_summary(self) -> list[dict]:
        """Every account without its password (``has_password`` instead) and with its number of positions."""
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
