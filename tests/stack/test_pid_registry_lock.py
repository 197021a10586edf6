"""pids.json is rewritten by several processes (the harness, the detached EA and backend supervisors): records made
at the same moment from two processes must all survive (a read-modify-write without a file lock lost them)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tradedrill.process import PidRegistry

WRITER = """
import sys
from tradedrill.process import PidRegistry
reg = PidRegistry(sys.argv[1])
for i in range(int(sys.argv[3])):
    reg.record(f"{sys.argv[2]}-{i}", 1000 + i, None)
"""


def test_records_from_two_processes_at_once_all_survive(tmp_path):
    path = tmp_path / "pids.json"
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, "150"], cwd=repo)
             for who in ("ea-supervisor", "backend-supervisor")]
    try:
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    names = set(PidRegistry(path).entries())
    assert len(names) == 300, f"{300 - len(names)} record(s) lost"
