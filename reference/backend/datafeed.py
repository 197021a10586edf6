"""Chart history for TradingView's charting library in UDF mode (TV-4, BE-4): ``/config``, ``/symbols``,
``/history``, ``/time``, answered from the trade outcomes the engines sync to ClickHouse
(``reference.store.clickhouse_sync``: one row per final outcome, read with ``FINAL``).

Bars are built from executed fills: per bar of ``resolution``, open/close = the first/last fill price, high/low the
extremes, volume the lots. When ClickHouse is not configured or does not answer, ``/history`` says so
(:class:`HistoryUnavailable`, HTTP 503 ``{"s": "error", "errmsg": ...}``) instead of an empty chart that looks like
"no trades".

ClickHouse 18.16 has no server-side query parameters, so every value put into SQL is checked first (symbol by
pattern, times as integers, resolution from a fixed table).

Every request waits for ClickHouse at most ``clickhouse_deadline_s`` in all (client set-up and query), below the
proxy's read timeout: a slow or frozen ClickHouse is then this backend's own answer (its DuckDB copy, or 503
"history is unavailable"), never the proxy giving up on the backend (an HTML 504, and backend-a marked down for
``fail_timeout`` by a chart request). The call itself runs on a small pool of its own and ends at the socket
timeout (``clickhouse_timeout_s``); a call still queued when its request gives up is cancelled.
"""
from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from urllib.parse import urlparse

from .config import BackendConfig, read_secret

# UDF resolution -> seconds
RESOLUTIONS = {"1": 60, "5": 300, "15": 900, "60": 3600, "240": 14400, "1D": 86400, "D": 86400}
SYMBOL_RE = re.compile(r"[A-Za-z0-9._#\-]{1,32}")
TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_BARS = 5000


class HistoryUnavailable(RuntimeError):
    """ClickHouse cannot answer; the message (one line) says why, never a password."""


MAX_EPOCH_S = 2**33  # the latest ``to`` a /history query may name (the year 2242)


class BadRequest(ValueError):
    """A datafeed query parameter is wrong; the message names it."""


def udf_config() -> dict:
    """The ``/config`` answer."""
    return {"supported_resolutions": list(dict.fromkeys(RESOLUTIONS)), "supports_search": False,
            "supports_group_request": False, "supports_marks": False, "supports_timescale_marks": False,
            "supports_time": True, "exchanges": [], "symbols_types": []}


def udf_symbol(symbol: str, known: list[str]) -> dict:
    """The ``/symbols?symbol=`` answer; BadRequest for a symbol the backend does not serve."""
    name = symbol.split(":")[-1]
    if name not in known:
        raise BadRequest(f"unknown symbol {symbol[:40]!r}; this backend serves {', '.join(known)}")
    return {"name": name, "ticker": name, "description": name, "type": "forex", "session": "24x7",
            "exchange": "tradedrill", "listed_exchange": "tradedrill", "timezone": "Etc/UTC", "format": "price",
            "minmov": 1, "pricescale": 100000, "has_intraday": True, "has_no_volume": False,
            "supported_resolutions": list(dict.fromkeys(RESOLUTIONS)), "volume_precision": 2,
            "data_status": "endofday"}


def check_history_query(symbol: str, resolution: str, from_s: int, to_s: int) -> tuple[str, int]:
    """``(symbol, bar seconds)`` of a valid ``/history`` query; BadRequest naming the parameter otherwise."""
    name = symbol.split(":")[-1]
    if not SYMBOL_RE.fullmatch(name):
        raise BadRequest("symbol must be 1-32 characters of letters, digits and ._#-")
    if resolution not in RESOLUTIONS:
        raise BadRequest(f"resolution {resolution[:10]!r} is not one of {', '.join(RESOLUTIONS)}")
    if not 0 <= from_s <= to_s <= MAX_EPOCH_S:
        raise BadRequest(f"from and to must be epoch seconds with 0 <= from <= to <= {MAX_EPOCH_S} "
                         f"(got from={from_s}, to={to_s})")
    return name, RESOLUTIONS[resolution]


