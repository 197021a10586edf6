"""The shape every fault shares: inject, heal, describe; the fault log; the record of what is still broken.

A fault is one small object (Jepsen's nemesis): the scenario decides *when*, the fault decides *how*. Every fault
is a context manager, ``heal()`` is idempotent, and a fault that is still active when the interpreter leaves
(an exception, Ctrl-C, SIGTERM through :func:`install_signal_handlers`) is healed by an ``atexit`` hook. What a
crashed run leaves behind (proxies, toxics, nftables tables, tmpfs mounts) is recorded in a state file that
``tradedrill faults heal-all`` reads.

Fault log line schema (JSON lines, one object per line, appended and flushed at once; the scenario runner reads
these to shade fault windows and compute RTO from ``mono``):

    {
      "event": "inject" | "heal" | "inject-failed" | "heal-failed",
      "fault": "link-latency",                # the fault's kind (class-level ``name``)
      "fault_id": "link-latency-3",           # unique within the process; pairs an inject with its heal
      "description": "latency 200±20 ms downstream on proxy redis-primary",
      "requirements": ["RDS-2", "ENG-1"],     # requirement IDs the fault exercises
      "wall": "2025-01-01T12:00:00.123456+00:00",  # ISO-8601 UTC wall clock
      "wall_ts": 1735732800.123456,           # the same instant, seconds since the epoch
      "mono": 12345.678901,                   # time.monotonic(), same clock as the history
      "details": {...},                       # fault-specific (proxy, toxic attributes, addresses, pid, ...)
      "error": "..."                          # only on *-failed events
    }

The ``mono`` of an ``inject`` line is written *after* the fault took effect and the ``mono`` of a ``heal`` line
after the heal completed, so a fault window is [inject.mono, heal.mono].
"""
from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import itertools
import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

STATE_ENV = "TRADEDRILL_FAULTS_STATE"
DEFAULT_STATE_PATH = Path(".tradedrill") / "faults-state.json"


def default_state_path() -> Path:
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_PATH)


class FaultError(RuntimeError):
    """A fault could not be injected or healed; the message says what to check."""


class UnsafeTarget(FaultError):
    """A fault was aimed at an address or path outside what the run owns."""


# -- the fault log ---------------------------------------------------------------------------------------------
class FaultLog:
    """Append-only JSON-lines log of injections and heals (schema in the module docstring)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, fault: "Fault", details: dict | None = None, error: str | None = None) -> dict:
        now_wall = time.time()
        line = {
            "event": event,
            "fault": fault.name,
            "fault_id": fault.fault_id,
            "description": fault.describe(),
            "requirements": list(fault.requirement_ids),
            "wall": _dt.datetime.fromtimestamp(now_wall, _dt.timezone.utc).isoformat(),
            "wall_ts": now_wall,
            "mono": time.monotonic(),
            "details": details if details is not None else fault.details(),
        }
        if error is not None:
            line["error"] = error
        if self.path is not None:
            text = json.dumps(line, default=str) + "\n"
            with self._lock, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
        return line

    def read(self) -> list[dict]:
        if self.path is None or not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


_NULL_LOG = FaultLog(None)


# -- leftovers a crashed run must be able to clean ------------------------------------------------------------
def untrusted_state_file(path: Path) -> str | None:
    """Why a fault state file must not be acted on, or None: it must belong to this user and be writable by no
    one else, or a local user could make root's ``heal-all`` or ``down`` unmount a filesystem or delete a rule
    it names."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be examined: {exc.strerror or exc}"
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"others can write it (mode {st.st_mode & 0o777:o})"
    return None


STATE_LOCK_WAIT_S = 30.0   # how long FaultState waits for another process's read-modify-write of the file (ms each)


class FaultState:
    """A JSON file of resources that active faults created outside this process (proxies, toxics, nftables
    tables, mounts), keyed by kind. Faults ``add`` on inject and ``remove`` on heal; ``heal-all`` reads the rest."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_state_path()
        self._lock = threading.Lock()

    def _read(self) -> dict[str, list[dict]]:
        if untrusted_state_file(self.path):
            return {}  # never act on records another user could have written (e.g. unmount what they name)
        try:
            doc = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write(self, state: dict[str, list[dict]]) -> None:
        state = {k: v for k, v in state.items() if v}
        if not state:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _exclusive(self):
        """This process's threads and every other process one at a time (``tradedrill.process.flocked``, at most
        ``STATE_LOCK_WAIT_S``): two drills or two test workers sharing the file read-modify-wrote it at once and lost
        each other's records."""
        from tradedrill.process import LockUnavailable, flocked

        try:
            with flocked(self.path, self._lock, wait_s=STATE_LOCK_WAIT_S):
                yield
        except LockUnavailable as exc:
            raise FaultError(f"{exc} (the lock of the fault state file; {STATE_ENV} names another file)") from None

    def add(self, kind: str, record: dict) -> None:
        with self._exclusive():
            state = self._read()
            entries = state.setdefault(kind, [])
            if record not in entries:
                entries.append(record)
            self._write(state)

    def remove(self, kind: str, record: dict) -> None:
        with self._exclusive():
            state = self._read()
            state[kind] = [r for r in state.get(kind, []) if r != record]
            self._write(state)

    def entries(self) -> dict[str, list[dict]]:
        with self._lock:
            return self._read()


