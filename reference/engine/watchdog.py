"""The deadlock watchdog (ENG-3): alive but no progress counts as a crash.

The main loop calls :meth:`Watchdog.beat` on every turn (and inside long loops). A daemon thread checks that the
last beat is younger than ``watchdog_timeout_s``; if not, it writes a ``watchdog_exit`` event with every thread's
stack and leaves the process with status 70, so the supervisor restarts it like any crash. A process that was
*paused* (SIGSTOP) is not deadlocked: when the watchdog thread itself wakes much later than it asked to, it resets
the baseline instead of firing.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Callable

EXIT_DEADLOCK = 70


class Watchdog:
    def __init__(self, timeout_s: float, emit: Callable[..., None], on_fire: Callable[[], None] | None = None):
        self.timeout_s = timeout_s
        self.emit = emit
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._on_fire = on_fire or (lambda: os._exit(EXIT_DEADLOCK))
        self.what = "starting"

    def beat(self, what: str = "") -> None:
        self._last = time.monotonic()
        if what:
            self.what = what

    def start(self) -> None:
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        period = max(0.05, min(1.0, self.timeout_s / 10))
        expected = time.monotonic() + period
        while not self._stop.wait(period):
            now = time.monotonic()
            if now - expected > max(1.0, 2 * period):
                self._last = now  # we were paused (SIGSTOP) ourselves: not a deadlock of the main loop
            expected = now + period
            stalled = now - self._last
            if stalled > self.timeout_s:
                stacks = {t.name: "".join(traceback.format_stack(sys._current_frames()[t.ident]))
                          for t in threading.enumerate() if t.ident in sys._current_frames()}
                self.emit("watchdog_exit", stalled_s=round(stalled, 3), last_step=self.what, stacks=stacks)
                self._on_fire()
                return
