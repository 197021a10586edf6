"""The local provider: every node of a topology as its own OS process on its own loopback address.

``LocalStack`` is the running topology object that scenarios, faults and checkers receive (Locust's
``Environment`` is the model): it knows every node handle, the run folder, and how to reach each service.

    with LocalStack(Topology.default(subnet="127.0.2"), run_dir) as stack:
        stack.node("redis-1").kill()
        stack.wait_for_new_primary(old=("127.0.2.2", 6379), timeout=10)

Every node is built by its service module (``tradedrill/services/<service>.py``, testcontainers' ``modules/`` are
the model); ``options`` passes per-kind options to those builders:

    LocalStack(Topology.default(services=("redis", "mt5", "engine")), run_dir,
               options={"mt5": {"seed": 7},
                        "engine": {"overrides": {"heartbeat_s": 0.5}, "command": (...), "env": {...},
                                   "supervise": True, "state_tmpfs_mb": 32}})

``state_tmpfs_mb`` (root only) mounts a tmpfs of that size over each engine's state dir before its first start and
undoes it in ``down`` (the disk-full drill fills it; ``tradedrill.services.engine``).

``up`` starts, in order: Redis (and ClickHouse, PostgreSQL and the brokers, all at once), the replicas linked, the
Sentinels agreeing on the primary, then the engines: the config ``<run_dir>/engine.json`` is written, ``engine-a``
starts and takes the lease (A is the first active), then ``engine-b``. Engines run under
``reference.supervisor.Supervisor`` with the ENG-3 policy (``POLICIES["engine"]``; events in
``<run_dir>/supervisor.jsonl``) unless ``supervise`` is False; ``down`` stops the supervisor first.

Every config file is rendered from the topology's settings on every ``up``: a run folder never runs with what an
earlier run left in it. ``services`` limits which of the topology's services this stack starts (the engine tests
start only Redis and run their own brokers and engines from the same topology).

Teardown stops every process it started by PID, also when the body raises or the user presses Ctrl-C; a second
``up`` in the same run folder first reaps what a crashed earlier run left (PID and start time both checked).

Access (docs/SECURITY.md): the run folder is private (0700; its state files 0600) and holds the run's generated
passwords in ``secrets/`` (``tradedrill.credentials.StackSecrets``: ``stack.secrets``). Every client this class
hands out logs in: ``redis()``, ``sentinel()``, ``lease_holder()`` as the harness's Redis user,
``clickhouse_client()`` with ClickHouse's password, ``postgres_dsn()`` names libpq's password file; the engines log in
as their own user (``engine.json`` names their password file, not the password).
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import psutil
import redis

from reference.engine.contract import Keys, lease_instance
from reference.mt5.simclient import SimulatorAdmin
from reference.supervisor import POLICIES, RestartPolicy, Supervisor
from tradedrill.credentials import Credential, StackSecrets, private_dir, write_private
from tradedrill.process import (NodeStartError, PidRegistry, ProcessNode, StackIndex, SubnetBusy, same_process_alive,
                                stop_all)
from tradedrill.services import clickhouse, mt5sim, postgres
from tradedrill.services import backend as backend_svc
from tradedrill.services import ea as ea_svc
from tradedrill.services import nginx as nginx_svc
from tradedrill.services import engine as engine_svc
from tradedrill.services import redis as redis_svc
from tradedrill.topology import NodeSpec, Topology
from tradedrill.waiting import DeadlineExceeded, wait_until

# kind -> build_node(spec, topo, run_dir, registry, **options) -> ProcessNode
_BUILDERS: dict[str, Callable[..., ProcessNode]] = {
    "redis": redis_svc.build_node,
    "sentinel": redis_svc.build_node,
    "clickhouse": clickhouse.build_node,
    "postgres": postgres.build_node,
    "mt5": mt5sim.build_node,
    "engine": engine_svc.build_node,
    "ea": ea_svc.build_node,
    "backend": backend_svc.build_node,
    "nginx": nginx_svc.build_node,
}
# the kinds of node each service of a topology has
SERVICE_KINDS: dict[str, tuple[str, ...]] = {
    "redis": ("redis", "sentinel"), "clickhouse": ("clickhouse",), "postgres": ("postgres",), "mt5": ("mt5",),
    "engine": ("engine",), "ea": ("ea",), "backend": ("backend", "nginx"),
}
# the options each kind understands (LocalStack's ``options``); every kind also takes ``supervise``
_OPTIONS: dict[str, frozenset[str]] = {
    "mt5": frozenset({"seed", "config_file", "behaviour", "server_name", "ready_timeout"}),
    "engine": frozenset({"command", "env", "overrides", "state_tmpfs_mb"}),
    # detached_supervisor: the EAs' EA-1 supervisor as a process of its own (``tradedrill up``, which exits)
    "ea": frozenset({"command", "overrides", "detached_supervisor"}),
    # detached_supervisor: the backends' BE-1 supervisor as a process of its own (``tradedrill up``, which exits)
    "backend": frozenset({"command", "overrides", "detached_supervisor"}),
}
# the restart policy of ``supervise: True`` per kind, and which kinds are supervised unless told otherwise
_POLICY_OF_KIND: dict[str, RestartPolicy] = {"engine": POLICIES["engine"], "ea": POLICIES["ea"],  # ENG-3, EA-1
                                             "backend": POLICIES["backend"]}  # BE-1
_SUPERVISED_BY_DEFAULT = frozenset({"engine", "ea", "backend"})


class StackError(RuntimeError):
    """The stack cannot come up (or be reached); the message says why and what to do."""


def port_holder(address: str, port: int) -> str | None:
    """Describe the process listening on ``address:port`` (or on the wildcard address), if any."""
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.laddr.ip not in (address, "0.0.0.0", "::"):
            continue
        if conn.pid is None:
            return "an unknown process"
        try:
            p = psutil.Process(conn.pid)
            return f"pid {conn.pid} ({' '.join(p.cmdline()[:4]) or p.name()})"
        except psutil.Error:
            return f"pid {conn.pid}"
    return None


def check_port_free(spec: NodeSpec) -> None:
    ports = [spec.port, *spec.ports.values()]
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((spec.address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                holder = port_holder(spec.address, port) or "another process"
                raise StackError(
                    f"{spec.name} cannot listen on {spec.address}:{port}: it is held by {holder}. "
                    f"Stop that process, run `tradedrill down`, or choose another subnet with --subnet."
                ) from None


def _port_free(spec: NodeSpec) -> bool:
    try:
        check_port_free(spec)
        return True
    except StackError:
        return False


class LocalStack:
    """The running topology. ``options`` maps a node kind to the options of its builder (see the module
    docstring); ``services`` limits which of the topology's services ``up`` starts (default: all of them).
    It is the ``local`` provider of ``tradedrill.providers`` (the interface in ``tradedrill.providers.base``)."""

    provider = "local"
    # every fault mechanism: the harness owns the processes, their files and the loopback addresses
    capabilities = frozenset({"process", "pause", "kernel-net", "node-files", "fault-proxy", "broker-admin", "disk",
                              "node-disconnect"})

    def __init__(self, topology: Topology, run_dir: Path | str, options: dict[str, dict] | None = None,
                 services: Iterable[str] | None = None, before_engines: Callable[["LocalStack"], None] | None = None):
        # before_engines(stack): called once every other node serves and before the engines start (a drill stores
        # the broker logins in PostgreSQL there: the engines read them at start, PG-1)
        self.before_engines = before_engines
        self.topology = topology
        self.run_dir = Path(run_dir).resolve()
        self.registry = PidRegistry(self.run_dir / "pids.json")
        self.index = StackIndex()
        self.nodes: dict[str, ProcessNode] = {}
        self.timings: dict[str, float] = {}
        self.options = _check_options(options)
        if isinstance(services, str):
            raise StackError(f"services must be a list of service names like ['redis'], not the string {services!r}")
        chosen = tuple(topology.services if services is None else services)
        unknown = [s for s in chosen if s not in topology.services]
        if unknown:
            raise StackError(f"service(s) {unknown} are not in this topology; it has {list(topology.services)}")
        self.services = chosen
        # one supervisor per supervised kind (stopping the engines must not stop a supervised broker)
        self.supervisors: dict[str, Supervisor] = {}
        self.engine_config: dict | None = None
        self._secrets: StackSecrets | None = None

    @staticmethod
    def drill_topology(subnet: str, services: Iterable[str], overrides: dict | None = None) -> Topology:
        """The topology a drill of this provider runs: the documents' topology on a loopback subnet."""
        return Topology.default(subnet=subnet, services=services, overrides=overrides)

    @property
    def secrets(self) -> StackSecrets:
        """The run folder's passwords (made on first use, kept for the folder's later runs)."""
        if self._secrets is None:
            self._secrets = StackSecrets.ensure(self.run_dir)
        return self._secrets

    @property
    def harness_credential(self) -> Credential:
        """The harness's Redis and Sentinel user."""
        return self.secrets.harness

    # -- what this stack runs ----------------------------------------------------------------------------------
    def _specs(self) -> list[NodeSpec]:
        kinds = {k for s in self.services for k in SERVICE_KINDS[s]}
        return [spec for spec in self.topology.nodes if spec.kind in kinds]

    def _policy(self, kind: str) -> RestartPolicy | None:
        """The restart policy of a kind's nodes, or None when they are not supervised. ``supervise`` is True
        (the kind's policy: ENG-3 for engines, BE-1 ``backend`` for the others), False, a policy name of
        ``reference.supervisor.POLICIES`` or a ``RestartPolicy``."""
        choice = self.options.get(kind, {}).get("supervise", kind in _SUPERVISED_BY_DEFAULT)
        if choice is True:
            return _POLICY_OF_KIND.get(kind, POLICIES["backend"])
        if not choice:
            return None
        return choice if isinstance(choice, RestartPolicy) else POLICIES[choice]

    @property
    def supervisor(self) -> Supervisor | None:
        """The engines' supervisor (None when the engines are not supervised or not running)."""
        return self.supervisors.get("engine")

    @property
    def supervised_kinds(self) -> frozenset[str]:
        """The kinds whose nodes a supervisor restarts (a fault on them is healed by the supervisor)."""
        return frozenset(k for k in {s.kind for s in self._specs()} if self._policy(k) is not None)

    @property
    def engine_config_path(self) -> Path:
        return self.run_dir / "engine.json"

    def _build(self, spec: NodeSpec) -> ProcessNode:
        opts = {k: v for k, v in self.options.get(spec.kind, {}).items() if k not in ("supervise", "detached_supervisor")}
        if spec.kind == "engine":
            return engine_svc.build_node(spec, self.topology, self.run_dir, self.registry,
                                         config_path=self.engine_config_path, command=opts.get("command"),
                                         env=opts.get("env"),
                                         state_tmpfs_bytes=int(opts.get("state_tmpfs_mb") or 0) << 20)
        return _BUILDERS[spec.kind](spec, self.topology, self.run_dir, self.registry, **opts)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def up(self) -> "LocalStack":
        specs = self._specs()
        private_dir(self.run_dir)
        try:  # what a crashed or SIGKILLed run left on this subnet, wherever its run folder was
            leftovers = self.index.claim(self.topology.subnet, self.registry, self.run_dir)
        except SubnetBusy as exc:
            raise StackError(str(exc)) from None
        leftovers += self.registry.reap_leftovers(describe=True)
        if leftovers:
            print(f"tradedrill: stopped {len(leftovers)} process(es) left by an earlier run: {', '.join(leftovers)}")
        self.nodes = {}
        self._secrets = StackSecrets.ensure(self.run_dir)
        for spec in specs:
            self.nodes[spec.name] = self._build(spec)
        self._check_ports([s for s in specs if s.port], bool(leftovers))
        write_private(self.run_dir / "topology.json", json.dumps(self.topology.to_dict(), indent=2))
        if any(s.kind == "engine" for s in specs):
            overrides = self.options.get("engine", {}).get("overrides")
            # the engine's user and the file of its password; the password itself stays in secrets/
            self.engine_config = engine_svc.engine_config(self.topology, overrides, self.secrets)
            write_private(self.engine_config_path, json.dumps(self.engine_config, indent=2))
        previous = signal.getsignal(signal.SIGTERM)
        started = time.monotonic()
        try:
            # a SIGTERM while starting must reach our cleanup, like Ctrl-C does
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
            self._start_all()
            self.timings["ready_s"] = time.monotonic() - started
        except BaseException:
            self.down()
            raise
        finally:
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._write_state()
        return self

    def _check_ports(self, listening: list[NodeSpec], reaped: bool) -> None:
        """Every listening node's address and port is free here (a provider whose nodes have their own hosts
        skips this)."""
        if reaped:  # the kernel may take a moment to release the sockets of the processes just killed
            try:
                wait_until(lambda: all(_port_free(s) for s in listening), 5.0,
                           "the ports of the reaped processes to be released")
            except TimeoutError:
                pass  # check_port_free below names the holder
        for spec in listening:
            check_port_free(spec)

    def _start_all(self) -> None:
        timeout = float(self.topology.settings["ready.timeout_s"])
        kinds = {s.name: s.kind for s in self.topology.nodes}
        # Sentinels start once the replicas are linked: a Sentinel learns replicas from the primary's INFO,
        # which it reads once at connect and then only every 10 s. Engines start once Redis and the brokers serve.
        detached = [n for n in self.nodes.values() if kinds[n.name] == "ea" and self._ea_detached()]
        detached_backends = [n for n in self.nodes.values()
                             if kinds[n.name] == "backend" and self._detached("backend")]
        detached += detached_backends
        first = [n for n in self.nodes.values() if kinds[n.name] not in ("sentinel", "engine") and n not in detached]
        sentinels = [n for n in self.nodes.values() if kinds[n.name] == "sentinel"]
        engines = [n for n in self.nodes.values() if kinds[n.name] == "engine"]
        t0 = time.monotonic()
        self._start_and_wait(first, timeout)
        if sentinels:
            t1 = time.monotonic()
            self.wait_replicas_linked(timeout)
            self._start_and_wait(sentinels, timeout)
            self.wait_sentinels_agree(timeout)
            self.timings["redis_settled_s"] = time.monotonic() - t1
        if engines:
            t2 = time.monotonic()
            if self.before_engines is not None:
                self.before_engines(self)
            self._start_engines(engines, timeout)
            self.timings["engines_settled_s"] = time.monotonic() - t2
        eas = [n for n in detached if n not in detached_backends]
        if eas:  # last: from here on only that process writes pids.json (its EAs' PIDs)
            sup = ea_svc.supervisor_node(eas, self.run_dir, self.registry, ready_timeout=timeout)
            self.nodes[sup.name] = sup
            sup.start().wait_ready(timeout)
        if detached_backends:  # BE-1's supervisor, a process of its own like the EAs' (it records their PIDs)
            sup = backend_svc.supervisor_node(detached_backends, self.run_dir, self.registry, ready_timeout=timeout)
            self.nodes[sup.name] = sup
            sup.start().wait_ready(timeout)
        self.timings["nodes_ready_s"] = time.monotonic() - t0

    def _ea_detached(self) -> bool:
        return self._detached("ea")

    def _detached(self, kind: str) -> bool:
        return bool(self.options.get(kind, {}).get("detached_supervisor")) and self._policy(kind) is not None

    def _start_engines(self, engines: list[ProcessNode], timeout: float) -> None:
        """The first engine (A) takes the lease before the next starts, so A is the first active."""
        for i, node in enumerate(engines):
            t = time.monotonic()
            self._start(node)
            node.wait_ready(timeout)
            if i == 0:
                first = engine_svc.instance_of(self.topology.node(node.name))
                # the live lease only: ``<group>:lease:holder`` may still name A from an earlier run
                wait_until(lambda: self._read_lease(self.engine_group, fallback=False) == first, timeout,
                           f"engine {first} ({node.name}) to take the lease of group {self.engine_group}")
            self.timings[f"{node.name}_ready_s"] = time.monotonic() - t

    def _start(self, node: ProcessNode) -> None:
        """Start a node, under its kind's supervisor when that kind is supervised."""
        kind = _kind(node)
        policy = self._policy(kind)
        if policy is None:
            node.start()
            return
        if kind not in self.supervisors:
            self.supervisors[kind] = Supervisor(events_path=self.run_dir / "supervisor.jsonl")
        on_exit = None
        if kind == "engine":  # crash handoff: the lease is released as soon as the dead engine is reaped
            on_exit = engine_svc.release_on_exit(self.topology.node(node.name), self.run_dir,
                                                 self.engine_config_path)
        # a node may bring its own health probe (the backend's GET /health, BE-1's check every 3 s)
        self.supervisors[kind].add(node, policy, health=node.extra.get("health"), on_exit=on_exit)

    def _start_and_wait(self, nodes: list[ProcessNode], timeout: float) -> None:
        for node in nodes:
            self._start(node)
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futures = {n.name: pool.submit(_timed, n.wait_ready, timeout) for n in nodes}
            for name, fut in futures.items():
                self.timings[f"{name}_ready_s"] = fut.result()

    def _replica_specs(self) -> list[NodeSpec]:
        return [s for s in self.topology.of_kind("redis") if s.role == "replica"]

    def wait_replicas_linked(self, timeout: float) -> None:
        def linked() -> bool:
            for spec in self._replica_specs():
                c = redis_svc.client(spec.address, spec.port, credential=self.harness_credential)
                try:
                    if c.info("replication").get("master_link_status") != "up":
                        return False
                finally:
                    c.close()
            return True

        wait_until(linked, timeout, "Redis replicas to link to the primary")

    def wait_sentinels_agree(self, timeout: float) -> None:
        """Every Sentinel knows the primary, both replicas and the other Sentinels: before that, a killed
        primary cannot be failed over (no quorum of Sentinels that know each other)."""
        replicas = len(self._replica_specs())
        sentinels = self.topology.of_kind("sentinel")

        def agree() -> bool:
            for spec in sentinels:
                view = redis_svc.sentinel_view(spec.address, spec.port, self.master_name,
                                               credential=self.harness_credential)
                if int(view.get("num-slaves", 0)) < replicas:
                    return False
                if int(view.get("num-other-sentinels", 0)) < len(sentinels) - 1:
                    return False
            return True

        wait_until(agree, timeout, "every Sentinel to know the primary, its replicas and the other Sentinels")

    def wait_replication_settled(self, timeout: float) -> tuple[str, int]:
        """Wait until the replication is at rest and return the primary ``(host, port)``: every Sentinel names the
        same primary, runs no failover and last saw every replica as one (``services.redis.sentinel_unsettled``),
        and every other Redis node is its replica with a link up.

        A planned failover (``SENTINEL FAILOVER``) ordered before that may be run by a Sentinel that still names
        the previous primary, or may pick a replica still in its full resync after the last change. Raises
        DeadlineExceeded naming what was not at rest after ``timeout`` seconds."""
        sentinels = self.topology.of_kind("sentinel")
        nodes = self.topology.of_kind("redis")
        seen: dict[str, object] = {}

        def settled() -> tuple[str, int] | None:
            primary = self.redis_primary()
            if primary is None:
                seen["why"] = "no Sentinel answers"
                return None
            for spec in sentinels:
                c = redis_svc.client(spec.address, spec.port, credential=self.harness_credential)
                try:
                    why = redis_svc.sentinel_unsettled(c, self.master_name, primary)
                finally:
                    c.close()
                if why:
                    seen["why"] = f"{spec.name} {why}"
                    return None
            for spec in nodes:
                if (spec.address, spec.port) == primary:
                    continue
                c = redis_svc.client(spec.address, spec.port, credential=self.harness_credential)
                try:
                    info = c.info("replication")
                finally:
                    c.close()
                if (info.get("role") != "slave" or (info.get("master_host"), int(info.get("master_port", 0))) != primary
                        or info.get("master_link_status") != "up"):
                    seen["why"] = f"{spec.name} is not a linked replica of {primary}"
                    return None
            return primary

        try:
            return wait_until(settled, timeout, "the replication to be at rest")
        except DeadlineExceeded as exc:
            raise DeadlineExceeded(f"{exc} ({seen.get('why', 'no answer')})") from exc

    def start_engines(self) -> None:
        """Start the engines again after ``stop_kind("engine")`` (under a new supervisor, A first), e.g. on state a
        harness reset between two examples of the stateful test (``scenarios.stateful``)."""
        engines = [n for n in self.nodes.values() if _kind(n) == "engine"]
        self._start_engines(engines, float(self.topology.settings["ready.timeout_s"]))

    def start_kind(self, kind: str, timeout: float) -> None:
        """Start every node of ``kind`` again after ``stop_kind(kind)``, under its kind's supervisor as ``up()``
        starts it, and wait ``timeout`` s for each to be ready (the stateful test restarts an EA this way when it
        did not reach its broker after a reset). Raises NodeStartError / DeadlineExceeded like ``up()``."""
        nodes = [n for n in self.nodes.values() if _kind(n) == kind]
        for node in nodes:
            self._start(node)
        for node in nodes:
            node.wait_ready(timeout)

    def stop_kind(self, kind: str) -> list[str]:
        """Stop every node of ``kind`` for good (its supervisor first, so nothing restarts them); returns
        teardown errors. The drills stop the engines this way before they dump the ground truth."""
        errors = self._stop_supervisor(kind)
        errors += stop_all([n for n in reversed(list(self.nodes.values())) if _kind(n) == kind])
        return errors

    def _stop_supervisor(self, kind: str) -> list[str]:
        sup = self.supervisors.pop(kind, None)
        if sup is None:
            return []
        try:
            sup.stop()  # stops watching, then stops every node it watched by its own handle
        except Exception as exc:  # noqa: BLE001 - teardown goes on
            return [f"supervisor of {kind}: {exc!r}"]
        return []

    def down(self) -> list[str]:
        """Stop every node (supervisors first, engines before the services they use); returns teardown errors."""
        errors: list[str] = []
        for kind in sorted(self.supervisors, key=lambda k: k != "engine"):
            errors += self._stop_supervisor(kind)
        errors += stop_all(reversed(list(self.nodes.values())))
        for node in self.nodes.values():   # each engine's state dir tmpfs (state_tmpfs_mb), by its own handle
            if _kind(node) == "engine":
                errors += engine_svc.unmount_state(node)
        # anything recorded but not in self.nodes (an adopting `down` from another process)
        self.registry.reap_leftovers()
        self.index.release(self.registry)
        state = self.run_dir / "stack.json"
        if state.exists():
            state.unlink()
        return errors

    def __enter__(self) -> "LocalStack":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def _write_state(self) -> None:
        doc = {
            "topology": self.topology.to_dict(),
            "services": list(self.services),
            "nodes": {name: {**n.describe(), "create_time": n.create_time} for name, n in self.nodes.items()},
            "supervised": sorted(set(self.supervisors) | ({"ea"} if ea_svc.SUPERVISOR_NAME in self.nodes else set())
                                 | ({"backend"} if backend_svc.SUPERVISOR_NAME in self.nodes else set())),
            "timings": self.timings,
        }
        if self.engine_config is not None:
            doc["engine_config"] = str(self.engine_config_path)
        write_private(self.run_dir / "stack.json", json.dumps(doc, indent=2))

    # -- access ----------------------------------------------------------------------------------------------
    def node(self, name: str) -> ProcessNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {sorted(self.nodes)}") from None

    def of_kind(self, kind: str) -> dict[str, ProcessNode]:
        """The running stack's nodes of ``kind``, by name, in topology order."""
        return {name: n for name, n in self.nodes.items() if _kind(n) == kind}

    @property
    def brokers(self) -> dict[str, ProcessNode]:
        """The MT5 simulators by node name (``mt5-primary``, ``mt5-backup``)."""
        return self.of_kind("mt5")

    @property
    def engines(self) -> dict[str, ProcessNode]:
        """The engine instances by node name (``engine-a``, ``engine-b``)."""
        return self.of_kind("engine")

    @property
    def master_name(self) -> str:
        return self.topology.master_name

    @property
    def engine_group(self) -> str:
        """The engines' group: the ``group`` override of the engine options, else the ``engine.group`` setting."""
        overrides = self.options.get("engine", {}).get("overrides") or {}
        return str(overrides.get("group") or self.topology.settings["engine.group"])

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(s.address, s.port) for s in self.topology.of_kind("sentinel")]

    def sentinel(self, timeout: float = 0.5):
        """A Sentinel-aware client logged in as the harness (on the Sentinels and on the Redis nodes)."""
        return redis_svc.sentinel_client(self.sentinel_addresses(), timeout, self.harness_credential)

    def redis_node_client(self, name: str, timeout: float = 0.5) -> redis.Redis:
        """A client of one Redis node or Sentinel by name (``redis-2``, ``sentinel-1``), logged in as the
        harness."""
        spec = self.topology.node(name)
        if spec.kind not in ("redis", "sentinel"):
            raise KeyError(f"{name} is not a Redis node or Sentinel")
        return redis_svc.client(spec.address, spec.port, timeout, self.harness_credential)

    def redis(self, timeout: float = 0.5) -> redis.Redis:
        """A client of the current primary through the Sentinels, with explicit socket timeouts and no hidden
        retries: an operation during a failover fails fast (and the next one finds the new primary)."""
        return self.sentinel(timeout).master_for(self.master_name, socket_timeout=timeout,
                                                 socket_connect_timeout=timeout)

    def redis_primary(self, timeout: float = 0.5) -> tuple[str, int] | None:
        """The primary as a majority of the reachable Sentinels report it; None if none answers."""
        return sentinel_primary(self.sentinel_addresses(), self.master_name, timeout, self.harness_credential)

    def redis_primary_node(self, timeout: float = 0.5) -> ProcessNode:
        """The node the Sentinels name as the primary now."""
        primary = self.redis_primary(timeout)
        for node in self.of_kind("redis").values():
            if (node.address, node.port) == primary:
                return node
        raise StackError(f"no Redis node of this stack is the primary the Sentinels name ({primary}); "
                         f"are the Sentinels reachable?")

    def wait_for_new_primary(self, old: tuple[str, int], timeout: float) -> tuple[str, int]:
        return wait_until(
            lambda: (p := self.redis_primary()) and p != old and p, timeout, f"Sentinels to promote a primary other than {old}"
        )

    def broker_admin(self, name: str) -> SimulatorAdmin:
        """An admin handle of broker ``name`` (behaviour, ledger); the caller closes it."""
        spec = self.topology.node(name)
        if spec.kind != "mt5":
            raise KeyError(f"{name} is not a broker; brokers: {[s.name for s in self.topology.of_kind('mt5')]}")
        return mt5sim.admin(spec, run_dir=self.run_dir)  # with its admin token, from this run folder

    def lease_holder(self, group: str | None = None) -> str | None:
        """The engine instance holding the lease of ``group`` (default: the engines' group) as Redis says now:
        ``<group>:lease``, else the last holder ``<group>:lease:holder``; None when nobody holds it or Redis does
        not answer."""
        return self._read_lease(group or self.engine_group, fallback=True)

    def _read_lease(self, group: str, fallback: bool) -> str | None:
        keys = Keys(group=group)
        sentinel = self.sentinel(0.5)
        try:
            r = sentinel.master_for(self.master_name, socket_timeout=0.5, socket_connect_timeout=0.5)
            try:
                value = r.get(keys.lease) or (r.get(keys.lease_holder) if fallback else None)
            finally:
                r.close()
        except redis.RedisError:
            return None
        finally:
            for client in sentinel.sentinels:
                client.close()
        return lease_instance(value)

    def active_engine(self, group: str | None = None) -> ProcessNode:
        """The engine node whose instance holds the lease; ``engine-a`` (the first) when none does."""
        engines = self.engines
        if not engines:
            raise StackError("this stack runs no engine (add the engine service)")
        holder = self.lease_holder(group)
        for name, node in engines.items():
            if holder and engine_svc.instance_of(self.topology.node(name)) == holder:
                return node
        return engines.get("engine-a") or next(iter(engines.values()))

    def clickhouse_client(self, **kwargs):
        """A clickhouse-connect client logged in with the run folder's ClickHouse password."""
        spec = self.topology.node("clickhouse")
        return clickhouse.client(spec.address, spec.ports["http"], self.secrets.clickhouse(), **kwargs)

    def postgres_dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string that names the run folder's password file (not the password)."""
        spec = self.topology.node("postgres")
        return postgres.dsn(spec, dbname, self.secrets.pgpass(spec.address, spec.port))


