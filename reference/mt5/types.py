"""The named tuples the MetaTrader5 package returns, with the package's exact field order.

Field order matters: real code indexes these tuples positionally (``pos[9]`` for volume) and builds DataFrames from
them. ``SymbolInfo`` carries all 96 fields of the real package in their order, not just the ones an engine reads,
so that positional access and ``_asdict()`` behave the same against the simulator and a real terminal; the
simulator fills the fields it does not model with neutral values (0, 0.0, '' or False).
Numpy dtypes of ``copy_ticks_*`` and ``copy_rates_*`` are here too.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

TRADE_POSITION_FIELDS = (
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume price_open sl tp "
    "price_current swap profit symbol comment external_id"
).split()
TRADE_ORDER_FIELDS = (
    "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time type_filling state "
    "magic position_id position_by_id reason volume_initial volume_current price_open sl tp price_current "
    "price_stoplimit symbol comment external_id"
).split()
TRADE_DEAL_FIELDS = (
    "ticket order time time_msc type entry magic position_id reason volume price commission swap profit fee symbol "
    "comment external_id"
).split()
TRADE_REQUEST_FIELDS = (
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling type_time expiration "
    "comment position position_by"
).split()
ORDER_SEND_RESULT_FIELDS = "retcode deal order volume price bid ask comment request_id retcode_external request".split()
ORDER_CHECK_RESULT_FIELDS = "retcode balance equity profit margin margin_free margin_level comment request".split()
TICK_FIELDS = "time bid ask last volume time_msc flags volume_real".split()
ACCOUNT_INFO_FIELDS = (
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert margin_mode currency_digits "
    "fifo_close balance credit profit equity margin margin_free margin_level margin_so_call margin_so_so "
    "margin_initial margin_maintenance assets liabilities commission_blocked name server currency company"
).split()
TERMINAL_INFO_FIELDS = (
    "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled email_enabled "
    "ftp_enabled notifications_enabled mqid build maxbars codepage ping_last community_balance retransmission "
    "company name language path data_path commondata_path"
).split()
SYMBOL_INFO_FIELDS = (
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders volume volumehigh "
    "volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode trade_mode start_time "
    "expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode swap_rollover3days "
    "margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode option_mode option_right bid "
    "bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real volumehigh_real volumelow_real "
    "option_strike point trade_tick_value trade_tick_value_profit trade_tick_value_loss trade_tick_size "
    "trade_contract_size trade_accrued_interest trade_face_value trade_liquidity_rate volume_min volume_max "
    "volume_step volume_limit swap_long swap_short margin_initial margin_maintenance session_volume "
    "session_turnover session_interest session_buy_orders_volume session_sell_orders_volume session_open "
    "session_close session_aw session_price_settlement session_price_limit_min session_price_limit_max "
    "margin_hedged price_change price_volatility price_theoretical price_greeks_delta price_greeks_theta "
    "price_greeks_gamma price_greeks_vega price_greeks_rho price_greeks_omega price_sensitivity basis category "
    "currency_base currency_profit currency_margin bank description exchange formula isin name page path"
).split()
assert len(SYMBOL_INFO_FIELDS) == 96, len(SYMBOL_INFO_FIELDS)

TradePosition = namedtuple("TradePosition", TRADE_POSITION_FIELDS)
TradeOrder = namedtuple("TradeOrder", TRADE_ORDER_FIELDS)
TradeDeal = namedtuple("TradeDeal", TRADE_DEAL_FIELDS)
TradeRequest = namedtuple("TradeRequest", TRADE_REQUEST_FIELDS)
OrderSendResult = namedtuple("OrderSendResult", ORDER_SEND_RESULT_FIELDS)
OrderCheckResult = namedtuple("OrderCheckResult", ORDER_CHECK_RESULT_FIELDS)
Tick = namedtuple("Tick", TICK_FIELDS)
AccountInfo = namedtuple("AccountInfo", ACCOUNT_INFO_FIELDS)
TerminalInfo = namedtuple("TerminalInfo", TERMINAL_INFO_FIELDS)
SymbolInfo = namedtuple("SymbolInfo", SYMBOL_INFO_FIELDS)

# the dtypes of the arrays copy_ticks_* and copy_rates_* return
TICK_DTYPE = np.dtype(
    [
        ("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
        ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8"),
    ]
)
RATE_DTYPE = np.dtype(
    [
        ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
        ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8"),
    ]
)

# request fields and the Python types order_send/order_check accept for them (the terminal parses the dict)
REQUEST_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "action": (int,), "magic": (int,), "order": (int,), "symbol": (str,), "volume": (float, int),
    "price": (float, int), "stoplimit": (float, int), "sl": (float, int), "tp": (float, int),
    "deviation": (int,), "type": (int,), "type_filling": (int,), "type_time": (int,), "expiration": (int,),
    "comment": (str,), "position": (int,), "position_by": (int,),
}
REQUEST_DEFAULTS = {
    "action": 0, "magic": 0, "order": 0, "symbol": "", "volume": 0.0, "price": 0.0, "stoplimit": 0.0, "sl": 0.0,
    "tp": 0.0, "deviation": 0, "type": 0, "type_filling": 0, "type_time": 0, "expiration": 0, "comment": "",
    "position": 0, "position_by": 0,
}


UNSIGNED_FIELDS = ("magic", "order", "position", "position_by")
UINT64_MAX = 2**64 - 1
INT64 = (-(2**63), 2**63 - 1)


def parse_request(request) -> tuple[dict | None, tuple[int, str] | None]:
    """A request dict parsed as the terminal parses it: ``(fields, None)``, or ``(None, last_error)`` for the first
    bad field. Unknown keys are ignored (the terminal ignores them); ``action`` is required; numbers must fit the
    terminal's C types (uint64 tickets and magic, int64 otherwise, finite doubles). The client and the server both
    apply it: a peer that bypasses the client gets the same answer."""
    from reference.mt5 import constants as c

    if not isinstance(request, dict):
        return None, c.ERR_INVALID_ARGUMENTS
    if "action" not in request:
        return None, c.invalid_argument("action")
    parsed = {}
    for name, value in request.items():
        kinds = REQUEST_FIELD_TYPES.get(name)
        if kinds is None:
            continue  # the terminal ignores keys it does not know
        if not isinstance(value, kinds) or isinstance(value, bool):
            return None, c.invalid_argument(name)
        if float in kinds:
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                return None, c.invalid_argument(name)
        elif kinds == (int,):
            low, high = (0, UINT64_MAX) if name in UNSIGNED_FIELDS else INT64
            if not low <= value <= high:
                return None, c.invalid_argument(name)
        parsed[name] = value
    return parsed, None
