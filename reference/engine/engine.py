"""The trade engine's main loop: intake, exactly-once execution, outcomes, takeover (ENG-1..6, BRK-3/4, ORD-1..3).

One main thread does all trading work, so there is never a race between two sends of this process; the lease
heartbeat (``lease.py``) and the watchdog (``watchdog.py``) are the only other threads.

Life of a signal (entry ``E`` with ``signal_id`` ``S`` read from RTSS through the consumer group):

1. ``parse_signal``; an invalid entry gets ``rejected`` + reason on RTRS, an alert, and is acknowledged.
2. The local journal is asked about ``S``: a final outcome is republished (idempotent) and acknowledged; an
   in-flight intent is reconciled first. A signal that was delivered before (redelivered, claimed on takeover) or
   whose comment prefix the takeover scan found at the broker is looked up at the broker before any send.
3. Send: the intent (attempt ``n``, comment ``td<key>-<n>``, broker) is committed to the journal, the lease is
   checked (fencing: ``Lease.can_send``), and ``order_send`` is called with the fixed ``magic`` and that comment.
4. The answer is classified (``retcodes.py``): executed -> DONE; REQUOTE/PRICE_* -> resend at once with a fresh
   price (bounded, then ORD-1); MARKET_CLOSED -> DEFERRED, retried every ``market_closed_poll_s`` until the session
   opens; NO_MONEY -> alert, account suspended (RIS), REJECTED; permanent -> REJECTED with the reason and an alert;
   ambiguous (None, ERROR, TIMEOUT, CONNECTION, a call past its deadline) -> UNKNOWN, reconciled with *that* broker
   by magic + comment prefix until found (adopt) or ``ambiguous_grace_s`` passes with no trace (then resent under
   attempt ``n+1``, a new comment); anything else -> ORD-1 backoff, then ``failed_syncs`` (ORD-2), then reject+alert.
5. Outcome: committed to the journal, then one Lua script writes RTS, appends RTRS (once per entry) and XACKs the
   entry - atomically, so a Redis failover loses all three or none. If Redis is down, the outcome waits in the
   journal (``published = false``) and is flushed when Redis is back (ORD-3).

Takeover (and start): acquire the lease, wait out the previous holder (``Lease``), restore the broker choice and
suspended accounts from RIS, rebuild the RTS signal states Redis lost from the journal (ENG-4, ``rts_rebuilt``),
reconcile every local in-flight intent, scan the broker for every order with our magic (and store its positions in
RTS), claim the whole consumer group's pending list, process it, and only then read new entries.
Signals are independent: a deferred signal does not hold back later ones.
"""
from __future__ import annotations

import concurrent.futures
import json
import signal as os_signal
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .alerts import Alerts
from .broker import NO_IPC_CODE, NOT_CONNECTED, NOT_SENT, BrokerCallFailed, BrokerPool, BrokerSession, BrokerTrace, _field
from .config import EngineConfig
from .events import EventLog
from .journal import Intent, Journal, JournalFull
from reference.store.failed_syncs import Resync, RetryPolicy
from reference.store.nospace import SpaceTolerantLog
from reference.store.keeper import StoreKeeper
from reference.store.clickhouse_sync import from_engine_config as clickhouse_history
from .handoff import lease_value_file
from .lease import Lease
from .redislink import RedisLink, RedisUnavailable
from .retcodes import Outcome, classify_none, constant
from . import contract
from .contract import Keys, ResultStatus
from .signals import InvalidSignal, Signal, comment_prefix_for, order_comment, parse_signal
from .watchdog import Watchdog

PUBLISH = """
-- KEYS: fence, rts signal hash, rts results index, rtrs stream, rtss stream
-- ARGV: token, group, entry_id, maxlen, nfields, field, value, ...
-- Fenced (issue 18): refused (-1) when an instance with a newer token exists; nothing is written then.
-- Returns 1: the entry's first result (RTS, RTRS, XACK written); 0: the entry had its result already, RTS was
-- missing or agreed (a republish: RTS restored, XACK); 2: the entry had its result already and RTS holds another
-- status: RTS is kept (an outcome this instance decided but could not publish before another holder answered the
-- entry - the soak's seed 1650: a rejection flushed after the successor's fill made RTS say rejected; ENG-5).
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if newest > tonumber(ARGV[1]) then return -1 end
local n = tonumber(ARGV[5])
local fields = {}
for i = 1, n * 2 do fields[i] = ARGV[5 + i] end
local first = redis.call('HSETNX', KEYS[3], ARGV[3], '1')
if KEYS[2] ~= '' then
  local status = nil
  for i = 1, n * 2, 2 do if fields[i] == 'status' then status = fields[i + 1] end end
  local held = redis.call('HGET', KEYS[2], 'status')
  if first == 1 or not held or held == status then
    redis.call('HSET', KEYS[2], unpack(fields))
  else
    redis.call('XACK', KEYS[5], ARGV[2], ARGV[3])
    return 2
  end
end
if first == 1 then
  if tonumber(ARGV[4]) > 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[4], '*', unpack(fields))
  end
end
redis.call('XACK', KEYS[5], ARGV[2], ARGV[3])
return first
"""

# every other write of shared state, fenced the same way (KEYS[1] = fence, ARGV[1] = token):
# op "hset" (KEYS[2] hash, field/value pairs), "replace" (KEYS[2] hash deleted, then field/value pairs), "sadd",
# "hdel" (KEYS[2] hash, fields), "replace_part" (ARGV[3] a prefix, ARGV[4] a count n, then n fields, then field/value
# pairs: every field of KEYS[2] that is the prefix followed by no further ':' and the n fields are deleted, then the
# pairs written; the other fields stay - RTS positions hold every broker's, and a sync rewrites one broker's, ENG-5)
# The field/value pairs go to HSET 1,000 at a time: Lua's unpack() of more than ~8,000 values fails ("too many
# results to unpack"), and a script that fails after its DEL leaves the hash empty (Redis does not roll a script
# back): a takeover with 6,000 open positions emptied RTS positions that way (issue 11's lost-reply drill at 200/s).
# Every check comes before the first write.
FENCED_WRITE = """
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if newest > tonumber(ARGV[1]) then return -1 end
local op = ARGV[2]
if op == 'sadd' then return redis.call('SADD', KEYS[2], ARGV[3]) end
if op == 'hdel' then
  for i = 3, #ARGV, 1000 do redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
  return 1
end
if op == 'replace_part' then
  local prefix, n = ARGV[3], tonumber(ARGV[4])
  if not prefix or prefix == '' or not n or n < 0 or 4 + n > #ARGV then
    return redis.error_reply('prefix and field count expected')
  end
  local first = 5 + n
  if (#ARGV - first + 1) % 2 ~= 0 then return redis.error_reply('field/value pairs expected') end
  local gone = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    if string.sub(f, 1, #prefix) == prefix and not string.find(f, ':', #prefix + 1, true) then gone[#gone + 1] = f end
  end
  for i = 5, 4 + n do gone[#gone + 1] = ARGV[i] end
  for i = 1, #gone, 1000 do redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone))) end
  for i = first, #ARGV, 2000 do
    redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
  end
  return 1
end
if (#ARGV - 2) % 2 ~= 0 then return redis.error_reply('field/value pairs expected') end
if op == 'replace' then redis.call('DEL', KEYS[2]) end
for i = 3, #ARGV, 2000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
end
return 1
"""


# MT5 deal reasons of a close the broker made on its own (DEAL_REASON_SL, _TP, _SO), and DEAL_ENTRY_OUT
BROKER_CLOSE_REASONS = frozenset({4, 5, 6})
DEAL_ENTRY_IN, DEAL_ENTRY_OUT = 0, 1


class LeaseLost(Exception):
    """The lease was lost (or is not usable) just before a send: stop trading, become passive."""


