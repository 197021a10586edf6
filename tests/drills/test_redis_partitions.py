"""The Redis partition drills of issue 12, run for real (nftables on the drill's loopback addresses, real Sentinels):

- ``redis-primary-isolated``: the primary cut off with the active engine and the minority writers. The naive
  minority writer loses what the isolated primary acknowledged (asynchronous replication: the documents' RPO 0
  cannot hold), the WAIT writers lose nothing, the engine stops trading there (it cannot get a majority of the
  Sentinels to name its primary) and nothing is duplicated or lost; the old primary rejoins as a replica.
- ``redis-planned-failover``: the reference runbook (writes paused, the old primary demoted at once) loses nothing,
  and every engine and writer is on the new primary within 1 s.
- ``redis-sentinel-partition``: no Sentinel has a quorum, so no failover happens even with the primary down.
The others (``redis-majority-minority``, ``redis-planned-failover-bare``, ``redis-all-down``) run with
``TRADEDRILL_ALL_DRILLS=1``. The scenarios' own timings are kept (a partition must outlast down-after).
"""
from __future__ import annotations

import pytest

from tests.drills.conftest import ALL_DRILLS

pytestmark = pytest.mark.drill

AS_REGISTERED = {"duration_s": None, "settle_s": None, "rate_per_s": None, "fault_at_s": None}
TRADE_CHECKERS = ("duplicates", "lost_signals", "state", "one_active", "results_delivered", "stale_writes")


def writers(d) -> dict[str, dict]:
    """writer process -> its evidence row of the redis_set checker (acknowledged, lost, side, wait)."""
    rows = [e for e in d.result("redis_set").evidence if e.get("kind") == "writer"]
    return {row["writer"]: row for row in rows}


def assert_trades_exactly_once(d) -> None:
    for name in TRADE_CHECKERS:
        r = d.result(name)
        assert r.valid is True, f"{d.scenario}: {name}: {r.summary} ({d.run.path})"


def test_an_isolated_primary_loses_what_it_acknowledged_alone_and_no_trade(drill, record_property):
    d = drill("redis-primary-isolated", **AS_REGISTERED)
    assert_trades_exactly_once(d)
    rows = writers(d)
    naive, wait1, wait_all = rows["writer-minority"], rows["writer-minority-wait"], rows["writer-minority-wait-all"]
    for key in ("acknowledged", "lost"):
        record_property(f"minority.{key}", naive[key])
    assert naive["side"] == "minority" and naive["lost"] > 0, naive          # the contradiction, measured
    assert wait1["lost"] == 0 and wait_all["lost"] == 0, (wait1, wait_all)  # no replica on its side confirmed them
    assert rows["writer-majority"]["lost"] == 0, rows["writer-majority"]
    failovers = d.result("failovers")
    assert failovers.valid is True and failovers.metrics["failovers"] == 1, failovers.summary
    assert failovers.metrics["roles_diverged"] == 0, failovers.summary       # the old primary rejoined as a replica
    follow = d.result("primary_follow")
    record_property("primary_follow_s", follow.metrics.get("primary_follow_s"))
    assert follow.metrics["primary_follow_s"] <= 1.0, follow.summary
    # the engine cut off with the old primary could not confirm it with a majority of the Sentinels
    assert d.engine_events("lease_primary_unconfirmed"), "the isolated engine never noticed it was cut off"


def test_the_planned_failover_runbook_loses_nothing(drill, record_property):
    d = drill("redis-planned-failover", **AS_REGISTERED)
    assert_trades_exactly_once(d)
    assert all(row["lost"] == 0 for row in writers(d).values()), writers(d)
    follow = d.result("primary_follow")
    record_property("primary_follow_s", follow.metrics.get("primary_follow_s"))
    record_property("client_follow_s", follow.metrics.get("client_follow_s"))
    assert follow.valid is True, follow.summary       # engines and writers on the new primary within 1 s


def test_no_failover_without_a_sentinel_quorum(drill):
    d = drill("redis-sentinel-partition", **AS_REGISTERED)
    assert_trades_exactly_once(d)
    failovers = d.result("failovers")
    assert failovers.metrics["failovers"] == 0 and failovers.valid is True, failovers.summary
    assert d.result("redis_set").metrics["acknowledged_writes_lost"] == 0      # AOF, appendfsync always


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every Redis scenario")
@pytest.mark.parametrize("scenario", ["redis-majority-minority", "redis-planned-failover-bare", "redis-all-down"])
def test_the_other_redis_scenarios_keep_trades_exactly_once(drill, scenario):
    d = drill(scenario, **AS_REGISTERED)
    for name in ("duplicates", "one_active", "stale_writes"):
        assert d.result(name).valid is True, f"{scenario}: {name}: {d.result(name).summary}"
    if scenario == "redis-all-down":
        assert_trades_exactly_once(d)
