"""The report's verification section (issue 16): the broken-engine catch rate (``catch_rate.json`` of the variant
sweep) and the soak's figures (``soak.json`` of ``tradedrill soak``), as ``verification.md`` and
``verification.html`` in the same folder. Each input is optional: a missing one is said, not guessed."""
from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path

from scenarios.verdicts import fmt_num


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def catch_rate_lines(doc: dict | None) -> list[str]:
    if not doc:
        return ["No variant sweep yet (`nox -s variants`)."]
    rate = doc.get("catch_rate")
    of = doc.get("of_variants")
    lines = [f"Catch rate: **{doc['caught']} of {doc['total']}** broken engines"
             + (f" ({rate * 100:.0f} %)" if rate is not None else "")
             + (f"; {of - doc['total']} of the {of} variants not measured in this sweep" if of and of > doc["total"]
                else ""), ""]
    bounds = doc.get("bounds")
    if bounds:
        most = f" and at most {bounds['max_examples']} examples" if bounds.get("max_examples") else ""
        lines += [f"Bounds a variant: profile `{bounds['profile']}`{most}, no example starts after {bounds['search_s']:g} s "
                  f"of search; the failure minimised by replay in at most {bounds['minimise_trials']} replays / "
                  f"{bounds['minimise_s']:g} s; the aim is a schedule of at most 5 steps."
                  + _other_bounds(doc.get("other_bounds") or {}), ""]
    lines += ["A stateful example runs a background load (signals `<example tag>-L<n>`, e.g. `x01502730-L1`) beside its steps, so a symptom may "
              "name a load signal rather than one the schedule submits: the shrunk schedule is then what makes the "
              "bug show (the fault, and the moment the steps give it), and replay reproduces it with the same load. "
              "The control replays the schedule on the reference engine.", "",
              "| variant | bug | caught by | symptom | shrunk schedule | replay | seconds |",
              "|---|---|---|---|---|---|---|"]
    for r in doc.get("variants", []):
        symptom = "; ".join(f"{s['checker']}: {s['summary']}" for s in r.get("symptoms") or [])[:300] or "-"
        steps = r.get("schedule")
        schedule = (f"{len(steps)} step(s): " + ", ".join(
            s["op"] + (f" {s.get('fault') or s.get('kind') or ''}".rstrip())
            + (f" +{s['signal']}" if s["op"] == "inject" and s.get("signal") else "") for s in steps)) if steps else "-"
        mini = r.get("minimise")
        if steps and mini:
            schedule += f" (from {mini['from_steps']} in {mini['trials']} replay(s), {mini['seconds']:g} s)"
        rep = r.get("replay")
        rep_text = "-" if not rep else ("reproduced" if rep["reproduced"] else f"not reproduced ({rep['found']})")
        control = r.get("control")
        if control:   # the same schedule on the reference engine
            rep_text += ("; the reference engine fails it too: " + "; ".join(control["found"])[:200]
                         if control["reference_failed"] else "; the reference engine passes it")
        lib = r.get("library")
        if lib and r.get("caught_by"):   # a library drill: its settings, and the reference engine as its control
            settings = ", ".join(f"{k} {v}" for k, v in sorted(lib.get("settings", {}).items())) or "its own"
            failed = lib.get("control", {}).get("failed") or []
            rep_text = (f"drill settings: {settings}; the reference engine on the same drill and seed passes "
                        + ("every checker named" if not failed else f"those (it fails {', '.join(failed)} too)"))
        if r.get("unreproduced") and not r.get("caught_by"):
            symptom = "not reproduced by replay (a flaky failure): " + "; ".join(
                f"{s['checker']}: {s['summary']}" for s in r["unreproduced"])[:250]
        if r.get("not_attributable") and not r.get("caught_by"):
            symptom = "not the variant's (the reference fails the same way): " + "; ".join(
                f"{s['checker']}: {s['summary']}" for s in r["not_attributable"])[:250]
        lines.append(f"| {r['variant']} | {r['bug']} | {r.get('caught_by') or '**missed**'} | {symptom} | "
                     f"{schedule} | {rep_text} | {r.get('seconds', '-')} |")
    return lines


