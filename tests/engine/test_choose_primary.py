"""Which primary a Redis client of the engine (and the signal sender) follows, from what the Sentinels say
(``reference.engine.redislink.choose_primary``, issue 12): a majority must answer, the newest config epoch wins,
a Sentinel in the middle of a failover is not asked to decide, and a tie at the newest epoch names nobody."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reference.engine.redislink import being_replaced, choose_primary

OLD, NEW = ("127.0.9.2", 6379), ("127.0.9.4", 6379)


def ans(addr, epoch, failover=False):
    return (addr[0], addr[1], epoch, failover)


def test_a_minority_sentinel_naming_the_old_primary_after_a_heal_is_outvoted_by_the_newer_epoch():
    # the measured case: after a majority-minority split heals, sentinel-2 still names the old primary
    primary, epoch, _ = choose_primary({"s1": ans(NEW, 2), "s2": ans(OLD, 1), "s3": ans(NEW, 2)}, 3)
    assert (primary, epoch) == (NEW, 2)
    # and while only one Sentinel has adopted the promotion, that one already decides
    primary, _, _ = choose_primary({"s1": ans(NEW, 2), "s2": ans(OLD, 1), "s3": ans(OLD, 1)}, 3)
    assert primary == NEW


def test_a_client_that_reaches_only_a_minority_of_sentinels_names_no_primary():
    primary, _, why = choose_primary({"s1": "Timeout connecting to server", "s2": ans(OLD, 1), "s3": "refused"}, 3)
    assert primary is None and "only 1 of 3 answered" in why


def test_the_leader_in_the_middle_of_its_failover_does_not_decide():
    # the leader reports the old address with the new epoch until its failover ends
    primary, _, _ = choose_primary({"s1": ans(OLD, 2, True), "s2": ans(OLD, 1), "s3": ans(OLD, 1)}, 3)
    assert primary == OLD
    primary, _, why = choose_primary({"s1": ans(OLD, 2, True), "s2": ans(OLD, 2, True), "s3": "down"}, 3)
    assert primary is None and "failover" in why


def test_two_primaries_at_the_newest_epoch_name_nobody():
    primary, _, why = choose_primary({"s1": ans(NEW, 3), "s2": ans(OLD, 3), "s3": ans(NEW, 2)}, 3)
    assert primary is None and "different primaries" in why


answer = st.one_of(st.text(max_size=20),
                   st.tuples(st.sampled_from(["127.0.9.2", "127.0.9.3", "127.0.9.4"]), st.just(6379),
                             st.integers(0, 5), st.booleans()))


@given(st.dictionaries(st.sampled_from(["s1", "s2", "s3", "s4", "s5"]), answer), st.integers(1, 5))
@settings(max_examples=300, deadline=None)
def test_whatever_the_sentinels_say_the_choice_is_a_settled_answer_at_the_newest_epoch_or_none(answers, configured):
    primary, epoch, why = choose_primary(answers, configured)
    named = [v for v in answers.values() if isinstance(v, tuple)]
    if primary is None:
        assert why
        return
    assert len(named) >= configured // 2 + 1
    settled = [v for v in named if not v[3]]
    assert epoch == max(v[2] for v in settled)
    assert {(v[0], v[1]) for v in settled if v[2] == epoch} == {primary}


def test_a_primary_the_sentinels_are_replacing_is_named_but_doubted():
    """A partition healed during Sentinel's failover (issue 16): the majority still names the old primary (epoch 1)
    while the leader fails it over, or while a quorum still sees it down. The view names it (ordinary clients keep
    writing there until the switch) and ``being_replaced`` says why the lease must not be taken or renewed on it."""
    answers = {"s1": (*OLD, 1, True, True), "s2": (*OLD, 1, False, True), "s3": (*OLD, 1, False, False)}
    primary, _, _ = choose_primary(answers, 3)
    assert primary == OLD
    doubt = being_replaced(answers, primary)
    assert "s1: failover_in_progress,o_down" in doubt and "s2: o_down" in doubt and "s3" not in doubt
    # after the switch the leader still reports the old address with its flags: the new primary is not doubted
    after = {"s1": (*OLD, 2, True, False), "s2": (*NEW, 2, False, False), "s3": (*NEW, 2, False, False)}
    primary, _, _ = choose_primary(after, 3)
    assert primary == NEW and being_replaced(after, primary) == ""
    # the four-field answers of before (no o_down flag) still read
    assert being_replaced({"s1": ans(OLD, 1)}, OLD) == "" and being_replaced({}, None) == ""
