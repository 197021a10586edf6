"""File faults: DuckDB corruption, lost unfsynced writes, a full disk, corrupt configuration.

Every fault keeps what it needs to undo itself: corruption faults copy the original files aside on inject and put
them back on heal (``restore_on_heal=False`` leaves the damage for the system under test to repair; the copy is
still kept under ``<dir>/.tradedrill-faults/``). Every random choice (offsets, lengths, which value turns into the
wrong type) comes from the ``random.Random`` passed in, derived from the run's seed.

DuckDB file layout (measured with duckdb 2.0): a 4 KiB main header (magic ``DUCK`` at offset 8), two 4 KiB
database headers, then 256 KiB blocks from offset 12288, each with a checksum that DuckDB verifies on read; the
WAL is ``<db>.wal``.
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

from faults.core import Fault, FaultError, FaultState

DUCKDB_HEADER = 4096
DUCKDB_BLOCKS_START = 3 * 4096
DUCKDB_BLOCK = 262144
BACKUP_DIR = ".tradedrill-faults"


def _need_rng(rng) -> random.Random:
    if not isinstance(rng, random.Random):
        raise FaultError("file faults need the run's random.Random (random choices replay from the run's seed)")
    return rng


class _RestoringFault(Fault):
    """Copies ``paths`` aside on inject; heal puts them back (missing originals are deleted again)."""

    def __init__(self, paths: Iterable[str | os.PathLike], *, restore_on_heal: bool = True, **kw):
        super().__init__(**kw)
        self.paths = [Path(p) for p in paths]
        self.restore_on_heal = restore_on_heal
        self.saved: dict[Path, Path | None] = {}

    def _save(self) -> None:
        for path in self.paths:
            if path.exists():
                backup = path.parent / BACKUP_DIR / f"{path.name}.{self.fault_id}"
                backup.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, backup)
                self.saved[path] = backup
            else:
                self.saved[path] = None

    def _restore(self) -> None:
        for path, backup in self.saved.items():
            if backup is None:
                path.unlink(missing_ok=True)
            else:
                tmp = path.with_name(path.name + ".tradedrill-restore")
                shutil.copy2(backup, tmp)
                os.replace(tmp, path)
                backup.unlink(missing_ok=True)
        self.saved.clear()

    def _heal(self) -> None:
        if self.restore_on_heal:
            self._restore()


class CorruptDuckDB(_RestoringFault):
    """Damage a DuckDB database the way disks and crashes do. Modes:

    flip-block   flip ``count`` bytes inside one data block (the block checksum fails on read)
    zero-header  zero the 4 KiB main header (the file no longer opens)
    truncate     cut the file inside its data blocks
    wal-truncate cut the WAL at a random point
    wal-garble   flip bytes in the WAL
    torn-write   the last write half done: the tail of the last 4 KiB page of the WAL (or of the file when there
                 is no WAL) zeroed from a random 512-byte sector boundary
    """

    name = "duckdb-corrupt"
    requirement_ids = ("DDB-3", "DDB-4", "TEST")
    MODES = ("flip-block", "zero-header", "truncate", "wal-truncate", "wal-garble", "torn-write")

    def __init__(self, path: str | os.PathLike, mode: str, rng: random.Random, *, count: int = 16, **kw):
        if mode not in self.MODES:
            raise FaultError(f"unknown DuckDB corruption {mode!r}; use one of {', '.join(self.MODES)}")
        self.db = Path(path)
        self.wal = Path(str(path) + ".wal")
        super().__init__([self.db, self.wal], **kw)
        self.mode = mode
        self.rng = _need_rng(rng)
        self.count = count
        self.damage: dict[str, Any] = {}

    def _inject(self) -> None:
        if not self.db.exists():
            raise FaultError(f"no DuckDB file at {self.db}")
        if self.mode.startswith("wal-") and not self.wal.exists():
            raise FaultError(f"{self.db} has no WAL to corrupt (checkpointed or closed cleanly)")
        self._save()
        getattr(self, "_" + self.mode.replace("-", "_"))()

    def _flip(self, path: Path, start: int, end: int) -> None:
        offsets = sorted(self.rng.randrange(start, end) for _ in range(self.count))
        with open(path, "r+b") as fh:
            for off in offsets:
                fh.seek(off)
                b = fh.read(1)
                fh.seek(off)
                fh.write(bytes([b[0] ^ 0xFF]))
            fh.flush()
            os.fsync(fh.fileno())
        self.damage = {"file": str(path), "offsets": offsets}

    def _flip_block(self) -> None:
        size = self.db.stat().st_size
        blocks = max(1, (size - DUCKDB_BLOCKS_START) // DUCKDB_BLOCK)
        block = self.rng.randrange(blocks)
        start = DUCKDB_BLOCKS_START + block * DUCKDB_BLOCK + 8  # past the block's own checksum
        self._flip(self.db, start, min(size, start + DUCKDB_BLOCK - 8))
        self.damage["block"] = block

    def _zero_header(self) -> None:
        with open(self.db, "r+b") as fh:
            fh.write(b"\0" * DUCKDB_HEADER)
            os.fsync(fh.fileno())
        self.damage = {"file": str(self.db), "zeroed": [0, DUCKDB_HEADER]}

    def _truncate(self) -> None:
        size = self.db.stat().st_size
        cut = self.rng.randrange(DUCKDB_HEADER, max(DUCKDB_HEADER + 1, size - 1))
        os.truncate(self.db, cut)
        self.damage = {"file": str(self.db), "from": size, "to": cut}

    def _wal_truncate(self) -> None:
        size = self.wal.stat().st_size
        cut = self.rng.randrange(0, max(1, size - 1))
        os.truncate(self.wal, cut)
        self.damage = {"file": str(self.wal), "from": size, "to": cut}

    def _wal_garble(self) -> None:
        size = self.wal.stat().st_size
        self._flip(self.wal, 0, size)

    def _torn_write(self) -> None:
        target = self.wal if self.wal.exists() and self.wal.stat().st_size else self.db
        size = target.stat().st_size
        page_start = max(0, (size - 1) // 4096 * 4096)
        sectors = max(1, (size - page_start) // 512)
        tear = page_start + 512 * self.rng.randrange(0, sectors)
        with open(target, "r+b") as fh:
            fh.seek(tear)
            fh.write(b"\0" * (size - tear))
            os.fsync(fh.fileno())
        self.damage = {"file": str(target), "zeroed": [tear, size]}

    def details(self) -> dict:
        return {"path": str(self.db), "mode": self.mode, **self.damage, "restore_on_heal": self.restore_on_heal}

    def describe(self) -> str:
        return f"DuckDB {self.mode} on {self.db.name}"


class CrashCorruptDuckDB(Fault):
    """A crash that leaves the DuckDB file damaged: SIGKILL ``node`` (any handle with ``kill()``, ``is_alive()``,
    ``start()``, ``wait_ready()``), then damage its database at ``path`` with :class:`CorruptDuckDB` ``mode`` while
    nothing holds it open (a torn or garbled WAL is what a crash in the middle of a write leaves). The process
    opens the damaged file when it starts again: a supervisor restarts it (``restart_on_heal=False``, heal only
    closes the window), or heal does. The damage is left for the system under test to repair (the original files
    are still copied under ``<dir>/.tradedrill-faults/``)."""

    name = "duckdb-crash-corrupt"
    requirement_ids = ("DDB-3", "ENG-3", "TEST")
    MODES = CorruptDuckDB.MODES

    def __init__(self, node, path: str | os.PathLike, mode: str, rng: random.Random, *,
                 restart_on_heal: bool = True, ready_timeout: float | None = None, **kw):
        super().__init__(**kw)
        # no log of its own: this fault's inject line carries the damage
        self.corrupt = CorruptDuckDB(path, mode, rng, restore_on_heal=False)
        self.node = node
        self.restart_on_heal = restart_on_heal
        self.ready_timeout = ready_timeout
        self.victim_pid: int | None = None

    def _inject(self) -> None:
        self.victim_pid = self.node.pid
        self.node.kill()
        if self.node.is_alive():
            raise FaultError(f"{getattr(self.node, 'name', '?')} is still alive after SIGKILL; its journal was not "
                             f"touched")
        self.corrupt.inject()

    def _heal(self) -> None:
        self.corrupt.heal()   # the damage stays (restore_on_heal=False); only the fault's record closes
        if self.restart_on_heal and not self.node.is_alive():
            self.node.start()
            self.node.wait_ready(self.ready_timeout)

    def details(self) -> dict:
        return {"node": getattr(self.node, "name", None), "pid": self.victim_pid, **self.corrupt.details()}

    def describe(self) -> str:
        return f"SIGKILL {getattr(self.node, 'name', '?')}, then DuckDB {self.corrupt.mode} on {self.corrupt.db.name}"


class LostUnfsyncedWrites(_RestoringFault):
    """What a power cut does: the process dies and every write since its last fsync is gone.

    The harness cannot see another process's page cache, so the fsync point is declared: the fault captures the
    files when it is created and on each :meth:`synced` call (call it when the process has acknowledged a durable
    write: a DuckDB CHECKPOINT/commit, a Redis ``appendfsync always`` reply). Inject kills ``node`` (any handle
    with ``kill()``; optional) and puts the files back to their last captured state; heal restarts the node when
    ``restart_on_heal`` (the files stay as the "crash" left them).
    """

    name = "lost-unfsynced-writes"
    requirement_ids = ("DDB-3", "RDS-3", "RDS-4", "BR-1")

    def __init__(self, paths: Iterable[str | os.PathLike], node=None, *, restart_on_heal: bool = True, **kw):
        super().__init__(paths, restore_on_heal=False, **kw)
        self.node = node
        self.restart_on_heal = restart_on_heal
        self.snapshot: dict[Path, bytes | None] = {}
        self.lost_bytes = 0
        self.synced()

    def synced(self) -> None:
        """Declare that the files as they are now are durable."""
        self.snapshot = {p: (p.read_bytes() if p.exists() else None) for p in self.paths}

    def _inject(self) -> None:
        if self.node is not None:
            self.node.kill()
        lost = 0
        for path, content in self.snapshot.items():
            now = path.read_bytes() if path.exists() else None
            lost += abs(len(now or b"") - len(content or b""))
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        self.lost_bytes = lost

    def _heal(self) -> None:
        if self.node is not None and self.restart_on_heal and not self.node.is_alive():
            self.node.start()
            self.node.wait_ready()

    def details(self) -> dict:
        return {"paths": [str(p) for p in self.paths], "lost_bytes": self.lost_bytes,
                "node": getattr(self.node, "name", None)}

    def describe(self) -> str:
        return f"lost unfsynced writes of {', '.join(p.name for p in self.paths)}"


def _fill_to_full(filler: Path, chunk: int, capacity: int, free_bytes: int = 0) -> int:
    """Write zeros into ``filler`` until its filesystem answers ENOSPC (chunks halve down to 512 bytes; bounded by
    ``capacity`` bytes), then give ``free_bytes`` back. Returns the bytes written."""
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(capacity // 512 + 64):  # bounded: the filesystem holds at most capacity bytes
            try:
                written += os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
                if chunk < 512:
                    break
    finally:
        os.close(fd)
    if free_bytes:
        os.truncate(filler, max(0, filler.stat().st_size - free_bytes))
    return written


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class DiskFull(Fault):
    """The node's data folder becomes a full disk: writes fail with ENOSPC until healed (root only).

    Inject mounts a tmpfs just big enough over ``folder``, copies the folder's files in, and fills what is left
    (keeping ``free_bytes``). Heal deletes the filler, copies the files back to the real folder (reached through a
    descriptor opened before the mount) and unmounts (lazily, for a process that still holds files open). Without
    root use :class:`FileSizeLimit`.
    """

    name = "disk-full"
    requirement_ids = ("DDB-5", "DDB-3", "CFG-1")
    FILLER = ".tradedrill-disk-filler"

    def __init__(self, folder: str | os.PathLike, *, free_bytes: int = 0, slack_bytes: int = 256 * 1024, **kw):
        super().__init__(**kw)
        self.folder = Path(folder).resolve()
        self.free_bytes = free_bytes
        self.slack = slack_bytes
        self.size = 0
        self._dirfd: int | None = None
        self._mounted = False
        self.state = self.state or FaultState()

    def _record(self) -> dict:
        return {"mount": str(self.folder), "pid": os.getpid()}

    def _inject(self) -> None:
        if os.geteuid() != 0:
            raise FaultError("a full disk needs root (tmpfs mount); use FileSizeLimit to limit a node's writes")
        if not self.folder.is_dir():
            raise FaultError(f"{self.folder} is not a folder")
        used = _dir_bytes(self.folder)
        self.size = ((used + self.slack + self.free_bytes) // 4096 + 16) * 4096
        self._dirfd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        self.state.add("mounts", self._record())
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.folder)],
                       check=True, capture_output=True, timeout=10)
        self._mounted = True
        shutil.copytree(f"/proc/self/fd/{self._dirfd}", self.folder, dirs_exist_ok=True, symlinks=True)
        self._fill()

    def _fill(self) -> None:
        _fill_to_full(self.folder / self.FILLER, 65536, self.size, self.free_bytes)

    def _heal(self) -> None:
        if not self._mounted:
            if self._dirfd is not None:
                os.close(self._dirfd)
                self._dirfd = None
            self.state.remove("mounts", self._record())
            return
        (self.folder / self.FILLER).unlink(missing_ok=True)
        real = f"/proc/self/fd/{self._dirfd}"
        shutil.copytree(self.folder, real, dirs_exist_ok=True, symlinks=True)
        subprocess.run(["umount", "-l", str(self.folder)], check=True, capture_output=True, timeout=10)
        self._mounted = False
        os.close(self._dirfd)
        self._dirfd = None
        self.state.remove("mounts", self._record())

    def details(self) -> dict:
        return {"folder": str(self.folder), "tmpfs_bytes": self.size, "free_bytes": self.free_bytes}

    def describe(self) -> str:
        return f"disk full under {self.folder}"


class TmpfsMount:
    """A small tmpfs of ``size_bytes`` mounted over ``folder`` by its own handle, so a drill can fill a node's
    filesystem (:class:`FillFilesystem`) without touching a real disk. :meth:`mount` (root only) copies what the
    folder already holds into the tmpfs; :meth:`unmount` copies everything but the disk filler back to the real
    folder (reached through a descriptor opened before the mount), then unmounts (lazily when a process still
    holds a file there). Each mount is recorded in the fault state (kind ``mounts``, this process's pid) until
    unmounted, so ``faults.cli.heal_dead_leftovers`` lazily unmounts what a SIGKILLed run left. Raises FaultError
    (one line, what to do) without root, for a size below 1 MiB, or when ``folder`` is already a mount point."""

    def __init__(self, folder: str | os.PathLike, size_bytes: int, state: FaultState | None = None):
        if int(size_bytes) < 1 << 20:
            raise FaultError(f"tmpfs size {size_bytes} bytes for {folder}: give at least 1 MiB")
        self.folder = Path(folder).resolve()
        self.size = int(size_bytes)
        self.state = state or FaultState()
        self._dirfd: int | None = None
        self.mounted = False

    def _record(self) -> dict:
        return {"mount": str(self.folder), "pid": os.getpid()}

    def mount(self) -> "TmpfsMount":
        """Mount it (a no-op when this handle already did)."""
        if self.mounted:
            return self
        if os.geteuid() != 0:
            raise FaultError(f"mounting a tmpfs over {self.folder} needs root; run the drill as root")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.folder):
            raise FaultError(f"{self.folder} is already a mount point; unmount it (`umount {self.folder}`) or run "
                             f"`tradedrill faults heal-all`")
        self._dirfd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        mode = oct(os.stat(self._dirfd).st_mode & 0o777)[2:]
        self.state.add("mounts", self._record())
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode={mode}", "tmpfs",
                            str(self.folder)], check=True, capture_output=True, timeout=10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self.state.remove("mounts", self._record())
            os.close(self._dirfd)
            self._dirfd = None
            err = getattr(exc, "stderr", b"") or b""
            raise FaultError(f"could not mount a tmpfs over {self.folder}: {err.decode(errors='replace').strip()}"
                             ) from None
        self.mounted = True
        shutil.copytree(f"/proc/self/fd/{self._dirfd}", self.folder, dirs_exist_ok=True, symlinks=True)
        return self

    def unmount(self) -> None:
        """Copy the files back and unmount (a no-op when not mounted by this handle)."""
        if not self.mounted:
            return
        try:
            shutil.copytree(self.folder, f"/proc/self/fd/{self._dirfd}", dirs_exist_ok=True, symlinks=True,
                            ignore=shutil.ignore_patterns(FillFilesystem.FILLER, DiskFull.FILLER))
        finally:
            done = subprocess.run(["umount", str(self.folder)], capture_output=True, timeout=10)
            if done.returncode != 0:   # a process still holds a file there: detach now, freed when it closes
                subprocess.run(["umount", "-l", str(self.folder)], check=True, capture_output=True, timeout=10)
            self.mounted = False
            os.close(self._dirfd)
            self._dirfd = None
            self.state.remove("mounts", self._record())

    def __enter__(self) -> "TmpfsMount":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.unmount()


def tmpfs_mount_of(folder: str | os.PathLike) -> str | None:
    """The mount point of the tmpfs ``folder`` lives on, or None when it is on any other filesystem."""
    import psutil

    path = Path(folder).resolve()
    best = None
    for part in psutil.disk_partitions(all=True):
        mount = Path(part.mountpoint)
        if path == mount or mount in path.parents:
            if best is None or len(str(mount)) > len(str(best[0])):
                best = (mount, part.fstype)
    return str(best[0]) if best and best[1] == "tmpfs" else None


class FillFilesystem(Fault):
    """The filesystem under ``folder`` runs out of space while its files stay open: a filler file takes every free
    byte but ``free_bytes`` (writes then fail with ENOSPC); heal deletes the filler. Refused unless ``folder`` is on
    a tmpfs (a drill's own small mount: filling a real disk would hurt everything else on it). Unlike
    :class:`DiskFull` nothing is mounted over the folder, so a process that holds files there sees the full disk
    on those very files."""

    name = "disk-fill"
    requirement_ids = ("DDB-5", "DDB-3")
    FILLER = ".tradedrill-disk-filler"

    def __init__(self, folder: str | os.PathLike, *, free_bytes: int = 0, **kw):
        super().__init__(**kw)
        self.folder = Path(folder)
        self.free_bytes = int(free_bytes)
        self.mount: str | None = None
        self.filled = 0

    def _inject(self) -> None:
        self.mount = tmpfs_mount_of(self.folder)
        if self.mount is None:
            raise FaultError(f"{self.folder} is not on a tmpfs of its own; a full disk is only made on a drill's "
                             f"own mount (mount a small tmpfs there before the process starts)")
        total = os.statvfs(self.mount)
        self.filled = _fill_to_full(Path(self.mount) / self.FILLER, 1 << 20, total.f_blocks * total.f_frsize,
                                    self.free_bytes)

    def _heal(self) -> None:
        if self.mount is not None:
            (Path(self.mount) / self.FILLER).unlink(missing_ok=True)

    def details(self) -> dict:
        return {"folder": str(self.folder), "mount": self.mount, "filler_bytes": self.filled,
                "free_bytes": self.free_bytes}

    def describe(self) -> str:
        return f"filesystem of {self.folder} full"


class FileSizeLimit(Fault):
    """Without root: cap the size of files a running node may write (RLIMIT_FSIZE through prlimit). A write past
    the cap fails with EFBIG (File too large) in a process that ignores SIGXFSZ (Python does); others are killed
    by SIGXFSZ. Heal restores the previous limit."""

    name = "file-size-limit"
    requirement_ids = ("DDB-5",)

    def __init__(self, pid: int, max_bytes: int, **kw):
        super().__init__(**kw)
        self.pid = pid
        self.max_bytes = max_bytes
        self._previous: tuple[int, int] | None = None

    def _inject(self) -> None:
        import resource

        self._previous = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (self.max_bytes, self._previous[1]))

    def _heal(self) -> None:
        import resource

        if self._previous is not None:
            try:
                resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self._previous)
            except ProcessLookupError:
                pass

    def details(self) -> dict:
        return {"pid": self.pid, "max_bytes": self.max_bytes}

    def describe(self) -> str:
        return f"file size limit {self.max_bytes} bytes for pid {self.pid}"


class CorruptConfig(_RestoringFault):
    """Damage a JSON configuration file. Modes: truncated, invalid-json, wrong-types, oversized (past the 10 KB
    cap of CFG-1, still valid JSON). Heal restores the original."""

    name = "config-corrupt"
    requirement_ids = ("CFG-1", "CFG-2")
    MODES = ("truncated", "invalid-json", "wrong-types", "oversized")

    def __init__(self, path: str | os.PathLike, mode: str, rng: random.Random, *, oversize_bytes: int = 64 * 1024,
                 **kw):
        if mode not in self.MODES:
            raise FaultError(f"unknown config corruption {mode!r}; use one of {', '.join(self.MODES)}")
        super().__init__([path], **kw)
        self.path = Path(path)
        self.mode = mode
        self.rng = _need_rng(rng)
        self.oversize = oversize_bytes
        self.damage: dict[str, Any] = {}

    def _inject(self) -> None:
        if not self.path.exists():
            raise FaultError(f"no configuration file at {self.path}")
        self._save()
        text = self.path.read_text()
        if self.mode == "truncated":
            cut = self.rng.randrange(0, max(1, len(text) - 1))
            new = text[:cut]
            self.damage = {"from": len(text), "to": cut}
        elif self.mode == "invalid-json":
            pos = self.rng.randrange(0, max(1, len(text)))
            new = text[:pos] + '{"' + text[pos:]
            self.damage = {"inserted_at": pos}
        elif self.mode == "wrong-types":
            doc = json.loads(text)
            changed: list[str] = []
            new = json.dumps(self._mistype(doc, "", changed), indent=2)
            self.damage = {"changed": changed}
        else:
            doc = json.loads(text)
            pad = "x" * self.oversize
            if isinstance(doc, dict):
                doc["_padding"] = pad
            else:
                doc = {"_original": doc, "_padding": pad}
            new = json.dumps(doc)
            self.damage = {"bytes": len(new)}
        self.path.write_text(new)

    def _mistype(self, value, where: str, changed: list[str]):
        if isinstance(value, dict):
            keys = sorted(value)
            if not keys:
                return value
            pick = set(self.rng.sample(keys, max(1, len(keys) // 3)))
            return {k: (self._wrong(v, f"{where}.{k}", changed) if k in pick and not isinstance(v, (dict, list))
                        else self._mistype(v, f"{where}.{k}", changed)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mistype(v, f"{where}[{i}]", changed) for i, v in enumerate(value)]
        return self._wrong(value, where, changed)

    def _wrong(self, value, where: str, changed: list[str]):
        changed.append(where)
        if isinstance(value, bool):
            return "yes"
        if isinstance(value, (int, float)):
            return str(value) + "ms"
        if isinstance(value, str):
            return self.rng.choice([12345, None, [value], {"value": value}])
        return "null"

    def details(self) -> dict:
        return {"path": str(self.path), "mode": self.mode, **self.damage}

    def describe(self) -> str:
        return f"config {self.mode} on {self.path.name}"


def heal_leftovers(state: FaultState) -> list[str]:
    """Lazily unmount tmpfs mounts left by crashed DiskFull faults (their content is lost with the run)."""
    import psutil

    done = []
    for rec in state.entries().get("mounts", []):
        if psutil.pid_exists(rec.get("pid", 0)) and rec.get("pid") != os.getpid():
            done.append(f"kept mount {rec['mount']}: process {rec['pid']} is still running")
            continue
        mounted = any(p.mountpoint == rec["mount"] and p.fstype == "tmpfs"
                      for p in psutil.disk_partitions(all=True))
        if mounted:
            subprocess.run(["umount", "-l", rec["mount"]], capture_output=True, timeout=10)
            done.append(f"unmounted tmpfs {rec['mount']}")
        state.remove("mounts", rec)
    return done
