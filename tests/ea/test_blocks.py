"""The EA tests' and the tick benchmark's loopback blocks move with an environment variable
(``TRADEDRILL_EA_TEST_SUBNET``, default 127.0.82; ``TRADEDRILL_EA_BENCH_SUBNET``, default 127.0.83), so two runs can
share a machine; no EA test or the benchmark spells an address of its own."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE_TESTS = "from tests.ea import conftest as c; print(c.SIM_HOST, *c.EA_HOSTS, *c.CONSUMER_HOSTS, c.REDIS_HOST)"
PROBE_BENCH = ("import importlib.util as u; s = u.spec_from_file_location('b', 'benchmarks/bench_ticks.py'); "
               "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.SIM, m.EA, m.ECHO, m.CONSUMER, m.SPARE)")


def probe(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_variables_move_every_address():
    tests = probe(PROBE_TESTS, TRADEDRILL_EA_TEST_SUBNET="127.0.83")
    assert tests.returncode == 0, tests.stderr
    assert all(a.startswith("127.0.83.") for a in tests.stdout.split()), tests.stdout
    bench = probe(PROBE_BENCH, TRADEDRILL_EA_BENCH_SUBNET="127.0.82")
    assert bench.returncode == 0, bench.stderr
    assert all(a.startswith("127.0.82.") for a in bench.stdout.split()), bench.stdout
    bad = probe(PROBE_BENCH, TRADEDRILL_EA_BENCH_SUBNET="10.0.0")
    assert bad.returncode != 0 and "TRADEDRILL_EA_BENCH_SUBNET" in bad.stderr


def test_no_ea_test_or_the_benchmark_spells_an_address_of_its_own():
    files = [*sorted((ROOT / "tests" / "ea").glob("*.py")), ROOT / "benchmarks" / "bench_ticks.py"]
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"127\.0\.8[23]\.\d", line):
                raise AssertionError(f"{f.name}:{n} hard-codes an address: {line.strip()}")
