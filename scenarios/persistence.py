"""Checkers of the local store's cadence and of writes refused by it (issue 13): DDB-1, DDB-2, DDB-5, DDB-6.

Pure, over the run folder like every checker (``scenarios.checkers``); the numbers come from what the engines
recorded while they ran, never from our configuration:

- ``store_wal`` / ``store_snapshots`` / ``store_health`` (DDB-1 / DDB-2 / DDB-6; one function, ``check_store_cadence``): the store keeper's ``store_settings`` event (DuckDB's
  ``checkpoint_threshold`` read from the live connection), its ``journal_health`` line per health check (start-to-start
  intervals; the WAL file's size at each check), and its ``snapshot`` events (start-to-start intervals while the
  journal kept changing; the snapshot files listed in the backup folder after each one).
- ``failed_writes`` (DDB-5): every write the store could not take during a ``disk-fill`` window - signals whose
  intent could not be journalled, snapshots that failed - and whether each was applied later, is still recorded in
  ``failed_syncs`` of a journal, or is still queued (backlog); the rest are ``lost_writes``.

Nothing to judge (no such event, no such fault): ``unmeasured`` with the reason, never a pass.
"""
from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any, Sequence

from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.verdicts import finite_number, judge, percentile, validity

# the journal writes of an engine's event log (each is one commit of the intent journal)
WRITE_EVENTS = ("intent_written", "outcome")
DISK_FAULTS = ("disk-fill",)
JOURNALS_GLOB = "stack/engines/*/journal-*.duckdb"

CADENCE_METRICS = ("wal_enabled", "wal_limit_mb", "snapshot_interval_s", "snapshots_kept", "health_check_interval_s")
CADENCE_RULE = ("Per engine process (pid) from its event log: health_check_interval_s = the largest start-to-start "
                "interval between consecutive journal_health lines (start = the line's mono - took_s); "
                "snapshot_interval_s = the largest start-to-start interval between consecutive snapshot events "
                "while the journal kept changing (an intent_written/outcome of that instance inside the first "
                "snapshot_interval_s of the interval; idle intervals are not counted: the keeper snapshots only after "
                "a change); snapshots_kept = the most snapshot files listed in the backup folder after a snapshot, "
                "among the processes that took more snapshots than they keep; wal_enabled = a WAL file seen "
                "non-empty at a health check with DuckDB's access_mode not read_only; wal_limit_mb = the larger of "
                "DuckDB's checkpoint_threshold (current_setting on the live connection, store_settings) and the "
                "largest WAL file seen, in MB (10^6 bytes).")


_num = finite_number


def _start(e: dict) -> float | None:
    m = _num(e.get("mono"))
    return None if m is None else m - (_num(e.get("took_s")) or 0.0)


