"""The whole local topology against the real services: up, down with nothing left, and the basic recoveries."""
from __future__ import annotations

import json
import socket
import time

import psutil
import pytest

from tradedrill.credentials import StackSecrets
from tradedrill.local import LocalStack, StackError
from tradedrill.process import same_process_alive
from tradedrill.services import redis as redis_svc
from tradedrill.topology import Topology

pytestmark = pytest.mark.services
SUBNET = "127.0.2"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(Topology.default(subnet=SUBNET), tmp_path_factory.mktemp("stack")) as running:
        yield running


def test_up_and_down_leave_no_process_behind(tmp_path):
    topo = Topology.default(subnet="127.0.2", services=("redis",), overrides={"redis.port": 6390, "sentinel.port": 26390})
    stack = LocalStack(topo, tmp_path)
    with stack:
        pids = {name: (n.pid, n.create_time) for name, n in stack.nodes.items()}
        assert all(same_process_alive(pid, ct) for pid, ct in pids.values())
        assert stack.redis_primary() == ("127.0.2.2", 6390)
    alive = [name for name, (pid, ct) in pids.items() if same_process_alive(pid, ct)]
    assert alive == []
    assert not (tmp_path / "stack.json").exists()


def test_a_second_up_reaps_what_a_crashed_run_left(tmp_path):
    topo = Topology.default(subnet="127.0.2", services=("redis",), overrides={"redis.port": 6391, "sentinel.port": 26391, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1})
    crashed = LocalStack(topo, tmp_path).up()
    orphan = crashed.node("redis-1")
    # the first run "crashes": its handles are dropped without teardown
    second = LocalStack(topo, tmp_path)
    try:
        second.up()
        assert not same_process_alive(orphan.pid, orphan.create_time)
        assert second.node("redis-1").pid != orphan.pid
    finally:
        second.down()
        crashed.down()


def test_a_port_in_use_names_the_process_holding_it(tmp_path):
    topo = Topology.default(subnet="127.0.2", services=("redis",), overrides={"redis.port": 6392, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1})
    with socket.socket() as squatter:
        squatter.bind(("127.0.2.2", 6392))
        squatter.listen()
        with pytest.raises(StackError, match=rf"127\.0\.2\.2:6392: it is held by pid {psutil.Process().pid}"):
            LocalStack(topo, tmp_path).up()


def test_sigkill_of_the_redis_primary_promotes_a_replica_and_writes_go_on(stack, record_property):
    sentinel = stack.sentinel(timeout=0.3)
    writer = sentinel.master_for(stack.master_name, socket_timeout=0.3, socket_connect_timeout=0.3)
    assert writer.set("before", "1")
    old = stack.redis_primary()
    primary = next(n for n in stack.nodes.values() if (n.address, n.port) == old)
    killed_at = time.monotonic()
    primary.kill()
    promoted = stack.wait_for_new_primary(old, timeout=15)
    promoted_s = time.monotonic() - killed_at

    def write():
        try:
            return writer.set("after", "1")
        except Exception:  # noqa: BLE001 - unknown outcome while the primary is down; try again
            return False

    from tradedrill.waiting import wait_until

    wait_until(write, 15, "a write through the Sentinel-aware client to succeed")
    first_write_s = time.monotonic() - killed_at
    record_property("redis_failover_promoted_s", round(promoted_s, 3))
    record_property("redis_failover_first_write_s", round(first_write_s, 3))
    print(f"promoted {promoted} after {promoted_s:.2f} s, first write after {first_write_s:.2f} s")
    assert promoted != old
    failover_timeout_s = stack.topology.settings["sentinel.failover_timeout_ms"] / 1000
    assert promoted_s <= failover_timeout_s
    assert writer.get("before") == "1"
    # the old primary comes back as a replica of the new one
    primary.start().wait_ready()
    wait_until(lambda: redis_svc.replication_role(primary.address, primary.port,
                                                  credential=stack.harness_credential) == "slave", 20,
               "the old primary to rejoin as a replica")


def test_clickhouse_keeps_acknowledged_rows_across_sigkill(stack):
    ch = stack.clickhouse_client()
    ch.command("CREATE TABLE IF NOT EXISTS fills (order_id UInt64, volume Float64) ENGINE = MergeTree ORDER BY order_id")
    rows = [[i, 0.1 * i] for i in range(1, 501)]
    ch.insert("fills", rows, column_names=["order_id", "volume"], column_type_names=["UInt64", "Float64"])
    node = stack.node("clickhouse")
    node.kill()
    node.start().wait_ready()
    ch = stack.clickhouse_client()
    assert ch.command("SELECT count() FROM fills") == 500
    assert ch.command("SELECT max(order_id) FROM fills") == 500


