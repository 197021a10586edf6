"""The verdicts of the same drills on two providers, side by side (issue 17: "the verdicts agree").

    python -m tradedrill.providers.compare out/drills-docker/local out/drills-docker/docker \
        --out out/drills-docker/verdicts.json

Each argument is a drill's output folder (every ``report.json`` under it is read; for a scenario and seed run
more than once the newest report counts) or one ``report.json``. Runs are matched by scenario and seed (a drill's
``--seed`` replays the workload and the fault schedule on either provider); for every matched run the file holds,
per provider, whether the run could be judged (``valid``), each checker's verdict (``true``/``false``/``null`` =
unmeasured), the faults the provider skipped, and whether the two agree. Measured values (an RTO, a count) are
carried for reading, never compared. A checker whose verdicts differ only through a timing target (a judgement in
s or ms failed on one side, every count target passed on both) is named in ``timing_only``: containers are not
loopback, and a bridge adds latency; ``agree`` stays false for it, ``agree_except_timing`` says whether anything
else differs.

For every timing-only difference the file gives both figures beside the target (``timing_figures``: metric,
comparator, target, unit, and per provider the measured value and verdict), and, with ``--path-bench`` (the
default out/bench/docker_path.json when it exists: ``benchmarks/bench_docker_path.py``), what the network path
itself costs on each provider, so a reader can tell a provider's path from the machine's scheduling tail. Issue 17's
finding (seed 17, udp-loss): tick_fallback_s (EA-2, < 1 ms, the worst of ~60 TCP-served ticks) 1.239 ms on docker,
0.681 ms locally, while the p50 was 0.101 vs 0.121 ms and the path bench measured the bridge no slower than loopback
(p50 0.019 vs 0.029 ms, p99 0.088 vs 0.261 ms; frames over 1 ms: 3 vs 20 of 3000). Not a property of the bridge: a
scheduling tail of this 2-core machine that both providers cross.

A timing difference is not counted against ``agree`` only when it lies wholly on targets the documents contradict
(each differing judgement names a ``[[contradictions]]`` entry of scenarios/targets.toml, and the alternative
targets of the same requirement get the same verdicts on both providers): the 1 ms above is ``tick-fallback-1ms``
(a UDP loss is only observable after a tick is overdue), so whichever side of 1 ms the worst tick lands on says
nothing about the provider; EA-2's 50 and 100 ms targets must still agree. Such a checker is listed in
``on_contradiction`` with both figures; every other difference, timing or not, makes ``agree`` false (exit 1).

Output shape (JSON)::

    {"providers": ["local", "docker"], "agree": bool, "agree_except_timing": bool, "matched": int,
     "unmatched": [{"scenario", "seed", "only_in"}],
     "path_bench": {"loopback": {"p50_ms", "p99_ms", "max_ms", "over_1ms", "n"}, "bridge": {...}} | null,
     "runs": [{"scenario": str, "seed": int, "agree": bool, "differences": [str], "timing_only": [str],
               "on_contradiction": [str],
               "timing_figures": [{"checker", "metric", "comparator", "target", "unit", "contradictions": [str],
                                   "alternatives_agree": bool,
                                   "<provider>": {"measured": float|None, "verdict": str}}],
               "local": {"valid": bool|None, "checkers": {"<checker> <REQ,...>": bool|None}, "skipped_faults": [...],
                         "metrics": {...}},
               "docker": {...}}]}

Errors: a folder without a report is a one-line ``CompareError``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# the measured value each checker is known by, carried beside the verdict (not compared)
KEY_METRICS = ("rto_s", "lost_signals", "duplicates", "lost_acknowledged", "concurrent_active_engines")


class CompareError(ValueError):
    pass


TIME_UNITS = ("s", "ms")


def find_reports(path: Path | str) -> list[Path]:
    """``[path]`` if it is a file, else every ``report.json`` under it, oldest first (by modification time)."""
    path = Path(path)
    if path.is_file():
        return [path]
    found = sorted(path.rglob("report.json"), key=lambda p: p.stat().st_mtime) if path.is_dir() else []
    if not found:
        raise CompareError(f"no report.json under {path}: run the drill first")
    return found


def load(path: Path | str) -> dict:
    """The runs of every report under ``path`` as one report (``{"runs": [...]}``; a later run of the same scenario
    and seed replaces an earlier one). Raises CompareError for a file that is not a report."""
    runs: dict[tuple, dict] = {}
    for p in find_reports(path):
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise CompareError(f"{p} is not a readable report.json ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
            raise CompareError(f"{p} is not a drill report (no runs list)")
        for i, run in enumerate(doc["runs"]):
            problem = run_problem(run)
            if problem:
                raise CompareError(f"{p}: runs[{i}]: {problem}")
            runs[(run.get("scenario"), run.get("seed"))] = run
    return {"runs": list(runs.values())}


def run_problem(run: Any) -> str | None:
    """What makes ``run`` not a report's run (None when it is one): the fields compared must have their types."""
    if not isinstance(run, dict):
        return "not an object"
    if not isinstance(run.get("scenario"), str) or isinstance(run.get("seed"), bool) \
            or not isinstance(run.get("seed"), int):
        return "scenario (a string) and seed (an integer) are required"
    shapes = (("results", list), ("run_validity", dict), ("provider", (dict, str)))
    for key, kind in shapes:
        if key in run and run[key] is not None and not isinstance(run[key], kind):
            return f"{key} has the wrong type ({type(run[key]).__name__})"
    for j, result in enumerate(run.get("results") or []):
        if not isinstance(result, dict):
            return f"results[{j}] is not an object"
        for key, kind in (("requirement_ids", list), ("metrics", dict), ("judgements", (list, str))):
            if result.get(key) is not None and not isinstance(result[key], kind):
                return f"results[{j}].{key} has the wrong type ({type(result[key]).__name__})"
        if not all(isinstance(r, str) for r in result.get("requirement_ids") or []):
            return f"results[{j}].requirement_ids must be strings"
    prov = run.get("provider")
    skipped = prov.get("skipped_faults") if isinstance(prov, dict) else None
    if skipped is not None and not (isinstance(skipped, list) and all(isinstance(x, dict) for x in skipped)):
        return "provider.skipped_faults must be a list of objects"
    return None


