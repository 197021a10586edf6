"""Prices: a seeded random walk per symbol on a fixed time grid, the same for the same seed.

The walk moves in whole points (so prices are exact at the symbol's digits) with one step every ``step_ms`` from an
``origin_ms`` that the simulator persists in its state directory on first start, so a restart continues the same
walk. It is generated in chunks, each from ``numpy.random.default_rng([seed, crc32(symbol), chunk])``: the n-th tick
depends only on (seed, symbol, origin, step, base price, volatility), never on when or how often it was asked for.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from reference.mt5 import constants as c
from reference.mt5.types import RATE_DTYPE, TICK_DTYPE

CHUNK = 4096


@dataclass
class TickWalk:
    seed: int
    symbol: str
    base_price: float
    point: float
    digits: int
    spread_points: int
    origin_ms: int
    step_ms: int = 250
    sigma_points: float = 2.0
    _chunks: list[np.ndarray] = field(default_factory=list, repr=False)

    def _bid_points(self, upto: int) -> np.ndarray:
        """Bid prices in points for ticks 0..upto-1 (cached chunk by chunk)."""
        need = (upto + CHUNK - 1) // CHUNK
        floor = max(1, int(round(self.base_price / self.point * 0.2)))
        while len(self._chunks) < need:
            index = len(self._chunks)
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, zlib.crc32(self.symbol.encode()), index])
            steps = np.rint(rng.normal(0.0, self.sigma_points, CHUNK)).astype(np.int64)
            start = self._chunks[-1][-1] if self._chunks else int(round(self.base_price / self.point))
            if index == 0:
                steps[0] = 0
            walk = start + np.cumsum(steps)
            # reflect at a floor so prices stay positive whatever the seed
            walk = np.where(walk < floor, 2 * floor - walk, walk)
            self._chunks.append(walk)
        if not self._chunks:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self._chunks)[:upto] if need > 1 else self._chunks[0][:upto]

    def index_at(self, time_ms: int) -> int:
        """Index of the last tick at or before ``time_ms`` (-1 before the origin)."""
        if time_ms < self.origin_ms:
            return -1
        return (time_ms - self.origin_ms) // self.step_ms

    def tick(self, index: int) -> tuple:
        """(time, bid, ask, last, volume, time_msc, flags, volume_real) of tick ``index``."""
        if index // CHUNK >= len(self._chunks):
            self._bid_points(index + 1)
        points = int(self._chunks[index // CHUNK][index % CHUNK])
        bid = round(points * self.point, self.digits)
        ask = round((points + self.spread_points) * self.point, self.digits)
        time_msc = self.origin_ms + index * self.step_ms
        return (time_msc // 1000, bid, ask, 0.0, 0, time_msc, c.TICK_FLAG_BID | c.TICK_FLAG_ASK, 0.0)

    def ticks(self, first: int, last: int) -> np.ndarray:
        """Structured array (TICK_DTYPE) of ticks first..last inclusive (clipped at the origin)."""
        first = max(0, first)
        if last < first:
            return np.zeros(0, dtype=TICK_DTYPE)
        points = self._bid_points(last + 1)[first : last + 1]
        out = np.zeros(len(points), dtype=TICK_DTYPE)
        out["time_msc"] = self.origin_ms + np.arange(first, last + 1, dtype=np.int64) * self.step_ms
        out["time"] = out["time_msc"] // 1000
        out["bid"] = np.round(points * self.point, self.digits)
        out["ask"] = np.round((points + self.spread_points) * self.point, self.digits)
        out["flags"] = c.TICK_FLAG_BID | c.TICK_FLAG_ASK
        return out


def bar_starts(times: np.ndarray, timeframe: int) -> np.ndarray:
    """Open time (epoch seconds) of the bar of ``timeframe`` that contains each time."""
    kind = timeframe & 0xC000
    units = timeframe & 0x3FFF
    if kind == 0:
        period = units * 60
    elif kind == 0x4000:
        period = units * 3600
    elif timeframe == c.TIMEFRAME_W1:
        sunday = 3 * 86400  # 1970-01-01 was a Thursday; MT5 weeks open on Sunday
        return (times - sunday) // (7 * 86400) * (7 * 86400) + sunday
    elif timeframe == c.TIMEFRAME_MN1:
        months = times.astype("datetime64[s]").astype("datetime64[M]")
        return months.astype("datetime64[s]").astype(np.int64)
    else:
        raise ValueError(f"unknown timeframe {timeframe}")
    return times // period * period


def valid_timeframe(timeframe: int) -> bool:
    return timeframe in {v for k, v in vars(c).items() if k.startswith("TIMEFRAME_")}


def rates_from_ticks(ticks: np.ndarray, timeframe: int, spread_points: int) -> np.ndarray:
    """Aggregate bid ticks into bars (RATE_DTYPE), oldest first."""
    if len(ticks) == 0:
        return np.zeros(0, dtype=RATE_DTYPE)
    starts = bar_starts(ticks["time"], timeframe)
    edges = np.flatnonzero(np.diff(starts)) + 1
    first = np.concatenate(([0], edges))
    last = np.concatenate((edges - 1, [len(ticks) - 1]))
    bids = ticks["bid"]
    out = np.zeros(len(first), dtype=RATE_DTYPE)
    out["time"] = starts[first]
    out["open"] = bids[first]
    out["close"] = bids[last]
    out["high"] = np.maximum.reduceat(bids, first)
    out["low"] = np.minimum.reduceat(bids, first)
    out["tick_volume"] = last - first + 1
    out["spread"] = spread_points
    return out
