"""Redis primary/replicas and Sentinels as local processes, configured as RDS-1, RDS-3 and RDS-5 say.

Each node gets its own folder with a config file, its AOF and RDB files, and binds its own loopback address;
``bind-source-addr`` makes its outgoing links (replication, Sentinel probes) leave from that address too, so kernel
rules can cut one node off by address.

The config file is rendered from the topology's settings on the first start of every node handle, that is on
every ``LocalStack.up``: what a Sentinel or ``CONFIG REWRITE`` wrote into it during an earlier run (a failover's
new roles, epochs, known replicas) never outlives that run, so the running config is what ``stack.json`` says.
Within one run a restarted node (a fault's heal) keeps what was rewritten, as a real deployment would.

Access (``docs/SECURITY.md``): the ``default`` user is off on every Redis node and every Sentinel; each role has a
user and a password of its own (``tradedrill.credentials``: harness, engine, backend, replica, sentinel), the same
on every node, so a promoted replica accepts the engine and the other replicas. Redis nodes and Sentinels read their users from an
ACL file holding password hashes only (``data/<node>/users.acl``); replicas authenticate to the primary as
``replica`` (``masteruser``/``masterauth``), Sentinels to Redis as ``sentinel`` (``sentinel auth-user/auth-pass``)
and to each other as ``sentinel`` (``sentinel sentinel-user/sentinel-pass``). Because Redis itself writes
``masterauth`` and ``auth-pass`` into its config file (CONFIG REWRITE after a failover, every Sentinel state
change), each node's config file lives in ``secrets/<node>/`` (0700/0600, owned by the node's account), not with
its data. As root, nodes run as the ``redis`` account when it can reach the run folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from reference.engine import contract
from tradedrill.credentials import (Credential, StackSecrets, account_for, grant_traverse, private_dir,
                                    sha256_hex, write_private)
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

ACCOUNT = "redis"  # the Debian package's account


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


def engine_key_patterns(groups: Iterable[str] = ("*",)) -> list[str]:
    """The keys of the engine's ACL: the contract's keys of every group in ``groups`` (``*``: any group, as ENG-6
    runs several groups on one Redis), with the signal, result and alert streams shared (``RTSS``) or per group
    (``<group>:RTSS``)."""
    out: list[str] = []
    for group in groups:
        for keys in (contract.Keys(group=group),
                     contract.Keys(group=group, rtss=f"{group}:{contract.RTSS}", rtrs=f"{group}:{contract.RTRS}",
                                   alerts=f"{group}:{contract.ALERTS}")):
            for key in (keys.rtss, keys.rtrs, keys.alerts, f"{keys.rts_prefix}:{group}:*",
                        f"{keys.ris_prefix}:{group}:*", *keys.lease_keys(), keys.lease_in_flight):
                if key not in out:
                    out.append(key)
    return out


# what each role may do on a Redis node (keys and channels come from ``_acl_keys``)
REDIS_COMMANDS = {
    "harness": "+@all",
    # streams, hashes and sets of its group, the lease scripts and their keys, and what a client does on connect
    "engine": ("-@all +@stream +@hash +@set +get +set +del +exists +incr +pexpire +pttl +time +eval +evalsha "
               "+script|load +script|exists +multi +exec +discard +ping +echo +role +info +wait +client|setname "
               "+client|getname +client|id"),
    # a producer of signals and a reader of results (what a trading backend does); WAIT: a signal counts as
    # accepted only once a replica holds it (reference.engine.submit, issue 12)
    # GET/SET only on the claims of alert ids (SET NX PX: a retried webhook puts one signal on RTSS) and on the
    # panel's session tokens (TV-1), issue 15: a Redis 7 selector, so the backend cannot SET the lease, the fence,
    # RTS or anything else
    "backend": ("-@all +xadd +wait +xread +xrange +xrevrange +xlen +xinfo|stream +hget +hgetall +smembers +sismember "
                "+srem +ping +role +client|setname +client|getname +client|id "
                f"(~{contract.RTS_PREFIX}:*:alert:* ~{contract.RIS_PREFIX}:*:panel:session:* +get +set +del)"),
    # the EA's session hash in RIS (EA-3, issue 14): read, write, expire, nothing else
    "ea": ("-@all +hset +hget +hgetall +hincrby +del +exists +pexpire +ping +role +client|setname +client|getname "
           "+client|id"),
    "replica": "-@all +psync +sync +replconf +ping",
    # what Sentinel sends to a monitored Redis (the Redis documentation's list)
    "sentinel": ("-@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite +role +publish +info "
                 "+client|setname +client|kill +script|kill"),
}
# what each role may do on a Sentinel
SENTINEL_COMMANDS = {
    "harness": "+@all",
    # the other Sentinels: PING, the hello messages, the votes
    "sentinel": ("-@all +ping +publish +subscribe +sentinel|is-master-down-by-addr +client|setname +client|kill "
                 "+info +role"),
    # clients find the primary and nothing else
    "engine": ("-@all +ping +sentinel|get-master-addr-by-name +sentinel|master +sentinel|masters +sentinel|replicas "
               "+sentinel|slaves +sentinel|sentinels +client|setname +client|getname +client|id "
               "+role"),
    "backend": ("-@all +ping +sentinel|get-master-addr-by-name +sentinel|master +sentinel|masters "
                "+sentinel|replicas +sentinel|slaves +sentinel|sentinels +client|setname +client|getname "
                "+client|id +role"),
    "ea": "-@all +ping +sentinel|get-master-addr-by-name +sentinel|master +client|setname +client|getname +role",
}


EA_KEY_PREFIX = "tradedrill"   # reference.ea.streamer.EAConfig.key_prefix: its RIS hashes are <prefix>:ea:<instance>:*


def _acl_keys(role: str, sentinel: bool) -> str:
    """The keys and Pub/Sub channels of a role: everything for the harness; the hello channel for Sentinels; the
    engine's keys for the engine and the backend on Redis; nothing else."""
    if role == "harness":
        return "~* &*"
    if role == "sentinel":
        return "resetkeys allchannels"
    if role in ("engine", "backend") and not sentinel:
        # plus the empty key ("~"): the engine's result script names '' for "no RTS hash" (a rejected entry), and
        # Redis checks every declared key of EVAL
        return "resetchannels ~ " + " ".join(f"~{k}" for k in engine_key_patterns())
    if role == "ea" and not sentinel:
        return f"resetchannels ~{EA_KEY_PREFIX}:ea:*"
    return "resetkeys resetchannels"


