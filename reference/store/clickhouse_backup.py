"""Backups of the ClickHouse outcome table: ZSTD level 3, full every 12 h, incremental every 1 h, 7 days kept, in
``backup/clickhouse/`` (CH-3; issue 13), and their restore.

Debian's ClickHouse 18.16 has no ``BACKUP`` command, so a backup is the table's rows in ClickHouse's own
``Native`` format, streamed over HTTP (``SELECT ... FORMAT Native``) straight into a ZSTD compressor, and a
restore streams the files back with ``INSERT ... FORMAT Native``. Native keeps every type exactly (NaN floats,
binary strings); ``ALTER TABLE FREEZE`` was not used because its hard links live inside the server's data folder,
which the engine may not be able to read (the server runs as its own account) and may be on another host.

- A full backup holds the table ``FINAL`` (one row per trade).
- An incremental holds the rows sent (``synced_ms``) since the previous backup's start minus :data:`OVERLAP_MS`
  (an INSERT that was in flight while the previous backup ran is not lost; the rows it repeats collapse in the
  ReplacingMergeTree like any resend).
- ``manifest.json`` (written atomically) lists every file with its kind, base full, time window, rows, size and
  sha256; a restore verifies each file's sha256 first and names the file that does not match.
- Retention: files older than ``keep_days`` go, except the full and the incrementals a kept incremental needs.

Compression: the ``zstandard`` package is not installed in this project. ``backports.zstd`` is (the pinned
clickhouse-connect 1.6.0 requires it; it is CPython 3.14's ``compression.zstd`` for older Pythons), so backups are
compressed in process, streaming, at the configured level; when it cannot be imported the ``zstd`` command line
tool (Debian's ``zstd`` package) is used instead. Both write standard ``.zst`` frames that either can read.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from reference.store.clickhouse_sync import ClickHouseError, ClickHouseTarget

OVERLAP_MS = 60_000          # incremental window overlap: longer than any one INSERT may take (timeout 5 s)
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup or restore failed; the message is one line naming the file or the server and what to do."""


@dataclass(frozen=True)
class BackupSettings:
    """``folder``: where backups go; ``full_s``/``incremental_s``: CH-3's 12 h / 1 h; ``keep_days``: CH-3's 7;
    ``level``: ZSTD level (CH-3: 3). Raises ValueError naming the key."""

    folder: str
    full_s: float = 43200.0         # CH-3
    incremental_s: float = 3600.0   # CH-3
    keep_days: float = 7.0          # CH-3
    level: int = 3                  # CH-3

    def __post_init__(self) -> None:
        if not self.full_s > 0 or not self.incremental_s > 0 or self.incremental_s > self.full_s:
            raise ValueError("clickhouse_backup_full_s and clickhouse_backup_incremental_s must be positive, the "
                             "incremental interval no longer than the full one (CH-3: 43200 and 3600)")
        if not self.keep_days > 0:
            raise ValueError(f"clickhouse_backup_keep_days = {self.keep_days}: must be positive (CH-3: 7)")
        if not 1 <= self.level <= 22:
            raise ValueError(f"clickhouse_backup_zstd_level = {self.level}: ZSTD levels are 1 to 22 (CH-3: 3)")

    @classmethod
    def from_engine(cls, cfg: Any) -> "BackupSettings | None":
        """From an EngineConfig (None when ``clickhouse_backup_dir`` is "off")."""
        if cfg.clickhouse_backup_dir == "off":
            return None
        folder = cfg.clickhouse_backup_dir or str(Path(cfg.state_dir) / "backup" / "clickhouse")
        return cls(folder, cfg.clickhouse_backup_full_s, cfg.clickhouse_backup_incremental_s,
                   cfg.clickhouse_backup_keep_days, cfg.clickhouse_backup_zstd_level)


@dataclass
class BackupInfo:
    """One backup file: ``file`` (name in the folder), ``kind`` (full | incremental), ``base`` (the full it
    extends; itself for a full), ``since_ms``/``until_ms`` (epoch ms window of ``synced_ms``; 0 = from the start),
    ``taken_ms``, ``rows``, ``bytes`` (compressed), ``raw_bytes``, ``sha256`` (of the compressed file),
    ``codec``, ``level``, ``seconds``."""

    file: str
    kind: str
    base: str
    since_ms: int
    until_ms: int
    taken_ms: int
    rows: int
    bytes: int
    raw_bytes: int
    sha256: str
    codec: str
    level: int
    seconds: float


# --- compression -------------------------------------------------------------------------------------------------
def codec_name() -> str:
    """"backports.zstd" when importable, else "zstd-cli" when the ``zstd`` tool is on PATH. Raises BackupError."""
    try:
        from backports import zstd  # noqa: F401
        return "backports.zstd"
    except ImportError:
        if shutil.which("zstd"):
            return "zstd-cli"
    raise BackupError("no ZSTD compressor: install backports.zstd (pip) or the zstd tool (apt-get install zstd)")


