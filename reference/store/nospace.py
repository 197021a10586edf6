"""A full disk is not damage (issue 13: disk-full; DDB-5).

When the filesystem of the state folder has no free space, DuckDB's commit fails ("Could not write file ...: No
space left on device"), a snapshot cannot be written, the event log cannot append. None of that means a file is
damaged: the commit is rolled back and the file stays as it was. So a write that failed for lack of space is
refused with one clear line and retried, the files are never moved into the damaged-evidence folder for it, and
the engine neither acknowledges what it could not make durable nor exits (which would only make its supervisor
restart it onto the same full disk).
"""
from __future__ import annotations

import errno
import threading
from typing import Any, Callable

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, a DuckDB error, or one raised from either) says the filesystem is full."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(t in str(exc) for t in _NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class SpaceTolerantLog:
    """Wraps an event log ``emit(event, **fields)`` that lives on the state folder's filesystem: an event that
    cannot be written for lack of space is dropped (counted) instead of raising into the caller, and the first
    event written after that is preceded by ``events_dropped`` (``count``, ``error``). Any other OSError still
    raises. ``close()`` is passed on."""

    def __init__(self, log: Callable[..., None]):
        self.log = log
        self.dropped = 0
        self._error = ""
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        try:
            with self._lock:
                if self.dropped:
                    self.log("events_dropped", count=self.dropped, error=self._error)
                    self.dropped, self._error = 0, ""
                self.log(event, **fields)
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            with self._lock:
                self.dropped += 1
                self._error = f"{exc.strerror} ({type(exc).__name__})"

    def close(self) -> None:
        try:
            self.log.close()
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)
