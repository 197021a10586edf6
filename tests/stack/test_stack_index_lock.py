"""stacks.json (the record of running stacks) is rewritten by every harness process: `up`, `down`, drills, sweeps,
tests. Its read-modify-writes must hold a lock across processes, or a removed entry comes back and an added one is
lost; and `down --dir D` must forget D's entry, also when D is given as a relative path or its processes are gone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tradedrill.local import down_detached
from tradedrill.process import PidRegistry, StackIndex

REPO = Path(__file__).resolve().parents[2]

# the writes claim() and release() do: add an entry, remove every second one again
WRITER = """
import sys
from pathlib import Path
from tradedrill.process import PidRegistry, StackIndex
index = StackIndex(Path(sys.argv[1]))
who, n, subnet = sys.argv[2], int(sys.argv[3]), sys.argv[4]
root = Path(sys.argv[5])
for i in range(n):
    reg = PidRegistry(root / who / str(i) / "pids.json")
    index.claim(subnet, reg, root / who / str(i))
    if i % 2:
        index.release(reg)
"""


def test_three_processes_adding_and_removing_at_once_leave_the_exact_set(tmp_path):
    path = tmp_path / "state" / "stacks.json"
    n = 300
    who = {"a": "127.0.201", "b": "127.0.202", "c": "127.0.203"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), w, str(n), subnet, str(tmp_path / "runs")],
                              cwd=REPO) for w, subnet in who.items()]
    try:
        for p in procs:
            assert p.wait(timeout=300) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    expected = {str(tmp_path / "runs" / w / str(i) / "pids.json") for w in who for i in range(n) if i % 2 == 0}
    got = set(StackIndex(path).entries())
    assert not (got - expected), f"{len(got - expected)} removed entr(ies) came back"
    assert not (expected - got), f"{len(expected - got)} entr(ies) lost"
    assert not list(path.parent.glob("*.tmp")), "a temporary file was left beside stacks.json"


def test_down_dir_relative_forgets_the_entry_even_when_its_processes_are_gone(tmp_path, monkeypatch):
    """`down --dir out/loadstack` printed "stopped 16 node(s)" and the entry stayed: the index key is the resolved
    path, `down` looked it up by the relative one."""
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    run_dir = (tmp_path / "out" / "loadstack").resolve()
    run_dir.mkdir(parents=True)
    reg = PidRegistry(run_dir / "pids.json")
    StackIndex().claim("127.0.204", reg, run_dir)
    StackIndex().detach(reg)
    assert str(reg.path) in StackIndex().entries()
    assert down_detached(Path("out/loadstack")) == []   # nothing alive any more
    assert StackIndex().entries() == {}


def test_down_dir_forgets_an_entry_whose_run_folder_was_recorded_under_another_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    run_dir = tmp_path / "st"
    run_dir.mkdir()
    StackIndex().path.write_text(json.dumps({"/elsewhere/pids.json": {"subnet": "127.0.205", "run_dir": str(run_dir.resolve()),
                                               "owner": {"pid": 1, "create_time": 0.0}, "detached": True}}))
    down_detached(run_dir)
    assert StackIndex().entries() == {}


def test_down_subnet_forgets_a_stale_up_entry_whose_processes_are_gone(tmp_path, monkeypatch):
    """A stale `up` entry survived `down --subnet` ("nothing was running"); only `down --all` removed it."""
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    run_dir = tmp_path / "st"
    run_dir.mkdir()
    reg = PidRegistry(run_dir / "pids.json")
    reg.record("redis-1", 2 ** 22 + 7, 1.0)   # no such process
    StackIndex().path.write_text(json.dumps({str(reg.path): {"subnet": "127.0.206", "run_dir": str(run_dir), "detached": True,
                                      "owner": {"pid": os.getpid(), "create_time": 0.0}}}))
    assert StackIndex().reap(subnet="127.0.206", orphans_only=True) == {}
    assert StackIndex().entries() == {}
