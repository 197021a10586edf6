"""The EA tick-stream checkers (issue 14; EA-1, EA-2, BR-3, PERF-1): pure functions over a run folder.

Inputs (found anywhere under the run folder):
- ``ticks-*.jsonl``: what each consumer delivered (``reference.ea.consumer``: ``tick`` rows with seq, stream, path,
  ``sent_ns``/``deliver_ns``/``time_msc``; ``gap``, ``udp_lost``/``udp_recovered``, ``tcp_attempt``, ``alert``,
  ``stream`` rows);
- ``faults.jsonl``: the fault windows (wall clock ``inject_wall``/``heal_wall``, seconds);
- ``supervisor*.jsonl``: the supervisor's events (start, exit, restart, gave_up) of the EA programs (``ea*``).

Each checker judges per consumer and reports the worst; with nothing to judge it is ``unmeasured`` with the reason,
never a pass. Every judged number comes from the records, never from what the consumer says about itself: gaps and
duplicates are counted from the delivered seqs, not from the consumer's ``gap`` rows.

Checkers (``scenarios.checkers.CHECKERS``):
- ``ticks`` (EA-2): ``duplicate_ticks``, ``out_of_order_ticks``, ``missed_ticks`` (seqs never delivered; with
  ``gaps_expected_in_faults`` only those outside fault windows; never a seq between two ticks of the snapshot a
  consumer's first TCP connection replayed before a live tick or a UDP frame reached it (``join_replay``; after a
  UDP frame only if sent before the consumer started): the EA replays each symbol's latest tick only, so such a seq
  was sent before the consumer joined and was never owed to it; a hole after the consumer's first live tick, or in a
  later reconnect's snapshot, is missed). A consumer that got no live tick (only the snapshot its TCP connect
  replayed: the EA was not streaming) is not judged, and with none live the three are ``unmeasured``, never a pass.
  Beside them (reported, not judged): ``longest_tick_silence_s`` and ``tick_silences``, the stretches over
  ``SILENCE_S`` without a live tick and the fault windows they fall in (``tick_silences``: the EA reads the primary
  broker only, so a primary broker outage is a tick outage); ``stale_ticks`` (BR-3):
  ``stale_ticks_after_restart`` (a tick of a stream delivered after a newer stream's first tick);
  ``tick_latency`` (PERF-1): ``tick_latency_p95_ms`` (broker ``time_msc`` to delivery, outside fault windows and
  without the snapshot a TCP connect replays;
  p50/p99 and the EA-send-to-delivery path latency beside it). One computation, three table rows.
- ``tick_fallback``: ``tick_fallback_s``: in each window of the UDP faults (``faults`` param: fault names; default
  all), the worst send-to-delivery time of a tick served from TCP; a window whose ticks were not delivered at all
  counts as not served within the window (its length). Beside it: the distribution and the ``udp_lost``
  detection after injection. ``back_to_udp_s``: for each window in which UDP went down (a ``udp_lost`` inside it),
  the heal to the consumer's ``udp_recovered`` after the last such loss (0 when before the recorded heal; the worst;
  one that never came back before the record ended is a lower bound, heal to end).
- ``tcp_reconnect``: ``tcp_reconnect_interval_s`` and ``tcp_reconnect_interval_min_s`` (the longest and the shortest
  interval between consecutive failed attempts of one outage, at 10 ms resolution: EA-2's 2 s both ways, the
  shortest with a 0.1 s tolerance), ``tcp_reconnect_attempts`` (most failed attempts of one outage, EA-2: 10),
  ``tcp_attempts_before_give_up`` (failed attempts of an outage the consumer gave up on: exactly 10), and
  ``missing_alerts`` (an outage of 10 failed attempts without ``tcp_gave_up``; UDP and TCP down together without
  ``both_down``).
- ``ea_network_down`` (EA-4): ``restart_after_network_down_s`` (the cut to the EA's next start after its
  ``network_down`` alert) and ``reconnect_attempts`` (from ``ea-events-*.jsonl``).
- ``ea_restart``: ``restart_s`` (the EA killed, from the fault injection or the supervisor's ``exit``, to the first
  tick of its new stream delivered), ``restarts_missing`` (kills never followed by a new stream before the next kill
  or the end of the record, the supervisor not having given up: each one fails, and ``restart_s`` is then a lower
  bound, kill to the end) and ``failed_restarts_before_stop`` (restarts within 30 s before the supervisor gave up,
  EA-1: 3).

A kill (``process-kill``/``process-terminate``, no heal) excuses missing ticks only until the first tick of a new
stream or ``KILL_WINDOW_S`` (1 s, EA-1's restart budget) after it, whichever is first (``close_kill_windows``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from scenarios.history import FaultWindow, read_jsonl_counting
from scenarios.verdicts import percentile

TICKS_GLOB = "ticks-*.jsonl"
EA_EVENTS_GLOB = "ea-events-*.jsonl"
SUPERVISOR_GLOB = "supervisor*.jsonl"
RESOLUTION_S = 0.01  # cadences are judged at 10 ms: thread wake-ups on a loaded 2-core machine


# -- reading -------------------------------------------------------------------------------------------------------
read_rows = read_jsonl_counting   # the one lenient JSONL reader (scenarios.history)


def consumer_histories(run_path: Path) -> tuple[dict[str, list[dict]], int]:
    """consumer id -> its rows in file order (all of its files), and the unreadable line count."""
    out: dict[str, list[dict]] = {}
    bad = 0
    for path in sorted(Path(run_path).rglob(TICKS_GLOB)):
        rows, b = read_rows(path)
        bad += b
        for row in rows:
            out.setdefault(str(row.get("consumer", path.stem)), []).append(row)
    return out, bad


def supervisor_events(run_path: Path) -> tuple[list[dict], int]:
    events, bad = [], 0
    for path in sorted(Path(run_path).rglob(SUPERVISOR_GLOB)):
        rows, b = read_rows(path)
        events += rows
        bad += b
    return sorted(events, key=lambda e: e.get("wall", 0.0)), bad


def _windows_wall(windows: Sequence[FaultWindow], names: Iterable[str] | None = None,
                  end: float | None = None) -> list[tuple[float, float, FaultWindow]]:
    names = set(names or ())
    out = []
    for w in windows:
        if names and w.fault not in names:
            continue
        if w.inject_wall is None:
            continue
        out.append((w.inject_wall, w.heal_wall if w.heal_wall is not None else (end or float("inf")), w))
    return out


KILL_WINDOW_S = 1.0  # EA-1 (EA-HA 3.1): a killed EA serves again within 1 s; its kill excuses no more than that


def close_kill_windows(spans: Sequence[tuple[float, float, Any]], rows: Sequence[dict],
                       bound_s: float = KILL_WINDOW_S) -> list[tuple[float, float, Any]]:
    """The fault spans with each kill's (it has no heal) closed at the first tick of a new stream delivered after it,
    or ``bound_s`` after it, whichever is first: a kill excuses the restart, not what goes missing afterwards."""
    starts = stream_starts(rows)
    out = []
    for a, b, w in spans:
        if w.fault in KILL_FAULTS and w.heal_wall is None:
            first_new = next((t for s, t in starts if t >= a), None)
            b = min(a + bound_s, first_new if first_new is not None else float("inf"))
        out.append((a, b, w))
    return out


def _inside(t: float, spans: Sequence[tuple[float, float, Any]], after_s: float = 0.0) -> bool:
    return any(a <= t <= b + after_s for a, b, _w in spans)


def _ticks(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("t") == "tick" and isinstance(r.get("seq"), int)]


# -- the stream: duplicates, order, holes, staleness, latency ------------------------------------------------------
@dataclass
class StreamFacts:
    """What one consumer's delivered ticks show; seqs per stream."""

    delivered: int = 0
    duplicates: list[dict] = field(default_factory=list)
    out_of_order: list[dict] = field(default_factory=list)
    stale: list[dict] = field(default_factory=list)
    holes: list[dict] = field(default_factory=list)  # {"stream", "from", "to", "count", "t0", "t1"}
    # holes inside the snapshot a consumer's first TCP connection replayed: sent before it joined, never owed to it
    before_join: list[dict] = field(default_factory=list)
    latency_msc_ms: list[float] = field(default_factory=list)
    latency_path_ms: list[float] = field(default_factory=list)


def join_replay(rows: Sequence[dict]) -> dict[int, tuple[int, bool, int | None]]:
    """The tick rows of the snapshot each consumer session (from a ``start`` row, or the record's beginning) got
    from its first TCP connection before anything live: ``id(row)`` -> (session number, whether a UDP frame had
    arrived before it (a ``udp_recovered`` row of the session), the session's ``start`` wall_ns or None).

    The replay is the leading run of ``snapshot`` ticks over TCP of one stream; a live tick (not a snapshot, or over
    UDP), another stream, ``tcp_disconnected`` or ``stop`` ends it. The EA replays the latest tick of each symbol
    only (``reference.ea.streamer``), so its seqs need not be consecutive: a seq between two of them was sent before
    the connection, on TCP to nobody (the client was not added yet)."""
    out: dict[int, tuple[int, bool, int | None]] = {}
    session, start_ns, joining, udp_seen, stream = 0, None, True, False, None
    for r in rows:
        t = r.get("t")
        if t == "start":  # a (re)started consumer joins afresh
            session += 1
            start_ns = r.get("wall_ns") if isinstance(r.get("wall_ns"), int) else None
            joining, udp_seen, stream = True, False, None
        elif not joining:
            continue
        elif t == "udp_recovered":
            udp_seen = True
        elif t in ("tcp_disconnected", "stop"):
            joining = False
        elif t == "tick" and isinstance(r.get("seq"), int):
            if r.get("snapshot") and r.get("path") == "tcp" and stream in (None, str(r.get("stream"))):
                stream = str(r.get("stream"))
                out[id(r)] = (session, udp_seen, start_ns)
            else:
                joining = False
    return out


def _before_join(prev: dict, r: dict, joined: dict[int, tuple[int, bool, int | None]]) -> bool:
    """Is the hole between delivered ``prev`` and ``r`` only ticks sent before the consumer joined? Both are ticks
    of one session's first replay, and no UDP frame had reached the consumer before ``r`` (nothing of the hole was
    sent to it on UDP either), or ``r`` itself (so each seq before it) was sent before the session started."""
    a, b = joined.get(id(prev)), joined.get(id(r))
    if a is None or b is None or a[0] != b[0]:
        return False
    _session, udp_seen, start_ns = b
    sent = r.get("sent_ns")
    return not udp_seen or (start_ns is not None and isinstance(sent, int) and 0 < sent <= start_ns)


