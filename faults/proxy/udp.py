"""The UDP side of the proxy (our extension; Toxiproxy is TCP only).

One datagram endpoint listens; each client address gets its own connected upstream endpoint, so replies find
their way back (a "flow", closed after ``FLOW_IDLE`` seconds without traffic). Each datagram passes the toxic
chain of its direction: loss and blackhole drop it, duplicate delivers it twice, latency and reorder delay it
(delays are timers, so later datagrams overtake a delayed one). Every draw comes from the proxy's seeded Random.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faults.proxy.server import UdpProxy

FLOW_IDLE = 60.0


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: "UdpProxy"):
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.proxy.from_client(data, addr)

    def error_received(self, exc):
        pass


class _Flow(asyncio.DatagramProtocol):
    def __init__(self, proxy: "UdpProxy", client_addr):
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


def plan_delivery(proxy: "UdpProxy", stream: str) -> list[float]:
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
