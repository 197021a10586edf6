"""The MT5 broker simulator (``reference/mt5/``) as a local process: one per ``mt5`` node of the topology.

Started as ``python -m reference.mt5.simcli serve`` (the same command as ``tradedrill mt5sim serve``, without
importing every other area); ready when a ping succeeds over the simulator's protocol. ``admin(spec)`` is the
handle a harness uses to change a running simulator's behaviour and to read its ledger (testcontainers'
``get_client()``).

    node = build_node(topo.node("mt5-primary"), topo, run_dir, registry, seed=7)
    node.start().wait_ready()
    with admin(topo.node("mt5-primary")) as a:
        a.ledger()

Admin token: every simulator gets ``--admin-token-file <state_dir>/admin.token``, a random token
(``secrets.token_urlsafe(32)``, mode 0600) made once per state directory, i.e. per run folder and node. ``admin``
finds it by itself: from ``run_dir`` when given, else from the nodes this process built, else from the stack index
(the run folder of the stack on the node's subnet, for a stack another process started). ``simulator_node``
takes the same default (``<state_dir>/admin.token``) or an explicit ``admin_token_file``; ``admin_token(node)``
reads a node's token for ``SimulatorAdmin(host, port, token=...)``.

Options of ``build_node`` (``LocalStack(..., options={"mt5": {...}})``): ``seed``, ``config_file``,
``behaviour``, ``server_name`` (default: the node's name), ``ready_timeout``. The broker's durable state (journal
and snapshot) lives in ``<run_dir>/brokers/<node>`` and survives restarts within and across runs; its log is
``<run_dir>/logs/<node>.log``. ``simulator_node(...)`` starts a lone simulator outside any topology (the MT5
tests and the benchmark).
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from reference.mt5.simclient import AdminTokenError, SimulatorAdmin, is_ready, read_admin_token, write_admin_token
from tradedrill.process import PidRegistry, ProcessNode, StackIndex
from tradedrill.topology import NodeSpec, Topology

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN_NAME = "admin.token"

# (address, port) -> the admin token file of the simulator this process built there
_TOKEN_FILES: dict[tuple[str, int], Path] = {}
_TOKEN_LOCK = threading.Lock()


def ensure_token_file(path: Path) -> Path:
    """``path`` holding a usable admin token (mode 0600): kept when it has one, else written fresh."""
    path = Path(path)
    with _TOKEN_LOCK:
        try:
            read_admin_token(path, private=True)
        except AdminTokenError:
            write_admin_token(path)
    return path


def simulator_node(
    name: str,
    host: str,
    port: int,
    state_dir: Path,
    *,
    seed: int = 0,
    config_file: Path | None = None,
    behaviour: dict | None = None,
    server_name: str | None = None,
    log_path: Path | None = None,
    role: str = "broker",
    ready_timeout: float = 15.0,
    registry: PidRegistry | None = None,
    admin_token_file: Path | None = None,
    max_connections: int | None = None,
    frame_timeout: float | None = None,
) -> ProcessNode:
    """A simulator listening on ``host:port`` with its state in ``state_dir`` (not started). Its admin token is in
    ``admin_token_file`` (default ``<state_dir>/admin.token``, created 0600 with a random token if missing);
    ``node.extra["admin_token_file"]`` says where. ``max_connections`` and ``frame_timeout`` (seconds from a request
    frame's first byte to its last) bound the server's memory; None keeps the server's defaults (64, 10 s)."""
    state_dir = Path(state_dir)
    token_file = ensure_token_file(Path(admin_token_file) if admin_token_file else state_dir / TOKEN_NAME)
    with _TOKEN_LOCK:
        _TOKEN_FILES[(host, int(port))] = token_file
    argv = [sys.executable, "-m", "reference.mt5.simcli", "serve", "--host", host, "--port", str(port),
            "--state-dir", str(state_dir), "--seed", str(seed), "--admin-token-file", str(token_file)]
    if config_file:
        argv += ["--config", str(config_file)]
    if behaviour:
        argv += ["--behaviour", json.dumps(behaviour)]
    if server_name:
        argv += ["--server-name", server_name]
    if max_connections is not None:
        argv += ["--max-connections", str(max_connections)]
    if frame_timeout is not None:
        argv += ["--frame-timeout", str(frame_timeout)]
    return ProcessNode(
        name=name,
        role=role,
        address=host,
        port=port,
        argv=argv,
        log_path=Path(log_path) if log_path else state_dir.parent / f"{name}.log",
        ready=lambda: is_ready(host, port, timeout=0.5),
        cwd=REPO_ROOT,
        ready_timeout=ready_timeout,
        registry=registry,
        before_start=lambda: ensure_token_file(token_file),  # a restart after the file was removed still serves
        extra={"kind": "mt5", "state_dir": str(state_dir), "seed": seed, "admin_token_file": str(token_file)},
    )


# two engines, each with its main connection and ``send_lanes`` (192) lanes, twice over: a lane whose order reply
# is overdue is abandoned and reconnected while the old connection waits out the terminal's own timeout (issue 11)
ENGINE_BROKER_CONNECTIONS = 800


def state_dir(spec: NodeSpec, run_dir: Path) -> Path:
    return Path(run_dir) / "brokers" / spec.name


def token_file(spec: NodeSpec, run_dir: Path) -> Path:
    """Where the admin token of the node's simulator lives in ``run_dir``."""
    return state_dir(spec, run_dir) / TOKEN_NAME


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None, *,
               seed: int = 0, config_file: Path | None = None, behaviour: dict | None = None,
               server_name: str | None = None, ready_timeout: float = 15.0) -> ProcessNode:
    """The simulator of one ``mt5`` node of the topology (not started); its admin token is
    ``token_file(spec, run_dir)``."""
    return simulator_node(
        spec.name, spec.address, spec.port, state_dir(spec, run_dir), seed=seed, config_file=config_file,
        behaviour=behaviour, server_name=server_name or spec.name, role=spec.role,
        log_path=Path(run_dir) / "logs" / f"{spec.name}.log", ready_timeout=ready_timeout, registry=registry,
        admin_token_file=token_file(spec, run_dir),
        max_connections=ENGINE_BROKER_CONNECTIONS,
    )


