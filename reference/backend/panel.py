"""The local trading panel (TV-3): the fallback when TradingView is away, served by every backend.

- ``GET /panel/``: the page (``web/index.html``); ``GET /panel/lightweight-charts.js``: TradingView's open-source
  chart library from ``web/node_modules`` (installed by ``run.sh setup`` with ``npm ci``; never a CDN), 503 with
  the command to run when it is not installed.
- ``POST /panel/session`` ``{"passphrase"}`` -> ``{"token"}``: a session token kept in Redis
  (``<ris_prefix>:<group>:panel:session:<token>``, ``session_ttl_s``), so any backend accepts it: a reload or a
  backend failover keeps the session (TV-1); the page caches it in ``localStorage``.
- ``GET /panel/state`` (``Authorization: Bearer <token>``) -> positions from RTS and the instance that answered.
- ``GET /panel/events`` (Bearer): the panel's state pushed to it (BE-3 "push state back", TV-1), Server-Sent Events
  over one long response: ``event: state`` (the instance serving, positions from RTS, the session's orders with
  their trade state from RTS) at once on connect and again whenever it changes, ``event: ticks`` when the latest
  ticks change, a comment line every ``HEARTBEAT_S`` so a dead stream is noticed (the page drops a stream silent
  for 3 s and connects again, through the proxy, to whichever backend serves: a failed or recovered backend's
  clients get the state pushed on their next connection without a reload); ``event: session`` and the end of the
  stream when the session is gone. nginx passes it unbuffered (``tradedrill.services.nginx``).
- ``POST /panel/orders`` (Bearer) ``{"alert_id", "symbol", "side", "volume", ...}``: the webhook's own path
  (same validation, same alert-id claim, same signal sender; source ``panel``), so an order placed while
  TradingView is away flows through Redis like any alert (TV-2); answers as the webhook does. An accepted order's
  alert id is added to the session's order list (``<session key>:orders``, the newest ``SESSION_ORDERS``), which
  the pushed state reports on, whichever backend took it.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import redis
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from reference.engine.contract import parse_position_field
from reference.engine.redislink import RedisUnavailable

from . import webhook

WEB = Path(__file__).resolve().parent / "web"
CHART_JS = WEB / "node_modules" / "lightweight-charts" / "dist" / "lightweight-charts.standalone.production.js"
SESSION_TTL_S = 24 * 3600
SESSION_ORDERS = 50      # alert ids a session's pushed state reports on (the newest)
PUSH_INTERVAL_S = 0.25   # how often a stream looks for a change of state or ticks
HEARTBEAT_S = 1.0        # a comment line at least this often: nginx's read timeout on the stream is 3 s
TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def session_key(backend, token: str) -> str:
    return f"{backend.keys.ris_prefix}:{backend.keys.group}:panel:session:{token}"


def orders_key(backend, token: str) -> str:
    return f"{session_key(backend, token)}:orders"


# MT5's ORDER_TYPE_* / POSITION_TYPE_* numbers in RTS positions' "type": 0/1 a position's side, 2..7 a pending order
MT5_TYPES = {0: "buy", 1: "sell", 2: "buy limit", 3: "sell limit", 4: "buy stop", 5: "sell stop",
             6: "buy stop limit", 7: "sell stop limit"}


def positions_of(raw: dict | None) -> list[dict]:
    """RTS positions (``<broker>:<ticket>`` -> JSON, every broker's, ENG-5: ``contract.position_field``; a bare
    ticket of an older engine too) as the panel lists them, ordered by broker then field: each with its ``ticket``
    and ``broker`` (from the field, else the JSON's, else ""), its ``side`` in words (from MT5's ``type``: ``buy``,
    ``sell``, ``sell limit``, ...; None when RTS has no type) and ``pending`` (True for a pending order's type).
    Two brokers' positions of the same ticket are two rows."""
    out = []
    for field, value in sorted((raw or {}).items()):
        try:
            item = json.loads(value)
        except ValueError:
            item = {}
        item = item if isinstance(item, dict) else {}
        broker, ticket = parse_position_field(field)
        kind = item.get("type")
        side = MT5_TYPES.get(kind) if isinstance(kind, int) and not isinstance(kind, bool) else None
        out.append({**item, "ticket": ticket, "broker": broker or str(item.get("broker") or ""), "side": side,
                    "pending": side is not None and kind >= 2})
    return out


def alert_ids_of(raw: str | None) -> list[str]:
    """The session's order list as stored (a JSON list of alert ids); anything else is an empty list."""
    try:
        got = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [a for a in got if isinstance(a, str) and webhook.ALERT_ID_RE.fullmatch(a)][:SESSION_ORDERS] \
        if isinstance(got, list) else []


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
        return {"instance": backend.config.instance, "positions": positions_of(raw)}

    def pushed_state(token: str) -> dict | None:
        """The state a stream pushes: ``{"instance", "positions", "orders"}``, or ``{"instance", "error"}`` while
        Redis cannot answer; None when the session is gone."""
        instance = backend.config.instance
        try:
            def read(c):
                pipe = c.pipeline(transaction=False)
                pipe.get(session_key(backend, token))
                pipe.get(orders_key(backend, token))
                pipe.hgetall(backend.keys.rts_positions)
                return pipe.execute()
            alive, listed, raw_positions = backend.link.run(read)
            if alive is None:
                return None
            ids = alert_ids_of(listed)

            def trades(c):
                pipe = c.pipeline(transaction=False)
                for alert_id in ids:
                    pipe.hgetall(backend.keys.rts_signal(webhook.signal_id_of(alert_id)))
                return pipe.execute()
            states = backend.link.run(trades) if ids else []
        except (RedisUnavailable, redis.RedisError) as exc:
            return {"instance": instance, "error": f"Redis cannot answer now ({' '.join(str(exc).split())[:120]})"}
        orders = [{"alert_id": a, "status": (st or {}).get("status") or "accepted", "price": (st or {}).get("price"),
                   "symbol": (st or {}).get("symbol"), "side": (st or {}).get("side"),
                   "volume": (st or {}).get("volume")} for a, st in zip(ids, states)]
        return {"instance": instance, "positions": positions_of(raw_positions), "orders": orders}

    @app.get("/panel/events", include_in_schema=False)
    async def panel_events(request: Request):
        """The panel's state pushed (Server-Sent Events): see the module docstring."""
        token, bad = await run_in_threadpool(session_of, request)
        if bad is not None:
            return bad

        async def stream():
            last_state = last_ticks = None
            last_sent = time.monotonic()
            yield ": connected\n\n"
            while not await request.is_disconnected():
                state = await run_in_threadpool(pushed_state, token)
                if state is None:
                    yield "event: session\ndata: {\"error\": \"the session expired or is unknown: log in again\"}\n\n"
                    return
                text = json.dumps(state, sort_keys=True)
                if text != last_state:
                    last_state, last_sent = text, time.monotonic()
                    yield f"event: state\ndata: {text}\n\n"
                ticks = json.dumps({"ticks": backend.latest_ticks(), "streams": len(backend.consumers)},
                                   sort_keys=True)
                if ticks != last_ticks:
                    last_ticks, last_sent = ticks, time.monotonic()
                    yield f"event: ticks\ndata: {ticks}\n\n"
                if time.monotonic() - last_sent >= HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield ": alive\n\n"
                # pacing of the push loop (how often a change is looked for), not synchronisation
                await asyncio.sleep(PUSH_INTERVAL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

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
        answer = backend.accept(alert)
        if answer.status_code in (200, 202):
            remember(token, alert.alert_id)
        return answer

    def remember(token: str, alert_id: str) -> None:
        """Add ``alert_id`` to the session's order list (newest first). Two orders of one session taken at the
        same moment by two backends can drop one of them from the list (GET then SET): its state is then not
        pushed, the order itself is unaffected."""
        key = orders_key(backend, token)
        try:
            ids = alert_ids_of(backend.link.run(lambda c: c.get(key)))
            ids = [alert_id, *(a for a in ids if a != alert_id)][:SESSION_ORDERS]
            backend.link.run(lambda c: c.set(key, json.dumps(ids), ex=SESSION_TTL_S))
        except (RedisUnavailable, redis.RedisError):
            pass   # the order stands; the page keeps its own list and shows it as accepted
