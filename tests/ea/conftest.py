"""Fixtures of the EA tests: a real MT5 simulator (ticks every 5 ms), a real redis-server, EA processes and
consumers on 127.0.82.x (the EA test block; the tick benchmark uses 127.0.83.x; ``TRADEDRILL_EA_TEST_SUBNET`` moves
the tests, e.g. to run two checkouts' EA tests at once). Every process is a ProcessNode
stopped by its handle at teardown, also when the test failed; every consumer is stopped too."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from reference.ea.consumer import ConsumerConfig, TickConsumer
from tradedrill.process import ProcessNode
from tradedrill.services.ea import ea_node
from tradedrill.services.mt5sim import simulator_node



def loopback_block(variable: str, default: str) -> str:
    """``variable``'s loopback /24 (three octets, 127.x.y), else ``default``; anything else is a one-line error."""
    value = os.environ.get(variable, default).strip()
    if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)", value):
        raise RuntimeError(f"{variable}={value!r} is not a loopback block like 127.0.82 (three octets, 127.x.y)")
    return value


BLOCK = loopback_block("TRADEDRILL_EA_TEST_SUBNET", "127.0.82")  # the EA tests' loopback block
SIM_HOST = f"{BLOCK}.1"
EA_HOSTS = (f"{BLOCK}.2", f"{BLOCK}.3", f"{BLOCK}.4")
CONSUMER_HOSTS = (f"{BLOCK}.10", f"{BLOCK}.11", f"{BLOCK}.12")
REDIS_HOST = f"{BLOCK}.20"
TICK_STEP_MS = 5


def free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def both_free_port(host: str) -> int:
    """A port free for TCP and UDP on ``host`` (the EA binds both)."""
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("ea-sim")
    (base / "sim.json").write_text(json.dumps({"tick_step_ms": TICK_STEP_MS}))
    node = simulator_node("ea-sim", SIM_HOST, free_port(SIM_HOST), base / "state", seed=5,
                          config_file=base / "sim.json", log_path=base / "sim.log")
    try:
        node.start().wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def redis_node(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    base = tmp_path_factory.mktemp("ea-redis")
    port = free_port(REDIS_HOST)

    def ready() -> bool:
        try:
            import redis
            return bool(redis.Redis(host=REDIS_HOST, port=port, socket_timeout=0.5).ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    node = ProcessNode(name="ea-redis", role="ris", address=REDIS_HOST, port=port,
                       argv=["redis-server", "--bind", REDIS_HOST, "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(base)],
                       log_path=base / "redis.log", ready=ready)
    try:
        node.start().wait_ready()
        yield node
    finally:
        node.stop()


def ea_config(sim, host: str, **overrides) -> dict:
    return {"symbols": ["EURUSD", "GBPUSD"],
            "broker": {"kind": "simulator", "host": sim.address, "port": sim.port, "call_timeout": 1.0},
            "login": 5001, "udp_bind": [host, both_free_port(host)], "tcp_bind": [host, 0], **overrides}


@pytest.fixture
def make_ea(tmp_path, sim):
    """Factory of EA nodes (not started unless ``start``); all stopped at teardown."""
    nodes: list[ProcessNode] = []

    def make(name: str = "ea-1", host: str = EA_HOSTS[0], start: bool = True, **overrides) -> ProcessNode:
        cfg = ea_config(sim, host, **overrides)
        cfg["tcp_bind"] = [host, cfg["udp_bind"][1]]  # one port number for both paths
        node = ea_node(name, cfg, tmp_path / name)
        node.extra["udp"] = tuple(cfg["udp_bind"])
        node.extra["tcp"] = tuple(cfg["tcp_bind"])
        nodes.append(node)
        if start:
            node.start().wait_ready()
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def make_consumer(tmp_path):
    """Factory of started consumers reading an EA node; all stopped at teardown. History in tmp_path/run."""
    consumers: list[TickConsumer] = []
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)

    def make(ea: ProcessNode, consumer_id: str = "c1", host: str = CONSUMER_HOSTS[0], cls=TickConsumer,
             **overrides) -> TickConsumer:
        cfg = ConsumerConfig(**{"udp_target": ea.extra["udp"], "tcp_target": ea.extra["tcp"],
                                "consumer_id": consumer_id, "bind_host": host,
                                "history_path": str(run / f"ticks-{consumer_id}.jsonl"),
                                "ea_instance": ea.extra["instance"], **overrides})
        c = cls(cfg)
        consumers.append(c)
        return c.start()

    make.run = run  # type: ignore[attr-defined]
    yield make
    for c in consumers:
        c.stop()


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
