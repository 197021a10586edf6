"""The engine's structured event log: one JSON object per line, flushed per line (the drills read it live).

Every line has ``ts`` (wall-clock epoch seconds), ``mono`` (this process's monotonic clock), ``instance``,
``pid`` and ``event``, plus the event's own fields. Events: ``engine_start``, ``lease_acquired`` (token, previous,
wait_s), ``lease_lost``, ``takeover_ready`` (seconds from acquisition to trading), ``reconcile`` (signal_id, found,
ticket), ``signal_received`` (signal_id, entry_id), ``signal_rejected`` (code, reason), ``intent_written``,
``order_send_invoke`` (signal_id, comment, attempt, broker), ``order_send_complete`` (outcome ok|fail|unknown,
retcode, order, deal), ``outcome`` (status), ``ack`` (entry_id), ``alert``, ``broker_*``, ``redis_*``,
``watchdog_exit``, ``engine_stop``.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path


class EventLog:
    def __init__(self, path: str | Path | None, instance: str, echo: bool = False):
        self.instance = instance
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._file = None
        self.echo = echo
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=1, encoding="utf-8")

    def __call__(self, event: str, **fields) -> None:
        record = {"ts": round(time.time(), 6), "mono": round(time.monotonic(), 6), "instance": self.instance,
                  "pid": self.pid, "event": event}
        record.update(fields)
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
            if self.echo:
                sys.stderr.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
