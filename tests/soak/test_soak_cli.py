"""``tradedrill soak``'s options (issue 16, part 3): bad input is refused in one line, exit 2, saying what to pass,
before any stack starts; whatever the arguments, the command never shows a traceback or click's usage block, and
what it accepts is a soak ``scenarios.soak.option_problems`` accepts. No stack here: ``run_soak`` is stubbed."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios import soak
from scenarios.environment import DrillError
from scenarios.soak import SoakOptions, option_problems, run_soak
from scenarios.verifycli import soak as soak_command


@pytest.fixture
def ran(monkeypatch, tmp_path):
    """run_soak stubbed: records the options it got and returns a passed soak."""
    calls: list[SoakOptions] = []

    def fake(opts):
        calls.append(opts)
        return soak.SoakResult(tmp_path, {"passed": True, "verdict": "passed"}, tmp_path / "soak.md", True)

    monkeypatch.setattr(soak, "run_soak", fake)
    return calls


def invoke(args):
    return CliRunner().invoke(soak_command, args)


@pytest.mark.parametrize("args, words", [
    (["--minutes", "0"], ["--minutes 0 is too short to measure memory", "at least 1.37 minutes", "--minutes 2"]),
    (["--minutes", "0.5"], ["--minutes 0.5 is too short", "pass --minutes 2"]),
    (["--minutes", "nan"], ["--minutes nan is not a number", "1.37 to 1440 minutes"]),
    (["--minutes", "-inf"], ["--minutes -inf is not a number"]),
    (["--minutes", "2000"], ["--minutes 2000 is out of range", "1.37 to 1440"]),
    (["--minutes", "abc"], ["'--minutes'", "'abc' is not a valid float", "tradedrill soak --help"]),
    (["--rate", "0"], ["--rate 0 is out of range", "1 to 500 signals/s"]),
    (["--rate", "inf"], ["--rate inf is not a number"]),
    (["--every", "2"], ["--every 2 is out of range", "5 to 600 s"]),
    (["--every", "nan"], ["--every nan is not a number"]),
    (["--seed", "-1"], ["--seed -1 must be an integer from 0 to 4294967295"]),
    (["--seed", "4294967296"], ["--seed 4294967296 must be an integer from 0 to 4294967295"]),
    (["--seed", "99999999999999999999999"], ["--seed 99999999999999999999999 must be an integer from 0 to 4294967295"]),
    (["--seed", "1.5"], ["'--seed'", "not a valid integer"]),
    (["--subnet", "10.0.0"], ["--subnet", "not loopback", "127.0.95"]),
    (["--subnet", "127.0.95.1"], ["--subnet", "three octets"]),
    (["--subnet", ""], ["--subnet", "three octets"]),
    (["--nope"], ["No such option", "tradedrill soak --help"]),
    (["extra"], ["unexpected extra argument", "tradedrill soak --help"]),
    (["--minutes"], ["'--minutes' requires an argument", "tradedrill soak --help"]),
    # an argument with a line break is echoed escaped (the fuzz test below found "stray\n" printed over two lines)
    (["stray\n"], ["unexpected extra argument (stray\\n)"]),
    (["--subnet", "127.0.95\nx"], ["--subnet", "127.0.95\\nx"]),
    # "" is the current folder to pathlib: a new user's `--out ""` ran a whole soak into the clone's root
    (["--out", ""], ["--out is empty", "default out/soak"]),
    (["--out", "  "], ["--out is empty"]),
    (["--out", "/etc/hostname"], ["--out /etc/hostname is a file, not a folder"]),
])
def test_bad_options_are_refused_in_one_line_before_any_stack_starts(ran, args, words):
    got = invoke(args)
    assert got.exit_code == 2, got.output
    lines = got.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Usage:" not in got.output, got.output
    for word in words:
        assert word in lines[0], lines[0]
    assert ran == []


def test_an_every_longer_than_the_soak_is_accepted_as_a_load_only_soak(ran):
    got = invoke(["--minutes", "2", "--every", "600", "--subnet", "127.0.95"])
    assert got.exit_code == 0, got.output
    assert ran[0].every_s == 600 and ran[0].minutes == 2 and option_problems(ran[0]) == []
    assert "verdict: passed" in got.output


def test_run_soak_itself_refuses_bad_options_without_starting_anything(tmp_path):
    with pytest.raises(DrillError, match="--minutes 0 is too short"):
        run_soak(SoakOptions(minutes=0, out_dir=tmp_path / "out"))
    with pytest.raises(DrillError, match="--subnet"):
        run_soak(SoakOptions(subnet="192.168.1", out_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                    st.sampled_from(["", "nan", "inf", "-0", "1e309", "0x10", "1_000", " 2", "two", "2.0.0"]),
                    st.text(max_size=6))
subnets = st.one_of(st.sampled_from(["127.0.95", "127.0.0", "127.255.255", "10.0.0", "127.0.95.1", "127.0", "::1",
                                     "127.0.256", "127.0.-1", "localhost", ""]),
                    st.tuples(*[st.integers(-1, 300)] * 3).map(lambda o: ".".join(map(str, o))),
                    st.text(max_size=12))
option = st.one_of(st.tuples(st.sampled_from(["--minutes", "--rate", "--every", "--seed"]), numbers),
                   st.tuples(st.just("--subnet"), subnets),
                   st.tuples(st.sampled_from(["--bogus", "-x", "stray"]), st.text(max_size=4)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=st.lists(option, max_size=5))
def test_any_arguments_are_a_soak_that_can_run_or_one_line_that_says_what_to_do(ran, opts):
    ran.clear()
    args = [part for pair in opts for part in pair]
    got = invoke(args)
    assert got.exception is None or isinstance(got.exception, SystemExit), got.exception
    assert "Traceback" not in got.output and "Usage:" not in got.output, got.output
    if got.exit_code == 2:
        lines = got.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), got.output
        assert ran == []
    else:
        assert got.exit_code == 0, got.output
        assert len(ran) == 1 and option_problems(ran[0]) == [], ran
        assert isinstance(ran[0].out_dir, Path)


def test_the_largest_seed_is_accepted(ran):
    got = invoke(["--seed", "4294967295"])
    assert got.exit_code == 0, got.output
    assert ran[0].seed == 2**32 - 1 and option_problems(ran[0]) == []
