"""Bad signals (fuzzed with hypothesis) each get a reason on RTRS; the engine keeps running and keeps trading."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradedrill.waiting import wait_until

from .conftest import LOGIN

pytestmark = pytest.mark.services

FIELD_NAMES = st.sampled_from(["signal_id", "account", "symbol", "side", "volume", "order_type", "price", "sl",
                               "tp", "source", "created_ms", "junk"])
VALUES = st.one_of(st.text(max_size=40), st.sampled_from(["", "nan", "inf", "-1", "0", "1e309", "buy", "sell",
                                                          "limit", "EURUSD", str(LOGIN), "0.01", "x" * 300]),
                   st.floats(allow_nan=True).map(repr), st.integers().map(str))


def broken(fields: dict) -> dict:
    # make sure the entry is invalid: a missing/garbled side guarantees a rejection reason
    fields = dict(fields)
    fields["side"] = fields.get("side", "") + "?"
    return fields


@given(st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=12))
@settings(max_examples=200, deadline=None, database=None)
def test_parse_signal_never_raises(fields):
    from reference.engine.signals import InvalidSignal, Signal, parse_signal
    assert isinstance(parse_signal(fields), (Signal, InvalidSignal))


def test_fuzzed_bad_signals_are_rejected_with_a_reason(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    entries: list[str] = []

    @given(st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=12))
    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def submit(fields):
        entries.append(harness.submit_raw(broken(fields)))

    submit()
    entries.append(harness.submit_raw({"garbage": "\x00\xff"}))
    entries.append(harness.submit_raw({"signal_id": "dup-1", "account": str(LOGIN), "symbol": "EURUSD",
                                       "side": "buy", "volume": "-5"}))

    def all_answered():
        by_entry = {r["entry_id"]: r for r in harness.results()}
        return all(e in by_entry for e in entries) and by_entry
    by_entry = wait_until(all_answered, 60, f"a result for each of {len(entries)} bad entries")
    for e in entries:
        r = by_entry[e]
        assert r["status"] == "rejected" and r["code"] and r["reason"], r
    assert harness.engines["A"].is_alive()
    sid, _ = harness.submit()
    assert harness.result_for(sid)["status"] == "executed"
    assert harness.pending() == 0
    alerts = [f for _i, f in harness.redis().xrange(harness.alerts) if f.get("kind") == "invalid_signal"]
    assert len(alerts) >= len(entries)


def test_duplicate_signal_id_executes_once(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    fields = {"signal_id": f"{harness.group}-same", "account": str(LOGIN), "symbol": "EURUSD", "side": "buy",
              "volume": "0.01"}
    first = harness.submit_raw(fields)
    second = harness.submit_raw(fields)

    def both():
        by_entry = {r["entry_id"]: r for r in harness.results()}
        return by_entry if first in by_entry and second in by_entry else None
    by_entry = wait_until(both, 20, "results for both entries")
    assert by_entry[first]["status"] == "executed"
    assert by_entry[second]["status"] == "duplicate"
    harness.check_no_duplicates()


def test_ambiguous_timeout_without_execution_is_resent_under_a_new_comment(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    harness.admin.set_behaviour(retcode_faults=[{"retcode": 10012, "rate": 1.0, "executed": False}])
    sid, _ = harness.submit()
    harness.wait_event("A", "order_send_complete", 15, signal_id=sid, name="TIMEOUT")
    harness.admin.set_behaviour(retcode_faults=[])
    r = harness.result_for(sid, timeout=30)
    assert r["status"] == "executed", r
    assert r["comment"].endswith("-2"), r            # attempt 1 had no trace after the grace period
    harness.check_none_lost([sid])


def test_two_engine_groups_run_side_by_side(harness, stack, brokers, tmp_path):
    from .conftest import Harness
    other = Harness(stack, brokers, tmp_path / "other", harness.group + "x")
    try:
        harness.engine("A")
        other.engine("A")          # same instance name, other group: no conflict (ENG-6)
        ids = [harness.submit()[0] for _ in range(5)]
        ids2 = [other.submit()[0] for _ in range(5)]
        assert all(r["status"] == "executed" for r in harness.check_none_lost(ids))
        assert all(r["status"] == "executed" for r in other.check_none_lost(ids2))
    finally:
        other.close()


# -- issue 10: poison entries, the number grammar, timestamps from the future ---------------------------------
def test_parse_signal_regressions():
    from reference.engine.signals import parse_signal
    base = {"signal_id": "s-1", "account": str(LOGIN), "symbol": "EURUSD", "side": "buy", "volume": "0.01"}
    assert parse_signal({**base, "symbol": b"\xff\xfe"}).code == "MALFORMED"
    assert parse_signal({**base, "symbol": "\udcff\udcfe"}).code == "MALFORMED"  # as surrogateescape reads it
    for text in ("1e2", "1_0", "inf", "nan", "Infinity", "0x10", "\u0663", "1.0.0", "0,01", "", " ",
                 "\u00a00.01\u2003", "0.01\n", "\t0.01"):
        assert parse_signal({**base, "volume": text}).code in ("BAD_NUMBER", "MISSING_FIELD"), text
    for text, value in (("0.01", 0.01), (" 0.5 ", 0.5), (".5", 0.5), ("5.", 5.0), ("+1", 1.0)):
        assert parse_signal({**base, "volume": text}).volume == value, text
    now = 1_700_000_000_000
    future = parse_signal({**base, "created_ms": str(int(316_000 * 365.25 * 86400 * 1000))}, now_ms=now)
    assert future.code == "FUTURE" and "clock" in future.reason
    assert parse_signal({**base, "created_ms": str(now + 2_000)}, now_ms=now).volume == 0.01  # within the skew


@given(st.text(max_size=24))
@settings(max_examples=500, deadline=None, database=None)
def test_numbers_are_what_a_person_types(text):
    """A volume is accepted only when it is a plain decimal (ASCII digits, one optional point and sign), and then
    its value is exactly what the text says."""
    import re
    from reference.engine.signals import Signal, parse_signal
    sig = parse_signal({"signal_id": "s-1", "account": str(LOGIN), "symbol": "EURUSD", "side": "buy",
                        "volume": text})
    if isinstance(sig, Signal):
        assert re.fullmatch(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+) *", text, re.ASCII), text
        assert sig.volume == float(text)


@given(st.dictionaries(st.sampled_from(["signal_id", "account", "symbol", "side", "volume", "created_ms"]),
                       st.binary(max_size=12), min_size=1))
@settings(max_examples=300, deadline=None, database=None)
def test_arbitrary_bytes_never_raise(fields):
    from reference.engine.signals import InvalidSignal, Signal, parse_signal
    as_read = {k: v.decode("utf-8", "surrogateescape") for k, v in fields.items()}
    for entry in (fields, as_read):
        sig = parse_signal(entry)
        assert isinstance(sig, (Signal, InvalidSignal))
        if isinstance(sig, Signal):
            assert all(b.isascii() or True for b in fields.values())
            assert sig.symbol.isprintable()


def test_a_poison_entry_is_rejected_and_its_batch_still_trades(harness):
    """A field that is not UTF-8 used to fail the engine's stream read for its whole batch, forever: now that entry
    is rejected MALFORMED and acknowledged, and the valid signals read with it execute, also after a restart."""
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    harness.engines["A"].pause()  # queue a batch: valid signals around the poison one, read together
    good_before = [harness.submit() for _ in range(3)]
    poison = harness.submit_raw({"signal_id": "poison-1", "account": str(LOGIN), "symbol": b"\xff\xfe",
                                 "side": "buy", "volume": "0.01"})
    good_after = [harness.submit() for _ in range(3)]
    harness.engines["A"].resume()
    for sid, _entry in good_before + good_after:
        assert harness.result_for(sid)["status"] == "executed", sid
    by_entry = wait_until(lambda: {r["entry_id"]: r for r in harness.results()}.get(poison), 30,
                          "a result for the poison entry")
    assert by_entry["status"] == "rejected" and by_entry["code"] == "MALFORMED" and "UTF-8" in by_entry["reason"]
    wait_until(lambda: harness.pending() == 0, 20, "nothing pending on RTSS")
    harness.engines["A"].restart()  # a restart must not meet the entry again
    harness.wait_event("A", "takeover_ready", 20)
    sid, _ = harness.submit()
    assert harness.result_for(sid)["status"] == "executed"
    assert not [e for e in harness.events("A") if e.get("event") == "engine_error"], "the engine met an error"


def test_the_same_signal_id_twice_in_one_batch_is_one_order(harness):
    """Three XADDs of one signal id read in one batch: one order at the broker, the others answered DUPLICATE
    (the batch is journaled as a whole, so the journal alone cannot see the first copy yet)."""
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    harness.engines["A"].pause()
    fields = {"signal_id": "batch-dup-1", "account": str(LOGIN), "symbol": "EURUSD", "side": "buy",
              "volume": "0.01"}
    entries = [harness.submit_raw(fields) for _ in range(3)]
    harness.engines["A"].resume()
    by_entry = wait_until(lambda: (lambda m: m if all(e in m for e in entries) else None)(
        {r["entry_id"]: r for r in harness.results()}), 30, "a result for each copy")
    statuses = sorted(by_entry[e]["status"] for e in entries)
    assert statuses == ["duplicate", "duplicate", "executed"], statuses
    from reference.engine.contract import comment_prefix_for
    prefix = comment_prefix_for("batch-dup-1")
    deals = [d for d in harness.ledger() if str(d.get("comment", "")).startswith(prefix)]
    assert len({d["order"] for d in deals}) == 1, deals


def test_a_deleted_stream_is_recreated_and_trading_goes_on(harness):
    harness.engine("A")
    harness.wait_event("A", "takeover_ready", 15)
    harness.redis().delete(harness.rtss)
    harness.wait_event("A", "consumer_group_missing", 15)
    sid, _ = harness.submit()
    assert harness.result_for(sid)["status"] == "executed"
