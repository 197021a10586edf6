"""What a simulator run is configured with: accounts, symbols, tick grid, and the broker's behaviour.

``Behaviour`` is the part a harness switches at run time through ``admin.set_behaviour`` (sessions, margin,
requotes, partial fills, throttling, algo-trading switch, comment limit, latency, lost replies). Everything is plain
data so a run's configuration can be written to its run directory and replayed. Files are JSON or TOML.
"""
from __future__ import annotations

import datetime
import json
import math
import random
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from reference.mt5 import constants as c


class SettingError(ValueError):
    """A configuration or behaviour value of the wrong type or out of range; the message names the key, the type
    and the range, and says that nothing was changed."""


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(key: str, value, low: float, high: float, unit: str = "", integer: bool = False):
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)) \
            or not low <= value <= high:
        raise SettingError(f"{key!r} must be {kind}{unit} in [{low:g}, {high:g}], got {_show(value)}")
    return int(value) if integer else float(value)


def _flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise SettingError(f"{key!r} must be true or false, got {_show(value)}")
    return value


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # time.gmtime().tm_wday order
_DAY = "|".join(DAYS)
_WINDOW = re.compile(rf"^(?:({_DAY})(?:-({_DAY}))? )?(\d\d):(\d\d)-(\d\d):(\d\d)$")
# the forex week in UTC: opens Sunday 22:00, closes Friday 22:00 (the weekend close); use as a symbol's sessions
FOREX_WEEK = ["Sun 22:00-24:00", "Mon-Thu 00:00-24:00", "Fri 00:00-22:00"]
# named sessions a symbol's value may be instead of a list of windows ("EURUSD": "FOREX_WEEK"); stored expanded
SESSION_PRESETS = {"FOREX_WEEK": FOREX_WEEK}


def session_windows(windows: list[str]) -> list[tuple[set[int], int, int]]:
    """(weekdays, start minute, end minute) of checked windows; a window without days holds every day."""
    out = []
    for window in windows:
        first, last, h1, m1, h2, m2 = _WINDOW.match(window).groups()
        if first is None:
            days = set(range(7))
        else:
            a, b = DAYS.index(first), DAYS.index(last or first)
            days = {d % 7 for d in range(a, b + 1 if b >= a else b + 8)}
        out.append((days, int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)))
    return out


def _sessions(key: str, value) -> dict[str, list[str]]:
    what = (f"{key!r} must be a table of symbol -> list of UTC windows \"HH:MM-HH:MM\", each optionally after "
            f"weekdays (\"Fri 00:00-22:00\", \"Mon-Thu 00:00-24:00\"; start before end, end at most 24:00; "
            f"[] = closed), or a preset name: {', '.join(repr(k) for k in SESSION_PRESETS)}")
    if not isinstance(value, dict) or len(value) > 1000:
        raise SettingError(f"{what}, got {_show(value)}")
    out: dict[str, list[str]] = {}
    for symbol, windows in value.items():
        if isinstance(windows, str) and windows in SESSION_PRESETS:
            windows = list(SESSION_PRESETS[windows])
        if not isinstance(symbol, str) or not 0 < len(symbol) <= 64 or not isinstance(windows, list) \
                or len(windows) > 48:
            raise SettingError(f"{what}, got {_show({symbol: windows})}")
        for window in windows:
            m = _WINDOW.match(window) if isinstance(window, str) else None
            if m is None:
                raise SettingError(f"{what}, got {_show(window)} for {symbol!r}")
            h1, m1, h2, m2 = (int(x) for x in m.groups()[2:])
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or start >= end:
                raise SettingError(f"{what}, got {_show(window)} for {symbol!r}")
        out[symbol] = list(windows)
    return out


_DATE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)$")


def _holidays(key: str, value) -> dict[str, list[str]]:
    what = (f"{key!r} must be a table of symbol (or \"*\" for every symbol) -> list (at most 366) of UTC dates "
            f"\"YYYY-MM-DD\" on which the market is closed all day")
    if not isinstance(value, dict) or len(value) > 1000:
        raise SettingError(f"{what}, got {_show(value)}")
    out: dict[str, list[str]] = {}
    for symbol, dates in value.items():
        if not isinstance(symbol, str) or not 0 < len(symbol) <= 64 or not isinstance(dates, list) \
                or len(dates) > 366:
            raise SettingError(f"{what}, got {_show({symbol: dates})}")
        for date in dates:
            m = _DATE.match(date) if isinstance(date, str) else None
            try:
                ok = m is not None and bool(datetime.date(*(int(x) for x in m.groups())))
            except ValueError:
                ok = False
            if not ok:
                raise SettingError(f"{what}, got {_show(date)} for {symbol!r}")
        out[symbol] = list(dates)
    return out


