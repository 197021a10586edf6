"""The reference trade engine: exactly-once order execution with active-passive failover (issue 4).

Requirements: ENG-1..6, BRK-1..5, ORD-1..3, the client side of RDS-2. Modules, one concern each:

- ``contract``   the wire contract: Redis keys, lease value, result statuses, order comments (stdlib only).
- ``config``     EngineConfig: every timing with its requirement ID; TOML/JSON file + ``TRADEDRILL_ENGINE_*`` env.
- ``signals``    the RTSS signal schema, validation (never raises), the deterministic order comment.
- ``journal``    the local durable intent journal (DuckDB) and ``failed_syncs``.
- ``redislink``  Redis through Sentinel with explicit timeouts and no hidden retries (ORD-3, RDS-2).
- ``lease``      the lease, fencing token, local deadline and takeover wait (ENG-1, ENG-5, ENG-6).
- ``broker``     mt5-like broker sessions with deadlines, heartbeat, reconnect, switch-over; broker-side lookups.
- ``retcodes``   order_send outcome classes (BRK-4, ORD-1).
- ``alerts``     the single alert path (ALERTS stream + event log + optional webhook).
- ``events``     the JSON-lines event log the drills read.
- ``watchdog``   deadlock detection (ENG-3).
- ``engine``     the main loop tying them together; its docstring walks through the life of a signal.

Why exactly-once holds (and where it cannot): see ``lease`` and ``engine`` docstrings. In short, the durable intent
is local (Redis can lose acknowledged writes on failover), the broker's ledger (magic + comment) is the arbiter, an
ambiguous reply is reconciled and never blindly resent, a new active waits out the old one's last possible send and
reconciles before trading, and outcomes + acks are one atomic Redis script.
"""
from .config import BrokerConfig, ConfigError, EngineConfig
from .signals import InvalidSignal, Signal, comment_prefix_for, order_comment, parse_signal

__all__ = ["BrokerConfig", "ConfigError", "EngineConfig", "InvalidSignal", "Signal", "comment_prefix_for",
           "order_comment", "parse_signal"]
