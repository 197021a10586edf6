"""The fault vocabulary of the scenario library: one table from a fault's name to how it is built, which targets it
accepts, how it heals and how the report labels it (Jepsen's ``nemesis/combined.clj`` packages are the model).

A scenario names a fault (``FaultStep.fault``) and a target (``FaultStep.target``). The target is a *role*,
resolved against the running stack when the fault is injected (Jepsen's ``db-nodes``), or a node name:

===================  ===========  =========================================================================
target               node kind    resolves to
===================  ===========  =========================================================================
``active-engine``    engine       the engine whose instance holds the lease at injection time
``passive-engine``   engine       an engine that does not hold it
``redis-primary``    redis        the node the Sentinels' majority names primary at injection time
``redis-replica``    redis        a Redis node that is not the primary
``broker-primary``   mt5          the primary broker simulator
``broker-backup``    mt5          the backup broker simulator
a node name          its kind     that node of the topology (``redis-2``, ``sentinel-1``, ``engine-b``, ...)
===================  ===========  =========================================================================

Heal modes: ``after`` heals ``heal_after_s`` after the injection (every package when the step gives it);
without ``heal_after_s``, ``supervisor`` means the system under test restarts the victim itself (the heal only
closes the fault window once it is back; an unsupervised victim is restarted by the heal at the end of the load),
and ``end`` heals when the load ends.

Adding a fault is a class in ``faults/`` plus one :data:`FAULTS` entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from faults.behaviour import BrokerBehaviour
import random

from faults.core import Composite, Fault, FaultLog
from faults.files import CorruptDuckDB, CrashCorruptDuckDB, FillFilesystem
from faults.kernel import Isolate
from faults.partition import CLIENT_SOURCE, PlannedFailover, RedisPartition, isolate_primary, majority_minority
from faults.process import Kill, Pause, Terminate
from scenarios import tickclients as _ticks
from scenarios import webhook as _webhook

# role -> the node kind it resolves to
TARGET_ROLES: dict[str, str] = {
    "active-engine": "engine",
    "passive-engine": "engine",
    "redis-primary": "redis",
    "redis-replica": "redis",
    "broker-primary": "mt5",
    "broker-backup": "mt5",
}
HEAL_MODES = ("after", "supervisor", "end")


class Target(Protocol):
    """What a package needs of a resolved target (``scenarios.environment.ResolvedTarget``)."""

    name: str
    kind: str
    address: str
    node: Any  # the ProcessNode handle
    supervised: bool


class FaultContext(Protocol):
    """What a package needs of the drill environment when it builds a fault."""

    fault_log: FaultLog
    requirement_ids: tuple[str, ...]

    def resolve(self, target: str) -> Target: ...
    def broker_admin(self, name: str) -> Any: ...

    # for the Redis topology faults (issue 12): the nodes, the writers, the seed of the split
    topology: Any
    stack: Any
    seed: int

    def workload(self) -> Any: ...


@dataclass(frozen=True)
class FaultPackage:
    """One fault a scenario can name.

    ``build(ctx, target, params) -> Fault`` makes an uninjected fault; ``kinds``: the node kinds its target may
    resolve to (empty: any); ``heal``: its mode without ``heal_after_s`` (see the module docstring);
    ``params``: the parameter names it accepts (None: any); ``label``/``color``: how the report shades its
    windows."""

    name: str
    build: Callable[[FaultContext, Target, dict], Fault]
    kinds: tuple[str, ...]
    heal: str
    label: str
    color: str
    params: tuple[str, ...] | None = ()
    description: str = ""
    check: Callable[[dict], list[str]] | None = None  # the parameters' types and ranges: what is wrong with them


def _kill(ctx: FaultContext, t: Target, params: dict) -> Fault:
    # a supervised node is restarted by its supervisor, not by the heal
    return Kill(t.node, restart_on_heal=not t.supervised, log=ctx.fault_log, requirements=ctx.requirement_ids)


def _terminate(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return Terminate(t.node, restart_on_heal=not t.supervised, log=ctx.fault_log, requirements=ctx.requirement_ids)


def _pause(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return Pause(t.node, log=ctx.fault_log, requirements=ctx.requirement_ids)


def _lose_reply(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return BrokerBehaviour(lambda: ctx.broker_admin(t.name), {"lose_reply_rate": float(params.get("rate", 0.3))},
                           target=t.name, name="broker-lose-reply", log=ctx.fault_log,
                           requirements=ctx.requirement_ids)


def _latency(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return BrokerBehaviour(lambda: ctx.broker_admin(t.name), {"order_latency_ms": float(params.get("ms", 300.0))},
                           target=t.name, name="broker-latency", log=ctx.fault_log, requirements=ctx.requirement_ids)


def _behaviour(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return BrokerBehaviour(lambda: ctx.broker_admin(t.name), dict(params), target=t.name, log=ctx.fault_log,
                           requirements=ctx.requirement_ids)


def _isolate(ctx: FaultContext, t: Target, params: dict) -> Fault:
    fault = Isolate(t.address, mode=params.get("mode", "drop"), description=f"{t.name} ({t.address}) cut off "
                    f"from every other address ({params.get('mode', 'drop')})", log=ctx.fault_log,
                    requirements=ctx.requirement_ids)
    fault.name = "node-isolate"
    return fault


def _isolate_primary(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return isolate_primary(t.address, mode=params.get("mode", "drop"), log=ctx.fault_log,
                           requirements=ctx.requirement_ids)


def _disconnect(ctx: FaultContext, t: Target, params: dict) -> Fault:
    """The node cut off entirely: ``docker network disconnect`` of its container on the docker provider
    (``faults.docker_net``); on the external provider every link to it through the user's Toxiproxy down
    (``ExternalStack.cut_node``); elsewhere every packet to and from its address dropped (nftables)."""
    cut = getattr(getattr(ctx, "stack", None), "cut_node", None)
    if cut is not None:
        return cut(t.name, log=ctx.fault_log, requirements=ctx.requirement_ids)
    if hasattr(t.node, "disconnect"):
        from faults.docker_net import NodeDisconnect

        return NodeDisconnect(t.node, log=ctx.fault_log, requirements=ctx.requirement_ids)
    fault = Isolate(t.address, mode="drop", description=f"{t.name} ({t.address}) cut off entirely (drop)",
                    log=ctx.fault_log, requirements=ctx.requirement_ids)
    fault.name = "node-disconnect"
    return fault


PARTITION_SHAPES = ("isolate", "majority-minority", "sentinels-apart")
PARTITION_MEMBERS = ("active-engine", "passive-engine")


def _partition_members(ctx: FaultContext, names: Sequence[str]) -> dict[str, str]:
    """member name -> address, for the roles of ``names`` (engines, resolved now)."""
    out = {}
    for role in names:
        t = ctx.resolve(role)
        out[t.name] = t.address
    return out


def _redis_partition(ctx: FaultContext, t: Target, params: dict) -> Fault:
    """A named partition around the Redis primary ``t`` (see ``PARTITION_SHAPES``): ``isolate`` puts the primary
    alone with the members of ``with`` and the minority-side writers; ``majority-minority`` draws the seeded split of
    the Redis nodes and Sentinels with the primary in the minority (``faults.partition.majority_minority``), the
    ``with`` members and minority writers joining it; ``sentinels-apart`` cuts every Sentinel from every other
    (no side has a quorum) and leaves everything else connected. Everything not placed is on the majority side,
    the harness (its clients leave from 127.0.0.1) included."""
    from scenarios.setclients import writer_address, writer_specs

    shape = params.get("shape", "isolate")
    topo = ctx.topology
    # brokers stay out of it: the partition is of the Redis group and its clients, not of the broker links
    addr = {n.name: n.address for n in topo.nodes if n.kind in ("redis", "sentinel", "engine")}
    by_addr = {v: k for k, v in addr.items()}
    writers = {spec.process: (writer_address(topo.subnet, i), spec.side)
               for i, spec in enumerate(writer_specs(ctx.workload().params))}
    log = dict(log=ctx.fault_log, requirements=ctx.requirement_ids, mode=params.get("mode", "drop"))
    if shape == "sentinels-apart":
        sentinels = [n.name for n in topo.of_kind("sentinel")]
        return RedisPartition([[addr[s]] for s in sentinels], shape=shape, sides={s: [s] for s in sentinels},
                              description=f"sentinels apart: {', '.join(sentinels)} each alone (no quorum)", **log)
    with_members = _partition_members(ctx, params.get("with", ()))
    minority_writers = {w: a for w, (a, side) in writers.items() if side == "minority"}
    if shape == "isolate":
        minority = [t.address]
    else:
        nodes = [n.address for n in (*topo.of_kind("redis"), *topo.of_kind("sentinel"))]
        split = majority_minority(nodes, random.Random(f"{ctx.seed}:partition"), primary=t.address,
                                  primary_in_minority=True, clients_with=None)
        minority = list(split.minority)
    minority += [a for a in (*with_members.values(), *minority_writers.values()) if a not in minority]
    placed = set(minority)
    majority = [a for a in (*addr.values(), *(a for a, _ in writers.values()), CLIENT_SOURCE) if a not in placed]
    majority = list(dict.fromkeys(majority))
    names = {**by_addr, **{a: w for w, (a, _) in writers.items()}, CLIENT_SOURCE: "harness"}
    sides = {"minority": [names.get(a, a) for a in minority], "majority": [names.get(a, a) for a in majority]}
    return RedisPartition([minority, majority], shape=shape, sides=sides,
                          description=f"{shape}: minority {', '.join(sides['minority'])} | majority "
                                      f"{', '.join(sides['majority'])}", **log)


def _check_partition(params: dict) -> list[str]:
    problems = _check_mode(params)
    shape = params.get("shape", "isolate")
    if shape not in PARTITION_SHAPES:
        problems.append(f"shape {shape!r} must be one of {', '.join(PARTITION_SHAPES)}")
    members = params.get("with", [])
    if not isinstance(members, (list, tuple)) or any(m not in PARTITION_MEMBERS for m in members):
        problems.append(f"with {members!r} must be a list of {', '.join(PARTITION_MEMBERS)}")
    elif shape == "sentinels-apart" and members:
        problems.append("with: sentinels-apart places no other member")
    return problems


def _planned_failover(ctx: FaultContext, t: Target, params: dict) -> Fault:
    stack = ctx.stack
    names = [s.name for s in ctx.topology.of_kind("sentinel")]
    peers = [lambda n=n: stack.redis_node_client(n, timeout=2.0) for n in names]
    return PlannedFailover(peers[0], lambda: stack.redis_primary(),
                           stack.master_name, procedure=params.get("procedure", "sentinel"),
                           old_node=lambda: stack.redis_node_client(t.name, timeout=2.0), peers=peers,
                           log=ctx.fault_log, requirements=ctx.requirement_ids)


def _check_procedure(params: dict) -> list[str]:
    procedure = params.get("procedure", "sentinel")
    return [] if procedure in ("sentinel", "paused") else [f"procedure {procedure!r} must be sentinel or paused"]


def _all_redis_down(ctx: FaultContext, t: Target, params: dict) -> Fault:
    nodes = [ctx.stack.node(n.name) for n in ctx.topology.of_kind("redis")]
    fault = Composite([Kill(n, restart_on_heal=True) for n in nodes],
                      description=f"SIGKILL every Redis node ({', '.join(n.name for n in nodes)})",
                      log=ctx.fault_log, requirements=ctx.requirement_ids)
    fault.name = "redis-all-down"
    return fault


def journal_path(t: Target) -> "Path":
    """The intent journal of an engine target: ``journal-<instance>.duckdb`` in the state dir its node was started
    with (``--state-dir``, ``tradedrill.services.engine.build_node``)."""
    from pathlib import Path

    extra = getattr(t.node, "extra", None) or {}
    state, instance = extra.get("state_dir"), extra.get("instance")
    if not state or not instance:
        raise ValueError(f"{t.name} is not an engine node started with a state dir (its handle names none)")
    return Path(state) / f"journal-{instance}.duckdb"


def _duckdb_rng(ctx: FaultContext, name: str, mode: str) -> random.Random:
    return random.Random(f"{ctx.seed}:{name}:{mode}")


def _duckdb_corrupt(ctx: FaultContext, t: Target, params: dict) -> Fault:
    mode = params.get("mode", "zero-header")
    return CorruptDuckDB(journal_path(t), mode, _duckdb_rng(ctx, "duckdb-corrupt", mode), restore_on_heal=False,
                         log=ctx.fault_log, requirements=ctx.requirement_ids)


def _duckdb_crash_corrupt(ctx: FaultContext, t: Target, params: dict) -> Fault:
    mode = params.get("mode", "wal-garble")
    return CrashCorruptDuckDB(t.node, journal_path(t), mode, _duckdb_rng(ctx, "duckdb-crash-corrupt", mode),
                              restart_on_heal=not t.supervised, log=ctx.fault_log, requirements=ctx.requirement_ids)


def _disk_fill(ctx: FaultContext, t: Target, params: dict) -> Fault:
    return FillFilesystem(journal_path(t).parent, free_bytes=int(params.get("free_bytes", 0)), log=ctx.fault_log,
                          requirements=ctx.requirement_ids)


def _check_free_bytes(params: dict) -> list[str]:
    value = params.get("free_bytes", 0)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return [] if ok else [f"free_bytes {value!r} must be a whole number of bytes >= 0"]


def _check_duckdb_mode(params: dict) -> list[str]:
    mode = params.get("mode")
    if mode is None or mode in CorruptDuckDB.MODES:
        return []
    return [f"mode {mode!r} must be one of {', '.join(CorruptDuckDB.MODES)}"]


def _check_behaviour(params: dict) -> list[str]:
    """The simulator's own typed, range-checked behaviour settings (``Behaviour.checked``)."""
    from reference.mt5.simulator.config import Behaviour, SettingError

    try:
        Behaviour.checked(params)
    except SettingError as exc:
        return [str(exc)]
    return []


