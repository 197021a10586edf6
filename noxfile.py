"""nox sessions. They run in the project's own virtual environment (``bash run.sh setup`` makes it), because the
services they start are Debian packages and the Python packages are pinned once in pyproject.toml."""
from __future__ import annotations

import glob
import os
import signal
import threading

import nox

nox.options.default_venv_backend = "none"
# `.venv/bin/nox -s bench` without an activated venv ran the system's pytest/python ("No module named httpx"; a new
# user's finding): the project's venv goes first on PATH whenever it exists
_VENV_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv", "bin")
if os.path.isdir(_VENV_BIN) and _VENV_BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")
nox.options.sessions = ["tests"]

DRILL_OUT = os.environ.get("TRADEDRILL_OUT", "out/drills")
# After Ctrl-C nox waited 0.3 s for its child, then sent SIGTERM and 0.2 s later SIGKILL: a drill, soak or pytest run
# was killed in the middle of stopping its stack (every node left running). Our runs handle Ctrl-C and SIGTERM
# themselves (tear down, then exit): nox waits for them (tests/stateful/test_killed_pytest.py runs it).
OWN_TEARDOWN = {"interrupt_timeout": None}


def _sigterm_to_the_run(signum, _frame) -> None:
    """SIGTERM to nox (``kill``, a CI runner, ``timeout``): nox died at once and its run went on without a parent,
    stack and all (a new user's finding: a soak ran 95 s more and printed its verdict). Passed on to nox's children,
    then nox treats it as Ctrl-C: it waits for the run's own teardown (OWN_TEARDOWN) and exits 130."""
    from tradedrill.process import signal_children

    signal_children(signal.SIGTERM)
    raise KeyboardInterrupt(signal.Signals(signum).name)


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm_to_the_run)
DRILL_SUBNET = os.environ.get("TRADEDRILL_DRILL_SUBNET", "127.0.8")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite CI runs: unit, conformance, integration against real services, and a short drill. The
    container tests are ``nox -s docker``'s."""
    # --durations: the 60 slowest in the log, to keep the default run inside CI's 20 minutes. Two pytest-xdist
    # workers (TRADEDRILL_TEST_WORKERS; 0 = one process), each running whole scopes of tests/conftest.py (a folder or
    # a module with a loopback block of its own), so two stacks never share addresses.
    workers = os.environ.get("TRADEDRILL_TEST_WORKERS", "2")
    if not workers.isdigit():
        session.error(f"TRADEDRILL_TEST_WORKERS={workers!r}: give a whole number of workers (0 = no workers)")
    side_by_side = ["-n", workers, "--dist", "loadscope"] if int(workers) > 0 else []
    session.run("pytest", "-m", "not bench and not docker", "-p", "no:cacheprovider", "--durations=60",
                *side_by_side, *session.posargs, **OWN_TEARDOWN)


@nox.session
def docker(session: nox.Session) -> None:
    """The docker provider's tests (issue 17): images built (cold: ~1 min; warm: seconds), the stack as containers,
    kill/pause/partition between containers, a short engine-kill drill, and nothing left behind. Root starts
    dockerd when none answers and stops it at the end."""
    session.env["TRADEDRILL_DOCKER_TESTS"] = "1"
    session.run("pytest", "tests/docker", "-m", "docker", "-p", "no:cacheprovider", "-rA", *session.posargs,
                **OWN_TEARDOWN)


DOCKER_DRILLS = ["engine-kill", "redis-primary-kill", "redis-primary-isolated", "redis-primary-disconnected",
                 "udp-loss"]
DOCKER_DRILL_SEED = os.environ.get("TRADEDRILL_DOCKER_DRILL_SEED", "17")
DOCKER_DRILL_OUT = os.environ.get("TRADEDRILL_DOCKER_DRILL_OUT", "out/drills-docker")