def compress_stream(chunks: Iterator[bytes], dest: Path, level: int, codec: str) -> int:
    """Write ``chunks`` to ``dest`` ZSTD-compressed at ``level``; returns the uncompressed size."""
    raw = 0
    if codec == "backports.zstd":
        from backports import zstd
        with zstd.open(dest, "wb", level=level) as out:
            for chunk in chunks:
                out.write(chunk)
                raw += len(chunk)
        return raw
    with open(dest, "wb") as out:
        proc = subprocess.Popen(["zstd", f"-{level}", "-q", "-c"], stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.PIPE)
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
                raw += len(chunk)
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                raise BackupError(f"zstd failed writing {dest}: {err}")
    return raw


def decompress_stream(src: Path, codec: str) -> Iterator[bytes]:
    """The uncompressed bytes of ``src`` in chunks."""
    if codec == "backports.zstd":
        from backports import zstd
        with zstd.open(src, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        return
    proc = subprocess.Popen(["zstd", "-d", "-q", "-c", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise BackupError(f"zstd could not read {src}: {err}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stream(body: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := body.read(CHUNK):
            yield chunk
    finally:
        body.close()


# --- backups -------------------------------------------------------------------------------------------------------
class ClickHouseBackups:
    """Backups of ``target``'s outcome table into ``settings.folder`` on CH-3's schedule (a daemon thread:
    :meth:`start`/:meth:`stop`; or :meth:`run_once`, :meth:`take`, :meth:`restore` directly). ``emit``/``alert``
    report; ``codec``: "backports.zstd" or "zstd-cli" (default: :func:`codec_name`)."""

    def __init__(self, target: ClickHouseTarget, settings: BackupSettings, *,
                 emit: Callable[..., None] = lambda *a, **k: None, alert: Callable[..., None] = lambda *a, **k: None,
                 codec: str | None = None, tick_s: float = 30.0):
        self.target = target
        self.settings = settings
        self.folder = Path(settings.folder)
        self.manifest_path = self.folder / "manifest.json"
        self.emit = emit
        self.alert = alert
        self.codec = codec or codec_name()
        self.tick_s = tick_s
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- manifest -------------------------------------------------------------------------------------------------
    def entries(self) -> list[BackupInfo]:
        """Every backup in the manifest, oldest first (an unreadable manifest reads as none: the next backup is a
        full one)."""
        try:
            doc = json.loads(self.manifest_path.read_text())
            return [BackupInfo(**e) for e in doc.get("backups", [])]
        except (OSError, ValueError, TypeError):
            return []

    def _write_manifest(self, entries: list[BackupInfo]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"table": self.target.table, "backups": [asdict(e) for e in entries]}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.manifest_path)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- schedule ---------------------------------------------------------------------------------------------------
    def due(self, now_ms: int) -> str | None:
        """"full" when no full backup is younger than ``full_s``, "incremental" when no backup is younger than
        ``incremental_s``, else None."""
        entries = self.entries()
        fulls = [e for e in entries if e.kind == "full"]
        if not fulls or now_ms - fulls[-1].taken_ms >= self.settings.full_s * 1000:
            return "full"
        if now_ms - entries[-1].taken_ms >= self.settings.incremental_s * 1000:
            return "incremental"
        return None

    def start(self) -> "ClickHouseBackups":
        # what this process runs with (CH-3's schedule is configuration: a check reads it here, not from a document)
        self.emit("clickhouse_backup_settings", folder=str(self.folder), full_s=self.settings.full_s,
                  incremental_s=self.settings.incremental_s, keep_days=self.settings.keep_days,
                  level=self.settings.level, codec=self.codec, tick_s=self.tick_s)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clickhouse-backup", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.target.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the thread outlives any one failure; it reports it
                self.emit("clickhouse_backup_error", error=" ".join(str(exc).split())[:300])
            self._stop.wait(self.tick_s)

    def run_once(self, now_ms: int | None = None) -> BackupInfo | None:
        """Take the backup that is due (if any) and prune; one alert per failing streak."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        kind = self.due(now_ms)
        if kind is None:
            return None
        try:
            info = self.take(kind, now_ms)
        except (BackupError, ClickHouseError, OSError) as exc:
            self.emit("clickhouse_backup_failed", kind=kind, error=str(exc))
            if not self._failing:
                self.alert("clickhouse_backup_failed", f"ClickHouse {kind} backup into {self.folder} failed: {exc} "
                           f"(CH-3); retried every {self.tick_s:g} s", target="clickhouse")
            self._failing = True
            return None
        self._failing = False
        self.prune(now_ms)
        return info

    # --- take / prune / restore -------------------------------------------------------------------------------------
    def take(self, kind: str = "full", now_ms: int | None = None) -> BackupInfo:
        """Take a ``kind`` ("full" | "incremental") backup now; an incremental without a full is a full. Returns
        its entry (also in the manifest). Raises BackupError / ClickHouseError."""
        if kind not in ("full", "incremental"):
            raise BackupError(f"backup kind {kind!r}: use full or incremental")
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        started = time.perf_counter()
        entries = self.entries()
        fulls = [e for e in entries if e.kind == "full"]
        if kind == "incremental" and not fulls:
            kind = "full"
        self.folder.mkdir(parents=True, exist_ok=True)
        table = self.target.table
        if kind == "full":
            since, base = 0, None
            sql = f"SELECT * FROM {table} FINAL FORMAT Native"
        else:
            since, base = max(0, entries[-1].until_ms - OVERLAP_MS), fulls[-1].file
            sql = f"SELECT * FROM {table} WHERE synced_ms > {int(since)} FORMAT Native"
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ms / 1000)) + f".{now_ms % 1000:03d}Z"
        name = f"{table}-{stamp}-{kind}.native.zst"
        dest = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        self.target.ensure_table()
        rows_sql = (f"SELECT count() FROM {table} FINAL" if kind == "full"
                    else f"SELECT count() FROM {table} WHERE synced_ms > {int(since)}")
        try:
            body = self.target._call("backup SELECT", lambda c: c.raw_stream(sql))
            raw = compress_stream(_stream(body), tmp, self.settings.level, self.codec)
            rows = int(self.target.query(rows_sql)[0][0])   # an estimate when inserts run meanwhile
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        info = BackupInfo(file=name, kind=kind, base=base or name, since_ms=since, until_ms=now_ms, taken_ms=now_ms,
                          rows=rows, bytes=dest.stat().st_size, raw_bytes=raw, sha256=_sha256(dest),
                          codec=self.codec, level=self.settings.level,
                          seconds=round(time.perf_counter() - started, 3))
        self._write_manifest([*entries, info])
        self.emit("clickhouse_backup", **{k: v for k, v in asdict(info).items() if k != "sha256"})
        return info

    def prune(self, now_ms: int) -> list[str]:
        """Delete backups older than ``keep_days`` that no kept incremental needs; returns the deleted names."""
        entries = self.entries()
        cutoff = now_ms - self.settings.keep_days * 86_400_000
        keep = {e.file for e in entries if e.taken_ms >= cutoff}
        if entries:
            keep.add(entries[-1].file)
        for e in entries:
            if e.file in keep and e.kind == "incremental":   # its chain: the base and the incrementals before it
                keep.update(x.file for x in entries if x.file == e.base or
                            (x.base == e.base and x.taken_ms <= e.taken_ms))
        gone = [e.file for e in entries if e.file not in keep]
        if gone:
            self._write_manifest([e for e in entries if e.file in keep])
            for name in gone:
                (self.folder / name).unlink(missing_ok=True)
            self.emit("clickhouse_backup_pruned", files=gone)
        return gone

    def chain(self, upto_ms: int | None = None) -> list[BackupInfo]:
        """The files a restore to ``upto_ms`` (default: the newest) reads: the newest full taken by then and its
        incrementals taken by then, in order."""
        entries = [e for e in self.entries() if upto_ms is None or e.taken_ms <= upto_ms]
        fulls = [e for e in entries if e.kind == "full"]
        if not fulls:
            return []
        base = fulls[-1]
        return [base, *[e for e in entries if e.kind == "incremental" and e.base == base.file
                        and e.taken_ms >= base.taken_ms]]

    def restore(self, upto_ms: int | None = None, table: str | None = None) -> dict:
        """Insert the backup chain (:meth:`chain`) into ``table`` (default: the outcome table, created when
        missing); rows already there collapse with them (ReplacingMergeTree). Every file's sha256 is checked
        before anything is inserted. Returns ``{"files": [...], "rows_inserted": n, "seconds": s}``. Raises
        BackupError naming the file (missing, checksum mismatch, unreadable) or ClickHouseError."""
        started = time.perf_counter()
        chain = self.chain(upto_ms)
        if not chain:
            raise BackupError(f"no full backup in {self.folder}" + (" taken by then" if upto_ms else "")
                              + ": nothing to restore; take one with ClickHouseBackups.take('full')")
        for e in chain:
            path = self.folder / e.file
            if not path.exists():
                raise BackupError(f"backup {path} is missing (listed in {self.manifest_path}); restore an earlier "
                                  f"point with upto_ms, or copy the file back")
            if _sha256(path) != e.sha256:
                raise BackupError(f"backup {path} does not match its sha256 in {self.manifest_path} (damaged); "
                                  f"restore an earlier point with upto_ms")
        table = table or self.target.table
        if table == self.target.table:
            self.target.ensure_table(check=True)   # it may have been dropped since this client last looked
        inserted = 0
        for e in chain:
            self.target._call(f"restore of {e.file}", lambda c, e=e: c.raw_insert(
                table, None, decompress_stream(self.folder / e.file, e.codec), fmt="Native"))
            inserted += e.rows
        out = {"files": [e.file for e in chain], "rows_inserted": inserted,
               "seconds": round(time.perf_counter() - started, 3)}
        self.emit("clickhouse_restore", **out)
        return out
