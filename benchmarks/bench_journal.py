"""The intent journal's in-memory window (ENG-5's duplicate check, DDB-1..6): what a long run costs in memory, what
a lookup of an old signal costs, and what a start costs, each beside its floor measured in the same run.

The journal keeps in memory every non-final intent, every final one with work left (not yet published to Redis,
not yet in ClickHouse while the sync runs) and the last ``memory_window`` final ones; older ones are read from
DuckDB by primary key (``Journal.get``). Figures, on a journal of ``--signals`` signals (default 20,000) written
the way the engine writes them (the intent before the send, the outcome, the published flag; in batches of
``--batch``), with a snapshot after each batch (the engine's store keeper, DDB-2):

- ``write``: the process's RSS (KB) read every ``--batch`` signals while the journal is written; ``rss_kb_per_signal``
  is its growth per signal over the second half of the run (after ``memory_window`` signals the window is full).
- ``get``: ``Journal.get`` of a recent signal (in memory), of the first signal (older than the window: a DuckDB
  lookup through the primary key) and of a signal id never seen (what the engine asks for every new signal),
  ``--lookups`` calls each, per call; floors: ``floor_dict_get_s`` (a dict lookup of the same row plus the row's
  conversion, ``Journal._to_intent``), ``floor_duckdb_point_query_s`` (the same SELECT by primary key on a bare
  cursor of the journal's database).
- ``open``: ``Journal(path)`` of the closed journal (an engine start), ``--open-repeat`` times, and how many
  intents it holds in memory after the open; floor ``floor_duckdb_open_s`` (a bare read-write DuckDB session on
  the same file: connect, count the intents, close). After the restart the first signal is in ``intents`` (the
  open folds the log into it): ``get_old_after_restart_s`` is its lookup by primary key alone, beside the same
  ``floor_duckdb_point_query_s``.

During the run an old signal that left memory is looked up in ``intents`` by primary key and in this run's
``intent_log`` by a scan of its ``signal_id`` column (the log has no index: appends stay cheap), so ``get.old_s``
grows with the run's writes until the next start folds the log.

- ``snapshots``: RSS growth a signal with a snapshot every 5 signals (3,600 signals, a fresh process), beside its
  floor without snapshots and its target (at most 4 KB a signal; the COPY FROM DATABASE snapshots grew 8-10 KB);
- ``past_window``: the least-squares RSS slope a signal from twice the window on (window 1,000, 20,000 signals, a
  fresh process), target at most 1.1 KB, beside the same with every intent in memory (window 1,000,000). These two
  were tests (tests/engine/test_memory_journal.py) until memory targets moved to the benchmarks.

Run: ``.venv/bin/python benchmarks/bench_journal.py [--signals 20000] [--window N]``; writes
``out/bench/journal.json`` (``--out``). A journal without ``memory_window`` (before the window) is measured the
same way (the figure then says ``memory_window: null``). Everything happens in a temporary folder on ``--dir``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from reference.engine.journal import _COLUMNS, Intent, Journal  # noqa: E402

from bench_engine import source_revision  # noqa: E402 - same folder: which commit was measured


def say(message: str) -> None:
    print(message, flush=True)


def summary(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"samples": len(s), "p50_s": round(statistics.median(s), 7), "max_s": round(s[-1], 7),
            "min_s": round(s[0], 7)}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def has_window() -> bool:
    return "memory_window" in inspect.signature(Journal.__init__).parameters


def open_journal(path: Path, window: int | None) -> Journal:
    if window is not None and has_window():
        return Journal(path, memory_window=window)
    return Journal(path)


def intent(n: int) -> Intent:
    sid = f"bench-{n:08d}"
    return Intent(signal_id=sid, entry_id=f"1764583000000-{n}", signal={
        "signal_id": sid, "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": 0.01,
        "order_type": "market", "price": None, "sl": None, "tp": None, "ts_ms": 1764583000000 + n},
        state="SENDING", attempt=1, comment=f"td{sid}-1", broker="mt5-primary")


def write(journal: Journal, signals: int, batch: int) -> list[tuple[int, int]]:
    """The engine's writes for ``signals`` executed signals; RSS readings (signals, KB) after each batch."""
    readings = []
    for start in range(0, signals, batch):
        part = [intent(n) for n in range(start, min(signals, start + batch))]
        journal.put_many(part)
        for it in part:
            it.state = "DONE"
            it.result = {"status": "executed", "code": "TRADE_RETCODE_DONE", "reason": "", "order": 100000,
                         "deal": 200000, "price": 1.1, "volume": 0.01, "retcode": 10009}
        journal.put_many(part)
        journal.mark_published_many([it.signal_id for it in part])
        journal.snapshot()
        readings.append((start + len(part), rss_kb()))
    journal.flush_published()
    return readings


