"""``tradedrill replay RUN_DIR`` (a stateful example's schedule against a fresh stack) and ``tradedrill soak``
(minutes of load with a seeded fault every 10 s; ``scenarios.soak``).

Exit status of ``replay``: 0 the recorded symptom came back (with ``--reference``: the reference engine fails the
schedule too), 1 it did not, 2 the replay could not run.
Exit status of ``soak``: 0 its verdict passed (no duplicate, no lost acknowledged signal, every process flat in RSS
and fds, nothing left after the teardown: ``scenarios.soak.verdict``), 1 otherwise, 2 it could not run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click


class CannotRun(click.ClickException):
    exit_code = 2


def _one_line(text: str) -> str:
    """``text`` with its line breaks and other unprintable characters escaped (an argument with a newline in it is
    echoed as ``\\n``), so an error about it stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _OneLineErrors(click.Command):
    """Bad input to ``tradedrill soak`` or ``replay`` is one line and exit 2 (never click's usage block): a value
    click cannot convert, an unknown option or an extra argument is said with what to do."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise CannotRun(_one_line(f"{exc.format_message().rstrip('.')}; see `tradedrill {self.name} --help`")
                            ) from None


_OneLineSoakErrors = _OneLineErrors


def _fresh_replay_dir(parent: Path, *, given: bool) -> Path:
    """A new ``replay-<n>`` folder (the first n not taken) inside ``parent`` (RUN_DIR, or --out), made now: every
    replay writes its own run folders, never into a folder an earlier replay wrote (its history and signals would
    mix with this one's and the verdict report symptoms neither had). A --out that cannot hold it: CannotRun."""
    what = "--out" if given else "RUN_DIR"
    from scenarios.cli import path_problem
    problem = path_problem(parent)
    if problem:
        raise CannotRun(_one_line(f"{what} {problem}"))
    if parent.exists() and not parent.is_dir():
        raise CannotRun(_one_line(f"{what} {parent} is a file, not a folder; pass a folder to write the replay's "
                                  f"run folders into"))
    for n in range(1, 10_000):
        path = parent / f"replay-{n}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise CannotRun(_one_line(f"{what} {parent}: cannot make a folder there ({exc.strerror or exc}); pass "
                                      f"a writable folder")) from None
    raise CannotRun(_one_line(f"{what} {parent} holds replay-1 to replay-9999: pass another --out"))


def _interrupted_where(out_dir: Path) -> str:
    """Where an interrupted replay left things, from its files: the example it marked interrupted, or that the cut
    came while an attempt's stack started (no example begun: nothing marked; a new user read "the cut run is marked
    interrupted" of a folder with no status.json), and the attempts that had finished (their verdicts stand)."""
    import json

    cut, done = [], []
    for status in sorted(out_dir.rglob("status.json"))[:100]:   # bounded: 10 attempts, a few folders each
        try:
            state = json.loads(status.read_text()).get("state")
        except (OSError, ValueError, AttributeError):
            continue
        if state == "interrupted":
            cut.append(status.parent)
        elif (status.parent / "verdict.json").is_file():
            done.append(status.parent)
    where = (f"the cut example is marked interrupted in {cut[0]}" if cut else
             f"it came while an attempt's stack started, before its example began: nothing to mark ({out_dir})")
    if done:
        where += f"; {len(done)} attempt(s) had finished before it, their verdict.json stands ({done[0]}" + \
                 (", ..." if len(done) > 1 else "") + ")"
    return where


def _drop_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


@click.command("replay", cls=_OneLineErrors)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--subnet", default="127.0.94", show_default=True, help="Loopback /24 for the fresh stack.")
@click.option("--out", "out_dir", type=str, default=None,
              help="Folder to write the replay into: each replay gets a new replay-<n> folder inside it [default: "
                   "RUN_DIR/replay-<n>].")
@click.option("--reference", is_flag=True, default=False,
              help="Run the schedule on the reference engine instead of the recorded one (a control: a broken "
                   "variant's symptom that the reference shows too is not the variant's).")
@click.option("--attempts", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Replays, each on a fresh stack, until one reproduces (a race shows in some runs only); with "
                   "--reference every attempt runs (how often the reference fails the schedule).")
