"""Cold start of the whole local topology, and the peak memory of each node.

Target (issue 2): every node ready in at most 10 s once the packages are installed. Peak memory is the kernel's
high-water mark of resident memory (VmHWM), summed over the node's process group (PostgreSQL has several).
Also measured, without a target: the drills' topology (Redis, both brokers, both engines under the supervisor)
until engine A holds the lease and B runs. Writes out/bench/stack.json.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from tradedrill.local import LocalStack
from tradedrill.process import group_members
from tradedrill.topology import Topology

def _runs() -> int:
    """``bench_stack.py [RUNS]`` (default 3): a one-line usage error for anything else, ``--help`` included."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="?", type=int, default=3, help="cold starts of each topology (default 3)")
    args = ap.parse_args()
    if not 1 <= args.runs <= 100:
        ap.error(f"runs {args.runs}: give 1 to 100")
    return args.runs


RUNS = _runs() if __name__ == "__main__" else 3
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


def cold_starts(topo: Topology, peaks: dict[str, list[float]]) -> tuple[list[float], dict[str, list[float]]]:
    cold, phases = [], {}
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="bench-stack-") as d:
            with LocalStack(topo, d) as stack:
                cold.append(stack.timings["ready_s"])
                for phase in ("redis_settled_s", "engines_settled_s"):
                    if phase in stack.timings:
                        phases.setdefault(phase, []).append(stack.timings[phase])
                for name, node in stack.nodes.items():
                    peaks.setdefault(name, []).append(peak_rss_mb(node.pid))
    return cold, phases


def main() -> None:
    peaks: dict[str, list[float]] = {}
    cold, _ = cold_starts(Topology.default(subnet="127.0.7"), peaks)
    drill_cold, drill_phases = cold_starts(
        Topology.default(subnet="127.0.7", services=("redis", "mt5", "engine")), peaks)
    result = {
        "cold_start_s": {"runs": [round(x, 3) for x in cold], "median": round(statistics.median(cold), 3),
                         "max": round(max(cold), 3), "target_max": TARGET_S, "pass": max(cold) <= TARGET_S},
        "drill_topology_cold_start_s": {
            "runs": [round(x, 3) for x in drill_cold], "median": round(statistics.median(drill_cold), 3),
            **{phase: round(statistics.median(v), 3) for phase, v in drill_phases.items()}},
        "peak_rss_mb": {name: round(max(v), 1) for name, v in peaks.items()},
    }
    print(f"cold start of the whole topology over {RUNS} runs: median {result['cold_start_s']['median']} s, "
          f"max {result['cold_start_s']['max']} s (target <= {TARGET_S} s: {'PASS' if result['cold_start_s']['pass'] else 'MISS'})")
    drill = result["drill_topology_cold_start_s"]
    print(f"cold start of the drills' topology (redis, mt5, engine): median {drill['median']} s "
          f"(engines until A holds the lease and B runs: {drill.get('engines_settled_s', '-')} s)")
    for name, mb in result["peak_rss_mb"].items():
        print(f"  peak memory {name:<12} {mb:8.1f} MiB")
    out = Path("out/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stack.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
