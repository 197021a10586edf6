"""tradedrill scenarios / check / drill, without the stack."""
from __future__ import annotations

from click.testing import CliRunner

from scenarios import cli, synthetic


def test_scenarios_lists_the_registry():
    result = CliRunner().invoke(cli.scenarios, [])
    assert result.exit_code == 0
    for name in ("engine-kill", "engine-pause", "redis-primary-kill", "lost-reply"):
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
