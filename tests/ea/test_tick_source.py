"""What the EA reads from the broker port, as MT5_API.md describes it: ``symbol_info_tick`` gives the latest Tick
(time == time_msc // 1000, bid < ask), its time_msc never goes back, and it is the newest tick ``copy_ticks_range``
returns for the same moment (the simulator's tick source needs nothing added for the EA)."""
from __future__ import annotations

import datetime as dt

from reference.mt5 import constants as c
from reference.mt5.port import connect
from tradedrill.waiting import wait_until


def test_symbol_info_tick_is_the_latest_tick_of_the_history(sim):
    mt5 = connect({"kind": "simulator", "host": sim.address, "port": sim.port, "login": 5001})
    try:
        seen = []
        wait_until(lambda: seen.append(mt5.symbol_info_tick("EURUSD")) or len({t.time_msc for t in seen}) >= 5, 10,
                   "five distinct ticks")
        times = [t.time_msc for t in seen]
        assert times == sorted(times)
        last = seen[-1]
        assert last.time == last.time_msc // 1000 and last.bid < last.ask
        start = dt.datetime.fromtimestamp(last.time - 2, dt.timezone.utc)
        end = dt.datetime.fromtimestamp(last.time + 1, dt.timezone.utc)
        history = mt5.copy_ticks_range("EURUSD", start, end, c.COPY_TICKS_ALL)
        assert last.time_msc in set(int(x) for x in history["time_msc"])
        row = history[history["time_msc"] == last.time_msc][0]
        assert (float(row["bid"]), float(row["ask"])) == (last.bid, last.ask)
    finally:
        mt5.shutdown()
