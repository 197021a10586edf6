"""Toxic definitions: the Toxiproxy TCP toxics and our UDP toxics, validated from their API JSON.

TCP toxics (Toxiproxy 2.x semantics):
  latency {latency ms, jitter ms}        each chunk is delayed latency±jitter from its arrival (pipelined)
  bandwidth {rate KB/s}                  chunks are released at ``rate`` * 1000 bytes per second
  slow_close {delay ms}                  the close (EOF) is delayed
  timeout {timeout ms}                   data is dropped; the connection is closed after ``timeout``; 0 = blackhole
                                         until the toxic is removed
  reset_peer {timeout ms}                the connection is reset (TCP RST) ``timeout`` after the toxic applies
  slicer {average_size, size_variation bytes, delay µs}   chunks are cut into small writes
  limit_data {bytes}                     the connection is closed once ``bytes`` passed in that direction
  noop {}
UDP toxics (our extension; a proxy created with ``"protocol": "udp"``):
  loss {probability 0..1}                a datagram is dropped
  duplicate {probability 0..1}           a datagram is delivered twice
  reorder {probability 0..1, delay ms}   a datagram is held ``delay`` ms (default 20) so later ones overtake it
  latency {latency ms, jitter ms}        every datagram is delayed
  blackhole {} (also timeout)            every datagram is dropped
  noop {}
``toxicity`` is the share of TCP *connections* a toxic applies to (drawn once per connection) and, for UDP, the
share of *datagrams* (drawn per datagram). Every draw comes from the proxy's seeded Random.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

TCP_TYPES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}
UDP_TYPES: dict[str, dict[str, float]] = {
    "loss": {"probability": 0.0},
    "duplicate": {"probability": 0.0},
    "reorder": {"probability": 0.0, "delay": 20},
    "latency": {"latency": 0, "jitter": 0},
    "blackhole": {},
    "timeout": {"timeout": 0},
    "noop": {},
}
STREAMS = ("upstream", "downstream")

_uids = itertools.count(1)


class InvalidToxic(ValueError):
    pass


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict = field(default_factory=dict)
    uid: int = field(default_factory=lambda: next(_uids))

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": dict(self.attributes)}

    def attr(self, key: str) -> float:
        return float(self.attributes.get(key, 0) or 0)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToxic(f"{what} must be a number, got {value!r}")
    if value < 0:
        raise InvalidToxic(f"{what} must not be negative, got {value!r}")
    return value


def build_toxic(body: dict, protocol: str = "tcp", existing: Toxic | None = None) -> Toxic:
    """Validate an API body into a Toxic; with ``existing``, apply an update (attributes, toxicity)."""
    if not isinstance(body, dict):
        raise InvalidToxic("toxic body must be a JSON object")
    types = UDP_TYPES if protocol == "udp" else TCP_TYPES
    ttype = existing.type if existing else body.get("type")
    if ttype not in types:
        raise InvalidToxic("invalid toxic type")
    stream = body.get("stream", existing.stream if existing else "downstream") or "downstream"
    if stream not in STREAMS:
        raise InvalidToxic(f"invalid stream {stream!r}: use upstream or downstream")
    toxicity = body.get("toxicity", existing.toxicity if existing else 1.0)
    toxicity = 1.0 if toxicity is None else _number(toxicity, "toxicity")
    if toxicity > 1:
        raise InvalidToxic("toxicity must be between 0 and 1")
    attrs = dict(types[ttype]) if existing is None else dict(existing.attributes)
    given = body.get("attributes") or {}
    if not isinstance(given, dict):
        raise InvalidToxic("attributes must be a JSON object")
    for key, value in given.items():
        if key not in types[ttype]:
            raise InvalidToxic(f"unknown attribute {key!r} for toxic type {ttype}")
        attrs[key] = _number(value, f"{ttype}.{key}")
    for key in ("probability",):
        if key in attrs and attrs[key] > 1:
            raise InvalidToxic(f"{ttype}.{key} must be between 0 and 1")
    name = body.get("name") or (existing.name if existing else f"{ttype}_{stream}")
    toxic = Toxic(name=name, type=ttype, stream=stream, toxicity=toxicity, attributes=attrs)
    if existing is not None:
        toxic.uid = existing.uid
    return toxic
