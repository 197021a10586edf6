"""PostgreSQL faults (issue 13, PG-1): the credentials database dumped, dropped and restored from its dump.

``DropAndRestore`` injects by taking a ``pg_dump`` (``reference.settings.pgdumps.PgDumps``) and then dropping the
database (``DROP DATABASE ... WITH (FORCE)``: every session of it is ended); the window is the time the database
does not exist. Its heal restores the newest intact dump (transaction-safe: staging database, then swap) and calls
``verify`` (the broker names whose logins decrypt again). The heal line of the fault log carries what was measured:
``restore_s`` (the restore call, PG-1's "restore under 5 s"), ``outage_s`` (drop to restored), the dump's size
and time, and ``logins_decrypted`` / ``verify_error``. A failed verification does not fail the heal (the database
is back); it is judged by the ``pg_restore`` checker.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from faults.core import Fault, FaultError


class DropAndRestore(Fault):
    name = "postgres-restore"

    def __init__(self, dumps: Any, verify: Callable[[], list[str]], *, expected: list[str] = (),
                 node: str = "postgres", **kw):
        super().__init__(**kw)
        self.dumps = dumps
        self.verify = verify
        self.node = node
        # logins_expected: the brokers whose logins must decrypt after the restore
        self._details: dict[str, Any] = {"database": dumps.dbname, "node": node,
                                         "logins_expected": sorted(expected)}

    def describe(self) -> str:
        return f"pg_dump, DROP DATABASE {self.dumps.dbname} on {self.node}; heal: restore the newest dump"

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _admin(self):
        import psycopg
        from psycopg.conninfo import make_conninfo

        return psycopg.connect(make_conninfo(self.dumps.dsn, dbname="postgres"), autocommit=True)

    def _inject(self) -> None:
        dump = self.dumps.dump()
        self._details.update(dump=dump.path.name, dump_bytes=dump.bytes, dump_s=round(dump.seconds, 6))
        name = self.dumps.dbname.replace('"', '""')
        try:
            with self._admin() as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - psycopg's errors: one line
            raise FaultError(f"cannot drop database {self.dumps.dbname}: {str(exc).strip().splitlines()[0]}") from None
        self._dropped = time.monotonic()
        self._details["dropped"] = True

    def _heal(self) -> None:
        if not self._details.get("dropped"):
            return   # the injection failed before the drop: nothing to restore
        restored = self.dumps.restore_latest()
        self._details.update(restored_from=restored.path.name, restore_s=round(restored.seconds, 6),
                             restore_load_s=round(restored.load_seconds, 6),
                             outage_s=round(time.monotonic() - self._dropped, 6),
                             skipped_dumps=list(restored.skipped))
        try:
            self._details["logins_decrypted"] = sorted(self.verify())
        except Exception as exc:  # noqa: BLE001 - judged by the checker, the database is back either way
            self._details["logins_decrypted"] = []
            self._details["verify_error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
