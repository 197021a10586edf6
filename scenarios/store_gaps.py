"""Checkers for the persistence requirements the other checkers left unmeasured (issue 13): ORD-2, CH-2, CH-3, CH-4,
DDB-4. Pure, over the run folder; each judges only what the run recorded, and says ``unmeasured`` with the reason
when the run holds nothing to judge it by (never a pass):

- ``order_failed_syncs`` (ORD-2): every ``failed_sync`` event of the engines (an order that failed ORD-1's five
  tries, put in failed_syncs) -> the next ``order_send_invoke`` of that signal by any engine:
  ``failed_sync_retry_s`` (the largest); ``lost_signals`` = those signals that ended neither executed at a broker
  nor rejected with a reason on RTRS nor still queued (backlog).
- ``clickhouse_backfill`` (CH-2): ``lost_rows`` = trades of the broker ledgers missing from ClickHouse (FINAL) at
  the end, judged only when ClickHouse *lost* rows in the run (a ``clickhouse-data-lost`` fault); an outage that
  stops the server keeps its tables, so there is nothing for a backfill to put back. The engines' own backfill
  checks (``clickhouse_backfill`` events) are listed.
- ``clickhouse_backups`` (CH-3): ``zstd_level`` from the backups the engines took (``clickhouse_backup`` events:
  codec and level of each file); ``full_backup_interval_h`` / ``incremental_backup_interval_h`` from two backups of
  one kind by one engine process; ``backup_retention_days`` from the oldest backup still listed after a prune.
  A drill of a minute sees at most the first backup of each kind: the intervals and the retention are unmeasured.
- ``clickhouse_failover`` (CH-4): ``rto_s`` from an active ClickHouse node lost to the first successful query or
  insert on the passive one; the reference stack runs one ClickHouse node (no passive to fail over to).
- ``journal_rebuild`` (DDB-4): ``state_mismatches`` = the final states of every journal an engine repaired (a copy
  restored, what was newer rebuilt from the broker and Redis; or, beyond recovery, everything rebuilt), read after
  the run, against the broker ledger.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from scenarios import targets as targets_mod
from scenarios.verdicts import finite_number, judge, validity

FINAL_REJECTED = ("rejected", "failed", "expired", "stale", "duplicate")
JOURNALS_GLOB = "stack/engines/*/journal-*.duckdb"


_num = finite_number


def _result(result_cls, unmeasured, name, rids, targets, metrics: dict, reason: str, evidence: list, summary: str):
    names = tuple(metrics)
    if all(v is None for v in metrics.values()):
        res = unmeasured(result_cls, name, rids, targets, names, reason)
        res.evidence.extend(evidence)
        return res
    judgements = judge(metrics, rids, targets, unmeasured_reason=reason)
    return result_cls(name, validity(judgements), tuple(rids), dict(metrics), evidence, summary, judgements)


# -- ORD-2 ---------------------------------------------------------------------------------------------------------
ORD2_RULE = ("failed_sync_retry_s = per failed_sync event (an order put in failed_syncs after ORD-1's tries), the "
             "time to the next order_send_invoke of that signal id by any engine (the largest; a retry never seen "
             "is a lower bound: the run's end); lost_signals = those signals neither executed (broker ledger), nor "
             "rejected with a reason (RTRS), nor still queued (backlog.json)")


def check_order_failed_syncs(events: Sequence[dict] | None, executed: set[str], rejected: set[str],
                             queued: set[str], *, requirement_ids=("ORD-2",), targets=None, result_cls, unmeasured):
    metrics = {"failed_sync_retry_s": None, "lost_signals": None}
    if events is None:
        return unmeasured(result_cls, "order_failed_syncs", requirement_ids, targets, tuple(metrics),
                          "no engine event log in the run")
    events = [e for e in events if isinstance(e, dict) and _num(e.get("mono")) is not None]
    entered = [e for e in events if e.get("event") == "failed_sync" and e.get("signal_id")]
    if not entered:
        return unmeasured(result_cls, "order_failed_syncs", requirement_ids, targets, tuple(metrics),
                          "no order went to failed_syncs in this run (no failed_sync event: no order failed ORD-1's "
                          "five tries). A drill that shows it needs an order refused for ORD-1's 31 s of backoff "
                          "and ORD-2's 60 s retry after it: longer than a drill run (40 s)")
    sends = defaultdict(list)
    for e in events:
        if e.get("event") == "order_send_invoke" and e.get("signal_id"):
            sends[str(e["signal_id"])].append(_num(e["mono"]))
    end = max(_num(e["mono"]) for e in events)
    rows, gaps, lower = [], [], False
    for e in entered:
        sid, t = str(e["signal_id"]), _num(e["mono"])
        nxt = min((s for s in sends.get(sid, ()) if s > t), default=None)
        gap = round((nxt if nxt is not None else end) - t, 3)
        lower |= nxt is None
        gaps.append(gap)
        outcome = ("executed" if sid in executed else "rejected" if sid in rejected else
                   "queued" if sid in queued else "lost")
        rows.append({"kind": "failed-sync", "signal_id": sid, "instance": e.get("instance"), "reason": e.get("reason"),
                     "retry_after_s": gap, "retried": nxt is not None, "outcome": outcome})
    metrics = {"failed_sync_retry_s": max(gaps), "lost_signals": sum(r["outcome"] == "lost" for r in rows)}
    judgements = judge(metrics, requirement_ids, targets, lower_bounds=("failed_sync_retry_s",) if lower else ())
    summary = (f"{len(rows)} order(s) put in failed_syncs; retried after at most {metrics['failed_sync_retry_s']} s"
               f"{' (a retry never seen: lower bound)' if lower else ''}; "
               f"{sum(r['outcome'] == 'executed' for r in rows)} executed, "
               f"{sum(r['outcome'] == 'rejected' for r in rows)} rejected with a reason, "
               f"{metrics['lost_signals']} lost")
    return result_cls("order_failed_syncs", validity(judgements), tuple(requirement_ids), metrics,
                      [*rows[:100], {"kind": "rule", "rule": ORD2_RULE}], summary, judgements)


# -- CH-2, CH-3, CH-4 ----------------------------------------------------------------------------------------------
CH_LOSS_FAULTS = ("clickhouse-data-lost",)
CLICKHOUSE_RESTORE = "clickhouse_restore.json"   # scenarios.environment.CLICKHOUSE_RESTORE
CH2_RULE = ("lost_rows = trades of the broker ledgers missing from ClickHouse (FINAL) after the run, plus outcome "
            "rows without a trade (rejections) the clickhouse-data-lost fault deleted that never came back; "
            "duplicate_rows = signals with more than one row read with FINAL; backfill_s (not judged: the documents "
            "give CH-2 no time) = per loss, the newest synced_ms of the rows put back (read at the fault's heal, "
            "else in the rows after the run) minus the fault's inject time; detected_s = the loss to the first "
            "engine backfill check that found rows missing")


def check_clickhouse_backfill(windows, events, missing_trades: int | None, *, duplicate_trades: int | None = None,
                              rows: list | None = None, heals: dict | None = None, requirement_ids=("CH-2",),
                              targets=None, result_cls, unmeasured):
    """``heals``: fault_id -> the details of its heal line in the fault log (what was back then)."""
    backfills = [e for e in (events or []) if isinstance(e, dict) and e.get("event") == "clickhouse_backfill"]
    evidence = [{"kind": "backfill-check", "instance": e.get("instance"), "days": e.get("days"),
                 "short_days": e.get("short_days"), "missing": e.get("missing")} for e in backfills
                if _num(e.get("missing"))][:50]
    lost = [w for w in windows if w.fault in CH_LOSS_FAULTS]
    if not lost:
        reason = (f"ClickHouse lost no data in this run (no {'/'.join(CH_LOSS_FAULTS)} fault: an outage stops the "
                  f"server and its tables survive), so the backfill from DuckDB had nothing to put back; the engines "
                  f"ran {len(backfills)} backfill check(s), "
                  f"{sum(int(_num(e.get('missing')) or 0) for e in backfills)} outcome(s) found missing")
        res = unmeasured(result_cls, "clickhouse_backfill", requirement_ids, targets, ("lost_rows",), reason)
        res.evidence.extend(evidence)
        return res
    by_key = {str(r.get("trade_key")): r for r in (rows or []) if isinstance(r, dict)}
    losses, never_back_untraded = [], 0
    for w in lost:
        d = {**(w.details or {}), **{k: v for k, v in ((heals or {}).get(w.fault_id) or {}).items()
                                     if v is not None}}
        keys = [str(k) for k in d.get("lost_keys") or []]
        back = [by_key[k] for k in keys if k in by_key]
        never_back_untraded += sum(1 for k in keys if k not in by_key and k.startswith("s/"))
        synced = [_num(r.get("synced_ms")) for r in back if _num(r.get("synced_ms")) is not None]
        took = timed_by = None
        if keys and w.inject_wall is not None:
            if d.get("back_at_heal") == len(keys) and _num(d.get("back_synced_ms_max")) is not None:
                # every lost row was back when the fault was healed: the newest of them then (a later loss may
                # delete the same rows again, so the rows after the run would time that one)
                took, timed_by = round(_num(d["back_synced_ms_max"]) / 1000.0 - w.inject_wall, 3), "heal"
            elif synced and len(back) == len(keys):
                took, timed_by = round(max(synced) / 1000.0 - w.inject_wall, 3), "rows after the run"
        found = next((e for e in backfills if _num(e.get("missing")) and _num(e.get("mono")) is not None
                      and _num(e["mono"]) >= w.inject_mono), None)
        losses.append({"kind": "loss", "fault_id": w.fault_id, "mode": d.get("mode"),
                       "rows_before": d.get("rows_before"), "lost": len(keys), "back": len(back),
                       "back_at_heal": d.get("back_at_heal"), "backfill_s": took, "timed_by": timed_by,
                       "detected_s": round(_num(found["mono"]) - w.inject_mono, 3) if found else None,
                       "detected_by": found.get("instance") if found else None})
    deleted = sum(x["lost"] for x in losses)
    if not deleted:
        res = unmeasured(result_cls, "clickhouse_backfill", requirement_ids, targets, ("lost_rows",),
                         f"the {CH_LOSS_FAULTS[0]} fault ran {len(lost)} time(s) but deleted no row (the table was "
                         f"empty): nothing to backfill")
        res.evidence.extend([*losses, *evidence])
        return res
    lost_rows = None if missing_trades is None else missing_trades + never_back_untraded
    times = [x["backfill_s"] for x in losses if x["lost"]]
    metrics = {"lost_rows": lost_rows, "duplicate_rows": duplicate_trades,
               "backfill_s": max(times) if times and all(t is not None for t in times) else None,
               "rows_deleted": deleted}
    judged = {k: metrics[k] for k in ("lost_rows", "duplicate_rows")}
    res = _result(result_cls, unmeasured, "clickhouse_backfill", requirement_ids, targets, judged,
                  "no ClickHouse rows dump (clickhouse_rows.json) or no ledger to compare",
                  [*losses, *evidence, {"kind": "rule", "rule": CH2_RULE}],
                  f"ClickHouse lost {deleted} row(s) in {len(losses)} deletion(s) while trades flowed; "
                  + "; ".join(f"{x['back']}/{x['lost']} back (FINAL)"
                              + (f" {x['backfill_s']} s after the loss" if x["backfill_s"] is not None else
                                 " (not all back: no time)")
                              + (f", found missing by {x['detected_by']}'s backfill check {x['detected_s']} s after"
                                 if x["detected_s"] is not None else ", no backfill check found them missing")
                              for x in losses)
                  + f"; after the run {lost_rows} row(s) missing, {duplicate_trades} signal(s) with two rows")
    res.metrics.update(metrics)
    return res


CH3_SCHEDULE = (("full_backup_interval_h", "full_s", 3600.0, "full backup every", 43200.0),
                ("incremental_backup_interval_h", "incremental_s", 3600.0, "incremental every", 3600.0),
                ("backup_retention_days", "keep_days", None, "kept", 7.0))


def check_clickhouse_backups(events, restore: dict | None = None, *, requirement_ids=("CH-3",), targets=None,
                             result_cls, unmeasured):
    """CH-3: ``zstd_level`` (judged) from the backups the engines took; ``restore_missing_rows`` (judged) from the
    drill's restore of each engine's newest backup chain (``clickhouse_restore.json``); the schedule (12 h / 1 h /
    7 days) is configuration: read from what the engines ran with (``clickhouse_backup_settings``), never measured
    by a drill (unmeasured, with the configured values and the drill's backup gaps in the reason)."""
    events = [e for e in (events or []) if isinstance(e, dict)]
    backups = [e for e in events if e.get("event") == "clickhouse_backup"]
    pruned = [e for e in events if e.get("event") == "clickhouse_backup_pruned"]
    settings = [e for e in events if e.get("event") == "clickhouse_backup_settings"]
    levels = sorted({int(_num(e.get("level"))) for e in backups if _num(e.get("level")) is not None})
    per: dict[tuple, list[float]] = defaultdict(list)
    for e in backups:
        if _num(e.get("taken_ms")) is not None:
            per[(e.get("instance"), e.get("pid"), e.get("kind"))].append(_num(e["taken_ms"]))
    gaps = {"full": [], "incremental": []}
    for (_i, _p, kind), times in per.items():
        times.sort()
        if kind in gaps:
            gaps[kind] += [(b - a) / 1000.0 for a, b in zip(times, times[1:])]
    engines = [e for e in ((restore or {}).get("engines") or []) if isinstance(e, dict)]
    checked = [e for e in engines if _num(e.get("missing")) is not None]
    metrics = {
        # the worst level seen (a level other than CH-3's 3 fails)
        "zstd_level": next((lv for lv in levels if lv != 3), levels[0]) if levels else None,
        "restore_missing_rows": sum(int(_num(e["missing"])) for e in checked) if checked else None,
        "full_backup_interval_h": None, "incremental_backup_interval_h": None, "backup_retention_days": None,
    }
    configured = []
    for s_ in {(e.get("full_s"), e.get("incremental_s"), e.get("keep_days"), e.get("level")): e
               for e in settings}.values():
        configured.append(f"full every {_num(s_.get('full_s')):g} s, incremental every "
                          f"{_num(s_.get('incremental_s')):g} s, kept {_num(s_.get('keep_days')):g} days, ZSTD level "
                          f"{s_.get('level')}")
    drill_gaps = "; ".join(f"{k} backups {min(v):.1f}-{max(v):.1f} s apart" for k, v in gaps.items() if v)
    schedule_why = ("configuration, not measured: CH-3's schedule (full every 12 h = 43200 s, incremental every 1 h = "
                    "3600 s, 7 days kept) cannot show within a drill; the engines ran with "
                    + (" / ".join(configured) if configured else "no recorded backup settings")
                    + " (clickhouse_backup_settings, read from the live config)"
                    + (f"; the drill's {drill_gaps}" if drill_gaps else "")
                    + (f"; {len(pruned)} prune(s)" if pruned else ""))
    restore_why = ("; ".join(f"{e.get('engine')}: {e.get('error')}" for e in engines if e.get("error"))
                   or "the run has no clickhouse_restore.json (no backups to restore)")
    reasons = {"zstd_level": "no ClickHouse backup was taken in this run (no clickhouse_backup event)",
               "restore_missing_rows": f"the backups' restore was not checked: {restore_why}"}
    judgements = []
    for metric, value in metrics.items():
        judgements += judge({metric: value}, requirement_ids, targets,
                            unmeasured_reason=reasons.get(metric, schedule_why))
    evidence = [{"kind": "backup", **{k: e.get(k) for k in ("instance", "file", "kind", "codec", "level", "rows",
                                                            "bytes", "raw_bytes", "taken_ms")}} for e in backups[:50]]
    evidence += [{"kind": "restore", **{k: e.get(k) for k in ("engine", "chain", "restored_rows", "expected_rows",
                                                             "rows_inserted", "missing", "missing_keys", "seconds",
                                                             "error")}} for e in engines]
    evidence += [{"kind": "settings", **{k: e.get(k) for k in ("instance", "full_s", "incremental_s", "keep_days",
                                                              "level", "codec", "tick_s")}} for e in settings[:10]]
    summary = (f"{len(backups)} backup(s), ZSTD level(s) {levels}; "
               + ("; ".join(f"{e.get('engine')}'s chain of {len(e.get('chain') or [])} file(s) restored: "
                            f"{e.get('restored_rows')} row(s) (FINAL), {e.get('missing')} of the "
                            f"{e.get('expected_rows')} synced before its last backup missing, {e.get('seconds')} s"
                            for e in checked) or f"restore not checked: {restore_why}")
               + "; schedule: " + schedule_why)
    res = result_cls("clickhouse_backups", validity(judgements), tuple(requirement_ids), dict(metrics), evidence,
                     summary, judgements)
    res.metrics["backups"] = len(backups)
    return res


NOT_MEASURABLE = "not measurable in this topology"


def check_clickhouse_failover(topology: dict | None, windows=(), *, requirement_ids=("CH-4",), targets=None,
                              result_cls, unmeasured):
    nodes = [n for n in (topology or {}).get("nodes", []) if isinstance(n, dict) and n.get("kind") == "clickhouse"]
    lost = [w for w in windows if "clickhouse" in str((w.details or {}).get("node") or w.description)]
    if len(nodes) < 2:
        reason = (f"{NOT_MEASURABLE}: single ClickHouse node ({len(nodes)} in the drill's topology; CH-4's "
                  f"active-passive pair is not built, the engines' sync has one URL), so there is no passive node to "
                  f"fail over to and no failover to time"
                  + (f"; this run lost the only node {len(lost)} time(s) ({', '.join(w.fault for w in lost)}): "
                     f"an outage, judged by CH-1" if lost else ""))
    else:
        reason = "no ClickHouse failover was injected in this run"
    return unmeasured(result_cls, "clickhouse_failover", requirement_ids, targets, ("rto_s",), reason)


# -- DDB-4 ---------------------------------------------------------------------------------------------------------
BEYOND = ("no copy", "DDB-4")
DDB4_RULE = ("Every journal an engine repaired (journal_repaired), read after the engines stopped: each final state "
             "against the broker ledgers (by the order comment's signal id): missed = executed at a broker, not DONE "
             "in the journal; phantom = DONE with no order at any broker; order = DONE naming an order the brokers "
             "do not have. The repair restored a copy (memory or the newest snapshot) and rebuilt what was newer from "
             "the broker (by magic + comment) and Redis; a repair with no copy at all (beyond recovery) is flagged.")


def journal_finals(run_path: Path) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """``{journal file name: {signal id: {state, order}}}`` of the final outcomes of each engine's journal as the run
    left it (read only after the engines stopped), and the files that could not be read."""
    import duckdb

    out: dict[str, dict[str, dict]] = {}
    bad: list[str] = []
    for path in sorted(run_path.glob(JOURNALS_GLOB)):
        try:
            con = duckdb.connect(str(path), read_only=True)
            try:
                has_log = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                                      "'intent_log'").fetchone()[0]
                log = "UNION ALL SELECT signal_id, state, result, seq FROM intent_log" if has_log else ""
                rows = con.execute(
                    "SELECT signal_id, state, result FROM (SELECT *, row_number() OVER (PARTITION BY signal_id ORDER "
                    f"BY seq DESC) AS n FROM (SELECT signal_id, state, result, -1 AS seq FROM intents {log})) "
                    "WHERE n = 1 AND state IN ('DONE', 'REJECTED')").fetchall()
            finally:
                con.close()
        except Exception as exc:  # noqa: BLE001 - one line: the checker says which file it could not read
            bad.append(f"{path.name}: {type(exc).__name__}")
            continue
        finals = {}
        for sid, state, result in rows:
            try:
                order = (json.loads(result or "{}") or {}).get("order")
            except ValueError:
                order = None
            finals[str(sid)] = {"state": state, "order": order}
        out[path.name] = finals
    return out, bad


