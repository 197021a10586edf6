"""Fixtures for the engine's integration tests: the real local topology on 127.0.5.x (Redis primary + 2 replicas +
3 Sentinels, two simulator brokers, engines A and B), every process a ProcessNode stopped in teardown.

One topology (``topology()``) places every node; the stack fixture runs its Redis service, the brokers fixture its
two ``mt5`` nodes, and each test's ``Harness`` runs engines of a group of its own, built by the same service
modules as ``tradedrill up`` and the drills (``tradedrill.services.mt5sim``, ``tradedrill.services.engine``).
"""
from __future__ import annotations

import dataclasses
import os
import json
import sys
import time
from pathlib import Path

import pytest
import redis

from reference.engine.contract import comment_prefix_for
from reference.mt5.simclient import SimulatorAdmin
from tradedrill.local import LocalStack
from tradedrill.process import ProcessNode, stop_all
from tradedrill.services import engine as engine_svc
from tradedrill.services import mt5sim
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SUBNET = os.environ.get("TRADEDRILL_ENGINE_TEST_SUBNET", "127.0.5")   # another /24 lets two checkouts test at once
LOGIN = 5001
# the area's topology settings: a faster Sentinel, shorter broker calls (behaviour, not target values, is asserted)
SETTINGS = {"sentinel.down_after_ms": 1000, "mt5.account": LOGIN, "mt5.call_timeout_s": 2.0}


def topology(**overrides) -> Topology:
    """Every node of the engine tests on 127.0.5.x (``overrides``: topology settings, e.g. other ports so a
    module's stack never collides with another module's)."""
    return Topology.default(subnet=SUBNET, services=("redis", "mt5", "engine"), overrides={**SETTINGS, **overrides})


def local_stack(tmp_path_factory, **overrides) -> LocalStack:
    """The topology's Redis service: a primary + 2 replicas + 3 Sentinels (the brokers and engines are run by the
    ``brokers`` fixture and the ``Harness``)."""
    return LocalStack(topology(**overrides), tmp_path_factory.mktemp("stack"), services=("redis",))


def broker_pair(tmp_path_factory, primary: tuple[str, int] | None = None,
                backup: tuple[str, int] | None = None) -> list[ProcessNode]:
    """The topology's two simulator brokers (primary, backup), or at ``primary``/``backup`` ``(host, port)`` when
    a module runs its own; the caller starts and stops them (``run_brokers``)."""
    topo = topology()
    base = tmp_path_factory.mktemp("brokers")
    nodes = []
    for which, where, seed in (("primary", primary, 1), ("backup", backup, 2)):
        spec = topo.node(f"mt5-{which}")
        if where:
            spec = dataclasses.replace(spec, address=where[0], port=where[1])
        nodes.append(mt5sim.build_node(spec, topo, base, None, seed=seed, server_name=f"Sim-{which.title()}"))
    return nodes


def with_brokers(topo: Topology, brokers: list[ProcessNode]) -> Topology:
    """``topo`` with its ``mt5`` nodes where ``brokers`` really listen (a module may run its own brokers)."""
    where = {n.name: (n.address, n.port) for n in brokers}
    nodes = [dataclasses.replace(s, address=where[s.name][0], port=where[s.name][1]) if s.name in where else s
             for s in topo.nodes]
    return dataclasses.replace(topo, nodes=nodes)


def run_brokers(nodes):
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        yield nodes
    finally:
        stop_all(nodes)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory) as st:
        yield st


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    yield from run_brokers(broker_pair(tmp_path_factory))