def stream_facts(rows: Sequence[dict], fault_spans: Sequence[tuple[float, float, Any]] = ()) -> StreamFacts:
    """Duplicates, out-of-order and stale deliveries, seq holes (with the wall-clock span they fall in), and the
    latencies outside ``fault_spans`` (wall seconds) of one consumer's rows. A hole inside the snapshot a
    consumer's first TCP connection replayed (``join_replay``, ``_before_join``) goes to ``before_join``, not
    ``holes``: those ticks were sent before the consumer joined and were never owed to it."""
    f = StreamFacts()
    joined = join_replay(rows)
    seen: dict[str, set[int]] = {}
    last: dict[str, dict] = {}
    order: list[str] = []  # streams in the order their first tick was delivered
    first_of_symbol: set[tuple[str, Any]] = set()
    for r in _ticks(rows):
        stream = str(r.get("stream"))
        seq = r["seq"]
        f.delivered += 1
        ref = {"seq": seq, "stream": stream, "path": r.get("path"), "deliver_ns": r.get("deliver_ns")}
        if stream not in seen:
            seen[stream] = set()
            order.append(stream)
        elif order[-1] != stream:
            f.stale.append(ref)  # BR-3: an older stream after a newer one started
        if seq in seen[stream]:
            f.duplicates.append(ref)
            continue
        prev = last.get(stream)
        if prev is not None and seq < prev["seq"]:
            f.out_of_order.append({**ref, "after": prev["seq"]})
        elif prev is not None and seq > prev["seq"] + 1:
            t0 = (prev.get("sent_ns") or prev.get("deliver_ns") or 0) / 1e9
            t1 = (r.get("sent_ns") or r.get("deliver_ns") or 0) / 1e9
            hole = {"stream": stream, "from": prev["seq"] + 1, "to": seq - 1, "count": seq - 1 - prev["seq"],
                    "t0": t0, "t1": t1}
            (f.before_join if _before_join(prev, r, joined) else f.holes).append(hole)
        seen[stream].add(seq)
        if prev is None or seq > prev["seq"]:
            last[stream] = r
        deliver = r.get("deliver_ns")
        # a restarted EA's first tick of a symbol is the broker's standing tick, as old as the broker's last change:
        # like a snapshot (the latest tick replayed to a new TCP connection), its age is not the path's latency
        restarted_first = len(order) > 1 and (stream, r.get("symbol")) not in first_of_symbol
        first_of_symbol.add((stream, r.get("symbol")))
        if (isinstance(deliver, int) and not r.get("snapshot") and not restarted_first
                and not _inside(deliver / 1e9, fault_spans, after_s=0.1)):
            if isinstance(r.get("time_msc"), int):
                f.latency_msc_ms.append(deliver / 1e6 - r["time_msc"])
            if isinstance(r.get("sent_ns"), int) and r["sent_ns"] > 0:
                f.latency_path_ms.append((deliver - r["sent_ns"]) / 1e6)
    return f


def _overlaps(t0: float, t1: float, spans: Sequence[tuple[float, float, Any]], after_s: float) -> bool:
    return any(t0 <= b + after_s and t1 >= a for a, b, _w in spans)


def _cr(name: str, rids, targets, metrics: dict, evidence: list, summary: str, lower=()):
    from scenarios.checkers import CheckResult
    from scenarios.verdicts import judge, validity

    judgements = judge(metrics, rids, targets, lower_bounds=lower)
    return CheckResult(name, validity(judgements), tuple(rids), metrics, evidence, summary, judgements)


def _none(name: str, rids, targets, metrics: Sequence[str], reason: str, bad: int = 0):
    from scenarios.checkers import CheckResult, _unmeasured

    return _unmeasured(CheckResult, name, rids, targets, metrics, reason,
                       unreadable={TICKS_GLOB: bad} if bad else None)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


TICK_METRICS = ("duplicate_ticks", "out_of_order_ticks", "missed_ticks", "stale_ticks_after_restart",
                "tick_latency_p95_ms")
# the checker table splits them by requirement: a claimed requirement needs a target for each metric of its checker
TICK_CHECKS = {"ticks": TICK_METRICS[:3], "stale_ticks": TICK_METRICS[3:4], "tick_latency": TICK_METRICS[4:]}


