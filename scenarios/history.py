"""The run directory and the history recorder: what a drill writes, so that judgement can happen afterwards.

A run is recorded, never judged, while it happens (Jepsen's shape): the scenario runner appends every client
operation to a history, the fault library appends every injection and heal to a fault log, and the MT5 simulator's
ledger says what the broker really executed. Checkers (``scenarios.checkers``) are pure functions over these files,
so ``tradedrill check RUN_DIR`` re-judges a saved run without the stack.

Run directory layout (one directory per scenario x repeat; every file is plain text a person can read)::

    RUN_DIR/
      scenario.json   the Scenario definition that ran (name, requirement_ids, checkers, ...) plus "repeat": k
      seed            the run's seed, one integer; replays the workload and the fault schedule
      config.json     the stack configuration the run used (addresses, timeouts, sentinel settings, ...)
      history.jsonl   client operations (schema below), written by :class:`History`
      faults.jsonl    fault log written by ``faults.core.FaultLog``: one object per line with
                      event ("inject" | "heal" | "inject-failed" | "heal-failed"), fault (kind), fault_id
                      (pairs an inject with its heal), description, requirements (IDs), wall (ISO-8601),
                      wall_ts (epoch s), mono (time.monotonic() after the fault took effect / was healed), details
      ledger.jsonl    broker ground truth: one executed deal per line with deal, order, magic, comment, symbol,
                      volume, price, time, broker (and type/entry when the simulator knows them)
      orders.jsonl    the brokers' orders after the run (issue 20): every order each simulator holds (placed,
                      filled, cancelled, expired) with ticket, type, state, comment, symbol, position_id, broker;
                      a pending order (limit/stop) that never filled has no deal in the ledger and is read from here
      signals.jsonl   every signal submitted: {"signal": id, "ack": "ok" | "fail" | "unknown", "wall_ts", "mono",
                      plus symbol/side/volume when known}; written by :class:`SignalLog`
      rtrs.jsonl      the engine's trade result stream (RTRS) dumped after the run: one result per line with
                      signal (id), status ("executed" | "rejected" | ...), reason, order, retcode
      rts.json        the engine's trade state (RTS) dumped after the run: {"positions": ..., "orders": ...}
      backlog.json    signals still queued when the engines stopped: {"signals": [ids], "undelivered": n (on RTSS
                      after the consumer group's last delivered id), "pending": n (delivered, never acknowledged),
                      "pending_on": {signal id: the consumer (engine) it was delivered to}}
      status.json     how the run ended: {"state": "running" | "complete" | "interrupted" | "error", "phase",
                      "reason", "wall"}; a run that is not "complete" is judged invalid (``scenarios.verdicts``)
      nodes/*.log     stdout/stderr of every process the run started
      conformance.json  the documents' settings read from the running nodes near the start and the end, and the
                      snapshot/backup/dump folders listed about once a second (``scenarios.conformance``, issue 19)
      overrides.json  the settings the run used instead of the documents' (a scenario's engine_overrides, the
                      drill's --set): key, drill, document, requirement_ids, source (``scenarios.overrides``)

History line schema (JSON lines, append-only; an operation is two lines, so an operation whose process died
mid-flight still has its invoke and is read back as ``unknown``)::

    {"type": "invoke", "op": 7, "process": "client-1", "f": "submit", "key": "s-0007", "value": {...},
     "wall": "2025-...+00:00", "wall_ts": 1735732800.1, "mono": 12345.6}
    {"type": "ok" | "fail" | "unknown", "op": 7, "process": ..., "f": ..., "key": ..., "value": ..., "error": null,
     "wall": ..., "wall_ts": ..., "mono": ...}

Outcomes: ``ok`` (the operation definitely happened), ``fail`` (it definitely did not), ``unknown`` (it may or may
not have: timeouts, dropped connections, a crash in flight). A timeout is ``unknown``, never ``fail``.
``mono`` is ``time.monotonic()``, the same clock the fault log uses, so durations compare across files.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
PENDING_ORDER_TYPES = frozenset(range(2, 8))   # ORDER_TYPE_BUY_LIMIT .. ORDER_TYPE_SELL_STOP_LIMIT
OUTCOMES = (OK, FAIL, UNKNOWN)

HISTORY = "history.jsonl"
FAULTS = "faults.jsonl"
LEDGER = "ledger.jsonl"
BROKER_ORDERS = "orders.jsonl"   # issue 20: the brokers' orders (pending orders that never filled)
SIGNALS = "signals.jsonl"
RTRS = "rtrs.jsonl"
RTS = "rts.json"
NODES = "nodes"
SEED = "seed"
CONFIG = "config.json"
SCENARIO = "scenario.json"
STATUS = "status.json"
BACKLOG = "backlog.json"


def _wall_iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


class DefiniteFailure(Exception):
    """Raise inside ``history.op(...)`` when the operation certainly did not take effect (recorded as ``fail``)."""


def is_indeterminate(exc: BaseException) -> bool:
    """True when an exception leaves the outcome unknown: timeouts and connection errors (built-in or any
    client library's, recognised by class name, e.g. redis.exceptions.TimeoutError / ConnectionError)."""
    if isinstance(exc, DefiniteFailure):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    return any("timeout" in n or "connection" in n or "timedout" in n for n in names)


# -- writers ---------------------------------------------------------------------------------------------------
class JsonLinesWriter:
    """Append-only, thread-safe JSON-lines file: each line is flushed at once; ``close()`` fsyncs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> dict:
        text = json.dumps(record, default=str, sort_keys=False) + "\n"
        with self._lock:
            if self._fh is None:
                raise ValueError(f"{self.path} is closed; open a new writer to append more lines")
            self._fh.write(text)
            self._fh.flush()
        return record

    def close(self) -> None:
        with self._lock:
            if self._fh is None:
                return
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    @property
    def closed(self) -> bool:
        return self._fh is None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OpHandle:
    """What ``with history.op(...) as op`` yields: set the outcome explicitly (``op.ok(v)``, ``op.fail(err)``,
    ``op.unknown(err)``) or let the block decide (no exception: ok; timeout/connection error: unknown;
    DefiniteFailure or any other exception: fail)."""

    def __init__(self, op_id: int, process: str, f: str, key: Any, value: Any):
        self.id = op_id
        self.process, self.f, self.key = process, f, key
        self.value = value
        self.outcome: str | None = None
        self.error: str | None = None

    def ok(self, value: Any = None) -> None:
        self.outcome = OK
        if value is not None:
            self.value = value

    def fail(self, error: Any = None) -> None:
        self.outcome, self.error = FAIL, None if error is None else str(error)

    def unknown(self, error: Any = None) -> None:
        self.outcome, self.error = UNKNOWN, None if error is None else str(error)


class History(JsonLinesWriter):
    """The history recorder: ``invoke``/``complete`` pairs, or the ``op`` context manager.

    ``clock`` and ``wall_clock`` are injectable so tests can build histories with known timelines.
    """

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        super().__init__(path)
        self.clock, self.wall_clock = clock, wall_clock
        self._ids = itertools.count(_next_op_id(self.path))

    def _line(self, kind: str, op_id: int, process: str, f: str, key: Any, value: Any,
              error: str | None = None) -> dict:
        wall = self.wall_clock()
        line = {"type": kind, "op": op_id, "process": process, "f": f, "key": key, "value": value}
        if kind != "invoke":
            line["error"] = error
        line.update(wall=_wall_iso(wall), wall_ts=wall, mono=self.clock())
        return line

    def invoke(self, process: str, f: str, key: Any = None, value: Any = None) -> int:
        op_id = next(self._ids)
        self.write(self._line("invoke", op_id, str(process), f, key, value))
        return op_id

    def complete(self, op_id: int, process: str, f: str, key: Any, outcome: str, value: Any = None,
                 error: Any = None) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        self.write(self._line(outcome, op_id, str(process), f, key, value, None if error is None else str(error)))

    @contextlib.contextmanager
    def op(self, process: str, f: str, key: Any = None, value: Any = None) -> Iterator[OpHandle]:
        """Record one operation around a block. Exceptions (not BaseException) are recorded and swallowed, so a
        workload loop keeps going; KeyboardInterrupt/SystemExit are recorded as unknown and re-raised."""
        handle = OpHandle(self.invoke(process, f, key, value), str(process), f, key, value)
        try:
            yield handle
        except Exception as exc:  # noqa: BLE001 - every exception is an outcome to record
            if is_indeterminate(exc):
                handle.unknown(f"{type(exc).__name__}: {exc}")
            else:
                handle.fail(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:
            handle.unknown(f"{type(exc).__name__}: {exc}")
            self.complete(handle.id, handle.process, f, key, UNKNOWN, handle.value, handle.error)
            raise
        else:
            if handle.outcome is None:
                handle.outcome = OK
        self.complete(handle.id, handle.process, f, key, handle.outcome, handle.value, handle.error)


def _next_op_id(path: Path) -> int:
    """Appending to an existing history continues its op numbering."""
    if not path.exists() or path.stat().st_size == 0:
        return 1
    highest = 0
    for rec in read_jsonl(path):
        if isinstance(rec.get("op"), int):
            highest = max(highest, rec["op"])
    return highest + 1


class SignalLog(JsonLinesWriter):
    """``signals.jsonl``: every signal submitted and whether the backend acknowledged it."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        super().__init__(path)
        self.clock, self.wall_clock = clock, wall_clock

    def record(self, signal_id: str, ack: str, **fields: Any) -> dict:
        if ack not in OUTCOMES:
            raise ValueError(f"ack must be one of {OUTCOMES}, not {ack!r}")
        wall = self.wall_clock()
        return self.write({"signal": str(signal_id), "ack": ack, **fields, "wall": _wall_iso(wall), "wall_ts": wall,
                           "mono": self.clock()})


# -- plain data read back --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """One client operation, invoke and completion joined. ``complete_*`` is None when no completion was
    recorded (the process died in flight): such an operation is ``unknown``."""

    id: int
    process: str
    f: str
    key: Any
    outcome: str
    invoke_mono: float
    complete_mono: float | None = None
    invoke_wall: float | None = None
    complete_wall: float | None = None
    value: Any = None
    error: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.complete_mono is None else self.complete_mono - self.invoke_mono


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault: [inject_mono, heal_mono]; heal_mono is None when the log has no heal for it."""

    fault: str
    fault_id: str
    inject_mono: float
    heal_mono: float | None = None
    description: str = ""
    requirement_ids: tuple[str, ...] = ()
    inject_wall: float | None = None
    heal_wall: float | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Deal:
    """One executed deal in a broker ledger."""

    deal: Any
    order: Any
    comment: str = ""
    magic: int | None = None
    symbol: str = ""
    volume: float = 0.0
    price: float | None = None
    time: Any = None
    broker: str = ""
    type: Any = None  # 0/"buy" or 1/"sell" when known
    entry: Any = None  # 0 in, 1 out, ...
    position_id: Any = None  # the position it opened or closed (issue 20: positions compared by side)
    reason: Any = None  # DEAL_REASON_*: 4 SL, 5 TP, 6 stop-out are the broker's own closes
    login: Any = None
    # "deal"; "order" for a pending order the broker placed that has no deal (issue 20: ``RunDir.placed_orders``):
    # the signal's order exists at the broker, but it moved no volume
    kind: str = "deal"

    @classmethod
    def from_dict(cls, d: dict) -> "Deal":
        return cls(deal=d.get("deal", d.get("ticket")), order=d.get("order"), comment=d.get("comment") or "",
                   magic=d.get("magic"), symbol=d.get("symbol") or "", volume=float(d.get("volume") or 0.0),
                   price=d.get("price"), time=d.get("time", d.get("time_msc")), broker=d.get("broker") or "",
                   type=d.get("type", d.get("side")), entry=d.get("entry"), position_id=d.get("position_id"),
                   reason=d.get("reason"), login=d.get("login"))


@dataclass(frozen=True)
class Signal:
    """One submitted signal and its acknowledgement (``ok`` = acknowledged)."""

    id: str
    ack: str
    mono: float | None = None
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TradeResult:
    """One entry of the engine's trade result stream (RTRS)."""

    signal: str
    status: str
    reason: str | None = None
    order: Any = None
    retcode: Any = None
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "TradeResult":
        signal = d.get("signal", d.get("signal_id", d.get("id")))
        return cls(signal=str(signal), status=str(d.get("status") or d.get("state") or ""),
                   reason=d.get("reason") or d.get("error") or d.get("comment"), order=d.get("order"),
                   retcode=d.get("retcode"), raw=dict(d))


# -- readers ---------------------------------------------------------------------------------------------------
def read_jsonl_lines(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every complete JSON object of a JSON-lines file; a torn last line (a crash
    mid-write) is skipped. Raises ValueError naming the file and line of anything else that is not an object."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}); it is not a file a drill wrote") from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue  # torn final line
            raise ValueError(f"{path}:{i + 1} is not JSON; the file is damaged in the middle, not just torn") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1} is {type(rec).__name__} {line[:40]!r}, not a JSON object; every line "
                             f"of {path.name} is one object")
        records.append((i + 1, rec))
    return records


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every complete JSON object of a JSON-lines file (see :func:`read_jsonl_lines`)."""
    return [rec for _line, rec in read_jsonl_lines(path)]


def _require_mono(path: Path, numbered: list[tuple[int, dict]], kinds: Iterable[str], field: str) -> None:
    """Every record whose ``field`` is in ``kinds`` has a numeric ``mono``; else ValueError naming file and line."""
    kinds = set(kinds)
    for line, rec in numbered:
        if rec.get(field) in kinds:
            mono = rec.get("mono", rec.get("monotonic"))
            if isinstance(mono, bool) or not isinstance(mono, (int, float)):
                raise ValueError(f"{path}:{line} has no numeric 'mono' (the monotonic clock every duration is "
                                 f"measured on): {json.dumps(rec)[:80]}")


def operations_from_records(records: Iterable[dict]) -> list[Operation]:
    """Join invoke and completion lines into operations, in invoke order."""
    invokes: dict[Any, dict] = {}
    completions: dict[Any, dict] = {}
    order: list[Any] = []
    for rec in records:
        op_id = rec.get("op")
        if rec.get("type") == "invoke":
            invokes[op_id] = rec
            order.append(op_id)
        elif rec.get("type") in OUTCOMES:
            completions[op_id] = rec
    ops = []
    for op_id in order:
        inv = invokes[op_id]
        done = completions.get(op_id)
        ops.append(Operation(
            id=op_id, process=str(inv.get("process")), f=str(inv.get("f")), key=inv.get("key"),
            outcome=done["type"] if done else UNKNOWN,
            invoke_mono=float(inv["mono"]), complete_mono=float(done["mono"]) if done else None,
            invoke_wall=inv.get("wall_ts"), complete_wall=done.get("wall_ts") if done else None,
            value=done.get("value", inv.get("value")) if done else inv.get("value"),
            error=done.get("error") if done else "no completion recorded (process died in flight?)",
        ))
    return ops


def fault_windows_from_records(records: Iterable[dict]) -> list[FaultWindow]:
    """Pair ``inject`` with ``heal`` lines by fault_id (falling back to the fault name, first-in first-out).
    Failed injections are not windows."""
    windows: list[dict] = []
    open_by_key: dict[str, list[dict]] = {}
    for rec in records:
        event = rec.get("event")
        name = str(rec.get("fault") or rec.get("name") or "fault")
        key = str(rec.get("fault_id") or name)
        mono = rec.get("mono", rec.get("monotonic"))
        wall = rec.get("wall_ts")
        if wall is None and isinstance(rec.get("wall"), (int, float)):
            wall = rec["wall"]
        if event == "inject":
            w = {"fault": name, "fault_id": key, "inject_mono": float(mono), "heal_mono": None,
                 "description": rec.get("description") or "",
                 "requirement_ids": tuple(rec.get("requirements") or rec.get("requirement_ids") or ()),
                 "inject_wall": wall, "heal_wall": None, "details": rec.get("details") or {}}
            windows.append(w)
            open_by_key.setdefault(key, []).append(w)
        elif event == "heal" and open_by_key.get(key):
            w = open_by_key[key].pop(0)
            w["heal_mono"], w["heal_wall"] = float(mono), wall
    return [FaultWindow(**w) for w in windows]


class RunDir:
    """A run directory: paths, readers, and (for the runner) writers. See the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def create(cls, path: str | os.PathLike, *, seed: int, scenario: dict | None = None,
               config: dict | None = None) -> "RunDir":
        run = cls(path)
        (run.path / NODES).mkdir(parents=True, exist_ok=True)
        (run.path / SEED).write_text(f"{seed}\n")
        _write_json(run.path / SCENARIO, scenario or {})
        _write_json(run.path / CONFIG, config or {})
        return run

    @staticmethod
    def is_run_dir(path: str | os.PathLike) -> bool:
        p = Path(path)
        return p.is_dir() and ((p / HISTORY).exists() or (p / SCENARIO).exists())

    @classmethod
    def find(cls, root: str | os.PathLike) -> list["RunDir"]:
        """``root`` itself if it is a run directory, else every run directory below it, sorted by path."""
        root = Path(root)
        if cls.is_run_dir(root):
            return [cls(root)]
        found = {p.parent for p in root.rglob(HISTORY)} | {p.parent for p in root.rglob(SCENARIO)}
        return [cls(p) for p in sorted(found)]

    # writers
    def history_writer(self, **kw) -> History:
        return History(self.path / HISTORY, **kw)

    def signal_writer(self, **kw) -> SignalLog:
        return SignalLog(self.path / SIGNALS, **kw)

    def node_log(self, name: str) -> Path:
        (self.path / NODES).mkdir(parents=True, exist_ok=True)
        return self.path / NODES / f"{name}.log"

    def mark(self, state: str, *, phase: str | None = None, reason: str | None = None) -> None:
        """Record how the run ended in ``status.json``: ``running`` (with the phase), ``complete``,
        ``interrupted`` or ``error``; a run that is not ``complete`` is judged invalid."""
        doc = {"state": state, "phase": phase, "reason": reason, "wall": _wall_iso(time.time())}
        _write_json(self.path / STATUS, {k: v for k, v in doc.items() if v is not None})

    # readers
    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def status(self) -> dict | None:
        """status.json, or None for a run written before runs recorded how they ended."""
        return _read_json(self.path / STATUS, None, dict)

    def backlog(self) -> dict | None:
        """backlog.json: signals still queued on RTSS when the run ended (``signals``: ids; ``undelivered``,
        ``pending``: counts), or None."""
        return _read_json(self.path / BACKLOG, None, dict)

    def operations(self) -> list[Operation]:
        numbered = read_jsonl_lines(self.path / HISTORY)
        _require_mono(self.path / HISTORY, numbered, ("invoke", *OUTCOMES), "type")
        return operations_from_records(rec for _line, rec in numbered)

    def fault_windows(self) -> list[FaultWindow]:
        numbered = read_jsonl_lines(self.path / FAULTS)
        _require_mono(self.path / FAULTS, numbered, ("inject", "heal"), "event")
        return fault_windows_from_records(rec for _line, rec in numbered)

    def fault_events(self) -> list[dict]:
        return read_jsonl(self.path / FAULTS)

    def ledger(self) -> list[Deal]:
        return [Deal.from_dict(d) for d in read_jsonl(self.path / LEDGER)]

    def broker_orders(self) -> list[dict]:
        """orders.jsonl as dumped ([] when the run has none: runs before issue 20)."""
        return read_jsonl(self.path / BROKER_ORDERS) if self.has(BROKER_ORDERS) else []

    def placed_orders(self) -> list[Deal]:
        """The pending orders (limit, stop, stop-limit) the brokers placed that have no deal in the ledger, each as a
        ``Deal`` of kind ``order`` (volume 0, no side): a signal whose order is a placed limit was executed as the
        engine means it (RTRS executed, an order and no deal) although the price never reached it."""
        dealt = {(d.broker, str(d.order)) for d in self.ledger()} if self.has(LEDGER) else set()
        out = []
        for o in self.broker_orders():
            if int(o.get("type", 0) or 0) not in PENDING_ORDER_TYPES or (o.get("broker") or "", str(o.get("ticket"))) in dealt:
                continue
            out.append(Deal(deal=None, order=o.get("ticket"), comment=o.get("comment") or "", magic=o.get("magic"),
                            symbol=o.get("symbol") or "", volume=0.0, price=o.get("price_open"),
                            time=o.get("time_setup_msc"), broker=o.get("broker") or "", type=None, entry=None,
                            position_id=None, reason=None, login=o.get("login"), kind="order"))
        return out

    def signals(self) -> list[Signal]:
        """signals.jsonl; when absent, derived from the history's ``submit`` operations (key = signal id)."""
        path = self.path / SIGNALS
        if path.exists():
            out = []
            for d in read_jsonl(path):
                sid = d.get("signal", d.get("signal_id", d.get("id")))
                rest = {k: v for k, v in d.items() if k not in ("signal", "signal_id", "id", "ack", "mono")}
                out.append(Signal(id=str(sid), ack=str(d.get("ack", UNKNOWN)), mono=d.get("mono"), fields=rest))
            return out
        return signals_from_operations(self.operations())

    def trade_results(self) -> list[TradeResult]:
        return [TradeResult.from_dict(d) for d in read_jsonl(self.path / RTRS)]

    def trade_state(self) -> dict | None:
        return _read_json(self.path / RTS, None, dict)

    @property
    def seed(self) -> int | None:
        try:
            return int((self.path / SEED).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def config(self) -> dict:
        return _read_json(self.path / CONFIG, {}, dict)

    @property
    def scenario(self) -> dict:
        return _read_json(self.path / SCENARIO, {}, dict)

    def node_logs(self) -> list[Path]:
        return sorted((self.path / NODES).glob("*.log")) if (self.path / NODES).exists() else []


SUBMIT_OPS = ("submit", "submit_signal", "signal")


def signals_from_operations(ops: Iterable[Operation], fs: tuple[str, ...] = SUBMIT_OPS) -> list[Signal]:
    return [Signal(id=str(op.key), ack=op.outcome, mono=op.invoke_mono, fields={"op": op.id})
            for op in ops if op.f in fs and op.key is not None]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path, default: Any, kind: type | None = None) -> Any:
    """The JSON document in ``path`` (``default`` when absent). Raises ValueError naming the file when it is not
    JSON, or not of ``kind`` (e.g. dict)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not JSON ({exc}); it is damaged, not a file a drill wrote") from None
    if kind is not None and not isinstance(doc, kind):
        raise ValueError(f"{path} holds a JSON {type(doc).__name__}, not an object; it is not a file a drill wrote")
    return doc


def as_dict(obj: Any) -> dict:
    return asdict(obj)


def read_jsonl_counting(path: str | Path) -> tuple[list[dict], int]:
    """Every JSON object of a JSONL file (an event log, the history, a tick record), and how many lines could not
    be read. Lenient on purpose: a SIGKILLed writer leaves a torn last line, and a restarted one appends after it,
    so a torn line may sit in the middle of the file. A missing or unreadable file is ``([], 0)``."""
    rows, bad = [], 0
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad
