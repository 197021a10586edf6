"""Fuzzing the backend's DuckDB copy of RTRS (issue 15): whatever an RTRS entry holds, ``fill_of`` returns a fill
with finite numbers or None, and never raises (the reader would otherwise stop on one bad entry)."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from reference.backend.historycache import fill_of, stream_ms

_values = st.none() | st.text(max_size=12) | st.integers() | st.floats() | st.binary(max_size=6) | st.sampled_from(
    ["executed", "EXECUTED", "duplicate", "rejected", "1.1", "nan", "inf", "-0.01", "1e308", "1e400", "0"])
entries = st.fixed_dictionaries({}, optional={k: _values for k in ("status", "signal_id", "symbol", "price",
                                                                  "volume", "ts_ms")}) | \
    st.dictionaries(_values, _values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(entry=entries)
def test_fill_of_any_rtrs_entry_is_a_finite_fill_or_none(entry):
    got = fill_of(entry)
    if got is not None:
        sid, symbol, price, volume, ts = got
        assert entry["status"].lower() == "executed" and sid and symbol
        assert math.isfinite(price) and math.isfinite(volume) and volume > 0 and ts >= 0


@given(entry_id=st.text(max_size=30))
def test_stream_ms_of_any_id_is_an_integer(entry_id):
    assert isinstance(stream_ms(entry_id), int)
