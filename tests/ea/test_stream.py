"""The EA and its consumers for real: processes, UDP and TCP on loopback, the kernel's UDP loss rule, Redis.

Each test also runs the tick checkers (``scenarios.ticks``) on what the consumers recorded, including against
deliberately broken consumers built here (one delivers both copies, one never falls back to TCP, one never alerts):
the checkers must catch them. No assertion on a measured time: only on what must hold whatever the machine's load.
"""
from __future__ import annotations

import time

import pytest
import redis

from faults.kernel import UdpLossKernel, kernel_faults_available
from reference.ea import wire
from reference.ea.consumer import TickConsumer, read_latest
from reference.ea.streamer import session_key
from scenarios.history import FaultWindow
from scenarios.ticks import (check_ea_restart, check_tcp_reconnect, check_tick_fallback, check_ticks,
                             consumer_histories)
from tradedrill.waiting import wait_until

from .conftest import BLOCK, CONSUMER_HOSTS, EA_HOSTS, free_port


class BothCopies(TickConsumer):
    """Broken on purpose: hands the application every copy it receives."""

    def accept(self, msg, path, recv_ns=None, conn=None):
        if isinstance(msg, wire.Tick):
            with self._lock:
                self._deliver(msg, path, recv_ns or time.time_ns())
            return True
        return super().accept(msg, path, recv_ns, conn)


class NoFallback(TickConsumer):
    """Broken on purpose: reads TCP but never serves a tick from it."""

    def accept(self, msg, path, recv_ns=None, conn=None):
        if path == "tcp":
            return True
        return super().accept(msg, path, recv_ns, conn)


class NeverAlerts(TickConsumer):
    """Broken on purpose: gives up on TCP silently."""

    def _alert(self, what, message):
        pass


def window(name: str, t0: float, t1: float | None) -> FaultWindow:
    return FaultWindow(name, name + "-1", 0.0, None, inject_wall=t0, heal_wall=t1)


def history(make_consumer, *ids):
    hist, bad = consumer_histories(make_consumer.run)
    assert bad == 0
    return {k: v for k, v in hist.items() if not ids or k in ids}


def test_two_eas_side_by_side_each_tick_once_in_order_with_ris(make_ea, make_consumer, redis_node):
    ris = {"host": redis_node.address, "port": redis_node.port}
    ea1 = make_ea("ea-1", EA_HOSTS[0], redis=ris)
    ea2 = make_ea("ea-2", EA_HOSTS[1], redis=ris, symbols=["USDJPY"])
    c1 = make_consumer(ea1, "c1", CONSUMER_HOSTS[0], redis=ris)
    c2 = make_consumer(ea2, "c2", CONSUMER_HOSTS[1])
    both = make_consumer(ea1, "bad-both", CONSUMER_HOSTS[2], cls=BothCopies)
    wait_until(lambda: min(c1.delivered, c2.delivered) > 300 and both.delivered > 300, 30, "300 ticks each")
    for c in (c1, c2, both):
        c.stop()
    good = check_ticks(history(make_consumer, "c1", "c2"))
    assert good.valid is True, good.summary
    assert good.metrics["duplicate_ticks"] == good.metrics["out_of_order_ticks"] == good.metrics["missed_ticks"] == 0
    bad = check_ticks(history(make_consumer, "bad-both"))
    assert bad.valid is False and bad.metrics["duplicate_ticks"] > 0, bad.summary
    # several instances: their own sessions, keys and ports (EA-HA 1, EA-3)
    r = redis.Redis(host=redis_node.address, port=redis_node.port)
    wait_until(lambda: r.exists(session_key("tradedrill", "ea-1")) and r.exists(session_key("tradedrill", "ea-2")),
               5, "both sessions in RIS")
    s1, s2 = (r.hgetall(session_key("tradedrill", n)) for n in ("ea-1", "ea-2"))
    assert s1[b"session_id"] != s2[b"session_id"] and s1[b"stream"] != s2[b"stream"]
    latest = read_latest(r, "tradedrill", "ea-1", "c1")
    assert set(latest) == {"EURUSD", "GBPUSD"}
    # a restarted EA resumes its session (EA-3) with a new stream
    ea1.stop()
    ea1.start().wait_ready()
    wait_until(lambda: r.hget(session_key("tradedrill", "ea-1"), "starts") == b"2", 5, "the session resumed")
    assert r.hget(session_key("tradedrill", "ea-1"), "session_id") == s1[b"session_id"]


