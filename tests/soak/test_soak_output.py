"""What a user reads of a soak (issue 16, part 3, the new user's items): the verdict line never says "passed" and
"never counted as passed" at once (what was not measured is counted on it and listed one per line in soak.md); the
harness's own leak check (its fds before the stack started -> after its teardown) and the fds each process had at
its first/last sample while the stack ran have different names in soak.md, soak.json and on the console; the console
prints a short summary (the figures stay in soak.json); a soak refused before its stack started a process leaves no
run folder. No stack here: the checkers and the drill runner are stubbed, the samples made up."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reports.verification import soak_lines, soak_verdict_line
from scenarios import soak
from scenarios.environment import DrillError
from scenarios.soak import SoakOptions, SoakResult, console_lines, judge_run, run_soak
from scenarios.verifycli import soak as soak_command
from tests.soak.test_soak_no_fault import MB, clean_checks, soak_folder  # noqa: F401 - clean_checks: a fixture


def faulted_soak_with_a_short_lived_engine(tmp_path) -> dict:
    """A judged 2-minute soak with one fault that passed what it measured; engine-b lived 10 s (its RSS and fds
    are not measured)."""
    opts = SoakOptions(minutes=2, every_s=60)
    step = soak.soak_scenario(opts).faults[0]
    run = soak_folder(tmp_path, opts, faults=[{"event": "inject", "fault": step.fault},
                                              {"event": "heal", "fault": step.fault}])
    short = [{"t": float(t), "name": "engine-b", "pid": 13, "age_s": 30.0 + t, "rss": 120 * MB, "fds": 16,
              "threads": 4, "sockets": 8, "other_fds": 8, "close_wait": 0} for t in range(100, 110, 2)]
    with open(run / soak.SAMPLES, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in short)
    return judge_run(run, tmp_path / "out")


def test_a_pass_with_items_not_measured_says_so_plainly_and_lists_each_once(tmp_path, clean_checks):
    doc = faulted_soak_with_a_short_lived_engine(tmp_path)
    s = doc["summary"]
    assert s["passed"] and s["unmeasured"] == [u for u in s["unmeasured"] if u.startswith("engine-b")]
    assert len(s["unmeasured"]) == 2   # engine-b RSS, engine-b fds: never counted as flat
    md = (tmp_path / "out" / "soak.md").read_text()
    assert "verdict: passed (what was measured passed); not measured: 2 items (listed below)" in md
    assert "never counted as passed" not in md and "unmeasured, never" not in md
    listed = [line for line in md.splitlines() if line.startswith("- not measured (neither passed nor failed): ")]
    assert [line.split(": ", 1)[1] for line in listed] == s["unmeasured"]
    verdict_lines = [line for line in md.splitlines() if line.startswith("verdict")]
    assert len(verdict_lines) == 1 and "engine-b RSS:" not in verdict_lines[0]


def test_the_verdict_line_for_each_outcome():
    assert soak_verdict_line({"passed": True, "verdict": "passed", "unmeasured": []}) == "verdict: passed"
    assert soak_verdict_line({"passed": True, "verdict": "passed", "unmeasured": ["a"] * 7}, "see soak.md") == \
        "verdict: passed (what was measured passed); not measured: 7 items (see soak.md)"
    load_only = soak_verdict_line({"passed": True, "verdict": soak.verdict_word(
        {"passed": True, "fault_recovery": "unmeasured"}), "unmeasured": ["fault recovery: no fault injected"]})
    assert load_only.startswith("verdict: passed under load only (") and load_only.endswith(
        "; not measured: 1 item (listed below)")
    failed = soak_verdict_line({"passed": False, "failed_because": ["engine-a RSS growing: +3.894 MB/min"],
                                "unmeasured": ["x"]})
    assert failed == "verdict: **failed**: engine-a RSS growing: +3.894 MB/min; not measured: 1 item (listed below)"


def test_the_harness_leak_check_and_the_sampled_fds_have_different_names_everywhere(tmp_path, clean_checks):
    doc = faulted_soak_with_a_short_lived_engine(tmp_path)
    saved = json.loads((tmp_path / "out" / "soak.json").read_text())
    s, harness_fds = saved["summary"], 15   # soak_folder: 15 fds before the stack and after; 20 in every sample
    assert s["harness_before_stack"]["fds"] == s["harness_after_teardown"]["fds"] == harness_fds
    assert "harness_before" not in s and "harness_after" not in s
    p = saved["processes"]["engine-a"]
    assert (p["fds_first_sample"], p["fds_last_sample"]) == (20, 20) and "fds_first" not in p
    md = (tmp_path / "out" / "soak.md").read_text()
    assert "- the harness's own leak check, before the stack started -> after its teardown: fds 15 -> 15" in md
    assert "| fds at first sample | fds at last sample |" in md and "fds first" not in md
    assert "harness before -> after" not in md
    console = "\n".join(console_lines(SoakResult(Path(doc["run_dir"]), doc["summary"], tmp_path / "out" / "soak.md",
                                                 doc["summary"]["passed"], doc["processes"])))
    assert "harness leak check (before the stack started -> after its teardown): fds 15 -> 15" in console


def test_an_old_soak_json_still_renders(tmp_path, clean_checks):
    doc = faulted_soak_with_a_short_lived_engine(tmp_path)
    s = dict(doc["summary"])
    s["harness_before"], s["harness_after"] = s.pop("harness_before_stack"), s.pop("harness_after_teardown")
    procs = {name: {**{k: v for k, v in p.items() if not k.startswith("fds_") or not k.endswith("_sample")},
                    "fds_first": p["fds_first_sample"], "fds_last": p["fds_last_sample"]}
             for name, p in doc["processes"].items()}
    md = "\n".join(soak_lines({"summary": s, "processes": procs}))
    assert "after its teardown: fds 15 -> 15" in md and "| 20 | 20 |" in md


def test_the_console_prints_a_short_summary_not_the_json(tmp_path, clean_checks, monkeypatch):
    doc = faulted_soak_with_a_short_lived_engine(tmp_path)
    result = SoakResult(Path(doc["run_dir"]), doc["summary"], tmp_path / "out" / "soak.md", True, doc["processes"])
    monkeypatch.setattr(soak, "run_soak", lambda opts: result)
    got = CliRunner().invoke(soak_command, ["--minutes", "2"])
    assert got.exit_code == 0, got.output
    lines = got.output.strip().splitlines()
    assert len(lines) <= 12 and "{" not in got.output and '"bounds"' not in got.output, got.output
    assert "signals: 1000 sent, 1000 acknowledged; duplicates: 0; lost acknowledged: 0" in lines
    assert any(line.startswith("faults: 1 of 1 injected (") for line in lines)
    assert any(line.startswith("engine-b RSS not measured: ") for line in lines)
    assert not any(line.startswith(("engine-a", "sentinel-1")) for line in lines)   # flat: only in soak.md
    assert f"figures: {tmp_path / 'out' / 'soak.md'} and {tmp_path / 'out' / 'soak.json'}" in got.output
    assert lines[-1] == "verdict: passed (what was measured passed); not measured: 2 items (see soak.md)"


def test_the_console_names_a_growing_process_and_says_failed(tmp_path, clean_checks):
    doc = faulted_soak_with_a_short_lived_engine(tmp_path)
    s = {**doc["summary"], "passed": False, "verdict": "failed",
         "failed_because": ["engine-a RSS growing: +3.894 MB/min against at most 1.105"]}
    procs = {**doc["processes"], "engine-a": {**doc["processes"]["engine-a"], "rss_verdict": "growing",
                                              "rss_reason": "+3.894 MB/min against at most 1.105"}}
    lines = console_lines(SoakResult(Path(doc["run_dir"]), s, tmp_path / "soak.md", False, procs))
    assert "engine-a RSS growing: +3.894 MB/min against at most 1.105" in lines
    assert lines[-1].startswith("verdict: failed: engine-a RSS growing") and "**" not in lines[-1]


def refused_run(started: bool):
    """run_once stubbed as the drill runner behaves when the subnet is in use (``started`` False: the folder holds
    an empty pids.json and no node log, as the new user's refused soak left it) or when a node started and died."""
    def fake(scenario, run_path, seed, opts, repeat=0):
        (run_path / "stack").mkdir(parents=True)
        (run_path / "nodes").mkdir()
        (run_path / "stack" / "pids.json").write_text(json.dumps({"redis-1": {"pid": 1}} if started else {}))
        if started:
            (run_path / "nodes" / "redis-1.log").write_text("exited\n")
        raise DrillError("the drill's stack (local provider) on 127.0.95.x did not start: subnet 127.0.95 is in use "
                         "by a running harness process")
    return fake


def test_a_soak_refused_before_its_stack_started_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "run_once", refused_run(started=False))
    out = tmp_path / "out" / "soak"
    try:
        run_soak(SoakOptions(minutes=2, out_dir=out))
    except DrillError as exc:
        assert "subnet 127.0.95 is in use" in str(exc)
    else:
        raise AssertionError("the refused soak did not raise")
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "soak.md").write_text("an earlier soak\n")
    try:
        run_soak(SoakOptions(minutes=2, out_dir=kept))
    except DrillError:
        pass
    assert sorted(p.name for p in kept.iterdir()) == ["soak.md"]


def test_a_soak_whose_stack_started_keeps_its_run_folder_for_its_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "run_once", refused_run(started=True))
    out = tmp_path / "out"
    try:
        run_soak(SoakOptions(minutes=2, out_dir=out))
    except DrillError:
        pass
    runs = list(out.glob("soak-*"))
    assert len(runs) == 1 and (runs[0] / "nodes" / "redis-1.log").exists()


def test_a_seed_beyond_32_bits_is_refused_in_one_line_before_any_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(soak, "run_once", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a stack started")))
    out = tmp_path / "out"
    got = CliRunner().invoke(soak_command, ["--seed", "99999999999999999999999", "--out", str(out)])
    assert got.exit_code == 2
    lines = got.output.strip().splitlines()
    assert lines == ["Error: --seed 99999999999999999999999 must be an integer from 0 to 4294967295"], got.output
    assert not out.exists()
