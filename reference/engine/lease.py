"""The active-passive lease with fencing (ENG-1, ENG-2, ENG-5, ENG-6).

Keys (per engine group ``g``): ``g:lease`` = ``"<instance>:<token>"`` with a TTL (``lease_ttl_s``, ENG-1: 3 s),
``g:fence`` = a counter INCRemented on every acquisition (the fencing token), ``g:lease:holder`` = the last holder's
value (no TTL), ``g:lease:renewed_ms`` = Redis server time of the last successful renewal or acquisition.

Fencing, because a process can be paused (SIGSTOP, GC, swap) at any instant and wake up believing it is active:

1. *Local deadline.* Each renewal starts a monotonic clock before the request; on success the holder may send until
   ``start + ttl - safety_margin - send_flight_s``. That is ``send_flight_s`` (the longest time a request takes to
   reach the broker) before the server-side expiry (the request reached the server after ``start``), so whatever
   the holder sent has reached the broker by the time the key lapses. Immediately before each ``order_send`` the engine checks ``can_send()``; a process that slept
   past its deadline sees it is past and does not send until a renewal succeeds again - and a renewal only succeeds
   if nobody else took the lease in between (the Lua script compares the holder value).
2. *The new holder waits out the old one.* On acquisition the script returns the previous holder and the server time
   of its last renewal; the new holder does not reconcile or send until that renewal's TTL has run out (the flight
   time is already inside the old holder's own margin, 1.). Only then does it reconcile in-flight work against the
   broker, so anything the old one sent is visible. A crash is not a pause: when the supervisor that runs an engine
   has reaped its process (it cannot send any more), it releases the lease for it at once with a compare-and-delete
   on the holder value (``handoff.release_after_exit``); the successor then waits only ``exit_flight_s`` for
   requests that were already on the wire, not the TTL. A clean shutdown releases the lease itself (no wait).
3. *The broker is the arbiter.* The two instances do not share a journal; the new holder finds what the old one
   sent by the deterministic comment (and magic) in the broker's orders/positions/history.

4. *A promoted primary is quarantined.* Replication is asynchronous: a lease written on the old primary just before
   a failover (a holder that acquired or renewed there after a partition healed, while Sentinel's failover was
   still under way) never reaches the promoted replica, whose fence counter then hands the same token out again
   (issue 16's stateful search found it: two holders of token 2, a send of each). ``g:lease:node`` records the node
   (address, as the Sentinels announce it) the lease was last written on. On another node, a lapsed lease is
   neither acquired nor re-set for one TTL from the first attempt there (the quarantine): a holder still renewing
   on the old primary stops within its own deadline, as the Sentinels no longer confirm that node; and the fence
   jumps to the server time in ms, above any token the old primary handed out, so its late writes are refused. A
   lease still live on the promoted node is renewed as before (it was replicated, so nobody took it since). Cost:
   a takeover that needs a new acquisition across a failover waits one TTL more (3 s).

Residual risk, stated rather than hidden: the check in (1) and the socket write inside ``order_send`` are separate
instructions; a process frozen exactly between them (microseconds) and resumed after a takeover can still send
once. MT5 has no server-side fencing token to close that gap. A node known by two addresses (two clients reaching
it through different proxies) would quarantine every acquisition that alternates between them: the engines must
reach Redis as the Sentinels announce it. A network partition that leaves the old holder on an isolated old
primary is narrowed, not closed, by checking ``ROLE`` on connect and a majority of the Sentinels before each
renewal (Jepsen).

Several groups (ENG-6) never conflict: every key, the consumer group and the magic are per group.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import EngineConfig
from .contract import Keys, parse_lease
from .redislink import RedisLink, RedisUnavailable

# The node check shared by the two scripts (KEYS[n] = the node key, ARGV[3] = this node's address, '' = unknown,
# ARGV[2] = the TTL in ms): ``g:lease:node`` is ``"<address> <quarantine end ms>"``, the node the lease was last
# written on. Another node's address there means this node was promoted since, and a holder may still be renewing on
# the old primary in writes this node never got (issue 16's redis-partition finding): such a lease is waited out
# for a whole TTL from now (the quarantine), and the fence moves past any token the old primary can have handed
# out (its counter came from here before the promotion, or from an older quarantine, which set it to a server time
# in ms). Returns the quarantine's end in ms when the caller must wait, else 0 (and records this node).
NODE_CHECK = """
local function node_quarantine(now, key, holder_key)
  if ARGV[3] == '' then return 0 end
  local node = redis.call('GET', key)
  local addr, quiet = '', 0
  if node then
    addr = string.match(node, '^(%S+)') or ''
    quiet = tonumber(string.match(node, ' (%d+)$') or '0')
  end
  if (node and addr ~= ARGV[3]) or (not node and redis.call('EXISTS', holder_key) == 1) then
    quiet = now + tonumber(ARGV[2])
    redis.call('SET', key, ARGV[3] .. ' ' .. quiet)
    if tonumber(redis.call('GET', KEYS[2]) or '0') < now then redis.call('SET', KEYS[2], now) end
    return quiet
  end
  if quiet > now then return quiet end
  if not node or quiet ~= 0 then redis.call('SET', key, ARGV[3] .. ' 0') end
  return 0
