"""Configuration conformance (issue 19): the settings the documents fix, read from the RUNNING nodes of every drill
and judged against ``targets.toml``.

During a drill (``ConformanceProbe``, started by the runner once the stack is up and finished before the engines
stop) the harness reads, near the start and again near the end:

- every Redis node: ``CONFIG GET`` of appendonly, appendfsync, auto-aof-rewrite-min-size, save (RDS-3),
  maxmemory-policy, tcp-backlog, tcp-keepalive (RDS-5);
- every Sentinel: ``SENTINEL MASTER <name>``: quorum, down-after-milliseconds, failover-timeout, parallel-syncs
  (RDS-1);
- every engine: its newest ``store_settings`` event, which the running store keeper reads from its live DuckDB
  connection (checkpoint_threshold, access_mode, the WAL's size) with its snapshot interval and count (DDB-1,
  DDB-2; DuckDB admits one process per file, so the engine's own read is the live one), and its newest
  ``clickhouse_backup_settings`` event (CH-3);
- every supervisor of the stack: the restart policy each program runs under now (BE-1: RestartSec, health interval);
- ClickHouse (when the drill runs it): ``system.settings`` rows about compression (recorded, not judged);

and, about once a second in between, lists the folders whose contents are a setting at work: each engine's
snapshot folder and WAL file (DDB-1/2), ClickHouse backup folders (CH-3), the PostgreSQL dump folder (PG-1) and the
engines' user-settings folder (CFG-1). Everything goes into the run folder as :data:`CONFORMANCE_FILE`; no
password, key or connection string is read or written (values are read by name, never ``CONFIG GET *``).

:func:`check_conformance` judges that file (pure; a saved run is re-judged without the stack):

- a setting read on several nodes is the first node's value unless a node differs, then that node's value (one
  diverging node fails); a node that did not answer is named in the evidence;
- a setting the harness itself changed for the run (``overrides.json``: ``--set``, a scenario's
  ``engine_overrides``) and that the node runs at the drill's value is ``overridden`` with both values, never a
  pass; one the node runs at another value is judged as read (the override did not take);
- a schedule a drill cannot see (a 6 h pg_dump, a 12 h full backup, 7 days kept) is ``unmeasured`` with the reason
  and the configured value, never a pass; so is anything the drill's topology does not run (no backend: BE-1).

Claims ``REQUIREMENT_IDS`` in every drill (``scenarios.registry.EVERY_RUN_CHECKERS``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from scenarios import targets as targets_mod
from scenarios.verdicts import OVERRIDDEN, Judgement, finite_number, judge, validity

CONFORMANCE_FILE = "conformance.json"
FORMAT = 1
REQUIREMENT_IDS = ("RDS-1", "RDS-3", "RDS-5", "DDB-1", "DDB-2", "BE-1", "CH-3", "CFG-1", "PG-1")
SAMPLE_S = 1.0            # folder listings this often between the two reads (cheap: a few small folders)
MAX_SAMPLES = 3600        # bound on the listings of one run (an hour of sampling)
MAX_FILES = 200           # files listed per folder per sample
READ_TIMEOUT_S = 1.0      # per node and command: a node that does not answer is named, the others still read
REDIS_KEYS = ("appendonly", "appendfsync", "auto-aof-rewrite-min-size", "save", "maxmemory-policy", "tcp-backlog",
              "tcp-keepalive")
SENTINEL_KEYS = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs", "num-other-sentinels")
CLICKHOUSE_SETTINGS_QUERY = ("SELECT name, value FROM system.settings WHERE name LIKE '%compress%' ORDER BY name "
                             "FORMAT TabSeparated")
ENGINE_SETTINGS_EVENTS = ("store_settings", "clickhouse_backup_settings")
USER_SETTINGS_DIR = "config"   # scenarios.packages.USER_SETTINGS_DIR (the engines' CFG-1 folder, under state_dir)
PG_DUMPS_DIR = "backup/postgres"   # scenarios.pglogins.DUMPS_DIR, under the stack folder
_PG_DUMP_TIME = re.compile(r"-(\d{8}T\d{6})(\d{0,6})Z\.sql\.gz$")
_BACKUP_GENERATION = re.compile(r"\.(\d{6,})\.bak$")
# reference.store.snapshots: <stem>.h<hwm>.t<epoch ms>.duckdb (a finished snapshot; its time taken)
_SNAPSHOT = re.compile(r"\.h\d+\.t\d+\.duckdb$")
_SNAPSHOT_MS = re.compile(r"\.t(\d+)\.duckdb$")
# reference.store.clickhouse_backup: <table>-<YYYYmmddTHHMMSS.mmmZ>-<full|incremental>.native.zst
_CH_BACKUP = re.compile(r"-(\d{8}T\d{6}\.\d{3})Z-(full|incremental)\.native\.zst$")

RULE = ("Settings read from the running nodes twice (start, end) into conformance.json: CONFIG GET on every Redis "
        "node, SENTINEL MASTER on every Sentinel, each engine's store_settings / clickhouse_backup_settings event "
        "(read from its live connection), each supervisor's live restart policy; folders listed about once a "
        "second. A setting read on several nodes is judged by the first diverging node; one the harness overrode "
        "for the run and the node runs at the drill's value is 'overridden' with both values; a schedule longer "
        "than the drill is unmeasured with the reason.")


# -- what is judged, and where each value comes from -----------------------------------------------------------
@dataclass(frozen=True)
class SettingSpec:
    """One judged setting: the requirement and metric of ``targets.toml``, the override key that changes it
    (a topology setting or an EngineConfig field, as ``overrides.json`` names it), and ``observed``: True when the
    value is a measurement of the setting at work (a listing), so any override bearing on it makes it
    ``overridden``; False when it is the setting as read, so only the drill's exact value does."""

    requirement_id: str
    metric: str
    override_key: str = ""
    observed: bool = False


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("RDS-1", "sentinel_quorum", "sentinel.quorum"),
    SettingSpec("RDS-1", "sentinel_down_after_ms", "sentinel.down_after_ms"),
    SettingSpec("RDS-1", "sentinel_failover_timeout_ms", "sentinel.failover_timeout_ms"),
    SettingSpec("RDS-1", "sentinel_parallel_syncs", "sentinel.parallel_syncs"),
    SettingSpec("RDS-3", "appendfsync", "redis.appendfsync"),
    SettingSpec("RDS-3", "aof_rewrite_min_size_mb", "redis.auto_aof_rewrite_min_size"),
    SettingSpec("RDS-3", "rdb_save", "redis.save"),
    SettingSpec("RDS-5", "maxmemory_policy", "redis.maxmemory_policy"),
    SettingSpec("RDS-5", "tcp_backlog", "redis.tcp_backlog"),
    SettingSpec("RDS-5", "tcp_keepalive_s", "redis.tcp_keepalive"),
    SettingSpec("DDB-1", "wal_enabled"),
    SettingSpec("DDB-1", "wal_limit_mb", "store_checkpoint_threshold_mb"),
    SettingSpec("DDB-2", "snapshot_interval_s", "store_snapshot_interval_s"),
    SettingSpec("DDB-2", "snapshots_kept", "store_snapshots_kept", observed=True),
    SettingSpec("BE-1", "restart_sec"),
    SettingSpec("BE-1", "health_check_interval_s"),
    SettingSpec("CH-3", "zstd_level", "clickhouse_backup_zstd_level"),
    SettingSpec("CH-3", "full_backup_interval_h", "clickhouse_backup_full_s", observed=True),
    SettingSpec("CH-3", "incremental_backup_interval_h", "clickhouse_backup_incremental_s", observed=True),
    SettingSpec("CH-3", "backup_retention_days", "clickhouse_backup_keep_days", observed=True),
    SettingSpec("CFG-1", "config_backups_kept", observed=True),
    SettingSpec("CFG-1", "config_size_kb"),
    SettingSpec("PG-1", "dump_interval_h", observed=True),
    SettingSpec("PG-1", "dumps_kept", observed=True),
)
METRICS: dict[str, tuple[str, ...]] = {}
for _s in SPECS:
    METRICS[_s.requirement_id] = (*METRICS.get(_s.requirement_id, ()), _s.metric)


