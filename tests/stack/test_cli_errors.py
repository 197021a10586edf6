"""``tradedrill up`` with bad input: one line on stderr, exit status 2, no traceback, nothing written.

In-process through click's runner (no service binaries needed): every case fails before the stack folder exists.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from tradedrill.stackcli import up


def run_up(tmp_path, *args):
    stack_dir = tmp_path / "stack"
    result = CliRunner().invoke(up, ["--dir", str(stack_dir), *args])
    return result, stack_dir


def assert_one_line_error(result, stack_dir, *expected):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit)
    err = result.stderr
    assert err.startswith("tradedrill: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in result.output
    for text in expected:
        assert text in err, err
    assert not stack_dir.exists(), "a refused `up` writes nothing"


@pytest.mark.parametrize("args, expected", [
    (["--set", "sentinel.down_after_ms=soon"], ["sentinel.down_after_ms='soon'", "must be an integer"]),
    (["--set", "sentinel.quorum=4"], ["sentinel.quorum=4", "from 1 to sentinel.count (3)"]),
    (["--set", "redis.save=60 1000\nreplicaof 10.0.0.1 6379"], ["redis.save=", "\\n", "control character"]),
    (["--set", "redis.appendfsync=sometimes"], ["one of always, everysec, no"]),
    (["--set", "redis.maxmemory_policy=lru"], ["one of volatile-lru"]),
    (["--set", "redis.port=70000"], ["redis.port='70000'", "from 1 to 65535"]),
    (["--set", "redis.appendonly=1"], ["one of yes, no"]),
    (["--set", "ready.timeout_s=-1"], ["greater than 0"]),
    (["--set", "nosuch.key=1"], ["unknown setting 'nosuch.key'"]),
    (["--set", "oops"], ["KEY=VALUE"]),
    (["--services", "redis,engine"], ["needs 'mt5'"]),
    (["--services", "redis,kafka"], ["unknown service 'kafka'"]),
    (["--services", ""], ["no service chosen"]),
    (["--subnet", "10.0.0"], ["not loopback"]),
])
def test_bad_command_line_settings(tmp_path, args, expected):
    assert_one_line_error(*run_up(tmp_path, *args), *expected)


@pytest.mark.parametrize("text, expected", [
    ('[topology]\nservices = "redis"\n', "not the string 'redis'"),
    ('settings = "sentinel.down_after_ms=1000"\n', "'settings' must be a table"),
    ('topology = ["redis"]\n', "'topology' must be a table"),
    ('[settings.redis]\nsave = "60 1000\\nappendonly no"\n', "control character"),
    ('[topology\n', "not valid TOML"),
])
def test_bad_topology_files(tmp_path, text, expected):
    f = tmp_path / "t.toml"
    f.write_text(text)
    assert_one_line_error(*run_up(tmp_path, "--topology", str(f)), str(f), expected)


def test_a_topology_path_that_is_a_folder_or_not_utf8(tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    assert_one_line_error(*run_up(tmp_path, "--topology", str(folder)), "is a folder")
    latin = tmp_path / "t.toml"
    latin.write_bytes(b'[settings]\n"sentinel.master_name" = "caf\xe9"\n')
    assert_one_line_error(*run_up(tmp_path, "--topology", str(latin)), "is not UTF-8 text")


def test_a_stack_dir_that_is_a_file(tmp_path):
    f = tmp_path / "stack"
    f.write_text("")
    result = CliRunner().invoke(up, ["--dir", str(f), "--services", "redis"])
    assert result.exit_code == 2 and "is a file" in result.stderr and "Traceback" not in result.output
    assert f.read_text() == ""
