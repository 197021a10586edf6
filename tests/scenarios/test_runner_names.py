"""A scenario named twice on the command line runs once (found by a new user: both runs went to ``run-1`` and the
second overwrote the first while the check counted two)."""
from __future__ import annotations

from pathlib import Path

from scenarios import runner
from scenarios.runner import DrillOptions


def test_a_scenario_named_twice_runs_once_into_its_own_folders(tmp_path, monkeypatch):
    calls: list[tuple[str, Path]] = []

    def fake_run_once(scenario, run_path, seed, opts, repeat=0, load=None):
        calls.append((scenario.name, run_path))
        return run_path

    monkeypatch.setattr(runner, "run_once", fake_run_once)
    result = runner.run_drills(["engine-kill", "engine-pause", "engine-kill"],
                               DrillOptions(seed=5, repeat=2, out_dir=tmp_path))
    assert [name for name, _ in calls] == ["engine-kill", "engine-kill", "engine-pause", "engine-pause"]
    assert len({path for _, path in calls}) == 4, calls
    assert len(result.runs) == 4