EXECUTION_MODES = {"request": c.SYMBOL_TRADE_EXECUTION_REQUEST, "instant": c.SYMBOL_TRADE_EXECUTION_INSTANT,
                   "market": c.SYMBOL_TRADE_EXECUTION_MARKET, "exchange": c.SYMBOL_TRADE_EXECUTION_EXCHANGE}


def _execution_modes(key: str, value) -> dict[str, str]:
    what = (f"{key!r} must be a table of symbol -> execution mode, one of {', '.join(EXECUTION_MODES)} "
            f"(instant: a price beyond the deviation is REQUOTE; request: PRICE_OFF; market/exchange: filled at "
            f"the market price)")
    if not isinstance(value, dict) or len(value) > 1000:
        raise SettingError(f"{what}, got {_show(value)}")
    for symbol, mode in value.items():
        if not isinstance(symbol, str) or not 0 < len(symbol) <= 64 or not isinstance(mode, str) \
                or mode not in EXECUTION_MODES:
            raise SettingError(f"{what}, got {_show({symbol: mode})}")
    return dict(value)


def _retcode_faults(key: str, value) -> list[dict]:
    what = (f"{key!r} must be a list (at most 64) of {{\"retcode\": a TRADE_RETCODE_* value, \"rate\": a number in "
            f"[0, 1], \"executed\": true|false}}")
    if not isinstance(value, list) or len(value) > 64:
        raise SettingError(f"{what}, got {_show(value)}")
    out = []
    for item in value:
        if not isinstance(item, dict) or "retcode" not in item or set(item) - {"retcode", "rate", "executed"}:
            raise SettingError(f"{what}, got {_show(item)}")
        retcode = item["retcode"]
        if not isinstance(retcode, int) or isinstance(retcode, bool) or retcode not in TRADE_RETCODES:
            raise SettingError(f"{what}, got retcode {_show(retcode)}")
        out.append({"retcode": retcode, "rate": _number(f"{key}[].rate", item.get("rate", 0.0), 0.0, 1.0),
                    "executed": _flag(f"{key}[].executed", item.get("executed", False))})
    return out


TRADE_RETCODES = frozenset(v for k, v in vars(c).items() if k.startswith("TRADE_RETCODE_") and isinstance(v, int))

@dataclass
class AccountSpec:
    login: int
    password: str = ""
    margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    balance: float = 100_000.0
    leverage: int = 100
    currency: str = "USD"
    name: str = "TradeDrill Demo"
    trade_mode: int = c.ACCOUNT_TRADE_MODE_DEMO

    def __post_init__(self) -> None:
        if not isinstance(self.login, int) or isinstance(self.login, bool) or self.login <= 0:
            raise SettingError(f"account 'login' must be a positive integer, got {_show(self.login)}")
        if not isinstance(self.password, str):
            raise SettingError(f"account {self.login}: 'password' must be a string (\"\" = none), "
                               f"got a {type(self.password).__name__}")


@dataclass
class SymbolSpec:
    name: str
    price: float
    digits: int = 5
    spread: int = 10  # points
    contract_size: float = 100_000.0
    volume_min: float = 0.01
    volume_max: float = 100.0
    volume_step: float = 0.01
    sigma_points: float = 2.0  # random-walk step, points per tick
    stops_level: int = 0
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL
    currency_base: str = ""
    currency_profit: str = "USD"
    description: str = ""
    path: str = ""
    # the filling policies a market order may use, a bit mask as SymbolInfo.filling_mode: SYMBOL_FILLING_FOK (1),
    # SYMBOL_FILLING_IOC (2); FOK-only (1) and IOC-only (2) brokers exist. ORDER_FILLING_RETURN is always allowed
    # (market execution); anything else is refused with TRADE_RETCODE_INVALID_FILL (10030)
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    # SymbolInfo.trade_exemode: INSTANT answers a market price beyond the request's deviation with REQUOTE (10004),
    # REQUEST with PRICE_OFF (10021); MARKET and EXCHANGE fill at the market price whatever the request's price
    execution_mode: int = c.SYMBOL_TRADE_EXECUTION_MARKET
    currency_margin: str = ""  # "" = the base currency (forex)

    def __post_init__(self) -> None:
        _number(f"symbol {self.name}: 'execution_mode'", self.execution_mode, 0, 3,
                " (0 request, 1 instant, 2 market, 3 exchange)", integer=True)
        _number(f"symbol {self.name}: 'filling_mode'", self.filling_mode, 0,
                c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC, " (bit mask: 1 = FOK, 2 = IOC)", integer=True)
        _number(f"symbol {self.name}: 'stops_level'", self.stops_level, 0, 1_000_000, " (points)", integer=True)
        _number(f"symbol {self.name}: 'sigma_points'", self.sigma_points, 0, 100_000,
                " (points, the random walk's step per tick)")

    @property
    def point(self) -> float:
        return round(10.0 ** -self.digits, self.digits)


