"""The backend's configuration (BE-1..4): one JSON file per instance, every secret in a file of its own.

``BackendConfig.load(path)`` reads it and checks every field; a bad one is a :class:`ConfigError` of one line that
names the field. Secrets never sit in this file: ``redis_password_file``, ``passphrase_file`` and
``clickhouse_password_file`` name 0600 files that hold them (one line each).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


class ConfigError(ValueError):
    """The backend's config is unusable; the message (one line) names the field and what it must be."""


@dataclass
class BackendConfig:
    """Fields (units in the names):

    - ``instance``: this backend's name (``backend-a``); ``host``/``port``: where uvicorn listens.
    - Redis (BE-3): ``sentinels`` ``[[host, port], ...]`` (empty: ``redis_host``/``redis_port`` directly),
      ``master_name``, ``redis_username`` (the stack's ``backend`` role), ``redis_password_file``; the signal
      sender's ``wait_replicas`` / ``wait_ms`` (RDS-4: a signal counts only once a replica holds it),
      ``max_attempts`` and ``submit_deadline_s`` (one webhook's whole submission).
    - Keys: ``group``, ``rtss_key``, ``rtrs_key``, ``rts_prefix`` (``reference.engine.contract.Keys``).
    - Webhook (BE-4): ``passphrase_file`` (TradingView's shared secret), ``account`` (the broker login an alert
      without one trades on), ``max_volume`` lots, ``max_body_bytes``, ``rate_per_s``/``rate_burst`` (token bucket
      per source address), ``trusted_proxies`` (addresses whose ``X-Real-IP`` names the source), ``claim_pending_ms``
      (how long a crashed request's claim of an alert id blocks a retry), ``claim_ttl_s`` (how long an accepted
      alert id is remembered).
    - History (TV-4): ``clickhouse_url`` (empty: history is unavailable and says so), ``clickhouse_username``,
      ``clickhouse_password_file``, ``clickhouse_table``, ``clickhouse_timeout_s`` (each socket operation),
      ``clickhouse_deadline_s`` (a whole request's wait for ClickHouse: below the proxy's read timeout, so a slow
      ClickHouse is this backend's clear answer, not the proxy's 504); ``symbols`` the datafeed lists;
      ``history_cache_path``: this backend's DuckDB copy of the fills it read from RTRS, what ``/history`` answers
      from while ClickHouse cannot (``reference.backend.historycache``; empty: no copy, history is then unavailable).
    - Ticks (TV 1, the panel's live prices): ``ea_streams`` ``[{"instance", "udp": [host, port], "tcp": [host,
      port]}, ...]``: one tick consumer per EA (``reference.ea.consumer``, UDP with TCP as backup), leaving from
      ``host``; empty: the panel says no ticks are streamed.
    """

    instance: str = "backend"
    host: str = "127.0.0.1"
    port: int = 8000
    sentinels: list = field(default_factory=list)
    master_name: str = "mymaster"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_username: str = "backend"
    redis_password_file: str = ""
    redis_socket_timeout_s: float = 0.5
    redis_connect_timeout_s: float = 0.3
    wait_replicas: int = 1
    wait_ms: int = 300
    max_attempts: int = 3
    submit_deadline_s: float = 2.0
    group: str = "engine"
    rtss_key: str = "RTSS"
    rtrs_key: str = "RTRS"
    rts_prefix: str = "RTS"
    passphrase_file: str = ""
    account: str = "5001"
    max_volume: float = 100.0
    max_body_bytes: int = 8192
    rate_per_s: float = 100.0
    rate_burst: int = 200
    trusted_proxies: list = field(default_factory=list)
    claim_pending_ms: int = 3000  # > submit_deadline_s + one socket timeout: a live claimant never loses it
    claim_ttl_s: int = 7 * 86400
    clickhouse_url: str = ""
    clickhouse_username: str = "default"
    clickhouse_password_file: str = ""
    clickhouse_table: str = "trade_outcomes"
    clickhouse_timeout_s: float = 2.0
    clickhouse_deadline_s: float = 1.0   # the stack sets half of the proxy read timeout (tradedrill.services.backend)
    symbols: list = field(default_factory=lambda: ["EURUSD", "GBPUSD"])
    history_cache_path: str = ""
    ea_streams: list = field(default_factory=list)

    def __post_init__(self) -> None:
        positive = ("port", "redis_socket_timeout_s", "redis_connect_timeout_s", "max_attempts", "submit_deadline_s",
                    "max_volume", "max_body_bytes", "rate_per_s", "rate_burst", "claim_pending_ms", "claim_ttl_s",
                    "clickhouse_timeout_s", "clickhouse_deadline_s")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ConfigError(f"backend config: {name}={value!r} must be a number > 0")
        for name in ("wait_replicas", "wait_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"backend config: {name}={value!r} must be an integer >= 0")
        if not self.passphrase_file:
            raise ConfigError("backend config: passphrase_file is required (a 0600 file holding the webhook "
                              "passphrase); the webhook never runs without one")
        if not str(self.account).isdigit():
            raise ConfigError(f"backend config: account={self.account!r} must be the broker login (digits)")

    @classmethod
    def load(cls, path: Path | str) -> "BackendConfig":
        """Read and check a JSON config file; raises :class:`ConfigError` (one line)."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"backend config {path}: cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConfigError(f"backend config {path}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"backend config {path}: must be a JSON object of fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"backend config {path}: unknown field(s) {', '.join(unknown)}")
        return cls(**doc)

    def to_dict(self) -> dict:
        return asdict(self)


def read_secret(path: str, what: str) -> str:
    """The first line of a secret file; raises :class:`ConfigError` naming ``what`` (never the content)."""
    if not path:
        return ""
    try:
        return Path(path).read_text().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except (OSError, IndexError) as exc:
        raise ConfigError(f"{what} file {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