# -- reading the running stack (the only part that touches it) --------------------------------------------------
def _error(exc: BaseException) -> dict:
    return {"error": " ".join(str(exc).split())[:200] or type(exc).__name__}


def _redis_settings(client) -> dict[str, str]:
    got: dict[str, str] = {}
    for name in REDIS_KEYS:
        got.update({str(k): str(v) for k, v in client.config_get(name).items() if str(k) == name})
    return got


def _sentinel_settings(client, master_name: str) -> dict[str, Any]:
    raw = client.sentinel_master(master_name)
    return {k: raw.get(k) for k in SENTINEL_KEYS if k in raw}


def newest_events(path: Path, names: Sequence[str] = ENGINE_SETTINGS_EVENTS) -> dict[str, dict]:
    """The newest event of each of ``names`` in one engine event log ({} when there is none or no log)."""
    out: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if '"event"' not in line or not any(f'"{n}"' in line for n in names):
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and e.get("event") in names:
                    out[e["event"]] = e
    except OSError:
        return {}
    return out


def _policy_dict(policy: Any) -> dict:
    d = dataclasses.asdict(policy) if dataclasses.is_dataclass(policy) else dict(vars(policy))
    return {k: d.get(k) for k in ("name", "restart", "delay_s", "health_interval_s", "health_failures",
                                  "limit_burst", "limit_interval_s", "start_timeout_s", "requirement")}