def check_journal_rebuild(events, journals: dict[str, dict[str, dict]], broker_orders: dict[str, list[dict]] | None,
                          *, requirement_ids=("DDB-4",), targets=None, result_cls, unmeasured):
    repairs = [e for e in (events or []) if isinstance(e, dict) and e.get("event") == "journal_repaired"]
    evidence = [{"kind": "repair", "instance": e.get("instance"), "file": e.get("file"),
                 "recovered": str(e.get("recovered") or e.get("line") or "")[:300],
                 "beyond_recovery": any(b in json.dumps(e) for b in BEYOND)} for e in repairs[:20]]
    if not repairs:
        return unmeasured(result_cls, "journal_rebuild", requirement_ids, targets, ("state_mismatches",),
                          "no journal was repaired in this run: nothing was rebuilt")
    if broker_orders is None:
        res = unmeasured(result_cls, "journal_rebuild", requirement_ids, targets, ("state_mismatches",),
                         "no broker ledger to compare the rebuilt journal with")
        res.evidence.extend(evidence)
        return res
    mismatches, compared = [], 0
    for name in sorted({Path(str(e.get("file") or "")).name for e in repairs}):
        finals = journals.get(name)
        if finals is None:
            mismatches.append({"kind": "unreadable", "file": name})
            continue
        for sid, f in sorted(finals.items()):
            compared += 1
            bo = broker_orders.get(sid) or []
            if bo and f["state"] != "DONE":
                mismatches.append({"kind": "missed", "file": name, "signal": sid, "journal": f,
                                   "broker_orders": [o["order"] for o in bo]})
            elif f["state"] == "DONE" and not bo:
                mismatches.append({"kind": "phantom", "file": name, "signal": sid, "journal": f})
            elif f["state"] == "DONE" and f.get("order") not in (None, "") and \
                    str(f["order"]) not in {str(o["order"]) for o in bo}:
                mismatches.append({"kind": "order", "file": name, "signal": sid, "journal": f,
                                   "broker_orders": [o["order"] for o in bo]})
    metrics = {"state_mismatches": len(mismatches)}
    beyond = sum(r["beyond_recovery"] for r in evidence)
    return _result(result_cls, unmeasured, "journal_rebuild", requirement_ids, targets, metrics, "", [
        *evidence, *mismatches[:100], {"kind": "rule", "rule": DDB4_RULE}],
        f"{len(repairs)} journal repair(s) ({beyond} beyond recovery: no copy); {compared} final state(s) of the "
        f"repaired journal(s) after the rebuild, {len(mismatches)} disagree with the broker ledger")


