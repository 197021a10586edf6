"""tradedrill scenarios / check / drill, without the stack."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from scenarios import cli, registry, synthetic


def test_scenarios_lists_the_registry():
    result = CliRunner().invoke(cli.scenarios, [])
    assert result.exit_code == 0
    for name in ("engine-kill", "engine-pause", "redis-primary-kill", "lost-reply", "engine-pause-in-flight",
                 "engine-pause-repeated", "engine-kill-reading", "broker-backup-down-primary-ambiguous",
                 "engine-pause-during-failover", "redis-restart-in-flight"):
        assert name in result.output


def test_check_passes_a_clean_run_and_fails_a_duplicate(tmp_path):
    synthetic.write_run(tmp_path / "clean", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    ok = CliRunner().invoke(cli.check, [str(tmp_path / "clean")])
    assert ok.exit_code == 0, ok.output
    assert "no target missed" in ok.output
    synthetic.write_run(tmp_path / "dup", scenario="lost-reply", duplicate=["s-1-0004"], rate_per_s=5.0)
    bad = CliRunner().invoke(cli.check, [str(tmp_path / "dup"), "--report", str(tmp_path / "report")])
    assert bad.exit_code == 1
    assert "s-1-0004" in bad.output and (tmp_path / "report" / "report.html").exists()


def test_check_explains_a_missing_directory(tmp_path):
    result = CliRunner().invoke(cli.check, [str(tmp_path / "nope")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_drill_refuses_an_unknown_scenario():
    result = CliRunner().invoke(cli.drill, ["no-such-scenario"])
    assert result.exit_code != 0 and "engine-kill" in result.output


# -- a run that cannot be judged never looks green ---------------------------------------------------------------
def _check(path):
    return CliRunner().invoke(cli.check, [str(path)])


def test_check_on_an_empty_folder_exits_2_and_says_why(tmp_path):
    result = _check(tmp_path)
    assert result.exit_code == 2, result.output
    assert "no run under" in result.output and "Traceback" not in result.output


def test_check_on_a_run_with_only_scenario_json_exits_2(tmp_path):
    from scenarios.history import RunDir
    from scenarios import registry
    RunDir.create(tmp_path / "r", seed=1, scenario=registry.get("engine-kill").to_dict())
    result = _check(tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert "invalid run" in result.output and "history.jsonl" in result.output
    assert "no target missed" not in result.output


def test_check_on_an_empty_history_and_fault_log_exits_2(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", rate_per_s=5.0)
    for name in ("history.jsonl", "faults.jsonl"):
        (tmp_path / "r" / name).write_text("")
    result = _check(tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert "history.jsonl is empty" in result.output
    assert "fault log shows 0 injected" in result.output


def test_check_on_an_interrupted_run_exits_2(tmp_path):
    from scenarios.history import RunDir
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    RunDir(tmp_path / "r").mark("interrupted", phase="load", reason="SIGINT")
    result = _check(tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert "interrupted during load" in result.output


def test_backlog_is_reported_not_lost(tmp_path):
    from scenarios.checkers import check_run
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0,
                        backlog=["s-1-0090", "s-1-0091"], lose=["s-1-0010"])
    rc = check_run(tmp_path / "r")
    lost = next(r for r in rc.results if r.checker == "lost_signals")
    assert lost.lost == ["s-1-0010"]
    assert lost.metrics["backlog_signals"] == 2 and "backlog 2" in lost.summary


def test_a_checker_without_evidence_is_unmeasured_never_pass(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "r" / "ledger.jsonl").unlink()
    from scenarios.checkers import check_run
    rc = check_run(tmp_path / "r")
    for name in ("duplicates", "lost_signals", "state"):
        res = next(r for r in rc.results if r.checker == name)
        assert res.valid == "unknown", (name, res.summary)
        assert res.judgements and all(j.verdict == "unmeasured" and "ledger" in j.reason for j in res.judgements)


def test_a_raising_checker_is_unknown_with_the_error(tmp_path, monkeypatch):
    from scenarios import checkers
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)

    def broken(view, params, rids, targets):
        raise RuntimeError("boom")

    monkeypatch.setitem(checkers.CHECKERS, "state", checkers.Checker("state", broken, ("state_mismatches",), "x"))
    rc = checkers.check_run(tmp_path / "r")
    res = next(r for r in rc.results if r.checker == "state")
    assert res.valid == "unknown" and "boom" in res.summary
    assert next(r for r in rc.results if r.checker == "duplicates").valid is True


# -- issue 10: damaged run files are one line naming the file and line -----------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("[1, 2]", "history.jsonl:2 is list"),
    ('{"type": "invoke", "op": 99, "process": "c", "f": "trade", "key": "k"}', "history.jsonl:2 has no numeric 'mono'"),
    ('{"type": "ok", "op": 99, "mono": "soon"}', "history.jsonl:2 has no numeric 'mono'"),
])
def test_check_names_the_file_and_line_of_a_bad_history_line(tmp_path, line, expected):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    hist = tmp_path / "r" / "history.jsonl"
    lines = hist.read_text().splitlines()
    hist.write_text("\n".join([lines[0], line, *lines[1:]]) + "\n")
    result = CliRunner().invoke(cli.check, [str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_check_report_to_an_unwritable_path_is_one_line(tmp_path):
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli.check, [str(tmp_path / "r"), "--report", str(tmp_path / "file" / "sub")])
    assert result.exit_code == 2 and "cannot write the report" in result.output, result.output


def test_check_and_drill_say_a_file_is_not_a_folder_before_anything_else(tmp_path):
    """A new user's findings: `check FILE` said "no run under FILE"; `check RUN --report FILE` printed the whole
    results table, then "File exists"; `drill --out FILE` printed two progress lines before refusing."""
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "afile").write_text("x")
    got = CliRunner().invoke(cli.check, [str(tmp_path / "afile")])
    assert got.exit_code == 2 and "is a file, not a run folder" in got.output, got.output
    got = CliRunner().invoke(cli.check, [str(tmp_path / "r"), "--report", str(tmp_path / "afile")])
    assert got.exit_code == 2 and "--report" in got.output and "is a file, not a folder" in got.output, got.output
    assert "checked 1 run(s)" not in got.output, "judged before refusing"
    for out in (tmp_path / "afile", Path("/proc/nope")):
        got = CliRunner().invoke(cli.drill, ["engine-kill", "--subnet", "127.0.251", "--out", str(out)])
        assert got.exit_code == 2 and "--out" in got.output, got.output
        assert "runs" not in got.output.split("Error")[0], got.output   # no progress line before it


def test_drill_refuses_a_subnet_off_loopback_before_writing_anything(tmp_path):
    result = CliRunner().invoke(cli.drill, ["engine-kill", "--subnet", "10.0.0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "loopback" in result.output, result.output
    assert not (tmp_path / "o").exists()
    result = CliRunner().invoke(cli.drill, ["engine-kill", "--subnet", "garbage", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "garbage" in result.output and not (tmp_path / "o").exists()


def test_damaged_run_files_are_named_and_the_run_is_invalid(tmp_path):
    synthetic.write_run(tmp_path / "a", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "a" / "scenario.json").write_text("[]")
    r = CliRunner().invoke(cli.check, [str(tmp_path / "a")])
    assert r.exit_code == 2 and "scenario.json holds a JSON list" in r.output and "Traceback" not in r.output
    synthetic.write_run(tmp_path / "b", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    ledger = tmp_path / "b" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    r = CliRunner().invoke(cli.check, [str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    assert "ledger.jsonl cannot be read" in r.output and "ledger.jsonl:2 is not JSON" in r.output
    # a history of one garbage line (read as a torn last line) was called "empty" (a new user's finding)
    synthetic.write_run(tmp_path / "c", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "c" / "history.jsonl").write_text("garbage\n")
    r = CliRunner().invoke(cli.check, [str(tmp_path / "c")])
    assert r.exit_code == 2 and "history.jsonl holds no client operation: none of its 1 line(s)" in r.output, r.output
    assert "is empty" not in r.output
    (tmp_path / "c" / "history.jsonl").write_text("")
    r = CliRunner().invoke(cli.check, [str(tmp_path / "c")])
    assert r.exit_code == 2 and "history.jsonl is empty" in r.output, r.output


def test_drill_refuses_nan_and_an_unwritable_out(tmp_path):
    r = CliRunner().invoke(cli.drill, ["engine-kill", "--duration", "nan", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nan" in r.output and not (tmp_path / "o").exists()
    from scenarios.runner import DrillError, DrillOptions, run_once
    from scenarios import registry
    with pytest.raises(DrillError, match="cannot write the run folder"):
        run_once(registry.get("engine-kill"), Path("/proc/no-such/run"), 1, DrillOptions())


# -- --profile thorough: every scenario at least 20 runs, each with its own seed --------------------------------------
@pytest.mark.parametrize("args, runs", [([], 3), (["--repeat", "5"], 5), (["--profile", "thorough"], 20),
                                        (["--profile", "thorough", "--repeat", "4"], 20),
                                        (["--profile", "thorough", "--repeat", "25"], 25)])
def test_drill_profile_sets_the_runs_per_scenario(monkeypatch, tmp_path, args, runs):
    from scenarios import runner

    seen = {}

    def fake_run_drills(names, opts, load=None):
        seen.update(names=names, repeat=opts.repeat)
        raise runner.DrillError("stopped by the test")

    monkeypatch.setattr(runner, "run_drills", fake_run_drills)
    result = CliRunner().invoke(cli.drill, ["--all", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert seen["repeat"] == runs
    assert len(seen["names"]) == len(registry.all_scenarios()) >= 10


def test_run_drills_gives_every_repeat_its_own_seed(monkeypatch, tmp_path):
    from scenarios import runner

    seeds = []
    monkeypatch.setattr(runner, "run_once", lambda scenario, path, seed, opts, repeat=0, load=None: seeds.append(seed))
    runner.run_drills(["engine-pause"], runner.DrillOptions(seed=11, repeat=cli.runs_per_scenario("thorough", None),
                                                            out_dir=tmp_path))
    assert len(seeds) == 20 and len(set(seeds)) == 20


@pytest.mark.parametrize("args", [["--repeat", "x", "engine-kill"], ["--bogus", "engine-kill"], [],
                                  ["--spawn-rate", "3", "engine-kill"], ["--rate", "nan", "engine-kill"],
                                  ["--provider", "external", "engine-kill"], ["engine-kill", "--seed", "-1"]])
def test_bad_drill_options_are_one_line_with_exit_2_and_no_usage_block(args):
    """A new user got click's 4-line usage block from `tradedrill drill` where soak and replay say one line."""
    result = CliRunner().invoke(cli.drill, [*args, "--subnet", "127.0.119"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Usage:" not in result.output, result.output
    assert "tradedrill drill --help" in lines[0]


def test_a_text_setting_shows_the_value_read_not_n_0():
    """A new user read `RDS-3 appendfsync == always  n 0  pass` in `tradedrill check`: a text setting has no
    distribution; the console now shows what was read, as the HTML report does."""
    from types import SimpleNamespace

    from rich.console import Console

    dist = SimpleNamespace(n=0, min=None, median=None, p95=None, max=None)
    v = SimpleNamespace(distribution=dist, lower_bounds=0, alternatives=[], scenario="engine-kill",
                        requirement_id="RDS-3", target_label="appendfsync == always", source="EA-BR 3.1",
                        verdict="pass", overridden=[], read="read always (1 run, 3 nodes each)")
    console = Console(width=400, record=True)
    cli._print_verdicts(console, [v])
    text = console.export_text()
    assert "read always (1 run, 3 nodes each)" in text and "│ 0 " not in text, text


def test_an_empty_or_too_long_folder_is_refused_in_one_line_by_drill_check_soak_and_replay(tmp_path, monkeypatch):
    """A new user's findings: `drill --out ''` started a stack and wrote its run folder into the current folder
    (Path('') is '.'), `check RUN --report ''` wrote the report there; an --out with a 300-character component was
    a traceback (OSError 36) and exit 1, which these commands use for a missed target or a failed verdict."""
    from scenarios.verifycli import replay, soak

    monkeypatch.chdir(tmp_path)
    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "r" / "schedule.json").write_text('{"seed": 1, "steps": []}')
    long = str(tmp_path / ("x" * 300) / "out")
    for command, args in ((cli.drill, ["engine-kill", "--subnet", "127.0.251", "--out"]),
                          (cli.check, [str(tmp_path / "r"), "--report"])):
        for value, says in (("", "an empty path"), ("  ", "an empty path"), (long, "File name too long")):
            got = CliRunner().invoke(command, [*args, value])
            assert got.exit_code == 2 and says in got.output and "Traceback" not in got.output, (args, got.output)
    for command, args in ((soak, ["--minutes", "2", "--subnet", "127.0.251", "--out", long]),
                          (replay, [str(tmp_path / "r"), "--subnet", "127.0.251", "--out", long])):
        got = CliRunner().invoke(command, args)
        assert got.exit_code == 2 and "File name too long" in got.output, (args, got.output)
        assert len(got.output.strip().splitlines()) == 1, got.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]      # nothing written into the current folder
