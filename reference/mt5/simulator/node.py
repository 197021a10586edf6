"""A simulator as a ``tradedrill.process.ProcessNode``: how tests, the engine's drills and the stack start one.

Started as ``python -m reference.mt5.simcli serve`` (same command as ``tradedrill mt5sim serve``, without
importing every other area); ready when an admin ping succeeds over the protocol.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tradedrill.process import ProcessNode

REPO_ROOT = Path(__file__).resolve().parents[3]


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
) -> ProcessNode:
    from reference.mt5.simclient import is_ready

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
        extra={"state_dir": str(state_dir), "seed": seed},
    )
