"""The wire format v1: round trips, and bad input is one clear WireError line, never a crash (hypothesis)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.ea import wire

TICK = wire.Tick(stream=77, seq=5, symbol="EURUSD", time_msc=1_700_000_000_123, bid=1.085, ask=1.0851, last=0.0,
                 volume=3, tick_flags=6, volume_real=0.5, sent_ns=123456789, snapshot=False)


def test_round_trip_of_each_kind():
    assert wire.decode(wire.encode_tick(TICK)) == TICK
    snap = wire.Tick(**{**TICK.__dict__, "snapshot": True})
    assert wire.decode(wire.encode_tick(snap)).snapshot is True
    hb = wire.Heartbeat(stream=77, seq=9, sent_ns=5)
    assert wire.decode(wire.encode_heartbeat(hb)) == hb
    assert wire.decode(wire.encode_subscribe(wire.Subscribe("c-1"))) == wire.Subscribe("c-1")


def test_tcp_framing_splits_a_byte_stream_fed_in_pieces():
    data = b"".join(wire.frame_for_tcp(wire.encode_tick(wire.Tick(**{**TICK.__dict__, "seq": n})))
                    for n in range(1, 6))
    reader = wire.FrameReader()
    got = []
    for i in range(0, len(data), 7):
        got += reader.feed(data[i:i + 7])
    assert [m.seq for m in got] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("data, words", [
    (b"", "shorter than the 16-byte header"),
    (b"XXXX" + bytes(12), "bad magic"),
    (struct.pack("!4sBBHQ", b"TDEA", 2, 1, 0, 1), "wire version 2 is not supported"),
    (struct.pack("!4sBBHQ", b"TDEA", 1, 9, 0, 1), "unknown frame kind 9"),
    (wire.encode_tick(TICK)[:-1], "symbol length"),
])
def test_bad_frames_name_the_problem(data, words):
    with pytest.raises(wire.WireError) as err:
        wire.decode(data)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_tcp_length_out_of_range_is_refused():
    with pytest.raises(wire.WireError, match="TCP frame length"):
        wire.FrameReader().feed(b"\xff\xff" + bytes(20))


def _only_wire_errors(fn, data):
    try:
        fn(data)
    except wire.WireError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data):
    _only_wire_errors(wire.decode, data)
    _only_wire_errors(wire.FrameReader().feed, data)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255), st.integers(0, 120))
def test_corrupted_valid_frames_decode_or_fail_cleanly(pos, value, cut):
    frame = bytearray(wire.encode_tick(TICK))
    frame[pos % len(frame)] = value
    _only_wire_errors(wire.decode, bytes(frame[: len(frame) - cut % len(frame)]))
    _only_wire_errors(wire.FrameReader().feed, wire.frame_for_tcp(bytes(frame)))
