"""The external provider (issue 17, item 5): a deployment somebody else runs, reached at the addresses of a
deployment file, hurt only through what reaches it: the Toxiproxy the user put in front of its links and the
brokers' admin endpoints. Nothing is started or stopped; a fault that needs more (a process, a kernel rule, a node's
files) is skipped and listed as such in the report (``provider.json`` -> the report's provider line), never dropped.

The deployment file (TOML; every field checked, a bad one is a one-line ``DeploymentError`` naming it)::

    master_name = "mymaster"          # the Sentinels' name of the Redis group (default mymaster)
    engine_group = "rts"              # optional: the engines' lease group (default: the topology setting)
    secrets = "/srv/stack"            # optional: the folder whose secrets/ hold the harness's Redis login and the
                                      # brokers' admin tokens (a tradedrill run folder); never the passwords here

    [[node]]                          # one per node: name, kind, address, port[, role]
    name = "redis-1"                  # kinds: redis, sentinel, mt5, engine, ea, backend, clickhouse, postgres
    kind = "redis"
    address = "10.0.0.2"
    port = 6379

    [toxiproxy]                       # optional: the user's Toxiproxy (or our fault proxy, which mirrors its API)
    url = "http://127.0.0.1:8474"
    [toxiproxy.proxies]               # proxy name -> the node its upstream is
    "redis-1" = "redis-1"

``ExternalStack`` attaches (``up`` checks that the Sentinels name a primary, without starting anything), offers
the clients of the ``Stack`` protocol (Redis through the Sentinels, one node, the brokers' admin, the lease holder)
and ``capabilities`` from what the file gives: ``fault-proxy`` with a Toxiproxy, ``broker-admin`` with a secrets
folder and brokers. ``link_fault`` makes a toxic on one of the user's proxies (``faults.network``);
``plan(scenario)`` says which of a scenario's faults would run here and which would be skipped, and why.
"""
from __future__ import annotations

import ipaddress
import re
import secrets as secrets_mod
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tradedrill.local import SERVICE_KINDS, LocalStack, StackError
from tradedrill.providers.base import missing_capabilities
from tradedrill.topology import NodeSpec, Topology, TopologyError, check_settings

KINDS = ("redis", "sentinel", "mt5", "engine", "ea", "backend", "nginx", "clickhouse", "postgres")
DEFAULT_ROLE = {"redis": "replica", "sentinel": "sentinel", "mt5": "broker-primary", "engine": "engine",
                "ea": "ea", "backend": "backend", "nginx": "nginx", "clickhouse": "history", "postgres": "credentials"}
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
MAX_NODES = 200
MAX_FILE_BYTES = 1 << 20
TOP_KEYS = {"master_name", "engine_group", "secrets", "node", "toxiproxy"}
NODE_KEYS = {"name", "kind", "address", "port", "role"}   # a simulator's admin calls share its port
LINK_TOXICS = ("latency", "timeout", "reset_peer", "bandwidth", "slow_close", "down")


class DeploymentError(TopologyError):
    """The deployment file is unreadable or a field is wrong; one line naming the field."""


@dataclass
class Deployment:
    """A deployment file, checked (see the module docstring)."""

    path: Path
    nodes: list[NodeSpec]
    master_name: str = "mymaster"
    engine_group: str | None = None
    secrets: Path | None = None
    toxiproxy_url: str | None = None
    proxies: dict[str, str] = field(default_factory=dict)   # proxy name -> node name

    @property
    def services(self) -> tuple[str, ...]:
        kinds = {n.kind for n in self.nodes}
        return tuple(s for s, ks in SERVICE_KINDS.items() if kinds & set(ks))

    def capabilities(self) -> frozenset[str]:
        caps = set()
        if self.toxiproxy_url and self.proxies:
            caps.add("fault-proxy")
            caps.add("node-disconnect")   # every link to the node through the Toxiproxy down (cut_node)
        if self.secrets is not None and any(n.kind == "mt5" for n in self.nodes):
            caps.add("broker-admin")
        return frozenset(caps)

    def topology(self, services: Iterable[str] | None = None, overrides: dict | None = None) -> Topology:
        """The deployment as a ``Topology`` (its addresses as given; ``subnet`` is the first node's /24, used only
        for naming). Raises DeploymentError when a wanted service has no node here."""
        have = self.services
        wanted = tuple(services) if services is not None else have
        missing = [s for s in wanted if s not in have]
        if missing:
            kinds = sorted({n.kind for n in self.nodes})
            raise DeploymentError(f"{self.path}: the drill needs {', '.join(missing)} but the deployment lists no "
                                  f"such node (its nodes' kinds: {', '.join(kinds) or 'none'})")
        settings = check_settings(overrides)
        settings["redis.master_name"] = self.master_name
        if self.engine_group:
            settings["engine.group"] = self.engine_group
        first = self.nodes[0].address
        subnet = first.rsplit(".", 1)[0] if "." in first else "127.0.0"
        return Topology(subnet=subnet, services=tuple(wanted), settings=settings, nodes=list(self.nodes))


