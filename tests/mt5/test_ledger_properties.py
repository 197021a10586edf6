"""Hypothesis properties of the broker's ledger (in-process broker, same code the server runs):
position volume = sum of its deals; balance changes = realised profit; no order executed twice; a replay from
disk gives the same state; the same seed gives the same ticks."""
from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference.mt5 import constants as c
from reference.mt5.simulator.broker import Broker
from reference.mt5.simulator.config import SimConfig
from reference.mt5.simulator.ticks import TickWalk

HEDGING, NETTING = 5001, 5002

ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from([c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL]),
                  st.integers(1, 50), st.sampled_from(["EURUSD", "XAUUSD"])),
        st.tuples(st.just("close"), st.integers(0, 1000), st.floats(0.1, 1.0)),
    ),
    max_size=25,
)


def _run(broker: Broker, login: int, operations) -> list:
    results = []
    for op in operations:
        if op[0] == "open":
            _, side, lots, symbol = op
            request = {"action": c.TRADE_ACTION_DEAL, "symbol": symbol, "volume": lots / 100, "type": side,
                       "magic": 9, "comment": f"p{len(results)}"}
        else:
            positions, _ = broker.positions_get(login)
            if not positions:
                continue
            pos = dict(zip(("ticket", "type", "volume", "symbol"), (lambda p: (p[0], p[5], p[9], p[16]))(
                positions[op[1] % len(positions)])))
            volume = max(0.01, round(pos["volume"] * op[2], 2))
            request = {"action": c.TRADE_ACTION_DEAL, "symbol": pos["symbol"], "volume": volume,
                       "type": 1 - pos["type"], "position": pos["ticket"], "magic": 9, "comment": "close"}
        result, error = broker.order_send(login, request)
        assert error == c.ERR_SUCCESS and result is not None
        assert result[0] == c.TRADE_RETCODE_DONE, result
        results.append(result)
    return results


def _check_ledger(broker: Broker, login: int) -> None:
    deals = broker.ledger(login=login)
    trades = [d for d in deals if d["type"] in (c.DEAL_TYPE_BUY, c.DEAL_TYPE_SELL)]
    # no order executed twice by the simulator itself
    assert all(n == 1 for n in Counter(d["order"] for d in trades).values())
    # position volume equals the (signed) sum of its deals; a closed position's deals sum to zero
    signed = defaultdict(float)
    for d in trades:
        signed[d["position_id"]] += d["volume"] if d["type"] == c.DEAL_TYPE_BUY else -d["volume"]
    open_positions = {p["identifier"]: p for p in broker.positions[login].values()}
    for identifier, total in signed.items():
        if identifier in open_positions:
            p = open_positions[identifier]
            assert abs(abs(total) - p["volume"]) < 1e-7, (identifier, total, p["volume"])
            assert (total > 0) == (p["type"] == c.POSITION_TYPE_BUY)
        else:
            assert abs(total) < 1e-7, (identifier, total)
    # balance changes equal realised profit (the opening balance is itself a balance deal)
    assert abs(broker.accounts[login]["balance"] - sum(d["profit"] for d in deals)) < 1e-6
    assert all(d["profit"] == 0 for d in trades if d["entry"] == c.DEAL_ENTRY_IN)


@given(operations=ops, login=st.sampled_from([HEDGING, NETTING]))
def test_ledger_invariants_and_replay(operations, login):
    with tempfile.TemporaryDirectory() as state:
        broker = Broker(SimConfig(), Path(state), seed=1)
        results = _run(broker, login, operations)
        _check_ledger(broker, login)
        assert len({r[2] for r in results}) == len(results)  # every acknowledged order has its own ticket
        before = (broker.accounts, broker.positions, broker.deals, broker.orders, broker.meta)
        broker.close()
        replayed = Broker(SimConfig(), Path(state), seed=1)
        assert (replayed.accounts, replayed.positions, replayed.deals, replayed.orders, replayed.meta) == before
        _check_ledger(replayed, login)
        replayed.close()


@given(seed=st.integers(0, 2**32 - 1), symbol=st.sampled_from(["EURUSD", "XAUUSD", "ANY"]),
       first=st.integers(0, 20_000), length=st.integers(1, 5_000))
def test_same_seed_same_ticks(seed, symbol, first, length):
    def walk():
        return TickWalk(seed, symbol, 1.085, 0.00001, 5, 10, origin_ms=1_700_000_000_000)

    a, b = walk(), walk()
    b.ticks(0, first + length + 7000)  # a different generation order must not matter
    ticks = a.ticks(first, first + length - 1)
    assert np.array_equal(ticks, b.ticks(first, first + length - 1))
    assert tuple(ticks[0]) == a.tick(first) == b.tick(first)
    assert np.all(ticks["bid"] > 0) and np.all(ticks["ask"] > ticks["bid"])
    other = TickWalk(seed + 1, symbol, 1.085, 0.00001, 5, 10, origin_ms=1_700_000_000_000)
    if length > 50:
        assert not np.array_equal(ticks["bid"], other.ticks(first, first + length - 1)["bid"])


def test_brokers_with_the_same_seed_quote_the_same(tmp_path):
    config = SimConfig(tick_origin_ms=1_700_000_000_000)
    a = Broker(config, tmp_path / "a", seed=5)
    b = Broker(SimConfig(tick_origin_ms=1_700_000_000_000), tmp_path / "b", seed=5)
    at = 1_700_000_000_000 + 3_600_000
    assert a.tick("EURUSD", at) == b.tick("EURUSD", at)
    ra, _ = a.copy_ticks_range(HEDGING, "XAUUSD", 1_700_000_000, 1_700_000_600, c.COPY_TICKS_ALL)
    rb, _ = b.copy_ticks_range(HEDGING, "XAUUSD", 1_700_000_000, 1_700_000_600, c.COPY_TICKS_ALL)
    assert len(ra) == 2401 and np.array_equal(ra, rb)
    a.close()
    b.close()
