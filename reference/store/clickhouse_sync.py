"""Every final trade outcome of the engine's journal, in ClickHouse: batched, idempotent, retried, backfilled
(CH-1, CH-2; issue 13). Backups are ``reference.store.clickhouse_backup`` (CH-3).

The table (:data:`COLUMNS`, created when missing) is a ``ReplacingMergeTree(version)`` ordered by ``trade_key``:
``o/<broker>/<order>`` for an outcome with a broker order, ``s/<signal id>`` for one without (a rejection). The
broker is part of the key because the primary and the backup broker number their orders independently.
``version`` is the journal's ``updated_ms`` of that state, so a resend of the same state and a newer state of the
same trade both collapse to one row. Debian's ClickHouse 18.16 has no insert deduplication tokens, so a resend
*does* add rows until a merge: every read that counts trades reads ``FINAL``. The table has no partitions on
purpose: ReplacingMergeTree only collapses rows within one partition, and an outcome's time may change between
two of its versions.

What is sent is decided by a mark per intent in the journal (``ch_synced``, written by
:meth:`Journal.mark_ch_synced_many` and reset by every new write of the intent), not by a high-water mark: the
journal keeps its rows in memory by signal id, so "final and not marked" is a set lookup, and a backfill only has
to clear marks.

Flow of one outcome (:class:`ClickHouseSync`, one daemon thread, ticking every ``interval_s``):

1. New final outcomes go in batches of at most ``batch_rows`` (one INSERT each); after the INSERT the outcomes
   are marked (flushed to DuckDB from this thread, never on the trading thread's commits).
2. CH-1: a failed INSERT is retried every ``retry_s`` (5 s), ``retries`` times (3); then every outcome still
   waiting goes into one ``failed_syncs`` row (target ``clickhouse``, kind ``outcomes``, payload
   ``{"signal_ids": [...]}``: the journal holds the outcomes themselves), one alert per outage
   (``clickhouse_sync_failed``), and newer outcomes start their own CH-1 cycle.
3. ``failed_syncs`` rows are retried every ``failed_retry_s`` (CH-1: 1 minute) and, after a start, at once
   (BR-2: within 1 s); after ``alert_after`` failed tries (BR-2: 5) one ``failed_sync_exhausted`` alert per
   outage; they are never dropped. CH-1's "recovery under 5 s": while rows wait, ClickHouse is probed with
   ``SELECT 1`` every ``retry_s``; the first answer resends every waiting row at once.
4. CH-2: every ``backfill_check_s`` (and once at start) the number of marked outcomes per UTC day is compared
   with ClickHouse's (``FINAL``, this instance's rows); for a day that is short, the outcomes whose key is absent
   are unmarked, so step 1 sends them again (:meth:`ClickHouseSync.backfill`).

One try (CH-1's cadence, issue 17): every INSERT (with the client's creation and the CREATE TABLE before it) and
every probe runs under one deadline of ``timeout_s`` (2 s; below ``retry_s``, which the engine's configuration
enforces), whatever way ClickHouse is gone: refused (a killed process), a connect that hangs (a killed container:
its address drops packets), a server that accepts and never answers, or an answer that trickles. Each HTTP
request's connect and read timeouts are the time left of the deadline, no request is retried behind the sync's
back (urllib3's own connect retry doubled a hanging connect: 10.04 s between tries on docker), and at the deadline
the try's sockets are shut down. A failed try so ends before the next is due, and the next starts ``retry_s``
after the previous start. Not bounded: a host name's DNS lookup (give an address or a name the host resolves
locally).

Credentials: ``username`` and a password read from ``password_file`` at every (re)connect; the password is never
part of a message, an event or an exception text (messages are built here, and scrubbed).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import socket
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reference.store.failed_syncs import Resync, RetryPolicy

TARGET = "clickhouse"     # failed_syncs target
KIND = "outcomes"         # failed_syncs kind: a list of signal ids whose outcomes did not reach ClickHouse
DAY_MS = 86_400_000
STOP_FLUSH_S = 2.0         # at stop, the outcomes still waiting get this long to reach ClickHouse (CH-1: every trade)
STOP_GRACE_S = 0.5         # past the stop's deadline, for its last failed request to return (not to be left behind)
BACKUP_TIMEOUT_S = 5.0     # CH-3 backups' per-request connect/read timeout (at least; clickhouse_timeout_s if longer)

# (name, ClickHouse type) of one outcome row, in insert order
COLUMNS: list[tuple[str, str]] = [
    ("trade_key", "String"),     # o/<broker>/<order> or s/<signal id>: the ReplacingMergeTree key
    ("signal_id", "String"), ("entry_id", "String"), ("instance", "String"),
    ("state", "String"),         # DONE | REJECTED (the journal's final state)
    ("status", "String"), ("code", "String"), ("reason", "String"),
    ("account", "String"), ("symbol", "String"), ("side", "String"),
    ("volume", "Float64"),       # lots; NaN when the signal has no numeric volume
    ("price", "Float64"),        # fill price; NaN when none
    ("order_id", "String"), ("deal_id", "String"), ("comment", "String"), ("broker", "String"),
    ("attempts", "Int64"),       # order_send calls made
    ("final_at", "DateTime"),    # UTC, seconds (18.16 has no DateTime64)
    ("final_ms", "UInt64"),      # epoch ms of the final state (the journal's updated_ms)
    ("version", "UInt64"),       # ReplacingMergeTree version: final_ms
    ("synced_ms", "UInt64"),     # epoch ms this row was sent (incremental backups select on it, CH-3)
    ("signal", "String"),        # the signal as JSON (ASCII), verbatim
    ("result", "String"),        # the outcome as JSON (ASCII), verbatim
]
COLUMN_NAMES = [n for n, _ in COLUMNS]
COLUMN_TYPES = [t for _, t in COLUMNS]
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_UINT64_MAX = 2 ** 64 - 1
# ClickHouse error codes that mean "who you are was refused"
_AUTH_CODES = {"192", "193", "194", "195", "516"}


class ClickHouseError(RuntimeError):
    """ClickHouse could not be used; the message is one line that names the server and says what to do. Never
    holds the password."""


# --- settings ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClickHouseSettings:
    """Where ClickHouse is and how the sync behaves; every figure has the documents' value as default.

    ``url``: ``http(s)://host:port[/database]`` (no user or password in it); ``username``; ``password_file``: a
    file holding the password alone ("" = no password); ``table``; ``batch_rows``: outcomes per INSERT;
    ``interval_s``: how often new outcomes are looked for; ``timeout_s``: the deadline of one try (s: the
    client's creation, CREATE TABLE and the INSERT, or the probe, together; any other request's connect and read
    timeout), below ``retry_s`` for a sync (:class:`ClickHouseSync` raises ValueError otherwise);
    ``retry_s``/``retries``: CH-1 (5 s, 3); ``failed_retry_s``: CH-1 (60 s); ``alert_after``: BR-2 (5);
    ``backfill_check_s``: CH-2 comparison period (s)."""

    url: str
    username: str = "default"
    password_file: str = ""
    table: str = "trade_outcomes"
    batch_rows: int = 2000
    interval_s: float = 0.1
    timeout_s: float = 2.0            # one try's deadline: below retry_s (CH-1's cadence)
    retry_s: float = 5.0              # CH-1
    retries: int = 3                  # CH-1
    failed_retry_s: float = 60.0      # CH-1
    alert_after: int = 5              # BR-2
    backfill_check_s: float = 60.0    # CH-2

    def __post_init__(self) -> None:
        _check(self.url, self.table, self.password_file, self.batch_rows, self.interval_s, self.timeout_s,
               self.retry_s, self.retries, self.failed_retry_s, self.alert_after, self.backfill_check_s)

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @property
    def database(self) -> str:
        return self.parts.path.strip("/") or "default"

    @property
    def where(self) -> str:
        """The server as messages name it (no credentials)."""
        p = self.parts
        return f"{p.scheme}://{p.hostname}:{self.port}/{self.database}"

    @property
    def port(self) -> int:
        p = self.parts
        return p.port or (8443 if p.scheme == "https" else 8123)

    def password(self) -> str:
        """The password (read now from ``password_file``). Raises ClickHouseError when the file cannot be read."""
        if not self.password_file:
            return ""
        try:
            return Path(self.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ClickHouseError(f"clickhouse_password_file {self.password_file}: {exc.strerror}; give a file "
                                  f"that holds the ClickHouse password alone") from None

    @classmethod
    def from_engine(cls, cfg: Any) -> "ClickHouseSettings":
        """The settings from an EngineConfig's ``clickhouse_*`` fields. Raises ValueError naming the key (also
        for a ``clickhouse_timeout_s`` not below ``clickhouse_retry_s``: CH-1's cadence)."""
        settings = cls(url=cfg.clickhouse_url, username=cfg.clickhouse_username,
                       password_file=cfg.clickhouse_password_file, table=cfg.clickhouse_table,
                       batch_rows=cfg.clickhouse_batch_rows, interval_s=cfg.clickhouse_sync_interval_s,
                       timeout_s=cfg.clickhouse_timeout_s, retry_s=cfg.clickhouse_retry_s,
                       retries=cfg.clickhouse_retries, failed_retry_s=cfg.clickhouse_failed_retry_s,
                       alert_after=cfg.clickhouse_alert_after, backfill_check_s=cfg.clickhouse_backfill_check_s)
        settings.check_try_deadline()
        return settings

    def check_try_deadline(self) -> None:
        """CH-1: a failed try must end before the next one is due (tries start ``retry_s`` apart). Raises
        ValueError (one line) when ``timeout_s`` >= ``retry_s``."""
        if not self.timeout_s < self.retry_s:
            raise ValueError(f"clickhouse_timeout_s = {self.timeout_s:g} must be below clickhouse_retry_s = "
                             f"{self.retry_s:g} (CH-1: a failed try must end before the next is due); lower "
                             f"clickhouse_timeout_s (default 2 s) or raise clickhouse_retry_s")


