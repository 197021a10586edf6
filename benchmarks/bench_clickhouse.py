"""The ClickHouse history sync (issue 13, CH-1): how fast final outcomes of the engine's journal reach ClickHouse,
and how long an outcome takes to become visible there, each beside its floor measured in the same run.

One Debian clickhouse-server 18.16 on 127.0.74.10 (``tradedrill.services.clickhouse``, the run folder's generated
password), a DuckDB journal in a temporary folder.

Figures:
- ``throughput``: ``--rows`` final outcomes already in the journal, sent by ``ClickHouseSync.run_once`` until none
  waits (batches of ``--batch``: row mapping, INSERT, the ``ch_synced`` marks written to DuckDB) -> rows/s; beside
  the floor ``bare_insert``: the same rows (already mapped) INSERTed in the same batches with the same client into a
  fresh table of the same schema; ``mapping_only``: the row mapping alone.
- ``lag``: the sync thread runs with the engine's defaults (looks every 0.1 s) while outcomes are written at
  ``--rate`` per second in one-outcome transactions (like the engine's outcomes under steady flow); ``--probes``
  more (each written at a random moment, so they do not lock onto the sync's ticks) are followed from the moment
  their journal commit returned to the moment ``SELECT ... FINAL`` shows them (polled every 5 ms) ->
  p50/p99/max; beside the floor ``bare_insert_visible``: one row INSERTed and polled the same
  way (no journal, no thread).

Run: ``.venv/bin/python benchmarks/bench_clickhouse.py [--rows 20000] [--probes 100]``; writes
``out/bench/clickhouse.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from bench_engine import source_revision  # noqa: E402 - same folder: which commit was measured
from reference.engine.journal import Intent, Journal  # noqa: E402
from reference.store.clickhouse_sync import (COLUMN_NAMES, COLUMN_TYPES, ClickHouseSettings,  # noqa: E402
                                             ClickHouseSync, ClickHouseTarget, outcome_row)
from tradedrill.credentials import StackSecrets, write_private  # noqa: E402
from tradedrill.services import clickhouse as clickhouse_svc  # noqa: E402
from tradedrill.topology import Topology  # noqa: E402
from tradedrill.waiting import wait_until  # noqa: E402

ADDRESS = "127.0.74.10"
POLL_S = 0.005


def say(text: str) -> None:
    print(text, flush=True)


def pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": round(max(values), 4) if values else None}


def outcome(k: int) -> Intent:
    sig = {"signal_id": f"sig-{k}", "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01}
    return Intent(signal_id=f"sig-{k}", entry_id=f"{1_700_000_000_000 + k}-0", signal=sig, state="DONE", attempt=1,
                  comment=f"td{k}-1", broker="primary",
                  result={"status": "executed", "code": "10009", "order": 100_000 + k, "deal": 200_000 + k,
                          "price": 1.1})


def visible(target: ClickHouseTarget, signal_id: str) -> bool:
    return target.query(f"SELECT count() FROM {target.table} FINAL WHERE signal_id = %(s)s", {"s": signal_id}
                        )[0][0] == 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="outcomes for the throughput figure")
    ap.add_argument("--batch", type=int, default=2000, help="outcomes per INSERT (the engine's default: 2000)")
    ap.add_argument("--rate", type=float, default=100.0, help="outcomes/s written during the lag figure")
    ap.add_argument("--probes", type=int, default=100, help="outcomes followed for the lag figure")
    ap.add_argument("--seed", type=int, default=13, help="seed of the probes' random start times")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "clickhouse.json")
    args = ap.parse_args()
    if args.rows < 1 or args.batch < 1 or args.probes < 1 or args.rate <= 0:
        ap.error("--rows, --batch, --probes and --rate must be positive")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "ClickHouse history sync (CH-1): throughput and lag beside a bare INSERT",
                    "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "source": source_revision(),
                    "host": {"cpus": os.cpu_count(), "load_average_start": [round(x, 2) for x in os.getloadavg()]}}
    work = Path(tempfile.mkdtemp(prefix="bench-clickhouse-"))
    topo = Topology.default(subnet=ADDRESS.rpartition(".")[0], services=("clickhouse",))
    spec = topo.node("clickhouse")
    spec = type(spec)(spec.name, spec.kind, spec.role, ADDRESS, spec.port, dict(spec.ports))
    node = clickhouse_svc.build_node(spec, topo, work / "run", None)
    try:
        node.start().wait_ready()
        version = clickhouse_svc.http_query(ADDRESS, spec.ports["http"], "SELECT version()",
                                            credential=StackSecrets.ensure(work / "run").clickhouse()).strip()
        report["server"] = {"clickhouse": version, "address": ADDRESS}
        password_file = work / "ch.password"
        write_private(password_file, StackSecrets.ensure(work / "run").clickhouse().password + "\n")

        def settings(table: str) -> ClickHouseSettings:
            return ClickHouseSettings(url=f"http://{ADDRESS}:{spec.ports['http']}", password_file=str(password_file),
                                      table=table, batch_rows=args.batch)

        # --- throughput -------------------------------------------------------------------------------------------
        say(f"bench_clickhouse: {args.rows} outcomes, batches of {args.batch}")
        journal = Journal(work / "journal-A.duckdb")
        intents = [outcome(k) for k in range(args.rows)]
        for start in range(0, len(intents), 1000):
            journal.put_many(intents[start:start + 1000])
        target = ClickHouseTarget(settings("sync_outcomes"))
        target.ensure_table()
        sync = ClickHouseSync(journal, target, instance="A")
        t = time.perf_counter()
        while sync.run_once(0.0, int(time.time() * 1000)) or journal.ch_unsynced():
            pass
        sync_s = time.perf_counter() - t
        assert target.count_final() == args.rows, "the sync lost or duplicated outcomes"
        pending = [journal.get(f"sig-{k}") for k in range(args.rows)]
        t = time.perf_counter()
        rows = [outcome_row(i, "A", int(time.time() * 1000)) for i in pending]
        mapping_s = time.perf_counter() - t
        bare = ClickHouseTarget(settings("bare_outcomes"))
        bare.ensure_table()
        client = bare.client()
        t = time.perf_counter()
        for start in range(0, len(rows), args.batch):
            client.insert("bare_outcomes", rows[start:start + args.batch], column_names=COLUMN_NAMES,
                          column_type_names=COLUMN_TYPES)
        bare_s = time.perf_counter() - t
        report["throughput"] = {
            "rows": args.rows, "batch_rows": args.batch,
            "sync_rows_per_s": round(args.rows / sync_s, 1), "sync_s": round(sync_s, 3),
            "floor_bare_insert_rows_per_s": round(args.rows / bare_s, 1), "floor_bare_insert_s": round(bare_s, 3),
            "mapping_only_rows_per_s": round(args.rows / mapping_s, 1),
            "sync_over_floor": round(sync_s / bare_s, 2)}
        say(f"  sync {args.rows / sync_s:,.0f} rows/s; bare INSERT {args.rows / bare_s:,.0f} rows/s; mapping alone "
            f"{args.rows / mapping_s:,.0f} rows/s")
        sync.stop()
        journal.close()

        # --- lag --------------------------------------------------------------------------------------------------
        say(f"  lag: {args.probes} outcomes followed at {args.rate:g} outcomes/s")
        journal = Journal(work / "journal-B.duckdb")
        target = ClickHouseTarget(settings("lag_outcomes"))
        target.ensure_table()
        sync = ClickHouseSync(journal, target, instance="B").start()
        probe_target = ClickHouseTarget(settings("lag_outcomes"))
        lags: list[float] = []
        rng = random.Random(args.seed)
        stop = threading.Event()
        period = 1.0 / args.rate

        def writer() -> None:
            k, due = 10_000_000, time.monotonic()
            while not stop.is_set():
                journal.put(outcome(k))
                k += 1
                due += period
                stop.wait(max(0.0, due - time.monotonic()))

        background = threading.Thread(target=writer, name="bench-writer", daemon=True)
        background.start()
        try:
            for k in range(args.probes):
                stop.wait(rng.uniform(0, 2 * sync.settings.interval_s))   # no phase lock with the sync's ticks
                journal.put(outcome(k))
                committed = time.perf_counter()
                wait_until(lambda k=k: visible(probe_target, f"sig-{k}"), 30, f"outcome sig-{k} visible with FINAL",
                           interval=POLL_S, max_interval=POLL_S)
                lags.append(time.perf_counter() - committed)
        finally:
            stop.set()
            background.join(5)
            sync.stop()
            journal.close()
        floor: list[float] = []
        bare_lag = ClickHouseTarget(settings("lag_bare"))
        bare_lag.ensure_table()
        for k in range(args.probes):
            t = time.perf_counter()
            bare_lag.insert([outcome_row(outcome(k), "B", int(time.time() * 1000))])
            wait_until(lambda k=k: visible(bare_lag, f"sig-{k}"), 30, f"bare row sig-{k} visible",
                       interval=POLL_S, max_interval=POLL_S)
            floor.append(time.perf_counter() - t)
        report["lag"] = {"rate_per_s": args.rate, "sync_interval_s": sync.settings.interval_s, "poll_s": POLL_S,
                         "lag_s": summary(lags), "floor_bare_insert_visible_s": summary(floor),
                         "rows_sent_during_lag": sync.rows_sent}
        say(f"  lag p50 {statistics.median(lags) * 1000:.1f} ms / p99 {pct(lags, 99) * 1000:.1f} ms / max "
            f"{max(lags) * 1000:.1f} ms; bare INSERT -> visible p50 {statistics.median(floor) * 1000:.1f} ms / p99 "
            f"{pct(floor, 99) * 1000:.1f} ms")
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    report["host"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
