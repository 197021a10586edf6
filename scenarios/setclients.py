"""Jepsen's set workload on Redis, one client per side of a partition (issue 12).

Each writer is a client node of its own: it leaves from its own loopback address (``<subnet>.<200+i>``), so a
partition fault can put it on either side; it finds the primary the way a Redis client does (the first Sentinel
that answers ``get-master-addr-by-name``), keeps its connection open, and every ``interval_s`` adds the next
integer to its own set ``drill:set:<writer>`` with SADD. A ``wait`` writer follows each SADD with
``WAIT <n> <wait_ms>`` (``wait``: n replicas; true means 1) and calls the write ok only when n replicas confirmed
it (Redis acknowledged but fewer replicas confirmed: unknown). WAIT does not make Redis a consensus system: a
write WAIT 1 confirmed on a replica that sits in the minority with the old primary is lost when the majority
promotes its own replica (measured by redis-majority-minority); only WAIT for every replica survives that split. Every add is an operation ``redis_write`` in the history, its value naming the member, the set
and the address it was sent to; after heal the runner reads every set back (``dump_sets``) and the ``redis_set``
checker compares (``scenarios.checkers``).

Why our own client loop and not redis-py's ``Sentinel.master_for``: that helper cannot bind a source address, and
it reconnects through whichever Sentinel answers without telling us which primary a write went to, which is the
one fact the set checker needs per write.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from reference.engine.redislink import BoundConnection
from scenarios.history import FAIL, OK, UNKNOWN
from tradedrill.waiting import DeadlineExceeded, wait_until

if TYPE_CHECKING:
    from scenarios.environment import DrillEnvironment

WRITERS_FILE = "redis_writes.json"
ROLES_FILE = "redis_roles.json"
FIRST_HOST = 200  # writer i leaves from <subnet>.(200 + i)
SIDES = ("minority", "majority")


@dataclass(frozen=True)
class WriterSpec:
    """One set writer of ``Workload.params["writers"]``: ``{"name": str, "side": "minority"|"majority",
    "wait": bool | int}`` (replicas WAIT must confirm; true = 1, false/0 = no WAIT); its process name is
    ``writer-<name>``."""

    name: str
    side: str
    wait: int = 0

    @property
    def process(self) -> str:
        return f"writer-{self.name}"

    @property
    def set_key(self) -> str:
        return f"drill:set:{self.process}"


def writer_specs(params: dict) -> list[WriterSpec]:
    """The writers a workload's params name, checked (ValueError with the field when malformed)."""
    raw = params.get("writers", [])
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"params.writers: a list of {{name, side, wait}}, not {raw!r}")
    specs, names = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"name", "side", "wait"}:
            raise ValueError(f"params.writers[{i}]: a dict with keys name, side, wait; got {item!r}")
        name, side, wait = item.get("name"), item.get("side"), item.get("wait", False)
        if not isinstance(name, str) or not name or not name.replace("-", "").isalnum():
            raise ValueError(f"params.writers[{i}].name: letters, digits and '-' only, not {name!r}")
        if side not in SIDES:
            raise ValueError(f"params.writers[{i}].side: one of {', '.join(SIDES)}, not {side!r}")
        if not isinstance(wait, int) or not 0 <= int(wait) <= 8:
            raise ValueError(f"params.writers[{i}].wait: true, false or a number of replicas 0-8, not {wait!r}")
        wait = int(wait)
        if name in names:
            raise ValueError(f"params.writers[{i}].name: {name!r} appears twice")
        names.add(name)
        specs.append(WriterSpec(name, side, wait))
    if len(specs) > 50:
        raise ValueError("params.writers: at most 50 writers (addresses .200-.249 of the subnet)")
    return specs


def writer_address(subnet: str, index: int) -> str:
    return f"{subnet}.{FIRST_HOST + index}"