class Harness:
    """What one test drives: engines as processes, a Redis client for RTSS/RTRS, the brokers' admin handles."""

    def __init__(self, stack: LocalStack, brokers: list[ProcessNode], tmp: Path, group: str):
        self.stack = stack
        self.broker_nodes = brokers
        self.tmp = tmp
        self.group = group
        # the stack's topology, its brokers where the brokers fixture runs them
        self.topology = with_brokers(stack.topology, brokers)
        self.engines: dict[str, ProcessNode] = {}
        self.rtss, self.rtrs, self.alerts = f"{group}:RTSS", f"{group}:RTRS", f"{group}:ALERTS"
        self.admin = mt5sim.admin(self.topology.node("mt5-primary"))
        self.backup_admin = mt5sim.admin(self.topology.node("mt5-backup"))
        self.magic = 7_000_000 + abs(hash(group)) % 1_000_000
        self._seq = 0

    # -- config and engines ---------------------------------------------------------------------------------------
    def config(self, **overrides) -> dict:
        """The engine's config for this test's group: it logs in as the stack's ``engine`` user."""
        return engine_svc.engine_config(self.topology, {
            "group": self.group,
            "rtss_key": self.rtss, "rtrs_key": self.rtrs, "alerts_key": self.alerts,
            "magic": self.magic,
            # behaviour, not target values, is asserted: scaled-down timings (defaults carry the requirement IDs)
            "redis_retry_interval_s": 0.5, "broker_heartbeat_s": 1.0, "broker_timeout_s": 2.5,
            "broker_reconnect_s": 0.3, "retry_backoff_s": [0.1, 0.2, 0.4, 0.8, 1.6], "failed_sync_retry_s": 2.0,
            "market_closed_poll_s": 0.5, "ambiguous_grace_s": 3.0, "watchdog_timeout_s": 20.0,
            **overrides,
        }, self.stack.secrets)

    def engine_node(self, instance: str, module: str = "reference.engine", **overrides) -> ProcessNode:
        """The engine's ProcessNode, not started (a supervisor may start it); stopped by ``close``."""
        spec = self.topology.node(engine_svc.node_name(instance))
        state = engine_svc.state_dir(spec, self.tmp)
        state.mkdir(parents=True, exist_ok=True)
        cfg_path = state / "engine.json"
        cfg_path.write_text(json.dumps(self.config(**overrides)))
        command = None if module == "reference.engine" else (sys.executable, "-m", module)
        node = engine_svc.build_node(spec, self.topology, self.tmp, None, config_path=cfg_path, command=command)
        self.engines[instance] = node
        return node

    def engine(self, instance: str, **overrides) -> ProcessNode:
        node = self.engine_node(instance, **overrides)
        node.start().wait_ready()
        return node

    def events(self, instance: str) -> list[dict]:
        path = engine_svc.events_path(self.topology.node(engine_svc.node_name(instance)), self.tmp)
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass   # a line being written
        return out

    def wait_event(self, instance: str, event: str, timeout: float, since: int = 0, **match) -> dict:
        def found():
            for e in self.events(instance)[since:]:
                if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            return None
        return wait_until(found, timeout, f"event {event} {match or ''} from engine {instance}")

    def active_instance(self, timeout: float = 15.0) -> str:
        def who():
            for name in self.engines:
                if self.engines[name].is_alive() and any(
                        e["event"] == "takeover_ready" for e in self.events(name)):
                    last = [e for e in self.events(name) if e["event"] in ("takeover_ready", "passive", "lease_lost")]
                    if last and last[-1]["event"] == "takeover_ready":
                        return name
            return None
        return wait_until(who, timeout, "an engine to be active")

    # -- redis ------------------------------------------------------------------------------------------------------
    def redis(self) -> redis.Redis:
        host, port = wait_until(lambda: self.stack.redis_primary(), 15, "Sentinels to name a primary")
        return redis.Redis(host=host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                           decode_responses=True, **self.stack.harness_credential.redis_kwargs())

    def submit(self, **fields) -> tuple[str, str]:
        """XADD one signal (retrying across a failover); returns (signal_id, entry_id)."""
        self._seq += 1
        sig = {"signal_id": f"{self.group}-{self._seq}", "account": str(LOGIN), "symbol": "EURUSD",
               "side": "buy", "volume": "0.01", "source": "test", "created_ms": str(int(time.time() * 1000))}
        sig.update({k: str(v) for k, v in fields.items()})

        def add():
            return self.redis().xadd(self.rtss, sig)
        entry = wait_until(add, 20, f"XADD of {sig['signal_id']}")
        return sig["signal_id"], entry

    def submit_raw(self, fields: dict) -> str:
        return wait_until(lambda: self.redis().xadd(self.rtss, fields), 20, "XADD of a raw entry")

    def results(self) -> list[dict]:
        return _retry(lambda: [f for _id, f in self.redis().xrange(self.rtrs)])

    def result_for(self, signal_id: str, timeout: float = 30.0) -> dict:
        def find():
            return next((r for r in _retry(lambda: [f for _i, f in self.redis().xrange(self.rtrs)])
                         if r.get("signal_id") == signal_id), None)
        return wait_until(find, timeout, f"a result for {signal_id} on RTRS")

    def pending(self) -> int:
        def count():
            info = self.redis().xpending(self.rtss, self.group)
            return info["pending"]
        return _retry(count)

    # -- broker ledger -------------------------------------------------------------------------------------------
    def ledger(self, admin: SimulatorAdmin | None = None) -> list[dict]:
        admin = admin or self.admin
        # a restarted simulator resets the admin's old connection once; the next call reconnects
        deals = _retry(lambda: admin.ledger(login=LOGIN), timeout=10)
        return [d for d in deals if d.get("magic") == self.magic]

    def check_no_duplicates(self) -> dict[str, int]:
        """Zero duplicate orders: no signal's comment prefix has two opening deals across both brokers."""
        per_signal: dict[str, int] = {}
        for admin in (self.admin, self.backup_admin):
            for deal in self.ledger(admin):
                if deal.get("entry", 0) != 0:
                    continue
                prefix = str(deal["comment"]).rsplit("-", 1)[0]
                per_signal[prefix] = per_signal.get(prefix, 0) + 1
        dups = {k: v for k, v in per_signal.items() if v > 1}
        assert not dups, f"duplicate orders at the broker: {dups}"
        return per_signal

    def check_none_lost(self, signal_ids: list[str], timeout: float = 60.0) -> list[dict]:
        """Every submitted signal has an explicit outcome on RTRS, and each executed one is in a ledger."""
        results = [self.result_for(s, timeout) for s in signal_ids]
        prefixes = set(self.check_no_duplicates())
        for r in results:
            if r["status"] == "executed":
                assert comment_prefix_for(r["signal_id"]).rstrip("-") in prefixes, f"executed but not in ledger: {r}"
        return results

    def close(self) -> None:
        stop_all(list(self.engines.values()))
        self.admin.close()
        self.backup_admin.close()


def _retry(fn, timeout: float = 20.0):
    box = {}

    def attempt():
        box["v"] = fn()
        return True
    wait_until(attempt, timeout, "Redis to answer")
    return box["v"]


@pytest.fixture
def harness(stack, brokers, tmp_path, request):
    group = "g" + "".join(c for c in request.node.name if c.isalnum())[-20:]
    h = Harness(stack, brokers, tmp_path, group)
    for admin in (h.admin, h.backup_admin):
        admin.set_behaviour(sessions={}, margin_check=True, requote_rate=0.0, price_changed_rate=0.0,
                            lose_reply_rate=0.0, lose_next_replies=0, retcode_faults=[])
    try:
        yield h
    finally:
        h.close()
