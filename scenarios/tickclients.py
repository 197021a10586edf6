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
- ``ea-network-down``: nftables partition between the EA and the primary broker (EA-4);
- ``udp-loss-proxy`` (``percent``): the same loss through the proxy below, its sequence seeded by the run;
- ``udp-dup-reorder`` (``duplicate``, ``reorder`` 0..1, ``delay_ms``): the consumer's UDP passes a UDP proxy of an
  embedded fault proxy on ``<subnet>.160`` (only in scenarios naming this fault); the fault duplicates and delays
  (reorders) the ticks coming back through it, seeded by the run.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

CONSUMER_HOST_BASE = 150  # <subnet>.150 ... : the drill's tick consumers (the set writers use .200-.249)
PROXY_HOST = 160  # <subnet>.160: the drill's embedded fault proxy (API and UDP proxies) when a fault needs it
PROXIED_FAULTS = ("udp-dup-reorder", "udp-loss-proxy")  # faults that need the consumers' UDP to pass the proxy
_ACTIVE: dict[str, "TickClients"] = {}  # subnet -> the running drill's tick clients (the proxy faults find it)


def consumer_address(subnet: str, ea_name: str) -> str:
    """The address of the drill's consumer of EA node ``ea-<i>``."""
    index = int(ea_name.rpartition("-")[2] or 1)
    return f"{subnet}.{CONSUMER_HOST_BASE + index - 1}"


