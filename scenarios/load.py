"""Locust load inside a drill (issue 16): ``tradedrill drill SCENARIO --users N --spawn-rate R [--load-mix ...]``.

The users (``scenarios.locustfiles``: RTSS producers, webhook senders through nginx, tick consumers on the EA) run
headless in a process of their own, started by handle when the drill's load starts and stopped by its PID at the
end (on time, or SIGTERM then SIGKILL of its group when late, and by the run's PID registry when a drill is torn
down hard). A separate process because importing locust monkeypatches the standard library for gevent: in the
drill process that would turn the runner's threads (fault schedule, writers, tick consumers, RTRS reader) into
greenlets of one OS thread, and any blocking C call (DuckDB, psutil, a subprocess wait) would freeze them and the
fault schedule with them. The two processes share the run folder (the load appends its operations to
``history.jsonl`` and ``signals.jsonl`` with op ids of its own range) and CLOCK_MONOTONIC, so the fault log, the
history and the load's statistics sit on one timeline.

In the run folder: ``load/spec.json`` (what ran, no secret: the load process reads the credentials from the
stack's secrets folder), ``load/stats.jsonl`` (per second: users, requests, failures, p50/p95/p99 per request
type), ``load/summary.json`` (totals), ``load/locust_*.csv`` (locust's own), ``nodes/locust.log``.
:func:`load_view` and :func:`load_svg` give the report one plot of the load's statistics and the fault windows.
"""
from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOAD_DIR, STATS, SUMMARY, SPEC = "load", "stats.jsonl", "summary.json", "spec.json"
# the run folder of `tradedrill load-spec` holds CLAIM (which spec owns it: a second spec refuses the folder); a load
# process that closed its history writes load/ENDED (a spec whose load ran is refused: one history per load)
CLAIM, ENDED = "load-spec.json", "ended.json"
USER_KINDS = ("rtss", "webhook", "ticks")
SERVICE_OF = {"webhook": "backend", "ticks": "ea"}      # what a user kind needs the drill's topology to run
DEFAULT_MIX = {"rtss": 3, "webhook": 2, "ticks": 1}
MAX_USERS = 5000
TICK_BIND_HOST = 170          # <subnet>.170: where the load's tick consumers leave from
STOP_GRACE_S = 15.0           # after the settle: the load process writes its summary and exits, or is stopped


class LoadError(ValueError):
    """A load option is wrong; the message says which and what is allowed."""


def parse_mix(text: str | None) -> dict[str, int]:
    """``"rtss=3,webhook=2,ticks=1"`` (or ``"rtss,webhook"``: weight 1 each) -> ``{kind: weight}``.

    Raises :class:`LoadError` (one line) on an unknown kind, a kind named twice, an empty entry (``"rtss=1,,webhook=1"``,
    a trailing comma) or a ``kind=`` without its weight: a typo is refused, never read as something else."""
    if text is None:
        return dict(DEFAULT_MIX)
    mix: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise LoadError(f"the load mix {text!r} has an empty entry (two commas, or one at an end); "
                            f"write KIND=W entries joined by single commas, e.g. rtss=3,webhook=2,ticks=1")
        kind, eq, weight = part.partition("=")
        if eq and not weight.strip():
            raise LoadError(f"{kind.strip() or part!r} has '=' but no weight in the load mix; write {kind.strip()}=W "
                            f"with W 1..100, or {kind.strip()} alone for weight 1")
        kind = kind.strip()
        if kind not in USER_KINDS:
            raise LoadError(f"unknown user kind {kind!r} in the load mix; use {', '.join(USER_KINDS)} "
                            f"(e.g. rtss=3,webhook=2,ticks=1)")
        try:
            w = int(weight) if eq else 1
        except ValueError:
            raise LoadError(f"the weight of {kind} must be a whole number, not {weight!r}") from None
        if not 1 <= w <= 100:
            raise LoadError(f"the weight of {kind} must be 1..100, not {w}")
        if kind in mix:
            raise LoadError(f"{kind} is named twice in the load mix")
        mix[kind] = w
    if not mix:
        raise LoadError("the load mix names no user kind; use rtss, webhook and/or ticks")
    return mix


