"""Broker answers (BRK-4, ORD-1, ORD-2) and broker loss (BRK-2) against the real simulators."""
from __future__ import annotations

import pytest

from tradedrill.waiting import wait_until

from .conftest import LOGIN

pytestmark = pytest.mark.services


def _alerts(harness, kind: str) -> list[dict]:
    return [f for _i, f in harness.redis().xrange(harness.alerts) if f.get("kind") == kind]


def test_market_closed_is_queued_then_executed_when_the_session_opens(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    harness.admin.set_behaviour(sessions={"EURUSD": []})
    sid, _ = harness.submit()
    harness.wait_event("A", "queued_market_closed", 15, signal_id=sid)
    other, _ = harness.submit(symbol="GBPUSD")          # a queued signal does not hold back the others
    assert harness.result_for(other)["status"] == "executed"
    harness.admin.set_behaviour(sessions={})
    r = harness.result_for(sid, timeout=20)
    assert r["status"] == "executed", r
    harness.check_none_lost([sid, other])


def test_no_money_alerts_and_suspends_the_account(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    sid, _ = harness.submit(volume="100")
    r = harness.result_for(sid)
    assert r["status"] == "rejected" and r["code"] == "NO_MONEY", r
    wait_until(lambda: _alerts(harness, "no_money"), 10, "a no_money alert on ALERTS")
    assert str(LOGIN) in harness.redis().smembers(f"RIS:{harness.group}:suspended_accounts")
    nxt, _ = harness.submit()
    r2 = harness.result_for(nxt)
    assert r2["status"] == "rejected" and r2["code"] == "ACCOUNT_SUSPENDED", r2
    harness.redis().srem(f"RIS:{harness.group}:suspended_accounts", str(LOGIN))   # tradedrill engine resume-account
    harness.wait_event("A", "account_resumed", 10, account=str(LOGIN))
    third, _ = harness.submit()
    r3 = harness.result_for(third)
    assert r3["status"] == "executed", r3
    harness.check_none_lost([sid, nxt, third])


def test_requote_is_retried_with_a_fresh_price(harness):
    harness.engine("A", requote_retries=3)
    harness.wait_event("A", "takeover_ready", 15)
    harness.admin.set_behaviour(requote_rate=1.0)
    sid, _ = harness.submit()
    harness.wait_event("A", "order_send_complete", 15, signal_id=sid, name="REQUOTE")
    harness.admin.set_behaviour(requote_rate=0.0)
    r = harness.result_for(sid, timeout=20)
    assert r["status"] == "executed", r
    sends = [e for e in harness.events("A") if e["event"] == "order_send_invoke" and e["signal_id"] == sid]
    assert len(sends) >= 2
    deal = next(d for d in harness.ledger() if d["comment"] == r["comment"])
    assert abs(float(r["price"]) - deal["price"]) < 1e-9     # executed at the broker's new price
    harness.check_none_lost([sid])


def test_primary_broker_loss_switches_to_backup_after_five_attempts(harness, brokers):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    first, _ = harness.submit()
    assert harness.result_for(first)["broker"] == "primary"
    primary = brokers[0]
    try:
        primary.kill()
        sw = harness.wait_event("A", "broker_switch", 30)
        fails = [e for e in harness.events("A") if e["event"] == "broker_connect_failed" and e["broker"] == "primary"]
        assert len(fails) == 5, fails
        assert sw["new"] == "backup"
        ids = [harness.submit()[0] for _ in range(3)]
        results = [harness.result_for(s) for s in ids]
        assert [r["broker"] for r in results] == ["backup"] * 3
        wait_until(lambda: _alerts(harness, "broker_switch"), 10, "a broker_switch alert")
    finally:
        if not primary.is_alive():
            primary.start().wait_ready()
    results = harness.check_none_lost([first] + ids)     # both ledgers, primary back up
    assert all(r["status"] == "executed" for r in results)


def test_all_brokers_down_suspends_and_alerts_then_resumes(harness, brokers):
    harness.engine("A", broker_switch_after=2, broker_suspend_after=4)
    harness.wait_event("A", "takeover_ready", 15)
    try:
        for b in brokers:
            b.kill()
        harness.wait_event("A", "alert", 30, kind="broker_suspended")
        sid, _ = harness.submit()          # arrives while suspended: not read, not lost
        for b in brokers:
            b.start().wait_ready()
        r = harness.result_for(sid, timeout=30)
        assert r["status"] == "executed", r
        harness.check_none_lost([sid])
    finally:
        for b in brokers:
            if not b.is_alive():
                b.start().wait_ready()
