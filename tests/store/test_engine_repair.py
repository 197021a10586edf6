"""End to end: the real engine command (``python -m reference.engine run``) SIGKILLed with orders in flight, its
journal damaged (the WAL garbled; or, when the last snapshot holds every write, the file's header zeroed: a
snapshot checkpoints, so the file then holds them all and there is no WAL), started again: it repairs the journal
from the snapshot, says so in one alert, settles the in-flight orders with the broker (none sent twice) and trades
again. Topology on 127.0.71.x (this module's loopback block): Redis primary + 2 replicas + 3 Sentinels, two
simulator brokers."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from faults.files import CorruptDuckDB
from tests.engine.conftest import SETTINGS, harness, run_brokers  # noqa: F401 - harness is a fixture
from tradedrill.local import LocalStack
from tradedrill.services import engine as engine_svc
from tradedrill.services import mt5sim
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services

SUBNET = "127.0.71"


def topology() -> Topology:
    return Topology.default(subnet=SUBNET, services=("redis", "mt5", "engine"), overrides=SETTINGS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(topology(), tmp_path_factory.mktemp("stack"), services=("redis",)) as st:
        yield st


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    topo = topology()
    base = tmp_path_factory.mktemp("brokers")
    nodes = [mt5sim.build_node(topo.node(f"mt5-{which}"), topo, base, None, seed=seed,
                               server_name=f"Sim-{which.title()}")
             for which, seed in (("primary", 1), ("backup", 2))]
    yield from run_brokers(nodes)


@pytest.mark.parametrize("case", ["in-the-snapshot", "newer-than-the-snapshot"])
def test_engine_repairs_a_garbled_journal_and_trades_again(harness, case):
    """``in-the-snapshot``: the in-flight intents are in the restored snapshot and are reconciled from the journal;
    ``newer-than-the-snapshot`` (one snapshot at start only): the journal comes back without them, and the engine
    finds their orders at the broker by magic + comment. Either way no order is sent twice. The damage: the WAL
    garbled when the kill leaves one (writes after the last snapshot), else the file's header zeroed."""
    interval = 0.5 if case == "in-the-snapshot" else 3600.0
    node = harness.engine("A", store_snapshot_interval_s=interval)
    harness.wait_event("A", "takeover_ready", 20)
    before = [harness.submit()[0] for _ in range(3)]
    harness.check_none_lost(before)
    # three orders executed at the broker whose replies are lost: in flight in the journal when the engine dies
    harness.admin.set_behaviour(lose_next_replies=3)
    in_flight = [harness.submit()[0] for _ in range(3)]
    for sid in in_flight:
        harness.wait_event("A", "order_send_invoke", 20, signal_id=sid)
    state = engine_svc.state_dir(harness.topology.node(engine_svc.node_name("A")), harness.tmp)
    db = state / "journal-A.duckdb"
    written = int(Path(str(db) + ".hwm").read_text().split()[0])    # the journal's high-water mark: the in-flight intents
    if case == "in-the-snapshot":
        wait_until(lambda: any(e["event"] == "snapshot" and e["hwm"] >= written for e in harness.events("A")), 10,
                   f"a snapshot holding write #{written}")
    node.kill()
    wal_there = Path(str(db) + ".wal").exists()
    had_wal = wal_there and Path(str(db) + ".wal").stat().st_size > 0
    if case == "newer-than-the-snapshot":
        assert had_wal, "the writes after the start's snapshot are in the WAL"
    mode, saw = ("wal-garble", "WAL fails its checksum") if had_wal else ("zero-header", "not a DuckDB header")
    with CorruptDuckDB(db, mode, random.Random(7), restore_on_heal=False):
        pass
    since = len(harness.events("A"))

    node.start().wait_ready()
    repaired = harness.wait_event("A", "journal_repaired", 20, since=since)
    harness.wait_event("A", "takeover_ready", 30, since=since)
    assert repaired["file"] == str(db) and saw in repaired["saw"], repaired
    assert "snapshot journal-A.h" in repaired["recovered"], repaired
    if case == "in-the-snapshot":
        assert repaired["restored"] >= written, repaired
    else:
        assert repaired["missing_writes"] > 0 and repaired["restored"] == 0, repaired
    evidence = Path(repaired["evidence"])
    assert (evidence / "journal-A.duckdb").exists() and (evidence / "journal-A.duckdb.wal").exists() == wal_there
    # the operator reading the engine's own log sees the same one line (not only the events file and ALERTS)
    logged = [line for line in node.log_path.read_text().splitlines() if ": journal: " in line]
    assert logged and str(db) in logged[-1] and saw in logged[-1], logged

    def alert():
        entries = harness.redis().xrange(harness.alerts)
        return next((f for _i, f in entries if f.get("kind") == "journal_repaired"), None)
    message = wait_until(alert, 20, "the journal_repaired alert on ALERTS")["message"]
    assert str(db) in message and "\n" not in message

    after = [harness.submit()[0] for _ in range(3)]
    results = harness.check_none_lost(before + in_flight + after)   # each executed once at the broker
    assert all(r["status"] == "executed" for r in results), results
    found = {e["signal_id"]: e["how"] for e in harness.events("A")[since:]
             if e["event"] == "reconcile" and e.get("found")}
    assert set(in_flight) <= set(found), found
    if case == "in-the-snapshot":    # settled from the restored journal, before any new signal is read
        assert all(found[sid] == "reconciliation" for sid in in_flight), found
    assert not [e for e in harness.events("A")[since:] if e["event"] == "engine_error"]
