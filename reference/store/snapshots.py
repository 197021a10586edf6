"""Snapshots of one DuckDB file with a sha256 manifest (DDB-2, DDB-3).

A snapshot is a complete, checkpointed DuckDB file (it needs no WAL) taken as ``CHECKPOINT`` followed by a plain
copy of the database file's bytes, both under the writer's lock (the journal's, passed in as ``writers_held``):
while it is held nothing commits, so after the checkpoint the file holds every committed write, its WAL is gone
(checked: a WAL left behind fails the snapshot), and the bytes copied are one consistent state. The copy reads
through the descriptor the journal keeps open on the file (``copy_file_range``, else reads and writes): opening and
closing another descriptor of it would drop DuckDB's POSIX lock. The lock is then released; the copy is fsynced,
hashed (sha256) and renamed into place before the manifest names it; the manifest is replaced atomically (temp
file, fsync, rename, fsync of the folder). A snapshot whose bytes no longer match its hash is never restored. Only
the last ``kept`` snapshots stay (DDB-2: 5, or 10 under MT5-HA).

Why not DuckDB's own ``ATTACH`` + ``COPY FROM DATABASE`` (the method until issue 16): it does not block writers,
but each copy of a journal that changed left memory behind in the engine's process, outside DuckDB's buffer pool
(not in duckdb_memory(), not bounded by memory_limit; only closing the database returned it): 8-10 KB of RSS per
signal at a snapshot every 5 signals, the soak's 5.6 MB/min. Checkpoint + file copy keeps the RSS at what the
journal holds by design (1.1-2.4 KB per signal, ``benchmarks/bench_journal.py``: ``snapshots``) and is faster: a journal
of 20,000 signals as the engine writes them (2.4-6.6 MB), 11-14 ms a snapshot instead of 103 ms; 256 MB, 0.31 s
instead of 2.0 s. The price: writers wait for the checkpoint and the copy, 4-5 ms at the median there (p99 9-36 ms
on a busy 2-core host) and 72 ms for 256 MB (``benchmarks/bench_store.py``, ``writers_blocked_s``); and the live
WAL is folded into the file at every snapshot instead of at DDB-1's threshold.

Files, for a database ``journal-A.duckdb`` and a folder ``backup/duckdb/``::

    journal-A.manifest.json                       newest first: file, sha256, bytes, hwm, taken_ms, took_s
    journal-A.h<hwm>.t<epoch ms>.duckdb           the snapshots
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Callable

import duckdb

from reference.fsutil import fsync_dir  # noqa: F401 - also what journal.py takes from here

MANIFEST_VERSION = 1


class SnapshotError(RuntimeError):
    """A snapshot could not be taken or restored; the message names the file and the reason."""


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot as the manifest lists it. ``hwm``: the high-water mark (last committed write number) the
    snapshot holds; ``bytes``: file size; ``taken_ms``: wall-clock epoch ms; ``took_s``: seconds to take it."""

    file: str
    sha256: str
    bytes: int
    hwm: int
    taken_ms: int
    took_s: float


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes. Raises OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def copy_durably(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temp file in ``dest``'s folder, fsynced, renamed into place."""
    tmp = dest.with_name(f".{dest.name}.restoring")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


class SnapshotSet:
    """The snapshots of the DuckDB file ``db_path`` in ``folder`` (created when missing), ``kept`` of them.

    Raises ValueError for ``kept`` outside 1..10 (DDB-2 allows 5 or 10)."""

    def __init__(self, db_path: str | Path, folder: str | Path, kept: int = 5):
        if not 1 <= int(kept) <= 10:
            raise ValueError(f"snapshots kept = {kept}: keep between 1 and 10 (DDB-2: 5, MT5-HA: 10)")
        self.db_path = Path(db_path)
        self.folder = Path(folder)
        self.kept = int(kept)
        self.stem = self.db_path.stem
        self.manifest_path = self.folder / f"{self.stem}.manifest.json"
        self.manifest_note = ""     # why the manifest could not be read, when it could not
        self._manifest_damage = ""  # the damaged manifest moved aside, until a new manifest is written
        self.last_blocked_s: float | None = None   # seconds the last take held the writers (None: none taken)

    # --- reading ------------------------------------------------------------------------------------------------
    def entries(self) -> list[SnapshotInfo]:
        """The snapshots, newest (highest hwm) first; [] when there is none.

        A manifest that cannot be read is not the end of the snapshots: it is moved aside as evidence (into
        ``damaged/`` of the folder, never deleted; said in ``manifest_note``) and the snapshot files are listed from
        their own names (``<stem>.h<hwm>.t<ms>.duckdb``: the high-water mark is in the name), each checked by
        opening it read-only; a file that does not open is moved aside with the manifest. Such entries carry no
        checksum (``sha256`` ""): the next manifest written gives them one."""
        if not self._manifest_damage:
            self.manifest_note = ""
        if self.folder.exists() and not self.folder.is_dir():
            self.manifest_note = f"the snapshot folder {self.folder} is a file, not a folder: no snapshot there"
            return []
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return self._scan()
        except IsADirectoryError:
            return self._manifest_damaged("is a folder")
        except OSError as exc:
            return self._manifest_damaged(f"unreadable: {exc.strerror}")
        try:
            data = json.loads(raw)
            items = [SnapshotInfo(**item) for item in data["snapshots"]]
        except (ValueError, KeyError, TypeError) as exc:
            return self._manifest_damaged(f"is damaged ({type(exc).__name__})")
        self._manifest_damage = ""
        self.manifest_note = ""
        return sorted(items, key=lambda s: (s.hwm, s.taken_ms), reverse=True)

    def _evidence_folder(self) -> Path:
        return self.folder / "damaged"

    def _manifest_damaged(self, why: str) -> list[SnapshotInfo]:
        """Keep the damaged manifest as evidence, then list the snapshots from their files."""
        kept = ""
        try:
            evidence = self._evidence_folder()
            evidence.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
            dest = evidence / f"{self.manifest_path.name}.{stamp}"
            n = 1
            while dest.exists():
                n += 1
                dest = evidence / f"{self.manifest_path.name}.{stamp}-{n}"
            os.replace(self.manifest_path, dest)
            fsync_dir(self.folder)
            kept = f", kept as {dest}"
        except OSError as exc:
            kept = f", left in place (could not be moved aside: {exc.strerror or exc})"
        self._manifest_damage = (f"manifest {self.manifest_path} {why}{kept}; the snapshots were listed from their "
                                 f"files")
        self.manifest_note = self._manifest_damage
        return self._scan()

    def _scan(self) -> list[SnapshotInfo]:
        """The snapshot files of this database, from their names, each opened read-only to check it (nothing is
        deleted: a file that does not open is moved into ``damaged/``)."""
        items: list[SnapshotInfo] = []
        try:
            files = sorted(self.folder.glob(f"{self.stem}.h*.t*.duckdb"))
        except OSError:
            return []
        for path in files:
            match = _SNAPSHOT_NAME.fullmatch(path.name[len(self.stem):])
            if not match:
                continue
            problem = _opens(path)
            if problem:
                try:
                    evidence = self._evidence_folder()
                    evidence.mkdir(parents=True, exist_ok=True)
                    os.replace(path, evidence / path.name)
                except OSError:
                    pass
                note = f"snapshot {path.name} does not open ({problem}), moved into damaged/"
                self.manifest_note = f"{self.manifest_note}; {note}" if self.manifest_note else note
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            items.append(SnapshotInfo(path.name, "", size, int(match["hwm"]), int(match["ms"]), 0.0))
        return sorted(items, key=lambda s: (s.hwm, s.taken_ms), reverse=True)

    def newest(self) -> SnapshotInfo | None:
        items = self.entries()
        return items[0] if items else None

    def path_of(self, info: SnapshotInfo) -> Path:
        return self.folder / info.file

    def verify(self, info: SnapshotInfo) -> str | None:
        """None when the snapshot's bytes match the manifest, else why not (one clause)."""
        path = self.path_of(info)
        try:
            size = path.stat().st_size
            if size != info.bytes:
                return f"snapshot {info.file} has {size} bytes, the manifest says {info.bytes}"
            if info.sha256 and sha256_file(path) != info.sha256:
                return f"snapshot {info.file} fails its sha256"
        except FileNotFoundError:
            return f"snapshot {info.file} is missing"
        except OSError as exc:
            return f"snapshot {info.file} unreadable: {exc.strerror}"
        return None

    # --- writing ------------------------------------------------------------------------------------------------
    def take(self, writers_held: AbstractContextManager,
             live: Callable[[], tuple[duckdb.DuckDBPyConnection, int]],
             hwm_of: Callable[[duckdb.DuckDBPyConnection, str], int]) -> SnapshotInfo:
        """Snapshot the database file ``db_path``. ``writers_held``: a context manager under which nothing commits
        to the database (the journal's write lock), held for the CHECKPOINT, the high-water mark and the copy of
        the bytes, released for the fsync, the sha256 and the rename. ``live()``, called while it is held: the
        database's live read-write connection and a descriptor of its file open for reading (the bytes are read
        through it: opening and closing another descriptor of the file would drop DuckDB's POSIX lock on it).
        ``hwm_of(con, "")`` reads the high-water mark the database holds.

        Returns the new manifest entry (``took_s`` the whole take; :attr:`last_blocked_s` how long writers were
        held); raises SnapshotError naming the database and the reason (the live database is untouched, apart
        from its checkpoint), e.g. when the checkpoint left a WAL behind (DDB-2's snapshot needs no WAL)."""
        started = time.perf_counter()
        partial = self.folder / f".{self.stem}.partial.duckdb"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise SnapshotError(f"snapshot of {self.db_path} failed: the snapshot folder {self.folder} is a file, "
                                f"not a folder; move it away (no snapshot is taken until then)") from None
        except OSError as exc:
            raise SnapshotError(f"snapshot of {self.db_path} failed: the snapshot folder {self.folder} cannot be "
                                f"made: {exc.strerror or exc}") from None
        out = -1
        try:
            for leftover in (partial, Path(str(partial) + ".wal")):
                leftover.unlink(missing_ok=True)
            out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with writers_held:
                held = time.perf_counter()
                con, source_fd = live()
                con.execute("CHECKPOINT")
                left = _wal_left(self.db_path)
                if left:
                    raise SnapshotError(f"snapshot of {self.db_path} failed: {left} after CHECKPOINT (a transaction "
                                        f"outside the write lock?); no snapshot taken, the last one stays")
                hwm = int(hwm_of(con, ""))
                size = os.fstat(source_fd).st_size
                _copy_range(source_fd, out, size)
                self.last_blocked_s = time.perf_counter() - held
            os.fsync(out)
            os.close(out)
            out = -1
            digest = sha256_file(partial)
            if partial.stat().st_size != size:
                raise SnapshotError(f"snapshot of {self.db_path} failed: the copy has {partial.stat().st_size} "
                                    f"bytes, the database {size}")
            taken = int(time.time() * 1000)
            final = self.folder / f"{self.stem}.h{hwm:012d}.t{taken}.duckdb"
            os.replace(partial, final)
            fsync_dir(self.folder)
        except SnapshotError:
            _discard(out, partial)
            raise
        except (duckdb.Error, OSError) as exc:
            _discard(out, partial)
            raise SnapshotError(f"snapshot of {self.db_path} into {self.folder} failed: "
                                f"{' '.join(str(exc).split())[:200]}") from None
        info = SnapshotInfo(final.name, digest, size, hwm, taken, round(time.perf_counter() - started, 6))
        self._record(info)
        return info

    def _record(self, info: SnapshotInfo) -> None:
        listed_before = self.entries()
        from_files = not self.manifest_path.exists()   # no sound manifest: the list came from the files
        items = [info]
        for s in listed_before:
            if s.file == info.file:
                continue
            if not s.sha256:   # listed from its file (it opened): its checksum from now on
                try:
                    s = SnapshotInfo(s.file, sha256_file(self.path_of(s)), s.bytes, s.hwm, s.taken_ms, s.took_s)
                except OSError:
                    continue
            items.append(s)
        keep, drop = items[:self.kept], items[self.kept:]
        self._write_manifest(keep)
        self._manifest_damage = ""
        for old in drop:                      # rotation of our own backups (DDB-2), never of damaged evidence
            self.path_of(old).unlink(missing_ok=True)
        if from_files:
            return   # without a manifest nothing proves a file unlisted is a leftover: none is deleted
        listed = {s.file for s in keep} | {s.file for s in drop}
        for stray in self.folder.glob(f"{self.stem}.h*.t*.duckdb"):
            if stray.name not in listed:     # taken by a process that died before its manifest write
                stray.unlink(missing_ok=True)

    def _write_manifest(self, items: list[SnapshotInfo]) -> None:
        data = {"version": MANIFEST_VERSION, "database": self.db_path.name,
                "snapshots": [asdict(s) for s in items]}
        atomic_write(self.manifest_path, (json.dumps(data, indent=1) + "\n").encode())

    def restore(self, info: SnapshotInfo, dest: Path) -> None:
        """Copy a snapshot to ``dest`` (atomically), hashing it on the way: one read of the bytes (DDB-3's 3 s
        for 256 MB). Raises SnapshotError, leaving ``dest`` untouched, when the bytes do not match the manifest."""
        src = self.path_of(info)
        tmp = dest.with_name(f".{dest.name}.restoring")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while True:
                    block = fin.read(1 << 22)
                    if not block:
                        break
                    digest.update(block)
                    size += len(block)
                    fout.write(block)
                fout.flush()
                os.fsync(fout.fileno())
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot {info.file} is missing") from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot {info.file} could not be copied to {dest}: {exc.strerror}") from None
        if size != info.bytes or (info.sha256 and digest.hexdigest() != info.sha256):
            tmp.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot {info.file} fails its sha256" if size == info.bytes else
                                f"snapshot {info.file} has {size} bytes, the manifest says {info.bytes}")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)


