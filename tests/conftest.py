"""Shared pytest configuration: hypothesis profiles (ci, dev, soak) as named settings, like Hypothesis itself; and
SIGTERM handled like Ctrl-C; and the groups that let ``nox -s tests`` run two pytest-xdist workers side by side.

SIGTERM (``timeout``, a CI runner, ``kill``) used to end pytest at once, fixtures and all: every stack a fixture had
started (the stateful test's, the variant sweep's) kept running, parent pid 1. Now it raises KeyboardInterrupt in
the main thread, as Ctrl-C does, so pytest unwinds and every fixture's teardown stops what it started (after any
critical section of ``tradedrill.process``: a node being started is recorded first). A second SIGTERM within
``SIGTERM_GRACE_S`` is ignored, with a message (the teardown is running); a later one interrupts again. SIGKILL
cannot be handled: what it leaves is in the stack index, and ``tradedrill down --subnet S`` stops it.

Under pytest-xdist (``nox -s tests``) the controller passes SIGTERM and SIGINT on to its workers and waits for them;
each worker handles SIGTERM and SIGINT as above (a Ctrl-C at a terminal reaches every process of the group at once:
the second signal a worker gets is the one ignored). The kernel may hand a worker's signal to another of its
threads (execnet's): the handler then runs when the main thread next runs Python code, so a test blocked in one
long call (a ``time.sleep(120)``, not a ``wait_until`` poll) is interrupted when that call returns."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tradedrill import process

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("soak", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SIGTERM_GRACE_S = 10.0
_first_sigterm: float | None = None
_installed: list[int] = []          # the signals whose handler this file set


def _again_within_grace(name: str, busy: str) -> bool:
    """True (and says so) when a signal came again within ``SIGTERM_GRACE_S`` of the first: ignored while ``busy``."""
    if _first_sigterm is not None and time.monotonic() - _first_sigterm < SIGTERM_GRACE_S:
        sys.stderr.write(f"\n{name} ignored: {busy}; send it again after {SIGTERM_GRACE_S:.0f} s to interrupt that "
                         f"too\n")
        return True
    return False


def _sigterm_as_ctrl_c(signum, _frame) -> None:
    global _first_sigterm
    name = signal.Signals(signum).name
    if _again_within_grace(name, "pytest is tearing its fixtures down (stopping the stacks they started)"):
        return
    _first_sigterm = time.monotonic()
    sys.stderr.write(f"\n{name}: interrupting like Ctrl-C; the fixtures' teardown stops every stack they started\n")
    process.interrupt(KeyboardInterrupt(name))


def _to_the_workers(signum, _frame) -> None:
    """The pytest-xdist controller's SIGTERM and SIGINT: passed on to its workers (its only children: collection
    and tests run in them), each of which tears its fixtures down as after Ctrl-C and reports back; the controller
    then ends as interrupted (exit 2). Raising here instead made xdist end its workers 5-10 s later, in the middle
    of a stack's teardown. Again within ``SIGTERM_GRACE_S``: ignored; later: the controller is interrupted too."""
    global _first_sigterm
    name = signal.Signals(signum).name
    if _again_within_grace(name, "the test workers are tearing their fixtures down"):
        return
    if _first_sigterm is not None:
        process.interrupt(KeyboardInterrupt(name))
    _first_sigterm = time.monotonic()
    sent = process.signal_children(signal.SIGTERM)
    sys.stderr.write(f"\n{name}: passed to the {sent} test worker(s); each tears its stacks down as after "
                     f"Ctrl-C, then pytest exits\n")


