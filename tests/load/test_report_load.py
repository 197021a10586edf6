"""The locust load in the report (issue 16): one plot of the load's statistics and the fault windows on the run's
timeline, the load's numbers beside it, and the verification section (catch rate, soak) or "not measured"."""
from __future__ import annotations

import json
from pathlib import Path
import re

import pytest

from reports import build_report
from reports.verification import section_view
from scenarios import synthetic
from scenarios.load import LOAD_DIR, load_svg


def _add_load(run, mono0: float = 1000.0, seconds: int = 20) -> None:
    folder = run / LOAD_DIR
    folder.mkdir()
    rows = [{"mono": int(mono0) + s, "wall_ts": 0, "users": min(50, 10 * (s + 1)), "requests": 40,
             "failures": 7 if 8 <= s <= 9 else 0, "p50": 9.0, "p95": 30.0 + s, "p99": 45.0 + s, "types": {}}
            for s in range(seconds)]
    (folder / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"mono": 10')  # torn line
    entry = {"requests": 800, "failures": 14, "rps": 40.0, "p50_ms": 9, "p95_ms": 38, "p99_ms": 61, "max_ms": 90.5}
    (folder / "summary.json").write_text(json.dumps({"users": 50, "spawn_rate": 10, "mix": {"rtss": 3, "webhook": 2},
                                                     "total": {**entry, "round_trips": 760},
                                                     "by_name": {"RTSS submit": entry}}))


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    root = tmp_path_factory.mktemp("loaddrill")
    run = root / "engine-kill" / "run-1"
    synthetic.write_run(run, scenario="engine-kill", seed=3, repeat=1, outage_s=1.5, rate_per_s=5.0, inject_at_s=8.0)
    _add_load(run)
    plain = root / "engine-kill" / "run-2"
    synthetic.write_run(plain, scenario="engine-kill", seed=4, repeat=2, outage_s=1.5, rate_per_s=5.0)
    catch = root / "catch_rate.json"
    catch.write_text(json.dumps({"caught": 10, "total": 10, "catch_rate": 1.0, "variants": [
        {"variant": "no-fencing", "bug": "sends after losing the lease", "caught_by": "stateful",
         "symptoms": [{"checker": "duplicates", "summary": "1 duplicate order"}], "schedule": [{"op": "kill"}]}]}))
    path = build_report([run, plain], root / "report",
                        verification=section_view(catch, root / "no-soak.json"))
    return path.read_text()


def test_one_plot_holds_the_load_and_the_fault_window(html):
    svgs = re.findall(r'<svg class="load-plot".*?</svg>', html, re.S)
    assert len(svgs) == 1   # the run without load has none
    svg = svgs[0]
    for series in ("p50", "p95", "p99"):
        assert f'<polyline class="{series}"' in svg
    window = re.search(r'class="fault-window"[^>]*><title>([^<]*)</title>', svg)
    assert window and re.search(r" (7\.9|8\.0)\d-", window.group(1)), window   # at the injection, on the run's time axis
    assert svg.count('class="failures"') == 2   # the two seconds with failures


def test_the_load_numbers_are_beside_the_plot(html):
    assert "50 users (rtss x3, webhook x2), spawn rate 10/s: 800 requests of every kind (40/s), 14 failures" in html
    # the percentiles say what they are of: the order round-trips, not the tick windows the request count includes
    assert "order round-trips (760): p50 9 ms, p95 38 ms, p99 61 ms" in html


def test_verification_section_shows_what_exists_and_says_what_does_not(html):
    section = html.split('id="verification"')[1].split('id="benchmarks"')[0]
    assert "Catch rate: <strong>10 of 10</strong>" in section and "no-fencing" in section
    soak = section.split('id="verification-soak"')[1]
    assert "not measured" in soak and "nox -s soak" in soak


def test_no_data_at_all_is_not_measured(tmp_path, monkeypatch):
    from reports import verification

    monkeypatch.setattr(verification, "CATCH_RATE_JSON", tmp_path / "none" / "catch_rate.json")
    monkeypatch.setattr(verification, "SOAK_JSON", tmp_path / "none" / "soak.json")
    view = section_view()
    assert not view["catch_rate"]["measured"] and not view["soak"]["measured"]


def test_the_section_reads_the_repositorys_out_from_any_folder_and_names_its_source(tmp_path, monkeypatch):
    """A new user's finding: the section read out/ of the current folder, so `tradedrill check ... --report` showed
    the catch rate from the clone and the soak from the folder above (for the same files), never saying which."""
    from reports import verification

    repo_out = tmp_path / "repo" / "out"
    (repo_out / "soak").mkdir(parents=True)
    summary = {"duplicate_orders": 0, "lost_signals": 0, "acknowledged": 100, "valid": True, "run_validity": [],
               "processes_left_after_teardown": 0, "harness_leaked": {"fds": 0, "threads": 0, "children": []},
               "minutes": 2, "rate_per_s": 10, "every_s": 10, "seed": 3, "signals": 1200, "faults_injected": 2,
               "faults_scheduled": 2, "fault_counts": {"engine-kill": 2}, "state_mismatches": 0,
               "processes_before": 10, "processes_after": 10, "passed": True, "failed_because": [], "unmeasured": [],
               "harness_before_stack": {"fds": 7, "threads": 2, "children": []},
               "harness_after_teardown": {"fds": 7, "threads": 2, "children": []}, "bounds": {"warmup_s": 20}}
    (repo_out / "soak" / "soak.json").write_text(json.dumps({"summary": summary, "processes": {}}))
    monkeypatch.setattr(verification, "SOAK_JSON", repo_out / "soak" / "soak.json")
    monkeypatch.setattr(verification, "CATCH_RATE_JSON", repo_out / "verification" / "catch_rate.json")
    seen = []
    for folder in (tmp_path, tmp_path / "repo"):
        monkeypatch.chdir(folder)
        view = section_view()
        seen.append((view["soak"]["measured"], view["soak"]["path"]))
        assert view["soak"]["measured"], view["soak"]
        assert f"from <code>{repo_out / 'soak' / 'soak.json'}</code>, written 20" in view["soak"]["html"]
    assert seen[0] == seen[1]
    assert Path(verification.REPO_OUT).is_absolute() and verification.REPO_OUT.name == "out"


def test_svg_without_rows_still_shows_the_windows():
    svg = load_svg([], [{"fault": "process-kill", "start": 3.0, "end": None}], end_s=10.0)
    assert 'class="fault-window"' in svg and "<polyline" not in svg


def test_the_first_bar_of_a_second_that_began_just_before_the_run_reads_t_0_not_minus_0():
    """The new user's defect 15: the first bar's tooltip read ``t=-0 s`` (its second began 0.3 s before the run)."""
    rows = [{"t": -0.3, "requests": 3, "failures": 0, "users": 3}, {"t": 0.7, "requests": 5, "failures": 0, "users": 3},
            {"t": 1.7, "requests": 5, "failures": 1, "users": 3}]
    svg = load_svg(rows, [])
    assert "t=-0 s" not in svg and "-0 " not in svg
    titles = [part.split("<title>")[1].split(" s:")[0] for part in svg.split("\n") if "requests, " in part]
    assert titles == ["t=0", "t=1", "t=2"]
