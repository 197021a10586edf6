"""The local trading panel (TV-3): the fallback when TradingView is away, served by every backend.

- ``GET /panel/``: the page (``web/index.html``); ``GET /panel/lightweight-charts.js``: TradingView's open-source
  chart library from ``web/node_modules`` (installed by ``run.sh setup`` with ``npm ci``; never a CDN), 503 with
  the command to run when it is not installed.
- ``POST /panel/session`` ``{"passphrase"}`` -> ``{"token"}``: a session token kept in Redis
  (``<ris_prefix>:<group>:panel:session:<token>``, ``session_ttl_s``), so any backend accepts it: a reload or a
  backend failover keeps the session (TV-1); the page caches it in ``localStorage``.
- ``GET /panel/state`` (``Authorization: Bearer <token>``) -> positions from RTS and the instance that answered.
- ``POST /panel/orders`` (Bearer) ``{"alert_id", "symbol", "side", "volume", ...}``: the webhook's own path
  (same validation, same alert-id claim, same signal sender; source ``panel``), so an order placed while
  TradingView is away flows through Redis like any alert (TV-2); answers as the webhook does.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import redis
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from reference.engine.redislink import RedisUnavailable

from . import webhook

WEB = Path(__file__).resolve().parent / "web"
CHART_JS = WEB / "node_modules" / "lightweight-charts" / "dist" / "lightweight-charts.standalone.production.js"
SESSION_TTL_S = 24 * 3600
TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def session_key(backend, token: str) -> str:
    return f"{backend.keys.ris_prefix}:{backend.keys.group}:panel:session:{token}"


def mount(app: FastAPI, backend, error, body) -> None:
    """Add the panel's routes to ``app`` (``backend``: the app's :class:`reference.backend.app.Backend`;
    ``body``: the app's raw-body dependency)."""

    def session_of(request: Request):
        """The request's valid token, or an error response."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token or len(token) > 64 or not set(token) <= TOKEN_CHARS:
            return None, error(401, "no session: log in with the passphrase (POST /panel/session)")
        try:
            found = backend.link.run(lambda c: c.get(session_key(backend, token)))
        except (RedisUnavailable, redis.RedisError) as exc:
            return None, error(503, f"sessions cannot be read now (Redis: {' '.join(str(exc).split())[:120]})")
        if found is None:
            return None, error(401, "the session expired or is unknown: log in again")
        return token, None

    @app.get("/panel/", include_in_schema=False)
    def panel_page():
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/panel/lightweight-charts.js", include_in_schema=False)
    def chart_library():
        if not CHART_JS.exists():
            return error(503, "lightweight-charts is not installed: run `bash run.sh setup` (npm ci in "
                              "reference/backend/web)")
        return FileResponse(CHART_JS, media_type="application/javascript")

    @app.post("/panel/session")
    def open_session(raw: bytes = body):
        """``{"passphrase"}`` -> 201 ``{"token", "ttl_s"}``; 401 for a wrong passphrase."""
        try:
            doc = webhook.parse_body(raw, backend.config.max_body_bytes)
        except webhook.AlertError as bad:
            return error(bad.status, bad.message)
        if not webhook.passphrase_ok(doc.get("passphrase"), backend.passphrase):
            return error(401, "field 'passphrase' is missing or wrong")
        token = secrets.token_urlsafe(24)
        value = json.dumps({"created_ms": int(time.time() * 1000), "by": backend.config.instance})
        try:
            backend.link.run(lambda c: c.set(session_key(backend, token), value, ex=SESSION_TTL_S))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"the session cannot be stored now (Redis: {' '.join(str(exc).split())[:120]})")
        return JSONResponse({"token": token, "ttl_s": SESSION_TTL_S}, status_code=201)

    @app.get("/panel/state")
    def panel_state(request: Request):
        """``{"instance", "positions": [...]}`` for a valid session."""
        token, bad = session_of(request)
        if bad is not None:
            return bad
        try:
            raw = backend.link.run(lambda c: c.hgetall(backend.keys.rts_positions))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"Redis cannot answer now ({' '.join(str(exc).split())[:120]})")
        positions = []
        for ticket, value in sorted((raw or {}).items()):
            try:
                item = json.loads(value)
            except ValueError:
                item = {}
            positions.append({"ticket": ticket, **(item if isinstance(item, dict) else {})})
        return {"instance": backend.config.instance, "positions": positions}

    @app.post("/panel/orders", status_code=202)
    def place_order(request: Request, raw: bytes = body):
        """An order from the panel through the webhook's path (answers as ``POST /webhook/tradingview``)."""
        token, bad = session_of(request)
        if bad is not None:
            return bad
        try:
            doc = webhook.parse_body(raw, backend.config.max_body_bytes)
            doc.pop("passphrase", None)
            alert = webhook.parse_alert(doc, account=str(backend.config.account),
                                        max_volume=backend.config.max_volume, require_passphrase=False)
        except webhook.AlertError as bad_body:
            return error(bad_body.status, bad_body.message)
        alert.fields["source"] = "panel"
        return backend.accept(alert)
