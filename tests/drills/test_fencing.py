"""Fencing under faults that land on work in flight (issue 18), on the real local stack (127.0.6.x, like every drill).

- engine-pause with five seeds (CI runs two, ``TRADEDRILL_ALL_DRILLS=1`` all five: the default run must stay inside
  CI's 20 minutes, and the stateful test now pauses the active engine at drawn instants too): a freeze of the active
  engine lands at a different instant of its work each time; every run must show 0 duplicates, 0 lost, 0 state mismatches, 0 stale sends or writes, one
  RTRS result per acknowledged signal, and never two engines sending at once.
- The new checkers catch what the old ones cannot: ``renew-ignores-holder`` (its lease renewal ignores the holder
  and resets the fencing counter, so after a pause both instances are active) fails ``one_active`` and/or ``stale_writes``, which name
  the stale holder, its token and the newer one (the old checkers see at most the effect: a split brain may or may
  not execute one signal twice, so their verdicts are recorded, not asserted); ``flush-without-results`` (after a
  Redis outage it flushes outcomes to RTS and XACKs without appending the RTRS results) fails
  ``results_delivered`` while duplicates, lost signals and state pass. Both variants live in
  ``tests/drills/broken_engines.py``; until ``VARIANTS`` there lists them, their tests are skipped.
"""
from __future__ import annotations

import pytest

from tests.drills.broken_engines import VARIANTS
from tests.drills.conftest import ALL_DRILLS, SEED, Drill

pytestmark = pytest.mark.drill

PAUSE_SEEDS = [SEED + k for k in range(5 if ALL_DRILLS else 2)]
ATTEMPTS = 3  # runs of the renew-ignores-holder drill until the old holder acts (see its test)
OLD_CHECKERS = ("duplicates", "lost_signals", "state")
NEW_CHECKERS = ("one_active", "results_delivered", "stale_writes")


def variant_lands(name: str):
    return pytest.mark.skipif(name not in VARIANTS, reason=f"variant lands separately: {name!r} is not yet in "
                                                           f"tests/drills/broken_engines.py VARIANTS")


@pytest.fixture
def seeded_drill(drill):
    """The ``drill`` fixture of ``conftest.py``, named for what these tests use it for: ``seed=`` per repetition
    (each its own signal sequence and fault timing), with the same proof afterwards that every process stopped."""
    return drill


def verdicts(d: Drill, names) -> dict[str, object]:
    return {name: d.result(name).valid for name in names}


def record_numbers(d: Drill, record_property) -> None:
    for r in d.check.results:
        for key, value in r.metrics.items():
            if key in ("duplicate_orders", "lost_signals", "state_mismatches", "stale_sends", "stale_writes",
                       "concurrent_active_engines", "active_overlap_s", "undelivered_results", "repeated_results",
                       "fenced_writes_refused", "backlog_signals", "rto_s"):
                record_property(f"{r.checker}.{key}", value)


def assert_every_guarantee(d: Drill) -> None:
    """What every run of the reference engine must show, each with the run folder to look at."""
    where = f"{d.scenario} seed {d.check.seed} (run {d.run.path})"
    assert d.check.run_validity.valid, f"{where}: the run cannot be judged: {d.check.run_validity.reasons}"
    dup = d.result("duplicates")
    assert dup.metrics.get("duplicate_orders") == 0, f"{where}: duplicates: {dup.summary}"
    for lost in d.results("lost_signals"):
        assert lost.metrics.get("acknowledged", 0) > 0, f"{where}: no signal was acknowledged; the load never ran"
        assert lost.metrics.get("lost_signals") == 0, f"{where}: lost: {lost.summary}"
    state = d.result("state")
    assert state.metrics.get("state_mismatches") == 0, (
        f"{where}: RTS disagrees with the broker: {state.summary}; {state.evidence[:5]}")
    one = d.result("one_active")
    assert one.valid is True, f"{where}: one_active {one.valid}: {one.summary}; {one.evidence[:5]}"
    assert one.metrics["stale_sends"] == 0 and one.metrics["concurrent_active_engines"] == 1
    assert one.metrics["active_overlap_s"] == 0, f"{where}: two engines sent at once: {one.summary}"
    stale = d.result("stale_writes")
    assert stale.valid is True and stale.metrics["stale_writes"] == 0, (
        f"{where}: stale_writes {stale.valid}: {stale.summary}; {stale.evidence[:5]}")
    delivered = d.result("results_delivered")
    assert delivered.valid is True, f"{where}: results_delivered {delivered.valid}: {delivered.summary}"


