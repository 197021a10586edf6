"""The webhook's checkers (issue 15), pure functions over a run folder like every checker.

``webhook_once`` (BE-4, ENG-5): every alert id a client saw accepted (a ``webhook`` operation ``ok``: HTTP 202, or
200 ``duplicate``) must be exactly one signal on RTSS and at most one order in the broker ledgers:

- RTSS entries of an alert's signal (``tv-<alert id>``) = its RTRS results (the engine publishes one per entry
  it read: executed, rejected or duplicate) + its entries still queued (backlog.json);
- ``webhook_lost_alerts``: accepted alerts with no RTSS entry at all;
- ``webhook_extra_signals``: RTSS entries beyond one per accepted alert (a retried webhook that made a second
  entry; the engine answers it ``duplicate``, but the backend promised one);
- ``webhook_duplicate_orders``: broker orders beyond one per alert (matched by the engine's comment code).

``http_failover`` (BE-2, PERF-2): the gap a client of the proxy saw while a backend was killed or frozen. For each
window of the named fault, over the ``webhook`` operations invoked from the injection to one second after the heal
(or ``window_s`` after the injection when it has no heal) and those in flight at the injection, a client's wait
caused by the fault is ``completion - max(invoke, injection)`` for an ``ok`` one, and for a failed or unknown one
the time to the next ``ok`` completion; ``backend_failover_s`` is the longest of them (the worst window counts),
and every window's gap is in the evidence (the distribution over injections and runs).
``webhook_failed_requests``: operations of those windows that did not end ``ok``.

``history_fallback`` (TV-4): chart history while ClickHouse is away (``history`` operations of the chart client,
``scenarios.workload.HistoryReader``): ``history_unclear_answers`` (neither bars nor a clear "history is
unavailable" 503: a timeout, a reset, a 500), ``history_answer_s`` (the slowest answer, bars or refusal, to a
request invoked during the outage), ``history_recovery_s`` (heal to the first bars *from ClickHouse* answered by a
request invoked after it), ``history_missing_trades`` (executed RTRS results of the chart's symbol older than
``lag_s`` when the last bars were asked for, missing from those bars' volume), ``history_fallback_missing_trades``
(the same count for the last bars a backend answered from its DuckDB copy during the outage: TV 6 "backend store
state temporarily"; None when no answer came from the copy, so a backend that only refuses is not judged on it).
An answer's source is the backend's ``X-History-Source`` header (``clickhouse`` / ``duckdb``); an answer without
one (older runs) counts as ClickHouse's.

``session_continuity`` (TV-1): the panel user's session across a backend fault (``panel`` operations of
``scenarios.workload.PanelClient``): ``state_lost_on_reconnect`` = answers that the session is unknown (401) after
it was opened (a session kept only in one backend's memory would be lost with it); ``rto_s`` = per fault window,
injection to the completion of the first ``ok`` panel answer to a request invoked after it (the worst counts).

Nothing to judge (no accepted alert, no RTRS dump, no fault window, no operation in one): ``unmeasured`` with the
reason, never a pass.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from reference.backend.webhook import signal_id_of
from reference.engine.contract import signal_of_comment
from scenarios import history as h
from scenarios import targets as targets_mod
from scenarios.verdicts import judge, validity

ONCE_METRICS = ("webhook_lost_alerts", "webhook_extra_signals", "webhook_duplicate_orders")
FAILOVER_METRICS = ("backend_failover_s", "webhook_failed_requests")
PANEL_METRICS = ("panel_available",)
TRADINGVIEW_HOST = 251   # <subnet>.251: where the drills' TradingView webhook clients leave from (webhook-cut)
SESSION_METRICS = ("state_lost_on_reconnect", "rto_s")
HISTORY_METRICS = ("history_unclear_answers", "history_answer_s", "history_recovery_s", "history_missing_trades",
                   "history_fallback_missing_trades")
OP = "webhook"


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def check_webhook_once(ops: Sequence[h.Operation], results: Sequence[h.TradeResult] | None, backlog: Sequence[str],
                       ledger: Sequence[h.Deal] | None, *, requirement_ids: Sequence[str] = ("BE-4",),
                       targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None):
    """``ops``: the history; ``results``: RTRS as dumped (None: never dumped); ``backlog``: signal ids still queued;
    ``ledger``: every broker deal (None: never dumped)."""
    posts = [op for op in ops if op.f == OP]
    accepted = sorted({str(op.key) for op in posts if op.outcome == h.OK})
    if not accepted:
        return unmeasured(result_cls, "webhook_once", requirement_ids, targets, ONCE_METRICS,
                          "no webhook was accepted: there is no alert whose signals could be counted")
    if results is None or ledger is None:
        return unmeasured(result_cls, "webhook_once", requirement_ids, targets, ONCE_METRICS,
                          "the run has no rtrs.jsonl or ledger.jsonl (never dumped): RTSS entries and orders cannot "
                          "be counted")
    entries = Counter(r.signal for r in results)
    entries.update(backlog)
    signal_of = signal_of_comment([signal_id_of(a) for a in accepted])
    orders: dict[str, set] = {}
    for d in ledger:
        sid = signal_of(d.comment)
        if sid is not None:
            orders.setdefault(sid, set()).add((d.broker, d.order))
    lost, extra, dup_orders = [], [], []
    per_alert = Counter()
    for alert in accepted:
        sid = signal_id_of(alert)
        n = entries.get(sid, 0)
        per_alert[n] += 1
        if n == 0:
            lost.append(alert)
        elif n > 1:
            extra.append({"alert_id": alert, "rtss_entries": n})
        if len(orders.get(sid, ())) > 1:
            dup_orders.append({"alert_id": alert, "orders": sorted(map(list, orders[sid]))})
    posts_per_alert = Counter(Counter(str(op.key) for op in posts).values())
    metrics = {"webhook_lost_alerts": len(lost),
               "webhook_extra_signals": sum(e["rtss_entries"] - 1 for e in extra),
               "webhook_duplicate_orders": sum(len(d["orders"]) - 1 for d in dup_orders)}
    ordered = sum(1 for a in accepted if orders.get(signal_id_of(a)))
    evidence = [{"kind": "counts", "alerts_posted": len({str(op.key) for op in posts}), "posts": len(posts),
                 "alerts_accepted": len(accepted), "alerts_with_an_order": ordered,
                 "posts_per_alert": dict(sorted(posts_per_alert.items())),
                 "rtss_entries_per_accepted_alert": dict(sorted(per_alert.items()))}]
    if lost:
        evidence.append({"kind": "lost_alerts", "alert_ids": lost[:20]})
    if extra:
        evidence.append({"kind": "extra_signals", "alerts": extra[:20]})
    if dup_orders:
        evidence.append({"kind": "duplicate_orders", "alerts": dup_orders[:20]})
    judgements = judge(metrics, requirement_ids, targets)
    summary = (f"{len(accepted)} alerts accepted ({len(posts)} posts): {ordered} with an order; "
               f"{metrics['webhook_lost_alerts']} without a signal, {metrics['webhook_extra_signals']} extra RTSS "
               f"entries, {metrics['webhook_duplicate_orders']} duplicate orders")
    return result_cls("webhook_once", validity(judgements), tuple(requirement_ids),
                      {**metrics, "alerts_accepted": len(accepted), "posts": len(posts)}, evidence, summary,
                      judgements)


def failover_gaps(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow], *, fault: str | None = None,
                  window_s: float = 5.0) -> list[dict]:
    """Per fault window (``fault``: its name; None: every window): ``{"fault_id", "gap_s", "requests", "failed",
    "p50_s", "p99_s"}``; ``gap_s`` None when no webhook operation ran in the window. Times in seconds."""
    posts = sorted((op for op in ops if op.f == OP), key=lambda o: o.invoke_mono)
    oks = sorted(op.complete_mono for op in posts if op.outcome == h.OK and op.complete_mono is not None)
    out = []
    for w in windows:
        if fault is not None and w.fault != fault:
            continue
        end = (w.heal_mono + 1.0) if w.heal_mono is not None else w.inject_mono + window_s
        inside = [op for op in posts if op.invoke_mono < end
                  and (op.complete_mono is None or op.complete_mono > w.inject_mono)]
        waits, failed = [], 0
        for op in inside:
            start = max(op.invoke_mono, w.inject_mono)
            if op.outcome == h.OK and op.complete_mono is not None:
                waits.append(op.complete_mono - start)
                continue
            failed += 1
            after = next((t for t in oks if t > (op.complete_mono or start)), None)
            waits.append((after - start) if after is not None else float("inf"))
        finite = [x for x in waits if x != float("inf")]
        out.append({"fault_id": w.fault_id, "fault": w.fault, "description": w.description,
                    "gap_s": (max(waits) if waits else None), "requests": len(inside), "failed": failed,
                    "p50_s": _quantile(finite, 0.5), "p99_s": _quantile(finite, 0.99)})
    return out


def check_http_failover(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow], *, fault: str | None = None,
                        window_s: float = 5.0, requirement_ids: Sequence[str] = ("BE-2",),
                        targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None):
    gaps = failover_gaps(ops, windows, fault=fault, window_s=window_s)
    if not gaps:
        return unmeasured(result_cls, "http_failover", requirement_ids, targets, FAILOVER_METRICS,
                          f"no {fault or 'fault'} window in the run: no failover to measure")
    measured = [g for g in gaps if g["gap_s"] is not None]
    if not measured:
        return unmeasured(result_cls, "http_failover", requirement_ids, targets, FAILOVER_METRICS,
                          "no webhook request ran inside a fault window: the clients saw nothing to measure")
    worst = max(g["gap_s"] for g in measured)
    failed = sum(g["failed"] for g in measured)
    metrics = {"backend_failover_s": worst if worst != float("inf") else None, "webhook_failed_requests": failed}
    judgements = judge(metrics, requirement_ids, targets,
                       unmeasured_reason="a request failed and no later request succeeded before the run ended")
    evidence = [{"kind": "window", **{k: (round(v, 4) if isinstance(v, float) and v != float("inf") else v)
                                      for k, v in g.items()}} for g in gaps]
    evidence.append({"kind": "rule", "rule": "gap = per webhook request invoked from the injection to 1 s after "
                     "the heal (or in flight at the injection): completion - max(invoke, injection) when ok, the "
                     "time to the next ok completion otherwise; the longest counts"})
    shown = "never recovered" if worst == float("inf") else f"{worst * 1000:.0f} ms"
    each = ", ".join(f"{g['gap_s'] * 1000:.0f}" for g in measured if g["gap_s"] != float("inf"))
    summary = (f"longest client-seen gap through the proxy {shown} over {len(measured)} fault window(s) "
               f"({each} ms); "
               f"{failed} request(s) not ok")
    return result_cls("http_failover", validity(judgements), tuple(requirement_ids),
                      {**metrics, "gaps_s": [g["gap_s"] for g in measured]}, evidence, summary, judgements)


def check_history_fallback(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow],
                           results: Sequence[h.TradeResult] | None, *, fault: str = "process-kill",
                           symbol: str = "EURUSD", lag_s: float = 5.0, requirement_ids: Sequence[str] = ("TV-4",),
                           targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None):
    """``ops``: the history (its ``history`` operations); ``windows``: the ClickHouse fault windows (``fault``);
    ``results``: RTRS as dumped (None: never dumped); ``lag_s``: seconds an outcome may take to reach ClickHouse."""
    reads = sorted((op for op in ops if op.f == "history"), key=lambda o: o.invoke_mono)
    wins = [w for w in windows if w.fault == fault]
    if not reads:
        return unmeasured(result_cls, "history_fallback", requirement_ids, targets, HISTORY_METRICS,
                          "no chart history was asked for (workload params also=[history])")
    if not wins:
        return unmeasured(result_cls, "history_fallback", requirement_ids, targets, HISTORY_METRICS,
                          f"no {fault} window in the run: ClickHouse was never away")
    unclear = [op for op in reads if op.outcome == h.UNKNOWN]

    def source(op) -> str:
        return str((op.value or {}).get("source") or "clickhouse") if isinstance(op.value, dict) else "clickhouse"

    during, recoveries = [], []
    for w in wins:
        end = w.heal_mono if w.heal_mono is not None else math.inf
        during += [op for op in reads if w.inject_mono <= op.invoke_mono < end and op.complete_mono is not None]
        if w.heal_mono is not None:
            first = next((op for op in reads if op.invoke_mono >= w.heal_mono and op.outcome == h.OK
                          and source(op) == "clickhouse"), None)
            recoveries.append(None if first is None else first.complete_mono - w.heal_mono)
    answer_s = max((op.latency for op in during if op.outcome in (h.OK, h.FAIL)), default=None)
    recovery_s = None if not recoveries or None in recoveries else max(recoveries)
    last = next((op for op in reversed(reads) if op.outcome == h.OK and isinstance(op.value, dict)), None)
    from_copy = [op for op in during if op.outcome == h.OK and source(op) == "duckdb"]
    last_copy = from_copy[-1] if from_copy else None
    missing = _missing_trades(last, results, symbol, lag_s)
    copy_missing = _missing_trades(last_copy, results, symbol, lag_s)
    refused = sum(1 for op in during if op.outcome == h.FAIL)
    metrics = {"history_unclear_answers": len(unclear), "history_answer_s": answer_s,
               "history_recovery_s": recovery_s, "history_missing_trades": missing,
               "history_fallback_missing_trades": copy_missing}
    judgements = judge(metrics, requirement_ids, targets, unmeasured_reason=(
        "no history request ran during the outage, ClickHouse never came back during the run, or there are no "
        "bars / no RTRS dump to compare"))
    evidence = [{"kind": "counts", "requests": len(reads), "during_outage": len(during),
                 "refused_clearly_during_outage": refused, "answered_from_duckdb_during_outage": len(from_copy),
                 "unclear": len(unclear), "last_bars": last.value if last is not None else None,
                 "last_bars_from_duckdb": last_copy.value if last_copy is not None else None},
                *({"kind": "unclear", "key": op.key, "error": op.error} for op in unclear[:10])]
    summary = (f"{len(reads)} chart requests, {len(during)} during the outage ({len(from_copy)} answered with bars "
               f"from the backend's DuckDB copy"
               f"{'' if copy_missing is None else f' missing {copy_missing} trade(s)'}, {refused} 'history is "
               f"unavailable'), {len(unclear)} unclear; slowest answer during it "
               f"{'-' if answer_s is None else f'{answer_s * 1000:.0f} ms'}, bars again "
               f"{'never' if recovery_s is None else f'{recovery_s:.2f} s'} after the heal; "
               f"{'?' if missing is None else missing} trade(s) missing from the last bars")
    return result_cls("history_fallback", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


def check_session_continuity(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow], *,
                             fault: str | None = None, requirement_ids: Sequence[str] = ("TV-1",),
                             targets: targets_mod.Targets | None = None, result_cls=None, unmeasured=None):
    """``ops``: the history (its ``panel`` operations); ``windows``: the backend fault windows (``fault``)."""
    panel = sorted((op for op in ops if op.f == "panel"), key=lambda o: o.invoke_mono)
    opened = next((op for op in panel if op.key == "login" and op.outcome == h.OK), None)
    if opened is None:
        return unmeasured(result_cls, "session_continuity", requirement_ids, targets, SESSION_METRICS,
                          "no panel session was opened (workload params also=[panel]): no session to keep")
    wins = [w for w in windows if fault is None or w.fault == fault]
    if not wins:
        return unmeasured(result_cls, "session_continuity", requirement_ids, targets, SESSION_METRICS,
                          f"no {fault or 'fault'} window in the run: nothing to keep the session across")
    lost = [op for op in panel if op.invoke_mono > opened.invoke_mono and op.outcome == h.FAIL]
    rtos = []
    for w in wins:
        first = next((op for op in panel if op.invoke_mono >= w.inject_mono and op.outcome == h.OK
                      and op.complete_mono is not None), None)
        rtos.append(None if first is None else first.complete_mono - w.inject_mono)
    rto = None if None in rtos else max(rtos)
    metrics = {"state_lost_on_reconnect": len(lost), "rto_s": rto}
    judgements = judge(metrics, requirement_ids, targets,
                       unmeasured_reason="no panel answer succeeded after a fault before the run ended")
    evidence = [{"kind": "counts", "panel_requests": len(panel), "session_lost": len(lost),
                 "rto_s_per_window": [None if r is None else round(r, 4) for r in rtos],
                 "instances": sorted({str((op.value or {}).get("instance")) for op in panel
                                      if op.outcome == h.OK and isinstance(op.value, dict) and
                                      op.value.get("instance")})},
                *({"kind": "session_lost", "key": op.key, "error": op.error} for op in lost[:10])]
    summary = (f"{len(panel)} panel requests on one session: {len(lost)} answered 'session unknown'; usable again "
               f"{'never' if rto is None else f'{rto * 1000:.0f} ms'} after the worst of {len(wins)} fault(s)")
    return result_cls("session_continuity", validity(judgements), tuple(requirement_ids), metrics, evidence,
                      summary, judgements)


def tradingview_address(subnet: str) -> str:
    """The address the drill's webhook clients (TradingView) send from: ``webhook-cut`` cuts it from the proxy."""
    return f"{subnet}.{TRADINGVIEW_HOST}"


