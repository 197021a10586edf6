"""UDP that is not from our EA (issue 14 check, item 1): a consumer takes UDP only from the address it subscribed
to, counts and logs (one line per second) what it refuses, and alerts ``udp_foreign`` when it keeps coming. Real
sockets on <block>.4x (127.0.82 unless TRADEDRILL_EA_TEST_SUBNET): a stand-in EA (UDP only; its TCP port is closed) and a forger on another address."""
from __future__ import annotations

import logging
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from reference.ea import wire
from reference.ea.consumer import ConsumerConfig, TickConsumer
from tradedrill.waiting import wait_until

from .conftest import BLOCK

EA_ADDR, FORGER_ADDR, CONSUMER_ADDR = f"{BLOCK}.40", f"{BLOCK}.41", f"{BLOCK}.42"


def _udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def _tick(stream: int, seq: int) -> bytes:
    return wire.encode_tick(wire.Tick(stream, seq, "EURUSD", 1000 + seq, 1.0, 1.1, sent_ns=time.time_ns()))


def test_a_forged_udp_source_is_refused_counted_logged_once_and_alerted(tmp_path, caplog):
    ea, forger = _udp(EA_ADDR), _udp(FORGER_ADDR)
    got: list[tuple[int, int]] = []
    cfg = ConsumerConfig(ea.getsockname(), (EA_ADDR, 1), consumer_id="c-forged", bind_host=CONSUMER_ADDR,
                         history_path=str(tmp_path / "ticks-c.jsonl"), tcp_connect_timeout_s=0.2)
    c = TickConsumer(cfg, on_tick=lambda t, path: got.append((t.stream, t.seq)))
    caplog.set_level(logging.WARNING, logger="tradedrill.ea.consumer")
    try:
        c.start()
        me = c.udp_address
        seq = 0

        def ea_sends(n: int) -> None:
            nonlocal seq
            for _ in range(n):
                seq += 1
                ea.sendto(_tick(1, seq), me)

        ea_sends(5)
        wait_until(lambda: len(got) == 5, 5, "the EA's first ticks")
        for i in range(40):  # a forger: a new stream id every datagram, and the next seq of the real one
            forger.sendto(_tick(1000 + i, 1), me)
            forger.sendto(_tick(1, seq + 1), me)
        ea_sends(5)
        wait_until(lambda: len(got) == 10, 5, "the EA's ticks after the forged ones")
        assert got == [(1, n) for n in range(1, 11)] and c.stream == 1
        wait_until(lambda: c.udp_refused["foreign_source"] == 80, 5, "80 refused datagrams")
        assert "udp_foreign" in c.alerts and c.alerts.count("udp_foreign") == 1
        lines = [r for r in caplog.records if "refused UDP datagrams" in r.getMessage()]
        assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]  # rate-limited: not one per datagram
    finally:
        c.stop()
        ea.close()
        forger.close()


def test_garbage_udp_from_the_ea_is_counted_and_logged_once_a_second(tmp_path, caplog):
    ea = _udp(EA_ADDR)
    got: list[int] = []
    cfg = ConsumerConfig(ea.getsockname(), (EA_ADDR, 1), consumer_id="c-garbage", bind_host=CONSUMER_ADDR,
                         history_path=str(tmp_path / "ticks-c.jsonl"), tcp_connect_timeout_s=0.2)
    c = TickConsumer(cfg, on_tick=lambda t, path: got.append(t.seq))
    caplog.set_level(logging.WARNING, logger="tradedrill.ea.consumer")
    try:
        c.start()
        me = c.udp_address
        ea.sendto(_tick(1, 1), me)
        for i in range(30):
            ea.sendto(b"not a frame %d" % i, me)
        ea.sendto(bytes([*b"TDEA", 2]) + _tick(1, 2)[5:], me)  # another wire version
        ea.sendto(_tick(1, 2), me)
        wait_until(lambda: got == [1, 2] and c.udp_refused["garbage"] == 31, 5, "31 garbage datagrams refused")
    finally:
        c.stop()
    lines = [r.getMessage() for r in caplog.records if "refused UDP datagrams" in r.getMessage()]
    assert 1 <= len(lines) <= 2 and "garbage" in lines[0], lines
    assert "udp_foreign" not in c.alerts  # our EA's address: not a foreign source


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_any_datagram_from_the_ea_is_delivered_or_counted_never_an_exception(data):
    c = TickConsumer(ConsumerConfig((EA_ADDR, 9), (EA_ADDR, 9)))
    c._udp_peer = (EA_ADDR, 9)
    before = sum(c.udp_refused.values())
    c._on_datagram(data, (EA_ADDR, 9), time.time_ns())
    try:
        wire.decode(data)
        valid = True
    except wire.WireError:
        valid = False
    assert valid or sum(c.udp_refused.values()) == before + 1
