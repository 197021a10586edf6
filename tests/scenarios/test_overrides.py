"""Engine settings a scenario runs with instead of the documents' values (scenarios.overrides): recorded with both
values and the requirement IDs they bear on, attached to those verdicts, and shown as "overridden" (never a silent
pass)."""
from __future__ import annotations

import dataclasses

import pytest

from reports.build import _verdict_line
from scenarios import overrides, registry
from scenarios.distributions import Distribution, RequirementVerdict
from scenarios.verdicts import PASS, Judgement


def test_an_override_is_recorded_with_the_documents_value_and_its_requirements(tmp_path):
    got = overrides.record(tmp_path, {"failed_sync_retry_s": 15.0, "retry_backoff_s": [0.25, 0.5, 1.0, 2.0, 4.0],
                                      "clickhouse_backup_dir": ""},   # the default: nothing to record
                           {"clickhouse_backfill_check_s": 5.0})
    by_key = {e["key"]: e for e in got}
    assert set(by_key) == {"failed_sync_retry_s", "retry_backoff_s", "clickhouse_backfill_check_s"}
    assert by_key["failed_sync_retry_s"] == {"key": "failed_sync_retry_s", "drill": 15.0, "document": 60.0,
                                             "requirement_ids": ["ORD-2"], "source": "scenario"}
    # ORD-2 is "after ORD-1's five failures": an ORD-1 figure bears on it too
    assert by_key["retry_backoff_s"]["requirement_ids"] == ["ORD-1", "ORD-2"]
    assert by_key["retry_backoff_s"]["document"] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert by_key["clickhouse_backfill_check_s"]["source"] == "drill options"
    assert overrides.load(tmp_path) == got


def test_the_verdicts_it_bears_on_say_overridden_with_both_values(tmp_path):
    entry = overrides.entries({"failed_sync_retry_s": 15.0}, "scenario")
    ord2 = Judgement("ORD-2", "failed_sync_retry_s", "<=", 60.0, "s", "EA-HA 3.2", 15.2, PASS)
    eng5 = Judgement("ENG-5", "duplicates", "==", 0, "count", "x", 0, PASS)
    overrides.annotate([ord2, eng5], entry)
    assert ord2.overridden == entry and eng5.overridden == []
    v = RequirementVerdict("ORD-2", "failed_sync_retry_s", "order-failed-syncs", "<=", 60.0, "s", "EA-HA 3.2",
                           Distribution.of([15.2]), PASS, overridden=ord2.overridden)
    assert "PASS" in _verdict_line(v)
    assert "overridden: failed_sync_retry_s = 15 (documents: 60)" in _verdict_line(v)


def test_a_scenario_may_only_override_settings_the_engine_has():
    good = registry.get("order-failed-syncs")
    assert good.engine_overrides["failed_sync_retry_s"] == 15.0
    assert registry.Scenario.from_dict(good.to_dict()).engine_overrides == good.engine_overrides
    with pytest.raises(registry.ScenarioError, match="engine_overrides: 'no_such_setting'"):
        registry.validate(dataclasses.replace(good, engine_overrides={"no_such_setting": 1}))


def test_every_engine_field_and_topology_setting_bears_on_a_requirement_or_says_why_not():
    """Issue 19: an override never maps to nothing (lease_confirm_primary was recorded with requirement_ids [])."""
    import dataclasses

    from reference.engine.config import EngineConfig
    from tradedrill.topology import SETTINGS

    fields = overrides._fields()
    nothing = [f.name for f in dataclasses.fields(EngineConfig)
               if not fields[f.name][1] and f.name not in overrides.NO_REQUIREMENT]
    assert nothing == [], f"EngineConfig fields bearing on no requirement ID: {nothing}"
    assert all(overrides.NO_REQUIREMENT.values())
    topo = [k for k in SETTINGS if not overrides.topology_ids(k) and k not in overrides.TOPOLOGY_NO_REQUIREMENT]
    assert topo == [], f"topology settings bearing on no requirement ID: {topo}"


