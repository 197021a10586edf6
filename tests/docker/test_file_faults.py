"""File faults on the docker provider (issue 17, step 4): the run folder is bind-mounted into every container at the
same path, so a fault package that damages a node's file from the host (the engine's DuckDB journal, its JSON
settings) writes where the containerised engine reads. duckdb-corrupt-zero-header on docker: the damage lands in
the active engine's journal under the mounted run folder and the engine in its container finds and repairs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.docker.conftest import tradedrill_objects

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
SUBNET = os.environ.get("TRADEDRILL_DOCKER_TEST_SUBNET", "172.30.41")


def test_a_journal_damaged_from_the_host_is_found_and_repaired_by_the_engine_in_its_container(docker_client, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tradedrill.cli", "drill", "duckdb-corrupt-zero-header",
                           "--provider", "docker", "--subnet", SUBNET, "--repeat", "1", "--seed", "7",
                           "--duration", "18", "--settle", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=800,
                          env={**os.environ, "TRADEDRILL_DOCKER_KEEP_ENGINE": "1"})
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = next(out.rglob("run-1"))
    injected = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()
                if '"inject"' in line]
    assert len(injected) == 1 and injected[0]["fault"] == "duckdb-corrupt"
    journal = injected[0]["details"]["path"]
    assert journal.startswith(str(run_dir / "stack") + "/")     # in the run folder every container mounts
    report = json.loads(next(out.rglob("report.json")).read_text())
    run = report["runs"][0]
    assert run["run_validity"]["valid"], run["run_validity"]
    assert run["provider"]["provider"] == "docker" and not run["provider"].get("skipped_faults")
    by_checker = {r["checker"]: r for r in run["results"]}
    repair = by_checker["store_repair"]
    assert repair["valid"] is True, repair
    assert repair["metrics"]["damages"] == repair["metrics"]["detected"] == 1
    assert repair["metrics"]["undetected_corruptions"] == 0
    for checker in ("duplicates", "lost_signals", "one_active"):
        assert by_checker[checker]["valid"] is True, by_checker[checker]
    assert tradedrill_objects(docker_client) == []