_SNAPSHOT_NAME = re.compile(r"\.h(?P<hwm>\d+)\.t(?P<ms>\d+)\.duckdb")


def _opens(path: Path) -> str:
    """"" when the DuckDB file opens read-only and lists its tables, else why not (one clause)."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        return " ".join(str(exc).split())[:160]
    try:
        con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        return ""
    except duckdb.Error as exc:
        return " ".join(str(exc).split())[:160]
    finally:
        con.close()


def _wal_left(db_path: Path) -> str:
    """"" when no WAL of ``db_path`` holds anything (DuckDB removes it at a checkpoint), else what is left."""
    for wal in sorted(db_path.parent.glob(f"{glob.escape(db_path.name)}.wal*")):
        try:
            size = wal.stat().st_size
        except FileNotFoundError:
            continue
        if size:
            return f"its WAL {wal.name} still holds {size} bytes"
    return ""


def _copy_range(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``src_fd`` to ``dst_fd`` (from offset 0; ``src_fd``'s offset is not
    moved): in the kernel (``copy_file_range``), else through reads and writes where the filesystem refuses it.
    Raises OSError, also when the source ends before ``size``."""
    done = 0
    kernel = hasattr(os, "copy_file_range")
    while done < size:
        if kernel:
            try:
                n = os.copy_file_range(src_fd, dst_fd, size - done, done, done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF):
                    raise
                kernel = False
                continue
        else:
            block = os.pread(src_fd, min(size - done, 1 << 22), done)
            n = os.pwrite(dst_fd, block, done) if block else 0
        if n == 0:
            raise OSError(errno.EIO, f"the database file ended at byte {done} of {size} during the copy")
        done += n


def _discard(fd: int, partial: Path) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
    partial.unlink(missing_ok=True)
