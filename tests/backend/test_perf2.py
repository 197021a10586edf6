"""PERF-2 ("backend failover < 500 ms", TV performance targets) is the same measurement as BE-2's
``backend_failover_s``: the backend drills must claim it so the report's PERF-2 row is measured (issue 15).
Before: backend-kill and backend-pause measured backend_failover_s under BE-2 only, and PERF-2's row said
unmeasured."""
from __future__ import annotations

from scenarios import checkers, history as h, registry, targets as targets_mod
from scenarios.webhook import check_http_failover


def test_the_backend_drills_claim_perf_2_with_the_failover_checker():
    targets = targets_mod.load()
    assert targets.target("PERF-2", "backend_failover_s") is not None
    for name in ("backend-kill", "backend-pause"):
        sc = registry.get(name)
        assert "PERF-2" in sc.requirement_ids, name
        specs = [c for c in sc.checkers if c.checker == "http_failover"]
        assert specs and "PERF-2" in specs[0].requirement_ids, name


def test_perf_2_is_judged_from_the_client_seen_gap():
    ops = [h.Operation(1, "client-1", "webhook", "a", h.OK, 10.1, 10.45)]
    window = h.FaultWindow("process-kill", "backend-a", 10.0, 12.0)
    spec = next(c for c in registry.get("backend-kill").checkers if c.checker == "http_failover")
    r = check_http_failover(ops, [window], requirement_ids=spec.requirement_ids, result_cls=checkers.CheckResult,
                            unmeasured=checkers._unmeasured)
    perf = [j for j in r.judgements if j.requirement_id == "PERF-2"]
    assert sorted((j.metric, j.verdict) for j in perf) == [("backend_failover_s", checkers.PASS),
                                                         ("webhook_failed_requests", checkers.PASS)]
