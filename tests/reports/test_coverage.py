"""Issue 19's coverage gate: every requirement ID of targets.toml is claimed by a scenario's checker or by a checker
every drill runs, or carries an explicit ``not_measurable`` reason; and the report's first line (HTML, summary.md,
report.json, the console) says how many IDs were measured, with the reason of every unmeasured one.

The gate is static (the registry and targets.toml, no stack) so it runs in the default test run."""
from __future__ import annotations

import json
import re
import tomllib

import pytest

from reports import build_report
from reports.build import coverage, requirement_status
from scenarios import registry, synthetic
from scenarios import targets as targets_mod
from scenarios.distributions import Distribution, RequirementRow, RequirementVerdict


def test_every_requirement_id_is_claimed_or_says_why_not():
    """The gate: every ID claimed, or not_measurable with a reason; never both (a stale not_measurable)."""
    from reports.build import gate_problems

    problems = gate_problems(targets_mod.load())
    assert not problems, f"{len(problems)} coverage gate problem(s): " + "; ".join(problems)


def test_the_gate_catches_a_stale_not_measurable_and_an_unclaimed_id():
    from reports.build import gate_problems

    with open(targets_mod.TARGETS_PATH, "rb") as fh:
        doc = tomllib.load(fh)
    doc["requirements"]["ENG-3"]["not_measurable"] = "a stale reason (test)"
    targets = targets_mod.parse(doc)
    claims = registry.claims()
    assert "ENG-3" in claims
    [problem] = gate_problems(targets, claims)
    assert problem.startswith("ENG-3: targets.toml says not measurable (a stale reason (test))")
    unclaimed = {k: v for k, v in claims.items() if k != "ENG-2"}
    assert [p.split(":")[0] for p in gate_problems(targets, unclaimed)] == ["ENG-2", "ENG-3"]
    # a legitimate not_measurable on an unclaimed ID passes the gate
    doc["requirements"]["ENG-2"]["not_measurable"] = "not in this topology (test)"
    assert [p.split(":")[0] for p in gate_problems(targets_mod.parse(doc), unclaimed)] == ["ENG-3"]


def test_a_claim_names_a_real_checker_with_targets_for_its_metrics():
    from scenarios.checkers import CHECKERS

    targets = targets_mod.load()
    for spec in registry.EVERY_RUN_CHECKERS:
        assert spec.checker in CHECKERS
        for rid in spec.requirement_ids:
            assert any(targets.target(rid, m) for m in CHECKERS[spec.checker].metrics), (spec.checker, rid)
    for rid, names in registry.claims().items():
        assert rid in targets, f"{rid} is claimed ({names[0]}) but is not a requirement of targets.toml"


def test_not_measurable_must_be_a_sentence():
    with open(targets_mod.TARGETS_PATH, "rb") as fh:
        doc = tomllib.load(fh)
    doc["requirements"]["EA-5"]["not_measurable"] = "  "
    with pytest.raises(targets_mod.TargetsError, match="EA-5: not_measurable must be a sentence"):
        targets_mod.parse(doc)
    doc["requirements"]["EA-5"]["not_measurable"] = "needs a year of operation"
    assert targets_mod.parse(doc).not_measurable()["EA-5"] == "needs a year of operation"


def _row(rid: str, *verdicts: tuple[str, list]) -> RequirementRow:
    targets = []
    for i, (verdict, overridden) in enumerate(verdicts):
        v = RequirementVerdict(rid, f"m{i}", "s", "==", 1, "count", "doc", Distribution(1), verdict,
                               overridden=overridden)
        targets.append({"metric": f"m{i}", "verdict": verdict, "measured": [v] if verdict != "unmeasured" else []})
    return RequirementRow(rid, "t", [], "x", targets, [], [])


def test_status_fail_then_overridden_then_pass_then_unmeasured():
    entry = [{"key": "k", "drill": 1, "document": 2}]
    assert requirement_status(_row("A-1", ("pass", []), ("fail", []), ("overridden", entry))) == "fail"
    assert requirement_status(_row("A-1", ("pass", []), ("overridden", entry))) == "overridden"
    assert requirement_status(_row("A-1", ("pass", entry), ("unmeasured", []))) == "overridden"   # a pass under it
    assert requirement_status(_row("A-1", ("pass", []), ("unmeasured", []))) == "pass"
    assert requirement_status(_row("A-1", ("unmeasured", []))) == "unmeasured"


