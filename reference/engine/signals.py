"""Trade signals on RTSS: the schema, validation, and the deterministic order id sent in ``comment``.

A signal is one stream entry of flat string fields (what ``XADD RTSS * field value ...`` produces):

| field | meaning |
|---|---|
| ``signal_id`` | unique id chosen by the producer, ``[A-Za-z0-9_.:-]{1,64}``; the idempotency key |
| ``account`` | broker account (login) the order is for, digits |
| ``symbol`` | instrument, e.g. ``EURUSD`` |
| ``side`` | ``buy`` or ``sell`` |
| ``volume`` | lots, > 0 |
| ``order_type`` | ``market`` (default), ``limit`` or ``stop`` |
| ``price`` | required for limit/stop; ignored for market (a fresh tick price is used) |
| ``sl``, ``tp`` | optional, >= 0 (0 = none) |
| ``source`` | who produced the signal (``tradingview``, ``panel``...) |
| ``created_ms`` | producer's wall-clock epoch milliseconds |

Validation never raises past :func:`parse_signal`: a bad entry becomes an :class:`InvalidSignal` with a reason code
and a sentence, which the engine publishes on RTRS (and alerts), then acknowledges, so a poison entry never blocks
the stream. Unknown extra fields are ignored.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, asdict

SIGNAL_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SYMBOL_RE = re.compile(r"^[A-Za-z0-9._#\-]{1,32}$")
ACCOUNT_RE = re.compile(r"^[0-9]{1,20}$")
SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop")
MAX_FIELD_LEN = 256


@dataclass(frozen=True)
class Signal:
    signal_id: str
    account: str
    symbol: str
    side: str
    volume: float
    order_type: str = "market"
    price: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    source: str = ""
    created_ms: int = 0

    def to_fields(self) -> dict[str, str]:
        return {k: (repr(v) if isinstance(v, float) else str(v)) for k, v in asdict(self).items()}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InvalidSignal:
    """Why an entry is not a usable signal. ``signal_id`` is whatever id could be read (may be empty)."""

    code: str
    reason: str
    signal_id: str = ""


def _text(fields: dict, name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="strict")
    return str(value)


# a decimal number as a person types it: ASCII digits, at most one point, an optional sign; no exponent, no
# underscores, no inf/nan, no other scripts' digits (all of which float() accepts)
DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})", re.ASCII)


def _number(fields: dict, name: str, *, required: bool) -> float | None:
    text = _text(fields, name)
    if text is None or text.strip() == "":
        if required:
            raise _Bad("MISSING_FIELD", f"field {name!r} is required")
        return None
    if not DECIMAL_RE.fullmatch(text.strip(" ")):   # ASCII spaces only: no NBSP, tabs or newlines around it
        raise _Bad("BAD_NUMBER", f"field {name!r} must be a decimal number such as 0.01, not {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise _Bad("BAD_NUMBER", f"field {name!r} must be finite")
    return value


class _Bad(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_signal(fields: dict, *, max_volume: float = 100.0, now_ms: int | None = None,
                 max_age_s: float = 0.0, max_skew_s: float = 5.0) -> Signal | InvalidSignal:
    """Turn one RTSS entry's fields into a Signal, or an InvalidSignal saying why not. Never raises.
    ``max_skew_s``: a ``created_ms`` more than this ahead of ``now_ms`` is rejected (FUTURE)."""
    signal_id = ""
    try:
        if not isinstance(fields, dict):
            raise _Bad("MALFORMED", "entry is not a field map")
        decoded: dict[str, str] = {}
        for key, value in fields.items():
            k = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key)
            try:
                v = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            except UnicodeDecodeError:
                raise _Bad("MALFORMED", f"field {k!r} is not valid UTF-8") from None
            if _SURROGATE.search(k) or _SURROGATE.search(v):  # bytes that were not UTF-8 (surrogateescape)
                raise _Bad("MALFORMED", f"field {k.encode('utf-8', 'replace')!r} is not valid UTF-8")
            if len(v) > MAX_FIELD_LEN:
                raise _Bad("MALFORMED", f"field {k!r} is longer than {MAX_FIELD_LEN} characters")
            decoded[k] = v
        raw_id = decoded.get("signal_id", "")
        if SIGNAL_ID_RE.match(raw_id):
            signal_id = raw_id
        else:
            raise _Bad("BAD_SIGNAL_ID", "signal_id is required: 1-64 characters of letters, digits and _.:-")
        account = decoded.get("account", "").strip()
        if not ACCOUNT_RE.match(account):
            raise _Bad("BAD_ACCOUNT", "account must be the broker login (digits)")
        symbol = decoded.get("symbol", "").strip()
        if not SYMBOL_RE.match(symbol):
            raise _Bad("BAD_SYMBOL", "symbol must be 1-32 characters of letters, digits and ._#-")
        side = decoded.get("side", "").strip().lower()
        if side not in SIDES:
            raise _Bad("BAD_SIDE", "side must be buy or sell")
        order_type = (decoded.get("order_type", "") or "market").strip().lower()
        if order_type not in ORDER_TYPES:
            raise _Bad("BAD_ORDER_TYPE", "order_type must be market, limit or stop")
        volume = _number(decoded, "volume", required=True)
        if volume <= 0 or volume > max_volume:
            raise _Bad("BAD_VOLUME", f"volume must be > 0 and <= {max_volume:g} lots")
        price = _number(decoded, "price", required=order_type != "market") or 0.0
        if price < 0 or (order_type != "market" and price <= 0):
            raise _Bad("BAD_PRICE", "price must be > 0 for limit and stop orders")
        sl = _number(decoded, "sl", required=False) or 0.0
        tp = _number(decoded, "tp", required=False) or 0.0
        if sl < 0 or tp < 0:
            raise _Bad("BAD_STOPS", "sl and tp must be >= 0 (0 = none)")
        if sl and tp:
            if side == "buy" and not sl < tp:
                raise _Bad("BAD_STOPS", "for a buy, sl must be below tp")
            if side == "sell" and not sl > tp:
                raise _Bad("BAD_STOPS", "for a sell, sl must be above tp")
        if price and order_type != "market":
            if side == "buy" and ((sl and sl >= price) or (tp and tp <= price)):
                raise _Bad("BAD_STOPS", "for a buy, sl must be below the price and tp above it")
            if side == "sell" and ((sl and sl <= price) or (tp and tp >= price)):
                raise _Bad("BAD_STOPS", "for a sell, sl must be above the price and tp below it")
        source = decoded.get("source", "")[:64]
        created_text = decoded.get("created_ms", "").strip(" ")
        created_ms = 0
        if created_text:
            if not re.fullmatch(r"[0-9]{1,16}", created_text):
                raise _Bad("BAD_CREATED", "created_ms must be epoch milliseconds")
            created_ms = int(created_text)
            if max_age_s and now_ms is not None and now_ms - created_ms > max_age_s * 1000:
                raise _Bad("STALE", f"signal is older than {max_age_s:g} s")
            if now_ms is not None and created_ms - now_ms > max_skew_s * 1000:
                raise _Bad("FUTURE", f"created_ms is {(created_ms - now_ms) / 1000:.0f} s ahead of the engine's "
                                     f"clock (allowed skew {max_skew_s:g} s); check the producer's clock")
        return Signal(signal_id, account, symbol, side, volume, order_type, price, sl, tp, source, created_ms)
    except _Bad as bad:
        return InvalidSignal(bad.code, bad.reason, signal_id)
    except Exception as exc:  # noqa: BLE001 - validation must never take the engine down
        return InvalidSignal("MALFORMED", f"entry could not be read: {type(exc).__name__}", signal_id)


# the comment code lives in the wire contract; re-exported here for the engine's older imports
from .contract import COMMENT_RE, comment_prefix_for, order_comment, signal_key  # noqa: E402,F401
