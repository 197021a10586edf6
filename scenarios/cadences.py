"""Cadences measured, not read (issue 19 part 2): heartbeats, retries and health checks timed from the events the
components wrote while they ran, as distributions (n, min, median, p95, max), the worst interval judged against
``targets.toml``. Never from a component's configuration.

Each cadence is the start-to-start interval of consecutive lines of one process (start = the line's clock minus its
``took_s``, the tick's own duration), in one unbroken series: a series ends where the process stops doing that tick
(a heartbeat series at a lease loss or acquisition, a retry series at the success that ends the outage).

- ``heartbeat_cadence`` (ENG-1 ``heartbeat_interval_s``): the engines' ``heartbeat`` lines (one per lease renewal
  written to Redis), per process, split at ``lease_acquired`` / ``lease_lost``; an interval across a fault's
  injection or heal is left out (a freeze or a Redis outage is judged by the RTO checkers, not as a cadence).
- ``broker_heartbeat`` (BRK-1 ``broker_heartbeat_interval_s``, ``broker_connection_timeout_s``): the engines'
  ``broker_heartbeat`` lines per process and broker, split at a loss, a connection or a switch, intervals across a
  fault's injection or heal left out; the timeout is the ``took_s`` of a heartbeat that failed (its start to the
  connection declared lost).
- ``broker_retry`` (BRK-2 ``broker_retry_interval_s``, ``failures_before_secondary``, ``failures_before_suspend``):
  ``broker_connect_failed`` lines per process until its next ``broker_connected``; the failed attempts of the old
  broker before each ``broker_switch``; the failed attempts before each ``broker_suspended``.
- ``brokers_down`` (BRK-5 ``orders_sent_while_suspended``, ``alerts_raised``): while every broker node of the run was
  down at once (the intersection of the fault windows that killed, paused or cut each ``mt5-*`` node), the
  ``order_send_invoke`` lines between an engine's ``broker_suspended`` and its next ``broker_connected``, and the
  ``broker_suspended`` alerts raised after the last broker went down.
- ``redis_retry`` (ORD-3 ``redis_retry_interval_s``, ``attempts_before_sentinel_switch``): the main Redis link's
  ``redis_attempt`` lines (failed ones, per process, until a successful one), and the ``failures`` of each
  ``redis_rediscover``.
- ``order_backoff`` (ORD-1 ``order_backoff_s``, ``order_attempts``, ``order_retry_recovery_s``): per signal, a failed
  ``order_send_complete`` followed by a ``deferred`` line naming its retcode (the engine's retry) to the next
  ``order_send_invoke`` of that signal; attempts = invokes before its ``failed_sync``; recovery = the first failed
  answer to the executed one.
- ``ris_reconnect`` (EA-3 ``ris_reconnect_interval_s``, ``recoveries_before_new_session``, ``rto_s``): the EA's
  ``ris_attempt`` lines per process until its session is back; the failed attempts before the
  ``ris_session_lost`` alert; Redis reachable again (the fault's heal, or the loss when Redis came back first) to
  ``session_resumed`` / ``session_new``.
- ``backend_health_cadence`` (BE-1 ``health_check_interval_s``): the supervisor's ``health`` lines per backend
  process, intervals across a fault's injection or heal left out.

Already measured elsewhere and reused, not repeated: EA-2's TCP reconnect (``ticks.tcp_reconnect``), CH-1's sync
retries and BR-2's resync backoff (``checkers.clickhouse_history``, ``store_gaps``), DDB-6's health checks
(``persistence.store_health``). :data:`CADENCES` lists every cadence of the issue and where it is measured.

A schedule target ("==" a list, ORD-1's 1, 2, 4, 8, 16 s) is compared at the resolution the document states it in:
each measured step's median rounded to whole seconds when every value of the target is a whole number (a delay of
1.2 s is "1 s"), with the raw distribution of every step in the evidence.

Nothing to judge (no such line in the run): ``unmeasured`` with the reason, never a pass.
"""
from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

from scenarios import targets as targets_mod
from scenarios.history import FaultWindow
from scenarios.verdicts import finite_number, judge, percentile, validity

BROKER_NODE_PREFIX = "mt5-"        # the drill's broker nodes (mt5-primary, mt5-backup)
DOWN_FAULTS = ("process-kill", "process-pause", "process-terminate", "node-isolate")   # a node that cannot answer
EVIDENCE_MAX = 40                   # series listed per checker; the distribution counts them all

# every cadence of issue 19 part 2: (requirement, metric, the checker that measures it, the lines it is timed from)
CADENCES: tuple[tuple[str, str, str, str], ...] = (
    ("ENG-1", "heartbeat_interval_s", "heartbeat_cadence", "engine heartbeat (lease renewal)"),
    ("BRK-1", "broker_heartbeat_interval_s", "broker_heartbeat", "engine broker_heartbeat"),
    ("BRK-1", "broker_connection_timeout_s", "broker_heartbeat", "engine broker_heartbeat ok=false took_s"),
    ("BRK-2", "broker_retry_interval_s", "broker_retry", "engine broker_connect_failed"),
    ("ORD-1", "order_backoff_s", "order_backoff", "engine order_send_complete, deferred, order_send_invoke"),
    ("ORD-3", "redis_retry_interval_s", "redis_retry", "engine redis_attempt"),
    ("CH-1", "sync_retry_interval_s", "clickhouse_history", "engine clickhouse_failed_sync_added"),
    ("EA-2", "tcp_reconnect_interval_s", "tcp_reconnect", "consumer TCP attempts"),
    ("EA-3", "ris_reconnect_interval_s", "ris_reconnect", "EA ris_attempt"),
    ("BR-2", "resync_backoff_s", "clickhouse_history", "engine failed_syncs resync tries"),
    ("DDB-6", "health_check_interval_s", "store_health", "engine journal_health"),
    ("BE-1", "health_check_interval_s", "backend_health_cadence", "supervisor health (backend-*)"),
)


