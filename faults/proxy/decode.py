"""Request bodies decoded the way Toxiproxy 2.x decodes them, then checked for what this proxy needs beyond that.

Toxiproxy (Go) reads every body with ``encoding/json`` into its structs (``Proxy``, ``ToxicWrapper``, one struct
per toxic type), so a client written against it sees these rules, and this server keeps them:
- the body is the first JSON value (what follows it is not read); ``NaN``/``Infinity`` are not JSON (400);
- a key names a field exactly or case-insensitively (``"Name"`` is ``name``); unknown keys are ignored (also
  unknown toxic attributes); a repeated key: the last one wins; ``null`` leaves a field at its default;
- a value of the wrong JSON type for its field is 400 ``bad request body: json: cannot unmarshal <kind> into Go
  struct field <Struct>.<field> of type <type>``; toxic attributes are integers (``int64``; an integral float such
  as ``100.0`` is accepted, Go would refuse it), toxicity a ``float32``.
Where this server is stricter than Toxiproxy, the 400 says so and why (``DIFFERS``): names that cannot be used in
a URL path, ``listen``/``upstream`` that are not ``host:port`` with a port in range or not on loopback (Toxiproxy
answers 500 for a bad listen address, or accepts it), negative or absurdly large toxic attributes, a toxicity
outside 0..1. Every check happens before anything changes: a refused request leaves every proxy and toxic as it
was.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re

from faults.core import UnsafeTarget
from faults.safety import check_address

INT64 = (-(2**63), 2**63 - 1)
FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH = 10_000  # Go's decoder limit on nesting
DIFFERS = "(real Toxiproxy accepts this; tradedrill's proxy refuses it"
# names travel in URL paths (/proxies/{name}/toxics/{toxic}): RFC 3986 path characters without '/', '%', '?', '#'
NAME_RE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]{1,200}")
MAX_MS = 86_400_000  # one day: longer toxic times are typos (and overflow the event loop's timers)
MAX_BYTES = 2**40


class BadRequest(ValueError):
    """The request body cannot be used: the server answers 400 with this message (it names the field)."""

    status = 400


class JsonObject(dict):
    """A decoded JSON object that remembers its key/value pairs in order, repeated keys included."""

    pairs: list


def _object(pairs) -> JsonObject:
    obj = JsonObject(pairs)
    obj.pairs = pairs
    return obj


def _no_constant(name: str):
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value ({name} is not JSON)")


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constant)


def parse_body(body: bytes, *, empty=None):
    """The first JSON value of ``body`` (Go's ``json.Decoder.Decode``); ``empty`` when the body is blank."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        if empty is not None:
            return empty
        raise BadRequest("bad request body: EOF")
    try:
        value, _end = _DECODER.raw_decode(text)
    except RecursionError:
        raise BadRequest(f"bad request body: exceeded max depth of {MAX_DEPTH}") from None
    except ValueError as exc:
        raise BadRequest(f"bad request body: {exc}") from None
    return value


def json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def type_error(value, struct: str, field: str, gotype: str) -> BadRequest:
    kind = json_kind(value)
    if kind == "number":
        kind = f"number {value!r}"
    where = f"Go struct field {struct}.{field}" if field else f"Go value of type {struct}"
    return BadRequest(f"bad request body: json: cannot unmarshal {kind} into {where} of type {gotype}")


def _convert(value, struct: str, field: str, gotype: str):
    if gotype == "string":
        if isinstance(value, str):
            return value
    elif gotype == "bool":
        if isinstance(value, bool):
            return value
    elif gotype in ("int64", "int"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]:
            return value
    elif gotype == "float32":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= FLOAT32_MAX:
            return float(value)
    elif gotype == "float64":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif gotype == "string|int64":  # our ``seed`` extension
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)
                                      and INT64[0] <= value <= INT64[1]):
            return value
    else:
        raise AssertionError(gotype)
    raise type_error(value, struct, field, gotype)


def decode_struct(value, struct: str, fields: dict[str, str], defaults: dict | None = None) -> dict:
    """Go's ``json.Unmarshal`` of a decoded JSON ``value`` into a struct of ``fields`` (JSON name -> Go type):
    ``defaults`` updated with the fields the object sets."""
    out = dict(defaults or {})
    if value is None:
        return out
    if not isinstance(value, dict):
        raise type_error(value, struct, "", struct)
    pairs = value.pairs if isinstance(value, JsonObject) else list(value.items())
    folded = {name.lower(): name for name in fields}
    for key, item in pairs:
        name = key if key in fields else folded.get(key.lower())
        if name is None or item is None:
            continue  # unknown keys are ignored; null leaves the field as it was
        out[name] = _convert(item, struct, name, fields[name])
    return out


def decode_list(value, struct: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise type_error(value, struct, "", struct)
    return value


# -- what tradedrill checks beyond Go's decoding ---------------------------------------------------------------------
def check_name(name: str, what: str) -> str:
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise BadRequest(f"{what} {name!r} cannot be used in a URL path: use 1-200 of A-Z a-z 0-9 and . _ ~ - "
                         f"(also ! $ & ' ( ) * + , ; = : @) {DIFFERS}: such a proxy could never be fetched, "
                         f"changed or deleted)")
    return name


def check_hostport(value: str, field: str, *, listen: bool) -> tuple[str, int]:
    """``(host, port)`` of a ``listen`` or ``upstream`` value: host:port, the port in range, on loopback or in
    the run's networks."""
    host, sep, port_text = value.rpartition(":")
    lowest = 0 if listen else 1
    if not sep or not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        example = "127.0.0.1:0 (0 picks a free port)" if listen else "127.0.0.1:6379"
        raise BadRequest(f"{field} {value!r} must be host:port with a port in {lowest}-65535, e.g. {example} "
                         f"{DIFFERS}{' at creation; Toxiproxy fails later' if not listen else ' with 400; Toxiproxy answers 500'})")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BadRequest(f"{field} {value!r}: {host!r} is not an IP address; give 127.x.y.z:port (or localhost) "
                         f"{DIFFERS}: faults take addresses, never names that could resolve elsewhere)") from None
    try:
        check_address(host)
    except UnsafeTarget as exc:
        raise BadRequest(f"{field} {value!r}: {exc} {DIFFERS}: faults stay on this machine)") from None
    return host, int(port_text)


def check_attribute(toxic_type: str, name: str, value: float, *, probability: bool = False) -> float:
    if value < 0:
        raise BadRequest(f"{toxic_type}.{name} must not be negative, got {value!r} {DIFFERS})")
    if probability and value > 1:
        raise BadRequest(f"{toxic_type}.{name} is a probability between 0 and 1, got {value!r}")
    limit = MAX_BYTES if name in ("bytes", "rate", "average_size", "size_variation") else MAX_MS
    if name == "delay" and toxic_type == "slicer":
        limit = MAX_MS * 1000  # µs
    if value > limit:
        raise BadRequest(f"{toxic_type}.{name} must be at most {limit}, got {value!r} {DIFFERS}: longer than a "
                         f"day or a terabyte is a typo)")
    return value


def check_toxicity(value: float) -> float:
    if not 0 <= value <= 1:
        raise BadRequest(f"toxicity must be between 0 and 1 (the share of connections it applies to), got "
                         f"{value!r} {DIFFERS})")
    return value
