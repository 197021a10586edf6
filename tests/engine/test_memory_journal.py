"""The engine's memory does not grow with the journal's snapshots (issue 16's soak: the active engine's RSS rose
5.6 MB/min at 10 signals/s, ~9 KB per signal; DDB-2's snapshot every 500 ms, a ``COPY FROM DATABASE`` of the
journal, left ~50 KB of DuckDB memory per snapshot that only closing the database gives back).

In process, no stack: the journal goes through what the engine writes per signal (intent, outcome, published
flag) with a snapshot every 5 signals (the engine at 10 signals/s with DDB-2's 500 ms), default settings. The
process's RSS is read right after every 120th snapshot; between the first and the last reading it may grow by
what the journal keeps in memory by design (the in-memory copy of every intent, ~1-2 KB a signal, ``Journal._mem``)
and no more than 4 KB a signal in all. Without the reopen it grew ~10 KB a signal (measured: 10.1, 10.2).
"""
from __future__ import annotations

from pathlib import Path

from reference.engine.journal import REOPEN_AFTER_SNAPSHOTS, Intent, Journal

SIGNALS_PER_SNAPSHOT = 5
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
    every = REOPEN_AFTER_SNAPSHOTS * SIGNALS_PER_SNAPSHOT   # signals between two readings
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


def test_a_reopened_journal_keeps_every_write(tmp_path):
    """The reopen changes nothing the journal holds: writes before and after it, the published flags waiting for
    the next transaction, and a later open of the file (a restart) sees them all."""
    path = tmp_path / "journal-A.duckdb"
    journal = Journal(path, snapshots_kept=2, reopen_after_snapshots=2)
    try:
        for n in range(30):
            _one_signal(journal, n)
            journal.snapshot()
        assert journal.reopens >= 10
        assert journal.health() is None   # DDB-6: a reopen is not damage
    finally:
        journal.close()
    hwm = journal.hwm   # the close wrote the published flags still waiting
    again = Journal(path, snapshots_kept=2)
    try:
        assert again.repair is None
        assert again.hwm == hwm
        assert again.counts() == {"DONE": 30}
        assert [i.signal_id for i in again.published_final()] == [f"mem-{n:08d}" for n in range(30)]
    finally:
        again.close()
