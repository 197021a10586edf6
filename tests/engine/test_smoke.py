import pytest

pytestmark = pytest.mark.services


def test_one_engine_executes_signals(harness):
    harness.engine("A")
    ids = [harness.submit()[0] for _ in range(5)]
    results = harness.check_none_lost(ids)
    assert all(r["status"] == "executed" for r in results), results
    assert harness.pending() == 0
