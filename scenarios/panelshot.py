"""A screenshot of the local trading panel at the end of a drill's load (issue 15: "a screenshot of it is part of
the report").

``capture(proxy_url, passphrase, run_path)`` opens ``<proxy>/panel/`` in Debian's headless Chromium through
Playwright (as ``tests/backend/test_panel.py`` does), logs in with the run's passphrase, waits until the backend has
pushed the panel's state (``#pushed`` names the instance) and the first tick row is shown when the stack streams
ticks, and writes ``panel.png`` into the run folder. What happened is always written to ``panel_screenshot.json``
(``captured``, ``reason`` when not, ``served_by``, ``pushed_connections``, ``seconds``); nothing here fails a
drill: without Chromium or Playwright, or when the page does not come up, the record says why and the report shows
it as not captured.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu"]
PNG, RECORD = "panel.png", "panel_screenshot.json"
TIMEOUT_MS = 20_000
ATTEMPTS = 3


def capture(proxy_url: str, passphrase: str, run_path: Path | str, *, chromium: Path = CHROMIUM) -> dict:
    """Screenshot the panel behind ``proxy_url`` into ``run_path/panel.png``; returns (and writes) the record."""
    run_path = Path(run_path)
    started = time.monotonic()
    record: dict = {"captured": False, "url": f"{proxy_url}/panel/", "file": None}
    try:
        record.update(_capture(proxy_url, passphrase, run_path / PNG, chromium))
        record.update(captured=True, file=PNG)
    except Exception as exc:  # noqa: BLE001 - a screenshot never fails a drill; the record says why
        record["reason"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    record["seconds"] = round(time.monotonic() - started, 3)
    (run_path / RECORD).write_text(json.dumps(record, indent=2))
    return record


def not_captured(run_path: Path | str, reason: str) -> dict:
    """Record (and return) that the run has no screenshot, and why."""
    record = {"captured": False, "file": None, "reason": " ".join(reason.split())[:300]}
    (Path(run_path) / RECORD).write_text(json.dumps(record, indent=2))
    return record


def _capture(proxy_url: str, passphrase: str, png: Path, chromium: Path) -> dict:
    if not chromium.exists():
        raise FileNotFoundError(f"{chromium} is not installed (bash run.sh setup installs Debian's chromium)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 760})
            # a page cut by the proxy's 300 ms read timeout (a backend starved of CPU on a loaded machine) is asked
            # for again: at most ATTEMPTS times, each bounded by TIMEOUT_MS
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    page.goto(f"{proxy_url}/panel/", wait_until="domcontentloaded", timeout=TIMEOUT_MS)
                    page.locator("#passphrase").wait_for(state="attached", timeout=TIMEOUT_MS)
                    break
                except PlaywrightError:
                    if attempt == ATTEMPTS:
                        raise
            page.fill("#passphrase", passphrase)
            page.click("#login-button")
            pushed = page.locator("#pushed")
            try:
                expect(pushed).to_have_attribute("data-instance", _any_instance(), timeout=TIMEOUT_MS)
            except AssertionError:
                # what the page itself says (a login refused, the proxy's error, the stream's state) is the reason
                said = {k: (page.locator(f"#{k}").text_content() or "").strip() for k in ("message", "served")}
                raise AssertionError(f"no state pushed within {TIMEOUT_MS // 1000} s; the page says "
                                     f"message={said['message']!r}, backend={said['served']!r}") from None
            # the ticks pushed: a row, or the note that this backend reads no EA stream
            expect(page.locator("#ticks tbody tr, #ticks-note:not(:empty)").first).to_be_visible(timeout=TIMEOUT_MS)
            page.screenshot(path=str(png))
            return {"served_by": pushed.get_attribute("data-instance"), "page_loads": attempt,
                    "pushed_connections": int(pushed.get_attribute("data-connections") or 0)}
        finally:
            browser.close()


def _any_instance():
    import re

    return re.compile(r".+")


def load(run_path: Path | str) -> dict | None:
    """The record of a run folder (None when the run took no screenshot: a scenario without the panel)."""
    path = Path(run_path) / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"captured": False, "reason": f"{RECORD} cannot be read ({exc})"}
    if not isinstance(record, dict):
        return {"captured": False, "reason": f"{RECORD} is not a JSON object"}
    png = Path(run_path) / PNG
    if record.get("captured") and not png.exists():
        return {**record, "captured": False, "reason": f"{PNG} is missing from the run folder"}
    return record
