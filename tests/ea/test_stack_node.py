"""The ``ea`` node kind of the topology: ``tradedrill up --services mt5,ea`` runs supervised EAs side by side, each
on its own address and port, reading the primary broker; consumers read each of them; ``down`` stops them all."""
from __future__ import annotations

from reference.ea.consumer import ConsumerConfig, TickConsumer
from tradedrill.local import LocalStack, probe_health
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

from .conftest import BLOCK, CONSUMER_HOSTS


def test_two_ea_nodes_stream_side_by_side_under_the_supervisor(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    topo = Topology.default(subnet=BLOCK, services=("mt5", "ea"),
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
        # stop_kind then start_kind (the stateful test's EA restart): both back under a supervisor, streaming again
        old_pids = {n.name: n.pid for n in stack.of_kind("ea").values()}
        assert stack.stop_kind("ea") == [] and not any(n.is_alive() for n in stack.of_kind("ea").values())
        assert "ea" not in stack.supervisors   # nothing restarts them meanwhile
        stack.start_kind("ea", 20.0)
        assert "ea" in stack.supervisors
        assert all(n.is_alive() and n.pid != old_pids[n.name] for n in stack.of_kind("ea").values())
        before = [c.delivered for c in consumers]
        wait_until(lambda: all(c.delivered > b + 20 for c, b in zip(consumers, before)), 30,
                   "ticks from both restarted EAs")
    finally:
        for c in consumers:
            c.stop()
        stack.down()
    assert not any(n.is_alive() for n in stack.nodes.values())


def test_an_ea_node_keeps_its_session_in_ris_as_its_own_redis_user_and_resumes_it_after_a_kill(tmp_path,
                                                                                             monkeypatch):
    """EA-3 in the stack: the EA logs in as the `ea` user (its own session hash and nothing else), finds the primary
    through the Sentinels, writes its session, and a restarted EA resumes the same session."""
    import json

    import redis as redis_lib

    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    topo = Topology.default(subnet=BLOCK, services=("redis", "mt5", "ea"),
                            overrides={"ea.count": 1, "ea.port": 18992, "mt5.port": 18993})
    stack = LocalStack(topo, tmp_path / "stack")
    try:
        stack.up()
        r = stack.redis()
        key = "tradedrill:ea:ea-1:session"
        first = wait_until(lambda: r.hget(key, "session_id"), 20, "the EA's session in RIS")
        users = {c["user"] for c in r.client_list() if c.get("name", "").startswith("ea-")}
        assert users == {"ea"}, users
        ea_cred = stack.secrets.redis("ea")
        host, port = stack.redis_primary()
        as_ea = redis_lib.Redis(host=host, port=port, username=ea_cred.username, password=ea_cred.password,
                                decode_responses=True)
        try:   # the EA's user may not touch the engine's keys
            as_ea.xadd("RTSS", {"x": "1"})
            raise AssertionError("the ea user could write RTSS")
        except redis_lib.exceptions.NoPermissionError:
            pass
        node = stack.node("ea-1")
        pid = node.pid
        node.kill()
        wait_until(lambda: node.pid not in (None, pid) and node.is_alive(), 20, "the supervisor to restart the EA")
        events = node.extra["events"]
        wait_until(lambda: any(json.loads(line).get("event") == "session_resumed"
                               for line in open(events)), 20, "the restarted EA to resume its session")
        assert r.hget(key, "session_id") == first and int(r.hget(key, "starts")) >= 2
    finally:
        stack.down()
    assert not any(n.is_alive() for n in stack.nodes.values())
