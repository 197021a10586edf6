"""The MT5 broker simulator (``reference/mt5/``) as a local process: one per ``mt5`` node of the topology.

Started as ``python -m reference.mt5.simcli serve`` (the same command as ``tradedrill mt5sim serve``, without
importing every other area); ready when an admin ping succeeds over the simulator's protocol. ``admin(spec)`` is
the handle a harness uses to change a running simulator's behaviour and to read its ledger (testcontainers'
``get_client()``).

    node = build_node(topo.node("mt5-primary"), topo, run_dir, registry, seed=7)
    node.start().wait_ready()
    with admin(topo.node("mt5-primary")) as a:
        a.ledger()

Options of ``build_node`` (``LocalStack(..., options={"mt5": {...}})``): ``seed``, ``config_file``,
``behaviour``, ``server_name`` (default: the node's name), ``ready_timeout``. The broker's durable state (journal
and snapshot) lives in ``<run_dir>/brokers/<node>`` and survives restarts within and across runs; its log is
``<run_dir>/logs/<node>.log``. ``simulator_node(...)`` starts a lone simulator outside any topology (the MT5
tests and the benchmark).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from reference.mt5.simclient import SimulatorAdmin, is_ready
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

REPO_ROOT = Path(__file__).resolve().parents[2]


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
) -> ProcessNode:
    """A simulator listening on ``host:port`` with its state in ``state_dir`` (not started)."""
    state_dir = Path(state_dir)
    argv = [sys.executable, "-m", "reference.mt5.simcli", "serve", "--host", host, "--port", str(port),
            "--state-dir", str(state_dir), "--seed", str(seed)]
    if config_file:
        argv += ["--config", str(config_file)]
    if behaviour:
        argv += ["--behaviour", json.dumps(behaviour)]
    if server_name:
        argv += ["--server-name", server_name]
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
        extra={"kind": "mt5", "state_dir": str(state_dir), "seed": seed},
    )


def state_dir(spec: NodeSpec, run_dir: Path) -> Path:
    return Path(run_dir) / "brokers" / spec.name


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None, *,
               seed: int = 0, config_file: Path | None = None, behaviour: dict | None = None,
               server_name: str | None = None, ready_timeout: float = 15.0) -> ProcessNode:
    """The simulator of one ``mt5`` node of the topology (not started)."""
    return simulator_node(
        spec.name, spec.address, spec.port, state_dir(spec, run_dir), seed=seed, config_file=config_file,
        behaviour=behaviour, server_name=server_name or spec.name, role=spec.role,
        log_path=Path(run_dir) / "logs" / f"{spec.name}.log", ready_timeout=ready_timeout, registry=registry,
    )


def admin(spec: NodeSpec, timeout: float = 5.0) -> SimulatorAdmin:
    """An admin connection to the node's simulator (behaviour, ledger); close it (or use ``with``)."""
    return SimulatorAdmin(spec.address, spec.port, timeout=timeout)


def ping(spec: NodeSpec, timeout: float = 0.5) -> bool:
    return is_ready(spec.address, spec.port, timeout=timeout)