def _checker_key(result: dict) -> str:
    return f"{result.get('checker')} {','.join(result.get('requirement_ids') or [])}".strip()


def _provider_of(run: dict) -> str:
    prov = run.get("provider")
    return prov.get("provider", "local") if isinstance(prov, dict) else (prov or "local")


def summarise(run: dict) -> dict:
    """One run of a report as compared: ``valid``, ``checkers`` (key -> verdict), ``skipped_faults``, ``metrics``."""
    checkers: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    failed_units: dict[str, list[str]] = {}
    timing: dict[str, list[dict]] = {}
    for result in run.get("results") or []:
        key = _checker_key(result)
        checkers[key] = result.get("valid")
        judgements = result.get("judgements") if isinstance(result.get("judgements"), list) else []
        timing[key] = [{**{k: j.get(k) for k in ("metric", "comparator", "target", "unit", "measured", "verdict")},
                        "contradictions": list(j.get("contradictions") or []),
                        "alternatives": [a.get("verdict") for a in j.get("alternatives") or [] if isinstance(a, dict)]}
                       for j in judgements if isinstance(j, dict) and j.get("unit") in TIME_UNITS]
        failed_units[key] = sorted({str(j.get("unit")) for j in judgements
                                    if isinstance(j, dict) and j.get("verdict") == "fail"})
        for name, value in (result.get("metrics") or {}).items():
            if name in KEY_METRICS and isinstance(value, (int, float)):
                metrics[f"{result.get('checker')}.{name}"] = value
    prov = run.get("provider") if isinstance(run.get("provider"), dict) else {}
    return {"provider": _provider_of(run), "run_dir": run.get("run_dir"),
            "valid": (run.get("run_validity") or {}).get("valid"), "checkers": checkers,
            "skipped_faults": [f"{s.get('fault')} on {s.get('target')}" for s in prov.get("skipped_faults") or []],
            "metrics": metrics, "failed_units": failed_units, "timing": timing}


def timing_only(a: dict, b: dict, key: str) -> bool:
    """Whether checker ``key`` differs between runs ``a`` and ``b`` only through timing targets: the side that
    failed failed nothing but judgements in s or ms."""
    units = (a["failed_units"].get(key) or []) + (b["failed_units"].get(key) or [])
    return bool(units) and all(u in TIME_UNITS for u in units)