def _indexed_token_file(spec: NodeSpec) -> Path | None:
    """The token file of ``spec`` in the run folder the stack index names for the node's subnet."""
    subnet = spec.address.rsplit(".", 1)[0]
    try:
        entries = StackIndex().entries()
    except Exception:  # noqa: BLE001 - no index is no answer, not an error
        return None
    for entry in entries.values():
        if entry.get("subnet") == subnet and entry.get("run_dir"):
            candidate = token_file(spec, Path(entry["run_dir"]))
            if candidate.exists():
                return candidate
    return None


def admin_token_path(spec: NodeSpec, run_dir: Path | None = None) -> Path | None:
    """The admin token file of the node's simulator: in ``run_dir`` if given, else the one this process built,
    else the one of the stack on the node's subnet (stack index); None when none is known."""
    if run_dir is not None:
        return token_file(spec, run_dir)
    with _TOKEN_LOCK:
        known = _TOKEN_FILES.get((spec.address, int(spec.port)))
    return known or _indexed_token_file(spec)


def admin_token(node: ProcessNode | NodeSpec, run_dir: Path | None = None) -> str:
    """The admin token of a simulator node (a ProcessNode from ``simulator_node``/``build_node``, or a NodeSpec).
    Raises AdminTokenError when there is none to read."""
    path = None
    if isinstance(node, ProcessNode) and node.extra.get("admin_token_file"):
        path = Path(node.extra["admin_token_file"])
    elif isinstance(node, NodeSpec):
        path = admin_token_path(node, run_dir)
    else:
        with _TOKEN_LOCK:
            path = _TOKEN_FILES.get((node.address, int(node.port)))
    if path is None:
        raise AdminTokenError(f"no admin token known for the simulator at {node.address}:{node.port}; pass "
                              f"run_dir= (its token is <run_dir>/brokers/<node>/{TOKEN_NAME})")
    return read_admin_token(path, private=True)


def admin(spec: NodeSpec, timeout: float = 5.0, *, run_dir: Path | None = None) -> SimulatorAdmin:
    """An admin connection to the node's simulator (behaviour, ledger), with its token; close it (or use ``with``).
    Without a known token the connection still pings, and its other calls say that the token is missing."""
    try:
        token = admin_token(spec, run_dir)
    except AdminTokenError:
        token = None
    return SimulatorAdmin(spec.address, spec.port, timeout=timeout, token=token)


def ping(spec: NodeSpec, timeout: float = 0.5) -> bool:
    return is_ready(spec.address, spec.port, timeout=timeout)
