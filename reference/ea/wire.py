"""The EA tick stream's wire format, version 1 (EA-2): one frame per message, the same bytes on UDP and TCP.

Why our own format instead of a library (protobuf, msgpack, Cap'n Proto): a tick is ten fixed-size fields and a
symbol name; one ``struct`` layout encodes and decodes it in about a microsecond with no schema compiler and no
dependency, every byte is specified below, and the version byte lets a consumer refuse a frame it cannot read with a
one-line error instead of guessing.

Frame (network byte order, sizes in bytes)::

    header (16)  magic b"TDEA" (4) | version u8 (=1) | kind u8 | flags u16 | stream u64
    TICK (kind 1)       seq u64 | time_msc i64 | sent_ns i64 | bid f64 | ask f64 | last f64 | volume u64 |
                        tick_flags u32 | volume_real f64 | symbol_len u8 | symbol (UTF-8, 1..32 bytes)
    HEARTBEAT (kind 2)  seq u64 (the last tick seq sent, 0 = none yet) | sent_ns i64
    SUBSCRIBE (kind 3)  consumer_len u8 | consumer id (UTF-8, 1..64 bytes)           (consumer -> EA, UDP only)

- ``stream``: a random non-zero 64-bit id the EA draws at every start; ``seq`` counts ticks of one stream from 1,
  over all symbols, one per tick, never reused. A new ``stream`` means the EA restarted: the consumer starts clean
  (BR-3).
- ``time_msc``: the broker's tick time (MT5 ``Tick.time_msc``, ms since the epoch); ``sent_ns``: the EA's wall clock
  (``time.time_ns()``) when it sent the frame, so a consumer on the same host measures the tick path (PERF-1).
- ``flags`` bit 0 (``FLAG_SNAPSHOT``): the frame is the latest tick of its symbol, replayed to a TCP client right
  after it connected (a reconnect starts from the latest tick only, BR-3).
- TCP: each frame is preceded by its length as u16 (network byte order); UDP: one frame per datagram.

``decode`` raises :class:`WireError` (a ``ValueError``, one line naming what is wrong) for any input that is not a
whole valid frame; it never raises anything else.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

MAGIC = b"TDEA"
VERSION = 1
KIND_TICK, KIND_HEARTBEAT, KIND_SUBSCRIBE = 1, 2, 3
FLAG_SNAPSHOT = 0x0001
MAX_SYMBOL = 32
MAX_CONSUMER = 64
MAX_FRAME = 512  # larger than any valid frame; a TCP length above it is a protocol error

_HEADER = struct.Struct("!4sBBHQ")
_TICK = struct.Struct("!QqqdddQIdB")
_HEARTBEAT = struct.Struct("!Qq")
_LEN = struct.Struct("!H")
HEADER_SIZE = _HEADER.size


class WireError(ValueError):
    """A frame that is not valid version-1 wire format; the message is one line naming the problem."""


@dataclass(frozen=True)
class Tick:
    """One tick of one stream: ``seq`` (1..), broker ``time_msc`` (ms), EA ``sent_ns`` (ns), prices, ``symbol``."""

    stream: int
    seq: int
    symbol: str
    time_msc: int
    bid: float
    ask: float
    last: float = 0.0
    volume: int = 0
    tick_flags: int = 0
    volume_real: float = 0.0
    sent_ns: int = 0
    snapshot: bool = False


@dataclass(frozen=True)
class Heartbeat:
    """The EA is alive on this path; ``seq`` is the last tick seq it sent (0: none)."""

    stream: int
    seq: int
    sent_ns: int


@dataclass(frozen=True)
class Subscribe:
    """A consumer asks the EA to send its UDP frames to the datagram's source address."""

    consumer: str


Message = Tick | Heartbeat | Subscribe


def _header(kind: int, stream: int, flags: int = 0) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind, flags, stream)


def encode_tick(t: Tick) -> bytes:
    """The frame of ``t``; raises WireError for a symbol that is empty or longer than 32 UTF-8 bytes."""
    name = t.symbol.encode()
    if not 0 < len(name) <= MAX_SYMBOL:
        raise WireError(f"symbol must be 1..{MAX_SYMBOL} UTF-8 bytes, got {len(name)}")
    body = _TICK.pack(t.seq, t.time_msc, t.sent_ns, t.bid, t.ask, t.last, t.volume, t.tick_flags, t.volume_real,
                      len(name))
    return _header(KIND_TICK, t.stream, FLAG_SNAPSHOT if t.snapshot else 0) + body + name