@pytest.mark.skipif(kernel_faults_available() is not None, reason=str(kernel_faults_available()))
def test_udp_blackhole_is_served_from_tcp_and_a_consumer_without_fallback_is_caught(make_ea, make_consumer):
    ea = make_ea("ea-1", EA_HOSTS[0])
    host = CONSUMER_HOSTS[1]
    good = make_consumer(ea, "good", host)
    bad = make_consumer(ea, "no-fallback", host, cls=NoFallback)
    wait_until(lambda: good.udp_up and bad.udp_up and min(good.delivered, bad.delivered) > 100, 20, "UDP flowing")
    t0 = time.time()
    with UdpLossKernel(host, 100):
        wait_until(lambda: not good.udp_up, 5, "the consumer to notice UDP silence")
        mark = good.delivered
        wait_until(lambda: good.delivered > mark + 100, 10, "100 ticks from TCP")
        t1 = time.time()
    wait_until(lambda: good.udp_up and bad.udp_up, 5, "UDP back")
    mark = good.delivered
    wait_until(lambda: good.delivered > mark + 50 and bad.delivered > 150, 10, "ticks after heal")
    good.stop()
    bad.stop()
    windows = [window("udp-blackhole", t0, t1)]
    hist = history(make_consumer)
    g = check_tick_fallback({"good": hist["good"]}, windows)
    assert g.metrics["tick_fallback_s"] is not None and g.metrics["tick_fallback_samples"] >= 100
    assert g.metrics["tick_fallback_s"] < t1 - t0  # served inside the window, not after it
    w = next(e for e in g.evidence if e["kind"] == "window")
    assert w["udp_lost_detected_s"] is not None and w["back_to_udp_s"] is not None
    assert check_ticks({"good": hist["good"]}, windows).metrics["missed_ticks"] == 0
    b = check_tick_fallback({"no-fallback": hist["no-fallback"]}, windows)
    assert b.valid is False and b.metrics["tick_fallback_s"] >= (t1 - t0) * 0.5, b.summary
    assert check_ticks({"no-fallback": hist["no-fallback"]}, windows).metrics["missed_ticks"] > 0


def test_tcp_reconnects_then_alerts_and_a_silent_consumer_is_caught(make_ea, make_consumer):
    ea = make_ea("ea-1", EA_HOSTS[0])
    fast = {"tcp_retry_s": 0.1}  # the cadence scaled down 20x; attempts stay 10
    good = make_consumer(ea, "good", CONSUMER_HOSTS[0], **fast)
    silent = make_consumer(ea, "silent", CONSUMER_HOSTS[1], cls=NeverAlerts, **fast)
    wait_until(lambda: min(good.delivered, silent.delivered) > 50 and good.tcp_connected, 20, "both paths up")
    ea.kill()  # both paths down at once
    wait_until(lambda: good.tcp_gave_up and silent.tcp_gave_up, 20, "10 failed attempts")
    assert "both_down" in good.alerts and "tcp_gave_up" in good.alerts
    good.stop()
    silent.stop()
    hist = history(make_consumer)
    g = check_tcp_reconnect({"good": hist["good"]})
    assert g.metrics["tcp_reconnect_attempts"] == 10 and g.metrics["missing_alerts"] == 0
    assert g.metrics["tcp_reconnect_interval_min_s"] >= 0.1
    s = check_tcp_reconnect({"silent": hist["silent"]})
    assert s.valid is False and s.metrics["missing_alerts"] == 2, s.evidence


def test_tcp_reconnect_finds_the_latest_tick_only(make_ea, make_consumer):
    """BR-3: a consumer that connects while UDP is down starts from the latest tick; never a stale one."""
    ea = make_ea("ea-1", EA_HOSTS[0])
    early = make_consumer(ea, "early", CONSUMER_HOSTS[1])
    # the snapshot replays the latest tick of each of the two symbols: the older of them may be one seq behind
    wait_until(lambda: early.delivered > 60, 10, "a running stream")
    c = make_consumer(ea, "late", CONSUMER_HOSTS[0])
    wait_until(lambda: c.delivered > 20, 10, "ticks")
    c.stop()
    early.stop()
    rows = history(make_consumer)["late"]
    first = next(r for r in rows if r["t"] == "tick")
    assert first["seq"] > 50  # it joined a running stream at its latest tick, not from the start
    assert check_ticks({"late": rows}, name="stale_ticks").metrics["stale_ticks_after_restart"] == 0


