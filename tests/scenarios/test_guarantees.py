"""The issue-18 checkers on synthetic runs with a known truth: one active sender (ENG-1), exactly one RTRS result per
acknowledged signal (ENG-5, MT5-HA 3.6), no write under a fenced-out token. Each also says ``unmeasured`` (never
pass) when the run holds no evidence for it."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from scenarios import checkers as c
from scenarios import registry, synthetic
from scenarios.history import RunDir, Signal, TradeResult

GUARANTEES = ("one_active", "results_delivered", "stale_writes")


def ev(event, instance, mono, **fields):
    """One engine event; wall clock ``ts`` = 1_700_000_000 + mono, so both clocks agree in these tests."""
    return {"ts": 1_700_000_000.0 + mono, "mono": mono, "instance": instance, "pid": 100 + ord(instance[0]),
            "event": event, **fields}


def acquired(instance, mono, token):
    return ev("lease_acquired", instance, mono, token=token, value=f"{instance}:{token}", previous="")


def sends(instance, token, start, end, step=0.1, prefix="s"):
    out, t, i = [], start, 0
    while t <= end + 1e-9:
        out.append(ev("order_send_invoke", instance, round(t, 6), signal_id=f"{prefix}{instance}{token}-{i}",
                      comment=f"td-{i}", attempt=1, broker="primary", token=token))
        t += step
        i += 1
    return out


def result_of(check, name):
    [r] = [r for r in check.results if r.checker == name]
    return r


def unmeasured(r):
    return r.valid == "unknown" and r.judgements and all(j.verdict == "unmeasured" for j in r.judgements)


# -- one active sender (ENG-1) ---------------------------------------------------------------------------------------
def test_one_active_passes_a_clean_takeover(tmp_path):
    truth = synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0)
    assert truth.takeover_mono is not None
    r = result_of(c.check_run(tmp_path / "r"), "one_active")
    assert r.valid is True, r.summary
    assert r.metrics["stale_sends"] == 0 and r.metrics["concurrent_active_engines"] == 1
    assert r.metrics["holders"] == 2 and r.metrics["active_overlap_s"] == 0
    assert {(j.requirement_id, j.metric, j.verdict) for j in r.judgements} == {
        ("ENG-1", "stale_sends", "pass"), ("ENG-1", "concurrent_active_engines", "pass")}


def test_one_active_names_every_stale_send_with_instance_token_newest_and_time(tmp_path):
    truth = synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0,
                                stale_sends=["s-1-0080", "s-1-0081"])
    r = result_of(c.check_run(tmp_path / "r"), "one_active")
    assert r.valid is False and r.metrics["stale_sends"] == 2
    assert [v["signal"] for v in r.violations] == truth.stale_sends
    for v in r.violations:
        assert (v["instance"], v["token"], v["newest_instance"], v["newest_token"]) == ("A", 1, "B", 2)
        assert v["time"] and v["mono"] > truth.takeover_mono and "after B acquired token 2" in v["why"]
    assert r.metrics["concurrent_active_engines"] == 2 and r.metrics["active_overlap_s"] > 0
    assert "A token 1 after B took token 2" in r.summary


def test_one_active_measures_the_overlap_of_two_senders():
    # A sends 0..10 s, is frozen, B takes token 2 at 12 s and sends 13..30 s; A wakes and sends 18..25 s anyway
    events = ([acquired("A", -1.0, 1)] + sends("A", 1, 0.0, 10.0) + [acquired("B", 12.0, 2)]
              + sends("B", 2, 13.0, 30.0) + sends("A", 1, 18.0, 25.0, prefix="late"))
    r = c.check_one_active(events, gap_s=3.0)
    assert r.metrics["stale_sends"] == 71  # 18.0, 18.1, ..., 25.0
    assert all(v["signal"].startswith("late") for v in r.violations)
    assert r.metrics["concurrent_active_engines"] == 2
    assert r.metrics["active_overlap_s"] == pytest.approx(7.0)
    [pair] = r.overlaps
    assert pair["holders"] == ["B:2", "A:1"] and pair["seconds"] == pytest.approx(7.0)
    # the same sends without the late ones: a handover, never two at once
    clean = c.check_one_active([e for e in events if not str(e.get("signal_id", "")).startswith("late")])
    assert clean.valid is True and clean.metrics["concurrent_active_engines"] == 1


def test_a_send_its_own_lane_stopped_is_not_a_send():
    # A wakes after B took token 2: it emits order_send_invoke, then its sending thread's fencing check stops the
    # order before it is written (order_send_fenced); the same comment is sent again later by B
    events = [acquired("A", 0.0, 1)] + sends("A", 1, 1.0, 2.0) + [acquired("B", 5.0, 2)] + sends("B", 2, 6.0, 7.0)
    late = ev("order_send_invoke", "A", 8.0, signal_id="x", comment="tdx-1", attempt=1, broker="primary", token=1)
    stop = ev("order_send_fenced", "A", 8.06, signal_id="x", comment="tdx-1", lane=3)
    r = c.check_one_active(events + [late, stop])
    assert r.valid is True and r.metrics["sends_stopped_by_fencing"] == 1 and r.metrics["stale_sends"] == 0
    # the same comment invoked again and not stopped: that one was sent
    again = ev("order_send_invoke", "A", 9.0, signal_id="x", comment="tdx-1", attempt=1, broker="primary", token=1)
    r = c.check_one_active(events + [late, stop, again])
    assert r.metrics["stale_sends"] == 1 and r.violations[0]["mono"] == 9.0
    only_fenced = c.check_one_active([acquired("A", 0.0, 1), late, stop])
    assert unmeasured(only_fenced) and "stopped by fencing (1 were)" in only_fenced.summary


def test_one_active_is_unmeasured_without_evidence():
    none = c.check_one_active([])
    assert unmeasured(none) and "no engine event log" in none.summary
    no_lease = c.check_one_active(sends("A", 1, 0.0, 1.0))
    assert unmeasured(no_lease) and "no lease_acquired" in no_lease.summary
    no_send = c.check_one_active([acquired("A", 0.0, 1)])
    assert unmeasured(no_send) and "no order_send_invoke" in no_send.summary


def test_one_active_on_a_run_without_event_logs_is_unmeasured(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0, engine_events=False)
    check = c.check_run(tmp_path / "r")
    for name in ("one_active", "stale_writes"):
        r = result_of(check, name)
        assert unmeasured(r) and "stack/engines" in r.summary, (name, r.summary)
    assert result_of(check, "results_delivered").valid is True  # RTRS alone is enough for that one


def test_one_active_without_tokens_falls_back_to_the_instance():
    events = [acquired("A", 0.0, 1)] + sends("A", None, 1.0, 2.0) + [acquired("B", 5.0, 2)] + \
        sends("B", None, 6.0, 7.0) + sends("A", None, 8.0, 8.0, prefix="late")
    for e in events:
        e.pop("token", None) if e["event"] == "order_send_invoke" else None
    r = c.check_one_active(events)
    assert r.metrics["stale_sends"] == 1 and r.violations[0]["signal"].startswith("late")
    assert "no token recorded" in r.violations[0]["why"]


def test_one_active_survives_a_fencing_counter_that_went_back():
    # Redis lost the counter: B acquires token 1 again after A's token 1; the newest acquisition decides
    events = [acquired("A", 0.0, 1)] + sends("A", 1, 1.0, 2.0) + [acquired("B", 5.0, 1)] + sends("B", 1, 6.0, 7.0)
    assert c.check_one_active(events).valid is True
    late = events + sends("A", 1, 6.5, 6.5, prefix="late")
    r = c.check_one_active(late)
    assert r.metrics["stale_sends"] == 1 and r.violations[0]["newest_instance"] == "B"


def test_torn_event_lines_are_skipped_and_counted(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0)
    log = tmp_path / "r" / "stack" / "engines" / "engine-a" / "events-A.jsonl"
    lines = log.read_text().splitlines()
    # a SIGKILLed engine's torn last line, then its restart appending after it: the torn line is mid-file. The
    # event log is line-buffered and an order is sent after its order_send_invoke line is written, so a torn line
    # is never the invoke of an order the broker has: tear another event
    i = next(k for k, line in enumerate(lines) if k >= 3 and '"order_send_invoke"' not in line
             and '"lease_acquired"' not in line)
    log.write_text("\n".join(lines[:i] + ['{"ts": 1.0, "mono": 2' + lines[i]] + lines[i + 1:]) + "\n")
    r = result_of(c.check_run(tmp_path / "r"), "one_active")
    assert r.metrics["unreadable_event_lines"] == 1 and r.valid is True


def test_a_missing_or_damaged_event_log_is_unmeasured_not_a_pass(tmp_path):
    """Found by a new user: with one engine's event log deleted, one_active passed on the sends that remained
    (the broker ledger had 601 orders, the logs 218 sends) and stale_writes passed with hundreds of writes it
    could not attribute; with a lease_acquired token damaged, the other holder's sends were called stale."""
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0)
    whole = {r.checker: r for r in c.check_run(tmp_path / "r").results}
    assert whole["one_active"].valid is True and whole["stale_writes"].valid is True
    logs = sorted((tmp_path / "r" / "stack" / "engines").rglob("events-*.jsonl"))
    assert len(logs) == 2
    saved = logs[1].read_text()
    logs[1].unlink()
    gone = {r.checker: r for r in c.check_run(tmp_path / "r").results}
    assert gone["one_active"].valid == c.UNKNOWN and "no order_send_invoke" in gone["one_active"].summary
    assert gone["stale_writes"].valid == c.UNKNOWN and "missing or cut" in gone["stale_writes"].summary
    damaged = [json.loads(line) for line in saved.splitlines()]
    for e in damaged:
        if e.get("event") == "lease_acquired":
            e["token"], e["value"] = "abc", "garbage"
    logs[1].write_text("".join(json.dumps(e) + "\n" for e in damaged))
    bad = {r.checker: r for r in c.check_run(tmp_path / "r").results}
    for name in ("one_active", "stale_writes"):
        assert bad[name].valid == c.UNKNOWN and "without a readable token" in bad[name].summary, bad[name].summary


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"), st.floats(0, 50)), min_size=1, max_size=6, unique_by=lambda a: a[1]),
       st.lists(st.tuples(st.sampled_from("AB"), st.floats(0, 50)), min_size=1, max_size=40))
