"""``tradedrill load-spec``: a locust load spec for a live stack of ``tradedrill up`` (issue 16 item 2).

A drill's own ``load/spec.json`` is only valid while its drill runs (its stack goes with it, and its run folder is
judged); this command writes one for a stack that stays up, so the distributed load (``locust -f
scenarios/locustfiles.py --master`` / ``--worker`` with ``TRADEDRILL_LOAD_SPEC``) has something live to load. The
load's operations go to a fresh folder (``--run-dir``), never to a drill's run.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from pathlib import Path

import click

from scenarios.load import CLAIM, DEFAULT_MIX, TICK_BIND_HOST, spec_kinds, stack_problem
from tradedrill.stackcli import DEFAULT_STACK_DIR


TIMEOUT_RANGE = (0.1, 60.0)   # --timeout-s, seconds


def timeout_problem(timeout_s: float) -> str | None:
    """Why ``timeout_s`` cannot be the spec's per-request timeout (a finite number in TIMEOUT_RANGE), or None."""
    low, high = TIMEOUT_RANGE
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not math.isfinite(timeout_s) \
            or not low <= timeout_s <= high:
        return f"--timeout-s {timeout_s!r} is not a number of seconds from {low:g} to {high:g}; pass e.g. --timeout-s 2"
    return None


def run_dir_problem(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot take the load's history, or None: it must be fresh (not exist yet, or an empty
    folder): a folder with files in it (an earlier load's history.jsonl, a drill's run folder, /etc) would mix this
    load's operations with what is there, and the checkers would judge both as one run."""
    from scenarios.history import RunDir

    fresh = "give a folder that does not exist yet (or an empty one), e.g. leave --run-dir out: out/load/<UTC time>"
    path = Path(run_dir)
    if not str(run_dir).strip():
        return f"--run-dir is empty; {fresh}"
    if path.exists() and not path.is_dir():
        return f"--run-dir {run_dir} is a file, not a folder; {fresh}"
    if RunDir(path).status() is not None:
        return f"--run-dir {run_dir} is a drill's run folder; {fresh}"
    claim = path / CLAIM
    if claim.is_file():
        try:
            owner = json.loads(claim.read_text()).get("spec", "?")
        except (OSError, ValueError, AttributeError):
            owner = "?"
        return f"--run-dir {run_dir} is already the run folder of the spec {owner}; {fresh}"
    if path.is_dir():
        try:
            held = sorted(p.name for p in path.iterdir())
        except OSError as exc:
            return f"--run-dir {run_dir} cannot be read ({exc.strerror or exc}); {fresh}"
        if held:
            lines = ""
            if "history.jsonl" in held:
                with open(path / "history.jsonl", "rb") as fh:
                    lines = f", history.jsonl with {sum(1 for _ in fh):,} lines"
            return (f"--run-dir {run_dir} is not fresh (it holds {len(held)} entr{'y' if len(held) == 1 else 'ies'}"
                    f"{lines}); {fresh}")
    return None


# what `tradedrill up` keeps in its run folder: --out must never name one of them (a spec written over pids.json
# left `down` unable to stop the stack: "nothing was running", 10 processes left; over stack.json `status` crashed)
STACK_FILES = ("stack.json", "pids.json", "pids.json.lock", "topology.json")
STACK_FOLDERS = ("secrets", "data", "logs", "nodes")


def out_problem(out: Path | str, stack_dir: Path, run_dir: Path) -> str | None:
    """Why the spec may not be written to ``out``, or None: not empty, not a folder, not one of the stack's own
    files or folders (:data:`STACK_FILES`, :data:`STACK_FOLDERS` of ``stack_dir``), not inside ``run_dir``, and an
    existing file only when it is a load spec (written again)."""
    new = "give a new file name, e.g. --out out/loadstack/spec.json"
    if not str(out).strip():
        return f"--out is empty; {new}"
    path = Path(out)
    if path.is_dir():
        return f"--out {out} is a folder; {new}"
    target, stack = path.resolve(), Path(stack_dir).resolve()
    if target.parent == stack and target.name in STACK_FILES:
        return f"--out {out} is the stack's own {target.name} (`tradedrill up` keeps it there); {new}"
    if any(target.is_relative_to(stack / folder) for folder in STACK_FOLDERS):
        return f"--out {out} is inside the stack's own folders ({', '.join(STACK_FOLDERS)}); {new}"
    if target.is_relative_to(Path(run_dir).resolve()):
        return f"--out {out} is inside --run-dir {run_dir} (the load's history goes there); {new}"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = None
        if not (isinstance(doc, dict) and {"run_dir", "mix", "users"} <= set(doc)):
            return f"--out {out} exists and is not a load spec (it would be overwritten); {new}"
    return None


def _fail(message: str) -> None:
    click.echo(f"tradedrill load-spec: {message}", err=True)
    sys.exit(2)


