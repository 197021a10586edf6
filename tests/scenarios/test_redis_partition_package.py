"""The Redis partition package (issue 12) draws its sides from the live topology: the primary with the members the
scenario names and the minority writers on one side, everything else of the Redis group and its clients on the
other, the brokers left out; the seeded split replays; a malformed step fails at registration naming the field."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from faults.core import FaultLog
from scenarios import registry
from scenarios.packages import FAULTS, check_step
from scenarios.registry import Workload
from tradedrill.topology import Topology

SUBNET = "127.0.63"
WRITERS = [{"name": "minority", "side": "minority"}, {"name": "minority-wait", "side": "minority", "wait": True},
           {"name": "majority", "side": "majority"}]


def ctx(tmp_path, seed=1):
    topo = Topology.default(subnet=SUBNET, services=registry.DRILL_SERVICES)
    nodes = {n.name: n for n in topo.nodes}

    def resolve(role):
        name = {"active-engine": "engine-a", "passive-engine": "engine-b", "redis-primary": "redis-1"}.get(role, role)
        return SimpleNamespace(name=name, kind=nodes[name].kind, address=nodes[name].address, node=None,
                               supervised=False)

    return SimpleNamespace(topology=topo, stack=None, seed=seed, fault_log=FaultLog(tmp_path / "faults.jsonl"),
                           requirement_ids=("RDS-4",), resolve=resolve,
                           workload=lambda: Workload(params={"writers": WRITERS})), nodes


def build(c, **params):
    return FAULTS["redis-partition"].build(c, c.resolve("redis-primary"), params)


def test_isolate_puts_the_primary_with_the_active_engine_and_the_minority_writers(tmp_path):
    c, nodes = ctx(tmp_path)
    fault = build(c, shape="isolate", **{"with": ["active-engine"]})
    minority, majority = fault.groups
    assert set(fault.sides["minority"]) == {"redis-1", "engine-a", "writer-minority", "writer-minority-wait"}
    assert {"redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "engine-b", "writer-majority",
            "harness"} == set(fault.sides["majority"])
    assert nodes["redis-1"].address in minority and "127.0.0.1" in majority
    brokers = {n.address for n in nodes.values() if n.kind == "mt5"}
    assert not brokers & (set(minority) | set(majority)), "the broker links must stay up"
    assert fault.details()["shape"] == "isolate" and fault.details()["sides"] == fault.sides


def test_majority_minority_replays_from_the_seed_with_the_primary_in_the_minority(tmp_path):
    c, _ = ctx(tmp_path, seed=5)
    first = build(c, shape="majority-minority").sides
    assert first == build(c, shape="majority-minority").sides
    redis_and_sentinels = [s for s in first["minority"] if s.startswith(("redis-", "sentinel-"))]
    assert "redis-1" in redis_and_sentinels and len(redis_and_sentinels) == 2   # (6 - 1) // 2 of 6 nodes
    assert {"writer-minority", "writer-minority-wait"} <= set(first["minority"])
    splits = {tuple(sorted(build(ctx(tmp_path, seed=s)[0], shape="majority-minority").sides["minority"]))
              for s in range(12)}
    assert len(splits) > 1, "different seeds should draw different minorities"


def test_sentinels_apart_leaves_no_side_with_a_quorum(tmp_path):
    c, nodes = ctx(tmp_path)
    fault = build(c, shape="sentinels-apart")
    assert sorted(fault.groups) == sorted([[nodes[f"sentinel-{i}"].address] for i in (1, 2, 3)])


@pytest.mark.parametrize("params, problem", [
    ({"shape": "islands"}, "shape 'islands' must be one of"),
    ({"shape": "isolate", "with": ["redis-replica"]}, "with ['redis-replica'] must be a list of"),
    ({"shape": "sentinels-apart", "with": ["active-engine"]}, "sentinels-apart places no other member"),
    ({"shape": "isolate", "mode": "slow"}, "mode 'slow' must be drop or reset"),
])
def test_a_malformed_partition_step_names_what_is_wrong(params, problem):
    kinds = {n.name: n.kind for n in Topology.default(services=registry.DRILL_SERVICES).nodes}
    assert any(problem in p for p in check_step("redis-partition", "redis-primary", params, kinds))


def test_writers_are_checked_at_registration():
    from scenarios.setclients import writer_specs
    assert [w.process for w in writer_specs({"writers": WRITERS})] == \
        ["writer-minority", "writer-minority-wait", "writer-majority"]
    for bad, field in [([{"name": "a", "side": "left"}], "side"), ([{"name": "a b", "side": "majority"}], "name"),
                       ([{"name": "a", "side": "majority", "wait": "yes"}], "wait"),
                       ([{"name": "a", "side": "majority"}] * 2, "appears twice"), ("a", "a list")]:
        with pytest.raises(ValueError, match=field):
            writer_specs({"writers": bad})


def test_a_wait_no_topology_can_confirm_fails_at_registration():
    """Found by a new user: a WAIT 3 writer (two replicas) was accepted, and its writes, never confirmed, made
    "0 of 0 WAIT-confirmed writes lost" a pass."""
    import dataclasses

    from scenarios.registry import ScenarioError
    base = registry.get("redis-primary-isolated")
    bad = dataclasses.replace(base, name="wait-three", workload=dataclasses.replace(
        base.workload, params={"writers": [{"name": "w", "side": "minority", "wait": 3}]}))
    with pytest.raises(ScenarioError, match=r"writers\[0\]\.wait: WAIT 3 can never be confirmed by the topology's "
                                            r"2 replica"):
        registry.validate(bad)
