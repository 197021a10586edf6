"""Ctrl-C on ``tradedrill soak`` (the new user's defect 5): it printed ``Aborted!`` and exited 1 (a failed verdict's
status), its status.json said ``error`` / ``KeyboardInterrupt`` and ``tradedrill check`` called it "error during
load". Now it is a drill's interrupt: exit 130 with one line, the run folder marked ``interrupted``, every process
of the stack gone, a second Ctrl-C during the teardown ignored.

The soak CLI runs as its own process on 127.0.123 (``TRADEDRILL_SOAK_INTERRUPT_SUBNET``), load only (--every 600),
and is interrupted once its load runs and the sampler has a sample of the stack. About 30 s."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tradedrill.process import same_process_alive
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.drill

REPO = Path(__file__).resolve().parents[2]
SUBNET = os.environ.get("TRADEDRILL_SOAK_INTERRUPT_SUBNET", "127.0.123")


def test_ctrl_c_on_the_soak_tears_down_marks_the_run_interrupted_and_exits_130(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEDRILL_STATE_DIR": str(tmp_path / "state"),
           "TRADEDRILL_FAULTS_STATE": str(tmp_path / "faults-state.json")}
    log_path = tmp_path / "soak.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tradedrill.cli", "soak", "--minutes", "2", "--every", "600",
                                 "--rate", "5", "--subnet", SUBNET, "--out", str(out)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def run_dir() -> Path | None:
            found = sorted(out.glob("soak-*"))
            return found[0] if found else None

        def status() -> dict:
            try:
                return json.loads((run_dir() / "status.json").read_text())
            except (TypeError, OSError, ValueError):
                return {}

        def sampled() -> bool:
            rd = run_dir()
            return bool(rd and (rd / "samples.jsonl").exists() and (rd / "samples.jsonl").stat().st_size > 0)

        wait_until(lambda: status().get("phase") == "load" and sampled() or proc.poll() is not None, 120,
                   "the soak's load to run and be sampled")
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        recorded = json.loads((run_dir() / "stack" / "pids.json").read_text())
        assert len(recorded) >= 3
        proc.send_signal(signal.SIGINT)
        # a second Ctrl-C while the teardown runs is ignored (said, not obeyed)
        wait_until(lambda: b"healing faults, stopping every node" in log_path.read_bytes() or proc.poll() is not None,
                   60, "the teardown to begin")
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(120)
        text = log_path.read_text(errors="replace")
        assert code == 130, text[-3000:]
        assert "Traceback" not in text and "Aborted!" not in text, text[-3000:]
        last = [line for line in text.splitlines() if line.startswith("tradedrill soak:")]
        assert len(last) == 1 and "interrupted by SIGINT during load" in last[0], text[-3000:]
        assert f"the run folder {run_dir()} is marked interrupted" in last[0]
        s = status()
        assert s.get("state") == "interrupted" and s.get("phase") == "load", s
        assert "KeyboardInterrupt" not in json.dumps(s)
        check = subprocess.run([sys.executable, "-m", "tradedrill.cli", "check", str(run_dir())], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120)
        assert check.returncode == 2 and "did not finish: interrupted" in check.stdout, check.stdout + check.stderr
        recorded.update(json.loads((run_dir() / "stack" / "pids.json").read_text() or "{}"))

        def alive() -> list[str]:
            return [f"{n} (pid {e['pid']})" for n, e in recorded.items()
                    if same_process_alive(e["pid"], e["create_time"])]

        wait_until(lambda: not alive(), 30, "every process of the soak's stack to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
