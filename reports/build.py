"""Build the RTO report from run directories: ``report.html`` (one self-contained file, plotly.js inlined, opens
offline), ``report.json`` (every number), ``junit.xml`` (one testcase per scenario x requirement) and ``summary.md``
side by side.

The first line of each (issue 19's coverage gate, :func:`coverage`): "N of 51 requirement IDs measured: p pass,
f fail, o overridden, u unmeasured", then the reason of every unmeasured ID (``not_measurable`` of targets.toml,
or what its checkers said).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import os
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

from scenarios import registry
from scenarios import targets as targets_mod
from scenarios.checkers import RtoResult, RunCheck, check_run
from scenarios.packages import report_styles
from scenarios.verdicts import FAIL, OVERRIDDEN, PASS, UNMEASURED, fmt_num, as_json as _jsonable
from scenarios.distributions import (RequirementVerdict, missing_in_every_run, requirement_table, summarize,
                                     verdicts_to_dict)
from scenarios.history import RunDir

TEMPLATES = Path(__file__).with_name("templates")
REPORT_HTML, REPORT_JSON, JUNIT_XML, SUMMARY_MD = "report.html", "report.json", "junit.xml", "summary.md"
STATUSES = (PASS, FAIL, OVERRIDDEN, UNMEASURED)   # a requirement ID's status in the summary line
BENCH_DIR = Path("out/bench")  # relative to the current directory: where `nox -s bench` writes
BENCH_ENGINE, BENCH_RTO = "engine.json", "rto.json"

_OUTCOME_COLOURS = {"ok": "#2e7d32", "fail": "#c62828", "unknown": "#ef6c00"}


def _fill(hex_colour: str, alpha: float = 0.13) -> str:
    """``#rrggbb`` -> a translucent ``rgba(...)`` for a fault window."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def collect_run_checks(source: Any, *, targets: targets_mod.Targets | None = None) -> list[RunCheck]:
    """Run checks from: RunCheck objects, run directories or folders holding run directories, or a drill result
    object with ``run_dirs`` (or ``run_checks``), or the runner's result dict ({"checks"|"runs": ...})."""
    if isinstance(source, dict):  # scenarios.runner.run_drills' result
        source = source.get("checks") or source.get("runs") or source.get("run_dirs") or []
    if hasattr(source, "run_checks"):
        source = source.run_checks
    elif hasattr(source, "runs") and not isinstance(source, (str, os.PathLike)):  # scenarios.runner.DrillResult
        source = source.runs
    elif hasattr(source, "run_dirs"):
        source = source.run_dirs
    if isinstance(source, (str, os.PathLike, RunDir, RunCheck)):
        source = [source]
    checks: list[RunCheck] = []
    for item in source:
        if isinstance(item, RunCheck):
            checks.append(item)
            continue
        path = item.path if isinstance(item, RunDir) else Path(item)
        runs = RunDir.find(path)
        if not runs:
            raise FileNotFoundError(f"no run directory (a folder with history.jsonl) under {path}")
        checks.extend(check_run(run, targets=targets) for run in runs)
    return checks


def build_report(source: Any, out_dir: str | os.PathLike, *, targets: targets_mod.Targets | None = None,
                 title: str = "tradedrill RTO report", bench_dir: str | os.PathLike | None = None,
                 verification: dict | None = None) -> Path:
    """Judge the runs in ``source`` (see :func:`collect_run_checks`) and write report.html, report.json and
    junit.xml into ``out_dir``. Returns the path of report.html. The "Benchmarks" section shows
    ``engine.json`` and ``rto.json`` of ``bench_dir`` (default ``out/bench`` of the current directory, where
    ``nox -s bench`` writes them) when they are there. The "Verification power" section shows the catch rate and
    the soak (``reports.verification.section_view``: ``verification``, default from ``out/``), "not measured"
    without them."""
    from reports import uptime_section
    from reports.verification import section_view

    verification = section_view() if verification is None else verification
    targets = targets or targets_mod.load()
    benchmarks = load_benchmarks(BENCH_DIR if bench_dir is None else bench_dir)
    run_checks = collect_run_checks(source, targets=targets)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = summarize(run_checks, targets)
    read_values(verdicts, run_checks)   # text settings: the value read, never an empty n=0 distribution
    planned = _planned_scenarios()
    rows = requirement_table(verdicts, targets, planned)
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    cov = coverage(rows, targets, run_checks)
    report = _report_dict(run_checks, verdicts, rows, targets, generated, title, cov)
    report["benchmarks"] = {k: benchmarks[k] for k in ("dir", "engine", "rto", "problems")}
    report["verification"] = {k: {"measured": v["measured"], "path": v["path"], "figure": v["figure"]}
                              for k, v in verification.items()}
    report["load"] = {rc.run_dir: load_summary for rc in run_checks
                      if (load_summary := _load_summary(rc.run_dir)) is not None}
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str))
    write_junit(run_checks, verdicts, out / JUNIT_XML)
    (out / SUMMARY_MD).write_text(summary_markdown(cov, title, generated, len(run_checks)), encoding="utf-8")
    html = render_html(run_checks, verdicts, rows, targets, generated, title, benchmarks=benchmarks,
                       verification=verification, cov=cov)
    path = out / REPORT_HTML
    path.write_text(html, encoding="utf-8")
    uptime_section.attach(out, run_checks, targets)   # issue 19: cadences and uptime (reports/uptime_section.py)
    return path


