"""Engine configuration: every timing and limit, with the documents' value as default and its requirement ID.

Loaded from a TOML or JSON file, then overridden by environment variables ``TRADEDRILL_ENGINE_<FIELD>``
(upper-case field name; values are parsed as JSON when they parse, else kept as strings). Unknown keys are an
error that names the key: a typo in a production config must not silently fall back to a default.

Secrets: the Redis and Sentinel passwords can be given as a file path (``redis_password_file``,
``sentinel_password_file``: the file holds the password alone, read on every connect), so the config file need not
hold them; a password given inline (``redis_password``) is left out of ``repr``. The broker ``factory`` option
imports and calls code: the config file is code and must be protected like code (docs/SECURITY.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass
class BrokerConfig:
    """One broker connection (primary first, then backups), reached through an mt5-like object.

    ``factory`` is ``"module:callable"``; it is called with ``params`` and returns an object with the MetaTrader5
    API surface (``reference.mt5.port:open_terminal`` with ``{"kind": "simulator", "host", "port"}``, or a ``mt5linux.MetaTrader5`` instance in production).
    ``login``/``password``/``server`` go to ``initialize``.
    """

    name: str
    factory: str = "reference.mt5.port:open_terminal"
    params: dict = field(default_factory=dict)
    login: int | None = None
    password: str | None = None
    server: str | None = None


@dataclass
class EngineConfig:
    # --- identity -------------------------------------------------------------------------------------------------
    group: str = "engine"                  # instances of one group share one lease (active-passive)
    instance: str = "A"                    # unique per process within the group
    state_dir: str = "./engine-state"      # local journal + event log
    # --- Redis (RDS-1/RDS-2, ORD-3) ----------------------------------------------------------------------------
    sentinels: list = field(default_factory=list)  # [[host, port], ...]; empty -> redis_host/redis_port directly
    master_name: str = "mymaster"          # RDS-1
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_socket_timeout_s: float = 1.0     # explicit: the library default retry hides outages (ARCHITECTURE facts)
    redis_connect_timeout_s: float = 0.5
    # who the engine is to Redis and to the Sentinels (ACL users); a password inline or, better, in a file of its own
    redis_username: str = ""
    redis_password: str = field(default="", repr=False)
    redis_password_file: str = ""
    sentinel_username: str = ""
    sentinel_password: str = field(default="", repr=False)
    sentinel_password_file: str = ""
    redis_source_address: str = ""          # leave for Redis and the Sentinels from this address (the engine node's
                                            # own, so a partition can put it on either side); "" = the kernel's pick
    redis_retry_interval_s: float = 2.0     # ORD-3: retry Redis every 2 s
    primary_check_s: float = 0.5            # ask the Sentinels who is primary this often, so a primary change with
                                            # every connection still open is seen within 1 s (issue 12, RDS-2)
    republish_window_s: float = 120.0       # after a primary change, outcomes published this recently are checked
                                            # on the new primary and republished if the failover lost them
    publish_wait_replicas: int = 0          # >0: WAIT for this many replicas after each publish; an outcome WAIT does
    publish_wait_ms: int = 100              # not confirm stays unpublished (retried), never counted as done
    redis_rediscover_after: int = 10        # ORD-3: after 10 attempts switch Redis through Sentinel (full rediscovery)
    rtss_key: str = "RTSS"                  # signal stream
    rtrs_key: str = "RTRS"                  # result stream
    rts_prefix: str = "RTS"                 # trade state
    ris_prefix: str = "RIS"                 # instance/session state
    alerts_key: str = "ALERTS"              # alert stream
    consumer_group: str = ""                # default: the engine group name
    read_block_ms: int = 200                # XREADGROUP block (must stay under the socket timeout)
    send_lanes: int = 192                   # order_send calls in flight at once, each on its own broker connection
                                            # (made on first use): a lost reply holds one lane for
                                            # order_reply_timeout_s, not the engine; 30 % lost at 200/s with a 1 s
                                            # deadline holds 60 on average and ~150 at a batch's burst (issue 11)
    order_reply_timeout_s: float = 1.0      # an order_send unanswered this long is ambiguous and reconciled by
                                            # magic + comment like a lost reply (never resent blindly); 50 x PERF-1's
                                            # 20 ms. BRK-1's 5 s (broker_timeout_s) stays the deadline of every other
                                            # call; with it, 30 % lost replies at 200/s held every lane (issue 11)
    park_after_s: float = 0.05              # a send not answered by then is parked; the batch goes on without it
    read_count: int = 256                  # entries per XREADGROUP: one batch, one group commit (issue 11)
    send_chunk: int = 64                    # a read's signals go out and are published in chunks of this many, so
                                            # the first results of a 256-entry backlog read (a takeover, a burst)
                                            # are out after a quarter of the batch, not all of it (issue 11)
    # --- lease / heartbeat (ENG-1, ENG-2, ENG-5) -----------------------------------------------------------------
    heartbeat_s: float = 1.0                # ENG-1: heartbeat to Redis every 1 s
    lease_ttl_s: float = 3.0                # ENG-1: passive takes over after 3 s without heartbeat
    lease_safety_margin_s: float = 0.3      # local deadline = renew start + ttl - margin (clock-rate slack)
    lease_confirm_primary: bool = True      # renew/acquire only while a majority of the Sentinels names the node
                                            # the lease lives on (issue 12: no trading on an isolated old primary)
    passive_poll_s: float = 0.05            # how often a passive instance tries to take the lapsed lease (a pause
                                            # RTO is 3 s - heartbeat age + this; issue 11)
    send_flight_s: float = 0.5              # bound on an order request's transit: the holder stops sending this long
                                            # before its lease can lapse, so a successor need not wait for it
    exit_flight_s: float = 0.1              # after a crash handoff (issue 11): requests the dead process had written
    # --- broker (BRK-1, BRK-2, BRK-5) --------------------------------------------------------------------------
    brokers: list = field(default_factory=list)  # [BrokerConfig-like dict], primary first
    broker_heartbeat_s: float = 3.0         # BRK-1
    broker_timeout_s: float = 5.0           # BRK-1: connection/call timeout
    broker_reconnect_s: float = 3.0         # BRK-2: retry every 3 s
    broker_close_poll_s: float = 1.0        # positions the broker closed on its own (SL, TP, stop-out) leave RTS
                                            # within this long: the active engine reads the new closing deals
                                            # (BRK-3; issue 20)
    broker_switch_after: int = 5            # BRK-2: switch to the backup after 5 failures
    broker_suspend_after: int = 10          # BRK-2/BRK-5: notify and suspend after 10
    # --- orders (ENG-5, BRK-4, ORD-1, ORD-2) ---------------------------------------------------------------------
    magic: int = 7305101                    # fixed magic of every order this engine sends (MT5_API exactly-once)
    comment_prefix: str = "td"
    comment_max_len: int = 24               # MT5_API: <= 24 chars of [A-Za-z0-9_-]
    deviation_points: int = 20
    filling: str = "ioc"                    # fok | ioc | return
    requote_retries: int = 3                # BRK-4: REQUOTE/PRICE_CHANGED/PRICE_OFF retried with a fresh price
    retry_backoff_s: list = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0])  # ORD-1
    failed_sync_retry_s: float = 60.0       # ORD-2: retry after 1 minute from failed_syncs
    failed_sync_attempts: int = 1           # ORD-2: then notify the user (and reject with the reason)
    market_closed_poll_s: float = 5.0       # BRK-4: queued until the market opens; re-tried at this pace
    ambiguous_grace_s: float = 10.0         # MT5_API step 3: no trace after this long -> resubmit under a new id
    reconcile_poll_s: float = 0.5
    reconcile_lookback_s: float = 7 * 86400.0
    passive_scan_s: float = 2.0             # a passive instance refreshes its broker scan this often (0: never)
    orphan_check_s: float = 1.0             # the holder claims entries pending on another consumer this often
    scan_overlap_s: float = 60.0            # an incremental broker scan re-reads this much history (broker seconds)
                                            # before the newest time the last scan saw: an order stamped just before
                                            # it but recorded after it is not missed (margin, not a measured delay)
    max_volume: float = 100.0
    signal_max_age_s: float = 0.0           # 0 = never stale; else older signals are rejected as STALE
    # --- local store: the journal's snapshots, health and failed_syncs (DDB-1..6, BR-2; issue 13) ------------------
    store_snapshot_interval_s: float = 0.5  # DDB-2: a snapshot every 500 ms after changes (MT5-HA: every 1 minute)
    store_snapshots_kept: int = 10          # DDB-2: the strictest document's 10 (MT5-HA 4.3), which holds EA-BR's last 5
    store_health_check_s: float = 1.0       # DDB-6: health check every 1 s
    store_disk_full_retry_s: float = 1.0    # DDB-5: a journal write refused for lack of space is retried this often
                                            # (signals stay pending, unacknowledged; the engine does not exit)
    store_verify_mb_per_check: int = 64     # DDB-6: block checksums read per check: a journal up to 64 MB is
                                            # verified whole every check (<= 1 s); larger over ceil(size/64) checks
    store_checkpoint_threshold_mb: int = 16  # DDB-1: WAL folded into the file at this size (at most 256 MB); a
                                            # short WAL keeps the replay at start inside DDB-3's 3 s
    journal_memory_window: int = 10_000     # final outcomes with no work left kept in memory (the newest; >= 100,
                                            # ~0.9 KB each); older ones are read from the journal file by signal id
    failed_sync_backoff_s: list = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0])  # BR-2, after the
                                            # first resync within 1 s of a start; then an alert, then every
                                            # failed_sync_retry_s
    # --- ClickHouse history sync and backups (CH-1..3; issue 13; reference.store.clickhouse_sync) --------------
    clickhouse_url: str = ""                # CH-1: http(s)://host:port[/database]; "" = no ClickHouse sync (as before)
    clickhouse_username: str = "default"
    clickhouse_password_file: str = ""     # the file holds the password alone; never inline, never logged
    clickhouse_table: str = "trade_outcomes"
    clickhouse_batch_rows: int = 2000       # outcomes per INSERT (one batch = one ClickHouse part)
    clickhouse_sync_interval_s: float = 0.1  # how often new final outcomes are looked for (bounds the sync lag)
    clickhouse_timeout_s: float = 2.0       # CH-1: one try's deadline (connect, CREATE TABLE, INSERT together);
    #                                         below clickhouse_retry_s, so a failed try ends before the next is due
    clickhouse_retry_s: float = 5.0         # CH-1: a failed sync is retried every 5 s ...
    clickhouse_retries: int = 3             # CH-1: ... 3 times, then it goes to failed_syncs
    clickhouse_failed_retry_s: float = 60.0  # CH-1: failed_syncs rows of ClickHouse retried every 1 minute
    clickhouse_alert_after: int = 5         # BR-2: 5 failed failed_syncs tries, then notify (still retried)
    clickhouse_backfill_check_s: float = 60.0  # CH-2: compare ClickHouse (FINAL) with the journal this often
    clickhouse_backup_dir: str = ""         # CH-3: "" = <state_dir>/backup/clickhouse; "off" = no backups
    clickhouse_backup_full_s: float = 43200.0  # CH-3: full backup every 12 h
    clickhouse_backup_incremental_s: float = 3600.0  # CH-3: incremental backup every 1 h
    clickhouse_backup_keep_days: float = 7.0  # CH-3: keep 7 days of backups
    clickhouse_backup_zstd_level: int = 3   # CH-3: ZSTD level 3
    # --- broker logins from PostgreSQL (PG-1; issue 13; reference.settings.logins.apply_broker_logins) -----------
    credentials_dsn: str = ""               # PG-1: libpq string (naming a passfile); "" = logins as given in brokers
    credentials_key_file: str = ""          # PG-1: the 0600 key file of the sealed logins (a path, never the key)
    # --- the user's trade settings, a JSON file with backups (CFG-1/2; reference.settings.load_user_settings) -----
    user_settings_dir: str = ""             # CFG-1: folder of engine.json (relative: inside state_dir); "" = none
    # --- supervision (ENG-3) ------------------------------------------------------------------------------------
    watchdog_timeout_s: float = 30.0        # alive but no main-loop progress this long -> exit(70), supervisor restarts
    # --- alerts -------------------------------------------------------------------------------------------------
    webhook_url: str = ""
    alerts_maxlen: int = 10000
    results_maxlen: int = 0                 # 0 = keep every result (the drills read them all)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def group_name(self) -> str:
        return self.consumer_group or self.group

    def broker_configs(self) -> list[BrokerConfig]:
        out = []
        for item in self.brokers:
            if isinstance(item, BrokerConfig):
                out.append(item)
            else:
                if not isinstance(item, dict):
                    raise ConfigError(f"brokers: each broker is a table with name, factory, params, login; not "
                                      f"{item!r}")
                known = {f.name: str(f.type) for f in dataclasses.fields(BrokerConfig)}
                unknown = sorted(str(k) for k in item if k not in known)
                if unknown or "name" not in item:
                    raise ConfigError(f"brokers: each broker needs a name (and only {', '.join(known)}); got "
                                      f"{sorted(map(str, item))}")
                checked = {k: _typed(f"brokers.{k}", known[k], v) for k, v in item.items()}
                factory = checked.get("factory", "reference.mt5.port:open_terminal")
                if factory.count(":") != 1 or not all(part.strip() for part in factory.split(":")):
                    raise ConfigError(f"brokers.factory {factory!r} must be 'module:callable'")
                out.append(BrokerConfig(**checked))
        return out

    def validate(self) -> None:
        if not self.instance or not all(c.isalnum() or c in "-_" for c in self.instance):
            raise ConfigError(f"instance {self.instance!r}: use letters, digits, '-' or '_'")
        if self.lease_ttl_s <= self.heartbeat_s:
            raise ConfigError("lease_ttl_s must exceed heartbeat_s, or the lease lapses between two heartbeats")
        if self.lease_safety_margin_s + self.send_flight_s >= self.lease_ttl_s - self.heartbeat_s:
            raise ConfigError("lease_safety_margin_s + send_flight_s must be smaller than lease_ttl_s - heartbeat_s, "
                              "or a holder could never send between two heartbeats")
        if not 0 < self.broker_close_poll_s <= 3600:
            raise ConfigError(f"broker_close_poll_s = {self.broker_close_poll_s}: must be > 0 and <= 3600 seconds")
        if not 0 < self.orphan_check_s <= 3600:
            raise ConfigError(f"orphan_check_s = {self.orphan_check_s}: must be > 0 and <= 3600 seconds")
        if not 0 <= self.passive_scan_s <= 3600:
            raise ConfigError(f"passive_scan_s = {self.passive_scan_s}: must be 0 (never) to 3600 seconds")
        if not 0 <= self.scan_overlap_s <= self.reconcile_lookback_s:
            raise ConfigError(f"scan_overlap_s = {self.scan_overlap_s}: must be 0 to reconcile_lookback_s seconds")
        if self.read_count < 1 or self.send_chunk < 1:
            raise ConfigError(f"read_count = {self.read_count}, send_chunk = {self.send_chunk}: both must be >= 1")
        if self.read_block_ms / 1000.0 >= self.redis_socket_timeout_s:
            raise ConfigError("read_block_ms must stay under redis_socket_timeout_s")
        if not 0 < self.order_reply_timeout_s <= self.broker_timeout_s:
            raise ConfigError(f"order_reply_timeout_s = {self.order_reply_timeout_s}: must be > 0 and at most "
                              f"broker_timeout_s ({self.broker_timeout_s})")
        if not self.retry_backoff_s:
            raise ConfigError("retry_backoff_s needs at least one delay (ORD-1: 1, 2, 4, 8, 16)")
        for i, address in enumerate(self.sentinels):
            if not (isinstance(address, (list, tuple)) and len(address) == 2 and isinstance(address[0], str)
                    and isinstance(address[1], int) and not isinstance(address[1], bool)
                    and 0 < address[1] < 65536):
                raise ConfigError(f"sentinels[{i}] = {address!r} must be [host, port], e.g. [\"127.0.0.5\", 26379]")
        if not 1 <= self.store_snapshots_kept <= 10:
            raise ConfigError(f"store_snapshots_kept = {self.store_snapshots_kept}: keep 1 to 10 snapshots "
                              f"(DDB-2: 5, MT5-HA: 10)")
        if not 1 <= self.store_checkpoint_threshold_mb <= 256:
            raise ConfigError(f"store_checkpoint_threshold_mb = {self.store_checkpoint_threshold_mb}: use 1 to 256 "
                              f"(DDB-1 caps the WAL at 256 MB)")
        if isinstance(self.store_verify_mb_per_check, bool) or not isinstance(self.store_verify_mb_per_check, int) \
                or self.store_verify_mb_per_check < 1:
            raise ConfigError(f"store_verify_mb_per_check = {self.store_verify_mb_per_check!r}: give a whole number "
                              f"of MB >= 1 (DDB-6 default 64: a journal up to 64 MB verified every 1 s check)")
        if isinstance(self.journal_memory_window, bool) or not isinstance(self.journal_memory_window, int) \
                or self.journal_memory_window < 100:
            raise ConfigError(f"journal_memory_window = {self.journal_memory_window!r}: give a whole number >= 100 "
                              f"(final outcomes kept in memory; default 10000, older ones are read from the file)")
        if self.store_disk_full_retry_s <= 0:
            raise ConfigError(f"store_disk_full_retry_s = {self.store_disk_full_retry_s}: must be positive (DDB-5 "
                              f"default 1.0 s)")
        if self.store_snapshot_interval_s <= 0 or self.store_health_check_s <= 0:
            raise ConfigError("store_snapshot_interval_s and store_health_check_s must be positive "
                              "(DDB-2: 0.5, DDB-6: 1.0)")
        if not self.failed_sync_backoff_s or any(b < 0 for b in self.failed_sync_backoff_s):
            raise ConfigError("failed_sync_backoff_s needs at least one delay >= 0 (BR-2: 1, 2, 4, 8, 16)")
        if self.filling not in ("fok", "ioc", "return"):
            raise ConfigError("filling must be fok, ioc or return")
        if not 8 <= self.comment_max_len <= 31:
            raise ConfigError("comment_max_len must be between 8 and 31 (brokers accept 28-31)")
        if self.broker_switch_after < 1 or self.broker_suspend_after < self.broker_switch_after:
            raise ConfigError("need 1 <= broker_switch_after <= broker_suspend_after")
        if self.clickhouse_url:
            from reference.store.clickhouse_sync import check_settings   # CH-1..3: one line naming the key
            try:
                check_settings(self)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for which in ("redis", "sentinel"):
            if getattr(self, f"{which}_password") and getattr(self, f"{which}_password_file"):
                raise ConfigError(f"give {which}_password or {which}_password_file, not both")
        self.broker_configs()

    # --- secrets ------------------------------------------------------------------------------------------------
    def _credentials(self, which: str) -> tuple[str | None, str | None]:
        username = getattr(self, f"{which}_username") or None
        password = getattr(self, f"{which}_password") or None
        path = getattr(self, f"{which}_password_file")
        if path:
            try:
                password = Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{which}_password_file {path}: {exc.strerror}") from None
        return username, password

    def redis_credentials(self) -> tuple[str | None, str | None]:
        """(username, password) for the Redis nodes; None where not configured. Raises ConfigError when the
        password file cannot be read."""
        return self._credentials("redis")

    def sentinel_credentials(self) -> tuple[str | None, str | None]:
        """(username, password) for the Sentinels."""
        return self._credentials("sentinel")

    # --- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "EngineConfig":
        """A config from plain data (file, environment, ``--set``); raises ConfigError naming the first unknown
        key or the key whose value has the wrong type (issue 10: never a TypeError from deep inside)."""
        if not isinstance(data, dict):
            raise ConfigError(f"the configuration must be a table of keys, not {type(data).__name__}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in types)
        if unknown:
            raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        checked = {name: _typed(name, str(types[name]), value) for name, value in data.items()}
        try:
            return cls(**checked)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"invalid configuration: {exc}") from None

    @classmethod
    def load(cls, path: str | Path | None = None, env: dict[str, str] | None = None,
             overrides: dict[str, Any] | None = None) -> "EngineConfig":
        data: dict[str, Any] = {}
        if path:
            p = Path(path)
            try:
                text = p.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read configuration {p}: {exc.strerror}") from None
            try:
                data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
            except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from None
            data = dict(data.get("engine", data))
        env = os.environ if env is None else env
        prefix = "TRADEDRILL_ENGINE_"
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        names = set(types)
        for key, raw in env.items():
            if key.startswith(prefix) and key[len(prefix):].lower() in names:
                name = key[len(prefix):].lower()
                if types[name] == "str":
                    data[name] = raw
                    continue
                try:
                    data[name] = json.loads(raw)
                except json.JSONDecodeError:
                    data[name] = raw
        data.update(overrides or {})
        return cls.from_mapping(data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# the element type of fields annotated as a plain ``list``
_LIST_ITEMS = {"retry_backoff_s": "float", "failed_sync_backoff_s": "float", "sentinels": "list", "brokers": "dict"}
_EXAMPLES = {"float": "2.5", "int": "3", "str": '"text"', "bool": "true", "list": "[1, 2]", "dict": "{}"}


def _typed(name: str, annotation: str, value: Any) -> Any:
    """``value`` checked against the field's annotation (``float``, ``int``, ``str``, ``bool``, ``list[...]``,
    ``dict``, ``X | None``); ints are accepted for floats. Raises ConfigError naming the key and the type."""
    options = [a.strip() for a in annotation.split("|")]
    if value is None and "None" in options:
        return None
    base = next((o for o in options if o != "None"), "")
    kind = base.split("[", 1)[0]

    def wrong() -> ConfigError:
        example = _EXAMPLES.get(kind, "")
        return ConfigError(f"configuration key {name} = {value!r} must be {_article(kind)} {base}"
                           + (f", e.g. {name} = {example}" if example else ""))

    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or \
                value in (float("inf"), float("-inf")):
            raise wrong()
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise wrong()
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise wrong()
        inner = base[len("list["):-1] if base.startswith("list[") else _LIST_ITEMS.get(name, "")
        if inner:
            return [_typed(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
        return list(value)
    if kind == "dict":
        if not isinstance(value, dict):
            raise wrong()
        return value
    return value


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" or kind == "int" else "a"