# Memory targets (moved here from tests/engine/test_memory_journal.py: memory targets live in benchmarks).
# With a snapshot every 5 signals (the engine at 10 signals/s with DDB-2's 500 ms) the journal's process may grow by
# at most SNAPSHOT_KB_PER_SIGNAL_AT_MOST a signal (the in-memory window, ~0.9 KB of Python objects a signal, plus
# DuckDB's own; measured 1.1-2.4 KB with CHECKPOINT + copy snapshots, 8.1-10.2 KB with the COPY FROM DATABASE ones
# they replaced). Once the window is full (from twice the window on), at most PAST_WINDOW_KB_PER_SIGNAL_AT_MOST a
# signal (least-squares slope; measured 0.69-0.84 KB with a window of 1,000, 1.77 KB with every intent in memory).
SNAPSHOT_KB_PER_SIGNAL_AT_MOST = 4.0
PAST_WINDOW_KB_PER_SIGNAL_AT_MOST = 1.1


def snapshot_growth(folder: Path, signals: int, every: int) -> dict:
    """In a fresh process (``--child-snapshots``): ``signals`` signals written one at a time, a snapshot every
    ``every`` signals (0: none, the floor), RSS read every 600 signals; KB of RSS a signal, first to last reading."""
    journal = Journal(folder / f"journal-snap{every}.duckdb", snapshots_kept=2)
    readings = []
    try:
        for n in range(signals):
            it = intent(n)
            journal.put_many([it])
            it.state = "DONE"
            it.result = {"status": "executed", "code": "TRADE_RETCODE_DONE", "reason": "", "order": 100000 + n,
                         "deal": 200000 + n, "price": 1.1, "volume": 0.01, "retcode": 10009}
            journal.put_many([it])
            journal.mark_published_many([it.signal_id])
            if every and (n + 1) % every == 0 and journal.snapshot() is None:
                raise RuntimeError("a snapshot was not written")
            if (n + 1) % 600 == 0:
                readings.append((n + 1, rss_kb()))
        if journal.counts() != {"DONE": signals} or journal.get(intent(0).signal_id) is None:
            raise RuntimeError("the journal lost signals")
    finally:
        journal.close()
    (n0, r0), (n1, r1) = readings[0], readings[-1]
    return {"kb_per_signal": round((r1 - r0) / (n1 - n0), 3), "readings": readings}


def past_window_growth(folder: Path, window: int, signals: int = 20_000, batch: int = 20,
                       from_signals: int = 2000) -> dict:
    """In a fresh process (``--child-window``): ``signals`` written in batches of ``batch`` with a window of
    ``window``; the least-squares slope (KB of RSS a signal) of the readings, one every 1,000 signals, from
    ``from_signals`` on (twice the bench's window of 1,000: the window full, DuckDB's caches warm; a slope, not two
    readings: one taken during a checkpoint is megabytes off)."""
    journal = Journal(folder / f"journal-window{window}.duckdb", snapshots_kept=2, memory_window=window)
    try:
        readings = write(journal, signals, batch)
    finally:
        journal.close()
    past = [(n, kb) for n, kb in readings if n >= from_signals and n % 1000 == 0]
    slope = statistics.linear_regression([n for n, _ in past], [kb for _, kb in past]).slope
    return {"kb_per_signal": round(slope, 3), "window": window, "signals": signals,
            "readings": past}


