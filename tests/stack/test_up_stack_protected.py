"""A stack `tradedrill up` left running is never a leftover of another run: `up`, a drill, replay or soak on its
subnet refuse in one line (exit 2) naming its folder and `tradedrill down --dir <folder>`; what a killed drill left
(its owner gone, not an `up` stack) is still stopped as before."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tradedrill.process import PidRegistry, StackIndex, SubnetBusy, _create_time, same_process_alive
from tradedrill.stackcli import up

REPO = Path(__file__).resolve().parents[2]
SUBNET = "127.0.122"

# a harness process that claims the subnet for a stack and exits: detached (`up`) or not (a SIGKILLed drill)
OWNER = """
import sys
from pathlib import Path
from tradedrill.process import PidRegistry, StackIndex
reg = PidRegistry(Path(sys.argv[1]) / "pids.json")
index = StackIndex()
index.claim(sys.argv[2], reg, Path(sys.argv[1]))
if sys.argv[3] == "up":
    index.detach(reg)
"""


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A live 'node' of a stack in ``tmp_path/st3`` (a process in a session of its own, blocked on its stdin)."""
    monkeypatch.setenv("TRADEDRILL_STATE_DIR", str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                            start_new_session=True)
    run_dir = (tmp_path / "st3").resolve()
    run_dir.mkdir()
    PidRegistry(run_dir / "pids.json").record("redis-1", proc.pid, _create_time(proc.pid))
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _owner_exits(run_dir: Path, how: str) -> None:
    subprocess.run([sys.executable, "-c", OWNER, str(run_dir), SUBNET, how], cwd=REPO, check=True, timeout=60)


def test_claim_refuses_a_subnet_an_up_stack_runs_on(node, tmp_path):
    proc, run_dir = node
    _owner_exits(run_dir, "up")
    other = PidRegistry(tmp_path / "st4" / "pids.json")
    with pytest.raises(SubnetBusy) as err:
        StackIndex().claim(SUBNET, other, tmp_path / "st4")
    msg = str(err.value)
    assert f"tradedrill down --dir {run_dir}" in msg and "\n" not in msg, msg
    assert same_process_alive(proc.pid, _create_time(proc.pid)), "the up stack's node was killed"
    assert str(run_dir / "pids.json") in StackIndex().entries()
    # once its processes are gone the record is stale: the next claim forgets it and goes ahead
    proc.kill()
    proc.wait(timeout=10)
    assert StackIndex().claim(SUBNET, other, tmp_path / "st4") == []
    assert set(StackIndex().entries()) == {str(other.path)}


def test_up_cli_refuses_in_one_line_with_exit_2(node, tmp_path, monkeypatch):
    proc, run_dir = node
    _owner_exits(run_dir, "up")

    def no_nodes(self):  # this test must never start a stack, whatever the code under test does
        raise RuntimeError("up went on to start the stack's nodes")
    monkeypatch.setattr("tradedrill.local.LocalStack._start_all", no_nodes)
    result = CliRunner().invoke(up, ["--dir", str(tmp_path / "st4"), "--subnet", SUBNET, "--services", "redis"])
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr
    assert err.startswith("tradedrill: ") and err.count("\n") == 1, err
    assert "Traceback" not in result.output
    assert f"tradedrill down --dir {run_dir}" in err and f"subnet {SUBNET} is in use" in err, err
    assert "left by an earlier run" not in result.output
    assert proc.poll() is None, "the up stack's node was killed"


def test_a_killed_drills_leftovers_are_still_stopped(node, tmp_path):
    proc, run_dir = node
    _owner_exits(run_dir, "drill")   # its owner exits without detaching: a crashed or SIGKILLed drill
    other = PidRegistry(tmp_path / "st4" / "pids.json")
    stopped = StackIndex().claim(SUBNET, other, tmp_path / "st4")
    assert stopped == [f"redis-1 (pid {proc.pid})"]
    assert proc.wait(timeout=10) != 0
    assert set(StackIndex().entries()) == {str(other.path)}


def test_a_drill_or_stateful_session_refused_for_a_busy_subnet_leaves_no_folder(node, tmp_path):
    """The second new user: a drill or replay refused for a busy subnet left a half-made run folder."""
    from scenarios import registry
    from scenarios.environment import DrillError, DrillOptions
    from scenarios.runner import run_once
    from scenarios.stateful import SessionOptions, StatefulSession

    proc, run_dir = node
    _owner_exits(run_dir, "up")
    out = tmp_path / "drills"
    with pytest.raises(DrillError, match=f"subnet {SUBNET} is in use") as err:
        run_once(registry.get("engine-kill"), out / "drill-x" / "engine-kill" / "run-1", 1,
                 DrillOptions(subnet=SUBNET, seed=1, repeat=1, out_dir=out), repeat=1)
    assert f"tradedrill down --dir {run_dir}" in str(err.value)
    assert not out.exists(), f"a refused drill left {sorted(p.name for p in out.rglob('*'))}"
    said: list[str] = []   # run_drills refuses before its first progress line (a new user saw one, then the refusal)
    from scenarios.runner import run_drills
    with pytest.raises(DrillError, match=f"subnet {SUBNET} is in use"):
        run_drills(["engine-kill"], DrillOptions(subnet=SUBNET, seed=1, repeat=1, out_dir=out, progress=said.append))
    assert said == [] and not out.exists()
    with pytest.raises(DrillError, match=f"subnet {SUBNET} is in use"):
        StatefulSession(SessionOptions(subnet=SUBNET, out_dir=tmp_path / "replay-1"))
    assert not (tmp_path / "replay-1").exists()
    assert proc.poll() is None, "the up stack's node was killed"


def test_down_of_the_subnet_names_the_up_stack_it_leaves_running(node, tmp_path):
    """A new user ran `tradedrill down --subnet S` beside an `up` stack on S and read "nothing was running"."""
    from tradedrill.stackcli import down

    proc, run_dir = node
    _owner_exits(run_dir, "up")
    result = CliRunner().invoke(down, ["--dir", str(tmp_path / "elsewhere"), "--subnet", SUBNET])
    assert result.exit_code == 0, result.output
    assert "nothing was running" not in result.output
    assert (f"nothing stopped: the stack in {run_dir} (subnet {SUBNET}) still runs; stop it with "
            f"`tradedrill down --dir {run_dir}`") in result.output, result.output
    assert proc.poll() is None, "down --subnet stopped the up stack's node"