def _check_rate(params: dict) -> list[str]:
    return _check_behaviour({"lose_reply_rate": params["rate"]}) if "rate" in params else []


def _check_latency(params: dict) -> list[str]:
    return _check_behaviour({"order_latency_ms": params["ms"]}) if "ms" in params else []


def _check_mode(params: dict) -> list[str]:
    mode = params.get("mode", "drop")
    return [] if mode in ("drop", "reset") else [f"mode {mode!r} must be drop or reset"]


# -- the engine's JSON settings (issue 13, CFG-1/2) ------------------------------------------------------------
USER_SETTINGS_DIR = "config"   # the engines' user_settings_dir in a drill: <state_dir>/config/engine.json


def settings_path(t: Target) -> "Path":
    """The user settings file of an engine target (``<state_dir>/config/engine.json``)."""
    return journal_path(t).parent / USER_SETTINGS_DIR / "engine.json"


def _config_corrupt(ctx: FaultContext, t: Target, params: dict) -> Fault:
    from faults.config import CrashCorruptConfig

    mode = params.get("mode", "invalid-json")
    return CrashCorruptConfig(t.node, settings_path(t), mode, random.Random(f"{ctx.seed}:config-corrupt:{mode}"),
                              restart_on_heal=not t.supervised, log=ctx.fault_log, requirements=ctx.requirement_ids)


