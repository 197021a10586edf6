"""Ctrl-C during a soak's load (two new users, seeds 9 and 6): the run was torn down and exited 130, but the workload's
RTRS reader was still running when the teardown closed history.jsonl, so a signal that reached its timeout then
printed ``Exception in thread ... ValueError: .../history.jsonl is closed`` and 36 of 576 trade invokes had no
completion. The runner's teardown (shared by drills and the soak) now halts the clients before the history closes:
their threads joined within a deadline, every trade still in flight completed ``unknown`` ("stopped before an
answer").

The real ``run_once`` with the soak's workload shape (4 producers, 5 s timeout, unpriced here) and a real SIGINT
during its load, in process: the stack is a stand-in (no nodes), the signal sender confirms every signal at once and
no result ever comes on RTRS, so every signal is in flight when the interrupt arrives. Under a second."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference.engine import redislink, submit
from scenarios import runner
from scenarios.environment import DrillOptions
from scenarios.history import History, SignalLog
from scenarios.runner import DrillInterrupted, interruptible, run_once
from scenarios.soak import SoakOptions, soak_scenario
from tradedrill.waiting import DeadlineExceeded, wait_until

READ_BLOCK_S = 0.2   # the reader's XREAD blocks this long when nothing comes (the real one: block=200 ms)


class ConfirmingSender:
    """``SignalSubmitter``: every signal confirmed at once (on the primary and a replica)."""

    def __init__(self, config, name="submit", stop=None):
        pass

    def submit(self, stream, sig, deadline_s=None):
        return submit.Submission(submit.CONFIRMED, "1-0", ("127.0.125.1", 6379), 1, 1)

    def close(self):
        pass


class SilentRTRS:
    """``RedisLink`` of the RTRS reader: a blocking XREAD to which no result ever comes."""

    def __init__(self, config, name=""):
        self.idle = threading.Event()   # never set: the read's block is a timeout, as on a quiet stream

    def run(self, op):
        self.idle.wait(READ_BLOCK_S)
        return []

    def close(self):
        pass


class StandInEnvironment:
    """``DrillEnvironment`` without nodes: the run's history and signal log, closed by ``down`` as the real one does."""

    def __init__(self, scenario, run, seed, opts):
        self.scenario, self.run, self.seed, self.opts = scenario, run, seed, opts
        self.account = 1001
        self.stack = SimpleNamespace(registry=None)
        self.topology = SimpleNamespace(subnet="127.0.125", of_kind=lambda kind: [])
        self.keys = SimpleNamespace(rtss="rtss", rtrs="rtrs")
        self.history = History(run.path / "history.jsonl")
        self.signal_log = SignalLog(run.path / "signals.jsonl")

    def up(self):
        pass

    def workload(self):
        return self.scenario.workload

    def submitter_config(self, **kw):
        return SimpleNamespace(**kw)

    def stop_engines(self):
        pass

    def dump_ground_truth(self):
        pass

    def down(self):
        self.history.close()
        self.signal_log.close()
        return []


class NoSchedule:
    errors: list = []

    def __init__(self, env):
        pass

    def start(self, started):
        pass

    def stop(self):
        pass

    def heal_all(self):
        return []


class NoProbe:
    def __init__(self, *args):
        pass

    def start(self):
        return self

    def stop(self):
        pass

    def finish(self):
        pass


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_ctrl_c_during_the_soaks_load_completes_every_invoke_and_no_thread_raises(tmp_path, monkeypatch):
    for name, stand_in in (("DrillEnvironment", StandInEnvironment), ("Schedule", NoSchedule),
                           ("ConformanceProbe", NoProbe), ("start_tick_clients", lambda env: None)):
        monkeypatch.setattr(runner, name, stand_in)
    monkeypatch.setattr(submit, "SignalSubmitter", ConfirmingSender)
    monkeypatch.setattr(redislink, "RedisLink", SilentRTRS)
    raised: list[str] = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda args: raised.append(f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}"))

    soak = soak_scenario(SoakOptions(minutes=2, seed=9, subnet="127.0.125"))
    workload = dataclasses.replace(soak.workload, params={}, rate_per_s=40.0)   # the soak's, without live prices
    assert workload.op == "trade" and workload.timeout_s == 5.0 and workload.concurrency == 4
    scenario = dataclasses.replace(soak, workload=workload, faults=())
    run_path = tmp_path / "soak-run"
    history = run_path / "history.jsonl"
    said: list[str] = []
    opts = DrillOptions(subnet="127.0.125", seed=9, repeat=1, out_dir=tmp_path, progress=said.append)
    before = set(threading.enumerate())

    def invoked() -> int:
        try:
            return sum(1 for rec in lines(history) if rec["type"] == "invoke")
        except (OSError, ValueError):   # not written yet, or a line being written
            return 0

    def ctrl_c_once_signals_are_in_flight() -> None:
        try:
            wait_until(lambda: invoked() >= 20, 30, "20 signals in flight")
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    trigger = threading.Thread(target=ctrl_c_once_signals_are_in_flight, name="ctrl-c")
    with interruptible():
        trigger.start()
        with pytest.raises(DrillInterrupted) as got:
            run_once(scenario, run_path, 9, opts, repeat=1)
    trigger.join(30)
    assert got.value.phase == "load"

    # the clients' threads end (before the fix the RTRS reader outlived the teardown and raised at the first
    # signal's timeout, 5 s after its invoke); a thread that raises has ended too
    def ended() -> list[str]:
        return [t.name for t in set(threading.enumerate()) - before if t is not trigger and t.is_alive()]

    try:
        wait_until(lambda: not ended(), 15, "the workload's threads to end")
    except DeadlineExceeded:
        pass
    assert raised == [], raised
    assert ended() == []
    records = lines(history)
    invokes = {rec["op"]: rec for rec in records if rec["type"] == "invoke"}
    completions = [rec for rec in records if rec["type"] != "invoke"]
    assert len(invokes) >= 20
    assert sorted(rec["op"] for rec in completions) == sorted(invokes), \
        f"{len(invokes)} invokes, {len(completions)} completions"
    # no result ever came: every signal was in flight at the interrupt, and says so
    assert all(rec["type"] == "unknown" and "stopped before an answer" in rec["error"] for rec in completions)
    assert json.loads((run_path / "status.json").read_text())["state"] == "interrupted"
