"""The Toxiproxy-compatible fault proxy (TCP + UDP). See faults/proxy/server.py."""
from faults.proxy.server import EmbeddedToxiproxy, ToxiproxyServer, serve_forever

__all__ = ["EmbeddedToxiproxy", "ToxiproxyServer", "serve_forever"]
