"""The panel's login survives a proxy error (TV-1, issue 15): in a backend-pause drill at load ~6 the chart library
took backend-a over nginx's read timeout (A marked down), the login then met backend-b slower than 300 ms and nginx
answered 502 "no live upstreams"; the page stayed logged out and the drill's screenshot was "not captured". The page
now asks again on 502/503/504/429 or no answer (a wrong passphrase is still said at once). Debian's Chromium through
Playwright against one real backend (uvicorn) on the test block; the proxy's 502 is injected into the page's first
login request (Playwright's request routing), so nothing depends on a loaded machine."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.backend.conftest import PASSPHRASE, REDIS_HOST, address, free_port
from tradedrill.services.backend import backend_node

pytestmark = pytest.mark.services
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu"]
PROXY_502 = json.dumps({"error": "the proxy reached no backend (every backend refused or is marked down); try again",
                        "s": "error", "errmsg": "the proxy reached no backend; try again"})


@pytest.fixture
def backend(tmp_path, redis_node, rdb):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (bash run.sh setup)")
    pytest.importorskip("playwright.sync_api")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    host = address(47)
    node = backend_node("backend-t", {"host": host, "port": free_port(host), "redis_host": REDIS_HOST,
                                      "redis_port": redis_node.port, "redis_username": "", "wait_replicas": 0,
                                      "passphrase_file": str(secret)}, tmp_path / "backend")
    try:
        node.start().wait_ready(30)
        yield node
    finally:
        node.stop()


def _login(backend, passphrase: str, failures: list[int]):
    """Open the panel, answer its first ``len(failures)`` login requests with those proxy errors, log in; returns
    (page attributes after the login, how many login requests reached the page's route)."""
    from playwright.sync_api import expect, sync_playwright

    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def route(r):
                seen.append(r.request.method)
                if len(seen) <= len(failures):
                    r.fulfill(status=failures[len(seen) - 1], content_type="application/json", body=PROXY_502)
                else:
                    r.continue_()

            page.route("**/panel/session", route)
            page.goto(f"http://{backend.address}:{backend.port}/panel/", wait_until="domcontentloaded")
            page.fill("#passphrase", passphrase)
            page.click("#login-button")
            if passphrase == PASSPHRASE:
                expect(page.locator("#pushed")).to_have_attribute("data-instance", "backend-t", timeout=20_000)
            else:
                expect(page.locator("#message")).to_contain_text("passphrase", timeout=20_000)
            return page.locator("#message").text_content(), len(seen)
        finally:
            browser.close()


def test_a_login_that_meets_the_proxys_502_is_asked_again(backend):
    message, requests = _login(backend, PASSPHRASE, [502, 504])
    assert requests == 3 and message == ""


def test_a_wrong_passphrase_is_said_at_once_not_retried(backend):
    message, requests = _login(backend, "wrong", [])
    assert requests == 1 and "'passphrase' is missing or wrong" in message