# -- the reference engine, engine-pause with five seeds (CI) -----------------------------------------------------------
@pytest.mark.parametrize("seed", PAUSE_SEEDS, ids=[f"seed{s}" for s in PAUSE_SEEDS])
def test_engine_pause_holds_every_guarantee(seeded_drill, record_property, seed):
    """SIGSTOP the active engine for 8 s from 3 s in (a different instant of its work with every seed), SIGCONT,
    4 s more load: the passive takes over; the old active, when it wakes, sends and writes nothing."""
    d = seeded_drill("engine-pause", seed=seed, duration_s=15.0, fault_at_s=3.0)
    record_numbers(d, record_property)
    pause = [w for w in d.check.fault_windows if w.fault == "process-pause"]
    assert pause and pause[0].heal_mono is not None, f"the pause never happened or never healed ({d.run.path})"
    acquired = d.engine_events("lease_acquired")
    assert len({(e["instance"], e["token"]) for e in acquired}) >= 2, (
        f"no takeover during the 8 s pause: nothing about fencing was tested ({d.run.path})")
    assert_every_guarantee(d)


# -- the new checkers catch what the old ones cannot ------------------------------------------------------------------
def stale_acts(d: Drill) -> tuple[list[dict], list[dict]]:
    """Ground truth from the engines' own records, computed here without the checkers: the sends by a holder
    after another instance acquired a newer token, and the RTRS rows written under a token older than the newest
    acquired before their entry id's time."""
    acquired = sorted((e["mono"], e["ts"], e["instance"], int(e["token"])) for e in d.engine_events("lease_acquired"))
    stopped = [(e["pid"], e["signal_id"], e.get("comment"), e["mono"]) for e in d.engine_events("order_send_fenced")]
    sends = []
    for e in d.engine_events("order_send_invoke"):
        before = [a for a in acquired if a[0] <= e["mono"]]
        never_written = any((pid, sid, comment) == (e["pid"], e["signal_id"], e.get("comment")) and mono >= e["mono"]
                            for pid, sid, comment, mono in stopped)
        if before and (before[-1][2], before[-1][3]) != (e["instance"], e.get("token")) and not never_written:
            sends.append(e)
    rows = []
    for row in d.run.trade_results():
        ms = int(str(row.raw.get("entry", "0-0")).split("-")[0])
        before = [a for a in acquired if a[1] * 1000 <= ms]
        if before and row.raw.get("token") and int(row.raw["token"]) < before[-1][3]:
            rows.append(row.raw)
    return sends, rows


