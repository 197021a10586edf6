"""``tradedrill replay``'s folders and engines, checked before any stack starts: every replay writes a new
``replay-<n>`` folder (inside RUN_DIR, or inside --out), never into one an earlier run wrote; a --out that cannot
hold it and a recorded engine this checkout cannot run are refused in one line (exit 2). No stack here: the replay
itself is replaced by a recorder where one would start."""
from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from scenarios import stateful
from scenarios.environment import DrillError
from scenarios.verifycli import replay
from tests.stateful.conftest import SUBNET

SCHEDULE = {"seed": 1, "steps": [], "load_per_s": 5.0}


def _variant(name: str) -> dict:
    from tests.stateful.conftest import REPO

    return {"command": [sys.executable, "-m", "tests.variants.engines", name], "env": {"PYTHONPATH": str(REPO)},
            "overrides": {}, "signal_of": None}


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "example-006"
    folder.mkdir()
    (folder / "schedule.json").write_text(json.dumps(SCHEDULE))
    return folder


@pytest.fixture
def stacks(monkeypatch):
    """Where each replay would have started its stack (the folder it was given, then empty), instead of one."""
    started = []

    def fake(run_dir, *, subnet, out_dir, say=None, engine=None):
        started.append((out_dir, sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else None))
        (out_dir / "example-001").mkdir(parents=True)   # what a real replay writes
        raise DrillError("stopped here: no stack in this test")

    monkeypatch.setattr(stateful, "replay", fake)
    return started


def test_two_replays_with_the_same_out_write_two_fresh_folders(tmp_path, run_dir, stacks):
    out = tmp_path / "rep1"
    for _ in range(2):
        CliRunner().invoke(replay, [str(run_dir), "--out", str(out)])
    assert [w for w, _ in stacks] == [out / "replay-1", out / "replay-2"]
    assert all(before == [] for _, before in stacks)   # each began empty: nothing of the other run in it


def test_two_replays_without_out_write_two_fresh_folders_even_after_one_was_removed(run_dir, stacks):
    (run_dir / "replay-2").mkdir()   # replay-1 removed by hand: counting folders would pick replay-2 again
    for _ in range(2):
        CliRunner().invoke(replay, [str(run_dir)])
    assert [w.name for w, _ in stacks] == ["replay-1", "replay-3"] and all(b == [] for _, b in stacks)


def test_a_replay_into_a_folder_a_run_wrote_is_refused(tmp_path, run_dir):
    used = tmp_path / "used"
    (used / "example-001").mkdir(parents=True)
    with pytest.raises(DrillError, match="not empty"):
        stateful.replay(run_dir, subnet=SUBNET, out_dir=used)   # refused before a stack starts
    with pytest.raises(DrillError, match="already holds a run"):
        stateful._fresh(used / "example-001" / "..")
    assert stateful._fresh(tmp_path / "new") == tmp_path / "new"


@pytest.mark.parametrize("out, says", [("/etc/passwd", "is a file"), ("/proc/nope", "cannot make a folder"),
                                       ("", "empty path"), ("   ", "empty path")])
def test_an_out_that_cannot_hold_a_replay_is_refused_in_one_line(tmp_path, run_dir, stacks, monkeypatch, out, says):
    monkeypatch.chdir(tmp_path)
    got = CliRunner().invoke(replay, [str(run_dir), "--out", out])
    assert got.exit_code == 2 and says in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1 and "Traceback" not in got.output
    assert not stacks and sorted(p.name for p in tmp_path.iterdir()) == ["example-006"]   # nothing written here


def test_a_refused_schedule_leaves_no_empty_replay_folder(run_dir, monkeypatch):
    monkeypatch.setattr(stateful, "StatefulSession", lambda *a, **k: pytest.fail("a stack was started"))
    (run_dir / "schedule.json").write_text(json.dumps({**SCHEDULE, "engine": {"command": ["/bin/false"]}}))
    got = CliRunner().invoke(replay, [str(run_dir)])
    assert got.exit_code == 2 and not list(run_dir.glob("replay-*")), got.output


@pytest.mark.parametrize("engine, says", [
    ({"command": ["/bin/false"]}, "not an engine a schedule records"),
    ({"command": ["/nowhere/python3", "-m", "tests.variants.engines", "no-fencing"]}, None),   # this interpreter
    ({"command": [sys.executable, "-m", "tests.variants.nope", "x"]}, "is not an engine"),   # only the engine modules (ENGINE_MODULES)
    ("bogus", "not a variant of tests.variants.engines")])
def test_a_recorded_engine_this_checkout_cannot_run_is_refused_in_one_line_before_a_stack(run_dir, monkeypatch,
                                                                                          engine, says):
    monkeypatch.setattr(stateful, "StatefulSession", lambda *a, **k: pytest.fail("a stack was started"))
    if engine == "bogus":
        engine = _variant("bogus")
    elif says is None:
        engine = {**_variant("no-fencing"), "command": engine["command"]}
    (run_dir / "schedule.json").write_text(json.dumps({**SCHEDULE, "engine": engine}))
    if says is None:   # a known variant recorded elsewhere: it would run (a stack would start)
        assert stateful.engine_problem(stateful._this_checkout(engine)) is None
        return
    got = CliRunner().invoke(replay, [str(run_dir)])
    assert got.exit_code == 2 and says in got.output and "--reference" in got.output, got.output
    assert len(got.output.strip().splitlines()) == 1 and "Traceback" not in got.output


def test_every_variant_the_sweep_records_is_accepted():
    from tests.variants.engines import VARIANTS

    for name in VARIANTS:
        assert stateful.engine_problem(stateful._this_checkout(_variant(name))) is None, name
    assert stateful.engine_problem({"command": None}) is None   # the reference engine
