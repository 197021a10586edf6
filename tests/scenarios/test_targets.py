"""targets.toml covers every requirement ID of REQUIREMENTS.md, with sources, alternatives and contradictions."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from scenarios import registry
from scenarios import targets as targets_mod

REQUIREMENTS_MD = Path(os.environ.get("TRADEDRILL_REQUIREMENTS", "/work/shared/REQUIREMENTS.md"))
# the catalogue as of writing, used when the shared file is not mounted (CI elsewhere)
KNOWN_IDS = ([f"ENG-{i}" for i in range(1, 7)] + [f"BRK-{i}" for i in range(1, 6)] + [f"ORD-{i}" for i in range(1, 4)]
             + [f"RDS-{i}" for i in range(1, 7)] + [f"DDB-{i}" for i in range(1, 7)] + [f"CH-{i}" for i in range(1, 5)]
             + [f"BE-{i}" for i in range(1, 5)] + [f"EA-{i}" for i in range(1, 6)] + [f"TV-{i}" for i in range(1, 5)]
             + ["CFG-1", "CFG-2", "PG-1", "BR-1", "BR-2", "BR-3", "PERF-1", "PERF-2"])


def requirement_ids_in_markdown(text: str) -> list[str]:
    return re.findall(r"^- ([A-Z]+-\d+) ", text, flags=re.MULTILINE)


def catalogue_ids() -> list[str]:
    if REQUIREMENTS_MD.exists():
        ids = requirement_ids_in_markdown(REQUIREMENTS_MD.read_text())
        assert len(ids) >= len(KNOWN_IDS), "REQUIREMENTS.md parsed to fewer IDs than expected: check the regex"
        return ids
    return KNOWN_IDS


def test_every_requirement_id_has_a_measurable_target():
    t = targets_mod.load()
    ids = catalogue_ids()
    missing = [rid for rid in ids if rid not in t]
    assert not missing, f"targets.toml lacks {missing}"
    assert set(KNOWN_IDS) <= set(ids)
    for rid in ids:
        req = t[rid]
        assert req.sources and req.title
        for target in req.targets:
            assert target.metric and target.unit and target.source
            assert target.comparator in targets_mod.COMPARATORS


def test_no_target_for_an_unknown_id():
    assert set(targets_mod.load().requirements) <= set(catalogue_ids())


def test_strictest_value_is_the_default_and_others_are_alternatives():
    t = targets_mod.load()
    for req in t.requirements.values():
        for target in req.targets:
            for alt in target.alternatives:
                assert alt.source
                if not isinstance(alt.value, (int, float)) or not isinstance(target.value, (int, float)):
                    continue
                if target.comparator in ("<", "<="):
                    assert target.value <= alt.value, (req.id, target.metric)
                elif target.comparator in (">", ">="):
                    assert target.value >= alt.value, (req.id, target.metric)


def test_rds2_disagreement_and_contradiction():
    t = targets_mod.load()
    rto = t.target("RDS-2", "rto_s")
    assert rto.value == 0.5 and rto.comparator == "<="
    assert sorted(a.value for a in rto.alternatives) == [1.0, 3.0]
    assert "sentinel-down-after" in rto.contradictions
    c = t.contradictions["sentinel-down-after"]
    assert c.measured and "4.2-4.4" in c.evidence and "RDS-2" in c.requirement_ids
    assert {"redis-async-replication", "trade-state-rpo"} <= set(t.contradictions)


def test_every_registered_checker_metric_has_a_target():
    from scenarios.synthetic import write_run  # noqa: F401 - the module must import cleanly
    from scenarios.checkers import CHECKERS
    t = targets_mod.load()
    names = {s.name for s in registry.all_scenarios()}
    assert names == {"engine-kill", "engine-pause", "redis-primary-kill", "redis-primary-disconnected", "lost-reply",
                     "engine-pause-in-flight", "engine-pause-repeated", "engine-kill-reading", "broker-backup-down-primary-ambiguous",
                     "engine-pause-during-failover", "redis-restart-in-flight", "redis-primary-isolated",
                     "redis-majority-minority", "redis-planned-failover", "redis-planned-failover-bare",
                     "redis-sentinel-partition",
                     "redis-all-down",
                     "duckdb-corrupt-zero-header", "duckdb-corrupt-flip-block", "duckdb-corrupt-truncate",
                     "duckdb-corrupt-wal-truncate", "duckdb-corrupt-wal-garble", "duckdb-corrupt-torn-write",
                     "engine-kill-heavy-writes", "disk-full",
                     "postgres-restore", "config-corrupt", "clickhouse-outage", "redis-aof-damaged",
                     "redis-aof-damaged-kill", "clickhouse-data-loss", "order-failed-syncs", "requote-storm",
                     "stops-during-failover", "pending-orders-across-takeover",
                     "udp-loss", "udp-blackhole", "tcp-cut", "ea-kill", "ea-network-down-30s",
                     "udp-dup-reorder", "ea-crash-loop",
                     "backend-kill", "backend-pause", "webhook-retry-storm", "clickhouse-down-history",
                     "tradingview-away", "brokers-down", "ea-ris-lost", "broker-primary-down"}
    for s in registry.all_scenarios():
        for spec in s.checkers:
            for rid in spec.requirement_ids:
                for metric in CHECKERS[spec.checker].metrics:
                    assert t.target(rid, metric) is not None, (s.name, spec.checker, rid)
        assert registry.Scenario.from_dict(s.to_dict()) == s


def test_targets_file_errors_name_the_entry():
    with pytest.raises(targets_mod.TargetsError, match="ENG-1"):
        targets_mod.parse({"requirements": {"ENG-1": {"targets": [{"metric": "rto_s"}]}}})
    with pytest.raises(targets_mod.TargetsError, match="nope"):
        targets_mod.parse({"requirements": {"ENG-1": {"targets": [
            {"metric": "m", "comparator": "<=", "value": 1, "unit": "s", "source": "x", "contradictions": ["nope"]}]}}})