@variant_lands("renew-ignores-holder")
def test_one_active_catches_a_renewal_that_ignores_the_holder(seeded_drill, record_property):
    """After the pause the old active re-asserts a lease it no longer holds (event ``forced_renewal``): it SETs the
    lease value and the fencing counter to its own old token, so its writes are accepted again, and it trades beside
    its successor. Whether its first act after waking is a send or a write (which the reference fencing refuses
    until the forced renewal lands) is a race between its threads; either way it is active again within one
    heartbeat, so every run shows the bug; ATTEMPTS seeds bound the rare run where the load gives it nothing to do.
    The load runs 16 s (pause at 3-4 s, healed 8 s later), so the woken holder has 4-5 s of signals to act on.

    - in a run where the old holder sent (or wrote RTRS) after the newer acquisition, one_active (stale_writes)
      must name exactly those sends (rows); the ground truth comes from the event logs and RTRS, not the checkers;
    - in every run where it did nothing, both must pass: no false alarm;
    - if it never acted in ATTEMPTS runs, the variant did not show its bug: the test fails, saying so."""
    quiet = []
    for attempt, seed in enumerate(range(SEED, SEED + ATTEMPTS), start=1):
        d = seeded_drill("engine-pause", seed=seed, variant="renew-ignores-holder", duration_s=16.0,
                         fault_at_s=3.0)
        tokens = {(e["instance"], e["token"]) for e in d.engine_events("lease_acquired")}
        assert len(tokens) >= 2, f"seed {seed}: no takeover during the pause: nothing was tested ({d.run.path})"
        one, stale = d.result("one_active"), d.result("stale_writes")
        sends, rows = stale_acts(d)
        if not sends and not rows:
            assert one.valid is True and stale.valid is True, (
                f"seed {seed}: the old holder did nothing after the takeover, yet one_active says {one.summary}; "
                f"stale_writes says {stale.summary} ({d.run.path})")
            quiet.append(seed)
            continue
        record_property("runs_until_the_bug_acted", attempt)
        record_numbers(d, record_property)
        seen = verdicts(d, OLD_CHECKERS + NEW_CHECKERS)
        for name, value in seen.items():
            record_property(f"verdict.{name}", str(value))
        # the split brain loses nothing (every entry is answered by one holder or the other), so lost_signals
        # cannot see it. Duplicates and state are recorded, not asserted: the woken holder's own "takeover" claims
        # the group's pending list, including an entry its successor is sending at that instant, and sends it too
        # (CI at 2eb5710, seed 7: engine00007-00159 sent by B as new and by A as redelivered 4 ms later), and the
        # two holders may overwrite positions; what the test pins is that one_active / stale_writes name the acts
        assert seen["lost_signals"] is True, (seen, d.run.path)
        record_property("duplicates_from_the_split_brain", str(seen["duplicates"] is False))
        if sends:
            assert one.valid is False, f"one_active missed {len(sends)} stale send(s): {one.summary} ({d.run.path})"
            assert {v["signal"] for v in one.violations} == {e["signal_id"] for e in sends}
            v = one.violations[0]
            assert v["newest_token"] > v["token"] and v["instance"] != v["newest_instance"] and v["time"], v
            assert one.metrics["concurrent_active_engines"] == 2
        if rows:
            assert stale.valid is False, f"stale_writes missed {len(rows)} RTRS row(s): {stale.summary}"
            assert {r["entry"] for r in rows} <= {s["what"].split()[-1] for s in stale.stale}
        return
    record_property("runs_without_a_stale_act", ",".join(map(str, quiet)))
    pytest.fail(f"in {ATTEMPTS} runs (seeds {quiet}) the old holder never sent or wrote after the takeover: the "
                f"broken variant did not show its bug (no false alarm in any run), so the detection was not tested")


@variant_lands("flush-without-results")
def test_results_delivered_catches_a_flush_without_results(seeded_drill, record_property):
    """After the Redis outage the broken engine flushes its held-back outcomes to RTS and acknowledges the entries
    without appending their RTRS results: the orders are at the broker and in RTS (duplicates, lost signals and
    state all pass), but the results never reach RTRS: only results_delivered fails, and names the signals.

    redis-restart-in-flight: orders take 300 ms at the broker, so some are always in flight when the Redis primary
    dies, and their outcomes are held back. The flush is the path of an engine that kept its lease through the
    outage: with the documents' timings it never does (ORD-3's 2 s reconnect interval outlasts the lease's 2.2 s
    sending window, so the other engine takes over and republishes from the pending list), so the engines here
    reconnect every 0.2 s and renew every 0.5 s. The scenario's own fault times stand (fault_at_s=None)."""
    d = seeded_drill("redis-restart-in-flight", seed=SEED, variant="flush-without-results", duration_s=14.0,
                     settle_s=10.0, rate_per_s=None, fault_at_s=None,
                     engine_overrides={"redis_retry_interval_s": 0.2, "heartbeat_s": 0.5})
    record_numbers(d, record_property)
    flushed = {e["signal_id"] for e in d.engine_events("flushed_without_result")}
    record_property("flushed_without_result", len(flushed))
    assert flushed, f"no outcome was held back by the Redis outage: the bug was never exercised ({d.run.path})"
    res = d.result("results_delivered")
    record_property("undelivered", ",".join(res.undelivered[:50]))
    assert res.valid is False and res.undelivered, (
        f"results_delivered missed the flush without results: {res.summary} ({d.run.path})")
    assert set(res.undelivered) <= flushed, (
        f"undelivered {sorted(set(res.undelivered) - flushed)[:10]} were not flushed by the bug: another bug?")
    assert {e["signal"] for e in res.evidence if e.get("kind") == "undelivered"} == set(res.undelivered)
    for name in OLD_CHECKERS:
        for r in d.results(name):
            assert r.valid is True, f"{name} should not see this bug, yet says {r.valid}: {r.summary} ({d.run.path})"
    for name in ("one_active", "stale_writes"):
        assert d.result(name).valid is True, f"{name}: {d.result(name).summary} ({d.run.path})"
