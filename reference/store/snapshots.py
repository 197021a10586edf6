"""Snapshots of one DuckDB file with a sha256 manifest (DDB-2, DDB-3).

A snapshot is a complete, checkpointed DuckDB file (no WAL) made by ``COPY FROM DATABASE`` on a connection of
the live database: one read transaction, so it is consistent, and writers go on meanwhile. Each snapshot is
fsynced, hashed (sha256) and renamed into place before the manifest names it; the manifest is replaced atomically
(temp file, fsync, rename, fsync of the folder). A snapshot whose bytes no longer match its hash is never
restored. Only the last ``kept`` snapshots stay (DDB-2: 5, or 10 under MT5-HA).

Files, for a database ``journal-A.duckdb`` and a folder ``backup/duckdb/``::

    journal-A.manifest.json                       newest first: file, sha256, bytes, hwm, taken_ms, took_s
    journal-A.h<hwm>.t<epoch ms>.duckdb           the snapshots
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
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

    # --- reading ------------------------------------------------------------------------------------------------
    def entries(self) -> list[SnapshotInfo]:
        """The manifest's snapshots, newest (highest hwm) first; [] when there is none. A manifest that cannot be
        read is reported in ``manifest_note`` and counts as empty (its snapshots cannot be verified)."""
        self.manifest_note = ""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.manifest_note = f"manifest {self.manifest_path} unreadable: {exc.strerror}"
            return []
        try:
            data = json.loads(raw)
            items = [SnapshotInfo(**item) for item in data["snapshots"]]
        except (ValueError, KeyError, TypeError) as exc:
            self.manifest_note = f"manifest {self.manifest_path} is damaged ({type(exc).__name__})"
            return []
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
            if sha256_file(path) != info.sha256:
                return f"snapshot {info.file} fails its sha256"
        except FileNotFoundError:
            return f"snapshot {info.file} is missing"
        except OSError as exc:
            return f"snapshot {info.file} unreadable: {exc.strerror}"
        return None

    # --- writing ------------------------------------------------------------------------------------------------
    def take(self, con: duckdb.DuckDBPyConnection, hwm_of: Callable[[duckdb.DuckDBPyConnection, str], int]
             ) -> SnapshotInfo:
        """Snapshot the database ``con`` is connected to (use a cursor of the live connection: it runs in its own
        transaction). ``hwm_of(con, catalog)`` reads the high-water mark of the copy (catalog ``"snap"``).
        Returns the new manifest entry; raises SnapshotError (the live database is untouched)."""
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{self.stem}.partial.duckdb"
        for leftover in (partial, Path(str(partial) + ".wal")):
            leftover.unlink(missing_ok=True)
        try:
            source = con.execute("SELECT current_database()").fetchone()[0]
            con.execute(f"ATTACH '{_sql_str(partial)}' AS td_snapshot")
            try:
                con.execute(f'COPY FROM DATABASE "{source}" TO td_snapshot')
                hwm = int(hwm_of(con, "td_snapshot"))
            finally:
                con.execute("DETACH td_snapshot")
            with open(partial, "rb+") as fh:
                os.fsync(fh.fileno())
            digest = sha256_file(partial)
            size = partial.stat().st_size
            taken = int(time.time() * 1000)
            final = self.folder / f"{self.stem}.h{hwm:012d}.t{taken}.duckdb"
            os.replace(partial, final)
            fsync_dir(self.folder)
        except (duckdb.Error, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot of {self.db_path} into {self.folder} failed: "
                                f"{' '.join(str(exc).split())[:200]}") from None
        info = SnapshotInfo(final.name, digest, size, hwm, taken, round(time.perf_counter() - started, 6))
        self._record(info)
        return info

    def _record(self, info: SnapshotInfo) -> None:
        items = [info, *(s for s in self.entries() if s.file != info.file)]
        keep, drop = items[:self.kept], items[self.kept:]
        self._write_manifest(keep)
        for old in drop:                      # rotation of our own backups (DDB-2), never of damaged evidence
            self.path_of(old).unlink(missing_ok=True)
        listed = {s.file for s in keep}
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
        if size != info.bytes or digest.hexdigest() != info.sha256:
            tmp.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot {info.file} fails its sha256" if size == info.bytes else
                                f"snapshot {info.file} has {size} bytes, the manifest says {info.bytes}")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
