"""TCP/UDP link faults through the Toxiproxy HTTP API: the only way the harness touches a network link.

The API address comes from a parameter or ``TRADEDRILL_TOXIPROXY_URL`` (default http://127.0.0.1:8474), so our
own server (faults/proxy) and a real Toxiproxy are interchangeable. UDP toxics need our server.

    api = ToxiproxyAPI(url)                     # or ToxiproxyAPI() for the setting
    link = api.create_proxy("redis-primary", listen="127.0.4.10:0", upstream="127.0.4.2:6379")
    with LinkLatency(api, "redis-primary", latency_ms=200, jitter_ms=20, log=fault_log):
        ...                                     # every client of 127.0.4.10:<port> sees +200 ms
    with LinkDown(api, "redis-primary"): ...    # refused and closed connections
    with Blackhole(api, "redis-primary"): ...   # connections stay open, nothing arrives: client timeouts

Every toxic fault adds a toxic named after its fault id on inject and deletes it on heal; the toxics and
disabled proxies are recorded in the fault state file so ``tradedrill faults heal-all`` can remove them after a
crash.
"""
from __future__ import annotations

import os
from typing import Any

import httpx

from faults.core import Fault, FaultError, FaultState

URL_ENV = "TRADEDRILL_TOXIPROXY_URL"
DEFAULT_URL = "http://127.0.0.1:8474"


