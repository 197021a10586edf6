"""A docker drill SIGKILLed midway (its partition injected, no teardown run) and then ``tradedrill down``: no
container, network or volume of the run is left, the dockerd the drill started is stopped, and neither the run's
bridge (with the harness's client addresses on it) nor the drill's nftables table in the harness's namespace is
left behind (issue 17, "Done means": nothing we started is left, also when a scenario fails).

This test owns the engine: it stops a dockerd an earlier harness process of this machine started (never another
one), so that the drill starts its own, and checks afterwards with a dockerd it starts and stops itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tradedrill.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
SUBNET = os.environ.get("TRADEDRILL_DOCKER_TEST_SUBNET", "172.30.41")


def _our_objects(client) -> dict[str, list[str]]:
    from tradedrill.docker import labels

    flt = {"label": f"{labels.PROVIDER}=docker"}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in client.networks.list(filters=flt)],
            "volumes": [v.name for v in client.volumes.list(filters=flt)]}


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout


def _nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10).stdout


def _inject_record(out: Path) -> dict | None:
    for path in out.rglob("faults.jsonl"):
        for line in path.read_text().splitlines():
            if '"inject"' in line:
                return json.loads(line)
    return None


def test_a_drill_killed_during_its_partition_leaves_nothing_after_tradedrill_down(tmp_path):
    from tradedrill.docker import engine

    if engine.answers():
        if engine.recorded() is None:
            pytest.skip("a Docker engine this harness did not start runs here: the dockerd half cannot be checked")
        engine.stop_recorded()                     # an earlier harness's (e.g. this session's): ours to stop
    assert not engine.answers()
    env = {**os.environ}
    env.pop("TRADEDRILL_DOCKER_KEEP_ENGINE", None)
    out = tmp_path / "out"
    drill = subprocess.Popen([sys.executable, "-m", "tradedrill.cli", "drill", "redis-primary-isolated",
                              "--provider", "docker", "--subnet", SUBNET, "--repeat", "1", "--seed", "7",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
    try:
        wait_until(lambda: _inject_record(out) is not None or drill.poll() is not None, 420,
                   "the drill to inject its partition")
        assert drill.poll() is None, drill.communicate()[0][-3000:]
        started = engine.recorded()
        assert started is not None and started.started        # the drill started dockerd and recorded it
        client = engine.client()
        try:
            before = _our_objects(client)
            run_id = next(c for c in client.containers.list(filters={"label": "io.tradedrill.provider=docker"})
                          ).labels["io.tradedrill.run"]
        finally:
            client.close()
        assert len(before["containers"]) >= 10 and before["networks"]
        assert f"td-{run_id}" in _links()
        table = _inject_record(out)["details"]["table"]
        assert table in _nft_tables()                          # the partition's rules in the harness's namespace
        drill.send_signal(signal.SIGKILL)
        drill.wait(30)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait(30)
    assert engine.answers(), "dockerd is the drill's child in a session of its own: it outlives the SIGKILL"
    down = subprocess.run([sys.executable, "-m", "tradedrill.cli", "down", "--dir", str(tmp_path / "nostack")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stdout and "stopped the dockerd" in down.stdout, down.stdout
    assert not engine.answers() and engine.recorded() is None
    assert f"td-{run_id}" not in _links()                      # the bridge went with the network
    assert table not in _nft_tables()
    # and nothing of the run on the engine's disk: look with a dockerd of this test's own
    check = engine.ensure()
    try:
        client = engine.client()
        try:
            assert _our_objects(client) == {"containers": [], "networks": [], "volumes": []}
            assert not client.volumes.list(filters={"dangling": True})
        finally:
            client.close()
    finally:
        check.stop()
    assert not engine.answers()