def _check(url, table, password_file, batch_rows, interval_s, timeout_s, retry_s, retries, failed_retry_s,
           alert_after, backfill_check_s) -> None:
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"clickhouse_url {url!r}: use http://host:port[/database] or https://host:port[/database] "
                         f"(ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123)")
    if p.username or p.password:
        raise ValueError("clickhouse_url holds a user or password: remove it and give clickhouse_username and "
                         "clickhouse_password_file instead (secrets never go in a URL)")
    try:
        p.port
    except ValueError:
        raise ValueError(f"clickhouse_url {url!r}: the port must be a number from 1 to 65535") from None
    db = p.path.strip("/")
    for key, name in (("clickhouse_url database", db), ("clickhouse_table", table)):
        if name and not (name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit()):
            raise ValueError(f"{key} {name!r}: use letters, digits and '_' (not starting with a digit)")
    if not table:
        raise ValueError("clickhouse_table is empty: give a table name such as trade_outcomes")
    if password_file and not Path(password_file).is_file():
        raise ValueError(f"clickhouse_password_file {password_file}: no such file; give a file that holds the "
                         f"ClickHouse password alone")
    if batch_rows < 1:
        raise ValueError(f"clickhouse_batch_rows = {batch_rows}: send at least 1 outcome per INSERT")
    if retries < 0 or alert_after < 2:
        raise ValueError("clickhouse_retries must be >= 0 (CH-1: 3) and clickhouse_alert_after >= 2 (BR-2: 5)")
    for key, value in (("clickhouse_sync_interval_s", interval_s), ("clickhouse_timeout_s", timeout_s),
                       ("clickhouse_retry_s", retry_s), ("clickhouse_failed_retry_s", failed_retry_s),
                       ("clickhouse_backfill_check_s", backfill_check_s)):
        if not value > 0:
            raise ValueError(f"{key} = {value}: must be positive (CH-1: retry 5 s, failed_syncs every 60 s)")


