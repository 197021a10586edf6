"""Issue 19 on the real stack: one short drill through the real runner (real redis-server, Sentinels, simulators and
engines on 127.0.107.x) with ``sentinel.down_after_ms`` set to 1000; its conformance.json holds the values the
running nodes answered, RDS-1's down-after is judged "overridden" with both values, and no secret of the run
folder is in the file. About 40 s."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from scenarios import conformance, registry
from scenarios.checkers import check_run
from scenarios.runner import DrillOptions, run_once

SUBNET = os.environ.get("TRADEDRILL_CONFORMANCE_SUBNET", "127.0.107")
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    opts = DrillOptions(subnet=SUBNET, repeat=1, duration_s=6.0, settle_s=3.0, rate_per_s=5.0, fault_at_s=2.0,
                        topology_overrides={"sentinel.down_after_ms": 1000})
    run = run_once(registry.get("engine-kill"), tmp_path_factory.mktemp("conformance") / "run-1", 11, opts)
    return run, check_run(run)


@needs_redis
def test_conformance_json_holds_what_the_running_nodes_answered(drill):
    run, _check = drill
    doc = json.loads((run.path / conformance.CONFORMANCE_FILE).read_text())
    assert [r["phase"] for r in doc["reads"]] == ["start", "end"]
    assert len(doc["listings"]) >= 3   # start, about one a second in between, end
    for read in doc["reads"]:
        assert sorted(read["redis"]) == ["redis-1", "redis-2", "redis-3"]
        for node, got in read["redis"].items():
            assert got["appendfsync"] == "always" and got["save"] == "60 1000", (node, got)
            assert got["maxmemory-policy"] == "volatile-lru" and got["tcp-keepalive"] == "300", (node, got)
        assert sorted(read["sentinel"]) == ["sentinel-1", "sentinel-2", "sentinel-3"]
        for node, got in read["sentinel"].items():
            assert int(got["down-after-milliseconds"]) == 1000 and int(got["quorum"]) == 2, (node, got)
            assert int(got["failover-timeout"]) == 5000 and int(got["parallel-syncs"]) == 1, (node, got)
    end = doc["reads"][-1]
    assert all("store_settings" in events for events in end["engines"].values()), end["engines"]
    assert {p["delay_s"] for p in end["supervisors"]["engine"].values()} == {1.0}   # ENG-3's live policy


@needs_redis
def test_the_override_is_overridden_with_both_values_and_the_rest_judged(drill):
    run, check = drill
    [res] = [r for r in check.results if r.checker == "conformance"]
    j = {(x.requirement_id, x.metric): x for x in res.judgements}
    down = j[("RDS-1", "sentinel_down_after_ms")]
    assert down.verdict == "overridden" and down.measured == 1000 and down.target == 3000
    assert any(e["key"] == "sentinel.down_after_ms" and e["drill"] == 1000 and e["document"] == 3000
               for e in down.overridden)
    for key in (("RDS-1", "sentinel_quorum"), ("RDS-1", "sentinel_parallel_syncs"), ("RDS-3", "appendfsync"),
                ("RDS-3", "rdb_save"), ("RDS-3", "aof_rewrite_min_size_mb"), ("RDS-5", "maxmemory_policy"),
                ("RDS-5", "tcp_backlog"), ("RDS-5", "tcp_keepalive_s"), ("DDB-1", "wal_limit_mb")):
        assert j[key].verdict == "pass", (key, j[key])
    assert j[("BE-1", "restart_sec")].verdict == "unmeasured" and "backend" in j[("BE-1", "restart_sec")].reason
    assert j[("PG-1", "dump_interval_h")].verdict == "unmeasured" and j[("PG-1", "dump_interval_h")].reason


@needs_redis
def test_no_secret_of_the_run_folder_is_in_conformance_json(drill):
    run, _check = drill
    text = (run.path / conformance.CONFORMANCE_FILE).read_text()
    secrets = []
    for path in (run.path / "stack" / "secrets").rglob("*"):
        if path.is_file():
            try:
                text_of = path.read_text()
            except (OSError, UnicodeDecodeError):
                continue
            try:
                secrets += [v for v in _strings(json.loads(text_of)) if len(v) >= 12]
            except ValueError:
                secrets += [text_of.strip()] if len(text_of.strip()) >= 12 else []
    assert secrets, "the run folder's secrets were not found: this test would prove nothing"
    assert not [s for s in secrets if s in text]


def _strings(doc) -> list[str]:
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []
