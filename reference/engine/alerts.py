"""One alert path for every "notify the user" of the design documents.

An alert goes to the event log at once, to the Redis stream ``ALERTS`` (buffered in memory, bounded, while Redis
is unreachable and flushed when it is back), and, if ``webhook_url`` is set, to that URL as a JSON POST from a
background thread (a slow webhook never stalls trading).
"""
from __future__ import annotations

import collections
import json
import queue
import threading
import time
from typing import Callable

from .redislink import RedisLink, RedisUnavailable


class Alerts:
    def __init__(self, link: RedisLink, stream: str, instance: str, emit: Callable[..., None],
                 webhook_url: str = "", maxlen: int = 10000, buffer: int = 1000):
        self.link = link
        self.stream = stream
        self.instance = instance
        self.emit = emit
        self.maxlen = maxlen
        self._pending: collections.deque = collections.deque(maxlen=buffer)
        self._lock = threading.Lock()
        self.sent: list[dict] = []          # the last alerts raised (for status and tests)
        self._webhook_url = webhook_url
        self._webhook_q: queue.Queue | None = None
        if webhook_url:
            self._webhook_q = queue.Queue(maxsize=buffer)
            threading.Thread(target=self._webhook_loop, name="alert-webhook", daemon=True).start()

    def raise_(self, kind: str, message: str, **fields) -> None:
        alert = {"kind": kind, "message": message, "instance": self.instance,
                 "ts_ms": str(int(time.time() * 1000))}
        alert.update({k: str(v) for k, v in fields.items()})
        self.emit("alert", **alert)
        with self._lock:
            self._pending.append(alert)
            self.sent.append(alert)
            del self.sent[:-100]
        if self._webhook_q is not None:
            try:
                self._webhook_q.put_nowait(alert)
            except queue.Full:
                pass
        self.flush()

    def flush(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                alert = self._pending[0]
            try:
                self.link.run(lambda r: r.xadd(self.stream, alert, maxlen=self.maxlen, approximate=True))
            except RedisUnavailable:
                return
            with self._lock:
                if self._pending and self._pending[0] is alert:
                    self._pending.popleft()

    def _webhook_loop(self) -> None:
        import httpx
        while True:
            alert = self._webhook_q.get()
            try:
                httpx.post(self._webhook_url, content=json.dumps(alert),
                           headers={"content-type": "application/json"}, timeout=5.0)
            except Exception as exc:  # noqa: BLE001 - a broken webhook must not break alerting
                self.emit("alert_webhook_failed", error=repr(exc))
