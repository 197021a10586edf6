"""Crash handoff (ENG-1, issue 11): the supervisor that runs an engine releases its lease once it has reaped the
process, so the passive instance takes over in a fraction of a second instead of waiting out the lease TTL.

Why this is safe: the supervisor calls :func:`release_after_exit` only after the engine's PID has exited and been
reaped, so that process cannot send another order. The release is a compare-and-delete on the holder value the
engine recorded when it acquired the lease (``lease-<instance>`` in its state folder): if another instance already
holds the lease (the dead one had lost it), nothing is touched. The successor sees ``released = exit`` when it
acquires and waits ``exit_flight_s`` for requests already on the wire before it reconciles with the broker. A dead
process whose journal holds an order sent with no answer recorded (``SENDING``/``UNKNOWN``) is not released for: a
slow broker may still execute that order after the successor's scan, so the TTL runs out as after a pause.

A pause, a frozen VM or a lost host is not a crash: no supervisor sees an exit, and the successor still waits for
the TTL (``lease.py``). Used by ``reference.supervisor`` through its ``on_exit`` hook, and from the command line as
``python -m reference.engine release-after-exit --config FILE --instance A --state-dir DIR``.
"""
from __future__ import annotations

from pathlib import Path

from .config import EngineConfig
from .contract import Keys
from .journal import in_flight_in_file
from .lease import RELEASE
from .redislink import RedisLink, RedisUnavailable


def lease_value_file(state_dir: str | Path, instance: str) -> Path:
    """Where an engine instance records the lease value it holds."""
    return Path(state_dir) / f"lease-{instance}"


def release_after_exit(config: EngineConfig) -> str:
    """Release the lease the (exited, reaped) instance ``config.instance`` held, unless its journal shows an order
    in flight (then the TTL runs out). Returns what happened, as a phrase for the supervisor's log: ``released
    <value>``, ``not the holder``, ``no lease recorded``, ``not released: ...`` or
    ``redis unavailable: ...``. Never raises for a Redis outage (the TTL then runs out as for a pause)."""
    path = lease_value_file(config.state_dir, config.instance)
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return "no lease recorded"
    if not value:
        return "no lease recorded"
    # an order_send the dead process had made with no answer recorded may still be executing at a slow broker:
    # the successor's broker scan would not see it yet and would send the signal again (issue 16's stateful test:
    # a kill while an order waited 1.5 s at the broker, 3 of 3 duplicates). Then the lease runs out (ENG-1's TTL),
    # as after a pause, and the successor's scan comes after the lapse.
    try:
        in_flight = in_flight_in_file(Path(config.state_dir) / f"journal-{config.instance}.duckdb")
    except Exception as exc:  # noqa: BLE001 - unreadable journal: keep the TTL, never guess
        return f"not released: the journal could not be read ({type(exc).__name__}); the lease runs out"
    if in_flight:
        return (f"not released: {len(in_flight)} order(s) in flight at the exit (e.g. {in_flight[0]}); "
                f"the lease runs out")
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
