"""The docker provider end to end: the topology as containers (one address and DNS name each), the node handle's
faults, a drill with the same checkers and report, and nothing left behind (a drill killed midway:
test_killed_midway.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.conftest import tradedrill_objects
from tradedrill.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
SUBNET = os.environ.get("TRADEDRILL_DOCKER_TEST_SUBNET", "172.30.41")


@pytest.fixture
def stack(docker_client, tmp_path, monkeypatch):
    from tradedrill.providers.docker import DockerStack

    topo = DockerStack.drill_topology(SUBNET, ("redis", "mt5", "engine"))
    s = DockerStack(topo, tmp_path / "stack", stop_engine=False)
    s.up()
    yield s
    s.down()


def test_every_node_is_a_container_with_its_own_address_name_and_faults(stack, docker_client):
    names = {c.name for c in docker_client.containers.list(filters={"label": f"io.tradedrill.run={stack.run_id}"})}
    assert len(names) == len(stack.nodes) == 10   # 3 Redis, 3 Sentinels, 2 brokers, 2 engines
    engine = stack.node("engine-b")
    # its own address, and the others reachable by DNS name on the run's network
    out = engine.container.exec_run(["getent", "hosts", "redis-1"]).output.decode()
    assert out.split()[0] == stack.node("redis-1").address == f"{SUBNET}.2"
    assert stack.redis_primary() == (f"{SUBNET}.2", 6379)
    assert stack.lease_holder() == "A"
    # kill: the supervisor starts the same container again (same address)
    active = stack.active_engine()
    active.kill()
    assert not active.is_alive()
    wait_until(active.is_alive, 30, "the engines' supervisor to restart the killed engine's container")
    assert active.starts == 2 and active.container.attrs["NetworkSettings"]["Networks"]
    # pause: the cgroup freezer; the node answers nothing until resumed
    replica = stack.node("redis-3")
    replica.pause()
    replica.container.reload()
    assert replica.container.status == "paused"
    client = stack.redis_node_client("redis-3", timeout=0.3)
    with pytest.raises(Exception):
        client.ping()
    replica.resume()
    wait_until(lambda: stack.redis_node_client("redis-3", timeout=0.3).ping(), 10, "the resumed replica to answer")


def test_down_removes_every_container_and_network_of_the_run(docker_client, tmp_path):
    from tradedrill.providers.docker import DockerStack

    s = DockerStack(DockerStack.drill_topology(SUBNET, ("redis",)), tmp_path / "stack", stop_engine=False)
    s.up()
    assert tradedrill_objects(docker_client)
    s.down()
    assert tradedrill_objects(docker_client) == []


def _drill(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tradedrill.cli", "drill", "engine-kill", "--provider", "docker",
                             "--subnet", SUBNET, "--repeat", "1", "--seed", "7", "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TRADEDRILL_DOCKER_KEEP_ENGINE": "1"})


def test_engine_kill_drill_on_docker_is_judged_like_local_and_says_its_provider(docker_client, tmp_path):
    proc = _drill(tmp_path / "out", "--duration", "12", "--settle", "5")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), output
    report = json.loads(next((tmp_path / "out").rglob("report.json")).read_text())
    run = report["runs"][0]
    assert run["valid"] is not None and run["run_validity"]["valid"], output
    assert run["provider"]["provider"] == "docker"
    by_checker = {r["checker"]: r for r in run["results"]}
    for checker in ("duplicates", "lost_signals", "one_active"):
        assert by_checker[checker]["valid"] is True, by_checker[checker]
    html = next((tmp_path / "out").rglob("report.html")).read_text()
    assert 'class="provider">docker<' in html
    assert tradedrill_objects(docker_client) == []


def test_a_partition_between_containers_is_made_in_their_namespaces_and_healed(docker_client, tmp_path):
    from faults.kernel import Partition
    from tradedrill.providers.docker import DockerStack

    s = DockerStack(DockerStack.drill_topology(SUBNET, ("redis",)), tmp_path / "stack", stop_engine=False)
    s.up()
    try:
        primary, replica = s.node("redis-1"), s.node("redis-2").container
        reach = ["timeout", "2", "bash", "-c", f"</dev/tcp/{primary.address}/6379"]
        fault = s.place_fault(Partition([[primary.address], [s.node("redis-2").address]]))
        fault.inject()
        assert replica.exec_run(reach).exit_code != 0       # cut between the two containers
        assert s.redis_node_client("redis-1", 0.5).ping()   # the harness (the bridge's gateway) is on no side
        fault.heal()
        assert replica.exec_run(reach).exit_code == 0
    finally:
        s.down()


def _connects(source: str, address: str, port: int) -> bool:
    import socket

    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.bind((source, 0))
        s.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_a_partition_cuts_the_harnesss_own_client_addresses_and_udp_loss_reaches_the_host(docker_client, tmp_path):
    """The set writers and tick consumers leave from host addresses on the run's bridge (.200, .150): a partition
    places them on a side like any node, and "the harness" (127.0.0.1 in a scenario's shape) is the gateway."""
    from faults.kernel import Partition
    from faults.partition import CLIENT_SOURCE
    from tradedrill.providers.docker import DockerStack

    s = DockerStack(DockerStack.drill_topology(SUBNET, ("redis",)), tmp_path / "stack", stop_engine=False)
    s.up()
    try:
        primary = s.node("redis-1")
        writer, other = f"{SUBNET}.200", f"{SUBNET}.201"
        assert writer in s.host_addresses and _connects(writer, primary.address, primary.port)
        fault = s.place_fault(Partition([[primary.address, other], [writer, CLIENT_SOURCE]]))
        assert fault.groups[1] == [writer, s.gateway]
        fault.inject()
        try:
            assert not _connects(writer, primary.address, primary.port)        # the writer's side is cut
            assert not _connects(s.gateway, primary.address, primary.port)     # so is the harness's
            assert _connects(other, primary.address, primary.port)            # a minority-side client is not
            assert _connects(writer, s.node("redis-2").address, 6379)          # nor is anything else
        finally:
            fault.heal()
        assert _connects(writer, primary.address, primary.port)
    finally:
        s.down()
    assert f"td-{s.run_id}" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
