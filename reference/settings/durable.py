"""Durable file writes: a reader sees the old file or the new one, never a mix, also after a crash or power loss.

Why our own: the one library that did this (``atomicwrites``) is archived by its author, and the recipe is four
system calls - write a temporary file in the same folder, fsync it, rename it over the target, fsync the folder (so
the rename itself survives a power loss). Temporary files are named ``.<target>.<pid>.<random>.tmp``; a writer
killed mid-write leaves one behind, which readers never look at; a store removes such files while it holds the
writers' lock (:class:`FolderLock`), when no live writer can have one open.
"""
from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from reference.fsutil import fsync_dir  # noqa: F401 - part of this module's API


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _write_temp(target: Path, data: bytes, mode: int) -> Path:
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never adds any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def write_atomic(target: Path | str, data: bytes, mode: int = 0o600) -> Path:
    """Replace ``target`` with ``data`` (bytes) atomically and durably: temp file, fsync, rename, fsync of the
    folder. The file gets ``mode`` (default 0600). Raises OSError (ENOSPC, EACCES, ...) with ``target`` unchanged."""
    target = Path(target)
    tmp = _write_temp(target, data, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def create_exclusive(target: Path | str, data: bytes, mode: int = 0o600) -> bool:
    """Create ``target`` with ``data`` only if it does not exist yet (atomically: nobody sees it half-written).
    Returns False, writing nothing, when it already exists."""
    target = Path(target)
    tmp = _write_temp(target, data, mode)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.<name>.lock``: one writer at a time across processes and threads. The
    kernel drops it when the holder dies, so a killed writer never leaves a stale lock."""

    def __init__(self, folder: Path, name: str):
        self.path = Path(folder) / f".{name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock
