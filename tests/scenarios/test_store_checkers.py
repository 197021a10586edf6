"""The store_repair checker (issue 13) on synthetic runs of the DuckDB damage scenarios with a known truth: the
restore time and detection come from the fault log and the engines' own events, the damaged files must be in the
run folder, and a run in which no damage landed is unmeasured, never a pass."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenarios import registry
from scenarios import targets as targets_mod
from scenarios.checkers import CHECKERS, RunView, check_run, check_store_repair
from scenarios.history import FaultWindow, RunDir
from scenarios.packages import FAULTS, check_step
from scenarios.synthetic import write_store_run
from scenarios.verdicts import FAIL, PASS, UNMEASURED

LIVE, CRASH = "duckdb-corrupt-zero-header", "duckdb-corrupt-wal-garble"


def store_result(run_path: Path):
    [res] = [r for r in check_run(run_path).results if r.checker == "store_repair"]
    return res


def verdicts(res) -> dict[tuple[str, str], str]:
    return {(j.requirement_id, j.metric): j.verdict for j in res.judgements}


def test_live_damage_found_by_the_health_check_and_rewritten_from_memory(tmp_path):
    truth = write_store_run(tmp_path / "run", scenario=LIVE, detect_after_s=0.7, repair_s=0.05)
    res = store_result(tmp_path / "run")
    assert res.valid is True, res.summary
    m = res.metrics
    assert m["undetected_corruptions"] == 0 and m["repaired"] == 1
    assert m["detection_s"] == pytest.approx(truth.detected_mono - truth.inject_mono)
    assert m["restore_s"] == pytest.approx(truth.repaired_mono - truth.inject_mono)
    assert m["missing_writes"] == 0 and m["rpo_s"] == 0.0 and m["damaged_files_kept"] == 1
    [row] = res.damages
    assert row["detected_by"].startswith("health check") and "no longer a DuckDB header" in row["saw"]
    assert Path(row["evidence"]) == truth.evidence and row["files_kept"] == ["journal-A.duckdb"]
    assert "from the engine's memory" in row["recovered"]
    v = verdicts(res)
    assert v[("DDB-3", "restore_s")] == PASS and v[("DDB-6", "detection_s")] == PASS
    assert v[("DDB-6", "undetected_corruptions")] == PASS and v[("DDB-3", "repairs_without_evidence")] == PASS


def test_a_crash_repaired_on_open_reports_the_snapshot_and_the_writes_it_lacks(tmp_path):
    truth = write_store_run(tmp_path / "run", scenario=CRASH, detect_after_s=2.2, missing_writes=17,
                            snapshot_age_s=0.4)
    res = store_result(tmp_path / "run")
    events = [json.loads(x) for x in (truth.journal.parent / "events-A.jsonl").read_text().splitlines()]
    last_write = max(e["ts"] for e in events if e["mono"] < truth.inject_mono)   # the victim's last sign of life
    [row] = res.damages
    assert row["detected_by"].startswith("open") and row["missing_writes"] == 17
    assert row["recovered"].startswith("snapshot journal-A.h") and sorted(row["files_kept"]) == [
        "journal-A.duckdb", "journal-A.duckdb.wal"]
    # the span the restored snapshot lacks ends at the victim's last event, not at the damage
    assert res.metrics["rpo_s"] == pytest.approx(last_write - (truth.inject_wall - 0.4), abs=0.002)
    assert res.metrics["rpo_s"] <= 0.4
    assert res.metrics["restore_s"] == pytest.approx(2.22)
    v = verdicts(res)
    assert v[("DDB-3", "restore_s")] == PASS and v[("DDB-3", "rpo_s")] == PASS
    assert not any(rid == "DDB-6" for rid, _m in v)      # the crash scenarios do not claim the health check


def test_a_slow_restore_misses_ddb3_and_names_the_alternative(tmp_path):
    write_store_run(tmp_path / "run", scenario=CRASH, detect_after_s=3.6)
    res = store_result(tmp_path / "run")
    assert res.valid is False
    [j] = [j for j in res.judgements if j.metric == "restore_s"]
    assert j.verdict == FAIL and j.target == 3.0
    assert [a["verdict"] for a in j.alternatives] == [PASS]   # MT5-HA's 5 s


def test_an_old_snapshot_misses_the_rpo(tmp_path):
    write_store_run(tmp_path / "run", scenario=CRASH, missing_writes=40, snapshot_age_s=1.5)
    res = store_result(tmp_path / "run")
    assert verdicts(res)[("DDB-3", "rpo_s")] == FAIL and res.valid is False


def test_damage_never_found_fails_detection_and_the_restore_is_a_lower_bound(tmp_path):
    truth = write_store_run(tmp_path / "run", scenario="duckdb-corrupt-flip-block", detect_after_s=None)
    res = store_result(tmp_path / "run")
    assert res.valid is False and res.metrics["undetected_corruptions"] == 1
    assert res.metrics["detection_s"] is None and "never found" in res.summary
    [row] = res.damages
    assert row["restore_lower_bound"] and row["restore_s"] > 0 and row["problem"].startswith("never found")
    v = verdicts(res)
    assert v[("DDB-6", "undetected_corruptions")] == FAIL and v[("DDB-3", "undetected_corruptions")] == FAIL
    assert v[("DDB-6", "detection_s")] == UNMEASURED
    [restore] = [j for j in res.judgements if j.metric == "restore_s"]
    assert restore.verdict == FAIL and restore.lower_bound   # not repaired in the 12 s observed: already over 3 s
    assert truth.detected_mono is None


def test_a_failed_repair_is_detected_but_not_restored(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE, repaired=False)
    res = store_result(tmp_path / "run")
    [row] = res.damages
    assert row["detected"] and row["restore_lower_bound"] and "repair failed" in row["problem"]
    v = verdicts(res)
    assert v[("DDB-6", "undetected_corruptions")] == PASS and v[("DDB-3", "restore_s")] != PASS
    assert v[("DDB-3", "repairs_without_evidence")] == UNMEASURED


def test_a_repair_that_kept_no_damaged_file_fails(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE, evidence=False)
    res = store_result(tmp_path / "run")
    assert res.metrics["repairs_without_evidence"] == 1 and res.metrics["damaged_files_kept"] == 0
    assert verdicts(res)[("DDB-3", "repairs_without_evidence")] == FAIL
    assert "holds no damaged file" in res.damages[0]["problem"]


def test_a_moved_run_folder_still_finds_its_evidence(tmp_path):
    truth = write_store_run(tmp_path / "run", scenario=CRASH, move_to=tmp_path / "elsewhere")
    res = store_result(tmp_path / "elsewhere")
    assert res.metrics["repairs_without_evidence"] == 0 and res.metrics["evidence_folders"] == 1
    assert Path(res.damages[0]["evidence"]) == truth.evidence and truth.evidence.is_dir()


def test_no_damage_landed_is_unmeasured_never_a_pass(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE, landed=False)
    res = store_result(tmp_path / "run")
    assert res.valid == "unknown" and "no damage landed" in res.summary
    assert res.judgements and {j.verdict for j in res.judgements} == {UNMEASURED}
    # and the run itself cannot be judged: the scheduled fault never reached the fault log
    assert not check_run(tmp_path / "run").run_validity.valid


def test_damage_without_any_engine_event_log_is_unmeasured(tmp_path):
    window = FaultWindow("duckdb-corrupt", "duckdb-corrupt-1", 10.0, None, details={"path": "/x/engine-a/j.duckdb"})
    res = check_store_repair([window], [], tmp_path)
    assert res.valid == "unknown" and "no engine event log" in res.summary
    assert {j.verdict for j in res.judgements} == {UNMEASURED}


def test_a_repair_no_damage_accounts_for_is_reported(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE, unexpected_repair=True)
    res = store_result(tmp_path / "run")
    assert res.metrics["unexpected_repairs"] == 1 and res.valid is True
    assert any(e.get("kind") == "unexpected-repair" for e in res.evidence)


def test_events_of_another_engine_journal_do_not_count(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE, detect_after_s=None)
    other = tmp_path / "run" / "stack" / "engines" / "engine-b" / "events-B.jsonl"
    rows = [json.loads(x) for x in other.read_text().splitlines()] if other.exists() else []
    rows.append({"event": "journal_repaired", "mono": 1008.5, "instance": "B",
                 "file": str(other.parent / "journal-B.duckdb"), "evidence": "", "recovered": "x"})
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = store_result(tmp_path / "run")
    assert res.metrics["undetected_corruptions"] == 1 and res.metrics["unexpected_repairs"] == 1


def test_damaged_fault_and_event_lines_never_raise(tmp_path):
    write_store_run(tmp_path / "run", scenario=LIVE)
    with open(tmp_path / "run" / "faults.jsonl", "a") as fh:
        fh.write('{"event": "inject", "fault": "duckdb-corrupt", "mono": "soon"}\n{torn\n')
    with open(tmp_path / "run" / "stack" / "engines" / "engine-a" / "events-A.jsonl", "a") as fh:
        fh.write('{"event": "journal_repaired", "mono": null}\n{"event": "journ')
    view = RunView(RunDir(tmp_path / "run"))
    res = CHECKERS["store_repair"].fn(view, {}, ("DDB-3", "DDB-6"), targets_mod.load())
    assert res.metrics["undetected_corruptions"] == 0 and res.metrics["unreadable_lines"] >= 2


# -- the scenarios and the fault packages ---------------------------------------------------------------------------
STORE_SCENARIOS = [f"duckdb-corrupt-{m}" for m in ("zero-header", "flip-block", "truncate", "wal-truncate",
                                                    "wal-garble", "torn-write")]


@pytest.mark.parametrize("name", STORE_SCENARIOS)
def test_every_corruption_mode_has_a_registered_drill_judged_for_repair_and_exactly_once(name):
    s = registry.get(name)
    assert s is not None
    [step] = s.faults
    assert step.target == "active-engine" and step.params["mode"] == name.removeprefix("duckdb-corrupt-")
    checkers = {c.checker: c for c in s.checkers}
    assert "DDB-3" in checkers["store_repair"].requirement_ids
    assert {"duplicates", "lost_signals", "state", "results_delivered", "one_active", "stale_writes"} <= set(checkers)
    assert s.workload.duration_s + s.workload.settle_s <= 40
    # the WAL only tears in a crash: those modes go through the restart's repair on open, the others hit the live file
    assert step.fault == ("duckdb-crash-corrupt" if "wal" in name or "torn" in name else "duckdb-corrupt")
    assert ("DDB-6" in checkers["store_repair"].requirement_ids) == (step.fault == "duckdb-corrupt")


def test_the_heavy_write_kill_drill_is_registered():
    s = registry.get("engine-kill-heavy-writes")
    assert s.workload.rate_per_s >= 150 and s.faults[0].fault == "process-kill"
    assert s.workload.duration_s + s.workload.settle_s <= 40


def test_store_faults_refuse_an_unknown_mode_and_a_non_engine_target():
    kinds = registry.drill_node_kinds()
    assert check_step("duckdb-corrupt", "active-engine", {"mode": "flip-block"}, kinds) == []
    [problem] = check_step("duckdb-corrupt", "active-engine", {"mode": "shred"}, kinds)
    assert "shred" in problem and "wal-garble" in problem
    [problem] = check_step("duckdb-crash-corrupt", "redis-primary", {"mode": "wal-garble"}, kinds)
    assert "engine" in problem
    bad = registry.Scenario("bad-store", ("DDB-3",), "x", registry.Workload(),
                            (registry.FaultStep("duckdb-corrupt", "active-engine", 5.0, params={"mode": "nope"}),),
                            (registry.CheckerSpec("store_repair", ("DDB-3",)),))
    with pytest.raises(registry.ScenarioError, match=r"faults\[0\].*nope"):
        registry.validate(bad)
    claims_no_target = registry.Scenario("bad-claim", ("ENG-5",), "x", registry.Workload(),
                                         (registry.FaultStep("duckdb-corrupt", "active-engine", 5.0),),
                                         (registry.CheckerSpec("store_repair", ("ENG-5",)),))
    with pytest.raises(registry.ScenarioError, match="ENG-5 has no undetected_corruptions target"):
        registry.validate(claims_no_target)
    assert {"duckdb-corrupt", "duckdb-crash-corrupt"} <= set(FAULTS) and "store_repair" in CHECKERS


class _Node:
    """A stand-in engine handle: what the store packages read of a ProcessNode."""

    def __init__(self, state_dir: Path, instance: str = "A"):
        self.name = f"engine-{instance.lower()}"
        self.extra = {"state_dir": str(state_dir), "instance": instance}
        self.pid = 4242
        self.alive = True
        self.kills = 0

    def kill(self):
        self.alive = False
        self.kills += 1

    def is_alive(self):
        return self.alive


class _Target:
    def __init__(self, node, supervised=True):
        self.name, self.kind, self.address, self.node, self.supervised = node.name, "engine", "127.0.6.9", node, \
            supervised


class _Ctx:
    def __init__(self, log):
        self.fault_log, self.requirement_ids, self.seed = log, ("DDB-3",), 5


def _journal_with_wal(state: Path):
    import duckdb

    state.mkdir(parents=True, exist_ok=True)
    db = state / "journal-A.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t (i INTEGER)")
    con.execute("CHECKPOINT")
    con.execute("INSERT INTO t SELECT range FROM range(1000)")
    wal = Path(str(db) + ".wal")
    assert wal.exists() and wal.stat().st_size > 0
    return db, con


def test_the_crash_package_kills_first_then_damages_the_engines_journal(tmp_path):
    from faults.core import FaultLog

    db, con = _journal_with_wal(tmp_path / "engines" / "engine-a")
    wal_before = Path(str(db) + ".wal").read_bytes()   # the open connection stands for the process that dies
    node = _Node(db.parent)
    log = FaultLog(tmp_path / "faults.jsonl")
    fault = FAULTS["duckdb-crash-corrupt"].build(_Ctx(log), _Target(node), {"mode": "wal-garble"})
    fault.inject()
    assert node.kills == 1 and not node.is_alive()
    assert Path(str(db) + ".wal").read_bytes() != wal_before          # garbled
    fault.heal()                                                       # supervised: heal restarts nothing
    [inject, heal] = log.read()
    assert inject["fault"] == "duckdb-crash-corrupt" and inject["details"]["path"] == str(db)
    assert inject["details"]["mode"] == "wal-garble" and inject["details"]["offsets"] and heal["event"] == "heal"
    assert Path(str(db) + ".wal").read_bytes() != wal_before          # the damage stays for the engine to repair
    con.close()


def test_the_live_package_damages_the_journal_named_by_the_nodes_state_dir(tmp_path):
    from faults.core import FaultLog

    db, con = _journal_with_wal(tmp_path / "engines" / "engine-a")
    con.close()
    log = FaultLog(tmp_path / "faults.jsonl")
    fault = FAULTS["duckdb-corrupt"].build(_Ctx(log), _Target(_Node(db.parent)), {"mode": "zero-header"})
    with fault:
        assert db.read_bytes()[:4096] == b"\0" * 4096
    assert db.read_bytes()[:4096] == b"\0" * 4096                      # heal leaves the damage
    assert log.read()[0]["details"]["path"] == str(db)


def test_a_filled_tmpfs_refuses_writes_until_healed_and_a_real_disk_is_never_filled(tmp_path):
    import errno
    import os
    import subprocess

    from faults.core import FaultError
    from faults.files import FillFilesystem

    with pytest.raises(FaultError, match="not on a tmpfs"):
        FillFilesystem(tmp_path).inject()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "store"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        held = open(mount / "journal.wal", "wb")      # opened before the disk fills, like the engine's WAL
        with FillFilesystem(mount) as fault:
            with pytest.raises(OSError) as err:
                held.write(b"x" * 65536)
                held.flush()
            assert err.value.errno == errno.ENOSPC
            assert fault.details()["filler_bytes"] > 1_000_000
        held.write(b"x" * 65536)                      # space is back for the same open file
        held.flush()
        held.close()
        assert not (mount / FillFilesystem.FILLER).exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