def webhook_cut(ctx, t, params: dict):
    """The fault package ``webhook-cut`` (target: the proxy node): TradingView away. nftables cuts the webhook
    clients' address from the proxy (``mode`` reset, the default: connections refused at once; or drop); the
    local panel's user (127.0.0.1) still reaches it."""
    from faults.kernel import Partition

    addr, mode = tradingview_address(ctx.topology.subnet), params.get("mode", "reset")
    fault = Partition([[addr], [t.address]], mode=mode, log=ctx.fault_log, requirements=ctx.requirement_ids)
    fault.name = "webhook-cut"
    fault.describe = lambda: f"TradingView ({addr}) cut from {t.name} ({t.address}:{t.node.port}, {mode})"
    return fault


def check_panel_fallback(ops: Sequence[h.Operation], windows: Sequence[h.FaultWindow], *, fault: str = "webhook-cut",
                         requirement_ids: Sequence[str] = ("TV-3",), targets: targets_mod.Targets | None = None,
                         result_cls=None, unmeasured=None):
    """TV-3: ``panel_available`` is true when the panel placed at least one order while TradingView was cut off
    (``fault`` windows) and every order placed from it then was accepted."""
    wins = [w for w in windows if w.fault == fault]
    if not wins:
        return unmeasured(result_cls, "panel_fallback", requirement_ids, targets, PANEL_METRICS,
                          f"no {fault} window in the run: TradingView was never away")
    orders = [op for op in ops if op.f == "panel_order"]
    posts = [op for op in ops if op.f == OP]

    def inside(op, w):
        return w.inject_mono <= op.invoke_mono < (w.heal_mono if w.heal_mono is not None else math.inf)

    during = [op for op in orders if any(inside(op, w) for w in wins)]
    if not during:
        return unmeasured(result_cls, "panel_fallback", requirement_ids, targets, PANEL_METRICS,
                          "no order was placed from the panel while TradingView was away (workload also=[panel])")
    accepted = [op for op in during if op.outcome == h.OK]
    webhooks_during = [op for op in posts if any(inside(op, w) for w in wins)]
    metrics = {"panel_available": len(accepted) == len(during)}
    judgements = judge(metrics, requirement_ids, targets)
    evidence = [{"kind": "counts", "panel_orders_while_away": len(during), "accepted": len(accepted),
                 "webhook_posts_while_away": len(webhooks_during),
                 "webhook_posts_while_away_ok": sum(op.outcome == h.OK for op in webhooks_during)},
                *({"kind": "refused", "key": op.key, "error": op.error} for op in during if op.outcome != h.OK)]
    summary = (f"{len(accepted)} of {len(during)} panel orders accepted while TradingView was away "
               f"({sum(op.outcome == h.OK for op in webhooks_during)} of {len(webhooks_during)} webhooks got through)")
    return result_cls("panel_fallback", validity(judgements), tuple(requirement_ids), metrics, evidence, summary,
                      judgements)


