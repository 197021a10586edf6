"""Benchmark of the backend pair behind nginx (issue 15): webhook latency, the client-seen failover gap when the
active backend is killed or frozen (BE-2: < 500 ms, as a distribution), and signals per alert under a retry storm.

- latency: ``--posts`` alerts one after another through nginx, and the same number straight to backend-a (the
  proxy's share is the difference); each answer is 202 with its signal on RTSS confirmed by WAIT 1;
- failover: ``--kills`` SIGKILLs and ``--pauses`` SIGSTOPs (``--pause-s`` each) of backend-a while
  ``--clients`` clients post ``--rate`` alerts/s in total through nginx; per fault the longest wait a client saw
  (``scenarios.webhook.failover_gaps``, the drills' own rule) and the requests that failed; between two faults A is
  serving again (supervisor restart after BE-1's 3 s) and nginx's fail_timeout has passed;
- storm: ``--storm`` alerts each posted 1-5 times at once; RTSS entries per alert id counted with XRANGE.

Real parts: the stack's Redis (3 nodes, 3 Sentinels, ACLs), two uvicorn backends under the supervisor and Debian's
nginx, on 127.0.86.x (ports 18700/18780, apart from the tests'). Writes out/bench/backend.json. Run:
``.venv/bin/python benchmarks/bench_backend.py [--kills 5 --pauses 5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from reference.engine.contract import Keys  # noqa: E402
from scenarios import history as h  # noqa: E402
from scenarios.verdicts import percentile  # noqa: E402
from scenarios.webhook import failover_gaps  # noqa: E402
from tradedrill.local import LocalStack  # noqa: E402
from tradedrill.services.backend import http_get, read_passphrase  # noqa: E402
from tradedrill.topology import Topology  # noqa: E402
from tradedrill.waiting import wait_until  # noqa: E402

SUBNET = os.environ.get("TRADEDRILL_BACKEND_BENCH_SUBNET", "127.0.86").strip()  # docs/CONVENTIONS.md
if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)", SUBNET):
    sys.exit(f"TRADEDRILL_BACKEND_BENCH_SUBNET={SUBNET!r} is not a loopback block like 127.0.86 (127.x.y)")
TARGET_GAP_S = 0.5  # BE-2 / PERF-2


def ms(x):
    return None if x is None else round(x * 1000, 2)


class Load:
    """Open-loop posters: ``rate`` alerts/s over ``clients`` threads; every post an Operation (monotonic times)."""

    def __init__(self, url: str, passphrase: str, rate: float, clients: int, tag: str):
        self.url, self.passphrase, self.rate, self.clients, self.tag = url, passphrase, rate, clients, tag
        self.ops: list[h.Operation] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.n = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        interval = self.clients / self.rate
        next_at = time.monotonic() + i * interval / self.clients
        with httpx.Client(timeout=3.0) as c:
            while not self.stop.is_set():
                if self.stop.wait(max(0.0, next_at - time.monotonic())):
                    return
                next_at += interval
                with self.lock:
                    self.n += 1
                    alert_id = f"{self.tag}-{self.n}"
                body = {"passphrase": self.passphrase, "alert_id": alert_id, "symbol": "EURUSD", "side": "buy",
                        "volume": 0.01}
                t0 = time.monotonic()
                outcome = h.UNKNOWN
                while time.monotonic() - t0 < 3.0:   # like the drills' client: same alert id again on 409/5xx
                    try:
                        code = c.post(self.url, json=body).status_code
                    except httpx.HTTPError:
                        code = None
                    if code in (200, 202):
                        outcome = h.OK
                        break
                    if code is not None and code < 500 and code != 409:
                        outcome = h.FAIL
                        break
                    time.sleep(0.05)   # pacing between two posts of one alert
                with self.lock:
                    self.ops.append(h.Operation(len(self.ops), f"c{i}", "webhook", alert_id, outcome, t0,
                                                time.monotonic()))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def latency(url: str, passphrase: str, n: int, tag: str) -> dict:
    out, codes = [], Counter()
    with httpx.Client(timeout=5.0) as c:
        for i in range(n):
            body = {"passphrase": passphrase, "alert_id": f"{tag}-{i}", "symbol": "EURUSD", "side": "sell",
                    "volume": 0.01}
            t0 = time.perf_counter()
            codes[c.post(url, json=body).status_code] += 1
            out.append(time.perf_counter() - t0)
    return {"posts": n, "codes": dict(codes), "p50_ms": ms(percentile(out, 50)), "p99_ms": ms(percentile(out, 99)),
            "max_ms": ms(max(out))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=500)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--pauses", type=int, default=5)
    ap.add_argument("--pause-s", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--storm", type=int, default=200)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "backend.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    result: dict = {"subnet": SUBNET, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        topo = Topology.default(subnet=SUBNET, services=("redis", "backend"),
                                overrides={"backend.port": 18700, "backend.proxy_port": 18780,
                                           "backend.rate_per_s": 10000, "backend.rate_burst": 10000})
        stack = LocalStack(topo, Path(tmp) / "stack")
        try:
            stack.up()
            proxy, a_spec = topo.node("proxy"), topo.node("backend-a")
            url = f"http://{proxy.address}:{proxy.port}/webhook/tradingview"
            direct = f"http://{a_spec.address}:{a_spec.port}/webhook/tradingview"
            pw = read_passphrase(stack.run_dir)
            latency(url, pw, 50, "warm")
            result["latency_proxy"] = latency(url, pw, args.posts, "lp")
            result["latency_direct"] = latency(direct, pw, args.posts, "ld")
            print("webhook latency through nginx:", result["latency_proxy"], "straight to backend-a:",
                  result["latency_direct"])
            a = stack.node("backend-a")

            def serving() -> bool:
                return a.is_alive() and http_get(a_spec.address, a_spec.port, "/health", 0.5)[0] == 200

            fail_timeout = float(topo.settings["backend.fail_timeout_s"])
            for kind, count in (("kill", args.kills), ("pause", args.pauses)):
                windows = []
                with Load(url, pw, args.rate, args.clients, f"{kind}") as load:
                    load.stop.wait(1.0)   # steady load before the first fault (pacing, not synchronisation)
                    for k in range(count):
                        wait_until(serving, 20, "backend-a serving again")
                        load.stop.wait(fail_timeout + rng.uniform(0.2, 1.0))   # nginx back on A; random phase
                        t0 = time.monotonic()
                        if kind == "kill":
                            a.kill()
                            wait_until(serving, 20, "backend-a restarted by its supervisor")
                        else:
                            a.pause()
                            load.stop.wait(args.pause_s)
                            a.resume()
                        windows.append(h.FaultWindow(kind, f"{kind}-{k + 1}", t0, time.monotonic()))
                    load.stop.wait(2.0)
                gaps = failover_gaps(load.ops, windows)
                values = [g["gap_s"] for g in gaps if g["gap_s"] is not None]
                result[f"failover_{kind}"] = {
                    "faults": count, "requests": len(load.ops), "failed": sum(g["failed"] for g in gaps),
                    "gaps_ms": [ms(v) for v in values], "p50_ms": ms(percentile(values, 50)),
                    "max_ms": ms(max(values) if values else None),
                    "within_target": all(v < TARGET_GAP_S for v in values)}
                print(f"failover ({kind}):", result[f"failover_{kind}"])
            # storm: each alert posted 1-5 times at once
            keys = Keys(group=str(topo.settings["engine.group"]))
            copies = [rng.randint(1, 5) for _ in range(args.storm)]
            codes = Counter()
            with httpx.Client(timeout=5.0, limits=httpx.Limits(max_connections=16)) as c, \
                    ThreadPoolExecutor(8) as pool:
                def post(alert_id):
                    body = {"passphrase": pw, "alert_id": alert_id, "symbol": "EURUSD", "side": "buy", "volume": 0.01}
                    for _ in range(40):   # 409 while the first copy submits: ask again (bounded)
                        code = c.post(url, json=body).status_code
                        if code != 409:
                            return code
                        time.sleep(0.02)   # pacing between retries of one alert
                    return code
                futures = [pool.submit(post, f"storm-{i}") for i, n in enumerate(copies) for _ in range(n)]
                for f in futures:
                    codes[f.result()] += 1
            entries = Counter(f["signal_id"] for _, f in stack.redis(2.0).xrange(keys.rtss)
                              if f["signal_id"].startswith("tv-storm-"))
            per_alert = Counter(entries.get(f"tv-storm-{i}", 0) for i in range(args.storm))
            result["storm"] = {"alerts": args.storm, "posts": sum(copies), "codes": dict(codes),
                               "rtss_entries_per_alert": dict(sorted(per_alert.items()))}
            print("retry storm:", result["storm"])
        finally:
            stack.down()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
