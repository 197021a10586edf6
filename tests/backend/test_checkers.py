"""The webhook checkers on hand-made histories (pure: no stack): exactly-once per alert id, the client-seen
failover gap, and unmeasured (never pass) when there is nothing to judge."""
from __future__ import annotations

from scenarios import checkers, history as h
from scenarios.webhook import check_http_failover, check_webhook_once, failover_gaps
from reference.engine.contract import order_comment


def op(i, key, outcome, invoke, complete, f="webhook"):
    return h.Operation(i, f"client-{i}", f, key, outcome, invoke, complete)


def deal(n, signal_id, attempt=1, order=None):
    return h.Deal(deal=n, order=order or n, broker="mt5-primary", comment=order_comment(signal_id, attempt),
                  symbol="EURUSD", volume=0.01, time=0)


def once(ops, results, backlog=(), ledger=()):
    return check_webhook_once(ops, results, list(backlog), list(ledger), result_cls=checkers.CheckResult,
                              unmeasured=checkers._unmeasured)


def test_one_signal_and_one_order_per_alert_passes():
    ops = [op(1, "a", h.OK, 0, 0.01), op(2, "a", h.OK, 0, 0.02), op(3, "b", h.OK, 0, 0.01)]
    results = [h.TradeResult("tv-a", "executed"), h.TradeResult("tv-b", "executed")]
    r = once(ops, results, ledger=[deal(1, "tv-a"), deal(2, "tv-b")])
    assert r.valid is True
    assert r.metrics["webhook_extra_signals"] == 0 and r.metrics["alerts_accepted"] == 2


def test_extra_entries_duplicate_orders_and_lost_alerts_fail():
    ops = [op(1, "a", h.OK, 0, 0.01), op(2, "b", h.OK, 0, 0.01), op(3, "c", h.OK, 0, 0.01)]
    results = [h.TradeResult("tv-a", "executed"), h.TradeResult("tv-a", "duplicate"),
               h.TradeResult("tv-b", "executed")]
    r = once(ops, results, ledger=[deal(1, "tv-b"), deal(2, "tv-b", attempt=2)])
    assert r.valid is False
    assert r.metrics["webhook_extra_signals"] == 1
    assert r.metrics["webhook_duplicate_orders"] == 1
    assert r.metrics["webhook_lost_alerts"] == 1          # c: accepted, never on RTSS
    queued = once(ops[2:], [], backlog=["tv-c"])
    assert queued.metrics["webhook_lost_alerts"] == 0     # still queued at the end: backlog, not lost


def test_nothing_accepted_or_nothing_dumped_is_unmeasured():
    assert once([op(1, "a", h.FAIL, 0, 0.01)], []).valid == checkers.UNKNOWN
    assert once([op(1, "a", h.OK, 0, 0.01)], None).valid == checkers.UNKNOWN


def window(inject, heal, fault="process-kill"):
    return h.FaultWindow(fault, f"{fault}-1", inject, heal)


def test_gap_is_the_longest_client_wait_caused_by_the_fault():
    ops = [op(1, "a", h.OK, 9.9, 10.35),      # in flight at the injection: waited 0.35 s after it
           op(2, "b", h.OK, 10.5, 10.51),
           op(3, "c", h.UNKNOWN, 11.0, 13.0),  # failed: waits until the next ok completion (13.2)
           op(4, "d", h.OK, 13.1, 13.2),
           op(5, "e", h.OK, 30.0, 30.01)]      # long after the window
    gaps = failover_gaps(ops, [window(10.0, 12.0)])
    assert gaps[0]["requests"] == 3 and gaps[0]["failed"] == 1   # d is invoked after heal + 1 s
    assert abs(gaps[0]["gap_s"] - 2.2) < 1e-9
    r = check_http_failover(ops[:2], [window(10.0, 12.0)], result_cls=checkers.CheckResult,
                            unmeasured=checkers._unmeasured)
    assert r.valid is True and abs(r.metrics["backend_failover_s"] - 0.35) < 1e-9


def test_no_window_or_no_request_in_it_is_unmeasured():
    kw = dict(result_cls=checkers.CheckResult, unmeasured=checkers._unmeasured)
    assert check_http_failover([op(1, "a", h.OK, 0, 0.1)], [], **kw).valid == checkers.UNKNOWN
    assert check_http_failover([op(1, "a", h.OK, 0, 0.1)], [window(50, 51)], **kw).valid == checkers.UNKNOWN
    never = check_http_failover([op(1, "a", h.UNKNOWN, 10.5, 13)], [window(10, 12)], **kw)
    assert never.valid is not True and never.metrics["webhook_failed_requests"] == 1


