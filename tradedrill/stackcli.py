"""``tradedrill up | status | down``: the embedded local stack from the command line.

``up`` starts every node detached (each in its own session) and returns; the state of the stack lives in its run
folder (``stack.json``, ``pids.json``), which ``status`` and ``down`` read. Ctrl-C during ``up`` stops what was
started. A second ``up`` in the same folder first stops what a crashed earlier run left behind, and renders every
config file again from the settings it is given.

Settings are checked before anything is written: a bad one is a one-line error (exit status 2), never a traceback.
The run folder is private to the user that ran ``up`` (0700): ``status`` reads the stack's credentials from its
``secrets/`` to ask the servers (another user gets a one-line error), ``down`` stops the processes by PID.
Engines (``--services redis,mt5,engine``) run unsupervised here, because ``up`` returns and its process exits; the
drills supervise theirs. EAs (``--services ...,ea``) are supervised by EA-1's policy from a process of their own
(``ea-supervisor`` in ``status``, ``python -m tradedrill.services.ea supervise``), which ``down`` stops by its PID
(it stops its EAs first). The backends (``--services ...,backend``) likewise, under BE-1's policy
(``backend-supervisor``, ``python -m tradedrill.services.backend supervise``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from tradedrill.credentials import SecretsError
from tradedrill.process import StackIndex
from tradedrill.local import LocalStack, StackError, down_detached, load_state, status_rows
from tradedrill.process import NodeStartError
from tradedrill.topology import DEFAULT_SERVICES, SERVICES, Topology, TopologyError, parse_overrides
from tradedrill.waiting import DeadlineExceeded

DEFAULT_STACK_DIR = Path(os.environ.get("TRADEDRILL_HOME", ".tradedrill")) / "stack"

stack_dir_option = click.option(
    "--dir", "stack_dir", type=click.Path(path_type=Path), default=DEFAULT_STACK_DIR, show_default=True,
    help="Run folder of the stack (configs, data, logs, PIDs).",
)


def _fail(message: str) -> None:
    click.echo(f"tradedrill: {message}", err=True)
    sys.exit(2)


@click.command()
@stack_dir_option
@click.option("--subnet", default="127.0.0", show_default=True, help="Loopback /24 for the nodes (.2, .3, ...).")
@click.option("--services", default=",".join(DEFAULT_SERVICES), show_default=True,
              help=f"Comma-separated services to run, of: {', '.join(SERVICES)} (engine needs redis and mt5).")
@click.option("--topology", "topology_file", type=click.Path(path_type=Path), help="TOML topology file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. sentinel.down_after_ms=1000.")
def up(stack_dir: Path, subnet: str, services: str, topology_file: Path | None, overrides: tuple[str, ...]) -> None:
    """Start the local stack and return once every node is ready."""
    try:
        extra = parse_overrides(overrides)
        if topology_file:
            topo = Topology.from_file(topology_file, extra)
        else:
            topo = Topology.default(subnet=subnet, services=[s.strip() for s in services.split(",") if s.strip()],
                                    overrides=extra)
    except TopologyError as exc:
        _fail(str(exc))
    if stack_dir.exists() and not stack_dir.is_dir():
        _fail(f"--dir {stack_dir} is a file; give a folder for the stack's configs, data, logs and PIDs")
    if load_state(stack_dir):
        down_detached(stack_dir)
    # the engines of a stack started from the command line are not supervised: nobody is left to supervise them
    # the EAs' supervisor (EA-1) runs as a detached process of its own: it outlives `up`
    stack = LocalStack(topo, stack_dir, options={"engine": {"supervise": False}, "ea": {"detached_supervisor": True},
                                                "backend": {"detached_supervisor": True}})
    try:
        stack.up()
    except (StackError, NodeStartError, FileNotFoundError, DeadlineExceeded, SecretsError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; every node that was started has been stopped")
    stack.index.detach(stack.registry)  # this process exits; the nodes stay until `tradedrill down`
    click.echo(f"stack ready in {stack.timings['ready_s']:.2f} s; run folder {stack.run_dir}")
    _print_status(stack_dir)


def _print_status(stack_dir: Path) -> bool:
    try:
        rows, primary = status_rows(stack_dir)
    except (SecretsError, PermissionError) as exc:
        _fail(f"cannot read the stack's state in {stack_dir}: {exc}")
    if not rows:
        click.echo(f"no stack is running from {stack_dir} (start one with `tradedrill up`)")
        return False
    title = f"tradedrill stack ({stack_dir})"
    table = Table(title=title)
    for col in ("node", "kind", "role", "address", "pid", "process", "health"):
        table.add_column(col, no_wrap=True, overflow="ignore")   # never cut a value to `127.0.122…`
    for r in rows:
        table.add_row(r["name"], r["kind"], r["role"], r["address"], str(r["pid"] or "-"), r["process"], r["health"])
    _print_full_width(table, len(title))
    if primary:
        click.echo(f"Redis primary (as the Sentinels see it): {primary[0]}:{primary[1]}")
    return all(r["health"] == "ok" for r in rows)


def _print_full_width(table: Table, title_width: int = 0) -> None:
    """Print ``table`` as wide as its values need: piped, or at 80 columns, rich would otherwise squeeze it to the
    console's width and cut values with an ellipsis; a terminal narrower than the table wraps its lines."""
    console = Console()
    needed = max(Console(width=100_000).measure(table).maximum, title_width + 4)
    Console(width=max(needed, console.width if console.is_terminal else 0)).print(table)


