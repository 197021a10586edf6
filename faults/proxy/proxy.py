"""One proxy, whatever its protocol: its listen and upstream addresses, its toxics indexed per stream, its byte
counters and its seeded Random (the part of Toxiproxy's proxy.go and toxic_collection.go that is not the listener).

TcpProxy (faults/proxy/tcp.py) and UdpProxy (faults/proxy/udp.py) add the listener and the link; the server
(faults/proxy/server.py) holds the collection of proxies and the HTTP API.
"""
from __future__ import annotations

import asyncio
import errno
import random

from faults.proxy.toxics import STREAMS, Toxic, build_toxic


def split_hostport(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address!r} must be host:port")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    return host, int(port)


class ApiError(Exception):
    """An API error: the server answers ``{"error": str(exc), "status": exc.status}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def listen_failed(name: str, listen: str, exc: OSError, protocol: str = "tcp") -> ApiError:
    """The API error of a listener that cannot bind: 409 when the address is in use, 400 otherwise (Toxiproxy
    answers 500 for both: it is the request's listen address, not the server, that is wrong)."""
    status = 409 if exc.errno == errno.EADDRINUSE else 400
    return ApiError(status, f"proxy {name}: cannot listen on {protocol} {listen}: {exc.strerror or exc}; choose "
                            f"another listen address (port 0 picks a free one) (Toxiproxy answers 500 here)")


class Proxy:
    """The protocol-neutral state of a proxy; subclasses implement ``enable``/``disable`` and the toxic hooks."""

    protocol = "tcp"

    def __init__(self, name: str, listen: str, upstream: str, seed=None, server_seed: int | str = 0):
        self.name = name
        self.host, self.port = split_hostport(listen)
        self.upstream = upstream
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self._by_stream: dict[str, list[Toxic]] = {s: [] for s in STREAMS}
        self._uids: set[int] = set()
        self.changed = asyncio.Event()
        self.seed = seed
        self.rng = random.Random(f"{server_seed if seed is None else seed}:{name}")
        self.bytes = {s: 0 for s in STREAMS}
        self.upstream_hostport()  # validates

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    def upstream_hostport(self) -> tuple[str, int]:
        return split_hostport(self.upstream)

    def to_json(self) -> dict:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxics.values()], "protocol": self.protocol}

    async def enable(self) -> None:
        raise NotImplementedError

    async def disable(self) -> None:
        raise NotImplementedError

    # toxics ---------------------------------------------------------------------------------------------------
    def toxics_for(self, stream: str) -> list[Toxic]:
        return self._by_stream[stream]

    def has_toxics(self, stream: str) -> bool:
        return bool(self._by_stream[stream])

    def has_toxic_uid(self, uid: int) -> bool:
        return uid in self._uids

    def all_toxics(self) -> list[Toxic]:
        return list(self.toxics.values())

    def _reindex(self) -> None:
        self._by_stream = {s: [t for t in self.toxics.values() if t.stream == s] for s in STREAMS}
        self._uids = {t.uid for t in self.toxics.values()}
        self.changed.set()
        self.changed = asyncio.Event()

    def add_toxic(self, body) -> Toxic:
        toxic = build_toxic(body, self.protocol)
        if toxic.name in self.toxics:
            raise ApiError(409, "toxic already exists")
        self.toxics[toxic.name] = toxic
        self._reindex()
        self.on_toxic_added(toxic)
        return toxic

    def update_toxic(self, name: str, body) -> Toxic:
        old = self.toxics.get(name)
        if old is None:
            raise ApiError(404, "toxic not found")
        new = build_toxic(body, self.protocol, existing=old)
        self.on_toxic_removed(old)
        self.toxics[name] = new
        self._reindex()
        self.on_toxic_added(new)
        return new

    def remove_toxic(self, name: str) -> None:
        toxic = self.toxics.pop(name, None)
        if toxic is None:
            raise ApiError(404, "toxic not found")
        self._reindex()
        self.on_toxic_removed(toxic)

    def remove_all_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)

    def on_toxic_added(self, toxic: Toxic) -> None:
        pass

    def on_toxic_removed(self, toxic: Toxic) -> None:
        pass

    # counters -------------------------------------------------------------------------------------------------
    def count(self, stream: str, n: int) -> None:
        self.bytes[stream] += n
