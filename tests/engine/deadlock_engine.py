"""Test-only engine entry point (ENG-3): the real engine, except that the first time a signal whose id ends with
``-deadlock`` has been sent to the broker, the main thread blocks forever on a lock before it records the outcome.

The process stays alive (lease heartbeat and watchdog threads keep running) but the main loop makes no progress
while work is pending - a real deadlock, which only the engine's own watchdog can turn into an exit. A marker file
in the state directory makes it happen once, so the restarted process can finish the signal.

``python -m tests.engine.deadlock_engine run --config FILE --instance A --state-dir DIR`` (same options as
``python -m reference.engine run``). Nothing of this lives in production code.
"""
from __future__ import annotations

import sys
import threading

import reference.engine.engine as engine_module
from reference.cli import engine as engine_cli

_Engine = engine_module.Engine


class DeadlockingEngine(_Engine):
    def finish_many(self, items):
        for intent, state, _code, _reason, extra in items:
            marker = self.state_dir / f"deadlocked-{intent.signal_id}"
            if intent.signal_id.endswith("-deadlock") and intent.attempt > 0 and not marker.exists():
                marker.write_text("the main loop deadlocked here\n")
                self.emit("test_deadlock", signal_id=intent.signal_id, state=state, order=extra.get("order"))
                lock = threading.Lock()
                lock.acquire()
                lock.acquire()   # never returns: the main loop is stuck with a sent order and no recorded outcome
        return super().finish_many(items)


engine_module.Engine = DeadlockingEngine   # reference.cli's run command imports Engine from this module at call time

if __name__ == "__main__":
    sys.exit(engine_cli())
