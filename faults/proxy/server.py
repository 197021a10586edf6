"""The fault proxy's server: the Toxiproxy 2.x HTTP API over the collection of proxies (Toxiproxy's api.go and
proxy_collection.go), on asyncio, as a process or embedded in a thread.

The rest of faults/proxy: proxy.py is one proxy (its toxics per stream, counters, seeded Random), tcp.py and udp.py
the TCP proxy and the UDP proxy (our extension) with their links, toxics.py the toxics, http.py the HTTP layer.

Why our own server: no Toxiproxy binary is installable from the registries this project uses, and the harness
drives every network fault through the Toxiproxy HTTP API, so anything that speaks the API (this server, or a
real Toxiproxy the user points ``TRADEDRILL_TOXIPROXY_URL`` at) serves the harness unchanged.

API (see docs/toxiproxy-api.md): GET /version, GET|POST /proxies, POST /populate, GET|POST|PATCH|DELETE
/proxies/{p}, GET|POST /proxies/{p}/toxics, GET|POST|PATCH|DELETE /proxies/{p}/toxics/{t}, POST /reset,
GET /metrics. Errors are ``{"error": ..., "status": N}``.

Extensions (ignored by Toxiproxy clients, which pass unknown fields through):
- ``"protocol": "udp"`` in ``POST /proxies`` (or ``POST /udp/proxies``) creates a UDP proxy; its toxics are
  loss, duplicate, reorder, latency, blackhole (faults/proxy/toxics.py). Proxies report ``"protocol"``.
- ``"seed"`` in ``POST /proxies`` seeds that proxy's Random (default: the server seed and the proxy name), so
  toxicity draws, jitter, slicer sizes and UDP loss replay from the run's seed.

Safety: listen and upstream addresses must be loopback or inside ``TRADEDRILL_FAULT_NETWORKS``.

Run it as a process (``tradedrill faults proxy serve --listen 127.0.0.1:8474``) or embedded in a thread of a test
or the harness (:class:`EmbeddedToxiproxy`).
"""
from __future__ import annotations

import asyncio
import gc
import threading
from typing import Callable

from faults.core import UnsafeTarget
from faults.proxy.http import Request, Response, error, serve_connection
from faults.proxy.proxy import ApiError, Proxy, split_hostport
from faults.proxy.tcp import TcpProxy
from faults.proxy.toxics import STREAMS, InvalidToxic
from faults.proxy.udp import UdpProxy
from faults.safety import check_address

VERSION = "2.9.0-tradedrill"


