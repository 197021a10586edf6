"""Repeats into distributions, and a verdict per requirement against its target.

A drill repeats each scenario N times; one number is an anecdote. For every (scenario, requirement, metric) the
per-run measurements become a :class:`Distribution` (min, median, p95, max, n). The verdict is the worst case:
a requirement passes only if every measured run meets the target (a run that never recovered fails a time target it
already exceeded). Each alternative target (another document's number) gets its own verdict the same way.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from scenarios import targets as targets_mod
from scenarios.checkers import RunCheck
from scenarios.verdicts import (FAIL, OVERRIDDEN, PASS, UNMEASURED, Judgement, as_json as _jsonable,
                                percentile as _percentile)


@dataclass
class Distribution:
    n: int
    min: float | None = None
    median: float | None = None
    p95: float | None = None
    max: float | None = None
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Iterable[Any]) -> "Distribution":
        nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                and not math.isnan(float(v))]
        if not nums:
            return cls(0)
        return cls(len(nums), min(nums), statistics.median(nums), _percentile(nums, 95), max(nums), nums)


def combine(verdicts: Sequence[str]) -> str:
    """Worst case over runs: any fail fails; otherwise any overridden (a setting the harness changed, issue 19) is
    overridden, never a silent pass; otherwise any pass passes; otherwise unmeasured."""
    if FAIL in verdicts:
        return FAIL
    if OVERRIDDEN in verdicts:
        return OVERRIDDEN
    if PASS in verdicts:
        return PASS
    return UNMEASURED


@dataclass
class RequirementVerdict:
    """One (scenario, requirement, metric) over all repeats."""

    requirement_id: str
    metric: str
    scenario: str
    comparator: str
    target: Any
    unit: str
    source: str
    distribution: Distribution
    verdict: str
    runs: list[dict] = field(default_factory=list)  # run_dir, repeat, seed, measured, lower_bound, verdict
    alternatives: list[dict] = field(default_factory=list)  # value, source, note, verdict
    contradictions: list[str] = field(default_factory=list)
    lower_bounds: int = 0  # runs where only a lower bound was observed (never recovered)
    overridden: list[dict] = field(default_factory=list)  # engine settings not the documents' (scenarios.overrides)
    # parts of what the measurement stands for that no run of it measured (Judgement.missing in every judged run:
    # EA-5's failure kinds without an RTO): the verdict is then "in part", and the report says so beside it
    in_part: list[str] = field(default_factory=list)

    @property
    def target_label(self) -> str:
        return f"{self.metric} {self.comparator} {targets_mod._fmt(self.target)} {self.unit}".strip()


def summarize(run_checks: Iterable[RunCheck], targets: targets_mod.Targets | None = None) -> list[RequirementVerdict]:
    """Group every judgement of every run by (scenario, requirement, metric) and judge the distribution."""
    targets = targets or targets_mod.load()
    groups: dict[tuple[str, str, str], list[tuple[RunCheck, Judgement]]] = {}
    for rc in run_checks:
        for j in rc.judgements:
            groups.setdefault((rc.scenario, j.requirement_id, j.metric), []).append((rc, j))
    out = []
    for (scenario, rid, metric), items in groups.items():
        first = items[0][1]
        exact = [j.measured for _, j in items if not j.lower_bound]
        dist = Distribution.of(exact)
        alts = []
        for i, alt in enumerate(first.alternatives):
            alts.append({"value": alt["value"], "source": alt["source"], "note": alt.get("note", ""),
                         "verdict": combine([j.alternatives[i]["verdict"] for _, j in items
                                             if i < len(j.alternatives)])})
        out.append(RequirementVerdict(
            requirement_id=rid, metric=metric, scenario=scenario, comparator=first.comparator, target=first.target,
            unit=first.unit, source=first.source, distribution=dist, verdict=combine([j.verdict for _, j in items]),
            runs=[{"run_dir": rc.run_dir, "repeat": rc.repeat, "seed": rc.seed, "measured": j.measured,
                   "lower_bound": j.lower_bound, "verdict": j.verdict} for rc, j in items],
            alternatives=alts, contradictions=list(first.contradictions),
            lower_bounds=sum(j.lower_bound for _, j in items), in_part=missing_in_every_run(j for _, j in items),
            overridden=list({(e["key"], json.dumps(e.get("drill"), default=str)): e
                             for _, j in items for e in getattr(j, "overridden", [])}.values())))
    return sorted(out, key=lambda v: (targets_mod.requirement_sort_key(v.requirement_id), v.metric, v.scenario))


def missing_in_every_run(judgements: Iterable[Judgement]) -> list[str]:
    """The parts (``Judgement.missing``) that every judged (not unmeasured) judgement left unmeasured, in the first
    one's order; [] when any of them measured everything (the report's "in part", issue 19)."""
    per_run = [list(getattr(j, "missing", []) or []) for j in judgements if j.verdict != UNMEASURED]
    if not per_run or not all(per_run):
        return []
    return [m for m in per_run[0] if all(m in other for other in per_run[1:])]


@dataclass
class RequirementRow:
    """The summary table's row for one requirement ID: every target of it, measured or not."""

    requirement_id: str
    title: str
    sources: list[str]
    verdict: str
    targets: list[dict]  # metric, label, source, alternatives, contradictions, measured: [RequirementVerdict]
    scenarios: list[str]
    contradictions: list[dict]


def requirement_table(verdicts: Sequence[RequirementVerdict], targets: targets_mod.Targets | None = None,
                      scenario_names_by_requirement: dict[str, list[str]] | None = None) -> list[RequirementRow]:
    """One row per requirement ID in targets.toml (all of them, unmeasured ones too)."""
    targets = targets or targets_mod.load()
    by_req: dict[str, list[RequirementVerdict]] = {}
    for v in verdicts:
        by_req.setdefault(v.requirement_id, []).append(v)
    rows = []
    for rid in targets.ids():
        req = targets[rid]
        measured = by_req.get(rid, [])
        trows = []
        for t in req.targets:
            ms = [v for v in measured if v.metric == t.metric]
            trows.append({"metric": t.metric, "label": t.label, "source": t.source, "measure": t.measure,
                          "alternatives": [asdict(a) for a in t.alternatives],
                          "contradictions": list(t.contradictions),
                          "verdict": combine([v.verdict for v in ms]), "measured": ms})
        scen = sorted({v.scenario for v in measured} | set((scenario_names_by_requirement or {}).get(rid, [])))
        rows.append(RequirementRow(rid, req.title, list(req.sources), combine([v.verdict for v in measured]),
                                   trows, scen, [asdict(c) for c in targets.contradictions_for(rid)]))
    return rows


def verdicts_to_dict(verdicts: Sequence[RequirementVerdict]) -> list[dict]:
    return [_jsonable({**asdict(v), "target_label": v.target_label}) for v in verdicts]
