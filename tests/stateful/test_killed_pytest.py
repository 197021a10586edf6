"""A pytest run that starts a stack, stopped from outside (a new user's defect): ``timeout -s TERM 30 pytest
tests/stateful/test_stateful.py`` left 3 redis-servers, 3 Sentinels, 2 simulators, 2 engines and an EA running
(parent pid 1), because SIGTERM ended pytest without its fixtures' teardown.

- SIGTERM: tests/conftest.py turns it into Ctrl-C's KeyboardInterrupt; the ``session`` fixture's teardown stops the
  stack, and no process it recorded (``pids.json``) outlives pytest.
- SIGKILL cannot be handled: the stack stays, and ``tradedrill down --subnet S`` finds it in the stack index (the
  stack claimed its subnet there as drills do) and stops it by the PIDs it recorded.

Each runs the real stateful test in a pytest subprocess with its own basetemp, stack index, faults state and
example database, on 127.0.127 (SIGTERM) and 127.0.128 (SIGKILL); ``TRADEDRILL_KILLED_PYTEST_SUBNETS=a,b`` moves
them. About 30-60 s each."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tradedrill.process import same_process_alive
from tradedrill.waiting import wait_until

pytestmark = [pytest.mark.drill, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SIGTERM_SUBNET, SIGKILL_SUBNET = (os.environ.get("TRADEDRILL_KILLED_PYTEST_SUBNETS")
                                  or "127.0.127,127.0.128").split(",")


class StatefulPytest:
    """``pytest tests/stateful/test_stateful.py -k random_fault_schedules`` in a subprocess on ``subnet``."""

    def __init__(self, tmp: Path, subnet: str):
        self.tmp, self.subnet = tmp, subnet
        self.basetemp = tmp / "bt"
        self.log_path = tmp / "pytest.log"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEDRILL_STATEFUL_SUBNET": subnet,
                    "TRADEDRILL_STATE_DIR": str(tmp / "state"), "TRADEDRILL_FAULTS_STATE": str(tmp / "faults.json"),
                    "TRADEDRILL_HYPOTHESIS_DB": str(tmp / "hypothesis")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "tests/stateful/test_stateful.py", "-k", "random_fault_schedules",
                 "-p", "no:cacheprovider", "-q", "--basetemp", str(self.basetemp)],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stack_dir(self) -> Path | None:
        return next((p.parent for p in self.basetemp.rglob("stack/stack/stack.json")), None)

    def wait_example_running(self) -> dict[str, dict]:
        """Once the stack is up and an example runs on it: what ``pids.json`` records (name -> pid, start time)."""
        wait_until(lambda: self.proc.poll() is not None or (
            (d := self.stack_dir()) is not None and any(d.parent.parent.glob("example-*/schedule.json"))),
            150, f"the stateful test's stack on {self.subnet} to start and run an example")
        assert self.proc.poll() is None, self.log()
        recorded = json.loads((self.stack_dir() / "pids.json").read_text())
        assert len(recorded) >= 10, recorded   # 3 Redis, 3 Sentinels, 2 simulators, 2 engines, the EA
        assert all(same_process_alive(e["pid"], e["create_time"]) for e in recorded.values()), recorded
        return recorded

    def index(self) -> dict:
        try:
            return json.loads((self.tmp / "state" / "stacks.json").read_text())
        except FileNotFoundError:
            return {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def alive(recorded: dict[str, dict]) -> list[str]:
    return [f"{n} (pid {e['pid']})" for n, e in recorded.items() if same_process_alive(e["pid"], e["create_time"])]


def listening_on(subnet: str) -> list[str]:
    return sorted({f"{c.laddr.ip}:{c.laddr.port} (pid {c.pid})" for c in psutil.net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip.startswith(subnet + ".")})


def reap(recorded: dict[str, dict]) -> None:
    """What a failed test left: killed by the PIDs it recorded (each node leads its own process group)."""
    for e in recorded.values():
        if same_process_alive(e["pid"], e["create_time"]):
            os.killpg(e["pid"], signal.SIGKILL)


SLOW_TEARDOWN = """
import pathlib, time, pytest

@pytest.fixture(scope="module")
def stack():
    pathlib.Path("up").write_text("")
    yield
    time.sleep(3)                          # a teardown a second SIGTERM must not cut short
    pathlib.Path("down").write_text("")

def test_waits(stack):
    time.sleep(120)
"""


def test_a_second_sigterm_during_the_teardown_is_ignored(tmp_path):
    """No stack: tests/conftest.py loaded as a plugin into a pytest run of one test whose fixture takes 3 s to tear
    down; SIGTERM, and again 1 s into the teardown: the teardown ends, pytest exits as after Ctrl-C."""
    (tmp_path / "test_slow.py").write_text(SLOW_TEARDOWN)
    log_path = tmp_path / "pytest.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                                 "-q", "-s", "--rootdir", str(tmp_path), str(tmp_path / "test_slow.py")],
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "up").exists() or proc.poll() is not None, 60, "the fixture to set up")
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: b"interrupting like Ctrl-C" in log_path.read_bytes() or proc.poll() is not None, 30,
                   "the first SIGTERM to be handled")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        text = log_path.read_text(errors="replace")
        assert code == pytest.ExitCode.INTERRUPTED, text
        assert "SIGTERM ignored" in text and (tmp_path / "down").exists(), text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


SLOW_TEARDOWNS = """
import os, pathlib, time, pytest

HERE = pathlib.Path(__file__).parent     # not the working folder: nox runs pytest in the repository

@pytest.fixture
def stack(request):
    (HERE / ("up-" + request.node.name)).write_text(str(os.getpid()))
    yield
    time.sleep(12)                         # a teardown longer than xdist's 10 s wait for a worker to exit
    (HERE / ("down-" + request.node.name)).write_text("")

def wait():                                # as a test waits on a condition: short sleeps. A signal the kernel
    for _ in range(1200):                  # hands to another thread of the worker (execnet's) runs its Python
        time.sleep(0.1)                    # handler only when the main thread next runs bytecode

def test_a(stack):
    wait()

def test_b(stack):
    wait()
"""


@pytest.mark.parametrize("how", ["SIGTERM to pytest", "Ctrl-C at a terminal", "Ctrl-C at a terminal, nox -s tests",
                                 "SIGTERM to nox -s tests"])
def test_interrupting_two_xdist_workers_lets_each_finish_its_teardown(tmp_path, how):
    """`nox -s tests` runs two pytest-xdist workers. Interrupted, xdist ended its workers 5-10 s after its own
    interrupt, in the middle of a stack's teardown (the stack left running). tests/conftest.py makes the controller
    pass the signal on and wait: both 12-s teardowns end, pytest exits 2 (interrupted). A Ctrl-C reaches the
    whole process group: each worker gets SIGINT from the terminal and SIGTERM from the controller. Through nox,
    which SIGKILLed its child 0.5 s after a Ctrl-C (noxfile.py's OWN_TEARDOWN), the same."""
    (tmp_path / "test_slow.py").write_text(SLOW_TEARDOWNS)
    log_path = tmp_path / "pytest.log"
    through_nox = how.endswith("nox -s tests")
    if through_nox:
        argv = [str(Path(sys.executable).parent / "nox"), "-f", str(REPO / "noxfile.py"), "-s", "tests", "--",
                "-p", "tests.conftest", "-s", "--rootdir", str(tmp_path), str(tmp_path / "test_slow.py")]
        cwd = REPO
    else:
        argv = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-s", "-n",
                "2", "--dist", "loadscope", "--rootdir", str(tmp_path), str(tmp_path / "test_slow.py")]
        cwd = tmp_path
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(list(tmp_path.glob("up-*"))) == 2 or proc.poll() is not None, 60,
                   "both workers' fixtures to set up")
        if how.startswith("SIGTERM"):     # to pytest, or to nox alone (nox passes it on, waits, exits 130)
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(90)
        text = log_path.read_text(errors="replace")
        assert sorted(p.name for p in tmp_path.glob("down-*")) == ["down-test_a", "down-test_b"], text
        assert code == (130 if through_nox else pytest.ExitCode.INTERRUPTED), text   # nox: 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_sigterm_to_pytest_tears_the_stateful_stack_down(tmp_path):
    run = StatefulPytest(tmp_path, SIGTERM_SUBNET)
    recorded: dict[str, dict] = {}
    try:
        recorded = run.wait_example_running()
        assert any(e.get("subnet") == SIGTERM_SUBNET for e in run.index().values()), run.index()
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(90)
        text = run.log()
        assert code == pytest.ExitCode.INTERRUPTED, text   # as after Ctrl-C
        assert "KeyboardInterrupt" in text, text
        assert not alive(recorded), f"left running after SIGTERM: {alive(recorded)}\n{text}"
        assert not listening_on(SIGTERM_SUBNET), listening_on(SIGTERM_SUBNET)
        assert not [e for e in run.index().values() if e.get("subnet") == SIGTERM_SUBNET], run.index()
    finally:
        run.stop()
        reap(recorded)


def test_after_a_sigkill_of_pytest_down_with_the_subnet_stops_what_was_left(tmp_path):
    run = StatefulPytest(tmp_path, SIGKILL_SUBNET)
    recorded: dict[str, dict] = {}
    try:
        recorded = run.wait_example_running()
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(30)
        assert len(alive(recorded)) == len(recorded), "the nodes outlive a SIGKILLed pytest (their own sessions)"
        down = subprocess.run([sys.executable, "-m", "tradedrill.cli", "down", "--subnet", SIGKILL_SUBNET],
                              cwd=tmp_path, env=run.env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "nothing was running" not in down.stdout, down.stdout
        assert str(run.stack_dir()) in down.stdout, down.stdout
        wait_until(lambda: not alive(recorded), 15, "every process the stack recorded to exit")
        assert not listening_on(SIGKILL_SUBNET), listening_on(SIGKILL_SUBNET)
        assert run.index() == {}, run.index()
    finally:
        run.stop()
        reap(recorded)
