"""Behaviour faults: switch a service's own fault switches at run time through its admin interface (e.g. make a
broker lose the reply after executing an order), and restore what it had on heal.

``faults`` stays free of ``reference``: the fault takes any admin handle with ``behaviour()`` and
``set_behaviour(**changes)`` (the MT5 simulator's ``SimulatorAdmin`` is one), the same pattern as
``faults.process.NodeHandle``.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from faults.core import Fault


class BehaviourAdmin(Protocol):
    def behaviour(self) -> dict[str, Any]: ...
    def set_behaviour(self, **changes: Any) -> Any: ...


class BrokerBehaviour(Fault):
    """Set ``changes`` on the broker behind ``admin`` (a callable returning a fresh admin handle, so a restarted
    broker is reached too); heal restores the values it had before. Requirement: BRK-4 (lost replies), ORD-1."""

    name = "broker-behaviour"
    requirement_ids = ("BRK-4", "ORD-1")

    def __init__(self, admin: Callable[[], BehaviourAdmin], changes: dict[str, Any], *, target: str = "broker",
                 name: str | None = None, **kw):
        if name:
            self.name = name
        super().__init__(**kw)
        self._admin = admin
        self.target = target
        self.changes = dict(changes)
        self.before: dict[str, Any] = {}

    def _call(self, fn: Callable[[BehaviourAdmin], Any]) -> Any:
        admin = self._admin()
        try:
            return fn(admin)
        finally:
            close = getattr(admin, "close", None)
            if close:
                close()

    def _inject(self) -> None:
        current = self._call(lambda a: a.behaviour())
        self.before = {k: current.get(k) for k in self.changes}
        self._call(lambda a: a.set_behaviour(**self.changes))

    def _heal(self) -> None:
        self._call(lambda a: a.set_behaviour(**self.before))

    def describe(self) -> str:
        return f"{self.target}: {self.changes}"

    def details(self) -> dict:
        return {"node": self.target, "changes": self.changes, "before": self.before}