def _other_bounds(other: dict) -> str:
    """The rows an earlier piece of the sweep measured with other bounds (``None``: recorded before rows kept
    their own)."""
    if not other:
        return ""
    parts = [(f"{v} ({b['search_s']:g} s of search" + (f", at most {b['max_examples']} examples" if b.get("max_examples")
                                                       else "") + ")") if b else f"{v} (bounds not recorded)"
             for v, b in other.items()]
    return " Measured with other bounds: " + ", ".join(parts) + "."


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def soak_verdict_line(summary: dict, where: str = "listed below") -> str:
    """The soak's verdict as one line, the same in ``soak.md`` and on the console: ``verdict: passed``, ``verdict:
    passed (what was measured passed); not measured: 7 items (listed below)``, ``verdict: passed under load only
    (...)`` or ``verdict: **failed**: <why>; ...``. What was not measured is counted here and listed by ``where``
    (each item neither passed nor failed: it never counts as a pass of that item)."""
    s = summary
    unmeasured = s.get("unmeasured") or []
    if s.get("passed"):
        # a soak without a fault passed its load only: never a plain "passed" (scenarios.soak.verdict_word)
        text = s.get("verdict") or ("passed" if s.get("faults_injected") else
                                    "passed under load only (fault recovery unmeasured: no fault injected)")
        if unmeasured and text == "passed":
            text = "passed (what was measured passed)"
    else:
        text = "**failed**: " + "; ".join(s.get("failed_because") or ["-"])
    if unmeasured:
        text += f"; not measured: {len(unmeasured)} item{'s' if len(unmeasured) != 1 else ''} ({where})"
    return "verdict: " + text


def recovery_line(by_fault: dict[str, dict]) -> str:
    """``summary["recovery_by_fault"]`` of a soak (``scenarios.soak.recovery_figures``) as one markdown line."""
    parts = []
    for fault, r in by_fault.items():
        if r.get("recovered"):
            text = (f"{fault} {r['recovered']} of {r['n']}: median {fmt_num(r['rto_median_s'])} s, p95 "
                    f"{fmt_num(r['rto_p95_s'])} s, max {fmt_num(r['rto_max_s'])} s")
        else:
            text = f"{fault} 0 of {r['n']} recovered"
        if r.get("unrecovered_observed_max_s") is not None:
            text += f" (no trade after {r['n'] - r['recovered']}: waited up to {fmt_num(r['unrecovered_observed_max_s'])} s)"
        parts.append(text)
    return ("- recovery after each fault (the first acknowledged trade invoked after the injection; reported, not "
            "judged: the next fault may come first): " + "; ".join(parts))


