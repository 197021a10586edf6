"""The docker provider's node-disconnect fault (issue 17, step 4): a container cut off entirely with ``docker network
disconnect`` and put back with ``docker network connect`` at its own address and DNS name; the scenario package
builds it for a container node (an nftables isolation for a local one)."""
from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest

from tradedrill.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
SUBNET = os.environ.get("TRADEDRILL_DOCKER_TEST_SUBNET", "172.30.41")


def _connects(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_a_disconnected_node_is_unreachable_then_back_at_its_address_and_name(docker_client, tmp_path):
    from faults.core import FaultLog
    from faults.docker_net import NodeDisconnect
    from scenarios.packages import FAULTS
    from tradedrill.providers.docker import DockerStack

    s = DockerStack(DockerStack.drill_topology(SUBNET, ("redis",)), tmp_path / "stack", stop_engine=False)
    s.up()
    try:
        assert "node-disconnect" in s.capabilities
        victim, peer = s.node("redis-2"), s.node("redis-1").container
        target = SimpleNamespace(name=victim.name, kind="redis", address=victim.address, node=victim,
                                 supervised=False)
        ctx = SimpleNamespace(fault_log=FaultLog(tmp_path / "faults.jsonl"), requirement_ids=("RDS-2",))
        fault = FAULTS["node-disconnect"].build(ctx, target, {})
        assert isinstance(fault, NodeDisconnect)
        reach = ["timeout", "2", "bash", "-c", f"</dev/tcp/{victim.address}/6379"]
        assert _connects(victim.address, victim.port) and peer.exec_run(reach).exit_code == 0
        fault.inject()
        try:
            assert not victim.connected() and victim.is_alive()           # cut off, still running
            assert not _connects(victim.address, victim.port)               # from the harness (the gateway)
            assert peer.exec_run(reach).exit_code != 0                      # from another container
            assert peer.exec_run(["getent", "hosts", "redis-2"]).exit_code != 0   # its DNS name is gone too
            assert victim.container.exec_run(["getent", "hosts", "redis-1"]).exit_code != 0
        finally:
            fault.heal()
        assert victim.connected()
        wait_until(lambda: _connects(victim.address, victim.port), 10, "the reconnected node to answer")
        assert peer.exec_run(reach).exit_code == 0
        out = peer.exec_run(["getent", "hosts", "redis-2"]).output.decode()
        assert out.split()[0] == victim.address                             # same address, same name
        assert [e["event"] for e in ctx.fault_log.read()] == ["inject", "heal"]
    finally:
        s.down()
