"""ENG-4: Redis loses the trade state (FLUSHALL on the primary: every key, the signal stream and its group, the
lease) - the engine rebuilds RTS from its local DuckDB journal (signal states) and the broker (positions), emits
``rts_rebuilt`` and an alert, and sends no order again. Both while running (the lost lease makes it take over
again) and on a start after the loss.

Own Redis/Sentinel ports and broker addresses on 127.0.5.x, so this module never collides with the others.
"""
from __future__ import annotations

import time

import pytest

from tests.engine.conftest import broker_pair, local_stack, run_brokers
from tests.engine.test_failover import record

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory, **{"redis.port": 16392, "sentinel.port": 26392}) as st:
        yield st


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    yield from run_brokers(broker_pair(tmp_path_factory, ("127.0.5.26", 18832), ("127.0.5.27", 18832)))


def rts_of(harness, signal_id: str) -> dict:
    return harness.redis().hgetall(f"RTS:{harness.group}:signal:{signal_id}")


def sends(harness, instance: str = "A") -> int:
    return sum(1 for e in harness.events(instance) if e["event"] == "order_send_invoke")


def all_deals(harness) -> list[dict]:
    return harness.ledger(harness.admin) + harness.ledger(harness.backup_admin)


def check_rebuilt(harness, results: dict[str, dict]) -> None:
    for sid, res in results.items():
        state = rts_of(harness, sid)
        assert state.get("restored_from") == "journal", (sid, state)
        assert state["status"] == res["status"] and state["order"] == res["order"], (sid, state, res)
        assert state["code"] == res["code"] and state["entry_id"] == res["entry_id"], (sid, state, res)


def test_redis_flushall_rts_rebuilt_from_journal_without_resend(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    executed = [harness.submit()[0] for _ in range(5)]
    rejected, _ = harness.submit(symbol="NOSUCH")
    results = {s: harness.result_for(s) for s in executed + [rejected]}
    assert all(results[s]["status"] == "executed" and results[s]["order"] for s in executed), results
    assert results[rejected]["status"] == "rejected", results[rejected]
    r = harness.redis()
    deals, n_sends = all_deals(harness), sends(harness)

    # 1. Redis loses everything while the engine runs
    since = len(harness.events("A"))
    flushed = time.time()
    r.flushall()
    ev = harness.wait_event("A", "rts_rebuilt", 20, since=since)
    assert (ev["signals"], ev["executed"], ev["rejected"]) == (6, 5, 1), ev
    check_rebuilt(harness, results)
    positions = harness.redis().hgetall(f"RTS:{harness.group}:positions")   # from the broker, the truth
    assert ev["positions"] == len(positions) >= 1, (ev, positions)
    assert any(f.get("kind") == "rts_rebuilt" for _i, f in harness.redis().xrange(harness.alerts))
    assert all_deals(harness) == deals and sends(harness) == n_sends, "an order was re-sent after the loss"
    rebuilt_after_s = round(ev["ts"] - flushed, 3)

    # the engine trades on the recreated stream and group; a resubmitted old id is a duplicate, not a new order
    fresh, _ = harness.submit()
    assert harness.result_for(fresh)["status"] == "executed"
    again, _ = harness.submit(signal_id=executed[0])
    assert harness.result_for(again)["status"] == "duplicate"
    assert sends(harness) == n_sends + 1
    results[fresh] = harness.result_for(fresh)

    # 2. Redis loses everything while the engine is stopped: rebuilt on start
    harness.engines["A"].stop()
    deals, n_sends = all_deals(harness), sends(harness)
    harness.redis().flushall()
    since = len(harness.events("A"))
    started = time.time()
    harness.engines["A"].start().wait_ready()
    ev2 = harness.wait_event("A", "rts_rebuilt", 20, since=since)
    assert (ev2["signals"], ev2["executed"], ev2["rejected"]) == (7, 6, 1), ev2
    check_rebuilt(harness, results)
    harness.wait_event("A", "takeover_ready", 10, since=since)
    assert all_deals(harness) == deals and sends(harness) == n_sends, "an order was re-sent after the restart"

    # 3. nothing lost: a takeover with RTS intact rebuilds nothing
    since = len(harness.events("A"))
    harness.engines["A"].stop()
    harness.engines["A"].start().wait_ready()
    harness.wait_event("A", "takeover_ready", 20, since=since)
    assert not [e for e in harness.events("A")[since:] if e["event"] == "rts_rebuilt"]
    harness.check_no_duplicates()
    record("rts_rebuilt_after_flushall", flush_to_rts_rebuilt_s=rebuilt_after_s,
           start_to_rts_rebuilt_s=round(ev2["ts"] - started, 3), signals=ev["signals"], positions=ev["positions"])
