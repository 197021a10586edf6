"""The drill workload: open-loop signal producers that XADD to RTSS, one RTRS reader that completes their ``trade``
operations, an optional writer through the Sentinel-aware client (``redis_write``) and the set writers of
``params["writers"]`` (``scenarios.setclients``, one per side of a partition), every operation recorded in the run's
history (Jepsen's clients).

Open loop: producers keep invoking at the offered rate during an outage, so the first success after a fault is
seen when it happens. Operations (``scenarios.registry`` lists them): ``trade`` is ok when the signal's RTRS
result says executed, fail when it says rejected, unknown when no result came within the workload's timeout
(the settle period still waits for every acknowledged signal's result before the run ends). A run that ends
before its settle (an interrupt, an error) ``halt``s the clients before it closes the history: every thread joined
within one deadline, every ``trade`` still without its result completed ``unknown`` (STOPPED), so every invoke in
history.jsonl has its completion and no client writes to a closed history.

Prices (issue 20): ``params["stops"]`` (``{sl_points, tp_points}``) gives every market signal a stop loss and take
profit that many points from the live price; ``params["pending"]`` (``{order_type: limit|stop, points}``) makes
every signal a pending order that many points away (a buy limit under the ask, a sell limit over the bid; stops the
other way). The live price comes from the primary broker through the simulator client (``Quotes``: one reader
thread, a fresh tick every ``INTERVAL_S``), so the producers stay open loop: a signal takes the newest quote the
reader has, never waits for one; the quote, SL/TP and price go into the operation's history value.
"""
from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING

import redis

from reference.engine import contract
from scenarios import registry, setclients
from scenarios.history import FAIL, OK, UNKNOWN

if TYPE_CHECKING:
    from scenarios.environment import DrillEnvironment

# what a trade whose submission had not begun when its timeout passed is completed with (never sent)
NOT_SENT = "not sent: the harness's senders were behind the offered rate until the signal's timeout"
# what a trade in flight when the run is stopped before its settle (``TradeClients.halt``) is completed with
STOPPED = "stopped before an answer (the run was stopped with the signal in flight)"
# ``halt``'s deadline for the clients' threads beyond the workload's timeout_s, which bounds every client operation
# (a submission, a webhook post and its retries); the RTRS reader's read and reconnect take at most a few seconds
HALT_GRACE_S = 5.0