def test_a_send_is_stale_exactly_when_its_holder_is_not_the_newest(acqs, raw_sends):
    acqs = sorted(acqs, key=lambda a: a[1])
    tokens = {}
    events = []
    for token, (instance, t) in enumerate(acqs, start=1):
        events.append(acquired(instance, t, token))
        tokens[t] = (instance, token)
    expected = 0
    for i, (instance, t) in enumerate(raw_sends):
        # the sender uses the token of its own latest acquisition before t (0 if it never had one)
        own = [(a_t, tok) for a_t, (inst, tok) in tokens.items() if inst == instance and a_t <= t]
        token = max(own)[1] if own else 0
        events.append(ev("order_send_invoke", instance, t, signal_id=f"s{i}", token=token))
        latest = [(a_t, v) for a_t, v in tokens.items() if a_t <= t]
        newest = max(latest, key=lambda x: x[0])[1] if latest else None
        expected += newest != (instance, token)
    r = c.check_one_active(events)
    assert r.metrics["stale_sends"] == expected
    assert r.valid is (expected == 0 and r.metrics["concurrent_active_engines"] <= 1)


# -- exactly one result per acknowledged signal (ENG-5, MT5-HA 3.6) ------------------------------------------------
def test_results_delivered_counts_zero_and_repeated_results_backlog_and_duplicates_apart():
    signals = [Signal(f"s{i}", "ok") for i in range(1, 7)] + [Signal("s7", "unknown")]
    results = [TradeResult("s1", "executed", raw={"entry": "1-0", "entry_id": "0-1"}),
               TradeResult("s2", "rejected", "NO_MONEY"),
               TradeResult("s3", "executed", raw={"entry": "2-0", "entry_id": "0-3"}),
               TradeResult("s3", "executed", raw={"entry": "3-0", "entry_id": "0-3"}),   # published twice
               TradeResult("s4", "executed"), TradeResult("s4", "duplicate", "DUPLICATE_SIGNAL"),
               TradeResult("s6", "duplicate", "DUPLICATE_SIGNAL")]                         # only the 2nd entry's
    r = c.check_results_delivered(signals, results, backlog=["s5"])
    assert r.valid is False
    assert r.undelivered == ["s6"] and list(r.repeated) == ["s3"]
    assert [x["entry"] for x in r.repeated["s3"]] == ["2-0", "3-0"]
    assert r.metrics["undelivered_results"] == 1 and r.metrics["repeated_results"] == 1
    assert r.metrics["backlog_signals"] == 1 and r.metrics["duplicate_status_results"] == 2
    assert r.metrics["delivered_once"] == 3   # s1, s2, s4 (a duplicate answer beside one result is fine)
    why = {e.get("signal"): e["why"] for e in r.evidence if e.get("signal")}
    assert "only a 'duplicate' answer" in why["s6"]
    assert "s6" in r.summary and "s3" in r.summary and "backlog 1" in r.summary


