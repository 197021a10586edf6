"""Engine settings a drill runs with instead of the documents' values, recorded so no verdict passes silently on them.

Some requirements cannot show inside a drill's 40 s with the documents' figures (ORD-2's 60 s failed_syncs retry
after ORD-1's 31 s of backoff; CH-2's backfill check every minute; CH-3's 12 h / 1 h backup schedule). A scenario
then carries ``engine_overrides`` (``scenarios.registry.Scenario``) with drill-sized values. The drill writes
:data:`OVERRIDES_FILE` into the run folder: per key the drill's value, the documents' value (the default of
``reference.engine.config.EngineConfig``) and the requirement IDs its line in ``config.py`` names. ``check_run``
attaches every entry to each judgement of a requirement it names (``Judgement.overridden``), and the report shows
"overridden: key = drill value (documents: value)" beside the verdict.
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
# a requirement defined on top of another: ORD-2 is "after ORD-1's five failures", so an ORD-1 figure changes it too
BUILDS_ON = {"ORD-1": ("ORD-2",)}


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


def record(run_path: Path, scenario_overrides: dict[str, Any], option_overrides: dict[str, Any]) -> list[dict]:
    """Write OVERRIDES_FILE (always, [] when none) and return its entries; the options' value wins for a key both
    set (as in the engine's config)."""
    merged = [*entries({k: v for k, v in scenario_overrides.items() if k not in option_overrides}, "scenario"),
              *entries(option_overrides, "drill options")]
    (Path(run_path) / OVERRIDES_FILE).write_text(json.dumps(merged, indent=2, default=str))
    return merged


def load(run_path: Path) -> list[dict]:
    try:
        doc = json.loads((Path(run_path) / OVERRIDES_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [e for e in doc if isinstance(e, dict) and e.get("key")] if isinstance(doc, list) else []


def annotate(judgements: Iterable[Any], overrides: list[dict]) -> None:
    """Attach each override to every judgement of a requirement it names (in place)."""
    for j in judgements:
        hits = [e for e in overrides if j.requirement_id in (e.get("requirement_ids") or ())]
        if hits:
            j.overridden = [*getattr(j, "overridden", []), *hits]


def label(entry: dict) -> str:
    return f"{entry['key']} = {_show(entry.get('drill'))} (documents: {_show(entry.get('document'))})"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