def _kind(node: ProcessNode) -> str | None:
    return node.extra.get("kind")


def _check_options(options: dict[str, dict] | None) -> dict[str, dict]:
    """Per-kind builder options, checked before anything starts."""
    out: dict[str, dict] = {}
    for kind, opts in (options or {}).items():
        if kind not in _BUILDERS:
            raise StackError(f"options for unknown node kind {kind!r}; kinds: {', '.join(_BUILDERS)}")
        if not isinstance(opts, dict):
            raise StackError(f"options[{kind!r}] must be a dict, not {type(opts).__name__}")
        allowed = _OPTIONS.get(kind, frozenset()) | {"supervise"}
        unknown = sorted(set(opts) - allowed)
        if unknown:
            raise StackError(f"unknown option(s) {unknown} for {kind} nodes; allowed: {sorted(allowed)}")
        supervise = opts.get("supervise", False)
        named = isinstance(supervise, str) and supervise in POLICIES
        if not (isinstance(supervise, (bool, RestartPolicy)) or named):
            raise StackError(f"options[{kind!r}]['supervise'] must be True, False, a RestartPolicy or one of "
                             f"{sorted(POLICIES)}")
        out[kind] = {k: v for k, v in opts.items() if v is not None or k == "supervise"}
    return out


def sentinel_primary(sentinels: list[tuple[str, int]], master_name: str, timeout: float = 0.5,
                     credential: Credential | None = None) -> tuple[str, int] | None:
    votes: dict[tuple[str, int], int] = {}
    for address, port in sentinels:
        c = redis_svc.client(address, port, timeout, credential)
        try:
            host, p = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name)
            votes[(host, int(p))] = votes.get((host, int(p)), 0) + 1
        except Exception:  # noqa: BLE001 - an unreachable Sentinel simply does not vote
            continue
        finally:
            c.close()
    if not votes:
        return None
    return max(votes.items(), key=lambda kv: kv[1])[0]