class TradeClients:
    """Open-loop signal producers plus one RTRS reader that completes their ``trade`` operations."""

    def __init__(self, env: "DrillEnvironment", workload: registry.Workload, stop: threading.Event):
        self.env = env
        self.w = workload
        self.stop = stop
        self.pending: dict[str, tuple[int, str, float]] = {}  # signal id -> (op id, process, deadline)
        # acknowledged signals with no result on RTRS yet; a client gives up after timeout_s, the settle does not
        self.awaiting: set[str] = set()
        self.lock = threading.Lock()
        self.counter = 0
        self.not_sent = 0   # trades whose submission had not begun by their timeout (NOT_SENT)
        self.threads: list[threading.Thread] = []
        self.rng = random.Random(env.seed)
        tag = getattr(env.stack, "signal_tag", "")   # the external provider's per-run tag: its stores outlive runs
        self.run_tag = f"{env.scenario.name[:6]}{env.seed % 100000:05d}" + (f"-{tag}" if tag else "")
        self.quotes: Quotes | None = None   # the live price, when the signals carry prices (issue 20)

    def start(self) -> None:
        self.quotes = Quotes(self.env, self.w.symbols, self.stop) if priced(self.w.params) else None
        if self.quotes is not None:
            self.quotes.first()   # one quote per symbol before the load starts (bounded by the client's timeout)
            self.threads.append(self.quotes.thread())
        if self.w.op == "webhook":   # alerts through the backends' proxy (issue 15): WebhookClients below
            self.threads += WebhookClients(self).threads()
        for i in range(self.w.concurrency if self.w.op == "trade" else 0):
            t = threading.Thread(target=self._producer, args=(f"client-{i}", i), daemon=True)
            self.threads.append(t)
        self.threads.append(threading.Thread(target=self._results, daemon=True))
        if "history" in self.w.params.get("also", ()):   # a chart client through the proxy (issue 15)
            self.threads.append(HistoryReader(self).thread())
        if "panel" in self.w.params.get("also", ()):     # a local-panel user through the proxy (issue 15)
            self.threads.append(PanelClient(self).thread())
        if "redis_write" in self.w.params.get("also", ()):
            self.threads.append(threading.Thread(target=self._writer, daemon=True))
        for i, spec in enumerate(setclients.writer_specs(self.w.params)):
            writer = setclients.SetWriter(self.env, spec, setclients.writer_address(self.env.topology.subnet, i))
            self.threads.append(threading.Thread(target=writer.run, args=(self.stop,), daemon=True,
                                                 name=spec.process))
        for t in self.threads:
            t.start()

    def _next_signal(self) -> dict:
        with self.lock:
            self.counter += 1
            n = self.counter
            side = self.rng.choice(("buy", "sell"))
            symbol = self.rng.choice(self.w.symbols)
        sig = {"signal_id": f"{self.run_tag}-{n:05d}", "account": str(self.env.account), "symbol": symbol, "side": side,
               "volume": f"{self.w.volume}", "order_type": "market", "source": "drill",
               "created_ms": str(int(time.time() * 1000))}
        if self.quotes is not None:
            sig.update(price_fields(self.w.params, side, self.quotes.latest(symbol)))
        return sig

    def _producer(self, process: str, index: int) -> None:
        """Submit signals the way the reference sender does (``reference.engine.submit``): to the primary a majority
        of the Sentinels names, confirmed by WAIT, resent while unconfirmed. The signal's ack is ``ok`` only when
        confirmed, ``unknown`` when Redis may hold it (the op still waits for its result until its timeout), ``fail``
        when it never reached a primary.

        Open loop: this thread only keeps the schedule; each submission runs on a worker of its own (up to
        ``params["submit_workers"]``, default 16, each with its own sender), so a submission that waits for WAIT or
        a failover does not hold back the next invocation (a new user measured 129 of 300 signals offered when the
        submissions ran on this thread)."""
        import concurrent.futures

        from reference.engine import submit as sub

        interval = self.w.concurrency / self.w.rate_per_s
        next_at = time.monotonic() + index * interval / self.w.concurrency
        local = threading.local()
        senders: list = []
        senders_lock = threading.Lock()

        def sender():
            if getattr(local, "sender", None) is None:
                local.sender = sub.SignalSubmitter(self.env.submitter_config(timeout=0.5), name=process,
                                                   stop=self.stop)
                with senders_lock:
                    senders.append(local.sender)
            return local.sender

        def submit(op: int, sig: dict, deadline: float) -> None:
            sid = sig["signal_id"]
            if time.monotonic() >= deadline:
                # offered faster than the senders deliver (the overload drill offers 1,000/s; 64 senders deliver
                # ~300/s on 2 cores): a submission not begun within its timeout is not sent at all. It never
                # reached RTSS (a definite fail), and no queue of stale submissions runs on past the load's end
                # (it did for 17 s, and the engine drained the backlog the drill meant to leave)
                self.env.signal_log.record(sid, FAIL, error=NOT_SENT)
                with self.lock:
                    mine = self.pending.pop(sid, None) is not None
                    self.not_sent += 1
                if mine:
                    self.env.history.complete(op, process, "trade", sid, FAIL, error=NOT_SENT)
                return
            got = sender().submit(self.env.keys.rtss, sig, deadline_s=max(0.0, deadline - time.monotonic()))
            meta = {"symbol": sig["symbol"], "side": sig["side"], "volume": self.w.volume,
                    **{k: sig[k] for k in ("price", "sl", "tp") if k in sig},
                    "attempts": got.attempts, "replicas": got.replicas,
                    "primary": f"{got.address[0]}:{got.address[1]}" if got.address else None}
            if got.outcome == sub.FAILED:
                self.env.signal_log.record(sid, FAIL, error=got.error, **meta)
                with self.lock:
                    mine = self.pending.pop(sid, None) is not None
                if mine:
                    self.env.history.complete(op, process, "trade", sid, FAIL, error=f"submit: {got.error}")
                return
            if got.confirmed:
                self.env.signal_log.record(sid, OK, **meta)
            else:  # Redis may hold it: not an acknowledgement, but its result is still awaited until the timeout
                self.env.signal_log.record(sid, UNKNOWN, error=got.error, **meta)
            with self.lock:
                if got.confirmed and sid in self.pending:   # not answered yet: the settle waits for its result
                    self.awaiting.add(sid)

        workers = int(self.w.params.get("submit_workers", 16))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{process}-submit")
        try:
            while not self.stop.is_set():
                if self.stop.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at += interval
                sig = self._next_signal()
                sid = sig["signal_id"]
                extra = {k: sig.pop(k) for k in ("quote", "no_quote") if k in sig}   # recorded, not sent
                value = {k: sig[k] for k in PRICED_FIELDS if k in sig}
                if "quote" in extra:
                    value["quote"] = extra["quote"]
                op = self.env.history.invoke(process, "trade", sid, value)
                if "no_quote" in extra:   # no live price yet for a priced signal: not sent (its stops would be a guess)
                    self.env.history.complete(op, process, "trade", sid, FAIL, error=extra["no_quote"])
                    continue
                deadline = time.monotonic() + self.w.timeout_s
                with self.lock:   # before the send (its result may come back before the send returns, after a
                    # resend) and from the invoke on, so a halt completes an op whose submission has not begun
                    self.pending[sid] = (op, process, deadline)
                pool.submit(submit, op, sig, deadline)
        finally:
            pool.shutdown(wait=True)   # every invoked signal is recorded (its sends are bounded by its timeout)
            for s in senders:
                s.close()

    def _results(self) -> None:
        from reference.engine.redislink import RedisLink, RedisUnavailable

        last = "0-0"
        link = RedisLink(self.env.submitter_config(timeout=1.0, redis_socket_timeout_s=1.5), name="rtrs-reader")  # type: ignore[arg-type]
        try:
            # until stopped with nothing awaited, or stopped and past the drain deadline (``finish``'s settle, or
            # now for ``halt``: checked here, so a reader whose reads fail also stops at it)
            while not (self.stop.is_set() and (not self.pending and not self.awaiting
                                               or time.monotonic() > getattr(self, "_drain_deadline", float("inf")))):
                self._expire()
                try:
                    batches = link.run(lambda c: c.xread({self.env.keys.rtrs: last}, count=500, block=200))
                except (RedisUnavailable, redis.RedisError):
                    if self.stop.wait(0.1) and not self.pending and not self.awaiting:
                        break
                    continue
                for _stream, entries in batches or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        self._complete(fields)
        finally:
            link.close()

    def _complete(self, fields: dict) -> None:
        sid = fields.get("signal_id") or fields.get("signal")
        if (fields.get("status") or "").lower() == contract.ResultStatus.DUPLICATE.value:
            return  # the answer to a resent copy (nothing sent): the signal's own result is the one that counts
        with self.lock:
            self.awaiting.discard(sid)
            item = self.pending.pop(sid, None)
        if item is None:
            return
        op, process, _deadline = item
        status = (fields.get("status") or "").lower()
        outcome = OK if contract.is_executed(status) else FAIL
        self.env.history.complete(op, process, "trade", sid, outcome, value=fields,
                                  error=None if outcome == OK else fields.get("reason") or status)

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            late = [(sid, v) for sid, v in self.pending.items() if v[2] <= now]
            for sid, _ in late:
                del self.pending[sid]
        for sid, (op, process, _d) in late:
            self.env.history.complete(op, process, "trade", sid, UNKNOWN, error="no result on RTRS within timeout")

    def _writer(self) -> None:
        """One write every 50 ms through the Sentinel-aware client (op ``redis_write``)."""
        n = 0
        r = None
        while not self.stop.wait(0.05):
            n += 1
            key = f"drill:w:{n}"
            op = self.env.history.invoke("writer", "redis_write", key, n)
            try:
                if r is None:
                    r = self.env.redis(timeout=0.3)
                r.set(key, n)
                self.env.history.complete(op, "writer", "redis_write", key, OK)
            except redis.TimeoutError as exc:
                r = None
                self.env.history.complete(op, "writer", "redis_write", key, UNKNOWN, error=repr(exc))
            except redis.RedisError as exc:
                r = None
                outcome = FAIL if "refused" in str(exc).lower() or "master" in str(exc).lower() else UNKNOWN
                self.env.history.complete(op, "writer", "redis_write", key, outcome, error=repr(exc))

    def finish(self, drain_s: float) -> None:
        self._drain_deadline = time.monotonic() + drain_s
        self.stop.set()
        for t in self.threads:
            t.join(timeout=drain_s + 5)
        self._expire_all()

    def halt(self, within_s: float | None = None) -> list[str]:
        """Stop every client now (the run ends before its settle: an interrupt, an error) and join its threads
        within one deadline (``within_s``, default the workload's timeout_s + HALT_GRACE_S), then complete every
        ``trade`` still without its result ``unknown`` (STOPPED): after it, the history can close with a
        completion for every trade invoke. A trade's completion is written once, by whoever takes it out of
        ``pending`` (under the lock), so a thread that outlives the deadline writes none. Returns the names of the
        threads still running at the deadline ([] normally). After ``finish`` it has nothing left to do."""
        self._drain_deadline = min(getattr(self, "_drain_deadline", float("inf")), time.monotonic())
        self.stop.set()
        deadline = time.monotonic() + (self.w.timeout_s + HALT_GRACE_S if within_s is None else within_s)
        for t in self.threads:
            if t.ident is not None:   # an interrupt may come while ``start`` starts them
                t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._expire_all(STOPPED)
        return [t.name for t in self.threads if t.is_alive()]

    def _expire_all(self, error: str = "no result on RTRS before the end") -> None:
        with self.lock:
            left = list(self.pending.items())
            self.pending.clear()
        for sid, (op, process, _d) in left:
            self.env.history.complete(op, process, "trade", sid, UNKNOWN, error=error)


PRICED_FIELDS = ("symbol", "side", "volume", "order_type", "price", "sl", "tp")   # what a trade op records


def priced(params: dict) -> bool:
    """Whether a workload's signals carry prices from the live quote (``stops`` or ``pending``)."""
    return bool(params.get("stops") or params.get("pending"))


def price_fields(params: dict, side: str, quote: dict | None) -> dict:
    """The signal fields ``params["stops"]`` / ``params["pending"]`` add to a ``side`` signal at ``quote``
    ({bid, ask, point, digits, time_msc}); ``{"no_quote": why}`` when there is none yet. Pure, so it is tested
    without a broker.

    Stops: a buy's SL under the bid and TP over it, a sell's SL over the ask and TP under it (the side each closes
    at). Pending: a buy limit ``points`` under the ask and a sell limit over the bid; a buy stop over the ask and a
    sell stop under the bid."""
    if quote is None:
        return {"no_quote": "no live price from the primary broker yet"}
    point, digits = float(quote["point"]), int(quote["digits"])
    buy = side == "buy"
    out: dict = {"quote": {k: quote[k] for k in ("bid", "ask", "time_msc")}}
    pending = params.get("pending")
    if pending:
        away = float(pending["points"]) * point
        limit = pending["order_type"] == "limit"
        if buy:
            price = quote["ask"] - away if limit else quote["ask"] + away
        else:
            price = quote["bid"] + away if limit else quote["bid"] - away
        out.update(order_type=pending["order_type"], price=f"{price:.{digits}f}")
        reference = price
    else:
        reference = quote["bid"] if buy else quote["ask"]
    stops = params.get("stops") or {}
    sign = 1 if buy else -1
    if stops.get("sl_points"):
        out["sl"] = f"{reference - sign * float(stops['sl_points']) * point:.{digits}f}"
    if stops.get("tp_points"):
        out["tp"] = f"{reference + sign * float(stops['tp_points']) * point:.{digits}f}"
    return out