def test_history_fallback_judges_clear_refusals_recovery_and_missing_trades():
    from scenarios.webhook import check_history_fallback

    def read(i, outcome, invoke, complete, value=None):
        return h.Operation(i, "chart", "history", f"h-{i}", outcome, invoke, complete, value=value)

    reads = [read(1, h.OK, 1.0, 1.01, {"volume": 0.01, "asked_ms": 0}),
             read(2, h.FAIL, 10.5, 10.51),                      # "history is unavailable": clear
             read(3, h.OK, 20.2, 20.25, {"volume": 0.02, "asked_ms": 100_000})]
    results = [h.TradeResult("tv-a", "executed", raw={"ts_ms": "1000", "volume": "0.01", "symbol": "EURUSD"}),
               h.TradeResult("tv-b", "executed", raw={"ts_ms": "2000", "volume": "0.01", "symbol": "EURUSD"}),
               h.TradeResult("tv-c", "executed", raw={"ts_ms": "3000", "volume": "0.01", "symbol": "EURUSD"})]
    kw = dict(result_cls=checkers.CheckResult, unmeasured=checkers._unmeasured)
    r = check_history_fallback(reads, [window(10.0, 20.0)], results, **kw)
    assert r.metrics["history_unclear_answers"] == 0 and abs(r.metrics["history_recovery_s"] - 0.25) < 1e-9
    assert r.metrics["history_missing_trades"] == 1 and r.valid is False     # 3 executed, 0.02 lots in the bars
    hung = check_history_fallback([*reads[:2], read(4, h.UNKNOWN, 11.0, 13.0)], [window(10.0, 20.0)], results, **kw)
    assert hung.metrics["history_unclear_answers"] == 1
    assert check_history_fallback(reads, [], results, **kw).valid == checkers.UNKNOWN
    assert check_history_fallback([], [window(10.0, 20.0)], results, **kw).valid == checkers.UNKNOWN


def test_session_continuity_counts_lost_sessions_and_time_to_usable():
    from scenarios.webhook import check_session_continuity

    def panel(i, key, outcome, invoke, complete):
        return h.Operation(i, "panel", "panel", key, outcome, invoke, complete, value={"instance": "backend-b"})

    kw = dict(result_cls=checkers.CheckResult, unmeasured=checkers._unmeasured)
    ops = [panel(1, "login", h.OK, 0.0, 0.1), panel(2, "state-2", h.OK, 5.0, 5.01),
           panel(3, "state-3", h.UNKNOWN, 10.1, 10.5), panel(4, "state-4", h.OK, 10.6, 10.65)]
    r = check_session_continuity(ops, [window(10.0, 12.0)], **kw)
    assert r.valid is True and abs(r.metrics["rto_s"] - 0.65) < 1e-9 and r.metrics["state_lost_on_reconnect"] == 0
    lost = check_session_continuity([*ops, panel(5, "state-5", h.FAIL, 11.0, 11.01)], [window(10.0, 12.0)], **kw)
    assert lost.valid is False and lost.metrics["state_lost_on_reconnect"] == 1
    assert check_session_continuity(ops[1:], [window(10.0, 12.0)], **kw).valid == checkers.UNKNOWN   # no login


def test_panel_fallback_needs_every_panel_order_while_away_accepted():
    from scenarios.webhook import check_panel_fallback

    kw = dict(result_cls=checkers.CheckResult, unmeasured=checkers._unmeasured)
    cut = [h.FaultWindow("webhook-cut", "webhook-cut-1", 10.0, 20.0)]
    orders = [op(1, "p-1", h.OK, 11.0, 11.01, f="panel_order"), op(2, "p-2", h.OK, 15.0, 15.02, f="panel_order"),
              op(3, "a-1", h.FAIL, 12.0, 15.0)]
    assert check_panel_fallback(orders, cut, **kw).metrics["panel_available"] is True
    refused = [*orders, op(4, "p-3", h.UNKNOWN, 16.0, 19.0, f="panel_order")]
    assert check_panel_fallback(refused, cut, **kw).valid is False
    assert check_panel_fallback(orders[2:], cut, **kw).valid == checkers.UNKNOWN   # no panel order while away
    assert check_panel_fallback(orders, [], **kw).valid == checkers.UNKNOWN


def test_history_fallback_judges_the_bars_answered_from_the_duckdb_copy():
    """Bars from a backend's DuckDB copy during the outage are answers (not refusals), judged for missing trades;
    recovery is the first answer from ClickHouse after the heal, not a later copy answer."""
    from scenarios.webhook import check_history_fallback

    def read(i, invoke, complete, volume, asked_ms, source):
        return h.Operation(i, "chart", "history", f"h-{i}", h.OK, invoke, complete,
                           value={"volume": volume, "asked_ms": asked_ms, "source": source})

    results = [h.TradeResult(f"tv-{k}", "executed", raw={"ts_ms": str(1000 * k), "volume": "0.01",
                                                          "symbol": "EURUSD"}) for k in (1, 2, 3)]
    reads = [read(1, 1.0, 1.01, 0.01, 10_000, "clickhouse"),
             read(2, 12.0, 12.01, 0.03, 100_000, "duckdb"),     # every trade: nothing missing
             read(3, 20.1, 20.11, 0.03, 100_000, "duckdb"),     # after the heal, still the copy
             read(4, 20.5, 20.52, 0.03, 100_000, "clickhouse")]
    kw = dict(result_cls=checkers.CheckResult, unmeasured=checkers._unmeasured)
    r = check_history_fallback(reads, [window(10.0, 20.0)], results, **kw)
    assert r.metrics["history_fallback_missing_trades"] == 0 and r.valid is True
    assert abs(r.metrics["history_recovery_s"] - 0.52) < 1e-9
    short = check_history_fallback([*reads[:1], read(2, 12.0, 12.01, 0.01, 100_000, "duckdb"), reads[3]],
                                   [window(10.0, 20.0)], results, **kw)
    assert short.metrics["history_fallback_missing_trades"] == 2 and short.valid is False
    refused = check_history_fallback([reads[0], h.Operation(2, "chart", "history", "h-2", h.FAIL, 12.0, 12.01),
                                      reads[3]], [window(10.0, 20.0)], results, **kw)
    assert refused.metrics["history_fallback_missing_trades"] is None
