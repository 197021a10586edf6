"""``tradedrill up --services redis,backend`` as a user runs it: ``up`` exits, yet a SIGKILLed backend comes back
(its BE-1 supervisor is a process of its own, shown by ``status``), and ``down`` stops the supervisor and the
backends by PID. Before: the supervisor was a thread of ``up``, so a killed backend never came back."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend.conftest import STACK_BLOCK
from tradedrill.process import same_process_alive
from tradedrill.services.backend import health_probe
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services

TD = [sys.executable, "-m", "tradedrill.cli"]
SUBNET = STACK_BLOCK


def run(*args, env=None, check=True):
    res = subprocess.run([*TD, *args], capture_output=True, text=True, env=env, timeout=180)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def _alive(entry: dict | None) -> bool:
    return bool(entry) and same_process_alive(entry["pid"], entry.get("create_time"))


def test_a_killed_backend_comes_back_after_up_has_exited_and_down_stops_its_supervisor(tmp_path):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (bash run.sh setup)")
    d = tmp_path / "stack"
    env = dict(os.environ, TRADEDRILL_STATE_DIR=str(tmp_path / "state"), COLUMNS="200")
    common = ["--dir", str(d)]
    seen: dict[str, dict] = {}
    try:
        run("up", *common, "--subnet", SUBNET, "--services", "redis,backend", "--set", "backend.port=18620",
            "--set", "backend.proxy_port=18690", env=env)
        state = json.loads((d / "stack.json").read_text())
        assert "backend" in state["supervised"] and "backend-supervisor" in state["nodes"]
        status = run("status", *common, env=env).stdout
        assert "backend-supervisor" in status

        def pids() -> dict:
            return json.loads((d / "pids.json").read_text())

        first = pids()["backend-a"]
        seen.update({"sup": pids()["backend-supervisor"], "first": first, "b": pids()["backend-b"]})
        assert _alive(first) and _alive(seen["sup"]) and _alive(seen["b"])
        os.kill(first["pid"], signal.SIGKILL)  # up is long gone: only a supervisor of its own can restart it
        wait_until(lambda: pids().get("backend-a", {}).get("pid") not in (None, first["pid"])
                   and _alive(pids()["backend-a"]), 20, "backend-a restarted by its detached supervisor")
        seen["second"] = pids()["backend-a"]
        spec = Topology.from_dict(state["topology"]).node("backend-a")
        wait_until(health_probe(spec.address, spec.port), 30, "the restarted backend to answer /health")
        events = [json.loads(line) for line in (d / "supervisor.jsonl").read_text().splitlines()]
        assert any(e["event"] == "restart" and e["program"] == "backend-a" for e in events)
    finally:
        out = run("down", *common, env=env).stdout
    assert "backend-supervisor" in out
    assert not any(_alive(e) for e in seen.values())
