"""Chart reads through nginx do not share the webhook's 300 ms read timeout nor its failure count (TV-4, BE-2,
issue 15). The new-user report: at load average ~6, one chart answer slower than 300 ms was nginx's 504 and marked
backend-a down, so the six chart requests after it got 502 "no live upstreams" (and the webhook lost A for
fail_timeout). Real nginx, stand-in upstreams that name themselves and answer ``/history`` after ``SLOW_S``.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import BLOCK
from tradedrill.process import ProcessNode
from tradedrill.services.nginx import CHART_PATHS, STATIC_PATHS, nginx_conf, proxy_node

pytestmark = pytest.mark.services

UPSTREAM = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, SLOW_S = sys.argv[3], float(sys.argv[4])

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _answer(self, code):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path.startswith("/history"):
            time.sleep(SLOW_S)   # a chart answer slower than the webhook's read timeout (a loaded machine)
        body = ('{"s":"no_data","instance":"%s"}' % NAME).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._answer(200)
    def do_POST(self):
        self._answer(202)
    def log_message(self, *a):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""

PORT = 18541
PROXY_PORT = 18581
SLOW_S = 0.6            # > the webhook's 300 ms read timeout, well below the chart timeout of this proxy
CHART_TIMEOUT_MS = 3000


def _upstream(name: str, address: str, base: Path) -> ProcessNode:
    script = base / "upstream.py"
    script.write_text(UPSTREAM)

    def ready() -> bool:
        try:
            return httpx.get(f"http://{address}:{PORT}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return ProcessNode(name=name, role="backend", address=address, port=PORT,
                       argv=[sys.executable, str(script), address, str(PORT), name, str(SLOW_S)],
                       log_path=base / f"{name}.log", ready=ready)


@pytest.fixture
def pair(tmp_path):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (bash run.sh setup)")
    a = _upstream("backend-a", f"{BLOCK}.43", tmp_path)
    b = _upstream("backend-b", f"{BLOCK}.44", tmp_path)
    proxy = proxy_node("proxy", f"{BLOCK}.45", PROXY_PORT, [(a.address, PORT), (b.address, PORT)],
                       tmp_path / "proxy", read_timeout_ms=300, chart_read_timeout_ms=CHART_TIMEOUT_MS)
    nodes = [a, b, proxy]
    try:
        for node in nodes:
            node.start().wait_ready(15)
        yield a, b, proxy
    finally:
        for node in reversed(nodes):
            node.stop()


def _query() -> dict:
    return {"symbol": "EURUSD", "resolution": "1", "from": 0, "to": 60}


def test_a_slow_chart_answer_is_waited_for_and_does_not_take_a_out_of_the_webhook(pair):
    a, b, proxy = pair
    base = f"http://{proxy.address}:{proxy.port}"
    with httpx.Client(base_url=base, timeout=10.0) as c:
        charts = [c.get("/history", params=_query()) for _ in range(3)]
        webhook = c.post("/webhook/tradingview", json={})
        after = c.get("/history", params=_query())
    # each slow chart answer is A's own (not nginx's 504 at 300 ms, nor B's answer after it)
    assert [(r.status_code, r.json().get("instance")) for r in charts] == [(200, "backend-a")] * 3, \
        [r.text[:160] for r in charts]
    # and A is still in service for the webhook (nginx did not mark it down) and for the next chart request
    assert (webhook.status_code, webhook.json()["instance"]) == (202, "backend-a"), webhook.text[:160]
    assert after.json()["instance"] == "backend-a"


def test_a_frozen_a_is_left_for_b_by_a_chart_read_after_the_chart_timeout(pair):
    a, b, proxy = pair
    base = f"http://{proxy.address}:{proxy.port}"
    a.pause()
    try:
        with httpx.Client(base_url=base, timeout=10.0) as c:
            config = c.get("/config")
    finally:
        a.resume()
    assert (config.status_code, config.json()["instance"]) == (200, "backend-b"), config.text[:160]


def test_a_dead_a_is_left_for_b_at_once_by_chart_reads(pair):
    a, b, proxy = pair
    a.kill()
    with httpx.Client(base_url=f"http://{proxy.address}:{proxy.port}", timeout=10.0) as c:
        got = [c.get(path) for path in ("/time", "/panel/", "/favicon.ico")]
    assert [(r.status_code, r.json()["instance"]) for r in got] == [(200, "backend-b")] * 3


def test_the_chart_location_and_the_webhook_location_keep_their_own_settings():
    conf = nginx_conf("127.0.0.1", 80, [("127.0.0.2", 1), ("127.0.0.3", 1)], Path("/tmp/x"),
                      read_timeout_ms=300, chart_read_timeout_ms=1000)
    upstreams = conf.split("upstream ")[1:]
    backends = next(u for u in upstreams if u.startswith("backends"))
    charts = next(u for u in upstreams if u.startswith("charts"))
    assert "127.0.0.2:1 max_fails=1 " in backends            # BE-2: the webhook's A is still marked down
    assert "max_fails=1" not in charts and charts.count("max_fails=0") == 2
    chart_loc = conf.split("location ~ ")[1].split("}")[0]
    web_loc = conf.split("location / {")[1].split("}")[0]
    for path in (*CHART_PATHS, *STATIC_PATHS):
        assert path.replace(".", "\\.").replace("-", "\\-") in chart_loc.split("$")[0], path
    assert "proxy_read_timeout 1000ms;" in chart_loc and "non_idempotent" not in chart_loc
    assert "proxy_read_timeout 300ms;" in web_loc
    assert "proxy_next_upstream error timeout non_idempotent;" in web_loc