def test_executed_at_the_broker_is_not_a_delivered_result(tmp_path):
    truth = synthetic.write_run(tmp_path / "r", scenario="redis-primary-kill", outage_s=2.0, rate_per_s=5.0,
                                undelivered=["s-1-0010", "s-1-0011"])
    check = c.check_run(tmp_path / "r")
    r = result_of(check, "results_delivered")
    assert r.valid is False and r.undelivered == truth.undelivered
    # the older guarantees see nothing wrong: the orders are at the broker and in RTS
    for name in ("duplicates", "lost_signals", "state"):
        assert result_of(check, name).valid is True, name


def test_results_delivered_is_unmeasured_without_evidence(tmp_path):
    no_dump = c.check_results_delivered([Signal("s1", "ok")], None)
    assert unmeasured(no_dump) and "rtrs.jsonl" in no_dump.summary
    nothing_acked = c.check_results_delivered([Signal("s1", "unknown")], [])
    assert unmeasured(nothing_acked) and "no acknowledged signal" in nothing_acked.summary
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "r" / "rtrs.jsonl").unlink()
    assert unmeasured(result_of(c.check_run(tmp_path / "r"), "results_delivered"))


@given(st.lists(st.tuples(st.sampled_from(["ok", "unknown"]), st.integers(0, 3), st.booleans(), st.booleans()),
                max_size=30))
