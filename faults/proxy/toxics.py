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

from faults.proxy.decode import (BadRequest, check_attribute, check_name, check_toxicity, decode_struct,
                                 type_error)

# type -> attribute -> default: the Go structs of Toxiproxy 2.x (toxics/*.go, int64 fields) for TCP, ours for UDP
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
GO_STRUCTS = {"latency": "LatencyToxic", "bandwidth": "BandwidthToxic", "slow_close": "SlowCloseToxic",
              "timeout": "TimeoutToxic", "reset_peer": "ResetToxic", "slicer": "SlicerToxic",
              "limit_data": "LimitDataToxic", "noop": "NoopToxic"}
PROBABILITIES = {"probability"}
STREAMS = ("upstream", "downstream")

_uids = itertools.count(1)


class InvalidToxic(BadRequest):
    """A toxic the API refuses (400; toxiproxy-python raises InvalidToxic for it)."""


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


WRAPPER_FIELDS = {"name": "string", "type": "string", "stream": "string", "toxicity": "float32"}


def _attribute_types(protocol: str, ttype: str) -> dict[str, str]:
    kind = "float64" if protocol == "udp" else ("int" if ttype == "slicer" else "int64")
    return {key: kind for key in (UDP_TYPES if protocol == "udp" else TCP_TYPES)[ttype]}


def build_toxic(body, protocol: str = "tcp", existing: Toxic | None = None) -> Toxic:
    """Decode an API body into a Toxic as Toxiproxy 2.x does (``AddToxicJson``; with ``existing``,
    ``UpdateToxicJson``: only ``attributes`` and ``toxicity`` count), then check what this proxy needs beyond it.
    Raises InvalidToxic/BadRequest (400) naming the field; builds a new Toxic, never changes ``existing``."""
    types = UDP_TYPES if protocol == "udp" else TCP_TYPES
    if existing is None:
        wrapper = decode_struct(body, "ToxicWrapper", WRAPPER_FIELDS,
                                {"name": "", "type": "", "stream": "downstream", "toxicity": 1.0})
        raw_attributes = _attributes_of(body)
        stream = wrapper["stream"].lower()
        if stream not in STREAMS:
            raise InvalidToxic(f"stream was invalid, can be either upstream or downstream (got {wrapper['stream']!r})")
        ttype = wrapper["type"]
        name = wrapper["name"] or f"{ttype}_{stream}"
        if ttype not in types:
            raise InvalidToxic("invalid toxic type" + (f" {ttype!r}: use one of {', '.join(types)}" if ttype else
                                                       ": the body needs \"type\""))
        attrs = dict(types[ttype])
        toxicity = wrapper["toxicity"]
    else:
        update = decode_struct(body, "ToxicWrapper", {"toxicity": "float32"}, {"toxicity": existing.toxicity})
        raw_attributes = _attributes_of(body)
        ttype, name, stream, toxicity = existing.type, existing.name, existing.stream, update["toxicity"]
        attrs = dict(existing.attributes)
    struct = GO_STRUCTS.get(ttype, f"{ttype}Toxic") if protocol != "udp" else f"udp.{ttype}"
    attrs = decode_struct(raw_attributes, struct, _attribute_types(protocol, ttype), attrs)
    check_name(name, "toxic name")
    check_toxicity(toxicity)
    for key, value in attrs.items():
        attrs[key] = check_attribute(ttype, key, value, probability=key in PROBABILITIES)
    toxic = Toxic(name=name, type=ttype, stream=stream, toxicity=toxicity, attributes=attrs)
    if existing is not None:
        toxic.uid = existing.uid
    return toxic


def _attributes_of(body):
    """The ``attributes`` member (last one, case-insensitive like Go), checked to be an object or null."""
    found = None
    if isinstance(body, dict):
        pairs = body.pairs if hasattr(body, "pairs") else list(body.items())
        for key, value in pairs:
            if key.lower() == "attributes":
                found = value if value is not None else found
    if found is not None and not isinstance(found, dict):
        raise type_error(found, "ToxicWrapper", "attributes", "toxics.NoopToxic")
    return found
