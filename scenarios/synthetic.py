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
    # the workload as this run "ran" it, as the runner records it
    scenario_doc["workload"] = {**(scenario_doc.get("workload") or {}), "op": op, "rate_per_s": rate_per_s,
                                "duration_s": duration_s, "timeout_s": timeout_s}
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


# -- Redis under partition (issue 12) -------------------------------------------------------------------------------
REDIS_NODES = {"redis-1": "127.0.6.1:6379", "redis-2": "127.0.6.2:6379", "redis-3": "127.0.6.3:6379"}
SENTINEL_TIME = "%d %b %Y %H:%M:%S"


@dataclass
class RedisTruth:
    """What a synthetic Redis partition run contains: per writer, the acknowledged (ok) members missing from the
    final read; the switch's earliest +switch-master (epoch s, None: no failover); each engine's and writer's
    follow delay (s, from the instant the new primary was reachable to it); the unknown writes that landed."""

    lost: dict[str, list[str]]
    switch_wall: float | None
    partition_wall: tuple[float, float]
    engine_follow_s: dict[str, float]
    writer_follow_s: dict[str, float]
    unknown_landed: dict[str, list[str]]
    failovers: int


def sentinel_line(pid: int, wall: float, text: str, level: str = "#") -> str:
    """One line of a Redis Sentinel log in Redis's own format (the wall clock in UTC, milliseconds)."""
    import datetime as _dt
    when = _dt.datetime.fromtimestamp(wall, _dt.timezone.utc)
    return f"{pid}:X {when.strftime(SENTINEL_TIME)}.{when.microsecond // 1000:03d} {level} {text}"


def _hp(addr: str) -> str:
    return addr.replace(":", " ")