def acl_lines(secrets: StackSecrets, sentinel: bool = False) -> list[str]:
    """The ``user`` lines of a Redis node's ACL file (``sentinel``: of a Sentinel's config): the default user off,
    one user per role with its password as a SHA-256 hash."""
    table = SENTINEL_COMMANDS if sentinel else REDIS_COMMANDS
    # ``off``: nobody can log in as the default user, and a connection that has not logged in can do nothing
    # (NOAUTH). On a Redis node it keeps every permission all the same: Redis 7.0 replays the MULTI/EXEC blocks of
    # its AOF (every script's effects) as the default user and checks them against its ACL, so a default user
    # without permissions loses those writes on every restart.
    lines = ["user default off resetkeys resetchannels -@all" if sentinel
             else "user default off resetchannels ~* &* +@all"]
    for role, commands in table.items():
        cred = secrets.redis(role)
        lines.append(f"user {cred.username} on #{sha256_hex(cred.password)} {_acl_keys(role, sentinel)} {commands}")
    return lines


def redis_conf(spec: NodeSpec, topo: Topology, data_dir: Path, secrets: StackSecrets | None = None) -> str:
    secrets = secrets or StackSecrets.ephemeral()
    s = topo.settings
    replica = secrets.redis("replica")
    lines = [
        f"bind {spec.address}",
        f"bind-source-addr {spec.address}",
        f"port {spec.port}",
        "protected-mode yes",
        "daemonize no",
        f"dir {quoted(data_dir)}",
        f"aclfile {quoted(acl_path(data_dir))}",   # users with password hashes; the default user off
        f"masteruser {replica.username}",            # every node may become a replica after a failover
        f"masterauth {replica.password}",
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


def sentinel_conf(spec: NodeSpec, topo: Topology, data_dir: Path, secrets: StackSecrets | None = None) -> str:
    secrets = secrets or StackSecrets.ephemeral()
    s = topo.settings
    primary = topo.node("redis-1")
    name = topo.master_name
    peer = secrets.redis("sentinel")
    return "\n".join([
        f"bind {spec.address}",
        # its connections to the other Sentinels and to the Redis nodes leave from its own address, so a partition
        # of node addresses cuts them (without it they leave from 127.0.0.1 and no Sentinel partition holds)
        f"bind-source-addr {spec.address}",
        f"port {spec.port}",
        "protected-mode yes",
        "daemonize no",
        f"dir {quoted(data_dir)}",
        f"aclfile {quoted(acl_path(data_dir))}",   # users with password hashes; the default user off
        f"sentinel announce-ip {spec.address}",
        f"sentinel sentinel-user {peer.username}",     # to the other Sentinels
        f"sentinel sentinel-pass {peer.password}",
        f"sentinel monitor {name} {primary.address} {primary.port} {s['sentinel.quorum']}",      # RDS-1
        f"sentinel auth-user {name} {peer.username}",  # to the Redis nodes
        f"sentinel auth-pass {name} {peer.password}",
        f"sentinel down-after-milliseconds {name} {s['sentinel.down_after_ms']}",                # RDS-1
        f"sentinel failover-timeout {name} {s['sentinel.failover_timeout_ms']}",                 # RDS-1
        f"sentinel parallel-syncs {name} {s['sentinel.parallel_syncs']}",                        # RDS-1
    ]) + "\n"


def client(address: str, port: int, timeout: float = 0.5, credential: Credential | None = None) -> redis.Redis:
    """A plain client with explicit timeouts and no hidden retries (ARCHITECTURE: the default retry hides outages),
    logged in as ``credential`` (the stack's are in ``LocalStack.secrets``)."""
    return redis.Redis(
        host=address, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0), decode_responses=True, **(credential.redis_kwargs() if credential else {}),
    )


