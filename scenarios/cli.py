"""``tradedrill drill | scenarios | check``: run fault drills, list the scenario library, judge a saved run.

``check`` needs no stack: it re-runs the checkers on run directories a drill wrote. ``drill`` hands the scenario names to
``scenarios.runner.run_drills(names, DrillOptions(seed, repeat, out_dir, progress))`` (imported only when a drill
runs), which writes one run directory per scenario x repeat (layout: ``scenarios.history``), judges them and builds
the report; it returns {"root", "report", "runs", "checks", "passed", "seed"}.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from scenarios import registry

_STYLE = {"pass": "green", "fail": "bold red", "unmeasured": "dim"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(120, Console().width))


@click.command("scenarios")
def scenarios() -> None:
    """List the scenarios a drill can run, with the requirements each measures."""
    table = Table(title="tradedrill scenarios", show_lines=True)
    for col in ("name", "requirements", "faults", "checkers", "description"):
        table.add_column(col, overflow="fold")
    for s in registry.all_scenarios():
        faults = "\n".join(f"{f.fault} on {f.target} at {f.at_s:g} s"
                           + (f", healed after {f.heal_after_s:g} s" if f.heal_after_s is not None else "")
                           for f in s.faults)
        checks = "\n".join(f"{c.checker} ({', '.join(c.requirement_ids)})" for c in s.checkers)
        table.add_row(s.name, ", ".join(s.requirement_ids), faults, checks, s.description)
    _console().print(table)


def _print_verdicts(console: Console, verdicts) -> None:
    from scenarios.checkers import _jsonable  # noqa: F401 - keeps import cost inside the command
    table = Table(title="requirements against targets (worst case over repeats)")
    for col in ("scenario", "requirement", "target", "source", "n", "min", "median", "p95", "max", "verdict",
                "alternatives"):
        table.add_column(col, overflow="fold")
    from reports.build import _fmt_num
    for v in verdicts:
        d = v.distribution
        n = str(d.n) + (f" (+{v.lower_bounds} not recovered)" if v.lower_bounds else "")
        alts = "; ".join(f"{a['value']} ({a['source']}): {a['verdict']}" for a in v.alternatives)
        table.add_row(v.scenario, v.requirement_id, v.target_label, v.source, n, _fmt_num(d.min),
                      _fmt_num(d.median), _fmt_num(d.p95), _fmt_num(d.max),
                      f"[{_STYLE[v.verdict]}]{v.verdict}[/]", alts)
    console.print(table)


def _print_evidence(console: Console, run_checks) -> None:
    for rc in run_checks:
        for r in rc.results:
            if r.valid is False:
                console.print(f"[red]✗[/] {rc.run_dir} [bold]{r.checker}[/] "
                              f"({', '.join(r.requirement_ids)}): {r.summary}")
                for e in r.evidence[:5]:
                    console.print(f"    {_evidence_line(r.checker, e)}", markup=False)
                if len(r.evidence) > 5:
                    console.print(f"    ... {len(r.evidence) - 5} more (see report.json)")


def _evidence_line(checker: str, e: dict) -> str:
    if checker == "rto":
        t0 = e["inject_mono"]
        before, after = e.get("last_ok_before"), e.get("first_ok_after")
        parts = [f"{e['fault_id']} ({e['description']}) injected"]
        parts.append(f"last ok before: op {before['op']} at {before['complete_mono'] - t0:+.3f} s" if before
                     else "no ok before")
        parts.append(f"first ok after: op {after['op']} {after['key']} at {after['complete_mono'] - t0:+.3f} s"
                     if after else (e.get("note") or "no ok after"))
        parts.append(f"{e['failed_in_window']} fail / {e['unknown_in_window']} unknown in between")
        return "; ".join(parts)
    return str(e)


@click.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Also write report.html, report.json and junit.xml into this folder.")
def check(run_dir: Path, report_dir: Path | None) -> None:
    """Judge a saved run directory (or a folder of them) without the stack; exit 1 when a target is missed."""
    from scenarios.distributions import summarize
    from scenarios.history import RunDir
    from scenarios.checkers import check_run

    console = _console()
    if not run_dir.exists():
        raise click.ClickException(f"{run_dir} does not exist; pass the folder a drill wrote (it holds "
                                   f"history.jsonl), or a folder of such folders")
    runs = RunDir.find(run_dir)
    if not runs:
        raise click.ClickException(f"no run directory under {run_dir}: expected history.jsonl or scenario.json")
    try:
        run_checks = [check_run(r) for r in runs]
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    verdicts = summarize(run_checks)
    console.print(f"checked {len(run_checks)} run(s) under {run_dir}")
    _print_verdicts(console, verdicts)
    _print_evidence(console, run_checks)
    if report_dir is not None:
        from reports import build_report
        path = build_report(run_checks, report_dir)
        console.print(f"report: {path}")
    failed = [v for v in verdicts if v.verdict == "fail"]
    if failed:
        console.print(f"[bold red]{len(failed)} target(s) missed[/]")
        sys.exit(1)
    console.print("[green]no target missed[/]")


@click.command("drill")
@click.argument("scenario_names", metavar="SCENARIO...", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every scenario of `tradedrill scenarios`.")
@click.option("--repeat", "-n", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per scenario; the report shows the distribution.")
@click.option("--seed", type=int, default=None, help="Seed that replays the workload and fault schedule "
                                                     "(default: a fresh one, printed).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/drills"), show_default=True,
              help="Folder for run directories and the report.")
@click.option("--subnet", default="127.0.0", show_default=True, help="Loopback /24 for the drill's nodes.")
@click.option("--duration", type=float, default=None, help="Seconds of load per run (default: the scenario's).")
@click.option("--settle", type=float, default=None, help="Seconds to let outcomes settle after the load.")
def drill(scenario_names: tuple[str, ...], run_all: bool, repeat: int, seed: int | None, out_dir: Path,
          subnet: str, duration: float | None, settle: float | None) -> None:
    """Run fault drills against the local stack, then write the RTO report; exit 1 when a target is missed."""
    if run_all:
        scenario_names = tuple(s.name for s in registry.all_scenarios())
    if not scenario_names:
        raise click.UsageError("name at least one scenario (see `tradedrill scenarios`), or pass --all")
    unknown = [n for n in scenario_names if registry.get(n) is None]
    if unknown:
        known = ", ".join(s.name for s in registry.all_scenarios())
        raise click.ClickException(f"unknown scenario {', '.join(unknown)}; known: {known} "
                                   f"(see `tradedrill scenarios`)")
    try:
        from scenarios.runner import DrillOptions, run_drills
    except ImportError as exc:
        raise click.ClickException(f"the drill runner is not available ({exc}); saved runs can still be judged "
                                   f"with `tradedrill check RUN_DIR`") from None
    from scenarios.distributions import summarize
    from reports.build import collect_run_checks

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task("drills", total=len(scenario_names) * repeat)
    opts = DrillOptions(seed=seed, repeat=repeat, out_dir=out_dir, subnet=subnet, duration_s=duration,
                        settle_s=settle, progress=lambda m: progress.console.print(m, markup=False),
                        on_run_done=lambda: progress.advance(task))
    try:
        with progress:
            result = run_drills(list(scenario_names), opts)
    except Exception as exc:  # the runner's own errors are sentences (DrillError, DeadlineExceeded)
        if type(exc).__name__ in ("DrillError", "DeadlineExceeded", "FaultError"):
            raise click.ClickException(str(exc)) from None
        raise
    run_checks = collect_run_checks(result)
    verdicts = summarize(run_checks)
    _print_verdicts(console, verdicts)
    _print_evidence(console, run_checks)
    report = result.get("report") if isinstance(result, dict) else None
    if report is None:
        from reports import build_report
        root = Path(result.get("root", out_dir)) if isinstance(result, dict) else out_dir
        report = build_report(run_checks, root)
    seed_used = result.get("seed", seed) if isinstance(result, dict) else seed
    console.print(f"seed {seed_used} (replay with --seed {seed_used}) · report: {report}")
    if any(v.verdict == "fail" for v in verdicts):
        sys.exit(1)
