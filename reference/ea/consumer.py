"""The tick consumer library (EA-2, BR-3, PERF-1): what TradingView's side, the backend and the tests read ticks with.

It listens on both paths of an EA (``reference.ea.streamer``) at once and hands the application each sequence number
of the stream at most once and in increasing order, from whichever path brought it first:

- UDP (primary): the consumer sends a SUBSCRIBE datagram to ``udp_target`` (the EA, or a proxy in front of it) every
  ``subscribe_every_s``, and every ``subscribe_down_every_s`` while UDP is silent (a restarted EA knows no one); ticks come back to its UDP socket (``bind_host``).
- TCP (backup): one connection to ``tcp_target``, leaving from ``bind_host`` like UDP (a fault can cut both). It carries every tick too, so a tick lost on UDP is served from TCP
  as soon as it arrives there (EA-2: within 100 ms, our target 50 ms). UDP silent for ``udp_silence_ms`` (the EA
  heartbeats every 5 ms) is logged as ``udp_lost``; the next UDP frame as ``udp_recovered`` (back to UDP).
- A missing seq (a later one, or a heartbeat naming a later one, arrived) waits at most ``gap_hold_ms`` for the other
  path; then it is reported as a gap (with its reason) and never delivered later: no out-of-order tick.
- TCP silent ``tcp_silence_ms`` (a cut that drops packets leaves the socket open) counts as disconnected.
- TCP reconnects (EA-2): the first attempt at once, then every ``tcp_retry_s`` (2 s) from the start of the previous
  attempt, at most ``tcp_attempts`` (10) per outage; then ``alert`` ``tcp_gave_up`` and TCP stops. A connection
  that ends in a bad frame (another wire version, garbage, a bad length) is a failed attempt of the outage
  (recorded as a second ``tcp_attempt`` row of the same ``n`` with ``ok`` false and ``bad_frame``). UDP silent while
  TCP is down: ``alert`` ``both_down`` (EA-2: both down, stop streaming and alert).
- After a TCP (re)connect the EA sends the latest tick of each symbol (snapshot): anything older still missing is a
  gap (reason ``reconnect``), never filled with stale ticks (BR-3). A new EA stream id (the EA restarted) starts
  clean (reason ``restart``).
- UDP is taken only from the address the consumer subscribed to (``udp_target``: the EA, or the proxy in front of
  it); a datagram from anywhere else is refused. A new stream id over UDP is believed only when TCP carries it (a
  TCP connection is to the EA's own address: nobody can inject into it blind) or when it answers our subscription:
  the current stream has been silent on both paths for ``udp_silence_ms`` and a SUBSCRIBE was sent since (a
  restarted EA knows no one until it hears one). Such a stream stays provisional until TCP carries it: a later TCP
  connection that carries the retired stream again switches back (a forged stream cannot stop the consumer for
  good). Refused datagrams are counted (``udp_refused``: ``foreign_source``, ``unconfirmed_stream``, and ``garbage``:
  not a valid frame, with the decoder's sentence) and logged at
  most one line per ``log_every_s``; ``foreign_alert_count`` of them within ``foreign_alert_window_s`` raise
  ``alert`` ``udp_foreign`` (at most once per ``foreign_alert_every_s``).
- The latest delivered tick per symbol is kept in Redis (``latest_key``) when ``redis`` is given, written from its
  own thread every ``redis_flush_ms`` (TV 1: Redis holds state, resync when TCP recovers).

Record (``history_path``, JSONL, one object a line, times ``*_ns`` from ``time.time_ns()``):
``{"t": "tick", "seq", "stream", "symbol", "time_msc", "sent_ns", "recv_ns", "deliver_ns", "path": "udp"|"tcp"}``
(``"snapshot": true`` on the latest-tick replay after a TCP connect),
``{"t": "gap", "from", "to", "reason": "timeout"|"reconnect"|"restart", "wall_ns"}``, ``udp_lost``
(``last_udp_ns``), ``udp_recovered``, ``tcp_connected``, ``tcp_disconnected``, ``tcp_attempt`` (``n``, ``ok``),
``alert`` (``what``, ``message``), ``stream`` (``stream``), ``udp_refused`` (counts since the last such row, the
last source; rate-limited like the log line), ``start``/``stop`` (counters). ``scenarios.ticks`` judges it.

Why our own instead of a library: no Python library merges a UDP and a TCP copy of one sequenced stream (ZeroMQ's
PGM/NORM do reliable multicast, not "first copy of two transports"); the merge is a reorder buffer of ~50 lines.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reference.ea import wire

log = logging.getLogger("tradedrill.ea.consumer")


@dataclass
class ConsumerConfig:
    """Where to read and how patient to be. Addresses are (host, port); times in the unit their name says."""

    udp_target: tuple[str, int]
    tcp_target: tuple[str, int]
    consumer_id: str = "consumer-1"
    bind_host: str = "127.0.0.1"
    udp_port: int = 0
    subscribe_every_s: float = 0.25
    subscribe_down_every_s: float = 0.02  # while UDP is silent: a restarted EA hears from us within 20 ms (EA-1)
    udp_silence_ms: float = 25.0  # 5 heartbeats missed (EA-2 detection, well inside 100 ms)
    gap_hold_ms: float = 50.0  # EA-2 our target: a missing tick waits at most 50 ms for the other path
    tcp_retry_s: float = 2.0  # EA-2: TCP reconnect every 2 s
    tcp_attempts: int = 10  # EA-2: 10 attempts, then alert
    tcp_connect_timeout_s: float = 1.0
    tcp_silence_ms: float = 250.0  # 50 heartbeats missed: a cut that drops packets leaves the socket open, silent
    history_path: str | None = None
    redis: dict[str, Any] | None = None  # {"host", "port", "username", "password"}
    key_prefix: str = "tradedrill"
    ea_instance: str = "ea-1"
    redis_flush_ms: float = 50.0
    monitor_ms: float = 2.0
    log_every_s: float = 1.0  # refused datagrams: at most one log line (and one record row) per this many seconds
    foreign_alert_count: int = 20  # refused datagrams within foreign_alert_window_s that raise alert udp_foreign
    foreign_alert_window_s: float = 1.0
    foreign_alert_every_s: float = 60.0


def latest_key(prefix: str, ea_instance: str, consumer_id: str) -> str:
    """The Redis hash of the latest tick per symbol this consumer delivered (field symbol -> JSON)."""
    return f"{prefix}:ea:{ea_instance}:latest:{consumer_id}"


class TickConsumer:
    """Reads one EA's stream on both paths. ``on_tick(tick: wire.Tick, path: str)`` runs in the delivering thread,
    in seq order, once per seq; keep it short. ``alert(what, message)`` is called for ``tcp_gave_up`` and
    ``both_down``. Use ``start()``/``stop()`` or ``with``. Raises OSError from ``start`` if the UDP port is taken."""

    def __init__(self, cfg: ConsumerConfig, on_tick: Callable[[wire.Tick, str], None] | None = None,
                 alert: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.on_tick = on_tick or (lambda tick, path: None)
        self.alert_cb = alert or (lambda what, message: None)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._hist = open(cfg.history_path, "a") if cfg.history_path else None
        self.stream: int | None = None
        self._retired: set[int] = set()
        self.next_seq: int | None = None
        self.known_max = 0
        self._pending: dict[int, tuple[wire.Tick, str, int]] = {}
        self._hole_since: float | None = None
        self.latest: dict[str, wire.Tick] = {}
        self._latest_dirty = False
        self.delivered = 0
        self.dropped = {"udp": 0, "tcp": 0}
        self.gaps: list[tuple[int, int, str]] = []
        self.alerts: list[str] = []
        self.udp_up = False
        self._last_udp = 0.0
        self._last_udp_ns = 0
        self.tcp_connected = False
        self.tcp_gave_up = False
        self._both_down_alerted = False
        self._next_subscribe = 0.0
        self._last_current = 0.0  # monotonic: the last frame of the current stream, either path
        self._last_subscribe = 0.0  # monotonic: the last SUBSCRIBE sent
        self._provisional = False  # the current stream was believed from UDP and TCP has not carried it yet
        self._tcp_conn = 0  # TCP connections made so far (a frame's connection number)
        self._retired_at: dict[int, int] = {}  # retired stream -> the TCP connection number when it was retired
        self.udp_refused: dict[str, int] = {"foreign_source": 0, "unconfirmed_stream": 0, "garbage": 0}
        self._refused_pending: dict[str, int] = {}
        self._refused_last_src = ""
        self._refused_logged = 0.0
        self._foreign_times: list[float] = []
        self._foreign_alerted = float("-inf")
        self._udp_peer: tuple[str, int] | None = None
        self.udp: socket.socket | None = None
        self._tcp_sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._record_lock = threading.Lock()   # one whole line at a time (see _record)

    # -- record ---------------------------------------------------------------------------------------------------
    def _record(self, t: str, **fields: Any) -> None:
        """One line of the record, whole: the UDP, TCP and watchdog threads all write it (CI once read a torn line
        when two wrote at once), so each line is written under its own lock, and never after stop() closed it."""
        line = json.dumps({"t": t, "consumer": self.cfg.consumer_id, **fields}) + "\n"
        with self._record_lock:
            if self._hist is not None:
                self._hist.write(line)

    def _alert(self, what: str, message: str) -> None:
        self.alerts.append(what)
        self._record("alert", what=what, message=message, wall_ns=time.time_ns())
        try:
            self.alert_cb(what, message)
        except Exception:  # noqa: BLE001 - the application's handler must not stop the stream
            pass

    # -- the merge: first copy of each seq, in order ------------------------------------------------------------
    def _deliver(self, tick: wire.Tick, path: str, recv_ns: int) -> None:
        deliver_ns = time.time_ns()
        self.next_seq = tick.seq + 1
        self.delivered += 1
        self.latest[tick.symbol] = tick
        self._latest_dirty = True
        extra = {"snapshot": True} if tick.snapshot else {}  # a replay on (re)connect: its sent_ns is the original
        self._record("tick", seq=tick.seq, stream=str(tick.stream), symbol=tick.symbol, time_msc=tick.time_msc,
                     sent_ns=tick.sent_ns, recv_ns=recv_ns, deliver_ns=deliver_ns, path=path, **extra)
        try:
            self.on_tick(tick, path)
        except Exception:  # noqa: BLE001 - the application's handler must not stop the stream
            pass

    def _gap(self, first: int, last: int, reason: str) -> None:
        if last < first:
            return
        self.gaps.append((first, last, reason))
        self._record("gap", stream=str(self.stream), **{"from": first, "to": last}, reason=reason,
                     wall_ns=time.time_ns())

    def _drain(self) -> None:
        moved = False
        while self.next_seq in self._pending:
            tick, path, recv_ns = self._pending.pop(self.next_seq)
            self._deliver(tick, path, recv_ns)
            moved = True
        if not self._has_hole():
            self._hole_since = None
        elif moved or self._hole_since is None:  # a new hole waits from now; an old one keeps its start
            self._hole_since = time.monotonic()

    def _has_hole(self) -> bool:
        return self.next_seq is not None and (bool(self._pending) or self.known_max >= self.next_seq)

    def _new_stream(self, stream: int) -> None:
        # the first stream this consumer sees starts where it joined; a later one (the EA restarted) at seq 1, so
        # what it sent before we heard from it is a gap; a stream we retired that comes back (TCP overruled a
        # stream believed from UDP) resumes where it is now
        self.next_seq = None if self.stream is None or stream in self._retired else 1
        if self.stream is not None:
            self._retired.add(self.stream)
            self._retired_at[self.stream] = self._tcp_conn
        self._retired.discard(stream)
        self.stream = stream
        self.known_max = 0
        self._pending.clear()
        self._hole_since = None
        self._record("stream", stream=str(stream), wall_ns=time.time_ns())

    def _stream_believed(self, stream: int, path: str, conn: int | None) -> bool:
        """May a frame of ``stream`` (not the current one) on ``path`` make it the current stream?"""
        if path == "tcp":
            if stream not in self._retired:
                return True
            # a stream retired while the current one was only believed from UDP, carried by a TCP connection made
            # after that: the UDP stream was not the EA's (forged); the EA's own stream comes back
            return self._provisional and conn is not None and conn > self._retired_at.get(stream, conn)
        if stream in self._retired:
            return False
        if self.stream is None:
            return True
        # the answer to our subscription: the current stream silent on both paths, a SUBSCRIBE sent since
        now = time.monotonic()
        return ((now - self._last_current) * 1000.0 >= self.cfg.udp_silence_ms
                and self._last_subscribe > self._last_current)

    def accept(self, msg: wire.Message, path: str, recv_ns: int | None = None, conn: int | None = None) -> bool:
        """Feed one decoded frame that arrived on ``path`` ("udp" | "tcp"; ``conn``: the TCP connection's number);
        thread-safe. Returns False when the frame's stream is not (and does not become) the current one. Public so
        tests can drive the merge without sockets."""
        recv_ns = recv_ns or time.time_ns()
        with self._lock:
            if isinstance(msg, wire.Subscribe):
                return False
            if msg.stream != self.stream:
                if not self._stream_believed(msg.stream, path, conn):
                    return False
                if self.stream is not None:
                    self._gap(self.next_seq or 1, self.known_max, "restart")
                self._new_stream(msg.stream)
                self._provisional = path == "udp"
            elif path == "tcp":
                self._provisional = False
            self._last_current = time.monotonic()
            if self.next_seq is None:
                self.next_seq = msg.seq + 1 if isinstance(msg, wire.Heartbeat) else msg.seq
            if isinstance(msg, wire.Heartbeat):
                if msg.seq > self.known_max:
                    self.known_max = msg.seq
                    if self._hole_since is None and self._has_hole():
                        self._hole_since = time.monotonic()
                return True
            self.known_max = max(self.known_max, msg.seq)
            if msg.snapshot and msg.seq >= self.next_seq and not self.udp_up:
                # BR-3: a reconnect starts from the latest tick; what is older and still missing is a gap (while UDP
                # flows, the snapshot is an ordinary tick: what UDP still carries fills the holes before it)
                self._gap(self.next_seq, msg.seq - 1, "reconnect")
                for seq in [s for s in self._pending if s < msg.seq]:
                    del self._pending[seq]
                self.next_seq = msg.seq
            if msg.seq < self.next_seq or msg.seq in self._pending:
                self.dropped[path] += 1
                return True
            self._pending[msg.seq] = (msg, path, recv_ns)
            self._drain()
            return True

    def _expire_holes(self) -> None:
        with self._lock:
            if self._hole_since is None or self.next_seq is None:
                return
            if (time.monotonic() - self._hole_since) * 1000.0 < self.cfg.gap_hold_ms:
                return
            upto = min(self._pending) - 1 if self._pending else self.known_max
            self._gap(self.next_seq, upto, "timeout")
            self.next_seq = upto + 1
            self._drain()

    # -- UDP ------------------------------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        self._last_subscribe = time.monotonic()
        try:
            self.udp.sendto(wire.encode_subscribe(wire.Subscribe(self.cfg.consumer_id)), tuple(self.cfg.udp_target))
        except OSError:
            pass  # the next subscribe retries

    def _udp_loop(self) -> None:
        sock = self.udp
        while not self._stop.is_set():  # until stop(); each pass waits at most 50 ms
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                continue
            self._on_datagram(data, addr, time.time_ns())

    def _on_datagram(self, data: bytes, addr, recv_ns: int) -> None:
        """One UDP datagram from ``addr``: refused (counted, rate-limited log) unless it is a valid frame of our
        EA's stream from the address we subscribed to."""
        if tuple(addr[:2]) != self._udp_peer:
            self._refuse("foreign_source", addr)
            return
        try:
            msg = wire.decode(data)
        except wire.WireError as exc:
            self._refuse("garbage", addr, str(exc))
            return
        if not self.accept(msg, "udp", recv_ns):
            self._refuse("unconfirmed_stream" if not isinstance(msg, wire.Subscribe) else "garbage", addr,
                         "a SUBSCRIBE frame (consumer -> EA only)" if isinstance(msg, wire.Subscribe) else "")
            return
        self._last_udp, self._last_udp_ns = time.monotonic(), recv_ns
        if not self.udp_up:
            with self._lock:
                self.udp_up = True
                self._both_down_alerted = False
                self._record("udp_recovered", wall_ns=recv_ns)

    def _refuse(self, why: str, addr, detail: str = "") -> None:
        """Count a refused datagram; one log line and one ``udp_refused`` row per ``log_every_s`` at most; alert
        ``udp_foreign`` when they keep coming from somewhere other than our EA."""
        now = time.monotonic()
        src = f"{addr[0]}:{addr[1]}" if addr else "?"
        with self._lock:
            self.udp_refused[why] = self.udp_refused.get(why, 0) + 1
            self._refused_pending[why] = self._refused_pending.get(why, 0) + 1
            self._refused_last_src = src + (f" ({detail})" if detail else "")
            if why in ("foreign_source", "unconfirmed_stream"):
                self._foreign_times = [t for t in self._foreign_times if now - t < self.cfg.foreign_alert_window_s]
                self._foreign_times.append(now)
                if (len(self._foreign_times) >= self.cfg.foreign_alert_count
                        and now - self._foreign_alerted >= self.cfg.foreign_alert_every_s):
                    self._foreign_alerted = now
                    self._alert("udp_foreign", f"{len(self._foreign_times)} UDP datagrams in "
                                               f"{self.cfg.foreign_alert_window_s:g} s not from our EA's stream "
                                               f"(last from {src}); refused")
            if now - self._refused_logged >= self.cfg.log_every_s:
                self._flush_refused(now)

    def _flush_refused(self, now: float) -> None:
        if not self._refused_pending:
            return
        self._refused_logged = now
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self._refused_pending.items()))
        log.warning("consumer %s refused UDP datagrams (%s; last from %s; EA %s:%s)", self.cfg.consumer_id, counts,
                    self._refused_last_src, *self.cfg.udp_target)
        self._record("udp_refused", counts=dict(self._refused_pending), last_from=self._refused_last_src,
                     wall_ns=time.time_ns())
        self._refused_pending = {}

    # -- TCP ------------------------------------------------------------------------------------------------------
    def _tcp_gave_up(self, attempt: int) -> None:
        cfg = self.cfg
        self.tcp_gave_up = True
        self._alert("tcp_gave_up", f"TCP to {cfg.tcp_target[0]}:{cfg.tcp_target[1]} failed {attempt} times, "
                                   f"{cfg.tcp_retry_s:g} s apart; TCP stopped (EA-2)")

    def _tcp_loop(self) -> None:
        cfg = self.cfg
        attempt = 0
        while not self._stop.is_set():  # until stop() or the give-up: at most tcp_attempts attempts per outage
            attempt += 1
            started = time.monotonic()
            started_ns = time.time_ns()  # the attempt's start: EA-2's cadence is between starts, not between records
            try:
                sock = socket.create_connection(tuple(cfg.tcp_target), timeout=cfg.tcp_connect_timeout_s,
                                                source_address=(cfg.bind_host, 0))
            except OSError as exc:
                self._record("tcp_attempt", n=attempt, ok=False, error=str(exc)[:120], started_ns=started_ns,
                             wall_ns=time.time_ns())
                if attempt >= cfg.tcp_attempts:
                    self._tcp_gave_up(attempt)
                    return
                self._stop.wait(max(0.0, started + cfg.tcp_retry_s - time.monotonic()))
                continue
            self._record("tcp_attempt", n=attempt, ok=True, started_ns=started_ns, wall_ns=time.time_ns())
            with self._lock:
                self._tcp_conn += 1
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.1)
            self._tcp_sock = sock
            self.tcp_connected = True
            self._record("tcp_connected", wall_ns=time.time_ns())
            reason = self._tcp_read(sock)
            self.tcp_connected = False
            self._tcp_sock = None
            sock.close()
            self._record("tcp_disconnected", reason=reason, wall_ns=time.time_ns())
            if not reason.startswith("bad frame"):
                attempt = 0  # a connection that served and ended: the next outage starts with an attempt at once
                continue
            # a connection that ends in a bad frame (another wire version, garbage, a bad length) is a failed
            # attempt of this outage: EA-2's cadence and count hold, never a reconnect loop
            self._record("tcp_attempt", n=attempt, ok=False, bad_frame=True, error=reason[:120],
                         started_ns=started_ns, wall_ns=time.time_ns())
            if attempt >= cfg.tcp_attempts:
                self._tcp_gave_up(attempt)
                return
            self._stop.wait(max(0.0, started + cfg.tcp_retry_s - time.monotonic()))

    def _tcp_read(self, sock: socket.socket) -> str:
        conn = self._tcp_conn
        reader = wire.FrameReader()
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                silent = (time.monotonic() - last) * 1000.0
                if silent >= self.cfg.tcp_silence_ms:
                    return f"silent for {silent:.0f} ms (no heartbeat)"
                continue
            except OSError as exc:
                return str(exc)[:120]
            if not data:
                return "stopped" if self._stop.is_set() else "closed by the EA"
            last = time.monotonic()
            recv_ns = time.time_ns()
            try:
                frames = reader.feed(data)
            except wire.WireError as exc:
                return f"bad frame: {exc}"
            for msg in frames:
                self.accept(msg, "tcp", recv_ns, conn=conn)
        return "stopped"

    # -- monitor: silence, holes, subscriptions, both-down ----------------------------------------------------------
    def _monitor_loop(self) -> None:
        cfg = self.cfg
        while not self._stop.wait(cfg.monitor_ms / 1000.0):  # until stop(); one pass per monitor_ms
            now = time.monotonic()
            if self.udp_up and (now - self._last_udp) * 1000.0 >= cfg.udp_silence_ms:
                with self._lock:
                    self.udp_up = False
                    self._record("udp_lost", last_udp_ns=self._last_udp_ns, wall_ns=time.time_ns())
                self._next_subscribe = 0.0  # ask again at once: a restarted EA has forgotten us
            if now >= self._next_subscribe:
                self._next_subscribe = now + (cfg.subscribe_every_s if self.udp_up else cfg.subscribe_down_every_s)
                self._subscribe()
            self._expire_holes()
            if not self.udp_up and not self.tcp_connected and self.delivered and not self._both_down_alerted:
                self._both_down_alerted = True
                self._alert("both_down", "no UDP and no TCP from the EA: streaming stopped (EA-2)")

    def _redis_loop(self) -> None:
        import redis  # redis-py, only when the consumer keeps the latest ticks in Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        r = self.cfg.redis or {}
        client = redis.Redis(host=r.get("host", "127.0.0.1"), port=int(r.get("port", 6379)),
                             username=r.get("username"), password=r.get("password"),
                             socket_timeout=0.2, socket_connect_timeout=0.2,
                             retry=Retry(NoBackoff(), 0))
        key = latest_key(self.cfg.key_prefix, self.cfg.ea_instance, self.cfg.consumer_id)
        stopping = False
        while not stopping:  # until stop() (then one last write); one write per redis_flush_ms at most
            stopping = self._stop.wait(self.cfg.redis_flush_ms / 1000.0)
            with self._lock:
                dirty, self._latest_dirty = self._latest_dirty, False
                snapshot = {s: json.dumps({"stream": str(t.stream), "seq": t.seq, "time_msc": t.time_msc,
                                           "bid": t.bid, "ask": t.ask}) for s, t in self.latest.items()}
            if dirty and snapshot:
                try:
                    client.hset(key, mapping=snapshot)
                except Exception:  # noqa: BLE001 - Redis away: the next flush writes the newest again
                    with self._lock:
                        self._latest_dirty = True
        client.close()

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> "TickConsumer":
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host, port = self.cfg.udp_target
        self._udp_peer = (socket.gethostbyname(host), int(port))  # UDP is taken from this address only
        self.udp.bind((self.cfg.bind_host, self.cfg.udp_port))
        self._record("start", udp=list(self.udp.getsockname()), wall_ns=time.time_ns())
        targets = [self._udp_loop, self._tcp_loop, self._monitor_loop]
        if self.cfg.redis:
            targets.append(self._redis_loop)
        for fn in targets:
            th = threading.Thread(target=fn, name=f"consumer-{fn.__name__}", daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> None:
        """Stop every thread (each waits at most ~0.2 s), close the sockets, flush the record."""
        self._stop.set()
        sock = self._tcp_sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for th in self._threads:
            th.join(timeout=3)
        if self.udp is not None:
            self.udp.close()
        with self._lock:
            self._flush_refused(time.monotonic())
            self._record("stop", delivered=self.delivered, dropped=self.dropped, gaps=len(self.gaps),
                         udp_refused=self.udp_refused, wall_ns=time.time_ns())
            with self._record_lock:
                if self._hist is not None:
                    self._hist.close()
                    self._hist = None

    def flush(self) -> None:
        with self._record_lock:
            if self._hist is not None:
                self._hist.flush()

    @property
    def udp_address(self) -> tuple[str, int]:
        return self.udp.getsockname() if self.udp else (self.cfg.bind_host, 0)

    def __enter__(self) -> "TickConsumer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_latest(client, prefix: str, ea_instance: str, consumer_id: str) -> dict[str, dict]:
    """The latest tick per symbol a consumer left in Redis (resync after a restart): symbol -> dict."""
    raw = client.hgetall(latest_key(prefix, ea_instance, consumer_id))
    return {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}
