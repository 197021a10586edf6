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
