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
    status = 202   # 200: every alert answered "duplicate" (a copy the backend had accepted already)

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(body["alert_id"])
        word = "accepted" if self.status == 202 else "duplicate"
        answer = json.dumps({"status": word, "signal_id": "sig-" + body["alert_id"]}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(host: str, status: int = 202) -> Iterator[str]:
    """The stub on ``host`` (a free port), ``seen`` emptied, answering ``status`` (202 or 200); yields its webhook
    URL and stops it on exit."""
    StubWebhook.seen = []
    StubWebhook.status = status
    server = ThreadingHTTPServer((host, 0), StubWebhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/webhook/tradingview"
    finally:
        server.shutdown()
        server.server_close()