@dataclass(frozen=True)
class LoadOptions:
    """``users`` locust users spawned at ``spawn_rate`` users/s, of the kinds and weights of ``mix``."""

    users: int
    spawn_rate: float
    mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))

    def __post_init__(self) -> None:
        if isinstance(self.users, bool) or not isinstance(self.users, int) or not 1 <= self.users <= MAX_USERS:
            raise LoadError(f"--users must be a whole number 1..{MAX_USERS}, not {self.users!r}")
        rate = self.spawn_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != rate or not 0 < rate <= 1000:
            raise LoadError(f"--spawn-rate must be a number of users per second above 0 and at most 1000, not "
                            f"{rate!r}")
        parse_mix(",".join(f"{k}={v}" for k, v in self.mix.items()))

    def services(self) -> tuple[str, ...]:
        """The services the drill's topology must run besides the scenario's for these users."""
        return tuple(dict.fromkeys(SERVICE_OF[k] for k in self.mix if k in SERVICE_OF))

    def to_dict(self) -> dict:
        return {"users": self.users, "spawn_rate": self.spawn_rate, "mix": dict(self.mix)}


def with_load_services(scenario, load: LoadOptions | None):
    """``scenario`` with the services its load needs added (the backend and nginx for webhook senders, the EA for
    tick consumers); itself when nothing is missing."""
    from dataclasses import replace

    if load is None:
        return scenario
    missing = tuple(s for s in load.services() if s not in scenario.services)
    return replace(scenario, services=(*scenario.services, *missing)) if missing else scenario


def build_spec(env, load: LoadOptions, end_mono: float) -> dict:
    """The load process's spec for the drill environment ``env`` (no secret in it)."""
    w = env.workload()
    topo = env.topology
    spec: dict[str, Any] = {
        **load.to_dict(), "run_dir": str(env.run.path), "stack_dir": str(env.stack.run_dir),
        "sentinels": [list(a) for a in env.stack.sentinel_addresses()], "master_name": env.stack.master_name,
        "rtss": env.keys.rtss, "rtrs": env.keys.rtrs, "account": env.account, "symbols": list(w.symbols),
        "volume": w.volume, "timeout_s": w.timeout_s, "settle_s": w.settle_s, "end_mono": end_mono,
        "seed": env.seed, "wait_replicas": int(w.params.get("submit_wait", 1)),
        "wait_ms": int(w.params.get("submit_wait_ms", 500)),
        "eas": [[s.address, s.port] for s in topo.of_kind("ea")],
        "tick_bind_host": f"{topo.subnet}.{TICK_BIND_HOST}", "webhook_url": None}
    proxies = topo.of_kind("nginx")
    if proxies:
        spec["webhook_url"] = f"http://{proxies[0].address}:{proxies[0].port}/webhook/tradingview"
    return spec


class LoadProcess:
    """The drill's locust process, by handle: ``start`` it with the load, ``finish`` it after the settle."""

    def __init__(self, env, load: LoadOptions):
        self.env = env
        self.load = load
        self.node = None

    def start(self, started_mono: float, duration_s: float) -> "LoadProcess":
        from tradedrill.process import ProcessNode

        folder = self.env.run.path / LOAD_DIR
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / SPEC
        spec_path.write_text(json.dumps(build_spec(self.env, self.load, started_mono + duration_s), indent=2))
        root = Path(__file__).resolve().parents[1]
        registry = getattr(self.env.stack, "registry", None)
        self.node = ProcessNode(name="locust", role="load", address="", port=0,
                                argv=[sys.executable, "-m", "scenarios.locustfiles", "run", str(spec_path)],
                                log_path=self.env.run.path / "nodes" / "locust.log", ready=lambda: True, cwd=root,
                                env={"PYTHONPATH": str(root)}, registry=registry)
        self.node.start()
        return self

    def finish(self, settle_s: float) -> str:
        """Wait for the load process to end (its own settle included), at most ``settle_s + STOP_GRACE_S``; a
        late one is stopped (SIGTERM, then SIGKILL of its group). Returns a line for the drill's progress."""
        node = self.node
        if node is None:
            return "load: not started"
        deadline = time.monotonic() + settle_s + STOP_GRACE_S
        try:
            node._proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            late = False
        except subprocess.TimeoutExpired:
            late = True
        node.stop()
        summary = read_summary(self.env.run.path)
        if late:
            return f"load: the locust process outlived the settle by {STOP_GRACE_S:.0f} s and was stopped"
        if summary is None:
            return f"load: the locust process exited with status {node.returncode} and wrote no summary " \
                   f"(nodes/locust.log)"
        t = summary["total"]
        ms = lambda v: "-" if v is None else f"{v:.1f}"   # noqa: E731 - a format, one line
        return (f"load: {summary['users']} users, {t['requests']} requests ({t['rps']:.1f}/s), {t['failures']} "
                f"failures; order round-trips p50 {ms(t['p50_ms'])} ms, p95 {ms(t['p95_ms'])} ms, p99 "
                f"{ms(t['p99_ms'])} ms, max {ms(t.get('max_ms'))} ms")

    def stop(self) -> None:
        """Teardown: stop it by its handle whatever state it is in (idempotent)."""
        if self.node is not None:
            self.node.stop()


