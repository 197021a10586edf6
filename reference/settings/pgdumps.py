"""``pg_dump`` backups of the credentials database: gzip, on a schedule (every 6 h), the newest 14 kept, and a
transaction-safe restore (PG-1; EA-BR 3.5 and 4.5).

A dump is ``pg_dump --format=plain`` (one consistent snapshot: pg_dump reads in a single repeatable-read
transaction) streamed through Python's ``gzip`` into ``<folder>/<db>-<UTC time>.sql.gz`` (0600; temp file, fsync,
rename, fsync of the folder: a dump is complete or absent). A dump counts only if pg_dump exited 0 and its text ends
with pg_dump's own "dump complete" trailer; a restore checks both the gzip stream and that trailer before anything
is committed.

A restore loads the dump into a staging database ``<db>__restore`` with ``psql --single-transaction -v
ON_ERROR_STOP=1``, and only when that committed drops the old database and renames the staging one into its place:
a restore that fails (damaged dump, error in the SQL, deadline) leaves the old database as it was. The window between
the drop and the rename is two catalog statements; interrupted there, the restored data waits in ``<db>__restore``.
:meth:`PgDumps.restore_latest` uses the newest dump that is intact, and says which damaged ones it skipped (EA-BR
4.5: "use latest full backup"; pg_dump has no incremental dumps).

Passwords: the tools get the same libpq connection string as the application, which names a ``passfile``; no
password ever goes on a command line or into the environment. Dumps hold the broker logins only as ciphertext
(``reference.settings.logins``); the key is never in the database, so never in a dump.

Why our own: pg_dump and psql are the tools the document names; pgBackRest and Barman take physical backups of a
whole cluster, which the document does not ask for. This module only drives the two tools and keeps the files.
"""
from __future__ import annotations

import collections
import datetime as _dt
import glob
import gzip
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import durable
from .errors import BackupError
from .policy import DumpPolicy

log = logging.getLogger("reference.settings")

CHUNK = 1 << 20
TRAILER = b"-- PostgreSQL database dump complete"
STAGING_SUFFIX = "__restore"
_STAMP = "%Y%m%dT%H%M%S%fZ"


class DamagedDump(BackupError):
    """A dump file is truncated, not gzip, or lacks pg_dump's trailer; nothing was restored from it."""


def find_tool(name: str, bindir: Path | str | None = None) -> str:
    """The path of PostgreSQL's ``name`` (pg_dump, psql): in ``bindir`` when given, else the newest
    ``/usr/lib/postgresql/<version>/bin`` (pg_dump must be at least the server's version), else ``PATH``."""
    if bindir:
        path = Path(bindir) / name
        if not path.exists():
            raise BackupError(f"{name} is not in {bindir}")
        return str(path)
    found = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    versions = [(int(m.group(1)), p) for p in found if (m := re.search(r"/postgresql/([0-9]+)/bin/", p))]
    if versions:
        return max(versions)[1]
    which = shutil.which(name)
    if not which:
        raise BackupError(f"{name} is not installed: run `apt-get install -y postgresql-client`")
    return which


def _conninfo(dsn: str, **changes) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, **changes)


