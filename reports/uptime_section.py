"""The report's "Cadences and uptime" section (issue 19 parts 2 and 3).

- Cadences: every heartbeat, retry and health-check interval of the documents, pooled over the drill's runs into one
  distribution (n, min, median, p95, max) from the checkers that timed them (``scenarios.cadences``; the ones measured
  by older checkers show each run's worst interval), with the target of ``targets.toml`` and the verdict over the
  runs; a cadence no run measured says ``unmeasured`` and why.
- Uptime: the failure-rate model of ``targets.toml`` ``[uptime]`` (every rate and its source printed) applied to the
  RTOs the runs measured per failure kind (``scenarios.uptime``): uptime at the median and at the p95 RTO, per
  component and in all, and the sensitivity (the failures a year 99.9 % allows at the measured RTO).

``attach(out_dir, run_checks)`` is the one call ``reports.build.build_report`` makes: it writes ``uptime.json`` and
``uptime.md``, adds ``cadences`` and ``uptime`` to ``report.json`` and the section to ``report.html`` (before
``</body>``). A missing or damaged report file is left alone and said in the returned dict's ``problems``.
"""
from __future__ import annotations

import html
import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from scenarios import cadences as cad
from scenarios import targets as targets_mod
from scenarios import uptime as up
from scenarios.distributions import combine
from scenarios.verdicts import UNMEASURED, fmt_num, percentile

SECTION_ID = "cadences-uptime"
UPTIME_JSON, UPTIME_MD = "uptime.json", "uptime.md"
# cadences older checkers measure: the checker and the metric of its results that holds each run's worst interval
OLDER = {"tcp_reconnect": "tcp_reconnect_interval_s", "clickhouse_history": "sync_retry_interval_s",
         "store_health": "health_check_interval_s"}


def _pool(values: Sequence[float]) -> dict:
    xs = sorted(values)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": xs[0], "median": statistics.median(xs), "p95": percentile(xs, 95), "max": xs[-1]}


def r_unmeasured(values, worst, steps) -> bool:
    return not values and not worst and not steps


def cadence_rows(run_checks: Sequence[Any], targets: targets_mod.Targets | None = None) -> list[dict]:
    """One row per (requirement, cadence metric) of :data:`scenarios.cadences.CADENCES`: pooled intervals, the
    verdicts of every run that judged it, the reasons of those that could not."""
    targets = targets or targets_mod.load()
    rows = []
    for rid, metric, checker, events in cad.CADENCES:
        values: list[float] = []
        worst_per_run: list[float] = []
        verdicts, reasons, scenarios = [], set(), set()
        steps: dict[str, list[float]] = {}
        overridden: dict[str, str] = {}
        for rc in run_checks:
            if not rc.run_validity.valid:
                continue
            for r in rc.results:
                if r.checker != checker:
                    continue
                js = [j for j in r.judgements if j.requirement_id == rid and j.metric == metric]
                if not js:
                    continue
                scenarios.add(rc.scenario)
                for j in js:
                    verdicts.append(j.verdict)
                    for o in getattr(j, "overridden", None) or []:
                        overridden[o.get("key")] = f"{o.get('key')} {o.get('drill')} (documents: {o.get('document')})"
                    if j.verdict == UNMEASURED and j.reason:
                        reasons.add(j.reason)
                dist_values = next((e.get("values") or {} for e in r.evidence if isinstance(e, dict)
                                    and e.get("kind") == "distribution"), {})
                pooled = dist_values.get(metric)
                for key, vals in dist_values.items():   # a schedule (ORD-1): one pool per step
                    if key.startswith(metric + "["):
                        steps.setdefault(key[len(metric):], []).extend(vals)
                if pooled is not None:
                    values += pooled
                elif checker in OLDER and isinstance(r.metrics.get(OLDER[checker]), (int, float)):
                    worst_per_run.append(float(r.metrics[OLDER[checker]]))
        t = targets.target(rid, metric)
        rows.append({"requirement_id": rid, "metric": metric, "checker": checker, "events": events,
                     "target": t.label if t else "-", "source": t.source if t else "",
                     "scenarios": sorted(scenarios), "verdict": combine(verdicts) if verdicts else UNMEASURED,
                     "distribution": _pool(values) if values else _pool(worst_per_run),
                     "pooled": bool(values) or bool(steps), "overridden": sorted(overridden.values()),
                     "steps": {k: _pool(v) for k, v in sorted(steps.items(), key=lambda kv: int(kv[0].strip("[]")))},
                     "reasons": sorted(reasons)[:3] if r_unmeasured(values, worst_per_run, steps) else []})
    return rows