def _check_config_mode(params: dict) -> list[str]:
    from faults.config import CorruptJSON

    mode = params.get("mode", "invalid-json")
    return [] if mode in CorruptJSON.MODES else [f"mode {mode!r} must be one of {', '.join(CorruptJSON.MODES)}"]


# -- Redis persistence: every node stopped, its AOF damaged, BR-1's recovery (issue 13) ------------------------
def redis_trade_state(ctx: FaultContext) -> dict[str, list[str]]:
    """What the Redis primary holds of the trade state, to verify after a restore: RTS order keys, RTRS results (by
    the RTSS entry each answers) and RTSS entry ids (``scenarios.environment`` keys of the drill's engine group)."""
    r = ctx.stack.redis(timeout=2.0)
    keys = ctx.keys
    try:
        # an RTRS result is named by the RTSS entry it answers (its own stream id when it has none): a result restored
        # from DuckDB comes back under a new stream id (the journal does not know the old one), one per entry
        return {"rts": sorted(r.scan_iter(match=keys.rts_signal_pattern, count=1000)),
                "rtrs": [f"answers:{f['entry_id']}" if f.get("entry_id") else e for e, f in r.xrange(keys.rtrs)],
                "rtss": [e for e, _ in r.xrange(keys.rtss)]}
    finally:
        r.close()


