"""The external provider (issue 17, item 5): drills against a deployment somebody else runs, reached at the
addresses of a topology file, hurt only through its Toxiproxy and the brokers' admin endpoints.

Not built yet: the provider interface (``tradedrill.providers.base``) and the per-run record of skipped faults
(``provider.json``, shown in the report) are ready for it; what is missing is reading the deployment file into a
topology of fixed addresses, node handles that only report (no process to hurt), and routing the link faults
through the user's Toxiproxy (``TRADEDRILL_TOXIPROXY_URL``).
"""
from __future__ import annotations

from typing import Any, Iterable

from tradedrill.topology import TopologyError


class ExternalStack:
    provider = "external"
    capabilities = frozenset({"fault-proxy", "broker-admin"})

    @staticmethod
    def drill_topology(subnet: str, services: Iterable[str], overrides: dict | None = None,
                       deployment: Any = None) -> Any:
        raise TopologyError("the external provider is not built yet (issue 17): drills run on --provider local "
                            "or --provider docker")

    def __init__(self, *args: Any, **kwargs: Any):
        raise TopologyError("the external provider is not built yet (issue 17)")
