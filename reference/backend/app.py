"""The backend (BE-1..4): a stateless FastAPI app run under uvicorn, two instances behind the proxy (BE-2).

Endpoints (every error is JSON ``{"error": "<one sentence>"}`` with a 4xx/5xx status; the server stays up):

====================================  =================================================================================
``POST /webhook/tradingview``         an alert (``reference.backend.webhook``) -> 202 ``accepted`` (its signal is on
                                      RTSS, confirmed by a replica), 200 ``duplicate`` (that alert id was accepted
                                      before, or its claimant died after the engine read it (RTS has it): nothing
                                      sent), 409 (the same alert id is being submitted right now:
                                      retry), 401 (passphrase), 400/413/422 (body), 429 (rate per source, with
                                      ``Retry-After``), 503 (Redis cannot confirm the signal: send it again with the
                                      same alert id; safe, the engine executes a signal id once)
``GET /alerts/{alert_id}``            what became of an alert: its claim and its signal's trade state (RTS); 404
                                      if neither exists (never sent, or its claim expired with no trade state)
``GET /orders/{signal_id}``           a signal's trade state from RTS (status, order, attempts, ...); 404 if none
``GET /positions``                    the engine's open positions from RTS
``GET /health``                       liveness: 200 while the process serves
``GET /ready``                        readiness: 200 when a primary a majority of Sentinels names answers PING
``GET /config`` ``/symbols``          TradingView's UDF datafeed (``reference.backend.datafeed``); while ClickHouse
``GET /history`` ``/time``            cannot answer, ``/history`` answers from this backend's DuckDB copy of the fills
                                      it read from RTRS (``reference.backend.historycache``: ``"source": "duckdb"``,
                                      header ``X-History-Source``), and 503 "history is unavailable" when it has none
``GET /trades``                       the newest final outcomes of a symbol from ClickHouse
====================================  =================================================================================

Idempotency (exactly one RTSS entry per alert id, across both backends and concurrent retries): a request first
claims the alert id (``SET <claim> pending:... NX PX claim_pending_ms``); only the claimant submits, with the
project's signal sender (``reference.engine.submit``: majority primary, XADD + WAIT, resend unconfirmed with the
same signal id), then marks the claim ``accepted`` for ``claim_ttl_s``. A claimant that dies mid-submission leaves
a pending claim that expires, so a retry can submit again, with the same signal id, which the engine answers
``duplicate`` if the first copy made it: the order is still executed once (ENG-5).
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
import time
from typing import Any

import redis
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from reference.engine.contract import Keys, parse_position_field
from reference.engine.redislink import RedisLink, RedisUnavailable
from reference.engine.submit import SignalSubmitter, SubmitterConfig

from . import datafeed, webhook
from .config import BackendConfig, read_secret

log = logging.getLogger("tradedrill.backend")

ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(webhook.REQUIRED),
    "additionalProperties": False,
    "properties": {
        "passphrase": {"type": "string", "maxLength": 200},
        "alert_id": {"type": "string", "pattern": r"^[A-Za-z0-9_.:\-]{1,60}$"},
        "symbol": {"type": "string", "maxLength": 32},
        "side": {"type": "string", "enum": ["buy", "sell"]},
        "volume": {"oneOf": [{"type": "number"}, {"type": "string", "maxLength": 32}]},
        "order_type": {"type": "string", "enum": ["market", "limit", "stop"]},
        "price": {"type": "number"}, "sl": {"type": "number"}, "tp": {"type": "number"},
        # the broker login: a string of digits, or the same number as a JSON integer (TradingView templates)
        "account": {"oneOf": [{"type": "string", "maxLength": 20},
                              {"type": "integer", "minimum": 0, "maximum": webhook.MAX_ACCOUNT}]},
        "comment": {"type": "string", "maxLength": 64},
        "time": {"type": "string", "maxLength": 40},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_WEBHOOK_RESPONSES = {str(code): {"description": what, "content": {"application/json": {"schema": _ERROR}}}
                      for code, what in ((400, "not JSON"), (401, "passphrase wrong or missing"),
                                         (409, "the same alert id is being submitted"), (413, "body too large"),
                                         (422, "a field is wrong"), (429, "rate limit of the source"),
                                         (503, "Redis cannot confirm the signal"))}
_WEBHOOK_RESPONSES["202"] = {"description": "accepted: the signal is on RTSS"}
_WEBHOOK_RESPONSES["200"] = {"description": "duplicate: the alert id was accepted before"}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Backend:
    """The app's state: config, secrets, one signal sender per worker thread, the rate limiter, history."""

    def __init__(self, config: BackendConfig, passphrase: str | None = None):
        self.config = config
        self.keys = Keys.of(config)
        self.passphrase = passphrase if passphrase is not None else read_secret(config.passphrase_file,
                                                                                  "webhook passphrase")
        if not self.passphrase:
            raise ValueError(f"the webhook passphrase file {config.passphrase_file} is empty")
        self.redis_password = read_secret(config.redis_password_file, "Redis password") or None
        self.limiter = webhook.RateLimiter(config.rate_per_s, config.rate_burst)
        self.history = datafeed.ClickHouseHistory(config)
        self.cache = None   # reference.backend.historycache.HistoryCache (start_history_cache)
        self.trusted = {str(a) for a in config.trusted_proxies}
        self._local = threading.local()
        self._submitters: list[SignalSubmitter] = []
        self.consumers: list = []   # reference.ea.consumer.TickConsumer, one per EA stream (start_ticks)
        self._lock = threading.Lock()
        self.started = time.time()

    def submitter_config(self) -> SubmitterConfig:
        c = self.config
        creds = (c.redis_username or None, self.redis_password)
        return SubmitterConfig(sentinels=[tuple(s) for s in c.sentinels], master_name=c.master_name,
                               redis_host=c.redis_host, redis_port=c.redis_port, credentials=creds,
                               wait_replicas=c.wait_replicas, wait_ms=c.wait_ms, max_attempts=c.max_attempts,
                               redis_socket_timeout_s=c.redis_socket_timeout_s,
                               redis_connect_timeout_s=c.redis_connect_timeout_s, instance=c.instance,
                               client_prefix="backend", redis_retry_interval_s=0.1)

    def submitter(self) -> SignalSubmitter:
        """This worker thread's sender (its Redis link is not shared between threads)."""
        sub = getattr(self._local, "submitter", None)
        if sub is None:
            sub = SignalSubmitter(self.submitter_config(), name=f"{self.config.instance}-{threading.get_ident()}")
            self._local.submitter = sub
            with self._lock:
                self._submitters.append(sub)
        return sub

    @property
    def link(self) -> RedisLink:
        return self.submitter().link

    def source_of(self, request: Request) -> str:
        """The client address: the proxy's ``X-Real-IP`` when the peer is a trusted proxy, else the peer."""
        peer = request.client.host if request.client else "unknown"
        if peer in self.trusted:
            forwarded = request.headers.get("x-real-ip", "")
            try:
                return str(ipaddress.ip_address(forwarded.strip()))
            except ValueError:
                return peer
        return peer

    # -- the webhook ----------------------------------------------------------------------------------------------
    def accept(self, alert: webhook.Alert) -> JSONResponse:
        cfg = self.config
        key = webhook.claim_key(self.keys, alert.alert_id)
        mine = f"{webhook.PENDING}:{cfg.instance}:{int(time.time() * 1000)}"
        sub = self.submitter()
        try:
            claimed = sub.link.run(lambda c: c.set(key, mine, nx=True, px=int(cfg.claim_pending_ms)))
            current = None if claimed else sub.link.run(lambda c: c.get(key))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"Redis cannot take the alert now ({_line(exc)}); send it again with the same "
                              f"alert_id", {"Retry-After": "1"})
        if not claimed:
            state = webhook.parse_claim(current)
            if state and state[0] == webhook.ACCEPTED:
                return JSONResponse({"status": "duplicate", "alert_id": alert.alert_id, "signal_id": state[1],
                                     "entry_id": state[2]}, status_code=200)
            # the claimant may have put it on RTSS and then died or frozen before answering (a killed or paused
            # backend, nginx retrying here): once the engine has read it, its trade state is in RTS, so say so
            try:
                seen = sub.link.run(lambda c: c.hget(self.keys.rts_signal(alert.signal_id), "status"))
            except (RedisUnavailable, redis.RedisError):
                seen = None
            if seen is not None:
                return JSONResponse({"status": "duplicate", "alert_id": alert.alert_id,
                                     "signal_id": alert.signal_id, "entry_id": None, "trade_status": seen},
                                    status_code=200)
            return error(409, f"alert {alert.alert_id} is being submitted by another request; ask again in a "
                              f"moment with the same alert_id", {"Retry-After": "1"})
        got = sub.submit(self.keys.rtss, alert.fields, deadline_s=cfg.submit_deadline_s)
        if got.confirmed:
            value = f"{webhook.ACCEPTED}:{alert.signal_id}:{got.entry_id}"
            try:
                sub.link.run(lambda c: c.set(key, value, ex=int(cfg.claim_ttl_s)))
            except (RedisUnavailable, redis.RedisError) as exc:
                # the signal is on RTSS; the pending claim expires and a retry resubmits the same signal id,
                # which the engine answers duplicate
                log.warning("alert %s accepted but its claim not marked: %s", alert.alert_id, _line(exc))
            return JSONResponse({"status": "accepted", "alert_id": alert.alert_id, "signal_id": alert.signal_id,
                                 "entry_id": got.entry_id, "replicas": got.replicas, "attempts": got.attempts},
                                status_code=202)
        try:  # release the claim so a retry may submit again (same signal id: safe)
            sub.link.run(lambda c: c.set(key, f"released:{cfg.instance}", px=1))
        except (RedisUnavailable, redis.RedisError):
            pass  # it expires after claim_pending_ms
        return error(503, f"the signal of alert {alert.alert_id} was not confirmed by Redis ({got.outcome}: "
                          f"{got.error}); send it again with the same alert_id (the engine executes it once)",
                     {"Retry-After": "1"})

    def start_history_cache(self) -> None:
        """The DuckDB copy of RTRS's fills (``history_cache_path``; none when empty): never fatal."""
        if not self.config.history_cache_path:
            return
        from reference.engine.redislink import RedisLink

        from .historycache import HistoryCache

        name = f"{self.config.instance}-history"
        try:
            self.cache = HistoryCache(self.config.history_cache_path, self.keys.rtrs,
                                      lambda: RedisLink(self.submitter_config(), name=name)).start()
        except Exception as exc:  # noqa: BLE001 - the backend serves without its copy; /ready says so
            log.error("history cache %s not started: %s", self.config.history_cache_path, _line(exc))
            self.cache = None

    def start_ticks(self) -> None:
        """One tick consumer per configured EA stream (``ea_streams``); a consumer that cannot start is logged and
        left out (the panel then shows no ticks from it), never fatal."""
        from reference.ea.consumer import ConsumerConfig, TickConsumer

        for stream in self.config.ea_streams:
            try:
                cfg = ConsumerConfig(tuple(stream["udp"]), tuple(stream["tcp"]),
                                     consumer_id=f"{self.config.instance}", bind_host=self.config.host,
                                     ea_instance=str(stream.get("instance", "ea")))
                self.consumers.append(TickConsumer(cfg).start())
            except (OSError, KeyError, TypeError, ValueError) as exc:
                log.error("tick consumer for %s not started: %s", stream, _line(exc))

    def latest_ticks(self) -> dict:
        """``{symbol: {"bid", "ask", "time_msc", "seq", "ea"}}``: the newest tick per symbol over every EA."""
        out: dict = {}
        for consumer in self.consumers:
            for symbol, tick in dict(consumer.latest).items():
                if symbol not in out or tick.time_msc > out[symbol]["time_msc"]:
                    out[symbol] = {"bid": tick.bid, "ask": tick.ask, "time_msc": tick.time_msc, "seq": tick.seq,
                                   "ea": consumer.cfg.ea_instance}
        return out

    def close(self) -> None:
        for consumer in self.consumers:
            try:
                consumer.stop()
            except Exception:  # noqa: BLE001 - shutdown goes on
                pass
        self.consumers = []
        if self.cache is not None:
            self.cache.stop()
        with self._lock:
            subs, self._submitters = self._submitters, []
        for sub in subs:
            try:
                sub.close()
            except Exception:  # noqa: BLE001
                pass
        self.history.close()


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def create_app(config: BackendConfig, passphrase: str | None = None) -> FastAPI:
    """The FastAPI app of one backend instance (``passphrase``: instead of ``config.passphrase_file``, tests)."""
    backend = Backend(config, passphrase)
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        backend.start_ticks()
        backend.start_history_cache()
        try:
            yield
        finally:
            backend.close()

    app = FastAPI(title="tradedrill backend", version="1", lifespan=lifespan,
                  description="TradingView webhook, trade status and UDF chart history of the tradedrill reference "
                              "stack (BE-1..4, TV-4).")
    app.state.backend = backend

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):  # noqa: ARG001
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return error(422, f"{first.get('loc', ('request',))[0]} parameter {where!r}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # noqa: ARG001 - one line, never a traceback body
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the backend stays up")

    @app.post("/webhook/tradingview", status_code=202, responses=_WEBHOOK_RESPONSES,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ALERT_SCHEMA}}}})
    def tradingview_webhook(request: Request, raw: bytes = _body_dependency()):
        """Accept one TradingView alert (BE-4): see the module docstring for every answer."""
        wait = backend.limiter.take(backend.source_of(request))
        if wait > 0:
            return error(429, f"too many alerts from this source (limit {config.rate_per_s:g}/s, burst "
                              f"{config.rate_burst}); retry in {wait:.2f} s",
                         {"Retry-After": str(max(1, int(wait + 0.999)))})
        try:
            doc = webhook.parse_body(raw, config.max_body_bytes)
            if not webhook.passphrase_ok(doc.get("passphrase"), backend.passphrase):
                raise webhook.AlertError(401, "field 'passphrase' is missing or wrong")
            alert = webhook.parse_alert(doc, account=str(config.account), max_volume=config.max_volume)
        except webhook.AlertError as bad:
            return error(bad.status, bad.message)
        return backend.accept(alert)

    @app.get("/alerts/{alert_id}")
    def alert_status(alert_id: str):
        """``{"alert_id", "claim": {state, ...} | null, "order": RTS hash | null}``; 404 when both are missing
        (like ``/orders/<signal_id>``: an unknown id is not an answer full of nulls)."""
        if not webhook.ALERT_ID_RE.fullmatch(alert_id):
            return error(422, "alert_id must be 1-60 characters of letters, digits and _.:-")
        try:
            claim = backend.link.run(lambda c: c.get(webhook.claim_key(backend.keys, alert_id)))
            order = backend.link.run(lambda c: c.hgetall(backend.keys.rts_signal(webhook.signal_id_of(alert_id))))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"Redis cannot answer now ({_line(exc)})")
        parsed = webhook.parse_claim(claim)
        if not parsed and not order:
            return error(404, f"no alert {alert_id!r} is known (never accepted, or its claim expired after "
                              f"{config.claim_ttl_s // 86400} days with no trade state)")
        return {"alert_id": alert_id, "signal_id": webhook.signal_id_of(alert_id),
                "claim": {"state": parsed[0]} if parsed else None, "order": order or None}

    @app.get("/orders/{signal_id}")
    def order_status(signal_id: str):
        """The trade state of one signal from RTS (``RTS:<group>:signal:<id>``), 404 when there is none."""
        try:
            order = backend.link.run(lambda c: c.hgetall(backend.keys.rts_signal(signal_id[:64])))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"Redis cannot answer now ({_line(exc)})")
        if not order:
            return error(404, f"no trade state for signal {signal_id[:64]!r} (not executed yet, or unknown)")
        return {"signal_id": signal_id, **order}

    @app.get("/positions")
    def positions():
        """``{"positions": [{"ticket", "broker", ...}, ...]}``: the engine's open positions at every broker from RTS
        (``<broker>:<ticket>`` -> JSON, ENG-5), ordered by broker then ticket; ``broker`` from the field (else the
        JSON's: a bare-ticket field of an older engine). 503 while Redis cannot answer."""
        try:
            raw = backend.link.run(lambda c: c.hgetall(backend.keys.rts_positions))
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"Redis cannot answer now ({_line(exc)})")
        out = []
        for field, value in sorted((raw or {}).items()):
            try:
                item = json.loads(value)
            except ValueError:
                item = {"raw": value}
            item = item if isinstance(item, dict) else {"value": item}
            broker, ticket = parse_position_field(field)
            out.append({**item, "ticket": ticket, "broker": broker or str(item.get("broker") or "")})
        return {"positions": out}

    @app.get("/health")
    def health():
        """Liveness (BE-1's probe): the process serves."""
        return {"status": "ok", "instance": config.instance, "uptime_s": round(time.time() - backend.started, 3)}

    @app.get("/ready")
    def ready():
        """Readiness: 200 when the primary a majority of Sentinels names answers PING, else 503 with the reason."""
        try:
            backend.link.run(lambda c: c.ping())
        except (RedisUnavailable, redis.RedisError) as exc:
            return error(503, f"not ready: {_line(exc)}")
        addr = backend.link.address
        return {"status": "ready", "instance": config.instance,
                "redis_primary": f"{addr[0]}:{addr[1]}" if addr else None,
                "history": "configured" if backend.history.configured else "unavailable (no ClickHouse configured)",
                "history_cache": backend.cache.status() if backend.cache is not None else None}

    @app.get("/config")
    def udf_config():
        return datafeed.udf_config()

    @app.get("/symbols")
    def udf_symbols(symbol: str):
        try:
            return datafeed.udf_symbol(symbol, list(config.symbols))
        except datafeed.BadRequest as bad:
            return JSONResponse({"s": "error", "errmsg": str(bad)}, status_code=404)

    @app.get("/history")
    def udf_history(symbol: str, resolution: str, to: int, from_: int = Query(0, alias="from"),
                    countback: int | None = None):  # noqa: ARG001 - UDF sends it; the from..to range decides
        """UDF bars ``{"s": "ok", "t", "o", "h", "l", "c", "v"}`` / ``{"s": "no_data"}`` from ClickHouse (TV-4);
        while ClickHouse cannot answer, from this backend's DuckDB copy (the same shape plus ``"source":
        "duckdb"``, ``cache_complete_from_ms``, ``partial`` and ``clickhouse``: why ClickHouse did not answer); 503
        when neither can; 422 for a wrong parameter. Header ``X-History-Source``: ``clickhouse`` or ``duckdb``."""
        start_s = from_
        try:
            name, bar_s = datafeed.check_history_query(symbol, resolution, start_s, to)
            return JSONResponse(backend.history.bars(name, bar_s, start_s, to),
                                headers={"X-History-Source": "clickhouse"})
        except (ValueError, datafeed.BadRequest) as bad:
            return JSONResponse({"s": "error", "errmsg": str(bad)[:200]}, status_code=422)
        except datafeed.HistoryUnavailable as exc:
            cached = None
            if backend.cache is not None:
                try:
                    cached = backend.cache.bars(name, bar_s, start_s, to, datafeed.MAX_BARS)
                except Exception as cache_exc:  # noqa: BLE001 - a copy that cannot answer: unavailable, said
                    log.error("history cache cannot answer: %s", _line(cache_exc))
            if cached is None:
                why = "" if backend.cache is None else "; this backend's DuckDB copy cannot answer either"
                return JSONResponse({"s": "error", "errmsg": f"{exc}{why}"}, status_code=503)
            return JSONResponse({**cached, "clickhouse": str(exc)}, headers={"X-History-Source": "duckdb"})

    @app.get("/trades")
    def trades(symbol: str, limit: int = 100):
        try:
            name, _ = datafeed.check_history_query(symbol, "1", 0, 0)
            if not 1 <= limit <= 1000:
                raise datafeed.BadRequest("limit must be from 1 to 1000")
            return {"symbol": name, "trades": backend.history.trades(name, limit)}
        except datafeed.BadRequest as bad:
            return error(422, str(bad))
        except datafeed.HistoryUnavailable as exc:
            return error(503, str(exc))

    @app.get("/ticks")
    def ticks():
        """The latest tick per symbol from the EAs' streams: ``{"ticks": {symbol: {bid, ask, time_msc, seq, ea}},
        "streams": n}`` (``streams`` 0: this backend reads no EA)."""
        return {"ticks": backend.latest_ticks(), "streams": len(backend.consumers)}

    @app.get("/time", response_class=PlainTextResponse)
    def udf_time():
        return str(datafeed.server_time())

    from . import panel

    panel.mount(app, backend, error, _body_dependency())   # TV-3: the local trading panel
    return app


def _body_dependency():
    """The raw request body as bytes (FastAPI dependency), so every JSON error is ours, in one line."""
    from fastapi import Depends

    async def body(request: Request) -> bytes:
        # read at most max_body_bytes + 1: a larger body is refused (413) without holding all of it
        limit = request.app.state.backend.config.max_body_bytes + 1
        chunks, size = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        return b"".join(chunks)

    return Depends(body)
