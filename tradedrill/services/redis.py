"""Redis primary/replicas and Sentinels as local processes, configured as RDS-1, RDS-3 and RDS-5 say.

Each node gets its own folder with a config file, its AOF and RDB files, and binds its own loopback address;
``bind-source-addr`` makes its outgoing links (replication, Sentinel probes) leave from that address too, so kernel
rules can cut one node off by address.

The config file is rendered from the topology's settings on the first start of every node handle, that is on
every ``LocalStack.up``: what a Sentinel or ``CONFIG REWRITE`` wrote into it during an earlier run (a failover's
new roles, epochs, known replicas) never outlives that run, so the running config is what ``stack.json`` says.
Within one run a restarted node (a fault's heal) keeps what was rewritten, as a real deployment would.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology


def require_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise FileNotFoundError(
            "redis-server is not installed: run `apt-get install -y redis-server` (or the README's commands)"
        )
    return path


NO_SAVE = '""'  # `save ""`: no RDB snapshots


def quoted(path: Path | str) -> str:
    """A path as one argument of a Redis config line (a run folder may hold spaces)."""
    out = []
    for c in str(path):
        if c in '\\"':
            out.append("\\" + c)
        elif not c.isprintable() or ord(c) > 126:
            out.extend(f"\\x{b:02x}" for b in c.encode())
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def redis_conf(spec: NodeSpec, topo: Topology, data_dir: Path) -> str:
    s = topo.settings
    lines = [
        f"bind {spec.address}",
        f"bind-source-addr {spec.address}",
        f"port {spec.port}",
        "protected-mode no",
        "daemonize no",
        f"dir {quoted(data_dir)}",
        f"appendonly {s['redis.appendonly']}",                      # RDS-3
        f"appendfsync {s['redis.appendfsync']}",                    # RDS-3
        f"auto-aof-rewrite-min-size {s['redis.auto_aof_rewrite_min_size']}",  # RDS-3
        f"save {s['redis.save'] or NO_SAVE}",                       # RDS-3 ("" = no snapshots)
        f"maxmemory {s['redis.maxmemory']}",
        f"maxmemory-policy {s['redis.maxmemory_policy']}",          # RDS-5
        f"tcp-backlog {s['redis.tcp_backlog']}",                    # RDS-5
        f"tcp-keepalive {s['redis.tcp_keepalive']}",                # RDS-5
        "replica-serve-stale-data yes",
        "replica-read-only yes",
        "repl-diskless-sync-delay 0",  # the default 5 s wait for more replicas delays every full sync
    ]
    if spec.role == "replica":
        primary = topo.node("redis-1")
        lines.append(f"replicaof {primary.address} {primary.port}")
    return "\n".join(lines) + "\n"


def sentinel_conf(spec: NodeSpec, topo: Topology, data_dir: Path) -> str:
    s = topo.settings
    primary = topo.node("redis-1")
    name = topo.master_name
    return "\n".join([
        f"bind {spec.address}",
        f"port {spec.port}",
        "protected-mode no",
        "daemonize no",
        f"dir {quoted(data_dir)}",
        f"sentinel announce-ip {spec.address}",
        f"sentinel monitor {name} {primary.address} {primary.port} {s['sentinel.quorum']}",      # RDS-1
        f"sentinel down-after-milliseconds {name} {s['sentinel.down_after_ms']}",                # RDS-1
        f"sentinel failover-timeout {name} {s['sentinel.failover_timeout_ms']}",                 # RDS-1
        f"sentinel parallel-syncs {name} {s['sentinel.parallel_syncs']}",                        # RDS-1
    ]) + "\n"


def client(address: str, port: int, timeout: float = 0.5) -> redis.Redis:
    """A plain client with explicit timeouts and no hidden retries (ARCHITECTURE: the default retry hides outages)."""
    return redis.Redis(
        host=address, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0), decode_responses=True,
    )


def ping(address: str, port: int, timeout: float = 0.5) -> bool:
    c = client(address, port, timeout)
    try:
        return bool(c.ping())
    finally:
        c.close()


def render(spec: NodeSpec, topo: Topology, data_dir: Path) -> str:
    """The config file of a redis or sentinel node."""
    return (sentinel_conf if spec.kind == "sentinel" else redis_conf)(spec, topo, data_dir)


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    binary = require_binary()
    data_dir = run_dir / "data" / spec.name
    conf_path = data_dir / ("sentinel.conf" if spec.kind == "sentinel" else "redis.conf")
    first_start = [True]

    def write_config() -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # fresh from the settings on this handle's first start; a restart within the run keeps what Sentinel /
        # CONFIG REWRITE wrote (a healed old primary must come back as the replica the failover made it)
        if first_start[0] or not conf_path.exists():
            tmp = conf_path.with_suffix(".conf.tmp")
            tmp.write_text(render(spec, topo, data_dir))
            tmp.replace(conf_path)
            first_start[0] = False

    argv = [binary, str(conf_path)] + (["--sentinel"] if spec.kind == "sentinel" else [])
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port, argv=argv,
        log_path=run_dir / "logs" / f"{spec.name}.log", cwd=data_dir,
        ready=lambda: ping(spec.address, spec.port), registry=registry, before_start=write_config,
        extra={"kind": spec.kind, "config": str(conf_path)},
    )


def sentinel_view(address: str, port: int, master_name: str, timeout: float = 0.5) -> dict:
    """What one Sentinel says of the master: address, and how many replicas / other Sentinels it knows."""
    c = client(address, port, timeout)
    try:
        info = c.execute_command("SENTINEL", "MASTER", master_name)
        if isinstance(info, list):  # RESP2 gives a flat list
            info = dict(zip(info[::2], info[1::2]))
        return info
    finally:
        c.close()


def replication_role(address: str, port: int, timeout: float = 0.5) -> str:
    c = client(address, port, timeout)
    try:
        return c.info("replication").get("role", "?")
    finally:
        c.close()


def sentinel_client(sentinels: list[tuple[str, int]], timeout: float = 0.5) -> redis.sentinel.Sentinel:
    return redis.sentinel.Sentinel(
        sentinels, socket_timeout=timeout, socket_connect_timeout=timeout,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        retry=Retry(NoBackoff(), 0), decode_responses=True,
    )
