"""Damage to a JSON settings file (issue 13, CFG-1/CFG-2): what a crash mid-write, a stray editor or a bad copy leaves.

Modes (``CorruptJSON.MODES``), each replayable from the run's seed:

- ``truncate``: the file cut at a seeded offset (a torn write without the atomic rename);
- ``invalid-json``: one structural character (``:`` ``,`` ``{`` ``}`` ``[`` ``]`` ``"``) replaced by ``#`` (not JSON);
- ``wrong-type``: valid JSON, one seeded setting's value replaced by a value of another type (a number by a
  string, a string or a list by a number, true/false by a string);
- ``oversize``: the valid text padded with spaces past ``cap_bytes`` (10 KB, CFG-1) by a seeded 1..2048 bytes.

``CrashCorruptConfig`` damages the file of a running process that reads it only at start, then SIGKILLs the process,
so its restart (by a supervisor, or by the heal) loads the damaged file; damaging first leaves no race with a fast
restart. The original text is kept in the fault's details only as its size and SHA-256 (a settings file may hold
nothing secret, but the fault does not copy it anywhere).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

from faults.core import Fault, FaultError

KB = 1024


class CorruptJSON(Fault):
    name = "config-corrupt"
    MODES = ("truncate", "invalid-json", "wrong-type", "oversize")

    def __init__(self, path: str | os.PathLike, mode: str, rng: random.Random, *, cap_bytes: int = 10 * KB, **kw):
        super().__init__(**kw)
        if mode not in self.MODES:
            raise FaultError(f"config-corrupt mode {mode!r}: use one of {', '.join(self.MODES)}")
        self.path = Path(path)
        self.mode = mode
        self.rng = rng
        self.cap_bytes = cap_bytes
        self._details: dict[str, Any] = {"file": str(self.path), "mode": mode}

    def describe(self) -> str:
        return f"settings file {self.path.name}: {self.mode}"

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _inject(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise FaultError(f"cannot read the settings file {self.path}: {exc.strerror or exc}") from None
        damaged, what = damage(data, self.mode, self.rng, self.cap_bytes)
        with open(self.path, "r+b") as fh:   # in place, as a torn write or an editor would
            fh.write(damaged)
            fh.truncate(len(damaged))
            fh.flush()
            os.fsync(fh.fileno())
        self._details.update(bytes_before=len(data), bytes_after=len(damaged), what=what,
                             sha256_before=hashlib.sha256(data).hexdigest()[:16])

    def _heal(self) -> None:
        pass   # the damage stays: the reader must fall back to a backup and repair the file itself


def damage(data: bytes, mode: str, rng: random.Random, cap_bytes: int = 10 * KB) -> tuple[bytes, str]:
    """``data`` (a JSON settings text) damaged by ``mode``; and one line saying what was done. Raises FaultError when
    the text cannot be damaged that way (empty, or not a JSON object for ``wrong-type``)."""
    if not data:
        raise FaultError("the settings file is empty: nothing to damage")
    if mode == "truncate":
        cut = rng.randrange(1, len(data)) if len(data) > 1 else 0
        text = data[:cut]
        if _is_json(text):   # a cut that still parses (e.g. after a complete number at top level): cut further
            text = text[:max(0, len(text) - 1)]
        return text, f"cut at byte {len(text)} of {len(data)}"
    if mode == "invalid-json":
        spots = [i for i, b in enumerate(data) if b in b':,{}[]"']
        if not spots:
            raise FaultError("the settings file has no JSON structure to break")
        i = rng.choice(spots)
        text = data[:i] + b"#" + data[i + 1:]
        return text, f"byte {i} ({chr(data[i])!r}) replaced by '#'"
    if mode == "wrong-type":
        try:
            doc = json.loads(data)
        except ValueError:
            raise FaultError("the settings file is not JSON already; wrong-type needs a valid one") from None
        if not isinstance(doc, dict) or not doc:
            raise FaultError("the settings file is not a JSON object with settings")
        keys = sorted(k for k in doc if k != "version") or sorted(doc)
        key = rng.choice(keys)
        value = doc[key]
        if isinstance(value, bool) or isinstance(value, (int, float)):
            doc[key] = f"not-a-{type(value).__name__}"
        elif isinstance(value, str):
            doc[key] = 12345
        else:
            doc[key] = 3.5
        return (json.dumps(doc, indent=2) + "\n").encode(), f"field {key!r}: {type(value).__name__} replaced by " \
                                                             f"{type(doc[key]).__name__}"
    if mode == "oversize":
        extra = rng.randint(1, 2048)
        pad = max(0, cap_bytes - len(data)) + extra
        text = data.rstrip(b"\n") + b" " * pad + b"\n"
        return text, f"padded to {len(text)} bytes (cap {cap_bytes})"
    raise FaultError(f"config-corrupt mode {mode!r}: use one of {', '.join(CorruptJSON.MODES)}")


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


class CrashCorruptConfig(Fault):
    """Damage the settings file at ``path`` (:class:`CorruptJSON` ``mode``), then SIGKILL ``node`` (a handle with
    ``kill()``, ``is_alive()``, ``start()``, ``wait_ready()``), which reads it when it starts again: a supervisor
    restarts it (``restart_on_heal=False``: the heal only closes the window) or the heal does."""

    name = "config-corrupt"

    def __init__(self, node, path: str | os.PathLike, mode: str, rng: random.Random, *, restart_on_heal: bool = True,
                 ready_timeout: float | None = None, cap_bytes: int = 10 * KB, **kw):
        super().__init__(**kw)
        self.corrupt = CorruptJSON(path, mode, rng, cap_bytes=cap_bytes)   # no log of its own: ours carries it
        self.node = node
        self.restart_on_heal = restart_on_heal
        self.ready_timeout = ready_timeout
        self.victim_pid: int | None = None

    def describe(self) -> str:
        return f"{self.corrupt.describe()}, then SIGKILL {getattr(self.node, 'name', '?')}"

    def details(self) -> dict[str, Any]:
        return {"node": getattr(self.node, "name", None), "pid": self.victim_pid, **self.corrupt.details()}

    def _inject(self) -> None:
        self.corrupt.inject()
        self.victim_pid = self.node.pid
        self.node.kill()
        if self.node.is_alive():
            raise FaultError(f"{getattr(self.node, 'name', '?')} is still alive after SIGKILL")

    def _heal(self) -> None:
        self.corrupt.heal()
        if self.restart_on_heal and not self.node.is_alive():
            self.node.start()
            self.node.wait_ready(self.ready_timeout)
