"""Locust users of a drill (issue 16), and the load process that runs them: ``python -m scenarios.locustfiles run
SPEC.json`` (what ``scenarios.load`` starts), or the locust CLI on this file for the same load distributed
(``locust -f scenarios/locustfiles.py --master`` / ``--worker``; the spec comes from ``TRADEDRILL_LOAD_SPEC``).

This module imports locust, and importing locust monkeypatches the standard library for gevent (sockets, threads,
locks, ``time.sleep``). That is why it only ever runs in a process of its own: inside the drill process the patch
would turn the runner's threads (fault schedule, set writers, tick consumers, the RTRS reader, the teardown
guard's timer) into greenlets of one OS thread, where a blocking C call (DuckDB, psutil, a subprocess wait) stops
them all, and the signal handling of ``scenarios.runner`` would run on gevent's hub. ``scenarios.load`` never
imports it.

Users (each one request event per task, and each request is also an operation of the run's history, so the
drill's checkers judge the load like the drill's own clients):

- :class:`RtssProducer` (non-HTTP): a signal put on RTSS by ``reference.engine.submit.SignalSubmitter`` (majority
  primary, ``WAIT``, resend); request ``RTSS submit`` = the submission (failure unless confirmed); history op
  ``trade`` from the submit to the signal's RTRS result (ok executed, fail rejected/not submitted, unknown without
  a result within the workload's timeout), signal in signals.jsonl;
- :class:`WebhookSender` (HTTP): a TradingView alert posted to ``/webhook/tradingview`` through nginx (retried with
  the same alert id on 409/5xx/no answer until the timeout, like ``scenarios.workload.WebhookClients``); request
  ``POST webhook``; history op ``webhook`` (ok 200/202, fail other 4xx, unknown no answer), an accepted alert's
  signal in signals.jsonl and its result awaited;
- :class:`TickConsumerUser`: a ``reference.ea.consumer.TickConsumer`` on the EA; each task is a one-second window;
  request ``TICKS latency p50 of 1 s`` (response time: the window's median tick latency, EA send to delivery, not
  the window's length; failure: no tick in the window, counted as 1000 ms); history op ``ticks`` (ok with the count,
  fail when none came).

Failures are named without what changes from one retry to the next (``attempt 3``, ``next retry in 0.4s``:
``scenarios.load.stable_error``), so locust's error table has one row per kind of failure. Before any user starts,
the load process and every locust CLI process (master and workers) refuse, with one line on stderr and exit status
2, a spec whose run folder is finished or whose stack does not answer (``scenarios.load.spec_refusal``).

Every user paces itself to one task per second (``constant_pacing``), so N users offer about N requests/s.
The spec (JSON): ``stack_dir`` (credentials, the webhook passphrase), ``run_dir`` (history, signals, ``load/``),
``sentinels``, ``master_name``, ``rtss``/``rtrs`` stream keys, ``account``, ``symbols``, ``volume``,
``timeout_s``, ``webhook_url``, ``eas`` (``[[host, port], ...]``), ``tick_bind_host``, ``users``, ``spawn_rate``,
``mix`` (user kind -> weight), ``end_mono`` (CLOCK_MONOTONIC second the load stops), ``settle_s``, ``seed``.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import gevent
import gevent.event
from locust import User, constant_pacing, events, task

from scenarios.history import FAIL, OK, UNKNOWN, History, SignalLog
from scenarios.load import (ENDED, KIND_OF_CLASS, LoadRefused, claim_slot, gone_slot_problem, spec_kinds,
                            PERCENTILES, TICKS_TYPE, percentiles, second_row, spec_refusal, stable_error,
                            summary_entry, total_entry)

LOAD_DIR = "load"                 # in the run folder: stats.jsonl, summary.json, locust_*.csv, spec.json
STATS, SUMMARY = "stats.jsonl", "summary.json"
OP_BASE = 1_000_000_000           # the load's history op ids: far from the drill's own counter (one file, two writers)
SPEC_ENV = "TRADEDRILL_LOAD_SPEC"
INTERRUPT_SETTLE_S = 1.0          # after SIGTERM/SIGINT: results this close are still read; the rest complete unknown
TICKS_NAME = (TICKS_TYPE, "latency p50 of 1 s")   # what a tick window's request times: its median tick latency


STOPPED = "stopped before an answer (the load ended with the operation in flight)"


class _LoadHistory(History):
    """The load's history, which knows its operations in flight (invoked, not completed), so that none is left
    without a completion record when the load stops: a user's task killed mid-operation (a tick window, a webhook
    post, a submit when locust stops its users) is completed ``unknown`` with STOPPED (``complete_in_flight``)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.in_flight: dict[int, tuple[str, str, object]] = {}

    def invoke(self, process, f, key=None, value=None) -> int:
        op = super().invoke(process, f, key, value)
        self.in_flight[op] = (str(process), f, key)
        return op

    def complete(self, op_id, process, f, key, outcome, value=None, error=None) -> None:
        super().complete(op_id, process, f, key, outcome, value, error)
        self.in_flight.pop(op_id, None)

    def complete_in_flight(self, error: str = STOPPED) -> int:
        """Complete every operation still in flight as ``unknown`` (``error``); returns how many."""
        left = list(self.in_flight.items())
        for op, (process, f, key) in left:
            self.complete(op, process, f, key, UNKNOWN, error=error)
        return len(left)