def section(run_checks: Sequence[Any], targets: targets_mod.Targets | None = None) -> dict:
    """``{"cadences": rows, "uptime": table}`` for the runs that can be judged."""
    runs = [rc.run_dir for rc in run_checks if rc.run_validity.valid]
    try:
        table = up.run_figures(runs)
    except up.UptimeError as exc:
        table = {"kinds": [], "components": [], "total": None, "problems": [str(exc)]}
    return {"cadences": cadence_rows(run_checks, targets), "uptime": table}


def _pct(x: Any) -> str:
    return "-" if x is None else f"{x:.6f} %"


def markdown(doc: dict) -> str:
    lines = ["## Cadences (measured from the components' own lines)", "",
             "| requirement | cadence | target | scenarios | n | min | median | p95 | max | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["cadences"]:
        d = r["distribution"]
        verdict = r["verdict"] + ("" if r["pooled"] or d["n"] == 0 else " (each run's worst only)")
        if r["overridden"]:
            verdict += " (overridden: the drill ran " + "; ".join(r["overridden"]) + ")"
        if r["steps"]:
            verdict += "; steps (median of n): " + ", ".join(f"{k} {fmt_num(v.get('median'))} s ({v['n']})"
                                                             for k, v in r["steps"].items())
        if d["n"] == 0 and not r["steps"] and r["verdict"] == UNMEASURED:
            verdict = "unmeasured: " + ("; ".join(x.removeprefix("unmeasured: ") for x in r["reasons"])
                                        or "no scenario of these runs times it")
        lines.append(f"| {r['requirement_id']} | {r['metric']} ({r['events']}) | {r['target']} | "
                     f"{', '.join(r['scenarios']) or '-'} | {d['n']} | {fmt_num(d.get('min'))} | "
                     f"{fmt_num(d.get('median'))} | {fmt_num(d.get('p95'))} | {fmt_num(d.get('max'))} | {verdict} |")
    u = doc["uptime"]
    tot = u.get("total")
    lines += ["", "## Uptime from measured recovery", ""]
    if tot is None:
        lines.append("not computed: " + "; ".join(u.get("problems") or []))
        return "\n".join(lines) + "\n"
    lines += [f"Target {tot['target_percent']} % ({tot['target_source']}): a budget of {tot['budget_s']:.0f} s "
              f"({tot['budget_s'] / 3600:.2f} h) of downtime a year. {tot['note']}", "",
              f"**Uptime at the median RTOs: {_pct(tot['uptime_median_percent'])}; at the p95 RTOs: "
              f"{_pct(tot['uptime_p95_percent'])}** over {tot['kinds_measured']} of {tot['kinds']} failure kinds "
              + (f"(not measured in these runs: {', '.join(tot['unmeasured_kinds'])}; their downtime is unknown, not "
               f"zero, so the uptime is an upper bound and EA-5 is partly measured)." if tot['unmeasured_kinds']
               else "(every failure kind of the model measured)."), "",
              *([f"Counted once, at the longer downtime, because they are one event seen by two components: "
                 + "; ".join(" and ".join(g) for g in tot["same_event"]) + ".", ""] if tot.get("same_event") else []),
              "An RTO close to the time the drill held its fault (inject to heal) is that fault's own duration, not a "
              "recovery time: such a kind's downtime rests on how long the fault lasts in the field, which no document "
              "gives.", "",
              "| failure kind | component | failures a year (source) | runs | n | fault held (median) | RTO median | "
              "RTO p95 | RTO max | downtime a year (median / p95) | failures a year 99.9 % allows (median / p95) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in u["kinds"]:
        if not k["measured"]:
            lines.append(f"| {k['kind']} | {k['component']} | {fmt_num(k['per_year'])} ({k['source']}) | 0 | 0 | "
                         f"- | unmeasured: no run injected {k['fault']} on {k['node'] or 'any node'} with {k['f']} "
                         f"timed | | | | |")
            continue
        lb = f" ({k['lower_bounds']} never recovered: lower bounds)" if k["lower_bounds"] else ""
        lines.append(f"| {k['kind']} | {k['component']} | {fmt_num(k['per_year'])} ({k['source']}) | {k['runs']} | "
                     f"{k['n']}{lb} | {fmt_num(k.get('fault_held_median_s'))} s | {fmt_num(k['rto_median_s'])} s | "
                     f"{fmt_num(k['rto_p95_s'])} s | "
                     f"{fmt_num(k['rto_max_s'])} s | {fmt_num(k['downtime_median_s'])} / "
                     f"{fmt_num(k['downtime_p95_s'])} s | {fmt_num(k['allowed_median'])} / "
                     f"{fmt_num(k['allowed_p95'])} |")
    lines += ["", "| component (EA-HA 6) | kinds measured | uptime (median RTO) | uptime (p95 RTO) |",
              "|---|---|---|---|"]
    for c in u["components"]:
        lines.append(f"| {c['component']} | {', '.join(c['kinds_measured']) or 'none'} | "
                     f"{_pct(c['uptime_median_percent'])} | {_pct(c['uptime_p95_percent'])} |")
    if u.get("problems"):
        lines += ["", "Run folders not read: " + "; ".join(u["problems"])]
    return "\n".join(lines) + "\n"


def to_html(doc: dict) -> str:
    """The section as HTML (tables from the markdown's rows, every cell escaped)."""
    out = [f'<h2 id="{SECTION_ID}">Cadences and uptime (issue 19)</h2>']
    table: list[list[str]] = []

    def flush():
        if table:
            head, body = table[0], table[2:]
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                           for row in body) + "</tbody></table>")
            table.clear()
    for line in markdown(doc).splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h3>{html.escape(line[3:])}</h3>")
        elif line.strip():
            out.append("<p>" + html.escape(line).replace("**", "") + "</p>")
    flush()
    return "\n".join(out)


def attach(out_dir: str | Path, run_checks: Sequence[Any], targets: targets_mod.Targets | None = None) -> dict:
    """Compute the section for ``run_checks`` and add it to the report files in ``out_dir`` (see the module doc).
    Returns the section's data with ``problems`` (report files that could not be updated)."""
    out = Path(out_dir)
    doc = section(run_checks, targets)
    problems = []
    (out / UPTIME_JSON).write_text(json.dumps(doc, indent=2, default=str))
    (out / UPTIME_MD).write_text(markdown(doc))
    report_json = out / "report.json"
    try:
        report = json.loads(report_json.read_text())
        report.update(cadences=doc["cadences"], uptime=doc["uptime"])
        report_json.write_text(json.dumps(report, indent=2, default=str))
    except (OSError, ValueError) as exc:
        problems.append(f"{report_json}: {exc}")
    report_html = out / "report.html"
    try:
        text = report_html.read_text(encoding="utf-8")
        part = to_html(doc)
        text = text.replace("</body>", part + "\n</body>", 1) if "</body>" in text else text + part
        report_html.write_text(text, encoding="utf-8")
    except OSError as exc:
        problems.append(f"{report_html}: {exc}")
    return {**doc, "problems": problems}
