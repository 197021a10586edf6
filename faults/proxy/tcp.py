"""The TCP proxy and its link: a listener per proxy, two pipes per connection, a toxic chain per pipe.

With no toxic on a pipe, bytes go straight from ``data_received`` to the other transport (the fast path that
keeps the added latency in tens of microseconds); with toxics, chunks queue with their arrival time and a worker
task passes each through the chain (latency waits until arrival + delay, so chunks stay pipelined). Flow control:
a full destination buffer or a long queue pauses reading on the source.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import struct
from typing import Awaitable, Callable

from faults.proxy.proxy import Proxy, listen_failed
from faults.proxy.toxics import Toxic

QUEUE_HIGH = 1 << 20


class TcpProxy(Proxy):
    """The listener of a TCP proxy and its open connections."""

    protocol = "tcp"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.listener: asyncio.base_events.Server | None = None
        self.connections: set[Connection] = set()
        self.accepted = 0
        self.generation = 0   # +1 at every disable: a connection its listener accepted before then is refused

    async def enable(self) -> None:
        if self.enabled:
            return
        loop = asyncio.get_running_loop()

        def factory():
            self.accepted += 1
            return ClientSide(self)

        try:
            self.listener = await loop.create_server(factory, self.host, self.port, reuse_address=True,
                                                     backlog=1024)
        except OSError as exc:
            raise listen_failed(self.name, self.listen, exc, "tcp") from None
        self.port = self.listener.sockets[0].getsockname()[1]
        self.enabled = True

    async def disable(self) -> None:
        self.generation += 1
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for conn in list(self.connections):
            conn.close()
        self.enabled = False

    def on_toxic_added(self, toxic: Toxic) -> None:
        for conn in list(self.connections):
            conn.toxic_added(toxic)

    def on_toxic_removed(self, toxic: Toxic) -> None:
        for conn in list(self.connections):
            conn.toxic_removed(toxic)
            for pipe in (conn.up, conn.down):
                pipe.kick()


class _Side(asyncio.Protocol):
    """One socket of a connection; ``incoming`` is the pipe its bytes enter, ``outgoing`` the pipe that writes
    to it."""

    def __init__(self, conn: "Connection", incoming: str):
        self.conn = conn
        self.incoming_name = incoming
        self.transport: asyncio.Transport | None = None

    @property
    def incoming(self) -> "Pipe":
        return self.conn.up if self.incoming_name == "upstream" else self.conn.down

    @property
    def outgoing(self) -> "Pipe":
        return self.conn.down if self.incoming_name == "upstream" else self.conn.up

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.incoming.feed(data)

    def eof_received(self):
        self.incoming.feed_eof()
        return True

    def connection_lost(self, exc):
        self.conn.lost(self)

    def pause_writing(self):
        self.outgoing.dst_full(True)

    def resume_writing(self):
        self.outgoing.dst_full(False)


class ClientSide(_Side):
    def __init__(self, proxy: TcpProxy):
        self.proxy = proxy
        self.generation = proxy.generation   # the listener that accepted it
        super().__init__(Connection(proxy), "upstream")
        self.conn.client = self

    def connection_made(self, transport):
        super().connection_made(transport)
        if not self.proxy.enabled or self.generation != self.proxy.generation:
            # accepted by a listener that was closed before this callback ran: `disable` closed the connections it
            # knew, not this one, which then stayed open to the upstream (CI under load: a link "down" left a
            # client's connection open; tests/faults/test_link_faults.py)
            self.conn.closed = True
            transport.close()
            return
        transport.pause_reading()
        self.conn.start()


class Pipe:
    """One direction of one connection: ``upstream`` is client to server, ``downstream`` server to client."""

    def __init__(self, conn: "Connection", stream: str):
        self.conn = conn
        self.stream = stream
        self.queue: collections.deque = collections.deque()
        self.queued = 0
        self.worker: asyncio.Task | None = None
        self.src_paused_queue = False
        self.src_paused_dst = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.state: dict[int, dict] = {}
        self.eof_done = False

    def src(self) -> asyncio.Transport | None:
        side = self.conn.client if self.stream == "upstream" else self.conn.upstream
        return side.transport if side else None

    def dst(self) -> asyncio.Transport | None:
        side = self.conn.upstream if self.stream == "upstream" else self.conn.client
        return side.transport if side else None

    def toxics(self) -> list[Toxic]:
        conn = self.conn
        return [t for t in conn.proxy.toxics_for(self.stream) if conn.applies(t)]

    # -- input --------------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.conn.proxy.count(self.stream, len(data))
        if self.worker is None and not self.queue and not self.conn.proxy.has_toxics(self.stream):
            dst = self.dst()
            if dst is not None:
                dst.write(data)
            return
        self.queue.append((self.conn.loop.time(), data))
        self.queued += len(data)
        if self.queued > QUEUE_HIGH and not self.src_paused_queue:
            self.src_paused_queue = True
            self._update_src()
        self.kick()

    def feed_eof(self) -> None:
        if self.worker is None and not self.queue and not self.conn.proxy.has_toxics(self.stream):
            self._write_eof()
            return
        self.queue.append((self.conn.loop.time(), None))
        self.kick()

    def kick(self) -> None:
        if self.worker is None and self.queue and not self.conn.closed:
            self.worker = self.conn.loop.create_task(self._run())

    def dst_full(self, full: bool) -> None:
        self.src_paused_dst = full
        if full:
            self.writable.clear()
        else:
            self.writable.set()
        self._update_src()

    def _update_src(self) -> None:
        src = self.src()
        if src is None or src.is_closing():
            return
        if self.src_paused_dst or self.src_paused_queue:
            src.pause_reading()
        elif self.conn.started:
            src.resume_reading()

    # -- output -------------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while self.queue and not self.conn.closed:
                arrival, data = self.queue.popleft()
                if data is not None:
                    self.queued -= len(data)
                    if self.src_paused_queue and self.queued < QUEUE_HIGH // 2:
                        self.src_paused_queue = False
                        self._update_src()
                toxics = self.toxics()
                if data is None:
                    for toxic in toxics:
                        if toxic.type == "slow_close":
                            await self.sleep_toxic(toxic, toxic.attr("delay") / 1000.0)
                    self._write_eof()
                else:
                    await self._chain(toxics, 0, arrival, data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.worker = None
        if self.queue and not self.conn.closed:
            self.kick()

    async def _chain(self, toxics: list[Toxic], i: int, arrival: float, data: bytes) -> None:
        if i == len(toxics):
            await self._write(data)
            return
        toxic = toxics[i]
        emit: Callable[[bytes], Awaitable[None]] = lambda d: self._chain(toxics, i + 1, arrival, d)  # noqa: E731
        await apply_tcp_toxic(self, toxic, arrival, data, emit)

    async def _write(self, data: bytes) -> None:
        dst = self.dst()
        if dst is None or dst.is_closing():
            return
        dst.write(data)
        if not self.writable.is_set():
            await self.writable.wait()

    def _write_eof(self) -> None:
        self.eof_done = True
        dst = self.dst()
        if dst is not None and not dst.is_closing():
            if dst.can_write_eof():
                dst.write_eof()
            else:
                dst.close()
        self.conn.maybe_finish()

    async def sleep_toxic(self, toxic: Toxic, seconds: float) -> None:
        """Sleep ``seconds`` unless the toxic is removed first (then the data goes on at once)."""
        if seconds <= 0:
            return
        loop = self.conn.loop
        deadline = loop.time() + seconds
        proxy = self.conn.proxy
        while proxy.has_toxic_uid(toxic.uid) and not self.conn.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            changed = proxy.changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                return


async def apply_tcp_toxic(pipe: Pipe, toxic: Toxic, arrival: float, data: bytes,
                          emit: Callable[[bytes], Awaitable[None]]) -> None:
    kind = toxic.type
    conn = pipe.conn
    if kind == "latency":
        jitter = toxic.attr("jitter")
        delay = toxic.attr("latency")
        if jitter:
            delay += conn.proxy.rng.uniform(-jitter, jitter)
        wait = arrival + max(0.0, delay) / 1000.0 - conn.loop.time()
        await pipe.sleep_toxic(toxic, wait)
        await emit(data)
    elif kind == "bandwidth":
        rate = toxic.attr("rate") * 1000.0  # bytes per second (Toxiproxy's KB is 1000 bytes)
        if rate <= 0:
            await emit(data)
            return
        step = max(1, int(rate / 10))  # release at most 100 ms worth at a time
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            await pipe.sleep_toxic(toxic, len(piece) / rate)
            await emit(piece)
    elif kind == "slicer":
        avg = int(toxic.attr("average_size")) or len(data)
        var = int(toxic.attr("size_variation"))
        delay = toxic.attr("delay") / 1e6
        pos = 0
        for _ in range(len(data) + 1):
            if pos >= len(data):
                break
            size = avg + (conn.proxy.rng.randint(-var, var) if var else 0)
            size = max(1, size)
            await emit(data[pos:pos + size])
            pos += size
            if pos < len(data) and delay:
                await pipe.sleep_toxic(toxic, delay)
    elif kind == "limit_data":
        st = pipe.state.setdefault(toxic.uid, {"passed": 0})
        limit = int(toxic.attr("bytes"))
        room = limit - st["passed"]
        if room > 0:
            piece = data[:room]
            st["passed"] += len(piece)
            await emit(piece)
        if st["passed"] >= limit:
            conn.close()
    elif kind == "timeout":
        return  # the data is dropped; the connection-level timer (if any) closes the connection
    elif kind == "reset_peer":
        await emit(data)  # bytes pass until the reset timer fires
    else:  # noop, slow_close (acts on EOF)
        await emit(data)


class Connection:
    def __init__(self, proxy: TcpProxy):
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client: ClientSide | None = None
        self.upstream: _Side | None = None
        self.up = Pipe(self, "upstream")
        self.down = Pipe(self, "downstream")
        self.closed = False
        self.started = False
        self._draws: dict[int, bool] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._connect_task: asyncio.Task | None = None

    def applies(self, toxic: Toxic) -> bool:
        hit = self._draws.get(toxic.uid)
        if hit is None:
            hit = toxic.toxicity >= 1.0 or (toxic.toxicity > 0 and self.proxy.rng.random() < toxic.toxicity)
            self._draws[toxic.uid] = hit
        return hit

    def start(self) -> None:
        self.proxy.connections.add(self)
        for toxic in self.proxy.all_toxics():
            self.toxic_added(toxic)
        self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream_hostport()
        try:
            _, side = await self.loop.create_connection(lambda: _Side(self, "downstream"), host, port)
        except (OSError, asyncio.CancelledError):
            self.close()
            return
        if self.closed:
            side.transport.close()
            return
        self.upstream = side
        self.started = True
        self.up._update_src()
        self.down._update_src()
        self.up.kick()

    # -- connection-level toxics ---------------------------------------------------------------------------------
    def toxic_added(self, toxic: Toxic) -> None:
        if toxic.type not in ("timeout", "reset_peer") or not self.applies(toxic):
            return
        ms = toxic.attr("timeout")
        if toxic.type == "timeout" and ms <= 0:
            return  # blackhole: data dropped until removed, the connection stays open
        action = self.close if toxic.type == "timeout" else self.reset
        self._timers[toxic.uid] = self.loop.call_later(ms / 1000.0, action)

    def toxic_removed(self, toxic: Toxic) -> None:
        timer = self._timers.pop(toxic.uid, None)
        if timer:
            timer.cancel()
        self._draws.pop(toxic.uid, None)
        self.up.state.pop(toxic.uid, None)
        self.down.state.pop(toxic.uid, None)

    # -- ending -------------------------------------------------------------------------------------------------
    def maybe_finish(self) -> None:
        if self.up.eof_done and self.down.eof_done:
            self.close()

    def lost(self, side: _Side) -> None:
        # one socket is gone: the other side is closed once its queued bytes are written (transport.close flushes)
        if side is self.client or side is self.upstream:
            self.close()

    def _sides(self):
        return [s for s in (self.client, self.upstream) if s is not None and s.transport is not None]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._end()
        for side in self._sides():
            side.transport.close()

    def reset(self) -> None:
        """Close both sockets with an RST (SO_LINGER 0), as Toxiproxy's reset_peer does."""
        if self.closed:
            return
        self.closed = True
        self._end()
        for side in self._sides():
            sock = side.transport.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            side.transport.abort()

    def _end(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for pipe in (self.up, self.down):
            if pipe.worker is not None:
                pipe.worker.cancel()
            pipe.writable.set()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        self.proxy.connections.discard(self)

