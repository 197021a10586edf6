"""The backend's local copy of the trade results (BE-3, TV-4): chart history when ClickHouse is away.

The design documents: "If ClickHouse fails -> Redis and backend store state temporarily" and "Data backfill from
DuckDB if ClickHouse instance is lost" (TV 6). Each backend keeps its own DuckDB file (``history_cache_path``,
beside its config) of the executed results it read from RTRS, the engines' result stream:

- a reader thread follows RTRS (``XREAD``, from the first entry on a new file, from the last entry it stored after a
  restart: the stream position is in the same DuckDB file, written in the same transaction as the rows, so a
  killed backend resumes where its file says, BE-3 "reconnect DuckDB and resume");
- one row per signal id (``executed`` results with a price and a volume; a ``duplicate`` or ``rejected`` result
  is no fill), upserted, so a result read twice is one row;
- :meth:`HistoryCache.bars` answers ``/history`` with the same bars ClickHouse would (first/last fill price, high,
  low, lots), on the time the engine published the result (``ts_ms``; ClickHouse's ``final_ms`` is the journal's
  time of the same outcome, a few ms earlier: a fill within those ms of a bar boundary can land in the next bar).

What it covers, said in every answer (``cache_complete_from_ms``): when RTRS still held its first entry the first
time this file read it (``XINFO STREAM``: entries added = length), the copy is complete from the beginning (0);
when the stream was already trimmed (``results_maxlen``), from the first entry it read. A query whose ``from`` lies
before that gets ``"partial": true``.

A file DuckDB cannot open (damaged, not a database) is moved aside (``<name>.damaged-<ms>``) and a new one is
started from RTRS again; nothing here ever stops the backend: a cache that cannot work says so (``status()``), and
``/history`` then says history is unavailable, as before.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from reference.engine import contract

log = logging.getLogger("tradedrill.backend.history")

BATCH = 500          # RTRS entries per XREAD
READ_EVERY_S = 1.0   # at most one XREAD (one DuckDB commit) a second: a commit costs ~10 ms of CPU however few
                     # rows it holds, and 20 results/s read one by one cost a backend a quarter of a core
DUCKDB_CONFIG = {"threads": 1}   # a small single-writer file: DuckDB's worker threads only add CPU
BLOCK_MS = 250       # XREAD BLOCK: below the link's socket timeout (0.5 s), so a quiet stream is not an error
SCHEMA = """
CREATE TABLE IF NOT EXISTS fills (
    signal_id VARCHAR PRIMARY KEY, symbol VARCHAR NOT NULL, price DOUBLE NOT NULL, volume DOUBLE NOT NULL,
    ts_ms BIGINT NOT NULL, entry_id VARCHAR);
CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY, last_id VARCHAR NOT NULL, complete_from_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL);
"""


def fill_of(fields: Mapping) -> tuple[str, str, float, float, int] | None:
    """``(signal_id, symbol, price, volume, ts_ms)`` of one RTRS entry that is a fill, else None (not executed,
    no price, no volume, no time, a field that is not text): never raises, whatever the entry holds."""
    try:
        get = {str(k): v for k, v in dict(fields).items()}.get
        status, sid, symbol = get("status"), get("signal_id"), get("symbol")
        if not all(isinstance(v, str) for v in (status, sid, symbol)):
            return None
        if status.lower() != contract.ResultStatus.EXECUTED.value or not sid or not symbol or len(sid) > 64 \
                or len(symbol) > 32:
            return None
        price, volume, ts = float(get("price")), float(get("volume")), int(str(get("ts_ms")))
    except (TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(price) and math.isfinite(volume) and volume > 0 and 0 <= ts < 2**62):
        return None
    return sid, symbol, price, volume, ts


def stream_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (``<ms>-<seq>``); 0 when it has none."""
    try:
        return int(str(entry_id).split("-", 1)[0])
    except ValueError:
        return 0