def test_results_delivered_exactly(spec):
    signals, results, backlog, undelivered, repeated = [], [], [], [], []
    for i, (ack, n, queued, dup_answer) in enumerate(spec):
        sid = f"s{i}"
        signals.append(Signal(sid, ack))
        results += [TradeResult(sid, "executed") for _ in range(n)]
        if dup_answer:
            results.append(TradeResult(sid, "duplicate", "DUPLICATE_SIGNAL"))
        if queued:
            backlog.append(sid)
        if ack == "ok" and n == 0 and not queued:
            undelivered.append(sid)
        if ack == "ok" and n > 1:
            repeated.append(sid)
    r = c.check_results_delivered(signals, results, backlog=backlog)
    if not any(s.ack == "ok" for s in signals):
        assert unmeasured(r)
        return
    assert r.undelivered == undelivered and list(r.repeated) == repeated
    assert r.valid is (not undelivered and not repeated)


# -- no write under a fenced-out token ----------------------------------------------------------------------------
def test_stale_writes_names_the_rts_and_rtrs_values_of_the_old_token(tmp_path):
    truth = synthetic.write_run(tmp_path / "r", scenario="engine-pause", outage_s=3.0, rate_per_s=5.0,
                                stale_writes=["s-1-0090"])
    r = result_of(c.check_run(tmp_path / "r"), "stale_writes")
    assert r.valid is False and r.metrics["stale_writes"] == 2
    assert {(s["what"].split()[0], s["signal"]) for s in r.stale} == {("RTRS", "s-1-0090"), ("RTS", "s-1-0090")}
    for s in r.stale:
        assert (s["token"], s["newest_token"], s["newest_instance"]) == (1, 2, "B") and s["after_newest_s"] > 0
    assert {(j.requirement_id, j.verdict) for j in r.judgements} == {("ENG-1", "fail"), ("ENG-5", "fail")}
    assert truth.stale_writes == ["s-1-0090"]


