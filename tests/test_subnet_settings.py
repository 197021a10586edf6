"""The test run's subnet settings (``TRADEDRILL_*_SUBNET``) are checked before any stack starts: a bad one is one
line naming the variable (a new user's ``TRADEDRILL_STATEFUL_SUBNET=10.0.0`` was a 45-line setup error)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import subnet_settings_problem

ROOT = Path(__file__).resolve().parents[1]


def test_bad_subnet_settings_are_named_and_good_ones_pass():
    assert subnet_settings_problem({"TRADEDRILL_STATEFUL_SUBNET": "127.0.140", "PATH": "x"}) is None
    assert subnet_settings_problem({"TRADEDRILL_KILLED_PYTEST_SUBNETS": "127.0.127,127.0.128"}) is None
    assert subnet_settings_problem({"TRADEDRILL_DOCKER_SUBNET": "172.30.17"}) is None
    for key, value, says in (("TRADEDRILL_STATEFUL_SUBNET", "10.0.0", "is not loopback"),
                             ("TRADEDRILL_STATEFUL_SUBNET", "abc", "must be three octets"),
                             ("TRADEDRILL_SOAK_SUBNET", "127.0.999", "must be three octets"),
                             ("TRADEDRILL_KILLED_PYTEST_SUBNETS", "127.0.127,10.1.1", "is not loopback"),
                             ("TRADEDRILL_DOCKER_SUBNET", "127.0.5", "docker provider")):
        problem = subnet_settings_problem({key: value})
        assert problem and problem.startswith(f"{key}=") and says in problem and "unset it" in problem, problem


def test_pytest_refuses_a_bad_subnet_setting_in_one_line_before_any_test():
    env = {**os.environ, "TRADEDRILL_STATEFUL_SUBNET": "10.0.0", "PYTHONPATH": str(ROOT)}
    got = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--co",
                          "tests/test_subnet_settings.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    lines = [line for line in (got.stdout + got.stderr).splitlines() if line.strip()]
    assert got.returncode == 4 and len(lines) == 1 and "TRADEDRILL_STATEFUL_SUBNET='10.0.0'" in lines[0], lines
