"""nginx in front of two upstreams (BE-2, issue 15), with stand-in upstreams (a 20-line HTTP server each) so the
test is about the proxy's configuration only: real nginx, faults by PID through each node's handle.

The reproduction of the fresh-clone report: backend-a killed, backend-b (the last live upstream) frozen for 0.4 s
under 20 alerts/s. With ``max_fails=1 fail_timeout=5s`` on the backup too, one 300 ms read timeout marked B down
and nginx answered 502 "no live upstreams" for ~5 s (218 x 502 over 5.8 s). The backup is never marked down now.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import BLOCK
from tradedrill.process import ProcessNode
from tradedrill.services.nginx import nginx_conf, proxy_node
from tradedrill.waiting import wait_until


pytestmark = pytest.mark.services

UPSTREAM = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _answer(self, code):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b'{"status":"accepted"}'
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

SUBNET = BLOCK
PORT = 18540
PROXY_PORT = 18580


def _upstream(name: str, address: str, base: Path) -> ProcessNode:
    script = base / "upstream.py"
    script.write_text(UPSTREAM)

    def ready() -> bool:
        try:
            return httpx.get(f"http://{address}:{PORT}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    return ProcessNode(name=name, role="backend", address=address, port=PORT,
                       argv=[sys.executable, str(script), address, str(PORT)], log_path=base / f"{name}.log",
                       ready=ready)


@pytest.fixture
def pair(tmp_path):
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (bash run.sh setup)")
    a = _upstream("backend-a", f"{SUBNET}.40", tmp_path)
    b = _upstream("backend-b", f"{SUBNET}.41", tmp_path)
    proxy = proxy_node("proxy", f"{SUBNET}.42", PROXY_PORT,
                       [(a.address, PORT), (b.address, PORT)], tmp_path / "proxy")
    nodes = [a, b, proxy]
    try:
        for node in nodes:
            node.start().wait_ready(15)
        yield a, b, proxy
    finally:
        for node in reversed(nodes):
            node.stop()


def _load(url: str, rate: float, duration_s: float, fault_at_s: float, fault) -> list[tuple[float, float, int]]:
    """Open loop: ``rate`` posts/s over 4 threads for ``duration_s``; ``fault()`` runs at ``fault_at_s``. Each post:
    (start, end, status) on the monotonic clock; a status of 0 is a transport error."""
    out: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    t_start = time.monotonic()

    def client(i: int) -> None:
        interval = 4 / rate
        next_at = t_start + i * interval / 4
        with httpx.Client(timeout=3.0) as c:
            while not stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += interval
                t0 = time.monotonic()
                try:
                    code = c.post(url, json={"alert_id": f"{i}-{t0}"}).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    out.append((t0, time.monotonic(), code))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        stop.wait(fault_at_s)
        fault()
        stop.wait(max(0.0, t_start + duration_s - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    return sorted(out)


def test_backup_is_never_marked_down_by_one_slow_answer():
    conf = nginx_conf("127.0.0.1", 80, [("127.0.0.2", 1), ("127.0.0.3", 1)], Path("/tmp/x"))
    servers = [line.strip() for line in conf.splitlines() if line.strip().startswith("server 127.")]
    primary, backup = servers[:2]     # upstream backends (everything but the panel's event streams)
    assert "max_fails=1" in primary and "backup" not in primary
    assert "backup" in backup and "max_fails=0" in backup
    # upstream panel_events: no server is ever marked down (a long stream would be the probe that brings A back);
    # then upstream charts (tests/backend/test_chart_proxy.py)
    assert servers[2:4] == ["server 127.0.0.2:1 max_fails=0;", "server 127.0.0.3:1 max_fails=0 backup;"]


def test_a_short_freeze_of_the_last_live_backend_is_not_a_5_s_outage(pair):
    a, b, proxy = pair
    url = f"http://{proxy.address}:{proxy.port}/webhook/tradingview"
    a.kill()
    # nginx learns A is gone (one refused connection, then B answers) before the freeze
    wait_until(lambda: httpx.post(url, json={}, timeout=2).status_code == 202, 5, "B serving through the proxy")

    def freeze_b_for_0_4_s() -> None:
        b.pause()
        try:
            threading.Event().wait(0.4)   # the fault's length, not a synchronisation
        finally:
            b.resume()

    ops = _load(url, rate=20.0, duration_s=3.0, fault_at_s=0.5, fault=freeze_b_for_0_4_s)
    codes = [code for _, _, code in ops]
    bad = [op for op in ops if op[2] != 202]
    # a request that met the freeze fails once (B's 300 ms read timeout: 504, or 502 when nginx finds A still
    # down for its retry); nothing after the freeze fails: the failures span the freeze plus one read timeout
    span = (bad[-1][1] - bad[0][0]) if bad else 0.0
    assert span < 0.8, f"{len(bad)} failed ({codes.count(502)} x 502, no live upstreams) over {span:.1f} s"
    # every failed answer (504 after the 300 ms read timeout) is inside the freeze plus one timeout
    assert all(end - start < 0.5 for start, end, code in ops), [(round(e - s, 3), c) for s, e, c in ops if e - s >= .5]
    assert len(bad) <= 12, codes
    # and the proxy serves normally right after
    assert httpx.post(url, json={}, timeout=2).status_code == 202


def test_killing_a_fails_over_at_once(pair):
    a, b, proxy = pair
    url = f"http://{proxy.address}:{proxy.port}/webhook/tradingview"
    ops = _load(url, rate=20.0, duration_s=1.5, fault_at_s=0.5, fault=a.kill)
    assert [code for _, _, code in ops] == [202] * len(ops)
    assert max(end - start for start, end, _ in ops) < 0.5


def _json_error(got: httpx.Response) -> str:
    """The one-line message of a proxy error, which must be JSON in the backends' shape (and UDF's)."""
    assert got.headers["content-type"].startswith("application/json"), got.text[:200]
    doc = got.json()
    assert doc["error"] and doc["s"] == "error" and doc["errmsg"] == doc["error"], doc
    return doc["error"]


def test_the_proxys_own_errors_are_json_not_nginx_html(pair):
    """No backend answering in time (504) or none reachable (502): a chart client or a webhook sender reads one
    line of JSON, not nginx's HTML page (issue 15: the first chart request of a clickhouse-down-history run)."""
    a, b, proxy = pair
    base = f"http://{proxy.address}:{proxy.port}"
    a.pause()
    b.pause()
    try:
        slow = httpx.get(f"{base}/history", params={"symbol": "EURUSD"}, timeout=5)
    finally:
        a.resume()
        b.resume()
    assert slow.status_code == 504 and "no backend answered" in _json_error(slow)
    a.kill()
    b.kill()
    gone = httpx.post(f"{base}/webhook/tradingview", json={}, timeout=5)
    assert gone.status_code == 502 and "reached no backend" in _json_error(gone)


def test_a_chunked_body_over_the_limit_is_the_json_413_and_the_proxy_stays_up(pair):
    """A body without a length (chunked) larger than nginx passes on: the same JSON 413 as a declared one, never
    a 500 (nginx's workers cannot write a spilled body into the root-owned run folder)."""
    _, _, proxy = pair
    url = f"http://{proxy.address}:{proxy.port}/webhook/tradingview"

    def chunks():
        for _ in range(64):
            yield b"a" * 16384   # 1 MB in 16 KB chunks

    got = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=10)
    assert got.status_code == 413 and "body is over" in got.json()["error"], got.text[:200]
    assert httpx.post(url, json={}, timeout=5).status_code == 202
