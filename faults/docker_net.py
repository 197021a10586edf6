"""A node cut off entirely on the docker provider (issue 17, step 4): ``docker network disconnect`` of its container
from the run's network, ``docker network connect`` back at the same address and DNS name on heal.

Unlike an nftables isolation (``faults.kernel.Isolate``) nothing filters packets: the container loses its interface
on the network, so peers get "no route to host" (or time out) and the node itself sees no network at all, while its
process keeps running. The node handle is ``tradedrill.docker.nodes.ContainerNode`` (``disconnect``/``reconnect``).
"""
from __future__ import annotations

from typing import Any

from faults.core import Fault, FaultError


class NodeDisconnect(Fault):
    """Disconnect ``node`` (a handle with ``disconnect``/``reconnect``/``connected``) from its network; heal
    reconnects it. Raises FaultError at construction for a handle without them (a local node: use Isolate)."""

    name = "node-disconnect"
    requirement_ids = ("RDS-2",)

    def __init__(self, node: Any, **kw):
        super().__init__(**kw)
        if not all(hasattr(node, m) for m in ("disconnect", "reconnect", "connected")):
            raise FaultError(f"{getattr(node, 'name', node)!r} is not a container node: it cannot be disconnected "
                             f"from a Docker network")
        self.node = node

    def _inject(self) -> None:
        self.node.disconnect()

    def _heal(self) -> None:
        self.node.reconnect()

    def describe(self) -> str:
        return f"{self.node.name} ({self.node.address}) disconnected from its Docker network"

    def details(self) -> dict:
        return {"node": self.node.name, "address": self.node.address,
                "network": getattr(getattr(self.node, "network", None), "name", None)}
