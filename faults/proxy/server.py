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

Request bodies are decoded as Toxiproxy 2.x decodes them (Go's encoding/json into its structs; decode.py): a
client written against it works unchanged, and anything the proxy cannot use is a 400 naming the field (never a
5xx), checked before anything changes, so a refused request leaves every proxy and toxic as it was. Where this
server is stricter than Toxiproxy (names usable in a URL path, host:port with ports in range, toxicity 0..1,
non-negative attributes, NaN/Infinity), the 400 says so. A listen address in use is 409.

Safety: listen and upstream addresses must be loopback or inside ``TRADEDRILL_FAULT_NETWORKS``; the API itself
listens on loopback only (``api_address``).

Run it as a process (``tradedrill faults proxy serve --listen 127.0.0.1:8474``) or embedded in a thread of a test
or the harness (:class:`EmbeddedToxiproxy`).
"""
from __future__ import annotations

import asyncio
import gc
import threading
from typing import Callable

from urllib.parse import unquote

from faults.core import UnsafeTarget
from faults.proxy.decode import BadRequest, check_hostport, check_name, decode_list, decode_struct, parse_body
from faults.proxy.http import Request, Response, error, serve_connection
from faults.proxy.proxy import ApiError, Proxy, split_hostport
from faults.proxy.tcp import TcpProxy
from faults.proxy.toxics import STREAMS
from faults.proxy.udp import UdpProxy
from faults.safety import check_address

VERSION = "2.9.0-tradedrill"
# Toxiproxy's Proxy struct (name, listen, upstream, enabled) and our extensions (protocol, seed)
PROXY_FIELDS = {"name": "string", "listen": "string", "upstream": "string", "enabled": "bool",
                "protocol": "string", "seed": "string|int64"}


class AddressError(ValueError):
    """The API's own listen address is unusable; the message says why and what to give instead."""


def api_address(listen: str) -> tuple[str, int]:
    """``(host, port)`` of the API's listen address: host:port, a port in 0-65535, on loopback (or in the run's
    networks); AddressError otherwise."""
    host, sep, port = str(listen).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AddressError(f"listen address {listen!r} must be host:port with a port in 0-65535, e.g. "
                           f"127.0.0.1:8474")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        check_address(host)
    except UnsafeTarget as exc:
        raise AddressError(f"listen address {listen!r}: the fault proxy's API controls every fault, so it "
                           f"listens on loopback only ({exc})") from None
    return host, int(port)


class ToxiproxyServer:
    """The API and the proxies, on the running event loop."""

    def __init__(self, listen: str = "127.0.0.1:8474", seed: int | str = 0):
        self.host, self.port = api_address(listen)
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
    def _proxy_spec(self, item, struct: str = "Proxy", protocol: str | None = None) -> dict:
        """A create body decoded like Toxiproxy's ``ProxyCreate`` (into ``Proxy{Enabled: true}``) plus our
        ``protocol`` and ``seed`` extensions, and checked: name, listen, upstream (400 naming the field)."""
        spec = decode_struct(item, struct, PROXY_FIELDS, {"name": "", "listen": "", "upstream": "", "enabled": True,
                                                          "protocol": "", "seed": None})
        if not spec["name"]:
            raise BadRequest("missing required field: name")
        if not spec["upstream"]:
            raise BadRequest("missing required field: upstream")
        check_name(spec["name"], "proxy name")
        spec["protocol"] = (protocol or spec["protocol"] or "tcp").lower()
        if spec["protocol"] not in ("tcp", "udp"):
            raise BadRequest(f"protocol {spec['protocol']!r} is neither tcp nor udp (tradedrill's extension; "
                             f"Toxiproxy ignores the field and proxies tcp)")
        spec["listen_given"] = bool(spec["listen"])
        spec["listen"] = spec["listen"] or "127.0.0.1:0"
        check_hostport(spec["listen"], "listen", listen=True)
        check_hostport(spec["upstream"], "upstream", listen=False)
        return spec

    async def _start_proxy(self, spec: dict) -> Proxy:
        cls = UdpProxy if spec["protocol"] == "udp" else TcpProxy
        try:
            proxy = cls(spec["name"], spec["listen"], spec["upstream"], seed=spec["seed"], server_seed=self.seed)
        except (ValueError, UnsafeTarget) as exc:
            raise BadRequest(str(exc)) from None
        if spec["enabled"]:
            await proxy.enable()
        return proxy

    def _check_no_loop(self, name: str, listen: str, upstream: str) -> None:
        """Refuse an upstream that leads back to this proxy's own listener, directly or through other proxies of
        this server: one connection would then loop until the file descriptors run out (400 naming the field)."""
        def key(hostport: str) -> tuple[str, int]:
            host, _, port = hostport.rpartition(":")
            host = host.strip("[]")
            return ("127.0.0.1" if host in ("localhost", "") else host), int(port or 0)

        listeners = {key(p.listen): p for n, p in self.proxies.items() if n != name}
        own = key(listen)
        seen: set[tuple[str, int]] = set()
        hop = key(upstream)
        for _ in range(len(self.proxies) + 2):
            if own[1] and hop == own:
                raise BadRequest(f"upstream {upstream} leads back to proxy {name!r}'s own listen address "
                                 f"{listen}: that is a loop; point upstream at the real service")
            nxt = listeners.get(hop)
            if nxt is None or hop in seen:
                return
            seen.add(hop)
            hop = key(nxt.upstream)

    async def create_proxy(self, body, protocol: str | None = None) -> Proxy:
        spec = self._proxy_spec(body, protocol=protocol)
        if spec["name"] in self.proxies:
            raise ApiError(409, "proxy already exists")
        self._check_no_loop(spec["name"], spec["listen"], spec["upstream"])
        proxy = await self._start_proxy(spec)
        self.proxies[spec["name"]] = proxy
        return proxy

    def _proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def update_proxy(self, proxy: Proxy, body) -> Proxy:
        """Toxiproxy's ``ProxyUpdate``: the body decoded over the proxy's current listen, upstream and enabled; a
        new listen address moves the listener. All checked first; a listener that cannot move stays where it was.
        """
        update = decode_struct(body, "Proxy", PROXY_FIELDS, {"listen": proxy.listen, "upstream": proxy.upstream,
                                                             "enabled": proxy.enabled})
        listen = update["listen"] or proxy.listen
        host, port = check_hostport(listen, "listen", listen=True)
        upstream = update["upstream"] or proxy.upstream
        if upstream != proxy.upstream:
            check_hostport(upstream, "upstream", listen=False)
        self._check_no_loop(proxy.name, listen, upstream)
        moving = listen != proxy.listen
        was = proxy.enabled
        if moving:
            old = proxy.host, proxy.port
            await proxy.disable()
            proxy.host, proxy.port = host, port
            if update["enabled"]:
                try:
                    await proxy.enable()
                except ApiError:
                    proxy.host, proxy.port = old
                    if was:
                        await proxy.enable()
                    raise
        proxy.upstream = upstream
        if update["enabled"] and not proxy.enabled:
            await proxy.enable()
        elif not update["enabled"] and proxy.enabled:
            await proxy.disable()
        return proxy

    async def populate(self, body) -> list[Proxy]:
        """Toxiproxy's ``PopulateJson``: every entry checked before any proxy changes; an entry equal to an
        existing proxy (same listen and upstream) keeps it, another one replaces it. If a listener cannot start,
        the proxies this request made are removed and the ones it replaced come back."""
        items = decode_list(body, "[]Proxy")
        specs = []
        for i, item in enumerate(items, 1):
            try:
                spec = self._proxy_spec(item, "Proxy")
                if spec["listen"] == spec["upstream"]:
                    raise BadRequest(f"upstream {spec['upstream']} is its own listen address: that is a loop")
                specs.append(spec)
            except BadRequest as exc:
                raise BadRequest(f"proxy {i}: {exc}") from None
        names = [s["name"] for s in specs]
        if len(set(names)) != len(names):
            raise BadRequest(f"populate names a proxy twice: {sorted({n for n in names if names.count(n) > 1})} "
                             f"(Toxiproxy keeps the last; tradedrill refuses the ambiguity)")
        out: list[Proxy] = []
        made: list[Proxy] = []
        replaced: list[tuple[Proxy, bool]] = []
        try:
            for spec in specs:
                existing = self.proxies.get(spec["name"])
                if existing is not None:
                    listen_same = not spec["listen_given"] or spec["listen"] == existing.listen
                    if existing.upstream == spec["upstream"] and listen_same and existing.protocol == spec["protocol"]:
                        out.append(existing)
                        continue
                    replaced.append((existing, existing.enabled))
                    await existing.disable()
                    del self.proxies[existing.name]
                proxy = await self._start_proxy(spec)
                self.proxies[proxy.name] = proxy
                made.append(proxy)
                out.append(proxy)
        except BaseException:
            for proxy in made:
                await proxy.disable()
                self.proxies.pop(proxy.name, None)
            for proxy, was in replaced:
                self.proxies[proxy.name] = proxy
                if was:
                    try:
                        await proxy.enable()
                    except ApiError:
                        pass  # its port was taken meanwhile: it stays, disabled
            raise
        return out

    async def reset(self) -> None:
        """Every toxic removed and every proxy enabled; a proxy whose port another process took meanwhile stays
        disabled and the answer (409) names it, after all the others were reset."""
        failed = []
        for proxy in list(self.proxies.values()):
            proxy.remove_all_toxics()
            try:
                await proxy.enable()
            except ApiError as exc:
                failed.append(str(exc))
        if failed:
            raise ApiError(409, "reset: every toxic is removed, but " + "; ".join(failed))

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
        except BadRequest as exc:  # also InvalidToxic
            return error(400, str(exc))

    async def _route(self, req: Request) -> Response:
        try:
            parts = [unquote(p, errors="strict") for p in req.path.split("/") if p]
        except UnicodeDecodeError:
            raise ApiError(404, "no such route") from None
        m = req.method
        if parts == ["version"] and m == "GET":
            return Response(200, {"version": VERSION})
        if parts == ["reset"] and m == "POST":
            await self.reset()
            return Response(204)
        if parts == ["metrics"] and m == "GET":
            return Response(200, self.metrics(), content_type="text/plain; version=0.0.4")
        if parts == ["populate"] and m == "POST":
            proxies = await self.populate(parse_body(req.body))
            return Response(201, {"proxies": [p.to_json() for p in proxies]})
        if parts in (["proxies"], ["udp", "proxies"]):
            if m == "GET":
                return Response(200, {n: p.to_json() for n, p in self.proxies.items()})
            if m == "POST":
                proxy = await self.create_proxy(parse_body(req.body), "udp" if parts[0] == "udp" else None)
                return Response(201, proxy.to_json())
            raise ApiError(405, "method not allowed")
        if len(parts) >= 2 and parts[0] == "proxies":
            proxy = self._proxy(parts[1])
            if len(parts) == 2:
                if m == "GET":
                    return Response(200, proxy.to_json())
                if m in ("POST", "PATCH"):
                    await self.update_proxy(proxy, parse_body(req.body, empty={}))
                    return Response(200, proxy.to_json())
                if m == "DELETE":
                    await proxy.disable()
                    self.proxies.pop(proxy.name, None)
                    return Response(204)
            elif parts[2] == "toxics" and len(parts) == 3:
                if m == "GET":
                    return Response(200, [t.to_json() for t in proxy.toxics.values()])
                if m == "POST":
                    return Response(200, proxy.add_toxic(parse_body(req.body)).to_json())
            elif parts[2] == "toxics" and len(parts) == 4:
                name = parts[3]
                if m == "GET":
                    toxic = proxy.toxics.get(name)
                    if toxic is None:
                        raise ApiError(404, "toxic not found")
                    return Response(200, toxic.to_json())
                if m in ("POST", "PATCH"):
                    return Response(200, proxy.update_toxic(name, parse_body(req.body, empty={})).to_json())
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
