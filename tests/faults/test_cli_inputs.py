"""The fault CLI's inputs: a wrong --listen is one line and exit 2 (never a traceback); heal-all with a damaged state
file says so (which file, what is wrong, what to do), leaves the file as it is, and still heals what it can find
without it: nftables tables ``tradedrill_<pid>`` of processes that are gone, and records still readable."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults import kernel
from faults.cli import faults, state_file_problem
from tests.faults.conftest import needs_root

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradedrill.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("listen, words", [
    ("0.0.0.0:8474", ("--listen", "0.0.0.0:8474", "loopback")),
    ("garbage", ("--listen", "'garbage'", "host:port")),
    ("127.0.4.70:99999", ("--listen", "0-65535")),
    ("example.com:8474", ("--listen", "example.com")),
])
def test_proxy_serve_refuses_a_bad_listen_in_one_line(listen, words):
    result = _cli("faults", "proxy", "serve", "--listen", listen)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_mt5sim_serve_refuses_a_port_out_of_range_through_tradedrill(tmp_path):
    result = _cli("mt5sim", "serve", "--port", "99999", "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["Error: --port 99999 is not a TCP port; give 1-65535 (0 picks a "
                                                  "free one)"]


DAMAGED = [b"{\"toxics\": [", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"\"text\"", b"{\"toxics\": \"x\"}",
           b"{\"mounts\": [1, {\"mount\": \"/nowhere\", \"pid\": 1}]}", b"null"]


@pytest.mark.parametrize("content", DAMAGED)
def test_heal_all_says_the_state_file_is_damaged(tmp_path, content):
    path = tmp_path / "faults-state.json"
    path.write_bytes(content)
    result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(path)])
    assert result.exit_code == 1, result.output
    assert f"fault state file {path} is damaged" in result.output
    assert f"mv {path} {path}.damaged" in result.output and "heal-all again" in result.output
    assert path.read_bytes() == content  # left for the user to inspect
    assert result.exception is None or isinstance(result.exception, SystemExit)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=64) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8).map(lambda v: json.dumps(v).encode()))
def test_any_state_file_content_is_healed_or_reported(tmp_path, content):
    """Whatever the file holds: heal-all never raises, and either reads it or names it damaged."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    problem, _ = state_file_problem(path)
    result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(path)])
    assert isinstance(result.exception, (SystemExit, type(None))), result.exception
    if problem is not None:
        assert result.exit_code == 1 and "is damaged" in result.output
        assert path.read_bytes() == content


def test_a_valid_state_file_is_not_called_damaged(tmp_path):
    path = tmp_path / "faults-state.json"
    path.write_text(json.dumps({"mounts": [{"mount": str(tmp_path / "never-mounted"), "pid": 999_999_999}]}))
    result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(path)])
    assert result.exit_code == 0, result.output
    assert "damaged" not in result.output and not path.exists()  # the record was healed and removed


@needs_root
def test_heal_all_with_a_damaged_file_still_deletes_tables_of_dead_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    table = kernel.table_name(dead.pid)
    kernel.nft(f"add table inet {table}\n")
    try:
        assert table in kernel.list_tables()
        path = tmp_path / "faults-state.json"
        path.write_bytes(b"{\"nft_tables\": [{\"pid\": ")  # cut off mid-write
        result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(path)])
        assert f"deleted nft table inet {table}" in result.output
        assert "is damaged" in result.output and result.exit_code == 1
        assert table not in kernel.list_tables()
    finally:
        kernel.delete_table(table)


def test_a_state_file_of_another_user_is_never_acted_on(tmp_path):
    """A fault state file another local user wrote (e.g. in a world-writable working folder) must not make
    root's heal-all unmount or delete what it names (found by a new user)."""
    import os
    import subprocess
    import sys

    state = tmp_path / "faults-state.json"
    state.write_text('{"mounts": [{"mount": "/tmp/not-ours", "pid": 999999}]}')
    os.chown(state, 65534, 65534)   # nobody
    r = subprocess.run([sys.executable, "-m", "tradedrill.cli", "faults", "heal-all", "--state-file", str(state)],
                       capture_output=True, text=True, timeout=60)
    assert "unmounted" not in r.stdout and "belongs to uid 65534" in r.stderr, r.stdout + r.stderr
    state.chmod(0o666)
    os.chown(state, os.geteuid(), os.getegid())
    r = subprocess.run([sys.executable, "-m", "tradedrill.cli", "faults", "heal-all", "--state-file", str(state)],
                       capture_output=True, text=True, timeout=60)
    assert "unmounted" not in r.stdout and "others can write it" in r.stderr, r.stdout + r.stderr
