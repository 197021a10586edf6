"""The retry schedule of ``failed_syncs``: writes that could not reach Redis or ClickHouse (DDB-5, ORD-2, BR-2).

The rows live in the journal's DuckDB table ``failed_syncs`` (``reference.engine.journal``); this module decides
*when* each is tried again and drives the tries. The schedule, per row:

- at every start of the process every row is due at once (BR-2: resynced within 1 s of a start);
- after a failed try ``n`` (1-based, counted since that start) the next one waits ``backoff_s[n-1]``
  (BR-2: 1, 2, 4, 8, 16 s);
- once those retries are spent the user is notified once (BR-2, ORD-2) and the row stays, tried every
  ``then_every_s`` (ORD-2, CH-1: every minute) until it succeeds. A failed write is never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass(frozen=True)
class RetryPolicy:
    """``backoff_s``: waits in seconds after each failed try since a start (BR-2: 1, 2, 4, 8, 16);
    ``then_every_s``: the pace once they are spent (ORD-2/CH-1: 60 s). Raises ValueError for an empty or negative
    schedule."""

    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)   # BR-2
    then_every_s: float = 60.0                                  # ORD-2, CH-1

    def __post_init__(self) -> None:
        if not self.backoff_s or any(float(b) < 0 for b in self.backoff_s) or self.then_every_s <= 0:
            raise ValueError("failed_syncs retry policy: give at least one backoff delay >= 0 s and a positive "
                             "then_every_s (BR-2: 1, 2, 4, 8, 16 s, then ORD-2: 60 s)")

    def after_failure(self, step: int) -> tuple[float, bool]:
        """``step``: failed tries since the start, this one included (>= 1). Returns (seconds until the next try,
        whether the user must be notified now - true exactly once, when the backoff is spent)."""
        if step <= len(self.backoff_s):
            return float(self.backoff_s[step - 1]), False
        return float(self.then_every_s), step == len(self.backoff_s) + 1


class FailedSyncStore(Protocol):
    def due_failed_syncs(self, now_ms: int, targets: set[str] | None = None) -> list[dict]: ...
    def failed_sync_done(self, target: str, kind: str, sync_id: str) -> None: ...
    def failed_sync_failed(self, target: str, kind: str, sync_id: str, error: str, policy: RetryPolicy,
                           now_ms: int) -> tuple[dict, bool]: ...


# a handler re-sends one row's payload (the row as failed_syncs() returns it); it raises when the target is still
# unreachable, with an exception whose text says why
Handler = Callable[[dict], None]


@dataclass
class Resync:
    """Tries the due rows of the targets it has handlers for: ``handlers[(target, kind)]``. ``notify(row)`` is
    called once per row when BR-2's retries are spent (the row then carries ``attempts`` and ``last_error``)."""

    store: FailedSyncStore
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    notify: Callable[[dict], None] = lambda row: None

    def register(self, target: str, kind: str, handler: Handler) -> None:
        self.handlers[(target, kind)] = handler

    def run_due(self, now_ms: int) -> dict[str, int]:
        """Try every due row that has a handler; returns counts ``{"synced": n, "failed": n}``."""
        counts = {"synced": 0, "failed": 0}
        if not self.handlers:
            return counts
        targets = {t for t, _k in self.handlers}
        for row in self.store.due_failed_syncs(now_ms, targets):
            handler = self.handlers.get((row["target"], row["kind"]))
            if handler is None:
                continue
            try:
                handler(row)
            except Exception as exc:  # noqa: BLE001 - any failure of the target is one more failed try
                error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
                updated, tell = self.store.failed_sync_failed(row["target"], row["kind"], row["sync_id"], error,
                                                              self.policy, now_ms)
                counts["failed"] += 1
                if tell:
                    self.notify(updated)
                continue
            self.store.failed_sync_done(row["target"], row["kind"], row["sync_id"])
            counts["synced"] += 1
        return counts