def _dist(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {"n": len(s), "min": round(s[0], 4), "p50": round(percentile(s, 50), 4),
            "p95": round(percentile(s, 95), 4), "p99": round(percentile(s, 99), 4), "max": round(s[-1], 4)}


def check_store_cadence(events: Sequence[dict] | None, *, requirement_ids: Sequence[str] = ("DDB-1", "DDB-2", "DDB-6"),
                        targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None,
                        unreadable: int = 0, metrics_judged: Sequence[str] = CADENCE_METRICS,
                        name: str = "store_cadence"):
    """DDB-1/DDB-2/DDB-6 from the engines' store-keeper events (see the module docstring); ``metrics_judged``: the
    subset of ``CADENCE_METRICS`` to judge (the checker table has one entry per requirement). Returns the checker
    table's CheckResult (built with the helpers ``scenarios.checkers`` passes in)."""
    events = [e for e in (events or []) if isinstance(e, dict) and _num(e.get("mono")) is not None]
    keeper = [e for e in events if e.get("event") in ("journal_health", "snapshot", "store_settings")]
    if not keeper:
        return unmeasured(result_cls, name, requirement_ids, targets, tuple(metrics_judged),
                          "no journal_health, snapshot or store_settings event in any engine event log: the store "
                          "keeper of this engine records none (an engine older than this checker?), nothing to time")
    by_proc: dict[tuple, list[dict]] = {}
    for e in events:
        by_proc.setdefault((str(e.get("instance")), e.get("pid")), []).append(e)
    health_gaps: list[float] = []
    snap_gaps: list[float] = []
    kept_seen: list[int] = []
    wal_seen: list[int] = []
    settings: list[dict] = []
    procs: list[dict] = []
    for (instance, pid), evs in sorted(by_proc.items(), key=lambda kv: _num(kv[1][0].get("mono")) or 0.0):
        s = next((e for e in evs if e.get("event") == "store_settings"), None)
        interval = _num((s or {}).get("snapshot_interval_s")) or 0.5
        kept_cfg = int(_num((s or {}).get("snapshots_kept")) or 0) or None
        if s is not None:
            settings.append(s)
        hs = [t for e in evs if e.get("event") == "journal_health" and (t := _start(e)) is not None]
        gaps_h = [b - a for a, b in zip(hs, hs[1:])]
        snaps = [e for e in evs if e.get("event") == "snapshot" and _start(e) is not None]
        writes = sorted(_num(e["mono"]) for e in evs if e.get("event") in WRITE_EVENTS)
        gaps_s, idle = [], 0
        for a, b in zip(snaps, snaps[1:]):
            ta, tb = _start(a), _start(b)
            i = bisect.bisect_right(writes, ta)
            if i < len(writes) and writes[i] <= ta + interval:
                gaps_s.append(tb - ta)
            else:
                idle += 1
        on_disk = [int(n) for e in snaps if (n := _num(e.get("on_disk"))) is not None]
        if on_disk and kept_cfg and len(snaps) > kept_cfg:
            kept_seen.append(max(on_disk))
        wal = [int(w) for e in evs if e.get("event") in ("journal_health", "store_settings")
               for w in (_num(e.get("wal_bytes")), _num(e.get("wal_file_bytes"))) if w is not None]
        wal_seen += wal
        health_gaps += gaps_h
        snap_gaps += gaps_s
        if hs or snaps or s:
            procs.append({"kind": "process", "instance": instance, "pid": pid, "health_checks": len(hs),
                          "health_interval_s": _dist(gaps_h), "snapshots": len(snaps),
                          "snapshot_interval_s": _dist(gaps_s), "idle_intervals": idle,
                          "snapshot_took_s": _dist([_num(e.get("took_s")) or 0.0 for e in snaps]),
                          "snapshots_on_disk_max": max(on_disk) if on_disk else None, "snapshots_kept_configured":
                          kept_cfg, "wal_bytes_max": max(wal) if wal else None,
                          "checkpoint_threshold": (s or {}).get("checkpoint_threshold"),
                          "access_mode": (s or {}).get("access_mode")})
    thresholds = [x for e in settings if (x := _num(e.get("checkpoint_threshold_mib"))) is not None]
    read_only = any(str(e.get("access_mode", "")).lower() == "read_only" for e in settings)
    wal_max = max(wal_seen) if wal_seen else None
    metrics: dict[str, Any] = {
        "health_check_interval_s": round(max(health_gaps), 4) if health_gaps else None,
        "snapshot_interval_s": round(max(snap_gaps), 4) if snap_gaps else None,
        "snapshots_kept": min(kept_seen) if kept_seen else None,
        "wal_enabled": (True if wal_max and not read_only else False if read_only else None),
        "wal_limit_mb": (round(max(max(thresholds) * 1.048576, (wal_max or 0) / 1e6), 3) if thresholds else None),
        "health_checks": sum(p["health_checks"] for p in procs), "snapshots": sum(p["snapshots"] for p in procs),
        "health_interval_p50_s": _dist(health_gaps).get("p50"), "health_interval_p99_s": _dist(health_gaps).get("p99"),
        "snapshot_interval_p50_s": _dist(snap_gaps).get("p50"), "snapshot_interval_p99_s": _dist(snap_gaps).get("p99"),
        "wal_bytes_max": wal_max, "checkpoint_threshold_mib": max(thresholds) if thresholds else None,
        "unreadable_lines": unreadable,
    }
    why = {"health_check_interval_s": "fewer than two journal_health lines of one engine process",
           "snapshot_interval_s": "no two consecutive snapshots of one process while the journal kept changing",
           "snapshots_kept": "no process took more snapshots than it keeps, so the pruned listing was never reached",
           "wal_enabled": "no WAL file was seen non-empty at a health check",
           "wal_limit_mb": "no store_settings event read DuckDB's checkpoint_threshold from the live connection"}
    judgements = [j for m in metrics_judged
                  for j in judge({m: metrics[m]}, requirement_ids, targets, unmeasured_reason=f"{m}: {why[m]}")]
    evidence = [*procs, {"kind": "distribution", "health_interval_s": _dist(health_gaps),
                         "snapshot_interval_s": _dist(snap_gaps)},
                *({"kind": "store_settings", **{k: v for k, v in e.items() if k not in ("ts",)}} for e in settings[:6]),
                {"kind": "rule", "rule": CADENCE_RULE}]
    hd, sd = _dist(health_gaps), _dist(snap_gaps)
    took = [x for p in procs if (x := p["snapshot_took_s"].get("max")) is not None]
    summary = (f"{metrics['health_checks']} health checks over {len(procs)} engine process(es), interval p50 {hd.get('p50')} / p99 {hd.get('p99')} / max {hd.get('max')} s; snapshots "
               f"while changing: interval p50 {sd.get('p50')} / p99 {sd.get('p99')} / max {sd.get('max')} s "
               f"(each took at most {max(took) if took else None} s); "
               f"{metrics['snapshots_kept']} snapshot file(s) kept on disk; DuckDB checkpoint_threshold "
               f"{metrics['checkpoint_threshold_mib']} MiB (live), largest WAL seen {wal_max} bytes")
    return result_cls(name, validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


# -- DDB-5: writes the store could not take --------------------------------------------------------------------
FAILED_WRITES_RULE = (
    "Per disk-fill window of faults.jsonl on an engine's state folder: refused_writes = acknowledged signals "
    "submitted inside the window whose intent no engine journalled before the heal (the journal refused it: "
    "JournalFull, the signal left pending) plus snapshot_failed events of that engine inside the window; each is "
    "resynced when an engine journalled the signal after the heal / a snapshot of that engine followed; it is "
    "recorded when a journal's failed_syncs table (read from the run folder after the engines stopped) holds it or it "
    "is in backlog.json; lost_writes = refused writes neither resynced nor recorded, plus resynced signals that "
    "never reached an outcome (not executed at a broker, no RTRS result). resync_s = heal to the first write the "
    "journal took again (journal_disk_ok or the first intent_written after the heal). events_dropped = event-log "
    "lines the engine could not write (the event log shares the full filesystem; they are not DuckDB writes).")


def read_failed_syncs(run_path: Path) -> tuple[list[dict], list[str]]:
    """Every failed_syncs row of every engine journal in the run folder (read-only), and the problems met."""
    rows, problems = [], []
    for path in sorted(run_path.glob(JOURNALS_GLOB)):
        try:
            import duckdb
            con = duckdb.connect(str(path), read_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged or held journal: said, the rest still judged
            problems.append(f"{path.name}: {' '.join(str(exc).split())[:160]}")
            continue
        try:
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            if "failed_syncs" not in tables:
                continue
            cur = con.execute("SELECT * FROM failed_syncs")
            names = [d[0] for d in cur.description]
            rows += [{"journal": path.name, **dict(zip(names, r))} for r in cur.fetchall()]
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{path.name}: {' '.join(str(exc).split())[:160]}")
        finally:
            con.close()
    return rows, problems


def check_failed_writes(windows: Sequence[h.FaultWindow], events: Sequence[dict] | None,
                        signals: Sequence[h.Signal], outcome_of: dict[str, str], backlog: Sequence[str],
                        failed_syncs: Sequence[dict] | None, *, requirement_ids: Sequence[str] = ("DDB-5",),
                        targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None,
                        problems: Sequence[str] = (), unreadable: int = 0):
    """DDB-5 over the run (see ``FAILED_WRITES_RULE``). ``outcome_of``: signal id -> "executed" / "rejected" /
    "" (no outcome); ``failed_syncs``: rows of every journal (None: they could not be read)."""
    names = ("lost_writes",)
    fills = sorted((w for w in windows if w.fault in DISK_FAULTS and w.inject_mono is not None),
                   key=lambda w: w.inject_mono)
    if not fills:
        return unmeasured(result_cls, "failed_writes", requirement_ids, targets, names,
                          f"no {' or '.join(DISK_FAULTS)} injection in the fault log: no write was refused")
    events = [e for e in (events or []) if isinstance(e, dict) and _num(e.get("mono")) is not None]
    if not events:
        return unmeasured(result_cls, "failed_writes", requirement_ids, targets, names,
                          "the run has no engine event log: which writes the journal refused cannot be told")
    first_written: dict[str, float] = {}
    for e in events:
        if e.get("event") == "intent_written" and e.get("signal_id") is not None:
            sid = str(e["signal_id"])
            first_written[sid] = min(first_written.get(sid, math.inf), _num(e["mono"]))
    in_failed = {str(r.get("sync_id") or r.get("signal_id")) for r in (failed_syncs or [])}
    queued = set(map(str, backlog))
    rows, lost_ids = [], []
    lost = 0
    for w in fills:
        heal = w.heal_mono if w.heal_mono is not None else math.inf
        folder = str((w.details or {}).get("folder") or (w.details or {}).get("mount") or "")
        node = Path(folder).name if folder else ""
        refused = [s for s in signals if s.ack == h.OK and s.mono is not None and w.inject_mono <= s.mono < heal
                   and first_written.get(s.id, math.inf) >= heal]
        resynced = [s for s in refused if first_written.get(s.id, math.inf) < math.inf]
        recorded = [s for s in refused if s not in resynced and (s.id in in_failed or s.id in queued)]
        never = [s.id for s in refused if s not in resynced and s not in recorded]
        no_outcome = [s.id for s in resynced if not outcome_of.get(s.id) and s.id not in queued]
        instances = {str(e.get("instance")) for e in events if e.get("event") in ("journal_disk_full", "snapshot_failed",
                                                                                  "events_dropped")
                     and w.inject_mono - 1.0 <= _num(e["mono"]) <= heal + 1.0}
        snap_failed = [e for e in events if e.get("event") == "snapshot_failed"
                       and w.inject_mono - 0.5 <= _num(e["mono"]) <= heal]
        snaps_after = [e for e in events if e.get("event") in ("snapshot", "snapshot_recovered")
                       and _num(e["mono"]) >= heal]
        snap_lost = [e for e in snap_failed
                     if not any(str(x.get("instance")) == str(e.get("instance")) for x in snaps_after)]
        told = [e for e in events if e.get("event") in ("journal_disk_full", "alert") and
                (e.get("event") == "journal_disk_full" or e.get("kind") in ("journal_disk_full", "snapshot_failed"))
                and w.inject_mono - 0.5 <= _num(e["mono"]) <= heal + 5.0]
        back = [_num(e["mono"]) for e in events if (e.get("event") == "journal_disk_ok" or
                                                    e.get("event") == "intent_written") and _num(e["mono"]) >= heal]
        dropped = max((int(_num(e.get("count")) or 0) for e in events if e.get("event") == "events_dropped"
                       and w.inject_mono <= _num(e["mono"]) <= heal + 5.0), default=0)
        window_lost = len(never) + len(no_outcome) + len(snap_lost)
        lost += window_lost
        lost_ids += never + no_outcome
        rows.append({"kind": "window", "fault_id": w.fault_id, "node": node,
                     "seconds": round(heal - w.inject_mono, 3) if heal < math.inf else None,
                     "refused_signals": len(refused), "resynced_signals": len(resynced),
                     "recorded_signals": len(recorded), "never_applied": never[:20], "no_outcome": no_outcome[:20],
                     "snapshot_failures": len(snap_failed), "snapshot_failures_never_retaken": len(snap_lost),
                     "refusal_said": [{"event": e.get("event"), "kind": e.get("kind"),
                                       "message": str(e.get("message") or e.get("problem") or "")[:200]}
                                      for e in told[:3]],
                     "resync_s": round(min(back) - heal, 3) if back and heal < math.inf else None,
                     "events_dropped": dropped, "instances": sorted(instances)})
    metrics: dict[str, Any] = {
        "lost_writes": lost if failed_syncs is not None else None,
        "refused_writes": sum(r["refused_signals"] + r["snapshot_failures"] for r in rows),
        "resynced_writes": sum(r["resynced_signals"] + r["snapshot_failures"] - r["snapshot_failures_never_retaken"]
                               for r in rows),
        "recorded_writes": sum(r["recorded_signals"] for r in rows),
        "failed_syncs_rows_left": len(failed_syncs) if failed_syncs is not None else None,
        "resync_s": max((r["resync_s"] for r in rows if r["resync_s"] is not None), default=None),
        "events_dropped": sum(r["events_dropped"] for r in rows), "unreadable_lines": unreadable,
    }
    reason = ("the journals' failed_syncs tables could not be read (" + "; ".join(problems)[:300] + "): a refused "
              "write recorded there cannot be told from a lost one") if failed_syncs is None else ""
    if metrics["refused_writes"] == 0 and failed_syncs is not None:
        # a full disk that refused nothing proves nothing about DDB-5: never a pass
        metrics["lost_writes"] = None
        reason = ("the disk was full but no write was refused inside the window (no acknowledged signal waited for "
                  "the heal, no snapshot failed): nothing went to failed_syncs or was retried")
    judgements = judge({k: metrics[k] for k in names}, requirement_ids, targets, unmeasured_reason=reason)
    evidence = [*rows, *({"kind": "failed_syncs", **{k: str(v)[:200] for k, v in r.items()}}
                         for r in (failed_syncs or [])[:20]),
                *({"kind": "journal-unreadable", "why": p} for p in problems),
                {"kind": "rule", "rule": FAILED_WRITES_RULE}]
    r0 = rows[0]
    summary = (f"{metrics['refused_writes']} write(s) refused while the disk was full ({r0['refused_signals']} "
               f"signal intent(s), {r0['snapshot_failures']} snapshot(s)); {metrics['resynced_writes']} resynced "
               f"after the space returned (first {metrics['resync_s']} s after the heal), {metrics['recorded_writes']} "
               f"still recorded, {metrics['lost_writes']} lost; {metrics['failed_syncs_rows_left']} failed_syncs "
               f"row(s) left; {metrics['events_dropped']} event-log line(s) dropped")
    return result_cls("failed_writes", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """``store_wal`` (DDB-1), ``store_snapshots`` (DDB-2), ``store_health`` (DDB-6) - one reading of the keeper's
    lines, judged per requirement - and ``failed_writes`` (DDB-5) as ``scenarios.checkers.Checker`` rows."""

    def cadence(name: str, judged: tuple[str, ...]):
        def fn(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
            return check_store_cadence(view.engine_events(), requirement_ids=rids, targets=targets,
                                       result_cls=result_cls, unmeasured=unmeasured,
                                       unreadable=view.unreadable_event_lines(), metrics_judged=judged, name=name)
        return fn

    def failed(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        from scenarios import checkers as c   # loaded: this runs long after the table was built
        windows, _bad = view.fault_windows_lenient()
        ledger = view.ledger() or []
        executed = set(c.orders_by_signal(ledger, view.signal_of))
        outcome_of: dict[str, str] = {}
        for r in view.trade_results():
            if r.status in ("executed", "rejected", "failed", "expired", "stale"):
                outcome_of[r.signal] = r.status
        for sid in executed:
            outcome_of[sid] = "executed"
        rows, problems = read_failed_syncs(view.run.path)
        journals = list(view.run.path.glob(JOURNALS_GLOB))
        return check_failed_writes(windows, view.engine_events(), view.signals(), outcome_of, view.backlog(),
                                   rows if journals and not (problems and not rows) else None,
                                   requirement_ids=rids, targets=targets, result_cls=result_cls,
                                   unmeasured=unmeasured, problems=problems or (["no journal file in the run folder"]
                                                                                if not journals else []),
                                   unreadable=view.unreadable_event_lines())

    return [
        checker_cls("store_wal", cadence("store_wal", ("wal_enabled", "wal_limit_mb")), ("wal_enabled", "wal_limit_mb"),
                    "DDB-1 as the engines ran: a WAL file seen non-empty, DuckDB's checkpoint threshold read from the "
                    "live connection and the largest WAL seen"),
        checker_cls("store_snapshots", cadence("store_snapshots", ("snapshot_interval_s", "snapshots_kept")),
                    ("snapshot_interval_s", "snapshots_kept"),
                    "DDB-2 as the engines ran: snapshot start-to-start intervals while the journal kept changing "
                    "(distribution, worst judged), snapshot files listed in the backup folder"),
        checker_cls("store_health", cadence("store_health", ("health_check_interval_s",)), ("health_check_interval_s",),
                    "DDB-6 as the engines ran: start-to-start intervals of the journal health checks (distribution, "
                    "worst judged)"),
        checker_cls("failed_writes", failed, ("lost_writes",),
                    "writes the store refused while its disk was full: resynced after, recorded in failed_syncs or "
                    "backlog, or lost"),
    ]
