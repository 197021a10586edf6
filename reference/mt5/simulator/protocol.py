"""Wire protocol between the simulator and its clients: length-prefixed msgpack frames over one TCP connection.

Why this framing: a 4-byte big-endian length plus a msgpack body is trivially parsed with blocking sockets on the
client and asyncio streams on the server, carries bytes (numpy arrays) without base64, and passes unchanged through
a byte-level TCP fault proxy (no message boundaries are assumed beyond the stream itself).

Request:  ``[msgid, method, args, kwargs]``.
Response: ``[msgid, value, error]`` where ``error`` is the ``last_error()`` pair the terminal would set.
Methods named ``admin.*`` are the harness's admin interface on the same port (behaviour, ledger, ping).
"""
from __future__ import annotations

import struct

import msgpack

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # a whole tick history of a long run fits; anything larger is a broken peer


class ProtocolError(RuntimeError):
    """The peer sent something that is not a frame of this protocol."""


def pack(message) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def unpack(body: bytes):
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return length