def check_settings(cfg: Any) -> None:
    """Validate an EngineConfig's ``clickhouse_*`` fields (sync and backups). Raises ValueError naming the key."""
    ClickHouseSettings.from_engine(cfg)
    from reference.store.clickhouse_backup import BackupSettings
    BackupSettings.from_engine(cfg)


# --- one try's deadline ------------------------------------------------------------------------------------------
class _TryDeadline:
    """The deadline of the try in progress on one target (CH-1's cadence) and the connections of that target.

    Read by the target's urllib3 pools before every request: the request's connect and read timeouts are the time
    left (``timeout_s`` each when no try is in progress), with no urllib3 retry. At the deadline a timer shuts
    down every socket of the target, which ends a read that an answer trickling byte by byte keeps alive."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.deadline: float | None = None     # monotonic s; None = no try in progress
        self.seconds = 0.0                     # the length of the try in progress
        self.expired = False
        self._generation = 0
        self._conns: "weakref.WeakKeyDictionary[Any, socket.socket]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def within(self, seconds: float):
        """Everything inside shares one deadline ``seconds`` from now; inside a try already in progress, that
        try's deadline stands. One try at a time per target (the sync's thread, or its stop flush after it). A
        request cut at the deadline may cost clickhouse-connect's one retry of a closed connection (0.1 s sleep),
        after which the deadline error is raised at once."""
        if self.deadline is not None:
            yield
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
            self.seconds, self.expired = seconds, False
            self.deadline = time.monotonic() + max(0.0, seconds)
        timer = threading.Timer(max(0.0, seconds), self._expire, (generation,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with self._lock:
                self._generation += 1
                self.deadline, self.expired = None, False

    def limits(self):
        """(urllib3 Timeout, Retry) of the next request. Raises urllib3's ConnectTimeoutError when the try's
        deadline has passed."""
        from urllib3.exceptions import ConnectTimeoutError
        from urllib3.util import Retry, Timeout

        left = self.timeout_s
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0 or self.expired:
                raise ConnectTimeoutError(f"timed out: the try's {self.seconds:g} s deadline passed")
        return Timeout(connect=left, read=left), Retry(total=0, redirect=0)

    def track(self, conn: Any, sock: socket.socket) -> None:
        with self._lock:
            self._conns[conn] = sock

    def _expire(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return      # that try ended meanwhile
            self.expired = True
            socks = [getattr(conn, "sock", None) or raw for conn, raw in list(self._conns.items())]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:   # closed meanwhile, or never connected
                pass


def _pool_manager(deadline: _TryDeadline, verify: bool):
    """A urllib3 PoolManager of one target whose requests obey ``deadline`` (see :class:`_TryDeadline`)."""
    from clickhouse_connect.driver.httputil import get_pool_manager_options
    from urllib3 import PoolManager
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def tracked(base):
        class Connection(base):
            def _new_conn(self):
                sock = super()._new_conn()
                deadline.track(self, sock)
                return sock
        return Connection

    def bounded(base, conn_cls):
        class Pool(base):
            ConnectionCls = conn_cls

            def urlopen(self, method, url, **kw):
                kw["timeout"], kw["retries"] = deadline.limits()
                return super().urlopen(method, url, **kw)
        return Pool

    options = get_pool_manager_options(verify=verify)
    options["retries"] = 0
    manager = PoolManager(**options)
    manager.pool_classes_by_scheme = {"http": bounded(HTTPConnectionPool, tracked(HTTPConnection)),
                                      "https": bounded(HTTPSConnectionPool, tracked(HTTPSConnection))}
    return manager


# --- the server ----------------------------------------------------------------------------------------------------
class ClickHouseTarget:
    """One ClickHouse server and the outcome table in it, through clickhouse-connect 1.6.0 (the newest client
    that speaks to Debian's 18.16: no compression, column types always given). The client is made on first use
    and again after a failure. Every method raises :class:`ClickHouseError` (one line) when the server cannot be
    used. Inside :meth:`within` every request shares one deadline (CH-1: one try); elsewhere each request has
    ``timeout_s`` to connect and ``timeout_s`` per read; no request is retried by urllib3."""

    def __init__(self, settings: ClickHouseSettings):
        self.settings = settings
        self._client = None
        self._table_ready = False
        self._lock = threading.Lock()
        self._deadline = _TryDeadline(settings.timeout_s)
        self._pool = None

    def within(self, seconds: float | None = None):
        """Context manager: the requests inside (the client's creation included) end within ``seconds``
        (default ``timeout_s``) together; one that is still running then fails with "no answer within ..."."""
        return self._deadline.within(self.settings.timeout_s if seconds is None else seconds)

    @property
    def table(self) -> str:
        return self.settings.table

    def client(self):
        """The clickhouse-connect client (made now if needed). Raises ClickHouseError."""
        if self._client is not None:
            return self._client
        import clickhouse_connect

        s = self.settings
        password = s.password()
        if self._pool is None:
            self._pool = _pool_manager(self._deadline, verify=True)
        whole_s = max(1, math.ceil(s.timeout_s))   # the client keeps whole seconds; the pool sets the real ones
        try:
            self._client = clickhouse_connect.get_client(
                host=s.parts.hostname, port=s.port, username=s.username, password=password, database=s.database,
                secure=s.parts.scheme == "https", compress=False, connect_timeout=whole_s,
                send_receive_timeout=whole_s, query_retries=0, pool_mgr=self._pool)
        except Exception as exc:  # noqa: BLE001 - every client failure becomes one line
            raise self.error("connect", exc, password) from None
        return self._client

    def error(self, doing: str, exc: BaseException, password: str | None = None) -> ClickHouseError:
        """``exc`` (from clickhouse-connect or the network) as one line that says what to do; a failure at or
        after the deadline of the try in progress reads "no answer within <its seconds> s"."""
        s = self.settings
        text = " ".join(str(exc).split())
        code = ""
        if self._deadline.expired or (self._deadline.deadline is not None
                                      and time.monotonic() >= self._deadline.deadline):
            detail = f"no answer within {self._deadline.seconds:g} s (the try's deadline, clickhouse_timeout_s)"
        elif "Code: " in text:
            code = text.split("Code: ", 1)[1].split(",", 1)[0].strip()
            detail = text.split("DB::Exception: ", 1)[-1]
            detail = detail.split(" (version", 1)[0].split(", e.what()", 1)[0]
        elif "refused" in text.lower():
            detail = "connection refused (is the server running and listening there?)"
        elif "timed out" in text.lower() or "timeout" in text.lower():
            detail = f"no answer within {s.timeout_s:g} s"
        else:
            detail = text
        detail = detail[:300]
        for secret in filter(None, (password, _quiet_password(s))):
            detail = detail.replace(secret, "***")
        if code in _AUTH_CODES:
            return ClickHouseError(f"ClickHouse at {s.where} refused the login of user {s.username!r} ({detail}); "
                                   f"check clickhouse_username and the password in clickhouse_password_file")
        return ClickHouseError(f"ClickHouse at {s.where}: {doing} failed: {type(exc).__name__}: {detail}")

    def _call(self, doing: str, fn: Callable):
        with self._lock:
            client = self.client()
            try:
                return fn(client)
            except Exception as exc:  # noqa: BLE001
                self.reset()
                raise self.error(doing, exc) from None

    def reset(self) -> None:
        """Forget the client and its connections (the next call connects again)."""
        client, self._client = self._client, None
        self._table_ready = False
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a client of a dead server
                pass
        if self._pool is not None:
            self._pool.clear()

    close = reset

    def ping(self) -> bool:
        """True when the server answers ``SELECT 1`` within ``timeout_s`` (a client's creation included; never
        raises)."""
        try:
            with self.within():
                return self._call("SELECT 1", lambda c: c.command("SELECT 1")) == 1
        except ClickHouseError:
            return False

    def ensure_table(self, check: bool = False) -> None:
        """Create the outcome table when it is missing (idempotent; asked once per client unless ``check``)."""
        if self._table_ready and not check:
            return
        cols = ", ".join(f"{n} {t}" for n, t in COLUMNS)
        self._call("CREATE TABLE", lambda c: c.command(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({cols}) ENGINE = ReplacingMergeTree(version) "
            f"ORDER BY trade_key"))
        self._table_ready = True

    def insert(self, rows: list[list]) -> None:
        """One INSERT of ``rows`` (lists in :data:`COLUMNS` order)."""
        if not rows:
            return
        self.ensure_table()
        self._call(f"INSERT of {len(rows)} rows", lambda c: c.insert(
            self.table, rows, column_names=COLUMN_NAMES, column_type_names=COLUMN_TYPES))

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """Rows of ``sql`` (client-side ``%(name)s`` parameters: 18.16 has no server-side ones)."""
        self.ensure_table()
        return self._call("query", lambda c: c.query(sql, parameters=parameters).result_rows)

    def count_final(self, instance: str | None = None) -> int:
        """Trades in the table (``FINAL``: one per key), of ``instance`` when given."""
        where = " WHERE instance = %(i)s" if instance is not None else ""
        return int(self.query(f"SELECT count() FROM {self.table} FINAL{where}", {"i": instance})[0][0])

    def counts_per_day(self, instance: str) -> dict[int, int]:
        """{UTC day number (epoch ms // 86400000): trades} of ``instance`` (``FINAL``)."""
        rows = self.query(f"SELECT intDiv(final_ms, {DAY_MS}) AS d, count() FROM {self.table} FINAL "
                          f"WHERE instance = %(i)s GROUP BY d", {"i": instance})
        return {int(d): int(n) for d, n in rows}

    def keys_on_day(self, day: int) -> set[str]:
        """The trade keys of UTC day number ``day`` (every instance, ``FINAL``)."""
        rows = self.query(f"SELECT trade_key FROM {self.table} FINAL WHERE intDiv(final_ms, {DAY_MS}) = %(d)s",
                          {"d": int(day)})
        return {r[0] for r in rows}


def _quiet_password(settings: ClickHouseSettings) -> str:
    try:
        return settings.password()
    except ClickHouseError:
        return ""


# --- outcome -> row --------------------------------------------------------------------------------------------
def trade_key(intent: Any) -> str:
    """``o/<broker>/<order>`` when the outcome carries a broker order, else ``s/<signal id>``."""
    order = (intent.result or {}).get("order")
    if order not in (None, "", 0, "0"):
        return f"o/{intent.broker}/{order}"
    return f"s/{intent.signal_id}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate (from JSON "\\ud800"): not UTF-8; its escape goes instead
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _number(value: Any) -> float:
    """A float for a Float64 column: the number itself, NaN when absent or not a number (the verbatim value
    stays in the ``signal``/``result`` JSON)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def outcome_row(intent: Any, instance: str, synced_ms: int) -> list:
    """The ClickHouse row (:data:`COLUMNS` order) of a final outcome ``intent`` (a journal Intent) recorded by
    engine ``instance``, sent at epoch ms ``synced_ms``. Strings go verbatim (a lone surrogate, which UTF-8
    cannot hold, as its backslash escape); the signal and the result also go whole as ASCII JSON. Raises
    ValueError (one line, naming the signal) for an attempt count or time outside ClickHouse's integer types."""
    sig = intent.signal if isinstance(intent.signal, dict) else {}
    res = intent.result if isinstance(intent.result, dict) else {}
    final_ms = int(intent.updated_ms or 0)
    if not (0 <= final_ms <= 4_294_967_295_000 and 0 <= synced_ms <= _UINT64_MAX
            and _INT64[0] <= int(intent.attempt or 0) <= _INT64[1]):
        raise ValueError(f"outcome of signal {intent.signal_id!r}: time {final_ms} ms or attempt count "
                         f"{intent.attempt} does not fit ClickHouse's columns; the journal row is damaged")
    return [
        trade_key(intent), _text(intent.signal_id), _text(intent.entry_id), _text(instance), _text(intent.state),
        _text(res.get("status")), _text(res.get("code")), _text(res.get("reason")),
        _text(sig.get("account")), _text(sig.get("symbol")), _text(sig.get("side")),
        _number(sig.get("volume")), _number(res.get("price")),
        _text(res.get("order") or ""), _text(res.get("deal") or ""),
        _text(intent.comment or res.get("comment") or ""), _text(intent.broker),
        int(intent.attempt or 0),
        _dt.datetime.fromtimestamp(final_ms // 1000, _dt.timezone.utc), final_ms, final_ms, int(synced_ms),
        json.dumps(intent.signal, sort_keys=False, default=str), json.dumps(intent.result, default=str),
    ]


# --- the sync ------------------------------------------------------------------------------------------------------
class ClickHouseSync:
    """Sends ``journal``'s final outcomes to ``target`` (see the module docstring for the flow and CH-1/CH-2).

    ``journal``: a reference.engine.journal.Journal; ``instance``: the engine instance name written in every row;
    ``emit(event, **fields)``/``alert(kind, message, **fields)``: the engine's event log and alerts. Use
    :meth:`start`/:meth:`stop` for the thread, or drive :meth:`run_once` with explicit clocks (tests). Counters:
    ``rows_sent`` (rows INSERTed, resends included), ``inserts``, ``failures``. Raises ValueError when the
    settings' ``timeout_s`` is not below ``retry_s`` (CH-1: a failed try must end before the next is due)."""

    def __init__(self, journal: Any, target: ClickHouseTarget, *, instance: str,
                 emit: Callable[..., None] = lambda *a, **k: None, alert: Callable[..., None] = lambda *a, **k: None):
        self.journal = journal
        self.target = target
        self.settings = target.settings
        self.settings.check_try_deadline()
        self.instance = instance
        self.emit = emit
        self.alert = alert
        s = self.settings
        # CH-1: every failed_syncs row every minute; BR-2: alert_after failed tries, then notify (once per row)
        self.resync = Resync(journal, RetryPolicy((s.failed_retry_s,) * (s.alert_after - 1), s.failed_retry_s),
                             notify=self._exhausted)
        self.resync.register(TARGET, KIND, self._resend_row)
        self._held: set[str] = set()
        for row in journal.failed_syncs(TARGET):
            self._held.update(_ids_of(row))
        self._tries = 0                 # failed tries of the current CH-1 cycle
        self._next_try = 0.0            # monotonic time of the next try of new outcomes
        self._next_probe = 0.0
        self._next_backfill = 0.0       # CH-2: once right at start
        self._outage = False            # between the first failure and the next success
        self._alerted = {"failed": False, "exhausted": False}
        self.last_error = ""
        self.rows_sent = 0
        self.inserts = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "ClickHouseSync":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clickhouse-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0, flush_s: float = STOP_FLUSH_S) -> None:
        """Stop the thread (after its current try), send the outcomes still waiting (an engine stops a few ms after
        its last ack, before the next tick would have sent it) for at most ``flush_s`` seconds, put what could not
        be sent into failed_syncs (sent at the next start), write the marks still pending, close the client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._flush_at_stop(max(0.0, float(flush_s)))
        try:
            self.journal.flush_published()
        except Exception as exc:  # noqa: BLE001 - closing anyway; a lost mark only resends
            self.emit("clickhouse_sync_error", error=str(exc))
        self.target.close()

    def _flush_at_stop(self, flush_s: float) -> None:
        """The last outcomes before a stop: batches sent until none waits, one fails or ``flush_s`` runs out (every
        request of the flush shares that deadline; one that still runs after it and a grace of ``STOP_GRACE_S`` is
        left behind: its rows are idempotent); the rest goes to failed_syncs."""
        started = time.monotonic()
        deadline = started + flush_s
        outcome = {"sent": 0, "error": ""}
        gave_up = threading.Event()

        def flush() -> None:
            # every INSERT (and connect) of the flush shares the stop's deadline
            with self.target.within(max(0.0, deadline - time.monotonic())):
                while not gave_up.is_set() and time.monotonic() < deadline:
                    batch = self.journal.ch_unsynced(self.settings.batch_rows, exclude=self._held)
                    if not batch:
                        return
                    try:
                        outcome["sent"] += self.send(batch)
                    except ClickHouseError as exc:
                        outcome["error"] = str(exc)
                        return
                    except Exception as exc:  # noqa: BLE001 - a stop must end; what is left is kept below
                        outcome["error"] = " ".join(str(exc).split())[:300]
                        return

        try:
            waiting = self.journal.ch_unsynced(1, exclude=self._held)
        except Exception as exc:  # noqa: BLE001
            self.emit("clickhouse_sync_error", error=str(exc), where="stop")
            return
        if not waiting:
            return
        worker = threading.Thread(target=flush, name="clickhouse-sync-stop", daemon=True)
        worker.start()
        worker.join(flush_s + STOP_GRACE_S)   # its requests end at the deadline; the grace lets it return
        if worker.is_alive():
            gave_up.set()
            outcome["error"] = outcome["error"] or f"no answer within the stop deadline of {flush_s:g} s"
        try:
            left = self.journal.ch_unsynced(exclude=self._held)
        except Exception as exc:  # noqa: BLE001
            self.emit("clickhouse_sync_error", error=str(exc), where="stop")
            return
        kept = 0
        if left:
            ids = [i.signal_id for i in left]
            now_ms = int(time.time() * 1000)
            try:
                self.journal.add_failed_sync(f"{ids[0]}+{len(ids)}@{now_ms}", KIND, {"signal_ids": ids}, now_ms,
                                             outcome["error"] or "the engine stopped before they were sent",
                                             attempts=1, target=TARGET)
                self._held.update(ids)
                kept = len(ids)
            except Exception as exc:  # noqa: BLE001 - still unsynced in the journal: sent at the next start
                self.emit("clickhouse_sync_error", error=str(exc), where="stop")
        self.emit("clickhouse_sync_stop_flush", sent=outcome["sent"], failed_syncs=kept,
                  took_s=round(time.monotonic() - started, 4), error=outcome["error"])

    def _run(self) -> None:
        while not self._stop.is_set():
            more = False
            try:
                more = self.run_once()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure; it reports it
                self.emit("clickhouse_sync_error", error=" ".join(str(exc).split())[:300])
            if not more:
                # a retry due before the next tick is tried when due (CH-1: every 5 s, not 5 s + up to one tick)
                due = self._next_try - time.monotonic() if self._tries else self.settings.interval_s
                self._stop.wait(min(self.settings.interval_s, max(0.0, due)))

    # --- one tick -------------------------------------------------------------------------------------------------
    def run_once(self, now: float | None = None, now_ms: int | None = None) -> bool:
        """Whatever is due at monotonic time ``now`` / wall-clock epoch ms ``now_ms`` (default: the clocks).
        Returns True when more new outcomes wait (the thread then ticks again at once)."""
        now = time.monotonic() if now is None else now
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        more = False
        if now >= self._next_try:
            more = self._sync_new(now, now_ms)
        if self._held and not self._tries and now >= self._next_probe:
            self._next_probe = now + self.settings.retry_s
            if self._outage and self.target.ping():   # CH-1: recovery under 5 s, whatever the minute schedule
                self._recovered(now_ms)
        counts = self.resync.run_due(now_ms)
        if counts["synced"] or counts["failed"]:
            self.emit("clickhouse_failed_syncs", **counts)
        if not self._tries and not self._outage and now >= self._next_backfill:
            self._next_backfill = now + self.settings.backfill_check_s
            try:
                self.backfill()
            except ClickHouseError as exc:
                self.emit("clickhouse_backfill_failed", error=str(exc))
        return more

    def _sync_new(self, now: float, now_ms: int) -> bool:
        s = self.settings
        batch = self.journal.ch_unsynced(s.batch_rows + 1, exclude=self._held)
        more = len(batch) > s.batch_rows
        batch = batch[:s.batch_rows]
        if not batch:
            self._tries = 0
            return False
        began = time.monotonic()
        try:
            self.send(batch, now_ms)
        except ClickHouseError as exc:
            self._failed(str(exc), now, now_ms, len(batch), time.monotonic() - began)
            return False
        if self._tries or self._outage:
            self._tries = 0
            self._recovered(now_ms)
        return more

    def send(self, intents: list, now_ms: int | None = None) -> int:
        """INSERT the outcomes of ``intents`` (journal Intents) in one batch and mark them in the journal (flushed
        now). The INSERT (with a client's creation and CREATE TABLE before it) ends within ``timeout_s``, or the
        deadline of a try already in progress (CH-1). Returns the rows sent. Raises ClickHouseError."""
        if not intents:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        rows = []
        for intent in intents:
            try:
                rows.append(outcome_row(intent, self.instance, now_ms))
            except ValueError as exc:   # one damaged row must not hold the others back forever
                self.emit("clickhouse_row_skipped", signal_id=intent.signal_id, error=str(exc))
        with self.target.within():
            self.target.insert(rows)
        self.inserts += 1
        self.rows_sent += len(rows)
        self.journal.mark_ch_synced_many(intents)
        self.journal.flush_published()
        return len(rows)

    def _failed(self, error: str, now: float, now_ms: int, rows: int, took_s: float = 0.0) -> None:
        s = self.settings
        self._tries += 1
        self.failures += 1
        self._outage = True
        self.last_error = error
        # started: the monotonic time this try began (CH-1's retry interval is measured between try starts);
        # took_s: how long it ran (below timeout_s < retry_s, so the next try starts on time)
        self.emit("clickhouse_sync_failed", attempt=self._tries, rows=rows, error=error, started=round(now, 6),
                  took_s=round(took_s, 4))
        if self._tries <= s.retries:
            self._next_try = now + s.retry_s            # CH-1: every 5 s, 3 times
            return
        waiting = self.journal.ch_unsynced(exclude=self._held)
        ids = [i.signal_id for i in waiting]
        if ids:   # CH-1: then failed_syncs, retried every minute
            self.journal.add_failed_sync(f"{ids[0]}+{len(ids)}@{now_ms}", KIND, {"signal_ids": ids},
                                         now_ms + int(s.failed_retry_s * 1000), error, attempts=self._tries,
                                         target=TARGET)
            self._held.update(ids)
            self.emit("clickhouse_failed_sync_added", outcomes=len(ids), attempts=self._tries, error=error)
            if not self._alerted["failed"]:
                self._alerted["failed"] = True
                self.alert("clickhouse_sync_failed",
                           f"ClickHouse history sync failed {self._tries} times {s.retry_s:g} s apart (last error: "
                           f"{error}); {len(ids)} outcome(s) kept in failed_syncs and retried every "
                           f"{s.failed_retry_s:g} s (CH-1)", target=TARGET, outcomes=len(ids))
        self._tries = 0
        self._next_try = now

    def _recovered(self, now_ms: int) -> None:
        """ClickHouse answers again: every waiting failed_syncs row goes now (CH-1: recovery under 5 s)."""
        self._outage = False
        self._alerted = {"failed": False, "exhausted": False}
        sent = 0
        for row in self.journal.failed_syncs(TARGET):
            try:
                self._resend_row(row)
            except ClickHouseError as exc:
                self.emit("clickhouse_sync_failed", error=str(exc), where="recovery")
                self._outage = True
                return
            self.journal.failed_sync_done(TARGET, row["kind"], row["sync_id"])
            sent += 1
        self.emit("clickhouse_sync_recovered", failed_syncs_resent=sent)

    def _resend_row(self, row: dict) -> None:
        """failed_syncs handler: send the outcomes the row names that are still final and unmarked."""
        ids = _ids_of(row)
        intents = [i for i in (self.journal.get(sid) for sid in ids) if i is not None and i.final
                   and not i.ch_synced]
        step = self.settings.batch_rows
        for start in range(0, len(intents), step):
            self.send(intents[start:start + step])
        self._held.difference_update(ids)

    def _exhausted(self, row: dict) -> None:
        if self._alerted["exhausted"]:
            return
        self._alerted["exhausted"] = True
        self.alert("failed_sync_exhausted",
                   f"{len(_ids_of(row))} outcome(s) have not reached ClickHouse after {row['attempts']} tries (last "
                   f"error: {row['last_error']}); still retried every {self.settings.failed_retry_s:g} s (BR-2, CH-1)",
                   target=TARGET, sync_kind=KIND, sync_id=row["sync_id"])

    # --- CH-2 -------------------------------------------------------------------------------------------------------
    def backfill(self) -> dict:
        """CH-2: compare the outcomes marked as synced, per UTC day, with ClickHouse's count (``FINAL``, this
        instance); for each short day unmark the outcomes whose key ClickHouse lacks (the next ticks resend them).
        Returns ``{"days": n, "short_days": [day numbers], "missing": n}``. Raises ClickHouseError."""
        mine: dict[int, list] = {}
        for intent in self.journal.ch_synced_final():
            mine.setdefault(int(intent.updated_ms or 0) // DAY_MS, []).append(intent)
        if not mine:
            return {"days": 0, "short_days": [], "missing": 0}
        theirs = self.target.counts_per_day(self.instance)
        short = sorted(d for d, items in mine.items() if theirs.get(d, 0) < len(items))
        missing = []
        for day in short:
            keys = self.target.keys_on_day(day)
            missing += [i for i in mine[day] if trade_key(i) not in keys]
        if missing:
            self.journal.mark_ch_synced_many(missing, synced=False)
            self.journal.flush_published()
            days = ", ".join(_dt.datetime.fromtimestamp(d * 86400, _dt.timezone.utc).date().isoformat()
                             for d in short)
            self.alert("clickhouse_backfill", f"ClickHouse lacks {len(missing)} outcome(s) of {days} that the journal "
                       f"holds; resending them from DuckDB (CH-2)", target=TARGET, missing=len(missing))
        self.emit("clickhouse_backfill", days=len(mine), short_days=short, missing=len(missing))
        return {"days": len(mine), "short_days": short, "missing": len(missing)}


def _ids_of(row: dict) -> list[str]:
    payload = row.get("payload")
    ids = payload.get("signal_ids", []) if isinstance(payload, dict) else []
    return [str(s) for s in ids]


# --- engine wiring -----------------------------------------------------------------------------------------------
class ClickHouseHistory:
    """The sync and the backup schedule of one engine, started and stopped together."""

    def __init__(self, sync: ClickHouseSync, backups: Any | None):
        self.sync = sync
        self.backups = backups

    def start(self) -> None:
        self.sync.start()
        if self.backups is not None:
            self.backups.start()

    def stop(self) -> None:
        if self.backups is not None:
            self.backups.stop()
        self.sync.stop()


def from_engine_config(cfg: Any, journal: Any, *, emit: Callable[..., None],
                       alert: Callable[..., None]) -> ClickHouseHistory | None:
    """The ClickHouse history of an engine (sync + CH-3 backups), or None when ``clickhouse_url`` is "" (off).
    Nothing connects until :meth:`ClickHouseHistory.start`."""
    if not cfg.clickhouse_url:
        return None
    from reference.store.clickhouse_backup import BackupSettings, ClickHouseBackups

    target = ClickHouseTarget(ClickHouseSettings.from_engine(cfg))
    sync = ClickHouseSync(journal, target, instance=cfg.instance, emit=emit, alert=alert)
    backup_settings = BackupSettings.from_engine(cfg)
    backups = None
    if backup_settings is not None:
        # its own client: a backup streams for a while and must not hold the sync's; it is not under CH-1's
        # cadence, so its requests keep the 5 s timeout they had before the sync's try deadline went to 2 s
        # the schedule is looked at every 30 s, or four times an incremental interval when that is shorter
        backup_target = ClickHouseTarget(dataclasses.replace(target.settings, timeout_s=max(
            BACKUP_TIMEOUT_S, target.settings.timeout_s)))
        backups = ClickHouseBackups(backup_target, backup_settings, emit=emit, alert=alert,
                                    tick_s=min(30.0, backup_settings.incremental_s / 4))
    return ClickHouseHistory(sync, backups)
