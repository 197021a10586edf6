"""The store keeper: one background thread per process that snapshots the journal after changes (DDB-2), checks
its health (DDB-6) and resyncs ``failed_syncs`` (BR-2), so the trading thread never waits for any of it.

The health check (``Journal.health``) looks at the file's bytes on disk, not only at the running DuckDB (which
answers from the blocks it holds in memory): a cut file on every check, flipped bytes through the block checksums
(``reference.store.blocks``). On a failed health check the journal is rewritten from its in-memory copy (every
committed write is there) and the damaged file kept (``Journal.rebuild_from_memory``); every finding is one event
and one alert whose message names the file and what was seen.
"""
from __future__ import annotations

import math
import re
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
# DDB-2 asks for a snapshot every ``snapshot_s``: the keeper wakes when one is due (not on its next 0.1 s tick) and
# schedules the next one this much early, so the thread's wake-up delay does not stretch the interval past it.
SNAPSHOT_SLACK_S = 0.02


def mib_of(text: str) -> float | None:
    """DuckDB's spelling of a size ('15.2 MiB', '256.0 MiB', '1.0 GiB', '16MB', '0 bytes') in MiB; None when it is
    not one."""
    parts = str(text).replace("bytes", " B").split()
    if len(parts) == 1:
        m = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", parts[0])
        parts = [m.group(1), m.group(2) or "B"] if m else []
    if len(parts) != 2:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    scale = {"B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
             "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}.get(parts[1].upper())
    return None if scale is None else value * scale / (1 << 20)


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
        self.wal_bytes_max = 0

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
            now = time.monotonic()
            self._stop.wait(max(0.0, min(self.tick_s, self._next_health - now, self._next_snapshot - now)))

    def run_once(self, now: float) -> None:
        """One tick: whatever is due at monotonic time ``now``; a health check and a snapshot due in the same tick
        run in the order they fell due, each scheduled from when it really started (so one does not stretch the
        other's interval by its own cost more than once)."""
        tick = time.monotonic()
        due = sorted(((self._next_health, 0) if now >= self._next_health else (math.inf, 0),
                      (self._next_snapshot, 1) if now >= self._next_snapshot else (math.inf, 1)))
        for when, which in due:
            if when == math.inf:
                continue
            started = now + (time.monotonic() - tick)
            if which == 0:
                self._health_step(started)
                self.watch_disk()
            else:
                self._next_snapshot = started + max(self.snapshot_s / 2, self.snapshot_s - SNAPSHOT_SLACK_S)
                self.take_snapshot()
        self.watch_disk()
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

    def _health_step(self, started: float) -> None:
        t0 = time.monotonic()
        ok = self.check_health()
        self.last_check_s = time.monotonic() - t0
        self._next_health = started + max(self.health_s / 2, self.health_s - self.last_check_s - HEALTH_SLACK_S)
        wal = self._wal_bytes()
        self.wal_bytes_max = max(self.wal_bytes_max, wal)
        # one line per check: DDB-6's interval and DDB-1's WAL size are measured from these, not assumed
        self.emit("journal_health", ok=ok, took_s=round(self.last_check_s, 6), wal_bytes=wal)

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
            self.emit("snapshot", file=info.file, hwm=info.hwm, bytes=info.bytes, took_s=info.took_s,
                      on_disk=self._snapshots_on_disk())

    def _snapshots_on_disk(self) -> int | None:
        """The snapshot files in the backup folder now (its listing, not the configuration: DDB-2's count)."""
        snaps = getattr(self.journal, "snapshots", None)
        folder, stem = getattr(snaps, "folder", None), getattr(snaps, "stem", None)
        if folder is None or stem is None:
            return None
        try:
            return sum(1 for _ in folder.glob(f"{stem}.h*.t*.duckdb"))
        except OSError:
            return None

    def _wal_bytes(self) -> int:
        wal = getattr(self.journal, "wal_path", None)
        try:
            return wal.stat().st_size if wal is not None else 0
        except OSError:
            return 0

    def report_settings(self) -> None:
        """One ``store_settings`` event: DDB-1's WAL settings read from the running DuckDB (``live_settings``), and
        the keeper's own intervals (DDB-2, DDB-6) and the snapshots kept, so a run records what it ran with."""
        fields: dict[str, Any] = {"file": str(self.journal.path), "snapshot_interval_s": self.snapshot_s,
                                  "health_interval_s": self.health_s,
                                  "snapshots_kept": getattr(getattr(self.journal, "snapshots", None), "kept", None)}
        live = getattr(self.journal, "live_settings", None)
        if live is not None:
            try:
                settings = live()
            except Exception as exc:  # noqa: BLE001 - said, never fatal: the journal's own checks go on
                fields["error"] = f"{type(exc).__name__}: {exc}"
            else:
                fields.update(settings)
                fields["checkpoint_threshold_mib"] = mib_of(settings.get("checkpoint_threshold", ""))
        self.emit("store_settings", **fields)

    def check_health(self) -> bool:
        """One health check; True when the journal was sound."""
        self.health_checks += 1
        if self.health_checks == 1:
            self.report_settings()
        off = getattr(self.journal, "block_check_off", "")
        if self.health_checks == 1 and off:   # said once: the check runs, but cannot see flipped bytes
            self.emit("journal_block_check_off", file=str(self.journal.path), reason=off)
            self.alert("journal_block_check_off", off, file=str(self.journal.path))
        garbled = getattr(self.journal, "mark_garbled", None)
        if self.health_checks == 1 and garbled:   # the silent-loss detector was blind at this start: said once
            mark = str(getattr(self.journal, "mark_path", ""))
            self.emit("journal_mark_ignored", file=mark, journal=str(self.journal.path), reason=garbled)
            self.alert("journal_mark_ignored", f"intent journal {self.journal.path}: {garbled}, so it could not "
                       f"show whether committed writes were lost before this start (the newest snapshot still "
                       f"could); nothing was moved, the mark is rewritten from the journal", file=mark)
        problem = self.journal.health()
        if problem is None:
            return True
        self.emit("journal_unhealthy", file=str(self.journal.path), problem=problem)
        try:
            repair = self.journal.rebuild_from_memory(problem)
        except Exception as exc:  # noqa: BLE001 - JournalError: reported; the engine's own writes will fail too
            self.emit("journal_repair_failed", file=str(self.journal.path), error=str(exc))
            if not self._repair_failing:   # one alert per failing streak (a full disk: tried every check)
                self.alert("journal_repair_failed", str(exc), file=str(self.journal.path))
            self._repair_failing = True
            return False
        self._repair_failing = False
        self.emit("journal_repaired", **repair.fields())
        self.alert("journal_repaired", repair.line, file=repair.file, evidence=repair.evidence)
        return False
