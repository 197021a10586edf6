"""Issue 19: the configuration conformance checker judged on hand-written conformance.json documents (no stack):
settings as read pass or fail against targets.toml, one diverging node fails, a setting the harness overrode is
"overridden" with both values (never a pass), a schedule longer than a drill and anything the drill does not run
are unmeasured with the reason; and the --set parser turns every bad input into one SetError line."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from scenarios import conformance as cf
from scenarios import overrides, registry
from scenarios.checkers import check_run
from scenarios.synthetic import write_run

REDIS_OK = {"appendonly": "yes", "appendfsync": "always", "auto-aof-rewrite-min-size": "67108864",
            "save": "60 1000", "maxmemory-policy": "volatile-lru", "tcp-backlog": "1024", "tcp-keepalive": "300"}
SENTINEL_OK = {"quorum": "2", "down-after-milliseconds": "3000", "failover-timeout": "5000", "parallel-syncs": "1"}
STORE = {"event": "store_settings", "mono": 5.0, "snapshot_interval_s": 0.5, "snapshots_kept": 5,
         "checkpoint_threshold": "15.2 MiB", "access_mode": "automatic", "wal_file_bytes": 4096}


def doc(redis=None, sentinel=None, engines=None, supervisors=None, listings=(), services=("redis", "mt5", "engine")):
    redis = {f"redis-{i}": dict(REDIS_OK) for i in (1, 2, 3)} if redis is None else redis
    sentinel = {f"sentinel-{i}": dict(SENTINEL_OK) for i in (1, 2, 3)} if sentinel is None else sentinel
    engines = {"engine-a": {"store_settings": dict(STORE)}} if engines is None else engines
    read = {"redis": redis, "sentinel": sentinel, "engines": engines, "supervisors": supervisors or {}}
    return {"format": 1, "services": list(services),
            "reads": [{**read, "phase": "start", "mono": 0.0}, {**read, "phase": "end", "mono": 40.0}],
            "listings": list(listings)}


def judged(d, overridden=(), rids=cf.REQUIREMENT_IDS):
    valid, metrics, evidence, summary, judgements = cf.check_conformance(d, list(overridden), requirement_ids=rids)
    return {(j.requirement_id, j.metric): j for j in judgements}, valid, summary


def test_the_documents_settings_as_read_pass():
    j, valid, summary = judged(doc())
    for key in (("RDS-1", "sentinel_down_after_ms"), ("RDS-1", "sentinel_quorum"), ("RDS-3", "appendfsync"),
                ("RDS-3", "aof_rewrite_min_size_mb"), ("RDS-3", "rdb_save"), ("RDS-5", "maxmemory_policy"),
                ("RDS-5", "tcp_backlog"), ("RDS-5", "tcp_keepalive_s"), ("DDB-1", "wal_enabled"),
                ("DDB-1", "wal_limit_mb"), ("DDB-2", "snapshot_interval_s")):
        assert j[key].verdict == "pass", (key, j[key])
    assert j[("RDS-3", "aof_rewrite_min_size_mb")].measured == 64
    assert valid is True and "live read" in summary


def test_one_diverging_node_fails_and_is_named():
    redis = {f"redis-{i}": dict(REDIS_OK) for i in (1, 2, 3)}
    redis["redis-3"]["appendfsync"] = "everysec"
    sentinel = {f"sentinel-{i}": dict(SENTINEL_OK) for i in (1, 2, 3)}
    sentinel["sentinel-2"]["quorum"] = "1"
    d = doc(redis=redis, sentinel=sentinel)
    j, valid, _ = judged(d)
    assert j[("RDS-3", "appendfsync")].verdict == "fail" and j[("RDS-3", "appendfsync")].measured == "everysec"
    assert j[("RDS-1", "sentinel_quorum")].verdict == "fail" and j[("RDS-1", "sentinel_quorum")].measured == 1
    assert valid is False
    _valid, _metrics, evidence, _summary, _j = cf.check_conformance(d)
    row = next(e for e in evidence if e.get("metric") == "appendfsync")
    assert row["diverging"] == ["redis-3@end", "redis-3@start"]


def test_an_override_the_node_runs_is_overridden_with_both_values_never_pass():
    sentinel = {f"sentinel-{i}": {**SENTINEL_OK, "down-after-milliseconds": "1000"} for i in (1, 2, 3)}
    entry = overrides.topology_entries({"sentinel.down_after_ms": 1000}, "drill options")
    assert entry == [{"key": "sentinel.down_after_ms", "drill": 1000, "document": 3000,
                      "requirement_ids": ["RDS-1", "RDS-2", "PERF-2", "EA-5"], "source": "drill options", "kind": "topology"}]
    j, valid, summary = judged(doc(sentinel=sentinel), entry)
    down = j[("RDS-1", "sentinel_down_after_ms")]
    assert down.verdict == "overridden" and down.measured == 1000 and down.target == 3000
    assert down.overridden == entry and "3000" in down.reason and "1000" in down.reason
    assert all(a["verdict"] == "overridden" for a in down.alternatives)
    assert j[("RDS-1", "sentinel_quorum")].verdict == "pass"   # the others of RDS-1 still judged as read
    assert "1 overridden" in summary
    # the same value without the override is a plain fail: the override is what makes it "overridden"
    j2, _v, _s = judged(doc(sentinel=sentinel))
    assert j2[("RDS-1", "sentinel_down_after_ms")].verdict == "fail"


def test_an_override_the_node_does_not_run_is_judged_as_read():
    entry = overrides.topology_entries({"redis.appendfsync": "everysec"}, "drill options")
    j, valid, _ = judged(doc(), entry)   # every node still answers always: the override did not take
    a = j[("RDS-3", "appendfsync")]
    assert a.verdict == "pass" and "did not take" not in a.reason and "but the node runs always" in a.reason


def test_an_engine_override_of_a_store_setting_is_overridden():
    # the engine's default keeps 10 (the strictest document); a drill that keeps EA-BR's 5 runs overridden, and the
    # 5 on disk fails the 10 only as "overridden", with both values
    engines = {"engine-a": {"store_settings": {**STORE, "snapshots_kept": 5}}}
    listing = {"mono": 1.0, "folders": {"engines/engine-a/backup/duckdb":
                                        [{"name": f"journal-A.h{i:012d}.t{i}.duckdb", "bytes": 1} for i in range(5)]}}
    later = {"mono": 2.0, "folders": {"engines/engine-a/backup/duckdb":
                                      [{"name": f"journal-A.h{i:012d}.t{i}.duckdb", "bytes": 1} for i in range(3, 8)]}}
    entry = overrides.entries({"store_snapshots_kept": 5}, "drill options")
    assert entry and entry[0]["drill"] == 5 and entry[0]["document"] == 10
    j, _valid, _ = judged(doc(engines=engines, listings=[listing, later]), entry)
    kept = j[("DDB-2", "snapshots_kept")]
    assert kept.measured == 5 and kept.verdict == "overridden" and kept.overridden == entry


def test_snapshots_kept_is_unmeasured_until_the_listing_shows_a_prune():
    listing = {"mono": 1.0, "folders": {"engines/engine-a/backup/duckdb":
                                        [{"name": f"journal-A.h{i:012d}.t{i}.duckdb", "bytes": 1} for i in range(3)]}}
    # a snapshot being written (its temp file) beside the one kept is not a second snapshot (a run of
    # order-failed-syncs: the passive engine's one snapshot was judged "1 kept")
    partial = {"mono": 0.5, "folders": {"engines/engine-a/backup/duckdb": [
        {"name": ".journal-A.partial.duckdb", "bytes": 1}, {"name": "journal-A.h000000000000.t0.duckdb", "bytes": 1}]}}
    j, _valid, _ = judged(doc(listings=[partial, listing]))
    assert j[("DDB-2", "snapshots_kept")].verdict == "unmeasured" and "pruned" in j[("DDB-2", "snapshots_kept")].reason
    five = [{"mono": k, "folders": {"engines/engine-a/backup/duckdb":
                                    [{"name": f"j.h{i}.t{i}.duckdb", "bytes": 1} for i in range(k, k + 5)]}}
            for k in range(3)]
    j, _valid, _ = judged(doc(listings=five))
    assert j[("DDB-2", "snapshots_kept")].measured == 5 and j[("DDB-2", "snapshots_kept")].verdict == "fail"
    assert j[("DDB-2", "snapshots_kept")].alternatives[0]["verdict"] == "pass"   # EA-BR's 5


def test_what_a_drill_cannot_see_is_unmeasured_with_the_reason():
    j, valid, _ = judged(doc(services=("redis", "mt5", "engine", "postgres"),
                             listings=[{"mono": 0.0, "folders": {cf.PG_DUMPS_DIR: [
                                 {"name": "credentials-20261201T010203Z.sql.gz", "bytes": 10}]}}]))
    for key in (("PG-1", "dump_interval_h"), ("PG-1", "dumps_kept")):
        assert j[key].verdict == "unmeasured" and ("6-hourly" in j[key].reason or "6 h" in j[key].reason), j[key]
    assert "saw 1 dump" in j[("PG-1", "dump_interval_h")].reason
    for key in (("BE-1", "restart_sec"), ("BE-1", "health_check_interval_s")):
        assert j[key].verdict == "unmeasured" and "backend" in j[key].reason
    assert j[("CH-3", "zstd_level")].verdict == "unmeasured" and "no ClickHouse" in j[("CH-3", "zstd_level")].reason
    assert j[("CFG-1", "config_backups_kept")].verdict == "unmeasured"


def test_a_backend_supervisor_read_judges_be1():
    sup = {"backend": {"backend-a": {"delay_s": 3.0, "health_interval_s": 3.0},
                       "backend-b": {"delay_s": 3.0, "health_interval_s": 3.0}}}
    j, _valid, _ = judged(doc(supervisors=sup))
    assert j[("BE-1", "restart_sec")].verdict == "pass" and j[("BE-1", "restart_sec")].measured == 3
    assert j[("BE-1", "health_check_interval_s")].verdict == "pass"
    sup["backend"]["backend-b"]["delay_s"] = 0.5
    j, _valid, _ = judged(doc(supervisors=sup))
    assert j[("BE-1", "restart_sec")].verdict == "fail"


def test_clickhouse_schedule_is_configuration_not_measurement():
    engines = {"engine-a": {"store_settings": dict(STORE), "clickhouse_backup_settings": {
        "event": "clickhouse_backup_settings", "full_s": 43200.0, "incremental_s": 3600.0, "keep_days": 7.0,
        "level": 3, "codec": "zstd"}}}
    j, _valid, _ = judged(doc(engines=engines, services=("redis", "clickhouse", "mt5", "engine")))
    assert j[("CH-3", "zstd_level")].verdict == "pass"
    for m in ("full_backup_interval_h", "incremental_backup_interval_h", "backup_retention_days"):
        assert j[("CH-3", m)].verdict == "unmeasured" and "configuration is not a measurement" in j[("CH-3", m)].reason


def test_nodes_that_did_not_answer_leave_the_setting_unmeasured_with_their_error():
    d = doc(redis={f"redis-{i}": {"error": "Timeout connecting to server"} for i in (1, 2, 3)},
            sentinel={}, engines={})
    j, valid, _ = judged(d)
    assert j[("RDS-3", "appendfsync")].verdict == "unmeasured" and "Timeout" in j[("RDS-3", "appendfsync")].reason
    assert j[("RDS-1", "sentinel_quorum")].verdict == "unmeasured" and "ran none" in j[("RDS-1", "sentinel_quorum")].reason
    assert j[("DDB-1", "wal_limit_mb")].verdict == "unmeasured"
    assert valid == "unknown"


def test_a_run_without_conformance_json_is_unmeasured_never_pass(tmp_path):
    write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    rc = check_run(tmp_path / "r")
    [res] = [r for r in rc.results if r.checker == "conformance"]
    assert res.valid == "unknown" and res.judgements
    assert {j.requirement_id for j in res.judgements} == set(registry.CONFORMANCE_IDS)
    assert all(j.verdict == "unmeasured" and cf.CONFORMANCE_FILE in j.reason for j in res.judgements)


def test_check_run_judges_a_saved_conformance_json_with_its_overrides(tmp_path):
    write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    sentinel = {f"sentinel-{i}": {**SENTINEL_OK, "down-after-milliseconds": "1000"} for i in (1, 2, 3)}
    (tmp_path / "r" / cf.CONFORMANCE_FILE).write_text(json.dumps(doc(sentinel=sentinel)))
    overrides.record(tmp_path / "r", {}, {}, {"sentinel.down_after_ms": 1000})
    rc = check_run(tmp_path / "r")
    [res] = [r for r in rc.results if r.checker == "conformance"]
    down = next(j for j in res.judgements if j.metric == "sentinel_down_after_ms")
    assert down.verdict == "overridden" and len(down.overridden) == 1   # attached once, not again by check_run
    assert next(j for j in res.judgements if j.metric == "appendfsync").verdict == "pass"


def test_a_damaged_conformance_json_is_unmeasured_with_the_problem(tmp_path):
    write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    (tmp_path / "r" / cf.CONFORMANCE_FILE).write_text("{not json")
    [res] = [r for r in check_run(tmp_path / "r").results if r.checker == "conformance"]
    assert res.valid == "unknown" and all(j.verdict == "unmeasured" and j.reason for j in res.judgements)


def test_every_conformance_metric_has_its_target_and_every_id_is_claimed_every_drill():
    from scenarios import targets as targets_mod

    t = targets_mod.load()
    for spec in cf.SPECS:
        assert t.target(spec.requirement_id, spec.metric) is not None, spec
    assert set(cf.METRICS) == set(registry.CONFORMANCE_IDS)
    claims = registry.claims()
    assert all(f"{registry.EVERY_RUN}: conformance" in claims[rid] for rid in registry.CONFORMANCE_IDS)


@pytest.mark.parametrize("text, expected", [("64mb", 64 << 20), ("67108864", 67108864), ("1gb", 1 << 30),
                                            ("10k", 10000), ("x", None), ("64 tb", None)])
def test_memory_sizes_read_as_redis_reads_them(text, expected):
    assert cf.memory_bytes(text) == expected


# -- --set: every bad input is one line -------------------------------------------------------------------------
def test_set_pairs_split_into_topology_and_engine_settings():
    topo, engine = overrides.parse_sets(["sentinel.down_after_ms=1000", "engine.store_snapshots_kept=10",
                                         " redis.appendfsync = everysec "])
    assert topo == {"sentinel.down_after_ms": 1000, "redis.appendfsync": "everysec"}
    assert engine == {"store_snapshots_kept": 10}


@pytest.mark.parametrize("pairs, fragment", [
    (["sentinel.down_after_ms"], "write it as KEY=VALUE"),
    (["sentinel.down_after_ms=soon"], "must be an integer"),
    (["no.such=1"], "is not a setting"),
    (["engine.heartbeat_s=fast"], "must be a float"),
    (["engine.redis_password=x"], "secrets are not set on the command line"),
    (["engine.credentials_dsn=postgresql://u:hunter2@127.0.0.1/db"], "put the password in the file"),
    (["engine.webhook_url=http://u:hunter2@x/"], "put the password in the file"),
    (["engine.instance=C"], "the stack sets it per node"),
    (["engine.state_dir=/tmp/x"], "the stack sets it per node"),
    (["engine.sentinels=[[\"127.0.0.1\", 26379]]"], "the stack sets it per node"),
    (["engine.brokers=[]"], "the stack sets it per node"),
    (["redis.port=22"], "privileged port"),
    (["backend.proxy_port=80"], "privileged port"),
    (["sentinel.quorum=3", "sentinel.count=2"], "sentinel.count"),
    (["redis.save=60 1000", "redis.save=900 1"], "given twice"),
])
def test_bad_set_pairs_are_one_line_errors(pairs, fragment):
    with pytest.raises(overrides.SetError) as err:
        overrides.parse_sets(pairs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["sentinel.down_after_ms", "sentinel.quorum", "redis.save",
                                                          "redis.appendfsync", "redis.auto_aof_rewrite_min_size",
                                                          "engine.store_snapshots_kept", "engine.retry_backoff_s",
                                                          "engine.group", "engine.heartbeat_s", "x", "",
                                                          "engine.credentials_dsn", "engine.webhook_url"]),
              st.one_of(st.text(max_size=30),
                        st.builds(lambda s, u, p, h: f"{s}://{u}:{p}hunter2@{h}/", st.sampled_from(
                            ["postgresql", "http", "https"]), st.text("abc", max_size=4),
                            st.text("xyz%", max_size=4), st.text("h.1", min_size=1, max_size=6))))), max_size=4))
def test_set_parser_fuzz_returns_settings_or_one_line_error(pairs):
    try:
        topo, engine = overrides.parse_sets(pairs)
    except overrides.SetError as exc:
        message = str(exc)
        assert message.startswith("--set") and "\n" not in message and "\r" not in message and len(message) < 600
        assert "hunter2" not in message   # the secret is never echoed
        return
    assert isinstance(topo, dict) and isinstance(engine, dict)
    assert "hunter2" not in json.dumps(engine, default=str)   # a URL password is refused, never accepted
    from tradedrill.topology import check_settings
    check_settings(topo)   # what it returned is a topology the drill can build


def test_the_folders_it_lists_are_the_ones_the_drill_writes():
    from scenarios import packages, pglogins

    assert cf.USER_SETTINGS_DIR == packages.USER_SETTINGS_DIR and cf.PG_DUMPS_DIR == pglogins.DUMPS_DIR


def test_a_probe_on_a_stack_that_answers_nothing_writes_every_error(tmp_path):
    from tradedrill.topology import Topology

    class Down:
        provider = "local"
        supervisors = {}

        def redis_node_client(self, name, timeout=0.5):
            raise ConnectionError(f"Error 111 connecting to {name}. Connection refused.")

    topo = Topology.default(subnet="127.0.107", services=("redis", "mt5", "engine"))
    (tmp_path / "stack" / "engines" / "engine-a" / "backup" / "duckdb").mkdir(parents=True)
    path = cf.ConformanceProbe(Down(), topo, tmp_path / "stack", tmp_path, sample_s=0.01).start().finish()
    d = json.loads(path.read_text())
    assert [r["phase"] for r in d["reads"]] == ["start", "end"] and len(d["listings"]) >= 2
    assert all("Connection refused" in v["error"] for r in d["reads"] for v in r["redis"].values())
    assert "engines/engine-a/backup/duckdb" in d["listings"][0]["folders"]
    j, valid, _ = judged(d)
    assert valid == "unknown" and "Connection refused" in j[("RDS-5", "tcp_backlog")].reason


def test_a_settings_miss_fails_its_requirement_not_the_runs_behaviour(tmp_path):
    """DDB-2's 5 snapshots kept (the documents' strictest is 10) fails DDB-2 in the report, while the run's own
    merge-valid (what the soak and the variants read) stays the scenario's checkers'."""
    from scenarios.distributions import summarize

    write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    five = [{"mono": k, "folders": {"engines/engine-a/backup/duckdb":
                                    [{"name": f"j.h{i}.t{i}.duckdb", "bytes": 1} for i in range(k, k + 5)]}}
            for k in range(3)]
    (tmp_path / "r" / cf.CONFORMANCE_FILE).write_text(json.dumps(doc(listings=five)))
    rc = check_run(tmp_path / "r")
    [res] = [r for r in rc.results if r.checker == "conformance"]
    assert res.valid is False
    assert all(r.valid is not False for r in rc.results if r.checker != "conformance")
    assert rc.valid is not False   # no checker of engine-kill failed on this synthetic run
    v = {(x.requirement_id, x.metric): x.verdict for x in summarize([rc])}
    assert v[("DDB-2", "snapshots_kept")] == "fail"


def test_an_override_marks_its_own_setting_only(tmp_path):
    write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    sentinel = {f"sentinel-{i}": {**SENTINEL_OK, "down-after-milliseconds": "1000"} for i in (1, 2, 3)}
    (tmp_path / "r" / cf.CONFORMANCE_FILE).write_text(json.dumps(doc(sentinel=sentinel)))
    overrides.record(tmp_path / "r", {}, {}, {"sentinel.down_after_ms": 1000})
    [res] = [r for r in check_run(tmp_path / "r").results if r.checker == "conformance"]
    j = {x.metric: x for x in res.judgements}
    assert j["sentinel_down_after_ms"].overridden and not j["sentinel_quorum"].overridden
    assert j["sentinel_quorum"].verdict == "pass"


def test_wal_enabled_needs_a_wal_seen_or_a_read_only_journal():
    no_wal = {"engine-a": {"store_settings": {**STORE, "wal_file_bytes": 0}}}
    j, _valid, _ = judged(doc(engines=no_wal))
    assert j[("DDB-1", "wal_enabled")].verdict == "unmeasured" and "WAL file" in j[("DDB-1", "wal_enabled")].reason
    listed = [{"mono": 1.0, "folders": {"engines/engine-a/*.wal": [{"name": "journal-A.duckdb.wal", "bytes": 812}]}}]
    j, _valid, _ = judged(doc(engines=no_wal, listings=listed))
    assert j[("DDB-1", "wal_enabled")].verdict == "pass"
    ro = {"engine-a": {"store_settings": {**STORE, "access_mode": "read_only"}}}
    j, _valid, _ = judged(doc(engines=ro))
    assert j[("DDB-1", "wal_enabled")].verdict == "fail"


def test_a_drill_sized_backup_schedule_is_measured_from_the_listing_and_overridden():
    engines = {"engine-a": {"store_settings": dict(STORE), "clickhouse_backup_settings": {
        "event": "clickhouse_backup_settings", "full_s": 20.0, "incremental_s": 5.0, "keep_days": 7.0, "level": 3}}}
    files = [{"name": f"trade_outcomes-20261201T0100{s:02d}.000Z-{kind}.native.zst", "bytes": 9}
             for s, kind in ((0, "full"), (5, "incremental"), (10, "incremental"), (20, "full"))]
    listing = [{"mono": 30.0, "folders": {"engines/engine-a/backup/clickhouse": files}}]
    d = doc(engines=engines, listings=listing, services=("redis", "clickhouse", "mt5", "engine"))
    j, _valid, _ = judged(d)
    assert j[("CH-3", "full_backup_interval_h")].measured == round(20 / 3600, 6)
    assert j[("CH-3", "full_backup_interval_h")].verdict == "pass"   # as listed, without the override it is a pass
    entry = overrides.entries({"clickhouse_backup_full_s": 20.0, "clickhouse_backup_incremental_s": 5.0}, "scenario")
    j, _valid, _ = judged(d, entry)
    for m in ("full_backup_interval_h", "incremental_backup_interval_h"):
        assert j[("CH-3", m)].verdict == "overridden" and j[("CH-3", m)].overridden, j[("CH-3", m)]
    assert j[("CH-3", "backup_retention_days")].verdict == "unmeasured"


def test_a_listing_between_a_snapshot_and_its_prune_does_not_count_one_more_kept():
    # a clickhouse-data-loss run: a listing caught 6 files (the new snapshot written, the oldest not yet pruned)
    def listing(k, first, last):
        return {"mono": k, "folders": {"engines/engine-a/backup/duckdb":
                                       [{"name": f"j.h{i}.t{i}.duckdb", "bytes": 1} for i in range(first, last)]}}
    lst = [listing(0, 0, 5), listing(1, 0, 6), listing(2, 1, 6), listing(3, 2, 7), listing(4, 2, 8), listing(5, 3, 8)]
    j, _valid, _ = judged(doc(listings=lst))
    assert j[("DDB-2", "snapshots_kept")].measured == 5


def test_a_url_password_is_redacted_in_the_run_folder_anyway(tmp_path):
    """Defence in depth (issue 19): overrides.json and config.json never hold a URL's password."""
    from scenarios.environment import _redacted

    got = overrides.record(tmp_path, {}, {"credentials_dsn": "postgresql://u:hunter2@127.0.0.1/db"})
    assert got[0]["drill"] == "postgresql://u:<redacted>@127.0.0.1/db"
    assert "hunter2" not in (tmp_path / overrides.OVERRIDES_FILE).read_text()
    assert _redacted({"webhook_url": "http://u:hunter2@x/"}) == {"webhook_url": "http://u:<redacted>@x/"}
