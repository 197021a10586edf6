"""A journal write of many intents in one transaction (issue 11's group commit; the list-per-column INSERT used
above ``_VALUES_MAX_ROWS`` rows) keeps every field of every intent, NULL-free defaults and nested results included,
across a close and a reopen; a later state of the same intent wins."""
from __future__ import annotations

from reference.engine.journal import _VALUES_MAX_ROWS, Intent, Journal


def _intent(i: int, **kw) -> Intent:
    base = dict(signal_id=f"s{i}", entry_id=f"{1000 + i}-0", signal={"symbol": "EURUSD", "volume": "0.01", "i": i},
                state="SENDING", attempt=1, comment=f"td{i:012d}-1", broker="primary" if i % 2 else "backup",
                retries=i % 3, requotes=i % 2, next_try_ms=(i * 7) if i % 4 else 0)
    base.update(kw)
    return Intent(**base)


def _fields(it: Intent) -> tuple:
    return (it.signal_id, it.entry_id, it.signal, it.state, it.attempt, it.comment, it.broker, it.retries,
            it.requotes, it.next_try_ms, it.ambiguous_since_ms, it.result, it.published)


def test_a_large_batch_round_trips_every_field(tmp_path):
    n = 3 * _VALUES_MAX_ROWS + 1
    first = [_intent(i) for i in range(n)]
    later = [_intent(i, state="EXECUTED", result={"retcode": 10009, "order": 10_000_000 + i, "price": "1.08"},
                     ambiguous_since_ms=5 if i == 3 else 0) for i in range(0, n, 2)]
    small = [_intent(n + i) for i in range(_VALUES_MAX_ROWS)]   # the scalar-parameter path, same table
    j = Journal(tmp_path / "journal-A.duckdb")
    j.put_many(first)
    j.put_many(later)
    j.put_many(small)
    j.close()
    j = Journal(tmp_path / "journal-A.duckdb")
    try:
        expected = {it.signal_id: it for it in first}
        expected.update({it.signal_id: it for it in later})
        expected.update({it.signal_id: it for it in small})
        assert len(expected) == n + _VALUES_MAX_ROWS
        for sid, it in expected.items():
            got = j.get(sid)
            assert got is not None, sid
            assert _fields(got) == _fields(it)
    finally:
        j.close()