REDIS_PERSISTENCE_SETTINGS = ("appendonly", "appendfsync", "auto-aof-rewrite-min-size", "auto-aof-rewrite-percentage",
                              "save", "aof-use-rdb-preamble")


def redis_persistence_config(ctx: FaultContext) -> dict[str, dict[str, str]]:
    """RDS-3 as each running Redis node has it: CONFIG GET of its persistence settings, node by node (a node that
    does not answer gets ``{"error": ...}``)."""
    out: dict[str, dict[str, str]] = {}
    for spec in ctx.topology.of_kind("redis"):
        try:
            r = ctx.stack.redis_node_client(spec.name, timeout=2.0)
            try:
                got: dict[str, str] = {}
                for name in REDIS_PERSISTENCE_SETTINGS:
                    got.update({str(k): str(v) for k, v in r.config_get(name).items()})
                out[spec.name] = got
            finally:
                r.close()
        except Exception as exc:  # noqa: BLE001 - one line per node, the rest still read
            out[spec.name] = {"error": " ".join(str(exc).split())[:200] or type(exc).__name__}
    return out


def _redis_aof_damaged(ctx: FaultContext, t: Target, params: dict) -> Fault:
    from faults.redis_aof import AofDamaged
    from reference.store.redis_recovery import published_outcomes, recover_files, verify_against_journals
    from reference.store.redis_restore import restore_offline
    from tradedrill.services import engine as engine_svc
    from tradedrill.services import redis as redis_svc

    stack = ctx.stack
    specs = list(ctx.topology.of_kind("redis"))
    snapshot_dirs = [engine_svc.state_dir(s, stack.run_dir) / "backup" / "duckdb" for s in ctx.topology.of_kind("engine")]

    def restore(data_dir) -> dict:
        # RDS-6's "else from DuckDB": before the primary serves anyone (stream ids go back only above the last one)
        return restore_offline(data_dir, ctx.keys, group=ctx.keys.group, snapshot_dirs=snapshot_dirs,
                               lease_files=[p for s in ctx.topology.of_kind("engine")
                                            for p in sorted(engine_svc.state_dir(s, stack.run_dir).glob("lease-*"))])

    def verify_journal() -> dict:
        published, notes = published_outcomes(snapshot_dirs)
        r = stack.redis(timeout=2.0)
        try:
            return {**verify_against_journals(r, ctx.keys.rts_signal, published), "snapshots": notes}
        finally:
            r.close()

    return AofDamaged([stack.node(s.name) for s in specs],
                      {s.name: redis_svc.data_dir(s, stack.run_dir) for s in specs},
                      primary=lambda: stack.redis_primary_node().name, snapshot=lambda: redis_trade_state(ctx),
                      recover=recover_files, rng=random.Random(f"{ctx.seed}:redis-aof-damaged"),
                      verify_journal=verify_journal, config_of=lambda: redis_persistence_config(ctx),
                      stop=str(params.get("stop", "term")), restore=restore,
                      log=ctx.fault_log, requirements=ctx.requirement_ids)