class ToxiproxyServer:
    """The API and the proxies, on the running event loop."""

    def __init__(self, listen: str = "127.0.0.1:8474", seed: int | str = 0):
        self.host, self.port = split_hostport(listen)
        check_address(self.host)
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}
        self._api: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "ToxiproxyServer":
        self._api = await asyncio.start_server(lambda r, w: serve_connection(r, w, self.handle),
                                               self.host, self.port, reuse_address=True)
        self.port = self._api.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._api is not None:
            self._api.close()
        for proxy in list(self.proxies.values()):
            await proxy.disable()
        self.proxies.clear()

    # -- proxies ------------------------------------------------------------------------------------------------
    async def create_proxy(self, body: dict, protocol: str | None = None) -> Proxy:
        if not isinstance(body, dict):
            raise ApiError(400, "proxy body must be a JSON object")
        name, upstream = body.get("name"), body.get("upstream")
        if not name or not upstream:
            raise ApiError(400, "missing required field: name and upstream")
        if name in self.proxies:
            raise ApiError(409, "proxy already exists")
        protocol = (protocol or body.get("protocol") or "tcp").lower()
        if protocol not in ("tcp", "udp"):
            raise ApiError(400, f"unknown protocol {protocol!r}: use tcp or udp")
        listen = body.get("listen") or "127.0.0.1:0"
        try:
            check_address(split_hostport(listen)[0])
            check_address(split_hostport(upstream)[0])
            cls = UdpProxy if protocol == "udp" else TcpProxy
            proxy = cls(name, listen, upstream, seed=body.get("seed"), server_seed=self.seed)
        except (ValueError, UnsafeTarget) as exc:
            raise ApiError(400, str(exc)) from None
        if body.get("enabled", True):
            await proxy.enable()
        self.proxies[name] = proxy
        return proxy

    def _proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def update_proxy(self, proxy: Proxy, body: dict) -> Proxy:
        if not isinstance(body, dict):
            raise ApiError(400, "proxy body must be a JSON object")
        if "upstream" in body and body["upstream"] != proxy.upstream:
            try:
                check_address(split_hostport(body["upstream"])[0])
            except (ValueError, UnsafeTarget) as exc:
                raise ApiError(400, str(exc)) from None
            proxy.upstream = body["upstream"]
        if "listen" in body and body["listen"] != proxy.listen:
            host, port = split_hostport(body["listen"])
            check_address(host)
            was = proxy.enabled
            await proxy.disable()
            proxy.host, proxy.port = host, port
            if was:
                await proxy.enable()
        if "enabled" in body:
            if body["enabled"]:
                await proxy.enable()
            else:
                await proxy.disable()
        return proxy

    async def populate(self, body) -> list[Proxy]:
        if not isinstance(body, list):
            raise ApiError(400, "populate takes a JSON list of proxies")
        out = []
        for item in body:
            existing = self.proxies.get(item.get("name"))
            if existing is not None:
                same = existing.upstream == item.get("upstream") and (
                    item.get("listen") in (None, existing.listen)) and existing.protocol == (
                    item.get("protocol") or "tcp")
                if same:
                    out.append(existing)
                    continue
                await existing.disable()
                del self.proxies[existing.name]
            out.append(await self.create_proxy(item))
        return out

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            proxy.remove_all_toxics()
            await proxy.enable()

    def metrics(self) -> str:
        lines = ["# TYPE toxiproxy_proxy_received_bytes_total counter"]
        for p in self.proxies.values():
            for stream, n in p.bytes.items():
                lines.append(f'toxiproxy_proxy_received_bytes_total{{proxy="{p.name}",direction="{stream}",'
                             f'protocol="{p.protocol}"}} {n}')
        lines.append("# TYPE toxiproxy_proxy_connections_total counter")
        for p in self.proxies.values():
            if isinstance(p, TcpProxy):
                lines.append(f'toxiproxy_proxy_connections_total{{proxy="{p.name}"}} {p.accepted}')
        lines.append("# TYPE tradedrill_udp_datagrams_total counter")
        for p in self.proxies.values():
            if isinstance(p, UdpProxy):
                for stream in STREAMS:
                    lines.append(f'tradedrill_udp_datagrams_total{{proxy="{p.name}",direction="{stream}"}} '
                                 f'{p.datagrams[stream]}')
                    lines.append(f'tradedrill_udp_dropped_total{{proxy="{p.name}",direction="{stream}"}} '
                                 f'{p.dropped[stream]}')
        return "\n".join(lines) + "\n"

    # -- HTTP routing ---------------------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        try:
            return await self._route(req)
        except ApiError as exc:
            return error(exc.status, str(exc))
        except InvalidToxic as exc:
            return error(400, str(exc))

    async def _route(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        m = req.method
        if parts == ["version"] and m == "GET":
            return Response(200, {"version": VERSION})
        if parts == ["reset"] and m == "POST":
            await self.reset()
            return Response(204)
        if parts == ["metrics"] and m == "GET":
            return Response(200, self.metrics(), content_type="text/plain; version=0.0.4")
        if parts == ["populate"] and m == "POST":
            proxies = await self.populate(req.json())
            return Response(201, {"proxies": [p.to_json() for p in proxies]})
        if parts in (["proxies"], ["udp", "proxies"]):
            if m == "GET":
                return Response(200, {n: p.to_json() for n, p in self.proxies.items()})
            if m == "POST":
                proxy = await self.create_proxy(req.json(), "udp" if parts[0] == "udp" else None)
                return Response(201, proxy.to_json())
            raise ApiError(405, "method not allowed")
        if len(parts) >= 2 and parts[0] == "proxies":
            proxy = self._proxy(parts[1])
            if len(parts) == 2:
                if m == "GET":
                    return Response(200, proxy.to_json())
                if m in ("POST", "PATCH"):
                    await self.update_proxy(proxy, req.json())
                    return Response(200, proxy.to_json())
                if m == "DELETE":
                    await proxy.disable()
                    self.proxies.pop(proxy.name, None)
                    return Response(204)
            elif parts[2] == "toxics" and len(parts) == 3:
                if m == "GET":
                    return Response(200, [t.to_json() for t in proxy.toxics.values()])
                if m == "POST":
                    return Response(200, proxy.add_toxic(req.json()).to_json())
            elif parts[2] == "toxics" and len(parts) == 4:
                name = parts[3]
                if m == "GET":
                    toxic = proxy.toxics.get(name)
                    if toxic is None:
                        raise ApiError(404, "toxic not found")
                    return Response(200, toxic.to_json())
                if m in ("POST", "PATCH"):
                    return Response(200, proxy.update_toxic(name, req.json()).to_json())
                if m == "DELETE":
                    proxy.remove_toxic(name)
                    return Response(204)
            raise ApiError(405 if len(parts) <= 4 else 404, "no such route")
        raise ApiError(404, "no such route")


async def serve_forever(listen: str, seed: int | str = 0, ready: Callable[[ToxiproxyServer], None] | None = None):
    server = await ToxiproxyServer(listen, seed).start()
    # long-lived objects out of the collector's sight, and rarer young collections: fewer pauses in the p99
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if ready:
        ready(server)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


class EmbeddedToxiproxy:
    """The server on its own event loop in a daemon thread: ``with EmbeddedToxiproxy(seed=run_seed) as srv:``
    then point a client at ``srv.url`` (or ``srv.host``/``srv.port``)."""

    def __init__(self, listen: str = "127.0.0.1:0", seed: int | str = 0, start_timeout: float = 10.0):
        self.listen = listen
        self.seed = seed
        self.start_timeout = start_timeout
        self.server: ToxiproxyServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.server = await ToxiproxyServer(self.listen, self.seed).start()
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.stop()

        asyncio.run(main())

    def start(self) -> "EmbeddedToxiproxy":
        self._thread = threading.Thread(target=self._run, name="tradedrill-toxiproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise RuntimeError(f"the embedded fault proxy did not start within {self.start_timeout}s")
        if self._error is not None:
            raise RuntimeError(f"the embedded fault proxy could not start on {self.listen}: {self._error}")
        return self

    def call(self, coro_fn, timeout: float = 10.0):
        """Run ``coro_fn()`` on the server's loop and return its result (for in-process inspection)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self.loop is not None and self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "EmbeddedToxiproxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
