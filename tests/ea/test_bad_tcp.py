"""An EA (or anything at its address) that sends bad TCP frames (another wire version, garbage, a bad length): each
such connection is a failed attempt of EA-2's cadence (every tcp_retry_s, tcp_attempts of them, then alert
``tcp_gave_up``), never a reconnect loop. Real sockets on <block>.5x; the byte streams are fuzzed (hypothesis)."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.ea import wire
from reference.ea.consumer import ConsumerConfig, TickConsumer
from scenarios.ticks import check_tcp_reconnect, read_rows
from tradedrill.waiting import wait_until

from .conftest import BLOCK

EA_ADDR, CONSUMER_ADDR = f"{BLOCK}.50", f"{BLOCK}.51"
GOOD = wire.encode_tick(wire.Tick(1, 1, "EURUSD", 1000, 1.0, 1.1))


class BadEA:
    """A TCP listener that answers every connection with ``payload`` and closes it; counts connections."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.connections = 0
        self.srv = socket.create_server((EA_ADDR, 0))
        self.srv.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.sendall(self.payload)
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self) -> "BadEA":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.srv.close()


BAD_STREAMS = {
    "wrong version": wire.frame_for_tcp(bytes([*b"TDEA", 2]) + GOOD[5:]),
    "garbage": b"\x00\x20" + b"x" * 32,
    "oversized length": struct.pack("!H", 60000) + b"TDEA",
    "good then garbage": wire.frame_for_tcp(GOOD) + b"\x00\x20" + b"\xff" * 32,
}


@pytest.mark.parametrize("name", sorted(BAD_STREAMS))
def test_a_connection_ending_in_a_bad_frame_is_a_failed_attempt_not_a_reconnect_loop(tmp_path, name):
    with BadEA(BAD_STREAMS[name]) as ea:
        cfg = ConsumerConfig((EA_ADDR, 9), ea.srv.getsockname(), consumer_id="c", bind_host=CONSUMER_ADDR,
                             tcp_retry_s=0.1, history_path=str(tmp_path / "ticks-c.jsonl"))  # EA-2's cadence / 20
        c = TickConsumer(cfg).start()
        try:
            wait_until(lambda: c.tcp_gave_up, 10, "TCP given up after 10 bad connections")
            assert ea.connections == 10 and "tcp_gave_up" in c.alerts
        finally:
            c.stop()
    rows, _ = read_rows(tmp_path / "ticks-c.jsonl")
    r = check_tcp_reconnect({"c": rows}, retry_s=0.1)
    assert r.metrics["tcp_attempts_before_give_up"] == 10 and r.metrics["tcp_reconnect_attempts"] == 10, r.summary
    assert r.metrics["tcp_reconnect_interval_min_s"] >= 0.1, r.evidence


class _Bytes:
    """A socket stand-in that yields ``data`` in pieces, then the EA's close."""

    def __init__(self, data: bytes, piece: int):
        self.chunks = [data[i:i + piece] for i in range(0, len(data), piece)] + [b""]

    def recv(self, _n: int) -> bytes:
        return self.chunks.pop(0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600), st.integers(1, 64))
def test_any_tcp_byte_stream_ends_in_a_sentence_never_an_exception(data, piece):
    c = TickConsumer(ConsumerConfig((EA_ADDR, 9), (EA_ADDR, 9)))
    reason = c._tcp_read(_Bytes(data, piece))
    assert reason == "closed by the EA" or reason.startswith("bad frame: "), reason
