"""order_send round trip through the simulator over loopback: p50/p99 latency and orders per second.

Targets (issue 3): p99 <= 2 ms without faults, >= 2,000 order_send per second. Every order is journaled with
fsync before its reply, so this measures the durable path. Writes out/bench/mt5.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reference.mt5.simclient import SimulatorTerminal  # noqa: E402
from tradedrill.services.mt5sim import simulator_node  # noqa: E402

HOST = "127.0.3.200"
P99_TARGET_MS = 2.0
RATE_TARGET = 2000.0


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def request(mt5, n: int) -> dict:
    # alternate buy/sell on the netting account: the position stays small, the margin check stays real
    return {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.01,
            "type": mt5.ORDER_TYPE_BUY if n % 2 == 0 else mt5.ORDER_TYPE_SELL, "magic": 1, "comment": f"b{n}"}


def sequential(host: str, port: int, count: int, login: int) -> dict:
    mt5 = SimulatorTerminal(host, port)
    assert mt5.initialize(login=login), mt5.last_error()
    for n in range(200):  # warm-up
        mt5.order_send(request(mt5, n))
    latencies = np.empty(count)
    start = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        result = mt5.order_send(request(mt5, n))
        latencies[n] = time.perf_counter() - t0
        assert result is not None and result.retcode == mt5.TRADE_RETCODE_DONE, (result, mt5.last_error())
    elapsed = time.perf_counter() - start
    mt5.shutdown()
    ms = latencies * 1000
    return {"orders": count, "seconds": round(elapsed, 3), "orders_per_second": round(count / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3)}


def concurrent(host: str, port: int, count: int, clients: int, login: int) -> dict:
    done = []

    def run() -> None:
        mt5 = SimulatorTerminal(host, port)
        assert mt5.initialize(login=login)
        for n in range(count // clients):
            assert mt5.order_send(request(mt5, n)).retcode == mt5.TRADE_RETCODE_DONE
        done.append(count // clients)
        mt5.shutdown()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    elapsed = time.perf_counter() - start
    return {"clients": clients, "orders": sum(done), "seconds": round(elapsed, 3),
            "orders_per_second": round(sum(done) / elapsed, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "mt5.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port(HOST)
        node = simulator_node("bench-mt5sim", HOST, port, Path(tmp) / "state", log_path=Path(tmp) / "sim.log")
        try:
            node.start().wait_ready()
            seq = sequential(HOST, port, args.orders, login=5002)
            conc = concurrent(HOST, port, args.orders, clients=4, login=5002)
        finally:
            node.stop()
    report = {
        "benchmark": "mt5 simulator order_send round trip over loopback (journal fsync per order)",
        "sequential": seq,
        "concurrent": conc,
        "targets": {"p99_ms_max": P99_TARGET_MS, "orders_per_second_min": RATE_TARGET},
        # the tail is fsync variance plus CPU contention: record how busy the machine was (2 cores here)
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "met": {"p99": seq["p99_ms"] <= P99_TARGET_MS, "rate": seq["orders_per_second"] >= RATE_TARGET},
    }
    print(f"order_send sequential: {seq['orders']} orders in {seq['seconds']} s -> "
          f"{seq['orders_per_second']} orders/s; p50 {seq['p50_ms']} ms, p99 {seq['p99_ms']} ms, "
          f"max {seq['max_ms']} ms")
    print(f"order_send {conc['clients']} clients: {conc['orders_per_second']} orders/s")
    print(f"targets: p99 <= {P99_TARGET_MS} ms: {'met' if report['met']['p99'] else 'MISSED'}; "
          f">= {RATE_TARGET:.0f} orders/s: {'met' if report['met']['rate'] else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
