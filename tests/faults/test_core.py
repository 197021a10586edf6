import json
import random

import pytest

from faults.core import ACTIVE, Composite, Fault, FaultError, FaultLog, FaultState, heal_active, rng_for


class Flag(Fault):
    name = "flag"
    requirement_ids = ("TEST",)

    def __init__(self, fail_inject=False, **kw):
        super().__init__(**kw)
        self.on = False
        self.heals = 0
        self.fail_inject = fail_inject

    def _inject(self):
        self.on = True
        if self.fail_inject:
            raise RuntimeError("half injected")

    def _heal(self):
        self.on = False
        self.heals += 1

    def describe(self):
        return "a flag"

    def details(self):
        return {"on": self.on}


def test_fault_log_lines_have_the_documented_schema(tmp_path):
    log = FaultLog(tmp_path / "faults.jsonl")
    with Flag(log=log):
        pass
    lines = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert [l["event"] for l in lines] == ["inject", "heal"]
    for line in lines:
        assert set(line) >= {"event", "fault", "fault_id", "description", "requirements", "wall", "wall_ts",
                             "mono", "details"}
        assert line["fault"] == "flag" and line["requirements"] == ["TEST"] and line["description"] == "a flag"
    assert lines[0]["fault_id"] == lines[1]["fault_id"]
    assert lines[0]["mono"] <= lines[1]["mono"]
    assert lines[0]["details"] == {"on": True}
    assert log.read() == lines


def test_heal_is_idempotent_and_runs_on_exceptions_and_ctrl_c():
    f = Flag()
    with pytest.raises(ValueError):
        with f:
            assert f.on and f in ACTIVE.active()
            raise ValueError("scenario failed")
    assert not f.on and f.heals == 1 and f not in ACTIVE.active()
    f.heal()
    assert f.heals == 1
    g = Flag()
    with pytest.raises(KeyboardInterrupt):
        with g:
            raise KeyboardInterrupt
    assert not g.on


def test_double_inject_is_refused_and_failed_inject_is_undone(tmp_path):
    log = FaultLog(tmp_path / "f.jsonl")
    f = Flag(log=log).inject()
    with pytest.raises(FaultError):
        f.inject()
    f.heal()
    bad = Flag(fail_inject=True, log=log)
    with pytest.raises(RuntimeError):
        bad.inject()
    assert not bad.on and not bad.active and bad not in ACTIVE.active()
    assert [l["event"] for l in log.read()][-1] == "inject-failed"


def test_registry_heals_everything_left_active():
    a, b = Flag().inject(), Flag().inject()
    assert heal_active() == []
    assert not a.on and not b.on and not a.active


def test_composite_heals_in_reverse_and_state_file_round_trips(tmp_path):
    a, b = Flag(), Flag()
    with Composite([a, b]) as c:
        assert a.on and b.on and c.requirement_ids == ("TEST",)
    assert not a.on and not b.on
    st = FaultState(tmp_path / "s.json")
    st.add("toxics", {"x": 1})
    st.add("toxics", {"x": 1})
    assert st.entries() == {"toxics": [{"x": 1}]}
    st.remove("toxics", {"x": 1})
    assert not (tmp_path / "s.json").exists()


def test_rng_for_replays_from_the_seed_and_needs_one():
    assert rng_for(7, "loss").random() == rng_for(7, "loss").random()
    assert rng_for(7, "loss").random() != rng_for(7, "dup").random()
    r = random.Random(1)
    assert rng_for(r) is r
    with pytest.raises(FaultError):
        rng_for(None)


def test_two_processes_adding_to_one_state_file_lose_no_record(tmp_path):
    """Two drills (or two test workers) from one folder share .tradedrill/faults-state.json: each read-modify-wrote
    it under a thread lock only, so a record the other added in between was lost and ``heal-all`` never saw it."""
    import subprocess
    import sys
    path = tmp_path / "state.json"
    script = ("import sys\nfrom faults.core import FaultState\nst = FaultState(sys.argv[1])\n"
              "for i in range(150):\n    st.add('proxy', {'by': sys.argv[2], 'i': i})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), who]) for who in ("a", "b")]
    try:
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    records = FaultState(path).entries()["proxy"]
    assert len(records) == 300 and {r["by"] for r in records} == {"a", "b"}


def test_a_state_lock_held_by_another_process_is_named_not_waited_on_forever(tmp_path, monkeypatch):
    """The lock file's flock is held elsewhere (a hung process, or another user's file in a shared folder): add()
    gives up after STATE_LOCK_WAIT_S with a one-line error naming the file, instead of blocking a drill forever."""
    import subprocess
    import sys

    import faults.core as core

    path = tmp_path / "state.json"
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
                               "sys.stdin.read()", str(path) + ".lock"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(core, "STATE_LOCK_WAIT_S", 0.3)
        with pytest.raises(FaultError, match=r"state\.json\.lock stayed locked by another process") as err:
            FaultState(path).add("proxy", {"i": 1})
        assert "\n" not in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(10)
    FaultState(path).add("proxy", {"i": 1})          # released: the record goes in
    assert FaultState(path).entries() == {"proxy": [{"i": 1}]}