def test_stale_writes_clean_run_passes_and_counts_what_it_checked(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0)
    r = result_of(c.check_run(tmp_path / "r"), "stale_writes")
    assert r.valid is True and r.metrics["stale_writes"] == 0
    assert r.metrics["writes_checked"] == r.metrics["rtrs_entries"] + r.metrics["rts_signals"] > 0


def test_stale_writes_is_unmeasured_when_the_engine_records_no_token(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0, tokens=False)
    check = c.check_run(tmp_path / "r")
    r = result_of(check, "stale_writes")
    assert unmeasured(r) and "no 'token' field" in r.summary
    assert result_of(check, "one_active").valid is True  # the instance names still tell who sent


def test_stale_writes_is_unmeasured_without_events_or_dumps():
    assert unmeasured(c.check_stale_writes([], [], {}))
    assert unmeasured(c.check_stale_writes([ev("engine_start", "A", 0.0)], [], {}))
    r = c.check_stale_writes([acquired("A", 0.0, 1)], None, None)
    assert unmeasured(r) and "no RTRS or RTS dump" in r.summary


def test_stale_writes_by_hand_timing_and_journal_restored_rows():
    events = [acquired("A", 0.0, 1), acquired("B", 10.0, 2)]
    base_ms = 1_700_000_000_000
    rtrs = [{"entry": f"{base_ms + 5_000}-0", "signal_id": "x1", "status": "executed", "token": "1",
             "instance": "A"},
            {"entry": f"{base_ms + 11_000}-0", "signal_id": "x2", "status": "executed", "token": "2",
             "instance": "B"},
            {"entry": f"{base_ms + 12_000}-0", "signal_id": "x3", "status": "executed", "token": "1",
             "instance": "A"}]
    rts = {"orders": {
        "x4": {"status": "deferred", "token": "1", "ts_ms": str(base_ms + 15_000)},           # issue 18's bug
        "x5": {"status": "executed", "token": "2", "ts_ms": str(base_ms + 4_000), "instance": "B",
               "restored_from": "journal"},                                                  # stamped earlier
        "x6": {"status": "executed", "token": "9", "ts_ms": str(base_ms + 15_000)},           # token never seen
        "x7": {"status": "executed", "ts_ms": str(base_ms + 15_000)}}}                       # no token
    r = c.check_stale_writes(events, rtrs, rts)
    assert sorted(s["signal"] for s in r.stale) == ["x3", "x4"]
    assert r.metrics["undated_writes"] == 1 and r.metrics["unattributed_writes"] == 1
    assert r.metrics["writes_without_token"] == 1 and r.metrics["writes_checked"] == 4
    x4 = next(s for s in r.stale if s["signal"] == "x4")
    assert x4["after_newest_s"] == pytest.approx(5.0) and x4["status"] == "deferred"


def test_fenced_refusals_are_reported_not_judged():
    events = [acquired("A", 0.0, 1), acquired("B", 10.0, 2),
              ev("fenced_write_refused", "A", 12.0, token=1, newest="2", what="publish")]
    base_ms = 1_700_000_000_000
    rtrs = [{"entry": f"{base_ms + 11_000}-0", "signal_id": "x", "status": "executed", "token": "2",
             "instance": "B"}]
    r = c.check_stale_writes(events, rtrs, None)
    assert r.valid is True and r.metrics["fenced_writes_refused"] == 1 and "1 fenced write(s) refused" in r.summary


