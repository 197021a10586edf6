"""TRADEDRILL_VARIANT_SEARCH_S: any value is a number of seconds from 1 to 86,400 or one line (exit 4) before the
sweep collects anything (a new user's finding: "abc" was a collection traceback, 0 and -5 started a search)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from tests.variants import conftest as sweep

ROOT = Path(__file__).resolve().parents[2]


@given(st.one_of(st.text(st.characters(blacklist_characters="\x00"), max_size=12),   # an environment holds no NUL st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.integers(-10, 100_000).map(str)))
def test_a_search_budget_is_seconds_in_range_or_a_one_line_refusal(text):
    old = os.environ.get(sweep.SEARCH_ENV)
    os.environ[sweep.SEARCH_ENV] = text
    try:
        try:
            value = sweep.search_budget_s()
        except ValueError as exc:
            assert "\n" not in str(exc) and sweep.SEARCH_ENV in str(exc) and "from 1 to 86400" in str(exc)
        else:
            assert math.isfinite(value) and 1 <= value <= 86_400 and value == float(text)
    finally:
        if old is None:
            os.environ.pop(sweep.SEARCH_ENV, None)
        else:
            os.environ[sweep.SEARCH_ENV] = old


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "nan"])
def test_the_sweep_refuses_a_bad_budget_before_collecting(bad):
    env = {**os.environ, "TRADEDRILL_VARIANT_SWEEP": "1", sweep.SEARCH_ENV: bad}
    got = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                          "tests/variants/test_catch_rate.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert got.returncode == 4, got.stdout + got.stderr
    assert "Traceback" not in got.stdout + got.stderr
    assert [ln for ln in (got.stdout + got.stderr).splitlines() if ln.strip()] == [
        f"ERROR: {sweep.SEARCH_ENV}={bad!r}: give the seconds of search a variant gets, a number from 1 to 86400 "
        f"(default 300)"]