end
"""

# KEYS: lease, fence, renewed_ms, holder, released, node; ARGV: instance, ttl_ms, node address ('' = unknown).
# Returns {1 acquired | 0 held by another | 2 quarantined, value, now ms, last renewal ms (1) or the quarantine's
# end ms (2), previous holder, how it was released}
ACQUIRE = NODE_CHECK + """
local cur = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if cur then return {0, cur, now, 0, '', ''} end
local quiet = node_quarantine(now, KEYS[6], KEYS[4])
if quiet > 0 then return {2, '', now, quiet, '', ''} end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local prev = redis.call('GET', KEYS[4]) or ''
local released = redis.call('GET', KEYS[5]) or ''
redis.call('DEL', KEYS[5])
local token = redis.call('INCR', KEYS[2])
local val = ARGV[1] .. ':' .. token
redis.call('SET', KEYS[1], val, 'PX', ARGV[2])
redis.call('SET', KEYS[3], now)
redis.call('SET', KEYS[4], val)
return {1, val, now, last, prev, released}
"""

# KEYS: lease, fence, renewed_ms, holder, node; ARGV: value, ttl_ms, node address ('' = unknown).
# Returns {1 renewed | 2 re-set after it had lapsed, unrenewed, as the last holder | 0 taken (or fenced) |
# 3 quarantined, the quarantine's end ms}. A live key is renewed wherever it is (it was replicated and has not
# lapsed, so nobody else can have taken the lease); a lapsed one only on the node it was last written on, and only
# when no newer token exists.
RENEW = NODE_CHECK + """
local cur = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[3], now)
  if ARGV[3] ~= '' then redis.call('SET', KEYS[5], ARGV[3] .. ' 0') end
  return {1, 0}
