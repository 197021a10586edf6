"""Issue 16 item 2: a load never runs against a finished drill or a stack that is gone, its percentiles never exceed
its maximum, and its failures are named the same whatever the retry count. The load processes (``python -m
scenarios.locustfiles run`` and the locust CLI's master and worker) run as processes of their own, started and
stopped by handle, against a webhook on loopback that answers like the backend. About 25 s."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.load.stub_webhook import StubWebhook, serve
from hypothesis import given, strategies as st

from scenarios.history import RunDir
from scenarios.load import percentiles, stable_error, summary_entry

ROOT = Path(__file__).resolve().parents[2]
HOST = os.environ.get("TRADEDRILL_LOAD_TEST_HOST2", "127.0.101.2")
LOCUSTFILE = str(ROOT / "scenarios" / "locustfiles.py")


@pytest.fixture
def webhook():
    with serve(HOST) as url:
        yield url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]   # nobody listens there once this socket is closed


def _spec(tmp_path: Path, webhook_url: str, **extra) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    spec = {"run_dir": str(run), "stack_dir": str(tmp_path), "passphrase": "test-passphrase",
            "webhook_url": webhook_url, "sentinels": [], "symbols": ["EURUSD"], "volume": 0.01, "timeout_s": 1.0,
            "account": 5001, "seed": 1, "users": 4, "spawn_rate": 4, "mix": {"webhook": 1}, "settle_s": 1.0,
            **extra}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _run(args: list[str], spec: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADEDRILL_LOAD_SPEC": str(spec), "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _finished_run(spec: Path) -> tuple[Path, str]:
    run = Path(json.loads(spec.read_text())["run_dir"])
    RunDir(run).mark("complete")
    before = '{"type": "invoke", "op": 1, "process": "client-1", "f": "trade", "key": "s-1", "mono": 1.0}\n'
    (run / "history.jsonl").write_text(before)
    return run, before


# -- refusals ----------------------------------------------------------------------------------------------------
def test_the_load_process_refuses_a_finished_run(tmp_path, webhook):
    spec = _spec(tmp_path, webhook, end_mono=time.monotonic() + 30)
    run, before = _finished_run(spec)
    got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert got.returncode == 2, got.stderr[-2000:]
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "finished (status.json: complete)" in lines[0] and "tradedrill load-spec" in lines[0]
    assert (run / "history.jsonl").read_text() == before and not (run / "signals.jsonl").exists()
    assert not StubWebhook.seen   # no user started


def test_the_drills_own_runner_refuses_a_spec_of_load_spec_in_one_line(tmp_path, webhook):
    """A new user gave ``python -m scenarios.locustfiles run`` a spec of ``tradedrill load-spec``: a KeyError
    ('end_mono') traceback, then gevent's "spawn_rate must be > 0". Refused in one line now, before any user."""
    spec = _spec(tmp_path, webhook, users=0, spawn_rate=0)   # what load-spec writes: no end, no users
    got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr[-2000:]
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a drill's load spec (no end_mono, users, spawn_rate)" in lines[0] \
        and "locust CLI" in lines[0], lines
    assert not StubWebhook.seen


def test_locust_master_and_worker_refuse_a_finished_run(tmp_path, webhook):
    """The README's distributed example on a drill that is over: every process says why and exits non-zero before
    a user starts; the judged run is left as it was."""
    spec = _spec(tmp_path, webhook)
    run, before = _finished_run(spec)
    port = _closed_port()
    master = _run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--headless", "--master-bind-host",
                   HOST, "--master-bind-port", str(port), "--expect-workers", "1", "-u", "2", "-r", "2", "-t", "3s",
                   "WebhookSender"], spec)
    worker = _run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", HOST,
                   "--master-port", str(port), "WebhookSender"], spec)
    for got in (master, worker):
        assert got.returncode == 2, got.stderr[-2000:]
        refused = [line for line in got.stderr.splitlines() if "refused" in line]
        assert len(refused) == 1 and f"the run folder {run} is finished" in refused[0], got.stderr[-2000:]
    assert (run / "history.jsonl").read_text() == before and not (run / "signals.jsonl").exists()
    assert not StubWebhook.seen


def test_a_stack_that_does_not_answer_is_refused(tmp_path):
    url = f"http://{HOST}:{_closed_port()}/webhook/tradingview"
    spec = _spec(tmp_path, url, end_mono=time.monotonic() + 30)
    got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert got.returncode == 2, got.stderr[-2000:]
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the webhook {url} does not answer" in lines[0] and "tradedrill up" in lines[0]
    assert not (tmp_path / "run" / "history.jsonl").exists()


