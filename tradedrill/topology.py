"""The declarative topology: which nodes exist, their roles, addresses, ports and configuration.

A topology is plain data. A provider (``tradedrill.local.LocalStack`` for the embedded stack) turns it into running
processes. Every node gets its own loopback address (``<subnet>.2``, ``<subnet>.3``, ...) from one allocator, so a
fault can single out one node by address, and every node can keep its service's usual port.

Services and their nodes (addresses in this order, whatever order the services are named in):

==============  =========================================  ==========  ===========================================
service         nodes                                      kind        role
==============  =========================================  ==========  ===========================================
``redis``       ``redis-1``, ``redis-2`` ... (replicas)    redis       ``primary``, ``replica``
                ``sentinel-1`` ... ``sentinel-N``          sentinel    ``sentinel``
``clickhouse``  ``clickhouse``                             clickhouse  ``history``
``postgres``    ``postgres``                               postgres    ``credentials``
``mt5``         ``mt5-primary``, ``mt5-backup``            mt5         ``broker-primary``, ``broker-backup``
``engine``      ``engine-a``, ``engine-b`` (instances A/B) engine      ``engine`` (port 0: binds nothing; the
                                                                       address is its source address)
``ea``          ``ea-1`` ... ``ea-N`` (``ea.count``)        ea          ``ea`` (tick stream: UDP and TCP on
                                                                       ``ea.port``; reads ``mt5-primary``)
``backend``     ``backend-a``, ``backend-b``                backend     ``backend-primary``, ``backend-backup``
                                                                       (FastAPI on ``backend.port``)
                ``proxy``                                  nginx       ``proxy`` (nginx on ``backend.proxy_port``:
                                                                       A serves, B is its backup; BE-2)
==============  =========================================  ==========  ===========================================

``tradedrill up`` starts redis, clickhouse and postgres unless told otherwise; ``mt5`` and ``engine`` are opt-in
(the engine needs redis and mt5; the EA needs mt5).

Settings are dotted keys with the design documents' values as defaults, the requirement ID beside each. Any of them
can be overridden per run (``--set sentinel.down_after_ms=1000`` or a TOML file). Every value is checked for type,
range and allowed values when the topology is built, before anything is written or started: a config file rendered
from these settings holds exactly one line per directive. Each error is one :class:`TopologyError` line that names
the key, the bad value and what is allowed.
"""
from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

# every service a topology understands, in address-allocation order
SERVICES = ("redis", "clickhouse", "postgres", "mt5", "engine", "ea", "backend")
# what `tradedrill up` and Topology.default() run when not told otherwise
DEFAULT_SERVICES = ("redis", "clickhouse", "postgres")
# a service that cannot run without others
REQUIRES = {"engine": ("redis", "mt5"), "ea": ("mt5",), "backend": ("redis",)}
# the engine instances of the ``engine`` service, in start order (A is the first active)
ENGINE_INSTANCES = ("A", "B")

