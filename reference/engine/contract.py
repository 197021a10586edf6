"""The engine's wire contract: everything a reader of Redis or of a broker ledger must agree on with the engine.

Standard library only, so a saved run can be judged anywhere and the harness can read a running stack without
importing the engine's machinery. The engine (``engine.py``, ``lease.py``), the drill runner, the checkers, the
synthetic runs and the test fixtures import this module; nothing else spells a key, a lease value or a status.

Keys of one engine group ``g`` (the prefixes are configuration: ``EngineConfig.rtss_key`` and friends):

=========================  ======================================================================================
``RTSS``                   signal stream (XADD by clients, XREADGROUP by the active engine)
``RTRS``                   result stream (one entry per RTSS entry: executed, rejected or duplicate)
``RTS:g:signal:<id>``      trade state of one signal (hash: status, order, attempts, ...)
``RTS:g:results``          index of RTSS entry ids whose result is on RTRS (exactly-once publish)
``RTS:g:positions``        the engine's view of its open positions at every broker (hash: ``<broker>:<ticket>``
                           -> JSON; ``position_field``, ENG-5)
``RIS:g:session``          instance/session state (active broker, suspended brokers)
``RIS:g:suspended_accounts`` accounts suspended after NO_MONEY (set)
``g:lease``                ``"<instance>:<token>"`` with a TTL (ENG-1)
``g:fence``                the fencing counter, INCRemented on every acquisition; moved to the server time (ms)
                           when a promoted node starts a quarantine (``g:lease:node``)
``g:lease:holder``         the last holder's value (no TTL)
``g:lease:renewed_ms``     Redis server time of the last renewal or acquisition
``g:lease:released``       how the last holder let go, read and cleared by the next acquisition: ``exit`` (its
                           supervisor reaped it and released for it) or ``clean`` (it released on shutdown)
``g:lease:node``           ``"<host>:<port> <ms>"``: the node the lease was last written on and the end of a promoted
                           node's quarantine (0: none), ``reference.engine.lease``
=========================  ======================================================================================

Positions (ENG-5): one field per open position, ``<broker>:<ticket>`` (the broker's name in the engine config, e.g.
``primary:10000003``), value JSON ``{"symbol", "type", "volume", "price_open", "comment", "broker"}``. Two brokers
number their tickets alike (the simulator starts every ledger at 10000001), so a ticket alone cannot hold both brokers'
positions; the engine rewrites only the part of the broker it reads (``sync_positions``) and keeps the others'.
An engine before this key wrote the bare ticket; readers take such a field as a position of the broker its JSON
names (``parse_position_field`` gives ``("", ticket)``), and the engine rewrites it under the new key at its next sync.

Order comments (MT5_API exactly-once): ``<prefix><12 base32 chars of sha256(signal id)>-<attempt>``, e.g.
``tdabcdefghijkl-2``; every attempt of one signal shares the prefix, so two executed attempts are a duplicate.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

COMMENT_PREFIX = "td"
COMMENT_MAX_LEN = 24  # MT5's comment field
COMMENT_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_ENGINE_COMMENT = re.compile(r"([a-z2-7]{12})-([0-9]+)")
_SIGNAL_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

DEFAULT_GROUP = "engine"
RTSS = "RTSS"
RTRS = "RTRS"
RTS_PREFIX = "RTS"
RIS_PREFIX = "RIS"
ALERTS = "ALERTS"


@dataclass(frozen=True)
class Keys:
    """Every Redis key of one engine group. Build with :meth:`of` from an ``EngineConfig``-like object or with
    the defaults: ``Keys(group="engine")``."""

    group: str = DEFAULT_GROUP
    rtss: str = RTSS
    rtrs: str = RTRS
    rts_prefix: str = RTS_PREFIX
    ris_prefix: str = RIS_PREFIX
    alerts: str = ALERTS

    @classmethod
    def of(cls, cfg) -> "Keys":
        """From any object with ``group``, ``rtss_key``, ``rtrs_key``, ``rts_prefix``, ``ris_prefix`` and
        ``alerts_key`` attributes (the engine's config); missing ones take the defaults."""
        return cls(group=getattr(cfg, "group", DEFAULT_GROUP), rtss=getattr(cfg, "rtss_key", RTSS),
                   rtrs=getattr(cfg, "rtrs_key", RTRS), rts_prefix=getattr(cfg, "rts_prefix", RTS_PREFIX),
                   ris_prefix=getattr(cfg, "ris_prefix", RIS_PREFIX), alerts=getattr(cfg, "alerts_key", ALERTS))

    def rts_signal(self, signal_id: str) -> str:
        return f"{self.rts_prefix}:{self.group}:signal:{signal_id}"

    @property
    def rts_signal_pattern(self) -> str:
        """A SCAN MATCH pattern for every signal's RTS hash."""
        return f"{self.rts_prefix}:{self.group}:signal:*"

    @staticmethod
    def signal_of_rts_key(key: str) -> str:
        return key.split(":signal:", 1)[-1]

    @property
    def rts_results(self) -> str:
        return f"{self.rts_prefix}:{self.group}:results"

    @property
    def rts_positions(self) -> str:
        return f"{self.rts_prefix}:{self.group}:positions"

    @property
    def ris_session(self) -> str:
        return f"{self.ris_prefix}:{self.group}:session"

    @property
    def ris_suspended(self) -> str:
        return f"{self.ris_prefix}:{self.group}:suspended_accounts"

    @property
    def lease(self) -> str:
        return f"{self.group}:lease"

    @property
    def fence(self) -> str:
        return f"{self.group}:fence"

    @property
    def lease_holder(self) -> str:
        return f"{self.group}:lease:holder"

    @property
    def renewed_ms(self) -> str:
        return f"{self.group}:lease:renewed_ms"

    @property
    def lease_released(self) -> str:
        return f"{self.group}:lease:released"

    @property
    def lease_node(self) -> str:
        """``"<host>:<port> <ms>"``: the Redis node the lease was last written on, and the end (server ms; 0: none)
        of the quarantine a promoted node imposes before the lease may be taken on it (``reference.engine.lease``)."""
        return f"{self.group}:lease:node"

    @property
    def lease_in_flight(self) -> str:
        """Hash ``signal_id -> ms``: the orders a crashed holder had in flight when its supervisor released its lease
        (``handoff.release_after_exit``); the successor treats them as ambiguous sends (ENG-5)."""
        return f"{self.group}:lease:in_flight"

    def lease_keys(self) -> list[str]:
        """The KEYS of the lease scripts, in their order: lease, fence, renewed_ms, holder, released, node."""
        return [self.lease, self.fence, self.renewed_ms, self.lease_holder, self.lease_released, self.lease_node]


# -- positions ---------------------------------------------------------------------------------------------------
def position_field(broker: str, ticket: int | str) -> str:
    """``"<broker>:<ticket>"``, the field of one open position in ``RTS:g:positions`` (ENG-5). ``broker`` is the
    broker's name in the engine config (not empty); ``ticket`` the position's ticket (its opening order's). Raises
    ValueError for an empty broker name or a ticket that is empty or holds a ':'."""
    broker, ticket = str(broker), str(ticket)
    if not broker or not ticket or ":" in ticket:
        raise ValueError(f"position field needs a broker name and a ticket, got {broker!r}, {ticket!r}")
    return f"{broker}:{ticket}"


def position_prefix(broker: str) -> str:
    """``"<broker>:"``: what every ``position_field`` of ``broker`` starts with."""
    if not str(broker):
        raise ValueError("position prefix needs a broker name")
    return f"{broker}:"


def parse_position_field(field: str | bytes) -> tuple[str, str]:
    """``(broker, ticket)`` of an ``RTS:g:positions`` field; ``("", ticket)`` for a bare ticket (an engine before
    ENG-5's per-broker key wrote those; the broker is then in the value's JSON, if anywhere). The ticket is what
    follows the last ':', so a broker name may itself hold one."""
    if isinstance(field, bytes):
        field = field.decode("utf-8", "replace")
    broker, _sep, ticket = str(field).rpartition(":")
    return broker, ticket


# -- the lease value -------------------------------------------------------------------------------------------
def lease_value(instance: str, token: int) -> str:
    """``"<instance>:<token>"``, what ``g:lease`` and ``g:lease:holder`` hold."""
    if ":" in instance:
        raise ValueError(f"instance name {instance!r} must not contain ':'")
    return f"{instance}:{int(token)}"


def parse_lease(value: str | bytes | None) -> tuple[str, int] | None:
    """``(instance, token)`` of a lease value; None for an empty or unreadable one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    instance, sep, token = str(value).rpartition(":")
    if not sep or not instance or not token.isdigit():
        return None
    return instance, int(token)


def lease_instance(value: str | bytes | None) -> str | None:
    """The instance name in a lease value, or None."""
    parsed = parse_lease(value)
    return parsed[0] if parsed else None


# -- results ---------------------------------------------------------------------------------------------------
class ResultStatus(str, Enum):
    """``status`` of an RTRS result (and of a final RTS hash)."""

    EXECUTED = "executed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"  # a second RTSS entry with a signal id already handled: nothing sent


RESULT_FIELDS = ("signal_id", "entry_id", "status", "code", "reason", "account", "symbol", "side", "volume",
                 "order", "deal", "price", "comment", "broker", "attempts", "instance", "ts_ms")
# statuses other engines and brokers use for the same outcomes; the checkers accept them when judging a
# deployment that is not the reference engine
EXECUTED_STATUSES = frozenset({"executed", "filled", "done", "ok", "done_partial", "partial", "placed"})
REJECTED_STATUSES = frozenset({"rejected", "failed", "cancelled", "canceled", "invalid", "expired", "suspended",
                               "stopped", "error"})


def is_executed(status: str | None) -> bool:
    return (status or "").strip().lower() in EXECUTED_STATUSES


def is_rejected(status: str | None) -> bool:
    return (status or "").strip().lower() in REJECTED_STATUSES


# -- order comments --------------------------------------------------------------------------------------------
def signal_key(signal_id: str) -> str:
    """Short deterministic key of a signal: 12 base32 chars of sha256 (60 bits; collision odds negligible)."""
    digest = hashlib.sha256(signal_id.encode()).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()[:12]


def comment_prefix_for(signal_id: str, prefix: str = COMMENT_PREFIX) -> str:
    """Every order sent for this signal carries a comment starting with this (attempts differ in the suffix)."""
    return f"{prefix}{signal_key(signal_id)}-"


def order_comment(signal_id: str, attempt: int, prefix: str = COMMENT_PREFIX, max_len: int = COMMENT_MAX_LEN) -> str:
    """The ``comment`` of attempt ``attempt`` (1-based) of a signal: ``td<12 chars>-<attempt>``.
    Raises ValueError when the prefix makes it longer than the broker allows."""
    comment = f"{comment_prefix_for(signal_id, prefix)}{attempt}"
    if len(comment) > max_len or not COMMENT_RE.match(comment):
        raise ValueError(f"comment {comment!r} does not fit the broker's {max_len}-character limit; "
                         f"shorten comment_prefix")
    return comment


def signal_of_comment(signal_ids: Iterable[str] = (), prefix: str = COMMENT_PREFIX):
    """A ``comment -> signal id | None`` function.

    - The engine's form ``<prefix><12-char key>-<attempt>`` maps to the submitted signal whose key it is
      (``signal_ids``), or to ``<prefix><key>`` when no submitted signal has that key; every attempt of one signal
      maps to the same id.
    - Otherwise the comment is the signal id, optionally behind ``something:`` (``sig:s-0007`` -> ``s-0007``).
    - Broker-made comments (``[sl 1.1]``, ``[tp ...]``, ``[so ...]``) and empty ones map to None."""
    index = {signal_key(s): s for s in signal_ids}

    def signal_of(comment: str | None) -> str | None:
        c = (comment or "").strip()
        if not c or c.startswith("["):
            return None
        if prefix and c.startswith(prefix):
            m = _ENGINE_COMMENT.fullmatch(c[len(prefix):])
            if m:
                return index.get(m.group(1), f"{prefix}{m.group(1)}")
        if ":" in c:
            c = c.rsplit(":", 1)[1]
        return c if _SIGNAL_ID.fullmatch(c) else None

    return signal_of
