"""Chart history from a real ClickHouse (TV-4, BE-4): rows in the table the engines' sync writes
(``reference.store.clickhouse_sync``: its own ``ensure_table`` and ``insert``), read back by the backend as UDF bars
and trades; a stopped ClickHouse is a 503 that says history is unavailable, and the backend stays up. ClickHouse
at 127.0.85.20 (the backend tests' block)."""
from __future__ import annotations

import datetime as dt
import math
import shutil

import pytest

from reference.store.clickhouse_sync import COLUMN_NAMES, ClickHouseSettings, ClickHouseTarget
from tests.backend.conftest import BLOCK, address, make_config
from tradedrill.credentials import StackSecrets, write_private
from tradedrill.services import clickhouse as clickhouse_svc
from tradedrill.topology import Topology

pytestmark = pytest.mark.services
HOST = address(20)
TABLE = "trade_outcomes"


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    if shutil.which("clickhouse-server") is None and shutil.which("clickhouse") is None:
        pytest.skip("clickhouse-server is not installed")
    topo = Topology.default(subnet=BLOCK, services=("clickhouse",),
                            overrides={"clickhouse.tcp_port": 18590, "clickhouse.http_port": 18591})
    spec = topo.node("clickhouse")
    spec = type(spec)(spec.name, spec.kind, spec.role, HOST, spec.port, dict(spec.ports))
    run_dir = tmp_path_factory.mktemp("backend-clickhouse")
    node = clickhouse_svc.build_node(spec, topo, run_dir, None)
    cred = StackSecrets.ensure(run_dir).clickhouse()
    pw = run_dir / "clickhouse.password"
    write_private(pw, cred.password + "\n")
    try:
        node.start().wait_ready()
        yield node, f"http://{HOST}:{spec.ports['http']}", cred.username, str(pw)
    finally:
        node.stop()


