"""Benchmark of the EA tick stream (issue 14): tick path latency beside a bare UDP and TCP echo measured in the same
run, UDP->TCP fallback, EA restart, and the consumer's TCP reconnect cadence.

Targets (issue 14): tick path p99 <= 1 ms on loopback (PERF-1 asks 10 ms), UDP->TCP fallback <= 50 ms (EA-2 asks
100 ms), EA restart <= 500 ms (EA-1; TV 500 ms, EA-HA 1 s).

- tick path: EA send (``sent_ns``) to delivery to the application, and broker ``time_msc`` to delivery (this one
  includes the broker's tick grid and the EA's 1 ms poll), from ``--seconds`` of a real simulator (ticks every
  ``--tick-ms`` ms on two symbols), a real EA process and a consumer in this process;
- floor: a bare echo server process (UDP and TCP, 64-byte payloads) paced like the ticks; RTT and RTT/2 (one way);
- fallback (root, nftables): ``--windows`` times, 100 % UDP loss at the consumer's address for 1 s: the
  send-to-delivery time of every tick served from TCP inside the window, and the time to notice UDP silence;
- restart: ``--restarts`` (at most 3: EA-1 gives up at the 4th failure within 30 s) SIGKILLs of the EA under the supervisor's EA-1 policy: kill to the first tick of the new
  stream at the consumer, and kill to the supervisor's restart;
- reconnect: a consumer against a closed TCP port: 10 attempts 2 s apart, then its alert (about 18 s; ``--quick``
  skips it).

Addresses 127.0.83.x (the tick benchmark's block; ``TRADEDRILL_EA_BENCH_SUBNET`` moves it). Writes
out/bench/ticks.json. Run:
``.venv/bin/python benchmarks/bench_ticks.py [--seconds 10] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faults.kernel import UdpLossKernel, kernel_faults_available  # noqa: E402
from reference.ea.consumer import ConsumerConfig, TickConsumer  # noqa: E402
from reference.supervisor import POLICIES, Supervisor  # noqa: E402
from scenarios.history import FaultWindow  # noqa: E402
from scenarios.ticks import (check_ea_restart, check_tcp_reconnect, check_tick_fallback, consumer_histories,  # noqa: E402
                             stream_facts)
from scenarios.verdicts import percentile  # noqa: E402
from tradedrill.process import ProcessNode  # noqa: E402
from tradedrill.services.ea import ea_node  # noqa: E402
from tradedrill.services.mt5sim import simulator_node  # noqa: E402
from tradedrill.waiting import wait_until  # noqa: E402

BLOCK = os.environ.get("TRADEDRILL_EA_BENCH_SUBNET", "127.0.83").strip()
if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)", BLOCK):
    sys.exit(f"bench_ticks: TRADEDRILL_EA_BENCH_SUBNET={BLOCK!r} is not a loopback block like 127.0.83 (127.x.y)")
SIM, EA, ECHO, CONSUMER, SPARE = (f"{BLOCK}.{n}" for n in (1, 2, 3, 10, 11))
TARGETS = {"tick_path_p99_ms": 1.0, "fallback_ms": 50.0, "restart_ms": 500.0}

ECHO_SERVER = """
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((host, port))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((host, port)); t.listen(8)
def udp():
    while True:
        data, addr = u.recvfrom(2048); u.sendto(data, addr)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = c.recv(2048)
        if not data: return
        c.sendall(data)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def free_port(host: str) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free port on {host}")


def ms(values: list[float], q: float) -> float | None:
    v = percentile(values, q)
    return None if v is None else round(v, 4)


