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
    why it did not answer), ``primary`` = the primary by ``choose_primary`` (None: no majority answered, or the
    newest configuration is ambiguous), ``current`` = the address this link writes to, ``epoch`` = the config
    epoch of ``primary``. ``confirmed``: ``primary`` is ``current``. ``doubt``: which Sentinels are replacing
    ``primary`` right now (``being_replaced``; "" when none): the lease neither acquires nor renews then."""

    def __init__(self, configured: int, answered: int, errors: dict, primary, current, epoch: int | None = None,
                 why: str = "", doubt: str = ""):
        self.configured, self.answered, self.errors = configured, answered, errors
        self.primary, self.current, self.epoch, self.why = primary, current, epoch, why
        self.doubt = doubt   # Sentinels replacing ``primary`` right now (``being_replaced``); "" when none

    @property
    def confirmed(self) -> bool:
        return self.configured == 0 or (self.primary is not None and self.primary == self.current)

    def describe(self) -> str:
        if self.primary is None:
            return (f"{self.answered} of {self.configured} Sentinels answered; no primary: {self.why or 'unknown'}"
                    + (f" ({'; '.join(f'{k}: {v}' for k, v in sorted(self.errors.items()))})" if self.errors else ""))
        return (f"{self.answered} of {self.configured} Sentinels answered; the newest configuration (epoch "
                f"{self.epoch}) names {self.primary[0]}:{self.primary[1]}")


def choose_primary(answers: dict, configured: int) -> tuple[tuple[str, int] | None, int | None, str]:
    """The primary a client may write to, from what each Sentinel said: ``answers`` maps a Sentinel's address to
    ``(host, port, config_epoch, failover_in_progress)`` or to an error string. Returns ``(primary, epoch, why)``.

    Rules (issue 12): (1) a majority of the ``configured`` Sentinels must answer, so a client cut off with a
    minority (and perhaps an isolated old primary) names none and stops writing; (2) among the answers of
    Sentinels not in the middle of a failover, the highest config epoch wins: an epoch is only ever raised by a
    leader a majority elected, so a Sentinel of the old minority that still names the old primary after a heal
    is outvoted at once, and the client follows a promotion as soon as one Sentinel has adopted it (about 1 s
    before the leader itself, which reports the old address with the new epoch until its failover ends);
    (3) two different addresses at the newest epoch: none (never guess)."""
    named = [v for v in answers.values() if isinstance(v, tuple)]
    majority = configured // 2 + 1
    if len(named) < majority:
        return None, None, f"only {len(named)} of {configured} answered (a majority is {majority})"
    settled = [v for v in named if not v[3]]
    if not settled:
        return None, None, "every answering Sentinel is in the middle of a failover"
    newest = max(int(v[2]) for v in settled)
    at_newest = {(str(v[0]), int(v[1])) for v in settled if int(v[2]) == newest}
    if len(at_newest) != 1:
        return None, None, f"Sentinels at epoch {newest} name different primaries: {sorted(at_newest)}"
    return next(iter(at_newest)), newest, ""


def being_replaced(answers: dict, primary: tuple[str, int] | None) -> str:
    """Which answering Sentinels are replacing ``primary`` right now: they name it and flag it ``o_down`` (a quorum
    found it down) or are failing it over (``answers`` as for ``choose_primary``, with the o_down flag fifth).
    Returns "" when none, else e.g. ``"127.0.0.5:26379: failover_in_progress"``.

    Why the lease needs it (issue 16's redis-partition replay): a partition that heals while Sentinel's failover is
    under way leaves the majority of the Sentinels naming the old primary for about a second, and only the leader
    knows it is being replaced; an engine that took the lease there traded on a node whose writes the promotion
    then discarded (its results, and the signals it had read, gone from Redis; the orders at the broker)."""
    if primary is None:
        return ""
    out = []
    for addr, v in sorted(answers.items()):
        if isinstance(v, tuple) and (str(v[0]), int(v[1])) == primary:
            flags = [f for f, on in (("failover_in_progress", v[3]), ("o_down", len(v) > 4 and v[4])) if on]
            if flags:
                out.append(f"{addr}: {','.join(flags)}")
    return "; ".join(out)


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
    STRAGGLER_GRACE_S = 0.05  # how long a Sentinel view waits for the rest once a majority has answered
    # an attempt falls due this much (at most a tenth of the interval) before redis_retry_interval_s has passed: the
    # engine's loop asks every 0.1 s while Redis is down, so start-to-start stays within ORD-3's 2 s (issue 19
    # measures it from redis_attempt)
    RETRY_SLACK_S = 0.15

    def __init__(self, config: EngineConfig, name: str = "main",
                 on_rediscover: Callable[[int], None] | None = None,
                 on_attempt: Callable[[bool, int, str, float], None] | None = None):
        """``on_attempt(ok, failures, error, took_s)`` is called after every reconnect attempt of :meth:`ensure` (ORD-3's
        cadence, issue 19; ``took_s``: the attempt's own duration, so its start is the caller's clock minus it); ``on_rediscover(failures)`` after every ``redis_rediscover_after`` failed ones."""
        self.config = config
        self.name = name
        self._on_attempt = on_attempt
        self._client: redis.Redis | None = None
        self._address: tuple[str, int] | None = None
        self._next_attempt = 0.0
        self.failures = 0
        self.rediscoveries = 0
        self._on_rediscover = on_rediscover
        self._lock = threading.Lock()
        self._sentinel_clients: dict[tuple[str, int], redis.Redis] | None = None
        self._moved: tuple[tuple[str, int], tuple[str, int]] | None = None
        self.last_error = ""   # why the last connection attempt failed (one line), for the caller's message

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
                    decode_responses=True, client_name=f"{getattr(self.config, 'client_prefix', 'engine')}-{self.config.instance}-{self.name}",
                    # a field that is not UTF-8 must not fail the read of its whole batch: its bytes survive as
                    # lone surrogates, which parse_signal rejects as MALFORMED (and which encode back unchanged)
                    encoding_errors="surrogateescape")

    def discover(self) -> tuple[str, int]:
        """The primary's address: ``choose_primary`` over what every configured Sentinel says (``sentinel_view``:
        a majority must answer, the newest config epoch wins), or the fixed address without Sentinels. Raises
        RedisUnavailable naming what each Sentinel said when there is none.

        Not the first Sentinel that answers (redis-py's ``discover_master``): after a partition heals, a Sentinel
        of the old minority names the old primary until it hears the new epoch, and the old primary itself stays
        a writable primary until Sentinel converts it, about 10 s later; a client that asked that Sentinel wrote
        there, and every write it made was discarded at the conversion (issue 12: 143 acknowledged signals lost
        in one majority-minority run). The lease already asked every Sentinel; now every link of the engine does."""
        if not self.config.sentinels:
            return self.config.redis_host, int(self.config.redis_port)
        view = self.sentinel_view()
        if view.primary is None:
            raise RedisUnavailable("the Sentinels name no primary to write to: " + view.describe())
        return view.primary

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
            interval = self.config.redis_retry_interval_s
            self._next_attempt = now + interval - min(self.RETRY_SLACK_S, 0.1 * interval)
            try:
                self._connect()
                failed_before, self.failures = self.failures, 0
                if self._on_attempt and failed_before:
                    self._on_attempt(True, failed_before, "", time.monotonic() - now)
                return True
            except (RedisUnavailable, *REDIS_ERRORS) as exc:
                self.last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                self.failures += 1
                if self._on_attempt:
                    self._on_attempt(False, self.failures, self.last_error, time.monotonic() - now)
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
        named = self.sentinel_view().primary
        if named is None:  # no majority answers: nothing to follow (the lease stops renewing on its own view)
            return None
        return (current, named) if named != current else None

    def sentinel_view(self) -> "SentinelView":
        """Every configured Sentinel asked at once (one thread each, persistent connections, connect and read
        timeouts ``redis_connect_timeout_s``) which node is the primary (``SENTINEL MASTER``: address, config
        epoch, failover flag), judged by ``choose_primary``. The lease renews and acquires only when a majority of
        the Sentinels answer and the newest configuration names the node this link writes to (issue 12): an engine cut off with
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
        settled = threading.Condition()
        majority = len(sentinels) // 2 + 1

        def ask(addr: tuple[str, int]) -> None:
            try:
                got = self._sentinel_clients[addr].sentinel_master(self.config.master_name)
                flags = str(got.get("flags", "")).split(",")
                answer: object = (str(got["ip"]), int(got["port"]), int(got.get("config-epoch", 0)),
                                  "failover_in_progress" in flags, "o_down" in flags)
            except Exception as exc:  # noqa: BLE001 - any failure of the ask is this Sentinel not answering
                answer = str(exc)
            with settled:
                answers[f"{addr[0]}:{addr[1]}"] = answer
                settled.notify_all()

        threads = [threading.Thread(target=ask, args=(a,), daemon=True) for a in sentinels]
        for t in threads:
            t.start()
        # every Sentinel gets up to the deadline; once a majority has answered, the others get a short grace only:
        # a Sentinel cut off by a partition would otherwise hold every view for a whole connect timeout, and the
        # engine would follow a primary change up to a second late (issue 12, measured 1.5 s)
        deadline = time.monotonic() + 2 * self.config.redis_connect_timeout_s + 0.1
        grace_until: float | None = None
        with settled:
            while len(answers) < len(sentinels):
                now = time.monotonic()
                if grace_until is None and sum(isinstance(v, tuple) for v in answers.values()) >= majority:
                    grace_until = now + self.STRAGGLER_GRACE_S
                until = min(deadline, grace_until) if grace_until is not None else deadline
                if now >= until:
                    break
                settled.wait(until - now)
            answers = dict(answers)  # a Sentinel that answers later does not count
        for addr in sentinels:
            answers.setdefault(f"{addr[0]}:{addr[1]}", "no answer before the deadline")
        primary, epoch, why = choose_primary(answers, len(sentinels))
        errors = {k: v for k, v in answers.items() if not isinstance(v, tuple)}
        answered = sum(isinstance(v, tuple) for v in answers.values())
        return SentinelView(len(sentinels), answered, errors, primary, self._address, epoch, why,
                            doubt=being_replaced(answers, primary))

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
                raise RedisUnavailable(f"Redis is unreachable (attempt {self.failures}: {self.last_error}); next "
                                       f"retry in {max(0.0, self._next_attempt - time.monotonic()):.1f}s")
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