class TickClients:
    """The drill's tick consumers (one per EA node of ``topology``), recording into ``run_path``. ``proxied``: each
    consumer's UDP passes a UDP proxy of an embedded fault proxy (``faults.proxy``, seeded with ``seed``) on
    ``<subnet>.160``, named ``ticks-<ea node>``; its TCP stays direct."""

    def __init__(self, topology: Any, run_path: Path, proxied: bool = False, seed: int | str = 0):
        self.topology = topology
        self.run_path = Path(run_path)
        self.proxied = proxied
        self.seed = seed
        self.consumers: list = []
        self.proxy = None
        self.links = None
        self._lock = threading.Lock()
        self._started = False
        self._live: dict[str, int] = {}   # consumer id -> live ticks delivered (not a TCP connect's snapshot)
        self._live_lock = threading.Lock()

    def start(self) -> "TickClients":
        from reference.ea.consumer import ConsumerConfig, TickConsumer

        with self._lock:
            try:
                if self.proxied:
                    from faults.network import LinkFaults
                    from faults.proxy.server import EmbeddedToxiproxy

                    self.proxy = EmbeddedToxiproxy(listen=f"{self.topology.subnet}.{PROXY_HOST}:0",
                                                   seed=self.seed).start()
                    self.links = LinkFaults(self.proxy.url, seed=self.seed)
                for spec in self.topology.of_kind("ea"):
                    udp = (spec.address, spec.port)
                    if self.links is not None:
                        listen = self.links.proxy(f"ticks-{spec.name}", f"{spec.address}:{spec.port}",
                                                  f"{self.topology.subnet}.{PROXY_HOST}:0", protocol="udp")
                        host, _, port = listen.rpartition(":")
                        udp = (host, int(port))
                    cfg = ConsumerConfig(udp, (spec.address, spec.port), consumer_id=f"consumer-{spec.name}",
                                         bind_host=consumer_address(self.topology.subnet, spec.name),
                                         history_path=str(self.run_path / f"ticks-{spec.name}.jsonl"),
                                         ea_instance=spec.name)
                    self._live[cfg.consumer_id] = 0
                    self.consumers.append(TickConsumer(cfg, on_tick=self._counter(cfg.consumer_id)).start())
            finally:
                self._started = True
                _ACTIVE[self.topology.subnet] = self
        return self

    def _counter(self, consumer_id: str):
        def on_tick(tick, _path: str) -> None:
            if not tick.snapshot:
                with self._live_lock:
                    self._live[consumer_id] += 1
        return on_tick

    def live_ticks(self) -> dict[str, int]:
        """Consumer id -> the live ticks it delivered so far (a TCP connect's snapshot replay not counted)."""
        with self._live_lock:
            return dict(self._live)

    def wait_live(self, timeout: float) -> None:
        """Until every consumer has delivered a live tick (the EA streams to it), or DeadlineExceeded after
        ``timeout`` seconds (the message names the consumers still waiting)."""
        from tradedrill.waiting import wait_until

        wait_until(lambda: all(self.live_ticks().values()), timeout,
                   f"a live tick at {', '.join(sorted(self._live)) or 'no consumer'}")

    def stop(self) -> None:
        """Stop every consumer and the proxy (idempotent; each consumer stops within ~0.2 s, flushing its record)."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            _ACTIVE.pop(self.topology.subnet, None)
            for c in self.consumers:
                c.stop()
            if self.links is not None:
                try:
                    self.links.close()
                except Exception:  # noqa: BLE001 - the embedded server goes away next anyway
                    pass
            if self.proxy is not None:
                self.proxy.stop()


def start_tick_clients(env: Any) -> TickClients | None:
    """The consumers of ``env``'s EA nodes, started (through the proxy when a scenario fault needs it); None when
    its topology has none."""
    if not env.topology.of_kind("ea"):
        return None
    proxied = any(step.fault in PROXIED_FAULTS for step in env.scenario.faults)
    clients = TickClients(env.topology, env.run.path, proxied=proxied, seed=env.seed)
    try:
        return clients.start()
    except BaseException:
        clients.stop()
        raise


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


def udp_dup_reorder(ctx, t, params: dict):
    from faults.core import Composite
    from faults.network import UdpDuplicate, UdpReorder

    clients = _ACTIVE.get(ctx.topology.subnet)
    if clients is None or clients.links is None:
        raise ValueError("udp-dup-reorder needs the drill's tick proxy (started for scenarios that name this fault)")
    name = f"ticks-{t.name}"
    dup, reorder = float(params.get("duplicate", 0.3)), float(params.get("reorder", 0.3))
    delay = float(params.get("delay_ms", 20.0))
    api = clients.links.api
    fault = Composite([UdpDuplicate(api, name, dup, stream="downstream", state=clients.links.state),
                       UdpReorder(api, name, reorder, delay, stream="downstream", state=clients.links.state)],
                      description=f"proxy {name}: {dup:.0%} of the UDP ticks duplicated, {reorder:.0%} delayed "
                                  f"{delay:g} ms (reordered), seeded", log=ctx.fault_log,
                      requirements=ctx.requirement_ids)
    fault.name = "udp-dup-reorder"
    return fault


def udp_loss_proxy(ctx, t, params: dict):
    from faults.network import UdpLoss

    clients = _ACTIVE.get(ctx.topology.subnet)
    if clients is None or clients.links is None:
        raise ValueError("udp-loss-proxy needs the drill's tick proxy (started for scenarios that name this fault)")
    percent = int(params.get("percent", 30))
    fault = UdpLoss(clients.links.api, f"ticks-{t.name}", percent / 100.0, stream="downstream",
                    state=clients.links.state, log=ctx.fault_log, requirements=ctx.requirement_ids)
    return _named(fault, "udp-loss-proxy", f"proxy ticks-{t.name}: {percent} % of the UDP ticks lost (seeded)")


def check_dup_reorder(params: dict) -> list[str]:
    out = []
    for key in ("duplicate", "reorder"):
        v = params.get(key, 0.3)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            out.append(f"{key} must be a number from 0 to 1, got {v!r}")
    d = params.get("delay_ms", 20.0)
    if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d <= 1000:
        out.append(f"delay_ms must be a number of milliseconds in (0, 1000], got {d!r}")
    return out


def check_percent(params: dict) -> list[str]:
    p = params.get("percent", 30)
    return [] if isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 100 else \
        [f"percent must be an integer from 0 to 100, got {p!r}"]