def soak_lines(doc: dict | None) -> list[str]:
    """The soak's figures (``soak.json`` of ``scenarios.soak``) as markdown lines: verdict (``soak_verdict_line``),
    signals, faults by kind, duplicates, lost, what was not measured (one line each), the harness's own fds, threads
    and children before the stack and after its teardown (the leak check), per process RSS slope (MB/min) and its
    bound, fds at the first and last sample while the stack ran, what was left after the teardown."""
    if not doc:
        return ["No soak yet (`nox -s soak`)."]
    s = doc["summary"]
    faults = ", ".join(f"{k} x{v}" for k, v in s["fault_counts"].items()) or "none"
    leaked = s.get("harness_leaked") or {}
    # soak.json before the fds were named apart: harness_before/harness_after, fds_first/fds_last
    before = s.get("harness_before_stack") or s.get("harness_before") or {}
    after = s.get("harness_after_teardown") or s.get("harness_after") or {}
    b = s.get("bounds") or {}
    lines = [f"{s['minutes']:g} min at {s['rate_per_s']:g} signals/s, a seeded fault every {s['every_s']:g} s "
             f"(seed {s['seed']})", "", soak_verdict_line(s), "",
             f"- signals sent: {s.get('signals')}; acknowledged: {s['acknowledged']}; duplicates: "
             f"**{s['duplicate_orders']}**; lost acknowledged: **{s['lost_signals']}**; RTS mismatches: "
             f"{s['state_mismatches']}",
             (f"- faults injected: {s['faults_injected']} of {s['faults_scheduled']} ({faults})"
              if s.get("faults_injected") else
              f"- faults injected: **no fault injected** (0 of {s.get('faults_scheduled')}; "
              f"{s.get('no_fault_reason') or 'none in the fault log'}): fault recovery unmeasured"),
             *([recovery_line(s["recovery_by_fault"])] if s.get("recovery_by_fault") else []),
             *([f"- recovery after each fault not computed: {s['recovery_not_computed']}"]
               if s.get("recovery_not_computed") else []),
             *[f"- not measured (neither passed nor failed): {u}" for u in s.get("unmeasured") or []],
             *([f"- settings changed for the soak: " + "; ".join(
                 f"{e['key']} = {e['value']} (documents: {e['default']})" for e in s["engine_settings"])
                + " (scenarios.soak.SOAK_ENGINE_SETTINGS says why)"] if s.get("engine_settings") else []),
             *([f"- prices changed for the soak: every signal carries a stop loss and a take profit "
                f"{s['price_settings'].get('stop_points')} points from the live price, on brokers whose symbols walk "
                f"{s['price_settings'].get('sigma_points')} points a tick, so positions close (scenarios.soak "
                f"SOAK_STOP_POINTS says why)"] if s.get("price_settings") else []),
             *([f"- sockets held after their peer closed them (a finding, not a leak: bounded pools): "
                + "; ".join(f"{k}: {v}" for k, v in s["sockets_held"].items())] if s.get("sockets_held") else []),
             *([f"- other checkers' findings (not the soak's verdict): "
                + "; ".join(f"{k}: {v}" for k, v in s["findings"].items())] if s.get("findings") else []),
             f"- stack processes alive: {s['processes_before']} at the start of the load, {s['processes_after']} at "
             f"its end, **{s['processes_left_after_teardown']}** after the teardown",
             f"- the harness's own leak check, before the stack started -> after its teardown: fds "
             f"{before.get('fds')} -> {after.get('fds')}, threads "
             f"{before.get('threads')} -> {after.get('threads')}, child processes {len(before.get('children', []))}"
             f" -> {len(after.get('children', []))} (leaked: fds {leaked.get('fds')}, threads {leaked.get('threads')}"
             f", children {len(leaked.get('children') or [])})",
             f"- flat: RSS slope (within each steady segment: {b.get('warmup_s', '?')} s after a start, a "
             f"thread-pool growth or an engine's takeover left out; a takeover loads the account's orders by design, "
             f"so a leak per takeover shows only in the restart baselines) at most {b.get('rss_flat_mb_per_min', '?')} MB/min, plus one allocator step "
             f"({b.get('rss_step_mb', '?')} MB) over the steady span, above what the process keeps by design (Redis: {b.get('redis_rss_per_data', 1)}x its used_memory slope; a broker: "
             f"{b.get('broker_bytes_per_deal', '?')} B a deal"
             + (f"; an engine: {b['engine_bytes_per_signal']} B a signal traded (its broker traces)"
                if b.get("engine_bytes_per_signal") else "")
             + f"); non-socket fds rising at most "
             f"{b.get('fds_flat_per_min', '?')} a minute plus one fd over the span; sockets in CLOSE_WAIT over "
             f"{b.get('close_wait_persist_s', '?')} s are reported as held",
             "- fds at first / last sample: each process's open fds at its first and last sample while the stack "
             "ran (the harness's include its connections to the stack; its leak check is the line above)", "",
             "| process | RSS first MB | RSS last MB | slope MB/min | bound MB/min | RSS | fds at first sample | "
             "fds at last sample | non-socket fds/min | CLOSE_WAIT s | fds | restarts | takeovers |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    restarts = [(name, p["restart_baselines"]) for name, p in sorted(doc.get("processes", {}).items())
                if (p.get("restart_baselines") or {}).get("slope_mb_per_min") is not None]
    if restarts:
        procs = doc.get("processes", {})
        judged = bool(b.get("baseline_min_span_s"))

        def baseline(name, r):
            p = procs.get(name) or {}
            text = (f"{name} {len(r['baselines_mb'])} starts, {r['baselines_mb'][0]:.1f} -> "
                    f"{r['baselines_mb'][-1]:.1f} MB ({r['slope_mb_per_min']:+.3f} MB/min")
            if p.get("restart_verdict"):
                return text + f" against at most {p['restart_bound_mb_per_min']:.3f}: {p['restart_verdict']})"
            return text + (", not judged: fewer than 3 starts over "
                           f"{b['baseline_min_span_s']:g} s)" if judged else ")")
        how = (f"judged like a slope when a process started 3 times or more over {b['baseline_min_span_s']:g} s "
               "or more" if judged else "reported, not judged")
        lines[-3:-3] = [f"- RSS a process starts from, across its restarts (median {b.get('warmup_s', '?')}-"
                        f"{(b.get('warmup_s') or 0) + 20:g} s after each start; {how}): " + "; ".join(
                            baseline(name, r) for name, r in restarts)]
    for name, p in sorted(doc.get("processes", {}).items()):
        lines.append(f"| {name} | {_num(p['rss_first_mb'], '.1f')} | {_num(p['rss_last_mb'], '.1f')} | "
                     f"{_num(p['rss_slope_mb_per_min'], '+.3f')} | {_num(p.get('rss_bound_mb_per_min'), '.3f')} | "
                     f"{p.get('rss_verdict', '-')} | {p.get('fds_first_sample', p.get('fds_first'))} | "
                     f"{p.get('fds_last_sample', p.get('fds_last'))} | "
                     f"{_num(p.get('other_fds_slope_per_min'), '+.2f')} | {_num(p.get('close_wait_max_s'), '.0f')} | "
                     f"{p.get('fds_verdict', '-')} | {p['pids'] - 1} | {p.get('takeovers', '-')} |")
    return lines


