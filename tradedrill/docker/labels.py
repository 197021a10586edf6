"""The label every container and network of a docker-provider run carries, and the sweep that removes them.

Ryuk is off (no registry to pull it from), so the provider is its own reaper: each run labels what it creates with
``io.tradedrill.run`` (the run's id), ``io.tradedrill.run_dir`` and ``io.tradedrill.owner`` (the harness process's
PID and start time). ``sweep`` removes by label, never by name: a run's own objects at its ``down``; at the next
``up`` and at ``tradedrill down``, every object whose owner process is gone (a drill killed with SIGKILL);
``tradedrill down --all`` also those of live owners.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from tradedrill.process import _create_time, same_process_alive

PROVIDER = "io.tradedrill.provider"
RUN = "io.tradedrill.run"
RUN_DIR = "io.tradedrill.run_dir"
OWNER = "io.tradedrill.owner"


def run_labels(run_id: str, run_dir: str) -> dict[str, str]:
    """The labels of everything one run creates."""
    me = os.getpid()
    return {PROVIDER: "docker", RUN: run_id, RUN_DIR: str(run_dir), OWNER: f"{me}:{_create_time(me) or 0}"}


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the harness process that created an object still runs (PID and start time both checked)."""
    pid, _, created = (labels.get(OWNER) or "").partition(":")
    try:
        return same_process_alive(int(pid), float(created) or None)
    except ValueError:
        return False


@dataclass
class Swept:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def describe(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("container(s)", self.containers), ("network(s)", self.networks),
                                                ("volume(s)", self.volumes)) if v]
        return ", ".join(parts) or "nothing"


def select(labels: dict[str, str], *, run_id: str | None = None, orphans_only: bool = True) -> bool:
    """Whether the sweep takes an object with these labels: one of ``run_id`` when given; else a tradedrill
    object whose owner is gone (or any tradedrill object with ``orphans_only=False``)."""
    if labels.get(PROVIDER) != "docker":
        return False
    if run_id is not None:
        return labels.get(RUN) == run_id
    return not orphans_only or not owner_alive(labels)


def sweep(client, *, run_id: str | None = None, orphans_only: bool = True) -> Swept:
    """Remove the containers (forced: a paused or running one too), then the networks and volumes, that
    ``select`` takes. Never raises: what could not be removed is in ``errors``."""
    out = Swept()
    flt = {"label": [f"{PROVIDER}=docker"] + ([f"{RUN}={run_id}"] if run_id else [])}
    try:
        containers = client.containers.list(all=True, filters=flt)
    except Exception as exc:  # noqa: BLE001
        out.errors.append(f"listing containers: {exc}")
        containers = []
    for c in containers:
        if not select(c.labels, run_id=run_id, orphans_only=orphans_only):
            continue
        try:
            c.remove(force=True, v=True)
            out.containers.append(c.name)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"container {c.name}: {exc}")
    for kind, lister, names in (("network", client.networks, out.networks), ("volume", client.volumes, out.volumes)):
        try:
            objects = lister.list(filters=flt)
        except Exception as exc:  # noqa: BLE001
            out.errors.append(f"listing {kind}s: {exc}")
            continue
        for obj in objects:
            labels = obj.attrs.get("Labels") or {}
            if not select(labels, run_id=run_id, orphans_only=orphans_only):
                continue
            try:
                obj.remove()
                names.append(obj.name)
            except Exception as exc:  # noqa: BLE001
                out.errors.append(f"{kind} {obj.name}: {exc}")
    return out


def sweep_needed(client) -> bool:
    """Whether any tradedrill container still exists on this engine (then a dockerd we started stays up)."""
    try:
        return bool(client.containers.list(all=True, filters={"label": f"{PROVIDER}=docker"}))
    except Exception:  # noqa: BLE001
        return True
