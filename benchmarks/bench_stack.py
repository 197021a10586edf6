"""Cold start of the whole local topology, and the peak memory of each node.

Target (issue 2): every node ready in at most 10 s once the packages are installed. Peak memory is the kernel's
high-water mark of resident memory (VmHWM), summed over the node's process group (PostgreSQL has several).
Writes out/bench/stack.json.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from tradedrill.local import LocalStack
from tradedrill.process import group_members
from tradedrill.topology import Topology

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
TARGET_S = 10.0


def peak_rss_mb(pgid: int) -> float:
    total_kb = 0
    for pid in group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total_kb / 1024


def main() -> None:
    cold, peaks = [], {}
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="bench-stack-") as d:
            with LocalStack(Topology.default(subnet="127.0.7"), d) as stack:
                cold.append(stack.timings["ready_s"])
                for name, node in stack.nodes.items():
                    peaks.setdefault(name, []).append(peak_rss_mb(node.pid))
    result = {
        "cold_start_s": {"runs": [round(x, 3) for x in cold], "median": round(statistics.median(cold), 3),
                         "max": round(max(cold), 3), "target_max": TARGET_S, "pass": max(cold) <= TARGET_S},
        "peak_rss_mb": {name: round(max(v), 1) for name, v in peaks.items()},
    }
    print(f"cold start of the whole topology over {RUNS} runs: median {result['cold_start_s']['median']} s, "
          f"max {result['cold_start_s']['max']} s (target <= {TARGET_S} s: {'PASS' if result['cold_start_s']['pass'] else 'MISS'})")
    for name, mb in result["peak_rss_mb"].items():
        print(f"  peak memory {name:<12} {mb:8.1f} MiB")
    out = Path("out/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stack.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