# -- the registry of active faults -----------------------------------------------------------------------------
class _ActiveFaults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._atexit = False

    def add(self, fault: "Fault") -> None:
        with self._lock:
            self._faults[fault.fault_id] = fault
            if not self._atexit:
                atexit.register(self.heal_all)
                self._atexit = True

    def discard(self, fault: "Fault") -> None:
        with self._lock:
            self._faults.pop(fault.fault_id, None)

    def active(self) -> list["Fault"]:
        with self._lock:
            return list(self._faults.values())

    def heal_all(self) -> list[str]:
        """Heal every active fault, newest first; return the errors instead of stopping at the first."""
        errors = []
        for fault in reversed(self.active()):
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001 - the other faults must still be healed
                errors.append(f"{fault.fault_id}: {exc!r}")
        return errors


ACTIVE = _ActiveFaults()


def active_faults() -> list["Fault"]:
    return ACTIVE.active()


def heal_active() -> list[str]:
    """Heal every fault this process still has active (what atexit does)."""
    return ACTIVE.heal_all()


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP leave through ``SystemExit`` so context managers and atexit heal the faults.
    SIGINT already raises KeyboardInterrupt, which unwinds every ``with fault:``. Call from the main thread."""

    def _leave(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _leave)


_ids = itertools.count(1)


class Fault:
    """Base class: subclasses set ``name`` and ``requirement_ids`` and implement ``_inject`` and ``_heal``.

    ``inject()`` is refused while the fault is active; ``heal()`` is a no-op unless it is. Both write the fault log.
    """

    name = "fault"
    requirement_ids: Sequence[str] = ()

    def __init__(self, *, log: FaultLog | None = None, requirements: Iterable[str] | None = None,
                 state: FaultState | None = None):
        self.log = log or _NULL_LOG
        if requirements is not None:
            self.requirement_ids = tuple(requirements)
        self.state = state
        self.fault_id = f"{self.name}-{next(_ids)}"
        self.active = False
        self.injected_at: float | None = None
        self.healed_at: float | None = None
        self._lock = threading.RLock()

    # subclasses -------------------------------------------------------------------------------------------------
    def _inject(self) -> None:
        raise NotImplementedError

    def _heal(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def details(self) -> dict[str, Any]:
        return {}

    # public -----------------------------------------------------------------------------------------------------
    def inject(self) -> "Fault":
        with self._lock:
            if self.active:
                raise FaultError(f"{self.fault_id} is already injected; heal it before injecting it again")
            ACTIVE.add(self)
            self.active = True
            try:
                self._inject()
            except BaseException as exc:
                self.log.write("inject-failed", self, error=repr(exc))
                try:
                    self._heal()
                except Exception:  # noqa: BLE001 - undo what part of the injection took effect
                    pass
                self.active = False
                ACTIVE.discard(self)
                raise
            self.injected_at = time.monotonic()
            self.log.write("inject", self)
            return self

    def heal(self) -> None:
        with self._lock:
            if not self.active:
                return
            try:
                self._heal()
            except BaseException as exc:
                self.log.write("heal-failed", self, error=repr(exc))
                raise
            self.active = False
            self.healed_at = time.monotonic()
            ACTIVE.discard(self)
            self.log.write("heal", self)

    def __enter__(self) -> "Fault":
        return self.inject()

    def __exit__(self, *exc) -> None:
        self.heal()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fault_id} {'active' if self.active else 'healed'}: {self.describe()}>"


class Composite(Fault):
    """Several faults injected together (in order) and healed together (in reverse order)."""

    name = "composite"

    def __init__(self, faults: Sequence[Fault], description: str | None = None, **kw):
        super().__init__(**kw)
        self.faults = list(faults)
        self._description = description
        if "requirements" not in kw:
            self.requirement_ids = tuple(dict.fromkeys(r for f in self.faults for r in f.requirement_ids))

    def _inject(self) -> None:
        for fault in self.faults:
            fault.inject()

    def _heal(self) -> None:
        errors = []
        for fault in reversed(self.faults):
            try:
                fault.heal()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
        if errors:
            raise FaultError("; ".join(errors))

    def describe(self) -> str:
        return self._description or " + ".join(f.describe() for f in self.faults)

    def details(self) -> dict:
        return {"faults": [f.fault_id for f in self.faults]}


def rng_for(seed: int | str | random.Random | None, *scope: object) -> random.Random:
    """A Random derived from the run's seed and a scope (fault name, proxy name), so every random choice of
    a run replays from its seed and two faults do not share (and perturb) one stream."""
    if isinstance(seed, random.Random):
        return seed
    if seed is None:
        raise FaultError("a seed is required: every random choice of a run comes from the run's seed")
    return random.Random(":".join(str(s) for s in (seed, *scope)))
