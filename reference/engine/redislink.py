"""Redis through Sentinel with explicit timeouts and an explicit retry policy (RDS-2 client side, ORD-3).

redis-py's default retry hides a dead or paused server for seconds (ARCHITECTURE, measured facts), so every client
here has ``Retry(NoBackoff(), 0)`` and short socket timeouts: an operation either succeeds or raises at once, and
the *engine* decides what to do. :class:`RedisLink` keeps one client to the current primary:

- every failing operation marks the link broken and raises :class:`RedisUnavailable`;
- ``ensure()`` reconnects at most every ``redis_retry_interval_s`` (ORD-3: 2 s). Each attempt asks the Sentinels
  for the current primary (so a promoted replica is found on the first attempt after the promotion: "clients
  switch automatically", RDS-2) and checks with ``ROLE`` that the node really is a master (a demoted old primary
  that comes back as a replica is never written to);
- after ``redis_rediscover_after`` (ORD-3: 10) failed attempts it drops every Sentinel connection and discovers the
  topology afresh, and raises an alert.

Credentials (ACL users) come from the config: ``redis_username``/``redis_password`` (or ``redis_password_file``) for
the Redis nodes and ``sentinel_username``/``sentinel_password`` (or ``sentinel_password_file``) for the Sentinels,
read again on every connect; a refused login is an outage like any other (the engine keeps retrying and alerts).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import ConfigError, EngineConfig

T = TypeVar("T")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.BusyLoadingError,
                OSError)


class SentinelView:
    """What the Sentinels said at one instant: ``configured`` and ``answered`` counts, ``errors`` (address ->
    why it did not answer), ``primary`` = the address a majority of the configured Sentinels name (None: no
    majority), ``current`` = the address this link writes to. ``confirmed``: a majority names ``current``."""

    def __init__(self, configured: int, answered: int, errors: dict, primary, current):
        self.configured, self.answered, self.errors = configured, answered, errors
        self.primary, self.current = primary, current

    @property
    def confirmed(self) -> bool:
        return self.configured == 0 or (self.primary is not None and self.primary == self.current)

    def describe(self) -> str:
        if self.primary is None:
            return (f"{self.answered} of {self.configured} Sentinels answered; no majority names a primary"
                    + (f" ({'; '.join(f'{k}: {v}' for k, v in sorted(self.errors.items()))})" if self.errors else ""))
        return f"a majority of the Sentinels names {self.primary[0]}:{self.primary[1]}"


class RedisUnavailable(RuntimeError):
    """Redis could not be reached (or is not a writable primary) just now."""


class BoundConnection(redis.connection.Connection):
    """A Redis connection that leaves from ``source_address`` (the engine node's own address), so a network
    partition can put this engine on either side (issue 12). redis-py has no option for it: this is its
    ``_connect`` with a ``bind`` before the ``connect``."""

    def __init__(self, *args, source_address: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.source_address = source_address

    def _connect(self):
        if not self.source_address:
            return super()._connect()
        err = None
        for family, socktype, proto, _canon, address in socket.getaddrinfo(self.host, self.port, self.socket_type,
                                                                            socket.SOCK_STREAM):
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind((self.source_address, 0))
                sock.settimeout(self.socket_connect_timeout)
                sock.connect(address)
                sock.settimeout(self.socket_timeout)
                return sock
            except OSError as exc:
                err = exc
                if sock is not None:
                    sock.close()
        raise err if err is not None else OSError("getaddrinfo returned nothing")


def client(config: EngineConfig, host: str, port: int, **kwargs) -> redis.Redis:
    """A Redis client to ``host:port`` that leaves from ``config.redis_source_address`` when one is set."""
    if not getattr(config, "redis_source_address", ""):
        return redis.Redis(host=host, port=int(port), **kwargs)
    pool = redis.ConnectionPool(connection_class=BoundConnection, host=host, port=int(port),
                                source_address=config.redis_source_address, **kwargs)
    return redis.Redis(connection_pool=pool)


class RedisLink:
    def __init__(self, config: EngineConfig, name: str = "main",
                 on_rediscover: Callable[[int], None] | None = None):
        self.config = config
        self.name = name
        self._client: redis.Redis | None = None
        self._address: tuple[str, int] | None = None
        self._next_attempt = 0.0
        self.failures = 0
        self.rediscoveries = 0
        self._on_rediscover = on_rediscover
        self._lock = threading.Lock()
        self._sentinel_clients: dict[tuple[str, int], redis.Redis] | None = None
        self._moved: tuple[tuple[str, int], tuple[str, int]] | None = None

    # --- connection -------------------------------------------------------------------------------------------
    @staticmethod
    def _auth(credentials: tuple[str | None, str | None]) -> dict:
        username, password = credentials
        return {k: v for k, v in (("username", username), ("password", password)) if v}

    def _client_kwargs(self) -> dict:
        return dict(**self._auth(self.config.redis_credentials()),
                    socket_timeout=self.config.redis_socket_timeout_s,
                    socket_connect_timeout=self.config.redis_connect_timeout_s,
                    retry=Retry(NoBackoff(), 0), retry_on_error=[], health_check_interval=0,
                    decode_responses=True, client_name=f"engine-{self.config.instance}-{self.name}",
                    # a field that is not UTF-8 must not fail the read of its whole batch: its bytes survive as
                    # lone surrogates, which parse_signal rejects as MALFORMED (and which encode back unchanged)
                    encoding_errors="surrogateescape")

    def discover(self) -> tuple[str, int]:
        """The primary's address: asked of each Sentinel in turn (first that answers), or the fixed address."""
        if not self.config.sentinels:
            return self.config.redis_host, int(self.config.redis_port)
        errors = []
        try:
            auth = self._auth(self.config.sentinel_credentials())
        except ConfigError as exc:
            raise RedisUnavailable(str(exc)) from None
        for host, port in self.config.sentinels:
            s = client(self.config, host, int(port), socket_timeout=self.config.redis_connect_timeout_s,
                       socket_connect_timeout=self.config.redis_connect_timeout_s,
                       retry=Retry(NoBackoff(), 0), decode_responses=True, **auth)
            try:
                addr = s.execute_command("SENTINEL", "get-master-addr-by-name", self.config.master_name)
                if addr:
                    return str(addr[0]), int(addr[1])
                errors.append(f"{host}:{port} does not know {self.config.master_name!r}")
            except (*REDIS_ERRORS, redis.ResponseError) as exc:  # a refusal (NOPERM) is this Sentinel's answer too
                errors.append(f"{host}:{port}: {exc}")
            finally:
                s.close()
        raise RedisUnavailable("no Sentinel named a primary: " + "; ".join(errors))

    def _connect(self) -> None:
        host, port = self.discover()
        try:
            kwargs = self._client_kwargs()
        except ConfigError as exc:
            raise RedisUnavailable(str(exc)) from None
        conn = client(self.config, host, port, **kwargs)
        try:
            role = conn.execute_command("ROLE")
            if not role or role[0] != "master":
                raise RedisUnavailable(f"{host}:{port} is a {role[0] if role else '?'}, not the primary (yet)")
        except (*REDIS_ERRORS, redis.ResponseError) as exc:
            conn.close()
            raise RedisUnavailable(f"primary {host}:{port} unreachable: {exc}") from None
        except RedisUnavailable:
            conn.close()
            raise
        if self._client is not None:
            self._client.close()
        if self._address is not None and self._address != (host, port):
            # a reconnect after READONLY or a dropped connection found another primary: the same change as one
            # seen from the Sentinels (issue 12), so the owner re-verifies what the failover may have lost
            self._moved = (self._address, (host, port))
        self._client, self._address = conn, (host, port)

    def ensure(self, force: bool = False) -> bool:
        """Make sure a client to the current primary exists; at most one attempt per retry interval. True if up."""
        with self._lock:
            if self._client is not None:
                return True
            now = time.monotonic()
            if not force and now < self._next_attempt:
                return False
            self._next_attempt = now + self.config.redis_retry_interval_s
            try:
                self._connect()
                self.failures = 0
                return True
            except (RedisUnavailable, *REDIS_ERRORS):
                self.failures += 1
                if self.failures % self.config.redis_rediscover_after == 0:
                    self.rediscoveries += 1
                    if self._on_rediscover:
                        self._on_rediscover(self.failures)
                return False

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._address

    def primary_moved(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """``(old, new)`` when the Sentinels now name another primary than the one this link writes to, else None
        (also when no Sentinel answers). A planned failover resets no connection: without this check a client
        keeps writing to the demoted primary until its first READONLY reply (about 11 s measured), and the writes
        that node acknowledged meanwhile are lost (issue 12)."""
        current = self._address
        if current is None or not self.config.sentinels:
            return None
        try:
            named = self.discover()
        except RedisUnavailable:
            return None
        return (current, named) if named != current else None

    def sentinel_view(self) -> "SentinelView":
        """Every configured Sentinel asked at once (one thread each, persistent connections, connect and read
        timeouts ``redis_connect_timeout_s``) which node is the primary. The lease renews and acquires only when a
        majority of the Sentinels answer and name the node this link writes to (issue 12): an engine cut off with
        an isolated old primary cannot reach that majority, so it stops sending within its sending window instead
        of trading on a primary that the rest of the group has already replaced (split brain)."""
        sentinels = [(str(h), int(p)) for h, p in self.config.sentinels]
        if not sentinels:
            return SentinelView(0, 0, {}, None, self._address)
        try:
            auth = self._auth(self.config.sentinel_credentials())
        except ConfigError as exc:
            return SentinelView(len(sentinels), 0, {f"{h}:{p}": str(exc) for h, p in sentinels}, None, self._address)
        if self._sentinel_clients is None:
            self._sentinel_clients = {
                addr: client(self.config, addr[0], addr[1], socket_timeout=self.config.redis_connect_timeout_s,
                             socket_connect_timeout=self.config.redis_connect_timeout_s,
                             retry=Retry(NoBackoff(), 0), decode_responses=True, **auth)
                for addr in sentinels}
        answers: dict[str, object] = {}

        def ask(addr: tuple[str, int]) -> None:
            try:
                got = self._sentinel_clients[addr].execute_command("SENTINEL", "get-master-addr-by-name",
                                                                   self.config.master_name)
                answers[f"{addr[0]}:{addr[1]}"] = (str(got[0]), int(got[1])) if got else "unknown master"
            except (*REDIS_ERRORS, redis.ResponseError) as exc:
                answers[f"{addr[0]}:{addr[1]}"] = str(exc)

        threads = [threading.Thread(target=ask, args=(a,), daemon=True) for a in sentinels]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 2 * self.config.redis_connect_timeout_s + 0.1
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        answers = dict(answers)  # a Sentinel that answers after the deadline does not count
        for addr in sentinels:
            answers.setdefault(f"{addr[0]}:{addr[1]}", "no answer before the deadline")
        named = [v for v in answers.values() if isinstance(v, tuple)]
        counts: dict[tuple[str, int], int] = {}
        for v in named:
            counts[v] = counts.get(v, 0) + 1
        majority = len(sentinels) // 2 + 1
        primary = next((a for a, n in counts.items() if n >= majority), None)
        errors = {k: v for k, v in answers.items() if not isinstance(v, tuple)}
        return SentinelView(len(sentinels), len(named), errors, primary, self._address)

    def take_reconnect_move(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """``(old, new)`` once when a reconnect (not a Sentinel check) found a different primary, else None."""
        moved, self._moved = self._moved, None
        return moved

    def mark_broken(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # noqa: BLE001
                    pass
            self._client = None

    def run(self, op: Callable[[redis.Redis], T]) -> T:
        """Run ``op(client)``; any connection-type error marks the link broken and raises RedisUnavailable."""
        client = self._client
        if client is None:
            if not self.ensure():
                raise RedisUnavailable(f"Redis is unreachable (attempt {self.failures}); next retry in "
                                       f"{max(0.0, self._next_attempt - time.monotonic()):.1f}s")
            client = self._client
        try:
            return op(client)
        except REDIS_ERRORS as exc:
            self.mark_broken()
            raise RedisUnavailable(f"Redis operation failed: {exc}") from None
        except redis.ResponseError as exc:
            if "READONLY" in str(exc) or "MASTERDOWN" in str(exc) or "LOADING" in str(exc):
                self.mark_broken()
                raise RedisUnavailable(f"Redis node is not a writable primary: {exc}") from None
            raise

    def close(self) -> None:
        for c in (self._sentinel_clients or {}).values():
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self._sentinel_clients = None
        self._close_primary()

    def _close_primary(self) -> None:
        self.mark_broken()
