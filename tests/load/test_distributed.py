"""The same load distributed (issue 16): one locust master and two workers on loopback, started and stopped by
handle, running this project's locustfile (``scenarios/locustfiles.py``) against a webhook that answers like the
backend. The master aggregates what both workers' users sent; each worker records its requests in the run's
history. About 15 s."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.load.stub_webhook import StubWebhook, serve

ROOT = Path(__file__).resolve().parents[2]
HOST = os.environ.get("TRADEDRILL_LOAD_TEST_HOST", "127.0.101.1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _webhook_load(tmp_path: Path, webhook: str, seed: int) -> tuple[dict, list[str]]:
    """A spec of a webhook-only stack (no Sentinel, no EA) in ``tmp_path``: the environment that points locust at it
    and the locust command of this project's locustfile."""
    spec = {"run_dir": str(tmp_path), "stack_dir": str(tmp_path), "passphrase": "test-passphrase",
            "webhook_url": webhook, "sentinels": [], "symbols": ["EURUSD"], "volume": 0.01, "timeout_s": 2.0,
            "account": 5001, "seed": seed}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "TRADEDRILL_LOAD_SPEC": str(tmp_path / "spec.json"), "PYTHONPATH": str(ROOT)}
    return env, [sys.executable, "-m", "locust", "-f", str(ROOT / "scenarios" / "locustfiles.py")]


@pytest.fixture
def webhook():
    with serve(HOST) as url:
        yield url


def test_one_master_two_workers(tmp_path, webhook):
    env, locust = _webhook_load(tmp_path, webhook, seed=1)
    port = _free_port()
    master_cmd = [*locust, "--master", "--headless", "--master-bind-host", HOST, "--master-bind-port", str(port),
                  "--expect-workers", "2", "--expect-workers-max-wait", "60", "-u", "4", "-r", "4", "-t", "6s",
                  "--csv", str(tmp_path / "dist"), "--only-summary", "WebhookSender"]
    worker_cmd = [*locust, "--worker", "--master-host", HOST, "--master-port", str(port), "WebhookSender"]
    procs: list[subprocess.Popen] = []
    try:
        log = open(tmp_path / "master.log", "wb")
        procs.append(subprocess.Popen(master_cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        for i in range(2):
            wlog = open(tmp_path / f"worker-{i}.log", "wb")
            procs.append(subprocess.Popen(worker_cmd, cwd=ROOT, env=env, stdout=wlog, stderr=subprocess.STDOUT))
        master = procs[0]
        master.wait(timeout=120)   # bounded: 6 s of load after both workers joined
        for worker in procs[1:]:
            worker.wait(timeout=30)   # a worker quits when its master does
    finally:
        for p in procs:   # stopped by handle, also when the test fails
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    output = (tmp_path / "master.log").read_text()
    assert master.returncode == 0, output[-2000:]
    rows = {r.split(",")[1].strip('"'): r.split(",") for r in (tmp_path / "dist_stats.csv").read_text().splitlines()[1:]}
    aggregated = rows["Aggregated"]
    requests, failures = int(aggregated[2]), int(aggregated[3])
    assert requests > 0 and failures == 0, output[-2000:]
    # both workers ran users: their alert ids carry each worker's own tag, and the master counted them all
    tags = {alert.rsplit("-w-", 1)[0] for alert in StubWebhook.seen}
    assert len(tags) == 2, tags
    assert requests <= len(StubWebhook.seen)   # a post cut by the stop reaches the webhook without a request event
    # and each worker wrote its requests into the run's history
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    done = [h for h in history if h["type"] == "ok" and h["f"] == "webhook"]
    assert len(done) == requests
    # one history of single-threaded processes: no process name is used by both workers (each numbered its users
    # from 1: 50 invokes of a new user's run began while the same name had one open), no op id by two operations
    open_ops: dict[str, int] = {}
    for h in history:
        if h["type"] == "invoke":
            assert h["process"] not in open_ops, f"{h['process']} invoked op {h['op']} with {open_ops[h['process']]} open"
            open_ops[h["process"]] = h["op"]
        else:
            assert open_ops.pop(h["process"], None) == h["op"], h
    invoked = [h["op"] for h in history if h["type"] == "invoke"]
    assert len(invoked) == len(set(invoked))
    names = {h["process"] for h in history}   # slot 0: locust-webhook-<n>; slot 1: locust-webhook-s1-<n>
    assert any("-s1-" in n for n in names) and any("-s1-" not in n for n in names), names
    # a worker's log is not one line a request (httpx's INFO lines: 256 a worker in 30 s, a new user's finding)
    for i in range(2):
        log = (tmp_path / f"worker-{i}.log").read_text(errors="replace")
        assert "HTTP Request:" not in log, log[-1000:]


def test_without_class_names_master_and_worker_run_the_classes_the_stack_serves(tmp_path, webhook):
    """The README's commands name no user class; on a stack without an EA (and here without Sentinels) they were
    refused for TickConsumerUser (a new user's finding). Without names, the classes the spec's stack serves run: here
    WebhookSender alone, on the master and the worker alike."""
    env, locust = _webhook_load(tmp_path, webhook, seed=2)
    port = _free_port()
    procs: list[subprocess.Popen] = []
    try:
        log = open(tmp_path / "master.log", "wb")
        procs.append(subprocess.Popen([*locust, "--master", "--headless", "--master-bind-host", HOST,
                                       "--master-bind-port", str(port), "--expect-workers", "1",
                                       "--expect-workers-max-wait", "60", "-u", "2", "-r", "2", "-t", "3s",
                                       "--csv", str(tmp_path / "dist"), "--only-summary"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wlog = open(tmp_path / "worker.log", "wb")
        procs.append(subprocess.Popen([*locust, "--worker", "--master-host", HOST, "--master-port", str(port)],
                                      cwd=ROOT, env=env, stdout=wlog, stderr=subprocess.STDOUT))
        procs[0].wait(timeout=120)
        procs[1].wait(timeout=30)
    finally:
        for p in procs:   # stopped by handle, also when the test fails
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    output = (tmp_path / "master.log").read_text() + (tmp_path / "worker.log").read_text()
    assert [p.returncode for p in procs] == [0, 0], output[-3000:]
    assert "refused" not in output, output[-3000:]
    rows = [r.split(",") for r in (tmp_path / "dist_stats.csv").read_text().splitlines()[1:]]
    kinds = {r[0].strip('"') for r in rows if r[1].strip('"') != "Aggregated"}
    assert kinds == {"WEBHOOK"} or kinds == {"POST"}, rows
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history and {h["f"] for h in history} == {"webhook"}, {h["f"] for h in history}