def _evidence(rows: Sequence[dict], metric: str, dist: dict, values: Sequence[float], rule: str) -> list[dict]:
    """A cadence checker's evidence: its first EVIDENCE_MAX rows, the distribution of ``metric`` with its values,
    and the rule it was measured by."""
    return [*rows[:EVIDENCE_MAX], {"kind": "distribution", metric: dist, "values": {metric: _values(values)}},
            {"kind": "rule", "rule": rule}]


# -- distributions -----------------------------------------------------------------------------------------------
_num = finite_number


def distribution(values: Iterable[float]) -> dict:
    """``{n, min, median, p95, max}`` of ``values`` (seconds, 4 decimals; p95 nearest-rank); ``{n: 0}`` for none."""
    xs = sorted(v for v in (_num(x) for x in values) if v is not None)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": round(xs[0], 4), "median": round(statistics.median(xs), 4),
            "p95": round(percentile(xs, 95), 4), "max": round(xs[-1], 4)}


def start_of(event: dict, clock: str = "mono") -> float | None:
    """When a tick began: the line's ``clock`` minus its ``took_s`` (0 without one); None without a clock."""
    t = _num(event.get(clock))
    return None if t is None else t - (_num(event.get("took_s")) or 0.0)


def fault_spans(windows: Sequence[FaultWindow]) -> list[tuple[float, float]]:
    """Each fault's two instants, its injection and its heal, as zero-length wall-clock spans: an interval across
    one is the fault's (a freeze, a connection cut), judged by the RTO checkers; ticks inside a long fault of another
    node (a broker down for 24 s while the engine heartbeats its backup) are a steady cadence and count."""
    out = []
    for w in windows:
        for t in (w.inject_wall, w.heal_wall):
            if t is not None:
                out.append((t, t))
    return out


