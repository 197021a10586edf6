"""Shared pytest configuration: hypothesis profiles (ci, dev, soak) as named settings, like Hypothesis itself; and
SIGTERM handled like Ctrl-C.

SIGTERM (``timeout``, a CI runner, ``kill``) used to end pytest at once, fixtures and all: every stack a fixture had
started (the stateful test's, the variant sweep's) kept running, parent pid 1. Now it raises KeyboardInterrupt in
the main thread, as Ctrl-C does, so pytest unwinds and every fixture's teardown stops what it started (after any
critical section of ``tradedrill.process``: a node being started is recorded first). A second SIGTERM within
``SIGTERM_GRACE_S`` is ignored, with a message (the teardown is running); a later one interrupts again. SIGKILL
cannot be handled: what it leaves is in the stack index, and ``tradedrill down --subnet S`` stops it."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from hypothesis import HealthCheck, settings

from tradedrill import process

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("soak", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SIGTERM_GRACE_S = 10.0
_first_sigterm: float | None = None
_installed = False


def _sigterm_as_ctrl_c(signum, _frame) -> None:
    global _first_sigterm
    now = time.monotonic()
    if _first_sigterm is not None and now - _first_sigterm < SIGTERM_GRACE_S:
        sys.stderr.write(f"\nSIGTERM ignored: pytest is tearing its fixtures down (stopping the stacks they "
                         f"started); send it again after {SIGTERM_GRACE_S:.0f} s to interrupt that too\n")
        return
    _first_sigterm = now
    sys.stderr.write("\nSIGTERM: interrupting like Ctrl-C; the fixtures' teardown stops every stack they started\n")
    process.interrupt(KeyboardInterrupt(signal.Signals(signum).name))


def pytest_configure(config) -> None:  # noqa: ARG001
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):   # never over a handler somebody else set
        signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
        _installed = True


def pytest_unconfigure(config) -> None:  # noqa: ARG001
    global _installed
    if _installed and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _sigterm_as_ctrl_c:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _installed = False
