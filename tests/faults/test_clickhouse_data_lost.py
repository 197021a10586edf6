"""faults.clickhouse.ClickHouseDataLost against a stand-in client: which rows it deleted, and what was back at heal."""
from __future__ import annotations

import pytest

from faults.clickhouse import ClickHouseDataLost
from faults.core import FaultError


class Result:
    def __init__(self, rows):
        self.result_rows = rows


class FakeClickHouse:
    """One table of (trade_key, final_ms, synced_ms); TRUNCATE and DELETE of a day act on it at once."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.commands: list[str] = []

    def query(self, sql, parameters=None):
        if sql.startswith("SELECT max(intDiv"):
            return Result([(max(r[1] // 86_400_000 for r in self.rows),)])
        if "system.mutations" in sql:
            return Result([(0,)])
        if sql.startswith("SELECT trade_key, synced_ms"):
            return Result([(r[0], r[2]) for r in self.rows])
        if sql.startswith("SELECT trade_key"):
            day = int(sql.rsplit("=", 1)[1]) if "WHERE" in sql else None
            return Result([(r[0],) for r in self.rows if day is None or r[1] // 86_400_000 == day])
        raise AssertionError(sql)

    def command(self, sql):
        self.commands.append(sql)
        if sql.startswith("TRUNCATE"):
            self.rows = []
        elif sql.startswith("ALTER TABLE"):
            day = int(sql.rsplit("=", 1)[1])
            self.rows = [r for r in self.rows if r[1] // 86_400_000 != day]

    def close(self):
        pass


DAY = 86_400_000


def test_truncate_records_every_lost_key_and_the_heal_counts_them_back():
    ch = FakeClickHouse([("o/p/1", 5 * DAY + 1, 1), ("s/x", 5 * DAY + 2, 2)])
    fault = ClickHouseDataLost(lambda: ch, "trade_outcomes", mode="truncate")
    fault.inject()
    assert ch.commands == ["TRUNCATE TABLE trade_outcomes"]
    assert fault.details()["lost_keys"] == ["o/p/1", "s/x"] and fault.details()["rows_after"] == 0
    ch.rows = [("o/p/1", 5 * DAY + 1, 900)]   # the backfill put one back
    fault.heal()
    assert fault.details()["back_at_heal"] == 1 and fault.details()["back_synced_ms_max"] == 900


def test_day_mode_deletes_only_the_newest_day():
    ch = FakeClickHouse([("o/p/1", 4 * DAY + 1, 1), ("o/p/2", 5 * DAY + 1, 2)])
    fault = ClickHouseDataLost(lambda: ch, "trade_outcomes", mode="day")
    fault.inject()
    assert fault.details()["lost_keys"] == ["o/p/2"] and fault.details()["day"] == 5
    assert [r[0] for r in ch.rows] == ["o/p/1"]
    fault.heal()


def test_a_bad_mode_or_table_is_refused():
    with pytest.raises(FaultError, match="mode 'all'"):
        ClickHouseDataLost(lambda: None, "t", mode="all")
    with pytest.raises(FaultError, match="plain identifier"):
        ClickHouseDataLost(lambda: None, "t; DROP TABLE x")
