"""The report's "Cadences and uptime" section (issue 19) on synthetic runs: the uptime of the engine crashes the runs
measured, every other failure kind said unmeasured, each cadence row with its reason. No stack."""
from __future__ import annotations

import json

import pytest

from reports.build import build_report
from scenarios import synthetic


def _with_node(run, node: str) -> None:
    path = run / "faults.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "details": {"node": node}}) + "\n" for r in rows))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for i, outage in enumerate((1.5, 2.5)):
        run = root / "engine-kill" / f"run-{i}"
        synthetic.write_run(run, scenario="engine-kill", seed=i + 1, repeat=i, outage_s=outage)
        _with_node(run, "engine-a")
    out = tmp_path_factory.mktemp("report")
    build_report(root, out, bench_dir=out / "no-bench")
    return out


def test_uptime_from_the_measured_engine_crashes(built):
    doc = json.loads((built / "uptime.json").read_text())
    crash = next(k for k in doc["uptime"]["kinds"] if k["kind"] == "engine-crash")
    assert crash["measured"] and crash["n"] == 2 and crash["runs"] == 2
    assert 1.5 <= crash["rto_median_s"] <= crash["rto_p95_s"] <= 3.5
    assert crash["allowed_median"] == pytest.approx(31536.0 / crash["rto_median_s"], rel=1e-6)
    total = doc["uptime"]["total"]
    assert "ea-crash" in total["unmeasured_kinds"] and total["kinds_measured"] == 1
    assert 99.9 < total["uptime_p95_percent"] <= total["uptime_median_percent"] < 100.0
    assert "assumption" in crash["source"]


def test_report_files_carry_the_section(built):
    html = (built / "report.html").read_text()
    assert "Cadences and uptime (issue 19)" in html and html.rstrip().endswith("</html>")
    md = (built / "uptime.md").read_text()
    assert "assumption: one trade-engine crash a month" in md and "99.9" in md
    report = json.loads((built / "report.json").read_text())
    assert report["uptime"]["total"]["kinds_measured"] == 1
    rows = {(r["requirement_id"], r["metric"]): r for r in report["cadences"]}
    hb = rows[("ENG-1", "heartbeat_interval_s")]
    # the synthetic engines write no heartbeat lines: unmeasured with the reason, never a pass
    assert hb["verdict"] == "unmeasured" and hb["distribution"]["n"] == 0 and "heartbeat" in " ".join(hb["reasons"])
    assert rows[("EA-3", "ris_reconnect_interval_s")]["verdict"] == "unmeasured"