def ping(address: str, port: int, timeout: float = 0.5, credential: Credential | None = None) -> bool:
    c = client(address, port, timeout, credential)
    try:
        return bool(c.ping())
    finally:
        c.close()


def render(spec: NodeSpec, topo: Topology, data_dir: Path, secrets: StackSecrets | None = None) -> str:
    """The config file of a redis or sentinel node (``secrets``: the run folder's; without, passwords nobody
    knows)."""
    return (sentinel_conf if spec.kind == "sentinel" else redis_conf)(spec, topo, data_dir, secrets)


def data_dir(spec: NodeSpec, run_dir: Path) -> Path:
    """The node's data folder (AOF, RDB, ACL file of password hashes); also its working directory."""
    return Path(run_dir) / "data" / spec.name


def acl_path(node_data_dir: Path) -> Path:
    return Path(node_data_dir) / "users.acl"


def config_path(spec: NodeSpec, run_dir: Path) -> Path:
    """The node's config file: in the run folder's ``secrets/`` (Redis writes passwords into it)."""
    name = "sentinel.conf" if spec.kind == "sentinel" else "redis.conf"
    return StackSecrets.folder_of(run_dir) / spec.name / name


RECOVERY_RECORD = "recovery.json"   # in the node's data folder: BR-1's decision at the last first start


def recover_on_start(data: Path, log_path: Path | None = None) -> dict | None:
    """BR-1's recovery order on a Redis node's files before the first start of its handle (``tradedrill up`` on a
    stack folder that already holds data): the AOF if redis-check-aof accepts it, else the last RDB, else the AOF cut
    at the damage, damaged files kept under ``damaged/`` (``reference.store.redis_recovery.recover_files``). A folder
    with neither AOF nor RDB (a new stack) is left alone: None. The decision is written to ``recovery.json`` of
    the folder and one line to the node's log; a folder recovery cannot act on raises RedisRecoveryError (one line:
    ``up`` says it and does not start that node on files it could not check)."""
    import datetime as _dt
    import json

    from reference.store.redis_recovery import recover_files

    data = Path(data)
    if not (data / "appendonlydir").exists() and not (data / "appendonly.aof").exists() \
            and not (data / "dump.rdb").exists():
        return None
    decision = recover_files(data).to_dict()
    decision["at"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    (data / RECOVERY_RECORD).write_text(json.dumps(decision, indent=1) + "\n")
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write(f"tradedrill BR-1 recovery before start: source={decision['source']}; "
                     f"{'; '.join(decision.get('steps') or [])}"
                     + (f"; damaged files kept in {decision['damaged_kept']}" if decision.get("damaged_kept") else "")
                     + "\n")
    return decision


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    binary = require_binary()
    run_dir = Path(run_dir)
    secrets = StackSecrets.ensure(run_dir)
    account = account_for(ACCOUNT, run_dir)
    data = data_dir(spec, run_dir)
    conf_path = config_path(spec, run_dir)
    first_start = [True]

    def write_config() -> None:
        if account:  # the node's account passes through the run folder and its secrets/ to its own folders
            for folder in (run_dir, data.parent, conf_path.parent.parent):
                private_dir(folder)
                grant_traverse(folder, [account])
        else:
            private_dir(data.parent)
        private_dir(data, owner=account)
        private_dir(conf_path.parent, owner=account)
        write_private(acl_path(data), "\n".join(acl_lines(secrets, sentinel=spec.kind == "sentinel")) + "\n",
                      owner=account)
        # fresh from the settings on this handle's first start; a restart within the run keeps what Sentinel /
        # CONFIG REWRITE wrote (a healed old primary must come back as the replica the failover made it)
        if first_start[0] or not conf_path.exists():
            if first_start[0] and spec.kind == "redis":
                # BR-1 on what an earlier run left (a restart within the run loads what this run wrote; a drill that
                # damages the files runs the same recovery in its heal)
                recover_on_start(data, run_dir / "logs" / f"{spec.name}.log")
            write_private(conf_path, render(spec, topo, data, secrets), owner=account)
            first_start[0] = False

    harness = secrets.harness
    argv = [binary, str(conf_path)] + (["--sentinel"] if spec.kind == "sentinel" else [])
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port, argv=argv,
        log_path=run_dir / "logs" / f"{spec.name}.log", cwd=data, user=account,
        ready=lambda: ping(spec.address, spec.port, credential=harness), registry=registry,
        before_start=write_config,
        # logs in UTC whatever the caller's TZ: the failover checkers read Sentinel's log times as UTC (found by a
        # new user: under TZ=Asia/Tokyo every follow time came out 0 and passed)
        env={"TZ": "UTC"},
        extra={"kind": spec.kind, "config": str(conf_path), "data_dir": str(data), "account": account},
    )


