"""`nox -s tests` runs two pytest-xdist workers; each takes whole groups (tests/conftest.py: a test folder, or a
module with a loopback block of its own). Two groups at once must never start servers at the same addresses: this
reads every test module's module-level constants (``SUBNET``, ``BLOCK``, ``HOST``..., also an
``os.environ.get(..., "127.0.6")`` default) with ``ast`` and checks that no loopback block is claimed by two groups.
It found three (tests/load's drill on the drills' 127.0.6, its in-flight stub on the soak's 127.0.123, the sweep
leftovers test on the killed-pytest test's 127.0.128)."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from tests.conftest import OWN_GROUPS, TESTS, scope_of

CONSTANT = re.compile(r"^([A-Z0-9_]*_)?(SUBNET|SUBNETS|BLOCK|HOST\d*)$")
LOOPBACK_BLOCK = re.compile(r"\b127\.(\d{1,3})\.(\d{1,3})\b")


def claimed_blocks(source: str) -> set[str]:
    """Loopback blocks ("127.0.6") named in string literals of module-level assignments to SUBNET/BLOCK/HOST-like
    names (a tuple or a ``"a,b"`` list too)."""
    blocks = set()
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        names += [e.id for t in targets if isinstance(t, ast.Tuple) for e in t.elts if isinstance(e, ast.Name)]
        if not any(CONSTANT.match(name) for name in names):
            continue
        for literal in ast.walk(node.value):
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                blocks |= {f"127.{a}.{b}" for a, b in LOOPBACK_BLOCK.findall(literal.value)}
    return blocks


def test_the_reader_finds_blocks_in_defaults_tuples_and_lists():
    source = ('import os\nSUBNET = os.environ.get("X", "127.0.6")\nHOST3 = "127.0.123.3"\n'
              'A_SUBNET, B_SUBNET = (os.environ.get("Y") or "127.0.127,127.0.128").split(",")\n'
              'TEXT = "127.0.9"\n')
    assert claimed_blocks(source) == {"127.0.6", "127.0.123", "127.0.127", "127.0.128"}


def test_no_two_test_groups_share_a_loopback_block():
    owners: dict[str, set[str]] = defaultdict(set)
    for path in sorted(TESTS.rglob("*.py")):
        for block in claimed_blocks(path.read_text()):
            owners[block].add(scope_of(path))
    shared = {block: sorted(groups) for block, groups in owners.items() if len(groups) > 1}
    assert not shared, f"loopback blocks claimed by two test groups that may run at once: {shared}"
    # every module with a block of its own claims it (a stale entry would hide a module in the wrong group)
    for rel, block in OWN_GROUPS.items():
        assert (TESTS / rel).is_file(), f"tests/conftest.py OWN_GROUPS names {rel}, which does not exist"


def test_two_workers_run_each_folder_on_one_worker_and_share_the_rest():
    """The scheduler of tests/conftest.py, as ``nox -s tests`` runs it: two real folders' modules, two workers;
    every test of a folder ran on the same worker, and each worker got one folder. (With ``--dist loadgroup`` and
    ``xdist_group`` marks, pytest 9.2 spread one folder over both workers: pytest-xdist#1386.)"""
    import subprocess
    import sys

    modules = ["tests/faults/test_core.py", "tests/stateful/test_replay_input.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadscope",
                          "-v", *modules], cwd=TESTS.parent, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, folder in re.findall(r"^\[(gw\d)\] .*?PASSED tests/(\w+)/", run.stdout, re.M):
        workers[folder].add(worker)
    assert set(workers) == {"faults", "stateful"}, run.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert workers["faults"] != workers["stateful"], dict(workers)
