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
    assert "stopped 6 node(s) of" in down
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
    res = run("up", "--dir", str(tmp_path / "stack"), "--set", "sentinel.down_after_ms=soon", check=False)
    assert res.returncode == 2 and "must be an integer" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "stack").exists()


def harness(stack_dir: Path):
    """The harness's Redis/Sentinel login, from the run folder's secrets."""
    from tradedrill.credentials import StackSecrets

    return StackSecrets.load(stack_dir).harness


def sentinel_down_after_ms(stack_dir: Path, address: str, port: int) -> int:
    from tradedrill.services import redis as redis_svc

    view = redis_svc.sentinel_view(address, port, "mymaster", credential=harness(stack_dir))
    return int(view["down-after-milliseconds"])


def test_a_second_up_into_the_same_folder_runs_the_new_settings(tmp_path):
    """Issue 9 item 6: `up --set sentinel.down_after_ms=1000` after a default `up` used to keep Sentinel's old
    3000 while stack.json said 1000."""
    d = tmp_path / "stack"
    common = ["--dir", str(d), "--subnet", "127.0.2", "--services", "redis",
              "--set", "redis.port=6396", "--set", "sentinel.port=26396"]
    try:
        run("up", *common)
        assert sentinel_down_after_ms(d, "127.0.2.5", 26396) == 3000
        run("up", *common, "--set", "sentinel.down_after_ms=1000", "--set", "redis.appendfsync=everysec")
        state = json.loads((d / "stack.json").read_text())
        assert state["topology"]["settings"]["sentinel.down_after_ms"] == 1000
        for address in ("127.0.2.5", "127.0.2.6", "127.0.2.7"):
            assert sentinel_down_after_ms(d, address, 26396) == 1000
        import redis

        for address in ("127.0.2.2", "127.0.2.3", "127.0.2.4"):
            c = redis.Redis(host=address, port=6396, socket_timeout=2, decode_responses=True,
                            **harness(d).redis_kwargs())
            assert c.config_get("appendfsync") == {"appendfsync": "everysec"}
            c.close()
    finally:
        run("down", "--dir", str(d))


def test_up_with_brokers_and_engines(tmp_path):
    d = tmp_path / "stack"
    common = ["--dir", str(d)]
    try:
        out = run("up", *common, "--subnet", "127.0.2", "--services", "redis,mt5,engine",
                  "--set", "redis.port=6397", "--set", "sentinel.port=26397", "--set", "mt5.port=18897").stdout
        assert "stack ready in" in out
        status = run("status", *common, env=dict(os.environ, COLUMNS="200")).stdout
        assert status.count("running") == 10
        assert "engine (active)" in status and "engine (passive)" in status
        assert "127.0.2.8:18897" in status and "127.0.2.11" in status
        config = json.loads((d / "engine.json").read_text())
        assert [b["params"]["host"] for b in config["brokers"]] == ["127.0.2.8", "127.0.2.9"]
    finally:
        down = run("down", *common).stdout
    assert "stopped 10 node(s) of" in down