DEFAULT_ACCOUNTS = [
    AccountSpec(login=5001, name="TradeDrill hedging", margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING),
    AccountSpec(login=5002, name="TradeDrill netting", margin_mode=c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING),
]
DEFAULT_SYMBOLS = [
    SymbolSpec("EURUSD", 1.08500, digits=5, spread=10, currency_base="EUR", path="Forex\\EURUSD"),
    SymbolSpec("GBPUSD", 1.27000, digits=5, spread=14, currency_base="GBP", path="Forex\\GBPUSD"),
    SymbolSpec("USDJPY", 150.000, digits=3, spread=12, currency_base="USD", currency_profit="JPY",
               path="Forex\\USDJPY"),
    SymbolSpec("XAUUSD", 2300.00, digits=2, spread=30, contract_size=100.0, sigma_points=20.0,
               currency_base="XAU", path="Metals\\XAUUSD"),
]


SYMBOL_KEYED = ("sessions", "holidays", "execution_modes")  # behaviour settings keyed by symbol name
EVERY = "; \"*\" = every symbol"


def _known_symbols(key: str, value: dict, symbols: frozenset[str]) -> None:
    """SettingError for a symbol name in ``value`` (a per-symbol setting) the broker does not have; holidays also
    take "*" (every symbol). Names are case-sensitive, as in MT5."""
    for name in value:
        if name in symbols or (key == "holidays" and name == "*"):
            continue
        near = next((s for s in sorted(symbols) if s.lower() == str(name).lower()), None)
        hint = f" (did you mean {near!r}? names are case-sensitive)" if near else ""
        raise SettingError(f"{key!r} names the unknown symbol {_show(name)}{hint}; the broker's symbols: "
                           f"{', '.join(sorted(symbols)) if len(symbols) <= 20 else str(len(symbols)) + ' symbols'}"
                           f"{EVERY if key == 'holidays' else ''}")


MAX_LATENCY_MS = 300_000.0  # 5 minutes: longer than any client's call timeout; more is a typo

# every behaviour setting: key -> checker(key, value) -> the value to store (typed, in range)
_RATE = (lambda k, v: _number(k, v, 0.0, 1.0, " (a probability)"))
BEHAVIOUR_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "sessions": _sessions,
    "holidays": _holidays,
    "execution_modes": _execution_modes,
    "requote_points": lambda k, v: _number(k, v, 0, 100_000, " (points the price moves between quote and send on "
                                                             "a requote or price change; 0 = answer the retcode)",
                                           integer=True),
    "margin_check": _flag,
    "requote_rate": _RATE,
    "price_changed_rate": _RATE,
    "partial_fill_rate": _RATE,
    "partial_fill_ratio": _RATE,
    "too_many_requests_rate": _RATE,
    "max_orders_per_second": lambda k, v: _number(k, v, 0.0, 1_000_000.0, " (orders per second, 0 = unlimited)"),
    "trade_allowed": _flag,
    "comment_limit": lambda k, v: _number(k, v, 0, 255, " (characters)", integer=True),
    "latency_ms": lambda k, v: _number(k, v, 0.0, MAX_LATENCY_MS, " (milliseconds)"),
    "order_latency_ms": lambda k, v: _number(k, v, 0.0, MAX_LATENCY_MS, " (milliseconds)"),
    "lose_reply_rate": _RATE,
    "lose_next_replies": lambda k, v: _number(k, v, 0, 1_000_000, " (replies)", integer=True),
    "retcode_faults": _retcode_faults,
}


