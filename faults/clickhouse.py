"""ClickHouse loses trade rows while the server stays up (CH-2; issue 13): what a backfill from DuckDB must put back.

An outage (``process-kill`` of the clickhouse node) keeps the tables: the server comes back with every row. This
fault deletes rows instead, in one of two ways (``mode``):

- ``truncate``: ``TRUNCATE TABLE`` (every row of the outcome table; an operator's mistake, a replica rebuilt empty);
- ``day``: ``ALTER TABLE ... DELETE`` of the newest UTC day's rows (a dropped day's partition: the outcome table is
  not partitioned on purpose, see ``reference.store.clickhouse_sync``), waited for until the mutation is done.

The trade keys that were there before and are gone after are recorded (``details``: ``lost_keys``, at most
:data:`MAX_KEYS` of them, and their count); the checker times their return by the ``synced_ms`` the engines write
into each row they send against this inject's ``wall_ts`` (both the host's clock). Heal changes nothing (a
deletion cannot be undone); it records how many of the lost keys were back by then and the newest ``synced_ms``
among them (the backfill's end, before a later loss can delete the same rows again).
"""
from __future__ import annotations

from typing import Any, Callable

from faults.core import Fault, FaultError
from tradedrill.waiting import DeadlineExceeded, wait_until

MODES = ("truncate", "day")
MAX_KEYS = 5000
MUTATION_TIMEOUT_S = 20.0


class ClickHouseDataLost(Fault):
    """Delete the outcome rows of ``table`` through ``client()`` (a clickhouse-connect client factory)."""

    name = "clickhouse-data-lost"

    def __init__(self, client: Callable[[], Any], table: str, *, mode: str = "truncate", node: str = "clickhouse",
                 **kw):
        super().__init__(**kw)
        if mode not in MODES:
            raise FaultError(f"clickhouse-data-lost mode {mode!r}: use one of {', '.join(MODES)}")
        if not table.replace("_", "").isalnum():
            raise FaultError(f"clickhouse-data-lost: table name {table!r} is not a plain identifier")
        self.client, self.table, self.mode, self.node = client, table, mode, node
        self.lost: list[str] = []
        self.rows_before: int | None = None
        self.rows_after: int | None = None
        self.day: int | None = None
        self.back_at_heal: int | None = None
        self.back_synced_ms_max: int | None = None

    def _keys(self, c, where: str = "") -> set[str]:
        return {str(r[0]) for r in c.query(f"SELECT trade_key FROM {self.table} FINAL {where}").result_rows}

    def _inject(self) -> None:
        c = self.client()
        try:
            if self.mode == "truncate":
                before = self._keys(c)
                c.command(f"TRUNCATE TABLE {self.table}")
                after = self._keys(c)
            else:
                day = c.query(f"SELECT max(intDiv(final_ms, 86400000)) FROM {self.table}").result_rows[0][0]
                self.day = int(day or 0)
                where = f"WHERE intDiv(final_ms, 86400000) = {self.day}"
                before = self._keys(c, where)
                c.command(f"ALTER TABLE {self.table} DELETE {where}")
                try:
                    wait_until(lambda: int(c.query(
                        f"SELECT count() FROM system.mutations WHERE table = '{self.table}' AND is_done = 0"
                    ).result_rows[0][0]) == 0, MUTATION_TIMEOUT_S,
                        f"the DELETE mutation of {self.table} to finish")
                except DeadlineExceeded as exc:
                    raise FaultError(str(exc)) from None
                after = self._keys(c, where)
            self.rows_before, self.rows_after = len(before), len(after)
            self.lost = sorted(before - after)
        finally:
            c.close()

    def _heal(self) -> None:
        if not self.lost:
            self.back_at_heal = 0
            return
        c = self.client()
        try:
            lost = set(self.lost)
            back = [int(r[1]) for r in c.query(f"SELECT trade_key, synced_ms FROM {self.table} FINAL").result_rows
                    if str(r[0]) in lost]
        finally:
            c.close()
        # the newest send of a lost row that is back: the end of the backfill, timed before a later loss can
        # delete the same rows again
        self.back_at_heal, self.back_synced_ms_max = len(back), (max(back) if back else None)

    def describe(self) -> str:
        what = "TRUNCATE TABLE" if self.mode == "truncate" else "ALTER TABLE DELETE of the newest UTC day"
        return f"{self.node}: {what} {self.table} (rows lost while trades flow)"

    def details(self) -> dict[str, Any]:
        return {"node": self.node, "table": self.table, "mode": self.mode, "day": self.day,
                "rows_before": self.rows_before, "rows_after": self.rows_after, "lost": len(self.lost),
                "lost_keys": self.lost[:MAX_KEYS], "back_at_heal": self.back_at_heal,
                "back_synced_ms_max": self.back_synced_ms_max}
