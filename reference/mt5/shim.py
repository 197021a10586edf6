"""A ``MetaTrader5`` module over a simulator terminal, so code written for the official package runs unchanged.

``import MetaTrader5 as mt5`` then ``mt5.initialize()``, ``mt5.order_send({...})``: the official package is a module
of functions and constants (Windows only); :func:`install` puts a module of that name into ``sys.modules`` whose
functions are the bound methods of one :class:`~reference.mt5.simclient.SimulatorTerminal` and whose constants and
named tuple types are the terminal's. :func:`uninstall` takes it out again (tests).
"""
from __future__ import annotations

import sys
import types

from reference.mt5 import constants as _c
from reference.mt5.simclient import SimulatorTerminal

FUNCTIONS = (
    "initialize", "login", "shutdown", "version", "last_error", "account_info", "terminal_info", "symbols_total",
    "symbols_get", "symbol_info", "symbol_info_tick", "symbol_select", "copy_rates_from", "copy_rates_from_pos",
    "copy_rates_range", "copy_ticks_from", "copy_ticks_range", "orders_total", "orders_get", "positions_total",
    "positions_get", "history_orders_total", "history_orders_get", "history_deals_total", "history_deals_get",
    "order_calc_margin", "order_calc_profit", "order_check", "order_send",
)
TYPES = ("TradePosition", "TradeOrder", "TradeDeal", "TradeRequest", "OrderSendResult", "OrderCheckResult", "Tick",
         "AccountInfo", "TerminalInfo", "SymbolInfo")


def module(terminal: SimulatorTerminal, name: str = "MetaTrader5") -> types.ModuleType:
    """A module object with the package's functions (bound to ``terminal``), constants and named tuples."""
    mod = types.ModuleType(name, f"MetaTrader5 over {terminal!r} (reference.mt5.shim)")
    for constant, value in _c.public_constants().items():
        setattr(mod, constant, value)
    for type_name in TYPES:
        setattr(mod, type_name, getattr(terminal, type_name))
    for function in FUNCTIONS:
        setattr(mod, function, getattr(terminal, function))
    mod.__version__ = "5.0.6231"
    mod.__author__ = "MetaQuotes Ltd. (API); TradeDrill simulator shim"
    return mod


def install(terminal: SimulatorTerminal, name: str = "MetaTrader5") -> types.ModuleType:
    """Make ``import MetaTrader5`` give :func:`module` of ``terminal``; returns the module."""
    mod = module(terminal, name)
    sys.modules[name] = mod
    return mod


def uninstall(name: str = "MetaTrader5") -> None:
    sys.modules.pop(name, None)
