"""RDS-6's "else restore from DuckDB": the trade state a Redis recovery could not bring back from its own files (AOF,
else RDB, else the AOF cut at the damage; ``redis_recovery``) is written back from what the engines' DuckDB
journals hold, before the node serves anyone (issue 13: BR-1, RDS-6, ENG-4).

Why before serving: RTSS entries come back under their own stream ids (``XADD`` with the id the journal recorded),
and Redis takes an explicit id only above the stream's last one; once a producer or an engine wrote to the restarted
node, an older id can no longer be put back. So :func:`restore_offline` starts the recovered node's files in a
``redis-server`` of its own on a unix socket (no TCP port, in a private folder, as the data folder's owner), verifies
its RTS against the journals (BR-1's last step), restores what is missing, verifies again, and shuts it down (AOF
fsynced on every write: RDS-3's ``appendfsync always``); then the node starts as usual and its replicas sync from it.

What is restored, per journal record (an engine's newest readable snapshot, ``backup/duckdb``, DDB-2; the live file
is held by its engine):

- every **final outcome** (DONE/REJECTED, published or not: a final outcome is durable and publishing it is
  idempotent) through :data:`RESTORE`, the engine's own PUBLISH made restore-safe: fenced the same way (refused, -1,
  when the group's fencing counter is above the token read when the restore began: a newer lease holder came in
  meanwhile and the batch is read again under its token), the RTS hash written only when it is missing (never over
  a value a live engine wrote; ``restored_from=duckdb``), the RTRS result appended only when the results index does
  not hold its entry yet (one result per RTSS entry, the engine's HSETNX), and the RTSS entry acknowledged;
- every **RTSS entry** a journal knows (final or still open) that the stream lacks, under its own id when that id is
  above the stream's last one (otherwise it cannot go back in and is counted, ``rtss_not_restorable``); the consumer
  group's last-delivered id is moved up to the newest restored entry that has a final outcome, so no engine is
  handed a handled signal as new (a final outcome is never sent twice);
- the **fencing counter** ``<group>:fence``: raised to the newest token an engine recorded in its lease file when the
  restored value is below it (a fencing counter that goes back would let a fenced-out instance write again).

What cannot be restored from DuckDB, and is said: an RTRS result's original stream id (the journal does not know it:
the result comes back under a new id, identified by the RTSS entry it answers, like the engine's own republish);
an RTSS signal the producer had confirmed but no engine had read before the loss (no journal holds it: only its
sender can send it again; counted as ``rtss_unrecoverable`` by the drill, which read the stream before the stop);
an open signal whose entry lies below the group's last-delivered id and left the pending list (``open_stranded``).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from reference.store.redis_recovery import stop_scratch_server

FINAL_STATES = ("DONE", "REJECTED")
START_TIMEOUT_S = 60.0

# KEYS: fence, rts signal hash, rts results index, rtrs stream, rtss stream
# ARGV: token, group, entry_id, maxlen, nfields, field, value, ...
# The engine's PUBLISH (reference/engine/engine.py), restore-safe: fenced the same way; the RTS hash only when it is
# missing; the RTRS result once per entry (the results index); XACK. Returns -1 (fenced out) or 1*(RTS written) +
# 2*(RTRS appended).
RESTORE = """
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if newest > tonumber(ARGV[1]) then return -1 end
local n = tonumber(ARGV[5])
local fields = {}
for i = 1, n * 2 do fields[i] = ARGV[5 + i] end
local done = 0
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('HSET', KEYS[2], 'restored_from', 'duckdb')
  done = done + 1
end
if redis.call('HSETNX', KEYS[3], ARGV[3], '1') == 1 then
  if tonumber(ARGV[4]) > 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[4], '*', unpack(fields))
  end
  done = done + 2
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  pcall(redis.call, 'XACK', KEYS[5], ARGV[2], ARGV[3])
end
return done
"""

# KEYS: fence; ARGV: token. Raises the fencing counter to ARGV[1] when it is below; returns the value after.
RAISE_FENCE = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end
return now
"""


@dataclass
class JournalRecord:
    """One signal as an engine's journal snapshot holds it."""

    instance: str
    signal_id: str
    entry_id: str
    state: str
    signal: dict
    result: dict
    attempt: int = 0
    comment: str = ""
    broker: str = ""
    published: bool = False
    updated_ms: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _taken_ms(path: Path) -> int:
    stamp = path.name.rsplit(".t", 1)[-1].split(".", 1)[0]
    return int(stamp) if stamp.isdigit() else 0


def _instance_of(path: Path) -> str:
    # journal-<instance>.h<hwm>.t<ms>.duckdb
    return path.name[len("journal-"):].split(".h", 1)[0]


