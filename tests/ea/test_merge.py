"""The consumer's merge without sockets: first copy of each seq, in order; holes become gaps; BR-3 resets."""
from __future__ import annotations

from reference.ea import wire
from reference.ea.consumer import ConsumerConfig, TickConsumer

from .conftest import BLOCK


def tick(seq: int, stream: int = 1, snapshot: bool = False, symbol: str = "EURUSD") -> wire.Tick:
    return wire.Tick(stream, seq, symbol, 1000 + seq, 1.0, 1.1, sent_ns=seq, snapshot=snapshot)


def consumer(**kw) -> tuple[TickConsumer, list[int]]:
    got: list[int] = []
    c = TickConsumer(ConsumerConfig((f"{BLOCK}.2", 1), (f"{BLOCK}.2", 1), **kw),
                     on_tick=lambda t, path: got.append(t.seq))
    return c, got


def test_both_copies_arrive_and_the_app_sees_each_seq_once_in_order():
    c, got = consumer()
    for seq in (1, 2, 3):
        c.accept(tick(seq), "udp")
        c.accept(tick(seq), "tcp")
    c.accept(tick(5), "udp")  # 4 lost on UDP: held
    assert got == [1, 2, 3]
    c.accept(tick(4), "tcp")  # served from TCP, then 5 from the buffer
    c.accept(tick(5), "tcp")
    c.accept(tick(4), "udp")  # a late copy
    assert got == [1, 2, 3, 4, 5]
    assert c.dropped == {"udp": 1, "tcp": 4} and not c.gaps


def test_a_hole_nobody_fills_is_a_gap_and_never_delivered_later():
    c, got = consumer(gap_hold_ms=0.0)
    c.accept(tick(1), "udp")
    c.accept(tick(4), "udp")
    c._expire_holes()
    c.accept(tick(2), "tcp")  # too late: the app already has 4
    assert got == [1, 4] and c.gaps == [(2, 3, "timeout")]


def test_a_heartbeat_reveals_a_lost_last_tick():
    c, got = consumer(gap_hold_ms=0.0)
    c.accept(tick(1), "udp")
    c.accept(wire.Heartbeat(1, 2, 0), "udp")
    c._expire_holes()
    assert got == [1] and c.gaps == [(2, 2, "timeout")]


def test_a_reconnect_snapshot_starts_from_the_latest_tick_only():
    c, got = consumer()
    c.accept(tick(1), "tcp")
    c.accept(tick(3), "udp")  # held waiting for 2
    c.accept(tick(9, snapshot=True), "tcp")
    assert got == [1, 9] and c.gaps == [(2, 8, "reconnect")]


def test_a_new_stream_starts_clean_and_the_old_one_is_ignored():
    c, got = consumer()
    c.accept(tick(7, stream=1), "udp")
    c.accept(tick(1, stream=2), "tcp", conn=1)  # the restarted EA, over TCP
    c.accept(tick(8, stream=1), "tcp", conn=1)  # a late frame of the dead EA
    c.accept(tick(2, stream=2), "udp")
    assert got == [7, 1, 2] and c.stream == 2


def test_a_forged_stream_over_udp_is_not_believed_while_the_ea_streams():
    """One datagram with a new stream id (from the EA's address, spoofed) must not stop the consumer for good."""
    c, got = consumer()
    c.accept(tick(1, stream=1), "udp")
    assert c.accept(tick(1, stream=666), "udp") is False  # the EA is alive: not an answer to a subscription
    c.accept(tick(2, stream=1), "udp")
    c.accept(tick(3, stream=1), "tcp", conn=1)
    assert got == [1, 2, 3] and c.stream == 1 and not c.gaps


def test_a_new_stream_over_udp_is_believed_as_the_answer_to_a_subscription_and_tcp_has_the_last_word():
    c, got = consumer(udp_silence_ms=0.0)
    c._tcp_conn = 1  # TCP connection 1 is open
    c.accept(tick(1, stream=1), "tcp", conn=1)
    c._last_subscribe = c._last_current + 1.0  # the stream went silent, we subscribed again since
    assert c.accept(tick(1, stream=666), "udp") is True  # a restarted EA answers (or a forger: provisional)
    assert c.stream == 666 and c._provisional
    c.accept(tick(2, stream=1), "tcp", conn=1)  # the old connection's late frame: still retired
    assert c.stream == 666
    c.accept(tick(2, stream=1), "tcp", conn=2)  # a new TCP connection carries the EA's own stream: it wins
    assert c.stream == 1 and got == [1, 1, 2]


def test_a_hole_expires_even_while_later_ticks_keep_arriving():
    c, got = consumer(gap_hold_ms=30.0)
    c.accept(tick(1), "udp")
    c.accept(tick(3), "udp")
    since = c._hole_since
    c.accept(tick(4), "udp")  # a later tick must not restart the hole's clock
    assert c._hole_since == since


def test_a_snapshot_while_udp_flows_does_not_discard_ticks_udp_still_carries():
    c, got = consumer()
    c.udp_up = True
    c.accept(tick(1), "udp")
    c.accept(tick(4, snapshot=True), "tcp")  # TCP reconnected; 2 and 3 are still on their way over UDP
    c.accept(tick(2), "udp")
    c.accept(tick(3), "udp")
    assert got == [1, 2, 3, 4] and not c.gaps
