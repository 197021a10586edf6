"""`tradedrill down`'s inputs (a new user's findings): a subnet that is not one is refused in one line, and a
`--dir` holding no stack says so before naming anything else that still runs."""
from __future__ import annotations

from click.testing import CliRunner

from tradedrill.stackcli import down


def test_a_subnet_that_is_not_one_is_refused_in_one_line():
    for bad in ("127.0.300", "127.0", "10.0.0", "127.0.95.1"):
        result = CliRunner().invoke(down, ["--subnet", bad])
        assert result.exit_code == 2, (bad, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tradedrill: --subnet:"), (bad, result.output)
        assert "nothing was running" not in result.output


def test_a_dir_with_no_stack_says_so(tmp_path):
    empty = tmp_path / "no-stack-here"
    empty.mkdir()
    result = CliRunner().invoke(down, ["--dir", str(empty), "--subnet", "127.0.251"])
    assert result.exit_code == 0, result.output
    assert f"no stack in {empty}: nothing recorded there to stop" in result.output, result.output
    assert list(empty.iterdir()) == [], "down wrote into a folder that held no stack"