def test_a_drill_spec_whose_load_ended_is_refused(tmp_path, webhook):
    spec = _spec(tmp_path, webhook, end_mono=time.monotonic() - 60)   # the drill's stack is gone by now
    got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert got.returncode == 2 and "load ended" in got.stderr and "only valid while its drill runs" in got.stderr


def test_a_spec_whose_load_ran_is_refused_and_its_history_left_as_it_was(tmp_path, webhook):
    """A user's spec (``tradedrill load-spec``: no end_mono) run twice appended a second load to the first one's
    history, and the checkers judged both as one. The first load closes its history and says so
    (``load/ended.json``); the second is refused in one line before any user starts."""
    spec = _spec(tmp_path, webhook)
    run = Path(json.loads(spec.read_text())["run_dir"])
    headless = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "2", "-r", "2", "-t", "2s",
                "--only-summary", "WebhookSender"]
    first = _run(headless, spec)
    assert first.returncode in (0, 1) and "Traceback" not in first.stderr, first.stderr[-2000:]
    assert (run / "load" / "ended.json").exists(), first.stderr[-2000:]
    before = (run / "history.jsonl").read_text()
    assert before.count('"invoke"') >= 1
    StubWebhook.seen.clear()
    again = _run(headless, spec)
    refused = [line for line in again.stderr.splitlines() if "refused" in line]
    assert again.returncode == 2 and len(refused) == 1 and "load already ran" in refused[0] \
        and "tradedrill load-spec" in refused[0], again.stderr[-2000:]
    assert (run / "history.jsonl").read_text() == before and not StubWebhook.seen


def test_an_alert_answered_200_duplicate_is_a_signal_on_rtss(tmp_path):
    """nginx resends a post whose answer timed out to the other backend, which answers 200 "duplicate": the signal
    is on RTSS all the same. A 50-user drill left 8 such out of signals.jsonl, and the state checker called their
    trades phantoms (and missed) on the reference engine."""
    with serve(HOST, status=200) as url:
        spec = _spec(tmp_path, url, end_mono=time.monotonic() + 6)
        got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert "Traceback" not in got.stderr, got.stderr[-2000:]
    run = Path(json.loads(spec.read_text())["run_dir"])
    named = {json.loads(line)["signal"] for line in (run / "signals.jsonl").read_text().splitlines() if line.strip()}
    assert StubWebhook.seen and {f"sig-{a}" for a in StubWebhook.seen} <= named, (StubWebhook.seen, named)


def test_load_processes_of_one_load_share_a_history_and_no_other_load_does(tmp_path):
    """The workers of one distributed load (same master) get slots 0, 1, ...: their op-id ranges and user names.
    A second load on the same spec is refused, whether it starts beside the first or after the first was killed
    before it could close its history (a new user's SIGKILLed load, then the same spec again: 30 + 30 invokes in
    one history; two loads started together: 110 invokes from two ranges)."""
    from scenarios.load import LoadRefused, claim_slot

    run = tmp_path / "run"
    assert [claim_slot(run, "master 127.0.0.1:5557") for _ in range(3)] == [0, 1, 2]
    with pytest.raises(LoadRefused, match="another load .master 127.0.0.1:5557. writes or wrote this spec's history"):
        claim_slot(run, "standalone 4242")
    with pytest.raises(LoadRefused, match="another load"):
        claim_slot(run, "master 127.0.0.1:6000")
    alone = tmp_path / "alone"
    assert claim_slot(alone, "standalone 1") == 0
    with pytest.raises(LoadRefused, match="standalone 1"):   # a killed load's slot stays: the spec is spent
        claim_slot(alone, "standalone 2")
    assert sorted(p.name for p in (alone / "load" / "slots").iterdir()) == ["0.json"]   # a refused one leaves none


def test_a_distributed_load_killed_and_started_again_under_its_master_address_is_refused(tmp_path):
    """The workers of a SIGKILLed distributed load leave slots naming their master; a new master on the same address
    had workers that matched that owner and appended to the killed load's history. A worker beside a live one of the
    same master still joins; beside one that is gone it is refused, naming it and saying what to do."""
    from scenarios.load import LoadRefused, claim_slot

    run = tmp_path / "run"
    owner = "master 127.0.0.1:5557"
    code = ("import sys; from scenarios.load import claim_slot; "
            f"print(claim_slot({str(run)!r}, {owner!r}), flush=True); sys.stdin.read()")
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert worker.stdout.readline().strip() == "0"
        assert claim_slot(run, owner) == 1   # beside a live worker of its master: joins
    finally:
        worker.kill()
        worker.wait(timeout=10)
    with pytest.raises(LoadRefused, match=r"load process pid \d+ \(slot .*0.json, of the load of master "
                                          r"127.0.0.1:5557\) is gone without closing the history.*write a new spec"):
        claim_slot(run, owner)
    assert sorted(p.name for p in (run / "load" / "slots").iterdir()) == ["0.json", "1.json"]


