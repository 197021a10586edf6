"""Fenced writes (issue 18): Redis itself refuses a write of shared state (RTS, RTRS, XACK, RIS, positions) from an
instance whose fencing token is older than the newest acquisition, and the instance goes passive."""
from __future__ import annotations

import pytest

from reference.engine.contract import Keys
from reference.engine.engine import FENCED_WRITE, PUBLISH
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services


def test_the_scripts_refuse_an_old_token_and_write_nothing(harness):
    r = harness.redis()
    keys = Keys(group=harness.group, rtss=harness.rtss, rtrs=harness.rtrs)
    r.set(keys.fence, 5)
    rts = keys.rts_signal("fenced-1")
    assert r.eval(FENCED_WRITE, 2, keys.fence, rts, 4, "hset", "status", "deferred") == -1
    assert r.hgetall(rts) == {}
    assert r.eval(FENCED_WRITE, 2, keys.fence, keys.ris_suspended, 4, "sadd", "5001") == -1
    assert not r.smembers(keys.ris_suspended)
    refused = r.eval(PUBLISH, 5, keys.fence, rts, keys.rts_results, keys.rtrs, keys.rtss, 4, harness.group,
                     "1-1", 0, 1, "status", "executed")
    assert refused == -1 and r.hgetall(rts) == {} and not r.exists(keys.rtrs)
    assert r.eval(FENCED_WRITE, 2, keys.fence, rts, 5, "hset", "status", "executed") == 1
    assert r.hgetall(rts) == {"status": "executed"}
    assert r.eval(FENCED_WRITE, 2, keys.fence, rts, 6, "replace", "a", "1") == 1
    assert r.hgetall(rts) == {"a": "1"}


def test_a_replace_of_thousands_of_positions_writes_them_all_and_a_bad_one_deletes_nothing(harness):
    """RTS positions are rewritten from the broker at a takeover ("replace"): with 6,000 open positions (30 s of a
    200 signals/s drill on a hedging account) the script once failed in Lua's unpack() after its DEL, which left
    RTS with no positions at all. Now every position is written, and a malformed call writes and deletes nothing."""
    r = harness.redis()
    keys = Keys(group=harness.group, rtss=harness.rtss, rtrs=harness.rtrs)
    r.set(keys.fence, 7)
    positions = keys.rts_positions
    r.hset(positions, "old", "1")
    pairs = [str(v) for n in range(6000) for v in (10_000_000 + n, f'{{"symbol":"EURUSD","volume":"0.01","n":{n}}}')]
    assert r.eval(FENCED_WRITE, 2, keys.fence, positions, 7, "replace", *pairs) == 1
    held = r.hgetall(positions)
    assert len(held) == 6000 and "old" not in held and held["10005999"].endswith('"n":5999}')
    with pytest.raises(Exception, match="field/value pairs"):
        r.eval(FENCED_WRITE, 2, keys.fence, positions, 7, "replace", "10000000")
    assert r.hlen(positions) == 6000


def test_an_instance_fenced_out_while_frozen_writes_nothing_and_goes_passive(harness):
    """The stale-RTS-write bug of issue 18, forced: A is frozen, a newer holder takes the lease (its token moves
    the fence), a signal arrives, A wakes and works on it before its heartbeat notices. Whatever A then writes to
    RTS or RTRS is refused by Redis: no value carries A's token after the fence moved, and A stops trading."""
    harness.engine("A")
    acquired = harness.wait_event("A", "takeover_ready", 15)
    token_a = int(acquired["token"])
    r = harness.redis()
    keys = Keys(group=harness.group)
    harness.engines["A"].pause()
    newer = token_a + 10
    r.set(keys.lease, f"B:{newer}", px=3000)   # what B's acquisition would write
    r.set(keys.fence, newer)
    sid, _entry = harness.submit()
    harness.engines["A"].resume()
    wait_until(lambda: [e for e in harness.events("A")
                        if e["event"] in ("fenced_write_refused", "lease_lost", "passive")], 10,
               "A to notice it was fenced out")
    written_by_a = [f for f in harness.results() if f.get("signal_id") == sid]
    assert not written_by_a, f"a result from the fenced-out instance reached RTRS: {written_by_a}"
    state = r.hgetall(keys.rts_signal(sid))
    assert not state or int(state.get("token", newer)) >= newer, f"RTS written with A's old token: {state}"
    refused = [e for e in harness.events("A") if e["event"] == "fenced_write_refused"]
    for e in refused:
        assert int(e["token"]) == token_a and int(e["newest"]) == newer


def test_a_late_outcome_does_not_overwrite_the_result_another_holder_published(harness):
    """The soak's seed 1650 (ENG-5): engine A decided a rejection but Redis went down before it published; B took
    over, found no trace at the broker, sent the signal and published "executed"; A, holder again, flushed its
    rejection. RTRS kept B's result (one per entry) but RTS was overwritten to "rejected" while the broker held
    the position. A late outcome for an entry that already has its result keeps RTS (answer 2) and still acks."""
    r = harness.redis()
    keys = Keys(group=harness.group, rtss=harness.rtss, rtrs=harness.rtrs)
    r.set(keys.fence, 7)
    entry = r.xadd(harness.rtss, {"signal_id": "late-1"})
    r.xgroup_create(harness.rtss, harness.group, id="0", mkstream=True)
    r.xreadgroup(harness.group, "A", {harness.rtss: ">"}, count=10)
    rts = keys.rts_signal("late-1")

    def publish(token: int, status: str, instance: str) -> int:
        fields = {"signal_id": "late-1", "entry_id": entry, "status": status, "instance": instance}
        flat = [x for kv in fields.items() for x in kv]
        return r.eval(PUBLISH, 5, keys.fence, rts, keys.rts_results, keys.rtrs, keys.rtss, token, harness.group,
                      entry, 0, len(fields), *flat)

    assert publish(7, "executed", "B") == 1
    r.set(keys.fence, 8)   # A is the holder again, with a newer token, and flushes what it decided before
    assert publish(8, "rejected", "A") == 2
    assert r.hget(rts, "status") == "executed" and r.hget(rts, "instance") == "B"
    assert [f["status"] for _id, f in r.xrange(keys.rtrs)] == ["executed"]
    assert r.xpending(harness.rtss, harness.group)["pending"] == 0
    # a republish of the same result, or a restore of an RTS that Redis lost, still writes RTS
    assert publish(8, "executed", "A") == 0 and r.hget(rts, "instance") == "A"
    r.delete(rts)
    assert publish(8, "executed", "A") == 0 and r.hgetall(rts)["status"] == "executed"
