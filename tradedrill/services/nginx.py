"""nginx (Debian's package) in front of the two backends: the one URL TradingView calls (BE-2, issue 15).

Active-passive with passive health checks: ``backend-a`` serves, ``backend-b`` is the ``backup`` server; a request
that fails on A (connection refused or reset: A is down; no answer within ``backend.proxy_read_timeout_ms``: A is
frozen) is sent again to B at once (``proxy_next_upstream error timeout non_idempotent``: a POST is retried too,
which is safe because the webhook is idempotent by alert id), and A is left alone for ``backend.fail_timeout_s``
after ``backend.max_fails`` failures, then tried again with one request. The backup is never marked down
(``max_fails=0``): it is the last live upstream while A is away, and a single slow answer from it must cost one
504, not ``fail_timeout`` of 502 "no live upstreams".

``GET /panel/events`` (the local panel's pushed state, Server-Sent Events) is passed unbuffered, with a read timeout
of ``EVENTS_READ_TIMEOUT_S`` (the backend's heartbeat is every second), through an upstream of its own in which no
server is marked down (see the comment in :func:`nginx_conf`).

The chart reads (``CHART_PATHS``: the UDF datafeed ``/config`` ``/symbols`` ``/history`` ``/time``, ``/trades``)
and the panel's static files (``STATIC_PATHS``: the page, the chart library, the icon) are GETs that may take
longer than a webhook without anything being wrong (a ClickHouse query, a 190 KB file, a backend starved of CPU),
so they go through an upstream of their own (``charts``, no server ever marked down) with
``chart_read_timeout_ms`` (default 1 s): a slow answer is waited for instead of being a 504 at 300 ms, it never
takes backend-a out of service for the webhook (issue 15: one slow chart answer at load 6 marked A down and six
chart requests after it got 502 "no live upstreams"), and a frozen or dead A is still left for B (``error
timeout``: a frozen A costs a chart request the longer timeout before B answers it).

- ``nginx_conf(...)``: the configuration text (everything on the node's loopback addresses; request bodies never
  spill to disk; no body and no query string is logged: the webhook body holds the passphrase);
- ``proxy_node(name, address, port, upstreams, state_dir, ...)``: a lone nginx (tests, the benchmark);
- ``build_node(spec, topo, run_dir, registry)``: the ``proxy`` node of a topology with the ``backend`` service.

nginx runs in the foreground (``daemon off``) as the node's process; its master stays root (it only binds and opens
logs) and its workers run as ``nobody``. The access log (``access.log`` beside the config) has one line per request
with the upstream(s) it went to, so a failover is visible in it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Sequence

from reference.backend.config import BackendConfig
from tradedrill.credentials import write_private
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

NGINX = "/usr/sbin/nginx"
HEALTH_PATH = "/proxy-health"
EVENTS_READ_TIMEOUT_S = 3   # /panel/events: the backend's heartbeat is every 1 s (reference.backend.panel)
CHART_READ_TIMEOUT_MS = 1000   # chart reads and static files (backend.chart_read_timeout_ms)
CHART_PATHS = ("/config", "/symbols", "/history", "/time", "/trades")   # UDF datafeed and trade history (TV-4)
STATIC_PATHS = ("/panel/", "/panel/lightweight-charts.js", "/favicon.ico")   # the panel's page and files (TV-3)


class NginxMissing(RuntimeError):
    """Debian's nginx is not installed; the message says how to install it."""


def nginx_binary() -> str:
    path = shutil.which("nginx") or (NGINX if os.path.exists(NGINX) else None)
    if not path:
        raise NginxMissing("nginx is not installed: run `bash run.sh setup` (or apt-get install nginx) first")
    return path


def proxy_body_bytes(max_body_bytes: int) -> int:
    """nginx's client_max_body_size in front of backends refusing bodies over ``max_body_bytes``: room above it,
    so the backend itself says what is wrong (4x, at least 64 KB; still held in memory, never spilled to disk)."""
    return max(4 * int(max_body_bytes), 65536)


