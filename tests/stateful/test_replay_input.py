"""``tradedrill replay RUN_DIR``'s input, schedule.json: a document that is not a replayable schedule is refused in
one line (exit 2) before any stack starts; every schedule a run writes is accepted (no stack here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import stateful
from scenarios.verifycli import replay

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                           max_leaves=12)


def test_a_folder_without_a_schedule_is_refused_in_one_line(tmp_path):
    got = CliRunner().invoke(replay, [str(tmp_path)])
    assert got.exit_code == 2 and "holds no schedule.json" in got.output and "Traceback" not in got.output


def test_the_steps_a_machine_writes_are_replayable():
    doc = {"seed": 3, "tag": "x00100003", "steps": [
        {"op": "submit", "kind": "limit", "signal": "s1", "side": "buy", "symbol": "EURUSD", "points": 200},
        {"op": "submit", "kind": "bad", "bad": "volume", "signal": "s2", "side": "buy", "symbol": "EURUSD"},
        {"op": "resubmit", "signal": "s1"}, {"op": "inject", "fault": "broker-requotes", "signal": "s3"},
        {"op": "inject", "fault": "engine-kill-in-flight", "signal": "s4"}, {"op": "heal"}, {"op": "wait", "s": 4.0}]}
    assert stateful.schedule_problems(doc) == []
    assert stateful.schedule_problems({**doc, "load_per_s": 5.0}) == []


def test_a_load_that_is_not_a_rate_is_refused_in_one_line(tmp_path):
    for bad in (-1, 101, "5", True):
        (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": [], "load_per_s": bad}))
        got = CliRunner().invoke(replay, [str(tmp_path)])
        assert got.exit_code == 2 and "load_per_s" in got.output and len(got.output.strip().splitlines()) == 1, (
            bad, got.output)


@settings(max_examples=150, deadline=None)
@given(doc=json_values | st.fixed_dictionaries({"seed": json_values, "steps": st.lists(
    st.dictionaries(st.sampled_from(["op", "kind", "signal", "side", "symbol", "fault", "s", "bad", "points"]),
                    json_values | st.sampled_from(["submit", "inject", "wait", "heal", "resubmit", "market",
                                                   "engine-kill", "buy", "EURUSD", "s1"]), max_size=6),
    max_size=5)}))
def test_any_other_document_is_refused_in_one_line_before_a_stack_starts(tmp_path_factory, doc):
    problems = stateful.schedule_problems(doc)
    if not problems:
        return   # a replayable schedule (it would start a stack: not here)
    folder = tmp_path_factory.mktemp("run")
    (folder / "schedule.json").write_text(json.dumps(doc))
    got = CliRunner().invoke(replay, [str(folder)])
    assert got.exit_code == 2, got.output
    assert "cannot be replayed" in got.output and "Traceback" not in got.output
    assert len(got.output.strip().splitlines()) == 1


def test_a_number_of_attempts_out_of_range_is_refused_in_one_line(tmp_path):
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    for bad in ("0", "11", "two"):
        got = CliRunner().invoke(replay, [str(tmp_path), "--attempts", bad])
        assert got.exit_code == 2 and "--attempts" in got.output, (bad, got.output)
        assert len(got.output.strip().splitlines()) == 1 and "Traceback" not in got.output, got.output


def test_a_bad_subnet_or_a_missing_folder_is_refused_in_one_line_before_a_stack_starts(tmp_path):
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    for args in ([str(tmp_path), "--subnet", "10.0.0"], [str(tmp_path), "--subnet", "foo"],
                 [str(tmp_path / "nowhere")]):
        got = CliRunner().invoke(replay, args)
        assert got.exit_code == 2 and "Traceback" not in got.output, (args, got.output)
        assert len(got.output.strip().splitlines()) == 1, got.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schedule.json"]   # nothing half-made


def test_a_recorded_variant_runs_from_this_checkout_with_this_interpreter():
    import sys
    from pathlib import Path

    recorded = {"command": ["/elsewhere/.venv/bin/python", "-m", "tests.variants.engines", "no-fencing"],
                "env": {"PYTHONPATH": "/elsewhere"}, "overrides": {}, "signal_of": None}
    got = stateful._this_checkout(recorded)
    here = str(Path(stateful.__file__).resolve().parents[1])
    assert got["command"] == [sys.executable, "-m", "tests.variants.engines", "no-fencing"]
    assert got["env"]["PYTHONPATH"].split(":")[0] == here and "/elsewhere" not in got["env"]["PYTHONPATH"]
    assert recorded["command"][0] == "/elsewhere/.venv/bin/python"   # the schedule itself is not changed


def test_a_schedule_without_a_seed_is_refused_not_replayed_with_seed_0(tmp_path):
    """New user's finding: ``{"steps": []}`` replayed with seed 0 without a word."""
    (tmp_path / "schedule.json").write_text(json.dumps({"steps": [], "engine": {}}))
    got = CliRunner().invoke(replay, [str(tmp_path)])
    assert got.exit_code == 2 and "seed: missing" in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1


