"""Synthetic run directories with a known truth: for checker tests, report tests, and trying ``tradedrill check``
without the stack. Everything is derived from the seed; the recorders write the files exactly as a drill does."""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from scenarios import history as h
from scenarios import registry
from reference.engine.contract import order_comment


@dataclass
class Truth:
    """What the synthetic run contains, for tests to compare the checkers with."""

    rto_s: float | None
    duplicated: list[str]
    lost: list[str]
    inject_mono: float
    heal_mono: float | None


class _Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def engine_comment(signal_id: str, attempt: int = 1) -> str:
    return order_comment(signal_id, attempt)


def write_run(path: str | Path, *, scenario: str = "engine-kill", seed: int = 1, repeat: int = 0,
              duration_s: float = 20.0, rate_per_s: float = 10.0, inject_at_s: float = 8.0,
              outage_s: float | None = 3.5, heal_after_s: float | None = None, timeout_s: float = 2.0,
              duplicate: Sequence[str] = (), lose: Sequence[str] = (), backlog: Sequence[str] = (),
              op: str | None = None,
              mono0: float = 1000.0, wall0: float = 1_735_732_800.0) -> Truth:
    """Write a run directory: an open-loop workload of ``op`` (default: the scenario's RTO kind) with one fault at
    ``inject_at_s``; operations invoked during the ``outage_s`` after it time out (unknown); ``outage_s=None``
    never recovers. ``duplicate`` signal ids get a second order at the broker, ``lose`` ids are acknowledged
    and vanish, ``backlog`` ids are acknowledged and still queued on RTSS when the run ends (backlog.json).
    The run is marked ``complete``."""
    rng = random.Random(seed)
    spec = registry.get(scenario)
    rto_spec = next((c for c in spec.checkers if c.checker == "rto"), None) if spec else None
    op = op or (rto_spec.params.get("f") if rto_spec else None) or "trade"
    fault = (spec.faults[0].fault if spec and spec.faults else "process-kill")
    scenario_doc = dict(spec.to_dict() if spec else {"name": scenario, "checkers": []}, repeat=repeat)
    run = h.RunDir.create(path, seed=seed, scenario=scenario_doc, config={"synthetic": True})
    clock, wall = _Clock(mono0), _Clock(wall0)
    inject = mono0 + inject_at_s
    recover = None if outage_s is None else inject + outage_s
    heal = None if heal_after_s is None else inject + heal_after_s

    # events in time order: (mono, kind, payload)
    events: list[tuple[float, int, str, dict]] = []
    seq = itertools.count()
    n_ops = int(duration_s * rate_per_s)
    ids = [f"s-{seed}-{i:04d}" for i in range(n_ops)]
    lose_set, dup_set, backlog_set = set(lose) | set(backlog), set(duplicate), set(backlog)
    outcomes: dict[str, str] = {}
    for i, sid in enumerate(ids):
        t = mono0 + i / rate_per_s + rng.uniform(0.0, 0.2 / rate_per_s)
        down = t >= inject and (recover is None or t < recover)
        if down:
            latency, outcome = timeout_s, h.UNKNOWN
        else:
            latency, outcome = rng.uniform(0.004, 0.02), h.OK
        if recover is not None and t < recover <= t + latency:
            latency = recover - t + rng.uniform(0.004, 0.02)
            outcome = h.OK
        if sid in lose_set:
            outcome = h.OK
        outcomes[sid] = outcome
        events.append((t, next(seq), "invoke", {"sid": sid, "process": f"client-{i % 4}"}))
        events.append((t + latency, next(seq), "complete", {"sid": sid, "process": f"client-{i % 4}",
                                                             "outcome": outcome}))
    events.append((inject, next(seq), "inject", {}))
    if heal is not None:
        events.append((heal, next(seq), "heal", {}))
    events.sort()

    fault_lines, ledger, results, op_ids = [], [], [], {}
    deal_no, order_no = itertools.count(5001), itertools.count(9001)
    hist = run.history_writer(clock=clock, wall_clock=wall)
    signals = run.signal_writer(clock=clock, wall_clock=wall)
    positions = 0.0
    for t, _, kind, p in events:
        clock.t, wall.t = t, wall0 + (t - mono0)
        if kind == "invoke":
            op_ids[p["sid"]] = hist.invoke(p["process"], op, p["sid"], {"symbol": "EURUSD", "volume": 0.01})
        elif kind == "complete":
            sid, outcome = p["sid"], p["outcome"]
            hist.complete(op_ids[sid], p["process"], op, sid, outcome,
                          error="TimeoutError: no result within 2 s" if outcome == h.UNKNOWN else None)
            signals.record(sid, outcome, symbol="EURUSD", side="buy", volume=0.01)
            executed = outcome == h.OK and sid not in lose_set
            if executed:
                attempts = 2 if sid in dup_set else 1
                for attempt in range(1, attempts + 1):
                    ledger.append({"deal": next(deal_no), "order": next(order_no), "magic": 7001,
                                   "comment": engine_comment(sid, attempt), "symbol": "EURUSD", "volume": 0.01,
                                   "price": 1.1, "time": int(wall.t), "broker": "primary", "type": 0, "entry": 0})
                    positions += 0.01
                results.append({"signal": sid, "status": "executed", "order": ledger[-1]["order"]})
        elif kind in ("inject", "heal"):
            fault_lines.append({"event": kind, "fault": fault, "fault_id": f"{fault}-1",
                                "description": f"synthetic {fault}", "requirements": list(spec.requirement_ids)
                                if spec else [], "wall": h._wall_iso(wall.t), "wall_ts": wall.t, "mono": t,
                                "details": {}})
    hist.close()
    signals.close()
    for name, rows in ((h.FAULTS, fault_lines), (h.LEDGER, ledger), (h.RTRS, results)):
        with open(run.path / name, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    executed_ids = {r["signal"] for r in results}
    (run.path / h.RTS).write_text(json.dumps({
        "positions": {"EURUSD": round(positions, 10)},
        "orders": {sid: {"status": "executed"} for sid in sorted(executed_ids)}}))
    (run.path / h.BACKLOG).write_text(json.dumps({"signals": sorted(backlog_set), "undelivered": len(backlog_set),
                                                  "pending": 0}))
    run.node_log("engine-a").write_text("synthetic engine log\n")
    run.mark("complete")
    invoked = {p["sid"]: t for t, _, k, p in events if k == "invoke"}
    done_after = [t for t, _, k, p in events
                  if k == "complete" and p["outcome"] == h.OK and invoked[p["sid"]] >= inject]
    rto = (min(done_after) - inject) if done_after else None
    return Truth(rto, sorted(dup_set), sorted(lose_set - backlog_set), inject, heal)
