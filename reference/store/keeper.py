"""The store keeper: one background thread per process that snapshots the journal after changes (DDB-2), checks
its health (DDB-6) and resyncs ``failed_syncs`` (BR-2), so the trading thread never waits for any of it.

On a failed health check the journal is rewritten from its in-memory copy (every committed write is there) and
the damaged file kept (``Journal.rebuild_from_memory``); every finding is one event and one alert whose message
names the file and what was seen.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .failed_syncs import Resync
from .snapshots import SnapshotError


class StoreKeeper:
    """Keeps ``journal`` (an object with ``snapshot()``, ``health()``, ``rebuild_from_memory(saw)``, ``path``):
    a snapshot at most every ``snapshot_s`` seconds and only after a change (DDB-2: 0.5 s), a health check every
    ``health_s`` (DDB-6: 1 s), and ``resync.run_due`` on every tick (``tick_s``). ``emit(event, **fields)`` and
    ``alert(kind, message, **fields)`` report. Raises ValueError for a non-positive interval."""

    def __init__(self, journal: Any, *, emit: Callable[..., None], alert: Callable[..., None],
                 snapshot_s: float = 0.5, health_s: float = 1.0, resync: Resync | None = None,
                 tick_s: float = 0.1):
        if snapshot_s <= 0 or health_s <= 0 or tick_s <= 0:
            raise ValueError("store keeper intervals must be positive (DDB-2: 0.5 s snapshots, DDB-6: 1 s health)")
        self.journal = journal
        self.emit = emit
        self.alert = alert
        self.snapshot_s = snapshot_s
        self.health_s = health_s
        self.tick_s = min(tick_s, snapshot_s, health_s)
        self.resync = resync
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_snapshot = 0.0
        self._next_health = 0.0
        self._snapshot_failing = False
        self.snapshots_taken = 0
        self.health_checks = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-keeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the keeper must outlive any one failure; it reports it
                self.emit("store_keeper_error", error=repr(exc))
            self._stop.wait(self.tick_s)

    def run_once(self, now: float) -> None:
        """One tick: whatever is due at monotonic time ``now``."""
        if now >= self._next_health:
            self._next_health = now + self.health_s
            self.check_health()
        if now >= self._next_snapshot:
            self._next_snapshot = now + self.snapshot_s
            self.take_snapshot()
        if self.resync is not None:
            counts = self.resync.run_due(int(time.time() * 1000))
            if counts["synced"] or counts["failed"]:
                self.emit("failed_syncs_resync", **counts)

    def take_snapshot(self) -> None:
        try:
            info = self.journal.snapshot()
        except SnapshotError as exc:
            self.emit("snapshot_failed", error=str(exc))
            if not self._snapshot_failing:   # one alert per failing streak, not two a second
                self.alert("snapshot_failed", f"{exc}; the journal itself is unaffected, but a repair would "
                           f"restore an older snapshot until this is fixed (DDB-2)", file=str(self.journal.path))
            self._snapshot_failing = True
            return
        if info is not None:
            if self._snapshot_failing:
                self.emit("snapshot_recovered", file=info.file)
            self._snapshot_failing = False
            self.snapshots_taken += 1
            self.emit("snapshot", file=info.file, hwm=info.hwm, bytes=info.bytes, took_s=info.took_s)

    def check_health(self) -> None:
        self.health_checks += 1
        problem = self.journal.health()
        if problem is None:
            return
        self.emit("journal_unhealthy", file=str(self.journal.path), problem=problem)
        try:
            repair = self.journal.rebuild_from_memory(problem)
        except Exception as exc:  # noqa: BLE001 - JournalError: reported; the engine's own writes will fail too
            self.emit("journal_repair_failed", file=str(self.journal.path), error=str(exc))
            self.alert("journal_repair_failed", str(exc), file=str(self.journal.path))
            return
        self.emit("journal_repaired", **repair.fields())
        self.alert("journal_repaired", repair.line, file=repair.file, evidence=repair.evidence)
