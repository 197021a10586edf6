"""BrokerPool's lines for issue 19 (BRK-1, BRK-2, BRK-5) with fake terminals: a broker_heartbeat per heartbeat with
its duration, reconnects due a poll early, and every broker failed since the last connection suspends and alerts.
No stack: the terminals are in-process fakes behind the pool's factory."""
from __future__ import annotations

from reference.engine.broker import BrokerPool
from reference.engine.config import EngineConfig
from tradedrill.waiting import wait_until

UP: dict[str, bool] = {}


class FakeTerminal:
    def __init__(self, name: str):
        self.name = name

    def initialize(self, **kwargs):
        return UP[self.name]

    def terminal_info(self):
        return {"connected": True} if UP[self.name] else None

    def last_error(self):
        return (-10004, "No IPC connection")

    def shutdown(self):
        return True


def factory(name: str):
    return FakeTerminal(name)


def _pool(events: list, alerts: list, **cfg) -> BrokerPool:
    brokers = [{"name": n, "factory": f"{__name__}:factory", "params": {"name": n}} for n in ("primary", "backup")]
    config = EngineConfig(brokers=brokers, broker_heartbeat_s=0.3, broker_reconnect_s=0.2, broker_timeout_s=1.0,
                          order_reply_timeout_s=1.0, **cfg)
    return BrokerPool(config, lambda event, **f: events.append({"event": event, **f}),
                      lambda kind, message, **f: alerts.append(kind))


def _tick_until(pool: BrokerPool, done, what: str, deadline_s: float = 5.0) -> None:
    """Tick the pool (the engine's loop does) until ``done()``, within the deadline."""
    wait_until(lambda: (pool.tick(), done())[1], deadline_s, what, interval=0.005, max_interval=0.01)


def test_heartbeat_lines_and_every_broker_down_suspends_and_alerts():
    UP.update(primary=True, backup=False)
    events, alerts = [], []
    pool = _pool(events, alerts, broker_switch_after=2, broker_suspend_after=10)
    try:
        _tick_until(pool, lambda: sum(e["event"] == "broker_heartbeat" for e in events) >= 3, "three heartbeats")
        beats = [e for e in events if e["event"] == "broker_heartbeat"]
        assert all(b["ok"] is True and b["took_s"] >= 0 and b["broker"] == "primary" for b in beats)
        UP["primary"] = False
        _tick_until(pool, lambda: pool.suspended, "the suspension")
        kinds = [e["event"] for e in events]
        assert any(e["event"] == "broker_heartbeat" and e["ok"] is False for e in events)
        assert "broker_switch" in kinds and kinds.count("broker_connect_failed") == 3   # 2 on primary, 1 on backup
        suspended = next(e for e in events if e["event"] == "broker_suspended")
        assert suspended["every_broker"] is True and suspended["failures"] == 3 and "broker_suspended" in alerts
        fails = [e for e in events if e["event"] == "broker_connect_failed"]
        assert all("took_s" in f for f in fails)
        UP["backup"] = True
        _tick_until(pool, lambda: not pool.suspended, "the backup connected")
        assert events[-1]["event"] == "broker_connected" and events[-1]["resumed"] is True
    finally:
        pool.close()


def test_reconnects_fall_due_a_poll_early_but_never_more_than_a_tenth():
    events, alerts = [], []
    pool = _pool(events, alerts)
    assert pool._early(3.0) == 2.75 and pool._early(1.0) == 0.9 and pool._early(0.2) == 0.18
    pool.close()
