"""A variant sweep killed mid-run, then run again (a new user's defect): the new sweep removed the old sweep's folder
(``out/verification/runs/<variant>``) with the stack's ``pids.json`` in it while that stack still ran, claimed the
same registry path in the stack index (overwriting the killed sweep's entry), failed on the ports the old stack held,
and released the entry: ``tradedrill down`` in every form said "nothing was running" beside 10 live processes.

Now the sweep stops what is recorded in its folder before it removes it (``StackIndex.reap_under``) and refuses a
folder a live harness process runs a stack in; and a claim of a registry another live process owns is refused.
No stack here: a "node" is a Python process in a session of its own. A few seconds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.variants.test_catch_rate import _clear
from tradedrill.process import PidRegistry, StackIndex, SubnetBusy, _create_time, same_process_alive

REPO = Path(__file__).resolve().parents[2]
SUBNET = "127.0.129"   # its own (127.0.128 is tests/stateful/test_killed_pytest.py's)

# a harness process that claims the subnet for the stack whose registry is argv[1]; "exit": it dies at once (a
# SIGKILLed sweep), "live": it runs until its stdin closes (a sweep still running)
OWNER = """
import sys
from pathlib import Path
from tradedrill.process import PidRegistry, StackIndex
reg = PidRegistry(Path(sys.argv[1]))
StackIndex().claim(sys.argv[2], reg, reg.path.parent)
print("claimed", flush=True)
if sys.argv[3] == "live":
    sys.stdin.read()
"""


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def nodes():
    started: list[subprocess.Popen] = []

    def start(registry: PidRegistry, name: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                start_new_session=True)
        started.append(proc)
        registry.record(name, proc.pid, _create_time(proc.pid))
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _owner(registry: PidRegistry, how: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(registry.path), SUBNET, how], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    if how == "exit":
        proc.wait(30)
    return proc


def _alive(proc: subprocess.Popen) -> bool:
    return same_process_alive(proc.pid, _create_time(proc.pid))


def test_a_new_sweep_stops_what_a_killed_sweep_left_before_it_removes_the_folder(tmp_path, state, nodes):
    folder = tmp_path / "runs" / "no-fencing"
    stack = PidRegistry(folder / "stack" / "stack" / "pids.json")     # the StatefulSession's stack
    replay = PidRegistry(folder / "example-004" / "replay-1" / "stack" / "stack" / "pids.json")
    redis, sentinel = nodes(stack, "redis-1"), nodes(stack, "sentinel-1")
    engine = nodes(replay, "engine-a")   # a stack whose index entry is lost: found by its pids.json
    _owner(stack, "exit")
    other = PidRegistry(tmp_path / "elsewhere" / "pids.json")   # another stack on the subnet, not in the folder
    elsewhere = nodes(other, "redis-1")
    _owner(other, "exit")
    _clear(folder)
    assert not any(map(_alive, (redis, sentinel, engine))), "a leftover of the folder still runs"
    assert not folder.exists()
    assert _alive(elsewhere), "a stack outside the folder was stopped"
    assert set(StackIndex().entries()) == {str(other.path)}


def test_a_sweep_refuses_a_folder_a_live_sweep_runs_a_stack_in(tmp_path, state, nodes):
    folder = tmp_path / "runs" / "no-fencing"
    stack = PidRegistry(folder / "stack" / "stack" / "pids.json")
    redis = nodes(stack, "redis-1")
    owner = _owner(stack, "live")
    try:
        with pytest.raises(pytest.fail.Exception, match=f"pid {owner.pid}.*tradedrill down --all --subnet {SUBNET}"):
            _clear(folder)
        assert _alive(redis) and stack.path.exists()
        with pytest.raises(SubnetBusy, match=f"pid {owner.pid}"):   # nor may another stack take its registry
            StackIndex().claim(SUBNET, PidRegistry(stack.path), stack.path.parent)
        assert StackIndex().entries()[str(stack.path)]["owner"]["pid"] == owner.pid
    finally:
        owner.stdin.close()
        owner.wait(30)
    assert StackIndex().claim(SUBNET, PidRegistry(stack.path), stack.path.parent) == []   # its owner is gone now
    assert stack.reap_leftovers(describe=True) == [f"redis-1 (pid {redis.pid})"]   # what LocalStack.up does next