INT32_MAX = 2**31 - 1
_MEMORY = re.compile(r"[0-9]{1,15}(?:[bB]|[kKmMgG][bB]?)?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INT = re.compile(r"[+-]?[0-9]{1,20}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?")
# Redis 7.0's maxmemory-policy values
MAXMEMORY_POLICIES = ("volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu", "volatile-random",
                      "allkeys-random", "volatile-ttl", "noeviction")


class TopologyError(ValueError):
    """A topology or one of its settings is invalid; the message (one line) says which and what is allowed."""


@dataclass(frozen=True)
class Setting:
    """One setting: its default, why it has that default, and what values it allows.

    ``type`` is ``int`` (``low``..``high``), ``float`` (``low`` < x <= ``high``), ``choice`` (one of ``choices``;
    ``true``/``false`` of a TOML file count as the first/second choice when ``boolean``), ``memory`` (a Redis
    memory size), ``save`` (Redis' save rule) or ``name`` (``pattern``)."""

    default: Any
    why: str
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    boolean: bool = False
    pattern: re.Pattern | None = None
    allowed: str = ""

    def describe(self) -> str:
        """What this setting allows, as the end of a sentence ("... must be <this>")."""
        if self.allowed:
            return self.allowed
        if self.type == "int":
            if self.high is None:
                return f"an integer >= {int(self.low)}"
            return f"an integer from {int(self.low)} to {int(self.high)}"
        if self.type == "float":
            return f"a number greater than {self.low:g} and at most {self.high:g}"
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        return "a valid value"


def _port(default: int, why: str) -> Setting:
    return Setting(default, why, "int", 1, 65535)


def _int(default: int, why: str, low: int, high: int = INT32_MAX) -> Setting:
    return Setting(default, why, "int", low, high)


def _seconds(default: float, why: str, high: float = 86400.0) -> Setting:
    return Setting(default, why, "float", 0.0, high)


def _choice(default: str, why: str, *choices: str, boolean: bool = False) -> Setting:
    return Setting(default, why, "choice", choices=choices, boolean=boolean)


def _memory(default: str, why: str) -> Setting:
    return Setting(default, why, "memory",
                   allowed="a Redis memory size: digits with an optional unit b, k, kb, m, mb, g or gb (e.g. 64mb)")


def _name(default: str, why: str, pattern: re.Pattern, allowed: str) -> Setting:
    return Setting(default, why, "name", pattern=pattern, allowed=allowed)


SETTINGS: dict[str, Setting] = {
    "redis.port": _port(6379, "RDS-1 (sentinel monitor mymaster <ip> 6379 2)"),
    "redis.replicas": _int(2, "RDS-1: primary + replica(s); two so a failover still leaves a replica", 0, 250),
    "redis.appendonly": _choice("yes", "RDS-3 AOF", "yes", "no", boolean=True),
    "redis.appendfsync": _choice("always", "RDS-3 appendfsync always", "always", "everysec", "no"),
    "redis.auto_aof_rewrite_min_size": _memory("64mb", "RDS-3 AOF rewrite at 64 MB"),
    "redis.save": Setting("60 1000", "RDS-3 RDB save 60 1000", "save",
                          allowed='"" (no snapshots) or pairs of integers "<seconds >= 1> <changes >= 0>" '
                                  'separated by spaces (e.g. "60 1000 300 10")'),
    "redis.maxmemory": _memory("0", "RDS-5 sets only the policy; 0 = no limit unless a run sets one"),
    "redis.maxmemory_policy": _choice("volatile-lru", "RDS-5 maxmemory-policy volatile-lru (MT5-HA)",
                                      *MAXMEMORY_POLICIES),
    "redis.tcp_backlog": _int(1024, "RDS-5 tcp-backlog 1024", 1, 65535),
    "redis.tcp_keepalive": _int(300, "RDS-5 tcp-keepalive 300 (0 turns keepalive off)", 0),
    "sentinel.count": _int(3, "RDS-1: quorum 2 needs at least three Sentinels to survive one loss", 1, 250),
    "sentinel.port": _port(26379, "Sentinel's usual port"),
    "sentinel.master_name": _name("mymaster", "RDS-1 sentinel monitor mymaster", _NAME,
                                  "a name of letters, digits, '.', '_' or '-' (at most 64, not starting "
                                  "with '.', '_' or '-')"),
    "sentinel.quorum": _int(2, "RDS-1 sentinel monitor ... 2 (at most sentinel.count)", 1, 250),
    "sentinel.down_after_ms": _int(3000, "RDS-1 down-after-milliseconds 3000", 1),
    "sentinel.failover_timeout_ms": _int(5000, "RDS-1 failover-timeout 5000", 1),
    "sentinel.parallel_syncs": _int(1, "RDS-1 parallel-syncs 1", 1, 250),
    "clickhouse.tcp_port": _port(9000, "ClickHouse native port"),
    "clickhouse.http_port": _port(8123, "ClickHouse HTTP port"),
    "postgres.port": _port(5432, "PostgreSQL's usual port"),
    "postgres.fsync": _choice("on", "PG-1: committed rows survive a crash", "on", "off", boolean=True),
    "mt5.port": _port(18812, "the simulator's (and mt5linux') usual port; each broker has its own address"),
    "mt5.account": _int(5001, "the simulator's default hedging account (5002 is netting)", 1, 2**63 - 1),
    "mt5.call_timeout_s": _seconds(5.0, "BRK-1: a broker call times out after 5 s (open_terminal's default)",
                                   3600.0),
    "engine.group": _name("engine", "the engine group: A and B share its lease (ENG-1) and its keys", _GROUP,
                          "a name of 1 to 64 letters, digits, '_' or '-'"),
    "ea.count": _int(1, "EA instances side by side, each with its own address, keys and state (EA-HA 1)", 1, 16),
    "ea.port": _port(18900, "EA-2: the tick stream's UDP (primary) and TCP (backup) port on each EA's address"),
    "ea.symbols": _name("EURUSD,GBPUSD", "the symbols each EA streams (TV 1)", re.compile(
        r"[A-Za-z0-9._]{1,32}(?:,[A-Za-z0-9._]{1,32}){0,15}"), "1 to 16 symbol names separated by commas"),
    "backend.port": _port(8000, "BE-1: each backend (FastAPI under uvicorn) on its own address"),
    "backend.proxy_port": _port(8080, "BE-2: the one URL TradingView calls (nginx in front of both backends)"),
    "backend.proxy_read_timeout_ms": _int(300, "BE-2: a frozen backend is left for the other within 500 ms", 1,
                                          60000),
    "backend.chart_read_timeout_ms": _int(1000, "TV-4: chart history, the datafeed and the panel's files through "
                                                "the proxy: a slow answer is waited for, never a 504 at 300 ms, and "
                                                "never takes backend-a out of service (issue 15)", 1, 60000),
    "backend.max_fails": _int(1, "BE-2: failed requests that mark a backend down (nginx max_fails)", 1, 100),
    "backend.fail_timeout_s": _seconds(5.0, "BE-2: how long a failed backend is left alone (nginx fail_timeout)",
                                       3600.0),
    "backend.rate_per_s": Setting(100.0, "BE-4: webhook alerts per second per source (token bucket)", "float", 0.0,
                                  1e6),
    "backend.rate_burst": _int(200, "BE-4: webhook burst per source", 1, 10**6),
    "ready.timeout_s": _seconds(20.0, "deadline for the whole topology to be ready "
                                      "(target: 10 s, measured by nox -s bench)"),
}

# (default, requirement ID or reason) for every setting a local topology understands
DEFAULT_SETTINGS: dict[str, tuple[Any, str]] = {key: (s.default, s.why) for key, s in SETTINGS.items()}


@dataclass(frozen=True)
class NodeSpec:
    """One node: what it is (kind), what it does (role), where it listens (port 0: it listens nowhere)."""

    name: str
    kind: str  # redis | sentinel | clickhouse | postgres | mt5 | engine | ea | backend | nginx
    role: str  # primary | replica | sentinel | history | credentials | broker-primary | broker-backup | engine
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
        services: Iterable[str] = DEFAULT_SERVICES,
        overrides: dict[str, Any] | None = None,
        network: str = "loopback",
    ) -> "Topology":
        """The documents' topology of ``services`` on ``subnet``, with ``overrides`` of the settings. Raises
        :class:`TopologyError` (one line) for anything invalid. ``network`` is ``loopback`` (the local provider)
        or ``docker`` (a user-defined Docker network in ``DOCKER_SUBNETS``, one container per node)."""
        services = _check_services(services)
        _check_subnet(subnet, network)
        settings = check_settings(overrides)
        nodes: list[NodeSpec] = []
        host = 2

        def addr() -> str:
            nonlocal host
            if host > 254:
                raise TopologyError(
                    f"subnet {subnet} has no address left for another node ({len(nodes)} nodes use .2 to .254); "
                    f"choose fewer replicas or Sentinels"
                )
            a = f"{subnet}.{host}"
            host += 1
            return a

        if "redis" in services:
            port = settings["redis.port"]
            nodes.append(NodeSpec("redis-1", "redis", "primary", addr(), port))
            for i in range(settings["redis.replicas"]):
                nodes.append(NodeSpec(f"redis-{i + 2}", "redis", "replica", addr(), port))
            for i in range(settings["sentinel.count"]):
                nodes.append(NodeSpec(f"sentinel-{i + 1}", "sentinel", "sentinel", addr(), settings["sentinel.port"]))
        if "clickhouse" in services:
            nodes.append(NodeSpec("clickhouse", "clickhouse", "history", addr(), settings["clickhouse.tcp_port"],
                                  {"http": settings["clickhouse.http_port"]}))
        if "postgres" in services:
            nodes.append(NodeSpec("postgres", "postgres", "credentials", addr(), settings["postgres.port"]))
        if "mt5" in services:
            for which in ("primary", "backup"):
                nodes.append(NodeSpec(f"mt5-{which}", "mt5", f"broker-{which}", addr(), settings["mt5.port"]))
        if "engine" in services:
            for instance in ENGINE_INSTANCES:
                nodes.append(NodeSpec(f"engine-{instance.lower()}", "engine", "engine", addr(), 0))
        if "ea" in services:
            for i in range(settings["ea.count"]):
                nodes.append(NodeSpec(f"ea-{i + 1}", "ea", "ea", addr(), settings["ea.port"]))
        if "backend" in services:
            for which, role in (("a", "backend-primary"), ("b", "backend-backup")):
                nodes.append(NodeSpec(f"backend-{which}", "backend", role, addr(), settings["backend.port"]))
            nodes.append(NodeSpec("proxy", "nginx", "proxy", addr(), settings["backend.proxy_port"]))
        return cls(subnet=subnet, services=services, settings=settings, nodes=nodes)

    @classmethod
    def from_file(cls, path: Path | str, overrides: dict[str, Any] | None = None) -> "Topology":
        """Read ``[topology] subnet/services`` and ``[settings]`` from a TOML file; ``overrides`` win."""
        doc = _read_toml(Path(path))
        unknown = sorted(set(doc) - {"topology", "settings"})
        if unknown:
            raise TopologyError(f"topology file {_show_path(path)}: unknown table(s) {', '.join(map(repr, unknown))};"
                                f" it has [topology] (subnet, services) and [settings]")
        top = doc.get("topology", {})
        if not isinstance(top, dict):
            raise TopologyError(f"topology file {_show_path(path)}: 'topology' must be a table ([topology] with "
                                f"subnet and services), not {_type_name(top)} {_show(top)}")
        extra = sorted(set(top) - {"subnet", "services"})
        if extra:
            raise TopologyError(f"topology file {_show_path(path)}: unknown key(s) {', '.join(map(repr, extra))} in "
                                f"[topology]; it knows subnet and services")
        raw = doc.get("settings", {})
        if not isinstance(raw, dict):
            raise TopologyError(f"topology file {_show_path(path)}: 'settings' must be a table ([settings] with "
                                f"dotted keys or sub-tables), not {_type_name(raw)} {_show(raw)}")
        settings = _flatten(raw)
        settings.update(overrides or {})
        try:
            return cls.default(
                subnet=top.get("subnet", "127.0.0"),
                services=top.get("services", DEFAULT_SERVICES),
                overrides=settings,
            )
        except TopologyError as exc:
            raise TopologyError(f"topology file {_show_path(path)}: {exc}") from None

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