def timing_figures(a: dict, b: dict, key: str) -> list[dict]:
    """Both providers' figures of checker ``key``'s time judgements whose verdicts differ: metric, comparator,
    target, unit and, per provider, ``{"measured", "verdict"}``."""
    out = []
    def ident(j: dict) -> tuple[str, str]:   # a target may be a list (a back-off schedule)
        return str(j.get("metric")), json.dumps(j.get("target"), sort_keys=True, default=str)

    theirs = {ident(j): j for j in b.get("timing", {}).get(key) or []}
    for j in a.get("timing", {}).get(key) or []:
        k = theirs.get(ident(j))
        if k is None or k.get("verdict") == j.get("verdict"):
            continue
        out.append({"checker": key, **{f: j.get(f) for f in ("metric", "comparator", "target", "unit")},
                    "contradictions": sorted(set(j.get("contradictions") or []) & set(k.get("contradictions") or [])),
                    "alternatives_agree": (j.get("alternatives") or []) == (k.get("alternatives") or []),
                    a["provider"]: {"measured": j.get("measured"), "verdict": j.get("verdict")},
                    b["provider"]: {"measured": k.get("measured"), "verdict": k.get("verdict")}})
    return out


def on_contradiction(figures: list[dict]) -> bool:
    """Whether a checker's timing difference lies wholly on targets the documents contradict: every differing
    judgement names a ``[[contradictions]]`` entry of scenarios/targets.toml (a promise that cannot be judged as made,
    e.g. ``tick-fallback-1ms``) and its alternative targets' verdicts agree on both providers."""
    return bool(figures) and all(f["contradictions"] and f["alternatives_agree"] for f in figures)


def compare_runs(a: dict, b: dict) -> list[str]:
    """The differences of verdict between two summarised runs (empty when they agree)."""
    out = []
    if a["valid"] != b["valid"]:
        out.append(f"run validity: {a['provider']} {a['valid']}, {b['provider']} {b['valid']}")
    for key in sorted(set(a["checkers"]) | set(b["checkers"])):
        va, vb = a["checkers"].get(key, "absent"), b["checkers"].get(key, "absent")
        if va != vb:
            out.append(f"{key}: {a['provider']} {_say(va)}, {b['provider']} {_say(vb)}")
    if a["skipped_faults"] != b["skipped_faults"]:
        out.append(f"skipped faults: {a['provider']} {a['skipped_faults'] or 'none'}, "
                   f"{b['provider']} {b['skipped_faults'] or 'none'}")
    return out


def _say(v: Any) -> str:
    return {True: "pass", False: "fail", None: "unmeasured"}.get(v, str(v)) if not isinstance(v, str) else v


def compare(first: dict, second: dict) -> dict:
    """Two reports (parsed report.json) compared run by run (see the module docstring for the shape)."""
    def index(report: dict) -> dict[tuple[str, int], dict]:
        return {(r.get("scenario"), r.get("seed")): summarise(r) for r in report.get("runs") or []}

    ia, ib = index(first), index(second)
    pa = next((v["provider"] for v in ia.values()), "first")
    pb = next((v["provider"] for v in ib.values()), "second")
    runs, unmatched = [], []
    for key in sorted(set(ia) | set(ib), key=lambda k: (str(k[0]), k[1] or 0)):
        if key not in ia or key not in ib:
            unmatched.append({"scenario": key[0], "seed": key[1], "only_in": pa if key in ia else pb})
            continue
        a, b = ia[key], ib[key]
        diffs = compare_runs(a, b)
        timing = [k for k in sorted(set(a["checkers"]) & set(b["checkers"]))
                  if a["checkers"][k] != b["checkers"][k] and timing_only(a, b, k)]
        others = [d for d in diffs if not any(d.startswith(f"{k}:") for k in timing)]
        contradicted = [k for k in timing if on_contradiction(timing_figures(a, b, k))]
        counted = [d for d in diffs if not any(d.startswith(f"{k}:") for k in contradicted)]
        runs.append({"scenario": key[0], "seed": key[1], "agree": not counted, "differences": diffs,
                     "timing_only": timing, "timing_figures": [f for k in timing for f in timing_figures(a, b, k)],
                     "on_contradiction": contradicted, "agree_except_timing": not others, pa: a, pb: b})
    complete = bool(runs) and not unmatched
    return {"providers": [pa, pb], "agree": complete and all(r["agree"] for r in runs),
            "agree_except_timing": complete and all(r["agree_except_timing"] for r in runs),
            "matched": len(runs), "unmatched": unmatched, "runs": runs}