def test_an_engine_command_that_is_not_an_engine_is_refused_and_a_variant_is_found_without_pythonpath():
    """New user's finding: ``python -m json.tool`` was accepted (the stack then crash-looped its engines), and
    ``python -m tests.variants.engines no-fencing`` without env.PYTHONPATH was refused as "not in this checkout"."""
    import sys

    for module in ("json.tool", "http.server"):
        problem = stateful.engine_problem({"command": [sys.executable, "-m", module], "env": {"PYTHONPATH": "/x"}})
        assert problem and "is not an engine" in problem, problem
    assert stateful.engine_problem({"command": [sys.executable, "-m", "tests.variants.engines", "no-fencing"]}) is None
    assert "not a variant" in stateful.engine_problem(
        {"command": [sys.executable, "-m", "tests.variants.engines", "no-such-bug"]})


def _fake_results(recorded, symptoms_per_attempt):
    from types import SimpleNamespace

    return [stateful.ReplayResult(Path("/r"), SimpleNamespace(symptoms=s, steps=[], run_dir=Path(f"/r/a{k}")),
                                  [], bool(s), recorded)
            for k, s in enumerate(symptoms_per_attempt, start=1)]


@pytest.mark.parametrize("recorded", ["passed", "none"])
def test_a_replay_of_an_example_that_recorded_no_failure_claims_no_symptom(tmp_path, monkeypatch, recorded):
    """New users' finding: ``replay --reference`` of a passing example (or a hand-written schedule) said "expected: a
    failure" and "the symptom is the recorded engine's" though nothing was recorded or found; it now says what was
    recorded and judges the replay as a run (exit 0 when it passes)."""
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    monkeypatch.setattr(stateful, "replay_attempts", lambda *a, **k: _fake_results(recorded, [[], []]))
    got = CliRunner().invoke(replay, [str(tmp_path), "--reference", "--attempts", "2", "--out", str(tmp_path / "o")])
    assert got.exit_code == 0, got.output
    assert "expected: a failure" not in got.output and "recorded engine's" not in got.output
    assert "passes this schedule in 2 of 2" in got.output
    failing = _fake_results(recorded, [[{"checker": "duplicates", "summary": "1 signal(s) ordered twice"}]])
    monkeypatch.setattr(stateful, "replay_attempts", lambda *a, **k: failing)
    got = CliRunner().invoke(replay, [str(tmp_path), "--out", str(tmp_path / "p")])
    assert got.exit_code == 1 and "fails this schedule in 1 of 1" in got.output and "recorded no failure" in got.output


@pytest.mark.parametrize("verdict", ['{"symptoms": ["duplicates"]}', '{"symptoms": [{"checker": 3}]}',
                                     '{"symptoms": [], "judged": "duplicates"}', '[1, 2]', 'not json'])
def test_a_verdict_a_stateful_example_did_not_write_is_refused_in_one_line(tmp_path, verdict):
    """New user's finding: ``"symptoms": ["duplicates"]`` in verdict.json was a TypeError traceback (exit 1) that
    left an empty replay-<n> folder."""
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    (tmp_path / "verdict.json").write_text(verdict)
    got = CliRunner().invoke(replay, [str(tmp_path), "--reference"])
    assert got.exit_code == 2 and "verdict.json" in got.output and "Traceback" not in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("replay-*"))


@pytest.mark.parametrize("name", ["schedule.json", "verdict.json"])
def test_a_folder_named_like_the_schedule_or_verdict_is_refused_in_one_line(tmp_path, name):
    """A new user's finding: ``schedule.json`` made a folder was an IsADirectoryError traceback (exit 1) and left an
    empty replay-<n> each time."""
    if name != "schedule.json":
        (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    (tmp_path / name).mkdir()
    got = CliRunner().invoke(replay, [str(tmp_path)])
    assert got.exit_code == 2 and f"{name} is not a file" in got.output and "Traceback" not in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("replay-*"))
    with pytest.raises(stateful.DrillError, match=f"{name} cannot be read"):   # the library's own check
        stateful.replay(tmp_path, subnet="127.0.94", out_dir=tmp_path / "r")


def test_a_file_given_as_the_run_folder_is_named_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    got = CliRunner().invoke(replay, [str(tmp_path / "afile")])
    assert got.exit_code == 2 and "is a file, not a folder" in got.output, got.output


