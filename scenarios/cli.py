"""``tradedrill drill | scenarios | check``: run fault drills, list the scenario library, judge a saved run.

``drill`` is run -> check -> report: ``scenarios.runner.run_drills`` writes one run folder per scenario x repeat
(layout: ``scenarios.history``), ``scenarios.checkers.check_run`` judges each, ``reports.build_report`` writes the
report. ``check`` needs no stack: it re-runs the checkers on run folders a drill wrote.

Exit status of both: 0 every target met or unmeasured, 1 a target missed, 2 a run cannot be judged (interrupted,
empty history, a scheduled fault never injected) or the command could not run.
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from scenarios import registry

_STYLE = {"pass": "green", "fail": "bold red", "unmeasured": "dim", "overridden": "yellow"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=max(120, Console().width))


@click.command("scenarios")
def scenarios() -> None:
    """List the scenarios a drill can run, with the requirements each measures."""
    table = Table(title="tradedrill scenarios", show_lines=True)
    table.add_column("name", no_wrap=True)  # whole, so it can be copied into `tradedrill drill NAME`
    for col in ("requirements", "faults", "checkers", "description"):
        table.add_column(col, overflow="fold")
    for s in registry.all_scenarios():
        faults = "\n".join(f"{f.fault} on {f.target} at {f.at_s:g} s"
                           + (f", healed after {f.heal_after_s:g} s" if f.heal_after_s is not None else "")
                           for f in s.faults)
        checks = "\n".join(f"{c.checker} ({', '.join(c.requirement_ids)})" for c in s.checkers)
        table.add_row(s.name, ", ".join(s.requirement_ids), faults, checks, s.description)
    table.caption = "every drill also runs: " + "; ".join(f"{c.checker} ({', '.join(c.requirement_ids)})"
                                                          for c in registry.EVERY_RUN_CHECKERS)
    _console().print(table)


class CannotJudge(click.ClickException):
    """A one-line error with exit status 2: nothing could be judged, or a run is invalid."""

    exit_code = 2


class _OneLineUsage(click.Command):
    """Bad input to ``tradedrill drill`` is one line and exit 2, as for ``soak`` and ``replay``: a value click cannot
    convert, an unknown option, or options that do not go together, said with what to do (never click's usage
    block)."""

    def _one_line(self, exc: click.UsageError) -> CannotJudge:
        text = f"{exc.format_message().rstrip('.')}; see `tradedrill {self.name} --help`"
        return CannotJudge("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise self._one_line(exc) from None


def _override(entry: dict) -> str:
    from rich.markup import escape

    from scenarios.overrides import label

    return escape(label(entry))


def _print_verdicts(console: Console, verdicts) -> None:
    table = Table(title="requirements against targets (worst case over repeats)")
    for col in ("scenario", "requirement", "target", "source", "n", "min", "median", "p95", "max", "verdict",
                "alternatives"):
        table.add_column(col, overflow="fold")
    from scenarios.verdicts import fmt_num as _fmt_num
    for v in verdicts:
        d = v.distribution
        n = str(d.n) + (f" (+{v.lower_bounds} not recovered)" if v.lower_bounds else "")
        if not d.n and getattr(v, "read", ""):   # a text or yes/no setting: the value read and by how many runs
            n = v.read
        alts = "; ".join(f"{a['value']} ({a['source']}): {a['verdict']}" for a in v.alternatives)
        table.add_row(v.scenario, v.requirement_id, v.target_label, v.source, n, _fmt_num(d.min),
                      _fmt_num(d.median), _fmt_num(d.p95), _fmt_num(d.max),
                      f"[{_STYLE[v.verdict]}]{v.verdict}[/]"
                      + (" [yellow]overridden[/]: " + "; ".join(_override(e) for e in v.overridden)
                         if getattr(v, "overridden", None) else ""), alts)
    console.print(table)


def _print_evidence(console: Console, run_checks) -> None:
    for rc in run_checks:
        if not rc.run_validity.valid:
            continue  # its numbers prove nothing; _print_invalid says why
        for r in rc.results:
            if r.valid == "unknown":
                why = next((e.get("why") for e in r.evidence if e.get("kind") in ("unmeasured", "error")), None)
                if why:
                    console.print(f"  {rc.run_dir} {r.checker}: unmeasured: {why}", markup=False, soft_wrap=True)
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


def _print_invalid(console: Console, run_checks) -> list:
    invalid = [rc for rc in run_checks if not rc.run_validity.valid]
    for rc in invalid:
        console.print(f"[bold red]invalid run[/] {rc.run_dir}: " + "; ".join(rc.run_validity.reasons), soft_wrap=True)
    return invalid


def _judge(console: Console, run_checks, where: str, report_dir: Path | None) -> None:
    """Print the verdicts, write the report, and exit 2 (invalid run), 1 (target missed) or return."""
    from scenarios.distributions import summarize

    from reports.build import coverage
    from scenarios import targets as targets_mod
    from scenarios.distributions import requirement_table

    verdicts = summarize(run_checks)
    targets = targets_mod.load()
    from reports.build import read_values

    read_values(verdicts, run_checks)   # a text setting shows the value read, not "n 0" (a new user's finding)
    cov = coverage(requirement_table(verdicts, targets), targets, run_checks)
    console.print(cov["line"], markup=False, soft_wrap=True)   # the first line, as in the report (issue 19)
    console.print(f"checked {len(run_checks)} run(s) under {where}")
    _print_verdicts(console, verdicts)
    _print_evidence(console, run_checks)
    for rid, why in cov["unmeasured"].items():
        console.print(f"  unmeasured {rid}: {why}", markup=False, soft_wrap=True)
    for rid, missing in cov.get("partial", {}).items():
        console.print(f"  in part {rid}: " + "; ".join(f"{m['label']} {'measured in part' if m.get('in_part') else 'unmeasured'}: {m['reason']}" for m in missing),
                      markup=False, soft_wrap=True)
    invalid = _print_invalid(console, run_checks)
    if report_dir is not None:
        from reports import build_report
        try:
            path = build_report(run_checks, report_dir)
        except OSError as exc:
            raise CannotJudge(f"cannot write the report into {report_dir}: {exc.strerror or exc}; choose a "
                              f"writable folder with --report") from None
        console.print(f"report: {path}")
    if invalid:
        console.print(f"[bold red]{len(invalid)} run(s) cannot be judged[/]: their numbers prove nothing")
        sys.exit(2)
    if any(v.verdict == "fail" for v in verdicts):
        console.print(f"[bold red]{sum(v.verdict == 'fail' for v in verdicts)} target(s) missed[/]")
        sys.exit(1)
    measured = [v for v in verdicts if v.verdict == "pass"]
    console.print("[green]no target missed[/]" + ("" if measured else " (but nothing was measured)"))


def _folder_given(ctx, param, value):
    """An --out/--report given as "" was Path(""), the current folder: the run folders went into the clone's root (a
    new user's finding). Refused in one line, as soak and replay refuse it."""
    if value is not None and not str(value).strip():
        raise click.BadParameter("an empty path; pass a folder (or leave the option out for its default)")
    if value is not None:
        problem = path_problem(Path(value))
        if problem:
            raise click.BadParameter(problem)
    return None if value is None else Path(value)


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot name a folder to write into (a component over the file system's 255 bytes, ...), found
    before anything runs; None when it can (it may not exist yet). A new user's 300-character --out was a Python
    traceback (OSError 36) with exit 1, which these commands use for "target missed"."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        return f"{path if len(str(path)) < 120 else str(path)[:100] + '...'}: {exc.strerror or exc}; pass another folder"
    return None


@click.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--report", "report_dir", type=str, default=None, callback=_folder_given,
              help="Also write report.html, report.json and junit.xml into this folder.")
