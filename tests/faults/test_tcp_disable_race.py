"""A connection the TCP proxy's listener accepted just before ``disable`` (the link "down" fault) whose
``connection_made`` ran after it: ``disable`` closed the connections it knew, not this one, which then opened its
upstream and stayed up. Seen in CI with two test workers: tests/faults/test_link_faults.py's client waited 2 s for
the close of its connection and timed out. Here the order is forced, without a socket: accept, disable, then the
callback."""
from __future__ import annotations

import asyncio

from faults.proxy.tcp import ClientSide, TcpProxy


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.closed = self.paused = False

    def close(self):
        self.closed = True

    def pause_reading(self):
        self.paused = True

    def get_extra_info(self, name, default=None):
        return default


def test_a_connection_accepted_before_a_disable_is_closed_when_its_callback_runs():
    async def scenario():
        proxy = TcpProxy("echo", "127.0.4.70:0", "127.0.4.71:9")
        await proxy.enable()
        try:
            accepted = ClientSide(proxy)          # the listener's factory ran (the connection was accepted) ...
            await proxy.disable()                 # ... the link went down ...
            transport = FakeTransport()
            accepted.connection_made(transport)   # ... and only now its callback: closed, never started
            assert transport.closed and not transport.paused
            assert accepted.conn not in proxy.connections and accepted.conn._connect_task is None
            await proxy.enable()                  # healed: a new connection starts as before
            fresh = ClientSide(proxy)
            transport = FakeTransport()
            fresh.connection_made(transport)
            assert not transport.closed and fresh.conn in proxy.connections
            fresh.conn.close()
        finally:
            await proxy.disable()
    asyncio.run(scenario())
