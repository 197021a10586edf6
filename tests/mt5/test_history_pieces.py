"""The engine reads a long broker history in pieces, and finds in them exactly what one whole read finds (ENG-5).

An engine's first broker scan reads every order and deal of its magic in the reconcile lookback (7 days). Read at
once, 9,000 signals of history (18,000 orders, 18,000 deals) peaked 38 MB above the engine's start and left 23 MB
of it behind after the rows were gone; every restart of a busy account started higher (the 30-minute soak of
2026-12-02: +1.7 MB a minute of start RSS). ``BrokerSession.iter_traces`` now counts a long window first
(``history_*_total``) and splits it until each piece holds at most ``HISTORY_PIECE_ROWS`` rows. A piece that missed
a row or read one twice would be a signal the engine thinks was never sent (a duplicate) or sent twice; so the
pieces are compared with the whole read, on a real simulator process (127.0.3.x), and the simulator's counts (now
by bisection of a time index) with its reads, over windows hypothesis picks.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.engine import broker as broker_mod
from reference.engine.broker import BrokerSession
from tests.mt5.conftest import engine_session
from tradedrill.waiting import wait_until

MAGIC = 916017
SIGNALS = 24


def _session(sim) -> BrokerSession:
    return engine_session(sim, timeout_s=5.0)


def _trade(session: BrokerSession, n: int, per_second: int = 8) -> None:
    """``n`` signals, each a buy and its close: two history orders and two deals a signal, ``per_second`` in each
    second of the clock (a piece is at least one second of history: trades all in one second could not be split)."""
    for i in range(n):
        if i and i % per_second == 0:
            second = int(time.time())
            wait_until(lambda: int(time.time()) != second, timeout=2.0, interval=0.01, what="the next second")
        comment = f"tdpiece{i:05d}-1"
        tick, _ = session.call("symbol_info_tick", "EURUSD")
        opened, err = session.call("order_send", {"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0,
                                                   "price": tick.ask, "deviation": 50, "magic": MAGIC,
                                                   "comment": comment, "type_filling": 0})
        assert opened is not None and opened.retcode == 10009, (opened, err)
        tick, _ = session.call("symbol_info_tick", "EURUSD")
        closed, err = session.call("order_send", {"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 1,
                                                   "price": tick.bid, "deviation": 50, "magic": MAGIC,
                                                   "position": opened.order, "comment": comment[:-1] + "c",
                                                   "type_filling": 0})
        assert closed is not None and closed.retcode == 10009, (closed, err)


@pytest.fixture(scope="module")
def traded(sim):
    """The module's simulator with SIGNALS signals of MAGIC traded (made once)."""
    session = _session(sim)
    try:
        _trade(session, SIGNALS)
    finally:
        session.close()
    return sim


def _key(trace) -> tuple:
    return (trace.kind, trace.ticket, trace.comment, trace.order, trace.deal, trace.time_s)


def test_a_history_read_in_pieces_finds_what_one_read_finds(traded, monkeypatch):
    session = _session(traded)
    whole = sorted(_key(t) for t in session.traces(MAGIC))
    assert sum(1 for k in whole if k[0] == "deal") >= 2 * SIGNALS, whole

    reads = {"history_orders_get": 0, "history_deals_get": 0}
    original = session.call

    def counting(method, *args, **kwargs):
        if method in reads:
            reads[method] += 1
        return original(method, *args, **kwargs)

    monkeypatch.setattr(session, "call", counting)
    monkeypatch.setattr(broker_mod, "HISTORY_PIECE_ROWS", 5)
    pieces = sorted(_key(t) for t in session.iter_traces(MAGIC))
    assert pieces == whole, "the pieces found other traces than one whole read"
    # 16 history orders in each of 3 seconds, at most 5 a piece: every second is a piece of its own (a window
    # that was never split is one read)
    seconds = len({k[5] for k in whole if k[0] == "deal"})
    assert seconds >= 3, whole
    assert reads["history_orders_get"] >= seconds and reads["history_deals_get"] >= seconds, reads


def test_an_incremental_read_is_one_read_a_kind(traded, monkeypatch):
    """A window under HISTORY_SPLIT_OVER_S (the seconds of history a warm scan asks for) is read whole, uncounted."""
    session = _session(traded)
    newest = max(t.time_s for t in session.traces(MAGIC))
    calls = []
    original = session.call
    monkeypatch.setattr(session, "call", lambda m, *a, **k: calls.append(m) or original(m, *a, **k))
    monkeypatch.setattr(broker_mod, "HISTORY_PIECE_ROWS", 1)
    found = list(session.iter_traces(MAGIC, since_s=newest - 60))
    assert {t.comment for t in found} >= {f"tdpiece{SIGNALS - 1:05d}-1"}, found
    assert calls.count("history_orders_get") == 1 and "history_orders_total" not in calls, calls


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(-120, 60), width=st.integers(0, 240))
def test_the_simulators_counts_match_its_reads(traded, start, width):
    """history_orders_total / history_deals_total over a window equal the length of the read of the same window
    (both ends inclusive), around the time the module's trades were made."""
    session = _session(traded)
    try:
        now = int(time.time())
        lo, hi = now + start - 120, now + start - 120 + width
        frm, to = datetime.fromtimestamp(lo, timezone.utc), datetime.fromtimestamp(hi, timezone.utc)
        for total, get in (("history_orders_total", "history_orders_get"),
                           ("history_deals_total", "history_deals_get")):
            counted, _ = session.call(total, frm, to)
            rows, _ = session.call(get, frm, to)
            assert rows is not None and counted == len(rows), (total, lo, hi, counted, len(rows or ()))
    finally:
        session.close()
