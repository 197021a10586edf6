"""Issue 17 item 4: a Sentinel whose answer fails in any way (here an HTTP server at the Sentinel's address: redis-py
raises InvalidResponse, which is no connection error) is that Sentinel not answering, recorded in the view; it was an
uncaught exception in the asking thread (`Exception in thread ... (ask)`, printed at Ctrl-C of a docker drill)."""
from __future__ import annotations

import socketserver
import threading

from reference.engine.config import EngineConfig
from reference.engine.redislink import RedisLink


class _HTTP400(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            self.request.recv(4096)
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass


def test_a_sentinel_answering_garbage_is_a_sentinel_not_answering(monkeypatch):
    uncaught: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HTTP400)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    link = None
    try:
        addr = ("127.0.0.1", server.server_address[1])
        link = RedisLink(EngineConfig(sentinels=[addr], redis_connect_timeout_s=1.0))
        view = link.sentinel_view()
        assert view.answered == 0 and view.primary is None
        assert list(view.errors) == [f"127.0.0.1:{addr[1]}"]
        assert "no answer before the deadline" not in view.errors[f"127.0.0.1:{addr[1]}"]   # the ask's own error
        assert not uncaught, [f"{a.exc_type.__name__}: {a.exc_value}" for a in uncaught]
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)
