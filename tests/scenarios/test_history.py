"""The history recorder and the run directory readers."""
from __future__ import annotations

import json
import threading

import pytest

from scenarios import history as h


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


class RedisLikeTimeoutError(Exception):
    """Stands in for a client library's own timeout class (recognised by name)."""


class ConnectionResetByPeer(Exception):
    pass


def _ops(path):
    return h.operations_from_records(h.read_jsonl(path))


def test_op_outcomes_timeouts_are_unknown_never_fail(tmp_path):
    hist = h.History(tmp_path / "history.jsonl")
    with hist.op("c1", "trade", "s1"):
        pass
    with hist.op("c1", "trade", "s2") as op:
        op.fail("REJECTED: market closed")
    with hist.op("c1", "trade", "s3"):
        raise TimeoutError("no result in 2 s")
    with hist.op("c1", "trade", "s4"):
        raise ConnectionError("reset")
    with hist.op("c1", "trade", "s5"):
        raise RedisLikeTimeoutError("socket timeout")
    with hist.op("c1", "trade", "s6"):
        raise ConnectionResetByPeer()
    with hist.op("c1", "trade", "s7"):
        raise h.DefiniteFailure("validation refused it")
    with hist.op("c1", "trade", "s8"):
        raise ValueError("bad volume")
    with hist.op("c1", "trade", "s9") as op:
        op.ok({"order": 42})
    hist.close()
    got = {op.key: op.outcome for op in _ops(tmp_path / "history.jsonl")}
    assert got == {"s1": "ok", "s2": "fail", "s3": "unknown", "s4": "unknown", "s5": "unknown", "s6": "unknown",
                   "s7": "fail", "s8": "fail", "s9": "ok"}
    ops = _ops(tmp_path / "history.jsonl")
    assert ops[-1].value == {"order": 42}
    assert "TimeoutError" in ops[2].error


def test_base_exceptions_are_recorded_unknown_and_reraised(tmp_path):
    hist = h.History(tmp_path / "history.jsonl")
    with pytest.raises(KeyboardInterrupt):
        with hist.op("c1", "trade", "s1"):
            raise KeyboardInterrupt
    hist.close()
    [op] = _ops(tmp_path / "history.jsonl")
    assert op.outcome == "unknown" and op.complete_mono is not None


def test_invoke_without_completion_reads_back_unknown_and_torn_line_is_skipped(tmp_path):
    clock = Clock()
    hist = h.History(tmp_path / "history.jsonl", clock=clock, wall_clock=Clock(1.7e9))
    a = hist.invoke("c1", "trade", "s1")
    clock.t = 101.5
    hist.complete(a, "c1", "trade", "s1", "ok")
    hist.invoke("c2", "trade", "s2")  # the process died here
    hist.close()
    with open(tmp_path / "history.jsonl", "a") as fh:
        fh.write('{"type": "ok", "op": 2, "pro')  # torn final line
    ops = _ops(tmp_path / "history.jsonl")
    assert [(o.key, o.outcome) for o in ops] == [("s1", "ok"), ("s2", "unknown")]
    assert ops[0].latency == pytest.approx(1.5)
    assert ops[1].complete_mono is None


def test_record_schema_has_wall_and_monotonic_times(tmp_path):
    hist = h.History(tmp_path / "history.jsonl")
    with hist.op("c1", "redis_write", "k1", value=3):
        pass
    hist.close()
    invoke, done = h.read_jsonl(tmp_path / "history.jsonl")
    for rec in (invoke, done):
        assert {"type", "op", "process", "f", "key", "value", "wall", "wall_ts", "mono"} <= set(rec)
    assert invoke["type"] == "invoke" and done["type"] == "ok" and "error" in done


def test_concurrent_writers_lose_nothing_and_close_fsyncs(tmp_path, monkeypatch):
    fsyncs = []
    real_fsync = h.os.fsync
    monkeypatch.setattr(h.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    hist = h.History(tmp_path / "history.jsonl")

    def worker(n):
        for i in range(150):
            with hist.op(f"c{n}", "trade", f"{n}-{i}"):
                pass

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist.close()
    assert len(fsyncs) == 1
    ops = _ops(tmp_path / "history.jsonl")
    assert len(ops) == 1200 and len({o.id for o in ops}) == 1200
    assert all(o.outcome == "ok" for o in ops)
    with pytest.raises(ValueError):
        hist.invoke("c1", "trade", "late")


def test_appending_to_an_existing_history_continues_op_ids(tmp_path):
    with h.History(tmp_path / "history.jsonl") as hist:
        hist.invoke("c1", "trade", "a")
    with h.History(tmp_path / "history.jsonl") as hist:
        assert hist.invoke("c1", "trade", "b") == 2


def test_fault_windows_read_the_fault_library_log(tmp_path):
    """Aligned with faults.core.FaultLog: pairs inject/heal by fault_id, skips failed injections."""
    from faults.core import Fault, FaultLog

    class Dummy(Fault):
        name = "dummy"
        requirement_ids = ("ENG-1",)

        def _inject(self):
            pass

        def _heal(self):
            pass

        def describe(self):
            return "does nothing"

    log = FaultLog(tmp_path / "faults.jsonl")
    a, b = Dummy(log=log), Dummy(log=log)
    a.inject()
    b.inject()
    a.heal()
    with open(tmp_path / "faults.jsonl", "a") as fh:
        fh.write(json.dumps({"event": "inject-failed", "fault": "dummy", "fault_id": "x", "mono": 1.0}) + "\n")
    windows = h.RunDir(tmp_path).fault_windows()
    assert [(w.fault_id, w.heal_mono is not None) for w in windows] == [(a.fault_id, True), (b.fault_id, False)]
    assert windows[0].requirement_ids == ("ENG-1",) and windows[0].description == "does nothing"
    assert windows[0].inject_mono <= windows[0].heal_mono


def test_run_dir_create_and_readers(tmp_path):
    run = h.RunDir.create(tmp_path / "r", seed=7, scenario={"name": "engine-kill"}, config={"a": 1})
    with run.signal_writer() as sig:
        sig.record("s1", "ok", symbol="EURUSD")
        sig.record("s2", "unknown")
    (run.path / "ledger.jsonl").write_text(json.dumps({"ticket": 1, "order": 2, "comment": "s1", "volume": 0.1,
                                                       "type": 0, "symbol": "EURUSD"}) + "\n")
    (run.path / "rtrs.jsonl").write_text(json.dumps({"signal_id": "s2", "status": "rejected", "reason": "NO_MONEY"})
                                         + "\n")
    assert run.seed == 7 and run.config == {"a": 1} and run.scenario["name"] == "engine-kill"
    assert [(s.id, s.ack) for s in run.signals()] == [("s1", "ok"), ("s2", "unknown")]
    assert run.ledger()[0].deal == 1 and run.ledger()[0].volume == 0.1
    assert run.trade_results()[0].signal == "s2" and run.trade_results()[0].reason == "NO_MONEY"
    assert run.trade_state() is None
    assert run.node_log("engine-a").parent.name == "nodes"
    assert h.RunDir.find(tmp_path) == [] or h.RunDir.find(tmp_path)[0].path == run.path