def sentinel_view(address: str, port: int, master_name: str, timeout: float = 0.5,
                  credential: Credential | None = None) -> dict:
    """What one Sentinel says of the master: address, and how many replicas / other Sentinels it knows."""
    c = client(address, port, timeout, credential)
    try:
        info = c.execute_command("SENTINEL", "MASTER", master_name)
        if isinstance(info, list):  # RESP2 gives a flat list
            info = dict(zip(info[::2], info[1::2]))
        return info
    finally:
        c.close()


def _pairs(reply) -> dict:
    """A RESP2 flat list ``[k1, v1, k2, v2, ...]`` as a dict (RESP3 gives a dict already)."""
    return dict(zip(reply[::2], reply[1::2])) if isinstance(reply, list) else dict(reply)


def sentinel_unsettled(c: redis.Redis, master_name: str, primary: tuple[str, int] | None = None) -> str | None:
    """Why the Sentinel behind client ``c`` is not at rest for ``master_name``, or None when it is: it names
    ``primary`` (when given), runs no failover, and every replica it can reach reported itself a replica with its
    link up at the Sentinel's last INFO (every 10 s).

    Why it matters: a Sentinel converts a node it last saw as a primary back into a replica some seconds after a
    change. A ``SENTINEL FAILOVER`` that promotes such a node through another Sentinel is undone by it and aborts
    (``-failover-abort-slave-timeout``, measured in tests/engine/test_submit.py: 1 of 9 runs on a busy machine).
    Raises redis errors of the call (unreachable Sentinel)."""
    view = _pairs(c.execute_command("SENTINEL", "MASTER", master_name))
    named = (view.get("ip"), int(view.get("port", 0)))
    if primary is not None and named != tuple(primary):
        return f"names the primary {named[0]}:{named[1]}, not {primary[0]}:{primary[1]}"
    if "failover_in_progress" in str(view.get("flags", "")):
        return "runs a failover"
    for reply in c.execute_command("SENTINEL", "REPLICAS", master_name):
        r = _pairs(reply)
        flags = str(r.get("flags", ""))
        if "s_down" in flags or "disconnected" in flags:
            continue
        if r.get("role-reported") != "slave" or r.get("master-link-status") != "ok":
            return (f"last saw {r.get('ip')}:{r.get('port')} as {r.get('role-reported')} "
                    f"(link {r.get('master-link-status')})")
    return None


def replication_role(address: str, port: int, timeout: float = 0.5, credential: Credential | None = None) -> str:
    c = client(address, port, timeout, credential)
    try:
        return c.info("replication").get("role", "?")
    finally:
        c.close()


def sentinel_client(sentinels: list[tuple[str, int]], timeout: float = 0.5,
                    credential: Credential | None = None) -> redis.sentinel.Sentinel:
    """A Sentinel-aware client; ``credential`` logs in to the Sentinels and to the Redis nodes they name (the
    stack's users have the same password on both)."""
    auth = credential.redis_kwargs() if credential else {}
    return redis.sentinel.Sentinel(
        sentinels, socket_timeout=timeout, socket_connect_timeout=timeout,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout, **auth},
        retry=Retry(NoBackoff(), 0), decode_responses=True, **auth,
    )