@pytest.fixture(scope="module")
def report_with_a_reason(tmp_path_factory):
    root = tmp_path_factory.mktemp("cov")
    synthetic.write_run(root / "runs" / "engine-kill" / "run-1", scenario="engine-kill", seed=1, repeat=1,
                        outage_s=1.0, rate_per_s=5.0)
    with open(targets_mod.TARGETS_PATH, "rb") as fh:
        doc = tomllib.load(fh)
    doc["requirements"]["EA-5"]["not_measurable"] = "a year of operation is not a drill (test reason)"
    targets = targets_mod.parse(doc)
    path = build_report(root / "runs", root / "report", targets=targets, bench_dir=root / "no-bench")
    return path, targets


def test_the_first_line_of_every_summary_is_the_coverage_line(report_with_a_reason):
    path, targets = report_with_a_reason
    data = json.loads((path.parent / "report.json").read_text())
    line = data["summary"]
    m = re.fullmatch(r"(\d+) of (\d+) requirement IDs measured(?: \((\d+) of them in part: (\d+) targets "
                     r"unmeasured\))?: (\d+) pass, (\d+) fail, (\d+) overridden, "
                     r"(\d+) unmeasured \((\d+) of them not measurable here\)", line)
    assert m, line
    measured, total, n_part, n_targets, p, f, o, u, nm = (int(g) if g else 0 for g in m.groups())
    partial = data["coverage"]["partial"]
    assert n_part == len(partial) and n_targets == sum(len(v) for v in partial.values())
    nm_unmeasured = [rid for rid in targets.not_measurable() if data["coverage"]["status"][rid] == "unmeasured"]
    assert total == len(targets.ids()) and measured == p + f + o and measured + u == total
    assert nm == len(nm_unmeasured) and "EA-5" in nm_unmeasured
    assert data["totals"]["measured"] == measured and data["coverage"]["counts"]["unmeasured"] == u
    assert (path.parent / "summary.md").read_text().splitlines()[0] == f"**{line}**"
    html = path.read_text()
    body = html[html.index("<body>"):]
    first_text = re.sub(r"<[^>]+>", " ", body[:body.index("</p>")]).split()
    assert " ".join(first_text) == line


def test_every_unmeasured_id_has_its_reason_and_not_measurable_is_printed(report_with_a_reason):
    path, _targets = report_with_a_reason
    data = json.loads((path.parent / "report.json").read_text())
    rows = {r["requirement_id"]: r for r in data["requirements"]}
    unmeasured = [rid for rid, r in rows.items() if r["status"] == "unmeasured"]
    assert unmeasured and all(rows[rid]["unmeasured_reason"] for rid in unmeasured)
    assert rows["EA-5"]["unmeasured_reason"] == "not measurable here: a year of operation is not a drill (test reason)"
    # no conformance.json in a synthetic run: the settings' reason is the checker's own
    assert "conformance.json" in rows["RDS-5"]["unmeasured_reason"]
    html = path.read_text()
    assert "a year of operation is not a drill (test reason)" in html and 'id="unmeasured-list"' in html
    assert "EA-5: not measurable here: a year of operation" in (path.parent / "summary.md").read_text()


def test_the_console_prints_the_coverage_line_first(tmp_path):
    from click.testing import CliRunner

    from scenarios.cli import check

    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    out = CliRunner().invoke(check, [str(tmp_path / "r")]).output
    assert re.match(r"\d+ of 51 requirement IDs measured(?: \(\d+ of them in part: \d+ targets unmeasured\))?: \d+ pass, \d+ fail, \d+ overridden, \d+ unmeasured",
                    out.splitlines()[0]), out[:300]
    assert "unmeasured RDS-5:" in out