class Quotes:
    """The live price of the workload's symbols, read from the primary broker by one thread through the simulator
    client (``SimulatorTerminal(host, port).initialize(login=...)``), every ``INTERVAL_S``; producers take the newest
    (``latest``) and never wait for the broker, so the load stays open loop while the broker is slow or away."""

    INTERVAL_S = 0.1

    def __init__(self, env: "DrillEnvironment", symbols: tuple[str, ...], stop: threading.Event):
        self.env = env
        self.symbols = tuple(symbols)
        self.stop = stop
        self.lock = threading.Lock()
        self.quotes: dict[str, dict] = {}
        self.points: dict[str, tuple[float, int]] = {}
        self.terminal = None
        broker = next(n for n in env.topology.of_kind("mt5") if n.role == "broker-primary")
        self.address = (broker.address, broker.port)

    def _read(self) -> None:
        from reference.mt5.simclient import SimulatorTerminal

        if self.terminal is None:
            terminal = SimulatorTerminal(*self.address)
            if not terminal.initialize(login=int(self.env.account)):
                raise ConnectionError(f"quotes: {terminal.last_error()}")
            self.terminal = terminal
        for symbol in self.symbols:
            if symbol not in self.points:
                info = self.terminal.symbol_info(symbol)
                if info is None:
                    raise ConnectionError(f"quotes: no symbol_info({symbol}): {self.terminal.last_error()}")
                self.points[symbol] = (float(info.point), int(info.digits))
            tick = self.terminal.symbol_info_tick(symbol)
            if tick is None:
                raise ConnectionError(f"quotes: no tick for {symbol}: {self.terminal.last_error()}")
            point, digits = self.points[symbol]
            with self.lock:
                self.quotes[symbol] = {"bid": float(tick.bid), "ask": float(tick.ask), "time_msc": int(tick.time_msc),
                                       "point": point, "digits": digits}

    def _read_safely(self) -> None:
        try:
            self._read()
        except Exception:  # noqa: BLE001 - the broker away: keep the last quote, reconnect at the next read
            if self.terminal is not None:
                try:
                    self.terminal.shutdown()
                except Exception:  # noqa: BLE001
                    pass
            self.terminal = None

    def first(self) -> None:
        self._read_safely()

    def latest(self, symbol: str) -> dict | None:
        with self.lock:
            q = self.quotes.get(symbol)
            return dict(q) if q else None

    def thread(self) -> threading.Thread:
        def run() -> None:
            try:
                while not self.stop.wait(self.INTERVAL_S):   # pacing of the reader (open loop), not synchronisation
                    self._read_safely()
            finally:
                if self.terminal is not None:
                    self.terminal.shutdown()
        return threading.Thread(target=run, daemon=True, name="quotes")