def _nodes_read(run_checks: Sequence[RunCheck]) -> dict[tuple[str, str], int]:
    """``{(run_dir, metric): nodes}``: how many nodes the conformance read took a setting from (its evidence)."""
    out: dict[tuple[str, str], int] = {}
    for rc in run_checks:
        for r in rc.results:
            if getattr(r, "checker", "") != "conformance":
                continue
            for e in getattr(r, "evidence", None) or []:
                if isinstance(e, dict) and e.get("metric") and isinstance(e.get("nodes"), dict):
                    out[(rc.run_dir, e["metric"])] = len({k.split("@")[0] for k in e["nodes"]})
    return out


def read_values(verdicts: Sequence[RequirementVerdict], run_checks: Sequence[RunCheck] = ()) -> None:
    """In place, each verdict's ``read``: for a text or yes/no setting (no number to distribute: ``appendfsync``,
    ``maxmemory_policy``, ``wal_enabled``) the values read over its runs with how many runs (and nodes) read each,
    e.g. ``"always (48 runs, 3 nodes each)"``; ``""`` for a numeric metric (its distribution says it)."""
    nodes = _nodes_read(run_checks)
    for v in verdicts:
        texts: dict[str, list[int | None]] = {}
        for r in v.runs:
            m = r.get("measured")
            if m is None or (isinstance(m, (int, float)) and not isinstance(m, bool)):
                continue
            texts.setdefault(targets_mod._fmt(m), []).append(nodes.get((r.get("run_dir"), v.metric)))
        parts = []
        for text, ns in texts.items():
            known = sorted({n for n in ns if n})
            each = (f", {known[0]} node{'s' if known[0] != 1 else ''} each" if len(known) == 1
                    else f", {known[0]}-{known[-1]} nodes" if known else "")
            parts.append(f"{text} ({len(ns)} run{'s' if len(ns) != 1 else ''}{each})")
        v.read = "read " + "; ".join(parts) if parts and not v.distribution.n else ""  # type: ignore[attr-defined]


def _planned_scenarios() -> dict[str, list[str]]:
    planned: dict[str, list[str]] = {}
    for s in registry.all_scenarios():
        for rid in {r for c in s.checkers for r in c.requirement_ids} | set(s.requirement_ids):
            planned.setdefault(rid, []).append(s.name)
    return planned


def _counts(verdicts: Sequence[str]) -> dict[str, int]:
    return {k: sum(v == k for v in verdicts) for k in STATUSES}


def requirement_status(row) -> str:
    """One requirement ID's status over every target and scenario: ``fail`` if any target failed; else
    ``overridden`` if a target was judged under a setting the harness changed (an ``overridden`` verdict, or a pass
    carrying overrides: never a silent pass); else ``pass`` if any target passed; else ``unmeasured``."""
    verdicts = [t["verdict"] for t in row.targets]
    if FAIL in verdicts:
        return FAIL
    if OVERRIDDEN in verdicts or any(v.overridden for t in row.targets for v in t["measured"] if v.verdict == PASS):
        return OVERRIDDEN
    return PASS if PASS in verdicts else UNMEASURED


REASON_MAX = 600   # characters of one reason in the first line's lists; report.json keeps every reason whole


def shorten(reason: str, limit: int = REASON_MAX) -> str:
    """``reason`` on one line, whole when it fits in ``limit`` characters; else cut after its last full sentence
    that fits, or else at its last word that fits, and ended with "…" (never mid-word, never silently)."""
    text = " ".join(str(reason).split())
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    cut = max(head.rfind(". "), head.rfind("; "), head.rfind(": "))
    if cut >= limit // 3:
        return head[:cut + 1] + " …"
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(",;: ") + " …"


def _partial_text(m: dict) -> str:
    """One item of a partly measured ID: ``<target> unmeasured: why`` or ``<target> measured in part: what not``."""
    return f"{m['label']} {'measured in part' if m.get('in_part') else 'unmeasured'}: {m['reason']}"


