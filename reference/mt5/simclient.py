"""The simulator client: an mt5-like object whose surface is exactly the MetaTrader5 package's.

Function names, signatures, named tuples, numpy dtypes and constants are those of the real module; errors are
``None`` (``False`` for bool calls) plus ``last_error()``, never exceptions. Like the real package, argument parsing
happens here, on the client side ('Unnamed arguments not allowed', 'Invalid "volume" argument'); trade rules happen
at the server. Transport failures look like the terminal's IPC failures:
- not initialized, or the simulator unreachable: ``None`` with ``(-10004, 'No IPC connection')``: the request was
  not written. A connection the simulator closed since the last call (its process died or restarted) is noticed
  before the write (the socket reads end-of-file) and made again; if that fails, -10004;
- the connection lost after the request was written (no reply, the simulator gone): ``None`` with
  ``(-10002, 'IPC receive failed')``: the call may have been carried out (an order may exist);
- no reply within ``call_timeout`` seconds: ``None`` with ``(-10005, 'IPC timeout')``; the connection is dropped
  (a late reply must never be taken for the next call's) and the next call reconnects and re-authorizes.
One lock serialises calls, as the real terminal's IPC does.

``SimulatorAdmin`` is the harness's side: behaviour switches and the ledger. It raises ``AdminError`` on failure:
it is test tooling, not the MT5 surface.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import os
import secrets
import select
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np

from reference.mt5 import constants as _c
from reference.mt5 import types as _t
from reference.mt5.simulator import protocol

_FAILED = object()
DEFAULT_CALL_TIMEOUT = 5.0  # BRK-1: broker connection timeout 5 s


def _epoch(value, name: str) -> int | None:
    """MT5 takes datetime (naive = UTC, as the terminal reads it) or epoch seconds."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp())
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return int(value)
    return None


class WriteRefused(Exception):
    """The write guard of :meth:`SimulatorTerminal.guarded_writes` said no at the last instant before a request's
    bytes were written: nothing was sent."""


class _WriteStop:
    """What :meth:`SimulatorTerminal.guarded_writes` yields: ``refused`` is True once the guard stopped a write."""

    refused = False