def check_ticks(histories: dict[str, list[dict]], windows: Sequence[FaultWindow] = (), *,
                gaps_expected_in_faults: bool = False, requirement_ids: Sequence[str] = ("EA-2",), targets=None,
                unreadable: int = 0, name: str = "ticks"):
    """Duplicates, out-of-order, missed and stale ticks, and tick latency, per consumer (the worst is judged).
    ``name``: one of ``TICK_CHECKS`` (all metrics are reported; those with a target of a claimed ID are judged)."""
    if not any(_ticks(rows) for rows in histories.values()):
        return _none(name, requirement_ids, targets, TICK_CHECKS.get(name, TICK_METRICS),
                     "no consumer delivered a tick (no ticks-*.jsonl with tick rows)", unreadable)
    live = {c: len(_live(rows)) for c, rows in histories.items()}
    if not any(live.values()):
        snapshots = sum(len(_ticks(rows)) for rows in histories.values())
        return _none(name, requirement_ids, targets, TICK_CHECKS.get(name, TICK_METRICS),
                     f"no live tick reached a consumer, only the {snapshots} snapshot tick(s) a TCP connect replays "
                     f"(the EA streamed nothing while the consumers ran: look at its ea-events log)", unreadable)
    quiet = sorted(c for c, n in live.items() if not n)
    histories = {c: rows for c, rows in histories.items() if live[c]}
    all_spans = _windows_wall(windows)
    worst = dict.fromkeys(TICK_METRICS[:4], 0)
    never_owed = 0
    silences: list[dict] = []
    lat_msc: list[float] = []
    lat_path: list[float] = []
    evidence: list[dict] = []
    for consumer, rows in sorted(histories.items()):
        spans = close_kill_windows(all_spans, rows)
        f = stream_facts(rows, spans)
        missed = [h for h in f.holes if not (gaps_expected_in_faults and _overlaps(h["t0"], h["t1"], spans, 0.1))]
        for h in f.holes:
            h["in_fault"] = _overlaps(h["t0"], h["t1"], spans, 0.1)
        worst["duplicate_ticks"] = max(worst["duplicate_ticks"], len(f.duplicates))
        worst["out_of_order_ticks"] = max(worst["out_of_order_ticks"], len(f.out_of_order))
        worst["missed_ticks"] = max(worst["missed_ticks"], sum(h["count"] for h in missed))
        worst["stale_ticks_after_restart"] = max(worst["stale_ticks_after_restart"], len(f.stale))
        never_owed += sum(h["count"] for h in f.before_join)
        quiet_spans = tick_silences(rows, all_spans)
        silences += [{"consumer": consumer, **q} for q in quiet_spans]
        lat_msc += f.latency_msc_ms
        lat_path += f.latency_path_ms
        evidence.append({"kind": "consumer", "consumer": consumer, "delivered": f.delivered,
                         "duplicates": f.duplicates[:10], "out_of_order": f.out_of_order[:10], "stale": f.stale[:10],
                         "gaps": f.holes[:20], "gaps_total": len(f.holes),
                         "gaps_in_fault": sum(1 for h in f.holes if h["in_fault"]),
                         "gaps_before_join": f.before_join[:10], "live": live[consumer],
                         "silences": quiet_spans[:10]})
    metrics: dict[str, Any] = dict(worst)
    longest = max(silences, key=lambda q: q["s"], default=None)
    metrics["longest_tick_silence_s"] = longest["s"] if longest else 0.0
    metrics["tick_silences"] = len(silences)
    metrics["tick_latency_p95_ms"] = _r(percentile(lat_msc, 95))
    metrics["tick_latency_p50_ms"] = _r(percentile(lat_msc, 50))
    metrics["tick_latency_p99_ms"] = _r(percentile(lat_msc, 99))
    metrics["tick_path_p50_ms"] = _r(percentile(lat_path, 50))
    metrics["tick_path_p99_ms"] = _r(percentile(lat_path, 99))
    if unreadable:
        evidence.append({"kind": "unreadable", "file": TICKS_GLOB, "lines": unreadable})
    summary = (f"{sum(e.get('delivered', 0) for e in evidence)} ticks delivered to {len(histories)} consumer(s): "
               f"{worst['duplicate_ticks']} duplicate, {worst['out_of_order_ticks']} out of order, "
               f"{worst['missed_ticks']} missed, {worst['stale_ticks_after_restart']} stale; latency from time_msc "
               f"p50 {metrics['tick_latency_p50_ms']} / p99 {metrics['tick_latency_p99_ms']} ms")
    if never_owed:
        summary += (f"; {never_owed} seq(s) missing from a consumer's first snapshot not owed (sent before it "
                    f"joined)")
    if longest is not None:
        summary += (f"; no live tick for {longest['s']:g} s at {longest['consumer']}"
                    + (f" (during {', '.join(longest['faults'])})" if longest["faults"] else " (in no fault window)")
                    + (f", {len(silences)} such silences" if len(silences) > 1 else ""))
    if quiet:
        summary += f"; not judged: {', '.join(quiet)} got no live tick (only a TCP connect's snapshot)"
        evidence.append({"kind": "no_live_tick", "consumers": quiet})
    return _cr(name, requirement_ids, targets, metrics, evidence, summary)


SILENCE_S = 1.0  # the simulators tick every 250 ms per symbol: a second without a live tick is an outage of the feed


def _live(rows: Iterable[dict]) -> list[dict]:
    """The live ticks of a consumer's rows: every tick but the snapshot a TCP (re)connect replays."""
    return [t for t in _ticks(rows) if not t.get("snapshot") and isinstance(t.get("deliver_ns"), int)]


def tick_silences(rows: Sequence[dict], spans: Sequence[tuple[float, float, Any]] = (),
                  bound_s: float = SILENCE_S) -> list[dict]:
    """The stretches longer than ``bound_s`` in which a consumer got no live tick: between two live ticks, and from
    its start to the first and from the last to its stop (a feed that stopped shows as one). Each with the fault
    windows it overlaps (``faults``: their descriptions): the EA reads the primary broker only, so a primary broker
    outage is a tick outage; the checker reports it (``longest_tick_silence_s``) and judges the ticks around it."""
    marks = sorted([(t["deliver_ns"] / 1e9, "tick") for t in _live(rows)]
                   + [(r["wall_ns"] / 1e9, r["t"]) for r in rows
                      if r.get("t") in ("start", "stop") and isinstance(r.get("wall_ns"), int)])
    out = []
    for (a, kind_a), (b, kind_b) in zip(marks, marks[1:]):
        if kind_a == "stop" and kind_b == "start":
            continue   # the consumer itself was down: not the feed's silence
        if b - a > bound_s:
            faults = [w.description or w.fault for x, y, w in spans if a <= y and b >= x]
            out.append({"from_wall": round(a, 3), "to_wall": round(b, 3), "s": round(b - a, 3),
                        "faults": list(dict.fromkeys(faults))})
    return out