def write_section(folder: Path | str, soak_json: Path | str | None = None) -> Path:
    """``verification.md`` and ``verification.html`` in ``folder`` from its ``catch_rate.json`` and the soak's
    ``soak.json`` (``soak_json``, else ``folder/soak.json``). Returns the markdown path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    soak = _load(Path(soak_json) if soak_json else folder / "soak.json")
    lines = ["# Verification power (issue 16)", "", "## Broken engines", "", *catch_rate_lines(
        _load(folder / "catch_rate.json")), "", "## Soak", "", *soak_lines(soak), ""]
    md = folder / "verification.md"
    md.write_text("\n".join(lines))
    body = "\n".join(f"<p>{html.escape(line)}</p>" if not line.startswith("|") else
                     "<pre>" + html.escape(line) + "</pre>" for line in lines if line)
    (folder / "verification.html").write_text(f"<!doctype html><meta charset=utf-8><title>verification</title>{body}")
    return md


# -- the section of the main report (reports.build) ----------------------------------------------------------------
# where `nox -s variants` and `nox -s soak` (`bash run.sh soak`) write: the repository's out/, whatever the current
# folder (a new user's `tradedrill check RUN --report X` showed the catch rate from the clone and not the soak, and
# the other way round from the folder above, for the same files)
REPO_OUT = Path(__file__).resolve().parents[1] / "out"
CATCH_RATE_JSON = REPO_OUT / "verification" / "catch_rate.json"
SOAK_JSON = REPO_OUT / "soak" / "soak.json"


def _lines_html(lines: list[str]) -> str:
    """The markdown lines above as HTML: ``|`` rows as one table, ``- `` items as a list, the rest as paragraphs."""
    import re

    def inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    out: list[str] = []
    rows = [line for line in lines if line.startswith("|") and not set(line) <= set("|-")]
    if rows:
        head, *body = rows
        cells = lambda row: [c.strip() for c in row.strip("|").split("|")]   # noqa: E731
        out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells(head)) + "</tr></thead><tbody>"
                   + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells(r)) + "</tr>" for r in body)
                   + "</tbody></table>")
    items = [line[2:] for line in lines if line.startswith("- ")]
    if items:
        out.insert(0, "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
    for line in reversed([line for line in lines if line and not line.startswith(("|", "- "))]):
        out.insert(0, f"<p>{inline(line)}</p>")
    return "\n".join(out)


def section_view(catch_rate_json: Path | str | None = None, soak_json: Path | str | None = None) -> dict:
    """The verification section of ``report.html``: ``{"catch_rate": {"measured", "html", "doc"}, "soak": ...}``
    from ``catch_rate_json`` (default the repository's ``out/verification/catch_rate.json``) and ``soak_json``
    (default the repository's ``out/soak/soak.json``), each headed by the file it was read from and when that was
    written; a part whose file is missing or unreadable is ``measured: False`` ("not measured")."""
    view: dict = {}
    for key, path, lines_of in (("catch_rate", catch_rate_json or CATCH_RATE_JSON, catch_rate_lines),
                                ("soak", soak_json or SOAK_JSON, soak_lines)):
        doc = _load(Path(path))
        try:
            body = _lines_html(lines_of(doc)) if doc else ""
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            doc, body = None, f"<p class=\"fail\">{html.escape(str(path))} cannot be read ({type(exc).__name__})</p>"
        if doc:   # which file, of when: a figure without its source and age is not evidence
            try:
                when = _dt.datetime.fromtimestamp(Path(path).stat().st_mtime, _dt.timezone.utc)
                stamp = when.isoformat(timespec="seconds")
            except OSError:
                stamp = "?"
            body = f"<p class=\"source\">from <code>{html.escape(str(path))}</code>, written {stamp}</p>" + body
        view[key] = {"measured": bool(doc), "html": body, "path": str(path),
                     "figure": (doc or {}).get("catch_rate") if key == "catch_rate" else None}
    return view