def test_a_master_and_a_worker_on_a_killed_loads_spec_are_refused_before_they_wait(tmp_path, webhook):
    """A new user SIGKILLed a master and its workers, then started both again on the same spec: each worker was
    refused, but the master waited for --expect-workers until interrupted; once the master was refused, the workers
    retried it for 5 minutes (their check ran only after connecting). Both read the slots when they start."""
    import socket as socket_mod

    spec = _spec(tmp_path, webhook)
    run = Path(json.loads(spec.read_text())["run_dir"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    slots = run / "load" / "slots"
    slots.mkdir(parents=True)
    (slots / "0.json").write_text(json.dumps({"owner": f"master {HOST}:5557", "pid": int(gone.stdout),
                                              "host": socket_mod.gethostname(), "at_unix": time.time()}))
    master = _run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--headless", "--master-bind-host",
                   HOST, "--master-bind-port", str(_closed_port()), "--expect-workers", "1", "-u", "2", "-r", "2",
                   "-t", "3s", "WebhookSender"], spec, timeout=60)
    worker = _run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", HOST,
                   "--master-port", str(_closed_port()), "WebhookSender"], spec, timeout=60)
    for got in (master, worker):
        assert got.returncode == 2, got.stderr[-2000:]
        refused = [line for line in got.stderr.splitlines() if "refused" in line]
        assert len(refused) == 1 and f"load process pid {int(gone.stdout)}" in refused[0] and \
            "is gone without closing the history" in refused[0] and "write a new spec" in refused[0], got.stderr[-2000:]


def test_a_run_folder_claimed_by_one_spec_is_refused_to_another(tmp_path):
    """Two `load-spec` runs naming one --run-dir wrote two specs sharing one history (the folder stayed empty
    until a load ran). The first spec claims its folder; the second is told whose it is."""
    from scenarios.load import CLAIM
    from scenarios.loadcli import run_dir_problem

    run = tmp_path / "run"
    run.mkdir()
    assert run_dir_problem(run) is None
    (run / CLAIM).write_text(json.dumps({"spec": "/somewhere/spec-a.json"}))
    problem = run_dir_problem(run)
    assert problem and "already the run folder of the spec /somewhere/spec-a.json" in problem, problem