def test_coverage_counts_an_overridden_id_as_measured_never_as_pass():
    targets = targets_mod.load()
    rows = [_row(rid, ("unmeasured", [])) for rid in targets.ids()]
    rows[0] = _row(rows[0].requirement_id, ("overridden", [{"key": "k", "drill": 1, "document": 2}]))
    rows[1] = _row(rows[1].requirement_id, ("pass", []))
    cov = coverage(rows, targets)
    assert (cov["counts"]["pass"], cov["counts"]["fail"], cov["counts"]["overridden"],
            cov["counts"]["unmeasured"]) == (1, 0, 1, len(rows) - 2)
    assert cov["line"].startswith(f"2 of {len(rows)} requirement IDs measured: 1 pass, 0 fail, 1 overridden")


def test_an_overridden_setting_is_shown_with_both_values_in_every_output(tmp_path):
    """A run whose Sentinels ran the harness's down-after 1000: report.json, the HTML and junit.xml all say
    overridden with 1000 and the documents' 3000; junit does not count it a pass."""
    import xml.etree.ElementTree as ET

    from scenarios import conformance as cf
    from scenarios import overrides

    run = tmp_path / "runs" / "engine-kill" / "run-1"
    synthetic.write_run(run, scenario="engine-kill", seed=1, repeat=1, outage_s=1.0, rate_per_s=5.0)
    ok = {"quorum": 2, "down-after-milliseconds": 1000, "failover-timeout": 5000, "parallel-syncs": 1}
    read = {"redis": {}, "sentinel": {f"sentinel-{i}": dict(ok) for i in (1, 2, 3)}, "engines": {}, "supervisors": {}}
    (run / cf.CONFORMANCE_FILE).write_text(json.dumps({"format": 1, "services": ["redis"], "listings": [],
                                                       "reads": [{**read, "phase": "start"}, {**read, "phase": "end"}]}))
    overrides.record(run, {}, {}, {"sentinel.down_after_ms": 1000})
    path = build_report(tmp_path / "runs", tmp_path / "report", bench_dir=tmp_path / "no-bench")
    data = json.loads((path.parent / "report.json").read_text())
    rds1 = next(r for r in data["requirements"] if r["requirement_id"] == "RDS-1")
    assert rds1["status"] == "overridden"
    down = next(t for t in rds1["targets"] if t["metric"] == "sentinel_down_after_ms")
    [v] = down["measured"]
    assert v["verdict"] == "overridden" and v["distribution"]["max"] == 1000 and v["target"] == 3000
    assert [(e["key"], e["drill"], e["document"]) for e in v["overridden"]] == [("sentinel.down_after_ms", 1000, 3000)]
    assert data["coverage"]["counts"]["overridden"] >= 1 and re.search(r" [1-9]\d* overridden", data["summary"])
    html = path.read_text()
    assert "sentinel.down_after_ms = 1000 (documents: 3000)" in html
    case = next(c for c in ET.parse(path.parent / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "RDS-1")
    assert case.find("skipped") is not None and "sentinel.down_after_ms = 1000 (documents: 3000)" in \
        case.find("skipped").get("message") and case.find("failure") is None


def test_an_old_run_of_a_claiming_scenario_says_it_ran_an_older_definition(tmp_path):
    from scenarios.checkers import check_run
    from scenarios.distributions import requirement_table, summarize

    synthetic.write_run(tmp_path / "r", scenario="engine-kill", outage_s=1.0, rate_per_s=5.0)
    doc = json.loads((tmp_path / "r" / "scenario.json").read_text())
    doc["checkers"] = [c for c in doc["checkers"] if c["checker"] == "rto"]   # saved before ENG-5 was claimed
    (tmp_path / "r" / "scenario.json").write_text(json.dumps(doc))
    runs = [check_run(tmp_path / "r")]
    targets = targets_mod.load()
    cov = coverage(requirement_table(summarize(runs), targets), targets, runs)
    assert "the runs of engine-kill here were judged by the definition they ran with" in cov["unmeasured"]["ENG-5"]


def test_a_partly_measured_id_says_so_with_each_unmeasured_target_and_why():
    """Issue 19: an ID with one target passed and one unmeasured is counted 'in part' on the first line and listed
    with the unmeasured target and its reason (was a plain pass)."""
    from reports.build import summary_markdown

    targets = targets_mod.load()
    rows = [_row(rid, ("unmeasured", [])) for rid in targets.ids()]
    rows[0] = _row(rows[0].requirement_id, ("pass", []), ("unmeasured", []))
    rows[0].targets[1]["label"] = "m1 <= 1 s"
    for r in rows:
        for t in r.targets:
            t.setdefault("label", t["metric"])
    cov = coverage(rows, targets)
    assert cov["line"].startswith(f"1 of {len(rows)} requirement IDs measured (1 of them in part: 1 targets "
                                  f"unmeasured): 1 pass")
    assert cov["partial"] == {rows[0].requirement_id: [{"metric": "m1", "label": "m1 <= 1 s",
                                                        "reason": "no run of this report measured m1"}]}
    md = summary_markdown(cov, "t", "now", 0)
    assert f"- {rows[0].requirement_id}: m1 <= 1 s unmeasured: no run of this report measured m1" in md


def test_a_long_reason_is_whole_or_cut_at_a_sentence_with_an_ellipsis():
    from reports.build import REASON_MAX, shorten

    short = "the drill runs no PostgreSQL; dumps_kept needs 14 scheduled dumps"
    assert shorten(short) == short
    long = "First sentence says why. " + "word " * 200
    got = shorten(long)
    assert got.endswith("…") and len(got) <= REASON_MAX + 2 and got.startswith("First sentence says why.")
    nosentence = "abcdefghij " * 100
    got = shorten(nosentence)
    assert got.endswith(" …") and got[:-2].split()[-1] == "abcdefghij"   # never mid-word


def test_a_text_setting_shows_the_value_read_and_its_nodes_not_an_empty_distribution():
    """Issue 19: appendfsync passed with n=0 and no value in the tables; now 'read always (2 runs, 3 nodes each)'."""
    from types import SimpleNamespace

    from reports.build import read_values

    runs = [{"run_dir": f"r{i}", "measured": "always", "verdict": "pass"} for i in (1, 2)]
    v = RequirementVerdict("RDS-3", "appendfsync", "s", "==", "always", "setting", "doc", Distribution.of(
        ["always", "always"]), "pass", runs=runs)
    num = RequirementVerdict("DDB-1", "wal_limit_mb", "s", "<=", 256, "MB", "doc", Distribution.of([15.9]), "pass",
                             runs=[{"run_dir": "r1", "measured": 15.9, "verdict": "pass"}])
    evidence = [{"kind": "setting", "metric": "appendfsync",
                 "nodes": {f"redis-{i}@{p}": "always" for i in (1, 2, 3) for p in ("start", "end")}}]
    rcs = [SimpleNamespace(run_dir=f"r{i}", results=[SimpleNamespace(checker="conformance", evidence=evidence)])
           for i in (1, 2)]
    read_values([v, num], rcs)
    assert v.distribution.n == 0 and v.read == "read always (2 runs, 3 nodes each)"
    assert num.read == ""


def test_ea5_on_a_partial_uptime_model_is_partly_measured_with_the_missing_kinds():
    from types import SimpleNamespace

    from reports.build import partly_measured
    from scenarios.verdicts import Judgement

    targets = targets_mod.load()
    rows = [_row("EA-5", ("pass", []))]
    rows[0].targets[0].update(metric="uptime_percent", label="uptime_percent >= 99.9 %")
    j1 = Judgement("EA-5", "uptime_percent", ">=", 99.9, "%", "d", 100.0, "pass",
                   missing=["ea-crash: no RTO measured", "broker-loss: no RTO measured"])
    j2 = Judgement("EA-5", "uptime_percent", ">=", 99.9, "%", "d", 99.99, "pass",
                   missing=["engine-crash: no RTO measured", "broker-loss: no RTO measured"])
    rcs = [SimpleNamespace(judgements=[j1]), SimpleNamespace(judgements=[j2])]
    got = partly_measured(rows, {"EA-5": "pass"}, rcs)
    assert got == {"EA-5": [{"metric": "uptime_percent", "label": "uptime_percent >= 99.9 %", "in_part": True,
                             "reason": "broker-loss: no RTO measured"}]}
    j2.missing = []   # a run that measured every kind: nothing is missing over the runs
    assert partly_measured(rows, {"EA-5": "pass"}, rcs) == {}
    assert targets["EA-5"]
