"""Synthetic run directories with a known truth: for checker tests, report tests, and trying ``tradedrill check``
without the stack. Everything is derived from the seed; the recorders write the files exactly as a drill does."""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
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
    takeover_mono: float | None = None       # when engine B acquired the lease (token 2), if it did
    stale_sends: list[str] = field(default_factory=list)
    stale_writes: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)


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
              op: str | None = None, engine_events: bool = True, tokens: bool = True,
              takeover: bool | None = None, stale_sends: Sequence[str] = (), stale_writes: Sequence[str] = (),
              undelivered: Sequence[str] = (),
              mono0: float = 1000.0, wall0: float = 1_735_732_800.0) -> Truth:
    """Write a run directory: an open-loop workload of ``op`` (default: the scenario's RTO kind) with one fault at
    ``inject_at_s``; operations invoked during the ``outage_s`` after it time out (unknown); ``outage_s=None``
    never recovers. ``duplicate`` signal ids get a second order at the broker, ``lose`` ids are acknowledged
    and vanish, ``backlog`` ids are acknowledged and still queued on RTSS when the run ends (backlog.json).
    The run is marked ``complete``.

    The engines' side (``engine_events``): event logs under ``stack/engines/`` in which engine A takes the lease
    (token 1) before the load and sends every executed order; with ``takeover`` (default: when the scenario's
    first fault targets the active engine and the run recovers) engine B takes it (token 2) during the outage and
    sends the rest. RTRS rows (entry ids of the wall clock's milliseconds) and RTS hashes carry the writer's
    ``token``, ``instance`` and ``ts_ms`` (``tokens=False``: no token anywhere, an engine before issue 18).
    Violations on demand, each list of signal ids executed after the takeover: ``stale_sends`` are sent by A
    under its old token, ``stale_writes`` are written to RTS/RTRS by A under its old token; ``undelivered`` ids
    are executed and in RTS but get no RTRS result."""
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
    if takeover is None:
        takeover = bool(spec and spec.faults and spec.faults[0].target == "active-engine") and recover is not None
    takeover_at = inject + 0.8 * (recover - inject) if takeover and recover is not None else None
    events.append((inject, next(seq), "inject", {}))
    if heal is not None:
        events.append((heal, next(seq), "heal", {}))
    events.sort()

    fault_lines, ledger, results, op_ids = [], [], [], {}
    engine_log: dict[str, list[dict]] = {"A": [], "B": []}
    rts_orders: dict[str, dict] = {}
    stale_send_set, stale_write_set, undelivered_set = set(stale_sends), set(stale_writes), set(undelivered)
    entry_seq = itertools.count()
    executed_after: set[str] = set()

    def engine_event(instance: str, mono: float, event: str, **fields) -> None:
        engine_log[instance].append({"ts": round(wall0 + (mono - mono0), 6), "mono": round(mono, 6),
                                     "instance": instance, "pid": 4000 + ord(instance), "event": event, **fields})

    engine_event("A", mono0 - 1.0, "lease_acquired", token=1, value="A:1", previous="", released=None, wait_s=0.0)
    if takeover_at is not None:
        engine_event("B", takeover_at, "lease_acquired", token=2, value="B:2", previous="A:1", released=None,
                     wait_s=0.0)
        engine_event("B", takeover_at + 0.05, "takeover_ready", token=2)
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
                after = takeover_at is not None and t > takeover_at
                if after:
                    executed_after.add(sid)
                sender = ("A", 1) if not after or sid in stale_send_set else ("B", 2)
                writer = ("A", 1) if not after or sid in stale_write_set else ("B", 2)
                attempts = 2 if sid in dup_set else 1
                for attempt in range(1, attempts + 1):
                    engine_event(sender[0], t - 0.002, "order_send_invoke", signal_id=sid,
                                 comment=engine_comment(sid, attempt), attempt=attempt, broker="primary",
                                 **({"token": sender[1]} if tokens else {}))
                    ledger.append({"deal": next(deal_no), "order": next(order_no), "magic": 7001,
                                   "comment": engine_comment(sid, attempt), "symbol": "EURUSD", "volume": 0.01,
                                   "price": 1.1, "time": int(wall.t), "broker": "primary", "type": 0, "entry": 0})
                    positions += 0.01
                ts_ms = int(round(wall.t * 1000))
                written = {"instance": writer[0], "ts_ms": str(ts_ms), **({"token": str(writer[1])} if tokens else {})}
                if sid not in undelivered_set:
                    results.append({"entry": f"{ts_ms}-{next(entry_seq)}", "signal": sid, "status": "executed",
                                    "order": ledger[-1]["order"], **written})
                rts_orders[sid] = {"status": "executed", **written}
                engine_event(writer[0], t, "ack", signal_id=sid, status="executed")
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
    (run.path / h.RTS).write_text(json.dumps({
        "positions": {"EURUSD": round(positions, 10)},
        "orders": {sid: rts_orders[sid] for sid in sorted(rts_orders)}}))
    if engine_events:
        for instance, rows in engine_log.items():
            folder = run.path / "stack" / "engines" / f"engine-{instance.lower()}"
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"events-{instance}.jsonl", "w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["mono"]))
    (run.path / h.BACKLOG).write_text(json.dumps({"signals": sorted(backlog_set), "undelivered": len(backlog_set),
                                                  "pending": 0}))
    run.node_log("engine-a").write_text("synthetic engine log\n")
    run.mark("complete")
    invoked = {p["sid"]: t for t, _, k, p in events if k == "invoke"}
    done_after = [t for t, _, k, p in events
                  if k == "complete" and p["outcome"] == h.OK and invoked[p["sid"]] >= inject]
    rto = (min(done_after) - inject) if done_after else None
    return Truth(rto, sorted(dup_set), sorted(lose_set - backlog_set), inject, heal, takeover_at,
                 sorted(stale_send_set & executed_after), sorted(stale_write_set & executed_after),
                 sorted(undelivered_set & set(rts_orders)))
