"""``tradedrill up | status | down`` as a user runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradedrill.process import same_process_alive

pytestmark = pytest.mark.services
TD = [sys.executable, "-m", "tradedrill.cli"]


def run(*args, env=None, check=True):
    res = subprocess.run([*TD, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def test_up_status_down(tmp_path):
    d = tmp_path / "stack"
    common = ["--dir", str(d)]
    try:
        out = run("up", *common, "--subnet", "127.0.2", "--services", "redis",
                  "--set", "redis.port=6393", "--set", "sentinel.port=26393").stdout
        assert "stack ready in" in out
        status = run("status", *common).stdout
        assert "Redis primary (as the Sentinels see it): 127.0.2.2:6393" in status
        assert status.count("running") == 6
        pids = json.loads((d / "pids.json").read_text())
    finally:
        down = run("down", *common).stdout
    assert "stopped 6 node(s)" in down
    assert not any(same_process_alive(e["pid"], e["create_time"]) for e in pids.values())
    res = run("status", *common, check=False)
    assert res.returncode == 1 and "no stack is running" in res.stdout


def test_a_missing_debian_package_names_the_install_command(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    res = run("up", "--dir", str(tmp_path), "--subnet", "127.0.2", "--services", "redis", env=env, check=False)
    assert res.returncode == 2
    assert "apt-get install -y redis-server" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_settings_are_sentences_not_tracebacks(tmp_path):
    res = run("up", "--dir", str(tmp_path), "--set", "sentinel.down_after_ms=soon", check=False)
    assert res.returncode == 2 and "must be a int" in res.stderr and "Traceback" not in res.stderr