def _dbname(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(dsn).get("dbname")
    if not name:
        raise BackupError("the connection string names no database (dbname=...)")
    return str(name)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _last_line(path_or_file) -> str:
    path_or_file.seek(0)
    lines = [ln.strip() for ln in path_or_file.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


@dataclass(frozen=True)
class Dump:
    path: Path
    bytes: int          # size of the .sql.gz file
    seconds: float      # pg_dump start to file renamed into place


@dataclass(frozen=True)
class Restored:
    path: Path              # the dump that was restored
    seconds: float          # restore call to the database in place (staging made, loaded, swapped)
    load_seconds: float     # of which psql loading the dump
    skipped: tuple[str, ...] = ()   # restore_latest: one line per newer dump that was damaged


class PgDumps:
    """gzip ``pg_dump`` backups of the database named by ``dsn`` (a libpq string with ``dbname`` and a
    ``passfile``), kept in ``folder`` under ``policy`` (:class:`DumpPolicy`: every 6 h, 14 kept, PG-1).
    ``bindir``: where pg_dump and psql are (default: the newest installed PostgreSQL)."""

    def __init__(self, dsn: str, folder: Path | str, policy: DumpPolicy | None = None, *,
                 bindir: Path | str | None = None, clock: Callable[[], float] = time.time):
        self.dsn = dsn
        self.dbname = _dbname(dsn)
        self.folder = Path(folder)
        self.policy = policy or DumpPolicy()
        self.bindir = bindir
        self.clock = clock
        self._name = re.compile(rf"{re.escape(self.dbname)}-([0-9]{{8}}T[0-9]{{12}}Z)\.sql\.gz")

    # -- the files ------------------------------------------------------------------------------------------
    def dumps(self) -> list[Path]:
        """The dump files, newest first."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        return [self.folder / n for n in sorted((n for n in names if self._name.fullmatch(n)), reverse=True)]

    def taken_at(self, path: Path) -> float:
        """When a dump was taken (Unix seconds, from its name)."""
        stamp = self._name.fullmatch(Path(path).name).group(1)
        return _dt.datetime.strptime(stamp, _STAMP).replace(tzinfo=_dt.timezone.utc).timestamp()

    def seconds_until_due(self, now: float | None = None) -> float:
        """Seconds until the next scheduled dump (0 when one is due: no dump yet, or the newest is older than
        ``interval_s``)."""
        newest = self.dumps()
        if not newest:
            return 0.0
        now = self.clock() if now is None else now
        return max(0.0, self.taken_at(newest[0]) + self.policy.interval_s - now)

    def prune(self) -> list[Path]:
        """Delete the dumps beyond the newest ``dumps_kept``; returns them."""
        old = self.dumps()[self.policy.dumps_kept:]
        for path in old:
            path.unlink(missing_ok=True)
        if old:
            durable.fsync_dir(self.folder)
        return old

    # -- dump -----------------------------------------------------------------------------------------------
    def dump(self) -> Dump:
        """Take one dump now (PG-1), then prune. Raises BackupError naming what pg_dump said; no partial file is
        ever left under a dump's name."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        started = time.monotonic()
        stamp = _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc).strftime(_STAMP)
        target = self.folder / f"{self.dbname}-{stamp}.sql.gz"
        tmp = durable.temp_name(target)
        argv = [find_tool("pg_dump", self.bindir), f"--dbname={self.dsn}", "--no-password", "--format=plain"]
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
            deadline = threading.Timer(self.policy.dump_timeout_s, proc.kill)  # our own child, by its handle
            deadline.start()
            tail = b""
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with open(fd, "wb") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=self.policy.gzip_level) as gz:
                        while chunk := proc.stdout.read(CHUNK):
                            gz.write(chunk)
                            tail = (tail + chunk)[-4096:]
                    raw.flush()
                    os.fsync(raw.fileno())
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                tmp.unlink(missing_ok=True)
                raise
            finally:
                deadline.cancel()
                proc.stdout.close()
            if code != 0 or TRAILER not in tail:
                tmp.unlink(missing_ok=True)
                why = (f"was stopped after {self.policy.dump_timeout_s:g} s" if code == -9
                       else f"failed (exit {code}): {_last_line(errors)}" if code
                       else "ended without its 'dump complete' trailer")
                raise BackupError(f"pg_dump of database {self.dbname} {why}")
        os.replace(tmp, target)
        durable.fsync_dir(self.folder)
        result = Dump(target, target.stat().st_size, time.monotonic() - started)
        self.prune()
        return result

    # -- restore --------------------------------------------------------------------------------------------
    def _admin(self):
        import psycopg

        return psycopg.connect(_conninfo(self.dsn, dbname="postgres"), autocommit=True)

    def restore(self, path: Path | str | None = None) -> Restored:
        """Restore ``path`` (default: the newest dump) as the database, transaction-safe (see the module
        docstring). Raises DamagedDump when the file is truncated, not gzip or incomplete, BackupError when psql
        or the database refuses; either way the existing database is untouched."""
        import psycopg

        if path is None:
            found = self.dumps()
            if not found:
                raise BackupError(f"there is no dump of database {self.dbname} in {self.folder}")
            path = found[0]
        path = Path(path)
        started = time.monotonic()
        staging = self.dbname + STAGING_SUFFIX
        try:
            with self._admin() as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(staging)} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {_quote_ident(staging)}")
        except psycopg.Error as exc:
            raise BackupError(f"cannot prepare the restore of {path.name}: {str(exc).strip().splitlines()[0]}") \
                from None
        try:
            load_started = time.monotonic()
            self._load(path, staging)
            load_seconds = time.monotonic() - load_started
            with self._admin() as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(self.dbname)} WITH (FORCE)")
                admin.execute(f"ALTER DATABASE {_quote_ident(staging)} RENAME TO {_quote_ident(self.dbname)}")
        except BaseException as exc:
            try:
                with self._admin() as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {_quote_ident(staging)} WITH (FORCE)")
            except psycopg.Error:
                pass
            if isinstance(exc, psycopg.Error):
                raise BackupError(f"restore of {path.name} failed: {str(exc).strip().splitlines()[0]}") from None
            raise
        return Restored(path, time.monotonic() - started, load_seconds)

    def _load(self, path: Path, database: str) -> None:
        """Feed the gunzipped dump to psql in one transaction; psql commits only after the whole file was read
        and its trailer seen (a damaged file kills psql first: nothing is committed)."""
        argv = [find_tool("psql", self.bindir), f"--dbname={_conninfo(self.dsn, dbname=database)}", "--no-password",
                "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1", "--file=-"]
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            deadline = threading.Timer(self.policy.restore_timeout_s, proc.kill)
            deadline.start()
            tail = b""
            try:
                try:
                    with gzip.open(path, "rb") as gz:
                        while chunk := gz.read(CHUNK):
                            proc.stdin.write(chunk)
                            tail = (tail + chunk)[-4096:]
                except (OSError, EOFError, zlib.error) as exc:
                    if isinstance(exc, BrokenPipeError):
                        raise
                    raise DamagedDump(f"dump {path.name} is damaged ({type(exc).__name__}: {exc}); nothing "
                                      f"restored from it") from None
                if TRAILER not in tail:
                    raise DamagedDump(f"dump {path.name} is incomplete (no 'dump complete' trailer); nothing "
                                      f"restored from it")
                proc.stdin.close()
                code = proc.wait()
            except BrokenPipeError:
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                deadline.cancel()
            if code != 0:
                why = (f"was stopped after {self.policy.restore_timeout_s:g} s" if code == -9
                       else f"failed (exit {code}): {_last_line(errors)}")
                raise BackupError(f"psql restoring {path.name} {why}")

    def restore_latest(self) -> Restored:
        """Restore the newest intact dump; damaged newer ones are skipped and named in ``Restored.skipped``."""
        skipped = []
        for path in self.dumps():
            try:
                done = self.restore(path)
            except DamagedDump as exc:
                skipped.append(str(exc))
                continue
            return Restored(done.path, done.seconds, done.load_seconds, tuple(skipped))
        raise BackupError(f"no intact dump of database {self.dbname} in {self.folder}"
                          + (f": {'; '.join(skipped)}" if skipped else ""))