class LoadContext:
    """What the users of one load process share (Locust's shape: hung on the ``Environment``, no globals): the
    spec, the history and signal log (appended by this process beside the drill's), the pending trades and one RTRS
    reader that completes them."""

    def __init__(self, spec: dict, environment, tag: str, slot: int = 0):
        self.spec = spec
        self.environment = environment
        run = Path(spec["run_dir"])
        self.history = _LoadHistory(run / "history.jsonl")
        self.history._ids = itertools.count(OP_BASE + 1_000_000 * slot)   # one range per process (claim_slot)
        self.slot = slot
        self.names = "" if slot == 0 else f"s{slot}-"   # users' process names: locust-rtss-s1-3 on slot 1
        self.signals = SignalLog(run / "signals.jsonl")
        self.tag = tag
        self.counter = itertools.count(1)
        self.rng = random.Random(spec.get("seed", 0))
        self.pending: dict[str, tuple[int, str, float]] = {}   # signal id -> (op, process, deadline)
        self.awaiting: set[str] = set()                         # acknowledged, no result yet (the settle waits)
        self.stopping = False
        self._reader = None

    def submitter_config(self, name: str):
        from reference.engine.submit import SubmitterConfig
        from tradedrill.credentials import StackSecrets

        cred = StackSecrets.load(self.spec["stack_dir"]).harness
        return SubmitterConfig(sentinels=[list(a) for a in self.spec["sentinels"]],
                               master_name=self.spec["master_name"], credentials=(cred.username, cred.password),
                               redis_socket_timeout_s=0.5, redis_connect_timeout_s=0.5, instance="drill",
                               client_prefix="harness", wait_replicas=int(self.spec.get("wait_replicas", 1)),
                               wait_ms=int(self.spec.get("wait_ms", 500)))

    def next_signal(self, kind: str) -> dict:
        n = next(self.counter)
        return {"signal_id": f"{self.tag}-{kind}-{n:05d}", "account": str(self.spec["account"]),
                "symbol": self.rng.choice(self.spec["symbols"]), "side": self.rng.choice(("buy", "sell")),
                "volume": f"{self.spec['volume']}", "order_type": "market", "source": "locust",
                "created_ms": str(int(time.time() * 1000))}

    # -- RTRS: the results of this process's signals --------------------------------------------------------------
    def start_reader(self) -> None:
        if self._reader is None and self.spec.get("sentinels"):
            self._reader = gevent.spawn(self._read_results)

    def _read_results(self) -> None:
        from reference.engine.redislink import RedisLink, RedisUnavailable
        import redis

        link = RedisLink(self.submitter_config("rtrs"), name="locust-rtrs")
        last = "0-0"
        try:
            while not (self.stopping and not self.pending and not self.awaiting):
                self.expire(time.monotonic())
                try:
                    batches = link.run(lambda c: c.xread({self.spec["rtrs"]: last}, count=500, block=200))
                except (RedisUnavailable, redis.RedisError):
                    gevent.sleep(0.1)   # pacing of a reconnect loop; bounded by the settle deadline (kill below)
                    continue
                for _stream, entries in batches or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        self._complete(fields)
        finally:
            link.close()

    def _complete(self, fields: dict) -> None:
        from reference.engine import contract

        sid = fields.get("signal_id") or fields.get("signal")
        status = (fields.get("status") or "").lower()
        if status == contract.ResultStatus.DUPLICATE.value:
            return
        self.awaiting.discard(sid)
        item = self.pending.pop(sid, None)
        if item is None:
            return
        op, process, _deadline = item
        outcome = OK if contract.is_executed(status) else FAIL
        self.history.complete(op, process, "trade", sid, outcome, value=fields,
                              error=None if outcome == OK else fields.get("reason") or status)

    def expire(self, now: float, everything: bool = False) -> None:
        late = [(sid, v) for sid, v in self.pending.items() if everything or v[2] <= now]
        for sid, (op, process, _d) in late:
            del self.pending[sid]
            self.history.complete(op, process, "trade", sid, UNKNOWN,
                                  error="no result on RTRS " + ("before the end" if everything else "within timeout"))

    def settle(self, deadline_mono: float) -> None:
        """After the load: wait (bounded) for every acknowledged signal's result, then close the books."""
        self.stopping = True
        while (self.pending or self.awaiting) and time.monotonic() < deadline_mono and self._reader is not None \
                and not self._reader.dead:
            gevent.sleep(0.1)   # the reader greenlet completes them; this loop only waits for it, with a deadline
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        self.expire(time.monotonic(), everything=True)
        self.stopped_in_flight = self.history.complete_in_flight()   # a killed task's operation: unknown, never open
        self.history.close()
        self.signals.close()
        ended = Path(self.spec["run_dir"]) / LOAD_DIR / ENDED   # this spec's load is over: never appended again
        ended.parent.mkdir(parents=True, exist_ok=True)
        ended.write_text(json.dumps({"process": self.tag, "pid": os.getpid(), "at_unix": time.time()}) + "\n")


