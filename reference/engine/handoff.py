"""Crash handoff (ENG-1, issue 11): the supervisor that runs an engine releases its lease once it has reaped the
process, so the passive instance takes over in a fraction of a second instead of waiting out the lease TTL.

Why this is safe: the supervisor calls :func:`release_after_exit` only after the engine's PID has exited and been
reaped, so that process cannot send another order. The release is a compare-and-delete on the holder value the
engine recorded when it acquired the lease (``lease-<instance>`` in its state folder): if another instance already
holds the lease (the dead one had lost it), nothing is touched. The successor sees ``released = exit`` when it
acquires and waits ``exit_flight_s`` for requests already on the wire before it reconciles with the broker. An order
the dead process had sent with no answer recorded (``SENDING``/``UNKNOWN`` in its journal, read read-only) may still
execute at a slow broker after the successor's scan (issue 16's stateful finding: sent twice, 3 of 3): the release
names those signals in ``<group>:lease:in_flight`` first, and the successor treats each as an ambiguous send (looked
up until found, or resent after ``ambiguous_grace_s``) while every other signal goes on at once. A journal that
cannot be read is not released for: the TTL runs out, as after a pause.

A pause, a frozen VM or a lost host is not a crash: no supervisor sees an exit, and the successor still waits for
the TTL (``lease.py``). Used by ``reference.supervisor`` through its ``on_exit`` hook, and from the command line as
``python -m reference.engine release-after-exit --config FILE --instance A --state-dir DIR``.
"""
from __future__ import annotations

import time
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
    """Release the lease the (exited, reaped) instance ``config.instance`` held, naming the orders its journal shows
    in flight for the successor first (an unreadable journal: not released, the TTL runs out). Returns what
    happened, as a phrase for the supervisor's log: ``released <value>[ (N order(s) in flight ...)]``, ``not the
    holder``, ``no lease recorded``, ``not released: ...`` or
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
    # a kill while an order waited 1.5 s at the broker, 3 of 3 duplicates)
    try:
        in_flight = in_flight_in_file(Path(config.state_dir) / f"journal-{config.instance}.duckdb")
    except Exception as exc:  # noqa: BLE001 - unreadable journal: keep the TTL, never guess
        return f"not released: the journal could not be read ({type(exc).__name__}); the lease runs out"
    keys = Keys.of(config)
    link = RedisLink(config, "handoff")
    try:
        if in_flight:
            # named for the successor before the release: it treats each as an ambiguous send (looked up at the
            # broker until found or ambiguous_grace_s passes), so only these wait, not the takeover
            stamp = str(int(time.time() * 1000))
            ttl_ms = int(max(config.ambiguous_grace_s, 1.0) * 3000)

            def name(r):
                pipe = r.pipeline(transaction=True)
                pipe.hset(keys.lease_in_flight, mapping={sid: stamp for sid in in_flight})
                pipe.pexpire(keys.lease_in_flight, ttl_ms)
                return pipe.execute()
            link.run(name)
        done = int(link.run(lambda r: r.eval(RELEASE, 3, keys.lease, keys.renewed_ms, keys.lease_released, value,
                                             "exit")))
    except RedisUnavailable as exc:
        return f"redis unavailable: {exc}"
    finally:
        close = getattr(link, "close", None)
        if close:
            close()
    if not done:
        return "not the holder"
    return f"released {value}" + (f" ({len(in_flight)} order(s) in flight named for the successor)" if in_flight
                                  else "")