def nginx_conf(address: str, port: int, upstreams: Sequence[tuple[str, int]], prefix: Path, *,
               read_timeout_ms: int = 300, connect_timeout_ms: int = 200, max_fails: int = 1,
               fail_timeout_s: float = 5.0, chart_read_timeout_ms: int = CHART_READ_TIMEOUT_MS, max_body_bytes: int = 8192, worker_user: str | None = "nobody") -> str:
    """The nginx.conf of a proxy listening on ``address:port`` in front of ``upstreams`` (the first serves, the
    others are ``backup``). Timeouts in milliseconds (``read_timeout_ms``: the webhook and the panel's session,
    state and orders, BE-2; ``chart_read_timeout_ms``: ``CHART_PATHS`` and ``STATIC_PATHS``); ``fail_timeout_s`` seconds. ``max_body_bytes`` is the
    backends' own limit: nginx passes bodies up to ``proxy_body_bytes(max_body_bytes)`` on, so the backend answers
    an oversized alert with its JSON 413, and answers a larger one itself with a 413 in the same JSON shape."""
    if not upstreams:
        raise ValueError("a proxy needs at least one upstream backend")
    events_timeout_s = EVENTS_READ_TIMEOUT_S
    chart_regex = "|".join(re.escape(path) for path in (*CHART_PATHS, *STATIC_PATHS))
    prefix = Path(prefix)
    servers = []
    for i, (host, uport) in enumerate(upstreams):
        # the backups are never marked down (max_fails=0): with A dead, B is the last live upstream, and one slow
        # answer from it (a 0.4 s stall, a GC pause) would otherwise make nginx answer 502 "no live upstreams"
        # to everything for fail_timeout (issue 15: 218 x 502 over 5.8 s); a dead B still fails each request at
        # once (connection refused), so nothing waits for it
        fails = int(max_fails) if i == 0 else 0
        servers.append(f"        server {host}:{int(uport)} max_fails={fails} "
                       f"fail_timeout={fail_timeout_s:g}s{' backup' if i else ''};")
    # the panel's event streams have their own upstream: nginx takes a server that failed back with one probe
    # request and counts it back only when that request ends, so a long stream as the probe would keep backend-a
    # "down" for everything else; here no server is ever marked down (a dead one refuses at once, a frozen one
    # costs a stream the read timeout)
    event_servers = [f"        server {host}:{int(uport)} max_fails=0{' backup' if i else ''};"
                     for i, (host, uport) in enumerate(upstreams)]
    # chart reads and static files: the same servers, none ever marked down, so a slow chart answer (a timeout)
    # never takes backend-a out of service for the webhook's upstream, which keeps its own failure count
    chart_servers = event_servers
    user = f"user {worker_user} nogroup;\n" if worker_user and os.geteuid() == 0 else ""
    passed = proxy_body_bytes(max_body_bytes)
    too_large = json.dumps({"error": f"body is over {passed} bytes; an alert is at most {int(max_body_bytes)} bytes"})
    # nginx's own errors (no backend reachable, none answered in time, a failure of the proxy itself) in the
    # backends' JSON shape, with the UDF datafeed's "s"/"errmsg" too, never its HTML page: a webhook sender or a
    # chart client always reads one line of JSON (issue 15: a chart request that met a 300 ms read timeout got
    # nginx's HTML 504, an "unclear" answer)
    proxy_errors = {
        500: "the proxy failed to pass the request on; try again",
        502: "the proxy reached no backend (every backend refused or is marked down); try again",
        503: "the proxy cannot take the request now; try again",
        504: f"no backend answered in time (the proxy read timeout: {int(read_timeout_ms)} ms, "
             f"{int(chart_read_timeout_ms)} ms for chart history and the panel page); try again",
    }
    error_pages = "\n".join(
        f"        error_page {code} = @proxy_{code};\n"
        f"        location @proxy_{code} {{\n"
        f"            default_type application/json;\n"
        f"            return {code} '{json.dumps({'error': text, 's': 'error', 'errmsg': text})}';\n"
        f"        }}" for code, text in proxy_errors.items())
    temp = "\n".join(f"    {kind}_temp_path {prefix / 'tmp' / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# rendered by tradedrill.services.nginx for {address}:{port} (BE-2); changes are overwritten at start
{user}worker_processes 1;
daemon off;
master_process on;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 2048;
}}
http {{
    log_format failover '$msec $remote_addr "$request_method $uri" $status $request_time '
                        'upstream="$upstream_addr" upstream_status="$upstream_status" '
                        'upstream_time="$upstream_response_time"';
    access_log {prefix / 'access.log'} failover buffer=32k flush=1s;
{temp}
    client_max_body_size {passed};
    # a buffer larger than the largest body passed on: a chunked body over the limit meets the limit (413) before
    # the buffer is full, so no body is ever written to client_body_temp_path (the workers, ``nobody``, cannot
    # write into the root-owned run folder: a 50 MB chunked body was a 500 HTML page)
    client_body_buffer_size {2 * passed};
    # answers are passed on through memory buffers only, never spilled to proxy_temp_path (same reason)
    proxy_max_temp_file_size 0;
    server_tokens off;
    upstream backends {{
{chr(10).join(servers)}
        keepalive 64;
    }}
    upstream panel_events {{
{chr(10).join(event_servers)}
    }}
    upstream charts {{
{chr(10).join(chart_servers)}
        keepalive 16;
    }}
    server {{
        listen {address}:{int(port)} backlog=1024;
        # a body too large even to pass on: the backend's JSON shape, not nginx's HTML page
        error_page 413 = @too_large;
        location @too_large {{
            default_type application/json;
            return 413 '{too_large}';
        }}
{error_pages}
        location = {HEALTH_PATH} {{
            access_log off;
            return 200 "ok\\n";
        }}
        # the panel's pushed state (Server-Sent Events, BE-3): passed on as it comes (no buffering), a stream
        # silent for {events_timeout_s}s is closed (the backend sends a heartbeat every second), so a frozen
        # backend's stream ends and the page connects again, to whichever backend serves (upstream panel_events)
        location = /panel/events {{
            proxy_pass http://panel_events;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_buffering off;
            proxy_cache off;
            proxy_connect_timeout {int(connect_timeout_ms)}ms;
            proxy_read_timeout {events_timeout_s}s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {len(upstreams)};
        }}
        # chart reads and the panel's static files (GETs): a longer read timeout and an upstream in which no
        # server is marked down, so a slow answer is waited for, never a 504 at {int(read_timeout_ms)} ms, and never
        # takes backend-a out of service for the webhook; a dead A (error) or a frozen one (timeout, after
        # {int(chart_read_timeout_ms)} ms) is left for B. POSTs are never sent twice here (no non_idempotent)
        location ~ ^({chart_regex})$ {{
            proxy_pass http://charts;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_connect_timeout {int(connect_timeout_ms)}ms;
            proxy_send_timeout 1s;
            proxy_read_timeout {int(chart_read_timeout_ms)}ms;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {len(upstreams)};
        }}
        # the webhook (BE-2's failover under 500 ms) and the panel's session, state and orders (TV-1)
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_connect_timeout {int(connect_timeout_ms)}ms;
            proxy_send_timeout 1s;
            proxy_read_timeout {int(read_timeout_ms)}ms;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries {len(upstreams)};
            proxy_next_upstream_timeout 3s;
        }}
    }}
}}
"""


def _listening(address: str, port: int):
    def probe() -> bool:
        try:
            with socket.create_connection((address, port), timeout=0.5) as s:
                s.sendall(f"GET {HEALTH_PATH} HTTP/1.0\r\nHost: proxy\r\n\r\n".encode())
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
    return probe


def proxy_node(name: str, address: str, port: int, upstreams: Sequence[tuple[str, int]], state_dir: Path, *,
               log_path: Path | None = None, registry: PidRegistry | None = None, role: str = "proxy",
               **conf) -> ProcessNode:
    """An nginx process in front of ``upstreams`` (not started); ``conf``: :func:`nginx_conf` options. Ready when
    ``GET /proxy-health`` answers 200 on ``address:port``."""
    binary = nginx_binary()
    prefix = Path(state_dir)
    prefix.mkdir(mode=0o700, parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(mode=0o700, exist_ok=True)
    conf_path = prefix / "nginx.conf"

    def render() -> None:  # before every (re)start: a folder never runs with what an earlier run left
        write_private(conf_path, nginx_conf(address, port, upstreams, prefix, **conf))

    render()
    return ProcessNode(
        name=name, role=role, address=address, port=port,
        argv=[binary, "-p", str(prefix), "-c", str(conf_path), "-e", str(prefix / "error.log")],
        log_path=Path(log_path) if log_path else prefix / f"{name}.log", ready=_listening(address, port),
        registry=registry, before_start=render,
        extra={"kind": "nginx", "config": str(conf_path), "access_log": str(prefix / "access.log")},
    )


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    """The proxy of a topology with the ``backend`` service: in front of its backends, A first, B as backup."""
    backends = sorted(topo.of_kind("backend"), key=lambda s: s.name)
    s = topo.settings
    return proxy_node(spec.name, spec.address, spec.port, [(b.address, b.port) for b in backends],
                      Path(run_dir) / "data" / spec.name, log_path=Path(run_dir) / "logs" / f"{spec.name}.log",
                      registry=registry, role=spec.role, read_timeout_ms=int(s["backend.proxy_read_timeout_ms"]),
                      max_fails=int(s["backend.max_fails"]), fail_timeout_s=float(s["backend.fail_timeout_s"]),
                      chart_read_timeout_ms=int(s["backend.chart_read_timeout_ms"]),
                      max_body_bytes=BackendConfig.max_body_bytes)


__all__ = ["CHART_PATHS", "CHART_READ_TIMEOUT_MS", "HEALTH_PATH", "STATIC_PATHS", "NginxMissing", "build_node", "nginx_binary", "nginx_conf", "proxy_body_bytes", "proxy_node"]