@dataclass
class Behaviour:
    """Broker behaviour, switchable at run time. Rates are probabilities per order_send in [0, 1].

    Every setting is typed and range-checked (``BEHAVIOUR_CHECKS``): ``update`` refuses a wrong one with a
    :class:`SettingError` naming the key, the type and the range, and then changes nothing at all."""

    # symbol -> UTC windows "HH:MM-HH:MM", daily or after weekdays ("Fri 00:00-22:00", FOREX_WEEK); a symbol not
    # listed trades all day every day, [] means closed
    sessions: dict[str, list[str]] = field(default_factory=dict)
    # symbol or "*" -> UTC dates "YYYY-MM-DD" closed all day (MARKET_CLOSED; no stop or pending order triggers)
    holidays: dict[str, list[str]] = field(default_factory=dict)
    # symbol -> "instant" | "request" | "market" | "exchange": overrides the symbol's configured execution mode
    execution_modes: dict[str, str] = field(default_factory=dict)
    # on a requote/price-changed roll the price moves this many points (a seeded direction) between the quote and
    # the send, and the request's deviation decides (instant: REQUOTE, request: PRICE_OFF, market: filled at the
    # moved price); 0 keeps the plain retcode
    requote_points: int = 0
    margin_check: bool = True
    requote_rate: float = 0.0  # TRADE_RETCODE_REQUOTE with a new bid/ask
    price_changed_rate: float = 0.0  # TRADE_RETCODE_PRICE_CHANGED
    partial_fill_rate: float = 0.0  # DONE_PARTIAL for IOC/RETURN orders
    partial_fill_ratio: float = 0.5
    too_many_requests_rate: float = 0.0
    max_orders_per_second: float = 0.0  # 0 = unlimited; above it TOO_MANY_REQUESTS
    trade_allowed: bool = True  # terminal_info().trade_allowed; False -> 10027
    comment_limit: int = 31  # longer comments: None + (-2, 'Invalid "comment" argument'); 28 on some brokers
    latency_ms: float = 0.0  # added to every call
    order_latency_ms: float = 0.0  # added to order_send/order_check on top
    lose_reply_rate: float = 0.0  # order executed and journaled, reply never sent (client sees IPC timeout)
    lose_next_replies: int = 0  # deterministic variant: lose the next N order_send replies
    # [{"retcode": 10012|10031|10011|10021..., "rate": p, "executed": bool}] - ambiguous results
    retcode_faults: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        # the broker's symbol names (``bind_symbols``): a per-symbol setting naming another is refused; None (a
        # Behaviour on its own) checks only the form. Not a field: not in as_dict, not sent over the wire
        self.known_symbols: frozenset[str] | None = None

    @staticmethod
    def checked(changes: dict, symbols: frozenset[str] | None = None) -> dict:
        """The changes, typed and range-checked (and, given the broker's ``symbols``, every per-symbol setting
        naming one of them, exactly as spelt); raises SettingError for the first wrong one."""
        unknown = sorted(str(k) for k in changes if k not in BEHAVIOUR_CHECKS)
        if unknown:
            raise SettingError(f"unknown behaviour setting(s) {unknown}; known: {sorted(BEHAVIOUR_CHECKS)}; "
                               f"the behaviour is unchanged")
        out = {}
        for key, value in changes.items():
            try:
                out[key] = BEHAVIOUR_CHECKS[key](key, value)
                if symbols is not None and key in SYMBOL_KEYED:
                    _known_symbols(key, out[key], symbols)
            except SettingError as exc:
                raise SettingError(f"behaviour setting {exc}; the behaviour is unchanged") from None
        return out

    def bind_symbols(self, names) -> None:
        """Check per-symbol settings against the broker's symbol ``names`` from now on, and the current ones now
        (SettingError naming the key and the symbol; nothing is bound then)."""
        names = frozenset(names)
        self.checked({k: getattr(self, k) for k in SYMBOL_KEYED}, names)
        self.known_symbols = names

    def update(self, **changes) -> None:
        """Apply ``changes`` all together, or none of them (SettingError)."""
        for key, value in self.checked(changes, self.known_symbols).items():
            setattr(self, key, value)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimConfig:
    server: str = "TradeDrill-Sim"
    company: str = "TradeDrill Simulated Broker"
    first_ticket: int = 10_000_001
    tick_step_ms: int = 250
    tick_origin_ms: int | None = None  # None: the time of the first start, persisted in the state dir
    accounts: list[AccountSpec] = field(default_factory=lambda: list(DEFAULT_ACCOUNTS))
    symbols: list[SymbolSpec] = field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    behaviour: Behaviour = field(default_factory=Behaviour)

    @classmethod
    def from_dict(cls, raw: dict) -> "SimConfig":
        raw = dict(raw)
        cfg = cls()
        if "accounts" in raw:
            cfg.accounts = [AccountSpec(**a) for a in raw.pop("accounts")]
        if "symbols" in raw:
            cfg.symbols = [SymbolSpec(**s) for s in raw.pop("symbols")]
        cfg.behaviour.bind_symbols(s.name for s in cfg.symbols)
        if "behaviour" in raw:
            cfg.behaviour.update(**raw.pop("behaviour"))
        for key, value in raw.items():
            check = _CONFIG_CHECKS.get(key)
            if check is None:
                raise SettingError(f"unknown simulator setting {key!r}; known: accounts, symbols, behaviour, "
                                   f"{', '.join(sorted(_CONFIG_CHECKS))}")
            setattr(cfg, key, check(key, value))
        cfg.check()
        return cfg

    def check(self) -> None:
        """What a broker refuses to start with: a symbol without a cross rate (``check_rates``), a per-symbol
        behaviour setting naming a symbol it does not have (``Behaviour.bind_symbols``). SettingError, one line."""
        self.check_rates()
        self.behaviour.bind_symbols(s.name for s in self.symbols)

    def check_rates(self) -> None:
        """SettingError (one line, naming the symbol and the missing rate) when a symbol's profit or margin currency
        has no cross rate to an account's currency: a pair of the two, or both through USD (the broker's
        ``_rate``); before, such a symbol was converted 1:1."""
        missing = missing_rates(self.symbols, self.accounts)
        if missing:
            symbol, what, src, dst, login = missing[0]
            more = f" ({len(missing) - 1} more)" if len(missing) > 1 else ""
            raise SettingError(f"symbol {symbol}: no cross rate {src}->{dst} for its {what} currency in account "
                               f"{login}'s {dst}: add a symbol {src}{dst} or {dst}{src} (or pairs of both with "
                               f"USD){more}")

    @classmethod
    def from_file(cls, path: Path) -> "SimConfig":
        path = Path(path)
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.from_dict(raw)

    def as_dict(self) -> dict:
        return asdict(self)

    def public_dict(self) -> dict:
        """``as_dict`` without secrets: each account says whether it has a password, never the password."""
        doc = asdict(self)
        for account in doc["accounts"]:
            account["has_password"] = bool(account.pop("password"))
        return doc


