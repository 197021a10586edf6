"""The locust CLI on scenarios/locustfiles.py without TRADEDRILL_LOAD_SPEC (the new user's defect 7): every user
crashed with ``AttributeError: 'Environment' object has no attribute 'tradedrill'`` (a traceback per user) and
locust exited 1. Now it is refused like a missing or stale spec: one line on stderr, exit 2, before any user
starts. No stack: the processes exit before they would need one. About 5 s."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = str(ROOT / "scenarios" / "locustfiles.py")
HOST = os.environ.get("TRADEDRILL_LOAD_TEST_HOST2", "127.0.101.2")


def _run(args: list[str], spec_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRADEDRILL_LOAD_SPEC"}
    env["PYTHONPATH"] = str(ROOT)
    if spec_value is not None:
        env["TRADEDRILL_LOAD_SPEC"] = spec_value
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spec_value", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize("role", [
    ["--headless", "-u", "3", "-r", "3", "-t", "3s"],
    ["--worker", "--master-host", HOST, "--master-port", "5999"],
], ids=["headless", "worker"])
def test_locust_without_a_spec_is_refused_in_one_line(role, spec_value):
    got = _run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, *role], spec_value)
    assert got.returncode == 2, got.stderr[-2000:]
    assert "Traceback" not in got.stderr and "AttributeError" not in got.stderr, got.stderr[-2000:]
    refused = [line for line in got.stderr.splitlines() if "refused" in line]
    assert len(refused) == 1, got.stderr[-2000:]
    assert refused[0].startswith("tradedrill load: refused: TRADEDRILL_LOAD_SPEC is not set")
    assert "tradedrill load-spec" in refused[0] and "export TRADEDRILL_LOAD_SPEC=" in refused[0]
