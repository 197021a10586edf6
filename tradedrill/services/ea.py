"""The EA tick streamer (``reference/ea/``) as local processes: one per ``ea`` node of the topology (issue 14).

- ``ea_node(name, config, state_dir, ...)``: a lone EA instance (tests, the benchmark): its config (an
  ``EAConfig`` mapping) is written to ``<state_dir>/ea.json`` and it runs as
  ``python -m reference.ea run --config <state_dir>/ea.json``; ready once its event log has its ``start`` line.
- ``build_node(spec, topo, run_dir, registry, ...)``: the EA of an ``ea`` node: it reads the primary broker
  (``mt5-primary``) with ``mt5.account``, sends UDP from and listens for TCP on its own address (ports
  ``ea.udp_port`` / ``ea.tcp_port``). Its RIS session (EA-3) logs in as the stack's ``ea`` Redis user (its own
  session hashes only) and finds the primary through the Sentinels.
- ``ea_policy()``: the supervisor's EA-1 policy (``reference.supervisor.POLICIES["ea"]``).
- ``supervisor_node(nodes, run_dir, registry)``: the EA-1 supervisor of a stack whose owner exits (``tradedrill up``)
  as a process of its own, ``python -m tradedrill.services.ea supervise``: it starts the EA nodes (built by
  ``build_node``, not started), restarts them by EA-1's policy (events in ``<run_dir>/supervisor.jsonl``, each EA's
  PID in the stack's ``pids.json``), and on SIGTERM (``tradedrill down`` stops it by its PID) stops them by their
  own handles and exits.

Instances never share keys (``<prefix>:ea:<instance>:...``), ports or state folders.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from reference.supervisor import POLICIES, RestartPolicy
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMAND = (sys.executable, "-m", "reference.ea")


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when the EA's TCP path accepts a connection and sends a valid frame within ``timeout`` seconds."""
    import socket

    from reference.ea import wire

    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            reader = wire.FrameReader()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = sock.recv(4096)
                if not data:
                    return False
                if reader.feed(data):
                    return True
    except (OSError, wire.WireError):
        return False
    return False


def ea_policy() -> RestartPolicy:
    return POLICIES["ea"]


def events_path(state_dir: Path, instance: str) -> Path:
    return Path(state_dir) / f"ea-events-{instance}.jsonl"


def _started(path: Path) -> bool:
    try:
        with open(path) as fh:
            lines = fh.readlines()
    except OSError:
        return False
    # ready once the *latest* start (a restart appends) is logged and not followed by its exit
    for line in reversed(lines):
        if '"event": "exit"' in line:
            return False
        if '"event": "start"' in line:
            return True
    return False