def replay(run_dir: Path, subnet: str, out_dir: str | None, reference: bool, attempts: int) -> None:
    """Re-run a stateful example's saved schedule (RUN_DIR/schedule.json: seed, steps, engine) against a fresh
    stack and say whether its symptom reproduces (exit 0: it did in at least one attempt). A RUN_DIR that recorded
    no failure (its verdict passed, or a hand-written schedule without verdict.json) has nothing to reproduce: the
    replay is judged as a run (exit 0: no symptom in any attempt, 1: a symptom)."""
    from scenarios.environment import DrillError
    from scenarios.runner import DrillInterrupted, interruptible
    from scenarios.stateful import replay_attempts

    from tradedrill.topology import TopologyError, _check_subnet

    try:
        _check_subnet(subnet)
    except TopologyError as exc:
        raise CannotRun(_one_line(f"--subnet: {exc} (the replay's own block is 127.0.94)")) from None
    if not run_dir.exists():
        raise CannotRun(_one_line(f"{run_dir} does not exist: pass the run folder a failing stateful example wrote "
                                  f"(its failure message names it)"))
    if not run_dir.is_dir():
        raise CannotRun(_one_line(f"{run_dir} is a file, not a folder: pass the run folder a failing stateful example "
                                  f"wrote (its failure message names it)"))
    if not (run_dir / "schedule.json").exists():
        raise CannotRun(_one_line(f"{run_dir} holds no schedule.json: pass the run folder a failing stateful example "
                                  f"wrote (its failure message names it)"))
    for name in ("schedule.json", "verdict.json"):   # a folder of that name was a traceback (IsADirectoryError)
        if (run_dir / name).exists() and not (run_dir / name).is_file():
            raise CannotRun(_one_line(f"{run_dir / name} is not a file: pass the run folder a stateful example "
                                      f"wrote (its {name} is a file)"))
    if out_dir is not None and not out_dir.strip():   # Path("") is "." (the current folder): not what was meant
        raise CannotRun("--out: an empty path; pass a folder to write the replay's run folders into (or leave "
                        "--out out: RUN_DIR/replay-<n>)")
    out_dir = _fresh_replay_dir(run_dir if out_dir is None else Path(out_dir), given=out_dir is not None)
    with interruptible():
        try:
            results = replay_attempts(run_dir, subnet=subnet, out_dir=out_dir, attempts=attempts,
                                      until_reproduced=not reference, say=lambda m: click.echo(m),
                                      engine={} if reference else None)
        except DrillError as exc:
            _drop_if_empty(out_dir)   # refused before a stack started: no empty replay-<n> left behind
            raise CannotRun(_one_line(str(exc))) from None
        except DrillInterrupted as exc:
            if exc.finished:   # it came in the teardown of an attempt that had finished: that verdict stands
                click.echo(f"tradedrill: replay {exc}: every fault healed and every node stopped; the attempt in "
                           f"{exc.run_dir or out_dir} had finished before it (its verdict.json stands) and no "
                           f"further attempt started")
            else:
                click.echo(f"tradedrill: replay {exc}: every fault healed and every node stopped; "
                           f"{_interrupted_where(Path(out_dir))}")
            sys.exit(128 + exc.signum)
    for k, result in enumerate(results, start=1):
        steps = len(result.replay.steps)
        found = ", ".join(f"{s['checker']}: {s['summary']}" for s in result.replay.symptoms) or "no symptom"
        click.echo(f"attempt {k}: replayed {steps} step(s) of {run_dir} in {result.replay.run_dir}")
        recorded = {"failed": f"expected: {', '.join(result.expected)}",
                    "passed": "recorded: no symptom (the example passed)",
                    "none": "recorded: no verdict.json (nothing to compare with)"}[result.recorded]
        click.echo(f"{recorded}; found: {found}")
    hits = [k for k, r in enumerate(results, start=1) if r.reproduced]
    if results and results[0].recorded != "failed":
        # nothing recorded to reproduce or attribute: the replay is a run of the schedule, judged like one
        who = "the reference engine" if reference else "the recorded engine"
        if hits:
            click.echo(f"{who} fails this schedule in {len(hits)} of {len(results)} attempt(s) (attempt "
                       f"{', '.join(map(str, hits))}); {run_dir} recorded no failure")
            sys.exit(1)
        click.echo(f"{who} passes this schedule in {len(results)} of {len(results)} attempt(s), as {run_dir} "
                   + ("recorded" if results[0].recorded == "passed" else "(which recorded no verdict)"))
        return
    if reference:   # a control: what its outcome means for the recorded engine's symptom
        if hits:
            click.echo(f"the reference engine fails this schedule too in {len(hits)} of {len(results)} attempt(s) "
                       f"(attempt {', '.join(map(str, hits))}): the symptom is not the recorded engine's alone")
            return
        click.echo(f"the reference engine passes this schedule in {len(results)} of {len(results)} attempt(s): the "
                   f"symptom is the recorded engine's")
        sys.exit(1)
    if hits:
        # one shape whatever --attempts is (a new user read "reproduced" alone without it, the attempt with it)
        click.echo(f"reproduced in {len(hits)} of {len(results)} attempt(s) (attempt {', '.join(map(str, hits))})")
        return
    click.echo(f"not reproduced in {len(results)} attempt(s)")
    sys.exit(1)