def _context(environment) -> LoadContext:
    return environment.tradedrill


def _fire(user: User, request_type: str, name: str, started: float, exception: Exception | None,
          length: int = 0, response_time_ms: float | None = None) -> None:
    ms = (time.monotonic() - started) * 1000 if response_time_ms is None else response_time_ms
    user.environment.events.request.fire(request_type=request_type, name=name, response_time=ms,
                                         response_length=length, exception=exception, context={})


class RtssProducer(User):
    """A signal producer straight onto RTSS (no HTTP): one ``SignalSubmitter`` per user."""

    weight = 3
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        from reference.engine.submit import SignalSubmitter

        ctx = _context(self.environment)
        self.process = f"locust-rtss-{ctx.names}{next(ctx.counter)}"
        self.submitter = SignalSubmitter(ctx.submitter_config(self.process), name=self.process)

    def on_stop(self) -> None:
        self.submitter.close()

    @task
    def submit(self) -> None:
        from reference.engine import submit as sub

        ctx = _context(self.environment)
        sig = ctx.next_signal("r")
        sid = sig["signal_id"]
        timeout = float(ctx.spec["timeout_s"])
        started = time.monotonic()
        op = ctx.history.invoke(self.process, "trade", sid, {k: sig[k] for k in ("symbol", "side", "volume")})
        ctx.pending[sid] = (op, self.process, started + timeout)
        try:
            got = self.submitter.submit(ctx.spec["rtss"], sig, deadline_s=timeout)
        except BaseException:
            # the load's stop killed this task mid-submit (GreenletExit): Redis may hold the signal and the engine
            # trade it, so the checkers must know it (a 50-user drill called 4 such trades RTS "phantoms")
            ctx.signals.record(sid, UNKNOWN, error=STOPPED, symbol=sig["symbol"], side=sig["side"],
                               volume=ctx.spec["volume"], source="locust")
            raise
        meta = {"symbol": sig["symbol"], "side": sig["side"], "volume": ctx.spec["volume"], "source": "locust",
                "attempts": got.attempts, "replicas": got.replicas}
        if got.outcome == sub.FAILED:
            ctx.signals.record(sid, FAIL, error=got.error, **meta)
            if ctx.pending.pop(sid, None) is not None:
                ctx.history.complete(op, self.process, "trade", sid, FAIL, error=f"submit: {got.error}")
        elif got.confirmed:
            ctx.signals.record(sid, OK, **meta)
            if sid in ctx.pending:
                ctx.awaiting.add(sid)
        else:   # Redis may hold it: not acknowledged, its result still awaited until the timeout
            ctx.signals.record(sid, UNKNOWN, error=got.error, **meta)
        _fire(self, "RTSS", "submit", started,
              None if got.confirmed else RuntimeError(stable_error(f"{got.outcome}: {got.error}")[:120]))


