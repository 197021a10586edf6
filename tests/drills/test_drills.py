"""The four fault drills as tests, and the proof that their checkers catch real bugs.

Each test runs one short repetition of a scenario through the drill runner against the real local stack (Redis
primary + 2 replicas + 3 Sentinels, two MT5 simulators, two supervised engines) on 127.0.6.x and asserts the
behaviour that must hold in any run: no order executed twice (ENG-5) and no acknowledged signal lost (RPO 0). The
RTO is measured and recorded (``record_property``), never held to its target here: targets are judged in the
report, over repetitions.

The reference engine's drills: engine-kill runs by default (the quickest, and the core failover); the others
need ``TRADEDRILL_ALL_DRILLS=1`` (engine-pause with five seeds runs by default in ``test_fencing.py``). Every run
also holds issue 18's guarantees: one engine sending at a time, no write under a fenced-out token, one RTRS result
per acknowledged signal. The broken-engine tests (``broken_engines.py``) run by default: without them a
green drill would prove nothing.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from scenarios import registry
from scenarios.registry import FaultStep
from tests.drills.conftest import ALL_DRILLS, Drill

pytestmark = pytest.mark.drill

all_drills = pytest.mark.skipif(
    not ALL_DRILLS, reason="a slow drill; set TRADEDRILL_ALL_DRILLS=1 to run every scenario (CI runs engine-kill)")


# -- what every run of the reference engine must show ----------------------------------------------------------
def assert_no_duplicates(d: Drill) -> None:
    for res in d.results("duplicates"):
        assert res.metrics["duplicate_orders"] == 0, (
            f"{d.scenario}: signal(s) executed more than once at the broker: {sorted(res.duplicates)}; "
            f"{res.summary} (run {d.run.path})")


def assert_nothing_lost(d: Drill) -> None:
    for res in d.results("lost_signals"):
        assert res.metrics["acknowledged"] > 0, f"{d.scenario}: no signal was acknowledged; the load never ran"
        assert not res.lost, (
            f"{d.scenario}: acknowledged signal(s) neither executed nor rejected with a reason: {res.lost}; "
            f"{[e.get('why') for e in res.evidence][:5]} (run {d.run.path})")


def assert_rto_measured(d: Drill, record_property) -> float:
    res = d.result("rto")
    assert res.measurements, f"{d.scenario}: no fault injection in the fault log, so no RTO ({d.run.path})"
    not_recovered = [m.description for m in res.measurements if not m.recovered]
    assert not not_recovered, (
        f"{d.scenario}: no successful {res.f} after {not_recovered}: {res.summary}; the RTO is only a lower "
        f"bound (run {d.run.path})")
    rto = res.metrics["rto_s"]
    assert isinstance(rto, float) and math.isfinite(rto) and rto >= 0, f"{d.scenario}: RTO {rto!r} is not a number"
    record_property("rto_s", round(rto, 3))
    for j in res.judgements:  # for the reader of junit.xml; the verdict belongs to the report
        record_property(f"rto_target_{j.requirement_id}", f"{j.comparator} {j.target} {j.unit}: {j.verdict}")
    return rto


def assert_fenced(d: Drill, record_property=None) -> None:
    """Issue 18's guarantees: one engine sending at a time (no send by a superseded lease holder), no RTS/RTRS value
    written under a fenced-out token, and exactly one RTRS result per acknowledged signal that left the queue."""
    one, stale, delivered = d.result("one_active"), d.result("stale_writes"), d.result("results_delivered")
    if record_property is not None:
        for key in ("stale_sends", "concurrent_active_engines", "active_overlap_s", "fenced_writes_refused"):
            record_property(key, one.metrics.get(key))
        record_property("stale_writes", stale.metrics.get("stale_writes"))
        record_property("undelivered_results", delivered.metrics.get("undelivered_results"))
    assert one.valid is True, f"{d.scenario}: {one.summary}; {one.evidence[:3]} (run {d.run.path})"
    assert one.metrics["active_overlap_s"] == 0, f"{d.scenario}: two engines sent at once: {one.summary}"
    assert stale.valid is True, f"{d.scenario}: {stale.summary}; {stale.evidence[:3]} (run {d.run.path})"
    assert delivered.valid is True, f"{d.scenario}: {delivered.summary}; {delivered.evidence[:3]} (run {d.run.path})"


def assert_state_agrees(d: Drill) -> None:
    state = d.result("state")
    assert state.metrics.get("state_mismatches") == 0, f"{d.scenario}: {state.summary}; {state.evidence[:5]}"


def ambiguous_sends(d: Drill) -> list[dict]:
    return [e for e in d.engine_events("order_send_complete") if e.get("outcome") == "unknown"]


# -- the reference engine under each scenario ------------------------------------------------------------------
def test_engine_kill(drill, record_property):
    """SIGKILL the active engine under load: the passive takes over; nothing duplicated, nothing lost."""
    d = drill("engine-kill")
    assert_no_duplicates(d)
    assert_nothing_lost(d)
    assert_fenced(d, record_property)
    assert_rto_measured(d, record_property)


@all_drills
def test_engine_pause(drill, record_property):
    """SIGSTOP the active engine for 8 s, then SIGCONT: the fenced old active must not execute anything."""
    d = drill("engine-pause", duration_s=16.0)  # the pause lasts 8 s from 4 s in: load on until after the SIGCONT
    assert_no_duplicates(d)
    assert_nothing_lost(d)
    assert_fenced(d, record_property)
    assert_rto_measured(d, record_property)


@all_drills
def test_redis_primary_kill(drill, record_property):
    """SIGKILL the Redis primary: Sentinel promotes a replica; client writes resume, trades neither double nor
    vanish."""
    d = drill("redis-primary-kill", duration_s=14.0, settle_s=10.0)
    assert_no_duplicates(d)
    assert_nothing_lost(d)
    assert_fenced(d, record_property)
    assert_rto_measured(d, record_property)


@all_drills
def test_lost_reply(drill, record_property):
    """The broker executes but loses 30% of its replies: the engine reconciles each ambiguous send with the
    broker instead of resending, so no signal is executed twice and every one gets its outcome."""
    # a lost reply costs the 5 s call timeout, then the broker reconnect: settle long enough for the last one
    d = drill("lost-reply", settle_s=12.0)
    lost_replies = ambiguous_sends(d)
    record_property("ambiguous_sends", len(lost_replies))
    assert lost_replies, f"the broker lost no reply, so the drill tested nothing ({d.run.path})"
    assert_no_duplicates(d)
    assert_nothing_lost(d)
    assert_fenced(d, record_property)


# -- faults that land on work in flight (issue 18): each scenario as registered, its own fault times ------------------
AS_REGISTERED = {"duration_s": None, "settle_s": None, "rate_per_s": None, "fault_at_s": None}


@all_drills
@pytest.mark.parametrize("scenario", ["engine-pause-in-flight", "engine-pause-repeated", "engine-kill-reading",
                                      "redis-restart-in-flight", "broker-backup-down-primary-ambiguous",
                                      "engine-pause-during-failover"])
def test_faults_on_work_in_flight(drill, record_property, scenario):
    """Each issue-18 scenario once, exactly as `tradedrill drill` runs it (its overlapping steps keep their own
    times): every guarantee holds, and every scheduled fault was injected."""
    d = drill(scenario, **AS_REGISTERED)
    assert d.check.run_validity.valid, f"{scenario}: {d.check.run_validity.reasons} ({d.run.path})"
    assert_no_duplicates(d)
    assert_nothing_lost(d)
    assert_state_agrees(d)
    assert_fenced(d, record_property)
    for res in (r for r in d.check.results if r.checker == "rto"):
        record_property(f"rto_s_{'_'.join(res.requirement_ids)}", res.metrics.get("rto_s"))
    if scenario == "broker-backup-down-primary-ambiguous":
        record_property("ambiguous_sends", len(ambiguous_sends(d)))


# -- the checkers catch real bugs --------------------------------------------------------------------------------
def test_checker_catches_resend_on_timeout(drill, record_property):
    """An engine that resends an ambiguous order blindly executes it twice: the duplicates checker fails and
    names the signals the bug resent."""
    d = drill("lost-reply", variant="resend-on-timeout")
    resent = {e["signal_id"] for e in d.engine_events("blind_resend")}
    assert resent, f"the broker lost no reply, so the broken engine never resent anything ({d.run.path})"
    res = d.result("duplicates")
    duplicated = sorted(res.duplicates)
    record_property("duplicated_signals", ",".join(duplicated))
    assert res.valid is False and duplicated, f"the duplicates checker missed the blind resends of {sorted(resent)}"
    assert set(duplicated) <= resent, (
        f"duplicates {sorted(set(duplicated) - resent)} were not made by the blind resend: another bug?")
    named_in_evidence = {e["signal"] for e in res.evidence}
    assert named_in_evidence == set(duplicated), f"evidence names {named_in_evidence}, not {duplicated}"
    for sid in duplicated[:10]:  # the summary names the first ten
        assert sid in res.summary, f"the summary does not name {sid}: {res.summary!r}"
    for sid in duplicated:
        assert len(res.duplicates[sid]) >= 2, f"{sid} is reported with {len(res.duplicates[sid])} order(s)"


def test_checker_catches_ack_before_durable(drill, record_property):
    """An engine that acknowledges a signal when it reads it loses the signals it held when it was killed: the
    lost-signals checker fails and names them."""
    d = drill("engine-kill", variant="ack-before-durable")
    acked_on_read = {e["signal_id"] for e in d.engine_events("acked_on_read")}
    assert acked_on_read, f"the broken engine acknowledged nothing on read ({d.run.path})"
    for res in d.results("lost_signals"):
        record_property(f"lost_signals_{'_'.join(res.requirement_ids)}", ",".join(res.lost))
        assert res.valid is False and res.lost, (
            f"the lost-signals checker missed the signals acknowledged before they were durable: {res.summary}")
        assert set(res.lost) <= acked_on_read, (
            f"lost {sorted(set(res.lost) - acked_on_read)} were never acknowledged on read: another bug?")
        assert {e["signal"] for e in res.evidence if "kind" not in e} == set(res.lost)
        for sid in res.lost[:10]:  # the summary names the first ten
            assert sid in res.summary, f"the summary does not name {sid}: {res.summary!r}"
    # every lost signal was acknowledged on read by the very process the fault killed, and never executed by it
    victims = {w.details.get("pid") for w in d.check.fault_windows if w.fault == "process-kill"}
    lost = set(d.result("lost_signals").lost)
    holders = {e["signal_id"]: e["pid"] for e in d.engine_events("acked_on_read") if e["signal_id"] in lost}
    assert set(holders.values()) <= victims, (
        f"lost signals {holders} were acknowledged by pids other than the killed one(s) {victims}")


def test_overload_is_backlog_not_loss(drill, record_property):
    """Offered far more signals than the engine takes, the run ends with signals still queued on RTSS: they are
    backlog, not lost, and the ground truth (dumped after the engines stopped) shows no phantom order (RTS executed
    without a deal). During the load the engine is held to about 30 orders/s (a broker answering in 50 ms, 2 send
    lanes) while the harness's senders deliver what they can of the 1,000/s offered (a submission not begun
    within its 2 s timeout is not sent: fail); the latency heals when the load ends and the engine drains about
    400/s, so 3,762 signals were still queued at the end (2026-12-01). Left at full speed the engine took all that
    64 Sentinel-checked senders deliver on 2 cores: no backlog was tested (CI, 2026-12-01)."""
    spec = registry.get("engine-kill")
    slow = dataclasses.replace(spec, faults=(FaultStep("broker-latency", "broker-primary", at_s=0.0, params={"ms": 50}),
                                             *(dataclasses.replace(f, at_s=4.0) for f in spec.faults)))
    d = drill(slow, rate_per_s=1000.0, settle_s=1.0, fault_at_s=None, engine_overrides={"send_lanes": 2})
    lost = d.result("lost_signals")
    record_property("backlog_signals", lost.metrics.get("backlog_signals"))
    assert lost.metrics["backlog_signals"] > 0, f"the engine kept up with 1000/s: no backlog was tested ({d.run.path})"
    # backlog.json names what was delivered to an engine and never answered apart from what was never read
    backlog = json.loads((d.run.path / "backlog.json").read_text())
    pending_on = backlog["pending_on"]
    assert set(pending_on) <= set(backlog["signals"]) and len(pending_on) <= backlog["pending"], backlog["pending"]
    assert bool(pending_on) == (backlog["pending"] > 0) and lost.metrics["backlog_pending_signals"] <= len(pending_on)
    assert not lost.lost, f"signals reported lost under overload: {lost.lost[:10]} ({lost.summary})"
    state = d.result("state")
    phantoms = [m for m in state.mismatches if m["kind"] == "phantom"]
    assert not phantoms, f"phantom orders (RTS executed, no deal): {phantoms[:5]}"
    assert_no_duplicates(d)


def test_checker_catches_publish_before_durable(drill, record_property):
    """An engine that publishes a batch's results before its orders are sent and durable: killed under load, it
    leaves signals that RTRS calls executed and the broker never saw. The lost-signals checker names them."""
    d = drill("engine-kill", variant="publish-before-durable")
    published = {e["signal_id"] for e in d.engine_events("published_before_durable")}
    assert published, f"the broken engine published nothing early ({d.run.path})"
    res = d.result("lost_signals")
    record_property("lost_signals", ",".join(res.lost))
    assert res.valid is False and res.lost, f"the lost-signals checker missed the early publishes: {res.summary}"
    assert set(res.lost) <= published, f"lost {sorted(set(res.lost) - published)} were never published early"
    whys = {e["why"] for e in res.evidence if e.get("signal") in set(res.lost)}
    assert whys == {"RTRS says executed but the broker ledger has no deal for it"}, whys
