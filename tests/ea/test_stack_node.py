"""The ``ea`` node kind of the topology: ``tradedrill up --services mt5,ea`` runs supervised EAs side by side, each
on its own address and port, reading the primary broker; consumers read each of them; ``down`` stops them all."""
from __future__ import annotations

from reference.ea.consumer import ConsumerConfig, TickConsumer
from tradedrill.local import LocalStack, probe_health
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

from .conftest import CONSUMER_HOSTS


def test_two_ea_nodes_stream_side_by_side_under_the_supervisor(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    topo = Topology.default(subnet="127.0.82", services=("mt5", "ea"),
                            overrides={"ea.count": 2, "ea.port": 18990, "mt5.port": 18991})
    stack = LocalStack(topo, tmp_path / "stack")
    consumers = []
    try:
        stack.up()
        eas = [s for s in topo.nodes if s.kind == "ea"]
        assert [s.name for s in eas] == ["ea-1", "ea-2"] and len({s.address for s in eas}) == 2
        for spec, host in zip(eas, CONSUMER_HOSTS):
            c = TickConsumer(ConsumerConfig((spec.address, spec.port), (spec.address, spec.port),
                                            consumer_id=spec.name, bind_host=host))
            consumers.append(c.start())
        wait_until(lambda: all(c.delivered > 50 for c in consumers), 30, "ticks from both EAs")
        assert consumers[0].stream != consumers[1].stream
        assert "ea" in stack.supervised_kinds
        assert all(probe_health(s, stack.run_dir) == "ok" for s in eas)
    finally:
        for c in consumers:
            c.stop()
        stack.down()
    assert not any(n.is_alive() for n in stack.nodes.values())