def _target_reason(rid: str, metric: str, run_checks: Sequence[RunCheck]) -> str:
    """Why ``rid``'s target on ``metric`` is unmeasured in these runs: its checkers' reasons, else none ran it."""
    reasons = list(dict.fromkeys(j.reason for rc in run_checks for j in rc.judgements
                                 if j.requirement_id == rid and j.metric == metric and j.verdict == UNMEASURED
                                 and j.reason))
    reasons = list(dict.fromkeys(re.sub(r"^unmeasured:\s*", "", r) for r in reasons))
    if reasons:
        return "; ".join(shorten(r) for r in reasons[:2]) + (
            f" (and {len(reasons) - 2} more reasons in report.json)" if len(reasons) > 2 else "")
    return f"no run of this report measured {metric}"


def partly_measured(rows, status: dict[str, str], run_checks: Sequence[RunCheck] = ()) -> dict[str, list[dict]]:
    """Measured requirement IDs (pass, fail or overridden) with some targets unmeasured, or a measured target whose
    judgements name parts no run measured (``Judgement.missing``: EA-5's failure kinds without an RTO) (issue 19):
    ``{rid: [{"metric", "label", "reason"}]}``, one item per such target with why."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        if status.get(row.requirement_id) == UNMEASURED:
            continue
        missing = [{"metric": t["metric"], "label": t["label"],
                    "reason": _target_reason(row.requirement_id, t["metric"], run_checks)}
                   for t in row.targets if t["verdict"] == UNMEASURED]
        for t in row.targets:   # a measured target standing for parts no run measured (EA-5's failure kinds)
            if t["verdict"] == UNMEASURED:
                continue
            common = missing_in_every_run(j for rc in run_checks for j in rc.judgements
                                          if j.requirement_id == row.requirement_id and j.metric == t["metric"])
            if common:
                runs = sorted({rc.scenario for rc in run_checks for j in rc.judgements
                               if j.requirement_id == row.requirement_id and j.metric == t["metric"]
                               and j.verdict != UNMEASURED and getattr(rc, "scenario", None)})
                missing.append({"metric": t["metric"], "label": t["label"], "in_part": True,
                                "reason": "; ".join(common) + (f" (in every run that judged it: {', '.join(runs)})"
                                                               if runs else "")})
        if missing:
            out[row.requirement_id] = missing
    return out


def _unmeasured_reason(rid: str, targets: targets_mod.Targets, run_checks: Sequence[RunCheck]) -> str:
    why = targets[rid].not_measurable
    if why:
        return f"not measurable here: {why}"
    reasons = list(dict.fromkeys(j.reason for rc in run_checks for j in rc.judgements
                                 if j.requirement_id == rid and j.verdict == UNMEASURED and j.reason))
    if reasons:
        shown = "; ".join(shorten(r) for r in reasons[:2])
        return shown + (f" (and {len(reasons) - 2} more reasons in report.json)" if len(reasons) > 2 else "")
    claimed = registry.claims().get(rid, [])
    if claimed:
        names = sorted({c.split(":", 1)[0] for c in claimed})
        ran = sorted({rc.scenario for rc in run_checks} & set(names))
        if ran:
            invalid = [n for n in ran if all(not rc.run_validity.valid for rc in run_checks if rc.scenario == n)]
            if invalid:
                return f"the runs of {', '.join(invalid)} here cannot be judged (invalid runs, see each run)"
            return (f"the runs of {', '.join(ran)} here were judged by the definition they ran with (their "
                    f"scenario.json), which did not claim it yet: run {', '.join(ran)} again")
        return (f"no run of this report measures it; run {', '.join(names[:4])}"
                + (f" (+{len(names) - 4} more)" if len(names) > 4 else ""))
    return "no scenario or checker claims it, and targets.toml gives no not_measurable reason (the coverage gate fails)"


def gate_problems(targets: targets_mod.Targets, claims: dict[str, list[str]] | None = None) -> list[str]:
    """The coverage gate (issue 19), one line per problem: an ID claimed by no scenario or checker without a
    ``not_measurable`` reason, and an ID with a ``not_measurable`` reason that a scenario or checker claims (a
    contradiction: it is measured, or the claim is stale). ``[]`` when the gate passes."""
    claims = registry.claims() if claims is None else claims
    problems = [f"{rid}: claimed by no scenario or checker and targets.toml gives no not_measurable reason"
                for rid in targets.ids() if rid not in claims and not targets[rid].not_measurable]
    problems += [f"{rid}: targets.toml says not measurable ({targets[rid].not_measurable}) but "
                 f"{', '.join(sorted(claims[rid])[:3])} claims it: drop the stale not_measurable or the claim"
                 for rid in targets.ids() if rid in claims and targets[rid].not_measurable]
    return problems


def coverage(rows, targets: targets_mod.Targets, run_checks: Sequence[RunCheck] = ()) -> dict:
    """The report's first line (issue 19): how many requirement IDs these runs measured (pass, fail or overridden)
    out of every ID of targets.toml, the count of each status, each ID's status, and the reason of every unmeasured
    one (``not_measurable`` of targets.toml, else what its checkers said, else which scenarios would measure it).
    Shape: ``{"line", "measured", "total", "counts": {status: n}, "status": {rid: status}, "unmeasured": {rid:
    reason}, "not_measurable": {rid: reason}}``."""
    status = {row.requirement_id: requirement_status(row) for row in rows}
    counts = {k: sum(v == k for v in status.values()) for k in STATUSES}
    measured = counts[PASS] + counts[FAIL] + counts[OVERRIDDEN]
    not_measurable = targets.not_measurable()
    partial = partly_measured(rows, status, run_checks)
    in_part = (f" ({len(partial)} of them in part: {sum(len(v) for v in partial.values())} targets unmeasured)"
               if partial else "")
    line = (f"{measured} of {len(status)} requirement IDs measured{in_part}: {counts[PASS]} pass, {counts[FAIL]} fail, "
            f"{counts[OVERRIDDEN]} overridden, {counts[UNMEASURED]} unmeasured"
            + (f" ({sum(rid in not_measurable for rid, v in status.items() if v == UNMEASURED)} of them not "
               f"measurable here)" if not_measurable else ""))
    unmeasured = {rid: _unmeasured_reason(rid, targets, run_checks) for rid, v in status.items() if v == UNMEASURED}
    overridden = {row.requirement_id: sorted({_override_label(e) for t in row.targets for v in t["measured"]
                                              for e in (v.overridden or ())})
                  for row in rows if status[row.requirement_id] == OVERRIDDEN}
    return {"line": line, "measured": measured, "total": len(status), "counts": counts, "status": status,
            "unmeasured": unmeasured, "not_measurable": not_measurable, "overridden": overridden, "partial": partial,
            "settings": settings_changed(run_checks)}


def settings_changed(run_checks: Sequence[RunCheck]) -> list[dict]:
    """Every setting the harness changed for these runs (each run folder's ``overrides.json``, issue 19): one row
    per (key, drill value, documents' value, source) with the requirement IDs it bears on and the scenarios that ran
    with it. Shape: ``[{"key", "drill", "document", "source", "requirement_ids": [str], "scenarios": [str]}]``."""
    from scenarios import overrides as overrides_mod

    rows: dict[tuple, dict] = {}
    for rc in run_checks:
        for e in overrides_mod.load(Path(rc.run_dir)):
            k = (e.get("key"), repr(e.get("drill")), repr(e.get("document")), e.get("source"))
            row = rows.setdefault(k, {"key": e.get("key"), "drill": overrides_mod._show(e.get("drill")),
                                      "document": overrides_mod._show(e.get("document")),
                                      "source": e.get("source") or "", "requirement_ids": [], "scenarios": []})
            row["requirement_ids"] = list(dict.fromkeys([*row["requirement_ids"], *(e.get("requirement_ids") or ())]))
            if rc.scenario not in row["scenarios"]:
                row["scenarios"].append(rc.scenario)
    return sorted(rows.values(), key=lambda r: (r["key"], r["source"]))


def summary_markdown(cov: dict, title: str, generated: str, n_runs: int) -> str:
    """``summary.md``: the coverage line first, then the unmeasured IDs with their reasons."""
    lines = [f"**{cov['line']}**", "", f"# {title}", "", f"generated {generated}, {n_runs} run(s)", ""]
    if cov["unmeasured"]:
        lines += ["## Unmeasured requirement IDs", ""]
        lines += [f"- {rid}: {why}" for rid, why in cov["unmeasured"].items()]
        lines.append("")
    if cov.get("partial"):
        lines += ["## Partly measured requirement IDs (their verdict covers only the measured targets)", ""]
        for rid, missing in cov["partial"].items():
            lines.append(f"- {rid}: " + "; ".join(_partial_text(m) for m in missing))
        lines.append("")
    if cov.get("overridden"):
        lines += ["## Overridden requirement IDs (the drill's value, the documents')", ""]
        lines += [f"- {rid}: {'; '.join(labels) or 'see report.html'}" for rid, labels in cov["overridden"].items()]
        lines.append("")
    if cov.get("settings"):
        lines += ["## Settings changed for these runs", "",
                  "| key | drill value | documents' value | source | requirement IDs | scenarios |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['key']} | {r['drill']} | {r['document']} | {r['source']} | "
                  f"{', '.join(r['requirement_ids']) or 'none'} | {', '.join(r['scenarios'])} |" for r in cov["settings"]]
        lines.append("")
    if cov["not_measurable"]:
        lines += ["## Not measurable here (targets.toml)", ""]
        lines += [f"- {rid}: {why}" for rid, why in cov["not_measurable"].items()]
        lines.append("")
    return "\n".join(lines)


def _report_dict(run_checks, verdicts, rows, targets, generated, title, cov=None) -> dict:
    cov = cov or coverage(rows, targets, run_checks)
    return _jsonable({
        "summary": cov["line"],
        "title": title, "generated": generated, "targets_file": str(targets_mod.TARGETS_PATH),
        "coverage": cov,
        "totals": {"requirements": cov["counts"], "measured": cov["measured"], "requirement_ids": cov["total"],
                   "scenario_requirements": _counts([v.verdict for v in verdicts]),
                   "runs": len(run_checks),
                   "invalid_runs": sum(not rc.run_validity.valid for rc in run_checks)},
        "requirements": [{**asdict(r), "status": cov["status"][r.requirement_id],
                          "unmeasured_reason": cov["unmeasured"].get(r.requirement_id),
                          "not_measurable": cov["not_measurable"].get(r.requirement_id),
                          "targets": [{**t, "measured": _with_read(t["measured"])}
                                      for t in r.targets]} for r in rows],
        "verdicts": _with_read(verdicts),
        "contradictions": [asdict(c) for c in targets.contradictions.values()],
        "runs": [rc.to_dict() for rc in run_checks],
    })


def _with_read(verdicts: Sequence[RequirementVerdict]) -> list[dict]:
    """verdicts_to_dict with each verdict's ``read`` (:func:`read_values`) where one was set."""
    return [{**d, "read": getattr(v, "read", "")} for v, d in zip(verdicts, verdicts_to_dict(verdicts))]


# -- junit -----------------------------------------------------------------------------------------------------
def write_junit(run_checks: Sequence[RunCheck], verdicts: Sequence[RequirementVerdict], path: Path) -> Path:
    """One testsuite per scenario, one testcase per scenario x requirement; a failure carries the evidence."""
    suites = ET.Element("testsuites", name="tradedrill")
    by_scenario: dict[str, dict[str, list[RequirementVerdict]]] = {}
    for v in verdicts:
        by_scenario.setdefault(v.scenario, {}).setdefault(v.requirement_id, []).append(v)
    for rc in run_checks:  # a scenario whose checkers judged nothing still shows up
        by_scenario.setdefault(rc.scenario, {})
    total = failures = skipped = errors = 0
    for scenario in sorted(by_scenario):
        reqs = by_scenario[scenario]
        suite = ET.SubElement(suites, "testsuite", name=scenario)
        s_fail = s_skip = 0
        for rid in sorted(reqs, key=targets_mod.requirement_sort_key):
            vs = reqs[rid]
            case = ET.SubElement(suite, "testcase", classname=f"drill.{scenario}", name=rid)
            lines = [_verdict_line(v) for v in vs]
            if any(v.verdict == FAIL for v in vs):
                s_fail += 1
                failed = [v for v in vs if v.verdict == FAIL]
                el = ET.SubElement(case, "failure", message="; ".join(_verdict_line(v) for v in failed),
                                   type="TargetMissed")
                el.text = "\n".join(lines + ["", "evidence:"] + _evidence_lines(run_checks, scenario, rid))
            elif all(v.verdict == UNMEASURED for v in vs):
                s_skip += 1
                ET.SubElement(case, "skipped", message="; ".join(lines) or "not measured")
            elif any(v.verdict == OVERRIDDEN or v.overridden for v in vs if v.verdict != UNMEASURED):
                # judged under a setting the harness changed (issue 19): not a pass of the design
                s_skip += 1
                ET.SubElement(case, "skipped", message="overridden: " + "; ".join(
                    _verdict_line(v) for v in vs if v.verdict == OVERRIDDEN or v.overridden))
            ET.SubElement(case, "system-out").text = "\n".join(lines)
        s_err = 0
        for rc in run_checks:  # a run that cannot be judged is an error, never a silent pass
            if rc.scenario == scenario and not rc.run_validity.valid:
                s_err += 1
                case = ET.SubElement(suite, "testcase", classname=f"drill.{scenario}",
                                     name=f"run {rc.repeat} (seed {rc.seed})")
                ET.SubElement(case, "error", type="InvalidRun",
                              message="; ".join(rc.run_validity.reasons)).text = rc.run_dir
        suite.set("tests", str(len(reqs) + s_err))
        suite.set("failures", str(s_fail))
        suite.set("skipped", str(s_skip))
        suite.set("errors", str(s_err))
        total, failures, skipped, errors = total + len(reqs) + s_err, failures + s_fail, skipped + s_skip, errors + s_err
    suites.set("errors", str(errors))
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    suites.set("skipped", str(skipped))
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path


_fmt_num = fmt_num


def _verdict_line(v: RequirementVerdict) -> str:
    d = v.distribution
    measured = (f"n={d.n} min={_fmt_num(d.min)} median={_fmt_num(d.median)} p95={_fmt_num(d.p95)} "
                f"max={_fmt_num(d.max)}")
    if v.lower_bounds:
        measured += f" (+{v.lower_bounds} run(s) never recovered)"
    if v.in_part:
        measured += f"; in part: {len(v.in_part)} part(s) not measured ({shorten('; '.join(v.in_part))})"
    if v.overridden:
        from scenarios.overrides import label

        measured += "; overridden: " + ", ".join(label(e) for e in v.overridden)
    return f"{v.requirement_id} {v.target_label} [{v.source}]: {v.verdict.upper()} ({measured})"


def _evidence_lines(run_checks: Sequence[RunCheck], scenario: str, rid: str) -> list[str]:
    lines = []
    for rc in run_checks:
        if rc.scenario != scenario:
            continue
        for r in rc.results:
            if rid not in r.requirement_ids or not any(j.verdict == FAIL for j in r.judgements
                                                         if j.requirement_id == rid):
                continue
            lines.append(f"- {rc.run_dir} (repeat {rc.repeat}, seed {rc.seed}) {r.checker}: {r.summary}")
            for e in r.evidence[:20]:
                lines.append(f"    {json.dumps(_jsonable(e), default=str)}")
            if len(r.evidence) > 20:
                lines.append(f"    ... {len(r.evidence) - 20} more in report.json")
    return lines


# -- plots -----------------------------------------------------------------------------------------------------
def timeline_figure(rc: RunCheck) -> go.Figure:
    """Latency per operation (by outcome) over a throughput bar chart, fault windows shaded, RTO bounds marked."""
    tl = rc.timeline
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.06,
                        subplot_titles=("operation latency (ms) by invoke time", "completions per second"))
    for outcome, colour in _OUTCOME_COLOURS.items():
        pts = [p for p in tl.points if p["outcome"] == outcome]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p["t"] for p in pts], y=[p["latency_ms"] if p["latency_ms"] is not None else 0 for p in pts],
            mode="markers", name=outcome, marker={"color": colour, "size": 5},
            text=[f"op {p['op']} {p['f']} {p['key']} ({p['process']})" for p in pts],
            hovertemplate="%{text}<br>t=%{x:.3f} s<br>%{y:.1f} ms<extra>" + outcome + "</extra>"), row=1, col=1)
    xs = [b["t"] for b in tl.bins]
    for outcome, colour in _OUTCOME_COLOURS.items():
        fig.add_trace(go.Bar(x=xs, y=[b[outcome] for b in tl.bins], name=f"{outcome}/bin", marker_color=colour,
                             showlegend=False, hovertemplate="%{y} " + outcome + " at %{x} s<extra></extra>"),
                      row=2, col=1)
    end = tl.metrics.get("duration_s") or 0.0
    styles = report_styles()
    for w in tl.fault_windows:
        x1 = w["end"] if w["end"] is not None else end
        style = styles.get(w["fault"], {"label": w["fault"], "color": "#c62828"})
        fig.add_vrect(x0=w["start"], x1=max(x1, w["start"] + 1e-3), row="all", col=1,
                      fillcolor=_fill(style["color"]), line_width=0, layer="below")
        fig.add_annotation(x=w["start"], y=0.99, yref="paper", text=style["label"], showarrow=False,
                           xanchor="left", yanchor="top", font={"size": 11, "color": style["color"]})
    for r in rc.results:
        if isinstance(r, RtoResult):
            for m in r.measurements:
                if m.first_ok_after:
                    x = m.first_ok_after["complete_mono"] - tl.t0
                    fig.add_vline(x=x, line_dash="dash", line_color="#2e7d32", row="all", col=1)
                    fig.add_annotation(x=x, y=0.9, yref="paper", text=f"first ok: RTO {m.rto_s:.3f} s",
                                       showarrow=False, xanchor="left", font={"size": 11, "color": "#2e7d32"})
                if m.last_ok_before:
                    x = m.last_ok_before["complete_mono"] - tl.t0
                    fig.add_vline(x=x, line_dash="dot", line_color="#555", row="all", col=1)
    fig.update_layout(height=520, margin={"l": 60, "r": 20, "t": 50, "b": 40}, barmode="stack",
                      legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                      template="plotly_white")
    fig.update_xaxes(title_text="seconds since the run started", row=2, col=1)
    fig.update_yaxes(title_text="ms", row=1, col=1)
    fig.update_yaxes(title_text="ops", row=2, col=1)
    return fig


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, default_height="520px",
                       config={"displaylogo": False, "responsive": True})