class WebhookClients:
    """Open-loop TradingView alert senders through the proxy (issue 15; op ``webhook``): one alert per tick, each
    posted ``copies`` times at once (``params["copies"]``: ``[low, high]``, drawn per alert from the run's seed;
    default one copy), every post its own history operation keyed by the alert id.

    A post is ``ok`` on 202 (accepted: its signal is on RTSS) or 200 (duplicate: accepted before); a 409 (the
    same alert id is being submitted), a 5xx or a connection error is retried with the same alert id until the
    workload's ``timeout_s`` (that is what a webhook sender that must not lose an alert does), then ``unknown``
    (it may have reached RTSS); any other 4xx is ``fail``. The first accepted post of an alert records its signal
    in signals.jsonl (ack ``ok``), so the trade checkers (duplicates, lost signals) judge webhook signals too, and
    the trade clients' RTRS reader waits for its result during the settle."""

    RETRY_PAUSE_S = 0.05   # between two posts of one alert: pacing, not synchronisation (each post is fresh)

    def __init__(self, trades: "TradeClients"):
        from tradedrill.services.backend import read_passphrase

        self.trades = trades
        self.env = trades.env
        self.w = trades.w
        proxy = self.env.topology.node("proxy")
        self.url = f"http://{proxy.address}:{proxy.port}/webhook/tradingview"
        self.passphrase = read_passphrase(self.env.stack.run_dir)
        low, high = (list(self.w.params.get("copies", (1, 1))) + [1, 1])[:2]
        self.copies = (int(low), int(high))
        self.accepted: set[str] = set()

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self._sender, args=(f"client-{i}", i), daemon=True, name=f"webhook-{i}")
                for i in range(self.w.concurrency)]

    def _alert(self) -> tuple[str, dict, int]:
        t = self.trades
        with t.lock:
            t.counter += 1
            n = t.counter
            side = t.rng.choice(("buy", "sell"))
            symbol = t.rng.choice(self.w.symbols)
            copies = t.rng.randint(*self.copies)
        alert_id = f"{t.run_tag}-{n:05d}"
        return alert_id, {"passphrase": self.passphrase, "alert_id": alert_id, "symbol": symbol, "side": side,
                          "volume": self.w.volume}, copies

    def _sender(self, process: str, index: int) -> None:
        import httpx
        from concurrent.futures import ThreadPoolExecutor

        stop = self.trades.stop
        interval = self.w.concurrency / self.w.rate_per_s
        next_at = time.monotonic() + index * interval / self.w.concurrency
        from scenarios.webhook import tradingview_address

        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        # TradingView's side leaves from its own address, so webhook-cut can take it away and leave the panel
        transport = httpx.HTTPTransport(local_address=tradingview_address(self.env.topology.subnet), limits=limits)
        with httpx.Client(timeout=httpx.Timeout(self.w.timeout_s), transport=transport) as http, \
                ThreadPoolExecutor(max_workers=max(1, self.copies[1])) as pool:
            while not stop.is_set():
                if stop.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at += interval
                alert_id, body, copies = self._alert()
                futures = [pool.submit(self._post, http, f"{process}.{k}", alert_id, body) for k in range(copies)]
                outcomes = [f.result() for f in futures]
                with self.trades.lock:
                    accepted = alert_id in self.accepted
                if not accepted and UNKNOWN in outcomes:
                    # no copy was answered, but one may have reached RTSS: the checkers must know its signal id
                    from reference.backend.webhook import signal_id_of

                    self.env.signal_log.record(signal_id_of(alert_id), UNKNOWN, alert_id=alert_id, source="webhook",
                                               error="no answer to any copy: it may be on RTSS")

    def _post(self, http, process: str, alert_id: str, body: dict) -> str:
        """Post one copy until an answer or the deadline; returns the operation's outcome."""
        import httpx

        history = self.env.history
        op = history.invoke(process, "webhook", alert_id, {"symbol": body["symbol"], "side": body["side"]})
        deadline = time.monotonic() + self.w.timeout_s
        attempts, last_error, reached = 0, "not sent", False
        while True:  # bounded by the deadline
            attempts += 1
            try:
                got = http.post(self.url, json=body, timeout=max(0.05, deadline - time.monotonic()))
                reached = True
                if got.status_code in (200, 202):
                    doc = got.json()
                    self._accepted(alert_id, doc, got.status_code)
                    history.complete(op, process, "webhook", alert_id, OK,
                                     value={"http": got.status_code, "status": doc.get("status"),
                                            "signal_id": doc.get("signal_id"), "attempts": attempts})
                    return OK
                last_error = f"HTTP {got.status_code}: {got.text[:160]}"
                if got.status_code < 500 and got.status_code != 409:
                    history.complete(op, process, "webhook", alert_id, FAIL, error=last_error)
                    return FAIL
            except httpx.HTTPError as exc:
                reached = reached or not isinstance(exc, httpx.ConnectError)
                last_error = f"{type(exc).__name__}: {exc}"[:200]
            if time.monotonic() + self.RETRY_PAUSE_S >= deadline:
                outcome = UNKNOWN if reached else FAIL
                history.complete(op, process, "webhook", alert_id, outcome,
                                 error=f"{attempts} post(s), last: {last_error}")
                return outcome
            # pacing between two posts of one alert (bounded by the deadline); not stopped by the end of the load:
            # an alert in flight when the load stops is still answered, as its sender would see it
            time.sleep(self.RETRY_PAUSE_S)

    def _accepted(self, alert_id: str, doc: dict, status: int) -> None:
        sid = doc.get("signal_id")
        if not sid:
            return
        t = self.trades
        with t.lock:
            first = alert_id not in self.accepted
            self.accepted.add(alert_id)
            if first:
                t.awaiting.add(sid)
        if first:
            self.env.signal_log.record(sid, OK, alert_id=alert_id, http=status, source="webhook",
                                       symbol=doc.get("symbol"), entry_id=doc.get("entry_id"))


