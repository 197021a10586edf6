"""A harness SIGKILLed between starting a node and recording its PID leaves no node running (the start gate of
``ProcessNode._start``): the node's program runs only once the registry holds it. Before the gate, a drill killed
during stack start left an unrecorded Sentinel holding its port, and every later stack on that subnet failed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tradedrill.process import same_process_alive
from tradedrill.waiting import wait_until

# a harness whose registry stops inside record() (after the child exists, before its PID is on file): it writes the
# child's PID to a file and waits there to be killed
HARNESS = """
import sys, time
from pathlib import Path
from tradedrill.process import PidRegistry, ProcessNode

class Stuck(PidRegistry):
    def record(self, name, pid, create_time):
        Path(sys.argv[2]).write_text(f"{pid} {create_time}")
        time.sleep(120)

tmp = Path(sys.argv[1])
node = ProcessNode(name="sleeper", role="test", address="127.0.0.1", port=0, argv=["sleep", "300"],
                   log_path=tmp / "sleeper.log", ready=lambda: True, registry=Stuck(tmp / "pids.json"))
node.start()
"""


def test_a_node_whose_starter_died_before_recording_it_never_runs(tmp_path):
    marker = tmp_path / "child"
    repo = Path(__file__).resolve().parents[2]
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path), str(marker)], cwd=repo)
    child = None
    try:
        wait_until(lambda: marker.exists() and marker.read_text(), 30, "the harness to be inside record()")
        pid, create_time = marker.read_text().split()
        child = int(pid)
        assert same_process_alive(child, float(create_time))   # started, waiting at the gate
        harness.send_signal(signal.SIGKILL)
        harness.wait(30)
        wait_until(lambda: not same_process_alive(child, float(create_time)), 10,
                   f"the unrecorded node (pid {child}) to exit at its gate")
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(30)
        if child is not None:
            try:
                proc = psutil.Process(child)
                if "sleep" in proc.cmdline()[:1]:   # the program ran after all: stop it by its PID
                    os.kill(child, signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