def encode_heartbeat(h: Heartbeat) -> bytes:
    return _header(KIND_HEARTBEAT, h.stream) + _HEARTBEAT.pack(h.seq, h.sent_ns)


def encode_subscribe(s: Subscribe) -> bytes:
    name = s.consumer.encode()
    if not 0 < len(name) <= MAX_CONSUMER:
        raise WireError(f"consumer id must be 1..{MAX_CONSUMER} UTF-8 bytes, got {len(name)}")
    return _header(KIND_SUBSCRIBE, 0) + bytes([len(name)]) + name


def frame_for_tcp(frame: bytes) -> bytes:
    """``frame`` with its u16 length prefix (the TCP path)."""
    return _LEN.pack(len(frame)) + frame


def decode(data: bytes, reader: str = "consumer") -> Message:
    """One whole frame -> Tick | Heartbeat | Subscribe. Raises WireError (one line) for anything else; ``reader``
    names who refuses a frame of another version ("consumer", "EA")."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"frame must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise WireError(f"frame of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, flags, stream = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise WireError(f"wire version {version} is not supported (this {reader} reads version {VERSION})")
    body = data[HEADER_SIZE:]
    if kind == KIND_TICK:
        if len(body) < _TICK.size:
            raise WireError(f"tick frame body of {len(body)} bytes is shorter than {_TICK.size}")
        seq, time_msc, sent_ns, bid, ask, last, volume, tflags, vreal, n = _TICK.unpack_from(body)
        name = body[_TICK.size:]
        if not 0 < n <= MAX_SYMBOL or len(name) != n:
            raise WireError(f"tick symbol length {n} does not match the {len(name)} bytes left (1..{MAX_SYMBOL})")
        if stream == 0 or seq == 0:
            raise WireError(f"tick with stream {stream} seq {seq}: both must be non-zero")
        if not all(math.isfinite(x) for x in (bid, ask, last, vreal)):
            raise WireError("tick with a non-finite price or volume")
        try:
            symbol = name.decode()
        except UnicodeDecodeError:
            raise WireError("tick symbol is not UTF-8") from None
        return Tick(stream, seq, symbol, time_msc, bid, ask, last, volume, tflags, vreal, sent_ns,
                    bool(flags & FLAG_SNAPSHOT))
    if kind == KIND_HEARTBEAT:
        if len(body) != _HEARTBEAT.size:
            raise WireError(f"heartbeat frame body must be {_HEARTBEAT.size} bytes, got {len(body)}")
        if stream == 0:
            raise WireError("heartbeat with stream 0")
        seq, sent_ns = _HEARTBEAT.unpack(body)
        return Heartbeat(stream, seq, sent_ns)
    if kind == KIND_SUBSCRIBE:
        if not body or not 0 < body[0] <= MAX_CONSUMER or len(body) != 1 + body[0]:
            raise WireError(f"subscribe frame body of {len(body)} bytes is not a length-prefixed consumer id")
        try:
            return Subscribe(body[1:].decode())
        except UnicodeDecodeError:
            raise WireError("subscribe consumer id is not UTF-8") from None
    raise WireError(f"unknown frame kind {kind}")


class FrameReader:
    """Splits a TCP byte stream into frames: ``feed(bytes) -> list[Message]``. A bad length or frame raises
    WireError; the caller drops the connection (the stream cannot be resynchronised)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        for _ in range(len(self._buf) // (_LEN.size + HEADER_SIZE) + 1):  # at most one frame per 18 bytes
            if len(self._buf) < _LEN.size:
                break
            (n,) = _LEN.unpack_from(self._buf)
            if not HEADER_SIZE <= n <= MAX_FRAME:
                raise WireError(f"TCP frame length {n} outside {HEADER_SIZE}..{MAX_FRAME}")
            if len(self._buf) < _LEN.size + n:
                break
            frame = bytes(self._buf[_LEN.size:_LEN.size + n])
            del self._buf[:_LEN.size + n]
            out.append(decode(frame))
        return out