class HistoryReader:
    """One chart client through the proxy (issue 15; op ``history``, ``params["also"]``): every
    ``INTERVAL_S`` a UDF ``/history`` request for the run's first symbol, 1-minute bars from an hour before the
    load to now. ``ok``: bars or ``no_data`` (value: ``bars``, ``volume`` lots summed, ``asked_ms`` wall epoch ms,
    ``source``: the backend's ``X-History-Source``, ``clickhouse`` or ``duckdb`` (its copy while ClickHouse is away));
    ``fail``: a clear refusal (HTTP 503 whose ``errmsg`` says history is unavailable); ``unknown``: anything
    else (a timeout, a reset, a 500, an unreadable answer). It reads until the workload's clients finish, the
    settle included, so the last answers show what was backfilled."""

    INTERVAL_S = 0.25

    def __init__(self, trades: "TradeClients"):
        self.trades = trades
        self.env = trades.env
        proxy = self.env.topology.node("proxy")
        self.url = f"http://{proxy.address}:{proxy.port}/history"
        self.symbol = trades.w.symbols[0]
        self.since_s = int(time.time()) - 3600

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, daemon=True, name="history-reader")

    def _run(self) -> None:
        import httpx

        history, t = self.env.history, self.trades
        n = 0
        with httpx.Client(timeout=2.0) as http:
            # until the clients finish (stop set and the settle's drain deadline passed): bounded by both
            while not (t.stop.is_set() and time.monotonic() > getattr(t, "_drain_deadline", 0.0)):
                n += 1
                now_s = int(time.time())
                params = {"symbol": self.symbol, "resolution": "1", "from": self.since_s, "to": now_s + 60}
                op = history.invoke("chart", "history", f"h-{n}", None)
                asked_ms = int(time.time() * 1000)
                try:
                    got = http.get(self.url, params=params)
                    doc = got.json()
                except (httpx.HTTPError, ValueError) as exc:
                    history.complete(op, "chart", "history", f"h-{n}", UNKNOWN, error=f"{type(exc).__name__}: {exc}"[:200])
                else:
                    if got.status_code == 200 and doc.get("s") in ("ok", "no_data"):
                        history.complete(op, "chart", "history", f"h-{n}", OK,
                                         value={"bars": len(doc.get("t", [])), "volume": round(sum(doc.get("v", [])), 6),
                                                "asked_ms": asked_ms,
                                                "source": got.headers.get("x-history-source", "clickhouse")})
                    elif got.status_code == 503 and "unavailable" in str(doc.get("errmsg", "")):
                        history.complete(op, "chart", "history", f"h-{n}", FAIL, error=str(doc.get("errmsg"))[:200])
                    else:
                        history.complete(op, "chart", "history", f"h-{n}", UNKNOWN,
                                         error=f"HTTP {got.status_code}: {got.text[:160]}")
                # pacing between two chart requests (the reader is open loop at 4/s); after the load stops, the
                # settle is waited out here too, so every wait is bounded by the drain deadline
                time.sleep(self.INTERVAL_S)


