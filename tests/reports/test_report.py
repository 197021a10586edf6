"""The HTML RTO report: self-contained, renders in a real headless Chromium with no console error; report.json has
every requirement; junit.xml parses with one testcase per scenario x requirement."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports import build_report
from scenarios import registry, synthetic
from scenarios import targets as targets_mod

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("drill")
    synthetic.write_run(root / "engine-kill" / "run-0", scenario="engine-kill", seed=1, repeat=0, outage_s=1.5,
                        rate_per_s=5.0)
    synthetic.write_run(root / "engine-kill" / "run-1", scenario="engine-kill", seed=2, repeat=1, outage_s=None,
                        rate_per_s=5.0)
    synthetic.write_run(root / "redis-primary-kill" / "run-0", scenario="redis-primary-kill", seed=3, repeat=0,
                        outage_s=4.3, rate_per_s=5.0)
    synthetic.write_run(root / "lost-reply" / "run-0", scenario="lost-reply", seed=4, repeat=0, outage_s=1.0,
                        rate_per_s=5.0, duplicate=["s-4-0007"], lose=["s-4-0011"])

    class DrillResult:  # what the runner may hand back
        run_dirs = sorted(p.parent for p in root.rglob("history.jsonl"))

    path = build_report(DrillResult(), root / "report")
    return path


def test_outputs_side_by_side(report):
    assert report.name == "report.html"
    assert {p.name for p in report.parent.iterdir()} >= {"report.html", "report.json", "junit.xml"}


def test_html_is_self_contained(report):
    html = report.read_text()
    assert not re.search(r"<script[^>]+src=", html), "scripts must be inline (the report opens offline)"
    assert not re.search(r"<link[^>]+href=\"https?:", html)
    import plotly.offline
    assert plotly.offline.get_plotlyjs() in html  # plotly.js inlined whole
    # plotly.js itself names a topojson CDN default (geo maps only); nothing else may point at a CDN
    assert "cdn.plot.ly" not in html.replace(plotly.offline.get_plotlyjs(), "")
    for rid in ("ENG-1", "RDS-2", "PERF-2", "CFG-2"):
        assert f'id="req-{rid}"' in html
    assert "sentinel-down-after" in html and "4.2-4.4" in html


def test_report_json_has_every_number(report):
    data = json.loads((report.parent / "report.json").read_text())
    assert [r["requirement_id"] for r in data["requirements"]] == targets_mod.load().ids()
    v = {(x["scenario"], x["requirement_id"], x["metric"]): x for x in data["verdicts"]}
    rds = v[("redis-primary-kill", "RDS-2", "rto_s")]
    assert rds["verdict"] == "fail" and 4.0 < rds["distribution"]["max"] < 5.0
    assert v[("engine-kill", "ENG-1", "rto_s")]["lower_bounds"] == 1
    assert len(data["runs"]) == 4 and data["runs"][0]["timeline"]["points"]


def test_junit_parses_with_one_case_per_scenario_and_requirement(report):
    root = ET.parse(report.parent / "junit.xml").getroot()
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert set(cases) == {("drill.engine-kill", "ENG-1"), ("drill.engine-kill", "ENG-5"),
                          ("drill.redis-primary-kill", "RDS-2"), ("drill.redis-primary-kill", "ENG-1"),
                          ("drill.redis-primary-kill", "ENG-5"),
                          ("drill.lost-reply", "ENG-1"), ("drill.lost-reply", "ENG-5"), ("drill.lost-reply", "BRK-4"),
                          ("drill.lost-reply", "PERF-1"),   # issue 11: the rate kept during the lost-reply fault
                          ("drill.lost-reply", "ORD-2"),   # issue 13: orders in failed_syncs (unmeasured here)
                          # issue 19: engine-kill claims ENG-2/ENG-3 (takeover, crash restart), BRK-1 (broker
                          # heartbeat, unmeasured here) and EA-5 (uptime from the measured recovery)
                          ("drill.engine-kill", "ENG-2"), ("drill.engine-kill", "ENG-3"),
                          ("drill.engine-kill", "BRK-1"), ("drill.engine-kill", "EA-5")} | {
        # issue 19: the live configuration read of every drill (unmeasured here: no conformance.json)
        (f"drill.{s}", rid) for s in ("engine-kill", "redis-primary-kill", "lost-reply")
        for rid in registry.CONFORMANCE_IDS}
    brk = cases[("drill.lost-reply", "BRK-4")].find("failure")
    assert brk is not None and "s-4-0007" in brk.text and "s-4-0011" in brk.text
    assert cases[("drill.engine-kill", "ENG-1")].find("failure") is not None
    # one engine at a time and no stale write in the synthetic lost-reply run: ENG-1 is judged there and passes
    assert cases[("drill.lost-reply", "ENG-1")].find("failure") is None
    assert cases[("drill.lost-reply", "ENG-1")].find("skipped") is None
    assert cases[("drill.engine-kill", "RDS-1")].find("skipped") is not None
    assert int(root.get("tests")) == 14 + 3 * len(registry.CONFORMANCE_IDS) and int(root.get("failures")) >= 3


def test_every_guarantee_has_its_row_and_its_evidence(tmp_path):
    """Each of the issue-18 checkers gets a row in the run's checker table, a verdict per claimed requirement in
    report.json, and the evidence names what broke."""
    truth = synthetic.write_run(tmp_path / "runs" / "engine-pause" / "run-1", scenario="engine-pause", seed=5,
                                rate_per_s=5.0, outage_s=3.0, stale_sends=["s-5-0080"], stale_writes=["s-5-0090"],
                                undelivered=["s-5-0020"])
    assert truth.stale_sends and truth.stale_writes and truth.undelivered
    path = build_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    html = path.read_text()
    for checker, fragment in (("one_active", "fenced-out lease holder"), ("results_delivered", "s-5-0020"),
                              ("stale_writes", "written by a fenced-out token")):
        row = re.search(rf"<tr><td>{checker}</td>(.*?)</tr>", html, flags=re.S)
        assert row, f"no row for {checker} in the report"
        assert fragment in row.group(1) and 'class="fail"' in row.group(1), (checker, row.group(1)[:400])
    data = json.loads((path.parent / "report.json").read_text())
    v = {(x["requirement_id"], x["metric"]): x["verdict"] for x in data["verdicts"]}
    assert v[("ENG-1", "stale_sends")] == v[("ENG-1", "concurrent_active_engines")] == "fail"
    assert v[("ENG-1", "stale_writes")] == v[("ENG-5", "stale_writes")] == "fail"
    assert v[("ENG-5", "undelivered_results")] == "fail" and v[("ENG-5", "repeated_results")] == "pass"
    assert v[("ENG-5", "lost_signals")] == v[("ENG-5", "duplicate_orders")] == "pass"
    eng1 = next(r for r in data["requirements"] if r["requirement_id"] == "ENG-1")
    assert {"stale_sends", "stale_writes", "concurrent_active_engines"} <= {t["metric"] for t in eng1["targets"]}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_plots_render_in_headless_chromium_without_console_errors(report):
    from playwright.sync_api import sync_playwright

    problems, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function(
                "Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".every(d => d.querySelector('svg.main-svg') !== null)", timeout=20_000)
            svg_counts = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => d.querySelectorAll('svg').length)")
            shaded = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => d.layout.shapes.length)")
        finally:
            browser.close()
    assert len(svg_counts) == 4 and all(n > 0 for n in svg_counts)
    assert all(n > 0 for n in shaded)  # fault windows shaded
    assert problems == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests


def test_the_scenario_says_the_rate_its_runs_ran_at(tmp_path):
    """A drill at --rate 200 of a scenario defined at 20/s: the report names 200/s (it printed the registry's 20/s
    for runs at 200/s; found by a new user's check of issue 11)."""
    run = tmp_path / "runs" / "engine-kill" / "run-1"
    synthetic.write_run(run, scenario="engine-kill", seed=3, rate_per_s=200.0)
    doc = json.loads((run / "scenario.json").read_text())
    assert doc["workload"]["rate_per_s"] == 200.0, doc["workload"]
    html = build_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench").read_text()
    section = html[html.index('id="scenario-engine-kill"'):]
    assert re.search(r"workload: \w+ at 200/s for", section), section[:600]