@nox.session
def drills_docker(session: nox.Session) -> None:
    """Drills on the docker provider (every node a container; subnet 172.30.17), then the same scenarios with the
    same seed on the local provider (subnet 127.0.97), and their verdicts side by side in
    out/drills-docker/verdicts.json (``python -m tradedrill.providers.compare``). The default scenarios are
    engine-kill, redis-primary-kill, a Redis partition that also cuts the harness's own set writers
    (redis-primary-isolated), the primary cut off entirely (redis-primary-disconnected: docker network disconnect,
    locally an nftables drop of its address) and UDP loss on the EA's ticks (udp-loss). Before the comparison,
    benchmarks/bench_docker_path.py measures the network path alone (container -> host across the bridge vs
    loopback), shown beside any timing-only difference. ``nox -s drills_docker -- redis-primary-kill --repeat 3``
    runs those on docker only. Exit status as for ``drills``; the comparison fails the session when a verdict
    differs (a timing target too, with both figures)."""
    if session.posargs:
        session.run("tradedrill", "drill", *session.posargs, "--provider", "docker", "--out", DOCKER_DRILL_OUT,
                    success_codes=[0, 1], **OWN_TEARDOWN)
        return
    common = [*DOCKER_DRILLS, "--repeat", "1", "--seed", DOCKER_DRILL_SEED]
    session.run("tradedrill", "drill", *common, "--provider", "docker", "--out", f"{DOCKER_DRILL_OUT}/docker",
                success_codes=[0, 1], **OWN_TEARDOWN)
    session.run("tradedrill", "drill", *common, "--subnet", "127.0.97", "--out", f"{DOCKER_DRILL_OUT}/local",
                success_codes=[0, 1], **OWN_TEARDOWN)
    session.run("python", "benchmarks/bench_docker_path.py", "--frames", "3000")
    session.run("python", "-m", "tradedrill.providers.compare", f"{DOCKER_DRILL_OUT}/local",
                f"{DOCKER_DRILL_OUT}/docker", "--out", f"{DOCKER_DRILL_OUT}/verdicts.json",
                "--path-bench", "out/bench/docker_path.json")


@nox.session
def drills(session: nox.Session) -> None:
    """The main job: every scenario (3 repeats each) against the embedded local stack, ending in the HTML report.

    ``tradedrill drill`` exits 1 when a target is missed; the documents promise some targets that cannot hold
    (REQUIREMENTS.md, known contradictions), so a missed target is a finding shown in the report, not a failure of
    this session. Any other exit status (the drill could not run) fails it. Pass arguments after ``--`` to run
    other scenarios or repeats: ``nox -s drills -- engine-kill --repeat 5``."""
    args = list(session.posargs) or ["--all"]
    session.run("tradedrill", "drill", *args, "--subnet", DRILL_SUBNET, "--out", DRILL_OUT, success_codes=[0, 1],
                **OWN_TEARDOWN)


@nox.session
def thorough(session: nox.Session) -> None:
    """Every scenario at least 20 times, each run with its own seed (``tradedrill drill --all --profile thorough``):
    faults that land on work in flight hit a different instant in every run, so a race needs many runs to show.
    Exit status as for ``drills``. Long: about 40 s per run."""
    args = list(session.posargs) or ["--all"]
    session.run("tradedrill", "drill", *args, "--profile", "thorough", "--subnet", DRILL_SUBNET, "--out", DRILL_OUT,
                success_codes=[0, 1], **OWN_TEARDOWN)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark script; each prints its numbers and writes out/bench/<area>.json."""
    os.makedirs("out/bench", exist_ok=True)
    for script in sorted(glob.glob("benchmarks/bench_*.py")):
        session.run("python", script, *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Minutes of load with a seeded random fault of the fault table every 10 s (issue 16; ``tradedrill soak``):
    0 duplicates and 0 lost acknowledged signals, the RSS slope of every process, fds and processes before and
    after, in out/soak/soak.md and out/soak/soak.json (the report's "Verification power" section reads the json).
    30 minutes by default (``TRADEDRILL_SOAK_MINUTES``); CI runs ``bash run.sh soak --minutes 2``. Exit 1 when
    the verdict fails, 2 (one line) for options it refuses; an --every longer than half the soak injects no
    fault and says "passed under load only"."""
    args = list(session.posargs) or ["--minutes", os.environ.get("TRADEDRILL_SOAK_MINUTES", "30")]
    session.run("tradedrill", "soak", *args, **OWN_TEARDOWN)


@nox.session
def variants(session: nox.Session) -> None:
    """Verification power (issue 16): every broken engine of tests/variants against the stateful test and the
    engine drills; the catch rate in out/verification/. Up to TRADEDRILL_VARIANT_SEARCH_S (300) seconds of search a variant, then the library drills: about 41 minutes for all 13."""
    session.env["TRADEDRILL_VARIANT_SWEEP"] = "1"
    session.run("pytest", "tests/variants", "-p", "no:cacheprovider", "-rA", *session.posargs, **OWN_TEARDOWN)
