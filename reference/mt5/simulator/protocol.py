"""Wire protocol between the simulator and its clients: length-prefixed msgpack frames over one TCP connection.

Why this framing: a 4-byte big-endian length plus a msgpack body is trivially parsed with blocking sockets on the
client and asyncio streams on the server, carries bytes (numpy arrays) without base64, and passes unchanged through
a byte-level TCP fault proxy (no message boundaries are assumed beyond the stream itself).

Request:  ``[msgid, method, args, kwargs]``, or ``[msgid, method, args, kwargs, admin_token]`` for ``admin.*``.
Response: ``[msgid, value, error]`` where ``error`` is the ``last_error()`` pair the terminal would set.
Methods named ``admin.*`` are the harness's admin interface on the same port (behaviour, ledger, ping); every one
but ``admin.ping`` needs the server's admin token (``mt5sim serve --admin-token-file``).

Limits: a reply may be up to ``MAX_FRAME`` (a long tick history); a request is small, so the server accepts at most
``MAX_REQUEST_FRAME`` from a connection that has not authenticated as admin, ``MAX_ADMIN_FRAME`` from one that has.
"""
from __future__ import annotations

import struct

import msgpack

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # a whole tick history of a long run fits; anything larger is a broken peer
MAX_REQUEST_FRAME = 1024 * 1024  # a terminal request is a few hundred bytes; a 1 MiB request is a broken peer
MAX_ADMIN_FRAME = 16 * 1024 * 1024  # an authenticated admin connection (behaviour tables are still small)


class ProtocolError(RuntimeError):
    """The peer sent something that is not a frame of this protocol."""


def pack(message) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def unpack(body: bytes):
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def frame_length(header: bytes, limit: int = MAX_FRAME) -> int:
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes exceeds the {limit}-byte limit")
    return length


def request(body: bytes) -> tuple[int, str, list, dict, str | None]:
    """``(msgid, method, args, kwargs, token)`` of a request frame's body; ProtocolError if it is not one."""
    try:
        message = unpack(body)
    except Exception as exc:  # noqa: BLE001 - msgpack raises a zoo of types for garbage
        raise ProtocolError(f"not a msgpack frame: {exc}") from None
    if not isinstance(message, list) or len(message) not in (4, 5):
        raise ProtocolError("a request is [msgid, method, args, kwargs(, token)]")
    msgid, method, args, kwargs = message[:4]
    token = message[4] if len(message) == 5 else None
    if (not isinstance(msgid, int) or isinstance(msgid, bool) or not isinstance(method, str)
            or not isinstance(args, list) or not isinstance(kwargs, dict)
            or not all(isinstance(k, str) for k in kwargs) or not (token is None or isinstance(token, str))):
        raise ProtocolError("a request is [msgid:int, method:str, args:list, kwargs:{str: value}(, token:str)]")
    return msgid, method, args, kwargs, token