def now_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    def __init__(self, config: EngineConfig, echo_events: bool = False):
        self.cfg = config
        self.keys = Keys.of(config)
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.state_dir / f"events-{config.instance}.jsonl"
        # the event log shares the journal's filesystem: a full disk drops events (counted), never the engine
        self.emit = SpaceTolerantLog(EventLog(self.events_path, config.instance, echo=echo_events))
        # repairs a damaged file at open (issue 13, DDB-3); raises JournalLocked when another process holds it
        self.journal = Journal(self.state_dir / f"journal-{config.instance}.duckdb",
                               backup_dir=self.state_dir / "backup" / "duckdb",
                               snapshots_kept=config.store_snapshots_kept,
                               checkpoint_threshold_mb=config.store_checkpoint_threshold_mb,
                               verify_mb_per_check=config.store_verify_mb_per_check,
                               memory_window=config.journal_memory_window)
        self.redis = RedisLink(config, "main", on_rediscover=self._on_rediscover, on_attempt=self._on_redis_attempt)
        self.alerts = Alerts(self.redis, config.alerts_key, config.instance, self.emit, config.webhook_url,
                             config.alerts_maxlen)
        if self.journal.repair is not None:
            self.emit("journal_repaired", **self.journal.repair.fields())
            self.alerts.raise_("journal_repaired", self.journal.repair.line, file=self.journal.repair.file,
                               evidence=self.journal.repair.evidence)
        # snapshots after changes (DDB-2), health every second (DDB-6), failed_syncs resync (BR-2)
        self.store_keeper = StoreKeeper(
            self.journal, emit=self.emit, alert=self.alerts.raise_, snapshot_s=config.store_snapshot_interval_s,
            health_s=config.store_health_check_s,
            resync=Resync(self.journal, RetryPolicy(tuple(config.failed_sync_backoff_s), config.failed_sync_retry_s),
                          notify=self._failed_sync_exhausted))
        # final outcomes to ClickHouse + its backups (CH-1..3, issue 13); None when clickhouse_url is "" (off)
        self.clickhouse = clickhouse_history(config, self.journal, emit=self.emit, alert=self.alerts.raise_)
        self.lease = Lease(config, RedisLink(config, "lease"), self.emit,
                           value_file=lease_value_file(self.state_dir, config.instance))
        self.brokers = BrokerPool(config, self.emit, self.alerts.raise_)
        self.watchdog = Watchdog(config.watchdog_timeout_s, self.emit)
        self.stop_event = threading.Event()
        self.consumer = config.instance
        self.group = config.group_name
        self.deferred: dict[str, Intent] = {}      # open intents of signals in our PEL, by signal id
        # sends not answered within park_after_s: signal id -> (intent, session, request, lane, future)
        self.parked: dict[str, tuple] = {}
        self._in_batch: dict[str, str] = {}          # signal id -> entry id of the batch being read
        self._scan_complete = False   # the last takeover scan reached every broker
        self._scanned = False         # claim_pending runs right after a complete scan
        self.known: dict[str, BrokerTrace] = {}    # comment prefix -> trace, from the broker scans (scan_broker)
        self._scan_marks: dict[str, int | None] = {}   # broker -> newest history time (broker s) it reported
        self._next_passive_scan = 0.0
        self._next_orphan_check = 0.0
        self._handoff_in_flight: dict[str, int] = {}   # signal id -> ms: in flight at a crashed holder (handoff)
        self._ambiguity_checked: dict[str, float] = {}   # broker -> monotonic time of its last post-ambiguity check
        self.suspended_accounts: set[str] = set()
        self.trading = False                       # takeover done and lease held
        self._acquired_at = 0.0
        self._group_ready = False
        self._redis_down_since: float | None = None
        self._errors_in_row = 0
        self._next_ris_refresh = 0.0
        self._next_close_sweep = 0.0
        self._closes_seen_until: datetime | None = None   # broker-side closes read up to here (issue 20)
        # "<broker>:<ticket>" of our pending orders not filled yet (sweep_broker_closes; tickets overlap across brokers)
        self._pending_orders: set[str] = set()
        self._next_primary_check = 0.0
        self._recheck_after_failover = False
        self._reread_pending = False
        self._entry_failures: dict[str, int] = {}
        self.stats = {"received": 0, "executed": 0, "rejected": 0, "acked": 0, "sends": 0}

    # --- keys (the wire contract: reference/engine/contract.py) -------------------------------------------------
    def _rts_signal(self, signal_id: str) -> str:
        return self.keys.rts_signal(signal_id)

    @property
    def _rts_results(self) -> str:
        return self.keys.rts_results

    @property
    def _rts_positions(self) -> str:
        return self.keys.rts_positions

    @property
    def _ris_session(self) -> str:
        return self.keys.ris_session

    @property
    def _ris_suspended(self) -> str:
        return self.keys.ris_suspended

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            self.stop_event.set()
        os_signal.signal(os_signal.SIGTERM, stop)
        os_signal.signal(os_signal.SIGINT, stop)

    def run(self) -> None:
        self.emit("engine_start", group=self.cfg.group, brokers=[s.name for s in self.brokers.sessions],
                  magic=self.cfg.magic, journal=self.journal.counts())
        lease_thread = threading.Thread(target=self.lease.run, name="lease", daemon=True)
        lease_thread.start()
        self.watchdog.start()
        self.store_keeper.start()
        if self.clickhouse is not None:
            self.clickhouse.start()
        try:
            while not self.stop_event.is_set():
                self.watchdog.beat("loop")
                try:
                    self.step()
                    self._errors_in_row = 0
                except LeaseLost as exc:
                    self._become_passive(str(exc))
                except RedisUnavailable as exc:
                    self._redis_down(str(exc))
                    self.stop_event.wait(0.1)
                except JournalFull:   # nothing durable, nothing sent or acknowledged; the store keeper alerts
                    self._reread_pending = True
                    self.stop_event.wait(self.cfg.store_disk_full_retry_s)
                except Exception as exc:  # noqa: BLE001 - log, pause, and let a crash-loop reach the supervisor
                    self._errors_in_row += 1
                    self.emit("engine_error", error=repr(exc), traceback=traceback.format_exc())
                    if self._errors_in_row >= 50:
                        raise
                    self.stop_event.wait(0.2)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.parked:   # let the sends in flight answer (or pass their deadline) and keep their outcomes
            try:
                self.collect_parked(wait_s=self.cfg.broker_timeout_s + 0.5)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway; the journal says SENDING
                self.emit("engine_error", error=repr(exc), where="shutdown")
        self.watchdog.stop()
        self.lease.stop()
        in_flight = [i.signal_id for i in self.journal.in_flight()] if self.lease.value is not None else []
        if in_flight:
            # an order with no answer may still execute at a slow broker: a successor that took over at once would
            # not find it in its scan and send the signal again (issue 16); the lease runs out instead (ENG-1 TTL)
            self.emit("lease_kept_to_lapse", in_flight=len(in_flight), example=in_flight[0])
        else:
            self.lease.release()
        self.emit("engine_stop", stats=self.stats)
        self.brokers.close()
        if self.clickhouse is not None:
            self.clickhouse.stop()
        self.store_keeper.stop()
        self.journal.close()
        self.emit.close()

    def _failed_sync_exhausted(self, row: dict) -> None:
        """BR-2: a failed write's retries are spent; the user is told, and it is still retried (ORD-2)."""
        self.alerts.raise_("failed_sync_exhausted", f"{row['kind']} {row['sync_id']} has not reached "
                           f"{row['target']} after {row['attempts']} tries (last error: {row['last_error']}); "
                           f"still retried every {self.cfg.failed_sync_retry_s:g} s", target=row["target"],
                           sync_kind=row["kind"], sync_id=row["sync_id"])

    def _on_redis_attempt(self, ok: bool, failures: int, error: str, took_s: float) -> None:
        """ORD-3's cadence (issue 19): one ``redis_attempt`` line per reconnect attempt of the main link (a first
        success after failures too), timed by the checkers from the lines' clocks."""
        self.emit("redis_attempt", ok=ok, failures=failures, error=error[:200] or None, took_s=round(took_s, 4))

    def _on_rediscover(self, failures: int) -> None:
        self.emit("redis_rediscover", failures=failures)
        self.alerts.raise_("redis_unreachable", f"Redis unreachable after {failures} attempts; rediscovering the "
                           f"primary through Sentinel (ORD-3)", failures=failures)

    def _follow_primary(self) -> None:
        """Switch to the primary the Sentinels name now, even while the old connection still works, and after a
        change re-verify what the failover may have lost (issue 12; ENG-4 beyond start and takeover)."""
        moved = self.redis.primary_moved()
        if moved is not None:
            self.emit("redis_primary_changed", old=list(moved[0]), new=list(moved[1]), seen="sentinels")
            self.redis.mark_broken()
            self.redis.ensure(force=True)
            self.redis.take_reconnect_move()   # the same change, already logged
            self._recheck_after_failover = True
        self._take_reconnect_move()
        if self._recheck_after_failover and self.trading and self.lease.held and self.redis.connected:
            self._recheck_after_failover = False
            self.after_primary_change()

    def _take_reconnect_move(self) -> None:
        """A reconnect (after READONLY or a dropped connection) that landed on another primary is a primary change
        too: logged and re-verified like one seen from the Sentinels (found by a new user: it was silent)."""
        moved = self.redis.take_reconnect_move()
        if moved is not None:
            self.emit("redis_primary_changed", old=list(moved[0]), new=list(moved[1]), seen="reconnect")
            self._recheck_after_failover = True

    def after_primary_change(self) -> None:
        """What an asynchronous failover can lose, put back from the journal: the stream's consumer group, the RTS
        hashes (``rebuild_rts``), and the RTRS results of recent outcomes (republished where the new primary's
        results index does not know their entry); the RTS positions from the broker; then the pending list is read
        again."""
        self._group_ready = False
        self._ensure_group()
        rebuilt = self.rebuild_rts()
        since = now_ms() - int(self.cfg.republish_window_s * 1000)
        recent = [i for i in self.journal.published_final() if (i.updated_ms or 0) >= since]
        missing: list[Intent] = []
        for start in range(0, len(recent), 500):
            chunk = recent[start:start + 500]

            def known(r, chunk=chunk):
                pipe = r.pipeline(transaction=False)
                for intent in chunk:
                    pipe.hexists(self._rts_results, intent.entry_id)
                return pipe.execute()
            missing += [i for i, there in zip(chunk, self.redis.run(known)) if not there]
        if missing:
            self.publish_many(missing)
        # the RTS positions the old primary held and did not replicate: the broker's list is the truth (BRK-3)
        positions = self.sync_positions("primary changed")
        self._reread_pending = True
        self.emit("failover_rechecked", rts_rebuilt=rebuilt["signals"], results_republished=len(missing),
                  checked=len(recent), positions=positions)
        if missing or rebuilt["signals"]:
            self.alerts.raise_("failover_repaired", f"a Redis primary change lost {len(missing)} result(s) and "
                               f"{rebuilt['signals']} trade state(s) of group {self.cfg.group}: republished from the "
                               f"local journal", republished=len(missing), rebuilt=rebuilt["signals"])

    def _redis_down(self, why: str) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            self.emit("redis_unavailable", error=why)

    def _redis_up(self) -> None:
        if self._redis_down_since is not None:
            self.emit("redis_recovered", down_s=round(time.monotonic() - self._redis_down_since, 3),
                      address=self.redis.address)
            self._redis_down_since = None

    def _become_passive(self, why: str) -> None:
        if self.trading:
            self.emit("passive", reason=why)
        self.trading = False
        self.deferred.clear()   # ``known`` stays: the passive keeps it warm (scan_broker)

    # --- the loop -----------------------------------------------------------------------------------------------
    def step(self) -> None:
        if self.redis.ensure():
            self._redis_up()
            self._take_reconnect_move()
        if time.monotonic() >= self._next_primary_check:
            self._next_primary_check = time.monotonic() + self.cfg.primary_check_s
            self._follow_primary()
        self.brokers.tick()
        if self.redis.connected:
            if self.trading and self.lease.held:   # a passive instance's writes would be fenced out anyway
                self.flush_outcomes()
            self.alerts.flush()
        if not self.lease.held:
            if self.trading:
                self._become_passive("lease not held")
            if self.cfg.passive_scan_s > 0 and time.monotonic() >= self._next_passive_scan:
                self._next_passive_scan = time.monotonic() + self.cfg.passive_scan_s
                self.scan_broker(quiet=True, connect=False)   # warm: a takeover reads seconds of history, not days
            self.lease.changed.clear()
            self.lease.changed.wait(self.cfg.passive_poll_s)
            return
        if not self.trading:
            self._prepare_takeover()
            return
        if self.brokers.recovered.is_set():
            self.brokers.recovered.clear()
            self.on_broker_recovered()
        if time.monotonic() >= self._next_ris_refresh:
            self._refresh_ris()
        if not self.brokers.usable:
            self.stop_event.wait(0.1)   # BRK-2/BRK-5: signals suspended while no broker is usable
            return
        if time.monotonic() >= self._next_close_sweep:
            self._next_close_sweep = time.monotonic() + self.cfg.broker_close_poll_s
            self.sweep_broker_closes()
        if self._reread_pending:
            self.claim_pending()        # entries left pending by an error are judged again
        if time.monotonic() >= self._next_orphan_check:
            self._next_orphan_check = time.monotonic() + self.cfg.orphan_check_s
            self.claim_orphans()
        self.collect_parked()
        self.process_due()
        if not self.read_new():
            self.journal.flush_published()   # idle: write the published flags that wait for a transaction

    # --- takeover -----------------------------------------------------------------------------------------------
    def _prepare_takeover(self) -> None:
        if self._acquired_at == 0.0 or self.lease.acquired_count != getattr(self, "_acq_seen", 0):
            self._acq_seen = self.lease.acquired_count
            self._acquired_at = time.monotonic()
        wait = self.lease.ready_in()
        if wait > 0:
            self.stop_event.wait(min(wait, 0.1))   # waiting out the previous holder's last possible send
            return
        if not self.brokers.active.connected:
            self.stop_event.wait(0.1)
            return
        lease_at, main_at = self.lease.link.address, self.redis.address
        if lease_at is not None and main_at is not None and lease_at != main_at:
            # the lease was just taken on the primary the Sentinels name now; the main link may still sit on the
            # old one (cut off: every takeover step would wait out a socket timeout first; measured 1 s, issue 12)
            self.emit("redis_primary_changed", old=list(main_at), new=list(lease_at), seen="lease")
            self.redis.mark_broken()
            self.redis.ensure(force=True)
            self.redis.take_reconnect_move()
            self._recheck_after_failover = True
        self._group_ready = False           # the stream and its group may be gone (Redis lost its data)
        self._ensure_group()
        self._restore_ris()
        rebuilt = self.rebuild_rts()
        self.reconcile_in_flight()
        self.scan_broker()
        positions = self.sync_positions("takeover")
        if rebuilt["signals"]:
            self.emit("rts_rebuilt", positions=positions, **rebuilt)
            self.alerts.raise_("rts_rebuilt", f"RTS of group {self.cfg.group} was lost in Redis: rebuilt "
                               f"{rebuilt['signals']} signal states from the local journal and {positions} "
                               f"positions from the broker (ENG-4)", positions=positions, **rebuilt)
        self._handoff_in_flight = self._read_handoff_in_flight()
        self.trading = True
        took = time.monotonic() - self._acquired_at
        self.emit("takeover_ready", seconds=round(took, 3), token=self.lease.token, known_orders=len(self.known))
        self.claim_pending(after_scan=self._scan_complete)

    def _read_handoff_in_flight(self) -> dict[str, int]:
        """The orders a crashed holder had in flight, as its supervisor named them at the release
        (``handoff.release_after_exit``): ``{signal_id: ms}``; each is treated as an ambiguous send (ENG-5)."""
        raw = self.redis.run(lambda r: r.hgetall(self.keys.lease_in_flight)) or {}
        out = {}
        for sid, ms in raw.items():
            sid = sid.decode() if isinstance(sid, bytes) else str(sid)
            try:
                out[sid] = int(ms)
            except (TypeError, ValueError):
                out[sid] = now_ms()
        if out:
            self.emit("handoff_in_flight", count=len(out))
        return out

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        import redis
        try:
            self.redis.run(lambda r: r.xgroup_create(self.cfg.rtss_key, self.group, id="0", mkstream=True))
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _restore_ris(self) -> None:
        """BRK-3: restore broker state from RIS (the broker in use, suspended accounts)."""
        session = self.redis.run(lambda r: r.hgetall(self._ris_session))
        name = session.get("active_broker")
        if name and name != self.brokers.active.name:
            target = self.brokers.session(name)
            if target is not None:
                idx = self.brokers.sessions.index(target)
                if self.brokers.ensure_session(name) is not None:
                    self.brokers.index = idx
                    self.emit("broker_restored_from_ris", broker=name)
        self._refresh_ris()

    def _refresh_ris(self) -> None:
        self._next_ris_refresh = time.monotonic() + 1.0
        members = set(self.redis.run(lambda r: r.smembers(self._ris_suspended)))
        for account in self.suspended_accounts - members:
            self.emit("account_resumed", account=account)
        self.suspended_accounts = members
        active = self.brokers.active
        self._fenced_write("hset", self._ris_session, *_pairs({
            "active_broker": active.name, "broker_connected": int(active.connected),
            "suspended": int(self.brokers.suspended), "instance": self.cfg.instance,
            "token": self.lease.token, "ts_ms": now_ms()}))

    def rebuild_rts(self, batch: int = 500) -> dict[str, int]:
        """ENG-4: rebuild the per-signal RTS hashes that Redis lost (restart without data, FLUSHALL, a failover
        that dropped acknowledged writes) from the local journal's published outcomes. Positions are rebuilt from
        the broker by ``sync_positions`` right after (the broker is the truth for positions).

        Only the state hash is written - not the results index or RTRS: an entry whose publish was lost is pending
        again and its republish must still append its result to RTRS once (the index decides that). Nothing is
        sent to any broker here."""
        counts = {"checked": 0, "signals": 0, "executed": 0, "rejected": 0}
        done = self.journal.published_final()
        for start in range(0, len(done), batch):
            self.watchdog.beat("rebuild_rts")
            chunk = done[start:start + batch]
            keys = [self._rts_signal(i.signal_id) for i in chunk]

            def exists(r):
                pipe = r.pipeline(transaction=False)
                for key in keys:
                    pipe.exists(key)
                return pipe.execute()
            present = self.redis.run(exists)
            missing = [(key, i) for key, i, there in zip(keys, chunk, present) if not there]
            counts["checked"] += len(chunk)
            if not missing:
                continue

            token = self.lease.token

            def write(r):
                pipe = r.pipeline(transaction=False)
                for key, intent in missing:
                    pipe.eval(FENCED_WRITE, 2, self.keys.fence, key, token, "hset", *_pairs({
                        **self._result_fields(intent), "ts_ms": str(intent.updated_ms), "restored_from": "journal"}))
                return pipe.execute()
            if any(int(a) == -1 for a in self.redis.run(write)):
                self._fenced_out("rebuild_rts", token)
            counts["signals"] += len(missing)
            for _key, intent in missing:
                counts["executed" if intent.state == "DONE" else "rejected"] += 1
        return counts

    def reconcile_in_flight(self) -> None:
        """Every local intent that may have reached a broker is settled before any new signal is read (one trace
        query per broker for all of them)."""
        unknown: list[Intent] = []
        for intent in self.journal.in_flight():
            self.watchdog.beat("reconcile_in_flight")
            if intent.state == "SENDING":
                intent.state = "UNKNOWN"
                intent.ambiguous_since_ms = intent.ambiguous_since_ms or intent.updated_ms
            if intent.state == "UNKNOWN":
                unknown.append(intent)   # a still-open intent is picked up again with its pending entry
        if unknown:
            self.reconcile_many(unknown)

    def scan_broker(self, quiet: bool = False, connect: bool = True) -> None:
        """Every order with our magic at every reachable broker: what any instance sent before the takeover.

        Incremental (the soak of 2026-12-01: a takeover took 0.04 s + 0.068 s per 1,000 orders of the 7-day lookback,
        so ENG-1's 3 s was gone past ~44,000 orders): ``known`` is kept for the life of the process, and a broker
        this process has scanned completely before is asked only for its history from the newest time it then
        reported, less ``scan_overlap_s`` (in the broker's own clock); its live orders and positions are read whole each
        time. A passive instance keeps it warm (``passive_scan_s``), so a takeover reads seconds of history, not
        days. Entries older than the lookback are dropped. ``quiet``: no ``broker_scan`` event; ``connect``: False
        reads only brokers already connected (the passive's refresh: it never waits on a connect, so a takeover
        is not held up behind one; a hung broker can still hold it for one call timeout, as the takeover's own scan
        of it would)."""
        self._scan_complete = True
        started, read, history_read = time.monotonic(), 0, 0
        full = not any(self._scan_marks.values())   # no history scanned yet: this one reads the lookback
        for session in self.brokers.sessions:
            if not connect and not session.connected:
                self._scan_complete = False
                continue
            live = self.brokers.ensure_session(session.name)
            counts = self._scan_session(live) if live is not None else None
            if counts is None:
                self._scan_complete = False
                continue
            read, history_read = read + counts[0], history_read + counts[1]
        self._prune_known()
        if not quiet or full:
            self.emit("broker_scan", orders=len(self.known), read=read, history_read=history_read,
                      took_s=round(time.monotonic() - started, 4), incremental=not full, passive=quiet)

    def _scan_session(self, session: BrokerSession) -> tuple[int, int] | None:
        """One broker's part of :meth:`scan_broker` (incremental from its mark once it has one) into ``known``:
        ``(traces read, history traces read)``, or None when the broker did not answer in full (``scan_failed``;
        its mark is then left where it was). Also the lookup of a signal (``_lookup``, ``reconcile_many``): before
        2026-12-02 each lookup read the broker's whole 7-day history (0.44 s and 38 MB of rows at 9,000 signals
        of it), once per resent signal and per batch of lost replies."""
        mark = self._scan_marks.get(session.name)
        read = history_read = newest = 0
        try:
            for trace in session.iter_traces(self.cfg.magic,
                                             since_s=None if mark is None else mark - int(self.cfg.scan_overlap_s)):
                read += 1
                if trace.time_s:
                    history_read += 1
                    newest = max(newest, trace.time_s)
                prefix = trace.comment[:trace.comment.rfind("-") + 1]
                best = self.known.get(prefix)
                if best is None or _trace_rank(trace) > _trace_rank(best):
                    self.known[prefix] = trace
        except BrokerCallFailed as exc:
            self.emit("scan_failed", broker=session.name, error=str(exc))
            return None
        self._scan_marks[session.name] = max(newest, mark or 0) or None
        return read, history_read

    def _prune_known(self) -> None:
        """Drop what the lookback no longer covers (history older than ``reconcile_lookback_s`` before the newest
        broker time seen); live orders and positions (time 0) stay."""
        newest = max((m for m in self._scan_marks.values() if m), default=0)
        if not newest:
            return
        oldest = newest - self.cfg.reconcile_lookback_s
        stale = [p for p, t in self.known.items() if 0 < t.time_s < oldest]
        for prefix in stale:
            del self.known[prefix]

    def claim_orphans(self) -> None:
        """Entries pending on another consumer while this instance holds the lease: read by a superseded holder
        after the takeover's claim (it woke from a pause, read a batch, then found its lease gone and went passive
        without an answer: a fresh-clone user's stateful run, seed 22, one acknowledged signal stranded in engine
        A's pending list while B traded on). The holder's fencing keeps the old one from sending them, so they are
        orphans: claimed and judged like a takeover's (after an incremental broker scan). One XPENDING a call."""
        summary = self.redis.run(lambda r: r.xpending(self.cfg.rtss_key, self.group)) or {}
        others = {c["name"]: c["pending"] for c in summary.get("consumers") or []
                  if (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]) != self.consumer
                  and int(c["pending"]) > 0}
        if not others:
            return
        self.emit("orphans_found", consumers={(k.decode() if isinstance(k, bytes) else k): int(v)
                                              for k, v in others.items()})
        self.scan_broker(quiet=True)
        self.claim_pending(after_scan=self._scan_complete)

    def claim_pending(self, after_scan: bool = False) -> None:
        """Take over the whole group's pending list (other consumers' entries too), then process ours in order.
        ``after_scan``: right after the takeover's broker scan, which saw every order the old holder could have
        sent (it stopped sending before its lease lapsed), so an entry it never sent needs no lookup of its own."""
        self._reread_pending = False
        self._scanned = after_scan
        start = "-"
        while True:
            rows = self.redis.run(lambda r: r.xpending_range(self.cfg.rtss_key, self.group, start, "+", 200))
            if not rows:
                break
            others = [row["message_id"] for row in rows if row["consumer"] != self.consumer]
            if others:
                self.redis.run(lambda r: r.xclaim(self.cfg.rtss_key, self.group, self.consumer, 0, others,
                                                  justid=True))
                self.emit("claimed", count=len(others))
            if len(rows) < 200:
                break
            start = "(" + rows[-1]["message_id"]
        last = "0"
        while True:
            self.watchdog.beat("claim_pending")
            resp = self.redis.run(lambda r: r.xreadgroup(self.group, self.consumer, {self.cfg.rtss_key: last},
                                                         count=100))
            entries = resp[0][1] if resp else []
            if not entries:
                break
            ready: list[Intent] = []
            for entry_id, fields in entries:
                last = entry_id
                if signal_id_of(fields) in self.deferred or signal_id_of(fields) in self.parked:
                    continue  # already an open intent of ours: it is processed when due (or answered)
                intent = self.handle_entry_safely(entry_id, fields, redelivered=True)
                if intent is not None:
                    ready.append(intent)
            self._send_read_batch(ready)
        self._scanned = False

    # --- intake -------------------------------------------------------------------------------------------------
    def read_new(self) -> int:
        """Read and handle the next batch of new RTSS entries; returns how many were read."""
        import redis as redis_lib
        try:
            resp = self.redis.run(lambda r: r.xreadgroup(
                self.group, self.consumer, {self.cfg.rtss_key: ">"}, count=self.cfg.read_count,
                block=self.cfg.read_block_ms))
        except redis_lib.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the stream or its consumer group is gone (deleted, or a failover lost it): make it again
            self.emit("consumer_group_missing", error=str(exc))
            self._group_ready = False
            self._ensure_group()
            return 0
        ready: list[Intent] = []
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                self.watchdog.beat("read_new")
                intent = self.handle_entry_safely(entry_id, fields, redelivered=False)
                if intent is not None:
                    ready.append(intent)
        self._send_read_batch(ready)
        return sum(len(entries) for _stream, entries in resp or [])

    def _send_read_batch(self, ready: list[Intent]) -> None:
        """Send what one read of RTSS made ready, ``send_chunk`` at a time (each chunk journaled, sent, journaled
        and published before the next: results of a large read come out as its chunks finish); then forget which
        signal ids that read held."""
        chunk = self.cfg.send_chunk
        try:
            for start in range(0, len(ready), chunk):
                self.send_batch(ready[start:start + chunk])
        finally:
            self._in_batch.clear()

    def handle_entry_safely(self, entry_id: str, fields: dict | None, redelivered: bool) -> Intent | None:
        """handle_entry; an unexpected error leaves the entry pending (re-read later), and an entry that keeps
        failing before any send is rejected with ENGINE_ERROR so it cannot block the stream."""
        try:
            return self.handle_entry(entry_id, fields, redelivered)
        except (LeaseLost, RedisUnavailable, JournalFull):
            self._reread_pending = True
            raise
        except Exception as exc:  # noqa: BLE001
            self._entry_failed(entry_id, signal_id_of(fields), exc)
            return None

    def _entry_failed(self, entry_id: str, signal_id: str | None, exc: Exception) -> None:
        self._reread_pending = True
        count = self._entry_failures[entry_id] = self._entry_failures.get(entry_id, 0) + 1
        self.emit("engine_error", entry_id=entry_id, error=repr(exc), traceback=traceback.format_exc(),
                  failures=count)
        intent = self.journal.get(signal_id) if signal_id else None
        never_sent = intent is None or (intent.attempt == 0 and not intent.final)
        if count >= 3 and never_sent:
            self.reject_entry(entry_id, signal_id, "ENGINE_ERROR",
                              f"the engine failed on this entry {count} times: {type(exc).__name__}", alert=True)

    def handle_entry(self, entry_id: str, fields: dict | None, redelivered: bool) -> Intent | None:
        """Judge one RTSS entry; returns the intent when it is ready for a plain send (the caller sends the whole
        batch with one journal commit), None when it was settled here (rejected, republished, adopted,
        deferred, reconciled)."""
        self.stats["received"] += 1
        if fields is None:   # the entry was trimmed/deleted while pending
            fields = {}
        sig = parse_signal(fields, max_volume=self.cfg.max_volume, now_ms=now_ms(),
                           max_age_s=self.cfg.signal_max_age_s)
        if getattr(sig, "signal_id", None) in self.parked:
            return None   # its order is in flight on a send lane: its answer settles it
        self.emit("signal_received", entry_id=entry_id, signal_id=getattr(sig, "signal_id", ""),
                  redelivered=redelivered)
        if isinstance(sig, InvalidSignal):
            self.reject_entry(entry_id, sig.signal_id, sig.code, sig.reason, alert=True)
            return
        in_batch = self._in_batch.get(sig.signal_id)
        if in_batch is not None and in_batch != entry_id:
            # the same signal id twice in one read batch: the first is not in the journal yet (the batch is
            # journaled as a whole), so this check is the one that keeps it to one order
            self.reject_entry(entry_id, sig.signal_id, "DUPLICATE_SIGNAL",
                              f"signal id already taken by entry {in_batch} of the same batch", alert=False,
                              status=ResultStatus.DUPLICATE.value)
            return
        existing = self.journal.get(sig.signal_id)
        if existing is not None and existing.entry_id != entry_id and (
                existing.final or existing.attempt > 0 or existing.state in ("SENDING", "UNKNOWN")):
            # the producer sent the same signal id twice: one order only; this entry gets its own answer
            self.reject_entry(entry_id, sig.signal_id, "DUPLICATE_SIGNAL",
                              f"signal id already handled in entry {existing.entry_id} "
                              f"({existing.result.get('status', existing.state.lower())})", alert=False,
                              status=ResultStatus.DUPLICATE.value)
            return
        if existing is not None and existing.final:
            try:
                self.publish(existing)
            except RedisUnavailable:
                self.journal.put(existing)   # published stays false: flushed when Redis is back
                raise
            return
        intent = existing or Intent(signal_id=sig.signal_id, entry_id=entry_id, signal=sig.to_dict(), state="NEW")
        since = self._handoff_in_flight.pop(sig.signal_id, None) if existing is None else None
        if since is not None:
            # in flight at a crashed holder (its supervisor named it): an ambiguous send of that holder's, looked up
            # at the broker until found or ambiguous_grace_s passes, never sent blindly (a slow broker may still
            # execute it after our scan; issue 16)
            intent.state, intent.ambiguous_since_ms = "UNKNOWN", since
            intent.broker = intent.broker or self.brokers.active.name
            self.emit("in_flight_at_handoff", signal_id=sig.signal_id, since_ms=since)
        if intent.state in ("SENDING", "UNKNOWN"):
            intent.state = "UNKNOWN"
            intent.ambiguous_since_ms = intent.ambiguous_since_ms or intent.updated_ms
            self.reconcile(intent)
            if not intent.final:
                self.deferred[intent.signal_id] = intent
            return
        prefix = comment_prefix_for(sig.signal_id, self.cfg.comment_prefix)
        if prefix in self.known:
            if self._answered_elsewhere(intent, entry_id):
                return
            self._adopt(intent, self.known[prefix], "takeover scan")
            return
        if not self._account_ok(intent, sig):
            return
        if intent.state == "DEFERRED" and intent.next_try_ms > now_ms():
            self.deferred[intent.signal_id] = intent    # e.g. MARKET_CLOSED before a restart: keep its pace
            return
        if (redelivered and not self._scanned) or intent.attempt > 0:
            # delivered before (maybe to an instance that is gone): ask the broker before sending anything
            trace = self._lookup(intent, self.brokers.active)
            if trace is False:
                self._defer(intent, self.cfg.reconcile_poll_s, "broker lookup failed")
                return
            if trace is not None:
                if self._answered_elsewhere(intent, entry_id):
                    return
                self._adopt(intent, trace, "redelivery lookup")
                return
        self._in_batch[intent.signal_id] = entry_id
        return intent

    def _answered_elsewhere(self, intent: Intent, entry_id: str) -> bool:
        """Before adopting a broker order for ``intent`` that this instance's journal does not know: when RTS says
        the signal was already answered (executed or rejected) for another RTSS entry, by an earlier holder whose
        journal we do not share, this entry is the sender's resend and gets DUPLICATE, not a second result
        (issue 16's stateful test: submit s1, kill the active engine, resend s1). True when answered here."""
        if intent.attempt > 0:
            return False   # our own journal sent it: it is ours to settle
        fields = self.redis.run(lambda r: r.hmget(self._rts_signal(intent.signal_id), "entry_id", "status"))
        first_entry, status = (fields or [None, None])[:2]
        if not first_entry or first_entry == entry_id or status not in (ResultStatus.EXECUTED.value,
                                                                        ResultStatus.REJECTED.value):
            return False
        self.reject_entry(entry_id, intent.signal_id, "DUPLICATE_SIGNAL",
                          f"signal id already handled in entry {first_entry} ({status}, by an earlier holder)",
                          alert=False, status=ResultStatus.DUPLICATE.value)
        return True

    def _account_ok(self, intent: Intent, sig: Signal) -> bool:
        if sig.account in self.suspended_accounts:
            self.finish(intent, "REJECTED", code="ACCOUNT_SUSPENDED",
                        reason=f"account {sig.account} is suspended (NO_MONEY); remove it from "
                               f"{self._ris_suspended} to resume")
            return False
        login = self.brokers.active.config.login
        if login is not None and str(login) != sig.account:
            self.finish(intent, "REJECTED", code="UNKNOWN_ACCOUNT",
                        reason=f"this engine trades account {login}, not {sig.account}")
            self.alerts.raise_("unknown_account", f"signal {sig.signal_id} is for account {sig.account}, which "
                               f"this engine does not trade", signal_id=sig.signal_id)
            return False
        return True

    # --- sending ------------------------------------------------------------------------------------------------
    def _request(self, session: BrokerSession, sig: dict, comment: str, ticks: dict | None = None) -> dict | None:
        """The order_send request of a signal; ``ticks`` caches each symbol's tick for one batch (a batch is read
        within a millisecond or two, so its ticks are as fresh as one per order)."""
        mt5 = session.mt5
        buy = sig["side"] == "buy"
        kind = sig["order_type"]
        if kind == "market":
            tick = ticks.get(sig["symbol"]) if ticks is not None else None
            if tick is None:
                tick, err = session.call("symbol_info_tick", sig["symbol"])
                if tick is None:
                    raise _PriceUnavailable(err)
                if ticks is not None:
                    ticks[sig["symbol"]] = tick
            price = float(_field(tick, "ask" if buy else "bid"))
            action = constant(mt5, "TRADE_ACTION_DEAL")
            otype = constant(mt5, "ORDER_TYPE_BUY" if buy else "ORDER_TYPE_SELL")
        else:
            price = float(sig["price"])
            action = constant(mt5, "TRADE_ACTION_PENDING")
            name = {"limit": "LIMIT", "stop": "STOP"}[kind]
            otype = constant(mt5, f"ORDER_TYPE_{'BUY' if buy else 'SELL'}_{name}")
        filling = constant(mt5, f"ORDER_FILLING_{self.cfg.filling.upper()}")
        request = {"action": action, "symbol": sig["symbol"], "volume": float(sig["volume"]), "type": otype,
                   "price": price, "deviation": int(self.cfg.deviation_points), "magic": int(self.cfg.magic),
                   "comment": comment, "type_time": constant(mt5, "ORDER_TIME_GTC"), "type_filling": filling}
        if sig.get("sl"):
            request["sl"] = float(sig["sl"])
        if sig.get("tp"):
            request["tp"] = float(sig["tp"])
        return request

    def attempt(self, intent: Intent) -> None:
        """Send one signal's order (again), and act on the answer (see :meth:`send_batch`)."""
        self.send_batch([intent])

    def send_batch(self, intents: list[Intent]) -> None:
        """Send the orders of ``intents`` and act on each answer. Group commit: every intent of the batch is made
        durable in one journal transaction before the first order_send (ENG-5: no send before its intent is
        durable), the executed outcomes in one transaction before they are published, and the publishes go to
        Redis in one pipelined round trip. Re-priced orders are resent at once with a fresh price, bounded.

        The sends go out on the broker's send lanes (``send_lanes`` connections) at once; the batch waits
        ``park_after_s`` for their answers and parks the rest: a lost reply holds one lane until its deadline,
        while the main loop goes on with other signals and collects it later (:meth:`collect_parked`)."""
        queue = list(intents)
        while queue:
            if not self.lease.can_send():
                raise LeaseLost("lease not valid before send")
            prepared, queue = self._prepare_sends(queue), []
            if not prepared:
                return
            self.journal.put_many([intent for intent, *_ in prepared])   # durable intents before order_send
            for intent, session, _request, _previous in prepared:
                self.emit("intent_written", signal_id=intent.signal_id, comment=intent.comment,
                          attempt=intent.attempt, broker=session.name)
            done: list[tuple] = []
            outstanding: list[tuple] = []
            try:
                for i, (intent, session, request, _previous) in enumerate(prepared):
                    lane = self._wait_for_lane(session, outstanding, done, queue)
                    if lane is None or not self.lease.can_send():   # fencing check, the last thing before a send
                        if lane is not None:
                            session.release_lane(lane)
                        unsent = prepared[i:]
                        for it, _s, _r, previous in unsent:
                            it.state, it.attempt = previous
                        self.journal.put_many([it for it, *_ in unsent])
                        if lane is None:   # every lane still held by a lost reply: try these again shortly
                            for it, *_ in unsent:
                                self._defer(it, self.cfg.park_after_s, "every send lane is busy")
                            break
                        raise LeaseLost("lease expired while sending a batch")
                    self.emit("order_send_invoke", signal_id=intent.signal_id, comment=intent.comment,
                              attempt=intent.attempt, broker=session.name, price=request["price"],
                              token=self.lease.token, lane=lane)
                    self.stats["sends"] += 1
                    outstanding.append((intent, session, request, lane,
                                        session.submit_order(lane, request, guard=self.lease.can_send)))
                self._collect(outstanding, done, queue, self.cfg.park_after_s)
            finally:
                for item in outstanding:   # not answered yet: parked, collected by the main loop
                    self.parked[item[0].signal_id] = item
                    self.emit("order_send_parked", signal_id=item[0].signal_id, lane=item[3])
                self.finish_many(done)

    def _wait_for_lane(self, session: BrokerSession, outstanding: list, done: list, queue: list) -> int | None:
        """A free send lane of ``session``; while every lane holds an order in flight, collect answers (of this
        batch and of parked sends). None when none came free within the call deadline."""
        lane = session.free_lane()
        deadline = time.monotonic() + self.cfg.broker_timeout_s + 1.0
        while lane is None and time.monotonic() < deadline:
            self.watchdog.beat("wait_for_lane")
            self._collect(outstanding, done, queue, self.cfg.park_after_s)
            self.collect_parked(wait_s=0.0)
            lane = session.free_lane()
        return lane

    def _collect(self, items: list, done: list, requeue: list, wait_s: float) -> None:
        """Act on every answered send of ``items`` (removed from it) within ``wait_s``: executed ones join
        ``done``, re-priced ones ``requeue``, the others are handled at once."""
        if not items:
            return
        fenced: list[Intent] = []
        finished, _ = concurrent.futures.wait([item[4] for item in items], timeout=wait_s)
        for item in [i for i in items if i[4] in finished]:
            items.remove(item)
            intent, session, request, lane, future = item
            session.release_lane(lane)
            try:
                result, err = future.result()
            except BrokerCallFailed as exc:
                result, err = None, ("call_failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a lane's transport error is an ambiguous send
                result, err = None, ("call_failed", repr(exc))
            if result is None and err and err[0] == NOT_SENT:
                # the fencing guard stopped it in the sending thread: definitely not sent; back to where it was
                intent.attempt -= 1
                intent.state = "DEFERRED"
                self.journal.put(intent)
                self.emit("order_send_fenced", signal_id=intent.signal_id, comment=intent.comment, lane=lane)
                fenced.append(intent)
                continue
            if result is None and err and err[0] in (NOT_CONNECTED, NO_IPC_CODE):
                # the send lane could not reach its terminal: the request was never written, so nothing is
                # ambiguous; the broker is lost (BRK-2 counts it) and the signal goes out again when one is usable
                intent.attempt -= 1
                intent.state = "DEFERRED"
                if session is self.brokers.active:
                    self.brokers.connection_lost(str(err[1]))
                self._defer(intent, self.cfg.broker_reconnect_s, f"send lane not connected: {err[1]}")
                continue
            try:
                if self._on_reply(intent, session, result, err, done):
                    requeue.append(intent)
            except (LeaseLost, RedisUnavailable):
                raise
            except Exception as exc:  # noqa: BLE001 - one signal's bug must not stop the batch
                self._entry_failed(intent.entry_id, intent.signal_id, exc)
        if fenced:
            raise LeaseLost(f"lease lost before {len(fenced)} order(s) were written; none was sent")


    def collect_parked(self, wait_s: float = 0.0) -> None:
        """Act on the answers of parked sends that came in (each loop of the main thread)."""
        if not self.parked:
            return
        items = list(self.parked.values())
        done: list[tuple] = []
        requeue: list[Intent] = []
        try:
            self._collect(items, done, requeue, wait_s)
        finally:
            still = {item[0].signal_id for item in items}
            for signal_id in list(self.parked):
                if signal_id not in still:
                    del self.parked[signal_id]
            self.finish_many(done, publish=self.trading and self.lease.held)
        if requeue and self.trading:
            self.send_batch(requeue)

    def _prepare_sends(self, intents: list[Intent]) -> list[tuple]:
        """For each intent: the broker session and request, with the intent moved to SENDING (in memory only:
        the caller commits them together). Intents that cannot be sent now are deferred or rejected here."""
        prepared: list[tuple] = []
        ticks: dict = {}
        for n, intent in enumerate(intents):
            session = self.brokers.active
            if not self.brokers.usable:
                for rest in intents[n:]:
                    self._defer(rest, self.cfg.broker_reconnect_s, "no usable broker")
                break
            comment = order_comment(intent.signal_id, intent.attempt + 1, self.cfg.comment_prefix,
                                    self.cfg.comment_max_len)
            try:
                request = self._request(session, intent.signal, comment, ticks)
            except _PriceUnavailable as exc:
                code = exc.err[0] if exc.err else None
                if code == -4:
                    self.finish(intent, "REJECTED", code="UNKNOWN_SYMBOL",
                                reason=f"the broker does not know symbol {intent.signal['symbol']}")
                else:
                    self._retry_later(intent, f"no price for {intent.signal['symbol']}: {exc.err}")
                continue
            except BrokerCallFailed as exc:
                self.brokers.connection_lost(str(exc))
                for rest in intents[n:]:
                    self._defer(rest, self.cfg.broker_reconnect_s, "broker call failed before send")
                break
            previous = (intent.state, intent.attempt)
            intent.attempt += 1
            intent.comment, intent.broker, intent.state = comment, session.name, "SENDING"
            intent.ambiguous_since_ms = 0
            prepared.append((intent, session, request, previous))
        return prepared

    def _on_reply(self, intent: Intent, session: BrokerSession, result, err, done: list) -> bool:
        """Act on one order_send answer: an executed one joins ``done`` (finished with its batch), every other
        answer is acted on here. Returns True when it must be resent at once (a re-price)."""
        comment = intent.comment
        if result is None:
            outcome, name = classify_none(err)
            retcode = None
        else:
            retcode = int(_field(result, "retcode", 0))
            outcome, name = session.table.classify(retcode), session.table.name(retcode)
        self.emit("order_send_complete", signal_id=intent.signal_id, comment=comment,
                  outcome={Outcome.EXECUTED: "ok", Outcome.AMBIGUOUS: "unknown"}.get(outcome, "fail"),
                  retcode=retcode, name=name, last_error=err, order=_field(result, "order", 0),
                  deal=_field(result, "deal", 0), price=_field(result, "price", 0))
        if outcome is Outcome.EXECUTED:
            done.append((intent, "DONE", name, "", {"order": _field(result, "order", 0),
                                                     "deal": _field(result, "deal", 0),
                                                     "price": _field(result, "price", 0),
                                                     "volume": _field(result, "volume", 0), "retcode": retcode}))
            return False
        if outcome is Outcome.REPRICE:
            intent.requotes += 1
            if intent.requotes <= self.cfg.requote_retries:
                intent.state = "DEFERRED"
                self.journal.put(intent)
                return True   # BRK-4: at once, with a fresh price
            self._retry_later(intent, f"{name} {intent.requotes} times")
            return False
        if outcome is Outcome.MARKET_CLOSED:
            if intent.state != "DEFERRED" or intent.result.get("queued") != "MARKET_CLOSED":
                self.emit("queued_market_closed", signal_id=intent.signal_id, symbol=intent.signal["symbol"])
            intent.result = {"queued": "MARKET_CLOSED"}
            self._defer(intent, self.cfg.market_closed_poll_s, "MARKET_CLOSED")
            return False
        if outcome is Outcome.NO_MONEY:
            self.suspend_account(intent.signal["account"], intent.signal_id)
            self.finish(intent, "REJECTED", code=name, retcode=retcode,
                        reason="not enough money; the account is suspended")
            return False
        if outcome is Outcome.PERMANENT:
            reason = f"broker refused the order: {name}" + (f" {err}" if err else "")
            self.finish(intent, "REJECTED", code=name, retcode=retcode, reason=reason)
            self.alerts.raise_("order_rejected", f"signal {intent.signal_id}: {reason}",
                               signal_id=intent.signal_id, code=name)
            return False
        if outcome is Outcome.AMBIGUOUS:
            intent.state = "UNKNOWN"
            intent.ambiguous_since_ms = now_ms()
            intent.next_try_ms = now_ms()   # reconciled with the others due on the next pass (reconcile_many)
            self.journal.put(intent)
            self._check_broker_after_ambiguity(session)
            self.deferred[intent.signal_id] = intent
            return False
        self._retry_later(intent, name)
        return False

    def _check_broker_after_ambiguity(self, session: BrokerSession) -> None:
        """A heartbeat after an ambiguous send (is the terminal still there?), at most once per ``park_after_s``
        per broker: 60 lost replies a second need one answer, not 60."""
        now = time.monotonic()
        last = self._ambiguity_checked.get(session.name, 0.0)
        if now - last < max(self.cfg.park_after_s, 0.2):
            return
        self._ambiguity_checked[session.name] = now
        try:
            session.heartbeat()
        except BrokerCallFailed as exc:
            # BRK-1's connection timeout is timed from this line too (issue 19); a passing check writes none, so
            # the periodic heartbeat's cadence stays what the pool's own ticks did
            self.emit("broker_heartbeat", broker=session.name, ok=False, took_s=round(time.monotonic() - now, 4),
                      error=str(exc)[:200], via="after_ambiguity")
            self.brokers.connection_lost(str(exc))

    def _retry_later(self, intent: Intent, why: str) -> None:
        """ORD-1 backoff 1, 2, 4, 8, 16 s; then failed_syncs and a retry after a minute (ORD-2); then reject."""
        intent.retries += 1
        backoff = self.cfg.retry_backoff_s
        if intent.retries <= len(backoff):
            self._defer(intent, backoff[intent.retries - 1], why)
            return
        if intent.failed_sync_attempts < self.cfg.failed_sync_attempts:
            intent.failed_sync_attempts += 1
            due = now_ms() + int(self.cfg.failed_sync_retry_s * 1000)
            self.journal.add_failed_sync(intent.signal_id, "order", intent.signal, due, why,
                                         intent.failed_sync_attempts)
            self.emit("failed_sync", signal_id=intent.signal_id, reason=why, retry_in_s=self.cfg.failed_sync_retry_s)
            self._defer(intent, self.cfg.failed_sync_retry_s, f"failed_syncs: {why}")
            return
        self.journal.remove_failed_sync(intent.signal_id)
        reason = f"order failed after {intent.retries} attempts and the failed_syncs retry: {why}"
        self.finish(intent, "REJECTED", code="RETRIES_EXHAUSTED", reason=reason)
        self.alerts.raise_("order_failed", f"signal {intent.signal_id}: {reason}", signal_id=intent.signal_id)

    def _defer(self, intent: Intent, delay_s: float, why: str) -> None:
        if intent.state not in ("UNKNOWN",):
            intent.state = "DEFERRED"
        intent.next_try_ms = now_ms() + int(delay_s * 1000)
        self.journal.put(intent)
        self.deferred[intent.signal_id] = intent
        self.emit("deferred", signal_id=intent.signal_id, reason=why, delay_s=delay_s, state=intent.state)
        self._write_state(intent, why)

    def process_due(self) -> None:
        now = now_ms()
        ready: list[Intent] = []
        unknown: list[Intent] = []
        for signal_id, intent in list(self.deferred.items()):
            if intent.final:
                self.deferred.pop(signal_id, None)
                continue
            if intent.next_try_ms > now:
                continue
            self.watchdog.beat("process_due")
            if intent.state == "UNKNOWN":
                unknown.append(intent)
                continue
            if intent.signal.get("account") in self.suspended_accounts:
                self.finish(intent, "REJECTED", code="ACCOUNT_SUSPENDED",
                            reason=f"account {intent.signal.get('account')} is suspended")
                continue
            self.deferred.pop(signal_id, None)
            prefix = comment_prefix_for(signal_id, self.cfg.comment_prefix)
            if prefix in self.known:
                self._adopt(intent, self.known[prefix], "takeover scan")
                continue
            if intent.attempt > 0:
                trace = self._lookup(intent, self.brokers.active)
                if trace is False:
                    self._defer(intent, self.cfg.reconcile_poll_s, "broker lookup failed")
                    continue
                if trace is not None:
                    self._adopt(intent, trace, "lookup before retry")
                    continue
            ready.append(intent)
        if unknown:
            self.reconcile_many(unknown)
        self.send_batch(ready)

    # --- reconciliation -----------------------------------------------------------------------------------------
    def _lookup(self, intent: Intent, session: BrokerSession | None) -> BrokerTrace | None | bool:
        """The best trace of this signal's orders (``known``, after an incremental scan of ``session``); None if
        none; False if the broker did not answer. A trace another broker reported counts too: the signal was
        executed there."""
        if session is None or not session.connected:
            return False
        if self._scan_session(session) is None:
            self.emit("reconcile_failed", signal_id=intent.signal_id, broker=session.name, error="broker scan failed")
            return False
        return self.known.get(comment_prefix_for(intent.signal_id, self.cfg.comment_prefix))

    def reconcile(self, intent: Intent) -> None:
        """Settle an UNKNOWN intent at the broker it was sent to: adopt a trace, keep waiting, or (after the
        grace period with no trace at all) return it to DEFERRED so it is resent under a new comment."""
        self.reconcile_many([intent])

    def reconcile_many(self, intents: list[Intent]) -> None:
        """:meth:`reconcile` for many intents with one incremental scan per broker (``_scan_session``: orders,
        positions, the history since its last scan), then each looked up in ``known``; not four calls per intent:
        60 lost replies a second reconciled one by one took the whole loop (issue 11: 25 reconciliations/s, 9 of
        200 signals/s answered during a lost-reply fault)."""
        by_broker: dict[str | None, list[Intent]] = {}
        for intent in intents:
            by_broker.setdefault(intent.broker, []).append(intent)
        for broker, group in by_broker.items():
            session = self.brokers.ensure_session(broker) if broker else self.brokers.active
            answered = session is not None and session.connected and self._scan_session(session) is not None
            if not answered and session is not None:
                for intent in group:
                    self.emit("reconcile_failed", signal_id=intent.signal_id, broker=session.name,
                              error="broker scan failed" if session.connected else "not connected")
            for intent in group:
                self.watchdog.beat("reconcile")
                if not answered:
                    self._settle(intent, False)
                    continue
                self._settle(intent, self.known.get(comment_prefix_for(intent.signal_id, self.cfg.comment_prefix)))

    def _settle(self, intent: Intent, trace: BrokerTrace | None | bool) -> None:
        if trace is False:
            intent.next_try_ms = now_ms() + int(self.cfg.broker_reconnect_s * 1000)
            self.journal.put(intent)
            self.emit("reconcile", signal_id=intent.signal_id, found=None, broker=intent.broker,
                      note="broker unreachable; the intent waits for it")
            return
        if trace is not None:
            self._adopt(intent, trace, "reconciliation")
            return
        waited = now_ms() - (intent.ambiguous_since_ms or now_ms())
        if waited >= self.cfg.ambiguous_grace_s * 1000:
            self.emit("reconcile", signal_id=intent.signal_id, found=False, waited_s=waited / 1000,
                      note="no trace after the grace period: resend under a new comment")
            intent.state = "DEFERRED"
            intent.next_try_ms = now_ms()
            self.journal.put(intent)
            return
        intent.next_try_ms = now_ms() + int(self.cfg.reconcile_poll_s * 1000)
        self.journal.put(intent)

    def _adopt(self, intent: Intent, trace: BrokerTrace, how: str) -> None:
        self.emit("reconcile", signal_id=intent.signal_id, found=True, how=how, kind=trace.kind,
                  comment=trace.comment, order=trace.order)
        self.finish(intent, "DONE", code="RECONCILED", order=trace.order, deal=trace.deal, price=trace.price,
                    volume=trace.volume, comment=trace.comment, how=how)

    # --- outcomes -----------------------------------------------------------------------------------------------
    def finish(self, intent: Intent, state: str, code: str = "", reason: str = "", **extra) -> None:
        """Record one final outcome (see :meth:`finish_many`)."""
        self.finish_many([(intent, state, code, reason, extra)])

    def finish_many(self, items: list[tuple], publish: bool = True) -> None:
        """Final outcomes ``(intent, state, code, reason, extra)``: committed to the journal in one transaction
        (durable before anything is acknowledged), then published in one pipelined Redis round trip (not when
        ``publish`` is False: a passive instance keeps them for when it is active again)."""
        if not items:
            return
        intents = []
        for intent, state, code, reason, extra in items:
            status = (ResultStatus.EXECUTED if state == "DONE" else ResultStatus.REJECTED).value
            intent.state = state
            intent.result = {"status": status, "code": code, "reason": reason,
                             **{k: v for k, v in extra.items() if v is not None}}
            intent.published = False
            intents.append(intent)
        self.journal.put_many(intents)                     # the outcomes are durable before they are acknowledged
        for intent, state, code, reason, extra in items:
            status = intent.result["status"]
            self.deferred.pop(intent.signal_id, None)
            self.journal.remove_failed_sync(intent.signal_id)
            self.stats["executed" if state == "DONE" else "rejected"] += 1
            self.emit("outcome", signal_id=intent.signal_id, entry_id=intent.entry_id, status=status, code=code,
                      reason=reason, order=extra.get("order"))
            if status == ResultStatus.REJECTED.value:
                self.emit("signal_rejected", signal_id=intent.signal_id, entry_id=intent.entry_id, code=code,
                          reason=reason)
        if not publish:
            return
        try:
            self.publish_many(intents)
        except RedisUnavailable as exc:
            self._redis_down(str(exc))   # flushed later from the journal (ORD-3)

    def _result_fields(self, intent: Intent) -> dict[str, str]:
        r = intent.result
        sig = intent.signal
        fields = {"signal_id": intent.signal_id, "entry_id": intent.entry_id, "status": r.get("status", ""),
                  "code": str(r.get("code", "")), "reason": str(r.get("reason", "")),
                  "account": str(sig.get("account", "")), "symbol": str(sig.get("symbol", "")),
                  "side": str(sig.get("side", "")), "volume": str(sig.get("volume", "")),
                  "order": str(r.get("order", "") or ""), "deal": str(r.get("deal", "") or ""),
                  "price": str(r.get("price", "") or ""), "comment": intent.comment or str(r.get("comment", "")),
                  "broker": intent.broker, "attempts": str(intent.attempt), "instance": self.cfg.instance,
                  "token": str(self.lease.token), "ts_ms": str(now_ms())}
        return fields

    def publish(self, intent: Intent) -> None:
        """RTS state + RTRS result (once per entry) + XACK, in one atomic script."""
        self.publish_many([intent])

    def publish_many(self, intents: list[Intent]) -> None:
        """For each intent, RTS state + RTRS result (once per entry) + XACK in one atomic script; all the scripts
        in one pipelined round trip. Marks them published in the journal (one commit)."""
        if not intents:
            return
        batch = [(self._rts_signal(i.signal_id) if i.signal_id else "", i.entry_id, self._result_fields(i))
                 for i in intents]
        self._publish_pipelined(batch, self._opened_positions(batch))
        self.journal.mark_published_many([i.signal_id for i in intents])
        for intent, (_key, _entry, fields) in zip(intents, batch):
            intent.published = True
            self.stats["acked"] += 1
            self.emit("ack", signal_id=intent.signal_id, entry_id=intent.entry_id, status=fields["status"])

    def _opened_positions(self, batch: list[tuple[str, str, dict[str, str]]]) -> list[str]:
        """``["<broker>:<ticket>", json, ...]`` of the positions the executed results of ``batch`` opened, in the
        form ``sync_positions`` stores the broker's (a market order's position ticket is its order ticket; the broker
        is the one the order went to, ``contract.position_field``, ENG-5): RTS
        positions follow every fill, not only a takeover (issue 12: RTS stayed at the takeover's 81 positions while
        the broker held 293)."""
        pairs: list[str] = []
        for _key, _entry, f in batch:
            if not contract.is_executed(f.get("status", "")) or not f.get("order"):
                continue
            broker = f.get("broker") or self.brokers.active.name
            if not f.get("deal"):
                # a pending order placed (limit/stop): no position yet; its fill at the broker is a position the
                # sweep adds (sweep_broker_closes), the panel showed it as a position (issue 15's new user)
                self._pending_orders.add(contract.position_field(broker, f["order"]))
                continue
            side = f.get("side", "").lower()
            pairs += [contract.position_field(broker, f["order"]), json.dumps({
                "symbol": f.get("symbol"), "type": 1 if side in ("sell", "short") else 0,
                "volume": float(f.get("volume") or 0), "price_open": float(f["price"]) if f.get("price") else None,
                "comment": f.get("comment"), "broker": broker})]
        return pairs

    def _publish_pipelined(self, batch: list[tuple[str, str, dict[str, str]]], positions: list[str] = ()) -> None:
        """The PUBLISH script for each (RTS key, entry, fields), and the opened ``positions`` pairs into the RTS
        positions hash, pipelined; every write fenced by this instance's token."""
        token = self.lease.token

        def run(r):
            pipe = r.pipeline(transaction=False)
            for rts_key, entry_id, fields in batch:
                flat: list[str] = []
                for k, v in fields.items():
                    flat += [k, v]
                pipe.eval(PUBLISH, 5, self.keys.fence, rts_key, self._rts_results, self.cfg.rtrs_key,
                          self.cfg.rtss_key, token, self.group, entry_id, self.cfg.results_maxlen, len(fields), *flat)
            if positions:
                pipe.eval(FENCED_WRITE, 2, self.keys.fence, self._rts_positions, token, "hset", *positions)
            return pipe.execute()
        answers = self.redis.run(run)
        if positions and int(answers[-1]) == -1:
            self._fenced_out("hset RTS positions", token)
        answers = answers[:len(batch)]
        refused = [entry for (_k, entry, _f), a in zip(batch, answers) if int(a) == -1]
        if refused:
            self._fenced_out("publish", token, entries=refused[:20], count=len(refused))
        for (_k, entry, f), a in zip(batch, answers):
            if int(a) == 2:   # another holder answered the entry first: its result stands in RTS and RTRS
                self.emit("outcome_superseded", signal_id=f.get("signal_id"), entry_id=entry, ours=f.get("status"))
        want = int(self.cfg.publish_wait_replicas)
        if want > 0:
            acked = int(self.redis.run(lambda r: r.execute_command("WAIT", want, int(self.cfg.publish_wait_ms))))
            if acked < want:   # not on enough replicas: a failover could lose it; stays unpublished, retried
                self.emit("publish_unconfirmed", replicas=acked, wanted=want, count=len(batch))
                raise RedisUnavailable(f"WAIT {want}: only {acked} replica(s) confirmed the publish")

    def _fenced_write(self, op: str, key: str, *args) -> int:
        """One fenced write of shared state (see FENCED_WRITE); a refusal makes this instance passive."""
        token = self.lease.token
        answer = int(self.redis.run(lambda r: r.eval(FENCED_WRITE, 2, self.keys.fence, key, token, op, *args)))
        if answer == -1:
            self._fenced_out(f"{op} {key}", token)
        return answer

    def _fenced_out(self, what: str, token: int, **details) -> None:
        """Redis refused a write: an instance with a newer fencing token exists. Not an error: stop trading."""
        newest = None
        try:
            newest = self.redis.run(lambda r: r.get(self.keys.fence))
        except RedisUnavailable:
            pass
        self.emit("fenced_write_refused", what=what, token=token, newest=newest, **details)
        self.lease.fenced_out(f"fenced out by token {newest}")
        raise LeaseLost(f"Redis refused {what}: token {token} is fenced out by {newest}")

    def _publish_fields(self, rts_key: str, entry_id: str, fields: dict[str, str]) -> None:
        self._publish_pipelined([(rts_key, entry_id, fields)])

    def reject_entry(self, entry_id: str, signal_id: str, code: str, reason: str, alert: bool,
                     status: str = ResultStatus.REJECTED.value) -> None:
        """An entry that is not a usable signal (or a duplicate id): reason on RTRS, alert, ack. Never raises
        past Redis being down (then the entry stays pending and is judged again later)."""
        self.stats["rejected"] += 1
        self.emit("signal_rejected", entry_id=entry_id, signal_id=signal_id, code=code, reason=reason)
        if alert:
            self.alerts.raise_("invalid_signal", f"entry {entry_id} rejected: {reason}", entry_id=entry_id,
                               signal_id=signal_id, code=code)
        fields = {"signal_id": signal_id, "entry_id": entry_id, "status": status, "code": code,
                  "reason": reason, "instance": self.cfg.instance, "token": str(self.lease.token),
                  "ts_ms": str(now_ms())}
        self._publish_fields("", entry_id, fields)
        self.emit("ack", signal_id=signal_id, entry_id=entry_id, status=status)

    def flush_outcomes(self, batch: int = 200) -> None:
        pending = self.journal.unpublished()
        for start in range(0, len(pending), batch):
            self.watchdog.beat("flush_outcomes")
            self.publish_many(pending[start:start + batch])

    def _write_state(self, intent: Intent, note: str) -> None:
        """Best-effort RTS state of an open intent (the journal is the durable copy)."""
        try:
            # fenced (issue 18): an instance that lost its lease while it slept in a broker call must not write
            # its "deferred" over the executed state its successor published
            self._fenced_write("hset", self._rts_signal(intent.signal_id), *_pairs({
                "signal_id": intent.signal_id, "entry_id": intent.entry_id, "status": intent.state.lower(),
                "note": note, "attempts": intent.attempt, "broker": intent.broker, "token": self.lease.token,
                "ts_ms": now_ms()}))
        except RedisUnavailable as exc:
            self._redis_down(str(exc))

    # --- accounts, positions, recovery ----------------------------------------------------------------------------
    def suspend_account(self, account: str, signal_id: str) -> None:
        self.suspended_accounts.add(account)
        try:
            self._fenced_write("sadd", self._ris_suspended, account)
        except RedisUnavailable as exc:
            self._redis_down(str(exc))
        self.emit("account_suspended", account=account, signal_id=signal_id)
        self.alerts.raise_("no_money", f"NO_MONEY for account {account} (signal {signal_id}): the account is "
                           f"suspended; top it up, then remove it from {self._ris_suspended}",
                           account=account, signal_id=signal_id)

    def sync_positions(self, why: str) -> int | None:
        """BRK-3, ENG-5: compare the positions RTS remembers at the active broker with the broker's, then store the
        broker's (it is the truth). Only that broker's part of ``RTS:g:positions`` (fields ``<broker>:<ticket>``,
        ``contract.position_field``) is replaced, in one fenced script; the positions RTS holds at every other broker
        are kept: a broker the engine cannot reach now (the primary after a switch to the backup) still holds them,
        and its tickets overlap this broker's. Bare-ticket fields an older engine wrote are dropped, or moved under
        their broker's key when their JSON names another broker. Returns the number of positions at the active
        broker, or None when it did not answer (RTS untouched). Raises LeaseLost when fenced out."""
        session = self.brokers.active
        if not session.connected:
            return None
        try:
            rows, err = session.call("positions_get")
        except BrokerCallFailed:
            return None
        if rows is None:
            return None
        ours = {contract.position_field(session.name, _field(p, "ticket")): json.dumps({
            "symbol": _field(p, "symbol"), "type": _field(p, "type"), "volume": _field(p, "volume"),
            "price_open": _field(p, "price_open"), "comment": _field(p, "comment"), "broker": session.name})
            for p in rows if int(_field(p, "magic", 0) or 0) == self.cfg.magic}
        before = self.redis.run(lambda r: r.hgetall(self._rts_positions))
        prefix = contract.position_prefix(session.name)
        mine = {f for f in before if contract.parse_position_field(f)[0] == session.name}
        legacy, carried = [], {}
        for field, value in before.items():
            broker, ticket = contract.parse_position_field(field)
            if broker:
                continue
            legacy.append(field)   # a bare ticket (an engine before ENG-5's key): its broker is in the JSON
            owner = _broker_of(value)
            if owner == session.name or not owner:
                mine.add(contract.position_field(session.name, ticket))
            elif contract.position_field(owner, ticket) not in before:
                carried[contract.position_field(owner, ticket)] = value
        missing = sorted(mine - set(ours))
        added = sorted(set(ours) - mine)

        self._fenced_write("replace_part", self._rts_positions, prefix, len(legacy), *legacy,
                           *_pairs({**carried, **ours}))
        try:   # our pending orders an earlier holder placed: their fills are positions too (sweep_broker_closes)
            orders, _err = session.call("orders_get")
        except BrokerCallFailed:
            orders = None
        if orders is not None:
            self._pending_orders = {contract.position_field(session.name, _field(o, "ticket")) for o in orders
                                    if int(_field(o, "magic", 0) or 0) == self.cfg.magic}
        elsewhere = sum(1 for f in before if contract.parse_position_field(f)[0] not in ("", session.name))
        self.emit("positions_restored", why=why, broker=session.name, positions=len(ours),
                  gone_since_rts=len(missing), new_since_rts=len(added), kept_elsewhere=elsewhere + len(carried))
        return len(ours)

    def sweep_broker_closes(self) -> int | None:
        """BRK-3 between takeovers: positions the broker closed on its own initiative (a stop loss, a take profit, a
        stop-out: closing deals of reason SL/TP/SO with our magic) leave RTS positions, read from the deals since the
        last sweep (with a 2 s overlap); positions our pending orders opened when the price reached them join RTS.
        Returns how many were removed; None when the broker did not answer (the next sweep reads the same window
        again). Issue 20: RTS kept such a position until the next takeover. Only the active broker's fields
        (``<broker>:<ticket>``, ENG-5) are written or deleted."""
        session = self.brokers.active
        if not session.connected:
            return None
        now = datetime.now(timezone.utc)
        since = (self._closes_seen_until or now - timedelta(seconds=self.cfg.broker_close_poll_s)) \
            - timedelta(seconds=2)
        try:
            rows, _err = session.call("history_deals_get", since, now + timedelta(days=1))
        except BrokerCallFailed:
            return None
        if rows is None:
            return None
        self._closes_seen_until = now
        ours = [d for d in rows if int(_field(d, "magic", 0) or 0) == self.cfg.magic]
        gone = sorted({str(_field(d, "position_id")) for d in ours
                       if int(_field(d, "reason", -1)) in BROKER_CLOSE_REASONS
                       and int(_field(d, "entry", -1)) == DEAL_ENTRY_OUT})
        def placed(d) -> str:   # the _pending_orders entry of a deal's order at this broker
            return contract.position_field(session.name, _field(d, "order"))
        filled = {str(_field(d, "position_id")): d for d in ours
                  if int(_field(d, "entry", -1)) == DEAL_ENTRY_IN and placed(d) in self._pending_orders}
        if filled:   # our pending orders the price reached: the positions they opened
            self._fenced_write("hset", self._rts_positions, *_pairs({
                contract.position_field(session.name, ticket): json.dumps({
                    "symbol": _field(d, "symbol"), "type": _field(d, "type"), "volume": _field(d, "volume"),
                    "price_open": _field(d, "price"), "comment": _field(d, "comment"), "broker": session.name})
                for ticket, d in filled.items() if ticket not in gone}))
            self._pending_orders -= {placed(d) for d in filled.values()}
            self.emit("positions_opened_at_broker", positions=sorted(filled)[:50], count=len(filled),
                      broker=session.name)
        if gone:
            self._fenced_write("hdel", self._rts_positions, *[contract.position_field(session.name, t) for t in gone])
            self.emit("positions_closed_at_broker", positions=gone[:50], count=len(gone), broker=session.name)
        return len(gone)

    def on_broker_recovered(self) -> None:
        """BRK-3: restore positions (RTS vs broker), restore/record the session (RIS), resend pending work."""
        self.sync_positions("broker recovered")
        self._refresh_ris()
        for intent in self.deferred.values():
            if intent.state == "DEFERRED" and intent.result.get("queued") != "MARKET_CLOSED":
                intent.next_try_ms = min(intent.next_try_ms, now_ms())
        self.emit("broker_recovery_done", pending=len(self.deferred))


class _PriceUnavailable(Exception):
    def __init__(self, err):
        super().__init__(str(err))
        self.err = err


def _pairs(mapping: dict) -> list[str]:
    """A mapping as the flat field/value list a Lua HSET takes."""
    flat: list[str] = []
    for k, v in mapping.items():
        flat += [str(k), str(v)]
    return flat


def _broker_of(value: str | None) -> str:
    """The ``broker`` a positions hash value (JSON) names; "" when it names none or is not JSON."""
    try:
        item = json.loads(value or "")
    except ValueError:
        return ""
    return str(item.get("broker") or "") if isinstance(item, dict) else ""


def _trace_rank(trace: BrokerTrace) -> int:
    return {"deal": 4, "history_order": 3, "position": 2, "order": 1}.get(trace.kind, 0)


def signal_id_of(fields: dict | None) -> str:
    if not fields:
        return ""
    value = fields.get("signal_id", "")
    return value.decode() if isinstance(value, bytes) else str(value)