# -- html ------------------------------------------------------------------------------------------------------
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt_num
    env.filters["tojson_compact"] = lambda o: json.dumps(_jsonable(o), default=str)
    env.filters["val"] = targets_mod._fmt
    env.filters["override"] = _override_label
    return env


def _override_label(entry: dict) -> str:
    from scenarios.overrides import label

    return label(entry)


def _load_summary(run_dir) -> dict | None:
    from scenarios.load import read_summary

    return None if run_dir is None else read_summary(run_dir)


def load_plot(rc: RunCheck) -> dict | None:
    """The run's locust load (issue 16) with its fault windows, one inline SVG (``scenarios.load.load_view``)."""
    from scenarios.load import load_view

    styles = report_styles()
    windows = [{**w, "label": styles.get(w["fault"], {}).get("label", w["fault"])} for w in rc.timeline.fault_windows]
    return load_view(rc.run_dir, rc.timeline.t0, windows, rc.timeline.metrics.get("duration_s"))


def _ran_workloads(rcs, definition) -> list[dict]:
    """The workloads the runs of one scenario ran with (their scenario.json: --rate/--duration/--settle applied),
    each once; the registry's when a run recorded none."""
    seen: dict[str, dict] = {}
    for rc in rcs:
        try:
            doc = json.loads((Path(rc.run_dir) / "scenario.json").read_text())
            workload = doc.get("workload") if isinstance(doc, dict) else None
        except (OSError, ValueError):
            workload = None
        if isinstance(workload, dict) and workload:
            seen.setdefault(json.dumps(workload, sort_keys=True), workload)
    if not seen and definition is not None:
        return [asdict(definition.workload)]
    return list(seen.values())


