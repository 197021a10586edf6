"""A soak that injects no fault (issue 16, part 3): ``--every`` longer than half the soak leaves no fault in it, so
the run folder has no faults.jsonl. Judging it must not crash, and its verdict must say the fault recovery was not
measured ("no fault injected"), never a plain pass. No stack here: the checkers are stubbed, the samples made up."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from reports.verification import soak_lines
from scenarios import soak
from scenarios.soak import NO_FAULT, SoakOptions, judge_run, no_fault_reason, soak_moves, verdict_word

MB = 2**20


def checker(name, **metrics):
    return SimpleNamespace(checker=name, metrics=metrics, valid=True, summary=f"{name}: ok")


@pytest.fixture
def clean_checks(monkeypatch):
    """check_run stubbed: 0 duplicates, 0 lost of 1,000 acknowledged, RTS matches, the run valid."""
    report = SimpleNamespace(results=[checker("duplicates", duplicate_orders=0),
                                      checker("lost_signals", acknowledged=1000, lost_signals=0),
                                      checker("state", state_mismatches=0)],
                             run_validity=SimpleNamespace(valid=True, reasons=[]))
    monkeypatch.setattr(soak, "check_run", lambda run, **_kw: report)


def soak_folder(tmp_path, opts: SoakOptions, faults: list[dict] | None):
    """A finished soak's run folder as ``run_soak`` leaves it: facts, flat samples of two processes for the whole
    soak, signals, and faults.jsonl only when ``faults`` is given."""
    run = tmp_path / "soak-run"
    run.mkdir()
    harness = {"fds": 15, "fd_targets": ["pipe"] * 15, "threads": 1, "children": []}
    facts = {"minutes": opts.minutes, "rate_per_s": opts.rate_per_s, "every_s": opts.every_s, "seed": opts.seed,
             "faults_scheduled": len(soak_moves(opts)), "moves": soak_moves(opts), "harness_before": harness,
             "harness_after": harness, "processes_before": 10, "processes_after": 10,
             "processes_left_after_teardown": 0, "left_after_teardown": []}
    (run / soak.FACTS).write_text(json.dumps(facts))
    rows = [{"t": float(t), "name": name, "pid": pid, "age_s": 30.0 + t, "rss": 12 * MB, "fds": 20, "threads": 4,
             "sockets": 10, "other_fds": 10, "close_wait": 0}
            for t in range(0, int(opts.minutes * 60), 2) for name, pid in (("sentinel-1", 11), ("engine-a", 12))]
    (run / soak.SAMPLES).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "signals.jsonl").write_text("".join(json.dumps({"signal": f"s{i}", "ack": "ok"}) + "\n"
                                               for i in range(1000)))
    if faults is not None:
        (run / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))
    return run


def test_a_soak_with_every_longer_than_half_its_length_schedules_no_fault_and_says_why():
    assert soak_moves(SoakOptions(minutes=2, every_s=600)) == []
    assert soak_moves(SoakOptions(minutes=2, every_s=61)) == []      # the first fault would be in the last interval
    assert len(soak_moves(SoakOptions(minutes=2, every_s=60))) == 1
    why = no_fault_reason(SoakOptions(minutes=2, every_s=600))
    assert "--every 600 s leaves no fault in a 2-minute soak" in why and "--every at 10" in why
    assert no_fault_reason(SoakOptions(minutes=2, every_s=10)) is None


def test_judging_a_soak_without_a_fault_log_ends_in_a_load_only_verdict(tmp_path, clean_checks):
    opts = SoakOptions(minutes=2, every_s=600)
    doc = judge_run(soak_folder(tmp_path, opts, faults=None), tmp_path / "out")
    s = doc["summary"]
    assert s["faults_injected"] == 0 and s["fault_counts"] == {} and s["fault_recovery"] == "unmeasured"
    assert s["verdict"] == f"passed under load only (fault recovery unmeasured: {NO_FAULT})"
    assert f"fault recovery: {NO_FAULT}" in s["unmeasured"] and "--every 600 s" in s["no_fault_reason"]
    md = (tmp_path / "out" / "soak.md").read_text()
    assert "**no fault injected**" in md and "fault recovery unmeasured" in md and "--every 600 s leaves" in md
    assert "verdict: passed under load only" in md and "verdict: passed (" not in md


def test_a_soak_with_faults_still_passes_plainly(tmp_path, clean_checks):
    opts = SoakOptions(minutes=2, every_s=60)
    step = soak.soak_scenario(opts).faults[0]
    doc = judge_run(soak_folder(tmp_path, opts, faults=[{"event": "inject", "fault": step.fault},
                                                      {"event": "heal", "fault": step.fault}]))
    s = doc["summary"]
    assert s["faults_injected"] == 1 and s["fault_recovery"] == "measured" and s["verdict"] == "passed"
    assert not any(u.startswith("fault recovery") for u in s["unmeasured"])


def test_a_failed_soak_without_a_fault_says_failed_and_its_reason(tmp_path, monkeypatch):
    report = SimpleNamespace(results=[checker("duplicates", duplicate_orders=2),
                                      checker("lost_signals", acknowledged=1000, lost_signals=0)],
                             run_validity=SimpleNamespace(valid=True, reasons=[]))
    monkeypatch.setattr(soak, "check_run", lambda run, **_kw: report)
    s = judge_run(soak_folder(tmp_path, SoakOptions(minutes=2, every_s=600), faults=None))["summary"]
    assert s["verdict"] == "failed" and "duplicate orders: 2" in s["failed_because"]
    assert verdict_word({"passed": True, "fault_recovery": "measured"}) == "passed"
    # something not measured: never a plain "passed" in soak.json (a new user read CI's soak as a full pass)
    assert verdict_word({"passed": True, "fault_recovery": "measured",
                         "unmeasured": ["engine-a RSS: 0 s of steady samples"]}) == "passed (what was measured passed)"
    assert "**failed**: duplicate orders: 2" in "\n".join(soak_lines({"summary": s, "processes": {}}))


def test_judging_an_interrupted_soak_says_why_it_cannot(tmp_path):
    """Second new user's finding: judge_run on an interrupted soak's folder raised a bare FileNotFoundError for
    soak-facts.json; it now says the soak was interrupted and is not judged."""
    import pytest

    (tmp_path / "status.json").write_text('{"status": "interrupted", "why": "SIGINT"}')
    with pytest.raises(FileNotFoundError, match="the soak was interrupted, and an interrupted soak is not judged"):
        judge_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a finished soak's run folder"):
        judge_run(tmp_path / "nothing")