# -- UDP -> TCP fallback ---------------------------------------------------------------------------------------------
def check_tick_fallback(histories: dict[str, list[dict]], windows: Sequence[FaultWindow], *,
                        faults: Sequence[str] | None = None, requirement_ids: Sequence[str] = ("EA-2",),
                        targets=None, unreadable: int = 0):
    """``tick_fallback_s``: within each UDP fault window, the worst send-to-delivery time of a TCP-served tick; a
    window in which ticks went missing and none came from TCP counts as its whole length."""
    spans = _windows_wall(windows, faults)
    if not spans:
        return _none("tick_fallback", requirement_ids, targets, FALLBACK_METRICS,
                     "no UDP fault window in faults.jsonl", unreadable)
    delays: list[float] = []
    worst: float | None = None
    back_to_udp: list[tuple[float, bool]] = []
    evidence: list[dict] = []
    judged_windows = 0
    for consumer, rows in sorted(histories.items()):
        ticks = _ticks(rows)
        facts = stream_facts(rows)
        for a, b, w in spans:
            b_eff = b if b != float("inf") else max((t.get("deliver_ns", 0) / 1e9 for t in ticks), default=a)
            inside = [t for t in ticks if isinstance(t.get("deliver_ns"), int) and a <= t["deliver_ns"] / 1e9 <= b_eff]
            served = [(t["deliver_ns"] - t["sent_ns"]) / 1e9 for t in inside
                      if t.get("path") == "tcp" and isinstance(t.get("sent_ns"), int) and t["sent_ns"] > 0]
            missing = [h for h in facts.holes if _overlaps(h["t0"], h["t1"], [(a, b_eff, w)], 0.0)]
            if not inside and not missing:
                continue
            judged_windows += 1
            delays += served
            value = max(served) if served else None
            if missing and not served:
                value = b_eff - a  # nothing served from TCP while ticks went missing: not within the window
            if value is not None:
                worst = value if worst is None else max(worst, value)
            lost = [r for r in rows if r.get("t") == "udp_lost" and a <= r.get("wall_ns", 0) / 1e9 <= b_eff + 1]
            back = [t for t in ticks if t.get("path") == "udp" and b_eff < t.get("deliver_ns", 0) / 1e9]
            returned = _back_to_udp(rows, a, b) if b != float("inf") else None
            if returned is not None:
                back_to_udp.append(returned)
            evidence.append({
                "kind": "window", "consumer": consumer, "fault": w.fault, "fault_id": w.fault_id,
                "delivered": len(inside), "tcp_served": len(served), "missing_seqs": sum(h["count"] for h in missing),
                "worst_s": _r(value, 6),
                "udp_lost_detected_s": _r(lost[0]["wall_ns"] / 1e9 - a, 4) if lost else None,
                "first_udp_tick_after_heal_s": _r(back[0]["deliver_ns"] / 1e9 - b, 4)
                if back and b != float("inf") else None,
                "back_to_udp_s": None if returned is None else _r(returned[0], 4),
                "back_to_udp_before_the_end": None if returned is None else not returned[1]})
    if not judged_windows:
        return _none("tick_fallback", requirement_ids, targets, FALLBACK_METRICS,
                     "no tick delivered or missed inside a UDP fault window", unreadable)
    worst_back = max(back_to_udp, default=None)
    metrics = {"tick_fallback_s": _r(worst, 6),
               "back_to_udp_s": None if worst_back is None else _r(worst_back[0], 4),
               "tick_fallback_p50_ms": _r(None if not delays else percentile(delays, 50) * 1000),
               "tick_fallback_p99_ms": _r(None if not delays else percentile(delays, 99) * 1000),
               "tick_fallback_samples": len(delays)}
    summary = (f"{len(delays)} ticks served from TCP in {judged_windows} UDP fault window(s): worst "
               f"{metrics['tick_fallback_s']} s, p50 {metrics['tick_fallback_p50_ms']} ms, p99 "
               f"{metrics['tick_fallback_p99_ms']} ms")
    summary += (f"; back on UDP {metrics['back_to_udp_s']} s after the worst heal" if worst_back else
                "; UDP never left at a heal (back_to_udp unmeasured)")
    lower = ("back_to_udp_s",) if worst_back is not None and worst_back[1] else ()
    return _cr("tick_fallback", requirement_ids, targets, metrics, evidence, summary, lower=lower)


FALLBACK_METRICS = ("tick_fallback_s", "back_to_udp_s")


def _back_to_udp(rows: Sequence[dict], inject: float, heal: float) -> tuple[float, bool] | None:
    """(seconds from ``heal`` to the consumer's ``udp_recovered`` after its last ``udp_lost`` inside the window, 0
    when it was back before the recorded heal; whether that is only a lower bound: it never came back before its
    record ended), or None when UDP never went down (no ``udp_lost``) inside the window."""
    lost = [r["wall_ns"] / 1e9 for r in rows if r.get("t") == "udp_lost"
            and isinstance(r.get("wall_ns"), int) and inject <= r["wall_ns"] / 1e9 <= heal]
    if not lost:
        return None
    after = [r["wall_ns"] / 1e9 for r in rows if r.get("t") == "udp_recovered"
             and isinstance(r.get("wall_ns"), int) and r["wall_ns"] / 1e9 > lost[-1]]
    if after:
        return max(0.0, after[0] - heal), False
    end = max((_row_wall(r) for r in rows), default=heal)
    return max(0.0, end - heal), True


