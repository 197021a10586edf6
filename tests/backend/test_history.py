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
