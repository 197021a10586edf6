"""The declarative topology: which nodes exist, their roles, addresses, ports and configuration.

A topology is plain data. A provider (``tradedrill.local.LocalStack`` for the embedded stack) turns it into running
processes. Every node gets its own loopback address (``<subnet>.2``, ``<subnet>.3``, ...), so a fault can single out
one node by address, and every node can keep its service's usual port.

Settings are dotted keys with the design documents' values as defaults, the requirement ID beside each.
Any of them can be overridden per run (``--set sentinel.down_after_ms=1000`` or a TOML file).
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

SERVICES = ("redis", "clickhouse", "postgres")

# (default, requirement ID or reason) for every setting a local topology understands
DEFAULT_SETTINGS: dict[str, tuple[Any, str]] = {
    "redis.port": (6379, "RDS-1 (sentinel monitor mymaster <ip> 6379 2)"),
    "redis.replicas": (2, "RDS-1: primary + replica(s); two so a failover still leaves a replica"),
    "redis.appendonly": ("yes", "RDS-3 AOF"),
    "redis.appendfsync": ("always", "RDS-3 appendfsync always"),
    "redis.auto_aof_rewrite_min_size": ("64mb", "RDS-3 AOF rewrite at 64 MB"),
    "redis.save": ("60 1000", "RDS-3 RDB save 60 1000"),
    "redis.maxmemory": ("0", "RDS-5 sets only the policy; 0 = no limit unless a run sets one"),
    "redis.maxmemory_policy": ("volatile-lru", "RDS-5 maxmemory-policy volatile-lru (MT5-HA)"),
    "redis.tcp_backlog": (1024, "RDS-5 tcp-backlog 1024"),
    "redis.tcp_keepalive": (300, "RDS-5 tcp-keepalive 300"),
    "sentinel.count": (3, "RDS-1: quorum 2 needs at least three Sentinels to survive one loss"),
    "sentinel.port": (26379, "Sentinel's usual port"),
    "sentinel.master_name": ("mymaster", "RDS-1 sentinel monitor mymaster"),
    "sentinel.quorum": (2, "RDS-1 sentinel monitor ... 2"),
    "sentinel.down_after_ms": (3000, "RDS-1 down-after-milliseconds 3000"),
    "sentinel.failover_timeout_ms": (5000, "RDS-1 failover-timeout 5000"),
    "sentinel.parallel_syncs": (1, "RDS-1 parallel-syncs 1"),
    "clickhouse.tcp_port": (9000, "ClickHouse native port"),
    "clickhouse.http_port": (8123, "ClickHouse HTTP port"),
    "postgres.port": (5432, "PostgreSQL's usual port"),
    "postgres.fsync": ("on", "PG-1: committed rows survive a crash"),
    "ready.timeout_s": (20.0, "deadline for the whole topology to be ready (target: 10 s, measured by nox -s bench)"),
}


class TopologyError(ValueError):
    """A topology or one of its settings is invalid; the message says which and what is allowed."""


@dataclass(frozen=True)
class NodeSpec:
    """One node: what it is (kind), what it does (role), where it listens."""

    name: str
    kind: str  # redis | sentinel | clickhouse | postgres | process
    role: str  # primary | replica | sentinel | history | credentials | ...
    address: str
    port: int
    ports: dict[str, int] = field(default_factory=dict)


@dataclass
class Topology:
    subnet: str
    services: tuple[str, ...]
    settings: dict[str, Any]
    nodes: list[NodeSpec]

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def default(
        cls,
        subnet: str = "127.0.0",
        services: Iterable[str] = SERVICES,
        overrides: dict[str, Any] | None = None,
    ) -> "Topology":
        services = tuple(services)
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise TopologyError(f"unknown service(s) {sorted(unknown)}; choose from {list(SERVICES)}")
        _check_subnet(subnet)
        settings = {key: value for key, (value, _why) in DEFAULT_SETTINGS.items()}
        for key, value in (overrides or {}).items():
            if key not in settings:
                raise TopologyError(
                    f"unknown setting {key!r}; known settings: {', '.join(sorted(settings))}"
                )
            settings[key] = _coerce(key, value, settings[key])
        nodes: list[NodeSpec] = []
        host = 2

        def addr() -> str:
            nonlocal host
            if host > 254:
                raise TopologyError(f"subnet {subnet} has no address left for another node")
            a = f"{subnet}.{host}"
            host += 1
            return a

        if "redis" in services:
            port = int(settings["redis.port"])
            nodes.append(NodeSpec("redis-1", "redis", "primary", addr(), port))
            for i in range(int(settings["redis.replicas"])):
                nodes.append(NodeSpec(f"redis-{i + 2}", "redis", "replica", addr(), port))
            for i in range(int(settings["sentinel.count"])):
                nodes.append(NodeSpec(f"sentinel-{i + 1}", "sentinel", "sentinel", addr(), int(settings["sentinel.port"])))
        if "clickhouse" in services:
            nodes.append(
                NodeSpec(
                    "clickhouse", "clickhouse", "history", addr(), int(settings["clickhouse.tcp_port"]),
                    {"http": int(settings["clickhouse.http_port"])},
                )
            )
        if "postgres" in services:
            nodes.append(NodeSpec("postgres", "postgres", "credentials", addr(), int(settings["postgres.port"])))
        return cls(subnet=subnet, services=services, settings=settings, nodes=nodes)

    @classmethod
    def from_file(cls, path: Path, overrides: dict[str, Any] | None = None) -> "Topology":
        """Read ``[topology] subnet/services`` and ``[settings]`` from a TOML file; ``overrides`` win."""
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise TopologyError(f"topology file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise TopologyError(f"topology file {path} is not valid TOML: {exc}") from None
        top = doc.get("topology", {})
        settings = _flatten(doc.get("settings", {}))
        settings.update(overrides or {})
        return cls.default(
            subnet=top.get("subnet", "127.0.0"),
            services=top.get("services", SERVICES),
            overrides=settings,
        )

    # -- queries ------------------------------------------------------------------------------------------
    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(f"no node {name!r} in this topology; nodes: {[n.name for n in self.nodes]}")

    def of_kind(self, kind: str) -> list[NodeSpec]:
        return [n for n in self.nodes if n.kind == kind]

    @property
    def master_name(self) -> str:
        return str(self.settings["sentinel.master_name"])

    def to_dict(self) -> dict:
        return {
            "subnet": self.subnet,
            "services": list(self.services),
            "settings": self.settings,
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, doc: dict) -> "Topology":
        return cls(
            subnet=doc["subnet"],
            services=tuple(doc["services"]),
            settings=dict(doc["settings"]),
            nodes=[NodeSpec(**n) for n in doc["nodes"]],
        )


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", ...]`` from the command line into a dict; a pair without ``=`` is an error that says so."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TopologyError(f"--set {pair!r}: write it as KEY=VALUE, e.g. sentinel.down_after_ms=1000")
        out[key.strip()] = value.strip()
    return out


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return str(value) if not isinstance(default, bool) else value
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise TopologyError(f"setting {key}={value!r} must be a {type(default).__name__}") from None


def _check_subnet(subnet: str) -> None:
    try:
        net = ipaddress.ip_address(f"{subnet}.1")
    except ValueError:
        raise TopologyError(f"subnet {subnet!r} must be three octets like 127.0.0") from None
    if not net.is_loopback:
        raise TopologyError(
            f"subnet {subnet} is not loopback: the local stack and its faults stay on 127.0.0.0/8"
        )
