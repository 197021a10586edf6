"""Process faults on any node handle with ProcessNode's methods (kill, terminate, pause, resume, start,
wait_ready, is_alive, pid): SIGKILL, SIGTERM, SIGSTOP/SIGCONT ("hammer time"), restart, crash loop.

Healing a kill or a termination restarts the node (Jepsen's kill nemesis heals by starting the process again);
pass ``restart_on_heal=False`` when the system under test must restart it itself (a supervisor drill) — then
heal only records the end of the fault window.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from faults.core import Fault, FaultError


class NodeHandle(Protocol):
    name: str

    @property
    def pid(self) -> int | None: ...
    def kill(self) -> None: ...
    def terminate(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def start(self) -> Any: ...
    def wait_ready(self, timeout: float | None = None) -> Any: ...
    def is_alive(self) -> bool: ...


class _NodeFault(Fault):
    def __init__(self, node: NodeHandle, *, restart_on_heal: bool = True, ready_timeout: float | None = None, **kw):
        super().__init__(**kw)
        self.node = node
        self.restart_on_heal = restart_on_heal
        self.ready_timeout = ready_timeout
        self.victim_pid: int | None = None

    def details(self) -> dict:
        return {"node": getattr(self.node, "name", repr(self.node)), "pid": self.victim_pid,
                "current_pid": self.node.pid}

    def _restart(self) -> None:
        if self.restart_on_heal and not self.node.is_alive():
            self.node.start()
            self.node.wait_ready(self.ready_timeout)


class Kill(_NodeFault):
    """SIGKILL the node's process group; heal starts it again."""

    name = "process-kill"
    requirement_ids = ("ENG-3", "TEST")

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self.node.kill()

    def _heal(self) -> None:
        self._restart()

    def describe(self) -> str:
        return f"SIGKILL {getattr(self.node, 'name', '?')}"


class Terminate(Kill):
    """SIGTERM (escalating to SIGKILL after the handle's deadline); heal starts the node again."""

    name = "process-terminate"

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self.node.terminate()

    def describe(self) -> str:
        return f"SIGTERM {getattr(self.node, 'name', '?')}"


class Pause(_NodeFault):
    """SIGSTOP the node's process group; heal sends SIGCONT. The node looks alive but does nothing."""

    name = "process-pause"
    requirement_ids = ("ENG-3",)

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self.node.pause()

    def _heal(self) -> None:
        self.node.resume()

    def describe(self) -> str:
        return f"SIGSTOP {getattr(self.node, 'name', '?')} (pause)"


class Restart(_NodeFault):
    """A clean restart: SIGTERM then start; the fault window lasts until the node is ready again (heal waits)."""

    name = "process-restart"
    requirement_ids = ("ENG-2", "BE-3")

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self.node.terminate()
        self.node.start()

    def _heal(self) -> None:
        if self.node.is_alive():
            self.node.wait_ready(self.ready_timeout)
        else:
            self._restart()

    def describe(self) -> str:
        return f"restart {getattr(self.node, 'name', '?')}"


class CrashLoop(_NodeFault):
    """Kill the node every time it comes back (started by a supervisor or by this fault), ``interval`` seconds
    after it was seen alive, until healed or ``max_kills`` is reached. With ``restart=True`` the fault itself
    restarts the node after each kill (a process that crashes on start); heal stops the loop and leaves the node
    running."""

    name = "process-crash-loop"
    requirement_ids = ("EA-1", "ENG-3")

    def __init__(self, node: NodeHandle, *, interval: float = 0.5, max_kills: int = 20, restart: bool = True, **kw):
        super().__init__(node, **kw)
        self.interval = interval
        self.max_kills = max_kills
        self.restart = restart
        self.kills: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set() and len(self.kills) < self.max_kills:
                if self.node.is_alive():
                    # a scheduled crash, not a synchronisation: the node runs ``interval`` between crashes
                    if self._stop.wait(self.interval):
                        return
                    pid = self.node.pid
                    self.node.kill()
                    self.kills.append((time.monotonic(), pid))
                elif self.restart:
                    self.node.start()
                else:
                    if self._stop.wait(0.05):
                        return
        except BaseException as exc:  # noqa: BLE001 - reported at heal
            self._error = exc

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{self.fault_id}", daemon=True)
        self._thread.start()

    def _heal(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.interval * 2))
            if self._thread.is_alive():
                raise FaultError(f"{self.fault_id}: crash loop thread did not stop")
        self._restart()
        if self._error is not None:
            raise FaultError(f"{self.fault_id}: crash loop failed: {self._error!r}")

    def details(self) -> dict:
        return {**super().details(), "kills": len(self.kills), "interval_s": self.interval}

    def describe(self) -> str:
        return f"crash loop {getattr(self.node, 'name', '?')} every {self.interval:g}s"