def _timed(fn, *args) -> float:
    t = time.monotonic()
    fn(*args)
    return time.monotonic() - t


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


# -- a stack started by another process (the CLI's `up` exits and leaves the nodes running) -------------------
def load_state(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "stack.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def probe_health(spec: NodeSpec, run_dir: Path | None = None) -> str:
    """``ok``, ``unhealthy`` or ``down (...)``; the servers are asked with the run folder's credentials."""
    try:
        secrets = StackSecrets.load(run_dir) if run_dir is not None else None
        if spec.kind in ("redis", "sentinel"):
            ok = redis_svc.ping(spec.address, spec.port, credential=secrets.harness if secrets else None)
        elif spec.kind == "clickhouse":
            ok = clickhouse.ping(spec.address, spec.ports["http"], secrets.clickhouse() if secrets else None)
        elif spec.kind == "postgres":
            ok = postgres.ping(spec, secrets.pgpass(spec.address, spec.port) if secrets else None)
        elif spec.kind == "mt5":
            ok = mt5sim.ping(spec)
        elif spec.kind == "engine":  # it serves nothing: healthy once its event log exists
            ok = run_dir is not None and engine_svc.events_path(spec, Path(run_dir)).exists()
        elif spec.kind == "ea":  # healthy when its TCP path sends a frame (a heartbeat every 5 ms)
            ok = ea_svc.ping(spec.address, spec.port)
        elif spec.kind == "backend":
            ok = backend_svc.health_probe(spec.address, spec.port)()
        elif spec.kind == "nginx":
            ok = backend_svc.http_get(spec.address, spec.port, nginx_svc.HEALTH_PATH)[0] == 200
        else:
            ok = False
        return "ok" if ok else "unhealthy"
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        return f"down ({type(exc).__name__})"


def status_rows(run_dir: Path) -> tuple[list[dict], tuple[str, int] | None]:
    state = load_state(run_dir)
    if state is None:
        return [], None
    topo = Topology.from_dict(state["topology"])
    started = set(state.get("services", topo.services))
    kinds = {k for s in started for k in SERVICE_KINDS.get(s, ())}
    secrets = StackSecrets.load(run_dir)
    harness = secrets.harness if secrets else None
    holder = _detached_lease_holder(run_dir, topo, harness) if "engine" in kinds else None
    live_pids = PidRegistry(Path(run_dir) / "pids.json").entries()
    rows = []
    for spec in topo.nodes:
        if spec.kind not in kinds:
            continue
        entry = state["nodes"].get(spec.name, {})
        if spec.kind == "ea" and ea_svc.SUPERVISOR_NAME in state["nodes"]:  # its detached supervisor records it
            entry = live_pids.get(spec.name, {})
        if spec.kind == "backend" and backend_svc.SUPERVISOR_NAME in state["nodes"]:  # likewise (BE-1)
            entry = live_pids.get(spec.name, {})
        alive = bool(entry.get("pid")) and same_process_alive(entry["pid"], entry.get("create_time"))
        role = spec.role
        if spec.kind == "redis" and alive:
            try:
                role = ("primary" if redis_svc.replication_role(spec.address, spec.port, credential=harness) == "master"
                        else "replica")
            except Exception:  # noqa: BLE001
                pass
        if spec.kind == "engine" and alive:
            role = "engine (active)" if holder == engine_svc.instance_of(spec) else "engine (passive)"
        rows.append({
            "name": spec.name, "kind": spec.kind, "role": role,
            "address": f"{spec.address}:{spec.port}" if spec.port else spec.address,
            "pid": entry.get("pid"), "process": "running" if alive else "stopped",
            "health": probe_health(spec, run_dir) if alive else "down",
        })
    for sup_name, sup_role in ((ea_svc.SUPERVISOR_NAME, "EA-1 (restarts the EAs)"),
                               (backend_svc.SUPERVISOR_NAME, "BE-1 (restarts the backends)")):
        sup = state["nodes"].get(sup_name)
        if sup:  # a supervisor that is a process of its own under `up`
            e = live_pids.get(sup_name, {})
            alive = bool(e.get("pid")) and same_process_alive(e["pid"], e.get("create_time"))
            rows.append({"name": sup_name, "kind": "supervisor", "role": sup_role,
                         "address": sup.get("address", ""), "pid": e.get("pid"),
                         "process": "running" if alive else "stopped", "health": "ok" if alive else "down"})
    primary = None
    if "redis" in started:
        primary = sentinel_primary([(s.address, s.port) for s in topo.of_kind("sentinel")], topo.master_name,
                                   credential=harness)
    return rows, primary


def _detached_lease_holder(run_dir: Path, topo: Topology, credential: Credential | None) -> str | None:
    """The engine instance holding the live lease of a stack started by another process, or None."""
    try:
        group = json.loads((Path(run_dir) / "engine.json").read_text()).get("group") or topo.settings["engine.group"]
    except (OSError, ValueError):
        group = topo.settings.get("engine.group", "engine")
    primary = sentinel_primary([(s.address, s.port) for s in topo.of_kind("sentinel")], topo.master_name,
                               credential=credential)
    if primary is None:
        return None
    c = redis_svc.client(*primary, credential=credential)
    try:
        return lease_instance(c.get(Keys(group=str(group)).lease))
    except redis.RedisError:
        return None
    finally:
        c.close()


def down_detached(run_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop a stack started by another process: SIGCONT+SIGTERM each recorded process group, SIGKILL at the
    deadline. Returns the names it stopped. Forgets the stack in the stack index (by its resolved run folder: the
    index records it so), also when none of its processes runs any more."""
    run_dir = Path(run_dir).resolve()
    recorded = (run_dir / "pids.json").exists()
    registry = PidRegistry(run_dir / "pids.json")
    entries = registry.entries()
    stopped = []
    for name, e in entries.items():
        if same_process_alive(e["pid"], e.get("create_time")):
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.killpg(e["pid"], sig)
                except ProcessLookupError:
                    pass
            stopped.append(name)
    try:
        wait_until(
            lambda: not any(same_process_alive(e["pid"], e.get("create_time")) for e in entries.values()),
            timeout, "the stack's processes to exit after SIGTERM",
        )
    except TimeoutError:
        pass
    if recorded:   # a folder with no stack gets no pids.json of ours (`down --dir` of any folder wrote one)
        registry.reap_leftovers()
    StackIndex().release_run_dir(run_dir)
    state = run_dir / "stack.json"
    if state.exists():
        state.unlink()
    return stopped
