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
  request ``ticks window`` (response time: the window's median tick latency, EA send to delivery; failure: no tick
  in the window); history op ``ticks`` (ok with the count, fail when none came).

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
import sys
import time
from pathlib import Path

import gevent
from locust import User, constant_pacing, events, task

from scenarios.history import FAIL, OK, UNKNOWN, History, SignalLog

LOAD_DIR = "load"                 # in the run folder: stats.jsonl, summary.json, locust_*.csv, spec.json
STATS, SUMMARY = "stats.jsonl", "summary.json"
OP_BASE = 1_000_000_000           # the load's history op ids: far from the drill's own counter (one file, two writers)
SPEC_ENV = "TRADEDRILL_LOAD_SPEC"
PERCENTILES = (0.5, 0.95, 0.99)


class LoadContext:
    """What the users of one load process share (Locust's shape: hung on the ``Environment``, no globals): the
    spec, the history and signal log (appended by this process beside the drill's), the pending trades and one RTRS
    reader that completes them."""

    def __init__(self, spec: dict, environment, tag: str):
        self.spec = spec
        self.environment = environment
        run = Path(spec["run_dir"])
        self.history = History(run / "history.jsonl")
        self.history._ids = itertools.count(OP_BASE + 1_000_000 * (os.getpid() % 1000))  # one range per process
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
        self.history.close()
        self.signals.close()


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
        self.process = f"locust-rtss-{next(ctx.counter)}"
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
        got = self.submitter.submit(ctx.spec["rtss"], sig, deadline_s=timeout)
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
              None if got.confirmed else RuntimeError(f"{got.outcome}: {got.error}"[:120]))


class WebhookSender(User):
    """A TradingView alert sender through nginx (HTTP, httpx like the drill's own webhook clients)."""

    weight = 2
    wait_time = constant_pacing(1.0)
    RETRY_PAUSE_S = 0.05

    def on_start(self) -> None:
        import httpx
        from tradedrill.services.backend import read_passphrase

        ctx = _context(self.environment)
        self.process = f"locust-webhook-{next(ctx.counter)}"
        self.passphrase = ctx.spec.get("passphrase") or read_passphrase(ctx.spec["stack_dir"])
        self.http = httpx.Client(timeout=float(ctx.spec["timeout_s"]))

    def on_stop(self) -> None:
        self.http.close()

    @task
    def alert(self) -> None:
        import httpx

        ctx = _context(self.environment)
        sig = ctx.next_signal("w")
        alert_id = sig["signal_id"]
        body = {"passphrase": self.passphrase, "alert_id": alert_id, "symbol": sig["symbol"], "side": sig["side"],
                "volume": ctx.spec["volume"]}
        started = time.monotonic()
        deadline = started + float(ctx.spec["timeout_s"])
        op = ctx.history.invoke(self.process, "webhook", alert_id, {"symbol": sig["symbol"], "side": sig["side"]})
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
                    if sid and got.status_code == 202:
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
                    _fire(self, "POST", "webhook", started, RuntimeError(last))
                    return
            except httpx.HTTPError as exc:
                reached = reached or not isinstance(exc, httpx.ConnectError)
                last = f"{type(exc).__name__}: {exc}"[:160]
            if time.monotonic() + self.RETRY_PAUSE_S >= deadline:
                outcome = UNKNOWN if reached else FAIL
                ctx.history.complete(op, self.process, "webhook", alert_id, outcome,
                                     error=f"{attempts} post(s), last: {last}")
                _fire(self, "POST", "webhook", started, RuntimeError(f"{outcome}: {last}"))
                return
            gevent.sleep(self.RETRY_PAUSE_S)   # pacing between two posts of one alert, bounded by the deadline