def _err(path: Path, where: str, what: str) -> DeploymentError:
    return DeploymentError(f"{path}: {where}: {what}")


def _address(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _err(path, where, f"an IP address as a string, not {type(value).__name__}")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise _err(path, where, f"{value[:60]!r} is not an IP address (names are not resolved: a drill must "
                                f"hurt exactly the addresses it was given)") from None
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise _err(path, where, f"{ip} is an unspecified, broadcast or multicast address, no node's: give the "
                                f"address the node listens on")
    return str(ip)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (passwords are never echoed)."""
    return re.sub(r"(?<=//)[^/@]*@", "***@", url)


def _port(path: Path, where: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise _err(path, where, f"a port {low}-65535, not {str(value)[:40]!r}")
    return value


def _text(path: Path, where: str, value: Any, pattern: re.Pattern = NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _err(path, where, f"lower-case letters, digits and '-' (at most 40), not {str(value)[:60]!r}")
    return value


def load_deployment(path: Path | str) -> Deployment:
    """Read and check a deployment file. Raises DeploymentError (one line) for anything wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DeploymentError(f"{path}: larger than {MAX_FILE_BYTES} bytes; a deployment file lists addresses")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeploymentError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentError(f"{path}: not valid TOML ({str(exc).splitlines()[0][:120]})") from None
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise _err(path, "top level", f"unknown key(s) {', '.join(k[:30] for k in unknown[:5])}; known: "
                                      f"{', '.join(sorted(TOP_KEYS))}")
    master = doc.get("master_name", "mymaster")
    if not isinstance(master, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", master):
        raise _err(path, "master_name", f"letters, digits, '.', '_', '-' (1-64), not {str(master)[:60]!r}")
    group = doc.get("engine_group")
    if group is not None and (not isinstance(group, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", group)):
        raise _err(path, "engine_group", f"letters, digits, '.', '_', '-' (1-64), not {str(group)[:60]!r}")
    secrets = doc.get("secrets")
    if secrets is not None:
        if not isinstance(secrets, str) or not secrets or "\0" in secrets:
            raise _err(path, "secrets", "a folder path as a string")
        secrets = (path.parent / secrets).resolve() if not Path(secrets).is_absolute() else Path(secrets)
        if not secrets.is_dir():
            raise _err(path, "secrets", f"{str(secrets)[:120]} is not a folder")
    nodes_raw = doc.get("node")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise _err(path, "node", "at least one [[node]] table (name, kind, address, port)")
    if len(nodes_raw) > MAX_NODES:
        raise _err(path, "node", f"at most {MAX_NODES} nodes")
    nodes: list[NodeSpec] = []
    names: set[str] = set()
    endpoints: set[tuple[str, int]] = set()
    for i, item in enumerate(nodes_raw):
        where = f"node[{i}]"
        if not isinstance(item, dict):
            raise _err(path, where, "a table with name, kind, address, port")
        extra = sorted(set(item) - NODE_KEYS)
        if extra:
            raise _err(path, where, f"unknown key(s) {', '.join(k[:30] for k in extra[:5])}; known: "
                                    f"{', '.join(sorted(NODE_KEYS))}")
        for key in ("name", "kind", "address", "port"):
            if key not in item:
                raise _err(path, where, f"{key} is missing")
        name = _text(path, f"{where}.name", item["name"])
        if name in names:
            raise _err(path, f"{where}.name", f"{name} appears twice")
        kind = item["kind"]
        if kind not in KINDS:
            raise _err(path, f"{where}.kind", f"one of {', '.join(KINDS)}, not {str(kind)[:40]!r}")
        if kind == "engine" and not re.fullmatch(r"engine-[a-z0-9]+", name):
            raise _err(path, f"{where}.name", f"an engine is named engine-<instance> (engine-a holds instance A), "
                                              f"not {name}")
        address = _address(path, f"{where}.address", item["address"])
        # an engine listens nowhere: port 0
        port = _port(path, f"{where}.port", item["port"], low=0 if kind == "engine" else 1)
        if port and (address, port) in endpoints:
            raise _err(path, f"{where}", f"{address}:{port} is listed twice")
        role = _text(path, f"{where}.role", item.get("role", DEFAULT_ROLE[kind]))
        names.add(name)
        endpoints.add((address, port))
        nodes.append(NodeSpec(name, kind, role, address, port))
    if any(n.kind in ("redis", "sentinel") for n in nodes) and not any(n.kind == "sentinel" for n in nodes):
        raise _err(path, "node", "Redis without a sentinel: the harness finds the primary through the Sentinels")
    url, proxies = None, {}
    tox = doc.get("toxiproxy")
    if tox is not None:
        if not isinstance(tox, dict) or set(tox) - {"url", "proxies"}:
            raise _err(path, "toxiproxy", "a table with url and proxies")
        url = tox.get("url")
        if not isinstance(url, str) or not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]{1,200}/?", url):
            raise _err(path, "toxiproxy.url", f"http://host:port of its API (no user:password@), not "
                                              f"{redact_url(str(url))[:60]!r}")
        raw_proxies = tox.get("proxies", {})
        if not isinstance(raw_proxies, dict):
            raise _err(path, "toxiproxy.proxies", "a table: proxy name = the node its upstream is")
        for pname, node in raw_proxies.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", pname):
                raise _err(path, "toxiproxy.proxies", f"proxy name {pname[:60]!r}: letters, digits, '.', '_', '-'")
            if node not in names:
                raise _err(path, f"toxiproxy.proxies.{pname}", f"{str(node)[:60]!r} is not a node of this file")
            proxies[pname] = node
    return Deployment(path, nodes, master, group, secrets, url, proxies)


class ExternalNode:
    """A node the harness does not run: its address, a reachability probe, and no fault of its own (every
    mechanism raises StackError; the schedule skips those faults before it gets here)."""

    def __init__(self, spec: NodeSpec, run_dir: Path):
        self.spec = spec
        self.name, self.role, self.address, self.port = spec.name, spec.role, spec.address, spec.port
        self.log_path = Path(run_dir) / "logs" / f"{spec.name}.external.log"   # never written: not ours
        self.extra = {"kind": spec.kind, "external": True}
        self.paused = False

    pid = None
    returncode = None

    def is_alive(self) -> bool:
        """Whether its port accepts a TCP connection within 0.5 s (a node without a port, an engine, is taken
        as alive: the checkers judge an engine by what it writes)."""
        if not self.port:
            return True
        try:
            with socket.create_connection((self.address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _refuse(self, what: str) -> None:
        raise StackError(f"{self.name} is not run by the harness (external provider): it cannot {what}")

    def start(self):
        return self

    def wait_ready(self, timeout: float | None = None):
        from tradedrill.waiting import wait_until

        wait_until(self.is_alive, 10.0 if timeout is None else timeout, f"{self.name} at {self.address}:{self.port}")
        return self

    def kill(self, timeout: float = 10.0) -> None:
        self._refuse("be killed")

    def terminate(self, timeout: float = 10.0) -> None:
        self._refuse("be terminated")

    def pause(self) -> None:
        self._refuse("be paused")

    def resume(self) -> None:
        self._refuse("be resumed")

    def restart(self, ready: bool = True):
        self._refuse("be restarted")

    def stop(self) -> None:
        """Teardown: nothing of the user's is stopped."""

    def log_tail(self, lines: int = 15) -> str:
        return "(an external node: its logs are the deployment's)"

    def describe(self) -> dict:
        return {"name": self.name, "role": self.role, "address": self.address, "port": self.port, "pid": None,
                "alive": self.is_alive(), "external": True}


class ExternalStack(LocalStack):
    """The deployment of a file as a ``Stack`` (see the module docstring). Nothing is started or stopped."""

    provider = "external"
    capabilities = frozenset({"fault-proxy", "broker-admin", "node-disconnect"})   # at most; an instance has its file's

    @staticmethod
    def drill_topology(subnet: str, services: Iterable[str], overrides: dict | None = None,
                       deployment: Any = None) -> Topology:
        if deployment is None:
            raise DeploymentError("the external provider needs --deployment FILE (the deployment's addresses)")
        return load_deployment(deployment).topology(services, overrides)

    def __init__(self, topology: Topology, run_dir: Path | str, options: dict[str, dict] | None = None,
                 services: Iterable[str] | None = None, before_engines: Any = None, deployment: Any = None):
        if deployment is None:
            raise DeploymentError("the external provider needs --deployment FILE (the deployment's addresses)")
        super().__init__(topology, run_dir, services=services)
        self.deployment = load_deployment(deployment)
        self.capabilities = self.deployment.capabilities()
        self._toxiproxy = None
        # the deployment outlives the run: its RTSS/RTS/RTRS and the brokers' ledgers hold every earlier run's
        # signals. Every signal id of this run carries this tag (scenarios.workload: <scenario><seed>-<tag>-<n>),
        # so two runs with the same scenario and seed never share an id (a replay of the seed replays the schedule
        # and the signals' content, not their ids)
        self.signal_tag = secrets_mod.token_hex(4)
        if self.deployment.secrets is not None:
            # the deployment's own folder: its secrets, the signals' passphrase and the brokers' tokens are read
            # there (nothing is written to it: no node of it is ours)
            self.run_dir = self.deployment.secrets

    # -- what differs from a stack we run ----------------------------------------------------------------------
    def this_runs_signal(self, signal_id: str) -> bool:
        """Whether ``signal_id`` was sent by this run (it carries ``signal_tag``): the deployment's RTS holds every
        earlier run's signals too, and the ground truth (``rts.json``) keeps only this run's, so the state check
        does not judge an earlier run's executions as phantoms of this one (issue 17)."""
        return f"-{self.signal_tag}-" in str(signal_id)

    @property
    def secrets(self):
        from tradedrill.credentials import StackSecrets

        if self._secrets is None:
            folder = self.deployment.secrets
            found = StackSecrets.load(folder) if folder is not None else None
            if found is None:
                raise StackError(f"{self.deployment.path}: no secrets folder with the harness's login "
                                 f"(set secrets = the deployment's run folder)")
            self._secrets = found
        return self._secrets

    def up(self) -> "ExternalStack":
        """Attach: every node a handle, then the Sentinels must name a primary (StackError otherwise)."""
        self.nodes = {s.name: ExternalNode(s, self.run_dir) for s in self.topology.nodes}
        if self.topology.of_kind("sentinel"):
            primary = self.redis_primary(timeout=1.0)
            if primary is None:
                raise StackError(f"no Sentinel of {self.deployment.path} names a primary for "
                                 f"{self.master_name}: is the deployment up, and is secrets its folder?")
        return self

    def down(self) -> list[str]:
        """Nothing of the user's stops; the faults heal their own toxics. Closes the Toxiproxy client."""
        if self._toxiproxy is not None:
            self._toxiproxy.close()
            self._toxiproxy = None
        return []

    def stop_kind(self, kind: str) -> list[str]:
        return []

    def start_engines(self) -> None:
        """The deployment's engines run already."""

    def broker_admin(self, name: str):
        from tradedrill.services import mt5sim

        spec = self.topology.node(name)
        if spec.kind != "mt5":
            raise KeyError(f"{name} is not a broker")
        if self.deployment.secrets is None:
            raise StackError(f"{self.deployment.path}: no secrets folder: the brokers' admin tokens are unknown")
        return mt5sim.admin(spec, run_dir=self.deployment.secrets)

    def provider_details(self) -> dict:
        d = self.deployment
        return {"deployment": str(d.path), "toxiproxy": d.toxiproxy_url, "proxies": dict(d.proxies),
                "nodes": len(d.nodes)}

    # -- faults through what reaches the deployment ----------------------------------------------------------
    @property
    def toxiproxy(self):
        """A client of the user's Toxiproxy (``faults.network.ToxiproxyAPI``); StackError when the file has none."""
        from faults.network import ToxiproxyAPI

        if not self.deployment.toxiproxy_url:
            raise StackError(f"{self.deployment.path} names no [toxiproxy]")
        if self._toxiproxy is None:
            self._toxiproxy = ToxiproxyAPI(self.deployment.toxiproxy_url)
        return self._toxiproxy

    def link_fault(self, proxy: str, toxic: str, **params: Any):
        """A fault on one of the user's proxies: ``toxic`` one of LINK_TOXICS (latency: latency_ms, jitter_ms;
        timeout: timeout_ms, 0 = a blackhole; reset_peer: timeout_ms; bandwidth: rate_kb_s; slow_close:
        delay_ms; down: the proxy disabled). Inject adds it, heal removes it (``faults.core.Fault``).
        StackError for an unknown proxy or toxic."""
        from faults import network

        if proxy not in self.deployment.proxies:
            raise StackError(f"no proxy {proxy!r} in {self.deployment.path}; proxies: "
                             f"{', '.join(self.deployment.proxies) or 'none'}")
        makers = {"latency": lambda: network.LinkLatency(self.toxiproxy, proxy, params.get("latency_ms", 300),
                                                         params.get("jitter_ms", 0)),
                  "timeout": lambda: network.LinkTimeout(self.toxiproxy, proxy, params.get("timeout_ms", 0)),
                  "reset_peer": lambda: network.ResetPeer(self.toxiproxy, proxy, params.get("timeout_ms", 0)),
                  "bandwidth": lambda: network.Bandwidth(self.toxiproxy, proxy, params.get("rate_kb_s", 1)),
                  "slow_close": lambda: network.SlowClose(self.toxiproxy, proxy, params.get("delay_ms", 1000)),
                  "down": lambda: network.LinkDown(self.toxiproxy, proxy)}
        if toxic not in makers:
            raise StackError(f"toxic {toxic!r}: one of {', '.join(LINK_TOXICS)}")
        return makers[toxic]()

    def cut_node(self, name: str, **kw: Any):
        """The scenario fault ``node-disconnect`` here: node ``name`` cut off from everything that reaches it
        through the user's Toxiproxy, every proxy whose upstream it is disabled (``faults.network.LinkDown``: new
        connections refused, open ones closed); heal enables them. Links that bypass the Toxiproxy are not cut (the
        deployment file says which links pass through it). ``kw``: the fault's log and requirements. Raises
        StackError when no proxy of the file leads to it."""
        from faults import network
        from faults.core import Composite

        proxies = [p for p, node in self.deployment.proxies.items() if node == name]
        if not proxies:
            raise StackError(f"no proxy of {self.deployment.path} leads to {name}: the external provider cuts a "
                             f"node only through the Toxiproxy in front of it")
        fault = Composite([network.LinkDown(self.toxiproxy, p) for p in proxies],
                          description=f"{name}: every link through the Toxiproxy down ({', '.join(proxies)})", **kw)
        fault.name = "node-disconnect"
        return fault

    def plan(self, scenario: Any) -> dict:
        """Which of ``scenario``'s fault steps run here and which are skipped (and the mechanisms they lack):
        ``{"run": [{"fault", "target"}], "skipped": [{"fault", "target", "missing"}]}``."""
        out: dict[str, list[dict]] = {"run": [], "skipped": []}
        for step in scenario.faults:
            missing = missing_capabilities(step.fault, self.capabilities)
            row = {"fault": step.fault, "target": step.target}
            out["skipped" if missing else "run"].append({**row, "missing": missing} if missing else row)
        return out
