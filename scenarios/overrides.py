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
BUILDS_ON = {"ORD-1": ("ORD-2",), "RDS-1": ("RDS-2", "PERF-2")}
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
    return {k: (v, tuple(dict.fromkeys(_RID.findall(comments.get(k, ""))))) for k, v in defaults.items()}


def known(key: str) -> bool:
    return key in _fields()


def entries(overrides: dict[str, Any], source: str) -> list[dict]:
    """One record per key whose value differs from the documents' (EngineConfig's default)."""
    out = []
    for key, value in overrides.items():
        default, rids = _fields().get(key, (None, ()))
        if value == default:
            continue
        rids = tuple(dict.fromkeys((*rids, *(r for rid in rids for r in BUILDS_ON.get(rid, ())))))
        out.append({"key": key, "drill": value, "document": default, "requirement_ids": list(rids),
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
        rids = tuple(dict.fromkeys(_RID.findall(setting.why)))
        rids = tuple(dict.fromkeys((*rids, *(r for rid in rids for r in BUILDS_ON.get(rid, ())))))
        out.append({"key": key, "drill": value, "document": setting.default, "requirement_ids": list(rids),
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
    (Path(run_path) / OVERRIDES_FILE).write_text(json.dumps(merged, indent=2, default=str))
    return merged


def load(run_path: Path) -> list[dict]:
    try:
        doc = json.loads((Path(run_path) / OVERRIDES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in doc if isinstance(e, dict) and e.get("key")] if isinstance(doc, list) else []


def annotate(judgements: Iterable[Any], overrides: list[dict]) -> None:
    """Attach each override to every judgement of a requirement it names (in place; an entry a checker already
    attached is not attached twice)."""
    for j in judgements:
        have = list(getattr(j, "overridden", []))
        hits = [e for e in overrides if j.requirement_id in (e.get("requirement_ids") or ()) and e not in have]
        if hits:
            j.overridden = [*have, *hits]


def label(entry: dict) -> str:
    return f"{entry['key']} = {_show(entry.get('drill'))} (documents: {_show(entry.get('document'))})"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


class SetError(ValueError):
    """A ``--set KEY=VALUE`` the drill cannot use; the message is one line that says what to write instead."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(text: str, limit: int = 60) -> str:
    shown = repr(text)
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
    bad value, a key given twice, or a secret (passwords come from the run folder, never the command line)."""
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
            continue
        field = key[len(ENGINE_SET_PREFIX):] if key.startswith(ENGINE_SET_PREFIX) else ""
        if field and known(field):
            if "password" in field:
                raise SetError(f"--set {key}: secrets are not set on the command line; the drill writes its own "
                               f"into the run folder")
            value = _engine_value(raw)
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
