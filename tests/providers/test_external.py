"""The external provider (tradedrill.providers.external): the deployment file (checked field by field, fuzzed), the
capabilities it gives, the faults a scenario would run or skip, and an attach to our own stack started locally
with our fault proxy standing in for the user's Toxiproxy (a toxic added and removed through its HTTP API)."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios import registry
from tradedrill.local import StackError
from tradedrill.providers.external import (DeploymentError, ExternalNode, ExternalStack, load_deployment)

GOOD = """
master_name = "mymaster"
[[node]]
name = "redis-1"
kind = "redis"
address = "127.0.98.2"
port = 6379
role = "primary"
[[node]]
name = "sentinel-1"
kind = "sentinel"
address = "127.0.98.5"
port = 26379
[[node]]
name = "broker-1"
kind = "mt5"
address = "127.0.98.8"
port = 18812
[[node]]
name = "engine-a"
kind = "engine"
address = "127.0.98.10"
port = 0
[toxiproxy]
url = "http://127.0.0.1:8474"
[toxiproxy.proxies]
"redis-1" = "redis-1"
"""


def _write(tmp_path, text: str, name: str = "deployment.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_deployment_file_becomes_a_topology_of_its_addresses(tmp_path):
    (tmp_path / "stack").mkdir()
    dep = load_deployment(_write(tmp_path, GOOD))
    assert [n.name for n in dep.nodes] == ["redis-1", "sentinel-1", "broker-1", "engine-a"]
    assert dep.services == ("redis", "mt5", "engine")
    assert dep.proxies == {"redis-1": "redis-1"}
    assert dep.capabilities() == {"fault-proxy", "node-disconnect"}   # no secrets folder: no brokers' admin
    topo = dep.topology(("redis", "mt5"))
    assert topo.node("redis-1").address == "127.0.98.2" and topo.master_name == "mymaster"
    with pytest.raises(DeploymentError, match="needs clickhouse"):
        dep.topology(("redis", "clickhouse"))
    with_secrets = load_deployment(_write(tmp_path, 'secrets = "stack"\n' + GOOD.replace("port = 0", "port = 1")))
    assert with_secrets.capabilities() == {"fault-proxy", "broker-admin", "node-disconnect"}


@pytest.mark.parametrize("change, field", [
    (("address = \"127.0.98.2\"", "address = \"redis.example\""), "node[0].address"),
    (("port = 6379", "port = 70000"), "node[0].port"),
    (("kind = \"redis\"", "kind = \"mongodb\""), "node[0].kind"),
    (("name = \"engine-a\"", "name = \"primary-engine\""), "node[3].name"),
    (("\"redis-1\" = \"redis-1\"", "\"redis-1\" = \"redis-9\""), "toxiproxy.proxies.redis-1"),
    (("url = \"http://127.0.0.1:8474\"", "url = \"ftp://x\""), "toxiproxy.url"),
    (("master_name = \"mymaster\"", "master_name = \"a b\""), "master_name"),
    (("master_name = \"mymaster\"", "passwords = \"x\""), "top level"),
])
def test_a_bad_field_is_one_line_naming_it(tmp_path, change, field):
    path = _write(tmp_path, GOOD.replace("port = 0", "port = 1").replace(*change))
    with pytest.raises(DeploymentError) as err:
        load_deployment(path)
    assert f": {field}:" in str(err.value) and "\n" not in str(err.value)


def test_unreadable_or_not_toml_is_one_line(tmp_path):
    for text in ("[[node]\nname=", "\x00\x01", ""):
        with pytest.raises(DeploymentError) as err:
            load_deployment(_write(tmp_path, text))
        assert "\n" not in str(err.value)
    with pytest.raises(DeploymentError, match="cannot read"):
        load_deployment(tmp_path / "missing.toml")


_scalar = st.one_of(st.text(max_size=12), st.integers(-5, 70000), st.booleans(),
                    st.sampled_from(["127.0.98.2", "redis-1", "sentinel", "redis", "mt5", "engine-a", "::1",
                                     "http://127.0.0.1:8474", "primary"]))
_node = st.dictionaries(st.sampled_from(["name", "kind", "address", "port", "role", "other"]), _scalar, max_size=6)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)   # a JSON string is a TOML basic string (escapes included)


def _toml(top: dict, nodes: list[dict], proxies: dict | None) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for node in nodes:
        lines.append("[[node]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in node.items()]
    if proxies is not None:
        lines += ["[toxiproxy]", 'url = "http://127.0.0.1:8474"', "[toxiproxy.proxies]"]
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in proxies.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.dictionaries(st.sampled_from(["master_name", "engine_group", "secrets", "x"]), _scalar, max_size=3),
       nodes=st.lists(_node, max_size=5),
       proxies=st.none() | st.dictionaries(st.text(max_size=8), _scalar, max_size=3))
def test_any_deployment_file_loads_checked_or_is_refused_in_one_line(tmp_path, top, nodes, proxies):
    path = _write(tmp_path, _toml(top, nodes, proxies))
    try:
        dep = load_deployment(path)
    except DeploymentError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    import ipaddress

    assert dep.nodes and len({n.name for n in dep.nodes}) == len(dep.nodes)
    for n in dep.nodes:
        ipaddress.ip_address(n.address)
        assert 1 <= n.port <= 65535 or (n.kind == "engine" and n.port == 0)
    assert set(dep.proxies.values()) <= {n.name for n in dep.nodes}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_a_deployment_file_are_refused_in_one_line_or_loaded(tmp_path, raw):
    path = tmp_path / "d.toml"
    path.write_bytes(raw)
    try:
        load_deployment(path)
    except DeploymentError as exc:
        assert "\n" not in str(exc)


def test_the_faults_it_cannot_inject_are_planned_as_skipped(tmp_path):
    path = _write(tmp_path, GOOD.replace("port = 0", "port = 1"))
    stack = ExternalStack(ExternalStack.drill_topology("127.0.98", ("redis", "mt5"), deployment=path),
                          tmp_path / "run", deployment=path)
    plan = stack.plan(registry.get("engine-kill"))
    assert plan["run"] == [] and plan["skipped"][0]["fault"] == "process-kill"
    assert plan["skipped"][0]["missing"] == ["process"]
    lost = stack.plan(registry.get("lost-reply"))
    assert lost["skipped"][0]["missing"] == ["broker-admin"]   # no secrets folder in this file
    with pytest.raises(DeploymentError, match="--deployment"):
        ExternalStack.drill_topology("127.0.98", ("redis",))
    node = ExternalNode(stack.topology.node("redis-1"), tmp_path)
    with pytest.raises(StackError, match="not run by the harness"):
        node.kill()
    with pytest.raises(StackError, match="no proxy"):
        stack.link_fault("sentinel-1", "latency")


def test_attached_to_our_own_stack_with_our_fault_proxy_as_its_toxiproxy(tmp_path):
    """Our stack started locally (Redis group and a broker on 127.0.98), our fault proxy in front of redis-1 as
    the user's Toxiproxy: the external stack attaches, finds the primary and the lease-free group, reaches the
    broker's admin with the folder's token, and a latency toxic added through the proxy's HTTP API slows a PING
    through the proxy until healed."""
    import redis as redis_py

    from faults.network import ToxiproxyAPI
    from faults.proxy.server import EmbeddedToxiproxy
    from tradedrill.local import LocalStack
    from tradedrill.topology import Topology

    topo = Topology.default(subnet="127.0.98", services=("redis", "mt5"))
    try:
        local = LocalStack(topo, tmp_path / "stack").up()
    except Exception as exc:  # noqa: BLE001 - no redis-server here
        pytest.skip(f"the local stack does not start here: {exc}")
    proxy = EmbeddedToxiproxy(listen="127.0.98.160:0").start()
    try:
        primary = local.node("redis-1")
        api = ToxiproxyAPI(proxy.url)
        listen = api.create_proxy("redis-1", f"{primary.address}:{primary.port}", "127.0.98.160:0")["listen"]
        api.close()
        nodes = "\n".join(f'[[node]]\nname = "{s.name}"\nkind = "{s.kind}"\naddress = "{s.address}"\nport = {s.port}'
                          f'\nrole = "{s.role}"' for s in topo.nodes)
        path = _write(tmp_path, f'secrets = "stack"\n{nodes}\n[toxiproxy]\nurl = "{proxy.url}"\n'
                                f'[toxiproxy.proxies]\n"redis-1" = "redis-1"\n')
        ext = ExternalStack(ExternalStack.drill_topology("127.0.98", ("redis", "mt5"), deployment=path),
                            tmp_path / "external-run", deployment=path).up()
        try:
            assert ext.capabilities == {"fault-proxy", "broker-admin", "node-disconnect"}
            assert ext.redis_primary() == (primary.address, primary.port)
            assert ext.redis().ping() and ext.node("mt5-primary").is_alive()
            with ext.broker_admin("mt5-primary") as admin:
                assert isinstance(admin.behaviour(), dict)     # a call that needs the folder's admin token
            host, _, port = listen.rpartition(":")
            through = redis_py.Redis(host=host, port=int(port), socket_timeout=5,
                                     **ext.harness_credential.redis_kwargs())

            def ping_s() -> float:
                t = time.monotonic()
                through.ping()
                return time.monotonic() - t

            assert ping_s() < 0.2
            fault = ext.link_fault("redis-1", "latency", latency_ms=400)
            fault.inject()
            try:
                assert ping_s() >= 0.35
            finally:
                fault.heal()
            through.close()
            through = redis_py.Redis(host=host, port=int(port), socket_timeout=5,
                                     **ext.harness_credential.redis_kwargs())
            assert ping_s() < 0.2
            through.close()
            assert ext.down() == [] and local.node("redis-1").is_alive()   # nothing of the deployment stopped
        finally:
            ext.down()
    finally:
        proxy.stop()
        local.down()


def test_a_scenarios_node_disconnect_goes_to_the_users_toxiproxy(tmp_path):
    """The library's node-disconnect (redis-primary-disconnected) on the external provider: every proxy whose
    upstream is the node disabled through the Toxiproxy API (our fault proxy standing in), so nothing reaches the
    node through it until healed; the faults it cannot inject are planned as skipped, with what they lack."""
    import socket
    import socketserver
    import threading
    from types import SimpleNamespace

    from faults.core import FaultLog
    from faults.network import ToxiproxyAPI
    from faults.proxy.server import EmbeddedToxiproxy
    from scenarios.packages import FAULTS

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(1024):
                self.request.sendall(data)

    upstream = socketserver.ThreadingTCPServer(("127.0.98.40", 0), Echo)
    upstream.daemon_threads = True
    serving = threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    proxy = EmbeddedToxiproxy(listen="127.0.98.160:0").start()
    try:
        api = ToxiproxyAPI(proxy.url)
        listen = api.create_proxy("redis-1", f"127.0.98.40:{upstream.server_address[1]}", "127.0.98.160:0")["listen"]
        api.close()
        host, _, port = listen.rpartition(":")

        def echoes() -> bool:
            try:
                with socket.create_connection((host, int(port)), timeout=1.0) as c:
                    c.sendall(b"ping")
                    return c.recv(16) == b"ping"
            except OSError:
                return False

        path = _write(tmp_path, GOOD.replace("port = 0", "port = 1").replace("http://127.0.0.1:8474", proxy.url))
        ext = ExternalStack(ExternalStack.drill_topology("127.0.98", ("redis", "mt5"), deployment=path),
                            tmp_path / "run", deployment=path)
        plan = ext.plan(registry.get("redis-primary-disconnected"))
        assert plan == {"run": [{"fault": "node-disconnect", "target": "redis-primary"}], "skipped": []}
        mixed = ext.plan(registry.get("engine-pause-during-failover"))
        assert [s["fault"] for s in mixed["skipped"]] == ["process-pause", "process-kill"]
        log = FaultLog(tmp_path / "faults.jsonl")
        ctx = SimpleNamespace(stack=ext, fault_log=log, requirement_ids=("RDS-2",))
        target = SimpleNamespace(name="redis-1", kind="redis", address="127.0.98.2", node=None, supervised=False)
        fault = FAULTS["node-disconnect"].build(ctx, target, {})
        assert echoes()
        fault.inject()
        try:
            assert not echoes()                          # nothing reaches redis-1 through its proxy
        finally:
            fault.heal()
        assert echoes()
        assert [(e["event"], e["fault"]) for e in log.read()] == [("inject", "node-disconnect"),
                                                                   ("heal", "node-disconnect")]
        with pytest.raises(StackError, match="no proxy .* leads to sentinel-1"):
            ext.cut_node("sentinel-1")
        ext.down()
    finally:
        proxy.stop()
        upstream.shutdown()
        upstream.server_close()


def test_two_runs_with_the_same_seed_on_one_deployment_never_share_a_signal_id(tmp_path):
    """The deployment's RTS/RTRS and the brokers' ledgers outlive a run: with the same scenario and seed, the
    second run's signals must not carry the first run's ids (they were judged as the first run's executions:
    phantoms/duplicates of the second). A stack we start per run keeps ids that the seed replays."""
    import threading
    from types import SimpleNamespace

    from reference.engine import contract
    from scenarios import registry
    from scenarios.workload import TradeClients

    (tmp_path / "stack").mkdir()
    path = _write(tmp_path, GOOD)
    topo = ExternalStack.drill_topology("10.0.0", ("redis", "mt5"), deployment=path)
    workload = registry.Workload(op="trade", rate_per_s=10, duration_s=1, symbols=("EURUSD",))

    def ids(stack) -> list[str]:
        env = SimpleNamespace(scenario=SimpleNamespace(name="redis-primary-kill"), seed=17, account=1001,
                              stack=stack)
        clients = TradeClients(env, workload, threading.Event())
        return [clients._next_signal()["signal_id"] for _ in range(5)]

    first = ids(ExternalStack(topo, tmp_path / "run-1", deployment=path))
    second = ids(ExternalStack(topo, tmp_path / "run-2", deployment=path))
    assert not set(first) & set(second)
    for sid in first + second:
        assert contract._SIGNAL_ID.fullmatch(sid) and contract.order_comment(sid, 1)   # the engine takes it
    # a stack started for the run (local, docker): the seed replays the same ids
    assert ids(SimpleNamespace()) == ids(SimpleNamespace()) == [f"redis-00017-{n:05d}" for n in range(1, 6)]


def test_a_second_run_on_one_deployment_is_not_judged_by_the_first_runs_signals(tmp_path):
    """Issue 17: the deployment's RTS holds run 1's executed signals when run 2 dumps its ground truth, while the
    ledger the state check reads holds run 2's deals. Run 2's rts.json keeps only run 2's signals, so its state
    check agrees (it reported 602 phantoms, every one a run-1 signal). A stack started for the run keeps all of
    RTS: a signal there that nobody sent is a phantom."""
    import threading
    from types import SimpleNamespace

    from reference.engine import contract
    from scenarios import checkers
    from scenarios.environment import rts_orders
    from scenarios.history import Deal
    from scenarios.workload import TradeClients

    (tmp_path / "stack").mkdir()
    path = _write(tmp_path, GOOD)
    topo = ExternalStack.drill_topology("10.0.0", ("redis", "mt5"), deployment=path)
    workload = registry.Workload(op="trade", rate_per_s=10, duration_s=1, symbols=("EURUSD",))
    keys = contract.Keys(group="rts")

    def ids(stack) -> list[str]:
        env = SimpleNamespace(scenario=SimpleNamespace(name="lost-reply"), seed=17, account=1001, stack=stack)
        clients = TradeClients(env, workload, threading.Event())
        return [clients._next_signal()["signal_id"] for _ in range(3)]

    run1, run2 = (ExternalStack(topo, tmp_path / f"run-{i}", deployment=path) for i in (1, 2))
    first, second = ids(run1), ids(run2)

    class SharedRTS:   # the deployment's Redis after run 2: both runs' signals executed
        hashes = {f"{keys.rts_prefix}:{keys.group}:signal:{sid}": {"status": "executed", "order": str(n)}
                  for n, sid in enumerate(first + second)}

        def scan_iter(self, match, count):
            assert match == keys.rts_signal_pattern
            return iter(self.hashes)

        def hgetall(self, key):
            return dict(self.hashes[key])

    orders = rts_orders(SharedRTS(), keys, run2)
    assert sorted(orders) == sorted(second)
    ledger = [Deal(deal=n, order=str(n), comment=contract.order_comment(sid, 1), symbol="EURUSD", volume=0.0)
              for n, sid in enumerate(first + second) if sid in second]
    by_comment = {contract.order_comment(sid, 1): sid for sid in first + second}
    state = checkers.check_state({"orders": orders}, ledger, signal_of=lambda c: by_comment.get(c))
    assert state.metrics["state_mismatches"] == 0, state.mismatches
    # a stack started for the run: every RTS signal judged, so run 1's here are phantoms
    everything = rts_orders(SharedRTS(), keys, SimpleNamespace())
    assert sorted(everything) == sorted(first + second)
    state = checkers.check_state({"orders": everything}, ledger, signal_of=lambda c: by_comment.get(c))
    assert sorted(m["signal"] for m in state.mismatches if m["kind"] == "phantom") == sorted(first)


def test_a_drill_on_a_deployment_without_its_nodes_names_the_kinds_the_file_has(tmp_path):
    """Issue 17: a file with only a Sentinel said "(it has redis)"; it names the kinds of node it lists."""
    path = _write(tmp_path, '[[node]]\nname = "sentinel-1"\nkind = "sentinel"\naddress = "10.0.0.5"\nport = 26379\n')
    with pytest.raises(DeploymentError) as err:
        load_deployment(path).topology(("redis", "mt5", "engine"))
    assert "needs mt5, engine" in str(err.value) and "kinds: sentinel)" in str(err.value)
    assert "it has redis" not in str(err.value) and "\n" not in str(err.value)


def test_a_toxiproxy_url_with_a_password_is_refused_without_echoing_it(tmp_path):
    """Issue 17: `url = "http://user:secret@127.0.122.1:8474"` echoed the password in the error."""
    path = _write(tmp_path, GOOD.replace("http://127.0.0.1:8474", "http://alice:Pw9xQz7@127.0.122.1:8474"))
    with pytest.raises(DeploymentError) as err:
        load_deployment(path)
    assert ": toxiproxy.url:" in str(err.value) and "Pw9xQz7" not in str(err.value) and "alice" not in str(err.value)
    assert "***@127.0.122.1:8474" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("address", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"])
def test_an_address_no_node_can_have_is_refused_in_one_line(tmp_path, address):
    """Issue 17: 0.0.0.0 and 255.255.255.255 were accepted as node addresses."""
    path = _write(tmp_path, GOOD.replace('address = "127.0.98.2"', f'address = "{address}"'))
    with pytest.raises(DeploymentError) as err:
        load_deployment(path)
    assert ": node[0].address:" in str(err.value) and "unspecified, broadcast or multicast" in str(err.value)
    assert "\n" not in str(err.value)
