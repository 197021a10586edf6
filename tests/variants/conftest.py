"""The variant sweep's settings from the environment, checked when pytest starts: a bad value is one line
(``ERROR: ...``, exit status 4) before any test is collected or any stack starts."""
from __future__ import annotations

import math
import os

import pytest

SEARCH_ENV = "TRADEDRILL_VARIANT_SEARCH_S"
SEARCH_DEFAULT_S = 300.0
SEARCH_RANGE_S = (1.0, 86_400.0)


def search_budget_s() -> float:
    """``TRADEDRILL_VARIANT_SEARCH_S``: seconds of stateful search a variant gets (no example starts after it), 300 by
    default. Raises ValueError (its message says what to give) unless it is a number of seconds from 1 to 86,400
    (a new user's finding: "abc" was a collection traceback, 0 and -5 started a search)."""
    text = os.environ.get(SEARCH_ENV)
    if text is None:
        return SEARCH_DEFAULT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not SEARCH_RANGE_S[0] <= value <= SEARCH_RANGE_S[1]:   # NaN too
        raise ValueError(f"{SEARCH_ENV}={text!r}: give the seconds of search a variant gets, a number from "
                         f"{SEARCH_RANGE_S[0]:g} to {SEARCH_RANGE_S[1]:g} (default {SEARCH_DEFAULT_S:g})")
    return value


def pytest_configure(config):
    if not os.environ.get("TRADEDRILL_VARIANT_SWEEP"):
        return   # the sweep is skipped: its settings are not read
    try:
        search_budget_s()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
