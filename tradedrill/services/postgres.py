"""PostgreSQL 15 as a local process: its own cluster made with initdb in the run folder, on its own address and
port; never the system cluster. PostgreSQL refuses to run as root, so the cluster belongs to the ``postgres``
user that Debian's package creates, and the server runs as that user, with its group and no other (not root's).

Access: the cluster is made with ``--auth=scram-sha-256`` and a password generated for the run folder
(``tradedrill.credentials``); ``pg_hba.conf`` is rendered on every start (SCRAM on the socket and on loopback,
nothing else), and a cluster whose password differs from the run folder's (one made by an older version with
``--auth=trust``) gets the run folder's password in single-user mode before it starts. Clients name libpq's
password file (``passfile=`` in ``dsn()``), never the password.
"""
from __future__ import annotations

import glob
import hashlib
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from tradedrill.credentials import StackSecrets, account_for, grant_traverse, private_dir, write_private
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

SUPERUSER = "postgres"
ACCOUNT = "postgres"
HBA = """# written by tradedrill on every start: a password (SCRAM) for everyone, on the socket and on loopback only
local   all   all                 scram-sha-256
host    all   all   127.0.0.0/8   scram-sha-256
host    all   all   ::1/128       scram-sha-256
"""
AUTH_MARK = "tradedrill-auth"  # a fingerprint of the password the cluster has (not the password)


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
        pwd.getpwnam(ACCOUNT)
    except KeyError:
        raise FileNotFoundError(
            "there is no 'postgres' Unix user to run PostgreSQL as: run `apt-get install -y postgresql`"
        ) from None
    return ACCOUNT


def _as(user: str | None) -> dict:
    """``subprocess`` arguments that run a command as ``user`` with its own group and no supplementary groups."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "umask": 0o077,
            "env": {"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir, "LANG": "C.UTF-8"}}


def cluster_dir(run_dir: Path, spec: NodeSpec) -> Path:
    """The cluster folder. It lives in the run folder (the ``postgres`` user may pass through the run folder, nothing
    more); if the ``postgres`` user cannot reach the run folder (a checkout under /root, pytest's folders), the
    cluster goes to a private folder under /tmp and the run folder gets a link to it."""
    run_dir = Path(run_dir)
    wanted = run_dir / "data" / spec.name
    user = _os_user()
    private_dir(run_dir)
    private_dir(wanted.parent)
    if wanted.is_symlink():  # relocated by an earlier run
        return wanted.resolve()
    if user is None or wanted.exists() or account_for(user, run_dir):
        if user:
            for folder in (run_dir, wanted.parent):
                grant_traverse(folder, [user])
        return private_dir(wanted, owner=user)
    real = Path(tempfile.mkdtemp(prefix="tradedrill-pg-"))
    os.chown(real, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    os.chmod(real, 0o700)
    wanted.symlink_to(real)
    return real


def auth_mark(password: str) -> str:
    return hashlib.sha256(f"tradedrill-postgres:{password}".encode()).hexdigest()


def dsn(spec: NodeSpec, dbname: str = "postgres", passfile: Path | str | None = None) -> str:
    """A libpq connection string; ``passfile`` (``StackSecrets.pgpass``) holds the password."""
    out = f"host={spec.address} port={spec.port} user={SUPERUSER} dbname={dbname} connect_timeout=2"
    return out + (f" passfile='{passfile}'" if passfile else "")


def ping(spec: NodeSpec, passfile: Path | str | None = None) -> bool:
    import psycopg

    with psycopg.connect(dsn(spec, passfile=passfile), connect_timeout=1) as conn:
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
        "-c", "password_encryption=scram-sha-256",
    ]


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    bins = bindir()
    user = _os_user()
    secrets = StackSecrets.ensure(run_dir)
    password = secrets.postgres().password
    pgdata = cluster_dir(run_dir, spec)
    sockdir = pgdata / "sock"
    passfile = secrets.pgpass(spec.address, spec.port)

    def initdb() -> None:
        # the password goes through a file only the postgres user can read, deleted at once (never argv or env)
        pwfile = pgdata.parent / f".{spec.name}.pwfile.{os.getpid()}"
        write_private(pwfile, password + "\n", owner=user)
        try:
            res = subprocess.run(
                # -N: no fsync while creating an empty cluster; the server itself runs with fsync on (PG-1)
                [str(bins / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "-N"],
                capture_output=True, text=True, **_as(user),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise RuntimeError(f"initdb for {spec.name} failed: {res.stderr.strip() or res.stdout.strip()}")

    def set_password() -> None:
        """A cluster of an older run folder (trust) or of other secrets: give it this run folder's password."""
        statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n"
        res = subprocess.run([str(bins / "postgres"), "--single", "-D", str(pgdata), "-c", "log_statement=none",
                              "postgres"], input=statement, capture_output=True, text=True, **_as(user))
        if res.returncode != 0:
            raise RuntimeError(f"{spec.name}: could not set the run folder's password on the existing cluster "
                               f"{pgdata} (is a server of another run still using it?): "
                               f"{res.stderr.strip()[-300:]}")

    def init_cluster() -> None:
        mark = pgdata / AUTH_MARK
        if not (pgdata / "PG_VERSION").exists():
            initdb()
        elif not mark.exists() or mark.read_text().strip() != auth_mark(password):
            set_password()
        write_private(mark, auth_mark(password) + "\n", owner=user)
        write_private(pgdata / "pg_hba.conf", HBA, owner=user)
        private_dir(sockdir, owner=user)
        # a killed server leaves its pid file; the server itself checks whether that PID is a live postmaster

    argv = [str(bins / "postgres"), "-D", str(pgdata), *server_args(spec, topo, sockdir)]
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port, argv=argv,
        log_path=Path(run_dir) / "logs" / f"{spec.name}.log", cwd=pgdata, user=user,
        ready=lambda: ping(spec, passfile), registry=registry, before_start=init_cluster,
        extra={"kind": spec.kind, "pgdata": str(pgdata), "account": user},
    )
