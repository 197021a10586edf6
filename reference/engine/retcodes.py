"""How the engine classifies an order_send outcome (MT5_API.md retcode table; BRK-4, ORD-1, ORD-2, ENG-5).

The numeric values below are only fallbacks: the engine reads each name from the mt5-like object first, so the
real module, an mt5linux instance and the simulator client are all judged by their own constants.
"""
from __future__ import annotations

from enum import Enum

from reference.mt5 import constants as _mt5_constants


class Outcome(str, Enum):
    EXECUTED = "executed"          # DONE, DONE_PARTIAL, PLACED
    REPRICE = "reprice"            # REQUOTE, PRICE_CHANGED, PRICE_OFF: retry with a fresh price (bounded)
    MARKET_CLOSED = "market_closed"  # queue until the session opens
    NO_MONEY = "no_money"          # alert, suspend the account, reject the signal
    PERMANENT = "permanent"        # reject the signal with the reason (invalid order: notify and stop)
    AMBIGUOUS = "ambiguous"        # None (IPC), ERROR, TIMEOUT, CONNECTION: reconcile, never resend blindly
    RETRY = "retry"                # anything else: ORD-1 backoff 1, 2, 4, 8, 16 s, then failed_syncs


# the documented values, from the one table the simulator also serves (reference/mt5/constants.py)
FALLBACK = {name: value for name, value in vars(_mt5_constants).items()
            if name.isupper() and isinstance(value, int)}

_CLASSES = {
    Outcome.EXECUTED: ("DONE", "DONE_PARTIAL", "PLACED"),
    Outcome.REPRICE: ("REQUOTE", "PRICE_CHANGED", "PRICE_OFF"),
    Outcome.MARKET_CLOSED: ("MARKET_CLOSED",),
    Outcome.NO_MONEY: ("NO_MONEY",),
    Outcome.AMBIGUOUS: ("ERROR", "TIMEOUT", "CONNECTION"),
    Outcome.RETRY: ("TOO_MANY_REQUESTS", "LOCKED", "FROZEN", "ORDER_CHANGED"),
    # every other documented retcode is permanent (REJECT, CANCEL, INVALID*, TRADE_DISABLED, *_DISABLES_AT, ...).
    # INVALID_FILL among them: the same filling mode is refused every time, so resending it only delays the
    # rejection; the broker session already picks a mode the symbol allows (BrokerSession.filling_for), so a
    # 10030 is a configuration error, rejected with a reason that names the filling mode
}

# last_error() codes after order_send returned None that prove the request never reached the terminal/broker
DEFINITE_CLIENT_ERRORS = {-2: "INVALID_PARAMS", -3: "NO_MEMORY", -4: "NOT_FOUND", -5: "INVALID_VERSION",
                          -7: "UNSUPPORTED"}
# refused before sending, but the cause is the terminal's state, not the order: back off and retry
TRANSIENT_CLIENT_ERRORS = {-8: "AUTO_TRADING_DISABLED"}


def constant(mt5, name: str) -> int:
    value = getattr(mt5, name, None)
    return int(value) if value is not None else FALLBACK[name]


class RetcodeTable:
    """Retcode number -> (name, Outcome), built from an mt5-like object's constants."""

    def __init__(self, mt5):
        self.names: dict[int, str] = {}
        self.classes: dict[int, Outcome] = {}
        for full in FALLBACK:
            if full.startswith("TRADE_RETCODE_"):
                code = constant(mt5, full)
                short = full[len("TRADE_RETCODE_"):]
                self.names[code] = short
                self.classes[code] = next((o for o, names in _CLASSES.items() if short in names),
                                          Outcome.PERMANENT)

    def classify(self, retcode: int | None) -> Outcome:
        if retcode is None:
            return Outcome.AMBIGUOUS
        # an unknown code is not proof of non-execution: treat it as ambiguous and reconcile
        return self.classes.get(int(retcode), Outcome.AMBIGUOUS)

    def name(self, retcode: int | None) -> str:
        if retcode is None:
            return "NONE"
        return self.names.get(int(retcode), f"RETCODE_{retcode}")


def classify_none(last_error: tuple | None) -> tuple[Outcome, str]:
    """order_send returned None: ambiguous unless last_error proves the request was refused before sending."""
    code = None
    try:
        code = int(last_error[0]) if last_error else None
    except (TypeError, ValueError, IndexError):
        code = None
    if code in DEFINITE_CLIENT_ERRORS:
        return Outcome.PERMANENT, DEFINITE_CLIENT_ERRORS[code]
    if code in TRANSIENT_CLIENT_ERRORS:
        return Outcome.RETRY, TRANSIENT_CLIENT_ERRORS[code]
    return Outcome.AMBIGUOUS, f"LAST_ERROR_{code}"