class DumpSchedule:
    """Takes a dump whenever one is due (:meth:`PgDumps.seconds_until_due`: every ``interval_s``, counted from the
    newest dump on disk, so a restart does not reset the clock); a failed dump is said in one line (``on_error``,
    default a warning) and tried again after ``retry_s``. A context manager: leaving it stops the thread."""

    def __init__(self, dumps: PgDumps, on_error: Callable[[str], None] | None = None):
        self.dumps = dumps
        self.on_error = on_error or log.warning
        self.taken: collections.deque[Dump] = collections.deque(maxlen=64)   # the latest dumps it took
        self.count = 0          # dumps taken since start
        self.failures = 0       # dumps that failed since start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pg-dumps-{dumps.dbname}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.dumps.seconds_until_due()):  # the schedule's timer, woken early by stop()
            try:
                self.taken.append(self.dumps.dump())
                self.count += 1
            except (BackupError, OSError) as exc:
                self.failures += 1
                self.on_error(f"scheduled pg_dump failed, next try in {self.dumps.policy.retry_s:g} s: {exc}")
                if self._stop.wait(self.dumps.policy.retry_s):
                    return

    def start(self) -> "DumpSchedule":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the schedule; a dump under way finishes first (at most ``timeout`` s is waited for it)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "DumpSchedule":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
