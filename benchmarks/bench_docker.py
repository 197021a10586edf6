"""The docker provider's costs (issue 17): a cold image build from nothing, a warm rebuild, and the drills' topology
up as containers, each beside its target.

- cold build: every tradedrill image removed first (no layer of ours left to reuse), then the images the drills'
  topology runs (the bookworm base by mmdebstrap + ``docker import``, redis, app-deps, app) built; target <= 180 s;
- warm rebuild: what a change of the project's source costs once the rest is cached (the app image, removed and
  built again on its cached parent); target <= 10 s. Also reported, without a target: the no-op check that every
  image is current (nothing built);
- topology up: ``DockerStack.up()`` of the drills' topology (3 Redis, 3 Sentinels, 2 brokers, 2 engines: 10
  containers) with the images present, until engine A holds the lease and B runs; target <= 20 s (the median of
  RUNS starts, each judged).

``bench_docker.py [--runs N] [--warm-only]``: ``--warm-only`` leaves the images in place (no cold build). Needs a
Docker engine, or root to start dockerd (then it is stopped at the end); without either every figure is reported
as not measured. Writes out/bench/docker.json:

    {"targets": {"cold_build_s": 180, "warm_rebuild_s": 10, "topology_up_s": 20},
     "cold_build_s": float|None, "cold_images": [{"image", "seconds", "size_mb"}], "warm_rebuild_s": float|None,
     "warm_noop_s": float|None, "topology_up_s": [float], "topology_up_median_s": float|None,
     "engine_start_s": float|None (a dockerd this script started: until it answered; outside the cold build),
     "verdicts": {"cold_build_s": "pass"|"fail"|"not measured", ...}, "note": str|None}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {"cold_build_s": 180.0, "warm_rebuild_s": 10.0, "topology_up_s": 20.0}
SUBNET = os.environ.get("TRADEDRILL_BENCH_DOCKER_SUBNET", "172.30.97")
SERVICES = ("redis", "mt5", "engine")


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="topology starts (default 3)")
    ap.add_argument("--warm-only", action="store_true", help="keep the images: no cold build")
    args = ap.parse_args(argv)
    if not 1 <= args.runs <= 20:
        ap.error(f"--runs {args.runs}: give 1 to 20")
    return args


def verdict(value: float | None, target: float) -> str:
    return "not measured" if value is None else ("pass" if value <= target else "fail")


def _recipes():
    from tradedrill.docker import images

    # redis (+ base), app (+ app-deps), postgres (postgresql-15) and clickhouse (clickhouse-server 18.16), Debian's
    return [images.IMAGE_OF_KIND[k] for k in ("redis", "engine", "postgres", "clickhouse")]


def remove_ours(client) -> list[str]:
    """Every tradedrill image, children first (a cold build starts from nothing of ours)."""
    from tradedrill.docker import images

    removed = []
    for _ in range(10):   # children before parents: a parent with a child refuses; bounded passes
        left = client.images.list(filters={"label": images.LABEL})
        if not left:
            break
        for image in left:
            try:
                client.images.remove(image.id, force=True, noprune=False)
                removed += image.tags
            except Exception:  # noqa: BLE001 - a parent of one still there: next pass
                continue
    return removed


def cold_build(client, log_dir: Path) -> tuple[float, list[dict]]:
    from tradedrill.docker import images

    remove_ours(client)
    records: list = []
    started = time.monotonic()
    for recipe in _recipes():
        images.ensure(client, recipe, log_dir, records=records)
    total = time.monotonic() - started
    return total, [{"image": r.name, "seconds": round(r.seconds, 1), "size_mb": round(r.size_mb, 1)}
                   for r in records if r.built]


def warm(client, log_dir: Path) -> tuple[float, float]:
    """(no-op check of every image, app image rebuilt on its cached parent) in seconds."""
    from tradedrill.docker import images

    for recipe in _recipes():
        images.ensure(client, recipe, log_dir)   # make sure the parents are there
    started = time.monotonic()
    built: list = []
    for recipe in _recipes():
        images.ensure(client, recipe, log_dir, records=built)
    noop = time.monotonic() - started
    if any(r.built for r in built):
        raise RuntimeError(f"a warm check built {[r.name for r in built if r.built]}: the tags are not stable")
    client.images.remove(images.APP.tag, force=True)
    started = time.monotonic()
    images.ensure(client, images.APP, log_dir)
    return noop, time.monotonic() - started


def topology_up(runs: int) -> list[float]:
    from tradedrill.providers.docker import DockerStack

    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-docker-") as d:
            stack = DockerStack(DockerStack.drill_topology(SUBNET, SERVICES), Path(d) / "stack", stop_engine=False)
            started = time.monotonic()
            try:
                stack.up()
                out.append(time.monotonic() - started)
            finally:
                stack.down()
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from tradedrill.docker import engine

    result: dict = {"targets": TARGETS, "cold_build_s": None, "cold_images": [], "warm_rebuild_s": None,
                    "warm_noop_s": None, "topology_up_s": [], "topology_up_median_s": None, "note": None}
    eng = None
    try:
        started = time.monotonic()
        eng = engine.ensure()
        result["engine_start_s"] = round(time.monotonic() - started, 2) if eng.started else None
        client = engine.client(timeout=1800)
    except engine.DockerUnavailable as exc:
        result["note"] = f"not measured: {exc}"
        client = None
    if client is not None:
        log_dir = Path(tempfile.mkdtemp(prefix="bench-docker-logs-"))
        try:
            if not args.warm_only:
                result["cold_build_s"], result["cold_images"] = cold_build(client, log_dir)
                result["cold_build_s"] = round(result["cold_build_s"], 1)
            noop, rebuild = warm(client, log_dir)
            result["warm_noop_s"], result["warm_rebuild_s"] = round(noop, 2), round(rebuild, 2)
            ups = topology_up(args.runs)
            result["topology_up_s"] = [round(u, 2) for u in ups]
            result["topology_up_median_s"] = round(statistics.median(ups), 2)
        finally:
            client.close()
            if eng is not None and eng.started:
                eng.stop()
    result["verdicts"] = {"cold_build_s": verdict(result["cold_build_s"], TARGETS["cold_build_s"]),
                          "warm_rebuild_s": verdict(result["warm_rebuild_s"], TARGETS["warm_rebuild_s"]),
                          "topology_up_s": verdict(result["topology_up_median_s"], TARGETS["topology_up_s"])}
    rows = [("cold image build from nothing", result["cold_build_s"], "cold_build_s"),
            ("warm rebuild (app image on cached deps)", result["warm_rebuild_s"], "warm_rebuild_s"),
            (f"topology up, median of {len(result['topology_up_s']) or args.runs}", result["topology_up_median_s"],
             "topology_up_s")]
    print("docker provider (issue 17)")
    for label, value, key in rows:
        shown = "not measured" if value is None else f"{value:.1f} s"
        print(f"  {label:<44} {shown:>13}   target <= {TARGETS[key]:.0f} s   {result['verdicts'][key]}")
    for img in result["cold_images"]:
        print(f"    built {img['image']:<9} {img['seconds']:>6.1f} s {img['size_mb']:>7.1f} MB")
    if result["warm_noop_s"] is not None:
        print(f"  every image current, nothing built: {result['warm_noop_s']:.2f} s; topology starts: "
              f"{', '.join(f'{u:.1f}' for u in result['topology_up_s'])} s")
    if result.get("engine_start_s") is not None:
        print(f"  dockerd started by this script, answering after {result['engine_start_s']:.1f} s (not in the figures)")
    if result["note"]:
        print(f"  {result['note']}")
    out = Path("out/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "docker.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