class SetWriter:
    """One writer thread (see the module docstring). ``run(stop)`` loops until ``stop`` is set, bounded by it."""

    def __init__(self, env: "DrillEnvironment", spec: WriterSpec, source: str, *, interval_s: float = 0.02,
                 timeout_s: float = 0.3, wait_ms: int = 100):
        self.env, self.spec, self.source = env, spec, source
        self.interval_s, self.timeout_s, self.wait_ms = interval_s, timeout_s, wait_ms
        self._client: redis.Redis | None = None
        self._primary: str | None = None

    def _bound(self, host: str, port: int) -> redis.Redis:
        cred = self.env.stack.harness_credential
        pool = redis.ConnectionPool(connection_class=BoundConnection, host=host, port=port,
                                    source_address=self.source, socket_timeout=self.timeout_s,
                                    socket_connect_timeout=self.timeout_s, retry=Retry(NoBackoff(), 0),
                                    decode_responses=True, **cred.redis_kwargs())
        return redis.Redis(connection_pool=pool)

    def _discover(self) -> None:
        errors = []
        for host, port in self.env.stack.sentinel_addresses():
            s = self._bound(host, port)
            try:
                got = s.execute_command("SENTINEL", "get-master-addr-by-name", self.env.stack.master_name)
                if got:
                    self._client = self._bound(str(got[0]), int(got[1]))
                    self._primary = f"{got[0]}:{got[1]}"
                    return
            except redis.RedisError as exc:
                errors.append(f"{host}:{port}: {exc}")
            finally:
                s.close()
        raise redis.ConnectionError("no Sentinel named a primary: " + "; ".join(errors))

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client, self._primary = None, None

    def run(self, stop: threading.Event) -> None:
        n = 0
        history, process = self.env.history, self.spec.process
        while not stop.wait(self.interval_s):
            n += 1
            key = f"{process}:{n}"
            value = {"n": n, "member": str(n), "set": self.spec.set_key, "primary": self._primary,
                     "wait": self.spec.wait}
            op = history.invoke(process, "redis_write", key, value)
            try:
                if self._client is None:
                    self._discover()
                    value["primary"] = self._primary
                self._client.sadd(self.spec.set_key, str(n))
                if self.spec.wait:
                    replicas = int(self._client.execute_command("WAIT", self.spec.wait, self.wait_ms))
                    if replicas < self.spec.wait:
                        history.complete(op, process, "redis_write", key, UNKNOWN, value=value,
                                         error=f"acknowledged by {self._primary} but WAIT saw {replicas} of "
                                               f"{self.spec.wait} replica(s)")
                        continue
                history.complete(op, process, "redis_write", key, OK, value=value)
            except redis.TimeoutError as exc:
                self._drop()
                history.complete(op, process, "redis_write", key, UNKNOWN, value=value, error=repr(exc))
            except redis.RedisError as exc:
                self._drop()
                text = str(exc).lower()
                # refused before sending, or a demoted node's READONLY: the add did not happen
                sure = isinstance(exc, redis.ConnectionError) and "refused" in text or "readonly" in text \
                    or "no sentinel named" in text
                history.complete(op, process, "redis_write", key, FAIL if sure else UNKNOWN, value=value,
                                 error=repr(exc))
        self._drop()


def dump_sets(env: "DrillEnvironment", specs: list[WriterSpec], path: Path) -> None:
    """After heal: every writer's set as the current primary holds it, into ``redis_writes.json`` (format in
    ``scenarios.checkers`` ``redis_set``)."""
    doc: dict = {"read_from": None, "read_error": None, "writers": {}}
    try:
        r = env.redis(timeout=2.0)
        info = r.connection_pool.get_master_address() if hasattr(r.connection_pool, "get_master_address") else None
        doc["read_from"] = f"{info[0]}:{info[1]}" if info else None
    except redis.RedisError as exc:
        r, doc["read_error"] = None, str(exc)
    for i, spec in enumerate(specs):
        row = {"side": spec.side, "source": writer_address(env.topology.subnet, i), "wait": spec.wait,
               "set": spec.set_key, "members": None, "read_error": None}
        if r is not None:
            try:
                row["members"] = sorted(r.smembers(spec.set_key), key=lambda m: int(m) if m.isdigit() else 0)
            except redis.RedisError as exc:
                row["read_error"] = str(exc)
        doc["writers"][spec.process] = row
    path.write_text(json.dumps(doc, indent=1))


