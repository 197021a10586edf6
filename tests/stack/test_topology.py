"""The declarative topology: its nodes, its one address allocator, and settings that are checked before anything is
written (every error one TopologyError line naming the key, the bad value and what is allowed)."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from tradedrill.services import clickhouse, engine as engine_svc, postgres, redis as redis_svc
from tradedrill.topology import (
    DEFAULT_SERVICES, MAXMEMORY_POLICIES, SERVICES, SETTINGS, Topology, TopologyError, parse_overrides,
)

ALL = ("redis", "clickhouse", "postgres", "mt5", "engine")


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
    assert topo.services == DEFAULT_SERVICES == ("redis", "clickhouse", "postgres")


def test_brokers_and_engines_are_nodes_of_the_topology_with_addresses_from_the_one_allocator():
    topo = Topology.default(subnet="127.0.6", services=ALL)
    assert [(n.name, n.kind, n.role, n.address, n.port) for n in topo.nodes[-4:]] == [
        ("mt5-primary", "mt5", "broker-primary", "127.0.6.10", 18812),
        ("mt5-backup", "mt5", "broker-backup", "127.0.6.11", 18812),
        ("engine-a", "engine", "engine", "127.0.6.12", 0),
        ("engine-b", "engine", "engine", "127.0.6.13", 0),
    ]
    addresses = [n.address for n in topo.nodes]
    assert addresses == [f"127.0.6.{i}" for i in range(2, 2 + len(addresses))]
    assert [engine_svc.instance_of(s) for s in topo.of_kind("engine")] == ["A", "B"]
    assert topo.settings["mt5.port"] == 18812 and topo.settings["mt5.account"] == 5001
    assert topo.settings["engine.group"] == "engine"
    # the order services are named in never moves an address
    shuffled = Topology.default(subnet="127.0.6", services=("engine", "mt5", "postgres", "clickhouse", "redis"))
    assert [(n.name, n.address) for n in shuffled.nodes] == [(n.name, n.address) for n in topo.nodes]


def test_the_drill_services_place_brokers_and_engines_after_redis():
    topo = Topology.default(subnet="127.0.5", services=("redis", "mt5", "engine"),
                            overrides={"mt5.port": 18831})
    assert {n.name: f"{n.address}:{n.port}" for n in topo.nodes if n.kind in ("mt5", "engine")} == {
        "mt5-primary": "127.0.5.8:18831", "mt5-backup": "127.0.5.9:18831",
        "engine-a": "127.0.5.10:0", "engine-b": "127.0.5.11:0"}


def test_engine_config_comes_from_the_topology():
    topo = Topology.default(subnet="127.0.5", services=("redis", "mt5", "engine"),
                            overrides={"engine.group": "g1", "mt5.account": 5002, "mt5.call_timeout_s": 2.0,
                                       "sentinel.master_name": "m1"})
    cfg = engine_svc.engine_config(topo, {"heartbeat_s": 0.5, "master_name": "other"})
    assert cfg["group"] == "g1"
    assert cfg["sentinels"] == [["127.0.5.5", 26379], ["127.0.5.6", 26379], ["127.0.5.7", 26379]]
    assert cfg["master_name"] == "other", "overrides win"
    assert cfg["heartbeat_s"] == 0.5
    assert cfg["brokers"] == [
        {"name": "primary", "factory": "reference.mt5.port:open_terminal", "login": 5002,
         "params": {"kind": "simulator", "host": "127.0.5.8", "port": 18812, "call_timeout": 2.0}},
        {"name": "backup", "factory": "reference.mt5.port:open_terminal", "login": 5002,
         "params": {"kind": "simulator", "host": "127.0.5.9", "port": 18812, "call_timeout": 2.0}},
    ]
    from reference.engine.config import EngineConfig

    EngineConfig.from_mapping(engine_svc.engine_config(topo))  # the engine accepts it as it is


def test_engine_node_command_line_and_readiness(tmp_path):
    topo = Topology.default(subnet="127.0.5", services=("redis", "mt5", "engine"))
    spec = topo.node("engine-b")
    node = engine_svc.build_node(spec, topo, tmp_path, None, config_path=tmp_path / "engine.json")
    state = tmp_path / "engines" / "engine-b"
    assert list(node.argv[1:]) == ["-m", "reference.engine", "run", "--config", str(tmp_path / "engine.json"),
                                   "--instance", "B", "--state-dir", str(state),
                                   "--set", "redis_source_address=127.0.5.11"]   # its own address (issue 12)
    assert (node.address, node.port, node.role) == ("127.0.5.11", 0, "engine")
    assert not node.ready()
    state.mkdir(parents=True)
    (state / "events-B.jsonl").write_text("")
    assert node.ready()
    broken = engine_svc.build_node(spec, topo, tmp_path, None, config_path="c.json", command=("x", "-m", "y"),
                                   env={"A": "1"})
    assert list(broken.argv[:4]) == ["x", "-m", "y", "run"] and broken.env == {"A": "1"}


def test_overrides_are_typed_and_unknown_keys_are_named():
    topo = Topology.default(overrides={"sentinel.down_after_ms": "1000"})
    assert topo.settings["sentinel.down_after_ms"] == 1000
    with pytest.raises(TopologyError, match="unknown setting 'sentinel.down_after'"):
        Topology.default(overrides={"sentinel.down_after": 1})
    with pytest.raises(TopologyError, match="must be an integer"):
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


def test_toml_booleans_and_numbers_become_the_config_words(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('[settings]\n"redis.appendonly" = false\n"postgres.fsync" = true\n"redis.maxmemory" = 0\n'
                 '"redis.save" = "900  1   300 10"\n"ready.timeout_s" = 5\n')
    s = Topology.from_file(f).settings
    assert (s["redis.appendonly"], s["postgres.fsync"], s["redis.maxmemory"]) == ("no", "on", "0")
    assert s["redis.save"] == "900 1 300 10" and s["ready.timeout_s"] == 5.0


# -- every input the issue lists, one line each ----------------------------------------------------------------------
BAD_SETTINGS = [
    ({"redis.port": 0}, "redis.port=0", "from 1 to 65535"),
    ({"redis.port": 65536}, "redis.port=65536", "from 1 to 65535"),
    ({"sentinel.port": "-1"}, "sentinel.port='-1'", "from 1 to 65535"),
    ({"mt5.port": 1.5}, "mt5.port=1.5", "an integer"),
    ({"clickhouse.http_port": 9000}, "clickhouse.http_port=9000", "differ from clickhouse.tcp_port"),
    ({"sentinel.quorum": 4}, "sentinel.quorum=4", "from 1 to sentinel.count (3)"),
    ({"sentinel.count": 1}, "sentinel.quorum=2", "from 1 to sentinel.count (1)"),
    ({"sentinel.quorum": 0}, "sentinel.quorum=0", "from 1 to 250"),
    ({"sentinel.count": 0}, "sentinel.count=0", "from 1 to 250"),
    ({"redis.replicas": -1}, "redis.replicas=-1", "from 0 to 250"),
    ({"sentinel.parallel_syncs": 0}, "sentinel.parallel_syncs=0", "from 1 to"),
    ({"sentinel.down_after_ms": 0}, "sentinel.down_after_ms=0", "from 1 to"),
    ({"sentinel.failover_timeout_ms": -5}, "sentinel.failover_timeout_ms=-5", "from 1 to"),
    ({"sentinel.down_after_ms": True}, "sentinel.down_after_ms=True", "an integer"),
    ({"ready.timeout_s": 0}, "ready.timeout_s=0", "greater than 0"),
    ({"ready.timeout_s": "inf"}, "ready.timeout_s='inf'", "a number"),
    ({"ready.timeout_s": float("nan")}, "ready.timeout_s=nan", "a number"),
    ({"mt5.call_timeout_s": -1.0}, "mt5.call_timeout_s=-1.0", "greater than 0"),
    ({"redis.appendfsync": "sometimes"}, "redis.appendfsync='sometimes'", "one of always, everysec, no"),
    ({"redis.appendfsync": "always\nappendonly no"}, "redis.appendfsync='always\\nappendonly no'",
     "control character"),
    ({"redis.appendonly": "maybe"}, "redis.appendonly='maybe'", "one of yes, no"),
    ({"redis.appendonly": 1}, "redis.appendonly=1", "one of yes, no"),
    ({"postgres.fsync": "yes"}, "postgres.fsync='yes'", "one of on, off"),
    ({"redis.maxmemory_policy": "lru"}, "redis.maxmemory_policy='lru'", "one of volatile-lru, allkeys-lru"),
    ({"redis.maxmemory": "1 gb"}, "redis.maxmemory='1 gb'", "a Redis memory size"),
    ({"redis.auto_aof_rewrite_min_size": "64tb"}, "redis.auto_aof_rewrite_min_size='64tb'", "memory size"),
    ({"redis.save": "60 1000\nreplicaof 10.0.0.1 6379"}, "redis.save='60 1000\\nreplicaof 10.0.0.1 6379'",
     "control character"),
    ({"redis.save": "60"}, "redis.save='60'", "pairs of integers"),
    ({"redis.save": "60 x"}, "redis.save='60 x'", "pairs of integers"),
    ({"redis.save": "0 10"}, "redis.save='0 10'", "at least 1"),
    ({"redis.save": 60}, "redis.save=60", "pairs of integers"),
    ({"redis.save": "60\t1000"}, "redis.save='60\\t1000'", "control character"),
    ({"sentinel.master_name": "my master"}, "sentinel.master_name='my master'", "a name of letters"),
    ({"sentinel.master_name": ""}, "sentinel.master_name=''", "a name of letters"),
    ({"engine.group": "a:b"}, "engine.group='a:b'", "a name of 1 to 64"),
    ({"engine.group": "g\u2028x"}, "engine.group=", "control character"),
    ({"mt5.account": 0}, "mt5.account=0", "from 1 to"),
    ({"redis.tcp_backlog": 0}, "redis.tcp_backlog=0", "from 1 to 65535"),
    ({"redis.tcp_keepalive": -1}, "redis.tcp_keepalive=-1", "from 0 to"),
    ({"redis.port": [6379]}, "redis.port=[6379]", "an integer"),
    ({"redis.port": None}, "redis.port=None", "an integer"),
]


@pytest.mark.parametrize("overrides, names, allowed", BAD_SETTINGS, ids=[str(b[1]) for b in BAD_SETTINGS])
def test_bad_settings_are_one_line_naming_key_value_and_what_is_allowed(overrides, names, allowed):
    with pytest.raises(TopologyError) as info:
        Topology.default(services=ALL, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message and message.splitlines() == [message]
    assert names in message and allowed in message, message


@pytest.mark.parametrize("services, expected", [
    ("redis", "not the string 'redis'"),
    (["redis", "kafka"], "unknown service 'kafka'"),
    (["redis", "redis"], "named twice"),
    ([], "no service chosen"),
    (["engine"], "needs 'redis' and 'mt5'"),
    (["redis", "engine"], "needs 'mt5'"),
    ([1], "unknown service 1"),
    (42, "must be a list of names"),
])
def test_bad_services_are_one_line(services, expected):
    with pytest.raises(TopologyError, match=re.escape(expected)):
        Topology.default(services=services)


@pytest.mark.parametrize("subnet", ["127.0", "127.0.0.1", "127.0.0 ", "127.0.0\n", "127.0.256", 127, None,
                                    "\u0661\u0662\u0667.0.0"])
def test_bad_subnets_are_one_line(subnet):
    with pytest.raises(TopologyError, match="subnet") as info:
        Topology.default(subnet=subnet)
    assert "\n" not in str(info.value)


def test_too_many_nodes_for_a_subnet():
    with pytest.raises(TopologyError, match="no address left"):
        Topology.default(overrides={"redis.replicas": 250, "sentinel.count": 10})


@pytest.mark.parametrize("text, expected", [
    ('settings = "redis.port=1"\n', "'settings' must be a table"),
    ('settings = [1, 2]\n', "'settings' must be a table"),
    ('topology = "127.0.9"\n', "'topology' must be a table"),
    ('[topology]\nservices = "redis"\n', "not the string 'redis'"),
    ('[topology]\nservices = ["redis", 3]\n', "unknown service 3"),
    ('[topology]\nsubnet = 127\n', "subnet 127 must be a string"),
    ('[topology]\nsubnett = "127.0.9"\n', "unknown key(s) 'subnett' in [topology]"),
    ('[setting]\n"redis.port" = 1\n', "unknown table(s) 'setting'"),
    ('[settings.redis]\nport = "6379\\nport 1"\n', "control character"),
    ('[settings.redis]\nport = {a = 1}\n', "unknown setting 'redis.port.a'"),
    ('[settings]\n"sentinel.quorum" = 9\n', "sentinel.quorum=9"),
])
def test_bad_topology_files_are_one_line(tmp_path, text, expected):
    f = tmp_path / "t.toml"
    f.write_text(text)
    with pytest.raises(TopologyError) as info:
        Topology.from_file(f)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert str(f) in message


def test_a_topology_path_that_is_a_folder_missing_or_not_utf8(tmp_path):
    with pytest.raises(TopologyError, match="is a folder"):
        Topology.from_file(tmp_path)
    with pytest.raises(TopologyError, match="does not exist"):
        Topology.from_file(tmp_path / "nope.toml")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('[settings]\n"sentinel.master_name" = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(TopologyError, match=r"is not UTF-8 text \(byte 40\)"):
        Topology.from_file(latin)


# -- property: anything either builds a topology whose configs say exactly what was set, or is one TopologyError ---
def _words(setting) -> st.SearchStrategy:
    if setting.type == "int":
        return st.one_of(st.integers(-10, 70000), st.integers(), st.integers(-10, 70000).map(str),
                         st.sampled_from(["", " 12 ", "1_000", "0x10", "12.0", "\uff11"]), st.booleans(),
                         st.floats())
    if setting.type == "float":
        return st.one_of(st.floats(), st.integers(-5, 100), st.floats(0.001, 100).map(str),
                         st.sampled_from(["inf", "nan", "1e3", ".5", "5.", "-0", "1e400"]))
    if setting.type == "choice":
        return st.one_of(st.sampled_from(setting.choices), st.booleans(), st.text(max_size=12),
                         st.sampled_from([c + "\n" for c in setting.choices] + [c.upper() for c in setting.choices]))
    if setting.type == "memory":
        return st.one_of(st.from_regex(r"[0-9]{1,6}(b|k|kb|m|mb|g|gb|K|MB)?", fullmatch=True), st.integers(-5, 10**16),
                         st.text(max_size=10))
    if setting.type == "save":
        pair = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(lambda p: f"{p[0]} {p[1]}")
        return st.one_of(st.lists(pair, max_size=4).map(" ".join), st.lists(pair, max_size=3).map("  ".join),
                         st.text(alphabet="0123456789 \n\r\t\x0b\x0c\x1c\x85\u2028x-", max_size=20),
                         st.integers())
    return st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{0,70}", fullmatch=True), st.text(max_size=20))


def _valid(setting) -> st.SearchStrategy:
    """Values a setting accepts, in every form they may come in (TOML types, command-line strings)."""
    if setting.type == "int":
        ints = st.integers(int(setting.low), int(setting.high))
        return st.one_of(ints, ints.map(str), ints.map(float))
    if setting.type == "float":
        numbers = st.floats(setting.low, setting.high, exclude_min=True)
        return st.one_of(numbers, numbers.map(repr), st.integers(1, int(setting.high)))
    if setting.type == "choice":
        return st.one_of(st.sampled_from(setting.choices), *([st.booleans()] if setting.boolean else []))
    if setting.type == "memory":
        return st.one_of(st.from_regex(r"[0-9]{1,9}(b|k|kb|m|mb|g|gb|KB|Mb|G)?", fullmatch=True),
                         st.integers(0, 10**12))
    if setting.type == "save":
        pair = st.tuples(st.integers(1, 10**9), st.integers(0, 10**9)).map(lambda p: f"{p[0]} {p[1]}")
        return st.lists(pair, max_size=4).map(" ".join)
    return st.from_regex(setting.pattern, fullmatch=True)


settings_values = st.sampled_from(sorted(SETTINGS)).flatmap(lambda k: st.tuples(st.just(k), _words(SETTINGS[k])))
valid_overrides = st.lists(
    st.sampled_from(sorted(SETTINGS)).flatmap(lambda k: st.tuples(st.just(k), _valid(SETTINGS[k]))), max_size=10,
).map(dict)
junk = st.one_of(st.none(), st.binary(max_size=5), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.text(max_size=8),
                 st.floats(), st.integers())
overrides_strategy = st.one_of(
    valid_overrides,
    st.lists(settings_values, max_size=8).map(dict),
    st.dictionaries(st.one_of(st.sampled_from(sorted(SETTINGS)), st.text(max_size=12), st.integers()), junk,
                    max_size=4),
)


def _conf_lines(text: str) -> dict[str, str]:
    """Directive -> arguments of a Redis/Sentinel config; fails on a directive that appears twice."""
    directives = []
    for line in text.split("\n"):
        if not line:
            continue
        words = line.split(" ")
        n = 2 if words[0] == "sentinel" else 1
        directives.append((" ".join(words[:n]), " ".join(words[n:])))
    counts = Counter(d for d, _ in directives)
    assert all(c == 1 for c in counts.values()), counts
    assert len(text.splitlines()) == len(directives), "a character splitlines() reads as a line end"
    return dict(directives)


def _expected(key: str, value):
    s = SETTINGS[key]
    if s.type == "int":
        return int(value.strip()) if isinstance(value, str) else int(value)
    if s.type == "float":
        return float(value)
    if s.type == "choice" and isinstance(value, bool):
        return s.choices[0] if value else s.choices[1]
    if s.type == "save":
        return " ".join(str(int(w)) for w in value.split(" ") if w)
    return str(value)


@given(overrides=overrides_strategy)
def test_any_overrides_build_configs_that_say_exactly_that_or_raise_one_topology_error(overrides):
    try:
        topo = Topology.default(subnet="127.0.2", services=ALL, overrides=overrides)
    except TopologyError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message.splitlines()) == 1
        return
    s = topo.settings
    for key, value in overrides.items():
        assert s[key] == _expected(key, value), (key, value, s[key])
    data = Path("/run/td/data")
    redis_lines = {spec.name: _conf_lines(redis_svc.render(spec, topo, data)) for spec in topo.of_kind("redis")}
    for name, conf in redis_lines.items():
        spec = topo.node(name)
        assert conf["port"] == str(s["redis.port"]) == str(spec.port)
        assert conf["bind"] == spec.address
        assert conf["appendonly"] == s["redis.appendonly"] and conf["appendfsync"] == s["redis.appendfsync"]
        assert conf["auto-aof-rewrite-min-size"] == s["redis.auto_aof_rewrite_min_size"]
        assert conf["save"] == (s["redis.save"] or '""')
        assert conf["maxmemory"] == s["redis.maxmemory"]
        assert conf["maxmemory-policy"] == s["redis.maxmemory_policy"] in MAXMEMORY_POLICIES
        assert conf["tcp-backlog"] == str(s["redis.tcp_backlog"])
        assert conf["tcp-keepalive"] == str(s["redis.tcp_keepalive"])
        assert ("replicaof" in conf) == (spec.role == "replica")
    primary = topo.node("redis-1")
    for spec in topo.of_kind("sentinel"):
        conf = _conf_lines(redis_svc.render(spec, topo, data))
        name = s["sentinel.master_name"]
        assert conf["port"] == str(s["sentinel.port"])
        assert conf["sentinel monitor"] == f"{name} {primary.address} {primary.port} {s['sentinel.quorum']}"
        assert conf["sentinel down-after-milliseconds"] == f"{name} {s['sentinel.down_after_ms']}"
        assert conf["sentinel failover-timeout"] == f"{name} {s['sentinel.failover_timeout_ms']}"
        assert conf["sentinel parallel-syncs"] == f"{name} {s['sentinel.parallel_syncs']}"
    ch = topo.node("clickhouse")
    root = ET.fromstring(clickhouse.config_xml(ch, data))
    tags = Counter(child.tag for child in root)
    assert all(c == 1 for c in tags.values()), tags
    assert root.findtext("tcp_port") == str(s["clickhouse.tcp_port"])
    assert root.findtext("http_port") == str(s["clickhouse.http_port"])
    args = postgres.server_args(topo.node("postgres"), topo, data)
    options = Counter(args[i + 1].split("=", 1)[0] for i, a in enumerate(args) if a == "-c")
    assert all(c == 1 for c in options.values()) and args.count("-p") == 1, args
    assert f"fsync={s['postgres.fsync']}" in args and args[args.index("-p") + 1] == str(s["postgres.port"])
    cfg = engine_svc.engine_config(topo)
    assert cfg["group"] == s["engine.group"] and cfg["master_name"] == s["sentinel.master_name"]
    assert {b["params"]["port"] for b in cfg["brokers"]} == {s["mt5.port"]}
    assert all(math.isfinite(b["params"]["call_timeout"]) for b in cfg["brokers"])


@given(overrides=valid_overrides)
def test_valid_values_in_any_form_build_unless_they_contradict_each_other(overrides):
    try:
        topo = Topology.default(subnet="127.0.2", services=ALL, overrides=overrides)
    except TopologyError as exc:
        assert re.search(r"sentinel\.quorum=|clickhouse\.http_port=|no address left", str(exc)), exc
        return
    for key, value in overrides.items():
        assert topo.settings[key] == _expected(key, value)


@given(subnet=st.one_of(st.text(max_size=12), st.from_regex(r"127\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
                        st.integers(), st.none()),
       services=st.one_of(st.lists(st.sampled_from([*SERVICES, "kafka", ""]), max_size=6), st.text(max_size=10),
                          st.integers(), st.none()))
def test_any_subnet_and_services_build_or_raise_one_topology_error(subnet, services):
    try:
        topo = Topology.default(subnet=subnet, services=services)
    except TopologyError as exc:
        assert "\n" not in str(exc)
        return
    assert all(n.address.startswith(subnet + ".") for n in topo.nodes)
    assert len({n.address for n in topo.nodes}) == len(topo.nodes)


@given(content=st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(str.encode),
    st.builds(lambda a, b: f"[{a}]\n{b}\n".encode(), st.sampled_from(["topology", "settings", "settings.redis", "x"]),
              st.sampled_from(['subnet = "127.0.9"', 'services = ["redis"]', 'services = "redis"', "port = 0",
                               '"redis.save" = "1 2"', "save = '1\\n2'", "appendfsync = 3", "a = {b = 1}",
                               "port = 6380", 'subnet = 1']))))
def test_any_topology_file_builds_or_raises_one_topology_error(content, tmp_path_factory):
    f = tmp_path_factory.mktemp("toml") / "t.toml"
    f.write_bytes(content)
    try:
        Topology.from_file(f)
    except TopologyError as exc:
        assert "\n" not in str(exc)