def _check_stop(params: dict) -> list[str]:
    from faults.redis_aof import STOPS

    stop = params.get("stop", "term")
    return [] if stop in STOPS else [f"stop {stop!r} must be one of {', '.join(STOPS)}"]


# -- the credentials database (issue 13, PG-1) ------------------------------------------------------------------
def _postgres_restore(ctx: FaultContext, t: Target, params: dict) -> Fault:
    """pg_dump the drill's credentials database, drop it; heal: restore the newest dump and decrypt the logins
    (``faults.postgres.DropAndRestore``). Needs a drill whose topology runs postgres (``Scenario.services``)."""
    from faults.postgres import DropAndRestore
    from reference.settings.pgdumps import PgDumps

    logins = getattr(ctx, "pg_logins", None)
    if logins is None:
        raise ValueError("postgres-restore needs the drill's broker logins in PostgreSQL: give the scenario "
                         "services=(\"postgres\",)")
    return DropAndRestore(PgDumps(logins.dsn, logins.dumps_dir), logins.verify, expected=logins.broker_names,
                          node=t.name, log=ctx.fault_log,
                          requirements=ctx.requirement_ids)


# -- ClickHouse loses rows (issue 13, CH-2) -------------------------------------------------------------------------
def _clickhouse_data_lost(ctx: FaultContext, t: Target, params: dict) -> Fault:
    """TRUNCATE (or delete the newest day of) the engines' outcome table while trades flow
    (``faults.clickhouse.ClickHouseDataLost``)."""
    from faults.clickhouse import ClickHouseDataLost

    stack = ctx.stack
    table = str((getattr(stack, "engine_config", None) or {}).get("clickhouse_table") or "trade_outcomes")
    return ClickHouseDataLost(lambda: stack.clickhouse_client(connect_timeout=5, send_receive_timeout=30), table,
                              mode=str(params.get("mode", "truncate")), node=t.name, log=ctx.fault_log,
                              requirements=ctx.requirement_ids)