def echo_rtts(port: int, n: int, pace_s: float) -> dict:
    """RTT (ms) of n paced 64-byte UDP and TCP echoes."""
    payload = b"x" * 64
    out: dict[str, list[float]] = {"udp": [], "tcp": []}
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((CONSUMER, 0))
    u.settimeout(1.0)
    t = socket.create_connection((ECHO, port), source_address=(CONSUMER, 0))
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for i in range(n + 100):
            t0 = time.perf_counter_ns()
            u.sendto(payload, (ECHO, port))
            try:
                u.recvfrom(2048)
                if i >= 100:
                    out["udp"].append((time.perf_counter_ns() - t0) / 1e6)
            except socket.timeout:
                pass
            t0 = time.perf_counter_ns()
            t.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(t.recv(2048))
            if i >= 100:
                out["tcp"].append((time.perf_counter_ns() - t0) / 1e6)
            time.sleep(pace_s)  # pacing like the tick stream, not synchronisation
    finally:
        u.close()
        t.close()
    return {f"{p}_rtt_p50_ms": ms(v, 50) for p, v in out.items()} | \
        {f"{p}_rtt_p99_ms": ms(v, 99) for p, v in out.items()} | \
        {f"{p}_one_way_p50_ms": ms([x / 2 for x in v], 50) for p, v in out.items()} | \
        {f"{p}_one_way_p99_ms": ms([x / 2 for x in v], 99) for p, v in out.items()} | {"samples": n}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tick-ms", type=int, default=5)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--restarts", type=int, default=3,
                    help="SIGKILLs of the EA (at most EA-1's 3: a 4th within 30 s makes the supervisor give up)")
    ap.add_argument("--quick", action="store_true", help="skip the 18 s TCP reconnect cadence run")
    args = ap.parse_args()
    out_dir = ROOT / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ticks-"))
    run = work / "run"
    run.mkdir()
    (work / "sim.json").write_text(json.dumps({"tick_step_ms": args.tick_ms}))
    sim_port, ea_port, echo_port = free_port(SIM), free_port(EA), free_port(ECHO)
    sim = simulator_node("bench-sim", SIM, sim_port, work / "sim", seed=3, config_file=work / "sim.json",
                         log_path=work / "sim.log")
    ea = ea_node("bench-ea", {"symbols": ["EURUSD", "GBPUSD"],
                              "broker": {"kind": "simulator", "host": SIM, "port": sim_port, "call_timeout": 1.0},
                              "udp_bind": [EA, ea_port], "tcp_bind": [EA, ea_port]}, work / "ea")
    echo = ProcessNode(name="bench-echo", role="bench", address=ECHO, port=echo_port,
                       argv=[sys.executable, "-c", ECHO_SERVER, ECHO, str(echo_port)], log_path=work / "echo.log",
                       ready=lambda: _can_connect(ECHO, echo_port))
    sup = Supervisor(events_path=run / "supervisor.jsonl")
    consumers: list[TickConsumer] = []
    result: dict = {"targets": TARGETS, "tick_ms": args.tick_ms, "symbols": 2}
    try:
        sim.start().wait_ready()
        echo.start().wait_ready()
        sup.add(ea, POLICIES["ea"])
        ea.wait_ready()
        consumer = TickConsumer(ConsumerConfig((EA, ea_port), (EA, ea_port), consumer_id="bench", bind_host=CONSUMER,
                                               history_path=str(run / "ticks-bench.jsonl")))
        consumers.append(consumer.start())
        wait_until(lambda: consumer.delivered > 100, 20, "the stream to flow")
        # 1. steady stream, and the bare echo floor right after it in the same run
        t0 = time.time()
        wait_until(lambda: time.time() - t0 >= args.seconds, args.seconds + 30, f"{args.seconds} s of ticks",
                   interval=0.25)
        steady_until = time.time()
        consumer.flush()
        result["floor"] = echo_rtts(echo_port, int(args.seconds * 1000 / args.tick_ms / 2), args.tick_ms / 2000)
        rows = [r for r in consumer_histories(run)[0]["bench"]
                if r.get("t") == "tick" and t0 <= r["deliver_ns"] / 1e9 <= steady_until]
        path = [(r["deliver_ns"] - r["sent_ns"]) / 1e6 for r in rows]
        msc = [r["deliver_ns"] / 1e6 - r["time_msc"] for r in rows]
        result["tick"] = {"samples": len(rows), "path_p50_ms": ms(path, 50), "path_p99_ms": ms(path, 99),
                          "path_max_ms": ms(path, 100), "from_time_msc_p50_ms": ms(msc, 50),
                          "from_time_msc_p99_ms": ms(msc, 99),
                          "served_from_tcp_share": round(sum(r["path"] == "tcp" for r in rows) / max(1, len(rows)), 3)}
        # 2. UDP -> TCP fallback
        why = kernel_faults_available()
        windows: list[FaultWindow] = []
        if why is None:
            for i in range(args.windows):
                a = time.time()
                with UdpLossKernel(CONSUMER, 100):
                    wait_until(lambda: time.time() - a >= 1.0, 5, "a 1 s UDP blackhole", interval=0.05)
                    b = time.time()
                windows.append(FaultWindow("udp-blackhole", f"w{i}", 0.0, None, inject_wall=a, heal_wall=b))
                wait_until(lambda: consumer.udp_up, 5, "UDP back")
            consumer.flush()
            fb = check_tick_fallback(consumer_histories(run)[0], windows)
            hist = consumer_histories(run)[0]["bench"]
            served = [(r["deliver_ns"] - r["sent_ns"]) / 1e6 for r in hist if r.get("t") == "tick"
                      and r["path"] == "tcp" and any(w.inject_wall <= r["deliver_ns"] / 1e9 <= w.heal_wall
                                                     for w in windows)]
            detect = [e["udp_lost_detected_s"] * 1000 for e in fb.evidence
                      if e.get("kind") == "window" and e.get("udp_lost_detected_s") is not None]
            back = [e["back_to_udp_s"] * 1000 for e in fb.evidence
                    if e.get("kind") == "window" and e.get("back_to_udp_s") is not None]
            missed = sum(h["count"] for h in stream_facts(hist).holes)
            result["fallback"] = {"windows": len(windows), "served_from_tcp": len(served),
                                  "served_p50_ms": ms(served, 50), "served_p99_ms": ms(served, 99),
                                  "served_max_ms": ms(served, 100), "udp_silence_detected_ms": [round(x, 2) for x in detect],
                                  "back_to_udp_ms": [round(x, 2) for x in back], "missed_ticks": missed}
        else:
            result["fallback"] = {"skipped": why}
        # 3. EA restart under the supervisor (EA-1)
        kills: list[FaultWindow] = []
        sup_restart: list[float] = []
        for i in range(min(args.restarts, POLICIES["ea"].limit_burst or args.restarts)):
            stream = consumer.stream
            before = len([e for e in sup.events if e.event == "restart"])
            k = time.time()
            ea.signal(signal.SIGKILL)
            kills.append(FaultWindow("process-kill", f"k{i}", 0.0, None, inject_wall=k, heal_wall=None))
            wait_until(lambda: consumer.stream != stream, 10, "the restarted EA's first tick")
            ev = [e for e in sup.events if e.event == "restart"]
            if len(ev) > before:
                sup_restart.append((ev[-1].wall - k) * 1000)
            wait_until(lambda: consumer.delivered > 0 and consumer.udp_up, 10, "the stream after restart")
        consumer.flush()
        rr = check_ea_restart(consumer_histories(run)[0], kills, [])
        restarts = [e["restart_s"] * 1000 for e in rr.evidence if e.get("kind") == "restart"]
        result["restart"] = {"kills": len(kills), "kill_to_first_tick_ms": [round(x, 1) for x in restarts],
                             "p50_ms": ms(restarts, 50), "max_ms": ms(restarts, 100),
                             "kill_to_supervisor_restart_ms": [round(x, 1) for x in sup_restart],
                             "policy": {"delay_s": POLICIES["ea"].delay_s, "limit": "3 in 30 s"}}
        # 4. TCP reconnect cadence against a closed port (EA-2: 2 s x 10)
        if not args.quick:
            rc = TickConsumer(ConsumerConfig((EA, ea_port), (SPARE, free_port(SPARE)), consumer_id="reconnect",
                                             bind_host=SPARE, history_path=str(run / "ticks-reconnect.jsonl")))
            consumers.append(rc.start())
            wait_until(lambda: rc.tcp_gave_up, 40, "10 failed TCP attempts")
            rc.stop()
            res = check_tcp_reconnect({"reconnect": consumer_histories(run)[0]["reconnect"]})
            intervals = next(e for e in res.evidence if e.get("kind") == "outage")["intervals_s"]
            result["reconnect"] = {"attempts": res.metrics["tcp_reconnect_attempts"], "intervals_s": intervals,
                                   "alerted": rc.alerts}
    finally:
        for c in consumers:
            c.stop()
        sup.stop()
        echo.stop()
        sim.stop()
    tick = result.get("tick", {})
    fallback = result.get("fallback", {})
    result["met"] = {
        "tick_path_p99_ms": tick.get("path_p99_ms") is not None and tick["path_p99_ms"] <= TARGETS["tick_path_p99_ms"],
        "fallback_ms": fallback.get("served_max_ms") is not None and fallback["served_max_ms"] <= TARGETS["fallback_ms"]
        and max(fallback.get("udp_silence_detected_ms") or [0]) <= TARGETS["fallback_ms"],
        "restart_ms": result["restart"].get("max_ms") is not None and result["restart"]["max_ms"] <= TARGETS["restart_ms"],
    }
    (out_dir / "ticks.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _can_connect(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