class TickConsumerUser(User):
    """A tick consumer on one of the EAs (UDP + TCP, ``reference.ea.consumer``), judged per one-second window."""

    weight = 1
    wait_time = constant_pacing(1.0)
    WINDOW_S = 1.0

    def on_start(self) -> None:
        from reference.ea.consumer import ConsumerConfig, TickConsumer

        ctx = _context(self.environment)
        n = next(ctx.counter)
        self.process = f"locust-ticks-{n}"
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
            _fire(self, "TICKS", "window", started, None, len(got), response_time_ms=got[len(got) // 2])
        else:
            ctx.history.complete(op, self.process, "ticks", key, FAIL, error="no tick in the window")
            _fire(self, "TICKS", "window", started, RuntimeError("no tick in the window"),
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
        environment.events.request.add_listener(self.on_request)

    def on_request(self, request_type, name, response_time, response_length, exception=None, **_kw) -> None:
        second = int(time.monotonic())
        per = self.buckets.setdefault(second, {})
        times, fails = per.setdefault(f"{request_type} {name}", ([], [0]))
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
                row = {"mono": s, "wall_ts": time.time() - (time.monotonic() - s), "users": users, "types": {}}
                all_times: list[float] = []
                failures = 0
                for name, (times, fails) in per.items():
                    row["types"][name] = {"requests": len(times), "failures": fails[0], **_percentiles(times)}
                    all_times += times
                    failures += fails[0]
                row.update(requests=len(all_times), failures=failures, **_percentiles(all_times))
                fh.write(json.dumps(row) + "\n")


def _percentiles(times: list[float]) -> dict:
    if not times:
        return {"p50": None, "p95": None, "p99": None}
    s = sorted(times)
    return {f"p{int(q * 100)}": round(s[min(len(s) - 1, int(q * len(s)))], 3) for q in PERCENTILES}


def _summary(environment, started_mono: float, ended_mono: float) -> dict:
    total = environment.stats.total
    span = max(1e-9, ended_mono - started_mono)

    def entry(e) -> dict:
        return {"requests": e.num_requests, "failures": e.num_failures,
                "rps": round(e.num_requests / span, 3), "p50_ms": e.get_response_time_percentile(0.5),
                "p95_ms": e.get_response_time_percentile(0.95), "p99_ms": e.get_response_time_percentile(0.99),
                "max_ms": round(e.max_response_time or 0, 3)}

    return {"started_mono": started_mono, "ended_mono": ended_mono, "seconds": round(span, 3),
            "total": entry(total),
            "by_name": {f"{e.method} {e.name}": entry(e) for e in environment.stats.entries.values()}}


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    """A process the locust CLI starts (master or worker): the spec from ``TRADEDRILL_LOAD_SPEC``; a worker gets
    its context and RTRS reader, the master only aggregates."""
    from locust.runners import MasterRunner

    if getattr(environment, "tradedrill", None) is not None or not os.environ.get(SPEC_ENV):
        return
    spec = json.loads(Path(os.environ[SPEC_ENV]).read_text())
    if isinstance(environment.runner, MasterRunner):
        return
    environment.tradedrill = LoadContext(spec, environment, tag=f"lw{os.getpid() % 100000}")
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
    ``end_mono``; then the settle; statistics into ``run_dir/load/``. Exit status 0, or 1 when nothing ran."""
    from locust.env import Environment
    from locust.stats import StatsCSVFileWriter

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["run_dir"]) / LOAD_DIR
    out.mkdir(parents=True, exist_ok=True)
    classes = user_classes(spec["mix"])
    environment = Environment(user_classes=classes, events=events, host=spec.get("webhook_url") or None)
    environment.tradedrill = LoadContext(spec, environment, tag=f"L{int(spec.get('seed', 0)) % 100000:05d}")
    runner = environment.create_local_runner()
    seconds = SecondStats(environment, out / STATS)
    csv = StatsCSVFileWriter(environment, list(PERCENTILES), str(out / "locust"), full_history=False)
    csv_greenlet = gevent.spawn(csv)
    environment.tradedrill.start_reader()
    started = time.monotonic()
    runner.start(int(spec["users"]), float(spec["spawn_rate"]))
    end = float(spec["end_mono"])
    while time.monotonic() < end:   # bounded by end_mono; each pass writes the seconds that are over
        gevent.sleep(min(1.0, max(0.01, end - time.monotonic())))
        seconds.flush(time.monotonic())
    runner.stop()
    ended = time.monotonic()
    seconds.flush()
    environment.tradedrill.settle(ended + float(spec.get("settle_s", 10.0)))
    csv_greenlet.kill(block=True, timeout=2)
    csv.close_files() if hasattr(csv, "close_files") else None
    summary = _summary(environment, started, ended)
    summary.update(users=int(spec["users"]), spawn_rate=float(spec["spawn_rate"]), mix=spec["mix"],
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
