"""The simulator's network face: an asyncio TCP server speaking ``protocol`` frames to terminal clients and admins.

One connection is one terminal session: ``initialize`` binds it to an account, and every later call acts as that
account. Calls are handled one at a time on the event loop, so the broker needs no locks and the journal's fsync
orders every acknowledged change before its reply. ``admin.*`` methods on the same port let the harness switch the
broker's behaviour and read its ledger (ground truth for duplicate checks) without a second listener to proxy.

Admin calls need the server's admin token (``admin_token``; ``mt5sim serve --admin-token-file``), sent as the
request's fifth element; only ``admin.ping`` answers without it, and then only liveness (no seed, no counters).
Without a configured token every other admin call is refused. No admin call returns an account password.

Bounded memory: at most ``max_connections`` connections (more are closed at once); a request frame may be at most
``protocol.MAX_REQUEST_FRAME`` bytes (``MAX_ADMIN_FRAME`` once the connection made an authenticated admin call);
once a frame's first byte has arrived the whole frame must arrive within ``frame_timeout`` seconds, or the
connection is closed. An idle connection (between frames) has no deadline: a terminal session may sit quiet.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import time
import traceback

import numpy as np

from reference.mt5 import constants as c
from reference.mt5.simulator import protocol
from reference.mt5.simulator.broker import Broker

log = logging.getLogger("mt5sim")

# terminal methods and whether they need an initialized session
TERMINAL_METHODS = {
    "version", "terminal_info", "account_info", "symbols_total", "symbols_get", "symbol_info", "symbol_info_tick",
    "symbol_select", "copy_ticks_from", "copy_ticks_range", "copy_rates_from", "copy_rates_from_pos",
    "copy_rates_range", "orders_total", "orders_get", "positions_total", "positions_get", "history_orders_total",
    "history_orders_get", "history_deals_total", "history_deals_get", "order_check", "order_send",
    "order_calc_margin", "order_calc_profit",
}
TRADE_METHODS = {"order_send", "order_check"}
ADMIN_COMMANDS = {"ping", "set_behaviour", "behaviour", "ledger", "orders", "accounts", "config"}
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_FRAME_TIMEOUT = 10.0  # seconds from a frame's first byte to its last

ERR_ADMIN_DISABLED = (c.RES_E_AUTH_FAILED, "admin calls are disabled: this simulator was started without "
                                            "--admin-token-file; restart it with one")
ERR_ADMIN_TOKEN = (c.RES_E_AUTH_FAILED, "admin token missing or wrong: pass the token of the simulator's "
                                         "--admin-token-file (SimulatorAdmin(host, port, token=...))")


class SimServer:
    def __init__(self, broker: Broker, host: str, port: int, *, admin_token: str | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, frame_timeout: float = DEFAULT_FRAME_TIMEOUT):
        self.broker = broker
        self.host = host
        self.port = port
        self.started = time.time()
        self.connections = 0  # accepted since the start
        self.open_connections = 0
        self.refused_connections = 0
        self.admin_token = admin_token.encode() if admin_token else None
        self.max_connections = max_connections
        self.frame_timeout = frame_timeout
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port, backlog=256)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"mt5sim serving on {self.host}:{self.port} server={self.broker.config.server} "
              f"state={self.broker.journal.directory} seed={self.broker.seed} pid={os.getpid()}", flush=True)
        await stop.wait()
        self._server.close()
        await self._server.wait_closed()
        self.broker.close()
        print("mt5sim stopped", flush=True)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            self.refused_connections += 1
            if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
                log.warning("refusing a connection: %d open (the limit); %d refused so far",
                            self.open_connections, self.refused_connections)
            writer.transport.abort()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self.open_connections += 1
        session: dict = {"login": None, "admin": False}
        loop = asyncio.get_running_loop()
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            writer.transport.abort()

        try:
            while True:
                first = await reader.readexactly(1)  # an idle session may wait as long as it likes
                timer = loop.call_later(self.frame_timeout, expire)
                try:
                    header = first + await reader.readexactly(protocol.HEADER.size - 1)
                    limit = protocol.MAX_ADMIN_FRAME if session["admin"] else protocol.MAX_REQUEST_FRAME
                    body = await reader.readexactly(protocol.frame_length(header, limit))
                finally:
                    timer.cancel()
                msgid, method, args, kwargs, token = protocol.request(body)
                await self._delay(method)
                value, error, reply = self._dispatch(session, method, args, kwargs, token)
                if not reply:
                    log.warning("dropping the reply to %s #%s (lose_reply behaviour)", method, msgid)
                    continue
                writer.write(protocol.pack([msgid, value, list(error)]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            if expired:
                log.warning("closed a connection whose frame did not arrive within %gs of its first byte",
                            self.frame_timeout)
        except Exception as exc:  # noqa: BLE001 - a peer that does not speak the protocol loses its connection only
            log.warning("closing a connection that sent a bad frame: %s", exc)
        finally:
            self.open_connections -= 1
            writer.close()

    async def _delay(self, method: str) -> None:
        if method.startswith("admin."):
            return  # latency is the broker's behaviour towards terminals; the admin call that undoes it is prompt
        b = self.broker.behaviour
        delay = b.latency_ms + (b.order_latency_ms if method in TRADE_METHODS else 0.0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    def _admin_allowed(self, token: str | None) -> bool:
        return (self.admin_token is not None and isinstance(token, str)
                and hmac.compare_digest(token.encode(), self.admin_token))

    def _dispatch(self, session: dict, method: str, args: list, kwargs: dict, token: str | None = None):
        """(value, error, reply?) for one request; a broker bug answers 'Call failed', never kills the server."""
        try:
            if method.startswith("admin."):
                command = method[6:]
                allowed = self._admin_allowed(token)
                if command == "ping" and not allowed:
                    return {"server": self.broker.config.server, "pid": os.getpid(), "admin": False}, \
                        c.ERR_SUCCESS, True
                if not allowed:
                    return None, ERR_ADMIN_DISABLED if self.admin_token is None else ERR_ADMIN_TOKEN, True
                session["admin"] = True
                try:
                    return self._admin(command, args, kwargs), c.ERR_SUCCESS, True
                except (ValueError, TypeError) as exc:
                    return None, (c.RES_E_INVALID_PARAMS, str(exc)), True
            if method == "initialize":
                login, error = self.broker.authorize(*args, **kwargs)
                session["login"] = login
                return login is not None, error, True
            if method == "login":
                if session["login"] is None:
                    return False, c.ERR_NO_IPC, True
                login, error = self.broker.authorize(*args, **kwargs)
                if login is not None:
                    session["login"] = login
                return login is not None, error, True
            if method not in TERMINAL_METHODS:
                return None, c.ERR_CALL_FAILED, True
            if session["login"] is None:
                return None, c.ERR_NO_IPC, True
            value, error = getattr(self.broker, method)(session["login"], *args, **kwargs)
            if isinstance(value, np.ndarray):
                value = value.tobytes()
            reply = True
            if method == "order_send" and value is not None and (value[1] or value[2]):  # executed
                reply = not self.broker.take_lost_reply()
            return value, error, reply
        except Exception:  # noqa: BLE001 - report to the caller like a terminal would, keep serving
            log.error("call %s failed:\n%s", method, traceback.format_exc())
            return None, c.ERR_CALL_FAILED, True

    @staticmethod
    def _no_arguments(command: str, args: list, kwargs: dict, allowed: tuple[str, ...] = ()) -> None:
        if args:
            raise ValueError(f"admin.{command} takes keyword arguments only")
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"admin.{command} does not take {unknown}; it takes {list(allowed) or 'nothing'}")

    @staticmethod
    def _optional_int(command: str, name: str, value, default=None):
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"admin.{command}: {name!r} must be an integer, got {value!r}")
        return value

    def _admin(self, command: str, args: list, kwargs: dict):
        b = self.broker
        if command == "ping":
            self._no_arguments(command, args, kwargs)
            return {"pid": os.getpid(), "server": b.config.server, "seed": b.seed, "started": self.started,
                    "journal_records": b.journal.appended, "connections": self.connections,
                    "open_connections": self.open_connections, "refused_connections": self.refused_connections,
                    "admin": True}
        if command == "set_behaviour":
            if args:
                raise ValueError("admin.set_behaviour takes keyword arguments only (KEY=VALUE)")
            b.behaviour.update(**kwargs)  # all or nothing: a wrong setting leaves the behaviour as it was
            b.reset_request_times()
            return b.behaviour.as_dict()
        if command == "behaviour":
            self._no_arguments(command, args, kwargs)
            return b.behaviour.as_dict()
        if command == "ledger":
            self._no_arguments(command, args, kwargs, ("login", "since_ticket"))
            return b.ledger(login=self._optional_int(command, "login", kwargs.get("login")),
                            since_ticket=self._optional_int(command, "since_ticket", kwargs.get("since_ticket"), 0))
        if command == "orders":
            self._no_arguments(command, args, kwargs, ("login",))
            return b.ledger_orders(login=self._optional_int(command, "login", kwargs.get("login")))
        if command == "accounts":
            self._no_arguments(command, args, kwargs)
            return b.accounts_summary()
        if command == "config":
            self._no_arguments(command, args, kwargs)
            return b.config.public_dict()
        raise ValueError(f"unknown admin command {command!r}; known: {sorted(ADMIN_COMMANDS)}")