def check(run_dir: Path, report_dir: Path | None) -> None:
    """Judge a saved run directory (or a folder of them) without the stack; exit 1 when a target is missed,
    2 when a run cannot be judged."""
    from scenarios.checkers import check_run
    from scenarios.history import RunDir

    console = _console()
    if not run_dir.exists():
        raise CannotJudge(f"{run_dir} does not exist; pass the folder a drill wrote (it holds history.jsonl), or "
                          f"a folder of such folders")
    if not run_dir.is_dir():
        raise CannotJudge(f"{run_dir} is a file, not a run folder; pass the folder a drill wrote (it holds "
                          f"history.jsonl), or a folder of such folders")
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        # checked before judging: a new user read the whole results table, then "File exists"
        raise CannotJudge(f"--report {report_dir} is a file, not a folder; pass a folder for report.html, "
                          f"report.json and junit.xml")
    runs = RunDir.find(run_dir)
    if not runs:
        raise CannotJudge(f"no run under {run_dir}: a run folder holds scenario.json and history.jsonl; the drill "
                          f"that should have written them did not get that far")
    try:
        run_checks = [check_run(r) for r in runs]
    except (ValueError, OSError) as exc:
        raise CannotJudge(str(exc)) from None
    _judge(console, run_checks, str(run_dir), report_dir)


# drill profiles: the fewest runs per scenario (each with its own seed: seed, seed+1, ...). "thorough" is what a
# race needs to show up: a fault that lands on work in flight hits a different instant in every run.
PROFILES: dict[str, int] = {"standard": 3, "thorough": 20}


def runs_per_scenario(profile: str, repeat: int | None) -> int:
    """``--repeat`` if given, else the profile's; never fewer than the profile's minimum for ``thorough``."""
    least = PROFILES[profile]
    if repeat is None:
        return least
    return max(repeat, least) if profile == "thorough" else repeat


