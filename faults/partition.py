"""Redis partition shapes, aimed at node addresses (each local node has its own 127.0.x.y).

Kernel shapes (root, nftables; every address checked by faults/safety.py):
- :func:`isolate_primary`  the primary cut from its clients, replicas and Sentinels (Jepsen's "primaries").
- :func:`isolate_sentinel` one Sentinel cut from everything.
- :func:`majority_minority` the nodes split in two, the side of each node drawn from the run's seed; the
  primary can be forced into the minority (the shape that loses acknowledged writes) and the clients' source
  address (127.0.0.1 on loopback) put on either side.
Named shapes for drills: :class:`RedisPartition` (groups plus which member is on which side, for the checkers) and
:class:`PlannedFailover` (``SENTINEL FAILOVER``: a primary change with every connection left open).
Proxy shape (no root, through the Toxiproxy API): :func:`primary_cut_via_proxy` blackholes the proxies that
lead to the primary (clients and Sentinels must reach it through those proxies).
"""
from __future__ import annotations

import random
from typing import Iterable, Sequence

from faults.core import Composite, Fault, FaultError
from faults.kernel import Isolate, Partition
from faults.network import Blackhole, LinkDown, ToxiproxyAPI

CLIENT_SOURCE = "127.0.0.1"  # the source address the kernel picks for a client connecting to 127.x on loopback


def isolate_primary(primary: str, mode: str = "drop", **kw) -> Isolate:
    iso = Isolate(primary, mode=mode, description=f"redis primary {primary} cut from clients, replicas and "
                                                  f"sentinels ({mode})", **kw)
    iso.name = "redis-primary-isolated"
    iso.requirement_ids = ("RDS-2", "RDS-4", "ORD-3")
    return iso


def isolate_sentinel(sentinel: str, mode: str = "drop", **kw) -> Isolate:
    iso = Isolate(sentinel, mode=mode, description=f"sentinel {sentinel} isolated ({mode})", **kw)
    iso.name = "redis-sentinel-isolated"
    iso.requirement_ids = ("RDS-1", "RDS-2")
    return iso


def majority_minority(nodes: Sequence[str], rng: random.Random, *, primary: str | None = None,
                      primary_in_minority: bool = True, clients_with: str | None = "majority",
                      client_sources: Iterable[str] = (CLIENT_SOURCE,), mode: str = "drop", **kw) -> Partition:
    """Split ``nodes`` (Redis servers and Sentinels) into a minority of (n-1)//2 and a majority."""
    if not isinstance(rng, random.Random):
        raise FaultError("majority_minority needs the run's random.Random, so the split replays from the seed")
    nodes = list(dict.fromkeys(nodes))
    if len(nodes) < 3:
        raise FaultError("a majority/minority split needs at least three nodes")
    k = (len(nodes) - 1) // 2
    rest = [n for n in nodes if n != primary]
    rng.shuffle(rest)
    if primary is not None and primary_in_minority:
        minority = [primary] + rest[: k - 1]
        majority = rest[k - 1:]
    else:
        minority = rest[:k]
        majority = [n for n in nodes if n not in minority]
    if clients_with == "majority":
        majority += list(client_sources)
    elif clients_with == "minority":
        minority += list(client_sources)
    part = Partition([minority, majority], mode=mode,
                     description=f"majority/minority split: minority {minority} | majority {majority}", **kw)
    part.name = "redis-majority-minority"
    part.requirement_ids = ("RDS-2", "RDS-4", "ENG-5")
    part.minority, part.majority = minority, majority
    return part


def primary_cut_via_proxy(api: ToxiproxyAPI, proxies: Sequence[str], *, down: bool = False, **kw) -> Composite:
    """Blackhole (or take down) every proxy that leads to the primary; heal lifts them all."""
    parts = [LinkDown(api, p, **kw) if down else Blackhole(api, p, **kw) for p in proxies]
    comp = Composite(parts, description=f"redis primary cut via proxies {list(proxies)} "
                                        f"({'down' if down else 'blackhole'})", log=kw.get("log"))
    comp.name = "redis-primary-cut-proxy"
    return comp


class RedisPartition(Partition):
    """A partition of the drill's nodes with names: ``sides`` maps a side name (``minority``, ``majority``, or
    ``sentinel-1``...) to the member names on it (nodes, engines, writer clients, ``harness``), so the checkers
    can say on which side each acknowledged write was made. ``shape`` names how it was drawn."""

    name = "redis-partition"
    requirement_ids = ("RDS-2", "RDS-4", "ENG-5")

    def __init__(self, groups, *, shape: str, sides: dict[str, list[str]], **kw):
        super().__init__(groups, **kw)
        self.shape, self.sides = shape, {k: list(v) for k, v in sides.items()}

    def details(self) -> dict:
        return {**super().details(), "shape": self.shape, "sides": self.sides}