# -- in every engine scenario, and in the defaults ------------------------------------------------------------------
def test_every_engine_scenario_is_judged_by_the_three_guarantees():
    for s in registry.all_scenarios():
        names = {spec.checker: spec.requirement_ids for spec in s.checkers}
        for name in GUARANTEES:
            assert name in names, (s.name, name)
        assert names["one_active"] == ("ENG-1",) and names["results_delivered"] == ("ENG-5",)
        assert names["stale_writes"] == ("ENG-1", "ENG-5")
    assert [d["checker"] for d in c.DEFAULT_CHECKERS][-3:] == list(GUARANTEES)
    assert {d["checker"]: d["requirement_ids"] for d in c.DEFAULT_CHECKERS}["stale_writes"] == ["ENG-1", "ENG-5"]


def test_a_run_without_scenario_checkers_gets_the_defaults(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0,
                        stale_sends=["s-1-0080"])
    doc = json.loads((tmp_path / "r" / "scenario.json").read_text())
    doc.pop("checkers")
    doc["name"] = "renamed-away"
    (tmp_path / "r" / "scenario.json").write_text(json.dumps(doc))
    check = c.check_run(RunDir(tmp_path / "r"))
    assert {r.checker for r in check.results} >= set(GUARANTEES)
    assert result_of(check, "one_active").valid is False


def test_the_new_scenarios_schedule_overlapping_faults_on_work_in_flight():
    inflight = registry.get("engine-pause-in-flight")
    latency, pause = inflight.faults
    assert (latency.fault, latency.target, latency.params) == ("broker-latency", "broker-primary", {"ms": 300})
    assert latency.heal_after_s is None and pause.at_s > latency.at_s
    repeated = registry.get("engine-pause-repeated")
    pauses = [f.heal_after_s for f in repeated.faults]
    assert len(pauses) == 4 and min(pauses) < 3.0 < max(pauses)  # some shorter than the lease TTL, some longer
    ambiguous = registry.get("broker-backup-down-primary-ambiguous")
    kill, lose = ambiguous.faults
    assert kill.at_s < lose.at_s and lose.at_s + lose.heal_after_s <= kill.at_s + kill.heal_after_s
    failover = registry.get("engine-pause-during-failover")
    pause, redis_kill = failover.faults
    assert pause.at_s < redis_kill.at_s < pause.at_s + pause.heal_after_s
    assert registry.get("engine-kill-reading").workload.rate_per_s >= 100
    latency, restart = registry.get("redis-restart-in-flight").faults
    assert latency.fault == "broker-latency" and latency.at_s < restart.at_s and restart.target == "redis-primary"
    assert restart.heal_after_s < 3.0  # back before Sentinel's down-after: no failover, the same primary
    for s in registry.all_scenarios():  # `tradedrill drill --all` stays about 40 s a run
        assert s.workload.duration_s + s.workload.settle_s <= 40.0, s.name


def test_broker_latency_package_checks_its_parameter():
    from scenarios.packages import check_step
    kinds = registry.drill_node_kinds()
    assert check_step("broker-latency", "broker-primary", {"ms": 300}, kinds) == []
    assert any("order_latency_ms" in p for p in check_step("broker-latency", "broker-primary", {"ms": -1}, kinds))
    assert any("mt5" in p for p in check_step("broker-latency", "redis-primary", {"ms": 10}, kinds))


def test_a_cut_history_or_a_missing_status_makes_the_run_invalid(tmp_path):
    """Found by a new user: a history cut to its first quarter (status still "complete") was judged "not
    recovered ... until the history ended", and a run without status.json was judged valid."""
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=3.0, rate_per_s=5.0)
    assert c.check_run(tmp_path / "r").run_validity.valid is True
    history = tmp_path / "r" / "history.jsonl"
    lines = history.read_text().splitlines()
    history.write_text("\n".join(lines[: len(lines) // 4]) + "\n")
    cut = c.check_run(tmp_path / "r").run_validity
    assert cut.valid is False and any("the history is cut" in r for r in cut.reasons), cut.reasons
    history.write_text("\n".join(lines) + "\n")
    (tmp_path / "r" / "status.json").unlink()
    nostatus = c.check_run(tmp_path / "r").run_validity
    assert nostatus.valid is False and any("status.json" in r for r in nostatus.reasons), nostatus.reasons
