"""The reference backend (``reference/backend``) as local processes: one uvicorn per ``backend`` node (issue 15).

- ``backend_node(name, config, state_dir, ...)``: a lone instance (tests, the benchmark): its config (a
  ``BackendConfig`` mapping) is written 0600 to ``<state_dir>/backend.json`` and it runs as
  ``python -m reference.backend run --config <state_dir>/backend.json``; ready once ``GET /health`` answers 200.
- ``build_node(spec, topo, run_dir, registry)``: the backend of a ``backend`` node: Redis through the Sentinels as
  the stack's ``backend`` user (its password file in ``secrets/``), the webhook passphrase in
  ``secrets/webhook.passphrase`` (made once per run folder, 0600), the proxy's address trusted for ``X-Real-IP``,
  ClickHouse history when the topology runs ClickHouse, and its DuckDB copy of RTRS's fills
  (``backends/<name>/history.duckdb``, what ``/history`` answers from while ClickHouse cannot).
- ``health_probe(node)``: BE-1's health check (``GET /health`` within 1 s), what the supervisor polls every 3 s.
- ``backend_policy()``: BE-1 (``reference.supervisor.POLICIES["backend"]``: Restart=always, RestartSec=3).
- ``supervisor_node(nodes, run_dir, registry)``: BE-1's supervisor of a stack whose owner exits (``tradedrill up``)
  as a process of its own, ``python -m tradedrill.services.backend supervise``: it starts the backend nodes (built
  by ``build_node``, not started), restarts them by BE-1's policy with BE-1's health check (events in
  ``<run_dir>/supervisor.jsonl``, each backend's PID in the stack's ``pids.json``), and on SIGTERM (``tradedrill
  down`` stops it by its PID) stops them by their own handles and exits.
"""
from __future__ import annotations

import http.client
import json
import secrets as pysecrets
import sys
from pathlib import Path
from typing import Any

from reference.supervisor import POLICIES, RestartPolicy
from tradedrill.credentials import StackSecrets, write_private
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMAND = (sys.executable, "-m", "reference.backend")
PASSPHRASE_FILE = "webhook.passphrase"


def backend_policy() -> RestartPolicy:
    return POLICIES["backend"]