def _load_options(users: int | None, spawn_rate: float | None, load_mix: str | None):
    """The drill's locust load (``scenarios.load.LoadOptions``), or None without ``--users``."""
    from scenarios.load import LoadError, LoadOptions, parse_mix

    if users is None:
        if spawn_rate is not None or load_mix is not None:
            raise click.UsageError("--spawn-rate and --load-mix go with --users N (the number of locust users)")
        return None
    if spawn_rate is not None and spawn_rate != spawn_rate:   # NaN passes every range check
        raise click.BadParameter("must be a number, not nan", param_hint="--spawn-rate")
    try:
        return LoadOptions(users, spawn_rate if spawn_rate is not None else max(1.0, users / 10),
                           parse_mix(load_mix))
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint="--load-mix") from None


@click.command("drill", cls=_OneLineUsage)
@click.argument("scenario_names", metavar="SCENARIO...", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every scenario of `tradedrill scenarios`.")
@click.option("--repeat", "-n", type=click.IntRange(min=1), default=None,
              help="Runs per scenario, each with its own seed; the report shows the distribution "
                   "[default: 3; at least 20 with --profile thorough].")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="standard", show_default=True,
              help="thorough: every scenario at least 20 times with different seeds.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed that replays the workload and fault schedule "
                                                     "(default: a fresh one, printed).")
@click.option("--out", "out_dir", type=str, default="out/drills", show_default=True, callback=_folder_given,
              help="Folder for run directories and the report.")
@click.option("--subnet", default="127.0.0", show_default=True, help="Loopback /24 for the drill's nodes.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True, max=86400), default=None,
              help="Seconds of load per run (default: the scenario's).")
@click.option("--settle", type=click.FloatRange(min=0, max=3600), default=None,
              help="Seconds to let outcomes settle after the load.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True, max=2000), default=None,
              help="Signals/s offered (default: the scenario's; issue 11 drills at 200).")
@click.option("--users", type=click.IntRange(min=1, max=5000), default=None,
              help="Locust users beside the scenario's workload (issue 16; scenarios/load.py): each one request/s.")
@click.option("--spawn-rate", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help="Locust users started per second [default: --users / 10].")
@click.option("--load-mix", default=None, metavar="KIND=W,...",
              help="Locust user kinds and weights: rtss (signals on RTSS), webhook (through nginx; adds the "
                   "backend), ticks (EA consumers; adds the EA) [default: rtss=3,webhook=2,ticks=1].")
@click.option("--provider", type=click.Choice(["local", "docker", "external"]), default="local", show_default=True,
              help="What runs the stack: local processes, Docker containers (one host per node; --subnet in "
                   "172.30.0.0/16, default 172.30.17), or a deployment you run (--deployment).")
@click.option("--deployment", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --provider external: the TOML file of the deployment's addresses and its Toxiproxy.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Run with a setting other than the documents': a topology setting (sentinel.down_after_ms=1000) "
                   "or engine.<EngineConfig field> (engine.store_snapshots_kept=5); repeatable. The report marks "
                   "every verdict it bears on 'overridden' with both values (issue 19). Refused: what the "
                   "stack sets per node (engine.instance, state_dir, sentinels, brokers, redis_source_address), "
                   "ports below 1024, passwords (a password field or a URL's user:password@).")
