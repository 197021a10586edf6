"""The provider interface: what the drill runner, the fault packages and the checkers' ground-truth dump use of a
running topology, extracted from what ``tradedrill.local.LocalStack`` has always exposed (it is the reference
implementation and satisfies these protocols unchanged).

A node handle (``NodeHandle``) is what a fault hurts: ``kill`` (SIGKILL), ``terminate`` (SIGTERM, then SIGKILL),
``pause``/``resume`` (SIGSTOP/SIGCONT locally, the cgroup freezer in a container), ``start``/``restart``,
``wait_ready``, its ``address``/``port`` and its log (``log_path``, ``log_tail``). It is also a supervisor's
``Program`` (``reference.supervisor``): ``returncode``, ``pid``, ``stop``.

A stack (``Stack``) is the running topology: its nodes by name and kind, the clients of its services (Redis through
the Sentinels, one Redis node, a broker's admin handle, ClickHouse, PostgreSQL), who holds the engines' lease, and
the lifecycle (``up``, ``down``, ``stop_kind``, ``start_engines``). ``capabilities`` names the kinds of fault the
provider can inject; a scenario step whose fault needs one it lacks is skipped and listed as such in the report
(``missing_capabilities``), never dropped silently.

A provider whose stores outlive a run (the external provider: the deployment's RTS holds every earlier run's
signals) also offers ``this_runs_signal(signal_id) -> bool``; the ground-truth dump (``rts.json``) then keeps only
this run's signals. Without it (local, docker: the stack is started for the run) all of RTS is judged: a signal
there that nobody sent is a phantom.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

# every kind of fault mechanism a provider may offer
CAPABILITIES = {
    "process": "kill, terminate, restart a node (SIGKILL/SIGTERM locally, docker kill/stop in a container)",
    "pause": "freeze a node (SIGSTOP locally, the cgroup freezer of docker pause)",
    "kernel-net": "nftables rules between node addresses (partitions, UDP loss, link down)",
    "node-disconnect": "a node cut off entirely (docker network disconnect/connect; nftables drop locally)",
    "node-files": "damage a node's files (journal, settings, AOF) where the harness can write them",
    "fault-proxy": "toxics on the TCP/UDP links through a Toxiproxy-compatible proxy",
    "broker-admin": "the MT5 simulators' admin endpoint (lost replies, requotes, outages)",
    "disk": "a tmpfs of the engine's own to fill",
}

# the mechanisms each fault package needs (a fault not named here needs the node's process and its files)
FAULT_NEEDS: dict[str, frozenset[str]] = {
    "process-kill": frozenset({"process"}),
    "process-terminate": frozenset({"process"}),
    "process-pause": frozenset({"pause"}),
    "broker-lose-reply": frozenset({"broker-admin"}),
    "broker-latency": frozenset({"broker-admin"}),
    "broker-behaviour": frozenset({"broker-admin"}),
    "node-isolate": frozenset({"kernel-net"}),
    "node-disconnect": frozenset({"node-disconnect"}),
    "redis-primary-isolated": frozenset({"kernel-net"}),
    "redis-partition": frozenset({"kernel-net"}),
    "redis-failover": frozenset(),                      # Redis commands only: any provider that reaches Redis
    "duckdb-corrupt": frozenset({"node-files"}),
    "duckdb-crash-corrupt": frozenset({"node-files", "process"}),
    "disk-fill": frozenset({"disk"}),
    "redis-all-down": frozenset({"process"}),
    "config-corrupt": frozenset({"node-files", "process"}),
    "redis-aof-damaged": frozenset({"node-files", "process"}),
    "postgres-restore": frozenset({"process", "node-files"}),
    "udp-loss": frozenset({"kernel-net"}),
    "udp-blackhole": frozenset({"kernel-net"}),
    "tick-cut": frozenset({"kernel-net"}),
    "ea-network-down": frozenset({"kernel-net"}),
    "udp-loss-proxy": frozenset({"fault-proxy"}),
    "udp-dup-reorder": frozenset({"fault-proxy"}),
    "webhook-cut": frozenset({"kernel-net"}),
    "clickhouse-data-lost": frozenset(),                # SQL on ClickHouse only (TRUNCATE, ALTER ... DELETE)
}
DEFAULT_NEEDS = frozenset({"process", "node-files"})


@runtime_checkable
class NodeHandle(Protocol):
    """One node of a running topology, whatever runs it."""

    name: str
    role: str
    address: str
    port: int
    log_path: Path
    extra: dict

    @property
    def pid(self) -> int | None: ...
    @property
    def returncode(self) -> int | None: ...
    def is_alive(self) -> bool: ...
    def start(self) -> Any: ...
    def wait_ready(self, timeout: float | None = None) -> Any: ...
    def kill(self, timeout: float = 10.0) -> None: ...
    def terminate(self, timeout: float = 10.0) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def restart(self, ready: bool = True) -> Any: ...
    def stop(self) -> None: ...
    def log_tail(self, lines: int = 15) -> str: ...
    def describe(self) -> dict: ...


@runtime_checkable
class Stack(Protocol):
    """The running topology a drill receives (Locust's ``Environment``)."""

    provider: str
    capabilities: frozenset[str]
    topology: Any
    run_dir: Path
    nodes: Mapping[str, NodeHandle]
    timings: dict[str, float]
    engine_config: dict | None

    # lifecycle
    def up(self) -> "Stack": ...
    def down(self) -> list[str]: ...
    def stop_kind(self, kind: str) -> list[str]: ...
    def start_engines(self) -> None: ...
    # nodes
    def node(self, name: str) -> NodeHandle: ...
    def of_kind(self, kind: str) -> dict[str, NodeHandle]: ...
    @property
    def brokers(self) -> dict[str, NodeHandle]: ...
    @property
    def engines(self) -> dict[str, NodeHandle]: ...
    @property
    def supervised_kinds(self) -> frozenset[str]: ...
    def active_engine(self, group: str | None = None) -> NodeHandle: ...
    def redis_primary_node(self, timeout: float = 0.5) -> NodeHandle: ...
    # clients of the services
    @property
    def master_name(self) -> str: ...
    @property
    def engine_group(self) -> str: ...
    @property
    def harness_credential(self) -> Any: ...
    def sentinel_addresses(self) -> list[tuple[str, int]]: ...
    def sentinel(self, timeout: float = 0.5) -> Any: ...
    def redis(self, timeout: float = 0.5) -> Any: ...
    def redis_node_client(self, name: str, timeout: float = 0.5) -> Any: ...
    def redis_primary(self, timeout: float = 0.5) -> tuple[str, int] | None: ...
    def wait_for_new_primary(self, old: tuple[str, int], timeout: float) -> tuple[str, int]: ...
    def broker_admin(self, name: str) -> Any: ...
    def lease_holder(self, group: str | None = None) -> str | None: ...


def missing_capabilities(fault: str, capabilities: Iterable[str]) -> list[str]:
    """The mechanisms fault package ``fault`` needs that a provider with ``capabilities`` lacks (sorted)."""
    return sorted(FAULT_NEEDS.get(fault, DEFAULT_NEEDS) - set(capabilities))


def interface_gaps(obj: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (a provider's conformance, checked by the tests)."""
    names = [n for n in dir(protocol) if not n.startswith("_")]
    names += list(getattr(protocol, "__annotations__", {}))
    return sorted({n for n in names if not hasattr(obj, n)})
