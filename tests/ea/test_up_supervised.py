"""``tradedrill up --services mt5,ea`` as a user runs it: ``up`` exits, yet a SIGKILLed EA comes back (its EA-1
supervisor is a process of its own, shown by ``status``), and ``down`` stops the supervisor and the EAs by PID."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tradedrill.process import same_process_alive
from tradedrill.services.ea import ping
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

from .conftest import BLOCK

TD = [sys.executable, "-m", "tradedrill.cli"]


def run(*args, env=None, check=True):
    res = subprocess.run([*TD, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def _alive(entry: dict | None) -> bool:
    return bool(entry) and same_process_alive(entry["pid"], entry.get("create_time"))


def test_a_killed_ea_comes_back_after_up_has_exited_and_down_stops_its_supervisor(tmp_path):
    d = tmp_path / "stack"
    env = dict(os.environ, TRADEDRILL_STATE_DIR=str(tmp_path / "state"), COLUMNS="200")
    common = ["--dir", str(d)]
    seen: dict[str, dict] = {}
    try:
        run("up", *common, "--subnet", BLOCK, "--services", "mt5,ea", "--set", "ea.port=18994",
            "--set", "mt5.port=18995", env=env)
        state = json.loads((d / "stack.json").read_text())
        assert "ea" in state["supervised"] and "ea-supervisor" in state["nodes"]
        status = run("status", *common, env=env).stdout
        assert "ea-supervisor" in status

        def pids() -> dict:
            return json.loads((d / "pids.json").read_text())

        first = pids()["ea-1"]
        seen.update({"sup": pids()["ea-supervisor"], "first": first})
        assert _alive(first) and _alive(seen["sup"])
        os.kill(first["pid"], signal.SIGKILL)  # up is long gone: only a supervisor of its own can restart it
        wait_until(lambda: pids().get("ea-1", {}).get("pid") not in (None, first["pid"]) and _alive(pids()["ea-1"]),
                   20, "the EA restarted by its detached supervisor")
        seen["second"] = pids()["ea-1"]
        spec = Topology.from_dict(state["topology"]).node("ea-1")
        wait_until(lambda: ping(spec.address, spec.port), 20, "the restarted EA to serve")
        events = [json.loads(line) for line in (d / "supervisor.jsonl").read_text().splitlines()]
        assert any(e["event"] == "restart" and e["program"] == "ea-1" for e in events)
    finally:
        out = run("down", *common, env=env).stdout
    assert "ea-supervisor" in out
    assert not any(_alive(e) for e in seen.values())