@pytest.mark.skipif(kernel_faults_available() is not None, reason=str(kernel_faults_available()))
def test_a_cut_that_drops_packets_is_noticed_by_silence_and_alerted(make_ea, make_consumer):
    """tcp-cut: dropped packets leave the TCP socket open and silent; 250 ms without a heartbeat is a disconnect."""
    from faults.kernel import Partition

    ea = make_ea("ea-1", EA_HOSTS[0])
    host = CONSUMER_HOSTS[2]
    c = make_consumer(ea, "cut", host, tcp_retry_s=0.1, tcp_connect_timeout_s=0.1)
    wait_until(lambda: c.delivered > 50 and c.tcp_connected and c.udp_up, 20, "both paths up")
    with Partition([[host], [EA_HOSTS[0]]], mode="drop"):
        wait_until(lambda: c.tcp_gave_up, 20, "TCP given up")
    assert c.alerts == ["both_down", "tcp_gave_up"]
    wait_until(lambda: c.udp_up, 10, "UDP back after heal")
    c.stop()
    r = check_tcp_reconnect(history(make_consumer, "cut"))
    assert r.metrics["tcp_reconnect_attempts"] == 10 and r.metrics["missing_alerts"] == 0
    reasons = [row.get("reason", "") for row in history(make_consumer, "cut")["cut"] if row["t"] == "tcp_disconnected"]
    assert reasons and reasons[0].startswith("silent for")


def test_duplicated_and_reordered_udp_never_reaches_the_application(make_ea, make_consumer):
    """udp-dup-reorder: the fault proxy duplicates and delays UDP ticks (seeded); the app sees each seq once, in
    order; the consumer that hands over every copy is caught."""
    from faults.network import LinkFaults
    from faults.proxy.server import EmbeddedToxiproxy

    ea = make_ea("ea-1", EA_HOSTS[0])
    with EmbeddedToxiproxy(listen=f"{BLOCK}.30:0", seed=7) as srv:
        links = LinkFaults(srv.url, seed=7)
        try:
            listen = links.proxy("ticks", f"{ea.extra['udp'][0]}:{ea.extra['udp'][1]}", f"{BLOCK}.30:0",
                                 protocol="udp")
            host, _, port = listen.rpartition(":")
            good = make_consumer(ea, "good", CONSUMER_HOSTS[0], udp_target=(host, int(port)))
            both = make_consumer(ea, "both", CONSUMER_HOSTS[1], cls=BothCopies, udp_target=(host, int(port)))
            wait_until(lambda: good.udp_up and both.udp_up, 10, "UDP through the proxy")
            with links.udp_duplicate("ticks", 0.5, stream="downstream"), \
                    links.udp_reorder("ticks", 0.3, delay_ms=15, stream="downstream"):
                mark = good.delivered
                wait_until(lambda: good.delivered > mark + 300, 20, "300 ticks under dup+reorder")
            good.stop()
            both.stop()
        finally:
            links.close()
    assert good.dropped["udp"] > 0  # copies arrived and were refused
    g = check_ticks(history(make_consumer, "good"))
    assert g.valid is True and g.metrics["duplicate_ticks"] == g.metrics["out_of_order_ticks"] == 0, g.summary
    b = check_ticks(history(make_consumer, "both"))
    assert b.valid is False and b.metrics["duplicate_ticks"] > 0


def test_the_ea_logs_bad_datagrams_once_a_second_with_a_count_in_its_own_words(make_ea):
    import socket as _socket

    ea = make_ea("ea-1", EA_HOSTS[0])
    other_version = bytes([*b"TDEA", 2]) + wire.encode_subscribe(wire.Subscribe("x"))[5:]
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
        s.bind((CONSUMER_HOSTS[0], 0))
        for _ in range(50):
            s.sendto(other_version, ea.extra["udp"])
    wait_until(lambda: "bad datagram" in ea.log_path.read_text(), 5, "the EA to report the bad datagrams")
    lines = [line for line in ea.log_path.read_text().splitlines() if "bad datagram" in line]
    assert len(lines) == 1, lines  # not one line per datagram
    assert "wire version 2 is not supported (this EA reads version 1)" in lines[0], lines[0]
