"""The local stack is locked down (issue 10): a local user who is not the harness is refused by every server and
cannot read the run folder; every role has its own login and can do its job and no more, also after a Redis
failover; servers run as their packages' accounts with their own group; nodes get a minimal environment."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from reference.mt5.simclient import AdminError, SimulatorAdmin
from tradedrill.credentials import StackSecrets
from tradedrill.local import status_rows
from tradedrill.process import INHERITED_ENV
from tradedrill.services import postgres as pg_svc
from tradedrill.services import redis as redis_svc
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

from .conftest import CANARY, SUBNET, as_nobody, needs_root, private_tmp

pytestmark = pytest.mark.services


def _redis_cli(spec, *command: str) -> str:
    res = as_nobody("redis-cli", "-h", spec.address, "-p", str(spec.port), *command)
    return res.stdout + res.stderr


# -- nobody ---------------------------------------------------------------------------------------------------------
def test_an_unprivileged_user_is_refused_by_redis_and_every_sentinel(stack):
    topo = stack.topology
    for spec in topo.of_kind("redis"):
        assert "NOAUTH" in _redis_cli(spec, "PING"), spec.name
        assert "NOAUTH" in _redis_cli(spec, "XADD", "RTSS", "*", "signal_id", "x", "side", "buy"), spec.name
        assert "NOAUTH" in _redis_cli(spec, "CONFIG", "GET", "masterauth"), spec.name
        for user in ("default", "harness", "engine", "replica", "sentinel"):
            assert "WRONGPASS" in _redis_cli(spec, "AUTH", user, "guess"), (spec.name, user)
    for spec in topo.of_kind("sentinel"):
        assert "NOAUTH" in _redis_cli(spec, "SENTINEL", "get-master-addr-by-name", topo.master_name), spec.name
        assert "NOAUTH" in _redis_cli(spec, "SENTINEL", "FAILOVER", topo.master_name), spec.name
        assert "WRONGPASS" in _redis_cli(spec, "AUTH", "sentinel", "guess"), spec.name
    # nothing reached the stream while being refused
    assert stack.redis().xlen("RTSS") == 0 or all(
        f.get("signal_id") != "x" for _i, f in stack.redis().xrange("RTSS"))


def test_an_unprivileged_user_is_refused_by_postgres(stack):
    spec = stack.topology.node("postgres")
    tcp = ["psql", "-w", "-h", spec.address, "-p", str(spec.port), "-U", "postgres", "-d", "postgres",
           "-c", "SELECT 1"]
    res = as_nobody(*tcp)
    assert res.returncode != 0 and "no password supplied" in res.stderr, res.stderr
    res = as_nobody(*tcp, env={"PGPASSWORD": "guess"})
    assert res.returncode != 0 and "password authentication failed" in res.stderr, res.stderr
    res = as_nobody(*tcp[:4], spec.address, "-U", "nobody", *tcp[7:])
    assert res.returncode != 0, res.stdout
    # the Unix socket sits in the cluster folder, which is the postgres account's alone
    sockdir = Path(stack.node("postgres").extra["pgdata"]) / "sock"
    res = as_nobody("psql", "-w", "-h", str(sockdir), "-p", str(spec.port), "-U", "postgres", "-c", "SELECT 1")
    assert res.returncode != 0 and "SELECT" not in res.stdout, res.stdout


def test_an_unprivileged_user_is_refused_by_clickhouse(stack):
    spec = stack.topology.node("clickhouse")
    res = as_nobody("clickhouse-client", "--host", spec.address, "--port", str(spec.port), "--query", "SELECT 42")
    assert res.returncode != 0 and "42" not in res.stdout, res.stdout
    assert "password" in (res.stdout + res.stderr).lower(), res.stderr
    http = ("import urllib.request, urllib.error\n"
            f"req = urllib.request.Request('http://{spec.address}:{spec.ports['http']}/', data=b'SELECT 42')\n"
            "try:\n    print(urllib.request.urlopen(req, timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode()[:200])\n")
    res = as_nobody("/usr/bin/python3", "-c", http)
    assert not res.stdout.startswith("200") and "password" in res.stdout.lower(), res.stdout


def test_an_unprivileged_user_cannot_read_the_run_folder(stack):
    run = stack.run_dir
    secret_files = [StackSecrets.path_of(run), stack.secrets.password_file("engine"), run / "engine.json",
                    redis_svc.config_path(stack.topology.node("redis-1"), run),
                    redis_svc.config_path(stack.topology.node("sentinel-1"), run), run / "pids.json",
                    run / "logs" / "redis-1.log", run / "brokers" / "mt5-primary" / "admin.token"]
    for path in secret_files:
        assert path.exists(), path
        res = as_nobody("cat", str(path))
        assert res.returncode != 0 and "Permission denied" in res.stderr and not res.stdout, path
    for folder in (run, run / "secrets", run / "data"):
        res = as_nobody("ls", str(folder))
        assert res.returncode != 0 and "Permission denied" in res.stderr, folder


def test_the_simulator_refuses_admin_calls_without_the_token(stack):
    spec = stack.topology.node("mt5-primary")
    with SimulatorAdmin(spec.address, spec.port, timeout=5.0) as anonymous:
        assert anonymous.ping()  # liveness needs no token
        with pytest.raises(AdminError):
            anonymous.ledger()
        with pytest.raises(AdminError):
            anonymous.set_behaviour(requote_rate=1.0)
    with SimulatorAdmin(spec.address, spec.port, timeout=5.0, token="guessed-token-of-enough-length") as guess:
        with pytest.raises(AdminError):
            guess.ledger()
    with stack.broker_admin("mt5-primary") as admin:  # the harness has the token
        assert admin.behaviour()["requote_rate"] == 0.0
        assert isinstance(admin.ledger(), list)


# -- every role: its job and no more --------------------------------------------------------------------------------
def _login(stack, role: str, spec_name: str | None = None) -> redis.Redis:
    host, port = stack.redis_primary() if spec_name is None else (
        stack.topology.node(spec_name).address, stack.topology.node(spec_name).port)
    return redis_svc.client(host, port, 2.0, stack.secrets.redis(role))


def _refused(call) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_each_redis_role_can_do_its_job_and_no_more(stack):
    engine = _login(stack, "engine")
    assert engine.xadd("sec:RTSS", {"signal_id": "s1"}) and engine.hset("RTS:sec:signal:s1", "status", "new")
    assert engine.eval("return redis.call('INCR', KEYS[1])", 1, "sec:fence") >= 1
    assert engine.execute_command("ROLE")[0] == "master"
    for call in (lambda: engine.flushall(), lambda: engine.config_get("masterauth"), lambda: engine.keys("*"),
                 lambda: engine.set("someone-elses-key", 1), lambda: engine.acl_list(),
                 lambda: engine.eval("return redis.call('SET', KEYS[1], 1)", 1, "not-an-engine-key"),
                 lambda: engine.execute_command("SHUTDOWN")):
        assert _refused(call)
    backend = _login(stack, "backend")
    assert backend.xadd("sec:RTSS", {"signal_id": "s2"}) and backend.xrange("sec:RTSS")
    for call in (lambda: backend.eval("return 1", 0), lambda: backend.delete("sec:lease"),
                 lambda: backend.set("sec:lease", "B:1"), lambda: backend.get("sec:fence"),
                 lambda: backend.set("RTS:sec:signal:s1", "x"), lambda: backend.flushall()):
        assert _refused(call)
    # its one string write: the claim of an alert id (issue 15)
    assert backend.set("RTS:sec:alert:a1", "pending:x:1", nx=True, px=1000) and backend.get("RTS:sec:alert:a1")
    for role in ("replica", "sentinel"):
        client = _login(stack, role)
        assert client.ping()
        assert _refused(lambda: client.get("sec:lease")) and _refused(lambda: client.set("x", 1))
    # the Sentinels: clients may find the primary and nothing else
    sentinel = stack.topology.node("sentinel-1")
    for role in ("engine", "backend"):
        c = redis_svc.client(sentinel.address, sentinel.port, 2.0, stack.secrets.redis(role))
        assert tuple(c.execute_command("SENTINEL", "get-master-addr-by-name", stack.master_name))
        for call in (lambda: c.execute_command("SENTINEL", "FAILOVER", stack.master_name),
                     lambda: c.execute_command("SENTINEL", "SET", stack.master_name, "quorum", "1"),
                     lambda: c.execute_command("SENTINEL", "REMOVE", stack.master_name)):
            assert _refused(call)
    harness = stack.redis()
    harness.delete("sec:RTSS", "RTS:sec:signal:s1", "sec:fence")


def test_the_engines_log_in_as_their_own_user_and_their_config_names_a_file_not_the_password(stack):
    config_text = (stack.run_dir / "engine.json").read_text()
    config = json.loads(config_text)
    password = stack.secrets.redis("engine").password
    assert password not in config_text
    assert config["redis_username"] == config["sentinel_username"] == "engine"
    assert Path(config["redis_password_file"]) == stack.secrets.password_file("engine")
    assert stack.secrets.password_file("engine").read_text().strip() == password
    clients = stack.redis().client_list()
    engine_clients = [c for c in clients if c.get("name", "").startswith("engine-")]
    assert engine_clients and {c["user"] for c in engine_clients} == {"engine"}
    assert stack.lease_holder() == "A"


def test_servers_run_as_their_packages_accounts_with_their_own_group_only(stack):
    expected = {"redis": "redis", "sentinel": "redis", "clickhouse": "clickhouse", "postgres": "postgres"}
    for name, node in stack.nodes.items():
        kind = node.extra["kind"]
        if kind not in expected:
            continue
        import pwd
        account = pwd.getpwnam(expected[kind])
        for pid in [node.pid, *[p.pid for p in psutil.Process(node.pid).children(recursive=True)]]:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
            assert status["Uid"].split() == [str(account.pw_uid)] * 4, (name, pid, status["Uid"])
            assert status["Gid"].split() == [str(account.pw_gid)] * 4, (name, pid, status["Gid"])
            assert status["Groups"].split() in ([], [str(account.pw_gid)]), (name, pid, status["Groups"])


def test_copy_to_program_runs_as_postgres_with_its_group_not_root(stack):
    import psycopg

    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE whoami (line text)")
        conn.execute("COPY whoami FROM PROGRAM 'id'")
        line = conn.execute("SELECT line FROM whoami").fetchone()[0]
    assert line.startswith("uid=") and "postgres" in line, line
    assert "root" not in line and "(root)" not in line, line


def test_nodes_get_a_minimal_environment(stack):
    allowed = set(INHERITED_ENV) | {"HOME", "USER", "LOGNAME"}
    for name, node in stack.nodes.items():
        environ = Path(f"/proc/{node.pid}/environ").read_bytes().split(b"\0")
        keys = {e.split(b"=", 1)[0].decode() for e in environ if e}
        extra = keys - allowed - set(node.env or {})
        assert CANARY not in keys and not extra, (name, sorted(extra))


def test_the_run_folder_is_private(stack):
    run = stack.run_dir
    assert stat.S_IMODE(run.stat().st_mode) & 0o007 == 0
    for path in (run / "pids.json", run / "stack.json", run / "engine.json", run / "topology.json",
                 *(run / "logs").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secrets_dir = StackSecrets.folder_of(run)
    assert stat.S_IMODE(secrets_dir.stat().st_mode) & 0o077 in (0, 0o010)  # 0700, or 0710 with the ACL entry
    for path in secrets_dir.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_status_reads_the_credentials_from_the_run_folder(stack):
    rows, primary = status_rows(stack.run_dir)
    assert rows and all(r["health"] == "ok" for r in rows), rows
    assert primary == stack.redis_primary()
    res = subprocess.run([sys.executable, "-m", "tradedrill.cli", "status", "--dir", str(stack.run_dir)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0 and "engine (active)" in res.stdout, res.stdout + res.stderr


def test_a_failover_keeps_every_role_working(stack):
    """Last in the module: the promoted replica accepts the engine and the harness, the others replicate from
    it (the old primary too, once back), the engines keep the lease, and no node refused a role it needs."""
    old = stack.redis_primary()
    old_node = stack.redis_primary_node()
    for name in [*(s.name for s in stack.topology.of_kind("redis")), *(s.name for s in stack.topology.of_kind("sentinel"))]:
        stack.redis_node_client(name).acl_log_reset()
    old_node.kill()
    new = stack.wait_for_new_primary(old, timeout=30)
    engine = redis_svc.client(*new, 2.0, stack.secrets.redis("engine"))
    assert wait_until(lambda: engine.execute_command("ROLE")[0] == "master", 10, "the promoted replica to serve")
    old_node.start().wait_ready()

    def replicating() -> tuple[str, int] | None:
        # The primary is whatever the Sentinels name now, not the first one promoted: with down-after 1 s a
        # Sentinel may fail over the just-promoted primary once more (measured: 1 cycle in ~20, epoch N+1 one
        # second after the switch, on stale down reports); every role must work on the one that stays.
        current = stack.redis_primary()
        if current is None or current == old:
            return None
        for spec in stack.topology.of_kind("redis"):
            info = stack.redis_node_client(spec.name).info("replication")
            if (spec.address, spec.port) == current:
                if info.get("role") != "master":
                    return None
            elif info.get("master_link_status") != "up" or (info.get("master_host"), int(info.get("master_port", 0))) != current:
                return None
        return current

    new = wait_until(replicating, 40, "every replica (the old primary too) to replicate from the primary the "
                                      "Sentinels name")
    engine = redis_svc.client(*new, 2.0, stack.secrets.redis("engine"))
    assert engine.execute_command("ROLE")[0] == "master"
    wait_until(lambda: stack.lease_holder() in ("A", "B"), 30, "the engines to hold the lease on the new primary")
    clients = stack.redis().client_list()
    assert {c["user"] for c in clients if c.get("name", "").startswith("engine-")} == {"engine"}
    for spec in [*stack.topology.of_kind("redis"), *stack.topology.of_kind("sentinel")]:
        denied = [e for e in stack.redis_node_client(spec.name).acl_log()
                  if e.get("username") in ("replica", "sentinel", "engine")]
        assert not denied, (spec.name, denied)


# -- two behaviours that only show over a restart -------------------------------------------------------------------
@pytest.fixture
def run_dir():
    """A run folder the servers' accounts can reach (they run as in production), removed afterwards."""
    needs_root()
    path = private_tmp("tradedrill-security-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_script_effects_survive_a_restart_of_a_redis_node(run_dir):
    """Redis 7.0 replays the AOF's MULTI/EXEC (every script's effects) as the default user and checks its ACL: the
    disabled default user keeps its permissions (nobody can log in as it), or those writes vanish on restart."""
    tmp_path = run_dir
    topo = Topology.default(subnet=SUBNET, services=("redis",), overrides={
        "redis.port": 6390, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1,
        "redis.appendonly": "yes", "redis.appendfsync": "always"})
    node = redis_svc.build_node(topo.node("redis-1"), topo, tmp_path, None)
    harness = StackSecrets.load(tmp_path).harness
    try:
        node.start().wait_ready()
        c = redis_svc.client(node.address, node.port, 2.0, harness)
        c.eval("redis.call('SET', KEYS[1], redis.call('TIME')[1]); return redis.call('INCR', KEYS[2])", 2, "t",
               "n")
        node.kill()
        node.start().wait_ready()
        c = redis_svc.client(node.address, node.port, 2.0, harness)
        assert c.get("n") == "1" and c.get("t")
        with pytest.raises(redis.AuthenticationError):  # and nobody can log in as the default user
            redis_svc.client(node.address, node.port, 2.0).get("n")
    finally:
        node.stop()


def test_a_cluster_an_older_run_made_with_trust_gets_the_run_folders_password(run_dir):
    import psycopg

    tmp_path = run_dir

    topo = Topology.default(subnet=SUBNET, services=("postgres",), overrides={"postgres.port": 5442})
    spec = topo.node("postgres")
    pgdata = pg_svc.cluster_dir(tmp_path, spec)
    user = pg_svc._os_user()
    res = subprocess.run([str(pg_svc.bindir() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                          "-E", "UTF8", "-N"], capture_output=True, text=True, **pg_svc._as(user))
    assert res.returncode == 0, res.stderr
    node = pg_svc.build_node(spec, topo, tmp_path, None)
    try:
        node.start().wait_ready()  # ready = a login with the run folder's password file
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(pg_svc.dsn(spec), connect_timeout=2).close()
        assert "trust" not in "".join(l for l in (pgdata / "pg_hba.conf").read_text().splitlines()
                                      if not l.startswith("#"))
    finally:
        node.stop()
