"""The environment of one drill run (Locust's ``Environment``: one object that wires everything): the run folder,
the running topology (``tradedrill.local.LocalStack`` with Redis, Sentinels, both brokers and both engines, every
one a node of the declarative topology), the fault and history logs, target resolution for the fault packages, and
the ground-truth dump after every engine has stopped.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import redis

from faults.cli import heal_dead_leftovers
from faults.core import FaultLog
from reference.engine import contract
from scenarios import registry, setclients
from scenarios.history import BACKLOG, BROKER_ORDERS, RTRS, RTS, History, RunDir, SignalLog
from scenarios.packages import TARGET_ROLES
from tradedrill import providers
from tradedrill.local import LocalStack, StackError
from tradedrill.process import NodeStartError, ProcessNode
from tradedrill.waiting import DeadlineExceeded
from tradedrill.topology import Topology


class DrillError(RuntimeError):
    """A drill could not run (not: a drill found a problem; that is a verdict, not an error). The message says
    what to do."""


@dataclass
class DrillOptions:
    """How to run drills. ``duration_s``/``settle_s``/``rate_per_s``/``fault_at_s`` scale the scenario's
    workload and schedule (tests use short drills; the targets are never scaled). ``engine_command`` replaces
    ``python -m reference.engine`` before ``run --config ... --instance ...``: tests run deliberately broken
    engines that way, so production code carries no switch for them."""

    subnet: str = "127.0.0"
    # which provider realises the topology (tradedrill.providers: local, docker, external); provider_options are
    # its own (the external provider's topology file, ...)
    provider: str = "local"
    provider_options: dict = field(default_factory=dict)
    seed: int | None = None
    repeat: int = 3
    out_dir: Path = Path("out/drills")
    duration_s: float | None = None
    settle_s: float | None = None
    rate_per_s: float | None = None
    fault_at_s: float | None = None
    topology_overrides: dict = field(default_factory=dict)
    engine_overrides: dict = field(default_factory=dict)
    engine_command: tuple[str, ...] | None = None
    engine_env: dict = field(default_factory=dict)
    # MB of the tmpfs mounted over each engine's state dir when the scenario fills a disk (disk-fill); None: the
    # default DISK_FILL_TMPFS_MB
    engine_state_tmpfs_mb: int | None = None
    progress: Callable[[str], None] | None = None
    on_run_done: Callable[[], None] | None = None

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(message)


@dataclass
class ResolvedTarget:
    """A fault target resolved against the running stack (see ``scenarios.packages``)."""

    name: str
    kind: str
    address: str
    node: ProcessNode
    supervised: bool


PROVIDER_FILE = "provider.json"   # the provider of the run, its capabilities and the faults it could not inject
CLICKHOUSE_ROWS = "clickhouse_rows.json"   # the drill's ClickHouse outcome rows (FINAL), dumped after the engines
CLICKHOUSE_RESTORE = "clickhouse_restore.json"   # CH-3: each engine's backups restored into a scratch table, counted
RESTORE_MARGIN_MS = 10_000   # a row synced this long before a backup began had finished its INSERT (timeout 5 s)
DISK_FILL_TMPFS_MB = 32   # journal, snapshots and event log of a 40 s drill fit several times over


def rts_orders(r: Any, keys: Any, stack: Any) -> dict[str, dict]:
    """RTS's signal hashes by signal id: every one on a stack started for the run (a signal nobody sent is a
    phantom); only this run's on a provider whose RTS outlives runs (``stack.this_runs_signal``, the external
    provider: its earlier runs' signals are no phantoms of this one)."""
    this_run = getattr(stack, "this_runs_signal", None)
    orders = {}
    for key in r.scan_iter(match=keys.rts_signal_pattern, count=500):
        sid = keys.signal_of_rts_key(key)
        if this_run is None or this_run(sid):
            orders[sid] = r.hgetall(key)
    return orders


