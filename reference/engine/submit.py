"""The sender's side of the RTSS contract: put one signal on the signal stream so that an acknowledgement means
the signal survives a Redis failover (issue 12; what a backend or any signal source must do).

Redis replicates asynchronously, so a plain XADD acknowledged by a primary that Sentinel is replacing is lost when
that node is converted to a replica (REQUIREMENTS "Known contradictions"; measured: 143 acknowledged signals in one
majority-minority run, all written to the old primary during the ~10 s between heal and its conversion, by clients
that had asked a Sentinel of the old minority). Four rules close that window for the sender:

1. the primary is the node a **majority of the configured Sentinels** names (``RedisLink.discover``), never the
   first Sentinel that answers;
2. each XADD is followed, in the same round trip, by ``WAIT <wait_replicas> <wait_ms>``; the signal is
   *confirmed* only when that many replicas hold it. An old primary after a heal has no replicas left, so nothing
   it accepts is ever confirmed;
3. an unconfirmed or failed submission is sent again, with the same signal id, to the primary a majority names
   (at most ``max_attempts`` times, within the caller's deadline). The engine executes a signal id once and
   answers a second entry with status ``duplicate`` (ENG-5), so resending is safe: at-least-once delivery and an
   idempotent consumer make exactly-once;
4. a WAIT-confirmed signal counts only if, asked after the WAIT, a majority of the Sentinels still name the node
   that took it and none of them is replacing it (``o_down`` or ``failover_in_progress``: ``being_replaced``);
   else it is unconfirmed and sent again (issue 16's redis-partition schedule: a partition healed while Sentinel
   was failing the old primary over; for about a second the settled Sentinels still named the old primary, the
   sender wrote there and a replica that had not yet been re-pointed confirmed with WAIT 1; the promoted replica
   then full-resynced that replica, and 3-4 acknowledged signals were gone in 3 of 3 runs; REQUIREMENTS
   "redis-async-replication"). The check costs one parallel ask of every Sentinel per confirmed signal: a
   submit took 1.37 ms p50 instead of 0.49 ms (300 submits x 3 rounds on loopback, 2026-12-01).

What WAIT cannot do (shown by the ``redis_set`` checker, not hidden here): a write confirmed by a replica that sits
in the minority *with* the old primary is lost when the majority promotes its own replica; only waiting for every
replica survives that split, at the price of refusing signals while any replica is down.

Written here rather than with redis-py's ``Sentinel.master_for`` because that helper reconnects through whichever
Sentinel answers first (rule 1) and cannot say which node acknowledged a write.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

from .redislink import REDIS_ERRORS, RedisLink, RedisUnavailable

CONFIRMED = "confirmed"      # on the primary and on ``wait_replicas`` replicas
UNCONFIRMED = "unconfirmed"  # acknowledged by a primary, fewer replicas confirmed before the deadline: may be lost
FAILED = "failed"            # never reached a primary (no majority, refused, not a primary): not on the stream
UNKNOWN = "unknown"          # the request may have reached Redis and no answer came back


@dataclass
class SubmitterConfig:
    """Where and how to submit. ``sentinels``: ``[(host, port), ...]`` (empty: ``redis_host``/``redis_port``
    directly); ``credentials``/``sentinel_credentials``: ``(username, password)``; ``wait_replicas``: replicas
    that must hold a signal before it counts as confirmed (0: no WAIT; RDS-4); ``wait_ms``: WAIT's timeout in
    milliseconds; ``max_attempts``: sends per signal, the first included; timeouts in seconds."""

    sentinels: list = field(default_factory=list)
    master_name: str = "mymaster"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    credentials: tuple = (None, None)
    sentinel_credentials_: tuple | None = None
    wait_replicas: int = 1
    wait_ms: int = 500
    max_attempts: int = 3
    redis_socket_timeout_s: float = 1.0
    redis_connect_timeout_s: float = 0.5
    redis_source_address: str = ""
    redis_retry_interval_s: float = 0.2
    redis_rediscover_after: int = 5
    instance: str = "producer"
    client_prefix: str = "producer"

    def __post_init__(self) -> None:
        if int(self.wait_replicas) < 0 or int(self.wait_ms) < 0:
            raise ValueError("wait_replicas and wait_ms must be >= 0")
        if int(self.max_attempts) < 1:
            raise ValueError("max_attempts must be >= 1")

    def redis_credentials(self) -> tuple:
        return tuple(self.credentials)

    def sentinel_credentials(self) -> tuple:
        return tuple(self.sentinel_credentials_ if self.sentinel_credentials_ is not None else self.credentials)


@dataclass(frozen=True)
class Submission:
    """One signal's submission: ``outcome`` (CONFIRMED, UNCONFIRMED, FAILED, UNKNOWN; the last attempt's),
    ``entry_id`` of the last XADD Redis acknowledged (None if none), ``address`` (host, port) that acknowledged
    it, ``replicas`` WAIT reported, ``attempts`` made, ``error`` (the last, one line; None when confirmed)."""

    outcome: str
    entry_id: str | None
    address: tuple | None
    replicas: int
    attempts: int
    error: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.outcome == CONFIRMED


class SignalSubmitter:
    """Submit signals to one stream (one instance per sending thread: its link is not shared)."""

    def __init__(self, config: SubmitterConfig, name: str = "submit", stop: threading.Event | None = None):
        self.config = config
        self.link = RedisLink(config, name=name)  # type: ignore[arg-type] - duck-typed config (fields above)
        self.stop = stop or threading.Event()

    def submit(self, stream: str, fields: Mapping[str, str], deadline_s: float | None = None) -> Submission:
        """XADD ``fields`` to ``stream`` and WAIT for the replicas; send again (same fields) while unconfirmed,
        at most ``max_attempts`` times and not past ``deadline_s`` seconds from now. Never raises for Redis
        trouble: the outcome says what happened."""
        cfg = self.config
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else 10.0)
        last = Submission(FAILED, None, None, 0, 0, "not attempted")
        for attempt in range(1, int(cfg.max_attempts) + 1):
            last = self._once(stream, fields, attempt, last)
            if last.confirmed or self.stop.is_set():
                return last
            if last.outcome == UNCONFIRMED:
                # this primary may be one the Sentinels are replacing: ask the majority again before resending
                self.link.mark_broken()
            pause = min(cfg.redis_retry_interval_s, max(0.0, deadline - time.monotonic()))
            if time.monotonic() + pause >= deadline or attempt == cfg.max_attempts:
                return last
            if self.stop.wait(pause):  # pacing between sends, not synchronisation: the next send asks afresh
                return last
        return last

    def _once(self, stream: str, fields: Mapping[str, str], attempt: int, previous: Submission) -> Submission:
        cfg = self.config
        wait = int(cfg.wait_replicas)

        def send(client):
            pipe = client.pipeline(transaction=False)
            pipe.xadd(stream, dict(fields))
            if wait:
                pipe.execute_command("WAIT", wait, int(cfg.wait_ms))
            return pipe.execute(raise_on_error=False)

        try:
            replies = self.link.run(send)
        except RedisUnavailable as exc:
            text = str(exc)
            # a timeout after the request left may have reached Redis; a refused or unreachable link did not
            outcome = UNKNOWN if "Timeout" in text else FAILED
            keep = previous.entry_id is not None
            return Submission(outcome if not keep else UNCONFIRMED, previous.entry_id, previous.address,
                              previous.replicas, attempt, text.splitlines()[0][:300])
        except Exception as exc:  # noqa: BLE001 - a refusal (NOPERM, OOM, ...) is this attempt's answer
            return Submission(FAILED if previous.entry_id is None else UNCONFIRMED, previous.entry_id,
                              previous.address, previous.replicas, attempt, f"{type(exc).__name__}: {exc}"[:300])
        if isinstance(replies[0], Exception):  # the XADD itself was refused: the signal is not on the stream
            exc = replies[0]
            if isinstance(exc, REDIS_ERRORS) or any(w in str(exc) for w in ("READONLY", "MASTERDOWN", "LOADING")):
                # a demoted primary (READONLY after a planned failover) or one that is not serving: ask the
                # Sentinels again before the next attempt instead of sending there again
                self.link.mark_broken()
            return Submission(FAILED if previous.entry_id is None else UNCONFIRMED, previous.entry_id,
                              previous.address, previous.replicas, attempt, f"{type(exc).__name__}: {exc}"[:300])
        entry_id = replies[0]
        if wait and isinstance(replies[1], Exception):  # on the stream, but nobody can say a replica holds it
            exc = replies[1]
            return Submission(UNCONFIRMED, entry_id, self.link.address, 0, attempt,
                              f"WAIT failed: {type(exc).__name__}: {exc}"[:300])
        replicas = int(replies[1]) if wait else 0
        if replicas >= wait:
            address = self.link.address
            doubt = self._doubt(address)
            if doubt:
                # rule 4: the node that took it may be discarding it in a failover; ask the majority again
                self.link.mark_broken()
                return Submission(UNCONFIRMED, entry_id, address, replicas, attempt,
                                  f"{replicas} replica(s) confirmed at {address[0]}:{address[1]}, but {doubt}"[:300]
                                  if address else doubt[:300])
            return Submission(CONFIRMED, entry_id, address, replicas, attempt)
        return Submission(UNCONFIRMED, entry_id, self.link.address, replicas, attempt,
                          f"{replicas} of {wait} replica(s) confirmed within {cfg.wait_ms} ms at "
                          f"{self.link.address[0]}:{self.link.address[1]}" if self.link.address else "unconfirmed")

    def _doubt(self, address: tuple[str, int] | None) -> str:
        """Rule 4, asked after a WAIT confirmed a signal: "" when there are no Sentinels, or a majority of them name
        ``address`` and none is replacing it; else why the confirmation does not count (one line)."""
        if not self.config.sentinels:
            return ""
        view = self.link.sentinel_view()
        if view.primary is None:
            return "the Sentinels name no primary now: " + view.describe()
        if address is None or view.primary != tuple(address):
            return f"the Sentinels now name {view.primary[0]}:{view.primary[1]} as the primary"
        if view.doubt:
            return f"the Sentinels are replacing that primary ({view.doubt})"
        return ""

    def close(self) -> None:
        self.link.close()
