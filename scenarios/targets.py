"""The design targets: ``targets.toml`` read into plain data. Every number a checker or report judges by lives there.

``load()`` returns a :class:`Targets` with one :class:`Requirement` per ID (each with its :class:`Target` list) and
the known :class:`Contradiction` entries. ``Target.meets(measured)`` applies the comparator; alternatives are
targets too (``Target.alternative_targets()``), so a report can show the verdict under every document's number.

``not_measurable = "reason"`` on a requirement (issue 19) says why no scenario or checker can measure it on this
project's stack; the coverage gate (``tests/reports/test_coverage.py``) accepts an unclaimed ID only with one, and the
report prints the reason. It must be a sentence, not empty.
"""
from __future__ import annotations

import math
import operator
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

TARGETS_PATH = Path(__file__).with_name("targets.toml")

COMPARATORS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">=": operator.ge, ">": operator.gt}


class TargetsError(ValueError):
    """targets.toml is malformed; the message names the entry to fix."""


@dataclass(frozen=True)
class Alternative:
    value: Any
    source: str
    note: str = ""


@dataclass(frozen=True)
class Target:
    requirement_id: str
    metric: str
    comparator: str
    value: Any
    unit: str
    source: str
    measure: str = ""
    alternatives: tuple[Alternative, ...] = ()
    contradictions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.metric} {self.comparator} {_fmt(self.value)} {self.unit}".strip()

    def meets(self, measured: Any) -> bool | None:
        """True/False by the comparator; None when it cannot be judged (no measurement, or a non-numeric
        alternative such as "permanent" against a number)."""
        return _meets(self.comparator, measured, self.value)

    def alternative_targets(self) -> list["Target"]:
        return [Target(self.requirement_id, self.metric, self.comparator, alt.value, self.unit, alt.source,
                       self.measure) for alt in self.alternatives]


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    sources: tuple[str, ...]
    targets: tuple[Target, ...]
    note: str = ""
    not_measurable: str = ""   # why nothing can measure it here (issue 19); "" = it must be measured

    def target(self, metric: str) -> Target | None:
        return next((t for t in self.targets if t.metric == metric), None)


@dataclass(frozen=True)
class Contradiction:
    id: str
    requirement_ids: tuple[str, ...]
    summary: str
    evidence: str
    measured: bool
    values: str = ""
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Targets:
    requirements: dict[str, Requirement]
    contradictions: dict[str, Contradiction] = field(default_factory=dict)

    def __getitem__(self, requirement_id: str) -> Requirement:
        try:
            return self.requirements[requirement_id]
        except KeyError:
            raise KeyError(f"{requirement_id} is not in targets.toml; add it with its source document") from None

    def __contains__(self, requirement_id: str) -> bool:
        return requirement_id in self.requirements

    def target(self, requirement_id: str, metric: str) -> Target | None:
        req = self.requirements.get(requirement_id)
        return req.target(metric) if req else None

    def contradictions_for(self, requirement_id: str) -> list[Contradiction]:
        return [c for c in self.contradictions.values() if requirement_id in c.requirement_ids]

    def ids(self) -> list[str]:
        return sorted(self.requirements, key=requirement_sort_key)

    def not_measurable(self) -> dict[str, str]:
        """Requirement ID -> the reason targets.toml gives why nothing can measure it (issue 19)."""
        return {rid: r.not_measurable for rid, r in self.requirements.items() if r.not_measurable}


def requirement_sort_key(rid: str) -> tuple:
    prefix, _, num = rid.rpartition("-")
    order = ["ENG", "BRK", "ORD", "RDS", "DDB", "CH", "BE", "EA", "TV", "CFG", "PG", "BR", "PERF"]
    return (order.index(prefix) if prefix in order else len(order), prefix, int(num) if num.isdigit() else 0)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _meets(comparator: str, measured: Any, value: Any) -> bool | None:
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return None
    op = COMPARATORS[comparator]
    if comparator != "==":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(measured, bool) or not isinstance(measured, (int, float)):
            return None
    try:
        return bool(op(measured, value))
    except TypeError:
        return None


def parse(doc: dict) -> Targets:
    requirements = {}
    for rid, body in (doc.get("requirements") or {}).items():
        targets = []
        for i, t in enumerate(body.get("targets") or []):
            missing = [k for k in ("metric", "comparator", "value", "unit", "source") if k not in t]
            if missing:
                raise TargetsError(f"{rid} target #{i + 1} lacks {', '.join(missing)} in targets.toml")
            if t["comparator"] not in COMPARATORS:
                raise TargetsError(f"{rid} target {t['metric']}: comparator {t['comparator']!r} is not one of "
                                   f"{', '.join(COMPARATORS)}")
            alts = tuple(Alternative(a["value"], a.get("source", ""), a.get("note", ""))
                         for a in t.get("alternatives") or [])
            targets.append(Target(rid, t["metric"], t["comparator"], t["value"], t["unit"], t["source"],
                                  t.get("measure", ""), alts, tuple(t.get("contradictions") or ())))
        if not targets:
            raise TargetsError(f"{rid} has no measurable target in targets.toml")
        why = body.get("not_measurable", "")
        if not isinstance(why, str) or ("not_measurable" in body and not why.strip()):
            raise TargetsError(f"{rid}: not_measurable must be a sentence saying why nothing can measure it, not "
                               f"{why!r}")
        requirements[rid] = Requirement(rid, body.get("title", ""), tuple(body.get("sources") or ()),
                                        tuple(targets), body.get("note", ""), " ".join(why.split()))
    contradictions = {}
    for c in doc.get("contradictions") or []:
        contradictions[c["id"]] = Contradiction(c["id"], tuple(c.get("requirement_ids") or ()), c.get("summary", ""),
                                                c.get("evidence", ""), bool(c.get("measured", False)),
                                                c.get("values", ""), tuple(c.get("sources") or ()))
    for req in requirements.values():
        for t in req.targets:
            for cid in t.contradictions:
                if cid not in contradictions:
                    raise TargetsError(f"{req.id} {t.metric} names contradiction {cid!r}, which is not defined")
    return Targets(requirements, contradictions)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> Targets:
    with open(path, "rb") as fh:
        return parse(tomllib.load(fh))


def load(path: str | Path | None = None) -> Targets:
    p = Path(path) if path is not None else TARGETS_PATH
    return _load_cached(str(p), p.stat().st_mtime)
