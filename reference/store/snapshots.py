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
import re
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
        self._manifest_damage = ""  # the damaged manifest moved aside, until a new manifest is written

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
    def take(self, con: duckdb.DuckDBPyConnection, hwm_of: Callable[[duckdb.DuckDBPyConnection, str], int]
             ) -> SnapshotInfo:
        """Snapshot the database ``con`` is connected to (use a cursor of the live connection: it runs in its own
        transaction). ``hwm_of(con, catalog)`` reads the high-water mark of the copy (catalog ``"snap"``).
        Returns the new manifest entry; raises SnapshotError (the live database is untouched)."""
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
        try:
            for leftover in (partial, Path(str(partial) + ".wal")):
                leftover.unlink(missing_ok=True)
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


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