end
if cur or redis.call('GET', KEYS[4]) ~= ARGV[1] then return {0, 0} end
local quiet = node_quarantine(now, KEYS[5], KEYS[4])
if quiet > 0 then return {3, quiet} end
local token = tonumber(string.match(ARGV[1], ':(%d+)$') or '0')
if tonumber(redis.call('GET', KEYS[2]) or '0') > token then return {0, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], now)
return {2, 0}
"""

# compare-and-delete: only the holder named in ARGV[1] is released; ARGV[2] says how ("clean" | "exit")
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 0)
  redis.call('SET', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


# a heartbeat falls due this much before heartbeat_s has passed: the thread's wake-up latency plus the renewal's
# start. 0.03 s held on a quiet machine; fifty-user drills at nice 19 (load ~3.4 on 2 cores) measured wake-ups up
# to 44 ms late (intervals 1.005-1.014 s against ENG-1's 1 s). A renewal every 0.9 s costs one Redis write more in 9.
HEARTBEAT_SLACK_S = 0.1


@dataclass
class Acquisition:
    value: str
    token: int
    previous: str
    wait_s: float          # how long to wait before reconciling/sending (old holder's last possible send)


class Lease:
    """The lease as one instance sees it; ``run`` is the heartbeat thread's loop."""

    def __init__(self, config: EngineConfig, link: RedisLink, on_event: Callable[..., None],
                 value_file: Path | None = None):
        self.config = config
        self.link = link
        self.emit = on_event
        self.keys = Keys.of(config).lease_keys()  # lease, fence, renewed_ms, holder, released
        self.value_file = value_file
        self.value: str | None = None
        self.token = 0
        self._deadline = 0.0           # monotonic: may send until then
        self._ready_at = 0.0           # monotonic: may start trading (old holder waited out)
        self.acquired_count = 0
        self.want_active = True
        self._lock = threading.Lock()
        self.changed = threading.Event()   # set on gain/loss, so the main loop reacts at once
        self._stop = threading.Event()
        self.last_renew_ok = 0.0
        self._view = None              # (monotonic, SentinelView) of the last Sentinel query
        self._quarantine_logged = 0    # the end (server ms) of the last quarantine logged

    # --- what the main loop asks --------------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        with self._lock:
            return self.value is not None and time.monotonic() < self._deadline

    def can_send(self) -> bool:
        """The fencing check, called immediately before order_send: held, not expired locally, old holder waited out."""
        now = time.monotonic()
        with self._lock:
            return self.value is not None and self._ready_at <= now < self._deadline

    def remaining(self) -> float:
        with self._lock:
            return self._deadline - time.monotonic() if self.value else 0.0

    def ready_in(self) -> float:
        with self._lock:
            return max(0.0, self._ready_at - time.monotonic())

    # --- Redis operations ---------------------------------------------------------------------------------------
    def _node(self) -> str:
        """This link's Redis node as the lease scripts record it (``"<host>:<port>"``; "" when not connected)."""
        address = self.link.address
        return f"{address[0]}:{address[1]}" if address else ""

    def _quarantined(self, now_ms: int, until_ms: int) -> None:
        """The node we write to was promoted since the lease was last written (see NODE_CHECK): logged once per
        quarantine (event ``lease_quarantine``: the node, the server ms it ends, seconds left)."""
        if self._quarantine_logged != until_ms:
            self._quarantine_logged = until_ms
            self.emit("lease_quarantine", node=self._node(), until_ms=until_ms,
                      wait_s=round(max(0, until_ms - now_ms) / 1000.0, 3))

    def try_acquire(self) -> Acquisition | None:
        ttl_ms = int(self.config.lease_ttl_s * 1000)
        start = time.monotonic()
        res = self.link.run(lambda r: r.eval(ACQUIRE, 6, *self.keys, self.config.instance, ttl_ms, self._node()))
        if int(res[0]) == 2:
            self._quarantined(int(res[2]), int(res[3]))
            return None
        if int(res[0]) != 1:
            return None
        value, now_ms, last_ms, previous = str(res[1]), int(res[2]), int(res[3]), str(res[4] or "")
        released = str(res[5] or "")
        wait_s = 0.0
        if previous and previous != value:
            if released == "exit":
                # its supervisor reaped it (it cannot send any more) and released for it: only a request it wrote
                # before it died may still be on its way to the broker
                wait_s = self.config.exit_flight_s
            elif released != "clean":
                # the previous holder stopped sending send_flight_s before its last renewal + ttl (its own margin),
                # so its last request has reached the broker by the time the lease lapses (server clock)
                wait_s = max(0.0, (last_ms + ttl_ms - now_ms) / 1000.0)
        with self._lock:
            self.value = value
            self.token = parse_lease(value)[1]
            self._deadline = start + self._sending_window()
            self._ready_at = time.monotonic() + wait_s
            self.acquired_count += 1
        self.last_renew_ok = start
        self._record_value(value)
        self.emit("lease_acquired", token=self.token, value=value, previous=previous, released=released or None,
                  wait_s=round(wait_s, 3))
        self.changed.set()
        return Acquisition(value, self.token, previous, wait_s)

    def renew(self) -> bool:
        value = self.value
        if value is None:
            return False
        ttl_ms = int(self.config.lease_ttl_s * 1000)
        start = time.monotonic()
        res = self.link.run(lambda r: r.eval(RENEW, 5, *self.keys[:4], self.keys[5], value, ttl_ms, self._node()))
        status = int(res[0])
        if status in (1, 2):
            with self._lock:
                if self.value == value:
                    self._deadline = start + self._sending_window()
            self.last_renew_ok = start
            # ENG-1's heartbeat, one line per renewal written to Redis (issue 19 times them: start = mono - took_s)
            self.emit("heartbeat", token=self.token, took_s=round(time.monotonic() - start, 4))
            return True
        if status == 3:
            # our lease lapsed and the node we renew on was promoted since: a holder may be on the old primary
            self._quarantined(int(time.time() * 1000), int(res[1]))
            self._lose("the lease lapsed across a Redis failover: the promoted primary is quarantined for a TTL")
            return False
        self._lose("taken by another instance")
        return False

    def _lose(self, why: str) -> None:
        with self._lock:
            if self.value is None:
                return
            old, self.value = self.value, None
            self._deadline = 0.0
        self.emit("lease_lost", value=old, reason=why)
        self.changed.set()

    def _sending_window(self) -> float:
        """Seconds after a renewal's start during which this holder may send: the TTL less the clock-rate margin
        and less the time a request needs to reach the broker, so the last one has arrived when the key lapses."""
        return self.config.lease_ttl_s - self.config.lease_safety_margin_s - self.config.send_flight_s

    def _record_value(self, value: str) -> None:
        """The lease value, for the supervisor that releases it after this process exits (``handoff``)."""
        if self.value_file is None:
            return
        try:
            tmp = self.value_file.with_name(self.value_file.name + ".tmp")
            tmp.write_text(value)
            os.replace(tmp, self.value_file)
        except OSError as exc:
            self.emit("lease_file_error", error=str(exc))

    def fenced_out(self, why: str) -> None:
        """Redis refused a write of ours because a newer token exists: we hold nothing any more, whatever our
        last renewal said. The heartbeat thread then only tries to acquire again."""
        self._lose(why)

    def release(self) -> None:
        """Give the lease up on a clean stop; the successor need not wait, as nothing is in flight any more."""
        value = self.value
        if value is None:
            return
        self._lose("released on shutdown")
        try:
            self.link.run(lambda r: r.eval(RELEASE, 3, self.keys[0], self.keys[2], self.keys[4], value, "clean"))
        except RedisUnavailable:
            pass

    # --- heartbeat thread ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def _sentinel_view(self, max_age_s: float):
        """The Sentinels' view (``RedisLink.sentinel_view``), reused for ``max_age_s`` while it stays confirmed."""
        now = time.monotonic()
        cached = self._view
        if cached is not None and cached[1].confirmed and not cached[1].doubt and now - cached[0] < max_age_s \
                and cached[1].current == self.link.address:
            return cached[1]
        view = self.link.sentinel_view()
        self._view = (now, view)
        return view

    def run(self) -> None:
        redis_down_logged = False
        unconfirmed_logged = False
        confirm = bool(self.config.lease_confirm_primary and self.config.sentinels)
        while not self._stop.is_set():
            interval = self.config.heartbeat_s
            started = time.monotonic()
            try:
                view = None
                if confirm:
                    # the passive polls every 50 ms: it reuses a confirmed view for primary_check_s
                    view = self._sentinel_view(0.0 if self.value is not None else self.config.primary_check_s)
                    moved = (self.link.address, view.primary) if (
                        view.primary is not None and self.link.address is not None
                        and view.primary != self.link.address) else None
                else:
                    moved = self.link.primary_moved()
                if moved is not None:   # renew on the new primary, not on the demoted one (issue 12)
                    self.emit("lease_redis_primary_changed", old=list(moved[0]), new=list(moved[1]),
                              seen="sentinels")
                    self.link.mark_broken()
                    self.link.ensure(force=True)
                    self.link.take_reconnect_move()   # the same change, already logged
                    self._view = None
                if self.link.address is None:
                    self.link.ensure()
                quiet = self.link.take_reconnect_move()
                if quiet is not None:   # a reconnect after an error landed on another primary
                    self.emit("lease_redis_primary_changed", old=list(quiet[0]), new=list(quiet[1]),
                              seen="reconnect")
                confirmed = view is None or (view.primary is not None and view.primary == self.link.address
                                             and not view.doubt)
                if not confirmed:
                    # no majority of the Sentinels names the node we would renew on: an isolated old primary
                    # would still accept the renewal (issue 12); or Sentinels are replacing it right now (a
                    # partition healed during their failover, issue 16). Neither renew nor acquire; lose at the
                    # deadline.
                    if not unconfirmed_logged:
                        why = view.describe() + (f"; being replaced: {view.doubt}" if view.doubt else "")
                        self.emit("lease_primary_unconfirmed", why=why,
                                  writes_to=list(self.link.address) if self.link.address else None)
                        unconfirmed_logged = True
                    if self.value is not None and time.monotonic() >= self._deadline:
                        self._lose(f"could not confirm the Redis primary with a majority of the Sentinels "
                                   f"before the deadline ({view.describe()})")
                    interval = min(interval, self.config.primary_check_s)
                elif self.value is not None:
                    unconfirmed_logged = False
                    if time.monotonic() >= self._deadline:
                        # we slept or could not renew past the deadline: only a renewal that proves nobody else
                        # took the lease makes us active again (RENEW compares the holder value)
                        self.emit("lease_deadline_passed", value=self.value)
                    self.renew()
                elif self.want_active:
                    unconfirmed_logged = False
                    if self.try_acquire() is None:
                        interval = self.config.passive_poll_s
                quiet = self.link.take_reconnect_move()
                if quiet is not None:   # the renewal or acquisition itself reconnected to another primary
                    self.emit("lease_redis_primary_changed", old=list(quiet[0]), new=list(quiet[1]),
                              seen="reconnect")
                redis_down_logged = False
            except RedisUnavailable as exc:
                if not redis_down_logged:
                    self.emit("lease_redis_unavailable", error=str(exc))
                    redis_down_logged = True
                if self.value is not None and time.monotonic() >= self._deadline:
                    self._lose("could not renew before the deadline (Redis unavailable)")
                interval = min(interval, self.config.passive_poll_s)
            except Exception as exc:  # noqa: BLE001 - the heartbeat thread must survive anything
                self.emit("lease_error", error=repr(exc))
            # start to start, not end to start: a renewal's own round trip (and a wake-up a little late) must not
            # stretch ENG-1's 1 s heartbeat; due HEARTBEAT_SLACK_S early so the measured interval stays within it
            renewing = self.value is not None and interval == self.config.heartbeat_s > HEARTBEAT_SLACK_S
            due = started + interval - (HEARTBEAT_SLACK_S if renewing else 0.0)
            self._stop.wait(max(0.0, due - time.monotonic()))
