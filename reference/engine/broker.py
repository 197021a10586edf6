"""Broker connections (BRK-1, BRK-2, BRK-3, BRK-5) and broker-side reconciliation (ENG-5).

The engine reaches a broker only through an *mt5-like object*: the MetaTrader5 module's function surface
(``initialize``, ``order_send``, ``last_error``, ``positions_get``, ``orders_get``, ``history_orders_get``,
``history_deals_get``, ``symbol_info_tick``, ``terminal_info``, constants). The object comes from the broker's
``factory`` (``"module:callable"``), so the same engine drives the simulator, ``mt5linux`` or the real module.

Every call runs on the session's worker thread with a deadline (``broker_timeout_s``, BRK-1: 5 s; order_send:
``order_reply_timeout_s``, 1 s, after which the order is ambiguous and reconciled by comment): a terminal that
hangs cannot hang the engine. A call past its deadline abandons that worker and that mt5 object (a fresh one is
made on reconnect) and counts as a connection failure.

:class:`BrokerPool` keeps the primary-first list: a heartbeat (``terminal_info``) every ``broker_heartbeat_s``
(BRK-1: 3 s); on loss, a reconnect attempt every ``broker_reconnect_s`` (BRK-2: 3 s); after
``broker_switch_after`` (5) failures of one broker it moves on to the next; after ``broker_suspend_after`` (10)
failures in a row, or when every broker has failed, it suspends signal intake and alerts (BRK-2, BRK-5), and keeps
cycling through the brokers until one answers. It stays on a backup once switched (no flapping back).

Filling modes: brokers allow FOK only, IOC only, or both (``symbol_info(symbol).filling_mode``, a bit mask:
SYMBOL_FILLING_FOK=1, SYMBOL_FILLING_IOC=2). Every ``order_send`` goes out with a filling mode the symbol allows
(:meth:`BrokerSession.filling_for`: the configured one if allowed, else FOK, IOC, RETURN in that order, as MQL5's
CTrade picks). A request the broker still refuses with TRADE_RETCODE_INVALID_FILL (10030) is a configuration
error: the retcode is permanent (``retcodes``) and the session answers it with an explanation naming the mode in
place of ``last_error`` (what the engine writes into the rejection's reason and alert).
"""
from __future__ import annotations

import concurrent.futures
import importlib
import logging
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .config import BrokerConfig, EngineConfig
from .retcodes import RetcodeTable, constant

log = logging.getLogger("engine.broker")
FILLING_NAMES = ("FOK", "IOC", "RETURN", "BOC")


def filling_name(mt5, value) -> str:
    """``ORDER_FILLING_IOC (1)`` for a filling value, read from the mt5-like object's constants."""
    for name in FILLING_NAMES:
        if constant(mt5, f"ORDER_FILLING_{name}") == value:
            return f"ORDER_FILLING_{name} ({value})"
    return f"filling {value!r}"


def allowed_fillings(mt5, mask: int, exemode: int | None = None) -> list[int]:
    """The ORDER_FILLING_* values a market order may use on a symbol with ``filling_mode`` ``mask``, in CTrade's
    order of preference: FOK, IOC, then RETURN (not in Request/Instant execution, where only FOK/IOC exist)."""
    out = []
    if mask & constant(mt5, "SYMBOL_FILLING_FOK"):
        out.append(constant(mt5, "ORDER_FILLING_FOK"))
    if mask & constant(mt5, "SYMBOL_FILLING_IOC"):
        out.append(constant(mt5, "ORDER_FILLING_IOC"))
    if exemode not in (constant(mt5, "SYMBOL_TRADE_EXECUTION_REQUEST"), constant(mt5, "SYMBOL_TRADE_EXECUTION_INSTANT")):
        out.append(constant(mt5, "ORDER_FILLING_RETURN"))
    return out


def choose_filling(mt5, preferred: int, mask: int, exemode: int | None = None) -> int:
    """``preferred`` if the symbol allows it, else the first allowed mode (FOK, IOC, RETURN); ``preferred`` when
    the symbol allows nothing we know (the broker's answer then says so)."""
    allowed = allowed_fillings(mt5, mask, exemode)
    if preferred in allowed or not allowed:
        return preferred
    return allowed[0]


