"""Faults only touch what the run owns: loopback addresses and the networks the run created.

Set ``TRADEDRILL_FAULT_NETWORKS`` (comma-separated CIDRs, e.g. a docker network the run created) or pass
``allowed_networks`` to widen the allow-list; nothing else is ever a target.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Iterable

from faults.core import UnsafeTarget

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
NETWORKS_ENV = "TRADEDRILL_FAULT_NETWORKS"


def allowed_networks(extra: Iterable[str] | None = None) -> list:
    nets = list(LOOPBACK)
    configured = [n for n in os.environ.get(NETWORKS_ENV, "").split(",") if n.strip()]
    for net in [*configured, *(extra or [])]:
        nets.append(ipaddress.ip_network(net.strip(), strict=False))
    return nets


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_address(address: str, extra: Iterable[str] | None = None) -> str:
    """Return ``address`` (an IP, a CIDR, ``host:port`` or ``localhost``) if it lies in an allowed network;
    raise UnsafeTarget otherwise."""
    host = address
    if ":" in address and address.count(":") == 1:
        host = address.split(":")[0]
    host = host.strip("[]")
    if host in ("localhost", ""):
        return address
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise UnsafeTarget(
            f"fault target {address!r} is not an IP address; faults take node addresses (127.0.x.y), "
            "never host names, so they cannot reach outside the run"
        ) from None
    for allowed in allowed_networks(extra):
        if net.version == allowed.version and net.subnet_of(allowed):
            return address
    raise UnsafeTarget(
        f"fault target {address!r} is outside loopback and the run's networks; add the run's own network to "
        f"{NETWORKS_ENV} if it created one"
    )


def check_addresses(addresses: Iterable[str], extra: Iterable[str] | None = None) -> list[str]:
    return [check_address(a, extra) for a in addresses]