# -- settings -----------------------------------------------------------------------------------------------------
def check_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults with ``overrides`` applied, every value checked and normalised (``"1000"`` -> ``1000``);
    raises :class:`TopologyError` for an unknown key, a bad value or settings that contradict each other."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise TopologyError(f"settings must be a mapping of dotted keys to values, not {_type_name(overrides)}")
    settings = {key: s.default for key, s in SETTINGS.items()}
    for key, value in overrides.items():
        if not isinstance(key, str) or key not in SETTINGS:
            raise TopologyError(f"unknown setting {_show(key)}; known settings: {', '.join(SETTINGS)}")
        settings[key] = check_setting(key, value)
    if settings["sentinel.quorum"] > settings["sentinel.count"]:
        raise TopologyError(
            f"setting sentinel.quorum={settings['sentinel.quorum']} is invalid: it must be from 1 to "
            f"sentinel.count ({settings['sentinel.count']}), or no quorum of Sentinels can ever agree"
        )
    if settings["clickhouse.tcp_port"] == settings["clickhouse.http_port"]:
        raise TopologyError(
            f"setting clickhouse.http_port={settings['clickhouse.http_port']} is invalid: it must differ from "
            f"clickhouse.tcp_port ({settings['clickhouse.tcp_port']}), both listen on the same address"
        )
    return settings