def read_live(stack: Any, topology: Any, stack_dir: Path, phase: str) -> dict:
    """One read of the running stack's settings (see the module docstring); never raises: a node or a part that
    cannot be read is ``{"error": ...}`` in its place."""
    read: dict[str, Any] = {"phase": phase, "wall": time.time(), "mono": time.monotonic(),
                            "redis": {}, "sentinel": {}, "engines": {}, "supervisors": {}}
    master = getattr(topology, "master_name", None) or topology.settings.get("sentinel.master_name", "mymaster")
    for kind, key in (("redis", "redis"), ("sentinel", "sentinel")):
        for spec in topology.of_kind(kind):
            try:
                client = stack.redis_node_client(spec.name, timeout=READ_TIMEOUT_S)
                try:
                    read[key][spec.name] = (_redis_settings(client) if kind == "redis"
                                            else _sentinel_settings(client, master))
                finally:
                    client.close()
            except Exception as exc:  # noqa: BLE001 - one line per node; the rest still read
                read[key][spec.name] = _error(exc)
    for spec in topology.of_kind("engine"):
        folder = Path(stack_dir) / "engines" / spec.name
        events: dict[str, dict] = {}
        for log in sorted(folder.glob("events-*.jsonl")):
            for name, e in newest_events(log).items():
                if name not in events or (e.get("mono") or 0) >= (events[name].get("mono") or 0):
                    events[name] = e
        read["engines"][spec.name] = events
    supervisors = getattr(stack, "supervisors", None)
    if isinstance(supervisors, dict):
        for kind, sup in list(supervisors.items()):
            try:
                policies = sup.policies() if hasattr(sup, "policies") else {}
                read["supervisors"][kind] = {name: _policy_dict(p) for name, p in policies.items()}
            except Exception as exc:  # noqa: BLE001
                read["supervisors"][kind] = _error(exc)
    else:
        read["supervisors"] = {"error": f"the {getattr(stack, 'provider', 'this')} provider runs no supervisor of "
                                        f"the harness's to ask"}
    if list(topology.of_kind("clickhouse")):
        read["clickhouse"] = _clickhouse_settings(stack, topology)
    return read


def _clickhouse_settings(stack: Any, topology: Any) -> dict:
    from tradedrill.services import clickhouse as ch_svc

    out: dict[str, Any] = {}
    for spec in topology.of_kind("clickhouse"):
        try:
            text = ch_svc.http_query(spec.address, spec.ports.get("http", spec.port), CLICKHOUSE_SETTINGS_QUERY,
                                     timeout=READ_TIMEOUT_S, credential=stack.secrets.clickhouse)
            out[spec.name] = dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)
        except Exception as exc:  # noqa: BLE001
            out[spec.name] = _error(exc)
    return out


def _files(folder: Path, pattern: str = "*") -> list[dict]:
    out = []
    try:
        for p in sorted(folder.glob(pattern))[:MAX_FILES]:
            try:
                st = p.stat()
            except OSError:
                continue
            if p.is_file():
                out.append({"name": p.name, "bytes": st.st_size, "mtime": round(st.st_mtime, 3)})
    except OSError:
        return []
    return out


def list_folders(stack_dir: Path) -> dict[str, list[dict]]:
    """The folders whose contents are a setting at work, relative to the stack folder -> their files (name, bytes,
    mtime); a folder that does not exist is left out."""
    stack_dir = Path(stack_dir)
    out: dict[str, list[dict]] = {}
    engines = stack_dir / "engines"
    for node in sorted(p for p in engines.glob("*") if p.is_dir()) if engines.is_dir() else ():
        for rel, pattern in (("backup/duckdb", "*.duckdb"), ("backup/clickhouse", "*"), (".", "*.wal"),
                             (USER_SETTINGS_DIR, "*")):
            folder = node / rel
            if folder.is_dir():
                files = _files(folder, pattern)
                key = f"engines/{node.name}" + ("" if rel == "." else f"/{rel}")
                out[key + ("/*.wal" if rel == "." else "")] = files
    pg = stack_dir / PG_DUMPS_DIR
    if pg.is_dir():
        out[PG_DUMPS_DIR] = _files(pg, "*.sql.gz")
    return out