class PlannedFailover(Fault):
    """``SENTINEL FAILOVER <master>`` through one Sentinel (maintenance: no connection is reset), then wait until a
    majority of the Sentinels name a new primary (``wait_s`` deadline; FaultError if none). Healing does nothing:
    a planned failover is not undone. ``sentinel`` is a client factory ``() -> redis.Redis`` of one Sentinel,
    ``primary`` one of ``() -> (host, port) | None`` (the majority view).

    ``procedure``: ``"sentinel"`` is the bare command. Sentinel converts the old primary into a replica only at its
    next INFO poll, about 10 s later (measured: +switch-master at 05.05 s, +convert-to-slave at 15.07 s), and all
    that time it still acknowledges the writes of every client connected to it; they are lost when it resyncs.
    ``"paused"`` is the runbook that loses nothing: ``CLIENT PAUSE <pause_ms> WRITE`` on the old primary (its
    replicas catch up while writes wait), the failover, ``REPLICAOF <new>`` on the old primary at once, then
    ``CLIENT UNPAUSE``: the waiting writes meet a replica (READONLY) and their clients go to the new primary.
    ``old_node`` is a client factory of the old primary (needed for ``"paused"``). ``peers``: client factories of
    every Sentinel (default: ``sentinel`` alone); the failover is ordered only once they are all at rest (``wait_s``),
    see ``_wait_sentinels_at_rest``."""

    name = "redis-failover"
    requirement_ids = ("RDS-2", "ENG-4")

    def __init__(self, sentinel, primary, master_name: str, *, wait_s: float = 15.0, procedure: str = "sentinel",
                 old_node=None, pause_ms: int = 5000, peers: Sequence | None = None, **kw):
        super().__init__(**kw)
        if procedure not in ("sentinel", "paused"):
            raise FaultError("procedure is sentinel or paused")
        if procedure == "paused" and old_node is None:
            raise FaultError("the paused procedure needs a client of the old primary")
        self._sentinel, self._primary, self.master_name, self.wait_s = sentinel, primary, master_name, wait_s
        self.procedure, self._old_node, self.pause_ms = procedure, old_node, int(pause_ms)
        self._peers = list(peers) if peers else [sentinel]
        self.old: tuple | None = None
        self.new: tuple | None = None

    def _inject(self) -> None:
        from tradedrill.waiting import DeadlineExceeded, wait_until

        self.old = self._primary()
        self._wait_sentinels_at_rest()
        old = self._old_node() if self.procedure == "paused" else None
        try:
            if old is not None:
                old.execute_command("CLIENT", "PAUSE", self.pause_ms, "WRITE")
            s = self._sentinel()
            try:
                s.execute_command("SENTINEL", "FAILOVER", self.master_name)
            finally:
                s.close()
            try:
                self.new = wait_until(lambda: (p := self._primary()) and p != self.old and p, self.wait_s,
                                      f"the Sentinels to promote a primary other than {self.old}")
            except DeadlineExceeded as exc:
                raise FaultError(str(exc)) from None
            if old is not None:
                old.execute_command("REPLICAOF", self.new[0], self.new[1])
        finally:
            if old is not None:
                try:
                    old.execute_command("CLIENT", "UNPAUSE")
                finally:
                    old.close()

    def _wait_sentinels_at_rest(self) -> None:
        """Wait (``wait_s``) until every Sentinel of ``peers`` names the majority's primary, runs no failover and
        last saw each replica as one (``sentinel_unsettled``); a Sentinel that does not answer is left out. A failover ordered sooner after a change may promote
        a node another Sentinel still takes for the old primary and converts back: the failover aborts
        (FaultError if they do not come to rest)."""
        import redis

        from tradedrill.services.redis import sentinel_unsettled
        from tradedrill.waiting import DeadlineExceeded, wait_until

        why = {"now": "no answer"}

        def at_rest() -> bool:
            answered = 0
            for make in self._peers:
                s = make()
                try:
                    reason = sentinel_unsettled(s, self.master_name, self.old)
                except (redis.ConnectionError, redis.TimeoutError):
                    continue      # a Sentinel cut off (another fault) converts nothing until it is back
                finally:
                    s.close()
                answered += 1
                if reason:
                    why["now"] = reason
                    return False
            return answered > 0

        try:
            wait_until(at_rest, self.wait_s, f"the Sentinels to be at rest with the primary {self.old}")
        except DeadlineExceeded as exc:
            raise FaultError(f"{exc}: a Sentinel {why['now']}") from None

    def _heal(self) -> None:
        return None

    def describe(self) -> str:
        how = "writes paused, old primary demoted at once" if self.procedure == "paused" else "bare SENTINEL FAILOVER"
        return f"planned failover of {self.master_name} through Sentinel ({how}; old primary {self.old})"

    def details(self) -> dict:
        return {"old": list(self.old) if self.old else None, "new": list(self.new) if self.new else None,
                "procedure": self.procedure}