# -- TCP reconnects and alerts ---------------------------------------------------------------------------------------
def tcp_outages(rows: Sequence[dict]) -> list[list[dict]]:
    """The failed ``tcp_attempt`` rows of each outage (an outage ends at a successful attempt, unless the connection
    it made ended in a bad frame: the consumer's ``bad_frame`` row of the same ``n`` makes it a failed one)."""
    outages: list[list[dict]] = []
    current: list[dict] = []
    last_ok: dict | None = None
    held: list[dict] = []
    for r in rows:
        if r.get("t") != "tcp_attempt":
            continue
        if r.get("ok"):
            if current:
                outages.append(current)
            held, current, last_ok = current, [], r
        elif r.get("bad_frame") and last_ok is not None and r.get("n") == last_ok.get("n"):
            if held and outages and outages[-1] is held:
                outages.pop()
            current, last_ok = held + [r], None
        else:
            current.append(r)
            last_ok = None
    if current:
        outages.append(current)
    return outages


RECONNECT_METRICS = ("tcp_reconnect_interval_s", "tcp_reconnect_interval_min_s", "tcp_reconnect_attempts",
                     "tcp_attempts_before_give_up", "missing_alerts")


def check_tcp_reconnect(histories: dict[str, list[dict]], *, retry_s: float = 2.0, attempts: int = 10,
                        requirement_ids: Sequence[str] = ("EA-2",), targets=None, unreadable: int = 0):
    """Cadence and count of the consumer's TCP reconnects and the alerts EA-2 requires (``tcp_gave_up`` after
    ``attempts`` failures; ``both_down`` when UDP was lost while TCP was down). An outage the consumer gave up on
    (a ``tcp_gave_up`` alert after its last attempt, or no further attempt although its record goes on for more
    than ``retry_s`` + 1 s) yields ``tcp_attempts_before_give_up``: the count furthest from ``attempts``."""
    intervals: list[float] = []
    gave_up_counts: list[int] = []
    most = 0
    missing: list[dict] = []
    evidence: list[dict] = []
    outages_seen = 0
    for consumer, rows in sorted(histories.items()):
        alerts = [r for r in rows if r.get("t") == "alert"]
        for outage in tcp_outages(rows):
            outages_seen += 1
            # an attempt's start (``started_ns``): its record is written when it failed, after a connect timeout or
            # a bad frame of varying length, so gaps between records are not EA-2's cadence (0.09 s measured for a
            # 0.1-s retry); histories without it fall back to the record time
            times = [(r.get("started_ns") or r.get("wall_ns", 0)) / 1e9 for r in outage]
            gaps = [round(round((b - a) / RESOLUTION_S) * RESOLUTION_S, 6) for a, b in zip(times, times[1:])]
            intervals += gaps
            most = max(most, len(outage))
            gave_up = [a for a in alerts if a.get("what") == "tcp_gave_up" and a.get("wall_ns", 0) >= outage[-1].get(
                "wall_ns", 0)]
            if len(outage) >= attempts and not gave_up:
                missing.append({"consumer": consumer, "alert": "tcp_gave_up", "attempts": len(outage)})
            last_ns = outage[-1].get("wall_ns", 0)
            later = [r for r in rows if r.get("wall_ns", 0) > last_ns or r.get("deliver_ns", 0) > last_ns]
            recovered = any(r.get("t") == "tcp_attempt" and r.get("ok") for r in later)
            record_end = max((max(r.get("wall_ns", 0), r.get("deliver_ns", 0)) for r in rows), default=0)
            stopped_trying = (record_end - last_ns) / 1e9 > retry_s + 1.0
            if not recovered and (gave_up or stopped_trying):
                gave_up_counts.append(len(outage))
            evidence.append({"kind": "outage", "consumer": consumer, "failed_attempts": len(outage),
                             "intervals_s": gaps[:12], "gave_up_alert": bool(gave_up)})
        # both down: UDP lost while TCP disconnected (and it had delivered before), without a both_down alert
        tcp_up = udp_up = False
        delivered = False
        episode = False
        for r in rows:
            t = r.get("t")
            if t == "tick":
                delivered = True
            elif t == "tcp_connected":
                tcp_up = True
            elif t == "tcp_disconnected":
                tcp_up = False
            elif t == "udp_recovered":
                udp_up = True
            elif t == "udp_lost":
                udp_up = False
            if delivered and not tcp_up and not udp_up and not episode:
                episode = True
                outages_seen += 1
                start = r.get("wall_ns", 0)
                alerted = any(a.get("what") == "both_down" and a.get("wall_ns", 0) >= start for a in alerts)
                if not alerted:
                    missing.append({"consumer": consumer, "alert": "both_down", "since_ns": start})
            if tcp_up or udp_up:
                episode = False
    if not outages_seen:
        return _none("tcp_reconnect", requirement_ids, targets, RECONNECT_METRICS,
                     "no failed TCP connect and no both-down episode in any consumer history", unreadable)
    metrics = {"tcp_reconnect_interval_s": max(intervals) if intervals else None,
               "tcp_reconnect_interval_min_s": min(intervals) if intervals else None,
               "tcp_reconnect_attempts": most,
               "tcp_attempts_before_give_up": max(gave_up_counts, key=lambda n: abs(n - attempts))
               if gave_up_counts else None,
               "missing_alerts": len(missing)}
    evidence.append({"kind": "missing_alerts", "items": missing})
    summary = (f"{outages_seen} outage(s): at most {most} failed attempts, intervals "
               f"{metrics['tcp_reconnect_interval_min_s']}..{metrics['tcp_reconnect_interval_s']} s (10 ms "
               f"resolution), {len(missing)} required alert(s) missing")
    return _cr("tcp_reconnect", requirement_ids, targets, metrics, evidence, summary)


