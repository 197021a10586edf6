"""Fixtures: simulator processes on 127.0.3.x (the MT5 block), clients and admins, all stopped by their handles."""
from __future__ import annotations

import socket
import pytest

from reference.mt5.simclient import SimulatorAdmin, SimulatorTerminal
from reference.mt5.simulator.config import Behaviour
from tradedrill.services.mt5sim import admin_token, simulator_node

HEDGING, NETTING = 5001, 5002


def engine_session(sim, timeout_s: float = 2.0, login: int = HEDGING):
    """The engine's own ``BrokerSession`` to simulator process ``sim`` (a node), connected; ``timeout_s`` for both
    a call and an order reply."""
    from reference.engine.broker import BrokerSession
    from reference.engine.config import BrokerConfig, EngineConfig

    cfg = EngineConfig(broker_timeout_s=timeout_s, order_reply_timeout_s=timeout_s)
    session = BrokerSession(BrokerConfig(name="primary", params={"kind": "simulator", "host": sim.address,
                                                                  "port": sim.port}, login=login), cfg)
    session.connect()
    return session


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def make_sim(tmp_path):
    """Factory of simulator nodes; every node it made is stopped at teardown, also when the test failed."""
    nodes = []

    def make(host: str = "127.0.3.1", seed: int = 7, name: str | None = None, **kwargs):
        name = name or f"mt5sim-{len(nodes)}"
        node = simulator_node(name, host, free_port(host), tmp_path / name, seed=seed,
                              log_path=tmp_path / f"{name}.log", **kwargs)
        nodes.append(node)
        node.start().wait_ready()
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One simulator shared by a module's tests (tests keep apart by magic numbers)."""
    base = tmp_path_factory.mktemp("mt5sim")
    host = "127.0.3.2"
    node = simulator_node("mt5sim-shared", host, free_port(host), base / "state", seed=11,
                          log_path=base / "mt5sim.log")
    try:
        node.start().wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def admin(sim):
    admin = SimulatorAdmin(sim.address, sim.port, token=admin_token(sim))
    try:
        yield admin
    finally:
        admin.close()


def default_behaviour() -> dict:
    return Behaviour().as_dict()


@pytest.fixture
def mt5(sim, admin):
    """A terminal initialized on the hedging account; the broker's behaviour is reset after the test."""
    terminal = SimulatorTerminal(sim.address, sim.port, call_timeout=2.0)
    assert terminal.initialize(login=HEDGING), terminal.last_error()
    yield terminal
    terminal.shutdown()
    admin.set_behaviour(**default_behaviour())


@pytest.fixture
def netting(sim, admin):
    terminal = SimulatorTerminal(sim.address, sim.port, call_timeout=2.0)
    assert terminal.initialize(login=NETTING), terminal.last_error()
    yield terminal
    terminal.shutdown()
    admin.set_behaviour(**default_behaviour())
