"""Schedules the reference engine fails today (``scenarios.stateful.REFERENCE_FAILS``), each shown failing here so
that its entry cannot outlive its bug: when a fix lands, this test fails and says to take the move back into the
machine's draws. Runs with the variant sweep (``TRADEDRILL_VARIANT_SWEEP=1``, ``nox -s variants``): each schedule
on the reference engine up to 3 times (a race), on 127.0.96.x."""
from __future__ import annotations

import os

import pytest

from scenarios.stateful import ALL_CHECKERS, REFERENCE_FAILS, StatefulSession, try_schedule
from tests.stateful.conftest import variant_options

pytestmark = [pytest.mark.drill, pytest.mark.timeout(900),
              pytest.mark.skipif(not os.environ.get("TRADEDRILL_VARIANT_SWEEP"),
                                 reason="slow; TRADEDRILL_VARIANT_SWEEP=1 (nox -s variants) runs it")]

SUBNET = os.environ.get("TRADEDRILL_VARIANT_SUBNET", "127.0.96")
ATTEMPTS = 3


def test_a_partition_healed_during_the_failover_reuses_a_fencing_token(tmp_path):
    assert "redis-partition" in REFERENCE_FAILS
    steps = [{"op": "inject", "fault": "redis-partition", "signal": "s1"}, {"op": "heal"}]
    seen = []
    with StatefulSession(variant_options(None, tmp_path, subnet=SUBNET, judged=ALL_CHECKERS)) as session:
        for seed in range(101, 101 + ATTEMPTS):
            verdict = try_schedule(session, seed, steps)
            seen.append(sorted(s["checker"] for s in verdict.symptoms))
            if {"stale_writes", "one_active"} & set(seen[-1]):
                return
    pytest.fail(f"the reference engine passed the partition schedule {ATTEMPTS} times ({seen}): if the token reuse "
                f"is fixed, take 'redis-partition' out of scenarios.stateful.REFERENCE_FAILS")