# -- what a load process may run against (issue 16 item 2) -----------------------------------------------------------
KIND_OF_CLASS = {"RtssProducer": "rtss", "WebhookSender": "webhook", "TickConsumerUser": "ticks"}


def spec_kinds(spec: dict) -> tuple[str, ...]:
    """The user kinds a spec's stack can serve: ``rtss`` with Sentinels, ``webhook`` with a URL, ``ticks`` with EAs."""
    have = {"rtss": bool(spec.get("sentinels")), "webhook": bool(spec.get("webhook_url")), "ticks": bool(spec.get("eas"))}
    return tuple(k for k in USER_KINDS if have[k])


def _tcp_answers(host: str, port: int, timeout_s: float) -> str | None:
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def stack_problem(spec: dict, kinds, timeout_s: float = 1.0) -> str | None:
    """Why the stack of ``spec`` cannot serve users of ``kinds`` (``rtss``/``webhook``/``ticks``), or None when
    every part they need answers now: a primary named by the Sentinels that answers PING with the stack's harness
    credential (rtss), a TCP connection to the webhook URL's host and port (webhook), to every EA (ticks). Each
    probe waits at most ``timeout_s`` seconds per address. Never raises."""
    from urllib.parse import urlsplit

    kinds = set(kinds)
    if "rtss" in kinds:
        if not spec.get("sentinels"):
            return "the spec names no Sentinel, so RTSS producers have no Redis"
        try:
            from tradedrill.credentials import StackSecrets
            from tradedrill.local import sentinel_primary
            from tradedrill.services import redis as redis_svc

            secrets = StackSecrets.load(spec["stack_dir"])
            cred = secrets.harness if secrets else None
            sentinels = [(str(h), int(p)) for h, p in spec["sentinels"]]
            primary = sentinel_primary(sentinels, str(spec.get("master_name")), timeout_s, cred)
            if primary is None:
                return (f"Redis does not answer: no Sentinel of {', '.join(f'{h}:{p}' for h, p in sentinels)} "
                        f"names a primary for {spec.get('master_name')!r}")
            if not redis_svc.ping(primary[0], primary[1], timeout_s, cred):
                return f"Redis does not answer: the primary {primary[0]}:{primary[1]} does not answer PING"
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            return f"Redis does not answer ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
    if "webhook" in kinds:
        url = spec.get("webhook_url")
        if not url:
            return "the spec has no webhook_url, so webhook senders have nowhere to post"
        parts = urlsplit(str(url))
        problem = _tcp_answers(parts.hostname or "", parts.port or 80, timeout_s)
        if problem:
            return f"the webhook {url} does not answer ({problem})"
    if "ticks" in kinds:
        if not spec.get("eas"):
            return "the spec names no EA, so tick consumers have nothing to read"
        for host, port in spec["eas"]:
            problem = _tcp_answers(str(host), int(port), timeout_s)
            if problem:
                return f"the EA {host}:{port} does not answer ({problem})"
    return None


SLOTS = "slots"                   # in run_dir/load/: one file per load process writing the history (its op-id range)
MAX_SLOTS = 1000                  # OP_BASE + 1,000,000 x slot stays below 2**31


class LoadRefused(Exception):
    """This process must not write the spec's history (one line saying what to do)."""