def drill(scenario_names: tuple[str, ...], run_all: bool, repeat: int | None, profile: str, seed: int | None,
          out_dir: Path, subnet: str, duration: float | None, settle: float | None, rate: float | None,
          provider: str = "local", deployment: Path | None = None, users: int | None = None,
          spawn_rate: float | None = None, load_mix: str | None = None, sets: tuple[str, ...] = ()) -> None:
    """Run fault drills against the local stack, then judge them and write the RTO report; exit 1 when a target
    is missed, 2 when a run cannot be judged."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reports import build_report
    from scenarios.checkers import check_run
    from scenarios.runner import DrillError, DrillInterrupted, DrillOptions, interruptible, run_drills
    from tradedrill.topology import Topology, TopologyError

    repeat = runs_per_scenario(profile, repeat)
    if run_all:
        scenario_names = tuple(s.name for s in registry.all_scenarios())
    if not scenario_names:
        raise click.UsageError("name at least one scenario (see `tradedrill scenarios`), or pass --all")
    unknown = [n for n in scenario_names if registry.get(n) is None]
    if unknown:
        known = ", ".join(s.name for s in registry.all_scenarios())
        raise CannotJudge(f"unknown scenario {', '.join(unknown)}; known: {known} (see `tradedrill scenarios`)")
    from tradedrill import providers

    provider_options = {"deployment": deployment} if deployment is not None else {}
    if (provider == "external") != (deployment is not None):
        raise click.UsageError("--deployment FILE goes with --provider external (and it needs one)")
    from scenarios.overrides import SetError, parse_sets

    try:
        topology_sets, engine_sets = parse_sets(sets)
    except SetError as exc:
        raise CannotJudge(str(exc)) from None
    try:
        providers.stack_class(provider).drill_topology(subnet=subnet, services=registry.DRILL_SERVICES,
                                                       overrides=dict(topology_sets), **provider_options)
    except TopologyError as exc:
        raise click.BadParameter(str(exc), param_hint="--deployment" if deployment else "--subnet") from None
    for name, value in (("--duration", duration), ("--settle", settle), ("--rate", rate)):
        if value is not None and value != value:  # NaN passes every range check
            raise click.BadParameter("must be a number, not nan", param_hint=name)
    load = _load_options(users, spawn_rate, load_mix)
    for name in scenario_names:   # what the options leave of each scenario, said before any stack starts
        scenario = registry.get(name)
        load_s = duration if duration is not None else scenario.workload.duration_s
        late = [step for step in scenario.faults if step.at_s + step.phase_s >= load_s]
        if duration is not None and late:   # a new user's `--duration 8`: "invalid: 0 injected", no hint why
            raise click.BadParameter(
                f"{name} injects its fault at {late[0].at_s + late[0].phase_s:g} s of load; a load of {duration:g} s "
                f"ends before it: give at least {late[0].at_s + late[0].phase_s + 1:g} (or leave it out: "
                f"{scenario.workload.duration_s:g} s)", param_hint="--duration")
        if load is not None and load.users / load.spawn_rate > load_s:
            raise click.BadParameter(   # a new user's 50 users at 0.01/s: 1 ran, the report said 50
                f"{load.users} users at {load.spawn_rate:g} a second take {load.users / load.spawn_rate:g} s to "
                f"start, longer than {name}'s {load_s:g} s of load (about {max(1, int(load_s * load.spawn_rate))} "
                f"would run); give at least {load.users / load_s:.2g}", param_hint="--spawn-rate")
    # --out checked before the first progress line (a new user saw two of them, then the refusal)
    parent = next((q for q in (out_dir, *out_dir.parents) if q.exists()), None)
    if out_dir.exists() and not out_dir.is_dir():
        raise click.BadParameter(f"{out_dir} is a file, not a folder; pass a folder for the drills' run folders",
                                 param_hint="--out")
    if parent is not None:
        try:   # a real probe (root may "access" /proc, where nothing can be made), removed at once
            os.rmdir(tempfile.mkdtemp(prefix=".tradedrill-probe-", dir=parent))
        except OSError as exc:
            raise click.BadParameter(f"{out_dir}: cannot make a folder under {parent} ({exc.strerror or exc}); pass "
                                     f"a writable folder", param_hint="--out") from None
    console = _console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task("drills", total=len(scenario_names) * repeat)
    opts = DrillOptions(seed=seed, repeat=repeat, out_dir=out_dir, subnet=subnet, duration_s=duration,
                        provider=provider, provider_options=provider_options,
                        settle_s=settle, rate_per_s=rate, topology_overrides=topology_sets,
                        engine_overrides=engine_sets, progress=lambda m: progress.console.print(m, markup=False),
                        on_run_done=lambda: progress.advance(task))
    result = None
    with interruptible():
        try:
            with progress:
                result = run_drills(list(scenario_names), opts, load=load)
            run_checks = [check_run(run) for run in result.runs]
            console.print(f"seed {result.seed} (replay with --seed {result.seed})")
            _judge(console, run_checks, str(result.root), result.root)
        except DrillError as exc:
            raise CannotJudge(str(exc)) from None
        except DrillInterrupted as exc:
            root = exc.root or (result.root if result is not None else None)   # this drill's runs, not all --out
            if exc.finished and exc.run_dir is not None:   # it came in a finished run's teardown
                where = (f"; {exc.run_dir} had finished before it (complete) and the drill stopped there: judge "
                         f"its finished runs with `tradedrill check {root or Path(exc.run_dir).parents[1]}`")
            elif exc.phase:   # interrupted, or (a run that had failed when the interrupt came in its teardown) error
                from scenarios.history import RunDir

                state = (RunDir(exc.run_dir).status() or {}).get("state") if exc.run_dir else None
                where = f"; the run folder {exc.run_dir or out_dir} is marked {state or 'interrupted'}"
            else:   # between runs, or while judging: every run of this drill is whole
                where = f"; the finished runs can be judged with `tradedrill check {root or out_dir}`"
            console.print(f"tradedrill: drill {exc}: every fault healed and every node stopped{where}",
                          markup=False, soft_wrap=True)
            sys.exit(128 + exc.signum)
