"""The broker port: one factory that gives the engine an mt5-like object, whatever runs behind it.

The engine never imports ``MetaTrader5``: the real module exists only on Windows, mt5linux gives an *instance*
with the same methods, and the simulator client is an instance too. So the engine receives an object and uses only
MT5 function names and constants on it (``mt5.order_send(...)``, ``mt5.TRADE_RETCODE_DONE``, ``mt5.last_error()``).

kinds:
- ``"metatrader5"``: the ``MetaTrader5`` module itself (Windows, imported lazily);
- ``"mt5linux"``: ``mt5linux.MetaTrader5(host, port)`` (RPyC to a terminal under Wine; default port 18812);
- ``"simulator"``: ``SimulatorTerminal(host, port, call_timeout)`` talking to ``tradedrill mt5sim serve``.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

KINDS = ("metatrader5", "mt5linux", "simulator")


class BrokerConfigError(ValueError):
    """The broker configuration names something this machine cannot provide; the message says what to change."""


def open_terminal(kind: str = "simulator", *, host: str = "127.0.0.1", port: int = 18812,
                  call_timeout: float = 5.0, source_address: str | None = None) -> Any:
    """An mt5-like object of ``kind``; it is not initialized: call ``initialize(login=..., ...)`` on it."""
    if kind == "metatrader5":
        try:
            return importlib.import_module("MetaTrader5")
        except ImportError as exc:
            raise BrokerConfigError(
                "broker kind 'metatrader5' needs the MetaTrader5 package, which exists only for Windows; "
                "use kind 'mt5linux' (terminal under Wine) or 'simulator' on this machine"
            ) from exc
    if kind == "mt5linux":
        try:
            module = importlib.import_module("mt5linux")
        except ImportError as exc:
            raise BrokerConfigError(
                "broker kind 'mt5linux' needs the mt5linux package: pip install 'tradedrill[mt5linux]'"
            ) from exc
        return module.MetaTrader5(host=host, port=port)
    if kind == "simulator":
        from reference.mt5.simclient import SimulatorTerminal

        return SimulatorTerminal(host, port, call_timeout=call_timeout, source_address=source_address)
    raise BrokerConfigError(f"unknown broker kind {kind!r}; use one of {', '.join(KINDS)}")


def connect(config: Mapping[str, Any]) -> Any:
    """An mt5-like object built from a config mapping, initialized when it names an account.

    Keys: ``kind`` (default "simulator"), ``host``, ``port``, ``call_timeout`` (seconds, simulator only),
    ``source_address`` (simulator only: the local address the connection leaves from), and
    optionally ``login``, ``password``, ``server``, ``path``, ``timeout`` (ms) passed to ``initialize``. If
    ``initialize`` fails the object is still returned: check ``mt5.last_error()``; the engine's reconnect logic
    (BRK-2) calls ``initialize`` again.
    """
    kind = config.get("kind", "simulator")
    kwargs = {"host": config.get("host", "127.0.0.1"), "port": int(config.get("port", 18812))}
    if kind == "simulator":
        kwargs["call_timeout"] = float(config.get("call_timeout", 5.0))
        if config.get("source_address"):
            kwargs["source_address"] = str(config["source_address"])
    mt5 = open_terminal(kind, **kwargs)
    if any(k in config for k in ("login", "password", "server", "path")):
        init = {k: config[k] for k in ("login", "password", "server", "timeout") if k in config}
        mt5.initialize(config.get("path"), **init)
    return mt5
