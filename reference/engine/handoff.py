"""Crash handoff (ENG-1, issue 11): the supervisor that runs an engine releases its lease once it has reaped the
process, so the passive instance takes over in a fraction of a second instead of waiting out the lease TTL.

Why this is safe: the supervisor calls :func:`release_after_exit` only after the engine's PID has exited and been
reaped, so that process cannot send another order. The release is a compare-and-delete on the holder value the
engine recorded when it acquired the lease (``lease-<instance>`` in its state folder): if another instance already
holds the lease (the dead one had lost it), nothing is touched. The successor sees ``released = exit`` when it
acquires and waits ``exit_flight_s`` for requests already on the wire before it reconciles with the broker.

A pause, a frozen VM or a lost host is not a crash: no supervisor sees an exit, and the successor still waits for
the TTL (``lease.py``). Used by ``reference.supervisor`` through its ``on_exit`` hook, and from the command line as
``python -m reference.engine release-after-exit --config FILE --instance A --state-dir DIR``.
"""
from __future__ import annotations

from pathlib import Path

from .config import EngineConfig
from .contract import Keys
from .lease import RELEASE
from .redislink import RedisLink, RedisUnavailable


def lease_value_file(state_dir: str | Path, instance: str) -> Path:
    """Where an engine instance records the lease value it holds."""
    return Path(state_dir) / f"lease-{instance}"


def release_after_exit(config: EngineConfig) -> str:
    """Release the lease the (exited, reaped) instance ``config.instance`` held. Returns what happened, as a
    phrase for the supervisor's log: ``released <value>``, ``not the holder``, ``no lease recorded`` or
    ``redis unavailable: ...``. Never raises for a Redis outage (the TTL then runs out as for a pause)."""
    path = lease_value_file(config.state_dir, config.instance)
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return "no lease recorded"
    if not value:
        return "no lease recorded"
    keys = Keys.of(config)
    link = RedisLink(config, "handoff")
    try:
        done = int(link.run(lambda r: r.eval(RELEASE, 3, keys.lease, keys.renewed_ms, keys.lease_released, value,
                                             "exit")))
    except RedisUnavailable as exc:
        return f"redis unavailable: {exc}"
    finally:
        close = getattr(link, "close", None)
        if close:
            close()
    return f"released {value}" if done else "not the holder"
