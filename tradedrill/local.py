"""The local provider: every node of a topology as its own OS process on its own loopback address.

``LocalStack`` is the running topology object that scenarios, faults and checkers receive (Locust's
``Environment`` is the model): it knows every node handle, the run folder, and how to reach each service.

    with LocalStack(Topology.default(subnet="127.0.2"), run_dir) as stack:
        stack.node("redis-1").kill()
        stack.wait_for_new_primary(old=("127.0.2.2", 6379), timeout=10)

Teardown stops every process it started by PID, also when the body raises or the user presses Ctrl-C; a second
``up`` in the same run folder first reaps what a crashed earlier run left (PID and start time both checked).
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
from typing import Callable

import psutil

from tradedrill.process import NodeStartError, PidRegistry, ProcessNode, same_process_alive, stop_all
from tradedrill.services import clickhouse, postgres
from tradedrill.services import redis as redis_svc
from tradedrill.topology import NodeSpec, Topology
from tradedrill.waiting import wait_until

_BUILDERS: dict[str, Callable] = {
    "redis": redis_svc.build_node,
    "sentinel": redis_svc.build_node,
    "clickhouse": clickhouse.build_node,
    "postgres": postgres.build_node,
}


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
    def __init__(self, topology: Topology, run_dir: Path | str):
        self.topology = topology
        self.run_dir = Path(run_dir).resolve()
        self.registry = PidRegistry(self.run_dir / "pids.json")
        self.nodes: dict[str, ProcessNode] = {}
        self.timings: dict[str, float] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def up(self) -> "LocalStack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        leftovers = self.registry.reap_leftovers()
        if leftovers:
            print(f"tradedrill: stopped {len(leftovers)} process(es) left by an earlier run: {', '.join(leftovers)}")
        for spec in self.topology.nodes:
            self.nodes[spec.name] = _BUILDERS[spec.kind](spec, self.topology, self.run_dir, self.registry)
        if leftovers:  # the kernel may take a moment to release the sockets of the processes just killed
            try:
                wait_until(lambda: all(_port_free(s) for s in self.topology.nodes), 5.0,
                           "the ports of the reaped processes to be released")
            except TimeoutError:
                pass  # check_port_free below names the holder
        for spec in self.topology.nodes:
            check_port_free(spec)
        (self.run_dir / "topology.json").write_text(json.dumps(self.topology.to_dict(), indent=2))
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

    def _start_all(self) -> None:
        timeout = float(self.topology.settings["ready.timeout_s"])
        kinds = {s.name: s.kind for s in self.topology.nodes}
        # Sentinels start once the replicas are linked: a Sentinel learns replicas from the primary's INFO,
        # which it reads once at connect and then only every 10 s
        first = [n for n in self.nodes.values() if kinds[n.name] != "sentinel"]
        second = [n for n in self.nodes.values() if kinds[n.name] == "sentinel"]
        t0 = time.monotonic()
        self._start_and_wait(first, timeout)
        if "redis" in self.topology.services:
            t1 = time.monotonic()
            self.wait_replicas_linked(timeout)
            self._start_and_wait(second, timeout)
            self.wait_sentinels_agree(timeout)
            self.timings["redis_settled_s"] = time.monotonic() - t1
        self.timings["nodes_ready_s"] = time.monotonic() - t0

    def _start_and_wait(self, nodes: list[ProcessNode], timeout: float) -> None:
        for node in nodes:
            node.start()
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futures = {n.name: pool.submit(_timed, n.wait_ready, timeout) for n in nodes}
            for name, fut in futures.items():
                self.timings[f"{name}_ready_s"] = fut.result()

    def _replica_specs(self) -> list[NodeSpec]:
        return [s for s in self.topology.of_kind("redis") if s.role == "replica"]

    def wait_replicas_linked(self, timeout: float) -> None:
        def linked() -> bool:
            for spec in self._replica_specs():
                c = redis_svc.client(spec.address, spec.port)
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
                view = redis_svc.sentinel_view(spec.address, spec.port, self.master_name)
                if int(view.get("num-slaves", 0)) < replicas:
                    return False
                if int(view.get("num-other-sentinels", 0)) < len(sentinels) - 1:
                    return False
            return True

        wait_until(agree, timeout, "every Sentinel to know the primary, its replicas and the other Sentinels")

    def down(self) -> list[str]:
        errors = stop_all(reversed(list(self.nodes.values())))
        # anything recorded but not in self.nodes (an adopting `down` from another process)
        self.registry.reap_leftovers()
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
            "nodes": {name: {**n.describe(), "create_time": n.create_time} for name, n in self.nodes.items()},
            "timings": self.timings,
        }
        (self.run_dir / "stack.json").write_text(json.dumps(doc, indent=2))

    # -- access ----------------------------------------------------------------------------------------------
    def node(self, name: str) -> ProcessNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {sorted(self.nodes)}") from None

    @property
    def master_name(self) -> str:
        return self.topology.master_name

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(s.address, s.port) for s in self.topology.of_kind("sentinel")]

    def sentinel(self, timeout: float = 0.5):
        return redis_svc.sentinel_client(self.sentinel_addresses(), timeout)

    def redis_primary(self, timeout: float = 0.5) -> tuple[str, int] | None:
        """The primary as a majority of the reachable Sentinels report it; None if none answers."""
        return sentinel_primary(self.sentinel_addresses(), self.master_name, timeout)

    def wait_for_new_primary(self, old: tuple[str, int], timeout: float) -> tuple[str, int]:
        return wait_until(
            lambda: (p := self.redis_primary()) and p != old and p, timeout, f"Sentinels to promote a primary other than {old}"
        )

    def clickhouse_client(self, **kwargs):
        spec = self.topology.node("clickhouse")
        return clickhouse.client(spec.address, spec.ports["http"], **kwargs)

    def postgres_dsn(self, dbname: str = "postgres") -> str:
        return postgres.dsn(self.topology.node("postgres"), dbname)


def sentinel_primary(sentinels: list[tuple[str, int]], master_name: str, timeout: float = 0.5) -> tuple[str, int] | None:
    votes: dict[tuple[str, int], int] = {}
    for address, port in sentinels:
        c = redis_svc.client(address, port, timeout)
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


def probe_health(spec: NodeSpec) -> str:
    try:
        if spec.kind in ("redis", "sentinel"):
            ok = redis_svc.ping(spec.address, spec.port)
        elif spec.kind == "clickhouse":
            ok = clickhouse.ping(spec.address, spec.ports["http"])
        elif spec.kind == "postgres":
            ok = postgres.ping(spec)
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
    rows = []
    for spec in topo.nodes:
        entry = state["nodes"].get(spec.name, {})
        alive = bool(entry.get("pid")) and same_process_alive(entry["pid"], entry.get("create_time"))
        role = spec.role
        if spec.kind == "redis" and alive:
            try:
                role = "primary" if redis_svc.replication_role(spec.address, spec.port) == "master" else "replica"
            except Exception:  # noqa: BLE001
                pass
        rows.append({
            "name": spec.name, "kind": spec.kind, "role": role, "address": f"{spec.address}:{spec.port}",
            "pid": entry.get("pid"), "process": "running" if alive else "stopped",
            "health": probe_health(spec) if alive else "down",
        })
    primary = None
    if "redis" in topo.services:
        primary = sentinel_primary([(s.address, s.port) for s in topo.of_kind("sentinel")], topo.master_name)
    return rows, primary


def down_detached(run_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop a stack started by another process: SIGCONT+SIGTERM each recorded process group, SIGKILL at the
    deadline. Returns the names it stopped."""
    registry = PidRegistry(Path(run_dir) / "pids.json")
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
    registry.reap_leftovers()
    state = Path(run_dir) / "stack.json"
    if state.exists():
        state.unlink()
    return stopped
