"""A stand-in for the backends' TradingView webhook, for the Locust tests: it answers every alert 202 with a signal
id and records the alert ids it was sent (``StubWebhook.seen``), on loopback, stopped by its own handle."""
from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class StubWebhook(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body["alert_id"])
        answer = json.dumps({"status": "accepted", "signal_id": "sig-" + body["alert_id"]}).encode()
        self.send_response(202)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(host: str) -> Iterator[str]:
    """The stub on ``host`` (a free port), ``seen`` emptied; yields its webhook URL and stops it on exit."""
    StubWebhook.seen = []
    server = ThreadingHTTPServer((host, 0), StubWebhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/webhook/tradingview"
    finally:
        server.shutdown()
        server.server_close()
