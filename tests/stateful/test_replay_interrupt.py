"""Ctrl-C on ``tradedrill replay`` (the new user's defect 5): it printed ``Aborted!`` and exited 1, the status of
"not reproduced". Now it is a drill's interrupt: one line ``interrupted by SIGINT``, exit 130, every fault healed
and every process of the replay's stack gone (none left stopped), a second Ctrl-C during the teardown ignored.

The replay CLI runs as its own process on the stateful tests' subnet (127.0.93, ``TRADEDRILL_STATEFUL_SUBNET``;
``TRADEDRILL_REPLAY_INTERRUPT_SUBNET`` moves this test alone) on a schedule that pauses the active engine and then
waits; it is interrupted in that wait. About 40 s."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.stateful.conftest import SUBNET as STATEFUL_SUBNET
from tradedrill.process import same_process_alive
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.drill

REPO = Path(__file__).resolve().parents[2]
# the stateful tests' subnet: their stacks run one after the other in a pytest run (the module-scoped session of
# test_stateful.py is down before or after this test), so one subnet serves them all; a hard-coded one collided
SUBNET = os.environ.get("TRADEDRILL_REPLAY_INTERRUPT_SUBNET") or STATEFUL_SUBNET
SCHEDULE = {"seed": 5, "tag": "x00100005", "load_per_s": 5.0, "steps": [
    {"op": "submit", "kind": "market", "signal": "s1", "side": "buy", "symbol": "EURUSD"},
    {"op": "inject", "fault": "engine-pause"},
    {"op": "wait", "s": 60}]}


def test_ctrl_c_on_a_replay_heals_stops_every_process_and_exits_130(tmp_path):
    original = tmp_path / "example-001"
    original.mkdir()
    (original / "schedule.json").write_text(json.dumps(SCHEDULE))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEDRILL_STATE_DIR": str(tmp_path / "state"),
           "TRADEDRILL_FAULTS_STATE": str(tmp_path / "faults-state.json")}
    log_path = tmp_path / "replay.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tradedrill.cli", "replay", str(original), "--subnet", SUBNET,
                                 "--out", str(out)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # the inject step's line is printed once it is done: the replay is in its 60-s wait, an engine paused
        wait_until(lambda: b'"op": "inject"' in log_path.read_bytes() or proc.poll() is not None, 180,
                   "the replay's stack to start and pause the engine")
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        pids = next(out.rglob("stack/stack/pids.json"))   # the session's stack (out/replay-1/stack)
        run = pids.parents[2]
        recorded = json.loads(pids.read_text())
        assert len(recorded) >= 3
        assert any(psutil.Process(e["pid"]).status() == psutil.STATUS_STOPPED for e in recorded.values()
                   if same_process_alive(e["pid"], e["create_time"])), "the schedule's pause is not in place"
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: b"healing faults, stopping every node" in log_path.read_bytes() or proc.poll() is not None,
                   60, "the teardown to begin")
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)   # a second Ctrl-C in the teardown: said, not obeyed
        code = proc.wait(120)
        text = log_path.read_text(errors="replace")
        assert code == 130, text[-3000:]
        assert "Traceback" not in text and "Aborted!" not in text and "not reproduced" not in text, text[-3000:]
        last = [line for line in text.splitlines() if line.startswith("tradedrill: replay")]
        assert len(last) == 1 and "interrupted by SIGINT" in last[0], text[-3000:]
        assert run == out / "replay-1"
        status = json.loads((run / "example-001" / "status.json").read_text())
        assert status["state"] == "interrupted", status

        def alive() -> list[str]:
            return [f"{n} (pid {e['pid']})" for n, e in recorded.items()
                    if same_process_alive(e["pid"], e["create_time"])]

        wait_until(lambda: not alive(), 30, "every process of the replay's stack to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_ctrl_c_in_a_finished_attempts_teardown_starts_no_further_attempt(tmp_path):
    """A new user's Ctrl-C during the teardown of attempt 1 of ``replay --attempts 2`` was taken for a second press
    ("SIGINT ignored"): attempt 2 ran and the replay exited 1. Now the teardown finishes, attempt 1's verdict
    stands, no attempt 2 starts, exit 130."""
    original = tmp_path / "example-001"
    original.mkdir()
    quick = {"seed": 5, "tag": "x00100006", "load_per_s": 0.0, "steps": [
        {"op": "submit", "kind": "market", "signal": "s1", "side": "buy", "symbol": "EURUSD"}]}
    (original / "schedule.json").write_text(json.dumps(quick))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEDRILL_STATE_DIR": str(tmp_path / "state"),
           "TRADEDRILL_FAULTS_STATE": str(tmp_path / "faults-state.json"),
           "TRADEDRILL_TEST_HOLD_TEARDOWN": str(tmp_path)}
    log_path = tmp_path / "replay.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.stateful.replay_hold_driver", "replay", str(original),
                                 "--subnet", SUBNET, "--out", str(out), "--attempts", "2"], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "teardown").exists() or proc.poll() is not None, 180,
                   "attempt 1 to finish and reach its teardown")
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        recorded = json.loads(next(out.rglob("stack/stack/pids.json")).read_text())
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: b"finishing this run's teardown" in log_path.read_bytes() or proc.poll() is not None, 30,
                   "the replay to take the interrupt")
        (tmp_path / "release").write_text("")
        code = proc.wait(120)
        text = log_path.read_text(errors="replace")
        assert code == 130, text[-3000:]
        assert "Traceback" not in text and "SIGINT ignored" not in text, text[-3000:]
        last = [line for line in text.splitlines() if line.startswith("tradedrill: replay")]
        assert len(last) == 1 and "no further attempt started" in last[0], text[-3000:]
        verdicts = sorted(out.rglob("verdict.json"))
        assert len(verdicts) == 1 and "attempt-2" not in str(verdicts[0]), verdicts
        assert not list(out.rglob("attempt-2")), "a second attempt started after the interrupt"

        def alive() -> list[str]:
            return [f"{n} (pid {e['pid']})" for n, e in recorded.items()
                    if same_process_alive(e["pid"], e["create_time"])]

        wait_until(lambda: not alive(), 30, "every process of the replay's stack to exit")
    finally:
        # a failure above must not leave the held teardown (and the stack with it) behind: release it and let the
        # replay stop its own nodes before the handle is killed
        (tmp_path / "release").write_text("")
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