ROLES_SETTLE_S = 15.0  # Sentinel converts a returning old primary at its next INFO poll (every 10 s)


def read_roles(env: "DrillEnvironment") -> dict:
    """ROLE of every Redis node and the primary each Sentinel names now (the format of ``redis_roles.json``)."""
    doc: dict = {"nodes": {}, "sentinels": {}}
    stack = env.stack
    for spec in env.topology.of_kind("redis"):
        row = {"address": f"{spec.address}:{spec.port}", "role": None, "master": None, "link": None, "error": None}
        c = stack.redis_node_client(spec.name, timeout=1.0)
        try:
            role = c.execute_command("ROLE")
            row["role"] = str(role[0])
            if row["role"] == "slave":
                row["master"] = f"{role[1]}:{role[2]}"
                row["link"] = "up" if str(role[3]) == "connected" else "down"
        except redis.RedisError as exc:
            row["error"] = str(exc)
        finally:
            c.close()
        doc["nodes"][spec.name] = row
    for spec in env.topology.of_kind("sentinel"):
        row = {"primary": None, "flags": None, "error": None}
        c = stack.redis_node_client(spec.name, timeout=1.0)
        try:
            got = c.execute_command("SENTINEL", "get-master-addr-by-name", stack.master_name)
            row["primary"] = f"{got[0]}:{got[1]}" if got else None
            master = c.execute_command("SENTINEL", "master", stack.master_name)
            fields = dict(zip(master[::2], master[1::2])) if isinstance(master, list) else dict(master or {})
            flags = fields.get("flags", fields.get(b"flags"))
            row["flags"] = flags.decode() if isinstance(flags, bytes) else flags
        except redis.RedisError as exc:
            row["error"] = str(exc)
        finally:
            c.close()
        doc["sentinels"][spec.name] = row
    return doc


# flags of SENTINEL MASTER that say the Sentinels are still deciding: a node seen down (s_down, o_down), or a
# failover under way (its leader's failover_in_progress, promoted_slave while it reconfigures the replicas)
UNSETTLED_FLAGS = ("s_down", "o_down", "failover_in_progress", "promoted_slave")


def roles_converged(doc: dict) -> bool:
    """Every Sentinel names one primary and none is still deciding (``UNSETTLED_FLAGS`` in its ``flags``, when the
    document has them), that node is master, every other node replicates it with its link up. Without the flags, a
    heal that lands while a failover is under way read as converged: the old primary answered as master and its
    replicas had reconnected to it, a second before the Sentinels' leader promoted one of them."""
    named = {row.get("primary") for row in doc["sentinels"].values()}
    if len(named) != 1 or None in named:
        return False
    if any(flag in str(row.get("flags") or "").split(",") for row in doc["sentinels"].values()
           for flag in UNSETTLED_FLAGS):
        return False
    primary = named.pop()
    for row in doc["nodes"].values():
        if row["address"] == primary:
            if row["role"] != "master":
                return False
        elif row["role"] != "slave" or row["master"] != primary or row["link"] != "up":
            return False
    return True


def dump_roles(env: "DrillEnvironment", path: Path, settle_s: float = ROLES_SETTLE_S) -> None:
    """After heal: the roles into ``redis_roles.json``, read again until they converge or ``settle_s`` passes
    (a returning old primary is converted only at Sentinel's next INFO poll, up to 10 s after the heal: found by
    a new user, the roles were sometimes read before it). ``settled_after_s`` says how long that took; a topology
    that never converges is written as last read, and the failovers checker judges it."""
    start = time.monotonic()
    last: dict = {}

    def settled() -> bool:
        last.clear()
        last.update(read_roles(env))
        return roles_converged(last)

    try:
        wait_until(settled, settle_s, "the Redis roles to converge after the heal", max_interval=0.5)
        last["settled_after_s"] = round(time.monotonic() - start, 3)
    except DeadlineExceeded:
        last["settled_after_s"] = None
    path.write_text(json.dumps(last, indent=1))
