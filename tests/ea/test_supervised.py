"""The EA under the project's supervisor (EA-1), its broker reconnects and network-down restart (EA-4), and its RIS
session (EA-3). Timings are scaled down where the documents' values would make a test wait (30 s -> 1 s); the
policies themselves (EA-1's 3 in 30 s) are the real ones."""
from __future__ import annotations

import json
import signal
import socket
import time

import redis

from reference.ea.streamer import EXIT_BROKER_GAVE_UP, EXIT_NETWORK_DOWN, session_key
from reference.supervisor import POLICIES, Supervisor
from scenarios.history import FaultWindow
from scenarios.ticks import check_ea_restart, check_ticks, consumer_histories, supervisor_events
from tradedrill.waiting import wait_until

from .conftest import CONSUMER_HOSTS, EA_HOSTS, free_port, rows


def events(node) -> list[dict]:
    try:
        return rows(node.extra["events"])
    except FileNotFoundError:
        return []


def test_sigkill_restarts_the_ea_and_consumers_start_clean(make_ea, make_consumer):
    ea = make_ea("ea-1", EA_HOSTS[0], start=False)
    alerts = []
    sup = Supervisor(events_path=make_consumer.run / "supervisor.jsonl", alert=lambda p, m: alerts.append(m))
    try:
        sup.add(ea, POLICIES["ea"])
        ea.wait_ready()
        c = make_consumer(ea, "c1", CONSUMER_HOSTS[0])
        wait_until(lambda: c.delivered > 100, 20, "ticks")
        first_stream = c.stream
        killed = time.time()
        ea.signal(signal.SIGKILL)
        wait_until(lambda: c.stream not in (None, first_stream) and c.delivered > 0, 20, "the restarted EA's ticks")
        mark = c.delivered
        wait_until(lambda: c.delivered > mark + 50, 20, "more ticks")
        c.stop()
    finally:
        sup.stop()
    hist, _ = consumer_histories(make_consumer.run)
    sup_events, _ = supervisor_events(make_consumer.run)
    windows = [FaultWindow("process-kill", "k1", 0.0, None, inject_wall=killed, heal_wall=None)]
    r = check_ea_restart(hist, windows, sup_events)
    assert r.metrics["restart_s"] is not None and r.metrics["crashes_logged"] == 1, r.summary
    assert any(e.event == "restart" for e in sup.events) and not alerts
    stale = check_ticks(hist, windows, gaps_expected_in_faults=True, name="stale_ticks")
    assert stale.metrics["stale_ticks_after_restart"] == 0 and stale.metrics["duplicate_ticks"] == 0


def test_a_crash_loop_stops_after_three_restarts_in_30_s_and_alerts(make_ea, make_consumer):
    host = EA_HOSTS[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((host, 0))  # the EA's UDP port is taken: every start fails at once
        ea = make_ea("ea-loop", host, start=False, udp_bind=[host, taken.getsockname()[1]])
        alerts = []
        sup = Supervisor(events_path=make_consumer.run / "supervisor.jsonl", alert=lambda p, m: alerts.append(m))
        try:
            sup.add(ea, POLICIES["ea"])
            wait_until(lambda: "ea-loop" in sup.gave_up, 30, "the supervisor to give up")
        finally:
            sup.stop()
    assert len(alerts) == 1 and "3" in alerts[0] and "EA-1" in alerts[0]
    sup_events, _ = supervisor_events(make_consumer.run)
    r = check_ea_restart({}, [], sup_events)
    assert r.metrics["failed_restarts_before_stop"] == 3 and r.valid is True, r.summary


def test_broker_unreachable_backs_off_then_restarts_or_gives_up(make_ea, make_consumer):
    dead = {"kind": "simulator", "host": EA_HOSTS[2], "port": free_port(EA_HOSTS[2]), "call_timeout": 0.2}
    # EA-4 network down (scaled 30 s -> 1 s): the EA alerts and exits for its supervisor to restart it
    down = make_ea("ea-down", EA_HOSTS[2], start=False, broker=dead, network_down_s=1.0, backoff_base_s=0.05)
    sup = Supervisor(events_path=make_consumer.run / "supervisor.jsonl")
    try:
        sup.add(down, POLICIES["ea"])
        wait_until(lambda: any(e.event == "restart" for e in sup.events), 20, "a restart after network down")
    finally:
        sup.stop()
    ev = events(down)
    assert any(e["event"] == "alert" and e["what"] == "network_down" for e in ev)
    assert any(e["event"] == "exit" and e["status"] == EXIT_NETWORK_DOWN for e in ev)
    attempts = [e for e in ev if e["event"] == "reconnect_attempt"]
    gaps = [b["wall"] - a["wall"] for a, b in zip(attempts, attempts[1:4])]
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:])), gaps  # exponential backoff
    # EA-4's 10 attempts used up before network_down_s: alert and give up
    gives_up = make_ea("ea-giveup", EA_HOSTS[2], start=False, broker=dead, network_down_s=60.0,
                       backoff_base_s=0.01, backoff_cap_s=0.05)
    gives_up.start()
    wait_until(lambda: gives_up.returncode is not None, 30, "the EA to give up")
    assert gives_up.returncode == EXIT_BROKER_GAVE_UP
    ev = events(gives_up)
    assert len([e for e in ev if e["event"] == "reconnect_attempt"]) == 10
    assert any(e["event"] == "alert" and e["what"] == "broker_gave_up" for e in ev)


def test_ris_unreachable_five_times_starts_a_new_session(make_ea, redis_node):
    """EA-3: RIS retried every ris_retry_s (2 s, scaled to 0.05 s); after 5 failed recoveries, a new session."""
    dead = {"host": redis_node.address, "port": free_port(redis_node.address)}
    ea = make_ea("ea-ris", EA_HOSTS[1], redis=dead, ris_retry_s=0.05)
    wait_until(lambda: any(e["event"] == "alert" and e.get("what") == "ris_session_lost" for e in events(ea)), 10,
               "the session to be given up")
    attempts = [e for e in events(ea) if e["event"] == "ris_attempt"]
    assert len(attempts) >= 5 and [a["n"] for a in attempts[:5]] == [1, 2, 3, 4, 5]
    live = redis.Redis(host=redis_node.address, port=redis_node.port)
    live.hset(session_key("tradedrill", "ea-ris2"), mapping={"session_id": "old", "starts": 1})
    ea2 = make_ea("ea-ris2", EA_HOSTS[2], redis={"host": redis_node.address, "port": redis_node.port})
    wait_until(lambda: any(e["event"] == "session_resumed" for e in events(ea2)), 10, "the session resumed")
    assert json.loads(json.dumps(live.hget(session_key("tradedrill", "ea-ris2"), "session_id").decode())) == "old"
