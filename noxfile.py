"""nox sessions. They run in the project's own virtual environment (``bash run.sh setup`` makes it), because the
services they start are Debian packages and the Python packages are pinned once in pyproject.toml."""
from __future__ import annotations

import glob
import os

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]

DRILL_OUT = os.environ.get("TRADEDRILL_OUT", "out/drills")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite CI runs: unit, conformance, integration against real services, and a short drill."""
    session.run("pytest", "-m", "not bench", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def drills(session: nox.Session) -> None:
    """The main job: the fault drills against the embedded local stack, ending in the HTML report."""
    try:
        import scenarios.runner  # noqa: F401
        has_drills = True
    except ImportError:
        has_drills = False
    if has_drills:
        session.run("tradedrill", "drill", "--all", "--out", DRILL_OUT, *session.posargs)
    else:  # until the drills exist: bring the stack up, check it, take it down
        stack = "out/stack"
        session.run("tradedrill", "up", "--dir", stack)
        try:
            session.run("tradedrill", "status", "--dir", stack)
        finally:
            session.run("tradedrill", "down", "--dir", stack)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark script; each prints its numbers and writes out/bench/<area>.json."""
    os.makedirs("out/bench", exist_ok=True)
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)
