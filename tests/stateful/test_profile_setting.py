"""TRADEDRILL_STATEFUL_PROFILE: a name of ``scenarios.stateful.PROFILES`` or one line (exit 4) before any test is
collected or any stack starts (the second new user: an unknown profile was found after the stack had started)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.stateful import PROFILES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad", ["nope", "", "CI"])
def test_an_unknown_profile_is_refused_before_collecting(bad):
    env = {**os.environ, "TRADEDRILL_STATEFUL_PROFILE": bad}
    got = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                          "tests/stateful/test_stateful.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert got.returncode == 4, got.stdout + got.stderr
    out = [ln for ln in (got.stdout + got.stderr).splitlines() if ln.strip()]
    assert out == [f"ERROR: TRADEDRILL_STATEFUL_PROFILE={bad!r} is not a stateful profile; give one of "
                   f"{', '.join(PROFILES)} (default ci)"], out


def test_a_known_profile_collects():
    env = {**os.environ, "TRADEDRILL_STATEFUL_PROFILE": "dev"}
    got = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                          "tests/stateful/test_stateful.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert got.returncode == 0 and "test_the_reference_engine_holds" in got.stdout, got.stdout + got.stderr