def check_setting(key: str, value: Any) -> Any:
    """One setting's value, checked and normalised; raises :class:`TopologyError` naming key, value and rule."""
    s = SETTINGS[key]

    def bad(reason: str = "") -> TopologyError:
        return TopologyError(f"setting {key}={_show(value)} is invalid: {reason or 'it must be ' + s.describe()}")

    if isinstance(value, str) and _has_control(value):
        raise bad("it contains a control character (a newline would become another config line); "
                  f"it must be {s.describe()}")
    if s.type == "int":
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise bad()
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, str) and _INT.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            raise bad()
        if number < s.low or (s.high is not None and number > s.high):
            raise bad()
        return number
    if s.type == "float":
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            number = float(value.strip())
        else:
            raise bad()
        if not math.isfinite(number) or not s.low < number <= s.high:
            raise bad()
        return number
    if s.type == "choice":
        if isinstance(value, bool) and s.boolean:
            return s.choices[0] if value else s.choices[1]
        if isinstance(value, str) and value in s.choices:
            return value
        raise bad(f"it must be {s.describe()}" + (" (or true/false in a TOML file)" if s.boolean else ""))
    if s.type == "memory":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
            return str(value)
        if isinstance(value, str) and _MEMORY.fullmatch(value):
            return value
        raise bad()
    if s.type == "save":
        if not isinstance(value, str):
            raise bad()
        words = value.split(" ")
        words = [w for w in words if w]
        if not words:
            return ""
        if len(words) % 2 or not all(w.isascii() and w.isdigit() and len(w) <= 10 for w in words):
            raise bad()
        if any(int(seconds) < 1 for seconds in words[::2]):
            raise bad("every <seconds> must be at least 1; it must be " + s.describe())
        return " ".join(str(int(w)) for w in words)
    if s.type == "name":
        if isinstance(value, str) and s.pattern.fullmatch(value):
            return value
        raise bad()
    raise AssertionError(f"setting {key} has an unknown type {s.type}")  # pragma: no cover - a bug in SETTINGS


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", ...]`` from the command line into a dict; a pair without ``=`` is an error that says so."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TopologyError(f"--set {_show(pair)}: write it as KEY=VALUE, e.g. sentinel.down_after_ms=1000")
        out[key.strip()] = value.strip()
    return out


