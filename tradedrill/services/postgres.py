"""PostgreSQL 15 as a local process: its own cluster made with initdb in the run folder, on its own address and
port; never the system cluster. PostgreSQL refuses to run as root, so the cluster belongs to the ``postgres``
user that Debian's package creates, and the server runs as that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

SUPERUSER = "postgres"


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise FileNotFoundError(
            "PostgreSQL server is not installed: run `apt-get install -y postgresql` (or the README's commands)"
        )
    return Path(found[-1]).parent


def _os_user() -> str | None:
    """The Unix user the server runs as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise FileNotFoundError(
            "there is no 'postgres' Unix user to run PostgreSQL as: run `apt-get install -y postgresql`"
        ) from None
    return "postgres"


def _reachable_by(user: str | None, path: Path) -> bool:
    if user is None:
        return True
    return subprocess.run(
        ["runuser", "-u", user, "--", "test", "-w", str(path)], capture_output=True
    ).returncode == 0


def cluster_dir(run_dir: Path, spec: NodeSpec) -> Path:
    """The cluster folder. It lives in the run folder; if the ``postgres`` user cannot reach the run folder (a
    checkout under /root), the cluster goes to a private folder under /tmp and the run folder gets a link to it."""
    wanted = run_dir / "data" / spec.name
    user = _os_user()
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if wanted.is_symlink() or wanted.exists():
        return wanted.resolve()
    probe = wanted.parent / ".pg-probe"
    probe.mkdir(exist_ok=True)
    if user:
        shutil.chown(probe, user)
    ok = _reachable_by(user, probe)
    probe.rmdir()
    if ok:
        wanted.mkdir()
        if user:
            shutil.chown(wanted, user, user)
        return wanted
    real = Path(tempfile.mkdtemp(prefix="tradedrill-pg-"))
    shutil.chown(real, user, user)
    os.chmod(real, 0o700)
    wanted.symlink_to(real)
    return real


def dsn(spec: NodeSpec, dbname: str = "postgres") -> str:
    return f"host={spec.address} port={spec.port} user={SUPERUSER} dbname={dbname} connect_timeout=2"


def ping(spec: NodeSpec) -> bool:
    import psycopg

    with psycopg.connect(dsn(spec), connect_timeout=1) as conn:
        return conn.execute("SELECT 1").fetchone()[0] == 1


def server_args(spec: NodeSpec, topo: Topology, sockdir: Path) -> list[str]:
    """The server's settings, all on its command line: they win over ``postgresql.conf`` and over whatever an
    earlier run left in ``postgresql.auto.conf`` (ALTER SYSTEM), so the running server has the topology's."""
    return [
        "-c", f"listen_addresses={spec.address}", "-p", str(spec.port),
        "-c", f"unix_socket_directories={sockdir}",
        "-c", f"fsync={topo.settings['postgres.fsync']}",            # PG-1
        "-c", "synchronous_commit=on",
        "-c", "shared_buffers=32MB",
        "-c", "max_connections=50",
    ]


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    bins = bindir()
    user = _os_user()
    pgdata = cluster_dir(run_dir, spec)
    sockdir = pgdata / "sock"

    def init_cluster() -> None:
        if not (pgdata / "PG_VERSION").exists():
            res = subprocess.run(
                # -N: no fsync while creating an empty cluster; the server itself runs with fsync on (PG-1)
                [str(bins / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "-N"],
                capture_output=True, text=True, user=user,
            )
            if res.returncode != 0:
                raise RuntimeError(f"initdb for {spec.name} failed: {res.stderr.strip() or res.stdout.strip()}")
        sockdir.mkdir(exist_ok=True)
        if user:
            shutil.chown(sockdir, user, user)
        # a killed server leaves its pid file; the server itself checks whether that PID is a live postmaster

    argv = [str(bins / "postgres"), "-D", str(pgdata), *server_args(spec, topo, sockdir)]
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port, argv=argv,
        log_path=run_dir / "logs" / f"{spec.name}.log", cwd=pgdata, user=user,
        ready=lambda: ping(spec), registry=registry, before_start=init_cluster,
        extra={"kind": spec.kind, "pgdata": str(pgdata)},
    )
