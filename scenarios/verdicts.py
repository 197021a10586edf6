"""Verdicts: a measured metric against its target from ``targets.toml``, and whether a run can be judged at all.

Three words, never confused with the history's outcomes (ok / fail / unknown, ``scenarios.history``):

- :class:`Verdict` of one (requirement, metric): ``pass``, ``fail``, ``unmeasured`` (no evidence; never a pass), or
  ``overridden`` (issue 19: a setting the harness itself changed for the run was read live at its drill value; the
  judgement keeps both values in ``overridden`` and is neither a pass nor a fail of the design).
- ``CheckResult.valid`` of one checker: True, False, or ``"unknown"`` (nothing to judge).
- :class:`RunValidity` of one run directory: ``valid`` or ``invalid`` with the reasons (the drill was interrupted,
  the history is empty, a scheduled fault was never injected). An invalid run's judgements prove nothing:
  ``tradedrill check`` exits 2 on it.

Model: Jepsen's ``checker.clj`` (``merge-valid``, ``:unknown`` when a checker cannot tell).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Sequence

from scenarios import targets as targets_mod


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    UNMEASURED = "unmeasured"
    OVERRIDDEN = "overridden"

    def __str__(self) -> str:  # so f-strings and JSON show the word
        return self.value


PASS, FAIL, UNMEASURED = Verdict.PASS.value, Verdict.FAIL.value, Verdict.UNMEASURED.value
OVERRIDDEN = Verdict.OVERRIDDEN.value
UNKNOWN = "unknown"  # a checker's ``valid`` when it has nothing to judge


@dataclass
class Judgement:
    """One measured metric against one requirement's target (and its alternatives).
    ``reason`` says why a verdict is ``unmeasured`` (which evidence was missing)."""

    requirement_id: str
    metric: str
    comparator: str
    target: Any
    unit: str
    source: str
    measured: Any
    verdict: str  # pass | fail | unmeasured
    lower_bound: bool = False  # measured is only a lower bound (e.g. not recovered before the history ended)
    alternatives: list[dict] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)
    reason: str = ""
    # engine settings the run used instead of the documents' values that bear on this requirement
    # (scenarios.overrides: {key, drill, document, requirement_ids, source}); the report says "overridden"
    overridden: list[dict] = field(default_factory=list)
    # parts of what this measurement stands for that were not measured (EA-5: failure kinds of the uptime model with
    # no RTO in the run, their downtime unknown, not zero); the report lists the ID as partly measured (issue 19)
    missing: list[str] = field(default_factory=list)


def verdict_of(target: targets_mod.Target, measured: Any, lower_bound: bool = False) -> str:
    """The verdict of ``measured`` against ``target``; ``lower_bound``: the true value is >= measured."""
    if measured is None:
        return UNMEASURED
    if lower_bound:
        # we only know the true value is >= measured: a "<"/"<=" target is missed if the bound already misses it
        if target.comparator in ("<", "<=", "=="):
            return FAIL if target.meets(measured) is False else UNMEASURED
        return PASS if target.meets(measured) else UNMEASURED
    met = target.meets(measured)
    return UNMEASURED if met is None else (PASS if met else FAIL)


def judge(metrics: dict[str, Any], requirement_ids: Sequence[str], targets: targets_mod.Targets | None = None,
          lower_bounds: Iterable[str] = (), unmeasured_reason: str = "") -> list[Judgement]:
    """A judgement for every (requirement, metric) pair that targets.toml defines. A metric whose value is None
    is ``unmeasured`` with ``unmeasured_reason``."""
    targets = targets or targets_mod.load()
    lower = set(lower_bounds)
    out = []
    for rid in requirement_ids:
        if rid not in targets:
            continue
        for metric, measured in metrics.items():
            t = targets.target(rid, metric)
            if t is None:
                continue
            alts = [{"value": a.value, "source": a.source, "note": a.note,
                     "verdict": verdict_of(alt_t, measured, metric in lower)}
                    for a, alt_t in zip(t.alternatives, t.alternative_targets())]
            v = verdict_of(t, measured, metric in lower)
            out.append(Judgement(rid, metric, t.comparator, t.value, t.unit, t.source, measured, v,
                                 metric in lower, alts, list(t.contradictions),
                                 reason=unmeasured_reason if v == UNMEASURED else ""))
    return out


def validity(judgements: Sequence[Judgement]) -> bool | str:
    """Jepsen's merge-valid over one checker's judgements: any fail -> False; else any pass -> True;
    else (nothing judged, or every verdict unmeasured) -> ``"unknown"``."""
    verdicts = [j.verdict for j in judgements]
    if FAIL in verdicts:
        return False
    if PASS in verdicts:
        return True
    return UNKNOWN


@dataclass
class RunValidity:
    """Whether a run directory holds enough to be judged; ``reasons`` say why not."""

    valid: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "valid" if self.valid else "invalid"


def as_json(obj: Any) -> Any:
    """``obj`` with NaN/inf as None and every key a string: safe for ``json.dumps`` (strict JSON)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_json(v) for v in obj]
    return obj


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for a bool, None, text that is no number, NaN or an infinity (the one
    reading of a measured figure in an event line, a dump or a settings read)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return s[rank - 1]


def fmt_num(x: Any) -> str:
    """A measured number for tables: ``-`` for None, at most 3 decimals."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:.3g}"
    return str(x)