# -- EA restarts -------------------------------------------------------------------------------------------------------
def stream_starts(rows: Sequence[dict]) -> list[tuple[str, float]]:
    """(stream, wall s of its first delivered tick) in delivery order."""
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for r in _ticks(rows):
        s = str(r.get("stream"))
        if s not in seen and isinstance(r.get("deliver_ns"), int):
            seen.add(s)
            out.append((s, r["deliver_ns"] / 1e9))
    return out


KILL_FAULTS = ("process-kill", "process-terminate")


def _row_wall(r: dict) -> float:
    ns = r.get("deliver_ns") if isinstance(r.get("deliver_ns"), int) else r.get("wall_ns")
    return ns / 1e9 if isinstance(ns, int) else 0.0


def check_ea_restart(histories: dict[str, list[dict]], windows: Sequence[FaultWindow], sup_events: Sequence[dict],
                     *, program_prefix: str = "ea", interval_s: float = 30.0, faults: Sequence[str] = KILL_FAULTS,
                     requirement_ids: Sequence[str] = ("EA-1",), targets=None, unreadable: int = 0):
    """``restart_s``: kill (a ``faults`` injection, else the supervisor's ``exit``) to the first tick of the EA's
    next stream at a consumer (before the next kill); ``restarts_missing``: kills after which no new stream reached
    a consumer before the next kill or the end of its record, and the supervisor did not give up either (a restart
    that never happened: ``restart_s`` is then at least the time from that kill to the end, a lower bound);
    ``failed_restarts_before_stop``: restarts within ``interval_s`` before a give-up."""
    ea_events = [e for e in sup_events if str(e.get("program", "")).startswith(program_prefix)]
    kills = sorted([w.inject_wall for w in windows if w.inject_wall is not None and w.fault in faults]
                   or [e["wall"] for e in ea_events if e.get("event") == "exit" and isinstance(e.get("wall"), float)])
    gave = [e for e in ea_events if e.get("event") == "gave_up"]
    restarts: list[float] = []
    unrestarted: list[float] = []  # kill to the end of the record, for each kill with no new stream
    evidence: list[dict] = []
    for consumer, rows in sorted(histories.items()):
        starts = stream_starts(rows)
        end = max((_row_wall(r) for r in rows), default=0.0)
        if not starts:
            continue
        for i, k in enumerate(kills):
            if k < starts[0][1]:
                continue  # before this consumer saw any stream: nothing to restart for it
            until = kills[i + 1] if i + 1 < len(kills) else float("inf")
            new = next(((s, t) for s, t in starts if k <= t < until), None)
            if new is not None:
                restarts.append(new[1] - k)
                evidence.append({"kind": "restart", "consumer": consumer, "stream": new[0], "killed_wall": k,
                                 "first_tick_wall": new[1], "restart_s": _r(new[1] - k, 4)})
            elif any(k <= g.get("wall", 0.0) < until for g in gave):
                evidence.append({"kind": "given_up", "consumer": consumer, "killed_wall": k})
            else:
                unrestarted.append(max(0.0, min(until, end) - k))
                evidence.append({"kind": "not_restarted", "consumer": consumer, "killed_wall": k,
                                 "no_new_stream_for_s": _r(unrestarted[-1], 4)})
    counts = []
    for g in gave:
        n = sum(1 for e in ea_events if e.get("event") == "restart" and e.get("program") == g.get("program")
                and g["wall"] - interval_s <= e.get("wall", 0) <= g["wall"])
        counts.append(n)
        evidence.append({"kind": "gave_up", "program": g.get("program"), "restarts_within_s": interval_s,
                         "restarts": n, "detail": g.get("detail")})
    if not restarts and not counts and not unrestarted:
        return _none("ea_restart", requirement_ids, targets, RESTART_METRICS,
                     "no EA restart seen by a consumer and no supervisor give-up", unreadable)
    worst_missing = max(unrestarted, default=None)
    lower: tuple[str, ...] = ()
    restart_s = max(restarts) if restarts else None
    if worst_missing is not None and (restart_s is None or worst_missing >= restart_s):
        restart_s, lower = worst_missing, ("restart_s",)  # it took longer than the whole rest of the run
    metrics = {"restart_s": _r(restart_s, 4),
               "restart_p50_s": _r(percentile(restarts, 50), 4) if restarts else None,
               "restarts_missing": len(unrestarted) if (restarts or unrestarted) else None,
               "failed_restarts_before_stop": max(counts) if counts else None,
               "crashes_logged": sum(1 for e in ea_events if e.get("event") == "exit")}
    summary = (f"{len(restarts)} EA restart(s) seen by consumers, worst {_r(max(restarts), 4) if restarts else None}"
               f" s; {len(unrestarted)} kill(s) never followed by a new stream; {len(counts)} give-up(s) after "
               f"{metrics['failed_restarts_before_stop']} restarts")
    return _cr("ea_restart", requirement_ids, targets, metrics, evidence, summary, lower=lower)


RESTART_METRICS = ("restart_s", "restarts_missing", "failed_restarts_before_stop")


# -- network down (EA-4) -----------------------------------------------------------------------------------------------
def ea_events(run_path: Path) -> tuple[list[dict], int]:
    events, bad = [], 0
    for path in sorted(Path(run_path).rglob(EA_EVENTS_GLOB)):
        rows, b = read_rows(path)
        events += rows
        bad += b
    return sorted(events, key=lambda e: e.get("wall", 0.0)), bad


