"""Benchmark of the fault proxy with no toxics: added round-trip latency (p50/p99) and throughput, against a
direct connection to the same echo server. Targets: at most 0.3 ms added at p99, at least 100 MB/s.

Run: .venv/bin/python benchmarks/bench_proxy.py [--proxy-process]; writes out/bench/proxy.json.
The echo server and the proxy run in separate processes (as in a drill: the proxy is its own process), the
client in this one.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faults.network import ToxiproxyAPI  # noqa: E402
from tradedrill.process import ProcessNode  # noqa: E402

ECHO = """
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.4.60", 47460)); srv.listen(64)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1 << 20)
    while True:
        n = c.recv_into(buf)
        if not n: c.close(); return
        c.sendall(memoryview(buf)[:n])
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
SINK = """
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.4.60", 47461)); srv.listen(64)
def serve(c):
    buf = bytearray(1 << 20); total = 0
    while True:
        n = c.recv_into(buf)
        if not n: break
        total += n
    c.sendall(str(total).encode()); c.close()
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def can_connect(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def node(name: str, argv: list[str], port: int, out: Path) -> ProcessNode:
    return ProcessNode(name=name, role="bench", address="127.0.4.60", port=port, argv=argv,
                       log_path=out / f"{name}.log", ready=lambda: can_connect("127.0.4.60", port))


def latencies(addr: tuple[str, int], n: int, size: int = 64) -> list[float]:
    s = socket.create_connection(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * size
    out = []
    try:
        for i in range(n + 200):
            t0 = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < size:
                got += len(s.recv(65536))
            if i >= 200:  # warm-up
                out.append(time.perf_counter() - t0)
    finally:
        s.close()
    return out


def throughput(addr: tuple[str, int], total: int) -> float:
    s = socket.create_connection(addr)
    chunk = b"y" * (1 << 20)
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    reply = s.recv(100)
    elapsed = time.perf_counter() - t0
    s.close()
    assert int(reply) == sent, (reply, sent)
    return sent / elapsed / 1e6


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 10 else max(values)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--megabytes", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    out_dir = ROOT / "out" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    nodes = [node("bench-echo", [py, "-c", ECHO], 47460, out_dir),
             node("bench-sink", [py, "-c", SINK], 47461, out_dir),
             node("bench-proxy", [py, "-m", "tradedrill.cli", "faults", "proxy", "serve", "--listen",
                                  "127.0.4.60:47474"], 47474, out_dir)]
    for n in nodes:
        n.cwd = ROOT
    try:
        for n in nodes:
            n.start().wait_ready(20)
        api = ToxiproxyAPI("http://127.0.4.60:47474")
        echo_p = api.create_proxy("bench-echo", "127.0.4.60:47460", "127.0.4.60:47470")["listen"]
        sink_p = api.create_proxy("bench-sink", "127.0.4.60:47461", "127.0.4.60:47471")["listen"]
        direct, proxied, tp_direct, tp_proxy = [], [], [], []
        for _ in range(args.rounds):  # interleaved rounds so machine noise hits both sides alike
            direct += latencies(("127.0.4.60", 47460), args.samples // args.rounds)
            proxied += latencies(("127.0.4.60", int(echo_p.rsplit(":", 1)[1])), args.samples // args.rounds)
            tp_direct.append(throughput(("127.0.4.60", 47461), (args.megabytes << 20) // args.rounds))
            tp_proxy.append(throughput(("127.0.4.60", int(sink_p.rsplit(":", 1)[1])),
                                       (args.megabytes << 20) // args.rounds))
        api.close()
    finally:
        for n in nodes:
            n.stop()
    result = {
        "samples": len(direct),
        "direct_p50_ms": pct(direct, 0.5) * 1e3, "direct_p99_ms": pct(direct, 0.99) * 1e3,
        "proxy_p50_ms": pct(proxied, 0.5) * 1e3, "proxy_p99_ms": pct(proxied, 0.99) * 1e3,
        "throughput_direct_MBps": statistics.median(tp_direct),
        "throughput_proxy_MBps": statistics.median(tp_proxy),
        "targets": {"added_p99_ms_max": 0.3, "throughput_MBps_min": 100},
    }
    result["added_p50_ms"] = result["proxy_p50_ms"] - result["direct_p50_ms"]
    result["added_p99_ms"] = result["proxy_p99_ms"] - result["direct_p99_ms"]
    result["meets_latency_target"] = result["added_p99_ms"] <= 0.3
    result["meets_throughput_target"] = result["throughput_proxy_MBps"] >= 100
    (out_dir / "proxy.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:28s} {value:10.3f}")
        elif not isinstance(value, dict):
            print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