def _check_loss_mode(params: dict) -> list[str]:
    from faults.clickhouse import MODES

    mode = params.get("mode", "truncate")
    return [] if mode in MODES else [f"mode {mode!r} must be one of {', '.join(MODES)}"]


FAULTS: dict[str, FaultPackage] = {p.name: p for p in (
    FaultPackage("process-kill", _kill, (), "supervisor", "SIGKILL", "#d62728",
                 description="SIGKILL the target's process group"),
    FaultPackage("process-terminate", _terminate, (), "supervisor", "SIGTERM", "#ff7f0e",
                 description="SIGTERM the target (SIGKILL after its deadline)"),
    FaultPackage("process-pause", _pause, (), "end", "SIGSTOP", "#9467bd",
                 description="SIGSTOP the target's process group; heal sends SIGCONT"),
    FaultPackage("broker-lose-reply", _lose_reply, ("mt5",), "end", "lost replies", "#8c564b", ("rate",),
                 description="the broker executes order_send but the reply is lost (rate 0..1)", check=_check_rate),
    FaultPackage("broker-latency", _latency, ("mt5",), "end", "slow broker", "#17becf", ("ms",),
                 description="the broker sleeps ms milliseconds (default 300) before it executes each order_send "
                             "(the simulator's order_latency_ms): orders stay in flight that long",
                 check=_check_latency),
    FaultPackage("broker-behaviour", _behaviour, ("mt5",), "end", "broker behaviour", "#e377c2", None,
                 description="set any of the simulator's behaviour switches; heal restores them",
                 check=_check_behaviour),
    FaultPackage("node-isolate", _isolate, (), "end", "isolated", "#7f7f7f", ("mode",),
                 description="nftables: drop (or reset) every packet to and from the target's address",
                 check=_check_mode),
    FaultPackage("node-disconnect", _disconnect, (), "end", "disconnected", "#525252", (),
                 description="the node cut off entirely: docker network disconnect of its container (docker "
                             "provider), every packet to and from its address dropped elsewhere; heal reconnects it"),
    FaultPackage("redis-primary-isolated", _isolate_primary, ("redis",), "end", "primary isolated", "#bcbd22",
                 ("mode",), description="nftables: the Redis primary cut from clients, replicas and Sentinels",
                 check=_check_mode),
    FaultPackage("redis-partition", _redis_partition, ("redis",), "end", "Redis partition", "#aec7e8",
                 ("shape", "with", "mode"), description="nftables: a named partition around the Redis primary "
                 "(isolate, majority-minority, sentinels-apart), engines and writer clients placed by side",
                 check=_check_partition),
    FaultPackage("redis-failover", _planned_failover, ("redis",), "end", "planned failover", "#98df8a",
                 ("procedure",), description="SENTINEL FAILOVER under load (maintenance): a primary change with every "
                 "connection left open; procedure sentinel (the bare command) or paused (writes paused, the old "
                 "primary demoted at once)", check=_check_procedure),
    FaultPackage("duckdb-corrupt", _duckdb_corrupt, ("engine",), "end", "DuckDB damaged", "#c49c94", ("mode",),
                 description="damage the engine's live intent journal (faults.files.CorruptDuckDB: flip-block, "
                             "zero-header, truncate, wal-truncate, wal-garble, torn-write) and leave it for the engine "
                             "to find (DDB-6 health check) and repair; heal restores nothing",
                 check=_check_duckdb_mode),
    FaultPackage("duckdb-crash-corrupt", _duckdb_crash_corrupt, ("engine",), "supervisor", "crash + DuckDB damaged",
                 "#f7b6d2", ("mode",),
                 description="SIGKILL the engine, then damage its intent journal while nothing holds it open (a "
                             "torn or garbled WAL is what a crash mid-write leaves); the restart must repair it on "
                             "open (DDB-3); a supervised engine is restarted by its supervisor",
                 check=_check_duckdb_mode),
    FaultPackage("disk-fill", _disk_fill, ("engine",), "end", "disk full", "#dbdb8d", ("free_bytes",),
                 description="the filesystem of the engine's state dir (journal, snapshots) runs out of space while "
                             "its files stay open: ENOSPC until healed (the filler deleted); refused unless that "
                             "folder is on a tmpfs of its own, mounted before the engine starts",
                 check=_check_free_bytes),
    FaultPackage("redis-all-down", _all_redis_down, ("redis",), "end", "all Redis down", "#ff9896", (),
                 description="SIGKILL every Redis node; the heal starts them all again (ORD-3)"),
    FaultPackage("config-corrupt", _config_corrupt, ("engine",), "supervisor", "settings file damaged", "#9edae5",
                 ("mode",), description="damage the engine's JSON user settings (truncate, invalid-json, wrong-type, "
                 "oversize), then SIGKILL it: its restart must load the newest valid backup and say so (CFG-2)",
                 check=_check_config_mode),
    FaultPackage("redis-aof-damaged", _redis_aof_damaged, ("redis",), "end", "Redis stopped, AOF damaged",
                 "#ffbb78", ("stop",), description="stop every Redis node (stop=term: SIGTERM, RDB saved on the way "
                 "out; stop=kill: SIGKILL, a crash, the last RDB is whatever save wrote before), damage each AOF; the "
                 "heal follows BR-1: redis-check-aof, else the last RDB (redis-check-rdb) as the base of a new AOF, "
                 "damaged files kept; starts them and verifies the state read before the stop; CONFIG GET of each "
                 "node's persistence settings before and after (RDS-3)", check=_check_stop),
    FaultPackage("postgres-restore", _postgres_restore, ("postgres",), "end", "credentials DB restore", "#c5b0d5",
                 (), description="pg_dump the credentials database and DROP it; the heal restores the newest dump "
                 "and decrypts the broker logins again (PG-1: restore under 5 s)"),
    FaultPackage("clickhouse-data-lost", _clickhouse_data_lost, ("clickhouse",), "end", "ClickHouse rows lost",
                 "#e7969c", ("mode",), check=_check_loss_mode,
                 description="TRUNCATE the engines' ClickHouse outcome table (mode truncate) or delete its newest UTC "
                             "day (mode day) while trades flow; the heal undoes nothing and counts the lost rows "
                             "back (CH-2: the backfill from DuckDB puts them back)"),
    # the EA's tick paths (issue 14; scenarios.tickclients): target an ea node, act on it and its drill consumer
    FaultPackage("udp-loss", _ticks.udp_loss, ("ea",), "end", "UDP loss", "#ffbb78", ("percent",),
                 description="the kernel drops percent % (default 30) of the UDP ticks arriving at the EA's consumer",
                 check=_ticks.check_percent),
    FaultPackage("udp-blackhole", _ticks.udp_blackhole, ("ea",), "end", "UDP blackhole", "#ff7f0e", (),
                 description="every UDP tick to the EA's consumer dropped: TCP must serve them (EA-2)"),
    FaultPackage("tick-cut", _ticks.tick_cut, ("ea",), "end", "UDP+TCP cut", "#8c564b", (),
                 description="nftables: the EA and its consumer cut apart, UDP and TCP down together (EA-2)"),
    FaultPackage("ea-network-down", _ticks.ea_network_down, ("ea",), "end", "EA network down", "#7f7f7f", (),
                 description="nftables: the EA cut from its broker; it must restart itself by 30 s (EA-4)"),
    FaultPackage("udp-loss-proxy", _ticks.udp_loss_proxy, ("ea",), "end", "UDP loss (proxy)", "#c7c7c7",
                 ("percent",), description="the fault proxy drops percent % (default 30) of the UDP ticks to the "
                 "EA's consumer, seeded by the run", check=_ticks.check_percent),
    FaultPackage("udp-dup-reorder", _ticks.udp_dup_reorder, ("ea",), "end", "UDP dup + reorder", "#dbdb8d",
                 ("duplicate", "reorder", "delay_ms"),
                 description="the fault proxy duplicates (default 30 %) and delays by delay_ms (default 20, "
                             "reorder 30 %) the UDP ticks to the EA's consumer, seeded",
                 check=_ticks.check_dup_reorder),
    # the backends' proxy (issue 15; scenarios.webhook): TradingView's webhook clients cut from it, the panel not
    FaultPackage("webhook-cut", _webhook.webhook_cut, ("nginx",), "end", "TradingView away", "#1f77b4", ("mode",),
                 description="nftables: the drill's TradingView address (<subnet>.251) cut from the proxy (reset, "
                             "or drop); the local panel still reaches it (TV-2, TV-3)"),
)}


