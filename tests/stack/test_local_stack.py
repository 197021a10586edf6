"""The whole local topology against the real services: up, down with nothing left, and the basic recoveries."""
from __future__ import annotations

import socket
import time

import psutil
import pytest

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
    wait_until(lambda: redis_svc.replication_role(primary.address, primary.port) == "slave", 20,
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
        assert not _pings(node)
    finally:
        node.resume()
    assert _pings(node)


def _pings(node) -> bool:
    try:
        return redis_svc.ping(node.address, node.port, timeout=0.3)
    except Exception:  # noqa: BLE001
        return False
