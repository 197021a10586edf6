"""The soak's figures without a stack (issue 16, part 3): the within-PID RSS/fd slope, the verdicts "flat",
"growing" and "unmeasured", what the harness kept after the teardown, the faults counted by move, the broker's
retention allowance against a measured one, the sampler on a real process, and the report's lines. Every judge here
is shown a leaking input and must say so."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.verification import soak_lines
from scenarios import soak
from scenarios.soak import (BASELINE_MIN_SPAN_S, BROKER_BYTES_PER_DEAL, ENGINE_BYTES_PER_SIGNAL, FDS_FLAT_PER_MIN, REDIS_RSS_PER_DATA, RSS_FLAT_MB_PER_MIN,
                            WARMUP_S, Sampler, SoakOptions, close_wait_persistence, faults_by_move, harness_leaks,
                            judge_process, pooled_slope, soak_moves, soak_scenario, verdict)

MB = 2**20


def series(name="engine-a", minutes=3.0, mb_per_min=0.0, base_mb=120.0, fds=20, fds_per_min=0.0, pid=100,
           start_t=0.0, age0=30.0, step_s=2.0, used_mb_per_min=None, used_base_mb=2.0, sockets=10,
           sockets_step_at=None, close_wait=None):
    """Samples of one PID every step_s: RSS rising mb_per_min, non-socket fds rising fds_per_min, ``sockets`` sockets
    (60 more from ``sockets_step_at`` s on: a pool opened after a failover), ``close_wait(t)`` of them in CLOSE_WAIT."""
    rows = []
    n = int(minutes * 60 / step_s)
    for i in range(n):
        t = start_t + i * step_s
        row = {"t": t, "name": name, "pid": pid, "age_s": age0 + i * step_s,
               "rss": int((base_mb + mb_per_min * (t - start_t) / 60.0 + 0.1 * ((i * 7) % 3)) * MB),
               "other_fds": int(fds + fds_per_min * (t - start_t) / 60.0),
               "sockets": sockets + (60 if sockets_step_at is not None and t >= sockets_step_at else 0),
               "close_wait": close_wait(t) if close_wait else 0}
        row["fds"] = row["other_fds"] + row["sockets"]
        if used_mb_per_min is not None:
            row["used_memory"] = int((used_base_mb + used_mb_per_min * (t - start_t) / 60.0) * MB)
        rows.append(row)
    return rows


# -- the slope ------------------------------------------------------------------------------------------------------
def test_a_flat_process_has_a_slope_near_zero_and_a_leaking_one_its_leak():
    flat = pooled_slope(series(mb_per_min=0.0), "rss", unit=MB)
    leak = pooled_slope(series(mb_per_min=2.0), "rss", unit=MB)
    assert abs(flat["slope_per_min"]) < 0.1
    assert leak["slope_per_min"] == pytest.approx(2.0, abs=0.1)


def test_a_restart_to_a_lower_baseline_is_not_a_fall_and_its_leak_still_shows():
    # a leaking engine killed twice: every PID grows 3 MB/min from a fresh 120 MB
    rows = (series(mb_per_min=3.0, pid=1, minutes=1.5) + series(mb_per_min=3.0, pid=2, start_t=90, minutes=1.5)
            + series(mb_per_min=3.0, pid=3, start_t=180, minutes=1.5))
    assert pooled_slope(rows, "rss", unit=MB)["slope_per_min"] == pytest.approx(3.0, abs=0.15)
    # one straight line across the three PIDs would read the drops as flat
    assert pooled_slope(rows, "rss", unit=MB)["pids"] == 3


def test_the_warm_up_of_every_pid_is_left_out():
    # 8 MB/min during each PID's first WARMUP_S s, flat after: flat
    rows = []
    for pid, start in ((1, 0.0), (2, 100.0)):
        for i in range(50):
            age = i * 2.0
            rss = 100 + (8 / 60.0) * min(age, WARMUP_S)
            rows.append({"t": start + age, "pid": pid, "age_s": age, "rss": int(rss * MB)})
    assert abs(pooled_slope(rows, "rss", unit=MB)["slope_per_min"]) < 0.01
    assert pooled_slope(rows, "rss", unit=MB, warmup_s=0)["slope_per_min"] > 0.5   # what the warm-up would add


def test_a_thread_pool_growing_in_steps_is_warm_up_but_a_leak_between_the_steps_shows():
    # an engine that opens 64 send lanes at 60 s (threads 10 -> 74, RSS +12 MB at once), level otherwise
    def engine(leak_mb_per_min):
        return [{"t": t, "pid": 1, "age_s": 30.0 + t, "threads": 10 if t < 60 else 74,
                 "rss": int((120 + (12 if t >= 60 else 0) + leak_mb_per_min * t / 60.0) * MB)}
                for t in range(0, 240, 2)]
    assert abs(pooled_slope(engine(0.0), "rss", unit=MB)["slope_per_min"]) < 0.01
    assert pooled_slope(engine(0.0), "rss", unit=MB)["segments"] == 2
    assert pooled_slope([{k: v for k, v in r.items() if k != "threads"} for r in engine(0.0)], "rss",
                        unit=MB)["slope_per_min"] > 2   # without the thread count the step reads as growth
    assert pooled_slope(engine(1.5), "rss", unit=MB)["slope_per_min"] == pytest.approx(1.5, abs=0.01)


def test_an_engine_stepping_up_at_its_takeovers_and_level_between_is_flat_but_a_leak_between_them_shows(tmp_path):
    """The 30-minute soak of seed 1650: one engine PID stepped up 10-15 MB at each takeover (its broker scan read
    10,545 -> 13,032 orders) and was level between them; the pooled slope read +7.5 MB/min. Each takeover (the
    engine's lease_acquired event) starts a new segment."""
    takeovers_t = [60.0, 150.0, 240.0]

    def engine(leak_mb_per_min):
        return [{"t": t, "wall": 5000.0 + t, "pid": 7, "age_s": 30.0 + t, "threads": 20, "fds": 30, "other_fds": 10,
                 "rss": int((150 + 12 * sum(t >= x for x in takeovers_t) + leak_mb_per_min * t / 60.0) * MB)}
                for t in range(0, 330, 2)]
    events = tmp_path / "stack" / "engines" / "engine-a"
    events.mkdir(parents=True)
    (events / "events-A.jsonl").write_text("".join(
        json.dumps({"ts": 5000.0 + x, "pid": 7, "event": "lease_acquired", "token": i}) + "\n"
        for i, x in enumerate(takeovers_t)) + json.dumps({"ts": 5001.0, "pid": 7, "event": "heartbeat"}) + "\n")
    steps = soak.takeover_steps(tmp_path, engine(0.0))
    assert steps == {7: takeovers_t}
    level = judge_process("engine-a", engine(0.0), steps=steps)
    assert level["rss_verdict"] == "flat" and level["takeovers"] == 3 and level["segments"] == 4
    assert judge_process("engine-a", engine(0.0))["rss_verdict"] == "growing"   # without the takeovers
    leak = judge_process("engine-a", engine(2.0), steps=steps)
    assert leak["rss_verdict"] == "growing" and leak["rss_slope_mb_per_min"] == pytest.approx(2.0, abs=0.05)
    # samples without a wall time (soaks sampled before it) get no takeover segments
    assert soak.takeover_steps(tmp_path, [{k: v for k, v in r.items() if k != "wall"} for r in engine(0.0)]) == {}


def test_threads_that_keep_rising_leave_no_steady_sample_so_the_verdict_is_unmeasured():
    rows = [{"t": t, "pid": 1, "age_s": 30.0 + t, "threads": 10 + t // 10, "rss": 100 * MB, "fds": 20,
             "other_fds": 10} for t in range(0, 300, 2)]
    p = judge_process("engine-a", rows)
    assert p["rss_verdict"] == "unmeasured" and "thread" in p["rss_reason"]
    # unmeasured is named, never flat; alone (no process measured) it fails the soak
    passed, why, unmeasured = verdict(clean_summary(), {"engine-a": p})
    assert not passed and "memory unmeasured" in why[0] and unmeasured[0].startswith("engine-a RSS:")


def test_a_process_that_starts_higher_after_every_restart_shows_it_in_its_restart_baselines():
    rising = (series(pid=1, age0=0.0, minutes=1.0, base_mb=120) + series(pid=2, start_t=60, age0=0.0, minutes=1.0,
              base_mb=124) + series(pid=3, start_t=120, age0=0.0, minutes=1.0, base_mb=128))
    out = soak.restart_baselines(rising)
    assert out["slope_mb_per_min"] == pytest.approx(4.0, abs=0.2) and len(out["baselines_mb"]) == 3
    level = series(pid=1, age0=0.0, minutes=1.0) + series(pid=2, start_t=60, age0=0.0, minutes=1.0)
    assert soak.restart_baselines(level)["slope_mb_per_min"] is None   # two starts: no trend
    assert judge_process("engine-a", rising)["restart_baselines"]["slope_mb_per_min"] > 3


def _restarts(n: int, every_s: float, rise_mb: float, name: str = "engine-a") -> list[dict]:
    """``n`` PIDs of ``name``, one every ``every_s``, each level for its life and starting ``rise_mb`` above the last."""
    rows = []
    for k in range(n):
        rows += series(name, pid=100 + k, start_t=k * every_s, age0=0.0, minutes=every_s / 60.0,
                       base_mb=120.0 + k * rise_mb)
    return rows


def test_a_process_that_starts_higher_after_every_restart_fails_and_a_level_one_passes():
    """The 30-minute soak of seed 1650 (059f4bf) restarted engine-a 32 times; each start stood higher (147 -> 197 MB,
    +1.85 MB/min: its first broker scan kept the history's rows' memory) while its within-process slopes were too
    short to judge: the soak passed. Start RSS is judged now."""
    rising = judge_process("engine-a", _restarts(12, 60.0, 1.8))
    assert rising["restart_verdict"] == "growing", rising["restart_reason"]
    passed, why, _ = verdict(clean_summary(), {"engine-a": rising})
    assert not passed and any("growing across restarts" in w for w in why), why
    level = judge_process("engine-a", _restarts(12, 60.0, 0.0))
    assert level["restart_verdict"] == "flat", level["restart_reason"]
    # an engine may start higher by the broker traces it keeps (ENGINE_BYTES_PER_SIGNAL a signal traded), no more
    per_min = 600.0
    allowance = per_min * ENGINE_BYTES_PER_SIGNAL / MB
    keeps = judge_process("engine-a", _restarts(12, 60.0, 0.8 * allowance), signals_per_min=per_min)
    assert keeps["restart_verdict"] == "flat", keeps["restart_reason"]
    beyond = judge_process("engine-a", _restarts(12, 60.0, allowance + 2 * RSS_FLAT_MB_PER_MIN),
                           signals_per_min=per_min)
    assert beyond["restart_verdict"] == "growing", beyond["restart_reason"]


def test_restarts_too_few_or_too_close_together_are_not_judged():
    assert judge_process("engine-a", _restarts(2, 300.0, 5.0))["restart_verdict"] is None   # two starts
    close = _restarts(4, (BASELINE_MIN_SPAN_S - 30) / 3, 5.0)                               # span under the minimum
    assert judge_process("engine-a", close)["restart_verdict"] is None


def test_too_few_samples_are_unmeasured_not_flat():
    out = pooled_slope(series(minutes=0.5), "rss", unit=MB)
    assert out["slope_per_min"] is None and "needs" in out["reason"]
    assert pooled_slope([], "rss")["slope_per_min"] is None


@settings(max_examples=60, deadline=None)
@given(slope=st.floats(-5, 5), bases=st.lists(st.floats(50, 500), min_size=1, max_size=4),
       minutes=st.floats(1.2, 5))
def test_the_pooled_slope_recovers_any_common_slope_whatever_the_baselines(slope, bases, minutes):
    rows, t = [], 0.0
    for pid, base in enumerate(bases):
        for i in range(int(minutes * 30)):
            rows.append({"t": t, "pid": pid, "age_s": 25.0 + i * 2, "v": base + slope * i * 2 / 60.0})
            t += 2.0
    out = pooled_slope(rows, "v")
    assert out["slope_per_min"] == pytest.approx(slope, abs=1e-6)


# -- the verdicts ---------------------------------------------------------------------------------------------------
def test_an_engine_that_keeps_growing_is_growing():
    assert judge_process("engine-a", series(mb_per_min=RSS_FLAT_MB_PER_MIN * 3))["rss_verdict"] == "growing"
    assert judge_process("engine-a", series(mb_per_min=0.0))["rss_verdict"] == "flat"
    assert judge_process("sentinel-1", series("sentinel-1", mb_per_min=1.0))["rss_verdict"] == "growing"


def test_one_allocator_step_in_a_short_window_is_not_growth_but_a_slow_leak_over_30_minutes_is():
    step = [{"t": t, "pid": 1, "age_s": 30.0 + t, "rss": int((100 + (1.0 if t >= 50 else 0.0)) * MB), "fds": 9,
             "other_fds": 7} for t in range(0, 100, 2)]
    assert pooled_slope(step, "rss", unit=MB)["slope_per_min"] > RSS_FLAT_MB_PER_MIN   # the slope alone would say so
    assert judge_process("sentinel-1", step)["rss_verdict"] == "flat"
    slow = series("sentinel-1", minutes=30.0, mb_per_min=RSS_FLAT_MB_PER_MIN + 0.2)
    assert judge_process("sentinel-1", slow)["rss_verdict"] == "growing"


def test_redis_may_grow_by_the_data_it_holds_but_not_beyond():
    holds = series("redis-1", mb_per_min=1.5 * REDIS_RSS_PER_DATA, used_mb_per_min=1.5)
    leaks = series("redis-1", mb_per_min=1.0 * REDIS_RSS_PER_DATA + 1.0, used_mb_per_min=1.0)
    assert judge_process("redis-1", holds)["rss_verdict"] == "flat"
    assert judge_process("redis-1", leaks)["rss_verdict"] == "growing"
    # no used_memory figure: the allowance is unknown, so the verdict is too
    assert judge_process("redis-1", series("redis-1", mb_per_min=1.5))["rss_verdict"] == "unmeasured"


def test_a_broker_may_grow_by_its_ledger_but_not_beyond():
    deals_per_min = 600.0
    allowance = deals_per_min * BROKER_BYTES_PER_DEAL / MB
    assert judge_process("mt5-primary", series("mt5-primary", mb_per_min=allowance * 0.8),
                         deals_per_min=deals_per_min)["rss_verdict"] == "flat"
    assert judge_process("mt5-primary", series("mt5-primary", mb_per_min=allowance + 2 * RSS_FLAT_MB_PER_MIN),
                         deals_per_min=deals_per_min)["rss_verdict"] == "growing"
    assert judge_process("mt5-backup", series("mt5-backup", mb_per_min=allowance),
                         deals_per_min=0.0)["rss_verdict"] == "growing"


def test_leaking_file_descriptors_are_growing_and_a_pool_opened_in_one_step_is_not():
    assert judge_process("engine-a", series(fds_per_min=FDS_FLAT_PER_MIN * 4))["fds_verdict"] == "growing"
    assert judge_process("engine-a", series(fds_per_min=0.0))["fds_verdict"] == "flat"
    # 60 sockets opened at once at 40 s and kept (send lanes to the backup broker): flat, though the count rose
    step = judge_process("engine-a", series(sockets_step_at=40.0))
    assert step["fds_verdict"] == "flat" and step["fds_slope_per_min"] > 10


def test_sockets_left_in_close_wait_are_reported_as_held_and_a_passing_one_is_not():
    stuck = judge_process("engine-b", series("engine-b", close_wait=lambda t: 10 if t >= 60 else 0))
    assert "CLOSE_WAIT for 118 s" in stuck["held"] and stuck["close_wait_max"] == 10
    passing = judge_process("engine-b", series("engine-b", close_wait=lambda t: 57 if int(t) % 20 == 0 else 0))
    assert "held" not in passing and passing["close_wait_max"] == 57
    assert close_wait_persistence([{"pid": 1, "t": t, "close_wait": 1} for t in range(0, 13, 2)]) == 12.0
    assert close_wait_persistence([{"pid": 1, "t": 0, "close_wait": 0}]) == 0.0


def test_the_harness_rss_is_reported_not_judged_but_its_fds_are():
    p = judge_process(soak.HARNESS, series(soak.HARNESS, mb_per_min=5.0, fds_per_min=3.0))
    assert p["rss_verdict"] == "reported" and p["fds_verdict"] == "growing"


def test_harness_leaks_are_what_is_more_after_than_before():
    before = {"fds": 7, "threads": 2, "children": [11], "fd_targets": ["/dev/null", "pipe"]}
    assert harness_leaks(before, {**before}) == {"fds": 0, "threads": 0, "children": [], "fd_targets": []}
    after = {"fds": 9, "threads": 3, "children": [11, 12], "fd_targets": ["/dev/null", "pipe", "socket", "socket"]}
    assert harness_leaks(before, after) == {"fds": 2, "threads": 1, "children": [12],
                                            "fd_targets": ["socket", "socket"]}
    now = soak.harness_state()
    assert now["fds"] >= 3 and len(now["fd_targets"]) >= 3 and now["threads"] >= 1


def clean_summary(**changes):
    s = {"duplicate_orders": 0, "lost_signals": 0, "acknowledged": 100, "valid": True, "run_validity": [],
         "processes_left_after_teardown": 0, "harness_leaked": {"fds": 0, "threads": 0, "children": []}}
    return {**s, **changes}


@pytest.mark.parametrize("change, fragment", [
    ({"duplicate_orders": 1}, "duplicate orders: 1"),
    ({"lost_signals": 2}, "lost acknowledged signals: 2"),
    ({"lost_signals": None}, "lost acknowledged signals: unmeasured"),
    ({"acknowledged": 0}, "load never ran"),
    ({"valid": False, "run_validity": ["a fault could not be injected"]}, "cannot be judged"),
    ({"safety_failed": {"state": "RTS holds 2 positions the ledger does not"}}, "state: RTS holds"),
    ({"processes_left_after_teardown": 1}, "left after the teardown: 1"),
    ({"harness_leaked": {"fds": 3, "threads": 0, "children": []}}, "harness kept"),
    ({"harness_leaked": {"fds": 0, "threads": 0, "children": [4242]}}, "harness kept"),
])
def test_the_verdict_fails_on_each_finding(change, fragment):
    processes = {"engine-a": judge_process("engine-a", series())}
    assert verdict(clean_summary(), processes) == (True, [], [])
    passed, why, _ = verdict(clean_summary(**change), processes)
    assert not passed and any(fragment in w for w in why), why


def test_the_verdict_fails_on_a_growing_process_and_on_no_process_and_names_the_unmeasured_ones():
    flat = judge_process("redis-1", series("redis-1", used_mb_per_min=0.5))
    assert not verdict(clean_summary(), {"engine-a": judge_process("engine-a", series(mb_per_min=4.0))})[0]
    passed, why, unmeasured = verdict(clean_summary(), {"engine-a": judge_process("engine-a", series(minutes=0.4)),
                                                        "redis-1": flat})
    assert passed and not why and [u.split(":")[0] for u in unmeasured] == ["engine-a RSS", "engine-a fds"]
    assert not verdict(clean_summary(), {})[0]


# -- the schedule and its faults ------------------------------------------------------------------------------------
def test_the_seed_fixes_the_moves_and_a_fault_log_counts_by_move():
    opts = SoakOptions(minutes=2, seed=7)
    moves = soak_moves(opts)
    assert moves == soak_moves(SoakOptions(minutes=2, seed=7)) and len(moves) == 11
    assert moves != soak_moves(SoakOptions(minutes=2, seed=8))
    scenario = soak_scenario(opts)
    log = [{"event": "inject", "fault": step.fault} for step in scenario.faults]
    log += [{"event": "heal", "fault": step.fault} for step in scenario.faults]
    counts = faults_by_move(scenario, moves, log)
    assert sum(counts.values()) == 11
    assert counts == {m: moves.count(m) for m in set(moves)}
    # an inject the schedule did not have is said, not hidden
    assert "process-kill (unscheduled)" in faults_by_move(scenario, [], [{"event": "inject", "fault": "process-kill"}])


# -- the broker's allowance, measured ---------------------------------------------------------------------------------
def test_the_broker_allowance_covers_what_a_broker_really_keeps_per_deal(tmp_path):
    """BROKER_BYTES_PER_DEAL was measured (2.3 KB of heap per market order, doubled for allocator slack): this
    measures it again on an in-process Broker and fails if a broker now keeps more (the soak would call it a leak)
    or if the allowance is more than 3x what it keeps (it would hide one)."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "mt5"))
    try:
        from test_moving_broker import FLAT, market, open_sim
    finally:
        sys.path.pop(0)
    broker, mt5, _ = open_sim(tmp_path, FLAT)
    for i in range(100):
        market(mt5, "EURUSD", "buy", 0.01, comment=f"warm-{i}")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        n = 600
        for i in range(n):
            assert market(mt5, "EURUSD" if i % 2 else "GBPUSD", "buy" if i % 3 else "sell", 0.01,
                          comment=f"soak-{i:08d}-signal").retcode == 10009
        gc.collect()
        per_deal = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_deal <= BROKER_BYTES_PER_DEAL <= 3 * per_deal, per_deal


def test_the_engine_allowance_covers_what_an_engine_keeps_per_signal():
    """ENGINE_BYTES_PER_SIGNAL was measured (an engine start against a soak's end state: 980 B of RSS a signal
    traded, its journal's blocks and its broker traces; 436 B of heap a trace in ``Engine.known``): this measures the
    trace again, built as ``BrokerSession.iter_traces`` and ``Engine._scan_session`` build and keep it, and fails
    if an engine now keeps more a signal than the allowance (the soak would call it a leak) or if the allowance is
    more than 3x the trace alone (it would hide one)."""
    from reference.engine.broker import BrokerTrace
    from reference.engine.contract import order_comment

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        known, n = {}, 5000
        for i in range(n):
            comment = order_comment(f"soak-signal-{i:08d}", 1)
            trace = BrokerTrace(kind="deal", ticket=10_000_000 + i, comment=comment, symbol=sys.intern("EURUSD"))
            trace.order, trace.deal, trace.time_s = 9_000_000 + i, 10_000_000 + i, 1_796_170_007 + i
            trace.volume, trace.price = 0.01 * (1 + i % 3), 1.08 + i * 1e-6
            known[comment[:comment.rfind("-") + 1]] = trace
        gc.collect()
        per_signal = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(known) == n
    assert per_signal <= ENGINE_BYTES_PER_SIGNAL <= 3 * per_signal, per_signal


# -- the sampler on a real process ----------------------------------------------------------------------------------
def test_the_sampler_reads_every_process_of_pids_json_and_the_harness(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "stack").mkdir()
        (tmp_path / "stack" / "pids.json").write_text(json.dumps({
            "engine-a": {"pid": child.pid, "create_time": 0}, "gone": {"pid": 2**22 + 1, "create_time": 0}}))
        sampler = Sampler(tmp_path)
        sampler.sample(now=1000.0)
        sampler.sample(now=1002.0)
        sampler.finish()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    names = [r["name"] for r in sampler.rows]
    assert names.count("engine-a") == 2 and names.count(soak.HARNESS) == 2 and "gone" not in names
    assert sampler.alive == [1, 1]
    row = next(r for r in sampler.rows if r["name"] == "engine-a")
    assert row["rss"] > 0 and row["fds"] >= 3 and row["pid"] == child.pid and row["t"] == 0.0
    saved = [json.loads(line) for line in (tmp_path / soak.SAMPLES).read_text().splitlines()]
    assert saved == sampler.rows


def test_each_row_carries_the_time_its_process_was_read_not_the_pass_start(tmp_path, monkeypatch):
    """A pass waits on every Redis node's INFO (0.3 s for one cut off): an engine read late in the pass under the
    pass's start time put its takeover's RSS before the takeover (the 30-minute soak of 2026-12-02, 67 ms)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    clock = iter(1000.0 + 0.7 * i for i in range(100))   # every read of the clock 0.7 s after the last
    monkeypatch.setattr(soak.time, "time", lambda: next(clock))
    try:
        (tmp_path / "stack").mkdir()
        (tmp_path / "stack" / "pids.json").write_text(json.dumps({
            "redis-1": {"pid": child.pid, "create_time": 0}, "engine-a": {"pid": child.pid, "create_time": 0}}))
        sampler = Sampler(tmp_path)
        sampler.sample()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    times = [r["t"] for r in sampler.rows]
    assert len(times) == 3 and times == sorted(times) and times[-1] > times[0], sampler.rows
    assert all(r["wall"] - r["t"] == pytest.approx(1000.0) for r in sampler.rows)   # one time base


# -- the report's lines ---------------------------------------------------------------------------------------------
def test_the_report_lines_show_the_figures_and_a_failed_verdict_with_its_reason():
    processes = {"engine-a": judge_process("engine-a", series(mb_per_min=4.0)),
                 "redis-1": judge_process("redis-1", series("redis-1", used_mb_per_min=0.2))}
    summary = clean_summary(minutes=2, rate_per_s=10, every_s=10, seed=3, signals=1200, faults_injected=2,
                            faults_scheduled=2, fault_counts={"engine-kill": 1, "redis-partition": 1},
                            state_mismatches=0, processes_before=10, processes_after=10,
                            harness_before_stack={"fds": 7, "threads": 2, "children": []},
                            harness_after_teardown={"fds": 7, "threads": 2, "children": []}, bounds={"warmup_s": 20})
    summary["passed"], summary["failed_because"], summary["unmeasured"] = verdict(summary, processes)
    summary["sockets_held"] = {"engine-b": "up to 10 socket(s) left in CLOSE_WAIT for 30 s"}
    text = "\n".join(soak_lines({"summary": summary, "processes": processes}))
    assert "sockets held after their peer closed them" in text and "engine-b: up to 10 socket(s)" in text
    assert "verdict: **failed**: engine-a RSS growing" in text
    assert "leak check, before the stack started -> after its teardown: fds 7 -> 7" in text
    assert "signals sent: 1200" in text and "engine-kill x1, redis-partition x1" in text
    assert "| engine-a | " in text and "| growing |" in text and "**0** after the teardown" in text


# -- segments too short to judge (issue 16, part 3) ---------------------------------------------------------------
def fragments(pids=20, steady_s=4.0, mb_per_min=0.0, jitter_mb=0.4):
    """An engine restarted every 30 s: each PID sampled every 2 s from age 20 s (the warm-up) for ``steady_s``
    seconds only, its RSS rising ``mb_per_min`` with a sample-to-sample jitter of ``jitter_mb``."""
    rows = []
    for p in range(pids):
        for i in range(int(steady_s / 2.0) + 1):
            t = p * 30.0 + i * 2.0
            rows.append({"t": t, "pid": 1000 + p, "age_s": WARMUP_S + i * 2.0, "threads": 15, "fds": 16,
                         "other_fds": 7, "rss": int((120 + mb_per_min * t / 60.0 + jitter_mb * ((p + i) % 2)) * MB)})
    return rows


def test_segments_too_short_to_judge_are_unmeasured_not_summed_into_a_flat_verdict():
    # 20 restarts leave 20 segments of 4 s (3 samples each): 80 s in all, but no segment shows a trend
    rows = fragments()
    out = pooled_slope(rows, "rss", unit=MB)
    assert out["slope_per_min"] is None and "shorter than" in out["reason"], out
    p = judge_process("engine-a", rows)
    assert p["rss_verdict"] == "unmeasured" and p["fds_verdict"] == "unmeasured", p
    assert "20 segment(s) shorter than" in p["rss_reason"]
    # every segment is reported on its own, each PID separate, each short one unmeasured with its reason
    detail = p["rss_segments"]
    assert len(detail) == 20 and len({d["pid"] for d in detail}) == 20
    assert all(d["verdict"] == "unmeasured" and d["span_s"] == 4.0 for d in detail)


def test_long_segments_are_judged_and_reported_beside_the_short_ones_left_out():
    # three PIDs each 70 s steady and leaking 3 MB/min, between them 10 PIDs of 4 s: the leak still shows
    rows = (series(mb_per_min=3.0, pid=1, minutes=70 / 60) + series(mb_per_min=3.0, pid=2, start_t=300, minutes=70 / 60)
            + series(mb_per_min=3.0, pid=3, start_t=600, minutes=70 / 60)
            + [{**r, "t": r["t"] + 1000} for r in fragments(pids=10)])
    p = judge_process("engine-a", rows)
    assert p["rss_verdict"] == "growing" and p["rss_slope_mb_per_min"] == pytest.approx(3.0, abs=0.2)
    judged = [d for d in p["rss_segments"] if d["verdict"] == "judged"]
    assert len(judged) == 3 and all(d["slope_mb_per_min"] == pytest.approx(3.0, abs=0.3) for d in judged)
    assert sum(d["verdict"] == "unmeasured" for d in p["rss_segments"]) == 10
    assert p["segments"] == 3 and p["span_s"] == pytest.approx(3 * 68.0)


# -- what the soak changes, and says it changes (2026-12-01) -------------------------------------------------------
def test_the_soak_closes_its_positions_keeps_a_small_window_and_says_so(tmp_path):
    """The soak's scenario is a valid scenario whose signals carry stops on brokers that move (positions close, so
    the account does not grow without end), runs the engines with SOAK_ENGINE_SETTINGS, records them as overrides
    and shows them in soak.md's lines with the documents' value."""
    from scenarios import overrides as overrides_mod
    from scenarios import registry

    scenario = soak.soak_scenario(soak.SoakOptions(minutes=2, seed=5))
    registry.validate(scenario)
    assert scenario.workload.params["stops"] == {"sl_points": soak.SOAK_STOP_POINTS, "tp_points": soak.SOAK_STOP_POINTS}
    assert set(scenario.broker_symbols) == set(scenario.workload.symbols)
    assert scenario.engine_overrides == soak.SOAK_ENGINE_SETTINGS
    overrides_mod.record(tmp_path, dict(scenario.engine_overrides), {})
    settings_seen = soak._engine_settings(tmp_path)
    assert settings_seen == [{"key": "journal_memory_window", "value": 1000, "default": 10000}]
    (tmp_path / "scenario.json").write_text(json.dumps(scenario.to_dict()))   # as the runner writes it
    prices = soak._price_settings(tmp_path)
    assert prices == {"stop_points": soak.SOAK_STOP_POINTS, "sigma_points": soak.SOAK_SIGMA_POINTS}
    summary = clean_summary(minutes=2, rate_per_s=10, every_s=10, seed=5, signals=1200, faults_injected=1,
                            faults_scheduled=1, fault_counts={"engine-kill": 1}, state_mismatches=0,
                            processes_before=10, processes_after=10, engine_settings=settings_seen,
                            price_settings=prices,
                            harness_before_stack={"fds": 7, "threads": 2, "children": []},
                            harness_after_teardown={"fds": 7, "threads": 2, "children": []}, bounds={"warmup_s": 20})
    summary["passed"], summary["failed_because"], summary["unmeasured"] = verdict(summary, {})
    text = "\n".join(soak_lines({"summary": summary, "processes": {}}))
    assert "settings changed for the soak: journal_memory_window = 1000 (documents: 10000)" in text
    # the other change, a new user's finding: soak.md named only the first
    assert (f"take profit {soak.SOAK_STOP_POINTS} points from the live price, on brokers whose symbols walk "
            f"{soak.SOAK_SIGMA_POINTS} points a tick") in text


def test_recovery_is_a_figure_per_move_of_the_fault_table():
    """A new user's finding: soak.json's ``fault_recovery`` was the word "measured", not a recovery. Now each move
    of the fault table has its RTOs (first acknowledged trade invoked after the injection), the moves told apart
    by fault_id (engine-kill and redis-primary-kill are both process-kill), and a fault with no trade after it is
    counted apart, with how long it was waited for."""
    from scenarios.history import FaultWindow, Operation
    from types import SimpleNamespace

    from scenarios.soak import moves_of_injections, recovery_figures

    ops = [Operation(1, "c", "trade", "s1", "ok", 0.5, 0.6),
           Operation(2, "c", "trade", "s2", "fail", 10.1, 10.2),     # failed: not a recovery
           Operation(3, "c", "trade", "s3", "ok", 10.2, 12.0),       # engine-kill at 10.0: RTO 2.0
           Operation(4, "c", "trade", "s4", "ok", 19.0, 21.5),       # invoked before the kill at 20.0: not counted
           Operation(5, "c", "trade", "s5", "ok", 20.5, 21.0),       # redis-primary-kill at 20.0: RTO 1.0
           Operation(6, "c", "trade", "s6", "ok", 30.0, 30.5),       # engine-kill at 25.0: RTO 5.5
           Operation(7, "c", "trade", "s7", "unknown", 40.5, None)]  # engine-kill at 40.0: never recovered
    log = [{"event": "inject", "fault": "process-kill", "fault_id": f"process-kill-{k}"} for k in (1, 2, 3, 4)]
    scenario = SimpleNamespace(faults=[SimpleNamespace(fault="process-kill")] * 4)
    move_of = dict(moves_of_injections(scenario, ["engine-kill", "redis-primary-kill", "engine-kill", "engine-kill"],
                                       log))
    windows = [FaultWindow("process-kill", f"process-kill-{k}", t, t + 1.0) for k, t in
               ((1, 10.0), (2, 20.0), (3, 25.0), (4, 40.0))]
    got = recovery_figures(ops, windows, move_of)
    assert got["redis-primary-kill"] == {"n": 1, "recovered": 1, "rto_median_s": 1.0, "rto_p95_s": 1.0,
                                         "rto_max_s": 1.0, "unrecovered_observed_max_s": None}
    assert got["engine-kill"]["n"] == 3 and got["engine-kill"]["recovered"] == 2
    assert (got["engine-kill"]["rto_median_s"], got["engine-kill"]["rto_max_s"]) == (2.0, 5.5)
    assert got["engine-kill"]["unrecovered_observed_max_s"] == 1.0    # injected at 40.0, the history ends at 41.0
    summary = clean_summary(minutes=2, rate_per_s=10, every_s=10, seed=5, signals=7, faults_injected=4,
                            faults_scheduled=4, fault_counts={"engine-kill": 3, "redis-primary-kill": 1},
                            state_mismatches=0, processes_before=10, processes_after=10, recovery_by_fault=got,
                            harness_before_stack={"fds": 7, "threads": 2, "children": []},
                            harness_after_teardown={"fds": 7, "threads": 2, "children": []}, bounds={"warmup_s": 20})
    summary["passed"], summary["failed_because"], summary["unmeasured"] = verdict(summary, {})
    text = "\n".join(soak_lines({"summary": summary, "processes": {}}))
    assert "engine-kill 2 of 3: median 2 s" in text and "redis-primary-kill 1 of 1" in text, text
