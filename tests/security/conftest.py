"""Fixtures of the security tests: a whole local stack (Redis + Sentinels, ClickHouse, PostgreSQL, both brokers,
both engines) on 127.0.62.x whose run folder sits directly under /tmp, so the servers run as their packages'
accounts as in a real deployment (pytest's own folders are root's alone: a stack there keeps its servers as root),
and a way to run a command as the unprivileged user ``nobody``.

The drill whose run folder is searched for secrets runs on 127.0.61.x (``test_drill_secrets.py``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tradedrill.local import LocalStack
from tradedrill.topology import Topology

SUBNET = "127.0.62"
NOBODY = "nobody"
# set in the harness's environment before the stack starts: no node may inherit it
CANARY = "TRADEDRILL_SECURITY_CANARY"


def needs_root():
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("the security tests run the servers as their accounts and a client as nobody: they need root")


def as_nobody(*argv: str, timeout: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``nobody`` (``runuser -u nobody --``) from ``/``, with a bare environment."""
    return subprocess.run([shutil.which("runuser"), "-u", NOBODY, "--", *argv], cwd="/", capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                                                **(env or {})})


def private_tmp(prefix: str) -> Path:
    """A fresh 0700 folder directly under /tmp (every account may reach /tmp; the folder is root's alone)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def topology(**overrides) -> Topology:
    return Topology.default(subnet=SUBNET, services=("redis", "clickhouse", "postgres", "mt5", "engine"),
                            overrides={"sentinel.down_after_ms": 1000, **overrides})


@pytest.fixture(scope="module")
def stack():
    needs_root()
    run_dir = private_tmp("tradedrill-security-")
    os.environ[CANARY] = "inherited-by-nobody"
    st = LocalStack(topology(), run_dir, options={"mt5": {"seed": 7}, "engine": {"overrides": {"heartbeat_s": 0.5}}})
    try:
        st.up()
        yield st
    finally:
        os.environ.pop(CANARY, None)
        st.down()
        shutil.rmtree(run_dir, ignore_errors=True)