class BrokerCallFailed(RuntimeError):
    """A broker call could not be made or timed out; the connection is treated as lost."""


def load_factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"broker factory {spec!r} must be 'module:callable'")
    return getattr(importlib.import_module(module_name), attr)


def _field(obj, name: str, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    value = getattr(obj, name, default)
    if value is default and hasattr(obj, "_asdict"):
        return obj._asdict().get(name, default)
    return value


@dataclass(slots=True)
class BrokerTrace:
    """An order of ours found at the broker: where it was seen and what it did. Slotted: an engine keeps one per
    signal of its reconcile lookback (``Engine.known``), ~0.3 KB each with the comment (a ``__dict__`` more than
    doubled it)."""

    kind: str              # order | position | history_order | deal
    ticket: int
    comment: str
    order: int = 0
    deal: int = 0
    volume: float = 0.0
    price: float = 0.0
    symbol: str = ""
    time_s: int = 0        # the broker's time of it (a history order's time_setup, a deal's time; 0: live ones)


# A history read of a window the broker counts above HISTORY_PIECE_ROWS rows is split (``_history_pieces``); a
# window from less than HISTORY_SPLIT_OVER_S seconds ago is read without a count (an incremental scan's minute of
# history at 10 signals/s is ~1,200 rows); at most HISTORY_MAX_PIECES reads of one kind in one scan (7 days at 2,000 rows a
# piece holds 20 million rows).
HISTORY_PIECE_ROWS = 2000
HISTORY_SPLIT_OVER_S = 3600
HISTORY_MAX_PIECES = 10_000


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


NOT_SENT = "not_sent"   # last_error code of an order_send the fencing guard stopped before it was written
# last_error code of an order_send whose send lane could not connect to its terminal: the request was never written
# (a refused connect is not an ambiguous send; issue 16's stateful finding: a signal into a primary-broker outage
# waited out the 10 s ambiguity grace before the backup, past BRK-2's bound)
NOT_CONNECTED = "not_connected"
# last_error code of an order_send made while the terminal link was down: (-10004, 'No IPC connection') is what a
# call without a connection returns (docs MT5_API.md), and the simulator client returns it only when no byte of the
# request was written (a link lost after the write is -10002/-10005: ambiguous); so, like NOT_CONNECTED, never sent
NO_IPC_CODE = -10004


class BrokerSession:
    """One broker: its mt5-like object, its worker thread, its connection state."""

    def __init__(self, config: BrokerConfig, engine: EngineConfig):
        self.config = config
        self.name = config.name
        self.engine = engine
        self.mt5 = None
        self.connected = False
        self.table: RetcodeTable | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # symbol -> (filling_mode mask, trade_exemode) from symbol_info; read once per connection
        self._fillings: dict[str, tuple[int, int | None]] = {}
        self.filling_choices: dict[str, tuple[int, int]] = {}  # symbol -> (configured, used) when they differ
        self._lanes: list["BrokerSession"] = []   # extra connections that carry order_send (issue 11)
        self._busy: set[int] = set()               # lanes with an order_send in flight
        self._lane_lock = threading.Lock()
        self._runners: dict[int, concurrent.futures.ThreadPoolExecutor] = {}   # one sending thread per lane

    # --- send lanes ----------------------------------------------------------------------------------------------
    @property
    def single_terminal(self) -> bool:
        """A terminal that is one object per process (the ``metatrader5`` package): no second connection."""
        return str(self.config.params.get("kind", "")) == "metatrader5"

    @property
    def lane_count(self) -> int:
        """How many order_send calls may be in flight at once (``send_lanes``; 1 for a single terminal)."""
        return 1 if self.single_terminal else max(1, int(self.engine.send_lanes))

    def free_lane(self) -> int | None:
        """The index of a lane with no order in flight (claimed until :meth:`release_lane`), or None."""
        with self._lane_lock:
            for i in range(self.lane_count):
                if i not in self._busy:
                    self._busy.add(i)
                    return i
        return None

    def release_lane(self, lane: int) -> None:
        with self._lane_lock:
            self._busy.discard(lane)

    def lanes_busy(self) -> int:
        with self._lane_lock:
            return len(self._busy)

    def submit_order(self, lane: int, request: dict,
                     guard: Callable[[], bool] | None = None) -> concurrent.futures.Future:
        """order_send on ``lane`` in the background: a future of ``(value, last_error)`` that raises
        BrokerCallFailed like :meth:`call`. Lane 0 is this session's own connection; the others are connections
        of their own, made on first use, so a lost reply holds only its lane, never the engine's main thread
        (which keeps this session's own connection for prices, lookups and heartbeats). A single terminal has one
        lane: this session itself. ``guard`` (the engine's fencing check) is asked again by the thread that
        writes the request, after any connect, so a process frozen before that instant sends nothing."""
        session = self if self.single_terminal else self._lane(lane + 1)

        def send():
            if session is not self and not session.connected:
                try:
                    session.connect()
                except BrokerCallFailed as exc:
                    return None, (NOT_CONNECTED, str(exc))
            return session.call("order_send", request, guard=guard)
        return self._lane_runner(lane).submit(send)

    def _lane(self, lane: int) -> "BrokerSession":
        while len(self._lanes) < lane:
            self._lanes.append(BrokerSession(self.config, self.engine))
        return self._lanes[lane - 1]

    def _lane_runner(self, lane: int) -> concurrent.futures.ThreadPoolExecutor:
        if lane not in self._runners:
            self._runners[lane] = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"send-{self.name}-{lane}")
        return self._runners[lane]

    def close_lanes(self) -> None:
        for lane in self._lanes:
            try:
                lane.close()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._lanes = []

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"broker-{self.name}")
        return self._executor

    def _abandon(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self.mt5 = None
        self.connected = False

    def call(self, method: str, *args, guard: Callable[[], bool] | None = None, **kwargs):
        """Call ``mt5.<method>`` with the deadline; returns ``(value, last_error)``; raises BrokerCallFailed.

        ``order_send``: the request goes out with a filling mode its symbol allows (``filling_for``); an answer
        of TRADE_RETCODE_INVALID_FILL comes back with ``(10030, explanation)`` in place of last_error. ``guard``
        is asked in the calling thread immediately before the terminal call (the engine's fencing check), and again
        by a terminal object that offers ``guarded_writes`` (the simulator client) at the last instant before the
        request's bytes are written: False means nothing is sent and ``(None, (NOT_SENT, why))`` comes back."""
        if method == "order_send" and args and isinstance(args[0], dict):
            request = self._with_allowed_filling(args[0])
            value, err = self._call("order_send", request, *args[1:], guard=guard,
                                    deadline_s=self.engine.order_reply_timeout_s, **kwargs)
            if value is not None and _field(value, "retcode") == constant(self.mt5, "TRADE_RETCODE_INVALID_FILL"):
                err = (int(_field(value, "retcode")), self._invalid_fill_reason(request))
            return value, err
        if method == "symbol_info_tick" and args and isinstance(args[0], str):
            # the engine prices a market order just before sending it: read the symbol's filling modes here, so
            # a broker that fails this read fails before the send (never an ambiguous order_send)
            self._symbol_filling(args[0])
        return self._call(method, *args, **kwargs)

    # --- filling modes -----------------------------------------------------------------------------------------
    def _symbol_filling(self, symbol: str) -> tuple[int, int | None] | None:
        if symbol not in self._fillings:
            info, _ = self._call("symbol_info", symbol)
            mask = _field(info, "filling_mode")
            if info is None or not isinstance(mask, int):
                return None
            exemode = _field(info, "trade_exemode")
            self._fillings[symbol] = (int(mask), exemode if isinstance(exemode, int) else None)
        return self._fillings[symbol]

    def filling_for(self, symbol: str, preferred: int) -> int:
        """The ORDER_FILLING_* value to send for ``symbol``: ``preferred`` if the symbol allows it, else the first
        it allows of FOK, IOC, RETURN; ``preferred`` when symbol_info does not answer."""
        known = self._symbol_filling(symbol)
        if known is None:
            return preferred
        chosen = choose_filling(self.mt5, preferred, *known)
        if chosen != preferred and self.filling_choices.get(symbol) != (preferred, chosen):
            self.filling_choices[symbol] = (preferred, chosen)
            log.warning("broker %s: %s does not allow %s (filling_mode=%d); sending %s instead", self.name, symbol,
                        filling_name(self.mt5, preferred), known[0], filling_name(self.mt5, chosen))
        return chosen

    def _with_allowed_filling(self, request: dict) -> dict:
        actions = (constant(self.mt5, "TRADE_ACTION_DEAL"), constant(self.mt5, "TRADE_ACTION_PENDING"))
        symbol = request.get("symbol")
        if self.mt5 is None or request.get("action") not in actions or not isinstance(symbol, str) or not symbol:
            return request
        preferred = request.get("type_filling", constant(self.mt5, "ORDER_FILLING_FOK"))
        chosen = self.filling_for(symbol, preferred)
        return request if chosen == preferred else dict(request, type_filling=chosen)

    def _invalid_fill_reason(self, request: dict) -> str:
        symbol = request.get("symbol")
        sent = filling_name(self.mt5, request.get("type_filling", 0))
        known = self._fillings.pop(symbol, None)  # read symbol_info afresh next time: the broker may have changed
        allows = ""
        if known is not None:
            allowed = allowed_fillings(self.mt5, *known)
            allows = (f" (symbol_info.filling_mode={known[0]}: it allows "
                      f"{', '.join(filling_name(self.mt5, v) for v in allowed) or 'none'})")
        return (f"configuration error: the broker refused filling mode {sent} for {symbol}{allows}; set the "
                f"engine's 'filling' (fok, ioc or return) to a mode the broker allows for this symbol")

    def _call(self, method: str, *args, guard: Callable[[], bool] | None = None, deadline_s: float | None = None,
              **kwargs):
        deadline_s = self.engine.broker_timeout_s if deadline_s is None else deadline_s
        if self.mt5 is None:
            raise BrokerCallFailed(f"broker {self.name} has no terminal object (not connected)")
        mt5 = self.mt5

        def invoke():
            if guard is not None and not guard():   # before the terminal call
                return None, (NOT_SENT, "the lease was no longer valid at the send: nothing was sent")
            hook = getattr(mt5, "guarded_writes", None) if guard is not None else None
            if hook is not None:   # a terminal that asks the guard again at the write itself (the simulator's)
                value = None
                with hook(guard) as stop:
                    value = getattr(mt5, method)(*args, **kwargs)
                if stop.refused:
                    return None, (NOT_SENT, "the lease was no longer valid at the write: nothing was sent")
            else:
                value = getattr(mt5, method)(*args, **kwargs)
            err = None
            if value is None or value is False:
                try:
                    err = mt5.last_error()
                except Exception:  # noqa: BLE001
                    err = None
            return value, err

        future = self._worker().submit(invoke)
        try:
            return future.result(timeout=deadline_s)
        except concurrent.futures.TimeoutError:
            self._abandon()
            raise BrokerCallFailed(f"broker {self.name}: {method} took longer than {deadline_s:g}s") from None
        except Exception as exc:  # noqa: BLE001 - a transport error of an RPC-backed mt5 object
            self.connected = False
            raise BrokerCallFailed(f"broker {self.name}: {method} raised {exc!r}") from None

    def connect(self) -> None:
        """Create the mt5 object (if needed) and ``initialize`` it; raises BrokerCallFailed on failure."""
        if self.mt5 is None:
            def make():
                return load_factory(self.config.factory)(**self.config.params)
            future = self._worker().submit(make)
            try:
                self.mt5 = future.result(timeout=self.engine.broker_timeout_s)
            except concurrent.futures.TimeoutError:
                self._abandon()
                raise BrokerCallFailed(f"broker {self.name}: creating the terminal object timed out") from None
            except Exception as exc:  # noqa: BLE001
                self._abandon()
                raise BrokerCallFailed(f"broker {self.name}: cannot create the terminal object: {exc}") from None
        kwargs = {"timeout": int(self.engine.broker_timeout_s * 1000)}
        for key in ("login", "password", "server"):
            value = getattr(self.config, key)
            if value is not None:
                kwargs[key] = value
        self._fillings.clear()
        ok, err = self.call("initialize", **kwargs)
        if not ok:
            self.connected = False
            raise BrokerCallFailed(f"broker {self.name}: initialize failed: {err}")
        self.table = RetcodeTable(self.mt5)
        self.connected = True
        self.heartbeat()

    def heartbeat(self) -> None:
        """BRK-1: the terminal answers and says it is connected to its trade server."""
        info, err = self.call("terminal_info")
        if info is None or _field(info, "connected", True) is False:
            self.connected = False
            raise BrokerCallFailed(f"broker {self.name}: terminal_info -> {info!r} {err}")
        self.connected = True

    # --- reconciliation ----------------------------------------------------------------------------------------
    def _history_window(self, since_s: int | None = None) -> tuple[datetime, datetime]:
        now = datetime.now(timezone.utc)
        start = now - timedelta(seconds=self.engine.reconcile_lookback_s)
        if since_s is not None:   # in the broker's own time (a time it reported): no clock of ours involved
            start = max(start, datetime.fromtimestamp(since_s, timezone.utc))
        return start, now + timedelta(days=2)

    def _history_pieces(self, method: str, start: datetime, end: datetime):
        """The rows of ``method`` (``history_orders_get`` | ``history_deals_get``) over ``[start, end]``, as lists of
        at most ~HISTORY_PIECE_ROWS rows each: a window the broker counts (``history_*_total``) above that is split
        in two halves (by whole seconds, both ends inclusive as MT5's are) until it is not (or is one second).
        Why: the whole lookback read at once is every order and deal of the account decoded at the same time; an
        engine that read 9,000 signals' history (18,000 orders, 18,000 deals) that way peaked 38 MB above its
        start and kept 23 MB of it after the rows were gone (allocator fragmentation), so every restart of a busy
        account started higher (the 30-minute soak of 2026-12-02: +1.7 MB a minute of start RSS at 10
        signals/s). In pieces of 2,000 the same read keeps 6.2 MB (the one trace a signal it keeps), peaks there,
        and takes 0.48 s against 0.44 s. A window from less than HISTORY_SPLIT_OVER_S ago (an incremental scan's
        seconds of history) is read whole, with no count first. Raises BrokerCallFailed when a count or a read
        fails."""
        total_method = method.replace("_get", "_total")
        lo, hi = int(start.timestamp()), int(end.timestamp())
        counted = hasattr(self.mt5, total_method)
        # (from, to, count it first, its count when known): the newer half of a split window is counted as the
        # window's count less the older half's (a sizing figure only: rows that arrive meanwhile make a piece larger)
        # a window reaching back more than HISTORY_SPLIT_OVER_S from now is counted first (it ends two days ahead
        # of our clock, for brokers whose server time runs ahead of UTC: its length says nothing of its rows)
        long_ago = time.time() - lo > HISTORY_SPLIT_OVER_S
        windows: list[tuple[int, int, bool, int | None]] = [(lo, hi, counted and long_ago, None)]
        for _ in range(HISTORY_MAX_PIECES):
            if not windows:
                return
            lo, hi, count, total = windows.pop()
            if count and hi > lo:
                if total is None:
                    total, err = self.call(total_method, _utc(lo), _utc(hi))
                    if total is None:
                        raise BrokerCallFailed(f"broker {self.name}: {total_method} failed: {err}")
                    total = int(total)
                if total > HISTORY_PIECE_ROWS:
                    mid = (lo + hi) // 2
                    older, err = self.call(total_method, _utc(lo), _utc(mid))
                    if older is None:
                        raise BrokerCallFailed(f"broker {self.name}: {total_method} failed: {err}")
                    older = int(older)
                    windows += [(mid + 1, hi, True, max(0, total - older)), (lo, mid, True, older)]   # older first
                    continue
                if total == 0:
                    continue
            rows, err = self.call(method, _utc(lo), _utc(hi))
            if rows is None:
                raise BrokerCallFailed(f"broker {self.name}: {method} failed: {err}")
            yield rows
        raise BrokerCallFailed(f"broker {self.name}: {method}: the history did not fit {HISTORY_MAX_PIECES} pieces "
                               f"of {HISTORY_PIECE_ROWS} rows")

    def traces(self, magic: int, comment_prefix: str | None = None, since_s: int | None = None) -> list[BrokerTrace]:
        """Every order, position, history order and deal with ``magic`` whose comment starts with the prefix; with
        ``since_s`` (seconds, in the broker's time: a ``time_s`` it reported before) the history orders and deals
        from then on only (the live orders and positions always all of them). A list of :meth:`iter_traces`.

        Raises BrokerCallFailed if any of the queries fails: a partial answer is not evidence of absence.
        """
        return list(self.iter_traces(magic, comment_prefix, since_s))

    def iter_traces(self, magic: int, comment_prefix: str | None = None, since_s: int | None = None):
        """:meth:`traces` one at a time, the history read in pieces (``_history_pieces``), so a caller that keeps
        one trace per signal (the engine's scan) never holds the account's whole history. Raises BrokerCallFailed
        (possibly after some traces were yielded: what was yielded was seen at the broker; absence is proven only
        by a complete iteration)."""
        date_from, date_to = self._history_window(since_s)

        def pieces(kind, method):
            if kind in ("order", "position"):
                rows, err = self.call(method)
                if rows is None:
                    raise BrokerCallFailed(f"broker {self.name}: {method} failed: {err}")
                yield rows
                return
            yield from self._history_pieces(method, date_from, date_to)

        for kind, method in (("order", "orders_get"), ("position", "positions_get"),
                             ("history_order", "history_orders_get"), ("deal", "history_deals_get")):
            for rows in pieces(kind, method):
                for row in rows:
                    if int(_field(row, "magic", 0) or 0) != int(magic):
                        continue
                    comment = str(_field(row, "comment", "") or "")
                    if comment_prefix is not None and not comment.startswith(comment_prefix):
                        continue
                    ticket = int(_field(row, "ticket", 0) or 0)
                    trace = BrokerTrace(kind=kind, ticket=ticket, comment=comment,
                                        symbol=sys.intern(str(_field(row, "symbol", ""))))
                    if kind == "deal":
                        trace.order, trace.deal = int(_field(row, "order", 0) or 0), ticket
                        trace.volume = float(_field(row, "volume", 0) or 0)
                        trace.price = float(_field(row, "price", 0) or 0)
                        trace.time_s = int(_field(row, "time", 0) or 0)
                    elif kind == "position":
                        trace.order = int(_field(row, "identifier", ticket) or ticket)
                        trace.volume = float(_field(row, "volume", 0) or 0)
                        trace.price = float(_field(row, "price_open", 0) or 0)
                    else:
                        trace.order = ticket
                        trace.volume = float(_field(row, "volume_initial", 0) or 0)
                        trace.price = float(_field(row, "price_open", 0) or 0)
                        if kind == "history_order":
                            trace.time_s = int(_field(row, "time_setup", 0) or 0)
                    yield trace
                del rows

    def close(self) -> None:
        if self.mt5 is not None and self._executor is not None:
            try:
                self.call("shutdown")
            except BrokerCallFailed:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.close_lanes()
        for runner in self._runners.values():
            runner.shutdown(wait=False, cancel_futures=True)


class BrokerPool:
    """Primary-first broker list with heartbeat, reconnect, switch-over and suspension (BRK-1/2/5)."""

    def __init__(self, engine: EngineConfig, emit: Callable[..., None], alert: Callable[..., None]):
        self.config = engine
        self.emit = emit
        self.alert = alert
        self.sessions = [BrokerSession(b, engine) for b in engine.broker_configs()]
        if not self.sessions:
            raise ValueError("no broker configured: add at least one entry to 'brokers'")
        self.index = 0
        self.failures_current = 0
        self.failures_total = 0
        self.suspended = False
        self._next_attempt = 0.0
        self._next_heartbeat = 0.0
        self.recovered = threading.Event()   # set when a connection is (re)established; the engine runs BRK-3
        self.connections = 0
        self._failed_since_up: set[str] = set()   # brokers that failed a connect since the last connection (BRK-5)

    # the engine's main loop calls tick() at least every read_block_ms (200 ms) plus a batch, and every 0.1 s while
    # no broker is usable: a heartbeat or a reconnect falls due this much (at most a tenth of it) early, so the interval
    # stays within BRK-1's 3 s and BRK-2's 3 s (issue 19 measures them from broker_heartbeat / broker_connect_failed)
    TICK_SLACK_S = 0.25

    def _early(self, interval: float) -> float:
        return interval - min(self.TICK_SLACK_S, 0.1 * interval)

    @property
    def active(self) -> BrokerSession:
        return self.sessions[self.index]

    def session(self, name: str) -> BrokerSession | None:
        return next((s for s in self.sessions if s.name == name), None)

    @property
    def usable(self) -> bool:
        return self.active.connected and not self.suspended

    def connection_lost(self, why: str) -> None:
        if self.active.connected:
            self.emit("broker_lost", broker=self.active.name, reason=why)
        self.active.connected = False
        self._next_attempt = min(self._next_attempt, time.monotonic())

    def tick(self) -> None:
        """Heartbeat when due, or one reconnect attempt when due. Cheap when nothing is due."""
        now = time.monotonic()
        session = self.active
        if session.connected:
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self._early(self.config.broker_heartbeat_s)
                try:
                    session.heartbeat()
                    # BRK-1's cadence, one line per heartbeat (issue 19 times them: start = mono - took_s)
                    self.emit("broker_heartbeat", broker=session.name, ok=True,
                              took_s=round(time.monotonic() - now, 4))
                except BrokerCallFailed as exc:
                    # BRK-1's connection timeout: the heartbeat's start to the connection declared lost
                    self.emit("broker_heartbeat", broker=session.name, ok=False,
                              took_s=round(time.monotonic() - now, 4), error=str(exc)[:200])
                    self.connection_lost(str(exc))
                    self._next_attempt = now   # first reconnect at once, then every broker_reconnect_s
            return
        if now < self._next_attempt:
            return
        self._next_attempt = now + self._early(self.config.broker_reconnect_s)
        try:
            session.connect()
        except BrokerCallFailed as exc:
            self.failures_current += 1
            self.failures_total += 1
            self.emit("broker_connect_failed", broker=session.name, attempt=self.failures_current,
                      total=self.failures_total, error=str(exc), took_s=round(time.monotonic() - now, 4))
            self._failed_since_up.add(session.name)
            every_broker = len(self._failed_since_up) == len(self.sessions)
            if (self.failures_total >= self.config.broker_suspend_after or every_broker) and not self.suspended:
                # BRK-2: after 10 failures; BRK-5: every broker down (each failed since the last connection)
                self.suspended = True
                why = (f"every broker ({', '.join(s.name for s in self.sessions)}) failed to answer"
                       if every_broker else f"no broker answered after {self.failures_total} attempts")
                self.emit("broker_suspended", failures=self.failures_total, every_broker=every_broker)
                self.alert("broker_suspended", f"{why}; trade signals are suspended until a broker is back "
                           f"(BRK-2, BRK-5)", broker=session.name)
            if self.failures_current >= self.config.broker_switch_after and len(self.sessions) > 1:
                old = session.name
                self.index = (self.index + 1) % len(self.sessions)
                self.failures_current = 0
                self.emit("broker_switch", old=old, new=self.active.name, failures=self.failures_total)
                self.alert("broker_switch", f"broker {old} failed {self.config.broker_switch_after} reconnects; "
                           f"switching to {self.active.name} (BRK-2)", old=old, new=self.active.name)
                self._next_attempt = now  # try the next broker at once
            return
        self.connections += 1
        was_suspended = self.suspended
        self.failures_current = self.failures_total = 0
        self._failed_since_up.clear()
        self.suspended = False
        self._next_heartbeat = now + self._early(self.config.broker_heartbeat_s)
        self.emit("broker_connected", broker=session.name, resumed=was_suspended)
        if was_suspended:
            self.alert("broker_recovered", f"broker {session.name} is back; trade signals resume", broker=session.name)
        self.recovered.set()

    def ensure_session(self, name: str) -> BrokerSession | None:
        """A connected session for ``name`` (connecting a non-active broker for reconciliation); None if down."""
        session = self.session(name)
        if session is None:
            return None
        if session is self.active:
            return session if session.connected else None
        if not session.connected:
            try:
                session.connect()
            except BrokerCallFailed:
                return None
        return session

    def close(self) -> None:
        for s in self.sessions:
            s.close()