def claim_slot(run_dir: str | Path, owner: str) -> int:
    """Claim this process's slot among the processes writing ``run_dir``'s history and return its number (0..999):
    the slot gives the process its op-id range and its users' names, so two workers never share either (they
    shared names, and op ranges by ``pid % 1000``). ``owner`` says which load the process belongs to: the workers
    of one distributed load name the same master (``master HOST:PORT``); a process on its own is ``standalone
    <pid>``. Raises :class:`LoadRefused` when a process of another load holds a slot (a second load started on the
    same spec, at the same time or after a first one was killed before it could close its history), or when a
    process of the same load on this host is gone (a distributed load SIGKILLed and started again under the same
    master address: its new workers would append to the killed load's history)."""
    import os
    import socket
    import tempfile

    folder = Path(run_dir) / LOAD_DIR / SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".claim-")
    with os.fdopen(fd, "w") as fh:   # written whole before it is linked: a reader never sees half a claim
        fh.write(json.dumps({"owner": owner, "pid": os.getpid(), "host": socket.gethostname(),
                             "at_unix": time.time()}))
    mine = None
    try:
        for n in range(MAX_SLOTS):   # bounded
            try:
                os.link(tmp, folder / f"{n}.json")   # fails if the slot is taken: atomic
            except FileExistsError:
                continue
            mine = n
            break
    finally:
        os.unlink(tmp)
    if mine is None:
        raise LoadRefused(f"{folder} holds {MAX_SLOTS} load processes already; write a new spec with "
                          f"`tradedrill load-spec`")
    for other in sorted(folder.glob("[0-9]*.json")):
        if other.name == f"{mine}.json":
            continue
        try:
            claim = json.loads(other.read_text())
            theirs = claim.get("owner")
        except (OSError, ValueError, AttributeError):
            claim, theirs = {}, None
        if theirs != owner or owner.startswith("standalone"):
            (folder / f"{mine}.json").unlink(missing_ok=True)
            raise LoadRefused(f"another load ({theirs or 'unknown'}) writes or wrote this spec's history "
                              f"({other}); write a new spec with `tradedrill load-spec` so that each load is "
                              f"judged on a history of its own")
        if _gone(claim):
            (folder / f"{mine}.json").unlink(missing_ok=True)
            raise LoadRefused(_gone_line(other, claim))
    return mine


def _gone(claim: dict) -> bool:
    import socket

    return claim.get("host") == socket.gethostname() and not _alive(claim.get("pid"))


def _gone_line(path: Path, claim: dict) -> str:
    return (f"load process pid {claim.get('pid')} (slot {path}, of the load of {claim.get('owner') or 'unknown'}) is "
            f"gone without closing the history (a killed load, started again on the same spec?); write a new spec "
            f"with `tradedrill load-spec` so that each load is judged on a history of its own")


def gone_slot_problem(run_dir: str | Path) -> str | None:
    """One line naming a slot whose load process on this host is gone while the history is still open (a SIGKILLed
    load), or None. The locust CLI's master and workers check it when they load the locustfile, before a worker
    looks for its master (a new user's master waited for workers that were each refused; then the workers retried a
    refused master for 5 minutes)."""
    folder = Path(run_dir) / LOAD_DIR / SLOTS
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("[0-9]*.json"))[:MAX_SLOTS]:   # bounded
        try:
            claim = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(claim, dict) and _gone(claim):
            return _gone_line(path, claim)
    return None