class WebhookSender(User):
    """A TradingView alert sender through nginx (HTTP, httpx like the drill's own webhook clients)."""

    weight = 2
    wait_time = constant_pacing(1.0)
    RETRY_PAUSE_S = 0.05

    def on_start(self) -> None:
        import logging

        import httpx
        from tradedrill.services.backend import read_passphrase

        # httpx logs every request at INFO, and locust's workers log INFO: 256 lines a worker in 30 s, drowning
        # what matters (a new user's finding); locust's statistics count the requests
        logging.getLogger("httpx").setLevel(logging.WARNING)
        ctx = _context(self.environment)
        self.process = f"locust-webhook-{ctx.names}{next(ctx.counter)}"
        self.passphrase = ctx.spec.get("passphrase") or read_passphrase(ctx.spec["stack_dir"])
        self.http = httpx.Client(timeout=float(ctx.spec["timeout_s"]))

    def on_stop(self) -> None:
        self.http.close()

    @task
    def alert(self) -> None:
        ctx = _context(self.environment)
        sig = ctx.next_signal("w")
        alert_id = sig["signal_id"]
        body = {"passphrase": self.passphrase, "alert_id": alert_id, "symbol": sig["symbol"], "side": sig["side"],
                "volume": ctx.spec["volume"]}
        started = time.monotonic()
        deadline = started + float(ctx.spec["timeout_s"])
        op = ctx.history.invoke(self.process, "webhook", alert_id, {"symbol": sig["symbol"], "side": sig["side"]})
        try:
            self._post(ctx, op, alert_id, body, sig, started, deadline)
        except BaseException:
            # the load's stop killed this task mid-post (GreenletExit): the backend may have put the signal on RTSS
            self._maybe_sent(ctx, alert_id, sig, STOPPED)
            raise

    @staticmethod
    def _maybe_sent(ctx, alert_id: str, sig: dict, why: str) -> None:
        """A post that may have reached RTSS without an answer here: its signal id (the backend's, from the alert
        id) into signals.jsonl as unknown, so the checkers can name its trade (``WebhookClients`` does the same)."""
        from reference.backend.webhook import signal_id_of

        ctx.signals.record(signal_id_of(alert_id), UNKNOWN, alert_id=alert_id, source="locust-webhook",
                           symbol=sig["symbol"], error=why)

    def _post(self, ctx, op: int, alert_id: str, body: dict, sig: dict, started: float, deadline: float) -> None:
        import httpx

        attempts, last, reached = 0, "not sent", False
        while True:   # bounded by the deadline
            attempts += 1
            try:
                got = self.http.post(ctx.spec["webhook_url"], json=body,
                                     timeout=max(0.05, deadline - time.monotonic()))
                reached = True
                if got.status_code in (200, 202):
                    doc = got.json()
                    sid = doc.get("signal_id")
                    # 200: a copy the backend had accepted already (nginx resent a post whose first answer timed
                    # out to the other backend): the signal is on RTSS all the same; a 50-user drill left 8 such
                    # out of signals.jsonl and the state checker called their trades phantoms
                    if sid:
                        ctx.signals.record(sid, OK, alert_id=alert_id, http=got.status_code, source="locust-webhook",
                                           symbol=sig["symbol"])
                        ctx.awaiting.add(sid)
                    ctx.history.complete(op, self.process, "webhook", alert_id, OK,
                                         value={"http": got.status_code, "signal_id": sid, "attempts": attempts})
                    _fire(self, "POST", "webhook", started, None, len(got.content))
                    return
                last = f"HTTP {got.status_code}: {got.text[:120]}"
                if got.status_code < 500 and got.status_code != 409:
                    ctx.history.complete(op, self.process, "webhook", alert_id, FAIL, error=last)
                    _fire(self, "POST", "webhook", started, RuntimeError(stable_error(last)))
                    return
            except httpx.HTTPError as exc:
                reached = reached or not isinstance(exc, httpx.ConnectError)
                last = f"{type(exc).__name__}: {exc}"[:160]
            if time.monotonic() + self.RETRY_PAUSE_S >= deadline:
                outcome = UNKNOWN if reached else FAIL
                if reached:
                    self._maybe_sent(ctx, alert_id, sig, f"no answer to {attempts} post(s): it may be on RTSS")
                ctx.history.complete(op, self.process, "webhook", alert_id, outcome,
                                     error=f"{attempts} post(s), last: {last}")
                _fire(self, "POST", "webhook", started, RuntimeError(stable_error(f"{outcome}: {last}")))
                return
            gevent.sleep(self.RETRY_PAUSE_S)   # pacing between two posts of one alert, bounded by the deadline