def test_a_lease_override_marks_every_requirement_its_takeover_measures():
    """engine-pause with lease_ttl_s=2 and lease_confirm_primary=false: ENG-1, ENG-3 (same RTO), EA-5 (uptime from
    that takeover) and ENG-5 are overridden, never pass."""
    got = overrides.entries({"lease_ttl_s": 2.0, "lease_confirm_primary": False}, "drill options")
    by_key = {e["key"]: e for e in got}
    assert {"ENG-1", "ENG-3", "EA-5", "ENG-5"} <= set(by_key["lease_ttl_s"]["requirement_ids"])
    assert {"ENG-1", "ENG-5"} <= set(by_key["lease_confirm_primary"]["requirement_ids"])
    eng1 = _judgement("ENG-1", "rto_s", 1.47)
    same = _judgement("BR-1", "rto_s", 1.47)      # the same measurement judged for a requirement not named
    other = _judgement("BE-1", "rto_s", 0.3)
    overrides.annotate([eng1, same, other], got)
    assert eng1.verdict == same.verdict == "overridden" and other.verdict == "pass"
    assert same.overridden and not other.overridden
    zero = _judgement("ORD-3", "lost_signals", 0)   # an equal count is not the same event
    overrides.annotate([_judgement("ENG-1", "lost_signals", 0), zero], got)
    assert zero.verdict == "pass" and not zero.overridden


def test_the_report_lists_every_changed_setting(tmp_path):
    from types import SimpleNamespace

    from reports import build

    run = tmp_path / "engine-pause"
    run.mkdir()
    overrides.record(run, {}, {"lease_confirm_primary": False})
    rows = build.settings_changed([SimpleNamespace(run_dir=str(run), scenario="engine-pause")])
    assert [(r["key"], r["drill"], r["document"], r["source"]) for r in rows] == [
        ("lease_confirm_primary", "False", "True", "drill options")]
    assert "ENG-5" in rows[0]["requirement_ids"]
    md = build.summary_markdown({"line": "x", "unmeasured": {}, "not_measurable": {}, "overridden": {},
                                 "settings": rows}, "t", "now", 1)
    assert "## Settings changed for these runs" in md and "| lease_confirm_primary | False | True |" in md


def _judgement(rid, metric, measured):
    return Judgement(rid, metric, "<=", 3.0, "s", "x", measured, PASS)


def test_a_saved_run_with_an_override_recorded_on_no_requirement_is_completed_on_load(tmp_path):
    """overrides.json written before issue 19's tables: lease_confirm_primary with [] still marks ENG-1/ENG-5."""
    import json

    (tmp_path / overrides.OVERRIDES_FILE).write_text(json.dumps([
        {"key": "lease_confirm_primary", "drill": False, "document": True, "requirement_ids": [],
         "source": "drill options"}]))
    [e] = overrides.load(tmp_path)
    assert {"ENG-1", "ENG-5"} <= set(e["requirement_ids"])


def test_summary_md_names_each_overridden_id_with_both_values():
    from reports.build import coverage, summary_markdown
    from scenarios import targets as targets_mod
    from scenarios.distributions import Distribution, RequirementRow, RequirementVerdict

    targets = targets_mod.load()
    entry = {"key": "lease_ttl_s", "drill": 2.0, "document": 3.0}
    rows = []
    for rid in targets.ids():
        v = RequirementVerdict(rid, "m", "s", "==", 1, "count", "doc", Distribution(1), "pass",
                               overridden=[entry] if rid == "ENG-3" else [])
        rows.append(RequirementRow(rid, "t", [], "x", [{"metric": "m", "label": "m", "verdict": "pass",
                                                        "measured": [v]}], [], []))
    cov = coverage(rows, targets)
    assert cov["status"]["ENG-3"] == "overridden"
    assert "- ENG-3: lease_ttl_s = 2 (documents: 3)" in summary_markdown(cov, "t", "now", 1)
