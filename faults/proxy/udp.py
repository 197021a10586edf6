"""The UDP proxy and its link (our extension; Toxiproxy is TCP only).

One datagram endpoint listens; each client address gets its own connected upstream endpoint, so replies find
their way back (a "flow", closed after ``FLOW_IDLE`` seconds without traffic). Each datagram passes the toxic
chain of its direction: loss and blackhole drop it, duplicate delivers it twice, latency and reorder delay it
(delays are timers, so later datagrams overtake a delayed one). Every draw comes from the proxy's seeded Random.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from faults.proxy.proxy import Proxy, listen_failed
from faults.proxy.toxics import STREAMS

FLOW_IDLE = 60.0


class UdpProxy(Proxy):
    """The listening endpoint of a UDP proxy, its flows (one per client address) and datagram counters."""

    protocol = "udp"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.listener: _Listener | None = None
        self.flows: dict[tuple, _Flow] = {}
        self.datagrams = {s: 0 for s in STREAMS}
        self.dropped = {s: 0 for s in STREAMS}
        self._sweeper: asyncio.TimerHandle | None = None

    async def enable(self) -> None:
        if self.enabled:
            return
        loop = asyncio.get_running_loop()
        try:
            transport, proto = await loop.create_datagram_endpoint(lambda: _Listener(self),
                                                                   local_addr=(self.host, self.port))
        except OSError as exc:
            raise listen_failed(self.name, self.listen, exc, "udp") from None
        self.listener = proto
        self.port = transport.get_extra_info("sockname")[1]
        self.enabled = True
        self._sweeper = loop.call_later(FLOW_IDLE, self._sweep)

    async def disable(self) -> None:
        if self.listener is not None and self.listener.transport is not None:
            self.listener.transport.close()
        self.listener = None
        for flow in self.flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self.flows.clear()
        if self._sweeper:
            self._sweeper.cancel()
        self.enabled = False

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        for addr, flow in list(self.flows.items()):
            if loop.time() - flow.last > FLOW_IDLE:
                if flow.transport is not None:
                    flow.transport.close()
                del self.flows[addr]
        if self.enabled:
            self._sweeper = loop.call_later(FLOW_IDLE, self._sweep)

    def _deliver(self, stream: str, data: bytes, send: Callable[[bytes], None]) -> None:
        self.datagrams[stream] += 1
        self.bytes[stream] += len(data)
        delays = plan_delivery(self, stream) if self.has_toxics(stream) else [0.0]
        if not delays:
            self.dropped[stream] += 1
        loop = asyncio.get_running_loop()
        for delay in delays:
            if delay <= 0:
                send(data)
            else:
                loop.call_later(delay, send, data)

    def from_client(self, data: bytes, addr) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            flow = _Flow(self, addr)
            self.flows[addr] = flow
            loop = asyncio.get_running_loop()
            loop.create_task(loop.create_datagram_endpoint(lambda: flow, remote_addr=self.upstream_hostport()))
        self._deliver("upstream", data, flow.send)

    def from_upstream(self, data: bytes, flow: _Flow) -> None:
        def send(d: bytes) -> None:
            if self.listener is not None and self.listener.transport is not None:
                self.listener.transport.sendto(d, flow.client_addr)
        self._deliver("downstream", data, send)


class _Listener(asyncio.DatagramProtocol):
    """The proxy's listening endpoint: every client datagram goes to ``UdpProxy.from_client``."""

    def __init__(self, proxy: UdpProxy):
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.proxy.from_client(data, addr)

    def error_received(self, exc):
        pass


class _Flow(asyncio.DatagramProtocol):
    """One client address's connected endpoint to the upstream; replies go to ``UdpProxy.from_upstream``."""

    def __init__(self, proxy: UdpProxy, client_addr):
        self.proxy = proxy
        self.client_addr = client_addr
        self.transport: asyncio.DatagramTransport | None = None
        self.last = asyncio.get_running_loop().time()
        self.pending: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport
        for data in self.pending:
            transport.sendto(data)
        self.pending.clear()

    def datagram_received(self, data, addr):
        self.last = asyncio.get_running_loop().time()
        self.proxy.from_upstream(data, self)

    def error_received(self, exc):
        pass

    def send(self, data: bytes) -> None:
        self.last = asyncio.get_running_loop().time()
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.sendto(data)


def plan_delivery(proxy: UdpProxy, stream: str) -> list[float]:
    """Delays (seconds) of the copies of one datagram after the toxic chain: [] dropped, [0.0] as is."""
    copies = [0.0]
    rng = proxy.rng
    for toxic in proxy.toxics_for(stream):
        if not copies:
            break
        if toxic.toxicity < 1.0 and rng.random() >= toxic.toxicity:
            continue
        kind = toxic.type
        if kind in ("blackhole", "timeout"):
            copies = []
        elif kind == "loss":
            p = toxic.attr("probability")
            copies = [d for d in copies if rng.random() >= p]
        elif kind == "duplicate":
            p = toxic.attr("probability")
            copies = [x for d in copies for x in ([d, d] if rng.random() < p else [d])]
        elif kind == "latency":
            base, jitter = toxic.attr("latency"), toxic.attr("jitter")
            copies = [d + max(0.0, base + (rng.uniform(-jitter, jitter) if jitter else 0.0)) / 1000.0
                      for d in copies]
        elif kind == "reorder":
            p, hold = toxic.attr("probability"), toxic.attr("delay") or 20
            copies = [d + (hold / 1000.0 if rng.random() < p else 0.0) for d in copies]
    return copies