class ConformanceProbe:
    """Reads the running stack's settings at ``start()`` and ``finish()`` and lists its folders every
    ``sample_s`` in between (a thread, at most MAX_SAMPLES listings); ``finish()`` writes CONFORMANCE_FILE into the
    run folder. Never raises into the drill: a failure is recorded in the file."""

    def __init__(self, stack: Any, topology: Any, stack_dir: Path, run_path: Path, sample_s: float = SAMPLE_S):
        self.stack, self.topology = stack, topology
        self.stack_dir, self.run_path = Path(stack_dir), Path(run_path)
        self.sample_s = sample_s
        self.reads: list[dict] = []
        self.listings: list[dict] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self, phase: str) -> None:
        try:
            self.reads.append(read_live(self.stack, self.topology, self.stack_dir, phase))
        except Exception as exc:  # noqa: BLE001 - recorded: the checker says unmeasured with it
            self.problems.append(f"{phase} read: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        self._list()

    def _list(self) -> None:
        if len(self.listings) >= MAX_SAMPLES:
            return
        try:
            self.listings.append({"wall": time.time(), "mono": time.monotonic(),
                                  "folders": list_folders(self.stack_dir)})
        except Exception as exc:  # noqa: BLE001
            self.problems.append(f"listing: {type(exc).__name__}: {exc}")

    def _sample(self) -> None:
        while not self._stop.wait(self.sample_s) and len(self.listings) < MAX_SAMPLES:
            self._list()

    def start(self) -> "ConformanceProbe":
        self._read("start")
        self._thread = threading.Thread(target=self._sample, name="conformance-listing", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (no read, no file): the way out of a drill that failed or was interrupted."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def finish(self) -> Path:
        """Stop sampling, read again, and write the file (also when a read failed)."""
        self.stop()
        self._read("end")
        doc = {"format": FORMAT, "rule": RULE, "master_name": getattr(self.topology, "master_name", None),
               "services": list(getattr(self.topology, "services", ())),
               "configured": {k: v for k, v in getattr(self.topology, "settings", {}).items()
                              if k.startswith(("redis.", "sentinel.")) and not k.endswith(".port")},
               "reads": self.reads, "listings": self.listings, "problems": self.problems}
        path = self.run_path / CONFORMANCE_FILE
        path.write_text(json.dumps(doc, indent=1, default=str))
        return path


# -- judging (pure) ---------------------------------------------------------------------------------------------
_num = finite_number


def _int(value: Any) -> int | float | None:
    x = _num(value)
    return None if x is None else (int(x) if x.is_integer() else x)


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 1 << 20, "g": 10**9, "gb": 1 << 30}


def memory_bytes(text: Any) -> int | None:
    """A Redis memory size ("64mb", "67108864") in bytes, as Redis reads it; None when it is not one."""
    m = re.fullmatch(r"\s*(\d{1,15})\s*([a-zA-Z]{0,2})\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def duckdb_bytes(text: Any) -> float | None:
    """DuckDB's spelling of a size ('15.2 MiB', '16.0 MB', '256KiB') in bytes; None when it is not one."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?i?B|bytes?)\s*", str(text))
    if not m:
        return None
    unit = m.group(2)
    scale = {"B": 1, "byte": 1, "bytes": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10,
             "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}.get(unit)
    try:
        return None if scale is None else float(m.group(1)) * scale
    except ValueError:
        return None


def _nodes_value(per_node: dict[str, Any]) -> tuple[Any, list[str]]:
    """The value judged over nodes: the first node's, unless one differs (then that one's), and the nodes that
    differ."""
    names = sorted(per_node)
    if not names:
        return None, []
    first = per_node[names[0]]
    diverging = [n for n in names if per_node[n] != first]
    return (per_node[diverging[0]] if diverging else first), diverging


def _per_node(reads: Sequence[dict], part: str, key: str, conv: Callable[[Any], Any]) -> tuple[dict, list[str]]:
    """``{"<node>@<phase>": value}`` of one setting over every read, and the nodes that did not answer."""
    values, missing = {}, []
    for r in reads:
        for node, got in sorted((r.get(part) or {}).items()):
            if not isinstance(got, dict) or "error" in got:
                missing.append(f"{node} ({r.get('phase')}): {(got or {}).get('error') if isinstance(got, dict) else got}")
                continue
            if key in got:
                try:
                    v = conv(got[key])
                except (TypeError, ValueError):
                    v = got[key]
                if v is not None:
                    values[f"{node}@{r.get('phase')}"] = v
    return values, missing


def _save(text: Any) -> str:
    return " ".join(str(text).split())


def _redis_metrics(reads: Sequence[dict]) -> tuple[dict[str, Any], dict[str, str], list[dict]]:
    metrics, why, evidence = {}, {}, []
    table = (("appendfsync", "redis", "appendfsync", str), ("rdb_save", "redis", "save", _save),
             ("aof_rewrite_min_size_mb", "redis", "auto-aof-rewrite-min-size",
              lambda v: round(memory_bytes(v) / (1 << 20), 3) if memory_bytes(v) is not None else None),
             ("maxmemory_policy", "redis", "maxmemory-policy", str), ("tcp_backlog", "redis", "tcp-backlog", _int),
             ("tcp_keepalive_s", "redis", "tcp-keepalive", _int),
             ("sentinel_quorum", "sentinel", "quorum", _int),
             ("sentinel_down_after_ms", "sentinel", "down-after-milliseconds", _int),
             ("sentinel_failover_timeout_ms", "sentinel", "failover-timeout", _int),
             ("sentinel_parallel_syncs", "sentinel", "parallel-syncs", _int))
    for metric, part, key, conv in table:
        values, missing = _per_node(reads, part, key, conv)
        value, diverging = _nodes_value(values)
        metrics[metric] = value
        if value is None:
            nodes = "Redis node" if part == "redis" else "Sentinel"
            why[metric] = (f"no {nodes} answered {'CONFIG GET ' + key if part == 'redis' else 'SENTINEL MASTER'}"
                           + (f" ({'; '.join(missing[:3])})" if missing else " (the drill ran none)"))
        evidence.append({"kind": "setting", "metric": metric, "read": f"{part}: {key}", "value": value,
                         "nodes": values, "diverging": diverging, "not_answered": missing})
    return metrics, why, evidence


def _engine_events(reads: Sequence[dict], name: str) -> dict[str, dict]:
    """``{"<node>@<phase>": event}`` of one settings event over every read."""
    out = {}
    for r in reads:
        for node, events in sorted((r.get("engines") or {}).items()):
            e = (events or {}).get(name) if isinstance(events, dict) else None
            if isinstance(e, dict):
                out[f"{node}@{r.get('phase')}"] = e
    return out


def _store_metrics(reads: Sequence[dict], listings: Sequence[dict]) -> tuple[dict, dict, list[dict]]:
    metrics: dict[str, Any] = {}
    why: dict[str, str] = {}
    settings = _engine_events(reads, "store_settings")
    wal_seen = [f["bytes"] for lst in listings for folder, files in (lst.get("folders") or {}).items()
                if folder.endswith("*.wal") for f in files if isinstance(f.get("bytes"), int)]
    if not settings:
        for m in ("wal_enabled", "wal_limit_mb", "snapshot_interval_s", "snapshots_kept"):
            why[m] = ("no engine had reported its live store settings (store_settings event) at either read: the "
                      "drill runs no engine, or it had not run its first health check yet")
            metrics[m] = None
        return metrics, why, [{"kind": "store", "why": why["wal_limit_mb"]}]
    modes = {k: e.get("access_mode") for k, e in settings.items()}
    on = [k for k, e in settings.items() if str(e.get("access_mode", "")).lower() != "read_only"]
    wal_any = any(b > 0 for b in wal_seen) or any((_num(e.get("wal_file_bytes")) or 0) > 0 for e in settings.values())
    if len(on) < len(settings):   # a read-only journal writes no WAL
        metrics["wal_enabled"] = False
    elif wal_any:
        metrics["wal_enabled"] = True
    else:
        metrics["wal_enabled"] = None
        why["wal_enabled"] = (f"no journal's WAL file was seen non-empty in {len(listings)} listing(s) or at the "
                              f"engines' settings reads (the WAL may be folded in before a listing sees it)")
    thresholds = {k: round(b / 1e6, 3) for k, e in settings.items()
                  if (b := duckdb_bytes(e.get("checkpoint_threshold"))) is not None}
    largest_wal_mb = round(max(wal_seen, default=0) / 1e6, 3)
    value, diverging = _nodes_value(thresholds)
    metrics["wal_limit_mb"] = None if value is None else max(max(thresholds.values()), largest_wal_mb)
    if value is None:
        why["wal_limit_mb"] = "no engine reported a readable checkpoint_threshold"
    intervals = {k: _num(e.get("snapshot_interval_s")) for k, e in settings.items()
                 if _num(e.get("snapshot_interval_s")) is not None}
    metrics["snapshot_interval_s"] = max(intervals.values()) if intervals else None
    if not intervals:
        why["snapshot_interval_s"] = "no engine reported its snapshot interval"
    kept_cfg = {k: _int(e.get("snapshots_kept")) for k, e in settings.items() if _int(e.get("snapshots_kept"))}
    # the snapshots on disk, per engine folder, once a listing shows one gone that an earlier listing held (pruning
    # seen): the count most listings show from then on (a listing between a new snapshot and its prune shows one
    # more; ties: the smaller count)
    on_disk: dict[str, int] = {}
    taken: dict[str, set] = {}
    after_prune: dict[str, list[int]] = {}
    for lst in listings:
        for folder, files in (lst.get("folders") or {}).items():
            if folder.endswith("backup/duckdb"):
                names = {f["name"] for f in files if _SNAPSHOT.search(f.get("name", ""))}   # no temp files
                seen = taken.setdefault(folder, set())
                if folder in after_prune or (seen - names):
                    after_prune.setdefault(folder, []).append(len(names))
                seen.update(names)
                on_disk[folder] = max(on_disk.get(folder, 0), len(names))
    pruned = {f: min(set(c), key=lambda n: (-c.count(n), n)) for f, c in after_prune.items() if c}
    # the snapshots' own times (<stem>.h<hwm>.t<epoch ms>.duckdb) in the listings: evidence of the interval at work
    # (gaps include idle spells: the keeper snapshots only after a change), not its judgement
    gaps: list[float] = []
    for names in taken.values():
        ms = sorted(int(m.group(1)) for n in names if (m := _SNAPSHOT_MS.search(n)))
        gaps += [(b - a) / 1000.0 for a, b in zip(ms, ms[1:])]
    gaps.sort()
    if pruned:
        metrics["snapshots_kept"] = min(pruned.values())
    else:
        metrics["snapshots_kept"] = None
        why["snapshots_kept"] = (f"no snapshot folder was seen pruned (the keeper keeps {sorted(set(kept_cfg.values()))}"
                                 f"; most taken by one engine in the listings: "
                                 f"{max((len(v) for v in taken.values()), default=0)}): the count kept is a "
                                 f"measurement of the listing, not the setting")
    evidence = [{"kind": "store", "metric": "DDB-1/DDB-2", "access_mode": modes, "checkpoint_threshold_mb": thresholds,
                 "diverging": diverging, "largest_wal_mb_listed": largest_wal_mb, "snapshot_interval_s": intervals,
                 "snapshots_kept_setting": kept_cfg, "snapshots_on_disk_max": on_disk,
                 "snapshots_seen": {k: len(v) for k, v in taken.items()},
                 "listed_snapshot_gaps_s": {"n": len(gaps), "median": gaps[len(gaps) // 2] if gaps else None,
                                            "max": gaps[-1] if gaps else None}}]
    return metrics, why, evidence


def _supervisor_metrics(reads: Sequence[dict]) -> tuple[dict, dict, list[dict]]:
    policies = {}
    for r in reads:
        sup = r.get("supervisors")
        if isinstance(sup, dict) and "error" not in sup:
            for name, p in (sup.get("backend") or {}).items() if isinstance(sup.get("backend"), dict) else ():
                policies[f"{name}@{r.get('phase')}"] = p
    if not policies:
        reason = ("no backend runs under a supervisor in this drill (BE-1's RestartSec and health interval are read "
                  "from the backends' live supervisor; the scenarios with a backend measure it)")
        err = next((r["supervisors"]["error"] for r in reads if isinstance(r.get("supervisors"), dict)
                    and "error" in r["supervisors"]), None)
        reason = err or reason
        return {"restart_sec": None, "health_check_interval_s": None}, \
            {"restart_sec": reason, "health_check_interval_s": reason}, [{"kind": "supervisor", "why": reason}]
    delays = {k: _num(p.get("delay_s")) for k, p in policies.items()}
    health = {k: _num(p.get("health_interval_s")) for k, p in policies.items()}
    d, _ = _nodes_value({k: v for k, v in delays.items() if v is not None})
    hc, _ = _nodes_value({k: v for k, v in health.items() if v is not None})
    why = {} if hc is not None else {"health_check_interval_s": "the backends' policy has no health check"}
    return ({"restart_sec": _int(d), "health_check_interval_s": hc}, why,
            [{"kind": "supervisor", "policies": policies}])


def _pairs_interval_h(times_s: Sequence[float]) -> float | None:
    ts = sorted(times_s)
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    return round(max(gaps) / 3600.0, 6) if gaps else None


def _drill_span_s(listings: Sequence[dict], reads: Sequence[dict]) -> float:
    monos = [x.get("mono") for x in (*listings, *reads) if isinstance(x.get("mono"), (int, float))]
    return (max(monos) - min(monos)) if monos else 0.0


def _clickhouse_metrics(reads, listings, services) -> tuple[dict, dict, list[dict]]:
    names = ("zstd_level", "full_backup_interval_h", "incremental_backup_interval_h", "backup_retention_days")
    settings = _engine_events(reads, "clickhouse_backup_settings")
    ch_read = {n: v for r in reads for n, v in (r.get("clickhouse") or {}).items()}
    span = _drill_span_s(listings, reads)
    if not settings:
        reason = ("the drill runs no ClickHouse" if "clickhouse" not in services else
                  "no engine reported its ClickHouse backup settings (clickhouse_backup_settings): backups are off "
                  "in this drill")
        return {n: None for n in names}, {n: reason for n in names}, [{"kind": "clickhouse", "why": reason,
                                                                      "system_settings": ch_read}]
    levels = {k: _int(e.get("level")) for k, e in settings.items() if _int(e.get("level")) is not None}
    level, diverging = _nodes_value(levels)
    metrics: dict[str, Any] = {"zstd_level": level, "full_backup_interval_h": None,
                               "incremental_backup_interval_h": None, "backup_retention_days": None}
    why: dict[str, str] = {} if level is not None else {"zstd_level": "no engine reported its ZSTD level"}
    configured = {k: {f: e.get(f) for f in ("full_s", "incremental_s", "keep_days", "codec")}
                  for k, e in settings.items()}
    some = next(iter(configured.values()))
    # the backups listed, per engine folder and kind, by the time in their names: two of one kind in one folder
    # are an interval at work (only a drill-sized schedule can show one; scenarios.overrides marks it overridden)
    stamps: dict[tuple[str, str], set[float]] = {}
    for lst in listings:
        for folder, files in (lst.get("folders") or {}).items():
            if folder.endswith("backup/clickhouse"):
                for f in files:
                    m = _CH_BACKUP.search(f.get("name", ""))
                    if m and (t := _backup_time(m.group(1))) is not None:
                        stamps.setdefault((folder, m.group(2)), set()).add(t)
    gaps_h = {}
    for kind in ("full", "incremental"):
        gaps = [b - a for (folder, k), ts in stamps.items() if k == kind
                for a, b in zip(sorted(ts), sorted(ts)[1:])]
        gaps_h[kind] = round(max(gaps) / 3600.0, 6) if gaps else None
    metrics["full_backup_interval_h"] = gaps_h["full"]
    metrics["incremental_backup_interval_h"] = gaps_h["incremental"]
    for metric, field, unit, scale in (("full_backup_interval_h", "full_s", "s", 1.0),
                                        ("incremental_backup_interval_h", "incremental_s", "s", 1.0),
                                        ("backup_retention_days", "keep_days", "days", 86400.0)):
        if metrics[metric] is not None:
            continue
        need = (_num(some.get(field)) or 0.0) * scale
        why[metric] = (f"a schedule longer than the drill cannot be seen: the engines run with {field} = "
                       f"{some.get(field)} {unit} (clickhouse_backup_settings), the drill listed backups for "
                       f"{span:.0f} s{'' if need > span else ' (the listing holds no two backups of one kind)'}; "
                       f"configuration is not a measurement")
    return metrics, why, [{"kind": "clickhouse", "levels": levels, "diverging": diverging,
                           "configured": configured, "system_settings": ch_read,
                           "backups_listed": {f"{folder} {kind}": len(ts) for (folder, kind), ts in stamps.items()}}]


def _backup_time(stamp: str) -> float | None:
    try:
        t = _dt.datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return t.timestamp() + (int(stamp[16:19]) / 1000.0 if stamp[15:16] == "." and stamp[16:19].isdigit() else 0.0)


def _cfg_metrics(listings) -> tuple[dict, dict, list[dict]]:
    kept: dict[str, int] = {}
    newest_gen: dict[str, int] = {}
    largest = 0
    seen = False
    for lst in listings:
        for folder, files in (lst.get("folders") or {}).items():
            if not folder.endswith("/" + USER_SETTINGS_DIR):
                continue
            seen = True
            by_stem: dict[str, list[int]] = {}
            for f in files:
                m = _BACKUP_GENERATION.search(f.get("name", ""))
                if m:
                    by_stem.setdefault(f"{folder}/{f['name'][:m.start()]}", []).append(int(m.group(1)))
                elif f.get("name", "").endswith(".json"):
                    largest = max(largest, int(f.get("bytes") or 0))
            for stem, gens in by_stem.items():
                newest_gen[stem] = max(newest_gen.get(stem, 0), max(gens))
                if max(gens) > len(gens):   # a generation beyond the count on disk: older ones were pruned
                    kept[stem] = max(kept.get(stem, 0), len(gens))
    metrics = {"config_backups_kept": min(kept.values()) if kept else None, "config_size_kb": None}
    why = {"config_size_kb": ("CFG-1's 10 KB cap is a refusal on save; a listing shows only files within it "
                              f"(largest settings file listed, damaged ones a drill wrote included: {largest} bytes)" if seen else
                              "the drill's engines keep no user settings folder (only the config-corrupt drills do)")}
    if not kept:
        why["config_backups_kept"] = (("no settings file was saved more often than its backups are kept, so no "
                                       "pruning could be seen") if seen else why["config_size_kb"])
    return metrics, why, [{"kind": "user-settings", "backups_kept": kept, "newest_generation": newest_gen,
                           "largest_settings_bytes": largest}] if seen else []


def _pg_time(name: str) -> float | None:
    m = _PG_DUMP_TIME.search(name)
    if not m:
        return None
    try:
        t = _dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return t.timestamp() + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)


def _pg_metrics(listings, reads, services) -> tuple[dict, dict, list[dict]]:
    """PG-1's schedule from the dump folder's listings: always unmeasured in a drill (the 6 h schedule cannot show,
    and the dumps a drill holds are taken by its postgres-restore fault, not by a schedule), with what was seen."""
    dumps: set[str] = set()
    most = 0
    seen = False
    for lst in listings:
        files = (lst.get("folders") or {}).get(PG_DUMPS_DIR)
        if files is None:
            continue
        seen = True
        names = {f["name"] for f in files if f.get("name")}
        dumps |= names
        most = max(most, len(names))
    span = _drill_span_s(listings, reads)
    base = ("the drill runs no PostgreSQL" if "postgres" not in services else
            f"the drill listed {PG_DUMPS_DIR} for {span:.0f} s and saw {len(dumps)} dump(s), taken by its "
            f"postgres-restore fault, not by a schedule" if seen else
            f"the drill's stack has no {PG_DUMPS_DIR} folder")
    why = {"dump_interval_h": f"PG-1's pg_dump every 6 h cannot show in a drill: {base}",
           "dumps_kept": f"PG-1's 56 (or 14) dumps kept take 14 days (3.5 days) of 6-hourly dumps: {base}"}
    times = sorted(t for n in dumps if (t := _pg_time(n)) is not None)
    return ({"dump_interval_h": None, "dumps_kept": None}, why,
            [{"kind": "pg-dumps", "seen": sorted(dumps)[:20], "most_listed": most,
              "largest_gap_h": _pairs_interval_h(times)}] if seen else [])


def measure(doc: dict) -> tuple[dict[str, Any], dict[str, str], list[dict]]:
    """Every conformance metric of a conformance.json document (None when not measured), why each None is, and
    the evidence rows."""
    reads = [r for r in (doc.get("reads") or []) if isinstance(r, dict)]
    listings = [x for x in (doc.get("listings") or []) if isinstance(x, dict)]
    services = tuple(doc.get("services") or ())
    metrics: dict[str, Any] = {}
    why: dict[str, str] = {}
    evidence: list[dict] = []
    for part in (_redis_metrics(reads), _store_metrics(reads, listings), _supervisor_metrics(reads),
                 _clickhouse_metrics(reads, listings, services), _cfg_metrics(listings),
                 _pg_metrics(listings, reads, services)):
        metrics.update(part[0])
        why.update(part[1])
        evidence += part[2]
    return metrics, why, evidence


def _same(measured: Any, drill: Any, metric: str) -> bool:
    """Whether a value read from a node is the drill's override value (in the override's own spelling)."""
    if metric == "aof_rewrite_min_size_mb":
        b = memory_bytes(drill)
        return b is not None and _num(measured) is not None and abs(_num(measured) - b / (1 << 20)) < 1e-3
    if metric == "rdb_save":
        return _save(measured) == _save(drill)
    if metric == "wal_limit_mb":
        return _num(measured) is not None and _num(drill) is not None and abs(_num(measured) - _num(drill)) <= 0.5
    a, b = _num(measured), _num(drill)
    if a is not None and b is not None:
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return str(measured) == str(drill)


def apply_overrides(judgements: Iterable[Judgement], overrides: Sequence[dict]) -> None:
    """In place: a judgement whose setting the harness overrode for the run (an ``overrides.json`` entry with the
    spec's ``override_key``) is ``overridden`` with both values when the node runs the drill's value (always, for
    an observed value); otherwise its verdict stands and its reason says the override did not take."""
    by_key = {e.get("key"): e for e in overrides if isinstance(e, dict)}
    spec_of = {(s.requirement_id, s.metric): s for s in SPECS}
    for j in judgements:
        spec = spec_of.get((j.requirement_id, j.metric))
        entry = by_key.get(spec.override_key) if spec and spec.override_key else None
        if entry is None:
            continue
        j.overridden = [*j.overridden, entry] if entry not in j.overridden else j.overridden
        if j.measured is None:
            continue
        if spec.observed or _same(j.measured, entry.get("drill"), j.metric):
            j.verdict = OVERRIDDEN
            j.reason = (f"the harness set {entry['key']} = {entry.get('drill')} for this run (documents: "
                        f"{entry.get('document')}); the node runs {j.measured}")
            for alt in j.alternatives:
                alt["verdict"] = OVERRIDDEN
        else:
            j.reason = (f"the harness set {entry['key']} = {entry.get('drill')} for this run, but the node runs "
                        f"{j.measured}: judged as read")


def check_conformance(doc: dict | None, overrides: Sequence[dict] = (), *,
                      requirement_ids: Sequence[str] = REQUIREMENT_IDS, targets: targets_mod.Targets | None = None,
                      problem: str | None = None) -> tuple[bool | str, dict, list[dict], str, list[Judgement]]:
    """Judge a conformance.json document: ``(valid, metrics, evidence, summary, judgements)``. ``doc`` None:
    every metric unmeasured with ``problem`` (or "no conformance.json")."""
    targets = targets or targets_mod.load()
    rids = [r for r in requirement_ids if r in METRICS]
    if doc is None:
        reason = problem or (f"no {CONFORMANCE_FILE} in the run folder: a run older than the conformance read, or "
                             f"the drill stopped before its first read")
        judgements = [j for rid in rids for j in judge({m: None for m in METRICS[rid]}, [rid], targets,
                                                       unmeasured_reason=reason)]
        return "unknown", {}, [{"kind": "unmeasured", "why": reason}], f"{reason}: settings unmeasured", judgements
    metrics, why, evidence = measure(doc)
    judgements: list[Judgement] = []
    for rid in rids:
        for metric in METRICS[rid]:
            for j in judge({metric: metrics.get(metric)}, [rid], targets, unmeasured_reason=why.get(metric, "")):
                if j.verdict == "unmeasured" and not j.reason:
                    j.reason = why.get(metric) or "not read"
                judgements.append(j)
    apply_overrides(judgements, overrides)
    problems = [p for p in (doc.get("problems") or []) if isinstance(p, str)]
    if problems:
        evidence.append({"kind": "problems", "problems": problems})
    counts = {v: sum(j.verdict == v for j in judgements) for v in ("pass", "fail", OVERRIDDEN, "unmeasured")}
    failed = [f"{j.requirement_id} {j.metric} = {j.measured} (target {j.comparator} {j.target})"
              for j in judgements if j.verdict == "fail"]
    summary = (f"{len(doc.get('reads') or [])} live read(s), {len(doc.get('listings') or [])} folder listing(s): "
               + ", ".join(f"{n} {v}" for v, n in counts.items())
               + (f"; off target: {'; '.join(failed[:6])}" if failed else ""))
    shown = {k: v for k, v in metrics.items() if v is not None}
    return validity(judgements), shown, evidence, summary, judgements


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """The ``conformance`` entry of ``scenarios.checkers.CHECKERS`` (built with its classes, so this module never
    imports that one)."""
    def conformance(view, params, rids, targets):
        from scenarios import overrides as overrides_mod

        doc, problem = view.json_doc(CONFORMANCE_FILE)
        valid, metrics, evidence, summary, judgements = check_conformance(
            doc, overrides_mod.load(view.run.path), requirement_ids=rids, targets=targets, problem=problem)
        return result_cls("conformance", valid, tuple(rids), metrics, evidence, summary, judgements)

    # every metric of SPECS: a checker that raised is unmeasured on each of them (run_checker's check-safe)
    return [checker_cls("conformance", conformance, tuple(dict.fromkeys(s.metric for s in SPECS)),
                        "the documents' settings read from the running nodes (CONFIG GET, SENTINEL MASTER, the "
                        "engines' live store and backup settings, the supervisors' policies, folder listings)")]