def _overlaps(a: float, b: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(s <= b and e >= a for s, e in spans)


def series_intervals(points: Sequence[tuple[float, float]], *, exclude: Sequence[tuple[float, float]] = ()
                     ) -> tuple[list[float], int]:
    """Start-to-start intervals of one series of ticks, ``points`` = [(start on the process clock, start on the wall
    clock)] in order; an interval whose wall span overlaps an ``exclude`` span is left out (and counted)."""
    out, left_out = [], 0
    for (m0, w0), (m1, w1) in zip(points, points[1:]):
        if exclude and _overlaps(w0, w1, exclude):
            left_out += 1
            continue
        out.append(m1 - m0)
    return out, left_out


def split_series(events: Sequence[dict], tick: Callable[[dict], bool], breaks: Callable[[dict], bool], *,
                 clock: str = "mono", wall: str = "ts") -> list[list[tuple[float, float]]]:
    """The ticks of one process's ``events`` (in order) cut into series at every line ``breaks`` accepts; each tick
    as (start on ``clock``, start on ``wall``)."""
    series: list[list[tuple[float, float]]] = [[]]
    for e in events:
        if breaks(e):
            if series[-1]:
                series.append([])
            continue
        if tick(e):
            m, w = start_of(e, clock), start_of(e, wall)
            if m is not None and w is not None:
                series[-1].append((m, w))
    return [s for s in series if s]


def by_process(events: Iterable[dict], *, clock: str = "mono") -> dict[tuple, list[dict]]:
    """Events grouped by (instance, pid), each group in its clock's order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        if isinstance(e, dict):
            groups[(str(e.get("instance") or e.get("program") or ""), e.get("pid"))].append(e)
    for rows in groups.values():
        rows.sort(key=lambda e: _num(e.get(clock)) if _num(e.get(clock)) is not None else math.inf)
    return dict(groups)


def schedule_at_resolution(step_medians: Sequence[float], target: Any) -> list[float]:
    """Measured schedule steps at the resolution the target states its values in: whole seconds when every target
    value is a whole number, else 2 decimals."""
    whole = isinstance(target, list) and target and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in target)
    return [float(round(m)) if whole else round(m, 2) for m in step_medians]


# -- results -----------------------------------------------------------------------------------------------------
def _result(result_cls, name: str, rids, targets, metrics: dict, reasons: dict[str, str], judged: Sequence[str],
            evidence: list, summary: str, lower: Sequence[str] = ()):
    judgements = []
    for m in judged:
        judgements += judge({m: metrics.get(m)}, rids, targets, lower_bounds=lower,
                            unmeasured_reason=f"unmeasured: {reasons.get(m, 'no event to time it from')}")
    return result_cls(name, validity(judgements), tuple(rids), metrics, evidence, summary, judgements)


VALUES_MAX = 5000   # raw intervals kept per metric in the evidence (the report pools them over runs)


def _values(values: Sequence[float]) -> list[float]:
    """The raw intervals (4 decimals) for the evidence, so a report can pool runs into one distribution."""
    return [round(v, 4) for v in values[:VALUES_MAX]]


def _worst(values: Sequence[float]) -> float | None:
    return round(max(values), 4) if values else None


# -- ENG-1 heartbeat -----------------------------------------------------------------------------------------------
HEARTBEAT_RULE = ("heartbeat_interval_s = the largest start-to-start interval (start = mono - took_s) between "
                  "consecutive 'heartbeat' lines (one per lease renewal written to Redis) of one engine process while "
                  "it held one lease (series split at lease_acquired / lease_lost); an interval across a fault's "
                  "injection or heal is left out (a freeze or outage is judged by the RTO checkers).")


def check_heartbeat(events: Sequence[dict], windows: Sequence[FaultWindow], *, requirement_ids=("ENG-1",),
                    targets=None, result_cls, name: str = "heartbeat_cadence"):
    spans = fault_spans(windows)
    gaps, left_out, rows = [], 0, []
    for (instance, pid), evs in sorted(by_process(events).items(), key=lambda kv: str(kv[0])):
        for s in split_series(evs, lambda e: e.get("event") == "heartbeat",
                              lambda e: e.get("event") in ("lease_acquired", "lease_lost")):
            iv, out = series_intervals(s, exclude=spans)
            gaps += iv
            left_out += out
            if iv:
                rows.append({"kind": "series", "instance": instance, "pid": pid, "heartbeats": len(s),
                             "interval_s": distribution(iv)})
    d = distribution(gaps)
    metrics = {"heartbeat_interval_s": _worst(gaps), "heartbeat_interval": d, "intervals_in_faults_left_out": left_out}
    reasons = {"heartbeat_interval_s": "no two consecutive heartbeat lines of one lease holder outside the faults "
                                       "(the engines' event logs have no 'heartbeat' line)"}
    summary = (f"{d['n']} heartbeat intervals of {len(rows)} holder series: median {d.get('median')} / p95 "
               f"{d.get('p95')} / max {d.get('max')} s ({left_out} across a fault left out)"
               if d["n"] else f"unmeasured: {reasons['heartbeat_interval_s']}")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons, ("heartbeat_interval_s",),
                   _evidence(rows, "heartbeat_interval_s", d, gaps, HEARTBEAT_RULE), summary)


# -- BRK-1 broker heartbeat ---------------------------------------------------------------------------------------
_REFUSED = re.compile(r"refused|no ipc connection|reset by peer|connection closed|unreachable", re.I)
BROKER_HEARTBEAT_RULE = ("broker_heartbeat_interval_s = the largest start-to-start interval between consecutive "
                         "'broker_heartbeat' lines of one engine process and broker (series split at broker_lost, "
                         "broker_connected, broker_switch), an interval across a fault's injection or heal left out; "
                         "broker_connection_timeout_s = the largest took_s of a failed heartbeat (its start to the "
                         "connection declared lost) against a broker that did not answer; a refused connect (a dead "
                         "process, 'No IPC connection') fails at once and measures nothing of the timeout.")


def check_broker_heartbeat(events: Sequence[dict], windows: Sequence[FaultWindow], *, requirement_ids=("BRK-1",),
                           targets=None, result_cls, name: str = "broker_heartbeat"):
    spans = fault_spans(windows)
    gaps, left_out, rows, timeouts, refused = [], 0, [], [], []
    for (instance, pid), evs in sorted(by_process(events).items(), key=lambda kv: str(kv[0])):
        brokers = sorted({str(e.get("broker")) for e in evs if e.get("event") == "broker_heartbeat"})
        for broker in brokers:
            for s in split_series(
                    evs, lambda e, b=broker: e.get("event") == "broker_heartbeat" and str(e.get("broker")) == b
                    and e.get("ok") is not False,
                    lambda e: e.get("event") in ("broker_lost", "broker_connected", "broker_switch")
                    or (e.get("event") == "broker_heartbeat" and e.get("ok") is False)):
                iv, out = series_intervals(s, exclude=spans)
                gaps += iv
                left_out += out
                if iv:
                    rows.append({"kind": "series", "instance": instance, "pid": pid, "broker": broker,
                                 "heartbeats": len(s), "interval_s": distribution(iv)})
        for e in evs:
            if e.get("event") == "broker_heartbeat" and e.get("ok") is False and _num(e.get("took_s")) is not None:
                # a refused connect (dead process: 'No IPC connection', refused, reset) fails at once: the
                # connection timeout never ran, so it measures nothing of it; only a broker that stops answering does
                immediate = bool(_REFUSED.search(str(e.get("error") or "")))
                (refused if immediate else timeouts).append(_num(e["took_s"]))
                rows.append({"kind": "failed_heartbeat", "instance": instance, "pid": pid, "broker": e.get("broker"),
                             "took_s": e.get("took_s"), "error": str(e.get("error") or "")[:160],
                             "refused": immediate})
    d, dt = distribution(gaps), distribution(timeouts)
    metrics = {"broker_heartbeat_interval_s": _worst(gaps), "broker_connection_timeout_s": _worst(timeouts),
               "broker_heartbeat_interval": d, "broker_failed_heartbeat_took": dt,
               "intervals_in_faults_left_out": left_out}
    reasons = {"broker_heartbeat_interval_s": "no two consecutive broker_heartbeat lines of one engine process and "
                                              "broker outside the faults",
               "broker_connection_timeout_s": (
                   f"BRK-1's 5 s connection timeout runs only against a broker that stops answering; the "
                   f"{len(refused)} failed heartbeat(s) of this run were refused connects (a killed process: declared "
                   f"lost after at most {max(refused):g} s, the timeout never ran), and no drill in the library pauses "
                   f"a broker (no process-pause on mt5)" if refused else
                   "no broker heartbeat failed in this run (no broker went away while connected)")}
    summary = (f"{d['n']} broker heartbeat intervals: median {d.get('median')} / p95 {d.get('p95')} / max "
               f"{d.get('max')} s; {dt['n']} failed heartbeat(s), declared lost after at most {dt.get('max')} s"
               if d["n"] or dt["n"] else f"unmeasured: {reasons['broker_heartbeat_interval_s']}")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons,
                   ("broker_heartbeat_interval_s", "broker_connection_timeout_s"),
                   [*rows[:EVIDENCE_MAX], {"kind": "distribution", "broker_heartbeat_interval_s": d,
                                           "broker_connection_timeout_s": dt,
                                           "values": {"broker_heartbeat_interval_s": _values(gaps),
                                                      "broker_connection_timeout_s": _values(timeouts)}},
                    {"kind": "rule", "rule": BROKER_HEARTBEAT_RULE}], summary)


# -- BRK-2 broker reconnects -----------------------------------------------------------------------------------------
BROKER_RETRY_RULE = ("broker_retry_interval_s = the largest start-to-start interval (start = mono - took_s) between "
                     "consecutive broker_connect_failed lines of one engine process with no broker_connected between "
                     "them (the attempt at once on the next broker after a switch included); "
                     "failures_before_secondary = the most failed attempts of one broker before a broker_switch; "
                     "failures_before_suspend = the most failed attempts since the last connection before a "
                     "broker_suspended line.")


def check_broker_retry(events: Sequence[dict], *, requirement_ids=("BRK-2",), targets=None, result_cls,
                       name: str = "broker_retry"):
    gaps, rows, before_switch, before_suspend = [], [], [], []
    for (instance, pid), evs in sorted(by_process(events).items(), key=lambda kv: str(kv[0])):
        for s in split_series(evs, lambda e: e.get("event") == "broker_connect_failed",
                              lambda e: e.get("event") == "broker_connected"):
            iv, _ = series_intervals(s)
            gaps += iv
            rows.append({"kind": "outage", "instance": instance, "pid": pid, "failed_attempts": len(s),
                         "interval_s": distribution(iv)})
        since_up, on_broker = 0, defaultdict(int)
        for e in evs:
            ev = e.get("event")
            if ev == "broker_connected":
                since_up, on_broker = 0, defaultdict(int)
            elif ev == "broker_connect_failed":
                since_up += 1
                on_broker[str(e.get("broker"))] += 1
            elif ev == "broker_switch":
                n = on_broker.pop(str(e.get("old")), 0)
                before_switch.append(n)
                rows.append({"kind": "switch", "instance": instance, "pid": pid, "old": e.get("old"),
                             "new": e.get("new"), "failed_attempts_of_old": n})
            elif ev == "broker_suspended":
                before_suspend.append(since_up)
                rows.append({"kind": "suspended", "instance": instance, "pid": pid, "failed_attempts": since_up,
                             "every_broker": e.get("every_broker")})
    d = distribution(gaps)
    metrics = {"broker_retry_interval_s": _worst(gaps), "broker_retry_interval": d,
               "failures_before_secondary": max(before_switch) if before_switch else None,
               "failures_before_suspend": max(before_suspend) if before_suspend else None}
    reasons = {"broker_retry_interval_s": "no two consecutive failed broker reconnects of one engine process (no "
                                          "broker outage long enough in this run)",
               "failures_before_secondary": "no broker_switch in this run (no broker stayed down long enough)",
               "failures_before_suspend": "no broker_suspended in this run"}
    summary = (f"{d['n']} reconnect intervals: median {d.get('median')} / p95 {d.get('p95')} / max {d.get('max')} s; "
               f"{len(before_switch)} switch(es) after {metrics['failures_before_secondary']} failures; "
               f"{len(before_suspend)} suspension(s) after {metrics['failures_before_suspend']}")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons,
                   ("broker_retry_interval_s", "failures_before_secondary", "failures_before_suspend"),
                   _evidence(rows, "broker_retry_interval_s", d, gaps, BROKER_RETRY_RULE), summary)


# -- BRK-2 the switch to the backup, as a signal sees it -----------------------------------------------------------
BROKER_FALLBACK_RULE = (
    "fallback_result_s = for each signal acknowledged (signals.jsonl ack ok) while the primary broker was down (a "
    "fault of DOWN_FAULTS on node mt5-primary, inject to heal, wall clock) and no other broker node was down within "
    "the bound after it: its first result on RTRS (entry time) minus its acknowledgement; the worst is judged against "
    "BRK-2's failures_before_secondary x broker_retry_interval_s + rto_s (5 x 3 s + 5 s = 20 s). A signal with no "
    "result counts from its acknowledgement to the end of the RTRS dump as a lower bound when that already exceeds "
    "the bound, else it is left unjudged.")


def check_broker_fallback(signals, results, windows: Sequence[FaultWindow], *, bound_s: float,
                          requirement_ids=("BRK-2",), targets=None, result_cls, name: str = "broker_fallback"):
    """BRK-2 as a signal sees it (issue 16): a signal acknowledged while the primary broker is down gets its result
    within ``bound_s`` seconds (the switch to the backup, then the RTO); ``signals``: ``history.Signal`` with
    ``fields["wall_ts"]``; ``results``: ``history.TradeResult`` rows of rtrs.jsonl (``raw["entry"]`` ms). Metric
    ``fallback_result_s`` (worst wait, s; a lower bound when unanswered). Unmeasured without a primary outage or
    without a signal acknowledged in one."""
    primary = [(w.inject_wall, w.heal_wall) for w in windows if w.fault in DOWN_FAULTS and w.inject_wall is not None
               and str((w.details or {}).get("node") or "") == f"{BROKER_NODE_PREFIX}primary"]
    others = [(w.inject_wall, w.heal_wall if w.heal_wall is not None else float("inf")) for w in windows
              if w.fault in DOWN_FAULTS and w.inject_wall is not None
              and str((w.details or {}).get("node") or "").startswith(BROKER_NODE_PREFIX)
              and str((w.details or {}).get("node") or "") != f"{BROKER_NODE_PREFIX}primary"]
    answered: dict[str, float] = {}
    end = 0.0
    for r in results:
        entry = str(r.raw.get("entry") or "")
        try:
            at = int(entry.split("-")[0]) / 1000.0
        except ValueError:
            continue
        end = max(end, at)
        if r.status.lower() != "duplicate" and r.signal not in answered:
            answered[r.signal] = at
    why = None
    if not primary:
        why = "no fault took the primary broker (node mt5-primary) down in this run"
    rows, waits, worst_is_lower = [], [], False
    for sig in signals if not why else ():
        ack = sig.fields.get("wall_ts")
        if sig.ack != "ok" or not isinstance(ack, (int, float)):
            continue
        if not any(a <= ack <= (b if b is not None else float("inf")) for a, b in primary):
            continue
        if any(a <= ack + bound_s and ack <= b for a, b in others):
            continue   # every broker down: BRK-5 (brokers_down) judges that span
        got = answered.get(sig.id)
        if got is not None:
            wait = got - ack
        elif end - ack > bound_s:
            wait = end - ack
        else:
            continue
        waits.append(wait)
        if wait >= max(waits):
            worst_is_lower = got is None
        if wait > bound_s or len(rows) < 5:
            rows.append({"signal": sig.id, "result_after_s": round(wait, 3) if got is not None else None,
                         "waited_s": round(wait, 3), "bound_s": bound_s})
    if not why and not waits:
        why = "no signal acknowledged while the primary broker was down (and the backup up) has a result to time"
    if why:
        metrics = {"fallback_result_s": None}
        return _result(result_cls, name, requirement_ids, targets, metrics, {"fallback_result_s": why},
                       ("fallback_result_s",), [{"kind": "unmeasured", "why": why},
                                                {"kind": "rule", "rule": BROKER_FALLBACK_RULE}], f"unmeasured: {why}")
    late = [r for r in rows if r["waited_s"] > bound_s]
    metrics = {"fallback_result_s": _worst(waits), "signals_in_outage": len(waits), "late_results": len(late),
               "fallback_result": distribution(waits)}
    summary = (f"{len(waits)} signal(s) acknowledged while the primary broker was down: worst result after "
               f"{metrics['fallback_result_s']} s (bound {bound_s:g} s); {len(late)} late"
               + (f": {', '.join(r['signal'] for r in late[:10])}" if late else ""))
    evidence = [{"kind": "late" if r in late else "timed", **r} for r in rows[:EVIDENCE_MAX]]
    return _result(result_cls, name, requirement_ids, targets, metrics, {}, ("fallback_result_s",),
                   evidence + [{"kind": "rule", "rule": BROKER_FALLBACK_RULE}], summary,
                   lower=("fallback_result_s",) if worst_is_lower else ())


# -- BRK-5 every broker down ---------------------------------------------------------------------------------------
LOSS_EVENTS = ("broker_lost", "broker_connect_failed", "broker_heartbeat", "broker_suspended")
BROKERS_DOWN_RULE = ("Every broker down = the wall-clock intersection of fault windows that killed, paused or cut "
                     "each broker node (details.node mt5-*, every broker node a fault of the run named); "
                     "orders_sent_while_suspended = order_send_invoke lines inside that span made by an engine process "
                     "once it knew (its first broker_lost, failed broker_heartbeat, broker_connect_failed or "
                     "broker_suspended inside the span; a send before that is one no engine could have held back); "
                     "alerts_raised = broker_suspended alerts raised inside the span (the last broker down to the "
                     "first back).")


def every_broker_down(windows: Sequence[FaultWindow], brokers: Sequence[str]) -> list[tuple[float, float]]:
    """Wall spans during which every broker node in ``brokers`` was inside a fault of :data:`DOWN_FAULTS`."""
    if not brokers:
        return []
    per: dict[str, list[tuple[float, float]]] = {b: [] for b in brokers}
    for w in windows:
        node = str((w.details or {}).get("node") or "")
        if node in per and w.fault in DOWN_FAULTS and w.inject_wall is not None and w.heal_wall is not None:
            per[node].append((w.inject_wall, w.heal_wall))
    spans = per[brokers[0]]
    for b in brokers[1:]:
        spans = [(max(a0, b0), min(a1, b1)) for a0, a1 in spans for b0, b1 in per[b] if max(a0, b0) < min(a1, b1)]
    return sorted(spans)


def check_brokers_down(events: Sequence[dict], windows: Sequence[FaultWindow], *, requirement_ids=("BRK-5",),
                       targets=None, result_cls, name: str = "brokers_down"):
    named = {str((w.details or {}).get("node")) for w in windows if str((w.details or {}).get("node") or "")
             .startswith(BROKER_NODE_PREFIX)}
    brokers = sorted(named)
    down = every_broker_down(windows, brokers) if len(brokers) >= 2 else []
    if not down:
        why = (f"every broker was never down at once in this run (broker nodes faulted: "
               f"{', '.join(brokers) or 'none'})")
        metrics = {"orders_sent_while_suspended": None, "alerts_raised": None}
        return _result(result_cls, name, requirement_ids, targets, metrics,
                       {"orders_sent_while_suspended": why, "alerts_raised": why},
                       ("orders_sent_while_suspended", "alerts_raised"),
                       [{"kind": "unmeasured", "why": why}, {"kind": "rule", "rule": BROKERS_DOWN_RULE}],
                       f"unmeasured: {why}")
    sent, alerts, rows = 0, 0, []
    for (instance, pid), evs in by_process(events, clock="ts").items():
        suspended, knows = False, False
        for e in evs:
            ev, t = e.get("event"), _num(e.get("ts"))
            inside = t is not None and any(a <= t <= b for a, b in down)
            if ev in LOSS_EVENTS and inside and (ev != "broker_heartbeat" or e.get("ok") is False):
                knows = True
            if ev == "broker_suspended":
                suspended = True
            elif ev == "broker_connected":
                suspended = False
            elif ev == "order_send_invoke" and inside and (knows or suspended):
                sent += 1
                rows.append({"kind": "order_sent_while_down", "instance": instance, "pid": pid,
                             "signal_id": e.get("signal_id"), "broker": e.get("broker"), "suspended": suspended})
            elif ev == "alert" and e.get("kind") == "broker_suspended" and inside:
                alerts += 1
                rows.append({"kind": "alert", "instance": instance, "pid": pid, "message": e.get("message")})
    metrics = {"orders_sent_while_suspended": sent, "alerts_raised": alerts,
               "every_broker_down_s": round(sum(b - a for a, b in down), 3), "brokers": brokers}
    summary = (f"every broker ({', '.join(brokers)}) down for {metrics['every_broker_down_s']} s: {alerts} "
               f"broker_suspended alert(s), {sent} order_send(s) meanwhile")
    return _result(result_cls, name, requirement_ids, targets, metrics, {},
                   ("orders_sent_while_suspended", "alerts_raised"),
                   [*rows[:EVIDENCE_MAX], {"kind": "down", "spans": [[a, b] for a, b in down]},
                    {"kind": "rule", "rule": BROKERS_DOWN_RULE}], summary)


# -- ORD-3 Redis reconnects ----------------------------------------------------------------------------------------
REDIS_RETRY_RULE = ("redis_retry_interval_s = the largest start-to-start interval (start = mono - took_s) between "
                    "consecutive failed 'redis_attempt' lines (the main Redis link's reconnects) of one engine "
                    "process with no successful attempt between them; attempts_before_sentinel_switch = the largest "
                    "'failures' of a redis_rediscover line (every Sentinel connection dropped, the primary "
                    "discovered afresh).")


def check_redis_retry(events: Sequence[dict], *, requirement_ids=("ORD-3",), targets=None, result_cls,
                      name: str = "redis_retry"):
    gaps, rows, rediscover = [], [], []
    for (instance, pid), evs in sorted(by_process(events).items(), key=lambda kv: str(kv[0])):
        for s in split_series(evs, lambda e: e.get("event") == "redis_attempt" and e.get("ok") is False,
                              lambda e: e.get("event") == "redis_attempt" and e.get("ok") is True):
            iv, _ = series_intervals(s)
            gaps += iv
            rows.append({"kind": "outage", "instance": instance, "pid": pid, "failed_attempts": len(s),
                         "interval_s": distribution(iv)})
        rediscover += [int(n) for e in evs if e.get("event") == "redis_rediscover"
                       and (n := _num(e.get("failures"))) is not None]
    d = distribution(gaps)
    metrics = {"redis_retry_interval_s": _worst(gaps), "redis_retry_interval": d,
               "attempts_before_sentinel_switch": min(rediscover) if rediscover else None}
    reasons = {"redis_retry_interval_s": "no two consecutive failed Redis reconnects of one engine process "
                                         "(no redis_attempt lines: no Redis outage in this run)",
               "attempts_before_sentinel_switch": "no outage reached a rediscovery through Sentinel (no "
                                                  "redis_rediscover line)"}
    summary = (f"{d['n']} Redis reconnect intervals: median {d.get('median')} / p95 {d.get('p95')} / max "
               f"{d.get('max')} s; rediscovery after {metrics['attempts_before_sentinel_switch']} failures")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons,
                   ("redis_retry_interval_s", "attempts_before_sentinel_switch"),
                   _evidence(rows, "redis_retry_interval_s", d, gaps, REDIS_RETRY_RULE), summary)


# -- ORD-1 order backoff -------------------------------------------------------------------------------------------
ORDER_BACKOFF_RULE = ("Per signal, in wall-clock order over every engine: a retry step is an order_send_complete "
                      "with outcome fail followed by a 'deferred' line whose reason is that answer's retcode name "
                      "(the engine's ORD-1 retry); its delay = the next order_send_invoke of the signal minus that "
                      "answer. order_backoff_s = each step's median delay across signals, at the target's resolution "
                      "(whole seconds for 1, 2, 4, 8, 16); order_attempts = the most order_send_invoke lines of one "
                      "signal before its failed_sync line; order_retry_recovery_s = the largest time from a signal's "
                      "first failed answer to its executed one.")


def check_order_backoff(events: Sequence[dict], *, requirement_ids=("ORD-1",), targets=None, result_cls,
                        name: str = "order_backoff"):
    per_signal: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e.get("event") in ("order_send_invoke", "order_send_complete", "deferred", "failed_sync") \
                and e.get("signal_id") and _num(e.get("ts")) is not None:
            per_signal[str(e["signal_id"])].append(e)
    steps: dict[int, list[float]] = defaultdict(list)
    attempts_before_fs, recoveries, rows = [], [], []
    for sid, evs in per_signal.items():
        evs.sort(key=lambda e: _num(e["ts"]))
        invokes, first_fail, k = 0, None, 0
        pending_fail = None      # (complete ts, retcode name) of the last failed answer
        retry_from = None        # the failed answer a retry 'deferred' line confirmed
        for e in evs:
            ev, t = e["event"], _num(e["ts"])
            if ev == "order_send_invoke":
                invokes += 1
                if retry_from is not None:
                    k += 1
                    steps[k].append(t - retry_from)
                    retry_from = None
                pending_fail = None
            elif ev == "order_send_complete":
                if e.get("outcome") == "fail":
                    pending_fail = (t, str(e.get("name") or ""))
                    first_fail = t if first_fail is None else first_fail
                elif e.get("outcome") == "ok" and first_fail is not None:
                    recoveries.append(t - first_fail)
            elif ev == "deferred" and pending_fail is not None and str(e.get("reason") or "") == pending_fail[1] \
                    and pending_fail[1]:
                retry_from = pending_fail[0]
            elif ev == "failed_sync":
                attempts_before_fs.append(invokes)
                retry_from = None       # the next try is ORD-2's failed_syncs retry, not a backoff step
        if k:
            rows.append({"kind": "signal", "signal_id": sid, "retry_steps": k, "attempts": invokes})
    targets = targets or targets_mod.load()
    target = next((t for rid in requirement_ids if (t := targets.target(rid, "order_backoff_s")) is not None), None)
    medians = [statistics.median(steps[i]) for i in sorted(steps)]
    schedule = schedule_at_resolution(medians, target.value if target else None) if medians else None
    metrics = {"order_backoff_s": schedule,
               "order_attempts": max(attempts_before_fs) if attempts_before_fs else None,
               "order_retry_recovery_s": _worst(recoveries),
               "order_backoff_steps": {str(i): distribution(steps[i]) for i in sorted(steps)},
               "signals_retried": len(rows), "signals_to_failed_syncs": len(attempts_before_fs)}
    reasons = {"order_backoff_s": "no order was retried after a failed answer in this run",
               "order_attempts": "no order went to failed_syncs in this run",
               "order_retry_recovery_s": "no order whose first attempt failed was executed later in this run"}
    summary = (f"{len(rows)} signal(s) retried; backoff steps (median) {[round(m, 3) for m in medians]} s -> "
               f"{schedule}; {len(attempts_before_fs)} to failed_syncs after at most {metrics['order_attempts']} "
               f"attempts; recovered after at most {metrics['order_retry_recovery_s']} s")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons,
                   ("order_backoff_s", "order_attempts", "order_retry_recovery_s"),
                   [*rows[:EVIDENCE_MAX], {"kind": "distribution", "steps": metrics["order_backoff_steps"],
                                           "values": {f"order_backoff_s[{i}]": _values(steps[i])
                                                      for i in sorted(steps)}},
                    {"kind": "rule", "rule": ORDER_BACKOFF_RULE}], summary)


# -- EA-3 RIS session ----------------------------------------------------------------------------------------------
REDIS_FAULT_WORDS = ("redis",)
RIS_RULE = ("ris_reconnect_interval_s = the largest start-to-start interval (start = mono - took_s) between "
            "consecutive ris_attempt lines of one EA process before its session is back (session_resumed / "
            "session_new); recoveries_before_new_session = the failed attempts before each 'ris_session_lost' "
            "alert (the most of them); rto_s = per RIS loss (ris_lost) of a process: from the later of the loss and "
            "the heal of the Redis fault it fell in (Redis reachable again) to its next session_resumed / "
            "session_new (the worst).")


def check_ris_reconnect(events: Sequence[dict], windows: Sequence[FaultWindow], *, requirement_ids=("EA-3",),
                        targets=None, result_cls, name: str = "ris_reconnect"):
    redis_spans = [(w.inject_wall, w.heal_wall) for w in windows if w.inject_wall is not None
                   and w.heal_wall is not None and any(x in (w.fault + " " + str((w.details or {}).get("node", "")))
                                                      for x in REDIS_FAULT_WORDS)]
    gaps, rows, before_new, rtos = [], [], [], []
    for (instance, pid), evs in sorted(by_process(events).items(), key=lambda kv: str(kv[0])):
        back = ("session_resumed", "session_new")
        for s in split_series(evs, lambda e: e.get("event") == "ris_attempt", lambda e: e.get("event") in back,
                              clock="mono", wall="wall"):
            iv, _ = series_intervals(s)
            gaps += iv
            rows.append({"kind": "outage", "instance": instance, "pid": pid, "failed_attempts": len(s),
                         "interval_s": distribution(iv)})
        failed, lost_at = 0, None
        for e in evs:
            ev, t = e.get("event"), _num(e.get("wall"))
            if ev == "ris_attempt":
                failed = int(_num(e.get("n")) or failed + 1)
            elif ev == "alert" and e.get("what") == "ris_session_lost":
                before_new.append(failed)
            elif ev == "ris_lost" and t is not None:
                lost_at = t
            elif ev in back:
                if lost_at is not None and t is not None:
                    healed = [b for a, b in redis_spans if a - 1.0 <= lost_at <= b]
                    since = max([lost_at, *healed])
                    rtos.append(t - since)
                    rows.append({"kind": "session_back", "instance": instance, "pid": pid, "how": ev,
                                 "lost_wall": lost_at, "redis_back_wall": since, "rto_s": round(t - since, 4)})
                lost_at, failed = None, 0
    d = distribution(gaps)
    metrics = {"ris_reconnect_interval_s": _worst(gaps), "ris_reconnect_interval": d,
               "recoveries_before_new_session": max(before_new) if before_new else None,
               "rto_s": _worst(rtos), "ris_session_back": distribution(rtos)}
    reasons = {"ris_reconnect_interval_s": "no two consecutive failed RIS attempts of one EA process (no EA event "
                                           "log with ris_attempt lines: no EA with RIS, or no Redis outage)",
               "recoveries_before_new_session": "no outage lasted the recoveries that start a new session (no "
                                                "ris_session_lost alert)",
               "rto_s": "no RIS loss followed by the session back in this run"}
    summary = (f"{d['n']} RIS reconnect intervals: median {d.get('median')} / p95 {d.get('p95')} / max {d.get('max')} "
               f"s; new session after {metrics['recoveries_before_new_session']} failed recoveries; session back "
               f"{metrics['rto_s']} s after Redis")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons,
                   ("ris_reconnect_interval_s", "recoveries_before_new_session", "rto_s"),
                   _evidence(rows, "ris_reconnect_interval_s", d, gaps, RIS_RULE), summary)


# -- BE-1 backend health checks ---------------------------------------------------------------------------------------
BACKEND_HEALTH_RULE = ("health_check_interval_s = the largest start-to-start interval (start = mono - took_s) "
                       "between consecutive 'health' lines of the supervisor for one backend process (program "
                       "backend-*, one pid), an interval across a fault's injection or heal left out.")


def check_backend_health(sup_events: Sequence[dict], windows: Sequence[FaultWindow], *, requirement_ids=("BE-1",),
                         targets=None, result_cls, name: str = "backend_health_cadence"):
    spans = fault_spans(windows)
    gaps, left_out, rows = [], 0, []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for e in sup_events:
        if e.get("event") == "health" and str(e.get("program", "")).startswith("backend"):
            groups[(str(e.get("program")), e.get("pid"))].append(e)
    for (program, pid), evs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        evs.sort(key=lambda e: _num(e.get("mono")) or 0.0)
        s = [(m, w) for e in evs if (m := start_of(e, "mono")) is not None and (w := start_of(e, "wall")) is not None]
        iv, out = series_intervals(s, exclude=spans)
        gaps += iv
        left_out += out
        rows.append({"kind": "process", "program": program, "pid": pid, "checks": len(s),
                     "interval_s": distribution(iv)})
    d = distribution(gaps)
    metrics = {"health_check_interval_s": _worst(gaps), "health_check_interval": d,
               "intervals_in_faults_left_out": left_out}
    reasons = {"health_check_interval_s": "no two consecutive supervisor health lines of one backend process outside "
                                          "the faults (no backend in this run, or a supervisor without health lines)"}
    summary = (f"{d['n']} backend health-check intervals over {len(rows)} process(es): median {d.get('median')} / "
               f"p95 {d.get('p95')} / max {d.get('max')} s")
    return _result(result_cls, name, requirement_ids, targets, metrics, reasons, ("health_check_interval_s",),
                   _evidence(rows, "health_check_interval_s", d, gaps, BACKEND_HEALTH_RULE), summary)


# -- the checker table entries ------------------------------------------------------------------------------------
def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """The cadence checkers for ``scenarios.checkers.CHECKERS`` (built there: this module never imports it)."""
    from scenarios import ticks

    def heartbeat(view, params, rids, targets):
        return check_heartbeat(view.engine_events(), view.fault_windows_lenient()[0], requirement_ids=rids,
                               targets=targets, result_cls=result_cls)

    def broker_heartbeat(view, params, rids, targets):
        return check_broker_heartbeat(view.engine_events(), view.fault_windows_lenient()[0], requirement_ids=rids,
                                      targets=targets, result_cls=result_cls)

    def broker_retry(view, params, rids, targets):
        return check_broker_retry(view.engine_events(), requirement_ids=rids, targets=targets, result_cls=result_cls)

    def broker_fallback(view, params, rids, targets):
        from scenarios.stateful import SWITCH_BOUND_S

        return check_broker_fallback(view.signals(), view.trade_results(), view.fault_windows_lenient()[0],
                                     bound_s=float(params.get("bound_s") or SWITCH_BOUND_S), requirement_ids=rids,
                                     targets=targets, result_cls=result_cls)

    def brokers_down(view, params, rids, targets):
        return check_brokers_down(view.engine_events(), view.fault_windows_lenient()[0], requirement_ids=rids,
                                  targets=targets, result_cls=result_cls)

    def redis_retry(view, params, rids, targets):
        return check_redis_retry(view.engine_events(), requirement_ids=rids, targets=targets, result_cls=result_cls)

    def order_backoff(view, params, rids, targets):
        return check_order_backoff(view.engine_events(), requirement_ids=rids, targets=targets, result_cls=result_cls)

    def ris(view, params, rids, targets):
        events, _bad = ticks.ea_events(view.run.path)
        return check_ris_reconnect(events, view.fault_windows_lenient()[0], requirement_ids=rids, targets=targets,
                                   result_cls=result_cls)

    def backend_health(view, params, rids, targets):
        events, _bad = ticks.supervisor_events(view.run.path)
        return check_backend_health(events, view.fault_windows_lenient()[0], requirement_ids=rids, targets=targets,
                                    result_cls=result_cls)

    return [
        checker_cls("heartbeat_cadence", heartbeat, ("heartbeat_interval_s",),
                    "ENG-1 as the engines ran: start-to-start intervals of the lease renewals (distribution, worst "
                    "judged), faults left out"),
        checker_cls("broker_heartbeat", broker_heartbeat, ("broker_heartbeat_interval_s",),
                    "BRK-1 as the engines ran: broker heartbeat intervals and the time a failed one took to declare "
                    "the connection lost"),
        checker_cls("broker_retry", broker_retry, ("broker_retry_interval_s",),
                    "BRK-2 as the engines ran: reconnect intervals during a broker outage, failures before the "
                    "switch to the next broker and before suspension"),
        checker_cls("broker_fallback", broker_fallback, ("fallback_result_s",),
                    "BRK-2 as a signal sees it: a signal acknowledged while the primary broker is down has its result "
                    "within the switch (5 reconnects x 3 s) plus the RTO (5 s)", ("bound_s",)),
        checker_cls("brokers_down", brokers_down, ("orders_sent_while_suspended", "alerts_raised"),
                    "BRK-5: while every broker is down, no order sent and the suspension alerted"),
        checker_cls("redis_retry", redis_retry, ("redis_retry_interval_s",),
                    "ORD-3 as the engines ran: Redis reconnect intervals during an outage, failures before the "
                    "rediscovery through Sentinel"),
        checker_cls("order_backoff", order_backoff, ("order_backoff_s",),
                    "ORD-1 as the engines ran: the delays between a failed order's attempts, attempts before "
                    "failed_syncs, first failure to executed"),
        checker_cls("ris_reconnect", ris, ("ris_reconnect_interval_s",),
                    "EA-3 as the EA ran: RIS reconnect intervals, failed recoveries before a new session, Redis back "
                    "to the session back"),
        checker_cls("backend_health_cadence", backend_health, ("health_check_interval_s",),
                    "BE-1 as the supervisor ran: start-to-start intervals of the backend health checks"),
    ]