@pytest.mark.parametrize("attempts", [[], ["--attempts", "3"]])
def test_a_replay_says_in_which_attempt_it_reproduced_with_or_without_attempts(tmp_path, monkeypatch, attempts):
    """A new user's finding: ``replay`` without --attempts printed "reproduced" alone, with --attempts 3 "reproduced
    in 1 of 1 attempt(s) (attempt 1)"; both say the attempt now, and "not reproduced" says how many were made."""
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": []}))
    symptom = [{"checker": "duplicates", "summary": "1 signal(s) ordered twice"}]
    monkeypatch.setattr(stateful, "replay_attempts", lambda *a, **k: _fake_results("failed", [symptom]))
    got = CliRunner().invoke(replay, [str(tmp_path), "--out", str(tmp_path / "o"), *attempts])
    assert got.exit_code == 0 and "reproduced in 1 of 1 attempt(s) (attempt 1)" in got.output, got.output
    monkeypatch.setattr(stateful, "replay_attempts", lambda *a, **k: _fake_results("failed", [[], []]))
    got = CliRunner().invoke(replay, [str(tmp_path), "--out", str(tmp_path / "p"), *attempts])
    assert got.exit_code == 1 and "not reproduced in 2 attempt(s)" in got.output, got.output


@pytest.mark.parametrize("engine, says", [
    ({"env": {"PYTHONHOME": "/nonexistent"}}, "engine.env: 'PYTHONHOME' is not a variable a schedule records"),
    ({"env": {"LD_PRELOAD": "/tmp/x.so", "PYTHONPATH": "/x"}}, "engine.env: 'LD_PRELOAD'"),
    ({"env": ["PYTHONPATH"]}, "engine.env must be a table of text values"),
    ({"env": {"PYTHONPATH": 3}}, "engine.env must be a table of text values"),
    ({"overrides": {"no_such_field": 1}}, "engine.overrides: unknown configuration key(s): no_such_field"),
    ({"overrides": {"journal_memory_window": "x"}}, "engine.overrides: configuration key journal_memory_window"),
    ({"overrides": [1]}, "engine.overrides must be a table of engine settings"),
])
def test_an_engine_environment_or_setting_a_schedule_does_not_record_is_refused_before_a_stack(tmp_path, engine,
                                                                                                says):
    """A new user's finding: `replay` ran a schedule's engine.env and engine.overrides unchecked: PYTHONHOME made
    every engine crash-loop after the stack started (LD_PRELOAD would have run a shared schedule's code), and an
    unknown setting failed after the stack started with a literal "\\n" in the message. Refused in one line now,
    before any stack (exit 2), for the reference engine too."""
    (tmp_path / "schedule.json").write_text(json.dumps({"seed": 1, "steps": [], "engine": engine}))
    got = CliRunner().invoke(replay, [str(tmp_path), "--out", str(tmp_path / "o")])
    assert got.exit_code == 2 and says in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1 and "\\n" not in got.output, got.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("name", ["a" * 33, "信号", "x-y", ""])
def test_a_signal_name_the_engine_would_refuse_is_refused_before_a_stack(tmp_path, name):
    """A new user's finding: a step's signal of 201 characters, or 信号 (str.isalnum accepts it), was submitted,
    "acknowledged", refused by the engine (signal ids are 1-64 of [A-Za-z0-9_.:-]) under signal_id "", and counted
    lost: replay said the recorded engine fails the schedule. Names are 1-32 ASCII letters and digits now."""
    doc = {"seed": 1, "steps": [{"op": "submit", "kind": "market", "signal": name, "side": "buy",
                                 "symbol": stateful.SYMBOLS[0]}]}
    assert any("signal" in p and "ASCII" in p for p in stateful.schedule_problems(doc)), stateful.schedule_problems(doc)
    (tmp_path / "schedule.json").write_text(json.dumps(doc))
    got = CliRunner().invoke(replay, [str(tmp_path)])
    assert got.exit_code == 2 and "cannot be replayed" in got.output, got.output
    ok = {**doc, "steps": [{**doc["steps"][0], "signal": "s" * 32}]}
    assert stateful.schedule_problems(ok) == []


def test_an_interrupted_replay_says_what_it_marked_from_its_files(tmp_path):
    """A new user's Ctrl-C while attempt 2's stack started: "the cut run is marked interrupted" of a folder with no
    status.json, and not a word of attempt 1's verdict. The line now says what the files hold."""
    from scenarios.verifycli import _interrupted_where

    one = tmp_path / "attempt-1" / "example-001"
    one.mkdir(parents=True)
    (one / "status.json").write_text(json.dumps({"state": "complete"}))
    (one / "verdict.json").write_text(json.dumps({"symptoms": []}))
    (tmp_path / "attempt-2" / "stack").mkdir(parents=True)   # its stack was starting: no example yet
    line = _interrupted_where(tmp_path)
    assert "before its example began: nothing to mark" in line and "1 attempt(s) had finished" in line, line
    assert str(one) in line
    two = tmp_path / "attempt-2" / "example-001"
    two.mkdir()
    (two / "status.json").write_text(json.dumps({"state": "interrupted"}))
    assert _interrupted_where(tmp_path).startswith(f"the cut example is marked interrupted in {two}")