# -- the checker table rows ----------------------------------------------------------------------------------------
def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    def ord2(view, params, rids, targets):
        from scenarios import checkers as c
        ledger = view.ledger() or []
        executed = set(c.orders_by_signal(ledger, view.signal_of))
        rejected = {r.signal for r in view.trade_results() if r.status in FINAL_REJECTED}
        backlog = view.backlog() or []
        queued = {str(b.get("signal_id") if isinstance(b, dict) else b) for b in backlog} if isinstance(
            backlog, list) else set()
        return check_order_failed_syncs(view.engine_events(), executed, rejected, queued, requirement_ids=rids,
                                        targets=targets, result_cls=result_cls, unmeasured=unmeasured)

    def backfill(view, params, rids, targets):
        from scenarios import checkers as c
        windows, _bad = view.fault_windows_lenient()
        missing = duplicates = rows = heals = None
        if any(w.fault in CH_LOSS_FAULTS for w in windows):
            hist = c.CHECKERS["clickhouse_history"].fn(view, {}, ("CH-1",), targets)
            missing = hist.metrics.get("clickhouse_missing_trades")
            duplicates = hist.metrics.get("clickhouse_duplicate_trades")
            dump, _why = view.json_doc(c.CLICKHOUSE_ROWS)
            rows = dump.get("rows") if isinstance(dump, dict) else None
            lines, _bad = c.read_event_lines(view.run.path / "faults.jsonl")
            heals = {e.get("fault_id"): e.get("details") for e in lines
                     if isinstance(e, dict) and e.get("event") == "heal" and isinstance(e.get("details"), dict)}
        return check_clickhouse_backfill(windows, view.engine_events(), missing, duplicate_trades=duplicates,
                                         rows=rows, heals=heals, requirement_ids=rids, targets=targets,
                                         result_cls=result_cls, unmeasured=unmeasured)

    def backups(view, params, rids, targets):
        restore, _why = view.json_doc(CLICKHOUSE_RESTORE)
        return check_clickhouse_backups(view.engine_events(), restore if isinstance(restore, dict) else None,
                                        requirement_ids=rids, targets=targets, result_cls=result_cls,
                                        unmeasured=unmeasured)

    def failover(view, params, rids, targets):
        topo = None
        for p in (view.run.path / "stack" / "topology.json",):
            try:
                topo = json.loads(p.read_text())
            except (OSError, ValueError):
                pass
        windows, _bad = view.fault_windows_lenient()
        return check_clickhouse_failover(topo, windows, requirement_ids=rids, targets=targets, result_cls=result_cls,
                                         unmeasured=unmeasured)

    def rebuild(view, params, rids, targets):
        from scenarios import checkers as c
        events = view.engine_events()
        repaired = any(isinstance(e, dict) and e.get("event") == "journal_repaired" for e in events or [])
        journals = journal_finals(view.run.path)[0] if repaired else {}
        ledger = view.ledger()
        orders = c.orders_by_signal(ledger, view.signal_of) if ledger is not None else None
        return check_journal_rebuild(events, journals, orders, requirement_ids=rids, targets=targets,
                                     result_cls=result_cls, unmeasured=unmeasured)

    return [
        checker_cls("order_failed_syncs", ord2, ("failed_sync_retry_s", "lost_signals"),
                    "ORD-2: orders put in failed_syncs after ORD-1's tries, the time to their retry, and whether each "
                    "ended executed or rejected with a reason"),
        checker_cls("clickhouse_backfill", backfill, ("lost_rows", "duplicate_rows"),
                    "CH-2: rows missing or doubled in ClickHouse (FINAL) after it lost data and the engines "
                    "backfilled from DuckDB, and how long the backfill took"),
        checker_cls("clickhouse_backups", backups, ("zstd_level", "restore_missing_rows", "full_backup_interval_h",
                                                    "incremental_backup_interval_h", "backup_retention_days"),
                    "CH-3: the ZSTD level of the backups the engines took, whether they restore, and the schedule "
                    "they ran with (configuration)"),
        checker_cls("clickhouse_failover", failover, ("rto_s",),
                    "CH-4: an active ClickHouse node lost to the first successful query on the passive one"),
        checker_cls("journal_rebuild", rebuild, ("state_mismatches",),
                    "DDB-4: every repaired journal, after its rebuild, against the broker ledger"),
    ]