def spec_for_stack(stack_dir: Path, run_dir: Path, timeout_s: float = 2.0, settle_s: float = 10.0,
                   seed: int = 0) -> dict:
    """The load spec (JSON-able dict, no secret: the load reads the credentials from ``stack_dir``'s secrets) for
    the stack of ``tradedrill up --dir stack_dir``: its Sentinels and stream keys (RTSS producers, when the stack
    runs redis), its nginx (webhook senders, with ``backend``), its EAs (tick consumers, with ``ea``); the load's
    history goes to ``run_dir``. Raises ``ValueError`` (one line, what to do) when no stack runs from ``stack_dir``."""
    from reference.engine import contract
    from scenarios.registry import Workload
    from tradedrill.local import load_state
    from tradedrill.topology import Topology

    if Path(stack_dir).exists() and not Path(stack_dir).is_dir():   # `up --dir FILE`, suggested below, fails too
        raise ValueError(f"--dir {stack_dir} is a file, not a stack's run folder; pass the --dir you gave "
                         f"`tradedrill up`")
    again = f"start the stack again: `tradedrill down --dir {stack_dir}`, then `tradedrill up --dir {stack_dir} ...`"
    try:
        state = load_state(stack_dir)
    except (OSError, ValueError) as exc:   # a new user's finding: not JSON was an error without the file's name
        raise ValueError(f"{Path(stack_dir) / 'stack.json'} cannot be read ({str(exc).splitlines()[0]}); "
                         f"{again}") from None
    if state is None:
        raise ValueError(f"no stack is running from {stack_dir}; start one, e.g. `tradedrill up --dir {stack_dir} "
                         f"--subnet 127.0.102 --services redis,mt5,engine,ea,backend`")
    try:   # `[]` or `{}` was a traceback
        topo = Topology.from_dict(state["topology"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{Path(stack_dir) / 'stack.json'} is not a stack's state (its topology: "
                         f"{type(exc).__name__} {str(exc)[:80]}); {again}") from None
    started = set(state.get("services") or topo.services)
    try:
        group = json.loads((Path(stack_dir) / "engine.json").read_text()).get("group")
    except (OSError, ValueError):
        group = None
    keys = contract.Keys(group=str(group or topo.settings["engine.group"]))
    w = Workload()
    spec = {"users": 0, "spawn_rate": 0, "mix": {}, "run_dir": str(Path(run_dir).resolve()),
            "stack_dir": str(Path(stack_dir).resolve()), "sentinels": [], "master_name": topo.master_name,
            "rtss": keys.rtss, "rtrs": keys.rtrs, "account": int(topo.settings["mt5.account"]),
            "symbols": list(w.symbols), "volume": w.volume, "timeout_s": float(timeout_s), "settle_s": float(settle_s),
            "seed": int(seed), "wait_replicas": 1, "wait_ms": 500, "eas": [], "webhook_url": None,
            "tick_bind_host": f"{topo.subnet}.{TICK_BIND_HOST}"}
    if "redis" in started:
        spec["sentinels"] = [[s.address, s.port] for s in topo.of_kind("sentinel")]
    if "ea" in started:
        spec["eas"] = [[s.address, s.port] for s in topo.of_kind("ea")]
    proxies = topo.of_kind("nginx")
    if "backend" in started and proxies:
        spec["webhook_url"] = f"http://{proxies[0].address}:{proxies[0].port}/webhook/tradingview"
    spec["mix"] = {k: DEFAULT_MIX[k] for k in spec_kinds(spec)}
    return spec


class _OneLineErrors(click.Command):
    """Bad input to ``tradedrill load-spec`` (a value click cannot convert, an unknown option, an extra argument)
    is one line on stderr and exit 2, saying what to do, never click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in exc.format_message().rstrip("."))
            _fail(f"{text}; see `tradedrill load-spec --help`")


@click.command("load-spec", cls=_OneLineErrors)
@click.option("--dir", "stack_dir", type=click.Path(path_type=Path), default=DEFAULT_STACK_DIR, show_default=True,
              help="Run folder of the live stack (the --dir of `tradedrill up`).")
@click.option("--out", "out", type=str, required=True,   # text: click's Path("") is "." (a new user: "--out . is a folder")
              help="Where to write the spec (JSON); point TRADEDRILL_LOAD_SPEC at it.")
@click.option("--run-dir", type=str, default=None,
              help="A fresh folder for the load's history.jsonl and signals.jsonl [default: out/load/<UTC time>].")
@click.option("--timeout-s", type=float, default=2.0, show_default=True,
              help=f"Per request: how long a submission or webhook may take (s), {TIMEOUT_RANGE[0]:g} to "
                   f"{TIMEOUT_RANGE[1]:g}.")
def load_spec(stack_dir: Path, out: str, run_dir: str | None, timeout_s: float) -> None:
    """Write a locust load spec for the live stack of `tradedrill up` (for `locust -f scenarios/locustfiles.py`)."""
    if run_dir is not None and not run_dir.strip():
        _fail("--run-dir is empty; give a fresh folder for the load's history, or leave it out "
              "(out/load/<UTC time>)")
    run_dir = Path("out") / "load" / _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") \
        if run_dir is None else Path(run_dir)
    for problem in (timeout_problem(timeout_s), run_dir_problem(run_dir), out_problem(out, stack_dir, run_dir)):
        if problem:
            _fail(problem)
    out = Path(out)
    try:
        spec = spec_for_stack(stack_dir, run_dir, timeout_s=timeout_s)
    except ValueError as exc:
        _fail(str(exc))
    if not spec["mix"]:
        _fail(f"the stack of {stack_dir} runs nothing a load user needs; start it with --services "
              f"redis,mt5,engine (RTSS producers), plus ea (tick consumers) and backend (webhook senders)")
    problem = stack_problem(spec, spec["mix"])
    if problem:
        _fail(f"{problem}; check the stack with `tradedrill status --dir {stack_dir}`")
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(spec, indent=2) + "\n")
        (Path(run_dir) / CLAIM).write_text(json.dumps({"spec": str(out.resolve())}) + "\n")   # one spec per folder
    except OSError as exc:
        _fail(f"cannot write {out} or {run_dir}: {exc.strerror or exc}")
    classes = {"rtss": "RtssProducer", "webhook": "WebhookSender", "ticks": "TickConsumerUser"}
    click.echo(f"wrote {out} (users it can run: {', '.join(classes[k] for k in spec['mix'])}; history in "
               f"{spec['run_dir']})")
