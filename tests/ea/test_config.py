"""``python -m reference.ea run`` with a bad config: one line on stderr and exit status 4, never a traceback, and no
event log written anywhere it was not asked to."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import EA_HOSTS


def run_ea(tmp_path, cfg: dict):
    path = tmp_path / "ea.json"
    path.write_text(json.dumps(cfg))
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    res = subprocess.run([sys.executable, "-m", "reference.ea", "run", "--config", str(path)], cwd=work,
                         capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(_root())})
    return res, work


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad, words", [
    ({"udp_bind": [EA_HOSTS[0], -5]}, "udp_bind must be [host, port] with a port from 0 to 65535"),
    ({"tcp_bind": [EA_HOSTS[0], 70000]}, "tcp_bind must be [host, port]"),
    ({"symbols": "EURUSD"}, "symbols must be a list of symbol names"),
    ({"symbols": ["EURUSD", ""]}, "symbols: each must be a name"),
    ({"state_dir": None}, "state_dir is required"),
])
def test_a_bad_ea_config_is_one_line_and_exit_4(tmp_path, bad, words):
    cfg = {"symbols": ["EURUSD"], "udp_bind": [EA_HOSTS[0], 0], "tcp_bind": [EA_HOSTS[0], 0],
           "state_dir": str(tmp_path / "state"), "max_runtime_s": 0.1, **bad}
    if bad.get("state_dir", "") is None:
        del cfg["state_dir"]
    res, work = run_ea(tmp_path, cfg)
    assert res.returncode == 4, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert not list(work.iterdir())  # nothing written into the current directory