@click.command()
@stack_dir_option
def status(stack_dir: Path) -> None:
    """Show every node: role, address, PID, health, and who is the Redis primary."""
    healthy = _print_status(stack_dir)
    sys.exit(0 if healthy else 1)


@click.command()
@stack_dir_option
@click.option("--all", "every", is_flag=True, help="Also stop stacks whose harness process still runs (a drill is "
                                                   "asked to tear itself down with SIGTERM), wherever their run "
                                                   "folder is.")
@click.option("--subnet", default=None, help="Only the stacks recorded on this subnet (with --all: also live ones).")
def down(stack_dir: Path, every: bool, subnet: str | None) -> None:
    """Stop every process the stack started (by PID), and nothing else; also every stack a crashed or killed
    drill left behind. Removes the docker containers, networks and volumes that docker-provider runs left (by
    label; --all: every run's) and stops the dockerd a run started (never one somebody else started). Heals the
    kernel rules and mounts of faults whose process is gone."""
    if subnet is not None:
        from tradedrill.topology import TopologyError, _check_subnet

        try:
            _check_subnet(subnet)
        except TopologyError as exc:   # a new user's `--subnet 127.0.300` read "nothing was running"
            _fail(f"--subnet: {exc}")
    had_stack = any((stack_dir / name).exists() for name in ("pids.json", "stack.json"))
    stopped = down_detached(stack_dir)
    said = False
    if stopped:
        click.echo(f"stopped {len(stopped)} node(s) of {stack_dir}: {', '.join(stopped)}")
        said = True
    for run_dir, names in StackIndex().reap(subnet=subnet, orphans_only=not every).items():
        if names:
            click.echo(f"stopped {len(names)} process(es) of {run_dir}: {', '.join(names)}")
            said = True
    from tradedrill.providers.docker import down_leftovers

    for line in down_leftovers(every=every):   # containers and networks of killed docker-provider runs (by label)
        click.echo(line)
        said = True
    if not said:
        given = click.get_current_context().get_parameter_source("stack_dir") is not click.core.ParameterSource.DEFAULT
        if given and not had_stack:
            # a new user's `down --dir <a folder with no stack>` was answered only with another user's soak
            click.echo(f"no stack in {stack_dir}: nothing recorded there to stop")
        # what is still running and was left alone on purpose (a new user read "nothing was running" while an `up`
        # stack ran on the subnet it named)
        index = StackIndex()
        kept = [(e.get("run_dir") or str(Path(k).parent), e) for k, e in index.entries().items()
                if (subnet is None or e.get("subnet") == subnet) and index.live_processes(k)]
        if kept:
            for run_dir, e in kept:
                if e.get("detached"):
                    click.echo(f"nothing stopped: the stack in {run_dir} (subnet {e.get('subnet')}) still runs; stop "
                               f"it with `tradedrill down --dir {run_dir}`")
                else:   # a drill, soak or test whose harness still runs: its owner stops it, not a stray `down`
                    click.echo(f"left alone: the stack in {run_dir} (subnet {e.get('subnet')}) belongs to a drill, "
                               f"soak or test whose harness process still runs; if it is yours and stuck, "
                               f"`tradedrill down --all --subnet {e.get('subnet')}` stops it")
        else:
            click.echo("nothing was running")
    from faults.cli import heal_dead_leftovers

    for line in heal_dead_leftovers():  # faults of a SIGKILLed drill
        click.echo(line)
