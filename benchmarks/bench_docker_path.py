"""What the docker provider's network path costs a tick (issue 17): one-way TCP delivery of small timestamped frames
from a container to the host across the run's bridge (veth + Linux bridge), beside the same sender and receiver on
loopback (the local provider's path). The drills' EA sends its ticks exactly this way (a container -> the harness's
tick consumer on a host address of the bridge), so the difference is what the provider adds to EA-2's
``tick_fallback_s`` (a TCP-served tick's send-to-delivery time).

Both paths use the same two programs: a receiver (its own process on the host, no other thread in it) and a sender
that writes ``FRAMES`` 16-byte frames (seq, send time in ns from the wall clock the host and its containers share)
with TCP_NODELAY, one every ``INTERVAL_S``; the receiver stamps each frame when ``recv`` returns it. The sender runs
on the host for loopback and in a container of the app image (the EA's image and Python) for the bridge.

``bench_docker_path.py [--frames N] [--interval-ms MS]``: writes out/bench/docker_path.json::

    {"frames": int, "interval_ms": float,
     "paths": {"loopback": {"p50_ms", "p99_ms", "p999_ms", "max_ms", "over_1ms": int, "n": int},
               "bridge": {...}},
     "bridge_minus_loopback_ms": {"p50", "p99", "p999", "max"}, "note": str|None}

No target of its own: it explains a difference the drills' comparison names (``tradedrill.providers.compare``).
Needs a Docker engine, or root to start dockerd (stopped again at the end); without either nothing is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUBNET = os.environ.get("TRADEDRILL_BENCH_DOCKER_SUBNET", "172.30.17")
LOOPBACK = os.environ.get("TRADEDRILL_BENCH_LOOPBACK", "127.0.97")

SENDER = r"""
import socket, struct, sys, time
host, port, n, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
nxt = time.monotonic()
for seq in range(n):
    nxt += interval
    time.sleep(max(0.0, nxt - time.monotonic()))
    s.sendall(struct.pack("<qq", seq, time.time_ns()))
s.close()
"""

RECEIVER = r"""
import json, socket, struct, sys, time
host, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, 0)); ls.listen(1)
print(ls.getsockname()[1], flush=True)
ls.settimeout(120)
c, _ = ls.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf, delays = b"", []
while len(delays) < n:
    data = c.recv(65536)
    now = time.time_ns()
    if not data:
        break
    buf += data
    while len(buf) >= 16:
        seq, sent = struct.unpack_from("<qq", buf)
        buf = buf[16:]
        delays.append((now - sent) / 1e6)
json.dump(delays, open(out, "w"))
"""


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames per path (default 3000)")
    ap.add_argument("--interval-ms", type=float, default=2.0, help="between frames (default 2 ms)")
    args = ap.parse_args(argv)
    if not 100 <= args.frames <= 100_000:
        ap.error(f"--frames {args.frames}: give 100 to 100000")
    if not 0.1 <= args.interval_ms <= 1000:
        ap.error(f"--interval-ms {args.interval_ms}: give 0.1 to 1000")
    return args


def summary(delays: list[float]) -> dict:
    """p50/p99/p99.9/max in ms (nearest rank) and how many frames took over 1 ms."""
    d = sorted(delays)
    if not d:
        return {"n": 0}

    def rank(p: float) -> float:
        return round(d[min(len(d) - 1, max(0, int(round(p / 100 * len(d) + 0.5)) - 1))], 3)

    return {"n": len(d), "p50_ms": rank(50), "p99_ms": rank(99), "p999_ms": rank(99.9), "max_ms": round(d[-1], 3),
            "over_1ms": sum(1 for x in d if x > 1.0)}


def receive(host: str, frames: int, workdir: Path) -> tuple[subprocess.Popen, int, Path]:
    out = workdir / f"delays-{host}.json"
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, host, str(frames), str(out)], stdout=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline().strip())
    return proc, port, out


def finish(proc: subprocess.Popen, out: Path, timeout: float) -> list[float]:
    proc.wait(timeout)
    return json.loads(out.read_text()) if out.exists() else []


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from tradedrill.docker import engine, images

    result: dict = {"frames": args.frames, "interval_ms": args.interval_ms, "paths": {}, "note": None}
    deadline = args.frames * args.interval_ms / 1000 * 3 + 60
    with tempfile.TemporaryDirectory(prefix="bench-docker-path-") as d:
        work = Path(d)
        # loopback: the local provider's path
        proc, port, out = receive(f"{LOOPBACK}.1", args.frames, work)
        subprocess.run([sys.executable, "-c", SENDER, f"{LOOPBACK}.1", str(port), str(args.frames),
                        str(args.interval_ms / 1000)], check=True, timeout=deadline)
        result["paths"]["loopback"] = summary(finish(proc, out, 30))
        # the bridge: a container of the app image -> the host's address on the run's bridge
        eng = client = net = None
        try:
            eng = engine.ensure()
            client = engine.client(timeout=600)
            tag = images.ensure(client, images.APP, work / "logs")
            from docker.types import IPAMConfig, IPAMPool

            from tradedrill.docker import labels

            net = client.networks.create(
                f"tradedrill-bench-path-{os.getpid()}", driver="bridge",
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=f"{SUBNET}.0/24", gateway=f"{SUBNET}.1")]),
                labels=labels.run_labels(f"bench{os.getpid()}", d),
                options={"com.docker.network.bridge.name": f"td-bp{os.getpid() % 100000}"})
            proc, port, out = receive(f"{SUBNET}.1", args.frames, work)
            container = client.containers.create(
                tag, [images.APP_PYTHON, "-c", SENDER, f"{SUBNET}.1", str(port), str(args.frames),
                      str(args.interval_ms / 1000)], labels=labels.run_labels(f"bench{os.getpid()}", d),
                network=net.name)
            try:
                container.start()
                container.wait(timeout=deadline)
            finally:
                container.remove(force=True)
            result["paths"]["bridge"] = summary(finish(proc, out, 30))
        except engine.DockerUnavailable as exc:
            result["note"] = f"bridge not measured: {exc}"
        finally:
            if net is not None:
                net.remove()
            if client is not None:
                client.close()
            if eng is not None and eng.started:
                eng.stop()
                result["dockerd_tables_removed"] = list(eng.tables_removed)
    lo, br = result["paths"].get("loopback", {}), result["paths"].get("bridge", {})
    if lo.get("n") and br.get("n"):
        result["bridge_minus_loopback_ms"] = {k: round(br[f"{k}_ms"] - lo[f"{k}_ms"], 3)
                                              for k in ("p50", "p99", "p999", "max")}
    for name, s in result["paths"].items():
        print(f"{name:9s} n={s.get('n')} p50 {s.get('p50_ms')} ms, p99 {s.get('p99_ms')} ms, p99.9 "
              f"{s.get('p999_ms')} ms, max {s.get('max_ms')} ms, over 1 ms: {s.get('over_1ms')}")
    if result.get("bridge_minus_loopback_ms"):
        print(f"bridge - loopback: {result['bridge_minus_loopback_ms']}")
    if result["note"]:
        print(result["note"])
    path = Path("out/bench/docker_path.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