def render_html(run_checks, verdicts, rows, targets, generated, title, benchmarks: dict | None = None,
                verification: dict | None = None, cov: dict | None = None) -> str:
    from reports.verification import section_view

    by_scenario: dict[str, list[RunCheck]] = {}
    for rc in run_checks:
        by_scenario.setdefault(rc.scenario, []).append(rc)
    scenarios = []
    for i, (name, rcs) in enumerate(sorted(by_scenario.items())):
        definition = registry.get(name)
        runs = []
        for k, rc in enumerate(sorted(rcs, key=lambda r: (r.repeat if r.repeat is not None else 0, r.run_dir))):
            runs.append({"rc": rc, "anchor": f"run-{i}-{k}",
                         "plot": _figure_html(timeline_figure(rc), f"plot-{i}-{k}"),
                         "panel": panel_view(rc.run_dir), "load": load_plot(rc),
                         "rto": [r for r in rc.results if isinstance(r, RtoResult)],
                         "others": [r for r in rc.results if not isinstance(r, RtoResult)]})
        scenarios.append({"name": name, "anchor": f"scenario-{name}", "definition": definition, "runs": runs,
                          "workloads": _ran_workloads(rcs, definition),
                          "verdicts": [v for v in verdicts if v.scenario == name]})
    template = _env().get_template("report.html.j2")
    return template.render(
        title=title, generated=generated, rows=rows, scenarios=scenarios, verdicts=verdicts,
        contradictions=list(targets.contradictions.values()),
        totals=(cov := cov or coverage(rows, targets, run_checks))["counts"], cov=cov, n_runs=len(run_checks),
        plotlyjs=plotly.offline.get_plotlyjs(), targets_file=str(targets_mod.TARGETS_PATH),
        bench=benchmarks if benchmarks is not None else load_benchmarks(None),
        verification=verification if verification is not None else section_view())