def subnet_settings_problem(environ=os.environ) -> str | None:
    """Why a ``TRADEDRILL_*_SUBNET`` (or ``..._SUBNETS=A,B``) setting cannot place a test's stack, or None: each
    value must be three loopback octets (the docker ones a /24 of the docker provider's block). A new user's
    ``TRADEDRILL_STATEFUL_SUBNET=10.0.0`` was a 45-line setup error of every stateful test."""
    from tradedrill.topology import TopologyError, _check_subnet

    for key in sorted(environ):
        if not key.startswith("TRADEDRILL_") or not key.endswith(("_SUBNET", "_SUBNETS")):
            continue
        network = "docker" if "DOCKER" in key else "loopback"
        for value in environ[key].split(",") if key.endswith("S") else [environ[key]]:
            try:
                _check_subnet(value.strip(), network)
            except TopologyError as exc:
                example = "172.30.17" if network == "docker" else "127.0.140"
                return f"{key}={environ[key]!r}: {exc}; unset it or give e.g. {key}={example}"
    return None


def pytest_configure(config) -> None:
    problem = subnet_settings_problem()
    if problem:   # one line, exit 4, before any stack starts
        raise pytest.UsageError(problem)
    if threading.current_thread() is not threading.main_thread():
        return
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")
    worker = hasattr(config, "workerinput")
    handler = _to_the_workers if controller else _sigterm_as_ctrl_c
    wanted = [signal.SIGTERM] + ([signal.SIGINT] if controller or worker else [])
    for signum in wanted:   # never over a handler somebody else set
        if signal.getsignal(signum) in (signal.SIG_DFL, None, signal.default_int_handler):
            signal.signal(signum, handler)
            _installed.append(signum)


def pytest_unconfigure(config) -> None:  # noqa: ARG001
    if threading.current_thread() is threading.main_thread():
        while _installed:
            signum = _installed.pop()
            if signal.getsignal(signum) in (_sigterm_as_ctrl_c, _to_the_workers):
                signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)


# -- side by side: pytest-xdist with the scheduler below (noxfile.py's tests session: ``-n 2 --dist loadscope``) ------
# Each test folder owns its loopback block(s) (tests/engine 127.0.5, tests/drills 127.0.6, tests/stateful 127.0.93,
# ...), and its modules start stacks at the same addresses and ports one after another: a folder is one scope, run
# by one worker in order. A module that owns a block of its own is a scope of its own, so a large folder splits.
# Two scopes never share a block (tests/test_groups.py). Why a scheduler and not ``xdist_group`` marks with
# ``--dist loadgroup``: with pytest 9.2 loadgroup ignores the marks (pytest-xdist#1386, open: it renames node ids,
# which pytest 9.2 no longer lets it do) and every folder's tests were spread over both workers, into each other's
# addresses (22 failed). ``pytest_xdist_make_scheduler`` and ``_split_scope`` are xdist's own extension points.
TESTS = Path(__file__).resolve().parent
OWN_GROUPS = {                                    # module (relative to tests/) -> the block(s) only it uses
    "stack/test_local_stack.py": "127.0.2",
    "stack/test_up_stack_protected.py": "127.0.122",
    "drills/test_interrupt.py": "127.0.60",
    "security/test_drill_secrets.py": "127.0.61",
    "scenarios/test_redis_partition_package.py": "127.0.63",
    "scenarios/test_conformance_stack.py": "127.0.107",
    "settings/test_postgres.py": "127.0.72",
    "settings/test_engine_logins.py": "127.0.77",
    "store/test_engine_repair.py": "127.0.71",
    "store/test_clickhouse_try_deadline.py": "127.0.114",
    "stateful/test_killed_pytest.py": "127.0.127+128",
    "soak/test_soak_interrupt.py": "127.0.123",
    "load/test_load_drill.py": "127.0.87",
}


def scope_of(path: Path) -> str | None:
    """The scope of the test module at ``path``: its own block's name, else its folder under tests/; None for a
    module outside tests/ (a test's own pytest run of a file it wrote)."""
    try:
        rel = path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None
    if rel in OWN_GROUPS:
        return f"{rel} ({OWN_GROUPS[rel]})"
    return rel.split("/")[0] if "/" in rel else "tests"


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadscope``: xdist's scope scheduler with our scopes (largest first, as loadscope orders them)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LoopbackBlockScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return scope_of(Path(config.rootpath) / path) or nodeid

    return LoopbackBlockScheduling(config, log)
