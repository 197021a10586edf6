"""Waiting on a condition with a deadline: the only way this project synchronises with the outside world."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A condition did not hold before its deadline; the message names what was waited for."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.02,
    max_interval: float = 0.25,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, or raise DeadlineExceeded naming ``what``.

    Exceptions raised by the predicate count as "not yet"; the last one is chained to the deadline error.
    The poll interval grows geometrically from ``interval`` to ``max_interval``: short waits stay cheap.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    delay = interval
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as exc:  # noqa: BLE001 - the predicate probes a service that may not be up yet
            last_exc = exc
        now = time.monotonic()
        if now >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise DeadlineExceeded(f"waited {timeout:.1f}s for {what}{detail}") from last_exc
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.5, max_interval)
