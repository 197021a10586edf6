"""The load's pooled p50/p95/p99 are of order round-trips only (a new user's finding: the console line and the plot
pooled RTSS and webhook round-trips with the tick consumers' windows, whose "response time" is a second's median
tick latency; a last second holding only tick windows read as order latency near 0 ms). No stack, no locust (it
cannot be imported beside pytest's assertion rewriting): the functions the per-second recorder and the summary
use (``scenarios.load.second_row``, ``total_entry``)."""
from __future__ import annotations

from hypothesis import given, strategies as st

from scenarios.load import TICKS_TYPE, is_round_trip, second_row, total_entry

TICKS = f"{TICKS_TYPE} latency p50 of 1 s"


def test_a_second_of_tick_windows_only_has_no_order_percentiles():
    first = second_row({"RTSS order": ([200.0, 220.0, 400.0], [0]), "WEBHOOK post": ([210.0], [0]),
                        TICKS: ([2.5], [0])})
    assert first["requests"] == 5 and first["p50"] == 220.0 and first["p99"] == 400.0   # nearest rank of 4 trips
    assert first["types"][TICKS]["p50"] == 2.5          # still there, in its own row
    last = second_row({TICKS: ([1.7], [0])})
    assert last["requests"] == 1 and last["p50"] is None   # no order answered in that second: no point
    total = total_entry({"RTSS order": ([200.0, 220.0, 400.0], [1]), TICKS: ([2.5, 1.7], [0])}, 2.0)
    assert total["requests"] == 5 and total["failures"] == 1 and total["p50_ms"] == 220.0 and total["max_ms"] == 400.0
    assert total["round_trips"] == 3   # what the percentiles are of (the report says so beside them)
    assert not is_round_trip(TICKS) and is_round_trip("RTSS order") and is_round_trip("WEBHOOK post")


@given(st.lists(st.tuples(st.sampled_from(["RTSS order", "WEBHOOK post", TICKS]), st.floats(0, 10_000)),
                max_size=40))
def test_pooled_percentiles_never_come_from_tick_windows(events):
    totals: dict = {}
    for name, ms in events:
        totals.setdefault(name, ([], [0]))[0].append(ms)
    total = total_entry(totals, 1.0)
    row = second_row(totals)
    trips = [ms for name, ms in events if name != TICKS]
    assert total["requests"] == row["requests"] == len(events)
    if trips:
        assert total["max_ms"] == round(max(trips), 3)
        assert total["p50_ms"] in {round(t, 3) for t in trips} and row["p50"] == total["p50_ms"]
        assert total["p50_ms"] <= total["p95_ms"] <= total["p99_ms"] <= total["max_ms"]
    else:
        assert total["p50_ms"] is None and total["max_ms"] is None and row["p50"] is None
