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