class TickConsumerUser(User):
    """A tick consumer on one of the EAs (UDP + TCP, ``reference.ea.consumer``), judged per one-second window.

    Its request (``TICKS latency p50 of 1 s``) does not time the window: its response time is the median latency
    (ms, EA send to delivery) of the ticks that arrived in it, so 0.6 ms is a healthy value; a window without a
    tick is a failure counted as the window's length (1000 ms)."""

    weight = 1
    wait_time = constant_pacing(1.0)
    WINDOW_S = 1.0

    def on_start(self) -> None:
        from reference.ea.consumer import ConsumerConfig, TickConsumer

        ctx = _context(self.environment)
        n = next(ctx.counter)
        self.process = f"locust-ticks-{ctx.names}{n}"
        host, port = ctx.spec["eas"][n % len(ctx.spec["eas"])]
        self.latencies: list[float] = []
        cfg = ConsumerConfig((host, int(port)), (host, int(port)), consumer_id=self.process,
                             bind_host=ctx.spec.get("tick_bind_host", "127.0.0.1"), monitor_ms=10.0)
        self.consumer = TickConsumer(cfg, on_tick=self._on_tick).start()

    def _on_tick(self, tick, path: str) -> None:
        if tick.sent_ns and not tick.snapshot:
            self.latencies.append((time.time_ns() - tick.sent_ns) / 1e6)

    def on_stop(self) -> None:
        self.consumer.stop()

    @task
    def window(self) -> None:
        ctx = _context(self.environment)
        started = time.monotonic()
        key = f"{self.process}-{int(started)}"
        op = ctx.history.invoke(self.process, "ticks", key, None)
        self.latencies = []
        gevent.sleep(self.WINDOW_S)   # the window itself: what arrives in it is the measurement
        got = sorted(self.latencies)
        if got:
            ctx.history.complete(op, self.process, "ticks", key, OK,
                                 value={"ticks": len(got), "p50_ms": round(got[len(got) // 2], 3)})
            _fire(self, *TICKS_NAME, started, None, len(got), response_time_ms=got[len(got) // 2])
        else:   # no tick within the window: its latency is at least the window's length
            ctx.history.complete(op, self.process, "ticks", key, FAIL, error="no tick in the window")
            _fire(self, *TICKS_NAME, started, RuntimeError("no tick in the window"),
                  response_time_ms=self.WINDOW_S * 1000)


USER_KINDS = {"rtss": RtssProducer, "webhook": WebhookSender, "ticks": TickConsumerUser}


def user_classes(mix: dict) -> list[type[User]]:
    """The user classes of ``mix`` (kind -> weight), each a subclass carrying its weight."""
    return [type(USER_KINDS[k].__name__, (USER_KINDS[k],), {"weight": int(w), "__module__": __name__})
            for k, w in mix.items() if int(w) > 0]


# -- per-second statistics ----------------------------------------------------------------------------------------
class SecondStats:
    """Every request event bucketed by the CLOCK_MONOTONIC second it completed in (the fault log's clock): per
    second and request type, requests, failures, p50/p95/p99 response time; one JSON line per second."""

    def __init__(self, environment, path: Path):
        self.environment = environment
        self.path = path
        self.buckets: dict[int, dict[str, list]] = {}
        self.totals: dict[str, tuple[list, list]] = {}   # name -> (every response time in ms, [failures])
        environment.events.request.add_listener(self.on_request)

    def on_request(self, request_type, name, response_time, response_length, exception=None, **_kw) -> None:
        second = int(time.monotonic())
        per = self.buckets.setdefault(second, {})
        key = f"{request_type} {name}"
        for times, fails in (per.setdefault(key, ([], [0])), self.totals.setdefault(key, ([], [0]))):
            times.append(float(response_time))
            fails[0] += exception is not None

    def flush(self, upto: float | None = None) -> None:
        """Write every second before ``upto`` (all of them when None)."""
        done = sorted(s for s in self.buckets if upto is None or s < int(upto))
        if not done:
            return
        users = getattr(self.environment.runner, "user_count", 0)
        with open(self.path, "a", encoding="utf-8") as fh:
            for s in done:
                per = self.buckets.pop(s)
                row = {"mono": s, "wall_ts": time.time() - (time.monotonic() - s), "users": users}
                row.update(second_row(per))
                fh.write(json.dumps(row) + "\n")


def _summary(seconds: SecondStats, started_mono: float, ended_mono: float) -> dict:
    """Totals from the raw response times ``seconds`` recorded (not locust's, which rounds each time into a
    bucket: 0.609 ms counts as 1 ms, so its p99 could exceed the maximum)."""
    span = max(1e-9, ended_mono - started_mono)
    return {"started_mono": started_mono, "ended_mono": ended_mono, "seconds": round(span, 3),
            "percentiles": "nearest rank over every order round-trip recorded (RTSS and webhook requests; a tick "
                           "window's median tick latency is another measure, in by_name), ms (locust_*.csv: "
                           "locust's own, rounded into buckets)",
            "total": total_entry(seconds.totals, span),
            "by_name": {name: summary_entry(times, f[0], span) for name, (times, f) in seconds.totals.items()}}


def _refuse(spec_path: str | Path, kinds=None) -> tuple[dict | None, str | None]:
    """The spec at ``spec_path`` and None, or None and the one line saying why it must not run with users of
    ``kinds`` (default: the spec's ``mix``)."""
    try:
        spec = json.loads(Path(spec_path).read_text())
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return None, f"cannot read the load spec {spec_path} ({exc}); give a spec of a live stack " \
                     f"(`tradedrill load-spec`)"
    if kinds == SERVED:
        kinds = set(spec_kinds(spec))
    refusal = spec_refusal(spec, set(spec.get("mix") or {}) if kinds is None else kinds)
    return (None, refusal) if refusal else (spec, None)


SERVED = "served"   # _refuse's kinds: the user kinds the spec's stack serves (no class named on the command line)


NO_SPEC = (f"{SPEC_ENV} is not set, so the users have no stack to load; write a spec of a live stack with "
           f"`tradedrill load-spec --dir out/loadstack --out out/loadstack/spec.json` and export "
           f"{SPEC_ENV}=$PWD/out/loadstack/spec.json (README, \"Locust load inside a drill\")")


def _refuse_or_exit(kinds) -> dict | None:
    """The locust CLI's spec (``TRADEDRILL_LOAD_SPEC``), or exit status 2 with one line on stderr saying why it
    must not run with users of ``kinds`` (:data:`SERVED`: those the spec's stack serves; NO_SPEC when the variable
    is unset or empty)."""
    if not os.environ.get(SPEC_ENV, "").strip():
        print(f"tradedrill load: refused: {NO_SPEC}", file=sys.stderr, flush=True)
        os._exit(2)
    spec, refusal = _refuse(os.environ[SPEC_ENV], kinds)
    if refusal:
        print(f"tradedrill load: refused: {refusal}", file=sys.stderr, flush=True)
        os._exit(2)   # not sys.exit: locust's greenlets (heartbeats, the master's socket) must not hold it open
    return spec


if "locust.main" in sys.modules and __name__ != "__main__":
    # the locust CLI is importing this file: refuse now, before a worker waits for its master (it connects before
    # the init event); the user classes named on the command line say what must answer. Without
    # TRADEDRILL_LOAD_SPEC there is nothing to load: refused too (every user crashed on a missing context).
    # No class named: the classes the spec's stack serves (a new user's finding: the README's command refused a
    # stack without an EA for its TickConsumerUser); the others are taken out of this module before locust collects
    # its user classes, on the master and on every worker alike (each reads the same spec)
    _named = {KIND_OF_CLASS[a] for a in sys.argv[1:] if a in KIND_OF_CLASS}
    _spec = _refuse_or_exit(_named or SERVED)
    # a killed load's spec: refused here, on the master and on every worker alike (a worker reaches the init event
    # only once it has a master; a new user's workers retried a refused master for 5 minutes)
    _gone = gone_slot_problem(_spec["run_dir"])
    if _gone:
        print(f"tradedrill load: refused: {_gone}", file=sys.stderr, flush=True)
        os._exit(2)
    if not _named:
        for _cls, _kind in KIND_OF_CLASS.items():
            if _kind not in spec_kinds(_spec):
                globals().pop(_cls, None)


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    """A process the locust CLI starts (master or worker): the spec from ``TRADEDRILL_LOAD_SPEC``; a worker gets
    its context and RTRS reader, the master only aggregates."""
    from locust.runners import MasterRunner

    if getattr(environment, "tradedrill", None) is not None:
        return
    # again with the user classes locust chose, before any user starts, on the master and on every worker
    spec = _refuse_or_exit({KIND_OF_CLASS.get(c.__name__, "") for c in environment.user_classes} - {""})
    if isinstance(environment.runner, MasterRunner):
        return
    opts = environment.parsed_options
    worker = bool(getattr(opts, "worker", False))
    owner = f"master {opts.master_host}:{opts.master_port}" if worker else f"standalone {os.getpid()}"
    try:
        slot = claim_slot(spec["run_dir"], owner)
    except LoadRefused as exc:
        print(f"tradedrill load: refused: {exc}", file=sys.stderr, flush=True)
        os._exit(2)   # as _refuse_or_exit: locust's greenlets must not hold the process open
    environment.tradedrill = LoadContext(spec, environment, tag=f"lw{os.getpid() % 100000}", slot=slot)
    environment.tradedrill.cli = True
    environment.tradedrill.start_reader()


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    """A CLI worker's load is over: its acknowledged signals get their results (bounded by the spec's settle_s),
    then its history is closed. (``run`` settles its own after the load.)"""
    ctx = getattr(environment, "tradedrill", None)
    if ctx is not None and getattr(ctx, "cli", False) and not ctx.stopping:
        ctx.settle(time.monotonic() + float(ctx.spec.get("settle_s", 10.0)))


def run(spec_path: str | Path) -> int:
    """The load of one drill, headless, in this process: users of the spec's mix, spawned at its rate, until
    ``end_mono`` or a SIGTERM/SIGINT (then the settle is :data:`INTERRUPT_SETTLE_S`, and every operation still
    open is completed unknown; summary ``interrupted``); then the settle; statistics into ``run_dir/load/``. Exit
    status 0, 1 when nothing ran, 2 when the spec is refused (one line on stderr: :func:`scenarios.load.spec_refusal`,
    or a spec that is not a drill's: no ``end_mono``, ``users``, ``spawn_rate``, ``mix``) before any user starts."""
    from locust.env import Environment
    from locust.stats import StatsCSVFileWriter

    spec, refusal = _refuse(spec_path)
    if refusal:
        print(f"tradedrill load: refused: {refusal}", file=sys.stderr, flush=True)
        return 2
    missing = [k for k in ("end_mono", "users", "spawn_rate", "mix") if spec.get(k) in (None, 0, {}, [])]
    if missing:   # a spec of `tradedrill load-spec` (no end, no users): a KeyError traceback, then gevent's error
        print(f"tradedrill load: refused: {spec_path} is not a drill's load spec (no {', '.join(missing)}); this "
              f"runner is the drill's own: run a spec of `tradedrill load-spec` with the locust CLI (README, "
              f"\"Locust load inside a drill\")", file=sys.stderr, flush=True)
        return 2
    out = Path(spec["run_dir"]) / LOAD_DIR
    out.mkdir(parents=True, exist_ok=True)
    try:
        slot = claim_slot(spec["run_dir"], f"standalone {os.getpid()}")
    except LoadRefused as exc:
        print(f"tradedrill load: refused: {exc}", file=sys.stderr, flush=True)
        return 2
    classes = user_classes(spec["mix"])
    environment = Environment(user_classes=classes, events=events, host=spec.get("webhook_url") or None)
    environment.tradedrill = LoadContext(spec, environment, tag=f"L{int(spec.get('seed', 0)) % 100000:05d}",
                                         slot=slot)
    runner = environment.create_local_runner()
    seconds = SecondStats(environment, out / STATS)
    csv = StatsCSVFileWriter(environment, list(PERCENTILES), str(out / "locust"), full_history=False)
    csv_greenlet = gevent.spawn(csv)
    environment.tradedrill.start_reader()
    # the drill stops this process by its handle (SIGTERM, SIGKILL 5 s later) when it is interrupted: end the load
    # as at its end, with a short settle, so that no operation of the history is left without a completion
    interrupted = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, interrupted.set)
    started = time.monotonic()
    runner.start(int(spec["users"]), float(spec["spawn_rate"]))
    end = float(spec["end_mono"])
    while time.monotonic() < end and not interrupted.is_set():   # bounded by end_mono
        interrupted.wait(min(1.0, max(0.01, end - time.monotonic())))
        seconds.flush(time.monotonic())   # each pass writes the seconds that are over
    runner.stop()
    ended = time.monotonic()
    seconds.flush()
    settle_s = INTERRUPT_SETTLE_S if interrupted.is_set() else float(spec.get("settle_s", 10.0))
    environment.tradedrill.settle(ended + settle_s)
    csv_greenlet.kill(block=True, timeout=2)
    csv.close_files() if hasattr(csv, "close_files") else None
    summary = _summary(seconds, started, ended)
    summary.update(users=int(spec["users"]), spawn_rate=float(spec["spawn_rate"]), mix=spec["mix"],
                   interrupted=interrupted.is_set(),
                   errors=[{"error": str(e.error), "occurrences": e.occurrences}
                           for e in environment.stats.errors.values()][:20])
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    runner.quit()
    return 0 if summary["total"]["requests"] else 1


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m scenarios.locustfiles run SPEC.json", file=sys.stderr)
        return 2
    return run(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
