"""The simulator's durable state: a snapshot plus an append-only journal of state changes, fsynced before replying.

Why a journal and not sqlite/duckdb: a trade mutates a handful of records, and one appended frame per trade with
one ``fsync`` (about 0.1 ms on this machine's ext4) is the cheapest write that is durable before the reply, which
keeps order_send p99 within 2 ms. Every change is an *upsert* keyed by ticket (or an absolute value), so replaying
a journal over a snapshot that already contains some of it is harmless.

Frame: ``>II`` (length, crc32) + msgpack list of changes. A torn or corrupt tail frame was never acknowledged (its
fsync did not return), so recovery stops there and truncates it away. The file is preallocated in ``GROWTH``
chunks and written with ``pwrite`` at the end offset: an fsync that need not grow the file measured p99 0.23 ms
against 2.3 ms for plain appends on this machine. A zero length marks the end of the written part.
On start the state is compacted: snapshot written to a temp file, fsynced, renamed, directory fsynced, journal emptied.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgpack

FRAME = struct.Struct(">II")
GROWTH = 8 * 1024 * 1024


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.journal_path = self.directory / "journal.bin"
        self.snapshot_path = self.directory / "snapshot.msgpack"
        self._fd: int | None = None
        self._end = 0  # offset after the last written frame
        self._allocated = 0
        self.appended = 0

    def load(self) -> tuple[dict | None, list[list]]:
        """(snapshot or None, journal records in order); truncates a torn tail."""
        snapshot = None
        if self.snapshot_path.exists():
            snapshot = msgpack.unpackb(self.snapshot_path.read_bytes(), raw=False, strict_map_key=False)
        records: list[list] = []
        if self.journal_path.exists():
            data = self.journal_path.read_bytes()
            pos = 0
            while pos + FRAME.size <= len(data):
                length, crc = FRAME.unpack_from(data, pos)
                if length == 0:
                    break
                body = data[pos + FRAME.size : pos + FRAME.size + length]
                if len(body) < length or zlib.crc32(body) != crc:
                    break
                records.append(msgpack.unpackb(body, raw=False, strict_map_key=False))
                pos += FRAME.size + length
            if pos < len(data):  # drop the torn tail and the preallocated zeros; append() allocates again
                with open(self.journal_path, "r+b") as fh:
                    fh.truncate(pos)
                    os.fsync(fh.fileno())
            self._end = pos
        return snapshot, records

    def compact(self, state: dict) -> None:
        """Write ``state`` as the new snapshot and empty the journal (crash-safe in every order)."""
        self.close()
        tmp = self.snapshot_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgpack.packb(state, use_bin_type=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.snapshot_path)
        _fsync_dir(self.directory)
        with open(self.journal_path, "wb") as fh:
            os.fsync(fh.fileno())
        _fsync_dir(self.directory)
        self._end = 0

    def append(self, changes: list) -> None:
        """Append one record and fsync it; returns only once it is durable."""
        if self._fd is None:
            self._fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT, 0o644)
            self._allocated = os.fstat(self._fd).st_size
        body = msgpack.packb(changes, use_bin_type=True)
        frame = FRAME.pack(len(body), zlib.crc32(body)) + body
        if self._end + len(frame) + FRAME.size > self._allocated:
            self._allocated = self._end + len(frame) + GROWTH
            os.posix_fallocate(self._fd, 0, self._allocated)
        os.pwrite(self._fd, frame, self._end)
        os.fsync(self._fd)
        self._end += len(frame)
        self.appended += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
