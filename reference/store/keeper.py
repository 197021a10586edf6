"""The store keeper: one background thread per process that snapshots the journal after changes (DDB-2), checks
its health (DDB-6) and resyncs ``failed_syncs`` (BR-2), so the trading thread never waits for any of it.

The health check (``Journal.health``) looks at the file's bytes on disk, not only at the running DuckDB (which
answers from the blocks it holds in memory): a cut file on every check, flipped bytes through the block checksums
(``reference.store.blocks``). On a failed health check the journal is rewritten from its in-memory copy (every
committed write is there) and the damaged file kept (``Journal.rebuild_from_memory``); every finding is one event
and one alert whose message names the file and what was seen.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .failed_syncs import Resync
from .nospace import no_space
from .snapshots import SnapshotError

# DDB-6 asks for damage to be found within ``health_s`` of happening. A check that starts ``health_s`` after the
# previous one started finds damage that landed just behind its reader only after ``health_s`` + its own cost +
# the thread's wake-up delay (measured in the truncate drill: 1.002 s). So the next check starts ``health_s`` less
# the last check's cost less this slack after the previous start (never sooner than half of ``health_s``).
HEALTH_SLACK_S = 0.05


class StoreKeeper:
    """Keeps ``journal`` (an object with ``snapshot()``, ``health()``, ``rebuild_from_memory(saw)``, ``path``):
    a snapshot at most every ``snapshot_s`` seconds and only after a change (DDB-2: 0.5 s), a health check often
    enough that damage is found within ``health_s`` (DDB-6: 1 s; see ``HEALTH_SLACK_S``), and ``resync.run_due`` on
    every tick (``tick_s``). A full disk (``journal.disk_full``) is reported once per streak (``journal_disk_full``
    event and alert, ``journal_disk_ok`` when a write succeeds again), never taken for damage. ``emit(event, **fields)`` and
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
        self._disk_full = ""
        self._repair_failing = False
        self.last_check_s = 0.0
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
            self._stop.wait(max(0.0, min(self.tick_s, self._next_health - time.monotonic())))

    def run_once(self, now: float) -> None:
        """One tick: whatever is due at monotonic time ``now``."""
        if now >= self._next_health:
            started = time.monotonic()
            self.check_health()
            self.last_check_s = time.monotonic() - started
            self._next_health = now + max(self.health_s / 2, self.health_s - self.last_check_s - HEALTH_SLACK_S)
        self.watch_disk()
        if now >= self._next_snapshot:
            self._next_snapshot = now + self.snapshot_s
            self.take_snapshot()
        if self.resync is not None:
            try:
                counts = self.resync.run_due(int(time.time() * 1000))
            except Exception as exc:  # noqa: BLE001 - a full disk refuses the try's record: said by watch_disk
                if not no_space(exc):
                    raise
                self.watch_disk()
                return
            if counts["synced"] or counts["failed"]:
                self.emit("failed_syncs_resync", **counts)

    def watch_disk(self) -> None:
        """One event and alert when the journal's writes start being refused for lack of space, one event when
        they succeed again."""
        full = getattr(self.journal, "disk_full", "")
        if full and not self._disk_full:
            self.emit("journal_disk_full", file=str(self.journal.path), problem=full)
            self.alert("journal_disk_full", full, file=str(self.journal.path))
        elif self._disk_full and not full:
            self.emit("journal_disk_ok", file=str(self.journal.path))
        self._disk_full = full

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
        off = getattr(self.journal, "block_check_off", "")
        if self.health_checks == 1 and off:   # said once: the check runs, but cannot see flipped bytes
            self.emit("journal_block_check_off", file=str(self.journal.path), reason=off)
            self.alert("journal_block_check_off", off, file=str(self.journal.path))
        problem = self.journal.health()
        if problem is None:
            return
        self.emit("journal_unhealthy", file=str(self.journal.path), problem=problem)
        try:
            repair = self.journal.rebuild_from_memory(problem)
        except Exception as exc:  # noqa: BLE001 - JournalError: reported; the engine's own writes will fail too
            self.emit("journal_repair_failed", file=str(self.journal.path), error=str(exc))
            if not self._repair_failing:   # one alert per failing streak (a full disk: tried every check)
                self.alert("journal_repair_failed", str(exc), file=str(self.journal.path))
            self._repair_failing = True
            return
        self._repair_failing = False
        self.emit("journal_repaired", **repair.fields())
        self.alert("journal_repaired", repair.line, file=repair.file, evidence=repair.evidence)
