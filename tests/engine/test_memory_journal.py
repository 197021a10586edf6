"""The engine's memory does not grow with the journal's snapshots (issue 16's soak: the active engine's RSS rose
5.6 MB/min at 10 signals/s, ~9 KB per signal, while each DDB-2 snapshot was a ``COPY FROM DATABASE``).

In process, no stack: the journal goes through what the engine writes per signal (intent, outcome, published
flag) with a snapshot every 5 signals (the engine at 10 signals/s with DDB-2's 500 ms), default settings. The
process's RSS is read every 600 signals; between the first and the last reading it may grow by what the journal
keeps in memory by design (the in-memory copy of every intent up to ``Journal.memory_window`` final ones, 10,000
by default, more than this test writes: ~0.9 KB of Python objects a signal, ~1.7-2.9 KB of RSS with DuckDB's own,
measured without snapshots) and no more than 4 KB a signal in all. Past the window, the second test.

Measured with snapshots taken as CHECKPOINT + a copy of the checkpointed file under the write lock
(``reference.store.snapshots``): 1.1-2.4 KB a signal (3,600 to 12,000 signals). With the ``COPY FROM DATABASE``
snapshots it replaced: 8.1-10.2 KB a signal, DuckDB memory outside its buffer pool (not in duckdb_memory(), not
bounded by memory_limit, the allocator settings, threads or malloc_trim) that only closing the database gave back.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from reference.engine.journal import Intent, Journal

SIGNALS_PER_SNAPSHOT = 5
SIGNALS_PER_READING = 600
KB_PER_SIGNAL_AT_MOST = 4.0


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _one_signal(journal: Journal, n: int) -> None:
    """What the engine writes for one executed signal: the intent before the send, the outcome, the published flag."""
    sid = f"mem-{n:08d}"
    intent = Intent(signal_id=sid, entry_id=f"1764583000000-{n}", signal={
        "signal_id": sid, "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01,
        "order_type": "market", "price": None, "sl": None, "tp": None, "ts_ms": 1764583000000 + n},
        state="SENDING", attempt=1, comment=f"td{sid}-1", broker="mt5-primary")
    journal.put_many([intent])
    intent.state = "DONE"
    intent.result = {"status": "executed", "code": "TRADE_RETCODE_DONE", "reason": "", "order": 100000 + n,
                     "deal": 200000 + n, "price": 1.1, "volume": 0.01, "retcode": 10009}
    journal.put_many([intent])
    journal.mark_published_many([sid])


def test_snapshots_do_not_grow_the_journal_process_memory(tmp_path):
    journal = Journal(tmp_path / "journal-A.duckdb", snapshots_kept=2)
    every = SIGNALS_PER_READING
    readings: list[tuple[int, int]] = []
    try:
        for n in range(every * 6):
            _one_signal(journal, n)
            if (n + 1) % SIGNALS_PER_SNAPSHOT == 0:
                assert journal.snapshot() is not None
            if (n + 1) % every == 0:
                readings.append((n + 1, _rss_kb()))
        # the journal still holds every signal, and answers for the first one (ENG-5's duplicate check reads it)
        assert journal.counts() == {"DONE": every * 6}
        first = journal.get("mem-00000000")
        assert first is not None and first.final and first.result["order"] == 100000
    finally:
        journal.close()
    (n0, rss0), (n1, rss1) = readings[0], readings[-1]
    per_signal = (rss1 - rss0) / (n1 - n0)
    assert per_signal <= KB_PER_SIGNAL_AT_MOST, (
        f"RSS grew {per_signal:.1f} KB a signal over {n1 - n0} signals with a snapshot every "
        f"{SIGNALS_PER_SNAPSHOT} (readings, signals -> KB: {readings})")


# --- the in-memory window (Journal.memory_window) --------------------------------------------------------------------
WINDOW = 1000
WINDOW_SIGNALS = 20_000
WINDOW_BATCH = 20            # signals per journal batch (the engine journals a read batch with one commit)
# RSS growth a signal once the window is full (least-squares slope of the readings from twice the window on): the
# Python objects no longer grow (tracemalloc: +9 KB over 16,000 signals); what is left is DuckDB's native memory,
# outside duckdb_memory() (4.7 MB in all at the end). Measured 0.69-0.84 KB a signal with a window of 1,000, against
# 1.77 KB a signal the same way with every intent in memory (memory_window 1,000,000).
KB_PER_SIGNAL_PAST_WINDOW = 1.1


def test_memory_stops_growing_with_the_signals_once_the_window_is_full(tmp_path):
    journal = Journal(tmp_path / "journal-A.duckdb", snapshots_kept=2, memory_window=WINDOW)
    readings: list[tuple[int, int]] = []
    try:
        for start in range(0, WINDOW_SIGNALS, WINDOW_BATCH):
            intents = []
            for n in range(start, start + WINDOW_BATCH):
                _one_signal_parts(intents, n)
            journal.put_many(intents)
            for intent in intents:
                _executed(intent)
            journal.put_many(intents)
            journal.mark_published_many([i.signal_id for i in intents])
            if (start + WINDOW_BATCH) % (SIGNALS_PER_SNAPSHOT * WINDOW_BATCH) == 0:
                journal.snapshot()
            if (start + WINDOW_BATCH) % WINDOW == 0:
                readings.append((start + WINDOW_BATCH, _rss_kb()))
        # every signal is still there, the first one read back from the file (ENG-5's duplicate check)
        assert journal.counts() == {"DONE": WINDOW_SIGNALS}
        first = journal.get("mem-00000000")
        assert first is not None and first.final and first.result["order"] == 100000
    finally:
        journal.close()
    # from twice the window on (the window full, DuckDB's caches warm) to the end; a slope, not two readings: one
    # reading taken during a checkpoint is megabytes off
    past = readings[1:]
    per_signal = statistics.linear_regression([n for n, _ in past], [kb for _, kb in past]).slope
    assert per_signal <= KB_PER_SIGNAL_PAST_WINDOW, (
        f"RSS grew {per_signal:.2f} KB a signal over {past[-1][0] - past[0][0]} signals with a window of {WINDOW} "
        f"(readings, signals -> KB: {readings})")


def _one_signal_parts(intents: list, n: int) -> None:
    sid = f"mem-{n:08d}"
    intents.append(Intent(signal_id=sid, entry_id=f"1764583000000-{n}", signal={
        "signal_id": sid, "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01,
        "order_type": "market", "price": None, "sl": None, "tp": None, "ts_ms": 1764583000000 + n},
        state="SENDING", attempt=1, comment=f"td{sid}-1", broker="mt5-primary"))


def _executed(intent: Intent) -> None:
    n = int(intent.signal_id.split("-")[1])
    intent.state = "DONE"
    intent.result = {"status": "executed", "code": "TRADE_RETCODE_DONE", "reason": "", "order": 100000 + n,
                     "deal": 200000 + n, "price": 1.1, "volume": 0.01, "retcode": 10009}
