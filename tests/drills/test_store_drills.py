"""The DuckDB store drills of issue 13, run for real (two supervised engines, Redis with Sentinels, two brokers):

- ``duckdb-corrupt-zero-header`` (runs by default): the active engine's live journal loses its header under load; the
  health check finds it within about a second, the engine rewrites the file from memory, keeps the damaged file with
  its diagnosis under ``backup/duckdb/damaged/``, and raises one alert naming the file; trading never stops.
- with ``TRADEDRILL_ALL_DRILLS=1``: every other corruption mode (the WAL modes through a crash and the supervisor's
  restart, repaired on open; flip-block and truncate on the live file, found by the health check),
  ``engine-kill-heavy-writes``, ``disk-full`` (root: a tmpfs under the active engine's journal, filled).

Every run: no order executed twice, no acknowledged signal lost, one result per signal, one sender at a time. The
restore and detection times are recorded (``record_property``) and judged against DDB-3/DDB-6 in the report.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.drills.conftest import ALL_DRILLS, Drill

pytestmark = pytest.mark.drill

EXACTLY_ONCE = ("duplicates", "lost_signals", "state", "one_active", "results_delivered", "stale_writes")


def assert_exactly_once(d: Drill) -> None:
    for name in EXACTLY_ONCE:
        for r in d.results(name):
            assert r.valid is True, f"{d.scenario}: {name}: {r.summary} ({d.run.path})"
    lost = d.result("lost_signals")
    assert lost.metrics["acknowledged"] > 0, f"{d.scenario}: no signal was acknowledged; the load never ran"


def assert_repaired_with_evidence(d: Drill, record_property) -> dict:
    res = d.result("store_repair")
    for key in ("detection_s", "restore_s", "repair_s", "missing_writes", "rpo_s", "damaged_files_kept"):
        record_property(key, res.metrics.get(key))
    [row] = res.damages
    assert row["detected"], f"{d.scenario}: the damage was never found: {res.summary} ({d.run.path})"
    assert not row["restore_lower_bound"], f"{d.scenario}: found but not repaired: {row['problem']} ({d.run.path})"
    evidence = Path(row["evidence"])
    assert evidence.is_dir() and row["files_kept"], f"{d.scenario}: no damaged file kept: {row}"
    diagnosis = (evidence / "diagnosis.txt").read_text()
    assert row["file"].rsplit("/", 1)[-1] in diagnosis and "recovered" in diagnosis, diagnosis
    # the operator's view: one alert that names the file and where the evidence is
    alerts = [e for e in d.engine_events("alert") if e.get("kind") == "journal_repaired"]
    assert len(alerts) == 1, f"{d.scenario}: {len(alerts)} journal_repaired alerts for one damage ({d.run.path})"
    assert row["file"] in alerts[0]["message"] and "damaged files kept in" in alerts[0]["message"], alerts[0]
    return row


def test_a_header_zeroed_under_load_is_found_and_rewritten_from_memory(drill, record_property):
    d = drill("duckdb-corrupt-zero-header")
    assert_exactly_once(d)
    row = assert_repaired_with_evidence(d, record_property)
    assert row["detected_by"].startswith("health check") and "header" in row["saw"]
    assert row["missing_writes"] == 0 and "from the engine's memory" in row["recovered"]
    assert d.result("store_repair").valid is True, d.result("store_repair").summary


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every DuckDB damage drill")
@pytest.mark.parametrize("mode", ["wal-truncate", "wal-garble", "torn-write"])
def test_a_journal_damaged_in_a_crash_is_repaired_when_the_engine_restarts(drill, record_property, mode):
    d = drill(f"duckdb-corrupt-{mode}")
    assert_exactly_once(d)
    row = assert_repaired_with_evidence(d, record_property)
    assert row["detected_by"].startswith("open")
    # what the restored copy lacks was looked up at the broker: nothing lost, nothing doubled (above)
    assert row["committed"] >= row["restored"]


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every DuckDB damage drill")
@pytest.mark.parametrize("mode", ["flip-block", "truncate"])
def test_block_damage_to_the_live_journal_keeps_trades_exactly_once(drill, record_property, mode):
    d = drill(f"duckdb-corrupt-{mode}")
    assert_exactly_once(d)
    # the health check reads the file's bytes, not DuckDB's buffer pool: a cut file (size against
    # pragma_database_size) and changed bytes (block checksums) are found within one check, DDB-6
    row = assert_repaired_with_evidence(d, record_property)
    assert row["detected_by"].startswith("health check"), row
    assert ("fails its checksum" if mode == "flip-block" else "ends before its own blocks") in row["saw"], row
    assert row["missing_writes"] == 0 and "from the engine's memory" in row["recovered"]
    assert d.result("store_repair").valid is True, d.result("store_repair").summary


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every DuckDB damage drill")
def test_a_full_disk_refuses_journal_writes_and_trading_resumes_after(drill, record_property):
    """disk-full: the active engine's state dir is a 32 MB tmpfs of its own, filled for 8 s. Every journal write
    is refused (one journal_disk_full alert), nothing is acknowledged meanwhile, the engine neither exits nor moves
    its journal into the damaged-evidence folder, and it trades again once space returns."""
    d = drill("disk-full")
    assert_exactly_once(d)
    [window] = [w for w in d.run.fault_windows() if w.fault == "disk-fill"]
    full = d.engine_events("journal_disk_full")
    assert len(full) == 1 and "no space left" in full[0]["problem"], full
    record_property("refused_after_s", round(full[0]["mono"] - window.inject_mono, 3))
    assert d.engine_events("journal_disk_ok"), "writes never succeeded again"
    for name in ("journal_unhealthy", "journal_repaired", "engine_error"):
        assert not d.engine_events(name), f"{name} on a full disk: {d.engine_events(name)[:2]} ({d.run.path})"
    assert len(d.engine_events("engine_start")) == 2, "an engine restarted (exit on ENOSPC?)"
    assert not list(d.run.path.glob("stack/engines/*/backup/duckdb/damaged/*")), "a healthy journal moved aside"
    holder = full[0]["instance"]
    acks = [e["mono"] for e in d.engine_events("ack") if e["instance"] == holder]
    during = [a for a in acks if window.inject_mono + 0.5 < a < window.heal_mono]
    after = [a for a in acks if a > window.heal_mono]
    assert not during, f"{len(during)} signal(s) acknowledged while the journal could not write"
    assert after, "no trade after the disk had space again"
    record_property("first_ack_after_heal_s", round(after[0] - window.heal_mono, 3))
    # DDB-5: every write refused meanwhile was applied after, or is still recorded; none lost
    failed = d.result("failed_writes")
    record_property("refused_writes", failed.metrics["refused_writes"])
    assert failed.valid is True and failed.metrics["lost_writes"] == 0, failed.summary
    assert failed.metrics["refused_writes"] > 0, failed.summary


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every DuckDB damage drill")
def test_a_kill_during_heavy_journal_writes_loses_no_acknowledged_trade(drill, record_property):
    d = drill("engine-kill-heavy-writes", duration_s=None, settle_s=None, rate_per_s=None, fault_at_s=None)
    assert_exactly_once(d)
    lost = d.result("lost_signals")
    record_property("acknowledged", lost.metrics["acknowledged"])
    record_property("rto_s", d.result("rto").metrics.get("rto_s"))
    assert lost.metrics["acknowledged"] > 1000, lost.metrics     # the load really was heavy


# -- issue 13's persistence drills: PostgreSQL credentials, JSON config, ClickHouse outage, Redis AOF --------------
# Each runs its scenario as registered (its fault steps have their own times; SHORT's one fault_at_s would stack them).
AS_REGISTERED = {"duration_s": None, "settle_s": None, "rate_per_s": None, "fault_at_s": None}


def test_postgres_restore_and_the_engine_logs_in_with_the_restored_logins(drill, record_property):
    """The default drill of these: the credentials database dumped, dropped, restored (PG-1 under 5 s), the logins
    decrypt again, a restarted engine reads them from PostgreSQL and trades; no key or password in the run folder."""
    d = drill("postgres-restore", **AS_REGISTERED)
    assert_exactly_once(d)
    res = d.result("pg_restore")
    for key in ("restore_s", "outage_s", "dump_bytes", "logins_not_decrypted", "engine_logins_after_restore",
                "secret_leaks", "scanned_files"):
        record_property(key, res.metrics.get(key))
    assert res.valid is True, f"{res.summary} ({d.run.path})"
    assert res.metrics["logins_not_decrypted"] == 0 and res.metrics["secret_leaks"] == 0
    assert res.metrics["engine_logins_after_restore"] >= 1
    reads = d.engine_events("broker_logins_read")
    assert reads and all(e["source"] == "postgresql" and e["brokers"] == ["primary", "backup"] for e in reads)
    config = (d.run.path / "config.json").read_text()
    assert "credentials_key_file" in config and "broker-logins.key" in config
    assert not any(p.name.endswith(".key") for p in d.run.path.rglob("*"))   # the key file stays outside the run


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every persistence drill")
def test_damaged_settings_files_load_the_newest_backup_with_a_clear_line(drill, record_property):
    d = drill("config-corrupt", **AS_REGISTERED)
    assert_exactly_once(d)
    res = d.result("config_fallback")
    for key in ("config_load_s", "config_backups_kept", "recovered", "damages", "damaged_files_kept"):
        record_property(key, res.metrics.get(key))
    assert res.valid is True, f"{res.summary} ({d.run.path})"
    assert res.metrics["damages"] == 4 and res.metrics["recovered"] == 4
    assert res.metrics["modes"] == sorted(["truncate", "invalid-json", "wrong-type", "oversize"])
    assert res.metrics["config_backups_kept"] == 3 and res.metrics["damaged_files_kept"] == 2
    # the engines logged each fallback as one line in their process logs too
    lines = [ln for p in d.run.path.glob("nodes/engine-*.log") for ln in p.read_text().splitlines()
             if "settings:" in ln and "loaded the newest valid backup" in ln]
    assert len(lines) == 4, lines


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every persistence drill")
def test_a_clickhouse_outage_goes_through_failed_syncs_and_every_trade_lands_once(drill, record_property):
    d = drill("clickhouse-outage", **AS_REGISTERED)
    assert_exactly_once(d)
    res = d.result("clickhouse_history")
    for key in ("trades", "clickhouse_rows_final", "clickhouse_rows_raw", "rto_s", "sync_attempts",
                "sync_retry_interval_s"):
        record_property(key, res.metrics.get(key))
    assert res.valid is True, f"{res.summary} ({d.run.path})"
    assert res.metrics["trades"] > 0 and res.metrics["clickhouse_missing_trades"] == 0
    assert res.metrics["clickhouse_duplicate_trades"] == 0 and res.metrics["outages_through_failed_syncs"] == 1
    [outage] = res.outages
    assert outage["outcomes_to_failed_syncs"] > 0 and outage["retries_before_failed_syncs"] == 3


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every persistence drill")
def test_every_redis_node_stopped_with_a_damaged_aof_comes_back_from_the_rdb(drill, record_property):
    d = drill("redis-aof-damaged", **AS_REGISTERED)
    res = d.result("redis_recovery")
    for key in ("rto_s", "lost_acknowledged_writes", "from_rdb", "undetected_corruptions", "damaged_files_kept"):
        record_property(key, res.metrics.get(key))
    # BR-1's order, whatever the damage: a refused AOF -> the RDB, with the damaged folder kept
    assert res.metrics["recovery_order_violations"] == 0, res.summary
    assert res.metrics["damaged_files_kept"] == res.metrics["from_rdb"]
    assert res.metrics["journal_checked"], f"BR-1's verification against DuckDB checked nothing: {res.summary}"
    if res.metrics["from_aof"]:
        # the seeded damage landed inside a value's bytes: the RESP framing holds, redis-check-aof has no checksum to
        # see it, and the node loads the altered AOF (measured 1 in 6 runs, seeds 21-23 twice). What it lost is
        # counted (lost_acknowledged_writes; found by the verification against DuckDB when it was an RTS key) and
        # not repaired
        assert res.metrics["undetected_corruptions"] + res.metrics["journal_missing"] >= 1 or \
            res.metrics["lost_acknowledged_writes"] == 0, res.summary
        pytest.xfail(f"AOF damage inside a value passes redis-check-aof (no AOF checksum): {res.summary}")
    assert_exactly_once(d)
    assert res.valid is True, f"{res.summary} ({d.run.path})"
    assert res.metrics["from_rdb"] == 3 and res.metrics["damaged_files_kept"] == 3
    assert res.metrics["lost_acknowledged_writes"] == 0
    for r in d.results("state"):
        assert r.valid is True, r.summary
    kept = list(d.run.path.glob("stack/data/redis-*/damaged/appendonlydir-*"))
    assert len(kept) == 3   # the damaged AOFs, kept as evidence


@pytest.mark.skipif(not ALL_DRILLS, reason="TRADEDRILL_ALL_DRILLS=1 runs every persistence drill")
def test_every_redis_node_crashed_with_a_damaged_aof_follows_br1s_order(drill, record_property):
    """redis-aof-damaged-kill: SIGKILL, so no RDB is written on the way out; BR-1's order is followed with whatever
    RDB a crash leaves (RDS-3's settings read from the running nodes), then RDS-6's "else from DuckDB": what the
    files lost and the engines' journals hold is written back before the primary serves. Measured (seed 32) before
    that restore existed: the primary had no dump.rdb and the replicas a 0-key one, 121 acknowledged writes lost, 40
    RTS mismatches; with it: 41 RTS hashes, 41 RTRS results and 40 RTSS entries restored, 0 lost."""
    d = drill("redis-aof-damaged-kill", **AS_REGISTERED)
    res = d.result("redis_recovery")
    for key in ("rto_s", "lost_acknowledged_writes", "from_rdb", "journal_missing", "appendfsync",
                "rts_missing_before_restore", "restored_rts", "restored_rtrs", "restored_rtss", "rtss_unrecoverable"):
        record_property(key, res.metrics.get(key))
    assert res.metrics["stop"] == ["SIGKILL"] and res.metrics["recovery_order_violations"] == 0, res.summary
    assert res.metrics["appendfsync"] == "always" and res.metrics["rdb_save"] == "60 1000", res.summary
    assert res.metrics["journal_checked"], f"BR-1's verification against DuckDB checked nothing: {res.summary}"
    assert not res.metrics["restore_errors"], res.summary
    # whatever the files lost, the journals gave back: every final outcome's RTS hash is there again
    assert res.metrics["restored_rts"] == res.metrics["rts_missing_before_restore"], res.summary
    assert res.metrics["journal_missing"] == 0 and res.metrics["lost_acknowledged_writes"] == 0, res.summary
    assert_exactly_once(d)
    assert res.valid is True, f"{res.summary} ({d.run.path})"