def _alive(pid) -> bool:
    """Whether process ``pid`` of this host exists (a zombie counts: it has not been reaped, its slot is kept)."""
    import os

    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spec_refusal(spec: dict, kinds, now_mono: float | None = None, timeout_s: float = 1.0) -> str | None:
    """Why a load process must not run ``spec`` with users of ``kinds``, as one line saying what to do, or None.

    Refused: a spec whose ``run_dir`` is a finished run (its ``status.json`` says anything but ``running``: the
    drill is over, its history already judged, and its stack gone); a spec of ``load-spec`` whose load already ran
    (``load/ended.json``: re-running it would append a second load to its history); a drill's spec whose load ended
    (``end_mono`` + ``settle_s`` is past on CLOCK_MONOTONIC); a stack that does not answer (:func:`stack_problem`).
    """
    from scenarios.history import RunDir

    fix = ("a drill's load/spec.json is only valid while its drill runs; for a load of your own, start a stack "
           "(`tradedrill up`) and write its spec with `tradedrill load-spec` (README, \"Locust load inside a drill\")")
    run_dir = spec.get("run_dir")
    if not run_dir:
        return "the spec has no run_dir (the folder the load's history.jsonl and signals.jsonl go to)"
    status = RunDir(run_dir).status()
    if status is not None and status.get("state") != "running":
        return f"the run folder {run_dir} is finished (status.json: {status.get('state')}), refusing to add " \
               f"operations to a judged history; {fix}"
    ended = Path(run_dir) / LOAD_DIR / ENDED
    if spec.get("end_mono") is None and ended.exists():
        return f"this spec's load already ran (its history is closed: {ended}); write a new spec with " \
               f"`tradedrill load-spec` so that each load is judged on a history of its own"
    now = time.monotonic() if now_mono is None else now_mono
    end = spec.get("end_mono")
    if isinstance(end, (int, float)) and now > float(end) + float(spec.get("settle_s", 10.0)):
        return f"this spec's load ended {now - float(end):.0f} s ago (end_mono {end}); {fix}"
    served = spec_kinds(spec)
    missing = [k for k in USER_KINDS if k in set(kinds) and k not in served]
    if missing and served:   # the stack is up but was started without what those users need: name the others
        cls = {v: k for k, v in KIND_OF_CLASS.items()}
        need = {"rtss": "redis,mt5,engine", "webhook": "backend", "ticks": "ea"}
        return (f"this spec's stack serves no {', '.join(cls[k] for k in missing)} (its stack runs no "
                f"{' or '.join(need[k] for k in missing)}); name the user classes it serves at the end of the locust "
                f"command ({' '.join(cls[k] for k in USER_KINDS if k in served)}), or start a stack with those services")
    problem = stack_problem(spec, kinds, timeout_s)
    if problem:
        return f"{problem}; {fix}"
    return None


# -- percentiles from the raw samples --------------------------------------------------------------------------------
PERCENTILES = (0.5, 0.95, 0.99)


def percentiles(times_ms) -> dict:
    """``{"p50": ms, "p95": ms, "p99": ms}`` of ``times_ms`` (raw response times, ms), nearest rank (each one is a
    sample, so none exceeds the maximum), rounded to 0.001 ms; None each for no sample."""
    if not times_ms:
        return {f"p{int(q * 100)}": None for q in PERCENTILES}
    s = sorted(float(t) for t in times_ms)
    return {f"p{int(q * 100)}": round(s[min(len(s) - 1, int(q * len(s)))], 3) for q in PERCENTILES}


def summary_entry(times_ms, failures: int, span_s: float) -> dict:
    """One row of ``load/summary.json`` from the raw response times (ms) of one request name: ``requests``,
    ``failures``, ``rps`` (requests/s over ``span_s`` seconds), ``p50_ms``/``p95_ms``/``p99_ms`` (nearest rank,
    :func:`percentiles`) and ``max_ms``; every percentile is <= ``max_ms``."""
    p = percentiles(times_ms)
    return {"requests": len(times_ms), "failures": int(failures), "rps": round(len(times_ms) / max(1e-9, span_s), 3),
            "p50_ms": p["p50"], "p95_ms": p["p95"], "p99_ms": p["p99"],
            "max_ms": round(max(times_ms), 3) if times_ms else None}


TICKS_TYPE = "TICKS"   # the request type of a tick consumer's window (scenarios.locustfiles.TICKS_NAME)


def is_round_trip(name: str) -> bool:
    """Whether the request ``name`` ("TYPE name") times an order's round trip (RTSS, webhook), not a tick window's
    median latency: only those make the pooled p50/p95/p99 (a new user's finding: the console's and the plot's
    percentiles mixed both, and a last second holding only tick windows read as order latency near 0 ms)."""
    return not name.startswith(f"{TICKS_TYPE} ")


def second_row(per: dict) -> dict:
    """One second of ``load/stats.jsonl`` from ``{name: (response times ms, [failures])}``: ``types`` (each name's
    requests, failures, p50/p95/p99), ``requests`` and ``failures`` of every name, and p50/p95/p99 of the order
    round-trips only (:func:`is_round_trip`; None each in a second without one)."""
    types, trips, requests, failures = {}, [], 0, 0
    for name, (times, fails) in per.items():
        types[name] = {"requests": len(times), "failures": fails[0], **percentiles(times)}
        requests += len(times)
        failures += fails[0]
        if is_round_trip(name):
            trips += times
    return {"types": types, "requests": requests, "failures": failures, **percentiles(trips)}


def total_entry(totals: dict, span_s: float) -> dict:
    """``summary.json``'s ``total`` from ``{name: (response times ms, [failures])}``: requests, failures and rps of
    every name, p50/p95/p99/max of the order round-trips only (:func:`is_round_trip`), and ``round_trips``: how
    many requests those percentiles are of."""
    every = [t for times, _f in totals.values() for t in times]
    trips = [t for name, (times, _f) in totals.items() if is_round_trip(name) for t in times]
    total = summary_entry(every, sum(f[0] for _t, f in totals.values()), span_s)
    total.update({k: v for k, v in summary_entry(trips, 0, span_s).items() if k.endswith("_ms")})
    total["round_trips"] = len(trips)   # what the percentiles are of (``requests`` counts every name)
    return total


_VARYING = ((re.compile(r"\(attempt \d+: "), "("), (re.compile(r"\battempts? \d+"), "attempt N"),
            (re.compile(r"\b\d+ attempts?\b"), "N attempts"), (re.compile(r"\b\d+ post\(s\)"), "N post(s)"),
            (re.compile(r"[;,]? ?next retry in [0-9.]+ ?s"), ""))


def stable_error(text: str) -> str:
    """``text`` without the parts that change from one try to the next (``attempt 3``, ``next retry in 0.4s``),
    so locust groups one failure under one row whatever the retry count."""
    for pattern, repl in _VARYING:
        text = pattern.sub(repl, text)
    return text


# -- reading back, for the report ----------------------------------------------------------------------------------
def read_summary(run_dir: str | Path) -> dict | None:
    try:
        doc = json.loads((Path(run_dir) / LOAD_DIR / SUMMARY).read_text())
        return doc if isinstance(doc, dict) and isinstance(doc.get("total"), dict) else None
    except (OSError, ValueError):
        return None


def read_stats(run_dir: str | Path) -> list[dict]:
    rows = []
    try:
        lines = (Path(run_dir) / LOAD_DIR / STATS).read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue   # a torn last line of a killed load process
        if isinstance(row, dict) and isinstance(row.get("mono"), (int, float)):
            rows.append(row)
    return sorted(rows, key=lambda r: r["mono"])


def load_view(run_dir: str | Path | None, t0: float, fault_windows: list[dict], end_s: float | None = None) -> dict | None:
    """The run's load for the report: the summary, the per-second rows relative to ``t0`` (the timeline's origin)
    and one SVG of requests/s, failures/s, p50/p95/p99 with the fault windows shaded; None when the run had no
    locust load."""
    if run_dir is None or not (Path(run_dir) / LOAD_DIR).is_dir():
        return None
    rows = [{**r, "t": r["mono"] - t0} for r in read_stats(run_dir)]
    summary = read_summary(run_dir)
    return {"summary": summary, "rows": rows, "svg": load_svg(rows, fault_windows, end_s),
            "reason": None if summary else "the load process wrote no summary (see nodes/locust.log)"}


# blue, orange, dark red dashed: a new user could not tell the old purple p95 from the magenta p99
_SERIES = (("p50", "#1565c0"), ("p95", "#ef6c00"), ("p99", "#b71c1c"))
_DASH = {"p99": ' stroke-dasharray="4 2"'}


