"""The tick side of a drill (issue 14): one tick consumer per EA node, and the faults that hurt the tick paths.

A drill whose topology runs the ``ea`` service (``Scenario.services=("ea",)``) gets, for each EA node ``ea-<i>``, a
consumer (``reference.ea.consumer.TickConsumer``) on its own address ``<subnet>.<150 + i - 1>`` (UDP socket and TCP
connection both leave from it), started with the load and stopped before the stack goes down; it records
``ticks-<node>.jsonl`` in the run folder (``scenarios.ticks`` judges it).

Faults (``scenarios.packages.FAULTS``), each on an ``ea`` node target:
- ``udp-loss`` (``percent``, default 30): the kernel drops that share of UDP arriving at the EA's consumer
  (``faults.kernel.UdpLossKernel``, receiver side; the sequence is not seeded, the rate is);
- ``udp-blackhole``: all of it (100 %);
- ``tick-cut``: nftables partition between the consumer and its EA: UDP and TCP down together (EA-2's both-down);
- ``ea-network-down``: nftables partition between the EA and the primary broker (EA-4).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

CONSUMER_HOST_BASE = 150  # <subnet>.150 ... : the drill's tick consumers (the set writers use .200-.249)


def consumer_address(subnet: str, ea_name: str) -> str:
    """The address of the drill's consumer of EA node ``ea-<i>``."""
    index = int(ea_name.rpartition("-")[2] or 1)
    return f"{subnet}.{CONSUMER_HOST_BASE + index - 1}"


class TickClients:
    """The drill's tick consumers (one per EA node of ``topology``), recording into ``run_path``."""

    def __init__(self, topology: Any, run_path: Path):
        from reference.ea.consumer import ConsumerConfig, TickConsumer

        self.consumers = []
        for spec in topology.of_kind("ea"):
            cfg = ConsumerConfig((spec.address, spec.port), (spec.address, spec.port),
                                 consumer_id=f"consumer-{spec.name}",
                                 bind_host=consumer_address(topology.subnet, spec.name),
                                 history_path=str(Path(run_path) / f"ticks-{spec.name}.jsonl"), ea_instance=spec.name)
            self.consumers.append(TickConsumer(cfg))
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> "TickClients":
        with self._lock:
            for c in self.consumers:
                c.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop every consumer (idempotent; each stops its threads within ~0.2 s and flushes its record)."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            for c in self.consumers:
                c.stop()


def start_tick_clients(env: Any) -> TickClients | None:
    """The consumers of ``env``'s EA nodes, started; None when its topology has none."""
    if not env.topology.of_kind("ea"):
        return None
    return TickClients(env.topology, env.run.path).start()


# -- faults on the tick paths --------------------------------------------------------------------------------------
def _named(fault, name: str, description: str):
    fault.name = name
    fault.describe = lambda: description  # type: ignore[method-assign]
    return fault


def udp_loss(ctx, t, params: dict):
    from faults.kernel import UdpLossKernel

    percent = int(params.get("percent", 30))
    addr = consumer_address(ctx.topology.subnet, t.name)
    return _named(UdpLossKernel(addr, percent, log=ctx.fault_log, requirements=ctx.requirement_ids), "udp-loss",
                  f"kernel drops {percent} % of the UDP ticks arriving at {t.name}'s consumer ({addr})")


def udp_blackhole(ctx, t, params: dict):
    from faults.kernel import UdpLossKernel

    addr = consumer_address(ctx.topology.subnet, t.name)
    return _named(UdpLossKernel(addr, 100, log=ctx.fault_log, requirements=ctx.requirement_ids), "udp-blackhole",
                  f"every UDP tick to {t.name}'s consumer ({addr}) dropped")


def tick_cut(ctx, t, params: dict):
    from faults.kernel import Partition

    addr = consumer_address(ctx.topology.subnet, t.name)
    return _named(Partition([[addr], [t.address]], mode="drop", log=ctx.fault_log,
                            requirements=ctx.requirement_ids), "tick-cut",
                  f"{t.name} ({t.address}) and its consumer ({addr}) cut apart: UDP and TCP down")


def ea_network_down(ctx, t, params: dict):
    from faults.kernel import Partition

    broker = next(s for s in ctx.topology.of_kind("mt5") if s.role == "broker-primary")
    return _named(Partition([[t.address], [broker.address]], mode="drop", log=ctx.fault_log,
                            requirements=ctx.requirement_ids), "ea-network-down",
                  f"{t.name} ({t.address}) cut from its broker {broker.name} ({broker.address})")


def check_percent(params: dict) -> list[str]:
    p = params.get("percent", 30)
    return [] if isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 100 else \
        [f"percent must be an integer from 0 to 100, got {p!r}"]
