"""The simulator as a process: kill -9 mid-stream loses nothing it acknowledged; pause is an IPC timeout;
a dead simulator is 'No IPC connection' and the client reconnects by itself; two simulators are two brokers."""
from __future__ import annotations

import threading

from reference.mt5.simclient import SimulatorAdmin, SimulatorTerminal
from tests.mt5.conftest import HEDGING, NETTING
from tradedrill.services.mt5sim import admin_token
from tradedrill.waiting import wait_until


def _order(mt5, n: int, symbol: str = "EURUSD"):
    return mt5.order_send({"action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": 0.01,
                           "type": mt5.ORDER_TYPE_BUY if n % 2 else mt5.ORDER_TYPE_SELL, "magic": 77,
                           "comment": f"k9-{n}"})


def test_kill_9_during_a_stream_loses_no_acknowledged_order(make_sim):
    node = make_sim(seed=3)
    mt5 = SimulatorTerminal(node.address, node.port, call_timeout=1.0)
    assert mt5.initialize(login=NETTING)
    acknowledged: dict[str, int] = {}
    failures: list[tuple] = []

    def stream() -> None:
        for n in range(20_000):  # bounded; ends at the first failed call after the kill
            result = _order(mt5, n)
            if result is None:
                failures.append(mt5.last_error())
                return
            assert result.retcode == mt5.TRADE_RETCODE_DONE, result
            acknowledged[f"k9-{n}"] = result.order

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    try:
        wait_until(lambda: len(acknowledged) >= 300, 20.0, "300 acknowledged orders before the kill")
        node.kill()
    finally:
        sender.join(timeout=10.0)
    assert not sender.is_alive()
    # the order in flight at the kill: its reply lost after the write (-10002) or the timeout (-10005), or the kill
    # came between two calls and the next found the connection closed (-10004: nothing written)
    assert failures and failures[0][0] in (-10002, -10004, -10005)

    node.start().wait_ready()
    with SimulatorAdmin(node.address, node.port, token=admin_token(node)) as admin:
        executed = {d["comment"]: d["order"] for d in admin.ledger(login=NETTING) if d["magic"] == 77}
    missing = {c: t for c, t in acknowledged.items() if executed.get(c) != t}
    assert not missing, f"{len(missing)} acknowledged orders lost by kill -9, e.g. {list(missing.items())[:3]}"
    # at most the one in-flight order may have executed without an acknowledgement
    assert len(executed) - len(acknowledged) in (0, 1)
    # the same client reconnects on its next call, and the broker continues its ticket sequence
    after = _order(mt5, 10**6)
    assert after is not None and after.retcode == mt5.TRADE_RETCODE_DONE
    assert after.order > max(acknowledged.values())
    mt5.shutdown()


def test_pause_is_ipc_timeout_and_resume_recovers(make_sim):
    node = make_sim()
    mt5 = SimulatorTerminal(node.address, node.port, call_timeout=0.3)
    assert mt5.initialize(login=HEDGING)
    node.pause()
    try:
        assert mt5.positions_get() is None
        assert mt5.last_error() == (-10005, "IPC timeout")
    finally:
        node.resume()
    assert wait_until(lambda: mt5.account_info(), 5.0, "the resumed simulator to answer").login == HEDGING
    mt5.shutdown()


def test_dead_simulator_is_no_ipc_connection_then_reconnects(make_sim):
    node = make_sim()
    mt5 = SimulatorTerminal(node.address, node.port, call_timeout=0.5)
    assert mt5.initialize(login=HEDGING)
    opened = _order(mt5, 1)
    node.terminate()
    assert mt5.positions_get() is None
    assert mt5.last_error() == (-10004, "No IPC connection")
    assert mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0}) is None
    assert mt5.last_error() == (-10004, "No IPC connection")
    node.start().wait_ready()
    positions = wait_until(lambda: mt5.positions_get(), 5.0, "the restarted simulator to answer")
    assert opened.order in {p.ticket for p in positions}
    mt5.shutdown()


def test_a_connection_the_simulator_closed_is_made_again_before_the_request_is_written(make_sim):
    """A simulator restarted between two calls: the client notices the closed connection before writing and
    connects again, so the next order goes through at once; with the simulator down, an order is refused with
    'No IPC connection' and never reaches the broker (the engine takes -10004 for "not sent")."""
    node = make_sim()
    mt5 = SimulatorTerminal(node.address, node.port, call_timeout=0.5)
    assert mt5.initialize(login=HEDGING)
    assert _order(mt5, 1).retcode == mt5.TRADE_RETCODE_DONE
    node.terminate()
    node.start().wait_ready()
    again = _order(mt5, 2)
    assert again is not None and again.retcode == mt5.TRADE_RETCODE_DONE, mt5.last_error()
    node.terminate()
    assert _order(mt5, 3) is None and mt5.last_error() == (-10004, "No IPC connection")
    node.start().wait_ready()
    with SimulatorAdmin(node.address, node.port, token=admin_token(node)) as admin:
        comments = {d["comment"] for d in admin.ledger(login=HEDGING)}
    assert not any(c.endswith("-3") for c in comments), comments
    mt5.shutdown()


def test_primary_and_backup_are_separate_brokers(make_sim):
    primary = make_sim(host="127.0.3.3", name="primary", server_name="TradeDrill-Primary")
    backup = make_sim(host="127.0.3.4", name="backup", server_name="TradeDrill-Backup")
    a = SimulatorTerminal(primary.address, primary.port)
    b = SimulatorTerminal(backup.address, backup.port)
    assert a.initialize(login=HEDGING) and b.initialize(login=HEDGING)
    assert a.account_info().server == "TradeDrill-Primary" and b.account_info().server == "TradeDrill-Backup"
    assert _order(a, 1).retcode == a.TRADE_RETCODE_DONE
    assert a.positions_total() == 1 and b.positions_total() == 0
    with SimulatorAdmin(backup.address, backup.port, token=admin_token(backup)) as admin:
        assert [d for d in admin.ledger() if d["type"] != 2] == []
    a.shutdown()
    b.shutdown()


def test_garbage_on_the_wire_costs_only_that_connection(make_sim):
    import socket

    node = make_sim()
    with socket.create_connection((node.address, node.port), timeout=2.0) as raw:
        raw.sendall(b"\x00\x00\x00\x03abc")  # a frame that is not msgpack of a request
        assert raw.recv(10) == b""  # the simulator hangs up on it
    mt5 = SimulatorTerminal(node.address, node.port)
    assert mt5.initialize() and mt5.symbols_total() == 4
    mt5.shutdown()