class _Transport:
    """One TCP connection with request/response framing and a per-call deadline."""

    def __init__(self, host: str, port: int, source_address: str | None = None):
        self.host = host
        self.port = port
        self.source = (source_address, 0) if source_address else None
        self.sock: socket.socket | None = None
        self.written = False
        self._ids = itertools.count(1)

    def connect(self, timeout: float) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=timeout, source_address=self.source)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def dropped(self) -> bool:
        """Whether the peer closed this connection (it reads end-of-file or an error now, without waiting): a
        request written on it would be lost, so it is made again before the write."""
        if self.sock is None:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("call deadline")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("simulator closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, method: str, args, kwargs, deadline: float, token: str | None = None, guard=None):
        """One request and its reply. ``self.written`` says afterwards whether any byte of the request left (an
        error before that point means the request was never sent). ``guard``: asked after the frame is packed and
        the socket ready, immediately before the write; False raises :class:`WriteRefused` (nothing written)."""
        msgid = next(self._ids)
        self.written = False
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        message = [msgid, method, list(args), kwargs]
        if token is not None:
            message.append(token)
        frame = protocol.pack(message)
        if guard is not None and not guard():
            raise WriteRefused(f"{method}: the write guard refused the request before it was written")
        self.written = True
        self.sock.sendall(frame)
        while True:
            header = self._recv_exactly(protocol.HEADER.size, deadline)
            body = self._recv_exactly(protocol.frame_length(header), deadline)
            rid, value, error = protocol.unpack(body)
            if rid == msgid:
                return value, tuple(error)


class _InProcessTransport:
    """The same calls as :class:`_Transport`, answered by a simulator server object in this process (the frames
    still go through the wire encoding both ways): unit tests and the ``MetaTrader5`` shim without a socket."""

    def __init__(self, server):
        self.server = server
        self.sock = None
        self.written = False
        self._session: dict = {}

    def dropped(self) -> bool:
        return False

    def connect(self, timeout: float) -> None:
        self.sock = True
        self._session = {"login": None, "admin": False}

    def close(self) -> None:
        self.sock = None

    def call(self, method: str, args, kwargs, deadline: float, token: str | None = None, guard=None):
        if guard is not None and not guard():
            raise WriteRefused(f"{method}: the write guard refused the request before it was written")
        _msgid, method, args, kwargs, token = protocol.request(protocol.pack([1, method, list(args), kwargs, token])[
            protocol.HEADER.size:])
        value, error, _reply = self.server._dispatch(self._session, method, args, kwargs, token)
        _rid, value, error = protocol.unpack(protocol.pack([1, value, list(error)])[protocol.HEADER.size:])
        return value, tuple(error)


class SimulatorTerminal:
    """An mt5-like object talking to ``tradedrill mt5sim serve`` at (host, port); ``SimulatorTerminal.in_process
    (broker)`` talks to a :class:`~reference.mt5.simulator.broker.Broker` of this process instead."""

    # the named tuple types, as attributes like on the real module
    TradePosition = _t.TradePosition
    TradeOrder = _t.TradeOrder
    TradeDeal = _t.TradeDeal
    TradeRequest = _t.TradeRequest
    OrderSendResult = _t.OrderSendResult
    OrderCheckResult = _t.OrderCheckResult
    Tick = _t.Tick
    AccountInfo = _t.AccountInfo
    TerminalInfo = _t.TerminalInfo
    SymbolInfo = _t.SymbolInfo

    def __init__(self, host: str = "127.0.0.1", port: int = 18812, call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 source_address: str | None = None):
        # source_address: the local address the connection leaves from (a fault can then cut this client alone)
        self.host = host
        self.port = port
        self.call_timeout = call_timeout
        self._transport = _Transport(host, port, source_address)
        self._lock = threading.RLock()
        self._initialized = False
        self._credentials: dict = {}
        self._last_error = _c.ERR_SUCCESS
        self._write_guard = threading.local()

    def guarded_writes(self, guard):
        """A context for one call of this thread whose request is written only if ``guard()`` is still True at the
        last instant before its bytes leave (after the request is parsed and packed and the connection made or
        remade): the engine's fencing check (ENG-5), asked as late as a process can ask it. A refused call returns
        like a failed one and the yielded object's ``refused`` is True. Not part of MetaQuotes' API: the engine
        uses it when its terminal object has it (a real terminal's order_send offers no such hook, so its
        fencing check stays before the call). A refused call ends the ``with`` body at the call (its result is
        never assigned: set it before).

        Why here: issue 16's engine-pause drill (CI, seed 7) froze the active engine after its check and before
        the write (parsing, the lock, the dropped-connection check, packing and a GIL switch lie between them);
        at SIGCONT, 8 s later, the order went out under the lapsed lease while the new holder had already sent
        the same signal: a duplicate. What is left is the window between this check and the kernel's write."""
        import contextlib

        @contextlib.contextmanager
        def scope():
            stop = _WriteStop()
            previous = getattr(self._write_guard, "guard", None)
            self._write_guard.guard = guard
            try:
                yield stop
            except WriteRefused:
                stop.refused = True
                self._last_error = (_c.ERR_NO_IPC[0], "the write guard refused the request: nothing was sent")
            finally:
                self._write_guard.guard = previous
        return scope()

    def __repr__(self) -> str:
        return f"SimulatorTerminal({self.host}:{self.port}, initialized={self._initialized})"

    @classmethod
    def in_process(cls, broker, call_timeout: float = DEFAULT_CALL_TIMEOUT) -> "SimulatorTerminal":
        """A terminal whose calls a simulator server around ``broker`` answers in this process (no socket)."""
        from reference.mt5.simulator.server import SimServer

        terminal = cls("in-process", 0, call_timeout)
        terminal._transport = _InProcessTransport(SimServer(broker, "in-process", 0))
        return terminal

    # -- transport -----------------------------------------------------------------------------------------------
    def _fail(self, error, value=None):
        self._last_error = tuple(error)
        return value

    def _ensure_connected(self, deadline: float) -> None:
        if self._transport.sock is not None and not self._transport.dropped():
            return
        self._transport.close()
        self._transport.connect(max(0.001, deadline - time.monotonic()))
        ok, error = self._transport.call("initialize", [], self._credentials, deadline)
        if not ok:
            self._transport.close()
            raise PermissionError(error)

    def _call(self, method: str, *args, **kwargs):
        """Send one call; return its value (and set last_error), or _FAILED with the IPC error set."""
        with self._lock:
            if not self._initialized:
                self._last_error = _c.ERR_NO_IPC
                return _FAILED
            deadline = time.monotonic() + self.call_timeout
            self._transport.written = False
            try:
                self._ensure_connected(deadline)
                self._transport.written = False   # the initialize of a reconnect is not this call's request
                value, error = self._transport.call(method, args, kwargs, deadline,
                                                    guard=getattr(self._write_guard, "guard", None))
            except PermissionError as exc:
                self._last_error = tuple(exc.args[0]) if exc.args and isinstance(exc.args[0], tuple) else _c.ERR_NO_IPC
                return _FAILED
            except socket.timeout:
                self._transport.close()
                self._last_error = _c.ERR_IPC_TIMEOUT
                return _FAILED
            except (TypeError, OverflowError):  # an argument that cannot be sent (a number beyond 64 bits, ...)
                self._last_error = _c.ERR_INVALID_ARGUMENTS
                return _FAILED
            except (OSError, protocol.ProtocolError, ValueError):
                written = getattr(self._transport, "written", False)
                self._transport.close()
                self._last_error = _c.ERR_IPC_RECEIVE if written else _c.ERR_NO_IPC
                return _FAILED
            self._last_error = error
            return value

    def _value(self, method: str, *args, convert=None, fail=None, **kwargs):
        value = self._call(method, *args, **kwargs)
        if value is _FAILED or value is None:
            return fail
        return convert(value) if convert else value

    # -- session --------------------------------------------------------------------------------------------------
    def initialize(self, path=None, *, login=None, password=None, server=None, timeout=60000, portable=False):
        with self._lock:
            self._credentials = {"login": login, "password": password, "server": server}
            self._transport.close()
            deadline = time.monotonic() + min(self.call_timeout, max(0.001, timeout / 1000.0))
            try:
                self._transport.connect(max(0.001, deadline - time.monotonic()))
                ok, error = self._transport.call("initialize", [], self._credentials, deadline)
            except socket.timeout:
                self._transport.close()
                return self._fail(_c.ERR_IPC_TIMEOUT, False)
            except (OSError, protocol.ProtocolError):
                self._transport.close()
                return self._fail(_c.ERR_IPC_INIT, False)
            if not ok:
                self._transport.close()
                return self._fail(error, False)
            self._initialized = True
            self._last_error = _c.ERR_SUCCESS
            return True

    def login(self, login, *, password=None, server=None, timeout=60000):
        if not isinstance(login, int):
            return self._fail(_c.invalid_argument("login"), False)
        value = self._call("login", login=login, password=password, server=server)
        if value is _FAILED or not value:
            return False
        self._credentials = {"login": login, "password": password, "server": server}
        return True

    def shutdown(self):
        with self._lock:
            self._transport.close()
            self._initialized = False
            self._last_error = _c.ERR_SUCCESS
        return None

    def last_error(self):
        return self._last_error

    def version(self):
        return self._value("version", convert=tuple)

    def terminal_info(self):
        return self._value("terminal_info", convert=lambda v: _t.TerminalInfo(*v))

    def account_info(self):
        return self._value("account_info", convert=lambda v: _t.AccountInfo(*v))

    # -- symbols ------------------------------------------------------------------------------------------------------
    def symbols_total(self):
        return self._value("symbols_total")

    def symbols_get(self, *args, group=None):
        if args:
            return self._fail(_c.ERR_UNNAMED_ARGUMENTS)
        if group is not None and not isinstance(group, str):
            return self._fail(_c.invalid_argument("group"))
        return self._value("symbols_get", group=group, convert=lambda rows: tuple(_t.SymbolInfo(*r) for r in rows))

    def symbol_info(self, symbol):
        if not isinstance(symbol, str):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("symbol_info", symbol, convert=lambda v: _t.SymbolInfo(*v))

    def symbol_info_tick(self, symbol):
        if not isinstance(symbol, str):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("symbol_info_tick", symbol, convert=lambda v: _t.Tick(*v))

    def symbol_select(self, symbol, enable=True):
        if not isinstance(symbol, str):
            return self._fail(_c.ERR_INVALID_ARGUMENTS, False)
        return self._value("symbol_select", symbol, bool(enable), fail=False)

    # -- price history --------------------------------------------------------------------------------------------
    @staticmethod
    def _array(dtype):
        return lambda raw: np.frombuffer(raw, dtype=dtype).copy()

    def copy_ticks_from(self, symbol, date_from, count, flags):
        start = _epoch(date_from, "date_from")
        if not isinstance(symbol, str) or start is None or not isinstance(count, int) or not isinstance(flags, int):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("copy_ticks_from", symbol, start, count, flags, convert=self._array(_t.TICK_DTYPE))

    def copy_ticks_range(self, symbol, date_from, date_to, flags):
        start, end = _epoch(date_from, "date_from"), _epoch(date_to, "date_to")
        if not isinstance(symbol, str) or start is None or end is None or not isinstance(flags, int):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("copy_ticks_range", symbol, start, end, flags, convert=self._array(_t.TICK_DTYPE))

    def copy_rates_from(self, symbol, timeframe, date_from, count):
        start = _epoch(date_from, "date_from")
        if not isinstance(symbol, str) or not isinstance(timeframe, int) or start is None or not isinstance(count, int):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("copy_rates_from", symbol, timeframe, start, count, convert=self._array(_t.RATE_DTYPE))

    def copy_rates_from_pos(self, symbol, timeframe, start_pos, count):
        if not isinstance(symbol, str) or not all(isinstance(v, int) for v in (timeframe, start_pos, count)):
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("copy_rates_from_pos", symbol, timeframe, start_pos, count,
                           convert=self._array(_t.RATE_DTYPE))

    def copy_rates_range(self, symbol, timeframe, date_from, date_to):
        start, end = _epoch(date_from, "date_from"), _epoch(date_to, "date_to")
        if not isinstance(symbol, str) or not isinstance(timeframe, int) or start is None or end is None:
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("copy_rates_range", symbol, timeframe, start, end, convert=self._array(_t.RATE_DTYPE))

    # -- orders and positions -------------------------------------------------------------------------------------
    def _filters(self, args, symbol, group, ticket):
        if args:
            return self._fail(_c.ERR_UNNAMED_ARGUMENTS, _FAILED)
        for name, value, kind in (("symbol", symbol, str), ("group", group, str), ("ticket", ticket, int)):
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                return self._fail(_c.invalid_argument(name), _FAILED)
        return {"symbol": symbol, "group": group, "ticket": ticket}

    def orders_total(self):
        return self._value("orders_total")

    def orders_get(self, *args, symbol=None, group=None, ticket=None):
        filters = self._filters(args, symbol, group, ticket)
        if filters is _FAILED:
            return None
        return self._value("orders_get", **filters, convert=lambda rows: tuple(_t.TradeOrder(*r) for r in rows))

    def positions_total(self):
        return self._value("positions_total")

    def positions_get(self, *args, symbol=None, group=None, ticket=None):
        filters = self._filters(args, symbol, group, ticket)
        if filters is _FAILED:
            return None
        return self._value("positions_get", **filters,
                           convert=lambda rows: tuple(_t.TradePosition(*r) for r in rows))

    def _history_args(self, args, group, ticket, position):
        """The three call forms: (date_from, date_to[, group=]) or (ticket=) or (position=)."""
        for name, value in (("ticket", ticket), ("position", position)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return self._fail(_c.invalid_argument(name), _FAILED)
        if ticket is not None and not args:
            return [], {"ticket": ticket}
        if position is not None and not args:
            return [], {"position": position}
        if len(args) != 2 or ticket is not None or position is not None:
            return self._fail(_c.ERR_INVALID_ARGUMENTS, _FAILED)
        start, end = _epoch(args[0], "date_from"), _epoch(args[1], "date_to")
        if start is None or end is None:
            return self._fail(_c.ERR_INVALID_ARGUMENTS, _FAILED)
        if group is not None and not isinstance(group, str):
            return self._fail(_c.invalid_argument("group"), _FAILED)
        return [start, end], ({"group": group} if group is not None else {})

    def history_orders_total(self, date_from, date_to):
        start, end = _epoch(date_from, "date_from"), _epoch(date_to, "date_to")
        if start is None or end is None:
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("history_orders_total", start, end)

    def history_orders_get(self, *args, group=None, ticket=None, position=None):
        parsed = self._history_args(args, group, ticket, position)
        if parsed is _FAILED:
            return None
        return self._value("history_orders_get", *parsed[0], **parsed[1],
                           convert=lambda rows: tuple(_t.TradeOrder(*r) for r in rows))

    def history_deals_total(self, date_from, date_to):
        start, end = _epoch(date_from, "date_from"), _epoch(date_to, "date_to")
        if start is None or end is None:
            return self._fail(_c.ERR_INVALID_ARGUMENTS)
        return self._value("history_deals_total", start, end)

    def history_deals_get(self, *args, group=None, ticket=None, position=None):
        parsed = self._history_args(args, group, ticket, position)
        if parsed is _FAILED:
            return None
        return self._value("history_deals_get", *parsed[0], **parsed[1],
                           convert=lambda rows: tuple(_t.TradeDeal(*r) for r in rows))

    # -- trading ------------------------------------------------------------------------------------------------------
    def _request(self, request):
        """Parse a request dict like the terminal does; on a bad field set last_error and return _FAILED."""
        parsed, error = _t.parse_request(request)
        if error is not None:
            return self._fail(error, _FAILED)
        return parsed

    @staticmethod
    def _send_result(v):
        return _t.OrderSendResult(*v[:10], _t.TradeRequest(*v[10]))

    @staticmethod
    def _check_result(v):
        return _t.OrderCheckResult(*v[:8], _t.TradeRequest(*v[8]))

    def order_calc_margin(self, action, symbol, volume, price):
        """The margin of the order in the account currency (MetaQuotes' ``order_calc_margin``), or None."""
        return self._value("order_calc_margin", action, symbol, volume, price)

    def order_calc_profit(self, action, symbol, volume, price_open, price_close):
        """The profit of the trade in the account currency (MetaQuotes' ``order_calc_profit``), or None."""
        return self._value("order_calc_profit", action, symbol, volume, price_open, price_close)

    def order_check(self, request):
        parsed = self._request(request)
        if parsed is _FAILED:
            return None
        return self._value("order_check", parsed, convert=self._check_result)

    def order_send(self, request):
        parsed = self._request(request)
        if parsed is _FAILED:
            return None
        return self._value("order_send", parsed, convert=self._send_result)


for _name, _value in _c.public_constants().items():
    setattr(SimulatorTerminal, _name, _value)


class AdminError(RuntimeError):
    """The simulator refused or did not answer an admin command; the message says which and why."""


class AdminTokenError(ValueError):
    """The admin token file is missing, empty, or readable by other users; the message says which and what to do."""


def read_admin_token(path: Path | str, *, private: bool = True) -> str:
    """The admin token in ``path`` (one line). With ``private`` (the server's check), refuse a file that group or
    others may read or write: a token everybody can read protects nothing."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except FileNotFoundError:
        raise AdminTokenError(f"admin token file {path} does not exist; create it with a random token "
                              f"(mode 0600)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"cannot read the admin token file {path}: {exc}") from None
    if private and mode & 0o077:
        raise AdminTokenError(f"admin token file {path} is accessible by group or others "
                              f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    if not token or len(token) < 16 or any(ch.isspace() for ch in token):
        raise AdminTokenError(f"admin token file {path} must hold one token of at least 16 characters, "
                              f"without spaces")
    return token


def write_admin_token(path: Path | str) -> str:
    """A fresh random token written to ``path`` with mode 0600 (atomically); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


class SimulatorAdmin:
    """The harness's handle on a running simulator: liveness, behaviour switches, and the ground-truth ledger.

    Every command but ``ping`` needs ``token``, the content of the simulator's ``--admin-token-file``
    (``read_admin_token(path)``); without it (or with a wrong one) they raise AdminError saying so.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 18812, timeout: float = 5.0, *,
                 token: str | None = None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.token = token
        self._transport = _Transport(host, port)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimulatorAdmin({self.host}:{self.port}, token={'set' if self.token else 'none'})"

    def __enter__(self) -> "SimulatorAdmin":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def _call(self, command: str, *args, **kwargs):
        with self._lock:
            deadline = time.monotonic() + self.timeout
            try:
                protocol.pack([args, kwargs])
            except (TypeError, ValueError, OverflowError) as exc:
                raise AdminError(f"cannot send {command}: its arguments are not plain data (msgpack: {exc}); "
                                 f"use numbers within 64 bits, strings, booleans, lists and tables") from None
            try:
                if self._transport.sock is None:
                    self._transport.connect(self.timeout)
                value, error = self._transport.call(f"admin.{command}", args, kwargs, deadline, self.token)
            except (OSError, protocol.ProtocolError) as exc:
                self._transport.close()
                raise AdminError(f"simulator at {self.host}:{self.port} did not answer {command}: {exc!r}") from exc
            if error[0] != _c.RES_S_OK:
                raise AdminError(f"simulator refused {command}: {error[1]}")
            return value

    def ping(self) -> dict:
        """Liveness (no token needed): ``{"server", "pid", "admin": False}``; with the token also ``seed``,
        ``started``, ``journal_records``, ``connections``, ``open_connections``, ``refused_connections``."""
        return self._call("ping")

    def set_behaviour(self, **changes) -> dict:
        """Switch behaviour at run time (see ``simulator.config.Behaviour``); returns the whole new behaviour.
        A wrong key, type or range raises AdminError naming it, and the behaviour stays as it was."""
        return self._call("set_behaviour", **changes)

    def behaviour(self) -> dict:
        return self._call("behaviour")

    def ledger(self, login: int | None = None, since_ticket: int = 0) -> list[dict]:
        """Every executed deal (ticket, order, position_id, time_msc, type, entry, magic, comment, volume, price,
        profit, symbol, login), oldest first. Balance deals (type 2) are included."""
        return self._call("ledger", login=login, since_ticket=since_ticket)

    def orders(self, login: int | None = None) -> list[dict]:
        """Every order the server holds (placed, filled, cancelled) with its login."""
        return self._call("orders", login=login)

    def accounts(self) -> list[dict]:
        """Every account (``has_password``, never the password) with its number of positions."""
        return self._call("accounts")

    def config(self) -> dict:
        """The simulator's configuration (accounts say ``has_password``, never the password)."""
        return self._call("config")


def is_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """Readiness probe: a successful admin ping over the protocol (no token needed)."""
    try:
        with SimulatorAdmin(host, port, timeout=timeout) as admin:
            return bool(admin.ping())
    except AdminError:
        return False