def journal_records(snapshot_dirs: Iterable[Path | str]) -> tuple[list[JournalRecord], list[str]]:
    """Every signal of each engine's newest readable snapshot (``journal-<i>.h<hwm>.t<ms>.duckdb`` in each folder),
    folded like the journal folds itself (the compacted intents, then the newest logged row of each signal), and one
    line per folder saying what was read. A signal two journals hold is taken from the newer row (``updated_ms``),
    a final one before an open one."""
    import duckdb

    rows: dict[str, JournalRecord] = {}
    notes: list[str] = []
    cols = "signal_id, entry_id, signal, state, attempt, comment, broker, result, published, updated_ms"
    for folder in snapshot_dirs:
        folder = Path(folder)
        files = sorted(folder.glob("journal-*.h*.t*.duckdb"), key=_taken_ms, reverse=True)
        for path in files:
            try:
                con = duckdb.connect(str(path), read_only=True)
                try:
                    has_log = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                                          "'intent_log'").fetchone()[0]
                    log = f"UNION ALL SELECT {cols}, seq FROM intent_log" if has_log else ""
                    got = con.execute(
                        f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY signal_id ORDER BY seq "
                        f"DESC) AS newest FROM (SELECT {cols}, -1 AS seq FROM intents {log})) WHERE newest = 1"
                    ).fetchall()
                finally:
                    con.close()
            except (duckdb.Error, OSError) as exc:   # pruned meanwhile, or damaged: the next older one
                notes.append(f"{path.name}: unreadable ({type(exc).__name__})")
                continue
            instance = _instance_of(path)
            finals = 0
            for sid, entry, sig, state, attempt, comment, broker, result, published, updated in got:
                try:
                    sig_d, res_d = json.loads(sig or "{}"), json.loads(result or "{}")
                except ValueError:
                    continue
                rec = JournalRecord(instance, str(sid), str(entry or ""), str(state or ""), sig_d, res_d,
                                    int(attempt or 0), str(comment or ""), str(broker or ""), bool(published),
                                    int(updated or 0))
                finals += rec.final
                old = rows.get(rec.signal_id)
                if old is None or (rec.final, rec.updated_ms) > (old.final, old.updated_ms):
                    rows[rec.signal_id] = rec
            notes.append(f"{path.name}: {len(got)} signal(s), {finals} final outcome(s)")
            break
        else:
            notes.append(f"{folder}: no readable snapshot")
    return sorted(rows.values(), key=lambda r: (r.entry_id, r.signal_id)), notes


def newest_lease_token(lease_files: Iterable[Path | str]) -> int:
    """The highest fencing token the engines recorded in their lease files (``<state>/lease-<instance>``: the
    lease value ``<instance>:<token>``); 0 when none is readable."""
    best = 0
    for path in lease_files:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        token = value.rpartition(":")[2]
        if token.isdigit():
            best = max(best, int(token))
    return best


def result_fields(rec: JournalRecord, token: int) -> dict[str, str]:
    """The RTS/RTRS fields of a final outcome, as the engine writes them (``Engine._result_fields``); ``instance``
    is the journal's owner, ``ts_ms`` the time the outcome was recorded."""
    r, sig = rec.result, rec.signal
    status = r.get("status") or ("executed" if rec.state == "DONE" else "rejected")
    return {"signal_id": rec.signal_id, "entry_id": rec.entry_id, "status": str(status),
            "code": str(r.get("code", "")), "reason": str(r.get("reason", "")),
            "account": str(sig.get("account", "")), "symbol": str(sig.get("symbol", "")),
            "side": str(sig.get("side", "")), "volume": str(sig.get("volume", "")),
            "order": str(r.get("order", "") or ""), "deal": str(r.get("deal", "") or ""),
            "price": str(r.get("price", "") or ""), "comment": rec.comment or str(r.get("comment", "")),
            "broker": rec.broker, "attempts": str(rec.attempt), "instance": rec.instance, "token": str(token),
            "ts_ms": str(rec.updated_ms)}


def _signal_fields(signal: dict) -> dict[str, str]:
    """An RTSS entry's fields from the journal's copy of the parsed signal (``Signal.to_fields``)."""
    return {str(k): (repr(v) if isinstance(v, float) else str(v)) for k, v in signal.items() if v is not None}


def _id(entry: str) -> tuple[int, int]:
    ms, _, seq = str(entry).partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (-1, -1)