def missing_rates(symbols: list[SymbolSpec], accounts: list[AccountSpec]) -> list[tuple[str, str, str, str, int]]:
    """(symbol, "profit"|"margin", from, to, login) for every conversion the broker would need and cannot make:
    a pair of the two currencies (either way round), or, when neither is USD, one with USD for each."""
    pairs = {(s.currency_base, s.currency_profit) for s in symbols}

    def direct(a: str, b: str) -> bool:
        return a == b or (a, b) in pairs or (b, a) in pairs

    def rate(a: str, b: str) -> bool:
        if not a or not b or direct(a, b):
            return True
        return "USD" not in (a, b) and direct(a, "USD") and direct("USD", b)

    out = []
    for account in accounts:
        ac = account.currency
        for s in symbols:
            if not rate(s.currency_profit, ac):
                out.append((s.name, "profit", s.currency_profit, ac, account.login))
            margin = s.currency_margin or s.currency_base or s.currency_profit
            if not (margin == ac or (margin == s.currency_base and s.currency_profit == ac) or rate(margin, ac)):
                out.append((s.name, "margin", margin, ac, account.login))
    return out


def _text(key: str, value) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise SettingError(f"{key!r} must be a non-empty string of at most 128 characters, got {_show(value)}")
    return value


_CONFIG_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "server": _text,
    "company": _text,
    "first_ticket": lambda k, v: _number(k, v, 1, 2**62, " (ticket)", integer=True),
    "tick_step_ms": lambda k, v: _number(k, v, 1, 60_000, " (milliseconds)", integer=True),
    "tick_origin_ms": lambda k, v: None if v is None else _number(k, v, 0, 2**62, " (epoch ms)", integer=True),
}


class Dice:
    """The behaviour's random decisions, seeded so a run's faults replay from its seed."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed ^ 0x5EED)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