def test_postgres_keeps_committed_rows_across_restart_and_sigkill(stack):
    import psycopg

    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS credentials (login bigint primary key, server text)")
        conn.execute("INSERT INTO credentials VALUES (1001, 'Broker-Demo'), (1002, 'Broker-Backup') ON CONFLICT DO NOTHING")
    node = stack.node("postgres")
    node.restart()
    with psycopg.connect(stack.postgres_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM credentials").fetchone()[0] == 2
        conn.execute("INSERT INTO credentials VALUES (1003, 'Broker-Third')")
        conn.commit()
    node.kill()
    node.start().wait_ready()
    with psycopg.connect(stack.postgres_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM credentials").fetchone()[0] == 3


def test_pause_makes_a_node_unresponsive_and_resume_heals(stack):
    node = stack.node("sentinel-3")
    node.pause()
    try:
        assert not _pings(stack, node)
    finally:
        node.resume()
    assert _pings(stack, node)


def _pings(stack, node) -> bool:
    try:
        return redis_svc.ping(node.address, node.port, timeout=0.3, credential=stack.harness_credential)
    except Exception:  # noqa: BLE001
        return False


# -- run folders that tell the truth (issue 9 item 6) ------------------------------------------------------------------
def _harness(run_dir):
    return StackSecrets.load(run_dir).harness


def _live(run_dir, address: str, port: int, *names: str) -> dict:
    c = redis_svc.client(address, port, timeout=2.0, credential=_harness(run_dir))
    try:
        out = {}
        for name in names:
            out.update(c.config_get(name))
        return out
    finally:
        c.close()


def test_every_up_renders_the_configs_from_the_current_settings(tmp_path):
    """What an earlier run left in the folder (a failover's CONFIG REWRITE, Sentinel's rewritten config, other
    settings) never makes the running config differ from the settings of this `up`."""
    base = {"redis.port": 6394, "sentinel.port": 26394, "redis.replicas": 1, "sentinel.count": 2}
    first = Topology.default(subnet=SUBNET, services=("redis",), overrides=base)
    with LocalStack(first, tmp_path) as stack:
        replica = stack.node("redis-2")
        c = redis_svc.client(replica.address, replica.port, timeout=2.0, credential=stack.harness_credential)
        c.execute_command("REPLICAOF", "NO", "ONE")  # what a promotion leaves behind
        c.config_set("appendfsync", "no")
        c.execute_command("CONFIG", "REWRITE")
        c.close()
        for s in first.of_kind("sentinel"):
            sc = redis_svc.client(s.address, s.port, timeout=2.0, credential=stack.harness_credential)
            sc.execute_command("SENTINEL", "SET", "mymaster", "down-after-milliseconds", "7777")
            sc.close()
        assert "replicaof" not in redis_svc.config_path(first.node("redis-2"), tmp_path).read_text()
        assert "7777" in redis_svc.config_path(first.node("sentinel-1"), tmp_path).read_text()
    second = Topology.default(subnet=SUBNET, services=("redis",), overrides={
        **base, "sentinel.down_after_ms": 1000, "redis.appendfsync": "everysec", "redis.save": "",
        "redis.maxmemory_policy": "allkeys-lru"})
    with LocalStack(second, tmp_path) as stack:
        for spec in second.of_kind("redis"):
            assert _live(tmp_path, spec.address, spec.port, "appendfsync", "save", "maxmemory-policy") == {
                "appendfsync": "everysec", "save": "", "maxmemory-policy": "allkeys-lru"}, spec.name
        harness = stack.harness_credential
        assert redis_svc.replication_role("127.0.2.3", 6394, credential=harness) == "slave", \
            "redis-2 is the replica it is set to be"
        assert stack.redis_primary() == ("127.0.2.2", 6394)
        for spec in second.of_kind("sentinel"):
            view = redis_svc.sentinel_view(spec.address, spec.port, "mymaster", credential=harness)
            assert int(view["down-after-milliseconds"]) == 1000, spec.name
        state = json.loads((tmp_path / "stack.json").read_text())
        assert state["topology"]["settings"]["sentinel.down_after_ms"] == 1000


def test_a_restart_within_a_run_keeps_what_the_node_rewrote(tmp_path):
    topo = Topology.default(subnet=SUBNET, services=("redis",))
    node = redis_svc.build_node(topo.node("redis-2"), topo, tmp_path, None)
    conf = redis_svc.config_path(topo.node("redis-2"), tmp_path)
    node.before_start()
    assert "replicaof 127.0.2.2 6379" in conf.read_text()
    conf.write_text(conf.read_text().replace("replicaof 127.0.2.2 6379", "# promoted by a failover"))
    node.before_start()  # a fault's heal restarts the same handle
    assert "promoted by a failover" in conf.read_text()
    fresh = redis_svc.build_node(topo.node("redis-2"), topo, tmp_path, None)  # the next `up`
    fresh.before_start()
    assert "replicaof 127.0.2.2 6379" in conf.read_text()


def test_redis_accepts_the_edge_values_it_is_given(tmp_path):
    """A run folder with a space in its path, several save rules, and memory units all reach a real redis-server."""
    topo = Topology.default(subnet=SUBNET, services=("redis",), overrides={
        "redis.port": 6395, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1,
        "redis.save": "900 1  300 10", "redis.maxmemory": "1gb", "redis.auto_aof_rewrite_min_size": "32MB",
        "redis.appendonly": False})
    node = redis_svc.build_node(topo.node("redis-1"), topo, tmp_path / "run folder", None)
    try:
        node.start().wait_ready()
        assert _live(tmp_path / "run folder", "127.0.2.2", 6395, "save", "maxmemory", "appendonly", "dir") == {
            "save": "900 1 300 10", "maxmemory": str(2**30), "appendonly": "no",
            "dir": str(tmp_path / "run folder" / "data" / "redis-1")}
    finally:
        node.stop()


# -- brokers and engines as nodes of the topology ----------------------------------------------------------------------
def test_a_stack_with_brokers_and_supervised_engines(tmp_path):
    topo = Topology.default(subnet=SUBNET, services=("redis", "mt5", "engine"), overrides={
        "redis.port": 6398, "sentinel.port": 26398, "mt5.port": 18898, "sentinel.down_after_ms": 1000})
    stack = LocalStack(topo, tmp_path, options={"mt5": {"seed": 7}, "engine": {"overrides": {"heartbeat_s": 0.5}}})
    with stack:
        assert sorted(stack.brokers) == ["mt5-backup", "mt5-primary"]
        assert sorted(stack.engines) == ["engine-a", "engine-b"]
        assert stack.supervised_kinds == {"engine"} and stack.supervisor is not None
        assert stack.lease_holder() == "A" and stack.active_engine().name == "engine-a"
        assert stack.redis_primary_node().name == "redis-1"
        assert stack.redis().ping()
        config = json.loads((tmp_path / "engine.json").read_text())
        assert config == stack.engine_config and config["heartbeat_s"] == 0.5
        assert [b["params"]["host"] for b in config["brokers"]] == ["127.0.2.8", "127.0.2.9"]
        with stack.broker_admin("mt5-backup") as admin:
            assert admin.ping()
        assert stack.brokers["mt5-primary"].argv[stack.brokers["mt5-primary"].argv.index("--seed") + 1] == "7"
        engine_a = stack.engines["engine-a"]
        first_pid = engine_a.pid
        engine_a.kill()
        from tradedrill.waiting import wait_until

        wait_until(lambda: engine_a.is_alive() and engine_a.pid != first_pid, 15,
                   "the supervisor to restart engine-a")
        wait_until(lambda: stack.lease_holder() in ("A", "B"), 15, "an engine to hold the lease")
        assert stack.active_engine() in stack.engines.values()
        pids = {name: (n.pid, n.create_time) for name, n in stack.nodes.items()}
    events = [json.loads(line)["event"] for line in (tmp_path / "supervisor.jsonl").read_text().splitlines()]
    assert events.count("start") == 2 and "restart" in events and events.count("stop") == 2
    assert [name for name, (pid, ct) in pids.items() if same_process_alive(pid, ct)] == []


def test_services_limit_what_a_stack_starts(tmp_path):
    topo = Topology.default(subnet=SUBNET, services=("redis", "mt5", "engine"), overrides={
        "redis.port": 6399, "sentinel.port": 26399, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1})
    with LocalStack(topo, tmp_path, services=("redis",)) as stack:
        assert sorted(stack.nodes) == ["redis-1", "sentinel-1"]
        assert stack.engines == {} and stack.brokers == {} and stack.supervisor is None
        assert not (tmp_path / "engine.json").exists()
    with pytest.raises(StackError, match="not in this topology"):
        LocalStack(topo, tmp_path, services=("postgres",))
    with pytest.raises(StackError, match="unknown option"):
        LocalStack(topo, tmp_path, options={"engine": {"comand": ["x"]}})
