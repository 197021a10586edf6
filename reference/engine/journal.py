"""The local, durable intent journal (DuckDB, one file per engine instance).

Why local: Redis replication is asynchronous, so a Sentinel failover can lose acknowledged writes (REQUIREMENTS,
"Known contradictions"). The engine therefore records each intent here, committed (DuckDB fsyncs its WAL on
commit) *before* ``order_send``, and records the outcome here before it publishes it to Redis. Redis (RTS/RTRS) is
the shared, replicated view; this file is the instance's own memory; the broker's ledger (magic + comment) is the
final arbiter for "was it executed". While Redis is unreachable the trade state stays here (ORD-3) and outcomes not
yet published are flushed when Redis is back (``published = false``).

Intent states: SENDING (written before order_send) -> DONE | REJECTED (final) or UNKNOWN (ambiguous reply: must be
reconciled with the broker, never resent blindly) or DEFERRED (market closed / backoff / failed_syncs).
``failed_syncs`` holds orders that failed ORD-1's five attempts, retried after a minute (ORD-2).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

import duckdb

FINAL_STATES = ("DONE", "REJECTED")
IN_FLIGHT_STATES = ("SENDING", "UNKNOWN")


@dataclass
class Intent:
    signal_id: str
    entry_id: str
    signal: dict
    state: str = "NEW"
    attempt: int = 0              # number of order_send calls made (comment suffix of the last one)
    comment: str = ""
    broker: str = ""
    retries: int = 0              # ORD-1 failures so far
    requotes: int = 0
    failed_sync_attempts: int = 0
    next_try_ms: int = 0          # wall-clock epoch ms when a DEFERRED/UNKNOWN intent is due
    ambiguous_since_ms: int = 0
    result: dict = field(default_factory=dict)
    published: bool = False
    updated_ms: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


_COLUMNS = [
    ("signal_id", "VARCHAR PRIMARY KEY"), ("entry_id", "VARCHAR"), ("signal", "VARCHAR"), ("state", "VARCHAR"),
    ("attempt", "INTEGER"), ("comment", "VARCHAR"), ("broker", "VARCHAR"), ("retries", "INTEGER"),
    ("requotes", "INTEGER"), ("failed_sync_attempts", "INTEGER"), ("next_try_ms", "BIGINT"),
    ("ambiguous_since_ms", "BIGINT"), ("result", "VARCHAR"), ("published", "BOOLEAN"), ("updated_ms", "BIGINT"),
]


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise RuntimeError(f"cannot open the intent journal {self.path}: {exc}. Another engine process with "
                               f"the same instance name may be running; give each instance its own name.") from None
        cols = ", ".join(f"{n} {t}" for n, t in _COLUMNS)
        self._db.execute(f"CREATE TABLE IF NOT EXISTS intents ({cols})")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS failed_syncs (signal_id VARCHAR PRIMARY KEY, kind VARCHAR, payload VARCHAR, "
            "attempts INTEGER, next_retry_ms BIGINT, last_error VARCHAR, created_ms BIGINT)")
        self._db.execute("CHECKPOINT")

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except Exception:  # noqa: BLE001
                pass

    # --- intents ------------------------------------------------------------------------------------------------
    def put(self, intent: Intent) -> None:
        """Write (insert or replace) an intent and commit; returns only once the commit is durable."""
        intent.updated_ms = int(time.time() * 1000)
        row = asdict(intent)
        row["signal"] = json.dumps(row["signal"])
        row["result"] = json.dumps(row["result"])
        names = [n for n, _ in _COLUMNS]
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO intents ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [row[n] for n in names])

    def get(self, signal_id: str) -> Intent | None:
        with self._lock:
            rows = self._db.execute("SELECT * FROM intents WHERE signal_id = ?", [signal_id]).fetchall()
        return self._to_intent(rows[0]) if rows else None

    def where(self, sql: str, params: list | None = None) -> list[Intent]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM intents WHERE {sql} ORDER BY updated_ms", params or []).fetchall()
        return [self._to_intent(r) for r in rows]

    def in_flight(self) -> list[Intent]:
        return self.where("state IN ('SENDING', 'UNKNOWN')")

    def open_intents(self) -> list[Intent]:
        return self.where("state NOT IN ('DONE', 'REJECTED')")

    def unpublished(self) -> list[Intent]:
        return self.where("state IN ('DONE', 'REJECTED') AND NOT published")

    def mark_published(self, signal_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE intents SET published = true WHERE signal_id = ?", [signal_id])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM intents GROUP BY state").fetchall()
        return {s: n for s, n in rows}

    @staticmethod
    def _to_intent(row) -> Intent:
        names = [n for n, _ in _COLUMNS]
        d = dict(zip(names, row))
        d["signal"] = json.loads(d["signal"] or "{}")
        d["result"] = json.loads(d["result"] or "{}")
        return Intent(**d)

    # --- failed_syncs (ORD-2) ---------------------------------------------------------------------------------------
    def add_failed_sync(self, signal_id: str, kind: str, payload: dict, next_retry_ms: int, last_error: str,
                        attempts: int = 0) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO failed_syncs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [signal_id, kind, json.dumps(payload), attempts, next_retry_ms, last_error[:500],
                 int(time.time() * 1000)])

    def remove_failed_sync(self, signal_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM failed_syncs WHERE signal_id = ?", [signal_id])

    def failed_syncs(self) -> list[dict]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM failed_syncs ORDER BY created_ms")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