def package(name: str) -> FaultPackage:
    try:
        return FAULTS[name]
    except KeyError:
        raise KeyError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULTS))}") from None


def check_step(fault: str, target: str, params: dict, node_kinds: dict[str, str]) -> list[str]:
    """What is wrong with one fault step (empty: nothing). ``node_kinds``: node name -> kind of the topology
    the scenario runs on."""
    problems = []
    pkg = FAULTS.get(fault)
    if pkg is None:
        return [f"fault {fault!r} is not a known fault; known: {', '.join(sorted(FAULTS))}"]
    kind = TARGET_ROLES.get(target, node_kinds.get(target))
    if kind is None:
        problems.append(f"target {target!r} is neither a role ({', '.join(TARGET_ROLES)}) nor a node of the "
                        f"topology ({', '.join(sorted(node_kinds))})")
    elif pkg.kinds and kind not in pkg.kinds:
        problems.append(f"target {target!r} is a {kind} node; fault {fault} acts on {', '.join(pkg.kinds)} nodes")
    if pkg.params is not None:
        extra = sorted(set(params) - set(pkg.params))
        if extra:
            problems.append(f"fault {fault} takes no parameter {', '.join(map(repr, extra))}; it takes "
                            f"{', '.join(pkg.params) or 'none'}")
    if pkg.check is not None and not problems:
        problems += [f"fault {fault}: {p}" for p in pkg.check(dict(params))]
    return problems


def report_styles() -> dict[str, dict[str, str]]:
    """fault name -> {"label", "color"} for the report's fault shading."""
    return {p.name: {"label": p.label, "color": p.color} for p in FAULTS.values()}