def ea_node(name: str, config: dict[str, Any], state_dir: Path, *, log_path: Path | None = None,
            registry: PidRegistry | None = None, address: str = "", command=None, ready_timeout: float = 15.0,
            role: str = "ea") -> ProcessNode:
    """An EA process (not started). ``config``: ``EAConfig`` fields; ``instance`` defaults to ``name``."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"instance": name, **config, "state_dir": str(state_dir)}
    cfg_path = state_dir / "ea.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    events = events_path(state_dir, cfg["instance"])
    argv = [*(command or DEFAULT_COMMAND), "run", "--config", str(cfg_path)]
    return ProcessNode(
        name=name, role=role, address=address or tuple(cfg.get("tcp_bind", ("127.0.0.1", 0)))[0],
        port=int(tuple(cfg.get("tcp_bind", ("", 0)))[1]), argv=argv,
        log_path=Path(log_path) if log_path else state_dir / f"{name}.log", cwd=REPO_ROOT,
        ready=lambda: _started(events), ready_timeout=ready_timeout, registry=registry,
        extra={"kind": "ea", "instance": cfg["instance"], "state_dir": str(state_dir), "config": str(cfg_path),
               "events": str(events)},
    )


def ea_config(spec: NodeSpec, topo: Topology, run_dir: Path) -> dict[str, Any]:
    """The EAConfig mapping of an ``ea`` node of ``topo``."""
    brokers = sorted(topo.of_kind("mt5"), key=lambda s: (s.role != "broker-primary", s.name))
    if not brokers:
        raise ValueError("an ea node needs the mt5 service (its broker)")
    b = brokers[0]
    cfg: dict[str, Any] = {
        "instance": spec.name,
        "symbols": list(topo.settings["ea.symbols"].split(",")),
        # a tick poll is not an order: 1 s (at most BRK-1's 5 s) so a dead link is seen quickly (EA-4)
        "broker": {"kind": "simulator", "host": b.address, "port": b.port,
                   "call_timeout": min(1.0, float(topo.settings["mt5.call_timeout_s"]))},
        "login": int(topo.settings["mt5.account"]),
        "udp_bind": [spec.address, spec.ports.get("udp", spec.port)],
        "tcp_bind": [spec.address, spec.port],
    }
    sentinels = topo.of_kind("sentinel")
    if sentinels:
        from tradedrill.credentials import StackSecrets

        # its session in RIS (EA-3) as the stack's `ea` Redis user, whose password stays in the run folder's
        # secrets (a file of its own, 0600); leaving from its own address so a partition cuts it like its node
        cfg["redis"] = {"sentinels": [[s.address, s.port] for s in sentinels], "master_name": topo.master_name,
                        "username": "ea", "password_file": str(StackSecrets.ensure(run_dir).password_file("ea")),
                        "source_address": spec.address}
    return cfg


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None, *,
               command=None, overrides: dict | None = None) -> ProcessNode:
    """The EA of ``spec`` (not started; a supervisor with ``ea_policy()`` may start it)."""
    cfg = ea_config(spec, topo, run_dir)
    cfg.update(overrides or {})
    state = Path(run_dir) / "eas" / spec.name
    return ea_node(spec.name, cfg, state, log_path=Path(run_dir) / "logs" / f"{spec.name}.log", registry=registry,
                   address=spec.address, command=command)


SUPERVISOR_NAME = "ea-supervisor"


def supervisor_node(nodes: list[ProcessNode], run_dir: Path, registry: PidRegistry | None,
                    ready_timeout: float = 30.0) -> ProcessNode:
    """A detached EA-1 supervisor process for ``nodes`` (EA nodes, not started); ready once every EA has started."""
    run_dir = Path(run_dir)
    spec = [{"name": n.name, "role": n.role, "address": n.address, "port": n.port, "argv": list(n.argv),
             "log_path": str(n.log_path), "cwd": str(n.cwd or REPO_ROOT), "extra": n.extra} for n in nodes]
    spec_path = run_dir / "eas" / "supervised.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2))
    argv = [sys.executable, "-m", "tradedrill.services.ea", "supervise", "--spec", str(spec_path),
            "--events", str(run_dir / "supervisor.jsonl"),
            "--pids", str(registry.path if registry is not None else run_dir / "pids.json")]
    return ProcessNode(
        name=SUPERVISOR_NAME, role="supervisor", address=nodes[0].address if nodes else "", port=0, argv=argv,
        log_path=run_dir / "logs" / f"{SUPERVISOR_NAME}.log", cwd=REPO_ROOT,
        ready=lambda: all(n.ready() for n in nodes), ready_timeout=ready_timeout, registry=registry,
        extra={"kind": SUPERVISOR_NAME, "supervises": [n.name for n in nodes], "policy": "ea"},
    )


def _supervise(spec_path: Path, events: Path, pids: Path) -> int:
    import signal
    import threading

    from reference.supervisor import Supervisor

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    registry = PidRegistry(pids)
    sup = Supervisor(events_path=events)
    try:
        for s in json.loads(Path(spec_path).read_text()):
            ev = Path(s["extra"]["events"])
            node = ProcessNode(name=s["name"], role=s["role"], address=s["address"], port=int(s["port"]),
                               argv=s["argv"], log_path=Path(s["log_path"]), cwd=Path(s["cwd"]),
                               ready=lambda ev=ev: _started(ev), registry=registry, extra=s["extra"])
            sup.add(node, ea_policy())
        while not stop.wait(0.5):  # until SIGTERM/SIGINT/SIGHUP; the supervisor's threads do the work
            pass
    finally:
        sup.stop()  # every EA by its own handle
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tradedrill.services.ea")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("supervise", help="start the EAs of a spec file and restart them by EA-1's policy")
    sp.add_argument("--spec", required=True)
    sp.add_argument("--events", required=True)
    sp.add_argument("--pids", required=True)
    args = parser.parse_args(argv)
    return _supervise(Path(args.spec), Path(args.events), Path(args.pids))


__all__ = ["SUPERVISOR_NAME", "build_node", "ea_config", "ea_node", "ea_policy", "events_path", "ping",
           "supervisor_node"]


if __name__ == "__main__":
    sys.exit(main())