def http_get(address: str, port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """``(status, body)`` of one GET; raises OSError/HTTPException when nothing answers."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class HealthProbe:
    """BE-1's health check of one backend: calling it is True when ``GET /health`` answers 200 within ``timeout``
    seconds; after a failed call, ``last_failure`` says what happened (the supervisor logs it when it kills)."""

    def __init__(self, address: str, port: int, timeout: float = 1.0):
        self.address, self.port, self.timeout = address, int(port), float(timeout)
        self.last_failure = ""

    def __call__(self) -> bool:
        where = f"GET /health at {self.address}:{self.port}"
        try:
            status = http_get(self.address, self.port, "/health", self.timeout)[0]
        except TimeoutError:
            self.last_failure = f"{where}: no answer within {self.timeout:g} s"
            return False
        except ConnectionRefusedError:
            self.last_failure = f"{where}: connection refused (not listening yet, or gone)"
            return False
        except (OSError, http.client.HTTPException) as exc:
            self.last_failure = f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
            return False
        if status != 200:
            self.last_failure = f"{where}: HTTP {status}"
            return False
        self.last_failure = ""
        return True


def health_probe(address: str, port: int, timeout: float = 1.0) -> HealthProbe:
    """BE-1's health check of one backend (see :class:`HealthProbe`)."""
    return HealthProbe(address, port, timeout)


def backend_node(name: str, config: dict[str, Any], state_dir: Path, *, log_path: Path | None = None,
                 registry: PidRegistry | None = None, command=None, ready_timeout: float = 20.0,
                 role: str = "backend") -> ProcessNode:
    """A backend process (not started). ``config``: ``BackendConfig`` fields (``host``/``port`` required)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cfg = {"instance": name, **config}
    cfg_path = state_dir / "backend.json"
    write_private(cfg_path, json.dumps(cfg, indent=2))
    host, port = str(cfg["host"]), int(cfg["port"])
    probe = health_probe(host, port)
    return ProcessNode(
        name=name, role=role, address=host, port=port,
        argv=[*(command or DEFAULT_COMMAND), "run", "--config", str(cfg_path)],
        log_path=Path(log_path) if log_path else state_dir / f"{name}.log", cwd=REPO_ROOT, ready=probe,
        ready_timeout=ready_timeout, registry=registry,
        extra={"kind": "backend", "config": str(cfg_path), "health": probe},
    )


def passphrase_file(secrets: StackSecrets) -> Path:
    """The run folder's webhook passphrase (0600, made once): what TradingView's alerts carry."""
    path = secrets.folder / PASSPHRASE_FILE
    if not path.exists():
        write_private(path, pysecrets.token_urlsafe(24) + "\n", exclusive=True)
    return path


def read_passphrase(run_dir: Path | str) -> str:
    """The webhook passphrase of a run folder (for the harness's webhook clients)."""
    return (StackSecrets.folder_of(run_dir) / PASSPHRASE_FILE).read_text().strip()


def backend_config(spec: NodeSpec, topo: Topology, run_dir: Path) -> dict[str, Any]:
    """The ``BackendConfig`` mapping of a ``backend`` node of ``topo``."""
    secrets = StackSecrets.ensure(run_dir)
    sentinels = [[s.address, s.port] for s in topo.of_kind("sentinel")]
    proxies = [s.address for s in topo.of_kind("nginx")]
    cfg: dict[str, Any] = {
        "instance": spec.name, "host": spec.address, "port": spec.port,
        "sentinels": sentinels, "master_name": topo.master_name,
        "redis_username": "backend", "redis_password_file": str(secrets.password_file("backend")),
        "group": str(topo.settings["engine.group"]), "account": str(topo.settings["mt5.account"]),
        "passphrase_file": str(passphrase_file(secrets)), "trusted_proxies": proxies,
        "symbols": str(topo.settings["ea.symbols"]).split(","),
        "rate_per_s": float(topo.settings["backend.rate_per_s"]),
        "rate_burst": int(topo.settings["backend.rate_burst"]),
        "wait_replicas": 1 if topo.settings["redis.replicas"] else 0,
        # chart history while ClickHouse is away: the fills this backend read from RTRS (TV 6, BE-3)
        "history_cache_path": str(Path(run_dir) / "backends" / spec.name / "history.duckdb"),
    }
    # the panel's live ticks (TV 1): one consumer per EA node, leaving from this backend's address
    cfg["ea_streams"] = [{"instance": e.name, "udp": [e.address, e.ports.get("udp", e.port)],
                          "tcp": [e.address, e.port]} for e in topo.of_kind("ea")]
    if topo.of_kind("clickhouse"):
        ch = topo.of_kind("clickhouse")[0]
        cred = secrets.clickhouse()
        pw = secrets.folder / "clickhouse-backend.password"
        write_private(pw, cred.password + "\n")
        # a chart request waits for ClickHouse at most half the proxy's read timeout of chart requests
        # (backend.chart_read_timeout_ms), so the backend answers (its DuckDB copy, or 503 "history is
        # unavailable") before nginx gives up on it
        cfg.update(clickhouse_url=f"http://{ch.address}:{ch.ports['http']}", clickhouse_username=cred.username,
                   clickhouse_password_file=str(pw),
                   clickhouse_deadline_s=int(topo.settings["backend.chart_read_timeout_ms"]) / 2000)
    return cfg


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None, *,
               command=None, overrides: dict | None = None) -> ProcessNode:
    """The backend of ``spec`` (not started; a supervisor with ``backend_policy()`` may start it)."""
    cfg = backend_config(spec, topo, run_dir)
    cfg.update(overrides or {})
    return backend_node(spec.name, cfg, Path(run_dir) / "backends" / spec.name, registry=registry,
                        log_path=Path(run_dir) / "logs" / f"{spec.name}.log", command=command, role=spec.role)


SUPERVISOR_NAME = "backend-supervisor"


def supervisor_node(nodes: list[ProcessNode], run_dir: Path, registry: PidRegistry | None,
                    ready_timeout: float = 30.0) -> ProcessNode:
    """A detached BE-1 supervisor process for ``nodes`` (backend nodes, not started); ready once every backend
    answers ``GET /health``."""
    run_dir = Path(run_dir)
    spec = [{"name": n.name, "role": n.role, "address": n.address, "port": n.port, "argv": list(n.argv),
             "log_path": str(n.log_path), "cwd": str(n.cwd or REPO_ROOT),
             "extra": {k: v for k, v in n.extra.items() if k != "health"}} for n in nodes]
    spec_path = run_dir / "backends" / "supervised.json"
    spec_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(spec_path, json.dumps(spec, indent=2))
    argv = [sys.executable, "-m", "tradedrill.services.backend", "supervise", "--spec", str(spec_path),
            "--events", str(run_dir / "supervisor.jsonl"),
            "--pids", str(registry.path if registry is not None else run_dir / "pids.json")]
    return ProcessNode(
        name=SUPERVISOR_NAME, role="supervisor", address=nodes[0].address if nodes else "", port=0, argv=argv,
        log_path=run_dir / "logs" / f"{SUPERVISOR_NAME}.log", cwd=REPO_ROOT,
        ready=lambda: all(n.ready() for n in nodes), ready_timeout=ready_timeout, registry=registry,
        extra={"kind": SUPERVISOR_NAME, "supervises": [n.name for n in nodes], "policy": "backend"},
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
            probe = health_probe(s["address"], int(s["port"]))
            node = ProcessNode(name=s["name"], role=s["role"], address=s["address"], port=int(s["port"]),
                               argv=s["argv"], log_path=Path(s["log_path"]), cwd=Path(s["cwd"]), ready=probe,
                               registry=registry, extra={**s["extra"], "health": probe})
            sup.add(node, backend_policy(), health=probe)
        while not stop.wait(0.5):  # until SIGTERM/SIGINT/SIGHUP; the supervisor's threads do the work
            pass
    finally:
        sup.stop()  # every backend by its own handle
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tradedrill.services.backend")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("supervise", help="start the backends of a spec file and restart them by BE-1's policy")
    sp.add_argument("--spec", required=True)
    sp.add_argument("--events", required=True)
    sp.add_argument("--pids", required=True)
    args = parser.parse_args(argv)
    return _supervise(Path(args.spec), Path(args.events), Path(args.pids))


__all__ = ["SUPERVISOR_NAME", "HealthProbe", "backend_config", "backend_node", "backend_policy", "build_node", "health_probe",
           "http_get", "passphrase_file", "read_passphrase", "supervisor_node"]


if __name__ == "__main__":
    sys.exit(main())