def _row(signal_id: str, price: float, volume: float, final_ms: int, status: str = "executed") -> list:
    values = {"trade_key": f"s/{signal_id}", "signal_id": signal_id, "entry_id": "1-0", "instance": "A",
              "state": "DONE", "status": status, "code": "", "reason": "", "account": "5001", "symbol": "EURUSD",
              "side": "buy", "volume": volume, "price": price, "order_id": signal_id, "deal_id": signal_id,
              "comment": "", "broker": "mt5-primary", "attempts": 1,
              "final_at": dt.datetime.fromtimestamp(final_ms // 1000, dt.timezone.utc).replace(tzinfo=None),
              "final_ms": final_ms, "version": final_ms, "synced_ms": final_ms, "signal": "{}", "result": "{}"}
    return [values.get(c, "") for c in COLUMN_NAMES]


def test_history_bars_and_trades_from_clickhouse_then_unavailable_when_it_stops(tmp_path, redis_node, rdb,
                                                                                 clickhouse):
    from fastapi.testclient import TestClient

    from reference.backend.app import create_app

    node, url, user, pw = clickhouse
    target = ClickHouseTarget(ClickHouseSettings(url=url, username=user, password_file=pw, table=TABLE))
    target.ensure_table()
    t0 = 1_800_000_000_000   # a minute boundary (ms)
    target.insert([_row("s1", 1.10, 0.01, t0 + 1_000), _row("s2", 1.12, 0.02, t0 + 20_000),
                   _row("s3", 1.09, 0.01, t0 + 59_000), _row("s4", 1.20, 0.01, t0 + 61_000),
                   _row("s5", math.nan, 0.01, t0 + 62_000, status="rejected")])
    cfg = make_config(tmp_path, redis_node.port, clickhouse_url=url, clickhouse_username=user,
                      clickhouse_password_file=pw, clickhouse_table=TABLE)
    with TestClient(create_app(cfg)) as c:
        got = c.get("/history", params={"symbol": "EURUSD", "resolution": "1", "from": t0 // 1000,
                                        "to": t0 // 1000 + 3600}).json()
        assert got["s"] == "ok" and got["t"] == [t0 // 1000, t0 // 1000 + 60]
        assert got["o"] == [1.10, 1.20] and got["h"] == [1.12, 1.20] and got["l"] == [1.09, 1.20]
        assert got["c"] == [1.09, 1.20] and got["v"] == pytest.approx([0.04, 0.01])
        empty = c.get("/history", params={"symbol": "GBPUSD", "resolution": "1", "from": 0, "to": 10}).json()
        assert empty == {"s": "no_data"}
        trades = c.get("/trades", params={"symbol": "EURUSD", "limit": 2}).json()["trades"]
        assert [t["signal_id"] for t in trades] == ["s5", "s4"] and trades[0]["price"] is None
        node.stop()
        down = c.get("/history", params={"symbol": "EURUSD", "resolution": "1", "from": 0, "to": 10})
        assert down.status_code == 503 and "history is unavailable" in down.json()["errmsg"]
        assert open(pw).read().strip() not in down.text and c.get("/health").status_code == 200


def _result(signal_id: str, price: float, volume: float, ts_ms: int, status: str = "executed") -> dict:
    """An RTRS entry as the engine publishes it (``Engine._result_fields``)."""
    return {"signal_id": signal_id, "entry_id": "1-0", "status": status, "code": "", "reason": "", "account": "5001",
            "symbol": "EURUSD", "side": "buy", "volume": str(volume), "order": signal_id, "deal": signal_id,
            "price": str(price), "comment": "", "broker": "mt5-primary", "attempts": "1", "instance": "A",
            "token": "1", "ts_ms": str(ts_ms)}


def test_history_answers_from_the_backends_duckdb_copy_of_rtrs_while_clickhouse_is_down(tmp_path, redis_node, rdb,
                                                                                      clickhouse):
    """ClickHouse stopped: /history answers the same bars from the fills the backend read from RTRS into its DuckDB
    file, says so (source duckdb, the header, why ClickHouse did not answer), and a restarted backend resumes from
    its file (a result read twice is one fill)."""
    from fastapi.testclient import TestClient

    from reference.backend.app import create_app
    from tradedrill.waiting import wait_until

    node, url, user, pw = clickhouse
    if not node.is_alive():
        node.start().wait_ready()
    target = ClickHouseTarget(ClickHouseSettings(url=url, username=user, password_file=pw, table="trade_cache"))
    target.ensure_table()
    t0 = 1_800_000_000_000
    rows = [("s1", 1.10, 0.01, t0 + 1_000), ("s2", 1.12, 0.02, t0 + 20_000), ("s3", 1.09, 0.01, t0 + 59_000),
            ("s4", 1.20, 0.01, t0 + 61_000)]
    target.insert([_row(*r) for r in rows])
    for r in rows:
        rdb.xadd("RTRS", _result(*r))
    rdb.xadd("RTRS", _result("s5", 1.3, 0.01, t0 + 62_000, status="rejected"))
    rdb.xadd("RTRS", _result("s1", 1.10, 0.01, t0 + 1_000, status="duplicate"))
    cache = tmp_path / "backend" / "history.duckdb"
    cfg = make_config(tmp_path, redis_node.port, clickhouse_url=url, clickhouse_username=user,
                      clickhouse_password_file=pw, clickhouse_table="trade_cache", history_cache_path=str(cache))
    query = {"symbol": "EURUSD", "resolution": "1", "from": t0 // 1000, "to": t0 // 1000 + 3600}
    with TestClient(create_app(cfg)) as c:
        wait_until(lambda: c.get("/ready").json()["history_cache"]["last_id"] != "0-0", 10,
                   "the backend's copy to read RTRS")
        live = c.get("/history", params=query)
        assert live.headers["x-history-source"] == "clickhouse"
        node.stop()
        down = c.get("/history", params=query)
        assert down.status_code == 200 and down.headers["x-history-source"] == "duckdb"
        got = down.json()
        assert {k: got[k] for k in "sthlocv"} == live.json()   # the same bars as ClickHouse gave
        assert got["source"] == "duckdb" and got["partial"] is False and got["cache_complete_from_ms"] == 0
        assert "history is unavailable" in got["clickhouse"] and open(pw).read().strip() not in down.text
    rdb.xadd("RTRS", _result("s6", 1.25, 0.03, t0 + 125_000))
    with TestClient(create_app(cfg)) as c:   # a restarted backend: the same file, resumed after s1..s5
        wait_until(lambda: c.get("/history", params=query).json()["t"][-1] == t0 // 1000 + 120, 10,
                   "the restarted backend to read the new fill")
        got = c.get("/history", params=query).json()
        assert got["v"] == pytest.approx([0.04, 0.01, 0.03]) and got["o"] == [1.10, 1.20, 1.25]
    node.start().wait_ready()


def test_a_damaged_cache_file_is_kept_aside_and_a_new_one_is_read_from_rtrs(tmp_path, redis_node, rdb):
    """A history.duckdb that is not a database: kept as .damaged-<ms>, a new copy read from RTRS; no ClickHouse
    configured at all: the copy answers and says why ClickHouse did not."""
    from fastapi.testclient import TestClient

    from reference.backend.app import create_app
    from tradedrill.waiting import wait_until

    cache = tmp_path / "history.duckdb"
    cache.write_bytes(b"not a database" * 100)
    rdb.xadd("RTRS", _result("d1", 1.5, 0.02, 1_800_000_030_000))
    with TestClient(create_app(make_config(tmp_path, redis_node.port, history_cache_path=str(cache)))) as c:
        status = wait_until(lambda: (s := c.get("/ready").json()["history_cache"])["rows_read"] and s, 10,
                            "the new copy to read RTRS")
        assert status["moved_aside"] and open(status["moved_aside"], "rb").read().startswith(b"not a database")
        got = c.get("/history", params={"symbol": "EURUSD", "resolution": "1", "from": 1_800_000_000,
                                        "to": 1_800_000_100}).json()
        assert got["s"] == "ok" and got["source"] == "duckdb" and got["c"] == [1.5]
        assert "no ClickHouse configured" in got["clickhouse"]