def render(doc: dict) -> str:
    """A few lines for the console: one per matched run, then what differs."""
    pa, pb = doc["providers"]
    said = "all agree" if doc["agree"] else \
        "they differ only in timing targets" if doc["agree_except_timing"] else "they differ"
    lines = [f"verdicts {pa} vs {pb}: {doc['matched']} run(s) matched, {said}"]
    for r in doc["runs"]:
        a, b = r[pa], r[pb]
        passed = lambda s: sum(1 for v in s["checkers"].values() if v is True)  # noqa: E731
        lines.append(f"  {r['scenario']} seed {r['seed']}: {'agree' if r['agree'] else 'DIFFER'} "
                     f"({pa}: valid {a['valid']}, {passed(a)}/{len(a['checkers'])} checks pass; "
                     f"{pb}: valid {b['valid']}, {passed(b)}/{len(b['checkers'])} checks pass)")
        lines += [f"    {d}" + (" (a target the documents contradict: shown, not counted)"
                                 if any(d.startswith(f"{k}:") for k in r.get("on_contradiction") or []) else
                                 " (a timing target)" if any(d.startswith(f"{k}:") for k in r["timing_only"]) else "")
                  for d in r["differences"]]
        for f in r.get("timing_figures") or []:
            lines.append(f"      {f['metric']} {f['comparator']} {f['target']} {f['unit']}: "
                         f"{pa} {_fig(f[pa]['measured'], f['unit'])} ({f[pa]['verdict']}), "
                         f"{pb} {_fig(f[pb]['measured'], f['unit'])} ({f[pb]['verdict']})"
                         + (f"; contradiction {', '.join(f['contradictions'])}, alternatives "
                            f"{'agree' if f['alternatives_agree'] else 'differ'}" if f.get("contradictions") else ""))
    lines += [f"  unmatched: {u['scenario']} seed {u['seed']} only in {u['only_in']}" for u in doc["unmatched"]]
    paths = doc.get("path_bench") or {}
    if any(r.get("timing_figures") for r in doc["runs"]) and paths:
        lines.append("  the network path alone (benchmarks/bench_docker_path.py, one-way TCP frame): " + "; ".join(
            f"{name} p50 {p.get('p50_ms')} ms, p99 {p.get('p99_ms')} ms, max {p.get('max_ms')} ms, "
            f"{p.get('over_1ms')} of {p.get('n')} over 1 ms" for name, p in sorted(paths.items())))
    return "\n".join(lines)


def _fig(value: Any, unit: str) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "unmeasured"
    return f"{value * 1000:.3g} ms" if unit == "s" and abs(value) < 1 else f"{value:.4g} {unit}"


def path_bench(path: Path | None) -> dict | None:
    """The ``paths`` of a bench_docker_path result (None when absent or unreadable: nothing is claimed)."""
    try:
        doc = json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):
        return None
    paths = doc.get("paths") if isinstance(doc, dict) else None
    return {k: v for k, v in paths.items() if isinstance(v, dict)} if isinstance(paths, dict) else None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every matched run agrees, 1 when some differ, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m tradedrill.providers.compare", description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="a drill's output folder or report.json (e.g. the local one)")
    parser.add_argument("second", type=Path, help="the other provider's")
    parser.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")
    parser.add_argument("--path-bench", type=Path, default=Path("out/bench/docker_path.json"),
                        help="benchmarks/bench_docker_path.py's result, shown beside timing differences")
    args = parser.parse_args(argv)
    try:
        reports = [load(p) for p in (args.first, args.second)]
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    doc = compare(*reports)
    doc["path_bench"] = path_bench(args.path_bench)
    doc["reports"] = [[str(p) for p in find_reports(x)] for x in (args.first, args.second)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=str))
    print(render(doc))
    if args.out:
        print(f"written to {args.out}")
    return 0 if doc["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