def per_call(fn, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signals", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100, help="signals per journal batch (default 100)")
    ap.add_argument("--window", type=int, default=None,
                    help="memory_window (default: the journal's own default)")
    ap.add_argument("--lookups", type=int, default=500, help="get() calls per kind and round (default 500)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of lookups (default 5)")
    ap.add_argument("--open-repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "journal.json")
    ap.add_argument("--snapshot-signals", type=int, default=3600,
                    help="signals of the snapshot-memory figure (default 3600)")
    ap.add_argument("--child-snapshots", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-window", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_snapshots is not None:   # one snapshot-memory figure in a fresh process
        print(json.dumps(snapshot_growth(args.dir, args.snapshot_signals, args.child_snapshots)))
        return 0
    if args.child_window is not None:   # the past-the-window figure in a fresh process
        print(json.dumps(past_window_growth(args.dir, args.child_window)))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir))
    report: dict = {"generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "revision": source_revision(), "signals": args.signals, "batch": args.batch,
                    "host": {"cpus": os.cpu_count(), "duckdb": duckdb.__version__,
                             "load_average_start": [round(x, 2) for x in os.getloadavg()]}}
    try:
        path = work / "journal-A.duckdb"
        journal = open_journal(path, args.window)
        window = getattr(journal, "memory_window", None)
        report["memory_window"] = window
        readings = write(journal, args.signals, args.batch)
        half = len(readings) // 2
        (n0, r0), (n1, r1) = readings[half], readings[-1]
        report["write"] = {"rss_kb_readings": readings, "rss_kb_per_signal": round((r1 - r0) / max(1, n1 - n0), 3),
                           "over_signals": [n0, n1], "in_memory": len(journal._mem),
                           "duckdb_memory_bytes": int(journal._db.execute(
                               "SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] or 0)}
        say(f"write: {args.signals} signals, RSS {readings[0][1]} -> {readings[-1][1]} KB; second half "
            f"{report['write']['rss_kb_per_signal']} KB/signal; in memory {len(journal._mem)} (window {window})")

        recent, old, new = intent(args.signals - 1).signal_id, intent(0).signal_id, "never-seen-0000001"
        assert journal.get(old) is not None and journal.get(recent) is not None and journal.get(new) is None
        row = journal._mem[recent]
        cur = journal._db.cursor()
        names = ", ".join(n for n, _ in _COLUMNS)
        times: dict[str, list[float]] = {k: [] for k in ("recent", "old", "never_seen", "dict", "point_query")}
        for _ in range(args.rounds):
            times["recent"].append(per_call(lambda: journal.get(recent), args.lookups))
            times["old"].append(per_call(lambda: journal.get(old), args.lookups))
            times["never_seen"].append(per_call(lambda: journal.get(new), args.lookups))
            times["dict"].append(per_call(lambda: Journal._to_intent(journal._mem.get(recent, row)), args.lookups))
            times["point_query"].append(per_call(
                lambda: cur.execute(f"SELECT {names} FROM intents WHERE signal_id = ?", [old]).fetchone(),
                args.lookups))
        cur.close()
        report["get"] = {"recent_s": summary(times["recent"]), "old_s": summary(times["old"]),
                         "never_seen_s": summary(times["never_seen"]), "floor_dict_get_s": summary(times["dict"]),
                         "floor_duckdb_point_query_s": summary(times["point_query"]),
                         "old_in_memory": old in journal._mem}
        g = report["get"]
        say(f"get per call p50: recent {g['recent_s']['p50_s'] * 1e6:.1f} us (floor dict {g['floor_dict_get_s']['p50_s'] * 1e6:.1f} us), "
            f"old {g['old_s']['p50_s'] * 1e6:.1f} us, never seen {g['never_seen_s']['p50_s'] * 1e6:.1f} us "
            f"(floor DuckDB point query {g['floor_duckdb_point_query_s']['p50_s'] * 1e6:.1f} us)")
        journal.close()

        opens, floors, held, old_after, point_after = [], [], [], [], []
        for _ in range(args.open_repeat):
            started = time.perf_counter()
            j = open_journal(path, args.window)
            opens.append(time.perf_counter() - started)
            assert j.repair is None, j.repair.line
            held.append(len(j._mem))
            assert j.get(old) is not None
            old_after.append(per_call(lambda: j.get(old), args.lookups))
            c = j._db.cursor()
            point_after.append(per_call(
                lambda: c.execute(f"SELECT {names} FROM intents WHERE signal_id = ?", [old]).fetchone(), args.lookups))
            c.close()
            j.close()
            started = time.perf_counter()
            con = duckdb.connect(str(path))
            con.execute("SELECT count(*) FROM intents").fetchone()
            con.close()
            floors.append(time.perf_counter() - started)
        report["open"] = {"journal_open_s": summary(opens), "floor_duckdb_open_s": summary(floors),
                          "in_memory_after_open": held[-1], "file_bytes": path.stat().st_size,
                          "get_old_after_restart_s": summary(old_after),
                          "floor_duckdb_point_query_s": summary(point_after)}
        o = report["open"]
        say(f"open: p50 {o['journal_open_s']['p50_s'] * 1000:.1f} ms (floor bare DuckDB open "
            f"{o['floor_duckdb_open_s']['p50_s'] * 1000:.1f} ms), {held[-1]} intents in memory after it; get of the "
            f"first signal after it {o['get_old_after_restart_s']['p50_s'] * 1e6:.1f} us (floor DuckDB point query "
            f"{o['floor_duckdb_point_query_s']['p50_s'] * 1e6:.1f} us)")
        figures = {}
        for every in (5, 0):   # each in a fresh process: one RSS baseline each
            out = subprocess.run([sys.executable, __file__, "--child-snapshots", str(every), "--dir", str(work),
                                  "--snapshot-signals", str(args.snapshot_signals)],
                                 capture_output=True, text=True, timeout=600, check=True)
            figures[every] = json.loads(out.stdout.strip().splitlines()[-1])
        report["snapshots"] = {"every_signals": 5, "signals": args.snapshot_signals,
                               "kb_per_signal": figures[5]["kb_per_signal"],
                               "floor_no_snapshots_kb_per_signal": figures[0]["kb_per_signal"],
                               "target_kb_per_signal_at_most": SNAPSHOT_KB_PER_SIGNAL_AT_MOST,
                               "within_target": figures[5]["kb_per_signal"] <= SNAPSHOT_KB_PER_SIGNAL_AT_MOST,
                               "readings": figures[5]["readings"]}
        by_window = {}
        for w in (1000, 1_000_000):   # the window, and every intent in memory (what the window saves)
            out = subprocess.run([sys.executable, __file__, "--child-window", str(w), "--dir", str(work)],
                                 capture_output=True, text=True, timeout=600, check=True)
            by_window[w] = json.loads(out.stdout.strip().splitlines()[-1])
        pw = by_window[1000]
        report["past_window"] = {**pw, "target_kb_per_signal_at_most": PAST_WINDOW_KB_PER_SIGNAL_AT_MOST,
                                 "within_target": pw["kb_per_signal"] <= PAST_WINDOW_KB_PER_SIGNAL_AT_MOST,
                                 "all_in_memory_kb_per_signal": by_window[1_000_000]["kb_per_signal"]}
        say(f"past the window (1,000; from 2,000 signals on): {pw['kb_per_signal']} KB/signal of RSS (target at most "
            f"{PAST_WINDOW_KB_PER_SIGNAL_AT_MOST}; every intent in memory: "
            f"{report['past_window']['all_in_memory_kb_per_signal']})")
        sn = report["snapshots"]
        say(f"snapshots every 5 signals: {sn['kb_per_signal']} KB/signal of RSS (floor without snapshots "
            f"{sn['floor_no_snapshots_kb_per_signal']}; target at most {SNAPSHOT_KB_PER_SIGNAL_AT_MOST})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["host"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