def panel_view(run_dir: str | os.PathLike | None) -> dict | None:
    """The run's panel screenshot (``scenarios.panelshot``) for the report: ``{"captured", "src"`` (a data: URI,
    so the report stays one file), ``"served_by", "reason"}``; None when the run took none (no panel user)."""
    import base64

    from scenarios import panelshot

    if run_dir is None:
        return None
    record = panelshot.load(run_dir)
    if record is None:
        return None
    view = {"captured": bool(record.get("captured")), "src": None, "served_by": record.get("served_by"),
            "pushed_connections": record.get("pushed_connections"),
            "reason": record.get("reason") or ("" if record.get("captured") else "not recorded")}
    if view["captured"]:
        try:
            data = (Path(run_dir) / panelshot.PNG).read_bytes()
            view["src"] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        except OSError as exc:
            view.update(captured=False, reason=f"{panelshot.PNG} cannot be read ({exc.strerror or exc})")
    return view


# -- benchmarks (benchmarks/bench_engine.py, benchmarks/bench_rto.py) -----------------------------------------------
def load_benchmarks(bench_dir: str | os.PathLike | None) -> dict:
    """``engine.json`` and ``rto.json`` of ``bench_dir`` (None: nothing measured) and the rows the report shows.
    A file that is absent is "not measured"; one that cannot be read is named in ``problems``, never fatal."""
    out: dict[str, Any] = {"dir": None if bench_dir is None else str(bench_dir), "engine": None, "rto": None,
                           "problems": [], "engine_view": None, "rto_view": None}
    if bench_dir is None:
        return out
    for key, name, view in (("engine", BENCH_ENGINE, _engine_view), ("rto", BENCH_RTO, _rto_view)):
        path = Path(bench_dir) / name
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            out[f"{key}_view"] = view(doc)
            out[key] = doc
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            out["problems"].append(f"{path}: cannot be read ({type(exc).__name__}: {exc})")
    return out


