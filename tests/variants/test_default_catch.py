"""In `nox -s tests` (not only in the 41-minute sweep of `nox -s variants`): one broken engine against the stateful
test, end to end as issue 16's "done means" says - the search fails on it, the failure is shrunk, `tradedrill
replay` (``replay_attempts``) reproduces it on a fresh stack, and the reference engine passes the same schedule.

The variant is publish-before-durable (the engine publishes a result before its journal write is durable, then
is killed: an acknowledged signal whose result is lost), the cheapest catch of the sweep (its background load
alone shows it: ~40 s in the sweep of 2026-12-02). On 127.0.96, the variants' block (same scope as the sweep)."""
from __future__ import annotations

import os

import pytest

from scenarios.stateful import ALL_CHECKERS, StatefulSession, replay_attempts, run_search
from tests.stateful.conftest import variant_options

pytestmark = [pytest.mark.drill, pytest.mark.timeout(600)]
SUBNET = os.environ.get("TRADEDRILL_VARIANT_SUBNET", "127.0.96")
VARIANT = "publish-before-durable"


def test_a_broken_engine_fails_the_stateful_test_shrinks_and_replays_and_the_reference_passes(tmp_path):
    with StatefulSession(variant_options(VARIANT, tmp_path / VARIANT, subnet=SUBNET, judged=ALL_CHECKERS,
                                         say=print)) as session:
        verdict = run_search(session, "sweep", tmp_path / "examples-db", search_budget_s=180.0, minimise_trials=8,
                             minimise_budget_s=120.0)
    assert verdict is not None, f"the stateful test did not catch {VARIANT}"
    symptoms = {s["checker"] for s in verdict.symptoms}
    assert symptoms & {"lost_signals", "results_delivered", "state", "duplicates"}, verdict.symptoms
    assert len(verdict.steps) <= 5, verdict.steps                       # shrunk to the aim's 5 steps or fewer
    reps = replay_attempts(verdict.run_dir, subnet=SUBNET, out_dir=verdict.run_dir / "replay-1", attempts=3)
    assert reps[-1].reproduced, [r.replay.symptoms for r in reps]
    control = replay_attempts(verdict.run_dir, subnet=SUBNET, out_dir=verdict.run_dir / "control-1", attempts=1,
                              until_reproduced=False, engine={})
    assert not control[0].reproduced, control[0].replay.symptoms      # the symptom is the variant's own