@dataclass
class RestoreReport:
    """What :func:`restore_from_journals` found and did."""

    records: int = 0                  # signals the journals hold
    final: int = 0                    # of them with a final outcome
    rts_missing_before: int = 0       # final outcomes without their RTS hash before the restore (BR-1's check)
    rts_restored: int = 0
    rtrs_restored: int = 0            # results appended (their entry had none: new stream ids)
    rtss_missing_before: int = 0      # journal entries the stream lacked
    rtss_restored: int = 0            # put back under their own ids
    rtss_not_restorable: int = 0      # their id is below the stream's last one
    open_stranded: int = 0            # open signals no engine will be handed again (below last-delivered, not pending)
    rts_missing_after: int = 0        # BR-1's check again, after the restore
    fence_before: int | None = None
    fence_after: int | None = None
    lease_token_seen: int = 0
    group_last_delivered: str | None = None
    fenced_retries: int = 0
    seconds: float = 0.0
    examples: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _missing_rts(client, keys, records: list[JournalRecord]) -> list[JournalRecord]:
    out: list[JournalRecord] = []
    for start in range(0, len(records), 500):
        chunk = records[start:start + 500]
        pipe = client.pipeline(transaction=False)
        for rec in chunk:
            pipe.exists(keys.rts_signal(rec.signal_id))
        out += [rec for rec, there in zip(chunk, pipe.execute()) if not there]
    return out


