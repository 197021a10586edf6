"""The new user's defect 13 (in part): operations still in flight when the load stops had no completion record in
the run's history (16 tick windows of a distributed run: invoked, never completed). Now the load completes each as
``unknown`` with "stopped before an answer" before it closes its history. The load process runs against a webhook
stub that answers only after 30 s, so every post is in flight when the load ends (~3 s in). About 8 s."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = os.environ.get("TRADEDRILL_LOAD_TEST_HOST3", "127.0.101.3")   # the load tests' block (127.0.123 is the soak tests')


def write_spec(tmp_path: Path, server, settle_s: float, load_s: float) -> Path:
    """tmp_path/spec.json: 3 webhook users against ``server`` for ``load_s`` s, then ``settle_s``; returns the run
    folder (created)."""
    run = tmp_path / "run"
    run.mkdir()
    spec = {"run_dir": str(run), "stack_dir": str(tmp_path), "passphrase": "p",
            "webhook_url": f"http://{HOST}:{server.server_address[1]}/webhook/tradingview", "sentinels": [],
            "symbols": ["EURUSD"], "volume": 0.01, "timeout_s": 20.0, "account": 5001, "seed": 1, "users": 3,
            "spawn_rate": 3, "mix": {"webhook": 1}, "settle_s": settle_s, "end_mono": time.monotonic() + load_s}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return run


class SlowWebhook(BaseHTTPRequestHandler):
    release = threading.Event()

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["content-length"]))
        self.release.wait(30)   # bounded: the test sets it at its end
        self.send_response(503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_operations_in_flight_when_the_load_stops_are_completed_unknown(tmp_path):
    SlowWebhook.release.clear()
    server = ThreadingHTTPServer((HOST, 0), SlowWebhook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = write_spec(tmp_path, server, settle_s=1.0, load_s=4.0)
        got = subprocess.run([sys.executable, "-m", "scenarios.locustfiles", "run", str(tmp_path / "spec.json")],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             timeout=60)
        assert "Traceback" not in got.stderr, got.stderr[-3000:]
        lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
        invoked = {r["op"] for r in lines if r["type"] == "invoke"}
        completed = {r["op"]: r for r in lines if r["type"] != "invoke"}
        assert invoked, got.stderr[-2000:]
        assert invoked == set(completed), f"{len(invoked - set(completed))} of {len(invoked)} never completed"
        assert all(completed[op]["type"] == "unknown" and "stopped before an answer" in str(completed[op].get("error"))
                   for op in invoked), [completed[op] for op in invoked]
        # each post in flight may have put its signal on RTSS: signals.jsonl names it (tv-<alert id>) as unknown,
        # so the state checker can tell its trade from a phantom
        signals = [json.loads(line) for line in (run / "signals.jsonl").read_text().splitlines() if line.strip()]
        named = {s["signal"]: s["ack"] for s in signals}
        keys = {r["key"] for r in lines if r["type"] == "invoke"}
        assert all(named.get(f"tv-{k}") == "unknown" for k in keys), (keys, named)
    finally:
        SlowWebhook.release.set()
        server.shutdown()
        server.server_close()


def test_a_load_process_stopped_by_sigterm_completes_its_open_operations_and_writes_its_summary(tmp_path):
    """An interrupted drill stops its load process by its handle (SIGTERM, SIGKILL 5 s later). It used to die at
    once: an interrupted drill's history kept 8 tick windows invoked and never completed. Now the load ends as at
    its end, with a 1-s settle: every operation completed (``unknown``, stopped before an answer), the summary
    written and marked interrupted, within the 5-s grace. About 6 s."""
    from tradedrill.waiting import wait_until

    SlowWebhook.release.clear()
    server = ThreadingHTTPServer((HOST, 0), SlowWebhook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = None
    try:
        run = write_spec(tmp_path, server, settle_s=30.0, load_s=120.0)
        proc = subprocess.Popen([sys.executable, "-m", "scenarios.locustfiles", "run", str(tmp_path / "spec.json")],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        history = run / "history.jsonl"
        wait_until(lambda: history.exists() and history.read_text().count('"invoke"') >= 3, 30,
                   "three posts in flight")
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - stopped
        assert "Traceback" not in err, err[-3000:]
        assert took < 5.0, f"the load process took {took:.1f} s after SIGTERM: the drill's stop would SIGKILL it"
        lines = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        invoked = {r["op"] for r in lines if r["type"] == "invoke"}
        completed = {r["op"]: r for r in lines if r["type"] != "invoke"}
        assert invoked and invoked == set(completed), f"{len(invoked - set(completed))} of {len(invoked)} open"
        assert all(completed[op]["type"] == "unknown" for op in invoked), [completed[op] for op in invoked]
        summary = json.loads((run / "load" / "summary.json").read_text())
        assert summary["interrupted"] is True, summary
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        SlowWebhook.release.set()
        server.shutdown()
        server.server_close()
