"""Chart history through the real proxy while ClickHouse is frozen (TV-4, BE-2, issue 15): a ClickHouse that accepts
connections but does not answer (SIGSTOP) must be the backend's own clear answer (its DuckDB copy, or 503 "history is
unavailable"), not nginx giving up on the backend after its 300 ms read timeout (an HTML 504, and backend-a marked
down for fail_timeout by one chart request). The stack: ``--services redis,clickhouse,backend`` on the backend
tests' stack block (``TRADEDRILL_BACKEND_STACK_SUBNET``)."""
from __future__ import annotations

import shutil
import time

import httpx
import pytest

from tests.backend.conftest import STACK_BLOCK
from tradedrill.local import LocalStack
from tradedrill.topology import Topology

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if shutil.which("nginx") is None and not shutil.os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (bash run.sh setup)")
    if shutil.which("clickhouse-server") is None and shutil.which("clickhouse") is None:
        pytest.skip("clickhouse-server is not installed")
    base = tmp_path_factory.mktemp("history-proxy")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRADEDRILL_STATE_DIR", str(base / "state"))
    topo = Topology.default(subnet=STACK_BLOCK, services=("redis", "clickhouse", "backend"),
                            overrides={"backend.port": 18610, "backend.proxy_port": 18690,
                                       "clickhouse.tcp_port": 18592, "clickhouse.http_port": 18593})
    s = LocalStack(topo, base / "stack")
    try:
        s.up()
        yield s
    finally:
        s.down()
        mp.undo()


def test_a_frozen_clickhouse_is_the_backends_clear_answer_not_the_proxys_504(stack):
    proxy = stack.topology.node("proxy")
    now = int(time.time())
    query = {"symbol": "EURUSD", "resolution": "1", "from": now - 3600, "to": now + 60}
    clickhouse = stack.node("clickhouse")
    with httpx.Client(base_url=f"http://{proxy.address}:{proxy.port}", timeout=10.0) as c:
        assert c.get("/history", params=query).json()["s"] in ("ok", "no_data")
        clickhouse.pause()
        try:
            chart = [c.get("/history", params=query) for _ in range(3)]
            trades = c.get("/trades", params={"symbol": "EURUSD"})
            served_by = c.get("/health").json()["instance"]
        finally:
            clickhouse.resume()
    for got in chart:
        doc = got.json()   # JSON, from the backend
        assert (got.status_code == 200 and doc["source"] == "duckdb") or \
            (got.status_code == 503 and "history is unavailable" in doc["errmsg"]), (got.status_code, got.text[:200])
    assert trades.status_code == 503 and "history is unavailable" in trades.json()["error"], trades.text[:200]
    # no chart request made nginx take backend-a out of service
    assert served_by == "backend-a"
