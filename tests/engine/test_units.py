"""Pure-logic unit tests: configuration, signal schema, comment ids, retcode classes, watchdog."""
from __future__ import annotations

import json
import threading

import pytest

from reference.engine.config import ConfigError, EngineConfig
from reference.engine.retcodes import Outcome, RetcodeTable, classify_none
from reference.engine.signals import InvalidSignal, Signal, comment_prefix_for, order_comment, parse_signal
from reference.engine.watchdog import Watchdog


def good(**kw):
    f = {"signal_id": "s-1", "account": "5001", "symbol": "EURUSD", "side": "buy", "volume": "0.1"}
    f.update(kw)
    return f


def test_valid_signal_parses():
    s = parse_signal(good(order_type="limit", price="1.1", sl="1.0", tp="1.2"))
    assert isinstance(s, Signal) and s.price == 1.1 and s.order_type == "limit"


@pytest.mark.parametrize("fields, code", [
    (good(signal_id=""), "BAD_SIGNAL_ID"), (good(account="x1"), "BAD_ACCOUNT"), (good(side="hold"), "BAD_SIDE"),
    (good(volume="0"), "BAD_VOLUME"), (good(volume="nan"), "BAD_NUMBER"), (good(volume="1000"), "BAD_VOLUME"),
    (good(order_type="limit"), "MISSING_FIELD"), (good(sl="1.2", tp="1.1"), "BAD_STOPS"),
    (good(order_type="stop", price="1.1", sl="1.2"), "BAD_STOPS"), (good(created_ms="yesterday"), "BAD_CREATED"),
    ({b"signal_id": b"\xff"}, "MALFORMED"), ("not a dict", "MALFORMED"),
])
def test_invalid_signals_have_a_code_and_reason(fields, code):
    r = parse_signal(fields)
    assert isinstance(r, InvalidSignal) and r.code == code and r.reason


def test_stale_signal():
    r = parse_signal(good(created_ms="1000"), now_ms=100_000, max_age_s=10)
    assert isinstance(r, InvalidSignal) and r.code == "STALE"


def test_comment_is_short_deterministic_and_per_attempt():
    c1, c2 = order_comment("abc", 1), order_comment("abc", 2)
    assert c1 != c2 and c1.startswith(comment_prefix_for("abc")) and len(c1) <= 24
    assert order_comment("abc", 1) == c1
    with pytest.raises(ValueError):
        order_comment("abc", 1, prefix="averyveryverylongprefix", max_len=24)


def test_config_defaults_carry_the_documents_values():
    c = EngineConfig()
    assert (c.heartbeat_s, c.lease_ttl_s) == (1.0, 3.0)                      # ENG-1
    assert (c.broker_heartbeat_s, c.broker_timeout_s, c.broker_reconnect_s) == (3.0, 5.0, 3.0)  # BRK-1/2
    assert (c.broker_switch_after, c.broker_suspend_after) == (5, 10)       # BRK-2
    assert c.retry_backoff_s == [1.0, 2.0, 4.0, 8.0, 16.0]                  # ORD-1
    assert c.failed_sync_retry_s == 60.0                                    # ORD-2
    assert (c.redis_retry_interval_s, c.redis_rediscover_after) == (2.0, 10)  # ORD-3


def test_config_file_env_and_errors(tmp_path):
    p = tmp_path / "e.json"
    p.write_text(json.dumps({"group": "g1", "lease_ttl_s": 4.0}))
    c = EngineConfig.load(p, env={"TRADEDRILL_ENGINE_INSTANCE": "7", "TRADEDRILL_ENGINE_HEARTBEAT_S": "0.5"})
    assert (c.group, c.instance, c.lease_ttl_s, c.heartbeat_s) == ("g1", "7", 4.0, 0.5)
    t = tmp_path / "e.toml"
    t.write_text('[engine]\ngroup = "g2"\n')
    assert EngineConfig.load(t, env={}).group == "g2"
    p.write_text(json.dumps({"lease_tll_s": 4.0}))
    with pytest.raises(ConfigError, match="lease_tll_s"):
        EngineConfig.load(p, env={})
    with pytest.raises(ConfigError):
        EngineConfig(lease_ttl_s=1.0, heartbeat_s=1.0)


class _Mt5:
    TRADE_RETCODE_DONE = 10009


def test_retcode_classes():
    t = RetcodeTable(_Mt5())
    assert t.classify(10009) is Outcome.EXECUTED
    assert t.classify(10004) is Outcome.REPRICE and t.classify(10021) is Outcome.REPRICE
    assert t.classify(10018) is Outcome.MARKET_CLOSED and t.classify(10019) is Outcome.NO_MONEY
    assert t.classify(10012) is Outcome.AMBIGUOUS and t.classify(10031) is Outcome.AMBIGUOUS
    assert t.classify(10013) is Outcome.PERMANENT and t.classify(10024) is Outcome.RETRY
    assert t.classify(99999) is Outcome.AMBIGUOUS        # unknown is never proof of non-execution
    assert classify_none((-10005, "IPC timeout"))[0] is Outcome.AMBIGUOUS
    assert classify_none((-2, 'Invalid "comment" argument'))[0] is Outcome.PERMANENT


def test_watchdog_fires_when_the_loop_stops_beating():
    fired = threading.Event()
    events = []
    wd = Watchdog(0.3, lambda e, **f: events.append(e), on_fire=fired.set)
    wd.start()
    assert fired.wait(5)
    assert events == ["watchdog_exit"]


def test_watchdog_quiet_while_beating():
    fired = threading.Event()
    wd = Watchdog(0.5, lambda e, **f: None, on_fire=fired.set)
    wd.start()
    stop = threading.Event()
    for _ in range(20):
        wd.beat()
        stop.wait(0.05)
    wd.stop()
    assert not fired.is_set()
