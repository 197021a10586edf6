"""A minimal HTTP/1.1 server on asyncio streams, enough for the Toxiproxy API (JSON in, JSON or text out).

Why our own: the API is a dozen routes with small JSON bodies, and the proxy must run embedded in a test process
and in the harness with nothing beyond the standard library (no aiohttp, no uvicorn thread, no second event loop).
Keep-alive, Content-Length bodies and chunked request bodies are supported; nothing else is needed.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from faults.proxy.decode import parse_body

MAX_BODY = 1 << 20
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error"}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        """The body's first JSON value, decoded as Go's json.Decoder would (decode.parse_body); {} when blank."""
        return parse_body(self.body, empty={})


@dataclass
class Response:
    status: int = 200
    body: object = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, keep_alive: bool) -> bytes:
        if self.body is None or self.status == 204:
            payload = b""
        elif isinstance(self.body, (bytes, str)):
            payload = self.body.encode() if isinstance(self.body, str) else self.body
        else:
            payload = json.dumps(self.body).encode()
        head = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}",
                f"Content-Length: {len(payload)}",
                f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        if payload:
            head.append(f"Content-Type: {self.content_type}")
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def error(status: int, message: str) -> Response:
    return Response(status, {"error": message, "status": status})


Handler = Callable[[Request], Awaitable[Response]]


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        line = await reader.readline()
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    if not line:
        return None
    try:
        method, target, _version = line.decode("latin-1").split(" ", 2)
    except ValueError:
        raise ValueError("malformed request line") from None
    headers: dict[str, str] = {}
    for _ in range(100):
        hline = await reader.readline()
        if hline in (b"\r\n", b"\n", b""):
            break
        name, _, value = hline.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        for _ in range(10_000):
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
            if sum(map(len, parts)) > MAX_BODY:
                raise ValueError("body too large")
        body = b"".join(parts)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length)
    path, _, query = target.partition("?")
    return Request(method.upper(), path, query, headers, body)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    try:
        for _ in range(100_000):  # bounded keep-alive
            try:
                request = await _read_request(reader)
            except (ValueError, asyncio.IncompleteReadError) as exc:
                writer.write(error(400, f"bad request: {exc}").encode(False))
                await writer.drain()
                return
            if request is None:
                return
            keep_alive = request.headers.get("connection", "").lower() != "close"
            try:
                response = await handler(request)
            except json.JSONDecodeError as exc:
                response = error(400, f"bad request: body is not JSON ({exc})")
            except Exception as exc:  # noqa: BLE001 - an API bug must answer 500, not drop the socket
                response = error(500, f"internal error: {exc!r}")
            writer.write(response.encode(keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