class PanelClient:
    """One user of the local trading panel through the proxy (issue 15; ``params["also"]`` ``panel``): logs in
    once with the passphrase (``POST /panel/session``), then every ``INTERVAL_S`` reads its state with the token
    (op ``panel``: ``ok`` 200, ``fail`` 401 = the session was lost, ``unknown`` otherwise) and every
    ``ORDER_EVERY``-th tick places an order (op ``panel_order``, through the webhook's path; retried with the same
    alert id on 409/5xx/no answer until the workload's ``timeout_s``; its signal is recorded in signals.jsonl like a
    webhook's, so the trade checkers judge it)."""

    INTERVAL_S = 0.25
    ORDER_EVERY = 8

    def __init__(self, trades: "TradeClients"):
        from tradedrill.services.backend import read_passphrase

        self.trades = trades
        self.env = trades.env
        proxy = self.env.topology.node("proxy")
        self.base = f"http://{proxy.address}:{proxy.port}"
        self.passphrase = read_passphrase(self.env.stack.run_dir)

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, daemon=True, name="panel-client")

    def _run(self) -> None:
        import httpx

        history, t = self.env.history, self.trades
        token, n = None, 0
        with httpx.Client(base_url=self.base, timeout=2.0) as http:
            while not t.stop.is_set():
                n += 1
                if token is None:
                    op = history.invoke("panel", "panel", "login", None)
                    try:
                        got = http.post("/panel/session", json={"passphrase": self.passphrase})
                        if got.status_code == 201:
                            token = got.json()["token"]
                            history.complete(op, "panel", "panel", "login", OK, value={"login": True})
                        else:
                            history.complete(op, "panel", "panel", "login", UNKNOWN, error=f"HTTP {got.status_code}")
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        history.complete(op, "panel", "panel", "login", UNKNOWN, error=f"{type(exc).__name__}")
                elif n % self.ORDER_EVERY == 0:
                    self._order(http, token, n)
                else:
                    key = f"state-{n}"
                    op = history.invoke("panel", "panel", key, None)
                    try:
                        got = http.get("/panel/state", headers={"authorization": f"Bearer {token}"})
                        if got.status_code == 200:
                            history.complete(op, "panel", "panel", key, OK, value={"instance": got.json().get("instance")})
                        elif got.status_code == 401:
                            history.complete(op, "panel", "panel", key, FAIL, error=f"session lost: {got.text[:120]}")
                        else:
                            history.complete(op, "panel", "panel", key, UNKNOWN, error=f"HTTP {got.status_code}")
                    except (httpx.HTTPError, ValueError) as exc:
                        history.complete(op, "panel", "panel", key, UNKNOWN, error=f"{type(exc).__name__}")
                time.sleep(self.INTERVAL_S)   # pacing of the panel's polling (open loop, 4/s)

    def _order(self, http, token: str, n: int) -> None:
        import httpx

        history, t = self.env.history, self.trades
        alert_id = f"panel-{t.run_tag}-{n:05d}"
        body = {"alert_id": alert_id, "symbol": t.w.symbols[0], "side": "buy" if n % 2 else "sell",
                "volume": t.w.volume}
        op = history.invoke("panel", "panel_order", alert_id, None)
        deadline = time.monotonic() + t.w.timeout_s
        last = "not sent"
        while True:   # bounded by the deadline
            try:
                got = http.post("/panel/orders", json=body, headers={"authorization": f"Bearer {token}"})
                if got.status_code in (200, 202):
                    doc = got.json()
                    sid = doc.get("signal_id")
                    with t.lock:
                        t.awaiting.add(sid)
                    self.env.signal_log.record(sid, OK, alert_id=alert_id, http=got.status_code, source="panel")
                    history.complete(op, "panel", "panel_order", alert_id, OK, value={"signal_id": sid})
                    return
                last = f"HTTP {got.status_code}: {got.text[:120]}"
                if got.status_code < 500 and got.status_code != 409:
                    history.complete(op, "panel", "panel_order", alert_id, FAIL, error=last)
                    return
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() + 0.05 >= deadline:
                history.complete(op, "panel", "panel_order", alert_id, UNKNOWN, error=last)
                return
            time.sleep(0.05)   # pacing between two posts of one order