@click.command("soak", cls=_OneLineSoakErrors)
@click.option("--minutes", type=float, default=30.0, show_default=True,
              help="Minutes of load: at least 1.37, at most 1440. 1.37 is the shortest soak that can measure an "
                   "RSS slope (the first sample 2 s into the load, 20 s of warm-up after the engines open their send "
                   "lanes, then 60 s of steady samples), and only when nothing restarts a process or grows its "
                   "thread pool for good again: each such event leaves out another 20 s (CI's 2 minutes have room "
                   "for one), so a faulted soak needs more.")
@click.option("--seed", type=int, default=16, show_default=True,
              help="Seed of the fault sequence and the signals (an integer from 0 to 4294967295).")
@click.option("--rate", type=float, default=10.0, show_default=True,
              help="Signals per second (1 to 500).")
@click.option("--every", "every_s", type=float, default=10.0, show_default=True,
              help="Seconds between two faults (5 to 600). One longer than half the soak injects no fault: a "
                   "load-only soak, whose fault recovery is reported unmeasured.")
@click.option("--subnet", default="127.0.95", show_default=True, help="Loopback /24 for the soak's stack.")
@click.option("--out", "out_dir", type=str, default="out/soak", show_default=True,
              help="Folder for the soak's run folder and its soak.json and soak.md.")
def soak(minutes: float, seed: int, rate: float, every_s: float, subnet: str, out_dir: str) -> None:
    """Minutes of load with a seeded random fault of the fault table every 10 s; reports duplicates, lost
    acknowledged signals, the RSS slope of every long-running process, fds and processes before and after.
    Bad options are refused in one line (exit 2) before any stack starts (``scenarios.soak.option_problems``)."""
    from scenarios.environment import DrillError
    from scenarios import soak as soak_module
    from scenarios.soak import SoakOptions, option_problems

    # "" is Path("."), the current folder: a new user's `--out ""` ran a whole soak into the clone's root
    if not out_dir.strip():
        raise CannotRun("--out is empty: pass the folder for the soak's run folder (default out/soak)")
    from scenarios.cli import path_problem
    problem = path_problem(Path(out_dir))
    if problem:
        raise CannotRun(_one_line(f"--out {problem}"))
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise CannotRun(_one_line(f"--out {out_dir} is a file, not a folder; pass a folder for the soak's run "
                                  f"folder"))
    opts = SoakOptions(minutes=minutes, seed=seed, rate_per_s=rate, every_s=every_s, subnet=subnet,
                       out_dir=Path(out_dir), say=lambda m: click.echo(m))
    problems = option_problems(opts)
    if problems:
        raise CannotRun(_one_line("; ".join(problems)))
    from scenarios.runner import DrillInterrupted, interruptible

    # SIGINT, SIGTERM, SIGHUP: the drills' handling (scenarios.runner): the stack torn down, the run folder marked
    # interrupted, a second interrupt during the teardown ignored; one line and exit 128 + the signal (130: Ctrl-C),
    # never "Aborted!" and 1 (1 is a failed verdict)
    with interruptible():
        try:
            result = soak_module.run_soak(opts)
            lines = soak_module.console_lines(result)
        except DrillError as exc:
            raise CannotRun(_one_line(str(exc))) from None
        except DrillInterrupted as exc:
            run_dir = getattr(exc, "run_dir", None)
            if run_dir and getattr(exc, "judge_again", False):
                where = (f"; the run in {run_dir} finished but was not judged: judge it with "
                         f"`python -c \"import scenarios.soak as s; s.judge_run('{run_dir}')\"`")
            elif run_dir and exc.phase:
                where = f"; the run folder {run_dir} is marked interrupted (not judged)"
            else:
                where = "; no soak was judged"
            click.echo(_one_line(f"tradedrill soak: {exc}: every fault healed and every node stopped{where}"))
            sys.exit(128 + exc.signum)
    for line in lines:   # every figure is in soak.json; a summary here
        click.echo(line)
    sys.exit(0 if result.passed else 1)