def restore_from_journals(client, keys, records: list[JournalRecord], *, group: str, lease_token: int = 0,
                          results_maxlen: int = 0, max_fenced_retries: int = 3) -> RestoreReport:
    """Write back into Redis (``client``) what the journals hold and Redis lacks (see the module docstring);
    idempotent: a second run finds nothing missing and writes nothing. ``keys``: the group's
    ``reference.engine.contract.Keys``; ``group``: the RTSS consumer group; ``lease_token``: the newest token an
    engine recorded (:func:`newest_lease_token`)."""
    import redis as redis_lib

    started = time.monotonic()
    rep = RestoreReport(records=len(records), lease_token_seen=int(lease_token))
    finals = [r for r in records if r.final]
    rep.final = len(finals)
    # the fencing counter first: never below a token an engine held
    fence_raw = client.get(keys.fence)
    rep.fence_before = int(fence_raw) if fence_raw is not None and str(fence_raw).isdigit() else None
    if lease_token:
        client.eval(RAISE_FENCE, 1, keys.fence, int(lease_token))
    # RTSS entries under their own ids, oldest first, while they are above the stream's last id
    present = {e for e, _ in client.xrange(keys.rtss)} if client.exists(keys.rtss) else set()
    lacking = sorted((r for r in records if r.entry_id and r.entry_id not in present), key=lambda r: _id(r.entry_id))
    rep.rtss_missing_before = len(lacking)
    try:
        top = client.xinfo_stream(keys.rtss).get("last-generated-id") if client.exists(keys.rtss) else None
    except redis_lib.ResponseError:
        top = None
    top_id = _id(top) if top else (0, 0)
    not_back: list[str] = []
    for rec in lacking:
        if _id(rec.entry_id) <= top_id or _id(rec.entry_id) == (-1, -1):
            rep.rtss_not_restorable += 1
            not_back.append(rec.entry_id)
            continue
        fields = _signal_fields(rec.signal) or {"signal_id": rec.signal_id}
        fields["restored_from"] = "duckdb"
        try:
            client.xadd(keys.rtss, fields, id=rec.entry_id)
        except redis_lib.ResponseError as exc:
            rep.rtss_not_restorable += 1
            not_back.append(rec.entry_id)
            rep.notes.append(f"XADD {rec.entry_id}: {' '.join(str(exc).split())[:120]}")
            continue
        rep.rtss_restored += 1
        top_id = _id(rec.entry_id)
    # the consumer group: created if it is gone, and never behind a handled (final) signal
    handled = max((_id(r.entry_id) for r in finals if r.entry_id and _id(r.entry_id) != (-1, -1)), default=None)
    if client.exists(keys.rtss):
        groups = {g["name"]: g for g in client.xinfo_groups(keys.rtss)}
        info = groups.get(group)
        target = f"{handled[0]}-{handled[1]}" if handled else "0"
        if info is None:
            client.xgroup_create(keys.rtss, group, id=target)
            rep.group_last_delivered = target
        else:
            last = str(info.get("last-delivered-id") or "0-0")
            if handled and handled > _id(last):
                client.xgroup_setid(keys.rtss, group, id=target)
                rep.group_last_delivered = target
            else:
                rep.group_last_delivered = last
        last_id = _id(rep.group_last_delivered or "0-0")
        try:
            pending = {p["message_id"] for p in client.xpending_range(keys.rtss, group, "-", "+", 1_000_000)}
        except redis_lib.ResponseError:
            pending = set()
        rep.open_stranded = sum(1 for r in records if not r.final and r.entry_id and _id(r.entry_id) <= last_id
                                and r.entry_id not in pending)
    # RTS + RTRS of every final outcome, fenced
    missing = _missing_rts(client, keys, finals)
    rep.rts_missing_before = len(missing)
    todo = finals
    for round_ in range(max_fenced_retries + 1):
        raw = client.get(keys.fence)
        token = int(raw) if raw is not None and str(raw).isdigit() else 0
        refused: list[JournalRecord] = []
        for start in range(0, len(todo), 200):
            chunk = todo[start:start + 200]
            pipe = client.pipeline(transaction=False)
            for rec in chunk:
                fields = result_fields(rec, token)
                flat: list[str] = []
                for k, v in fields.items():
                    flat += [k, v]
                pipe.eval(RESTORE, 5, keys.fence, keys.rts_signal(rec.signal_id), keys.rts_results, keys.rtrs,
                          keys.rtss, token, group, rec.entry_id, int(results_maxlen), len(fields), *flat)
            for rec, answer in zip(chunk, pipe.execute()):
                answer = int(answer)
                if answer == -1:
                    refused.append(rec)
                    continue
                rep.rts_restored += answer & 1
                rep.rtrs_restored += (answer >> 1) & 1
        if not refused:
            break
        rep.fenced_retries = round_ + 1
        todo = refused
    else:
        rep.notes.append(f"{len(refused)} outcome(s) refused by a newer fencing token {max_fenced_retries + 1} times")
    fence_raw = client.get(keys.fence)
    rep.fence_after = int(fence_raw) if fence_raw is not None and str(fence_raw).isdigit() else None
    still = _missing_rts(client, keys, finals)
    rep.rts_missing_after = len(still)
    rep.examples = {k: v for k, v in (("rts_missing_before", [r.signal_id for r in missing[:20]]),
                                      ("rts_missing_after", [r.signal_id for r in still[:20]]),
                                      ("rtss_not_restorable", not_back[:20])) if v}
    rep.seconds = round(time.monotonic() - started, 6)
    return rep


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def restore_offline(data_dir: Path | str, keys, *, group: str, snapshot_dirs: Iterable[Path | str],
                    lease_files: Iterable[Path | str] = (), results_maxlen: int = 0,
                    appendfilename: str = "appendonly.aof", appenddirname: str = "appendonlydir",
                    dbfilename: str = "dump.rdb", redis_server: str = "redis-server") -> dict:
    """Start the stopped node's files (``data_dir``, already through BR-1's order) in a private ``redis-server`` on
    a unix socket, restore what the journals hold and it lacks (:func:`restore_from_journals`), and shut it down with
    every write in its AOF. Runs as the data folder's owner (the node's account). Returns the report as a dict, with
    ``snapshots`` (what was read) and ``error`` when the restore could not run (the node then starts as recovered)."""
    import redis

    started = time.monotonic()
    data_dir = Path(data_dir)
    records, notes = journal_records(snapshot_dirs)
    token = newest_lease_token(lease_files)
    out: dict = {"snapshots": notes}
    uid, gid = _owner(data_dir)
    as_owner = os.geteuid() == 0 and uid != 0
    work = Path(tempfile.mkdtemp(prefix="redis-restore-"))
    proc = None
    try:
        if as_owner:
            os.chown(work, uid, gid)
        sock = work / "restore.sock"
        argv = [redis_server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                "--dir", str(data_dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--appendfilename", appendfilename, "--appenddirname", appenddirname, "--dbfilename", dbfilename,
                "--daemonize", "no", "--logfile", str(work / "restore.log")]
        kw = {"user": uid, "group": gid, "extra_groups": []} if as_owner else {}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, **kw)
        except OSError as exc:
            out["error"] = f"restore not possible: {redis_server}: {exc.strerror or exc}"
            return out
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=10, decode_responses=True,
                             retry=Retry(NoBackoff(), 0))   # no hidden retries (a SHUTDOWN closes the socket)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except (redis.BusyLoadingError, redis.ConnectionError):
                pass
            if time.monotonic() >= deadline:
                out["error"] = f"the node's files did not load within {START_TIMEOUT_S:g} s"
                return out
            try:
                code = proc.wait(timeout=0.02)   # the pause between tries is a wait on the server itself
            except subprocess.TimeoutExpired:
                continue
            log = (work / "restore.log").read_text(errors="replace").strip().splitlines()
            out["error"] = f"redis-server exited with status {code} loading the files: {(log or [''])[-1][:200]}"
            return out
        out["keys_loaded"] = int(client.dbsize())
        rep = restore_from_journals(client, keys, records, group=group, lease_token=token,
                                    results_maxlen=results_maxlen)
        out.update(rep.to_dict())
        out["keys_after"] = int(client.dbsize())
        try:
            client.shutdown(nosave=True)   # appendfsync always: every restored write is in the AOF already
        except redis.ConnectionError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            out.setdefault("notes", []).append("the restore server did not stop within 30 s: killed")
        return out
    except redis.RedisError as exc:
        out["error"] = f"restore failed: {' '.join(str(exc).split())[:200]}"
        return out
    finally:
        stop_scratch_server(proc, work)
        out["seconds"] = round(time.monotonic() - started, 6)