class ClickHouseHistory:
    """Bars and trades from ClickHouse; one client per thread, made on first use."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self._local = threading.local()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="clickhouse")
        if config.clickhouse_url and not TABLE_RE.fullmatch(config.clickhouse_table):
            raise ValueError(f"clickhouse_table {config.clickhouse_table!r} is not a plain table name")

    @property
    def configured(self) -> bool:
        return bool(self.config.clickhouse_url)

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        if not self.configured:
            raise HistoryUnavailable("history is unavailable: this backend has no ClickHouse configured "
                                     "(clickhouse_url)")
        import clickhouse_connect

        cfg = self.config
        parts = urlparse(cfg.clickhouse_url)
        password = read_secret(cfg.clickhouse_password_file, "ClickHouse password")
        try:
            client = clickhouse_connect.get_client(
                host=parts.hostname, port=parts.port or 8123, username=cfg.clickhouse_username, password=password,
                secure=parts.scheme == "https", compress=False, connect_timeout=cfg.clickhouse_timeout_s,
                send_receive_timeout=cfg.clickhouse_timeout_s, query_retries=0)
        except Exception as exc:  # noqa: BLE001 - every client failure is one line
            raise HistoryUnavailable(self._describe(exc, password)) from None
        self._local.client = client
        return client

    def _describe(self, exc: BaseException, password: str = "") -> str:
        text = " ".join(str(exc).split())
        if password:
            text = text.replace(password, "<password>")
        if "refused" in text.lower():
            text = "connection refused"
        elif "timed out" in text.lower() or "timeout" in text.lower():
            text = f"no answer within {self.config.clickhouse_timeout_s:g} s"
        return f"history is unavailable: ClickHouse at {self.config.clickhouse_url} cannot answer ({text[:200]})"

    def _query(self, sql: str) -> list:
        """``sql``'s rows within ``clickhouse_deadline_s`` (see the module docstring). Raises HistoryUnavailable."""
        if not self.configured:
            return self._query_now(sql)    # raises the "no ClickHouse configured" answer at once
        deadline = self.config.clickhouse_deadline_s
        future = self._pool.submit(self._query_now, sql)
        try:
            return future.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            future.cancel()   # still queued behind calls to a frozen ClickHouse: never run
            raise HistoryUnavailable(f"history is unavailable: ClickHouse at {self.config.clickhouse_url} cannot "
                                     f"answer (no answer within {deadline:g} s)") from None

    def _query_now(self, sql: str) -> list:
        client = self._client()
        try:
            return client.query(sql).result_rows
        except Exception as exc:  # noqa: BLE001
            self._local.client = None
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
            if "UNKNOWN_TABLE" in str(exc) or "Code: 60" in str(exc):
                return []   # nothing synced yet: no table, no bars
            raise HistoryUnavailable(self._describe(exc)) from None

    def bars(self, symbol: str, bar_s: int, from_s: int, to_s: int) -> dict:
        """The UDF ``/history`` answer: ``{"s": "ok", "t", "o", "h", "l", "c", "v"}`` (t in epoch seconds) or
        ``{"s": "no_data"}``. Raises HistoryUnavailable."""
        table = self.config.clickhouse_table
        sql = (f"SELECT intDiv(final_ms, {bar_s * 1000}) * {bar_s} AS t, argMin(price, final_ms), max(price), "
               f"min(price), argMax(price, final_ms), sum(volume) FROM {table} FINAL "
               f"WHERE symbol = '{symbol}' AND status = 'executed' AND NOT isNaN(price) "
               f"AND final_ms >= {int(from_s) * 1000} AND final_ms < {int(to_s) * 1000} "
               f"GROUP BY t ORDER BY t LIMIT {MAX_BARS}")
        rows = self._query(sql)
        if not rows:
            return {"s": "no_data"}
        cols = list(zip(*rows))
        return {"s": "ok", "t": [int(x) for x in cols[0]], "o": [float(x) for x in cols[1]],
                "h": [float(x) for x in cols[2]], "l": [float(x) for x in cols[3]],
                "c": [float(x) for x in cols[4]], "v": [float(x) for x in cols[5]]}

    def trades(self, symbol: str, limit: int) -> list[dict]:
        """The newest ``limit`` final outcomes of ``symbol`` (executed and rejected), newest first."""
        table = self.config.clickhouse_table
        cols = ("signal_id", "status", "side", "volume", "price", "order_id", "broker", "final_ms")
        rows = self._query(f"SELECT {', '.join(cols)} FROM {table} FINAL WHERE symbol = '{symbol}' "
                           f"ORDER BY final_ms DESC LIMIT {int(limit)}")
        out = []
        for row in rows:
            item = dict(zip(cols, row))
            for k in ("volume", "price"):
                item[k] = None if item[k] != item[k] else float(item[k])  # NaN -> null
            item["final_ms"] = int(item["final_ms"])
            out.append(item)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        client = getattr(self._local, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass


def server_time() -> int:
    """The ``/time`` answer: epoch seconds."""
    return int(time.time())
