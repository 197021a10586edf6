"""Uptime from measured recovery (issue 19 part 3; EA-5 and the documents' 99.9 % rows).

No drill runs for a year, so uptime is computed, not observed: each failure kind's measured recovery time (RTO) from
the drills, times a stated failure rate per year, is that kind's downtime; availability is one minus the sum over the
period. The failure rates are a *model*: they live in ``targets.toml`` (``[uptime]``, each with its source, or
"assumption" where no document gives one) and are printed with every figure.

    downtime_s(kind) = failures_per_year(kind) x RTO(kind)            (RTO: the median, or the p95, of the runs)
    uptime_percent   = 100 x (1 - sum over kinds of downtime_s / period_s)

Sensitivity: ``allowed_per_year(kind) = budget_s / RTO(kind)``, the failures a year of that kind alone that the
target (99.9 %: a budget of 0.1 % of the period, 8.76 h) allows at the measured RTO.

Failure kinds are told apart by the fault (its name and the node it hit, ``details.node`` of faults.jsonl) and the
operation whose recovery is timed (``scenarios.checkers.check_rto``: injection to the first successful operation
of that kind invoked after it); the EA's kind is its restart (``scenarios.ticks.check_ea_restart``: the kill to the
first tick of the new stream). A fault never followed by a success counts with the time observed (a lower bound,
marked). Errors: :class:`UptimeError` for a malformed ``[uptime]`` table, naming the entry.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from scenarios.verdicts import judge, percentile, validity

YEAR_S = 365 * 24 * 3600.0


class UptimeError(ValueError):
    """targets.toml's [uptime] table is malformed; the message names the entry."""


@dataclass(frozen=True)
class FailureKind:
    """One failure kind of the model: which faults it is (``fault`` name, node name prefix), which operation's
    recovery is its downtime (``f``; ``"ea_restart"``: the EA's restart to its first tick; ``"ris_session"``: the
    EA's session in RIS lost to back), and how often it is assumed to happen (``per_year``, with ``source``)."""

    kind: str
    fault: str
    node_prefix: str
    f: str
    per_year: float
    source: str
    requirement_ids: tuple[str, ...] = ()
    component: str = ""     # EA-HA 6's row it counts against (EA process, trade execution, Redis state, ...)


@dataclass(frozen=True)
class Model:
    """The failure-rate model: the period (seconds), the availability target (percent, with its source) and the
    failure kinds."""

    period_s: float
    target_percent: float
    target_source: str
    kinds: tuple[FailureKind, ...]
    note: str = ""

    @property
    def budget_s(self) -> float:
        """Downtime the target allows over the period, in seconds (99.9 % of a year: 31,536 s = 8.76 h)."""
        return self.period_s * (1.0 - self.target_percent / 100.0)


