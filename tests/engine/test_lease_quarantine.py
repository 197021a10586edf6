"""The lease across a Redis failover (issue 16's redis-partition finding): a promoted primary never got the lease
writes the old primary took last, so its fence counter could hand a token out twice. The scripts now record the node
the lease was last written on (``g:lease:node``); on another node a lapsed lease waits out a quarantine of one TTL,
and the fence jumps to the server time in ms, above any token the old primary handed out.

Against the real Redis of the engine tests' stack; "another node" is a second address string given to the same
Redis, which is what a promoted replica looks like to the scripts (the same keys, written from another address)."""
from __future__ import annotations

import pytest

from reference.engine.contract import Keys
from reference.engine.lease import ACQUIRE, RENEW
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services

TTL_MS = 400      # short, so a quarantine ends within the test (the engine's is 3,000)
OLD, NEW = "127.0.5.11:6379", "127.0.5.12:6379"


def _acquire(r, keys, instance, node):
    return r.eval(ACQUIRE, 6, *keys.lease_keys(), instance, TTL_MS, node)


def _renew(r, keys, value, node):
    k = keys.lease_keys()
    return r.eval(RENEW, 5, *k[:4], k[5], value, TTL_MS, node)


def _token(value: str) -> int:
    return int(value.rsplit(":", 1)[1])


def test_after_a_failover_a_lapsed_lease_is_quarantined_and_the_next_token_is_new(harness):
    r = harness.redis()
    keys = Keys(group=harness.group)
    first = _acquire(r, keys, "A", OLD)
    assert first[0] == 1 and _token(first[1]) == 1
    assert r.get(keys.lease_node) == f"{OLD} 0"
    # the old primary handed token 2 to A after the replication cut (this node never saw it); the lease lapses
    r.delete(keys.lease)
    quarantined = _acquire(r, keys, "B", NEW)
    assert quarantined[0] == 2, f"B acquired on a promoted node at once: {quarantined}"
    server_ms, until_ms = int(quarantined[2]), int(quarantined[3])
    assert until_ms == server_ms + TTL_MS
    assert int(r.get(keys.fence)) >= server_ms, "the fence did not move past the old primary's tokens"
    # every attempt during the quarantine is refused, by either instance, with the same end
    again = _acquire(r, keys, "A", NEW)
    assert again[0] == 2 and int(again[3]) == until_ms
    assert not r.exists(keys.lease)
    got = wait_until(lambda: (lambda a: a if a[0] == 1 else None)(_acquire(r, keys, "B", NEW)), 5,
                     "the quarantine to end")
    token = _token(got[1])
    assert token > server_ms > 2, f"token {token} could repeat one the old primary handed out"
    assert int(got[2]) >= until_ms
    assert r.get(keys.lease_node) == f"{NEW} 0"


def test_a_live_lease_is_renewed_on_the_promoted_node_without_a_quarantine(harness):
    """Sentinel's failover is shorter than the lease's TTL: the holder keeps its lease and its token (the key was
    replicated and has not lapsed, so nobody can have taken it); only the node is recorded anew."""
    r = harness.redis()
    keys = Keys(group=harness.group)
    value = _acquire(r, keys, "A", OLD)[1]
    fence = int(r.get(keys.fence))
    assert _renew(r, keys, value, NEW) == [1, 0]
    assert r.get(keys.lease_node) == f"{NEW} 0" and int(r.get(keys.fence)) == fence
    assert _acquire(r, keys, "B", NEW)[0] == 0, "B took a live lease"


def test_a_lapsed_lease_is_not_re_set_on_the_promoted_node_and_its_old_token_stays_fenced(harness):
    """The old holder's renewal after its key lapsed across a failover: refused (quarantine), and once it ends the
    old value cannot come back either, since the fence moved past its token: it must acquire a new one."""
    r = harness.redis()
    keys = Keys(group=harness.group)
    value = _acquire(r, keys, "A", OLD)[1]
    r.delete(keys.lease)
    answer = _renew(r, keys, value, NEW)
    assert answer[0] == 3 and int(answer[1]) > 0
    assert not r.exists(keys.lease)
    wait_until(lambda: int(r.eval("local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)", 0))
               > int(answer[1]), 5, "the quarantine to end")
    assert _renew(r, keys, value, NEW) == [0, 0], "a fenced-out value was re-set after the quarantine"
    assert _acquire(r, keys, "A", NEW)[0] == 1


def test_on_one_node_nothing_changes(harness):
    """No failover: a lapsed lease is re-set by its holder and taken by the other instance at once (ENG-1's
    takeover is not slowed), tokens count up by one."""
    r = harness.redis()
    keys = Keys(group=harness.group)
    value = _acquire(r, keys, "A", OLD)[1]
    r.delete(keys.lease)
    assert _renew(r, keys, value, OLD) == [2, 0]
    r.delete(keys.lease)
    taken = _acquire(r, keys, "B", OLD)
    assert taken[0] == 1 and _token(taken[1]) == _token(value) + 1, f"a takeover on the same node waited: {taken}"
