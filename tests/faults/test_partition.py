"""Redis partitions on node addresses: redis-py (with a socket timeout) times out during, succeeds after."""
import random

import pytest
import redis

from faults.core import FaultLog
from faults.network import LinkFaults
from faults.partition import isolate_primary, isolate_sentinel, majority_minority, primary_cut_via_proxy

from .conftest import hostport, needs_root, quick_redis


@needs_root
def test_isolated_primary_times_out_and_heal_lets_it_through(redis_primary, tmp_path):
    log = FaultLog(tmp_path / "faults.jsonl")
    client = quick_redis("127.0.4.2", timeout=0.5)
    client.set("k", "before")
    with isolate_primary("127.0.4.2", log=log):
        with pytest.raises(redis.TimeoutError):
            client.set("k", "during")
        with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
            quick_redis("127.0.4.2", timeout=0.5).ping()
    fresh = quick_redis("127.0.4.2", timeout=0.5)
    assert fresh.set("k", "after") and fresh.get("k") == b"after"
    assert [l["fault"] for l in log.read()] == ["redis-primary-isolated"] * 2


@needs_root
def test_reset_partition_fails_fast(redis_primary):
    with isolate_primary("127.0.4.2", mode="reset"):
        with pytest.raises(redis.ConnectionError):
            quick_redis("127.0.4.2", timeout=2).ping()
    assert quick_redis("127.0.4.2").ping()


def test_majority_minority_split_replays_from_the_seed():
    nodes = ["127.0.4.2", "127.0.4.3", "127.0.4.4", "127.0.4.5", "127.0.4.6", "127.0.4.7"]
    a = majority_minority(nodes, random.Random(5), primary="127.0.4.2")
    b = majority_minority(nodes, random.Random(5), primary="127.0.4.2")
    assert a.minority == b.minority and a.rules() == b.rules()
    assert "127.0.4.2" in a.minority and len(a.minority) == 2
    assert "127.0.0.1" in a.majority and len(a.majority) == 5
    c = majority_minority(nodes, random.Random(5), primary_in_minority=False, clients_with="minority")
    assert "127.0.0.1" in c.minority
    assert isolate_sentinel("127.0.4.5").rules()


@needs_root
def test_majority_minority_cuts_the_minority_from_the_clients(redis_primary):
    split = majority_minority(["127.0.4.2", "127.0.4.3", "127.0.4.4"], random.Random(1), primary="127.0.4.2")
    with split:
        with pytest.raises(redis.TimeoutError):
            quick_redis("127.0.4.2", timeout=0.4).ping()
    assert quick_redis("127.0.4.2").ping()


def test_primary_cut_via_proxy_without_root(toxiproxy_server, redis_primary):
    with LinkFaults(toxiproxy_server.url) as links:
        host, port = hostport(links.proxy("engine-redis", "127.0.4.2:6379", "127.0.4.10:0"))
        client = quick_redis(host, port, timeout=0.4)
        client.set("k", "v")
        with primary_cut_via_proxy(links.api, ["engine-redis"]):
            with pytest.raises(redis.TimeoutError):
                client.get("k")
        assert quick_redis(host, port).get("k") == b"v"
