"""The provider interface (tradedrill.providers.base): every provider's stack and node handle has what the drill
runner, the fault packages and the ground-truth dump use; every fault names the mechanisms it needs, so a provider
that lacks one skips the fault and says so instead of dropping it. No stack is started here."""
from __future__ import annotations

import json

import pytest

from scenarios.checkers import run_provider, run_validity
from scenarios.history import RunDir
from scenarios.packages import FAULTS
from tradedrill import providers
from tradedrill.providers.base import (CAPABILITIES, FAULT_NEEDS, NodeHandle, Stack, interface_gaps,
                                       missing_capabilities)
from tradedrill.services import redis as redis_svc
from tradedrill.topology import Topology, TopologyError


def test_every_fault_package_names_what_it_needs():
    assert sorted(set(FAULTS) - set(FAULT_NEEDS)) == []
    assert all(set(needs) <= set(CAPABILITIES) for needs in FAULT_NEEDS.values())


def test_the_local_stack_is_the_reference_provider(tmp_path):
    topo = Topology.default(subnet="127.0.97", services=("redis", "mt5", "engine"))
    stack = providers.build("local", topo, tmp_path / "stack")
    assert stack.provider == "local"
    assert interface_gaps(stack, Stack) == []
    assert set(stack.capabilities) == set(CAPABILITIES)   # the local provider can inject every fault
    assert all(missing_capabilities(f, stack.capabilities) == [] for f in FAULTS)


def test_a_local_node_handle_has_the_node_interface(tmp_path):
    topo = Topology.default(subnet="127.0.97", services=("redis",))
    spec = topo.node("redis-1")
    try:
        node = redis_svc.build_node(spec, topo, tmp_path, None)
    except Exception as exc:  # noqa: BLE001 - no redis-server on this machine
        pytest.skip(f"redis-server not installed: {exc}")
    assert interface_gaps(node, NodeHandle) == []


def test_unknown_provider_is_one_sentence():
    with pytest.raises(providers.UnknownProvider, match="providers: local, docker, external"):
        providers.stack_class("kubernetes")


def test_docker_topology_stays_in_its_block():
    topo = Topology.default(subnet="172.30.17", services=("redis",), network="docker")
    assert topo.node("redis-1").address == "172.30.17.2"
    for bad in ("172.31.1", "172.30.0", "10.0.0"):
        with pytest.raises(TopologyError):
            Topology.default(subnet=bad, services=("redis",), network="docker")
    with pytest.raises(TopologyError, match="not loopback"):
        Topology.default(subnet="172.30.17", services=("redis",))


def test_a_skipped_fault_is_reported_not_owed(tmp_path):
    """A run whose provider could not inject its fault is not invalid for the missing injection; provider.json
    names the fault and why."""
    scenario = {"name": "engine-kill", "faults": [{"fault": "process-kill", "target": "active-engine"}]}
    run = RunDir.create(tmp_path / "run-1", seed=1, scenario=scenario, config={})
    run.mark("complete")
    before = run_validity(run, scenario, [], [])
    assert any("process-kill" in r for r in before.reasons)
    (run.path / "provider.json").write_text(json.dumps({
        "provider": "external", "capabilities": ["fault-proxy"],
        "skipped_faults": [{"fault": "process-kill", "target": "active-engine", "missing": ["process"]}]}))
    after = run_validity(run, scenario, [], [])
    assert not any("process-kill" in r for r in after.reasons)
    assert run_provider(run)["provider"] == "external"
    assert run_provider(RunDir(tmp_path / "nowhere"))["provider"] == "local"
