"""The backend tests' loopback blocks move with the environment (like TRADEDRILL_DRILL_SUBNET), so two checkouts
can run them at once: ``TRADEDRILL_BACKEND_TEST_SUBNET`` (default 127.0.85: the in-process app's Redis, the panel
stack, the proxy test) and ``TRADEDRILL_BACKEND_STACK_SUBNET`` (default 127.0.86: the real-stack tests); a value
that is not a loopback block is a one-line error. No module of tests/backend spells a block itself."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROBE = ("from tests.backend import conftest as c; "
         "print(c.BLOCK, c.STACK_BLOCK, c.REDIS_HOST, c.address(20), c.stack_address(0))")


def _probe(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEDRILL_BACKEND_")}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_defaults_and_moved_blocks():
    assert _probe().stdout.split() == ["127.0.85", "127.0.86", "127.0.85.1", "127.0.85.20", "127.0.86.0"]
    moved = _probe(TRADEDRILL_BACKEND_TEST_SUBNET="127.0.95", TRADEDRILL_BACKEND_STACK_SUBNET="127.0.96")
    assert moved.stdout.split() == ["127.0.95", "127.0.96", "127.0.95.1", "127.0.95.20", "127.0.96.0"], moved.stderr


def test_a_bad_block_is_a_one_line_error():
    bad = _probe(TRADEDRILL_BACKEND_TEST_SUBNET="10.0.0")
    assert bad.returncode != 0 and "TRADEDRILL_BACKEND_TEST_SUBNET='10.0.0' is not a loopback block" in bad.stderr


def test_no_backend_test_spells_a_block_itself():
    for path in HERE.glob("*.py"):
        if path.name in ("conftest.py", "test_subnets.py"):
            continue
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        code = re.sub(r'^""".*?"""', "", code, flags=re.S)  # the module's docstring may name the default
        assert not re.search(r"127\.0\.8[56]", code), path.name
