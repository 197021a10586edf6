"""The kept-rate checker (issue 11): during a fault that stalls some orders, the other signals must keep their
rate. A single blocked trading thread (or send lanes all held by lost replies) fails it; an engine that parks the
stalled order passes; nothing to judge is unmeasured."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import checkers as c
from scenarios import history as h
from scenarios.targets import load as load_targets

TARGETS = load_targets()
WINDOW = h.FaultWindow("broker-lose-reply", "lr-1", 10.0, 20.0)


def ops_at(rate: float, latency_of) -> list[h.Operation]:
    """Trades invoked every 1/rate s from t=0 to 30 s; ``latency_of(i, t)`` -> seconds or None (no answer)."""
    out, t, i = [], 0.0, 0
    while t < 30.0:
        lat = latency_of(i, t)
        out.append(h.Operation(i, f"client-{i % 4}", "trade", f"s{i}", h.OK if lat is not None else h.UNKNOWN, t,
                               None if lat is None else t + lat))
        i += 1
        t += 1.0 / rate
    return out


def judge(ops, windows=(WINDOW,), **params):
    spec = {"checker": "kept_rate", "requirement_ids": ["PERF-1"],
            "params": {"fault": "broker-lose-reply", "loss": 0.3, "prompt_s": 1.0, **params}}
    view = c.RunView.__new__(c.RunView)
    view.operations = lambda: ops
    view.fault_windows = lambda: list(windows)
    return c.CHECKERS["kept_rate"].fn(view, spec["params"], ("PERF-1",), TARGETS)


def test_an_engine_that_parks_the_lost_replies_keeps_the_rate():
    rng = random.Random(1)
    ops = ops_at(200, lambda i, t: 6.0 if 10 <= t < 20 and rng.random() < 0.3 else 0.02)
    res = judge(ops)
    assert res.valid is True and res.metrics["kept_rate_fraction"] >= 0.9, res.summary


def test_send_lanes_all_held_by_lost_replies_fail_it():
    # 32 lanes x 5 s: about 6 signals/s get through while 200/s are offered
    ops = ops_at(200, lambda i, t: 0.02 if not 10 <= t < 20 or i % 30 == 0 else 4.0)
    res = judge(ops)
    assert res.valid is False and res.metrics["kept_rate_fraction"] < 0.1, res.summary
    window = next(e for e in res.evidence if e["kind"] == "window")
    assert window["offered"] == 2000 and window["slowest"][0]["latency_s"] == 4.0


def unmeasured(res) -> bool:
    return res.valid == c.UNKNOWN and all(j.verdict == c.UNMEASURED for j in res.judgements) and res.judgements


def test_no_fault_window_or_no_load_inside_it_is_unmeasured_not_a_pass():
    ops = ops_at(10, lambda i, t: 0.02)
    assert unmeasured(judge(ops, windows=()))
    assert unmeasured(judge([op for op in ops if not 9 <= op.invoke_mono < 21]))
    assert unmeasured(judge(ops, loss=1.0))


@given(st.lists(st.tuples(st.floats(0, 30), st.one_of(st.none(), st.floats(0, 10))), max_size=60),
       st.floats(0, 0.95), st.floats(0.01, 5))
@settings(max_examples=200, deadline=None)
def test_any_history_gets_a_fraction_in_range_or_an_unmeasured_verdict(points, loss, prompt_s):
    ops = [h.Operation(i, "client-0", "trade", f"s{i}", h.OK if lat is not None else h.UNKNOWN, t,
                       None if lat is None else t + lat) for i, (t, lat) in enumerate(points)]
    res = judge(ops, loss=loss, prompt_s=prompt_s)
    if res.valid == c.UNKNOWN:
        assert unmeasured(res)
        return
    fraction = res.metrics["kept_rate_fraction"]
    assert 0.0 <= fraction <= 1.0 / (1.0 - loss) + 1e-9
