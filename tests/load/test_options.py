"""``tradedrill drill --users/--spawn-rate/--load-mix`` (issue 16): every input is either a drill with that load or a
one-line error with exit status 2, never a traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from scenarios import load as load_mod
from scenarios.cli import drill
from scenarios.load import DEFAULT_MIX, LoadError, LoadOptions, parse_mix


class _Reached(Exception):
    pass


@pytest.fixture
def reached(monkeypatch):
    """run_drills replaced: the load it would run is recorded, and the drill stops there (exit 2, a one-line error)."""
    seen: list = []

    def fake(names, opts, load=None):
        from scenarios.runner import DrillError

        seen.append(load)
        raise DrillError("stub: no stack in this test")

    monkeypatch.setattr("scenarios.runner.run_drills", fake)
    return seen


def _invoke(args):
    return CliRunner().invoke(drill, ["engine-kill", "--subnet", "127.0.101", "--out", "/tmp/h16l-out/none", *args])


def test_users_alone_give_the_default_mix_and_a_tenth_as_spawn_rate(reached):
    got = _invoke(["--users", "50"])
    assert got.exit_code == 2 and "stub" in got.output
    assert reached == [LoadOptions(50, 5.0, DEFAULT_MIX)]


def test_without_users_no_load(reached):
    _invoke([])
    assert reached == [None]


def test_spawn_rate_without_users_is_a_usage_error(reached):
    got = _invoke(["--spawn-rate", "3"])
    assert got.exit_code == 2 and "go with --users" in got.output and not reached


def test_the_mix_adds_the_services_its_users_need():
    from scenarios import registry

    s = load_mod.with_load_services(registry.get("engine-kill"), LoadOptions(5, 1, {"rtss": 1, "ticks": 1}))
    assert "ea" in s.services and "backend" not in s.services
    assert load_mod.with_load_services(registry.get("engine-kill"), None) is registry.get("engine-kill")


_text = st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 6000).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(str))
_mix = st.one_of(st.none(), st.text(max_size=30),
                 st.lists(st.tuples(st.sampled_from(["rtss", "webhook", "ticks", "x", ""]),
                                    st.integers(-2, 120)), max_size=4)
                 .map(lambda kv: ",".join(f"{k}={w}" for k, w in kv)))


@given(users=_text, spawn_rate=_text, mix=_mix)
def test_fuzz_load_options(users, spawn_rate, mix):
    from unittest import mock

    seen: list = []

    def fake(names, opts, load=None):
        from scenarios.runner import DrillError

        seen.append(load)
        raise DrillError("stub")

    args = [a for name, v in (("--users", users), ("--spawn-rate", spawn_rate), ("--load-mix", mix)) if v is not None
            for a in (name, v)]
    with mock.patch("scenarios.runner.run_drills", fake):
        got = _invoke(args)
    assert got.exit_code == 2, got.output
    assert "Traceback" not in got.output and not isinstance(got.exception, (TypeError, ValueError, AttributeError))
    if seen:   # accepted: exactly the load asked for
        load = seen[0]
        if users is None:
            assert load is None
        else:
            assert 1 <= load.users <= 5000 and load.users == int(users)
            assert 0 < load.spawn_rate <= 1000
            assert set(load.mix) <= {"rtss", "webhook", "ticks"} and all(1 <= w <= 100 for w in load.mix.values())
    else:
        assert "Error" in got.output


@given(st.dictionaries(st.sampled_from(["rtss", "webhook", "ticks"]), st.integers(1, 100), min_size=1))
def test_mix_round_trips(mix):
    assert parse_mix(",".join(f"{k}={w}" for k, w in mix.items())) == mix


@pytest.mark.parametrize("text, says", [("rtss=1,,webhook=1", "empty entry"), ("rtss=2,", "empty entry"),
                                        (",rtss", "empty entry"), ("webhook=", "no weight"),
                                        ("rtss=3,ticks= ", "no weight")])
def test_a_malformed_mix_is_refused_not_reread(reached, text, says):
    """New user's finding: ``rtss=1,,webhook=1`` was accepted (the empty entry skipped) and ``webhook=`` read as
    weight 1; a typo in the mix is now a one-line error (exit 2) and no drill starts."""
    got = _invoke(["--users", "5", "--load-mix", text])
    assert got.exit_code == 2 and says in got.output and not reached
    assert len([ln for ln in got.output.splitlines() if ln.strip()]) <= 3, got.output


def test_a_kind_alone_still_weighs_one():
    assert parse_mix("rtss, webhook=4") == {"rtss": 1, "webhook": 4}


@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=3)),
       st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.none()))
def test_fuzz_load_options_object(users, rate):
    try:
        opts = LoadOptions(users, rate)
    except LoadError as exc:
        assert str(exc).startswith("--")
    else:
        assert 1 <= opts.users <= 5000 and 0 < opts.spawn_rate <= 1000


def test_a_load_that_cannot_start_its_users_or_a_duration_before_the_fault_is_refused(reached):
    """A new user's findings: `--users 50 --spawn-rate 0.01` ran 1 user while the report said 50; `--duration 8` on
    engine-kill (its kill at 10-11 s) ran and then said "invalid: fault log shows 0 injected". Both refused in one
    line before any stack, saying what to give."""
    got = _invoke(["--users", "50", "--spawn-rate", "0.01"])
    assert got.exit_code == 2 and "--spawn-rate" in got.output and "take 5000 s to start" in got.output, got.output
    assert "give at least 1.7" in got.output, got.output
    got = _invoke(["--duration", "8"])
    assert got.exit_code == 2 and "--duration" in got.output and "injects its fault at 11 s" in got.output, got.output
    assert "give at least 12" in got.output, got.output
    assert reached == []                 # refused before the drill (the stub) was reached
