"""The report's catch-rate lines (reports/verification.py) from a catch_rate.json the sweep writes: a sweep run in
pieces says which rows were measured with other bounds (a new user read 45 s where a row had 60 s), and a library
catch names its drill's settings and its reference control."""
from __future__ import annotations

from reports.verification import catch_rate_lines

BOUNDS = {"search_s": 300.0, "minimise_trials": 8, "minimise_s": 120.0, "profile": "sweep"}


def doc(**extra):
    rows = [{"variant": "no-fencing", "bug": "b", "caught_by": "stateful", "bounds": BOUNDS},
            {"variant": "no-broker-fallback", "bug": "b", "caught_by": "library:broker-primary-down",
             "symptoms": [{"checker": "broker_fallback", "summary": "51 late"}],
             "library": {"settings": {}, "control": {"run_dir": "/x", "failed": ["rto"]}},
             "bounds": {**BOUNDS, "search_s": 60.0}}]
    return {"variants": rows, "caught": 2, "total": 2, "of_variants": 13, "catch_rate": 1.0, "bounds": BOUNDS,
            **extra}


def test_rows_measured_with_other_bounds_are_named():
    text = "\n".join(catch_rate_lines(doc(other_bounds={"no-broker-fallback": {**BOUNDS, "search_s": 60.0}})))
    assert "no example starts after 300 s" in text
    assert "Measured with other bounds: no-broker-fallback (60 s of search)" in text
    assert "other bounds" not in "\n".join(catch_rate_lines(doc(other_bounds={})))


def test_a_library_catch_names_its_settings_and_its_control():
    text = "\n".join(catch_rate_lines(doc()))
    row = next(line for line in text.splitlines() if line.startswith("| no-broker-fallback"))
    assert "library:broker-primary-down" in row and "broker_fallback: 51 late" in row
    assert "the reference engine on the same drill and seed passes those (it fails rto too)" in row