def load_svg(rows: list[dict], fault_windows: list[dict], end_s: float | None = None, width: int = 900,
             height: int = 360) -> str:
    """One inline SVG: above, p50/p95/p99 response time (ms) per second; below, requests/s (bars) and failures/s
    (red); both on the run's time axis (seconds since the run started) with each fault window shaded and named."""
    left, right, top, gap, bottom = 60, 20, 24, 30, 36
    inner_w = width - left - right
    h1 = (height - top - gap - bottom) * 0.55
    h2 = (height - top - gap - bottom) - h1
    y2_top = top + h1 + gap
    ts = [r["t"] for r in rows]
    starts = [w["start"] for w in fault_windows]
    ends = [w["end"] if w.get("end") is not None else w["start"] for w in fault_windows]
    lo = min([0.0, *ts, *starts])
    hi = max([1.0, *(t + 1 for t in ts), *ends, end_s or 0.0])
    span = max(hi - lo, 1e-9)
    x = lambda t: left + (t - lo) / span * inner_w   # noqa: E731 - a scale, one line
    lat_max = max([1.0, *(r.get(k) or 0 for r in rows for k, _ in _SERIES)])
    req_max = max([1, *(r.get("requests", 0) for r in rows)])
    parts = [f'<svg class="load-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<title>locust load and fault windows</title>',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    for w, start, end in zip(fault_windows, starts, ends):
        x0, x1 = x(start), max(x(end if w.get("end") is not None else hi), x(start) + 2)
        label = html.escape(str(w.get("label") or w.get("fault") or "fault"))
        parts.append(f'<rect class="fault-window" x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" '
                     f'height="{height - top - bottom}" fill="rgba(198,40,40,0.13)"><title>{label} '
                     f'{start:.2f}-{end:.2f} s</title></rect>')
        parts.append(f'<text x="{x0 + 3:.1f}" y="{top + 11}" fill="#c62828">{label}</text>')
    bar_w = max(1.0, inner_w / span * 0.8)
    for r in rows:   # a second's label is round(t), an int: a first bucket at t = -0.3 s reads t=0 s, never t=-0 s
        req, fail = r.get("requests", 0), r.get("failures", 0)
        bh, fh = req / req_max * h2, fail / req_max * h2
        parts.append(f'<rect x="{x(r["t"]):.1f}" y="{y2_top + h2 - bh:.1f}" width="{bar_w:.1f}" height="{bh:.1f}" '
                     f'fill="#90caf9"><title>t={round(r["t"])} s: {req} requests, {fail} failures, '
                     f'{r.get("users", 0)} users</title></rect>')
        if fail:
            parts.append(f'<rect class="failures" x="{x(r["t"]):.1f}" y="{y2_top + h2 - fh:.1f}" '
                         f'width="{bar_w:.1f}" height="{fh:.1f}" fill="#c62828"/>')
    for key, colour in _SERIES:
        pts = [(x(r["t"] + 0.5), top + h1 - (r[key] / lat_max) * h1) for r in rows if r.get(key) is not None]
        if pts:
            parts.append(f'<polyline class="{key}" fill="none" stroke="{colour}" stroke-width="1.5"'
                         f'{_DASH.get(key, "")} points="'
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
    parts += [f'<line x1="{left}" y1="{top + h1}" x2="{left + inner_w}" y2="{top + h1}" stroke="#888"/>',
              f'<line x1="{left}" y1="{y2_top + h2}" x2="{left + inner_w}" y2="{y2_top + h2}" stroke="#888"/>',
              f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{lat_max:.0f} ms</text>',
              f'<text x="{left - 4}" y="{top + h1}" text-anchor="end">0</text>',
              f'<text x="{left - 4}" y="{y2_top + 4}" text-anchor="end">{req_max}/s</text>',
              f'<text x="{left - 4}" y="{y2_top + h2}" text-anchor="end">0</text>']
    step = max(1, int(span / 10))
    t = int(lo)
    while t <= hi:   # bounded: at most ~11 ticks
        parts.append(f'<text x="{x(t):.1f}" y="{height - bottom + 14}" text-anchor="middle">{t}</text>')
        t += step
    legend = "  ".join(f'<tspan fill="{c}">{k}</tspan>' for k, c in _SERIES)
    parts += [f'<text x="{left}" y="{top - 8}">order round-trip time per second (ms; tick latency not '
              f'included): {legend}</text>',
              f'<text x="{left}" y="{y2_top - 8}">requests/s <tspan fill="#c62828">(failures/s in red)</tspan></text>',
              f'<text x="{left + inner_w / 2:.0f}" y="{height - 6}" text-anchor="middle">seconds since the run '
              f'started (fault windows shaded)</text>', '</svg>']
    return "\n".join(parts)
