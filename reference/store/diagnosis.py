"""One-line diagnoses of DuckDB failures, and the one failure that is not damage: a lock held by another process.

DuckDB reports damage through several exception classes (``IOException``, ``InternalException``, the plain
``duckdb.Error``) whose messages hold the useful fact (an offset, a checksum, a WAL position) in the middle of a
long text. Operators need that fact and what it means, not the class; the messages below were measured with
duckdb 2.0 against every corruption mode of ``faults/files.py``.
"""
from __future__ import annotations

import os
import re

HEADER_BYTES = 4096   # DuckDB's main header; "DUCK" at bytes 8..12 of it

_LOCK = re.compile(r"Could not set lock on file .*?Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)",
                   re.S)


def lock_holder(exc: BaseException) -> str | None:
    """``"<program> (PID n)"`` when ``exc`` says another live process holds the file's lock, else None."""
    m = _LOCK.search(str(exc))
    if m:
        return f"{m.group('holder')} (PID {m.group('pid')})"
    if "Could not set lock on file" in str(exc):
        return "another process"
    return None


def short_file(size: int) -> str | None:
    """The clause for a file too short to hold DuckDB's header (``: > journal.duckdb``, a cut at byte 100), which
    DuckDB reports like a zeroed header ("not a valid DuckDB database file"); None when it is long enough."""
    if size == 0:
        return "the file is empty (0 bytes: cut to nothing)"
    if size < HEADER_BYTES:
        return f"the file is cut to {size} bytes, shorter than DuckDB's {HEADER_BYTES}-byte header"
    return None


def describe(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """What a failed open or read of a DuckDB file saw, as a short clause (no newline), e.g. ``"data block at
    offset 12288 fails its checksum"``. ``path``: the file, looked at when DuckDB's message cannot tell an empty or
    cut file from an overwritten header."""
    text = " ".join(str(exc).split())
    m = re.search(r"Corrupt WAL file: entry at byte position (\d+)", text)
    if m:
        return f"the WAL fails its checksum at byte {m.group(1)} (torn or garbled write)"
    if "replaying WAL" in text:
        return f"the WAL cannot be replayed ({_tail(text)})"
    m = re.search(r"does not match stored checksum \d+ in block at location (\d+)", text)
    if m:
        return f"the data block at offset {m.group(1)} fails its checksum (bytes changed on disk)"
    if "not a valid DuckDB database file" in text:
        if path is not None:
            try:
                short = short_file(os.stat(path).st_size)
            except OSError:
                short = None
            if short:
                return short
        return "the file header is not a DuckDB header (zeroed or overwritten)"
    m = re.search(r"Could not read enough bytes from file .*?attempted to read (\d+) bytes from location (\d+)", text)
    if m:
        return (f"the file ends before its own blocks (truncated: wanted {m.group(1)} bytes at offset "
                f"{m.group(2)})")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({type(exc).__name__})"
    return f"DuckDB could not read it: {_tail(text)}"


def _tail(text: str, limit: int = 160) -> str:
    text = text.split(" See also ")[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."
