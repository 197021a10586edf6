"""ENG-3 end to end: a real engine process under ``reference.supervisor.Supervisor`` with the ``engine`` policy.

- A real deadlock (test-only entry ``tests.engine.deadlock_engine``: the main loop blocks forever on a lock right
  after an order was sent, before its outcome is recorded): the watchdog makes the process exit with status 70,
  the supervisor restarts it (new PID; exit + restart in its event log), and the signal is executed exactly once
  at the broker (the restarted engine reconciles the in-flight intent instead of resending it).
- A plain SIGKILL under the supervisor: restarted, and a steady signal flow loses nothing and duplicates nothing.

Own Redis/Sentinel ports and broker addresses on 127.0.5.x, so this module never collides with the other engine
modules' stacks.
"""
from __future__ import annotations

import json
import time

import pytest

from reference.engine.signals import comment_prefix_for
from reference.engine.watchdog import EXIT_DEADLOCK
from reference.supervisor import POLICIES, Supervisor
from tests.engine.conftest import broker_pair, local_stack, run_brokers
from tests.engine.test_failover import Flow, record
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services

WATCHDOG_S = 3.0   # shortened from ENG-3's 30 s default for the test


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory, **{"redis.port": 16391, "sentinel.port": 26391}) as st:
        yield st


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    yield from run_brokers(broker_pair(tmp_path_factory, ("127.0.5.24", 18831), ("127.0.5.25", 18831)))


@pytest.fixture
def supervisor(tmp_path):
    sup = Supervisor(events_path=tmp_path / "supervisor.jsonl")
    try:
        yield sup
    finally:
        sup.stop()   # stops watching first, then every program by its own handle


def sup_event(sup: Supervisor, event: str, timeout: float, after: int = 0):
    return wait_until(lambda: next((e for e in sup.events[after:] if e.event == event), None), timeout,
                      f"supervisor event {event}")


def opening_deals(harness, signal_id: str) -> list[dict]:
    prefix = comment_prefix_for(signal_id).rstrip("-")
    return [d for admin in (harness.admin, harness.backup_admin) for d in harness.ledger(admin)
            if d.get("entry", 0) == 0 and str(d["comment"]).rsplit("-", 1)[0] == prefix]


def test_deadlock_watchdog_exit_supervisor_restart_exactly_once(harness, supervisor, tmp_path):
    assert POLICIES["engine"].delay_s == 1.0 and POLICIES["engine"].restart == "always"
    node = harness.engine_node("A", module="tests.engine.deadlock_engine", watchdog_timeout_s=WATCHDOG_S)
    supervisor.add(node, "engine")
    node.wait_ready()
    harness.wait_event("A", "takeover_ready", 15)
    first_pid = node.pid
    warmup, _ = harness.submit()
    assert harness.result_for(warmup)["status"] == "executed"

    sid, _ = harness.submit(signal_id=f"{harness.group}-deadlock")
    stuck = harness.wait_event("A", "test_deadlock", 15, signal_id=sid)
    assert node.is_alive(), "the deadlocked engine must still be alive (no progress, not dead)"
    fired = harness.wait_event("A", "watchdog_exit", WATCHDOG_S + 10)
    exited = sup_event(supervisor, "exit", 15)
    restarted = sup_event(supervisor, "restart", 10)
    assert exited.returncode == EXIT_DEADLOCK and exited.pid == first_pid, exited
    assert restarted.pid is not None and restarted.pid != first_pid, restarted
    assert fired["stalled_s"] >= WATCHDOG_S and fired["last_step"] != "", fired

    result = harness.result_for(sid, 30)
    assert result["status"] == "executed" and result["code"] == "RECONCILED", result
    assert result["order"] == str(stuck["order"]), (result, stuck)
    sends = [e for e in harness.events("A") if e["event"] == "order_send_invoke" and e["signal_id"] == sid]
    assert len(sends) == 1, sends
    deals = opening_deals(harness, sid)
    assert len(deals) == 1, deals

    after, _ = harness.submit()
    harness.check_none_lost([warmup, sid, after])
    assert harness.pending() == 0
    logged = [json.loads(line)["event"] for line in (tmp_path / "supervisor.jsonl").read_text().splitlines()]
    assert logged[:3] == ["start", "exit", "restart"], logged
    assert supervisor.gave_up == set()
    outcome = next(e for e in harness.events("A") if e["event"] == "outcome" and e["signal_id"] == sid)
    record("supervised_deadlock", watchdog_timeout_s=WATCHDOG_S, stalled_s=fired["stalled_s"],
           deadlock_to_exit_s=round(exited.wall - stuck["ts"], 3),
           exit_to_restart_s=round(restarted.wall - exited.wall, 3),
           restart_to_outcome_s=round(outcome["ts"] - restarted.wall, 3),
           deadlock_to_outcome_s=round(outcome["ts"] - stuck["ts"], 3))


def test_sigkill_under_supervisor_restarts_without_loss_or_duplicate(harness, supervisor):
    node = harness.engine_node("A")
    supervisor.add(node, "engine")
    node.wait_ready()
    harness.wait_event("A", "takeover_ready", 15)
    first_pid = node.pid
    with Flow(harness) as flow:
        wait_until(lambda: len(flow.ids) >= 20, 10, "20 signals submitted")
        harness.result_for(flow.ids[5])
        killed_at = time.time()
        node.kill()
        exited = sup_event(supervisor, "exit", 10)
        restarted = sup_event(supervisor, "restart", 10)
        wait_until(lambda: sum(1 for e in harness.events("A") if e["event"] == "takeover_ready") >= 2, 20,
                   "the restarted engine to take over")
        wait_until(lambda: len(flow.ids) >= 80, 20, "flow continues")
    assert exited.returncode == -9 and exited.pid == first_pid, exited
    assert restarted.pid != first_pid
    results = harness.check_none_lost(flow.ids)
    assert all(r["status"] == "executed" for r in results)
    assert harness.pending() == 0
    ready = [e for e in harness.events("A") if e["event"] == "takeover_ready"][-1]
    record("supervised_sigkill", kill_to_restart_s=round(restarted.wall - killed_at, 3),
           kill_to_takeover_ready_s=round(ready["ts"] - killed_at, 3), signals=len(flow.ids))