def _g(d: Any, *path: str) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _when(doc: dict) -> str:
    host = doc.get("host") or {}
    loads = [x for x in (host.get("load_average_start"), host.get("load_average_end")) if x]
    load = " -> ".join("/".join(_fmt_num(v) for v in x) if isinstance(x, list) else _fmt_num(x) for x in loads)
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    code = (f" of commit {source['commit']}" + (" with local changes" if source.get("local_changes") else "")
            if source.get("commit") else "")
    return (f"measured {doc.get('measured_at') or '?'}{code}"
            + (f" on {host['cpus']} CPUs" if host.get("cpus") else "")
            + (f"; load average (1/5/15 min) {load}" if load else ""))


def _engine_view(doc: dict) -> dict:
    floors = doc.get("floors") or {}
    fos, frt = floors.get("order_send") or {}, floors.get("redis_stream_round_trip") or {}
    rows = []
    for kind, items in (("fixed", doc.get("rates") or []), ("step", _g(doc, "sustained", "steps") or [])):
        for r in items:
            rows.append({"kind": kind, "offered": r.get("offered_per_s"), "results_per_s": r.get("results_per_s"),
                         "p50": r.get("p50_ms"), "p99": r.get("p99_ms"), "max": r.get("max_ms"),
                         "backlog": r.get("backlog_at_end"), "drain": r.get("drain_s"),
                         "duplicates": r.get("duplicate_orders"), "lost": r.get("lost"),
                         "holds": r.get("holds"), "load": r.get("load_average_1m")})
    return {"when": _when(doc), "rows": rows,
            "floor_os": {"p50": fos.get("p50_ms"), "p99": fos.get("p99_ms"), "rate": fos.get("orders_per_second")},
            "floor_tick": {"p50": _g(floors, "tick_and_order_send", "p50_ms"),
                           "p99": _g(floors, "tick_and_order_send", "p99_ms")},
            "floor_rt": {"p50": frt.get("p50_ms"), "p99": frt.get("p99_ms")},
            "floor_commit": {"p50": _g(floors, "journal_commit", "p50_ms"), "p99": _g(floors, "journal_commit", "p99_ms")},
            "floor_durable": {"p50": floors.get("durable_sum_p50_ms"), "p99": floors.get("durable_sum_p99_ms")},
            "profile": _profile_view(doc.get("profile_summary")),
            "floor_load": floors.get("load_average_1m"),
            "highest": _g(doc, "sustained", "highest_sustained_per_s"),
            "criterion": _g(doc, "sustained", "criterion") or "",
            "stopped_at": _g(doc, "sustained", "stopped_at_per_s"),
            "targets": [t for t in (doc.get("targets") or []) if isinstance(t, dict)],
            "profiled": doc.get("profiled_note") if doc.get("profiled") else None}