def test_load_spec_without_a_stack_is_a_one_line_error(tmp_path):
    got = subprocess.run([sys.executable, "-m", "tradedrill.cli", "load-spec", "--dir", str(tmp_path / "none"),
                          "--out", str(tmp_path / "spec.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert got.stderr.strip().count("\n") == 0 and "no stack is running" in got.stderr and "tradedrill up" in got.stderr
    assert not (tmp_path / "spec.json").exists()
    # a file as --dir: said so (the `up --dir FILE` it suggested before fails too)
    (tmp_path / "afile").write_text("x")
    got = subprocess.run([sys.executable, "-m", "tradedrill.cli", "load-spec", "--dir", str(tmp_path / "afile"),
                          "--out", str(tmp_path / "spec.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and got.stderr.strip().count("\n") == 0, got.stderr
    assert "is a file, not a stack's run folder" in got.stderr and "tradedrill up --dir" not in got.stderr, got.stderr



@pytest.mark.parametrize("content, says", [("[]", "is not a stack's state"), ("{}", "is not a stack's state"),
                                           ('{"topology": 3}', "is not a stack's state"),
                                           ("not json", "stack.json cannot be read")])
def test_a_damaged_stack_json_is_one_line_naming_it(tmp_path, content, says):
    """A new user's finding: a stack.json of [] or {} was a traceback (exit 1); one that is not JSON an error without
    the file's name."""
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "stack.json").write_text(content)
    got = subprocess.run([sys.executable, "-m", "tradedrill.cli", "load-spec", "--dir", str(stack),
                          "--out", str(tmp_path / "spec.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "Traceback" not in got.stderr and got.stderr.strip().count("\n") == 0, got.stderr
    assert says in got.stderr and str(stack / "stack.json") in got.stderr, got.stderr
    assert not (tmp_path / "spec.json").exists()

# -- the summary's percentiles -------------------------------------------------------------------------------------
def test_a_live_load_summary_never_shows_a_percentile_above_its_maximum(tmp_path, webhook):
    """Sub-millisecond answers are where locust's rounding put p99 (1 ms) above the maximum (0.609 ms)."""
    spec = _spec(tmp_path, webhook, end_mono=time.monotonic() + 4)
    got = _run([sys.executable, "-m", "scenarios.locustfiles", "run", str(spec)], spec)
    assert got.returncode == 0, got.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "load" / "summary.json").read_text())
    assert "nearest rank" in summary["percentiles"]
    for name, e in {"total": summary["total"], **summary["by_name"]}.items():
        assert e["requests"] > 0, name
        assert e["p50_ms"] <= e["p95_ms"] <= e["p99_ms"] <= e["max_ms"], (name, e)
    assert set(summary["by_name"]) == {"POST webhook"}
    assert summary["by_name"]["POST webhook"]["requests"] == summary["total"]["requests"]


def test_rounded_buckets_would_exceed_the_maximum_raw_ones_do_not():
    times = [0.2, 0.3, 0.41, 0.5, 0.609]   # locust rounds each to 0 or 1 ms: its p99 1 > max 0.609
    e = summary_entry(times, 0, 1.0)
    assert e == {"requests": 5, "failures": 0, "rps": 5.0, "p50_ms": 0.41, "p95_ms": 0.609, "p99_ms": 0.609,
                 "max_ms": 0.609}
    assert summary_entry([], 0, 1.0)["p99_ms"] is None


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_samples_in_order(times):
    p = percentiles(times)
    assert {p["p50"], p["p95"], p["p99"]} <= {round(t, 3) for t in times}
    assert p["p50"] <= p["p95"] <= p["p99"] <= round(max(times), 3)


# -- stable error names --------------------------------------------------------------------------------------------
def test_the_retry_count_is_not_part_of_the_error_name():
    a = ("failed: Redis is unreachable (attempt 3: Error 111 connecting to 127.0.6.3:6379. Connection refused.); "
         "next retry in 0.4s")
    b = ("failed: Redis is unreachable (attempt 6: Error 111 connecting to 127.0.6.3:6379. Connection refused.); "
         "next retry in 1.6s")
    assert stable_error(a) == stable_error(b) == \
        "failed: Redis is unreachable (Error 111 connecting to 127.0.6.3:6379. Connection refused.)"
    assert stable_error("unknown: 3 post(s), last: HTTP 503") == stable_error("unknown: 7 post(s), last: HTTP 503")
    assert stable_error("HTTP 409: busy") == "HTTP 409: busy"   # what tells failures apart stays


def test_load_spec_never_writes_over_the_stack_s_own_files(tmp_path):
    """A new user's `load-spec --out out/ls2/pids.json` wrote the spec over the stack's pids.json: `down` then said
    "nothing was running" and left 10 processes up (over stack.json, `status` crashed). --out may be a new file or
    an earlier spec, never a file or folder of the stack, the run folder, or another file."""
    from scenarios.loadcli import out_problem

    stack, run = tmp_path / "stack", tmp_path / "run"
    (stack / "secrets").mkdir(parents=True)
    for name in ("stack.json", "pids.json", "topology.json"):
        (stack / name).write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "old-spec.json").write_text(json.dumps({"run_dir": "x", "mix": {"rtss": 1}, "users": 0}))
    for out, says in ((stack / "pids.json", "the stack's own pids.json"), (stack / "stack.json", "own stack.json"),
                      (stack / "secrets" / "spec.json", "inside the stack's own folders"),
                      (stack, "is a folder"), (run / "spec.json", "inside --run-dir"),
                      (tmp_path / "notes.txt", "exists and is not a load spec"), ("", "--out is empty")):
        problem = out_problem(out, stack, run)
        assert problem and says in problem and "give a new file name" in problem, (out, problem)
    assert out_problem(stack / "spec.json", stack, run) is None   # the README's place for it
    assert out_problem(tmp_path / "old-spec.json", stack, run) is None   # an earlier spec, written again


def test_a_user_class_the_stack_cannot_serve_is_named_with_the_ones_it_can(tmp_path, webhook):
    """`locust -f scenarios/locustfiles.py` without class names runs every class; on a stack without a backend the
    refusal said "start a stack (`tradedrill up`)" of a stack that was up. It now says which classes to name."""
    from scenarios.load import spec_refusal

    spec = json.loads(_spec(tmp_path, webhook).read_text())   # a webhook, no Sentinel: WebhookSender only
    problem = spec_refusal(spec, {"rtss", "webhook", "ticks"})
    assert problem and "serves no RtssProducer, TickConsumerUser" in problem and "(WebhookSender)" in problem, problem
    assert "tradedrill up" not in problem
    assert spec_refusal(spec, {"webhook"}) is None
