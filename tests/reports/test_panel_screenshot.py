"""The panel screenshot of a drill in the report (issue 15): a run folder's panel.png is embedded in the HTML (a
data: URI, the report stays one file); a run whose screenshot could not be taken says why, as not captured; a run
with no panel user shows nothing. No Chromium is needed: the drill's capture is recorded either way."""
from __future__ import annotations

import base64
from pathlib import Path

from reports import build_report
from scenarios import panelshot, synthetic

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_the_report_embeds_the_panel_screenshot_or_says_it_was_not_captured(tmp_path):
    root = tmp_path / "runs"
    shot, missing, none = (root / "engine-kill" / f"run-{k}" for k in (1, 2, 3))
    for k, path in enumerate((shot, missing, none), 1):
        synthetic.write_run(path, scenario="engine-kill", seed=k, repeat=k, outage_s=1.0, rate_per_s=5.0)
    (shot / panelshot.PNG).write_bytes(PNG)
    (shot / panelshot.RECORD).write_text('{"captured": true, "file": "panel.png", "served_by": "backend-b", '
                                         '"pushed_connections": 2}')
    # what a drill records on a machine without Chromium: the capture itself says why, and never raises
    record = panelshot.capture("http://127.0.85.250:9", "x", missing, chromium=Path("/nonexistent/chromium"))
    assert record["captured"] is False and "/nonexistent/chromium is not installed" in record["reason"]

    html = build_report(root, tmp_path / "report", bench_dir=tmp_path / "no-bench").read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in html
    assert "state pushed by backend-b (connection 2)" in html
    assert "panel screenshot not captured: FileNotFoundError: /nonexistent/chromium is not installed" in html
    assert html.count("Local trading panel at the end of the load") == 2   # run-3 took none: nothing shown