def _profile_view(summary: Any) -> dict | None:
    """The busy-sample shares of a profiled bench run (``bench_engine.summarise_profile``), or None."""
    if not isinstance(summary, dict) or not summary.get("samples"):
        return None
    rows = [(str(name), share) for name, share in (summary.get("total") or [])
            if isinstance(share, (int, float))][:12]
    return {"samples": summary.get("samples"), "rows": rows}


def _rto_view(doc: dict) -> dict:
    rows = []
    for c in doc.get("cases") or []:
        d = c.get("rto_s") or {}
        loads = [x for x in (c.get("load_average_1m") or []) if isinstance(x, (int, float))]
        rows.append({"name": c.get("name"), "n": c.get("n"), "runs": c.get("runs"), "valid": c.get("valid_runs"),
                     "not_recovered": c.get("not_recovered"), "min": d.get("min"), "median": d.get("median"),
                     "p95": d.get("p95"), "max": d.get("max"), "target": _g(c, "target", "label") or "-",
                     "target_source": _g(c, "target", "source") or "", "floor": c.get("detection_floor_s"),
                     "floor_what": c.get("detection_floor") or "", "duplicates": c.get("duplicates"),
                     "lost": c.get("lost"), "load": (f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-"),
                     "issue_targets": [t for t in (c.get("issue_targets") or []) if isinstance(t, dict)]})
    return {"when": _when(doc), "rows": rows, "complete": doc.get("complete", True),
            "runs_per_case": doc.get("runs_per_case"), "workload": doc.get("workload") or {}}
