"""The client-simulator protocol through the project's TCP fault proxy (Toxiproxy API): sliced frames still
parse, a blackholed link is an IPC timeout, a link that is down is 'No IPC connection', and healing recovers."""
from __future__ import annotations

import httpx
import pytest

from reference.mt5.simclient import SimulatorTerminal
from tests.mt5.conftest import HEDGING
from tradedrill.waiting import wait_until

proxy_server = pytest.importorskip("faults.proxy")


@pytest.fixture
def linked(make_sim):
    node = make_sim(host="127.0.3.5")
    with proxy_server.EmbeddedToxiproxy(listen="127.0.3.6:0") as srv:
        with httpx.Client(base_url=srv.url, timeout=5.0) as api:
            created = api.post("/proxies", json={"name": "broker", "listen": "127.0.3.6:0",
                                                 "upstream": f"{node.address}:{node.port}"})
            assert created.status_code == 201, created.text
            host, port = created.json()["listen"].rsplit(":", 1)
            mt5 = SimulatorTerminal(host, int(port), call_timeout=0.5)
            try:
                yield mt5, api
            finally:
                mt5.shutdown()


def _buy(mt5, comment):
    return mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.01,
                           "type": mt5.ORDER_TYPE_BUY, "magic": 5, "comment": comment})


def test_protocol_survives_the_proxy_and_its_faults(linked):
    mt5, api = linked
    assert mt5.initialize(login=HEDGING)
    assert _buy(mt5, "plain").retcode == mt5.TRADE_RETCODE_DONE

    slicer = {"name": "slice", "type": "slicer", "stream": "downstream",
              "attributes": {"average_size": 7, "size_variation": 3, "delay": 100}}
    assert api.post("/proxies/broker/toxics", json=slicer).status_code == 200
    assert _buy(mt5, "sliced").retcode == mt5.TRADE_RETCODE_DONE
    assert len(mt5.symbol_info("EURUSD")) == 96
    api.delete("/proxies/broker/toxics/slice")

    blackhole = {"name": "hole", "type": "timeout", "stream": "downstream", "attributes": {"timeout": 0}}
    assert api.post("/proxies/broker/toxics", json=blackhole).status_code == 200
    assert mt5.account_info() is None
    assert mt5.last_error() == (-10005, "IPC timeout")
    api.delete("/proxies/broker/toxics/hole")
    assert wait_until(lambda: mt5.account_info(), 5.0, "the healed link to carry calls").login == HEDGING

    assert api.post("/proxies/broker", json={"enabled": False}).status_code == 200
    assert mt5.positions_total() is None
    # the proxy closes the open link as it is disabled: noticed before the write (-10004, nothing written), or, when
    # its close arrives after the request was written, a reply lost (-10002, fb5d39b); a drop without a close: -10005
    assert mt5.last_error() in ((-10004, "No IPC connection"), (-10002, "IPC receive failed"), (-10005, "IPC timeout"))
    assert api.post("/proxies/broker", json={"enabled": True}).status_code == 200
    assert wait_until(lambda: mt5.positions_total(), 5.0, "the re-enabled link to carry calls") >= 2
