"""What a simulator run is configured with: accounts, symbols, tick grid, and the broker's behaviour.

``Behaviour`` is the part a harness switches at run time through ``admin.set_behaviour`` (sessions, margin,
requotes, partial fills, throttling, algo-trading switch, comment limit, latency, lost replies). Everything is plain
data so a run's configuration can be written to its run directory and replayed. Files are JSON or TOML.
"""
from __future__ import annotations

import json
import random
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from reference.mt5 import constants as c


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


@dataclass
class Behaviour:
    """Broker behaviour, switchable at run time. Rates are probabilities per order_send in [0, 1]."""

    # symbol -> daily UTC windows "HH:MM-HH:MM"; a symbol not listed trades all day, [] means closed
    sessions: dict[str, list[str]] = field(default_factory=dict)
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

    def update(self, **changes) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown behaviour setting(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in changes.items():
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
        if "behaviour" in raw:
            cfg.behaviour.update(**raw.pop("behaviour"))
        for key, value in raw.items():
            if not hasattr(cfg, key):
                raise ValueError(f"unknown simulator setting {key!r}")
            setattr(cfg, key, value)
        return cfg

    @classmethod
    def from_file(cls, path: Path) -> "SimConfig":
        path = Path(path)
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.from_dict(raw)

    def as_dict(self) -> dict:
        return asdict(self)


class Dice:
    """The behaviour's random decisions, seeded so a run's faults replay from its seed."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed ^ 0x5EED)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