class HistoryCache:
    """The DuckDB copy of one backend (``path``) fed from RTRS (``stream``) through ``link_factory()`` (a
    :class:`reference.engine.redislink.RedisLink`, used by the reader thread alone)."""

    def __init__(self, path: str | os.PathLike, stream: str, link_factory: Callable[[], object]):
        self.path = Path(path)
        self.stream = stream
        self.link_factory = link_factory
        self._db = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_id = "0-0"
        self.complete_from_ms: int | None = None   # None: the stream was never read yet
        self.rows_read = 0
        self.error: str | None = None
        self.moved_aside: str | None = None

    # -- the file ------------------------------------------------------------------------------------------------
    def open(self) -> "HistoryCache":
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = duckdb.connect(str(self.path), config=DUCKDB_CONFIG)
            db.execute(SCHEMA)
        except duckdb.Error as exc:
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time() * 1000)}")
            try:
                os.replace(self.path, aside)
                wal = self.path.with_name(self.path.name + ".wal")
                if wal.exists():
                    os.replace(wal, aside.with_name(aside.name + ".wal"))
            except OSError as move:
                self.error = f"history cache {self.path} cannot be opened ({_line(exc)}) nor moved aside ({move})"
                log.error("%s", self.error)
                return self
            self.moved_aside = str(aside)
            log.error("history cache %s could not be opened (%s); kept as %s, a new one is read from %s",
                      self.path, _line(exc), aside, self.stream)
            db = duckdb.connect(str(self.path), config=DUCKDB_CONFIG)
            db.execute(SCHEMA)
        row = db.execute("SELECT last_id, complete_from_ms FROM cursor WHERE id = 1").fetchone()
        if row:
            self.last_id, self.complete_from_ms = str(row[0]), int(row[1])
        self._db = db
        return self

    @property
    def usable(self) -> bool:
        return self._db is not None

    # -- the reader ------------------------------------------------------------------------------------------------
    def start(self) -> "HistoryCache":
        if self._db is None:
            self.open()
        if self._db is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="history-cache")
            self._thread.start()
        return self

    def _run(self) -> None:
        link = None
        while not self._stop.is_set():
            try:
                if link is None:
                    link = self.link_factory()
                read = self.read_once(link)
                self.error = None
                if read:   # pacing of the copy (READ_EVERY_S behind RTRS at most), not synchronisation
                    self._stop.wait(READ_EVERY_S)
            except Exception as exc:  # noqa: BLE001 - Redis away, a DuckDB error: said in status(), retried
                self.error = f"{type(exc).__name__}: {_line(exc)}"
                # pacing of the retries while Redis is away (the link has its own backoff too)
                self._stop.wait(0.5)
        if link is not None:
            try:
                link.close()
            except Exception:  # noqa: BLE001
                pass

    def read_once(self, link, block_ms: int = BLOCK_MS) -> int:
        """One ``XREAD`` of RTRS after the stored position; the fills of the entries read are stored with the new
        position in one transaction. Returns the number of entries read (tests call it directly)."""
        if self.complete_from_ms is None:
            self._first_read(link)
        got = link.run(lambda c: c.xread({self.stream: self.last_id}, count=BATCH, block=block_ms))
        entries = got[0][1] if got else []
        if not entries:
            return 0
        rows = [f for f in (fill_of(fields) for _id, fields in entries) if f is not None]
        last = str(entries[-1][0])
        with self._lock:
            db = self._db
            db.execute("BEGIN TRANSACTION")
            try:
                if rows:   # one statement for the batch (executemany runs one statement per row: 10x the CPU)
                    rows = list({r[0]: r for r in rows}.values())   # a signal id twice in one batch: the last
                    db.execute("INSERT OR REPLACE INTO fills VALUES " + ", ".join(["(?, ?, ?, ?, ?, NULL)"] * len(rows)),
                               [v for r in rows for v in r])
                db.execute("INSERT OR REPLACE INTO cursor VALUES (1, ?, ?, ?)",
                           [last, int(self.complete_from_ms or 0), int(time.time() * 1000)])
                db.execute("COMMIT")
            except Exception:
                db.execute("ROLLBACK")
                raise
        self.last_id = last
        self.rows_read += len(rows)
        return len(entries)

    def _first_read(self, link) -> None:
        """On a new file: complete from the beginning when RTRS still holds every entry ever added to it."""
        try:
            info = link.run(lambda c: c.xinfo_stream(self.stream))
        except Exception as exc:  # noqa: BLE001 - no such stream yet: nothing was ever trimmed
            if "no such key" in str(exc).lower():
                self.complete_from_ms = 0
                return
            raise
        added = info.get("entries-added")
        first = info.get("first-entry")
        if added is not None and int(added) == int(info.get("length", -1)) or not first:
            self.complete_from_ms = 0
        else:
            self.complete_from_ms = stream_ms(first[0])

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                except Exception:  # noqa: BLE001
                    pass
                self._db = None

    # -- answers ------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        return {"path": str(self.path), "usable": self.usable, "rows_read": self.rows_read, "last_id": self.last_id,
                "complete_from_ms": self.complete_from_ms, "error": self.error, "moved_aside": self.moved_aside}

    def bars(self, symbol: str, bar_s: int, from_s: int, to_s: int, limit: int) -> dict | None:
        """The UDF answer from the copy (``source`` ``duckdb``), or None when the copy cannot answer (never
        opened, never read RTRS)."""
        if self._db is None or self.complete_from_ms is None:
            return None
        with self._lock:
            if self._db is None:
                return None
            rows = self._db.execute(
                "SELECT (ts_ms // ?) * ? AS t, arg_min(price, ts_ms), max(price), min(price), arg_max(price, ts_ms), "
                "sum(volume) FROM fills WHERE symbol = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY t ORDER BY t LIMIT ?",
                [bar_s * 1000, bar_s, symbol, int(from_s) * 1000, int(to_s) * 1000, int(limit)]).fetchall()
        meta = {"source": "duckdb", "cache_complete_from_ms": self.complete_from_ms,
                "partial": int(from_s) * 1000 < int(self.complete_from_ms)}
        if not rows:
            return {"s": "no_data", **meta}
        cols = list(zip(*rows))
        return {"s": "ok", "t": [int(x) for x in cols[0]], "o": [float(x) for x in cols[1]],
                "h": [float(x) for x in cols[2]], "l": [float(x) for x in cols[3]], "c": [float(x) for x in cols[4]],
                "v": [round(float(x), 8) for x in cols[5]], **meta}


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