class DrillEnvironment:
    """One run: ``up()`` starts the topology, ``resolve(target)`` finds a fault's victim by role at injection
    time, ``stop_engines()`` then ``dump_ground_truth()`` record what really happened, ``down()`` stops everything
    by its own handle."""

    def __init__(self, scenario: registry.Scenario, run: RunDir, seed: int, opts: DrillOptions):
        self.scenario = scenario
        self.run = run
        self.seed = seed
        self.opts = opts
        self.rng = random.Random(seed)
        self.stack: LocalStack | None = None   # or any provider's stack (tradedrill.providers.base.Stack)
        self.skipped_faults: list[dict] = []
        self.pg_logins = None   # scenarios.pglogins.DrillLogins when the topology runs postgres
        self.fault_log = FaultLog(run.path / "faults.jsonl")
        self.history = History(run.path / "history.jsonl")
        self.signal_log = SignalLog(run.path / "signals.jsonl")
        self._stack_dir = run.path / "stack"
        self.topology = providers.stack_class(opts.provider).drill_topology(
            subnet=opts.subnet, services=registry.drill_services(scenario), overrides=dict(opts.topology_overrides),
            **opts.provider_options)
        self.keys = contract.Keys(group=str(self.topology.settings["engine.group"]))
        self.account = int(self.topology.settings["mt5.account"])

    @property
    def requirement_ids(self) -> tuple[str, ...]:
        return tuple(self.scenario.requirement_ids)

    # -- bring-up -------------------------------------------------------------------------------------------------
    def up(self) -> None:
        from scenarios import overrides as overrides_mod

        # the scenario's drill-sized settings, recorded with the documents' values (the report says "overridden")
        overrides_mod.record(self.run.path, dict(self.scenario.engine_overrides), dict(self.opts.engine_overrides),
                             dict(self.opts.topology_overrides))   # --set of the drill's topology (issue 19)
        options = {"mt5": {"seed": self.seed},
                   "engine": {"overrides": {**self.scenario.engine_overrides, **self.opts.engine_overrides},
                              "command": self.opts.engine_command, "env": dict(self.opts.engine_env) or None}}
        if any(step.fault == "disk-fill" for step in self.scenario.faults):
            # the fault only fills a tmpfs of the engine's own: mounted before the engines start, undone by down()
            options["engine"]["state_tmpfs_mb"] = self.opts.engine_state_tmpfs_mb or DISK_FILL_TMPFS_MB
        before: list[Callable[[LocalStack], None]] = []   # once the other nodes serve, before the engines start
        if "postgres" in self.topology.services:
            # PG-1 (issue 13): the engines read their broker logins from PostgreSQL; key outside the run folder
            from scenarios.pglogins import DrillLogins

            self.pg_logins = DrillLogins(self.topology, self._stack_dir)
            options["mt5"]["config_file"] = self.pg_logins.sim_config
            options["engine"]["overrides"] = {**self.pg_logins.engine_overrides, **options["engine"]["overrides"]}
            before.append(self.pg_logins.store)
        if "clickhouse" in self.topology.services:
            # CH-1 (issue 13): the engines sync every final outcome to the drill's ClickHouse
            options["engine"]["overrides"] = {**self._clickhouse_overrides(), **options["engine"]["overrides"]}
        if any(step.fault == "config-corrupt" for step in self.scenario.faults):
            # CFG-1/2 (issue 13): each engine loads its user settings (JSON, 3 backups) at start
            from scenarios.packages import USER_SETTINGS_DIR

            options["engine"]["overrides"] = {"user_settings_dir": USER_SETTINGS_DIR, **options["engine"]["overrides"]}
            before.append(self._seed_user_settings)
        if self.scenario.broker_symbols:
            # issue 20: drill brokers with their own symbol settings (a wider price step so stops trigger in a drill)
            options["mt5"]["config_file"] = self._broker_config(options["mt5"].get("config_file"))
        before_engines = (lambda stack: [step(stack) for step in before]) if before else None
        for line in heal_dead_leftovers():  # kernel rules and mounts of a SIGKILLed earlier drill
            self.opts.say(f"  {line}")
        self.stack = providers.build(self.opts.provider, self.topology, self._stack_dir, options=options,
                                     before_engines=before_engines, **self.opts.provider_options)
        self._write_provider()
        try:
            self.stack.up()
        except (StackError, NodeStartError, DeadlineExceeded) as exc:
            raise DrillError(f"the drill's stack ({self.opts.provider} provider) on {self.topology.subnet}.x did "
                             f"not start: {exc}") from None
        self._write_provider()
        config = {"topology": self.topology.to_dict(), "engine": _redacted(self.stack.engine_config),
                  "workload": self.workload().__dict__, "comment_prefix": contract.COMMENT_PREFIX}
        (self.run.path / "config.json").write_text(json.dumps(config, indent=2, default=str))

    def _broker_config(self, base: Path | None) -> Path:
        """The simulators' configuration file with the scenario's ``broker_symbols`` over the default symbols (and
        whatever ``base``, e.g. PostgreSQL's sealed-login accounts, already holds; the file stays private)."""
        from reference.mt5.simulator.config import DEFAULT_SYMBOLS, SimConfig
        from tradedrill.credentials import write_private

        doc = json.loads(Path(base).read_text()) if base else {}
        doc["symbols"] = [dict(asdict(s), **self.scenario.broker_symbols.get(s.name, {})) for s in DEFAULT_SYMBOLS]
        SimConfig.from_dict(doc)   # every value checked before a simulator is started with it
        path = Path(base) if base else self._stack_dir / "mt5-config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(doc, indent=2))
        return path

    def _write_provider(self) -> None:
        """PROVIDER_FILE: which provider ran the stack, what it can inject and the faults it skipped (the report
        shows it)."""
        stack = self.stack
        doc = {"provider": getattr(stack, "provider", self.opts.provider),
               "capabilities": sorted(getattr(stack, "capabilities", ())),
               "skipped_faults": list(self.skipped_faults)}
        doc.update(getattr(stack, "provider_details", lambda: {})())
        (self.run.path / PROVIDER_FILE).write_text(json.dumps(doc, indent=2, default=str))

    def skip_fault(self, index: int, fault: str, target: str, missing: list[str]) -> None:
        """A scheduled fault this provider cannot inject: recorded, never silently dropped."""
        self.skipped_faults.append({"step": index, "fault": fault, "target": target, "missing": missing,
                                    "reason": f"the {self.opts.provider} provider cannot inject {fault} "
                                              f"(needs {', '.join(missing)})"})
        self._write_provider()

    def _clickhouse_overrides(self) -> dict:
        """The engines' ClickHouse settings: the drill's server, its password in a 0600 file of the stack's secrets
        (the config names the file), CH-1's retry figures as default, no CH-3 backups (another drill's subject)."""
        from tradedrill.credentials import StackSecrets
        from tradedrill.services.engine import clickhouse_config

        return clickhouse_config(self.topology, StackSecrets.ensure(self._stack_dir))

    def _dump_clickhouse(self) -> None:
        """CLICKHOUSE_ROWS: every outcome row of ClickHouse as read with FINAL (one per trade key), and the raw row
        count (resends not yet merged); or the error that kept them from being read."""
        from reference.store.clickhouse_sync import COLUMN_NAMES

        table = str((self.stack.engine_config or {}).get("clickhouse_table") or "trade_outcomes")
        doc: dict[str, Any] = {"table": table}
        try:
            client = self.stack.clickhouse_client(connect_timeout=5, send_receive_timeout=30)
            try:
                wanted = [c for c in ("trade_key", "signal_id", "instance", "state", "status", "broker", "order_id",
                                      "deal_id", "final_ms", "version", "synced_ms") if c in COLUMN_NAMES]
                result = client.query(f"SELECT {', '.join(wanted)} FROM {table} FINAL")
                doc["rows"] = [dict(zip(wanted, row)) for row in result.result_rows]
                doc["raw_rows"] = int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - the checker says the rows could not be read
            doc["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
        (self.run.path / CLICKHOUSE_ROWS).write_text(json.dumps(doc, default=str))

    def _check_clickhouse_restore(self) -> None:
        """CLICKHOUSE_RESTORE (CH-3's tested restore): each engine's newest backup chain (full + incrementals, every
        file's sha256 checked first) restored into a scratch copy of the outcome table (``CREATE TABLE ... AS``),
        counted with FINAL, compared with the live table's keys synced RESTORE_MARGIN_MS before the chain's last
        backup began (they must all be in it), then dropped. Nothing when the engines took no backups."""
        from reference.store.clickhouse_backup import BackupSettings, ClickHouseBackups
        from reference.store.clickhouse_sync import ClickHouseSettings, ClickHouseTarget
        from tradedrill.services import engine as engine_svc

        cfg = self.stack.engine_config or {}
        if not cfg.get("clickhouse_url") or cfg.get("clickhouse_backup_dir") == "off":
            return
        table = str(cfg.get("clickhouse_table") or "trade_outcomes")
        doc: dict[str, Any] = {"table": table, "margin_ms": RESTORE_MARGIN_MS, "engines": []}
        for spec in self.topology.of_kind("engine"):
            instance = engine_svc.instance_of(spec)
            folder = Path(cfg.get("clickhouse_backup_dir") or
                          engine_svc.state_dir(spec, self.stack.run_dir) / "backup" / "clickhouse")
            entry: dict[str, Any] = {"engine": spec.name, "instance": instance, "folder": str(folder)}
            doc["engines"].append(entry)
            target = ClickHouseTarget(ClickHouseSettings(
                url=str(cfg["clickhouse_url"]), username=str(cfg.get("clickhouse_username") or "default"),
                password_file=str(cfg.get("clickhouse_password_file") or ""), table=table, timeout_s=10.0))
            scratch = f"{table}_restore_{''.join(ch if ch.isalnum() else '_' for ch in spec.name)}"
            try:
                backups = ClickHouseBackups(target, BackupSettings(str(folder)))
                chain = backups.chain()
                entry["chain"] = [e.file for e in chain]
                if not chain:
                    entry["error"] = "no full backup in the folder"
                    continue
                target.ensure_table()
                target._call("DROP TABLE", lambda c: c.command(f"DROP TABLE IF EXISTS {scratch}"))
                target._call("CREATE TABLE", lambda c: c.command(f"CREATE TABLE {scratch} AS {table}"))
                restored = backups.restore(table=scratch)
                got = {str(r[0]) for r in target.query(f"SELECT trade_key FROM {scratch} FINAL")}
                until = chain[-1].until_ms - RESTORE_MARGIN_MS
                expected = {str(r[0]) for r in target.query(
                    f"SELECT trade_key FROM {table} FINAL WHERE synced_ms <= {int(until)}")}
                entry.update(restored_rows=len(got), expected_rows=len(expected),
                             rows_inserted=restored["rows_inserted"], seconds=restored["seconds"], missing=len(expected - got),
                             missing_keys=sorted(expected - got)[:20], last_backup_ms=chain[-1].until_ms)
            except Exception as exc:  # noqa: BLE001 - the checker says the restore could not be checked and why
                entry["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
            finally:
                try:
                    target._call("DROP TABLE", lambda c: c.command(f"DROP TABLE IF EXISTS {scratch}"))
                except Exception:  # noqa: BLE001 - a scratch table left behind is harmless; the run goes on
                    pass
                target.close()
        (self.run.path / CLICKHOUSE_RESTORE).write_text(json.dumps(doc, default=str))

    def _seed_user_settings(self, stack: LocalStack) -> None:
        """Each engine's ``<state_dir>/config/engine.json`` saved four times (three backups, CFG-1), the last save
        the settings in force; the damage of config-corrupt then has a valid backup to fall back to."""
        from reference.settings import EngineUserSettings, engine_settings
        from scenarios.packages import USER_SETTINGS_DIR
        from tradedrill.credentials import private_dir
        from tradedrill.services import engine as engine_svc

        for spec in self.topology.of_kind("engine"):
            folder = private_dir(engine_svc.state_dir(spec, stack.run_dir)) / USER_SETTINGS_DIR
            store = engine_settings(folder)
            for deviation in (17, 18, 19, 20):   # the last one is the engine's default (20 points)
                store.save(EngineUserSettings(deviation_points=deviation))

    def workload(self) -> registry.Workload:
        changes = {k: v for k, v in (("duration_s", self.opts.duration_s), ("settle_s", self.opts.settle_s),
                                     ("rate_per_s", self.opts.rate_per_s)) if v is not None}
        return replace(self.scenario.workload, **changes)

    # -- queries of the live stack --------------------------------------------------------------------------------
    def redis(self, timeout: float = 0.5) -> redis.Redis:
        return self.stack.redis(timeout)

    def submitter_config(self, timeout: float = 0.5, **overrides):
        """How the drill's signal producers and RTRS reader reach Redis (``reference.engine.submit``): the primary
        a majority of the Sentinels names, logged in as the harness, WAIT per the workload's ``submit_wait``
        (replicas, default 1) and ``submit_wait_ms`` (default 500)."""
        from reference.engine.submit import SubmitterConfig

        cred = self.stack.harness_credential
        params = self.scenario.workload.params
        fields = dict(sentinels=[list(a) for a in self.stack.sentinel_addresses()], master_name=self.stack.master_name,
                      credentials=(cred.username, cred.password), redis_socket_timeout_s=max(timeout, 0.3),
                      redis_connect_timeout_s=timeout, instance="drill", client_prefix="harness",
                      wait_replicas=int(params.get("submit_wait", 1)), wait_ms=int(params.get("submit_wait_ms", 500)))
        fields.update(overrides)
        return SubmitterConfig(**fields)

    def broker_admin(self, name: str):
        return self.stack.broker_admin(name)

    def resolve(self, target: str) -> ResolvedTarget:
        """The node a fault target names, resolved now (raises DrillError when nothing matches)."""
        stack = self.stack
        if target == "active-engine":
            node = stack.active_engine()
        elif target == "passive-engine":
            active = stack.active_engine()
            node = next((n for n in stack.engines.values() if n is not active), None)
        elif target == "redis-primary":
            node = stack.redis_primary_node()
        elif target == "redis-replica":
            primary = stack.redis_primary_node()
            node = next((stack.node(s.name) for s in self.topology.of_kind("redis")
                         if stack.node(s.name) is not primary), None)
        elif target in TARGET_ROLES:
            node = next((stack.node(s.name) for s in self.topology.nodes if s.role == target), None)
        else:
            node = stack.nodes.get(target)
        if node is None:
            raise DrillError(f"fault target {target!r} matches no running node of the drill's topology")
        spec = self.topology.node(node.name)
        return ResolvedTarget(node.name, spec.kind, spec.address, node, spec.kind in stack.supervised_kinds)

    # -- the end of a run -----------------------------------------------------------------------------------------
    def stop_engines(self) -> None:
        """Stop every engine (and its supervisor) so the ground truth no longer moves."""
        if self.stack:
            self.stack.stop_kind("engine")

    def dump_ground_truth(self) -> None:
        """Both brokers' ledgers, RTRS, RTS and the RTSS backlog into the run folder. Call after
        :meth:`stop_engines`: a ledger dumped while an engine still trades shows phantom orders."""
        with open(self.run.path / "ledger.jsonl", "w") as out:
            for name, node in self.stack.brokers.items():
                if not node.is_alive():
                    node.start().wait_ready()
                admin = self.broker_admin(name)
                try:
                    for deal in admin.ledger():
                        row = dict(deal._asdict() if hasattr(deal, "_asdict") else deal)
                        row["broker"] = name
                        out.write(json.dumps(row, default=str) + "\n")
                finally:
                    admin.close()
        # issue 20: the brokers' orders too; a pending order the price never reached has no deal in the ledger
        with open(self.run.path / BROKER_ORDERS, "w") as out:
            for name in self.stack.brokers:
                admin = self.broker_admin(name)
                try:
                    for order in admin.orders():
                        out.write(json.dumps(dict(order, broker=name), default=str) + "\n")
                finally:
                    admin.close()
        r = self.redis(timeout=2.0)
        keys = self.keys
        results = set()
        with open(self.run.path / RTRS, "w") as out:
            for entry_id, fields in r.xrange(keys.rtrs):
                results.add(fields.get("entry_id"))
                out.write(json.dumps({"entry": entry_id, **fields}) + "\n")
        orders = rts_orders(r, keys, self.stack)
        positions = r.hgetall(keys.rts_positions)
        (self.run.path / RTS).write_text(json.dumps({"orders": orders, "positions_raw": positions}, indent=2))
        (self.run.path / BACKLOG).write_text(json.dumps(self._backlog(r, results), indent=2))
        specs = setclients.writer_specs(self.workload().params)
        if specs:
            setclients.dump_sets(self, specs, self.run.path / setclients.WRITERS_FILE)
        setclients.dump_roles(self, self.run.path / setclients.ROLES_FILE)
        if "clickhouse" in self.topology.services:
            self._dump_clickhouse()
            self._check_clickhouse_restore()

    def _backlog(self, r: redis.Redis, results: set) -> dict:
        """RTSS entries without a result: undelivered (after the group's last delivered id) or pending."""
        group = self.keys.group
        try:
            info = next((g for g in r.xinfo_groups(self.keys.rtss) if g.get("name") == group), None)
        except redis.ResponseError:  # no stream or group: nothing was ever queued
            return {"signals": [], "undelivered": 0, "pending": 0}
        last = info.get("last-delivered-id", "0-0") if info else "0-0"
        pending = {p["message_id"]: p["consumer"]
                   for p in r.xpending_range(self.keys.rtss, group, "-", "+", 1_000_000)} if info else {}
        signals, undelivered, in_pending, pending_on = [], 0, 0, {}
        for entry_id, fields in r.xrange(self.keys.rtss):
            if entry_id in results:
                continue
            sid = fields.get("signal_id", entry_id)
            if _stream_id(entry_id) > _stream_id(last):
                undelivered += 1
            elif entry_id in pending:
                in_pending += 1
                pending_on[sid] = pending[entry_id]   # delivered to this consumer (engine), never answered
            else:
                continue
            signals.append(sid)
        return {"signals": signals, "undelivered": undelivered, "pending": in_pending, "pending_on": pending_on}

    def down(self) -> list[str]:
        """Stop every node; copy the node logs into the run folder. Returns teardown errors (never raises)."""
        errors: list[str] = []
        if self.stack:
            errors += self.stack.down()
            for logs in (self._stack_dir / "logs", self._stack_dir / "nodes"):
                if logs.is_dir():
                    for log in logs.glob("*.log"):
                        shutil.copy(log, self.run.path / "nodes" / log.name)
        if self.pg_logins is not None:
            try:
                self.pg_logins.scan(self.run.path)   # secrets_scan.json: the key and password found nowhere
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                errors.append(f"secrets scan of the run folder failed: {exc}")
            self.pg_logins.close()
        self.history.close()
        self.signal_log.close()
        return errors


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms or 0), int(seq or 0)


def _redacted(cfg: Any) -> Any:
    """A config with every secret-looking value replaced, for the run folder."""
    if isinstance(cfg, dict):
        return {k: ("<redacted>" if any(w in k.lower() for w in ("password", "secret", "token")) else _redacted(v))
                for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_redacted(v) for v in cfg]
    from scenarios.overrides import redact   # a URL's user:password@ (issue 19: a DSN or webhook given by --set)

    return redact(cfg)