# -- helpers ------------------------------------------------------------------------------------------------------
def _check_services(services: Any) -> tuple[str, ...]:
    if isinstance(services, (str, bytes)):
        raise TopologyError(
            f"services must be a list of names like [\"redis\", \"mt5\"], not the string {_show(services)}; "
            f"choose from {', '.join(SERVICES)}"
        )
    try:
        items = list(services)
    except TypeError:
        raise TopologyError(f"services must be a list of names, not {_type_name(services)} {_show(services)}; "
                            f"choose from {', '.join(SERVICES)}") from None
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or item not in SERVICES:
            raise TopologyError(f"unknown service {_show(item)}; choose from {', '.join(SERVICES)}")
        if item in out:
            raise TopologyError(f"service {item!r} is named twice")
        out.append(item)
    if not out:
        raise TopologyError(f"no service chosen; choose from {', '.join(SERVICES)}")
    for service, needs in REQUIRES.items():
        missing = [n for n in needs if service in out and n not in out]
        if missing:
            raise TopologyError(f"service {service!r} needs {' and '.join(repr(m) for m in missing)} too "
                                f"(e.g. --services {','.join([*out, *missing])})")
    return tuple(out)


DOCKER_SUBNETS = ipaddress.ip_network("172.30.0.0/16")   # the docker provider's networks stay inside this block


def _check_subnet(subnet: Any, network: str = "loopback") -> None:
    if not isinstance(subnet, str):
        raise TopologyError(f"subnet {_show(subnet)} must be a string of three octets like \"127.0.0\"")
    try:
        net = ipaddress.ip_address(f"{subnet}.1")
        valid = subnet.count(".") == 2 and subnet.isascii()
    except ValueError:
        valid = False
    if not valid:
        raise TopologyError(f"subnet {_show(subnet)} must be three octets like 127.0.0")
    if network == "docker":
        if net not in DOCKER_SUBNETS or subnet.split(".")[2] == "0":
            raise TopologyError(f"subnet {subnet} is not one of the docker provider's: choose a /24 in "
                                f"{DOCKER_SUBNETS} other than 172.30.0 (dockerd's own bridge), e.g. 172.30.17")
        return
    if not net.is_loopback:
        raise TopologyError(
            f"subnet {subnet} is not loopback: the local stack and its faults stay on 127.0.0.0/8"
        )


def _read_toml(path: Path) -> dict:
    shown = _show_path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TopologyError(f"topology file {shown} does not exist") from None
    except IsADirectoryError:
        raise TopologyError(f"topology file {shown} is a folder; give the path of a TOML file") from None
    except OSError as exc:
        raise TopologyError(f"topology file {shown} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyError(f"topology file {shown} is not UTF-8 text (byte {exc.start}); "
                            f"save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"topology file {shown} is not valid TOML: {_one_line(str(exc))}") from None


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _has_control(text: str) -> bool:
    """True if ``text`` holds a control character or anything a config parser or ``splitlines`` could read as
    the end of a line."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value that cannot even be shown is still named by its type
        text = f"<{_type_name(value)}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if not text.isprintable():
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_path(path: Any) -> str:
    text = str(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
