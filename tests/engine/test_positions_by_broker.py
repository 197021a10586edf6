"""ENG-5: RTS positions hold every broker's open positions, each under ``<broker>:<ticket>``.

Found by the brokers-down drill (seed 19): after the engine switched from the primary to the backup broker, its
position sync replaced the whole ``RTS:g:positions`` hash with the backup's list, and the 32 deals (+0.08 lots net)
still open at the primary vanished from RTS; the two simulators number their tickets alike (both from 10000001), so
a hash keyed by ticket alone could not have held both anyway. These tests drive the engine's own position code
(``sync_positions``, ``_opened_positions``, ``sweep_broker_closes``) against a real redis-server (the fenced Lua
script runs for real) with two fake broker sessions whose tickets overlap; nothing else of the engine is started.
One redis-server on 127.0.5.90 (the engine tests' block), a free port, stopped by its handle.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from types import SimpleNamespace

import pytest
import redis

from reference.engine import contract
from reference.engine.config import EngineConfig
from reference.engine.contract import Keys
from reference.engine.engine import FENCED_WRITE, Engine
from tradedrill.process import ProcessNode

pytestmark = pytest.mark.services

HOST = "127.0.5.90"
MAGIC = 424242
TOKEN = 3


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    base = tmp_path_factory.mktemp("positions-redis")
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]

    def ready() -> bool:
        try:
            return bool(redis.Redis(host=HOST, port=port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    node = ProcessNode(name="positions-test-redis", role="rtss", address=HOST, port=port,
                       argv=["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(base)], log_path=base / "redis.log", ready=ready)
    try:
        node.start().wait_ready()
        yield port
    finally:
        node.stop()


@pytest.fixture
def r(redis_port):
    client = redis.Redis(host=HOST, port=redis_port, decode_responses=True, socket_timeout=2)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


class FakeBroker:
    """A broker session as the engine's position code uses it: ``name``, ``connected``, ``call(method, ...)`` ->
    ``(rows, error)``; positions by ticket (the simulator's numbering: every ledger starts at 10000001)."""

    def __init__(self, name: str):
        self.name, self.connected = name, True
        self.positions: dict[int, dict] = {}
        self.deals: list[dict] = []

    def open(self, ticket: int, volume: float, side: int = 0) -> None:
        self.positions[ticket] = {"ticket": ticket, "symbol": "EURUSD", "type": side, "volume": volume,
                                  "price_open": 1.085, "comment": f"td{self.name}-{ticket}", "magic": MAGIC}

    def call(self, method: str, *args):
        if not self.connected:
            raise AssertionError(f"the engine called {method} on {self.name}, which is down")
        return {"positions_get": list(self.positions.values()), "orders_get": [],
                "history_deals_get": list(self.deals)}[method], None


def engine_on(r: redis.Redis, active: FakeBroker) -> tuple[Engine, list[tuple]]:
    """The engine's position code wired to ``r`` and ``active`` (the rest of the engine is not built)."""
    eng = Engine.__new__(Engine)
    eng.cfg = dataclasses.replace(EngineConfig(), group="hpos", magic=MAGIC)
    eng.keys = Keys.of(eng.cfg)
    eng.redis = SimpleNamespace(run=lambda fn: fn(r))
    eng.lease = SimpleNamespace(token=TOKEN, fenced_out=lambda why: None)
    eng.brokers = SimpleNamespace(active=active)
    events: list[tuple] = []
    eng.emit = lambda event, **fields: events.append((event, fields))
    eng._pending_orders, eng._closes_seen_until = set(), None
    r.set(eng.keys.fence, TOKEN)
    return eng, events


def held(r: redis.Redis, eng: Engine) -> dict[tuple[str, str], float]:
    """{(broker, ticket): volume} of RTS positions, the broker from the field (checked against the JSON's)."""
    out = {}
    for field, value in r.hgetall(eng.keys.rts_positions).items():
        broker, ticket = contract.parse_position_field(field)
        assert broker == json.loads(value)["broker"], (field, value)
        out[(broker, ticket)] = json.loads(value)["volume"]
    return out


def test_a_switch_to_the_backup_keeps_the_primarys_positions_apart_from_the_backups(r):
    primary, backup = FakeBroker("primary"), FakeBroker("backup")
    for ticket in (10000001, 10000002, 10000003):
        primary.open(ticket, 0.01)
    eng, events = engine_on(r, primary)
    assert eng.sync_positions("takeover") == 3

    # the primary goes down; the engine trades on the backup, whose tickets start at 10000001 too
    primary.connected = False
    eng.brokers.active = backup
    backup.open(10000001, 0.05, side=1)
    backup.open(10000002, 0.02)
    assert eng.sync_positions("broker recovered") == 2
    # whatever the key: the primary's three positions are still in RTS, beside the backup's two (the finding)
    values = [json.loads(v) for v in r.hvals(eng.keys.rts_positions)]
    assert sorted((v["broker"], v["volume"]) for v in values) == [("backup", 0.02), ("backup", 0.05)] + \
        [("primary", 0.01)] * 3, values
    assert held(r, eng) == {("primary", "10000001"): 0.01, ("primary", "10000002"): 0.01,
                            ("primary", "10000003"): 0.01, ("backup", "10000001"): 0.05,
                            ("backup", "10000002"): 0.02}
    restored = [f for e, f in events if e == "positions_restored"][-1]
    assert (restored["broker"], restored["positions"], restored["kept_elsewhere"]) == ("backup", 2, 3)

    # a fill at the backup is published under the backup's ticket, beside the primary's same number
    fields = {"status": "executed", "order": "10000003", "deal": "10000004", "side": "sell", "symbol": "EURUSD",
              "volume": "0.03", "price": "1.08", "comment": "tdx-1", "broker": "backup"}
    pairs = eng._opened_positions([("", "1-1", fields)])
    assert pairs[0] == "backup:10000003"
    assert r.eval(FENCED_WRITE, 2, eng.keys.fence, eng.keys.rts_positions, TOKEN, "hset", *pairs) == 1
    backup.open(10000003, 0.03, side=1)

    # the backup closes one position itself, then the engine syncs the backup: only the backup's part changes
    del backup.positions[10000002]
    assert eng.sync_positions("broker recovered") == 2
    assert held(r, eng) == {("primary", "10000001"): 0.01, ("primary", "10000002"): 0.01,
                            ("primary", "10000003"): 0.01, ("backup", "10000001"): 0.05,
                            ("backup", "10000003"): 0.03}

    # the backup's stop loss closes its 10000001: the sweep removes the backup's, not the primary's 10000001
    backup.deals = [{"position_id": 10000001, "order": 10000009, "reason": 4, "entry": 1, "magic": MAGIC}]
    del backup.positions[10000001]
    assert eng.sweep_broker_closes() == 1
    assert set(held(r, eng)) == {("primary", "10000001"), ("primary", "10000002"), ("primary", "10000003"),
                                 ("backup", "10000003")}

    # the primary is back and active again: its part is replaced by its list, the backup's is kept
    primary.connected, eng.brokers.active = True, primary
    del primary.positions[10000003]
    assert eng.sync_positions("broker recovered") == 2
    assert set(held(r, eng)) == {("primary", "10000001"), ("primary", "10000002"), ("backup", "10000003")}


def test_bare_ticket_fields_of_an_older_engine_are_moved_under_their_broker_or_replaced(r):
    primary, backup = FakeBroker("primary"), FakeBroker("backup")
    eng, _events = engine_on(r, backup)
    key = eng.keys.rts_positions
    r.hset(key, mapping={"10000001": json.dumps({"symbol": "EURUSD", "type": 0, "volume": 0.01, "broker": "primary"}),
                         "10000002": json.dumps({"symbol": "EURUSD", "type": 0, "volume": 0.07, "broker": "backup"})})
    backup.open(10000002, 0.02)
    assert eng.sync_positions("takeover") == 1
    assert held(r, eng) == {("primary", "10000001"): 0.01, ("backup", "10000002"): 0.02}
    assert primary.positions == {}


def test_replace_part_is_fenced_chunked_and_writes_nothing_when_malformed(r):
    """The sync's one script: thousands of positions on both sides of Lua's unpack() limit, other brokers' fields
    (and a broker whose name extends this one's) untouched, an old token refused, a malformed call a no-op."""
    keys = Keys(group="hpos")
    r.set(keys.fence, 7)
    other = {f"backup:{10_000_000 + n}": "b" for n in range(3000)}
    r.hset(keys.rts_positions, mapping={**other, **{f"primary:{10_000_000 + n}": "old" for n in range(5000)},
                                        "primary:x:10000001": "another broker named primary:x"})
    pairs = [v for n in range(6000) for v in (f"primary:{20_000_000 + n}", "new")]
    assert r.eval(FENCED_WRITE, 2, keys.fence, keys.rts_positions, 6, "replace_part", "primary:", 0, *pairs) == -1
    assert r.hlen(keys.rts_positions) == 8001
    assert r.eval(FENCED_WRITE, 2, keys.fence, keys.rts_positions, 7, "replace_part", "primary:", 0, *pairs) == 1
    now = r.hgetall(keys.rts_positions)
    assert len(now) == 3000 + 6000 + 1 and all(now[f] == "b" for f in other)
    assert sum(v == "new" for v in now.values()) == 6000 and now["primary:x:10000001"].startswith("another")
    for bad in (("primary:", 0, "primary:1"), ("primary:", 5, "a", "b"), ("", 0)):
        with pytest.raises(redis.ResponseError):
            r.eval(FENCED_WRITE, 2, keys.fence, keys.rts_positions, 7, "replace_part", *bad)
    assert r.hgetall(keys.rts_positions) == now
