import pytest

from tradedrill.topology import Topology, TopologyError, parse_overrides


def test_default_topology_has_the_documents_redis_shape():
    topo = Topology.default()
    names = [n.name for n in topo.nodes]
    assert names == ["redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "clickhouse", "postgres"]
    addresses = [n.address for n in topo.nodes]
    assert len(set(addresses)) == len(addresses), "every node has its own loopback address"
    assert topo.node("redis-1").role == "primary"
    assert topo.settings["sentinel.down_after_ms"] == 3000
    assert topo.settings["sentinel.failover_timeout_ms"] == 5000
    assert topo.settings["redis.appendfsync"] == "always"


def test_overrides_are_typed_and_unknown_keys_are_named():
    topo = Topology.default(overrides={"sentinel.down_after_ms": "1000"})
    assert topo.settings["sentinel.down_after_ms"] == 1000
    with pytest.raises(TopologyError, match="unknown setting 'sentinel.down_after'"):
        Topology.default(overrides={"sentinel.down_after": 1})
    with pytest.raises(TopologyError, match="must be a int"):
        Topology.default(overrides={"sentinel.down_after_ms": "soon"})


def test_non_loopback_subnet_is_refused():
    with pytest.raises(TopologyError, match="not loopback"):
        Topology.default(subnet="10.0.0")


def test_overrides_parse_with_a_helpful_error():
    assert parse_overrides(["a.b=1", "c = x"]) == {"a.b": "1", "c": "x"}
    with pytest.raises(TopologyError, match="KEY=VALUE"):
        parse_overrides(["oops"])


def test_topology_file_round_trip(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[topology]\nsubnet = "127.0.9"\nservices = ["redis"]\n[settings.sentinel]\ndown_after_ms = 1500\n')
    topo = Topology.from_file(f)
    assert topo.subnet == "127.0.9" and topo.services == ("redis",)
    assert topo.settings["sentinel.down_after_ms"] == 1500
    assert Topology.from_dict(topo.to_dict()).to_dict() == topo.to_dict()
    bad = tmp_path / "bad.toml"
    bad.write_text("[topology\n")
    with pytest.raises(TopologyError, match="not valid TOML"):
        Topology.from_file(bad)
