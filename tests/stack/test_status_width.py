"""`tradedrill status` piped or at 80 columns printed `127.0.122…` and `mt5-prima…`: every value must be whole."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

import tradedrill.stackcli as stackcli

ROWS = [
    {"name": "mt5-primary", "kind": "mt5", "role": "broker (primary)", "address": "127.0.122.10:18812",
     "pid": 4194301, "process": "running", "health": "down (ConnectionRefusedError)"},
    {"name": "backend-supervisor", "kind": "supervisor", "role": "BE-1 (restarts the backends)",
     "address": "127.0.122.14", "pid": 4194302, "process": "running", "health": "ok"},
    {"name": "redis-1", "kind": "redis", "role": "primary", "address": "127.0.122.2:6379", "pid": 4194303,
     "process": "stopped", "health": "down"},
]


@pytest.mark.parametrize("columns", ["80", "40", None])
def test_status_piped_prints_every_value_whole(tmp_path, monkeypatch, columns):
    monkeypatch.setattr(stackcli, "status_rows", lambda stack_dir: (ROWS, ("127.0.122.2", 6379)))
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    stack_dir = tmp_path / "a" / "rather" / "long" / "run" / "folder" / "of" / "the" / "stack"
    result = CliRunner().invoke(stackcli.status, ["--dir", str(stack_dir)])
    out = result.output
    assert result.exit_code == 1, out   # a node is down
    assert "…" not in out, out
    for row in ROWS:
        for key in ("name", "role", "address", "health"):
            assert row[key] in out, (row[key], out)
    assert f"tradedrill stack ({stack_dir})" in out, out
    assert "Redis primary (as the Sentinels see it): 127.0.122.2:6379" in out
