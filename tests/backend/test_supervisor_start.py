"""BE-1's supervisor and a backend that is slow to start (issue 15, new-user report): at load average ~6 uvicorn and
the app's imports took over 6 s, and two failed health checks 3 s apart SIGKILLed every start of both backends
(three times, nothing in their logs). A start-up grace (systemd's TimeoutStartSec) now lets a start finish before
failed checks count, and an ``unhealthy`` event says which checks failed and how. Real child processes; the probes
are stand-ins counting their calls (no timing is asserted)."""
from __future__ import annotations

import dataclasses
import sys
import threading

from reference.supervisor import POLICIES, Supervisor
from tests.backend.conftest import address, free_port
from tradedrill.process import ProcessNode
from tradedrill.services.backend import health_probe
from tradedrill.waiting import wait_until

SLEEPER = [sys.executable, "-c", "import signal; signal.pause()"]


def program(tmp_path, name="backend-a"):
    return ProcessNode(name=name, role="backend", address="127.0.0.1", port=0, argv=SLEEPER,
                       log_path=tmp_path / f"{name}.log", ready=lambda: True)


class SlowStart:
    """A probe that fails its first ``failures`` calls (the backend still importing), then passes."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0
        self.passed = threading.Event()
        self.last_failure = ""

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            self.last_failure = "GET /health at 127.0.0.1:1: connection refused (not listening yet, or gone)"
            return False
        self.passed.set()
        return True


def test_be1_keeps_restart_sec_and_its_health_interval_and_has_a_start_grace():
    be1 = POLICIES["backend"]
    assert (be1.restart, be1.delay_s, be1.health_interval_s, be1.health_failures) == ("always", 3.0, 3.0, 2)
    assert be1.start_timeout_s is not None and be1.start_timeout_s >= 20.0


def test_a_backend_slow_to_start_is_not_killed_by_failed_health_checks(tmp_path):
    backend = program(tmp_path)
    probe = SlowStart(failures=6)    # three times BE-1's two failed checks, before it is ready
    policy = dataclasses.replace(POLICIES["backend"], delay_s=0.0, health_interval_s=0.02)
    with Supervisor() as sup:
        sup.add(backend, policy, health=probe)
        pid = backend.pid
        wait_until(probe.passed.is_set, 20, "the slow backend's first passing health check")
        assert [e.detail for e in sup.events if e.event == "unhealthy"] == []
        assert backend.is_alive() and backend.pid == pid and backend.starts == 1


def test_a_backend_never_ready_is_killed_after_the_start_grace_saying_why(tmp_path):
    backend = program(tmp_path)
    probe = SlowStart(failures=10**9)
    policy = dataclasses.replace(POLICIES["backend"], delay_s=0.0, health_interval_s=0.02, start_timeout_s=0.2)
    with Supervisor() as sup:
        sup.add(backend, policy, health=probe)
        wait_until(lambda: any(e.event == "unhealthy" for e in sup.events), 20, "the failed start to be killed")
    detail = next(e.detail for e in sup.events if e.event == "unhealthy")
    assert "not ready within 0.2 s of its start" in detail, detail
    assert "connection refused" in detail and "GET /health at 127.0.0.1:1" in detail, detail


def test_a_ready_backend_that_stops_answering_is_killed_naming_the_failed_checks(tmp_path):
    backend = program(tmp_path)
    state = {"ok": True, "calls": 0}

    def probe() -> bool:
        state["calls"] += 1
        return state["ok"]

    probe.last_failure = "GET /health at 127.0.0.1:1: no answer within 1 s"
    policy = dataclasses.replace(POLICIES["backend"], delay_s=0.0, health_interval_s=0.02)
    with Supervisor() as sup:
        sup.add(backend, policy, health=probe)
        wait_until(lambda: state["calls"] >= 1, 20, "the first (passing) health check")
        state["ok"] = False
        wait_until(lambda: any(e.event == "unhealthy" for e in sup.events), 20, "two failed checks")
    detail = next(e.detail for e in sup.events if e.event == "unhealthy")
    assert detail.startswith("2 failed health checks (") and detail.count("no answer within 1 s") == 2, detail


def test_the_backends_health_probe_says_why_it_failed():
    host = address(46)
    port = free_port(host)      # nothing listens there
    probe = health_probe(host, port)
    assert probe() is False
    assert probe.last_failure == f"GET /health at {host}:{port}: connection refused (not listening yet, or gone)"