def _missing_trades(last, results, symbol: str, lag_s: float) -> int | None:
    """Executed results of ``symbol`` older than ``lag_s`` before ``last`` (a ``history`` operation) was asked,
    missing from its bars' volume, in trades (the median fill's lots); None without bars or results."""
    if last is None or results is None or not isinstance(last.value, dict):
        return None
    asked_ms = float(last.value.get("asked_ms") or 0)
    executed: dict[str, float] = {}
    for r in results:
        raw = r.raw or {}
        ts = _float(raw.get("ts_ms"))
        if (str(r.status).lower() == "executed" and raw.get("symbol", symbol) == symbol and ts is not None
                and ts < asked_ms - lag_s * 1000):
            executed[r.signal] = _float(raw.get("volume")) or 0.0
    unit = sorted(executed.values())[len(executed) // 2] if executed else 0.0
    short = sum(executed.values()) - float(last.value.get("volume") or 0.0)
    return max(0, round(short / unit)) if unit > 0 else 0


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def checker_entries(checker_cls, result_cls, unmeasured) -> list:
    """The two checkers as ``scenarios.checkers.Checker`` rows: ``webhook_once`` and ``http_failover`` (params
    ``fault``, ``window_s``)."""

    def once(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_webhook_once(view.operations(), view.trade_results_or_none(), view.backlog(), view.ledger(),
                                  requirement_ids=rids, targets=targets, result_cls=result_cls,
                                  unmeasured=unmeasured)

    def failover(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_http_failover(view.operations(), view.fault_windows(), fault=params.get("fault"),
                                   window_s=float(params.get("window_s", 5.0)), requirement_ids=rids,
                                   targets=targets, result_cls=result_cls, unmeasured=unmeasured)

    def history(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_history_fallback(view.operations(), view.fault_windows(), view.trade_results_or_none(),
                                      fault=str(params.get("fault", "process-kill")),
                                      symbol=str(params.get("symbol", "EURUSD")),
                                      lag_s=float(params.get("lag_s", 5.0)), requirement_ids=rids, targets=targets,
                                      result_cls=result_cls, unmeasured=unmeasured)

    def session(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_session_continuity(view.operations(), view.fault_windows(), fault=params.get("fault"),
                                        requirement_ids=rids, targets=targets, result_cls=result_cls,
                                        unmeasured=unmeasured)

    def panel(view, params: dict, rids: tuple[str, ...], targets: targets_mod.Targets):
        return check_panel_fallback(view.operations(), view.fault_windows(),
                                    fault=str(params.get("fault", "webhook-cut")), requirement_ids=rids,
                                    targets=targets, result_cls=result_cls, unmeasured=unmeasured)

    return [checker_cls("panel_fallback", panel, PANEL_METRICS,
                        "orders placed from the local panel while TradingView is cut off are accepted (issue 15)",
                        ("fault",)),
            checker_cls("session_continuity", session, SESSION_METRICS,
                        "the local panel's session across a backend fault: lost sessions, time to usable again "
                        "(issue 15)", ("fault",)),
            checker_cls("history_fallback", history, HISTORY_METRICS,
                        "chart history while ClickHouse is away: bars or a clear 'unavailable', how fast, when bars "
                        "return, trades missing from them (issue 15)", ("fault", "symbol", "lag_s")),
            checker_cls("webhook_once", once, ONCE_METRICS,
                        "each accepted webhook alert id: one signal on RTSS and at most one broker order (issue 15)"),
            checker_cls("http_failover", failover, FAILOVER_METRICS,
                        "the longest wait a client of the proxy saw while a backend was killed or frozen, and the "
                        "requests that failed (issue 15)", ("fault", "window_s"))]