def check_ea_network_down(events: Sequence[dict], windows: Sequence[FaultWindow], *, faults: Sequence[str] | None = None,
                          requirement_ids: Sequence[str] = ("EA-4",), targets=None, unreadable: int = 0):
    """``restart_after_network_down_s``: each network cut (fault window) to the next ``start`` of the EA it cut off
    after that EA alerted ``network_down``; ``reconnect_attempts``: the most broker reconnect attempts one EA
    process made in a row (EA-4: 10, exponential backoff)."""
    spans = _windows_wall(windows, faults)
    restarts: list[float] = []
    evidence: list[dict] = []
    for a, _b, w in spans:
        downs = [e for e in events if e.get("event") == "alert" and e.get("what") == "network_down"
                 and e.get("wall", 0) >= a]
        if not downs:
            evidence.append({"kind": "window", "fault": w.fault, "network_down_alert": False})
            continue
        d = downs[0]
        start = next((e for e in events if e.get("event") == "start" and e.get("instance") == d.get("instance")
                      and e.get("wall", 0) > d["wall"]), None)
        if start is not None:
            restarts.append(start["wall"] - a)
        evidence.append({"kind": "window", "fault": w.fault, "instance": d.get("instance"),
                         "alert_after_s": _r(d["wall"] - a, 3),
                         "restarted_after_s": _r(start["wall"] - a, 3) if start else None})
    most, run_n = 0, 0
    for e in events:
        if e.get("event") == "reconnect_attempt":
            run_n = int(e.get("n") or 0)
            most = max(most, run_n)
    if not restarts and not most:
        return _none("ea_network_down", requirement_ids, targets,
                     ("restart_after_network_down_s", "reconnect_attempts"),
                     "no network cut followed by an EA restart, and no broker reconnect attempt", unreadable)
    metrics = {"restart_after_network_down_s": _r(max(restarts), 3) if restarts else None,
               "reconnect_attempts": most or None}
    summary = (f"{len(restarts)} EA restart(s) after a network cut, worst {metrics['restart_after_network_down_s']} "
               f"s after the cut; at most {most} broker reconnect attempts in a row")
    return _cr("ea_network_down", requirement_ids, targets, metrics, evidence, summary)


# -- the checker table entries (scenarios.checkers.CHECKERS) -----------------------------------------------------------
def _tick_fn(name: str):
    def fn(view, params: dict, rids, targets):
        hist, bad = consumer_histories(view.run.path)
        windows, _ = view.fault_windows_lenient()
        return check_ticks(hist, windows, gaps_expected_in_faults=bool(params.get("gaps_expected_in_faults")),
                           requirement_ids=rids, targets=targets, unreadable=bad, name=name)
    return fn


def _fn_fallback(view, params: dict, rids, targets):
    hist, bad = consumer_histories(view.run.path)
    windows, _ = view.fault_windows_lenient()
    return check_tick_fallback(hist, windows, faults=params.get("faults"), requirement_ids=rids, targets=targets,
                               unreadable=bad)


def _fn_reconnect(view, params: dict, rids, targets):
    hist, bad = consumer_histories(view.run.path)
    return check_tcp_reconnect(hist, requirement_ids=rids, targets=targets, unreadable=bad)


def _fn_restart(view, params: dict, rids, targets):
    hist, bad = consumer_histories(view.run.path)
    windows, _ = view.fault_windows_lenient()
    sup, bad2 = supervisor_events(view.run.path)
    return check_ea_restart(hist, windows, sup, requirement_ids=rids, targets=targets, unreadable=bad + bad2)


def _fn_network_down(view, params: dict, rids, targets):
    events, bad = ea_events(view.run.path)
    windows, _ = view.fault_windows_lenient()
    return check_ea_network_down(events, windows, faults=params.get("faults"), requirement_ids=rids,
                                 targets=targets, unreadable=bad)


def checker_entries(checker_cls) -> list:
    """The four tick checkers as ``scenarios.checkers.Checker`` rows."""
    return [
        checker_cls("ticks", _tick_fn("ticks"), TICK_CHECKS["ticks"],
                    "per consumer: ticks delivered twice, out of order, never delivered (outside fault windows with "
                    "gaps_expected_in_faults)", ("gaps_expected_in_faults",)),
        checker_cls("stale_ticks", _tick_fn("stale_ticks"), TICK_CHECKS["stale_ticks"],
                    "ticks of an EA stream delivered after a newer stream (the EA restarted) began (BR-3)"),
        checker_cls("tick_latency", _tick_fn("tick_latency"), TICK_CHECKS["tick_latency"],
                    "broker time_msc to delivery, p95 outside fault windows (p50/p99 and the EA-to-consumer path "
                    "beside it)"),
        checker_cls("tick_fallback", _fn_fallback, FALLBACK_METRICS,
                    "in each UDP fault window: the worst send-to-delivery time of a tick served from TCP; after "
                    "each heal that found UDP down, the time to the consumer's return to UDP",
                    ("faults",)),
        checker_cls("tcp_reconnect", _fn_reconnect, RECONNECT_METRICS,
                    "TCP reconnect cadence and attempts per outage (EA-2: 2 s x 10) and the alerts EA-2 requires"),
        checker_cls("ea_restart", _fn_restart, RESTART_METRICS,
                    "EA kill to its new stream's first tick at a consumer (a kill never followed by one, without a "
                    "supervisor give-up, is a missing restart); restarts before the supervisor gave up"),
        checker_cls("ea_network_down", _fn_network_down, ("restart_after_network_down_s", "reconnect_attempts"),
                    "network cut between an EA and its broker to the EA's restart; broker reconnect attempts in a "
                    "row", ("faults",)),
    ]
