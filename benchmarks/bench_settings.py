"""The settings and credentials stores (issue 13, parts 5 and 6), each figure beside a floor measured in the same run.

JSON settings (CFG-1, CFG-2; target: load under 1 s), in a temporary folder on this machine's disk:
- ``load``: ``SettingsStore.load`` of a valid file just under the 10 KB cap (engine user settings with 240 symbols);
  floor: ``open`` + ``read`` + ``json.loads`` of the same file (no schema);
- ``load_fallback``: the file and its two newest backups damaged (truncated, invalid JSON, a wrong type), the third
  backup valid, with ``repair`` off so every sample does the same work; floor: reading and ``json.loads``-ing the
  four files;
- ``load_fallback_repair``: one damaged file, the default policy (rewrite from the backup, damaged file kept);
- ``save``: ``SettingsStore.change`` (validate, the file and its backup each written atomically: temp file, fsync,
  rename, fsync of the folder; prune); floor: one bare ``write`` + ``fsync`` of the same bytes.

PostgreSQL credentials (PG-1; target: restore under 5 s), one PostgreSQL 15 cluster of the project's
(``tradedrill.local.LocalStack``, PostgreSQL only) on 127.0.73.x, in a temporary run folder:
- for ``--logins`` counts (default 3 and 1,000 sealed broker logins): ``pg_dump`` gzip dump time and size, then
  ``--repeats`` times: drop the database, ``PgDumps.restore`` (staging database, ``psql --single-transaction``,
  swap), and ``read_broker_logins`` until every login decrypts - ``restore_to_logins_s`` is that whole span;
- floor: the same restore of an empty dump (a database without tables), and ``read_broker_logins`` alone on the
  restored database.

Run: ``.venv/bin/python benchmarks/bench_settings.py [--samples 2000] [--repeats 5]``; writes
``out/bench/settings.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reference.settings import (BrokerLogin, BrokerLoginStore, ConfigPolicy, DumpPolicy, EngineUserSettings,  # noqa: E402
                                LoginKey, PgDumps, default_key_path, engine_settings, read_broker_logins)
from tradedrill.local import LocalStack  # noqa: E402
from tradedrill.topology import Topology  # noqa: E402

from bench_engine import load_average, source_revision  # noqa: E402 - same folder

SUBNET = "127.0.73"
DB = "credentials"


def say(message: str) -> None:
    print(message, flush=True)


def stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000.0
    return {"samples": len(seconds), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3)}


def timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# -- JSON settings ------------------------------------------------------------------------------------------------
def big_settings() -> EngineUserSettings:
    """Engine user settings as close under the 10 KB cap as symbols allow."""
    symbols = [f"SYM{n:05d}.{'X' * 20}" for n in range(240)]
    return EngineUserSettings(symbols=symbols, brokers=[f"broker-{n}" for n in range(16)])


def bench_config(folder: Path, samples: int) -> dict:
    store = engine_settings(folder, ConfigPolicy(repair=False))
    store.on_notice = lambda message: None
    settings = big_settings()
    for n in range(4):   # the file and three backups
        store.save(settings.model_copy(update={"deviation_points": n}))
    size = store.path.stat().st_size
    say(f"  settings file {size:,} bytes (cap {store.policy.max_bytes:,})")

    def floor_read(paths):
        def run():
            for p in paths:
                try:
                    with open(p, "rb") as fh:
                        json.loads(fh.read())
                except ValueError:
                    pass
        return run

    out = {"file_bytes": size, "cap_bytes": store.policy.max_bytes}
    out["load"] = stats(timed(store.load, samples))
    out["load_floor_read_json"] = stats(timed(floor_read([store.path]), samples))
    assert store.load().message is None

    # the file and its two newest backups damaged three different ways; the third backup is valid
    backups = store.backups()
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) // 2])
    backups[0].write_bytes(data.replace(b":", b"=", 1))
    doc = json.loads(data)
    doc["deviation_points"] = "20"
    backups[1].write_bytes(json.dumps(doc).encode())
    assert store.load().source == backups[2]
    out["load_fallback"] = stats(timed(store.load, samples))
    out["load_fallback_floor_read_json"] = stats(timed(floor_read([store.path, *backups[:3]]), samples))

    repairing = engine_settings(folder / "repair")
    repairing.on_notice = lambda message: None
    repairing.save(settings)
    good = repairing.path.read_bytes()
    repair_times = []
    for _ in range(max(20, samples // 10)):
        repairing.path.write_bytes(good[:100])
        t0 = time.perf_counter()
        loaded = repairing.load()
        repair_times.append(time.perf_counter() - t0)
        assert loaded.message and "rewritten from it" in loaded.message
    out["load_fallback_repair"] = stats(repair_times)

    saver = engine_settings(folder / "save")
    saver.save(settings)
    counter = iter(range(10**9))
    out["save"] = stats(timed(lambda: saver.change(deviation_points=next(counter) % 1000), max(50, samples // 10)))
    floor_path = folder / "floor.bin"

    def bare_write():
        fd = os.open(floor_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    out["save_floor_write_fsync"] = stats(timed(bare_write, max(50, samples // 10)))
    worst = max(out[k]["max_ms"] for k in ("load", "load_fallback", "load_fallback_repair")) / 1000.0
    out["target"] = {"requirement": "CFG-2", "load_under_s": store.policy.load_target_s,
                     "worst_load_s": round(worst, 6), "met": worst < store.policy.load_target_s}
    return out


# -- PostgreSQL credentials ---------------------------------------------------------------------------------------
def recreate(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def bench_restore(stack: LocalStack, key: LoginKey, logins: int, repeats: int, folder: Path) -> dict:
    admin = stack.postgres_dsn()
    recreate(admin, DB)
    dsn = stack.postgres_dsn(DB)
    store = BrokerLoginStore(dsn, key)
    store.ensure_schema()
    wanted = {f"broker-{n:05d}": BrokerLogin(100000 + n, f"password-{n}-{os.urandom(8).hex()}", f"Server-{n % 7}")
              for n in range(logins)}
    store.put_many(wanted)
    dumps = PgDumps(dsn, folder / f"dumps-{logins}", DumpPolicy())
    dump = dumps.dump()
    restores, loads, to_logins = [], [], []
    for _ in range(repeats):
        drop(admin, DB)
        t0 = time.perf_counter()
        restored = dumps.restore(dump.path)
        got = read_broker_logins(dsn, key.path)
        to_logins.append(time.perf_counter() - t0)
        assert got == wanted, "restored logins differ"
        restores.append(restored.seconds)
        loads.append(restored.load_seconds)
    read_alone = timed(lambda: read_broker_logins(dsn, key.path), repeats)
    return {"logins": logins, "dump_s": round(dump.seconds, 4), "dump_bytes": dump.bytes,
            "restore_s": stats(restores), "psql_load_s": stats(loads), "restore_to_logins_s": stats(to_logins),
            "read_broker_logins_alone": stats(read_alone)}


def bench_empty_restore(stack: LocalStack, repeats: int, folder: Path) -> dict:
    admin = stack.postgres_dsn()
    recreate(admin, "empty")
    dumps = PgDumps(stack.postgres_dsn("empty"), folder / "dumps-empty", DumpPolicy())
    dump = dumps.dump()
    times = []
    for _ in range(repeats):
        drop(admin, "empty")
        times.append(dumps.restore(dump.path).seconds)
    return {"dump_s": round(dump.seconds, 4), "dump_bytes": dump.bytes, "restore_s": stats(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="loads per settings figure (default 2000)")
    ap.add_argument("--repeats", type=int, default=5, help="restores per PostgreSQL figure (default 5)")
    ap.add_argument("--logins", default="3,1000", help="sealed broker logins per restore figure")
    ap.add_argument("--subnet", default=SUBNET)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "settings.json")
    args = ap.parse_args()
    counts = [int(x) for x in args.logins.split(",") if x.strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "benchmark": "JSON settings load/save (CFG-1, CFG-2) and PostgreSQL credentials dump/restore (PG-1)",
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source_revision(),
        "host": {"cpus": os.cpu_count(), "load_average_start": load_average()},
    }
    work = Path(tempfile.mkdtemp(prefix="bench-settings-"))
    try:
        say(f"bench_settings: JSON settings in {work}")
        report["config"] = bench_config(work / "config", args.samples)
        c = report["config"]
        say(f"  load p50 {c['load']['p50_ms']} ms p99 {c['load']['p99_ms']} ms (floor read+json.loads p50 "
            f"{c['load_floor_read_json']['p50_ms']} ms); fallback p50 {c['load_fallback']['p50_ms']} ms max "
            f"{c['load_fallback']['max_ms']} ms; with repair p50 {c['load_fallback_repair']['p50_ms']} ms; save p50 "
            f"{c['save']['p50_ms']} ms (floor write+fsync p50 {c['save_floor_write_fsync']['p50_ms']} ms)")

        run_dir = work / "run"
        stack = LocalStack(Topology.default(subnet=args.subnet, services=("postgres",)), run_dir)
        cluster = run_dir / "data" / "postgres"
        try:
            say(f"bench_settings: PostgreSQL on {args.subnet}.x")
            stack.up()
            key = LoginKey.ensure(default_key_path(run_dir))
            pg: dict = {"floor_empty_dump": bench_empty_restore(stack, args.repeats, work)}
            say(f"  floor: restore of an empty dump p50 {pg['floor_empty_dump']['restore_s']['p50_ms']} ms")
            pg["restores"] = []
            for count in counts:
                figure = bench_restore(stack, key, count, args.repeats, work)
                pg["restores"].append(figure)
                say(f"  {count} logins: dump {figure['dump_s'] * 1000:.0f} ms ({figure['dump_bytes']:,} bytes); "
                    f"restore to logins readable p50 {figure['restore_to_logins_s']['p50_ms']} ms max "
                    f"{figure['restore_to_logins_s']['max_ms']} ms (psql load p50 "
                    f"{figure['psql_load_s']['p50_ms']} ms)")
            worst = max(f["restore_to_logins_s"]["max_ms"] for f in pg["restores"]) / 1000.0
            target = DumpPolicy().restore_target_s
            pg["target"] = {"requirement": "PG-1", "restore_under_s": target, "worst_restore_to_logins_s":
                            round(worst, 4), "met": worst < target}
            report["postgres"] = pg
        finally:
            stack.down()
            if cluster.is_symlink():
                shutil.rmtree(cluster.resolve(), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["host"]["load_average_end"] = load_average()
    report["met"] = {"CFG-2": report["config"]["target"]["met"], "PG-1": report["postgres"]["target"]["met"]}
    # the figures under the metric names of scenarios/targets.toml
    report["metrics"] = {
        "CFG-1": {"config_backups_kept": ConfigPolicy().backups_kept,
                  "config_size_kb": ConfigPolicy().max_bytes / 1024},
        "CFG-2": {"config_load_s": report["config"]["target"]["worst_load_s"]},
        "PG-1": {"restore_s": report["postgres"]["target"]["worst_restore_to_logins_s"],
                 "dump_interval_h": DumpPolicy().interval_s / 3600, "dumps_kept": DumpPolicy().dumps_kept},
    }
    args.out.write_text(json.dumps(report, indent=2))
    say(f"targets: CFG-2 load < 1 s: {'met' if report['met']['CFG-2'] else 'MISSED'} (worst "
        f"{report['config']['target']['worst_load_s'] * 1000:.1f} ms); PG-1 restore < 5 s: "
        f"{'met' if report['met']['PG-1'] else 'MISSED'} (worst "
        f"{report['postgres']['target']['worst_restore_to_logins_s'] * 1000:.0f} ms)")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