def write_redis_run(path: str | Path, *, seed: int = 1, scenario: str = "redis-primary-isolated-synthetic",
                    duration_s: float = 20.0, rate_per_s: float = 10.0, partition_at_s: float = 5.0,
                    partition_s: float = 8.0, switch_after_s: float | None = 4.2,
                    engine_follow_s: dict[str, float] | None = None, writer_follow_s: float = 0.15,
                    roles_diverged: Sequence[str] = (), wait_writer: bool = True, final_read: bool = True,
                    checkers: Sequence[dict] | None = None, mono0: float = 2000.0,
                    wall0: float = 1_795_000_000.0) -> RedisTruth:
    """A Redis partition run: the primary redis-1 is isolated with the minority writers ``partition_at_s`` into
    the load, for ``partition_s``; the Sentinels (majority) promote redis-2 ``switch_after_s`` after the cut
    (None: no failover, the partition was too short or no side had quorum). Writers, ``rate_per_s`` each:
    ``writer-minority`` keeps writing to the isolated primary, which acknowledges and then loses those writes when
    it rejoins as a replica; ``writer-minority-wait`` (``wait_writer``) confirms with WAIT, so its writes during
    the cut are unknown, never ok (the first of them still landed: replicated just before the cut);
    ``writer-majority`` times out until it follows the new primary ``writer_follow_s`` after the switch. Engines A
    and B record the new primary ``engine_follow_s`` after the switch (both their clients). ``roles_diverged``:
    nodes still master after heal. Writes history.jsonl, faults.jsonl, redis_writes.json (unless not
    ``final_read``), redis_roles.json, nodes/sentinel-*.log, the engines' event logs; marked complete."""
    engine_follow_s = {"A": 0.3, "B": 0.45} if engine_follow_s is None else engine_follow_s
    old, new = REDIS_NODES["redis-1"], REDIS_NODES["redis-2"]
    rng = random.Random(seed)
    cut, heal = mono0 + partition_at_s, mono0 + partition_at_s + partition_s
    switch = None if switch_after_s is None else cut + switch_after_s
    wall = lambda mono: wall0 + (mono - mono0)  # noqa: E731 - both clocks advance together here
    writers = [("writer-minority", "minority", False), ("writer-majority", "majority", False)]
    if wait_writer:
        writers.insert(1, ("writer-minority-wait", "minority", True))
    sides = {"minority": ["redis-1"] + [w for w, side, _ in writers if side == "minority"],
             "majority": ["redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "engine-a", "engine-b"]
             + [w for w, side, _ in writers if side == "majority"]}
    fault = {"fault": "redis-partition", "target": "redis-primary", "at_s": partition_at_s,
             "heal_after_s": partition_s, "params": {"shape": "isolate"}, "phase_s": 0.0}
    scenario_doc = {"name": scenario, "requirement_ids": ["RDS-1", "RDS-2", "RDS-4"], "repeat": 0,
                    "description": "synthetic: the Redis primary isolated with the minority writers",
                    "faults": [fault],
                    "checkers": list(checkers) if checkers is not None else [
                        {"checker": "redis_set", "requirement_ids": ["RDS-4"], "params": {}},
                        {"checker": "primary_follow", "requirement_ids": ["RDS-2"], "params": {}},
                        {"checker": "failovers", "requirement_ids": ["RDS-1"],
                         "params": {"expect": "one" if switch is not None else "none"}}]}
    run = h.RunDir.create(path, seed=seed, scenario=scenario_doc, config={"synthetic": True})
    clock, wclock = _Clock(mono0), _Clock(wall0)
    hist = run.history_writer(clock=clock, wall_clock=wclock)
    plan: list[tuple[float, int, str, dict]] = []
    seq = itertools.count()
    truth_lost: dict[str, list[str]] = {}
    landed_unknown: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {}
    writer_follow: dict[str, float] = {}
    for writer, side, wait in writers:
        truth_lost[writer], landed_unknown[writer], members[writer] = [], [], []
        first_unknown_in_cut = True
        for n in range(1, int(duration_s * rate_per_s) + 1):
            t = mono0 + (n - 1) / rate_per_s + rng.uniform(0.0, 0.1 / rate_per_s)
            during = cut <= t < heal
            latency, outcome, primary, error = rng.uniform(0.001, 0.004), h.OK, old, None
            if switch is not None and t >= switch:
                primary = new
            if side == "minority":
                if during:
                    primary = old
                    if wait:
                        latency, outcome, error = 0.5, h.UNKNOWN, "WAIT 1 500: 0 replicas confirmed"
                elif t >= heal and switch is not None and t < heal + writer_follow_s:
                    outcome, primary, error = h.FAIL, old, "ReadOnlyError: You can't write against a read only replica."
            elif during and (switch is None or t < switch + writer_follow_s):
                latency, outcome, primary, error = 1.0, h.UNKNOWN, None, "TimeoutError: Timeout connecting to server"
            done = t + latency
            member = str(n)
            if outcome == h.OK:
                kept = not (switch is not None and primary == old and cut <= done and (t < heal or done < heal))
                if kept:
                    members[writer].append(member)
                else:
                    truth_lost[writer].append(member)
            elif outcome == h.UNKNOWN and wait and first_unknown_in_cut:
                first_unknown_in_cut = False
                members[writer].append(member)       # replicated just before the cut: it landed
                landed_unknown[writer].append(member)
            if outcome == h.OK and primary == new and writer not in writer_follow and switch is not None:
                reachable = wall(heal if side == "minority" else switch)
                writer_follow[writer] = max(0.0, wall(done) - reachable)
            value = {"n": n, "member": member, "set": f"drill:set:{writer}", "primary": primary, "wait": wait}
            plan.append((t, next(seq), "invoke", {"writer": writer, "n": n, "value": value}))
            plan.append((done, next(seq), outcome, {"writer": writer, "n": n, "value": value, "error": error}))
    plan.sort(key=lambda p: (p[0], p[1]))
    op_ids = {}
    for t, _, kind, p in plan:
        clock.t, wclock.t = t, wall(t)
        key = f"{p['writer']}:{p['n']}"
        if kind == "invoke":
            op_ids[key] = hist.invoke(p["writer"], "redis_write", key, p["value"])
        else:
            hist.complete(op_ids[key], p["writer"], "redis_write", key, kind, p["value"], p["error"])
    hist.close()
    groups = [[old] + [f"127.0.7.{i}" for i, (w, s, _) in enumerate(writers, 1) if s == "minority"],
              [REDIS_NODES["redis-2"], REDIS_NODES["redis-3"]]]
    faults = []
    for event, t in (("inject", cut), ("heal", heal)):
        faults.append({"event": event, "fault": "redis-partition", "fault_id": "redis-partition-1",
                       "description": "isolate the Redis primary with the minority writers",
                       "requirements": ["RDS-1", "RDS-2", "RDS-4"], "wall": h._wall_iso(wall(t)),
                       "wall_ts": wall(t), "mono": t,
                       "details": {"shape": "isolate", "groups": groups, "sides": sides}})
    (run.path / h.FAULTS).write_text("".join(json.dumps(f) + "\n" for f in faults))
    if final_read:
        (run.path / "redis_writes.json").write_text(json.dumps({
            "read_from": new if switch is not None else old, "read_error": None,
            "writers": {w: {"side": side, "source": f"127.0.7.{i}", "wait": wait, "set": f"drill:set:{w}",
                            "members": sorted(members[w], key=int), "read_error": None}
                        for i, (w, side, wait) in enumerate(writers, 1)}}, indent=2))
    primary = new if switch is not None else old
    nodes = {}
    for name, addr in REDIS_NODES.items():
        if addr == primary or name in roles_diverged:
            nodes[name] = {"address": addr, "role": "master", "master": None, "link": None, "error": None}
        else:
            nodes[name] = {"address": addr, "role": "slave", "master": primary, "link": "up", "error": None}
    (run.path / "redis_roles.json").write_text(json.dumps({
        "nodes": nodes, "sentinels": {f"sentinel-{i}": {"primary": primary, "error": None} for i in (1, 2, 3)}},
        indent=2))
    for i in (1, 2, 3):
        pid = 31000 + i
        lines = [f"{pid}:X {'30 Nov 2026 00:00:00.000'} * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo",
                 "                _._", "           _.-``__ ''-._",
                 sentinel_line(pid, wall(mono0 - 5.0), f"+monitor master mymaster {_hp(old)} quorum 2"),
                 sentinel_line(pid, wall(cut + 3.0 + 0.01 * i), f"+sdown master mymaster {_hp(old)}")]
        if switch is not None:
            lines.append(sentinel_line(pid, wall(cut + 3.05 + 0.01 * i),
                                       f"+odown master mymaster {_hp(old)} #quorum 3/2"))
            lines.append(sentinel_line(pid, wall(cut + 3.06), "+new-epoch 1"))
            if i == 1:
                lines += [sentinel_line(pid, wall(cut + 3.06), f"+try-failover master mymaster {_hp(old)}"),
                          sentinel_line(pid, wall(cut + 3.08), f"+elected-leader master mymaster {_hp(old)}")]
            lines.append(sentinel_line(pid, wall(switch + 0.013 * (i - 1)),
                                       f"+switch-master mymaster {_hp(old)} {_hp(new)}"))
            lines.append(sentinel_line(pid, wall(switch + 0.02), f"* +slave slave {_hp(old)} @ mymaster {_hp(new)}",
                                       level="*"))
        (run.path / h.NODES / f"sentinel-{i}.log").write_text("\n".join(lines) + "\n")
    for instance in ("A", "B"):
        folder = run.path / "stack" / "engines" / f"engine-{instance.lower()}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{"ts": wall(mono0 - 1.0), "mono": mono0 - 1.0, "instance": instance, "event": "engine_start"}]
        if switch is not None and instance in engine_follow_s:
            t = switch + engine_follow_s[instance]
            for k, event in enumerate(("lease_redis_primary_changed", "redis_primary_changed")):
                rows.append({"ts": wall(t - 0.01 * (1 - k)), "mono": t - 0.01 * (1 - k), "instance": instance,
                             "event": event, "old": old.split(":"), "new": [new.split(":")[0], 6379]})
            rows.append({"ts": wall(t + 0.05), "mono": t + 0.05, "instance": instance, "event": "failover_rechecked",
                         "rts_rebuilt": 0, "results_republished": 0, "checked": 0})
        rows.append({"ts": wall(mono0 + duration_s), "mono": mono0 + duration_s, "instance": instance,
                     "event": "engine_stop"})
        (folder / f"events-{instance}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.mark("complete")
    return RedisTruth(truth_lost, None if switch is None else wall(switch), (wall(cut), wall(heal)),
                      {k: v for k, v in engine_follow_s.items() if switch is not None},
                      writer_follow, {w: m for w, m in landed_unknown.items() if m},
                      0 if switch is None else 1)


# -- the DuckDB store under damage (issue 13) -----------------------------------------------------------------------
@dataclass
class StoreTruth:
    """What a synthetic store-damage run contains: the damage's injection (monotonic and wall clock), when the
    engine found it and when the journal was usable again (None: never), the evidence folder (None: none kept)."""

    inject_mono: float
    inject_wall: float
    detected_mono: float | None
    repaired_mono: float | None
    evidence: Path | None
    journal: Path


def write_store_run(path: str | Path, *, scenario: str = "duckdb-corrupt-zero-header", seed: int = 1,
                    inject_at_s: float = 8.0, detect_after_s: float | None = 0.6, repair_s: float = 0.02,
                    repaired: bool = True, evidence: bool = True, missing_writes: int = 0,
                    snapshot_age_s: float = 0.3, landed: bool = True, move_to: str | Path | None = None,
                    unexpected_repair: bool = False, mono0: float = 1000.0,
                    wall0: float = 1_735_732_800.0) -> StoreTruth:
    """A run of a registered ``duckdb-corrupt-<mode>`` scenario (``write_run``'s trades, no loss) in which the
    damage lands in engine A's journal ``inject_at_s`` into the load. A live-file scenario (``duckdb-corrupt``):
    the health check finds it ``detect_after_s`` later (journal_unhealthy) and the file is rewritten from memory
    ``repair_s`` after that (journal_repaired, nothing missing). A crash scenario (``duckdb-crash-corrupt``): the
    passive takes over and the restarted victim repairs on open ``detect_after_s`` after the damage, restoring a
    snapshot ``snapshot_age_s`` old with ``missing_writes`` committed writes not in it. ``detect_after_s=None``:
    never found; ``repaired=False``: found, the repair failed (journal_repair_failed); ``evidence=False``: the
    evidence folder holds only diagnosis.txt; ``landed=False``: the injection failed (inject-failed, no damage);
    ``move_to``: the run folder is moved there afterwards (the paths recorded in it then point nowhere);
    ``unexpected_repair``: one more journal_repaired no damage accounts for."""
    spec = registry.get(scenario)
    assert spec is not None and spec.faults and spec.faults[0].fault in ("duckdb-corrupt", "duckdb-crash-corrupt"), \
        f"{scenario} is not a registered DuckDB damage scenario"
    step = spec.faults[0]
    crash = step.fault == "duckdb-crash-corrupt"
    mode = step.params.get("mode", "zero-header")
    write_run(path, scenario=scenario, seed=seed, inject_at_s=inject_at_s, outage_s=0.4 if crash else 0.0,
              takeover=crash, mono0=mono0, wall0=wall0)
    run_path = Path(path)
    folder = run_path / "stack" / "engines" / "engine-a"
    journal = folder / "journal-A.duckdb"
    inject = mono0 + inject_at_s
    inject_wall = wall0 + inject_at_s
    wall = lambda mono: wall0 + (mono - mono0)  # noqa: E731 - both clocks advance together here
    details = {"path": str(journal), "mode": mode, "file": str(journal), "restore_on_heal": False}
    if crash:
        details.update(node="engine-a", pid=4065)
    line = {"fault": step.fault, "fault_id": f"{step.fault}-1", "description": f"synthetic {step.fault} {mode}",
            "requirements": list(spec.requirement_ids), "wall": h._wall_iso(inject_wall), "wall_ts": inject_wall,
            "mono": inject, "details": details}
    faults = [dict(line, event="inject" if landed else "inject-failed", **({} if landed else
                                                                          {"error": "FaultError('no WAL')"}))]
    if landed:
        heal = mono0 + 20.0 if not crash else inject + 2.0
        faults.append(dict(line, event="heal", mono=heal, wall_ts=wall(heal), wall=h._wall_iso(wall(heal))))
    (run_path / h.FAULTS).write_text("".join(json.dumps(f) + "\n" for f in faults))
    events_file = folder / "events-A.jsonl"
    rows = [json.loads(x) for x in events_file.read_text().splitlines() if x.strip()]
    found = repaired_at = None
    stamp = time_stamp = None
    evidence_dir = None

    def event(mono: float, name: str, **fields) -> None:
        rows.append({"ts": round(wall(mono), 6), "mono": round(mono, 6), "instance": "A",
                     "pid": 4065 if not crash or mono < inject else 4066, "event": name, **fields})

    if landed and detect_after_s is not None:
        found = inject + detect_after_s
        time_stamp = f"2025{int(found * 1000) % 10**9:09d}"
        evidence_dir = folder / "backup" / "duckdb" / "damaged" / f"journal-A-{time_stamp}"
        saw = ("the file header is no longer a DuckDB header (zeroed or overwritten)" if mode == "zero-header"
               else "the WAL fails its checksum at byte 4242 (torn or garbled write)")
        if not crash:
            event(found, "journal_unhealthy", file=str(journal), problem=saw)
        if repaired:
            repaired_at = found + repair_s
            committed = 480
            if crash:
                snap_ms = int(round((inject_wall - snapshot_age_s) * 1000))
                stamp = f"journal-A.h{committed - missing_writes:012d}.t{snap_ms}.duckdb"
                recovered = f"snapshot {stamp} (writes up to #{committed - missing_writes})"
            else:
                recovered = (f"a fresh file written from the engine's memory (240 intents, 0 failed syncs, writes up "
                             f"to #{committed})")
            restored = committed - missing_writes if crash else committed
            event(repaired_at, "journal_repaired", file=str(journal), saw=saw, recovered=recovered,
                  evidence=str(evidence_dir), committed=committed, restored=restored,
                  missing_writes=committed - restored, seconds=repair_s, skipped=[])
            evidence_dir.mkdir(parents=True)
            (evidence_dir / "diagnosis.txt").write_text(f"seen: {saw}\n")
            if evidence:
                (evidence_dir / journal.name).write_bytes(b"\0" * 4096)
                if crash:
                    (evidence_dir / (journal.name + ".wal")).write_bytes(b"\x17" * 512)
        else:
            event(found + repair_s, "journal_repair_failed", file=str(journal),
                  error=f"intent journal {journal}: {saw}, and a fresh file could not be written (No space left on "
                        f"device)")
    if unexpected_repair:
        event(mono0 + 2.0, "journal_repaired", file=str(journal), saw="the file is gone",
              recovered="an empty journal", evidence=str(folder / "backup/duckdb/damaged/journal-A-early"),
              committed=0, restored=0, missing_writes=0, seconds=0.01, skipped=[])
    rows.sort(key=lambda r: r["mono"])
    events_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if move_to is not None:
        import shutil
        shutil.move(str(run_path), str(move_to))
        run_path = Path(move_to)
        folder = run_path / "stack" / "engines" / "engine-a"
        evidence_dir = folder / evidence_dir.relative_to(Path(path) / "stack/engines/engine-a") \
            if evidence_dir is not None else None
    return StoreTruth(inject, inject_wall, found, repaired_at, evidence_dir if repaired_at else None,
                      run_path / "stack" / "engines" / "engine-a" / "journal-A.duckdb")
