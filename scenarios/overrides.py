"""Engine settings a drill runs with instead of the documents' values, recorded so no verdict passes silently on them.

Some requirements cannot show inside a drill's 40 s with the documents' figures (ORD-2's 60 s failed_syncs retry
after ORD-1's 31 s of backoff; CH-2's backfill check every minute; CH-3's 12 h / 1 h backup schedule). A scenario
then carries ``engine_overrides`` (``scenarios.registry.Scenario``) with drill-sized values. The drill writes
:data:`OVERRIDES_FILE` into the run folder: per key the drill's value, the documents' value (the default of
``reference.engine.config.EngineConfig``) and the requirement IDs its line in ``config.py`` names. ``check_run``
attaches every entry to each judgement of a requirement it names (``Judgement.overridden``), and the report shows
"overridden: key = drill value (documents: value)" beside the verdict.

Topology settings a drill runs with instead of the documents' (``tradedrill drill --set sentinel.down_after_ms=1000``,
``DrillOptions.topology_overrides``; issue 19) are recorded the same way, their documents' value and requirement IDs
from ``tradedrill.topology.SETTINGS`` (its ``why``). :func:`parse_sets` reads ``--set KEY=VALUE`` pairs: a topology
setting by its dotted key, an engine setting as ``engine.<EngineConfig field>``; anything else is one
:class:`SetError` line that says what to write instead.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

OVERRIDES_FILE = "overrides.json"
_FIELD = re.compile(r"^\s{4}(\w+)\s*:\s*[^=#]+=[^#]*(?:#\s*(.*))?$")
_CONTINUED = re.compile(r"^\s+#\s*(.*)$")
_RID = re.compile(r"\b[A-Z]{2,4}-\d+\b")
# a requirement defined on top of another: ORD-2 is "after ORD-1's five failures", so an ORD-1 figure changes it too;
# RDS-2's failover time and PERF-2's Redis recovery are RDS-1's Sentinel figures at work (sentinel-down-after)
# ENG-1's takeover is ENG-3's restart RTO in an engine drill, EA-5's uptime is computed from those RTOs, and the
# lease that fences a paused active is ENG-5's exactly-once
BUILDS_ON = {"ORD-1": ("ORD-2",), "RDS-1": ("RDS-2", "PERF-2"), "ENG-1": ("ENG-3", "EA-5", "ENG-5"),
             "ENG-3": ("EA-5",), "RDS-2": ("EA-5",), "BRK-2": ("EA-5",), "EA-3": ("EA-5",), "CH-1": ("EA-5",)}
# EngineConfig fields whose comment in reference/engine/config.py names no requirement ID: the IDs they bear on
# (issue 19: an override never maps to nothing), or () with the reason in NO_REQUIREMENT
ENGINE_IDS: dict[str, tuple[str, ...]] = {
    "group": ("ENG-1",), "master_name": ("RDS-1",), "redis_host": ("RDS-1", "RDS-2"), "redis_port": ("RDS-1",),
    "redis_socket_timeout_s": ("RDS-2", "PERF-2"), "redis_connect_timeout_s": ("RDS-2", "PERF-2"),
    "redis_source_address": ("RDS-1",), "republish_window_s": ("ENG-2", "ENG-5"),
    "publish_wait_replicas": ("RDS-4", "ENG-2"), "publish_wait_ms": ("RDS-4", "PERF-1"),
    "rtss_key": ("ENG-2",), "rtrs_key": ("ENG-2",), "rts_prefix": ("ENG-4", "ENG-5"), "ris_prefix": ("EA-4",),
    "alerts_key": ("BR-2",), "consumer_group": ("ENG-2", "ENG-5"), "read_block_ms": ("PERF-1",),
    "send_lanes": ("PERF-1",), "park_after_s": ("PERF-1",), "read_count": ("PERF-1",), "send_chunk": ("PERF-1",),
    "lease_safety_margin_s": ("ENG-1", "ENG-5"), "lease_confirm_primary": ("ENG-1", "ENG-5"),
    "passive_poll_s": ("ENG-1",), "passive_scan_s": ("ENG-1", "ENG-5"), "orphan_check_s": ("ENG-1", "ENG-2"), "scan_overlap_s": ("ENG-5",), "send_flight_s": ("ENG-5", "ENG-6"), "exit_flight_s": ("ENG-5", "ENG-6"),
    "magic": ("ENG-6", "BRK-3"), "comment_prefix": ("ENG-6", "BRK-3"), "comment_max_len": ("ENG-6", "BRK-3"),
    "deviation_points": ("BRK-4",), "filling": ("BRK-4",), "ambiguous_grace_s": ("ENG-5", "BRK-2"),
    "reconcile_poll_s": ("BRK-3", "ENG-4"), "reconcile_lookback_s": ("BRK-3", "ENG-4"), "max_volume": ("BRK-4",),
    "signal_max_age_s": ("ENG-2",), "clickhouse_username": ("CH-1",), "clickhouse_password_file": ("CH-1",),
    "clickhouse_table": ("CH-1",), "clickhouse_batch_rows": ("CH-1",), "clickhouse_sync_interval_s": ("CH-1",),
    "clickhouse_timeout_s": ("CH-1", "CH-4"), "watchdog_timeout_s": ("ENG-3",), "webhook_url": ("BE-2",),
    "alerts_maxlen": ("BR-2",), "results_maxlen": ("ENG-2",), "redis_username": ("RDS-1",),
    "redis_password_file": ("RDS-1",), "sentinel_username": ("RDS-1",), "sentinel_password_file": ("RDS-1",),
    # how many finished outcomes the journal keeps in memory: duplicate detection by signal id (ENG-5) reads older
    # ones from DuckDB (DDB-1), and the order path's latency depends on where a lookup lands (PERF-1)
    "journal_memory_window": ("ENG-5", "DDB-1", "PERF-1"),
}
# fields that bear on no requirement, each with why (a test fails on a field in neither table)
NO_REQUIREMENT: dict[str, str] = {
    "instance": "the stack sets each engine's instance name; --set refuses it (STACK_SET)",
    "state_dir": "the stack sets each instance's state directory; --set refuses it (STACK_SET)",
    "sentinels": "the stack lists its Sentinels; --set refuses it (STACK_SET)",
    "brokers": "the stack lists its brokers; --set refuses it (STACK_SET)",
    "redis_password": "a secret: --set refuses it",
    "sentinel_password": "a secret: --set refuses it",
}
# topology settings whose ``why`` names no requirement ID
TOPOLOGY_IDS: dict[str, tuple[str, ...]] = {
    "sentinel.port": ("RDS-1",), "clickhouse.tcp_port": ("CH-1",), "clickhouse.http_port": ("CH-1",),
    "postgres.port": ("PG-1",), "mt5.port": ("BRK-1",), "mt5.account": ("BRK-3",), "ea.count": ("EA-1", "EA-5"),
    "ea.symbols": ("EA-1", "EA-2"), "ready.timeout_s": ("ENG-3", "EA-5"),
}
TOPOLOGY_NO_REQUIREMENT: dict[str, str] = {}
ENGINE_SET_PREFIX = "engine."   # --set engine.<EngineConfig field>=VALUE


@lru_cache(maxsize=1)
def _fields() -> dict[str, tuple[Any, tuple[str, ...]]]:
    """EngineConfig field -> (default, requirement IDs named in its comment in config.py)."""
    from reference.engine.config import EngineConfig

    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(EngineConfig):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            defaults[f.name] = None
    comments: dict[str, str] = {}
    current = None
    for line in inspect.getsource(EngineConfig).splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) in defaults:
            current = m.group(1)
            comments[current] = m.group(2) or ""
            continue
        c = _CONTINUED.match(line)
        if c and current is not None and line.startswith(" " * 20):   # a comment continued under the field's
            comments[current] += " " + c.group(1)
        else:
            current = None
    return {k: (v, tuple(dict.fromkeys((*_RID.findall(comments.get(k, "")), *ENGINE_IDS.get(k, ())))))
            for k, v in defaults.items()}


def closure(rids: Iterable[str]) -> tuple[str, ...]:
    """``rids`` and every requirement that builds on one of them (:data:`BUILDS_ON`, transitively), in order."""
    out = list(dict.fromkeys(rids))
    i = 0
    while i < len(out):
        out.extend(r for r in BUILDS_ON.get(out[i], ()) if r not in out)
        i += 1
    return tuple(out)


def topology_ids(key: str) -> tuple[str, ...]:
    """The requirement IDs topology setting ``key`` bears on: its ``why`` and :data:`TOPOLOGY_IDS`."""
    from tradedrill.topology import SETTINGS

    why = SETTINGS[key].why if key in SETTINGS else ""
    return tuple(dict.fromkeys((*_RID.findall(why), *TOPOLOGY_IDS.get(key, ()))))


def known(key: str) -> bool:
    return key in _fields()


def entries(overrides: dict[str, Any], source: str) -> list[dict]:
    """One record per key whose value differs from the documents' (EngineConfig's default)."""
    out = []
    for key, value in overrides.items():
        default, rids = _fields().get(key, (None, ()))
        if value == default:
            continue
        out.append({"key": key, "drill": value, "document": default, "requirement_ids": list(closure(rids)),
                    "source": source})
    return out


def topology_entries(overrides: dict[str, Any], source: str) -> list[dict]:
    """One record per topology setting whose (checked) value differs from the documents' default
    (``tradedrill.topology.SETTINGS``), with the requirement IDs its ``why`` names. Raises TopologyError for an
    unknown key or a bad value."""
    from tradedrill.topology import SETTINGS, TopologyError, check_setting

    out = []
    for key, value in overrides.items():
        if key not in SETTINGS:
            raise TopologyError(f"unknown setting {key!r}; known settings: {', '.join(SETTINGS)}")
        value = check_setting(key, value)
        setting = SETTINGS[key]
        if value == setting.default:
            continue
        out.append({"key": key, "drill": value, "document": setting.default,
                    "requirement_ids": list(closure(topology_ids(key))),
                    "source": source, "kind": "topology"})
    return out


def record(run_path: Path, scenario_overrides: dict[str, Any], option_overrides: dict[str, Any],
           topology_overrides: dict[str, Any] | None = None) -> list[dict]:
    """Write OVERRIDES_FILE (always, [] when none) and return its entries; the options' value wins for a key both
    set (as in the engine's config). ``topology_overrides``: the drill's topology settings (``--set``) that are not
    the documents'."""
    merged = [*entries({k: v for k, v in scenario_overrides.items() if k not in option_overrides}, "scenario"),
              *entries(option_overrides, "drill options"),
              *topology_entries(dict(topology_overrides or {}), "drill options")]
    merged = redact(merged)   # defence in depth: parse_sets refuses a URL password already
    (Path(run_path) / OVERRIDES_FILE).write_text(json.dumps(merged, indent=2, default=str))
    return merged


def load(run_path: Path) -> list[dict]:
    try:
        doc = json.loads((Path(run_path) / OVERRIDES_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(doc, list):
        return []
    out = []
    for e in doc:
        if not isinstance(e, dict) or not e.get("key"):
            continue
        # a run saved before a table here grew: its IDs are completed from today's tables (never fewer)
        key = str(e["key"])
        now = (topology_ids(key) if e.get("kind") == "topology" else _fields().get(key, (None, ()))[1])
        e = {**e, "requirement_ids": list(closure([*(e.get("requirement_ids") or ()), *now]))}
        out.append(e)
    return out


def annotate(judgements: Iterable[Any], overrides: list[dict]) -> None:
    """Attach each override to every judgement of a requirement it names (in place; an entry a checker already
    attached is not attached twice), and to every judgement of the same run that measured the same time metric
    (``*_s``, ``*_ms``) with the same value as one it names (the same event judged against another requirement: ENG-3's RTO is ENG-1's
    takeover in an engine drill). A ``pass`` so touched becomes ``overridden``: never a silent pass."""
    from scenarios.verdicts import OVERRIDDEN, PASS

    judgements = list(judgements)
    same: dict[tuple, list[dict]] = {}
    for j in judgements:
        hits = [e for e in overrides if j.requirement_id in (e.get("requirement_ids") or ())]
        if hits and _timed(j):
            same.setdefault((j.metric, repr(j.measured)), []).extend(hits)
    for j in judgements:
        have = list(getattr(j, "overridden", []))
        hits = [e for e in overrides if j.requirement_id in (e.get("requirement_ids") or ())]
        if _timed(j):
            hits += same.get((j.metric, repr(j.measured)), [])
        hits = [e for i, e in enumerate(hits) if e not in have and e not in hits[:i]]
        if hits:
            j.overridden = [*have, *hits]
        if j.overridden and j.verdict == PASS:
            j.verdict = OVERRIDDEN
            for alt in getattr(j, "alternatives", None) or []:
                if alt.get("verdict") == PASS:
                    alt["verdict"] = OVERRIDDEN


def _timed(j: Any) -> bool:
    """A judgement whose value is a measured time (``*_s``/``*_ms``): equal times of one run are one event (an RTO
    judged for ENG-1 and ENG-3); equal counts (0 lost signals) are not."""
    m = getattr(j, "measured", None)
    return (isinstance(m, (int, float)) and not isinstance(m, bool)
            and str(getattr(j, "metric", "")).endswith(("_s", "_ms")))


def label(entry: dict) -> str:
    return f"{entry['key']} = {_show(entry.get('drill'))} (documents: {_show(entry.get('document'))})"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


# scheme://user:password@host: the password part of a URL's userinfo (DSNs, webhooks)
_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<password>[^/@\s]*)@")


def has_url_password(text: str) -> bool:
    """True when ``text`` holds a URL whose userinfo carries a password (``scheme://user:secret@host``)."""
    return isinstance(text, str) and bool(_USERINFO_PASSWORD.search(text))


def redact(value: Any) -> Any:
    """``value`` (a string, or dicts/lists of them) with every URL userinfo password replaced by ``<redacted>``
    (``postgresql://u:hunter2@h/db`` -> ``postgresql://u:<redacted>@h/db``): for run folders, never the secret."""
    if isinstance(value, str):
        return _USERINFO_PASSWORD.sub(lambda m: f"{m.group('head')}:<redacted>@", value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


# EngineConfig fields the stack sets per node (tradedrill/services/engine.py): a --set of them would be ignored or
# break the stack, so it is refused with why
STACK_SET: dict[str, str] = {
    "instance": "the stack names each engine instance (A, B) by its node",
    "state_dir": "the stack gives each instance its own state directory in the run folder",
    "sentinels": "the stack lists its own Sentinels' addresses",
    "brokers": "the stack lists its own MT5 simulators (primary first)",
    "redis_source_address": "the stack binds each engine to its node's own address",
}
PRIVILEGED_PORTS = 1024   # a drill's node listens unprivileged: a port below this cannot be bound


class SetError(ValueError):
    """A ``--set KEY=VALUE`` the drill cannot use; the message is one line that says what to write instead."""


def _one_line(text: str, limit: int = 300) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(text: str, limit: int = 60) -> str:
    shown = repr(redact(text))
    return shown if len(shown) <= limit else shown[:limit - 4] + "...'"


def _engine_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_sets(pairs: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` pairs into (topology settings, engine settings), every value checked: a topology key
    (``sentinel.down_after_ms=1000``) by ``tradedrill.topology.check_setting`` and the settings' cross-checks, an
    engine key (``engine.store_snapshots_kept=5``; the value read as JSON, else as text) by
    ``EngineConfig.from_mapping``. Raises :class:`SetError` (one line) for a pair without ``=``, an unknown key, a
    bad value, a key given twice, a secret (a password field or a URL with ``user:password@``: passwords come from
    the run folder, never the command line), an engine field the stack sets per node (:data:`STACK_SET`), or a
    port below 1024 (:data:`PRIVILEGED_PORTS`)."""
    from reference.engine.config import ConfigError, EngineConfig
    from tradedrill.topology import SETTINGS, TopologyError, check_setting, check_settings

    topology: dict[str, Any] = {}
    engine: dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, str):
            raise SetError(f"--set takes KEY=VALUE text, not {type(pair).__name__}")
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise SetError(f"--set {_shown(pair)}: write it as KEY=VALUE, e.g. --set sentinel.down_after_ms=1000")
        if key in topology or key[len(ENGINE_SET_PREFIX):] in engine and key.startswith(ENGINE_SET_PREFIX):
            raise SetError(f"--set {_shown(key)} is given twice; give each setting once")
        if key in SETTINGS:
            try:
                topology[key] = check_setting(key, raw)
            except TopologyError as exc:
                raise SetError(f"--set {_one_line(exc)}") from None
            if (key.endswith("port") and isinstance(topology[key], int)
                    and topology[key] < PRIVILEGED_PORTS):
                raise SetError(f"--set {key}={topology[key]}: a privileged port (below {PRIVILEGED_PORTS}) that the "
                               f"drill's unprivileged nodes cannot listen on (and often a system service holds, "
                               f"e.g. 22 ssh); give {PRIVILEGED_PORTS} to 65535")
            continue
        field = key[len(ENGINE_SET_PREFIX):] if key.startswith(ENGINE_SET_PREFIX) else ""
        if field and field in STACK_SET:
            raise SetError(f"--set {key}: the stack sets it per node ({STACK_SET[field]}); it cannot be set here")
        if field and known(field):
            if "password" in field:
                raise SetError(f"--set {key}: secrets are not set on the command line; the drill writes its own "
                               f"into the run folder")
            value = _engine_value(raw)
            if any(has_url_password(v) for v in (value if isinstance(value, list) else [value])):
                raise SetError(f"--set {key}: the value carries a password in its URL (user:password@); put the "
                               f"password in the file the setting's *_file key names (the run folder's secrets), "
                               f"never on the command line")
            try:
                EngineConfig.from_mapping({field: value})
            except (ConfigError, TypeError, ValueError) as exc:
                raise SetError(f"--set {_one_line(exc)}") from None
            engine[field] = value
            continue
        raise SetError(f"--set {_shown(key)} is not a setting: use a topology setting (e.g. sentinel.down_after_ms, "
                       f"redis.appendfsync; `tradedrill up --help`) or engine.<EngineConfig field> (e.g. "
                       f"engine.store_snapshots_kept)")
    try:
        check_settings(topology)
    except TopologyError as exc:
        raise SetError(f"--set {_one_line(exc)}") from None
    return topology, engine