def load_model(doc: dict | None = None) -> Model:
    """The ``[uptime]`` table of targets.toml (``doc``: the parsed file; default: read it). Raises UptimeError."""
    if doc is None:
        import tomllib
        from scenarios.targets import TARGETS_PATH
        doc = tomllib.loads(TARGETS_PATH.read_text())
    u = doc.get("uptime")
    if not isinstance(u, dict):
        raise UptimeError("targets.toml has no [uptime] table (the failure-rate model of issue 19)")
    try:
        period_h, target = float(u["period_hours"]), float(u["target_percent"])
    except (KeyError, TypeError, ValueError):
        raise UptimeError("[uptime] needs period_hours and target_percent as numbers") from None
    if not period_h > 0 or not 0 < target < 100:
        raise UptimeError(f"[uptime] period_hours {period_h} must be > 0 and target_percent {target} in (0, 100)")
    kinds = []
    for i, k in enumerate(u.get("kinds") or []):
        missing = [x for x in ("kind", "fault", "node", "f", "per_year", "source") if x not in k]
        if missing:
            raise UptimeError(f"[[uptime.kinds]] #{i + 1} lacks {', '.join(missing)}")
        rate = k["per_year"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise UptimeError(f"[[uptime.kinds]] {k['kind']}: per_year {rate!r} must be a number >= 0")
        kinds.append(FailureKind(str(k["kind"]), str(k["fault"]), str(k["node"]), str(k["f"]), float(rate),
                                 str(k["source"]), tuple(k.get("requirement_ids") or ()), str(k.get("component", ""))))
    if not kinds:
        raise UptimeError("[uptime] has no [[uptime.kinds]]")
    return Model(period_h * 3600.0, target, str(u.get("target_source", "")), tuple(kinds), str(u.get("note", "")))


# -- the computation ------------------------------------------------------------------------------------------------
def uptime_percent(rates_per_year: Sequence[float], rtos_s: Sequence[float], period_s: float = YEAR_S) -> float:
    """Availability in percent over ``period_s`` for failure kinds with ``rates_per_year[i]`` failures per year, each
    down ``rtos_s[i]`` seconds; never below 0. Raises ValueError on a negative rate or RTO or unequal lengths."""
    if len(rates_per_year) != len(rtos_s):
        raise ValueError("one RTO per failure rate")
    if any(r < 0 for r in rates_per_year) or any(t < 0 for t in rtos_s) or period_s <= 0:
        raise ValueError("rates and RTOs must be >= 0 and the period > 0")
    years = period_s / YEAR_S
    down = sum(r * years * t for r, t in zip(rates_per_year, rtos_s))
    return max(0.0, 100.0 * (1.0 - down / period_s))


def allowed_per_year(rto_s: float, budget_s: float) -> float | None:
    """Failures a year of one kind that a downtime budget (seconds a year) allows at ``rto_s``; None for RTO 0."""
    return None if rto_s <= 0 else budget_s / rto_s


@dataclass
class KindFigures:
    """One failure kind over the runs: its measured RTOs and what they cost at the model's rate."""

    kind: FailureKind
    rtos: list[float] = field(default_factory=list)
    lower_bounds: int = 0          # failures never recovered in their run (their observed time is in rtos)
    runs: list[str] = field(default_factory=list)

    def stat(self, which: str) -> float | None:
        if not self.rtos:
            return None
        return statistics.median(self.rtos) if which == "median" else percentile(self.rtos, 95)


def figures(model: Model, measured: dict[str, list[tuple]]) -> dict:
    """The uptime table: per kind its RTO distribution, downtime a year and the failures a year the target allows,
    and the system's uptime at the median and at the p95 RTOs over the kinds measured. ``measured``: kind -> [(rto_s,
    lower_bound, run)]. Kinds with no measurement are listed as unmeasured and left out of the sums (said, never
    counted as zero)."""
    rows, med_rates, med_rtos, p95_rtos = [], [], [], []
    for k in model.kinds:
        kf = KindFigures(k)
        held = []
        for rto, lower, run, *rest in measured.get(k.kind, []):
            if rest and rest[0] is not None:
                held.append(rest[0])
            kf.rtos.append(rto)
            kf.lower_bounds += bool(lower)
            if run not in kf.runs:
                kf.runs.append(run)
        med, p95 = kf.stat("median"), kf.stat("p95")
        row = {"kind": k.kind, "component": k.component, "fault": k.fault, "node": k.node_prefix, "f": k.f,
               "per_year": k.per_year,
               "source": k.source, "requirement_ids": list(k.requirement_ids), "n": len(kf.rtos),
               "runs": len(kf.runs), "lower_bounds": kf.lower_bounds,
               "rto_min_s": min(kf.rtos) if kf.rtos else None, "rto_median_s": med, "rto_p95_s": p95,
               "rto_max_s": max(kf.rtos) if kf.rtos else None,
               # how long the drills held the fault (inject to heal; None: a kill the stack itself recovers from).
               # An RTO near it is the fault's own duration, not a recovery time: that kind's downtime then rests on
               # how long such a fault lasts in the field, which no document gives
               "fault_held_median_s": statistics.median(held) if held else None}
        if med is None:
            row.update(measured=False, downtime_median_s=None, downtime_p95_s=None, allowed_median=None,
                       allowed_p95=None)
        else:
            row.update(measured=True, downtime_median_s=k.per_year * med, downtime_p95_s=k.per_year * p95,
                       allowed_median=allowed_per_year(med, model.budget_s),
                       allowed_p95=allowed_per_year(p95, model.budget_s))
            med_rates.append(k.per_year)
            med_rtos.append(med)
            p95_rtos.append(p95)
        rows.append(row)
    years = model.period_s / YEAR_S
    # kinds that are one event seen by two components (redis-all-down and session-lost: the same every-Redis-down
    # failure, once as trades down, once as the EA's session down) overlap in time: the system's total counts the
    # event once, at the longer of their downtimes (the components' rows keep each)
    events: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["measured"]:
            events.setdefault((r["fault"], r["node"]), []).append(r)
    med_rates, med_rtos, p95_rtos = [], [], []
    same_event = []
    for (fault, node), group in events.items():
        if len(group) > 1 and fault not in ("process-kill", "process-pause"):
            same_event.append([g["kind"] for g in group])
            med_rates.append(max(g["per_year"] for g in group))
            med_rtos.append(max(g["rto_median_s"] for g in group))
            p95_rtos.append(max(g["rto_p95_s"] for g in group))
        else:
            for g in group:
                med_rates.append(g["per_year"])
                med_rtos.append(g["rto_median_s"])
                p95_rtos.append(g["rto_p95_s"])
    components = []
    for comp in dict.fromkeys(r["component"] for r in rows):
        mine = [r for r in rows if r["component"] == comp and r["measured"]]
        components.append({
            "component": comp, "kinds": [r["kind"] for r in rows if r["component"] == comp],
            "kinds_measured": [r["kind"] for r in mine],
            "uptime_median_percent": uptime_percent([r["per_year"] for r in mine], [r["rto_median_s"] for r in mine],
                                                    model.period_s) if mine else None,
            "uptime_p95_percent": uptime_percent([r["per_year"] for r in mine], [r["rto_p95_s"] for r in mine],
                                                 model.period_s) if mine else None})
    total = {
        "uptime_median_percent": uptime_percent(med_rates, med_rtos, model.period_s) if med_rtos else None,
        "uptime_p95_percent": uptime_percent(med_rates, p95_rtos, model.period_s) if p95_rtos else None,
        "downtime_median_s": sum(r * years * t for r, t in zip(med_rates, med_rtos)) if med_rtos else None,
        "downtime_p95_s": sum(r * years * t for r, t in zip(med_rates, p95_rtos)) if p95_rtos else None,
        "budget_s": model.budget_s, "target_percent": model.target_percent, "target_source": model.target_source,
        "period_s": model.period_s, "kinds_measured": sum(r["measured"] for r in rows), "kinds": len(model.kinds),
        "same_event": same_event,
        "unmeasured_kinds": [r["kind"] for r in rows if not r["measured"]], "note": model.note,
    }
    return {"kinds": rows, "components": components, "total": total}


# -- measurement from a run folder ---------------------------------------------------------------------------------
def kind_rtos(view, model: Model) -> dict[str, list[tuple]]:
    """Per failure kind of ``model``, the recoveries one run measured: [(rto_s, lower_bound, run_dir, fault_held_s)]
    (``fault_held_s``: inject to heal, None for a fault with no heal). ``view`` is a ``scenarios.checkers.RunView``."""
    from scenarios import checkers as c
    from scenarios import ticks

    run = str(view.run.path)
    windows = view.fault_windows()
    ops = None
    out: dict[str, list[tuple]] = {}
    for k in model.kinds:
        hits = [w for w in windows if w.fault == k.fault
                and str((w.details or {}).get("node") or "").startswith(k.node_prefix)]
        if not hits:
            continue
        if k.f == "ea_restart":
            histories, _bad = ticks.consumer_histories(view.run.path)
            sup, _b = ticks.supervisor_events(view.run.path)
            r = ticks.check_ea_restart(histories, hits, sup, requirement_ids=(), targets=None)
            for e in r.evidence:
                if isinstance(e, dict) and e.get("restart_s") is not None:
                    out.setdefault(k.kind, []).append((float(e["restart_s"]), False, run, None))
                elif isinstance(e, dict) and e.get("kind") == "not_restarted" \
                        and e.get("no_new_stream_for_s") is not None:
                    out.setdefault(k.kind, []).append((float(e["no_new_stream_for_s"]), True, run, None))
            continue
        if k.f == "ris_session":
            # EA-3's session in RIS: down from the EA's ris_lost to its session back (resumed or new)
            from scenarios import cadences
            events, _bad = ticks.ea_events(view.run.path)
            r = cadences.check_ris_reconnect(events, hits, requirement_ids=(), targets=None,
                                             result_cls=c.CheckResult)
            spans = [(w.inject_wall, w.heal_wall) for w in hits if w.inject_wall is not None]
            for e in r.evidence:
                if isinstance(e, dict) and e.get("kind") == "session_back":
                    lost = float(e["lost_wall"])
                    w = next(((a, b) for a, b in spans if a - 1.0 <= lost <= (b if b is not None else lost)), None)
                    if w is not None:
                        back = float(e["redis_back_wall"]) + float(e["rto_s"])
                        out.setdefault(k.kind, []).append((back - lost, False, run,
                                                           None if w[1] is None else w[1] - w[0]))
            continue
        if k.f == "clickhouse_sync":
            # EA-HA 6's ClickHouse sync: down from the kill to every waiting failed_syncs row resent (CH-1's
            # clickhouse_history: the outage held, then ClickHouse back to clickhouse_sync_recovered)
            r = c.CHECKERS["clickhouse_history"].fn(view, {}, (), None)
            for e in r.evidence:
                if isinstance(e, dict) and e.get("kind") == "outage" and e.get("outage_s") is not None:
                    if e.get("recovery_s") is not None:
                        out.setdefault(k.kind, []).append((float(e["outage_s"]) + float(e["recovery_s"]), False, run,
                                                           float(e["outage_s"])))
                    else:
                        out.setdefault(k.kind, []).append((float(e["outage_s"]), True, run, float(e["outage_s"])))
            continue
        ops = view.operations() if ops is None else ops
        if not any(op.f == k.f for op in ops):
            continue
        r = c.check_rto(ops, hits, f=k.f, requirement_ids=())
        for m in r.measurements:
            value, lower = (m.rto_s, False) if m.rto_s is not None else (m.observed_s, True)
            held = None if m.heal_mono is None else m.heal_mono - m.inject_mono
            out.setdefault(k.kind, []).append((float(value), lower, run, held))
    return out


UPTIME_RULE = ("uptime_percent = 100 x (1 - sum over the failure kinds this run measured of per_year x the worst "
               "RTO of that kind in the run / the period), the rates from targets.toml [uptime] (sources or "
               "'assumption'); kinds the run did not exercise are listed (EA-5 is then partly measured, their downtime "
               "unknown, never zero). One event seen by two kinds (redis-all-down and session-lost) counts once, at "
               "the longer downtime. The report's uptime section sums every kind over every run (median and p95).")


def check_uptime(measured: dict[str, list[tuple]], model: Model, *, requirement_ids=("EA-5",),
                 targets=None, result_cls, name: str = "uptime"):
    """EA-5 for one run: the uptime the model gives at the worst RTO of each failure kind the run measured."""
    table = figures(model, {k: [(max(r[0] for r in rows), any(r[1] for r in rows), rows[0][2])]
                            for k, rows in measured.items() if rows})
    total = table["total"]
    value = total["uptime_median_percent"]
    lower = any(r["lower_bounds"] for r in table["kinds"] if r["measured"])
    metrics = {"uptime_percent": None if value is None else round(value, 6),
               "downtime_s_per_year": (None if total["downtime_median_s"] is None
                                       else round(total["downtime_median_s"], 3)),
               "kinds_measured": [r["kind"] for r in table["kinds"] if r["measured"]],
               "budget_s_per_year": round(model.budget_s, 1)}
    why = ("unmeasured: no failure kind of the uptime model ([uptime] in targets.toml) was injected and timed in this "
           "run")
    # a recovery never seen is a lower bound on the downtime: the uptime is then at most the value (an upper bound)
    judgements = judge({"uptime_percent": metrics["uptime_percent"]}, requirement_ids, targets,
                       unmeasured_reason=why)
    missing = [r["kind"] for r in table["kinds"] if not r["measured"]]
    if value is not None and missing:
        for j in judgements:
            j.missing = [f"{k}: no RTO measured (its downtime unknown, not counted as zero)" for k in missing]
            j.reason = (f"partial model: RTOs of {len(model.kinds) - len(missing)} of {len(model.kinds)} failure "
                        f"kinds measured in this run; no RTO for {', '.join(missing)}")
    if lower:
        for j in judgements:

            if j.verdict == "pass":
                j.verdict, j.reason = "unmeasured", "a failure was not recovered before the run ended: the uptime is " \
                                                    "only an upper bound"
    evidence = [*({"kind": "failure_kind", **r} for r in table["kinds"] if r["measured"]),
                {"kind": "model", "per_year": {k.kind: k.per_year for k in model.kinds},
                 "sources": {k.kind: k.source for k in model.kinds}},
                {"kind": "rule", "rule": UPTIME_RULE}]
    summary = (f"uptime {metrics['uptime_percent']} % from {', '.join(metrics['kinds_measured'])} "
               f"({metrics['downtime_s_per_year']} s a year of {metrics['budget_s_per_year']} s allowed)"
               if value is not None else why)
    return result_cls(name, validity(judgements), tuple(requirement_ids), metrics, evidence, summary, judgements)


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """The ``uptime`` checker for ``scenarios.checkers.CHECKERS`` (built there; this module never imports it)."""
    def fn(view, params, rids, targets):
        model = load_model()
        return check_uptime(kind_rtos(view, model), model, requirement_ids=rids, targets=targets,
                            result_cls=result_cls)
    return [checker_cls("uptime", fn, ("uptime_percent",),
                        "EA-5: the uptime the failure-rate model of targets.toml gives at this run's measured "
                        "recovery times")]


def run_figures(run_dirs: Iterable[str | Path], model: Model | None = None) -> dict:
    """The uptime table over every run folder of a drill (the report's section): each folder read once."""
    from scenarios import checkers as c
    from scenarios import history as h

    model = model or load_model()
    measured: dict[str, list[tuple]] = {}
    problems = []
    for d in run_dirs:
        try:
            view = c.RunView(h.RunDir(d))
            for kind, rows in kind_rtos(view, model).items():
                measured.setdefault(kind, []).extend(rows)
        except Exception as exc:  # noqa: BLE001 - one damaged run folder must not hide the others; it is named
            problems.append(f"{d}: {type(exc).__name__}: {str(exc)[:120]}")
    table = figures(model, measured)
    table["problems"] = problems
    return table

