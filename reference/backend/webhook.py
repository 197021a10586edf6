"""The TradingView webhook's rules, as pure functions and small objects the app wires together (BE-4).

An alert is the JSON body TradingView POSTs (the alert's message, written by the user with placeholders)::

    {"passphrase": "...", "alert_id": "ema-cross-EURUSD-1733011200", "symbol": "EURUSD", "side": "buy",
     "volume": 0.01, "order_type": "market", "price": 0, "sl": 0, "tp": 0, "account": "5001"}

- ``parse_alert(body, ...)`` -> :class:`Alert` or raises :class:`AlertError` (HTTP status + one sentence naming
  the field). The signal it makes is checked by the engine's own ``parse_signal`` too, so the webhook refuses
  exactly what the engine would reject.
- ``passphrase_ok(given, expected)``: constant time (``hmac.compare_digest`` of SHA-256 digests: not even the
  length leaks).
- :class:`RateLimiter`: a token bucket per source address (``rate_per_s``, ``burst``), bounded in memory.
- Idempotency by alert id: the signal id is ``tv-<alert_id>`` (deterministic, so a resend after an unconfirmed
  submission or a second backend's retry carries the same id, which the engine answers ``duplicate``), and a claim
  key ``<rts_prefix>:<group>:alert:<alert_id>`` (``SET NX``) lets only one request per alert id put it on RTSS.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from reference.engine.contract import Keys
from reference.engine.signals import ORDER_TYPES, SIDES, InvalidSignal, parse_signal

ALERT_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,60}")
SIGNAL_ID_PREFIX = "tv-"
SOURCE = "tradingview"
FIELDS = ("passphrase", "alert_id", "symbol", "side", "volume", "order_type", "price", "sl", "tp", "account",
          "comment", "time")
REQUIRED = ("passphrase", "alert_id", "symbol", "side", "volume")
MAX_NUMBER = 10 ** 15        # volume, price, sl, tp: at most 15 digits before the point, as the engine reads them
MAX_ACCOUNT = 10 ** 20 - 1  # an integer account: at most 20 digits, like the engine's ACCOUNT_RE

# claim values: "pending:<instance>:<epoch ms>" while one request submits; "accepted:<signal id>:<entry id>" after
PENDING = "pending"
ACCEPTED = "accepted"


class AlertError(ValueError):
    """A webhook body that is refused: ``status`` (4xx) and ``message`` (one sentence naming what is wrong)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Alert:
    """A valid alert: ``alert_id``, the signal id it becomes, and the RTSS fields (``reference.engine.signals``)."""

    alert_id: str
    signal_id: str
    fields: dict

    @property
    def symbol(self) -> str:
        return self.fields["symbol"]


def signal_id_of(alert_id: str) -> str:
    """The signal id of an alert id (``tv-<alert_id>``, at most 63 characters)."""
    return f"{SIGNAL_ID_PREFIX}{alert_id}"


def claim_key(keys: Keys, alert_id: str) -> str:
    """The backend's claim of an alert id, under the group's RTS prefix (the backend role's keys)."""
    return f"{keys.rts_prefix}:{keys.group}:alert:{alert_id}"


def passphrase_ok(given: object, expected: str) -> bool:
    """Constant-time comparison of the alert's passphrase with the configured one (False for a non-string)."""
    if not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(expected.encode("utf-8")).digest())


def _number_text(name: str, value: object) -> str:
    """A JSON number or a decimal string as the engine's decimal text; AlertError for anything else."""
    if isinstance(value, bool) or value is None:
        raise AlertError(422, f"field {name!r} must be a number such as 0.01, not {json.dumps(value)}")
    if isinstance(value, (int, float)):
        # the engine reads at most 15 digits before the point (reference.engine.signals.DECIMAL_RE): a larger number
        # is out of range, said as such (1e308 was written out as 309 digits: "longer than 256 characters"; JSON's
        # 1e999 reads as infinity, and a 400-digit integer cannot even be made a float)
        if (isinstance(value, int) and abs(value) >= MAX_NUMBER) or \
                (isinstance(value, float) and not (math.isfinite(value) and abs(value) < MAX_NUMBER)):
            raise AlertError(422, f"field {name!r} is out of range: a number below 1e15 (at most 15 digits before "
                                  f"the decimal point)")
        text = repr(float(value)) if isinstance(value, float) else str(value)
        if "e" in text.lower():
            text = f"{float(value):.12f}".rstrip("0").rstrip(".") or "0"
        return text
    if isinstance(value, str):
        return value.strip()
    raise AlertError(422, f"field {name!r} must be a number such as 0.01, not a {type(value).__name__}")


JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def parse_body(raw: bytes, max_body_bytes: int) -> dict:
    """The JSON object of a webhook body; AlertError 413 (too large), 400 (not UTF-8 JSON) or 422 (not an object)."""
    if len(raw) > max_body_bytes:
        # the body is read only up to the limit (and in chunks of up to 64 KB), so its length here is a lower
        # bound, not its size: a 99 MB body said "body is 65536 bytes"
        raise AlertError(413, f"body is over {max_body_bytes} bytes; an alert is at most {max_body_bytes} bytes")
    if not raw.strip():
        raise AlertError(400, "body is empty; send the alert as a JSON object")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise AlertError(400, f"body is not UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        if "integer string conversion" in str(exc):   # Python's own hint (sys.set_int_max_str_digits) is no answer
            raise AlertError(400, f"body is not valid JSON: a number has more than {sys.get_int_max_str_digits()} "
                                  "digits") from None
        raise AlertError(400, f"body is not valid JSON: {' '.join(str(exc).split())[:120]}") from None
    if not isinstance(doc, dict):
        kind = "null" if doc is None else JSON_KINDS.get(type(doc), type(doc).__name__)
        raise AlertError(422, f"body must be a JSON object of alert fields, not a JSON {kind}")
    return doc


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_alert(doc: dict, *, account: str, max_volume: float, now_ms: int | None = None,
                require_passphrase: bool = True) -> Alert:
    """Check an alert object (the passphrase's value excluded: see :func:`passphrase_ok`; ``require_passphrase``
    False for the panel, whose requests carry a session instead) and build its signal.
    Raises :class:`AlertError` 422 naming the first field that is wrong."""
    unknown = sorted(k for k in doc if k not in FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise AlertError(422, f"unknown field(s) {shown}; an alert has {', '.join(FIELDS)}")
    missing = [k for k in REQUIRED if k not in doc and (require_passphrase or k != "passphrase")]
    if missing:
        raise AlertError(422, f"field(s) {', '.join(map(repr, missing))} required")
    alert_id = doc["alert_id"]
    if not isinstance(alert_id, str) or not ALERT_ID_RE.fullmatch(alert_id):
        raise AlertError(422, "field 'alert_id' must be 1-60 characters of letters, digits and _.:- (one id per "
                              "alert: a retry sends the same id)")
    for name in ("symbol", "side", "order_type", "account", "comment", "time"):
        if name in doc and not isinstance(doc[name], str) and not (name == "account" and isinstance(doc[name], int)
                                                                   and not isinstance(doc[name], bool)):
            raise AlertError(422, f"field {name!r} must be a string")
    # what the OpenAPI schema says, exactly: the lowercase words of its enums (no "BUY", no padding)
    for name, words in (("side", SIDES), ("order_type", ORDER_TYPES)):
        if name in doc and doc[name] not in words:
            raise AlertError(422, f"field {name!r} must be one of {', '.join(words)} (lowercase)")
    if isinstance(doc.get("account"), int) and not 0 <= doc["account"] <= MAX_ACCOUNT:
        raise AlertError(422, "field 'account' must be the broker login: 1-20 digits, as a string or an integer >= 0")
    signal_id = signal_id_of(alert_id)
    fields = {"signal_id": signal_id, "account": str(doc.get("account", account)).strip(),
              "symbol": doc["symbol"].strip(), "side": doc["side"].strip().lower(),
              "volume": _number_text("volume", doc["volume"]),
              "order_type": str(doc.get("order_type") or "market").strip().lower(), "source": SOURCE,
              "created_ms": str(int(time.time() * 1000) if now_ms is None else now_ms)}
    for name in ("price", "sl", "tp"):
        if name in doc:
            fields[name] = _number_text(name, doc[name])
    parsed = parse_signal(fields, max_volume=max_volume, now_ms=now_ms)
    if isinstance(parsed, InvalidSignal):
        raise AlertError(422, f"{parsed.reason} ({parsed.code})")
    return Alert(alert_id, signal_id, fields)


class RateLimiter:
    """A token bucket per source: ``rate_per_s`` tokens a second, at most ``burst``; ``max_sources`` buckets kept
    (least recently used dropped). ``take(source)`` -> 0.0 when allowed, else the seconds until a token."""

    def __init__(self, rate_per_s: float, burst: int, max_sources: int = 10_000):
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self.max_sources = int(max_sources)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, source: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[source] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[source] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        return wait


def parse_claim(value: str | bytes | None) -> tuple[str, str, str] | None:
    """``(state, a, b)`` of a claim value: ``(pending, instance, ms)`` or ``(accepted, signal id, entry id)``."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    state, _, rest = str(value).partition(":")
    a, _, b = rest.rpartition(":") if state == ACCEPTED else rest.partition(":")
    return state, a, b