class ToxiproxyError(FaultError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ToxiproxyAPI:
    """A small client of the Toxiproxy HTTP API with timeouts (toxiproxy-python has none, and global state)."""

    def __init__(self, url: str | None = None, timeout: float = 5.0):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ToxiproxyError(0, f"the fault proxy at {self.url} did not answer ({exc!r}); start it with "
                                    "`tradedrill faults proxy serve` or set TRADEDRILL_TOXIPROXY_URL") from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            raise ToxiproxyError(resp.status_code, f"{method} {path}: {resp.status_code} {message}")
        if resp.status_code == 204 or not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    # proxies ----------------------------------------------------------------------------------------------------
    def version(self) -> str:
        out = self._call("GET", "/version")
        return out["version"] if isinstance(out, dict) else str(out).strip()

    def proxies(self) -> dict[str, dict]:
        return self._call("GET", "/proxies")

    def proxy(self, name: str) -> dict:
        return self._call("GET", f"/proxies/{name}")

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, protocol: str = "tcp",
                     enabled: bool = True, seed: int | str | None = None) -> dict:
        body: dict[str, Any] = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        if protocol != "tcp":
            body["protocol"] = protocol
        if seed is not None:
            body["seed"] = seed
        return self._call("POST", "/proxies", body)

    def ensure_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", **kw) -> dict:
        try:
            return self.create_proxy(name, upstream, listen, **kw)
        except ToxiproxyError as exc:
            if exc.status != 409:
                raise
            return self.proxy(name)

    def delete_proxy(self, name: str, missing_ok: bool = True) -> None:
        try:
            self._call("DELETE", f"/proxies/{name}")
        except ToxiproxyError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    def set_enabled(self, name: str, enabled: bool) -> dict:
        return self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def populate(self, proxies: list[dict]) -> list[dict]:
        return self._call("POST", "/populate", proxies)["proxies"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def metrics(self) -> str:
        return self._call("GET", "/metrics")

    # toxics -----------------------------------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[dict]:
        return self._call("GET", f"/proxies/{proxy}/toxics")

    def add_toxic(self, proxy: str, type: str, attributes: dict | None = None, *, name: str | None = None,
                  stream: str = "downstream", toxicity: float = 1.0) -> dict:
        body = {"name": name or f"{type}_{stream}", "type": type, "stream": stream, "toxicity": toxicity,
                "attributes": attributes or {}}
        return self._call("POST", f"/proxies/{proxy}/toxics", body)

    def update_toxic(self, proxy: str, name: str, attributes: dict | None = None,
                     toxicity: float | None = None) -> dict:
        body: dict[str, Any] = {"attributes": attributes or {}}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return self._call("POST", f"/proxies/{proxy}/toxics/{name}", body)

    def remove_toxic(self, proxy: str, name: str, missing_ok: bool = True) -> None:
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")
        except ToxiproxyError as exc:
            if not (missing_ok and exc.status == 404):
                raise


# -- faults -------------------------------------------------------------------------------------------------------
class ToxicFault(Fault):
    """One toxic on one proxy, in one direction (or both with ``stream="both"``)."""

    name = "link-toxic"
    toxic_type = "noop"
    requirement_ids = ("BRK-2", "RDS-2")

    def __init__(self, api: ToxiproxyAPI, proxy: str, attributes: dict | None = None, *,
                 stream: str = "downstream", toxicity: float = 1.0, **kw):
        super().__init__(**kw)
        self.api = api
        self.proxy = proxy
        self.attributes = dict(attributes or {})
        self.streams = ("upstream", "downstream") if stream == "both" else (stream,)
        self.toxicity = toxicity
        self.state = self.state or FaultState()

    def _toxic_name(self, stream: str) -> str:
        return f"td-{self.fault_id}-{stream}"

    def _record(self, stream: str) -> dict:
        return {"api": self.api.url, "proxy": self.proxy, "toxic": self._toxic_name(stream)}

    def _inject(self) -> None:
        for stream in self.streams:
            self.state.add("toxics", self._record(stream))
            self.api.add_toxic(self.proxy, self.toxic_type, self.attributes, name=self._toxic_name(stream),
                               stream=stream, toxicity=self.toxicity)

    def _heal(self) -> None:
        for stream in self.streams:
            self.api.remove_toxic(self.proxy, self._toxic_name(stream))
            self.state.remove("toxics", self._record(stream))

    def details(self) -> dict:
        return {"proxy": self.proxy, "toxic": self.toxic_type, "streams": list(self.streams),
                "toxicity": self.toxicity, "attributes": self.attributes, "api": self.api.url}

    def describe(self) -> str:
        attrs = ", ".join(f"{k}={v}" for k, v in self.attributes.items())
        return f"{self.toxic_type}({attrs}) {'/'.join(self.streams)} on proxy {self.proxy}"


class LinkLatency(ToxicFault):
    name = "link-latency"
    toxic_type = "latency"

    def __init__(self, api, proxy, latency_ms: float, jitter_ms: float = 0, **kw):
        super().__init__(api, proxy, {"latency": latency_ms, "jitter": jitter_ms}, **kw)


class Blackhole(ToxicFault):
    """Connections stay open and nothing arrives (Toxiproxy ``timeout`` 0): clients must time out."""

    name = "link-blackhole"
    toxic_type = "timeout"

    def __init__(self, api, proxy, stream: str = "both", **kw):
        super().__init__(api, proxy, {"timeout": 0}, stream=stream, **kw)


class LinkTimeout(ToxicFault):
    """Data is dropped and the connection closed after ``timeout_ms``."""

    name = "link-timeout"
    toxic_type = "timeout"

    def __init__(self, api, proxy, timeout_ms: float, **kw):
        super().__init__(api, proxy, {"timeout": timeout_ms}, **kw)


class ResetPeer(ToxicFault):
    name = "link-reset"
    toxic_type = "reset_peer"

    def __init__(self, api, proxy, timeout_ms: float = 0, **kw):
        super().__init__(api, proxy, {"timeout": timeout_ms}, **kw)


class Bandwidth(ToxicFault):
    name = "link-bandwidth"
    toxic_type = "bandwidth"

    def __init__(self, api, proxy, rate_kb_s: float, **kw):
        super().__init__(api, proxy, {"rate": rate_kb_s}, **kw)


class SlowClose(ToxicFault):
    name = "link-slow-close"
    toxic_type = "slow_close"

    def __init__(self, api, proxy, delay_ms: float, **kw):
        super().__init__(api, proxy, {"delay": delay_ms}, **kw)


class Slicer(ToxicFault):
    name = "link-slicer"
    toxic_type = "slicer"

    def __init__(self, api, proxy, average_size: int = 1, size_variation: int = 0, delay_us: int = 0, **kw):
        super().__init__(api, proxy, {"average_size": average_size, "size_variation": size_variation,
                                      "delay": delay_us}, **kw)


class LimitData(ToxicFault):
    name = "link-limit-data"
    toxic_type = "limit_data"

    def __init__(self, api, proxy, bytes_: int, **kw):
        super().__init__(api, proxy, {"bytes": bytes_}, **kw)


# UDP (our server only)
class UdpLoss(ToxicFault):
    name = "udp-loss"
    toxic_type = "loss"
    requirement_ids = ("EA-2",)

    def __init__(self, api, proxy, probability: float, **kw):
        super().__init__(api, proxy, {"probability": probability}, **kw)


class UdpDuplicate(ToxicFault):
    name = "udp-duplicate"
    toxic_type = "duplicate"
    requirement_ids = ("EA-2",)

    def __init__(self, api, proxy, probability: float, **kw):
        super().__init__(api, proxy, {"probability": probability}, **kw)


class UdpReorder(ToxicFault):
    name = "udp-reorder"
    toxic_type = "reorder"
    requirement_ids = ("EA-2",)

    def __init__(self, api, proxy, probability: float, delay_ms: float = 20, **kw):
        super().__init__(api, proxy, {"probability": probability, "delay": delay_ms}, **kw)


class UdpLatency(ToxicFault):
    name = "udp-latency"
    toxic_type = "latency"
    requirement_ids = ("EA-2", "PERF-1")

    def __init__(self, api, proxy, latency_ms: float, jitter_ms: float = 0, **kw):
        super().__init__(api, proxy, {"latency": latency_ms, "jitter": jitter_ms}, **kw)


class UdpBlackhole(ToxicFault):
    name = "udp-blackhole"
    toxic_type = "blackhole"
    requirement_ids = ("EA-2",)

    def __init__(self, api, proxy, stream: str = "both", **kw):
        super().__init__(api, proxy, {}, stream=stream, **kw)


class LinkDown(Fault):
    """The proxy is disabled: new connections refused, existing ones closed. Heal enables it."""

    name = "link-down"
    requirement_ids = ("BRK-2", "RDS-2", "CH-1")

    def __init__(self, api: ToxiproxyAPI, proxy: str, **kw):
        super().__init__(**kw)
        self.api = api
        self.proxy = proxy
        self.state = self.state or FaultState()

    def _record(self) -> dict:
        return {"api": self.api.url, "proxy": self.proxy}

    def _inject(self) -> None:
        self.state.add("disabled_proxies", self._record())
        self.api.set_enabled(self.proxy, False)

    def _heal(self) -> None:
        self.api.set_enabled(self.proxy, True)
        self.state.remove("disabled_proxies", self._record())

    def details(self) -> dict:
        return {"proxy": self.proxy, "api": self.api.url}

    def describe(self) -> str:
        return f"proxy {self.proxy} down"


def heal_leftovers(state: FaultState) -> list[str]:
    """Remove recorded toxics, re-enable recorded disabled proxies, delete recorded harness-owned proxies."""
    done = []
    entries = state.entries()
    apis: dict[str, ToxiproxyAPI] = {}

    def api_for(url: str) -> ToxiproxyAPI:
        return apis.setdefault(url, ToxiproxyAPI(url, timeout=3.0))

    for rec in entries.get("toxics", []):
        try:
            api_for(rec["api"]).remove_toxic(rec["proxy"], rec["toxic"])
            done.append(f"removed toxic {rec['toxic']} from {rec['proxy']} at {rec['api']}")
        except ToxiproxyError as exc:
            if exc.status not in (0, 404):
                raise
            done.append(f"toxic {rec['toxic']} at {rec['api']}: {'gone' if exc.status else 'proxy unreachable'}")
        state.remove("toxics", rec)
    for rec in entries.get("disabled_proxies", []):
        try:
            api_for(rec["api"]).set_enabled(rec["proxy"], True)
            done.append(f"re-enabled proxy {rec['proxy']} at {rec['api']}")
        except ToxiproxyError as exc:
            if exc.status not in (0, 404):
                raise
        state.remove("disabled_proxies", rec)
    for rec in entries.get("proxies", []):
        try:
            api_for(rec["api"]).delete_proxy(rec["proxy"])
            done.append(f"deleted proxy {rec['proxy']} at {rec['api']}")
        except ToxiproxyError as exc:
            if exc.status != 0:
                raise
        state.remove("proxies", rec)
    for api in apis.values():
        api.close()
    return done


class LinkFaults:
    """What the harness holds: the API, the run's fault log and state, the proxies it created, and a factory of
    link faults on them. ``close()`` deletes the proxies it created.

        links = LinkFaults(url=None, log=fault_log, seed=run_seed)     # URL from TRADEDRILL_TOXIPROXY_URL
        addr = links.proxy("engine-redis", upstream="127.0.4.2:6379", listen="127.0.4.10:0")  # "host:port"
        with links.latency("engine-redis", 300, jitter_ms=50): ...
    """

    def __init__(self, url: str | None = None, *, log=None, state: FaultState | None = None,
                 seed: int | str | None = None):
        self.api = ToxiproxyAPI(url)
        self.log = log
        self.state = state or FaultState()
        self.seed = seed
        self.owned: list[str] = []

    def proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", protocol: str = "tcp") -> str:
        """Create (or replace) a proxy and return its real listen address."""
        self.api.delete_proxy(name)
        rec = {"api": self.api.url, "proxy": name}
        self.state.add("proxies", rec)
        seed = None if self.seed is None else f"{self.seed}:{name}"
        out = self.api.create_proxy(name, upstream, listen, protocol=protocol, seed=seed)
        self.owned.append(name)
        return out["listen"]

    def _kw(self, kw: dict) -> dict:
        kw.setdefault("log", self.log)
        kw.setdefault("state", self.state)
        return kw

    def latency(self, proxy, latency_ms, jitter_ms=0, **kw): return LinkLatency(self.api, proxy, latency_ms, jitter_ms, **self._kw(kw))  # noqa: E501,E704
    def down(self, proxy, **kw): return LinkDown(self.api, proxy, **self._kw(kw))  # noqa: E704
    def blackhole(self, proxy, **kw): return Blackhole(self.api, proxy, **self._kw(kw))  # noqa: E704
    def timeout(self, proxy, timeout_ms, **kw): return LinkTimeout(self.api, proxy, timeout_ms, **self._kw(kw))  # noqa: E501,E704
    def reset_peer(self, proxy, timeout_ms=0, **kw): return ResetPeer(self.api, proxy, timeout_ms, **self._kw(kw))  # noqa: E501,E704
    def bandwidth(self, proxy, rate_kb_s, **kw): return Bandwidth(self.api, proxy, rate_kb_s, **self._kw(kw))  # noqa: E501,E704
    def slow_close(self, proxy, delay_ms, **kw): return SlowClose(self.api, proxy, delay_ms, **self._kw(kw))  # noqa: E501,E704
    def slicer(self, proxy, average_size=1, size_variation=0, delay_us=0, **kw): return Slicer(self.api, proxy, average_size, size_variation, delay_us, **self._kw(kw))  # noqa: E501,E704
    def limit_data(self, proxy, bytes_, **kw): return LimitData(self.api, proxy, bytes_, **self._kw(kw))  # noqa: E501,E704
    def udp_loss(self, proxy, probability, **kw): return UdpLoss(self.api, proxy, probability, **self._kw(kw))  # noqa: E501,E704
    def udp_duplicate(self, proxy, probability, **kw): return UdpDuplicate(self.api, proxy, probability, **self._kw(kw))  # noqa: E501,E704
    def udp_reorder(self, proxy, probability, delay_ms=20, **kw): return UdpReorder(self.api, proxy, probability, delay_ms, **self._kw(kw))  # noqa: E501,E704
    def udp_latency(self, proxy, latency_ms, jitter_ms=0, **kw): return UdpLatency(self.api, proxy, latency_ms, jitter_ms, **self._kw(kw))  # noqa: E501,E704
    def udp_blackhole(self, proxy, **kw): return UdpBlackhole(self.api, proxy, **self._kw(kw))  # noqa: E501,E704

    def close(self) -> None:
        for name in self.owned:
            self.api.delete_proxy(name)
            self.state.remove("proxies", {"api": self.api.url, "proxy": name})
        self.owned.clear()
        self.api.close()

    def __enter__(self) -> "LinkFaults":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
