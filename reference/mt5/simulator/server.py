"""The simulator's network face: an asyncio TCP server speaking ``protocol`` frames to terminal clients and admins.

One connection is one terminal session: ``initialize`` binds it to an account, and every later call acts as that
account. Calls are handled one at a time on the event loop, so the broker needs no locks and the journal's fsync
orders every acknowledged change before its reply. ``admin.*`` methods on the same port let the harness switch the
broker's behaviour and read its ledger (ground truth for duplicate checks) without a second listener to proxy.
"""
from __future__ import annotations

import asyncio
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
}
TRADE_METHODS = {"order_send", "order_check"}


class SimServer:
    def __init__(self, broker: Broker, host: str, port: int):
        self.broker = broker
        self.host = host
        self.port = port
        self.started = time.time()
        self.connections = 0
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
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        session: dict = {"login": None}
        try:
            while True:
                header = await reader.readexactly(protocol.HEADER.size)
                body = await reader.readexactly(protocol.frame_length(header))
                msgid, method, args, kwargs = protocol.unpack(body)
                await self._delay(method)
                value, error, reply = self._dispatch(session, method, args, kwargs)
                if not reply:
                    log.warning("dropping the reply to %s #%s (lose_reply behaviour)", method, msgid)
                    continue
                writer.write(protocol.pack([msgid, value, list(error)]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # noqa: BLE001 - a peer that does not speak the protocol loses its connection only
            log.warning("closing a connection that sent a bad frame: %r", exc)
        finally:
            writer.close()

    async def _delay(self, method: str) -> None:
        b = self.broker.behaviour
        delay = b.latency_ms + (b.order_latency_ms if method in TRADE_METHODS else 0.0)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    def _dispatch(self, session: dict, method: str, args: list, kwargs: dict):
        """(value, error, reply?) for one request; a broker bug answers 'Call failed', never kills the server."""
        try:
            if method.startswith("admin."):
                try:
                    return self._admin(method[6:], args, kwargs), c.ERR_SUCCESS, True
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

    def _admin(self, command: str, args: list, kwargs: dict):
        b = self.broker
        if command == "ping":
            return {"pid": os.getpid(), "server": b.config.server, "seed": b.seed, "started": self.started,
                    "journal_records": b.journal.appended, "connections": self.connections}
        if command == "set_behaviour":
            b.behaviour.update(**kwargs)
            b.reset_request_times()
            return b.behaviour.as_dict()
        if command == "behaviour":
            return b.behaviour.as_dict()
        if command == "ledger":
            return b.ledger(*args, **kwargs)
        if command == "orders":
            return b.ledger_orders(*args, **kwargs)
        if command == "accounts":
            return b.accounts_summary()
        if command == "config":
            return b.config.as_dict()
        raise ValueError(f"unknown admin command {command!r}")
