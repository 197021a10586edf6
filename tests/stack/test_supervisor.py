"""The supervisor's restart policies (EA-1, BE-1, ENG-3) on real child processes."""
from __future__ import annotations

import dataclasses
import json
import sys

from reference.supervisor import POLICIES, RestartPolicy, Supervisor
from tradedrill.process import ProcessNode, same_process_alive
from tradedrill.waiting import wait_until

SLEEPER = [sys.executable, "-c", "import signal; signal.pause()"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def program(tmp_path, name, argv):
    return ProcessNode(name=name, role="test", address="127.0.0.1", port=0, argv=argv,
                       log_path=tmp_path / f"{name}.log", ready=lambda: True)


def test_a_killed_program_is_restarted_and_the_events_are_logged(tmp_path):
    events = tmp_path / "events.jsonl"
    ea = program(tmp_path, "ea", SLEEPER)
    with Supervisor(events_path=events) as sup:
        sup.add(ea, "ea")
        first_pid, first_ct = ea.pid, ea.create_time
        ea.kill()
        wait_until(lambda: ea.is_alive() and ea.pid != first_pid, 5, "the EA to be restarted")
        assert not same_process_alive(first_pid, first_ct)
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds[:3] == ["start", "exit", "restart"]
    assert kinds[-1] == "stop"
    assert not ea.is_alive(), "stop() stops the program by its handle"


def test_three_failures_within_the_window_stop_restarts_and_alert(tmp_path):
    alerts = []
    crasher = program(tmp_path, "ea", CRASHER)
    policy = dataclasses.replace(POLICIES["ea"], delay_s=0.05)
    with Supervisor(alert=lambda name, msg: alerts.append((name, msg))) as sup:
        sup.add(crasher, policy)
        wait_until(lambda: "ea" in sup.gave_up, 10, "the supervisor to give up on a crash-looping EA")
    restarts = [e for e in sup.events if e.event == "restart"]
    assert len(restarts) == 3, "EA-1: three restarts, then stop"
    assert alerts and alerts[0][0] == "ea" and "within 30 s" in alerts[0][1]


def test_backend_policy_waits_restart_sec_before_restarting(tmp_path):
    backend = program(tmp_path, "backend", SLEEPER)
    policy = dataclasses.replace(POLICIES["backend"], delay_s=0.5)
    with Supervisor() as sup:
        sup.add(backend, policy)
        backend.kill()
        wait_until(lambda: any(e.event == "restart" for e in sup.events), 5, "the backend restart")
    exit_ev = next(e for e in sup.events if e.event == "exit")
    restart_ev = next(e for e in sup.events if e.event == "restart")
    assert restart_ev.mono - exit_ev.mono >= 0.5, "RestartSec is honoured"
    assert POLICIES["backend"].delay_s == 3.0 and POLICIES["backend"].restart == "always"


def test_failing_health_checks_count_as_a_crash(tmp_path):
    backend = program(tmp_path, "backend", SLEEPER)
    healthy = {"ok": True}
    policy = RestartPolicy("test", "always", delay_s=0.0, health_interval_s=0.05, health_failures=2)
    with Supervisor() as sup:
        sup.add(backend, policy, health=lambda: healthy["ok"])
        pid = backend.pid
        healthy["ok"] = False
        wait_until(lambda: any(e.event == "unhealthy" for e in sup.events), 5, "the health check to fail twice")
        healthy["ok"] = True
        wait_until(lambda: backend.is_alive() and backend.pid != pid, 5, "the unhealthy backend to be restarted")
