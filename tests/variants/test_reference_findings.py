"""Schedules the reference engine once failed (``scenarios.stateful.REFERENCE_FAILS`` lists those it fails today,
kept out of the machine's draws), replayed on the reference engine so that a fix cannot quietly come undone. Runs
with the variant sweep (``TRADEDRILL_VARIANT_SWEEP=1``, ``nox -s variants``): each schedule up to 3 times (it was a
race), on 127.0.96.x (``TRADEDRILL_VARIANT_SUBNET``)."""
from __future__ import annotations

import os

import pytest

from scenarios.stateful import ALL_CHECKERS, DRAWN_MOVES, REFERENCE_FAILS, StatefulSession, try_schedule
from tests.stateful.conftest import variant_options

pytestmark = [pytest.mark.drill, pytest.mark.timeout(900),
              pytest.mark.skipif(not os.environ.get("TRADEDRILL_VARIANT_SWEEP"),
                                 reason="slow; TRADEDRILL_VARIANT_SWEEP=1 (nox -s variants) runs it")]

SUBNET = os.environ.get("TRADEDRILL_VARIANT_SUBNET", "127.0.96")
ATTEMPTS = 3


def test_a_partition_healed_during_the_failover_no_longer_reuses_a_fencing_token(tmp_path):
    """The finding of 2026-12-01 (stale_writes 3 of 3, one_active 1 of 3 before the fix): [inject redis-partition
    with a signal, heal]. The reference engine must pass it every time, and the machine draws the move again."""
    assert "redis-partition" not in REFERENCE_FAILS and "redis-partition" in DRAWN_MOVES
    steps = [{"op": "inject", "fault": "redis-partition", "signal": "s1"}, {"op": "heal"}]
    seen = []
    with StatefulSession(variant_options(None, tmp_path, subnet=SUBNET, judged=ALL_CHECKERS)) as session:
        for seed in range(101, 101 + ATTEMPTS):
            verdict = try_schedule(session, seed, steps)
            seen.append(verdict.describe()[:600] if verdict.failed else "")
    assert not any(seen), f"the reference engine failed the healed-partition schedule: {seen}"


def test_a_partition_healed_during_the_failover_loses_no_acknowledged_signal(tmp_path):
    """The finding of the sweep of 2026-12-01 17:00 (the reference control of requote-as-filled, 3 of 3: 3-4
    acknowledged background signals lost, no deal and no result): [market s1, inject redis-partition with s2, heal,
    resubmit s1 twice]. Attributed to Redis, not the engine: after the heal the sender wrote to the old primary,
    which the settled Sentinels still named while their leader was failing it over, and a replica not yet re-pointed
    confirmed with WAIT 1; the promoted replica then full-resynced that replica. The sender now counts a
    confirmation only when the Sentinels, asked after the WAIT, neither name another primary nor are replacing it
    (reference.engine.submit, rule 4)."""
    steps = [{"op": "submit", "kind": "market", "signal": "s1", "side": "buy", "symbol": "EURUSD"},
             {"op": "inject", "fault": "redis-partition", "signal": "s2"}, {"op": "heal"},
             {"op": "resubmit", "signal": "s1"}, {"op": "resubmit", "signal": "s1"}]
    seen = []
    with StatefulSession(variant_options(None, tmp_path, subnet=SUBNET, judged=ALL_CHECKERS)) as session:
        for seed in range(268435455, 268435455 + ATTEMPTS):
            verdict = try_schedule(session, seed, steps)
            seen.append(verdict.describe()[:600] if verdict.failed else "")
    assert not any(seen), f"the reference engine failed the healed-partition schedule with load: {seen}"
