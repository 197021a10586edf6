"""The simulator's admin surface is locked down: admin calls need the run's token (only ping answers without it),
no admin call returns a password, a passworded account needs its password, and the server refuses to start with a
token file others can read, on a non-loopback address, or on a port that does not exist (one line, exit 2)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reference.mt5.simclient import AdminError, SimulatorAdmin, SimulatorTerminal, read_admin_token
from tests.mt5.conftest import free_port
from tradedrill.services import mt5sim
from tradedrill.services.mt5sim import admin_token
from tradedrill.topology import NodeSpec, Topology

ROOT = Path(__file__).resolve().parents[2]
PASSWORDED = 7001


def _serve(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reference.mt5.simcli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def passworded_sim(make_sim, tmp_path):
    config = tmp_path / "accounts.json"
    config.write_text(json.dumps({"accounts": [{"login": PASSWORDED, "password": "s3cret-pw", "name": "locked"},
                                               {"login": 5001}]}))
    return make_sim(host="127.0.3.7", config_file=config)


def test_admin_calls_need_the_token_and_ping_does_not(passworded_sim):
    node = passworded_sim
    token_file = Path(node.extra["admin_token_file"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for token in (None, "wrong-token-wrong-token", admin_token(node)[:-1]):
        with SimulatorAdmin(node.address, node.port, token=token) as anonymous:
            ping = anonymous.ping()
            assert ping["admin"] is False and "seed" not in ping
            for call in (anonymous.behaviour, anonymous.ledger, anonymous.orders, anonymous.accounts,
                         anonymous.config, lambda: anonymous.set_behaviour(trade_allowed=False)):
                with pytest.raises(AdminError, match="admin token missing or wrong"):
                    call()
    with SimulatorAdmin(node.address, node.port, token=admin_token(node)) as admin:
        assert admin.behaviour()["trade_allowed"] is True  # the refused set_behaviour changed nothing
        assert admin.ping()["admin"] is True


def test_no_admin_call_returns_a_password(passworded_sim):
    node = passworded_sim
    with SimulatorAdmin(node.address, node.port, token=admin_token(node)) as admin:
        answers = {"config": admin.config(), "accounts": admin.accounts(), "ping": admin.ping(),
                   "behaviour": admin.behaviour(), "ledger": admin.ledger(), "orders": admin.orders()}
    text = json.dumps(answers)
    assert "s3cret-pw" not in text and '"password"' not in text
    assert {a["login"]: a["has_password"] for a in answers["accounts"]} == {PASSWORDED: True, 5001: False}
    assert {a["login"]: a["has_password"] for a in answers["config"]["accounts"]} == {PASSWORDED: True, 5001: False}


def test_a_passworded_account_needs_its_password(passworded_sim):
    node = passworded_sim
    for credentials in ({"login": PASSWORDED}, {"login": PASSWORDED, "password": None},
                        {"login": PASSWORDED, "password": ""}, {"login": PASSWORDED, "password": "wrong"}):
        mt5 = SimulatorTerminal(node.address, node.port)
        assert mt5.initialize(**credentials) is False, credentials
        assert mt5.last_error() == (-6, "Terminal: Authorization failed")
    mt5 = SimulatorTerminal(node.address, node.port)
    assert mt5.initialize() is False  # the first configured account is the passworded one
    assert mt5.initialize(login=PASSWORDED, password="s3cret-pw") is True
    assert mt5.account_info().login == PASSWORDED
    assert mt5.login(5001) is True  # an account without a password needs none
    assert mt5.login(PASSWORDED) is False and mt5.last_error()[0] == -6
    mt5.shutdown()


def test_initialize_with_wrongly_typed_credentials_is_invalid_params(passworded_sim):
    mt5 = SimulatorTerminal(passworded_sim.address, passworded_sim.port)
    assert mt5.initialize(login="7001", password="s3cret-pw") is False
    assert mt5.last_error() == (-2, 'Invalid "login" argument')


def test_build_node_makes_one_token_per_run_folder_and_admin_finds_it(tmp_path):
    topo = Topology.default(subnet="127.0.3", services=("mt5",))
    spec = NodeSpec("mt5-primary", "mt5", "broker-primary", "127.0.3.8", free_port("127.0.3.8"))
    node = mt5sim.build_node(spec, topo, tmp_path / "run", None, seed=3)
    token_file = mt5sim.token_file(spec, tmp_path / "run")
    assert token_file == tmp_path / "run" / "brokers" / "mt5-primary" / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    first = read_admin_token(token_file)
    assert len(first) >= 40
    again = mt5sim.build_node(spec, topo, tmp_path / "run", None, seed=3)  # the same run folder: the same token
    assert read_admin_token(token_file) == first and again.argv == node.argv
    other = tmp_path / "other-run"
    mt5sim.build_node(spec, topo, other, None)
    assert read_admin_token(mt5sim.token_file(spec, other)) != first
    node = mt5sim.build_node(spec, topo, tmp_path / "run", None, seed=3)  # this process's latest build
    assert "--admin-token-file" in node.argv and first not in " ".join(node.argv)  # never on a command line
    node.start().wait_ready()
    try:
        with mt5sim.admin(spec) as admin:  # what LocalStack.broker_admin(name) does
            assert admin.set_behaviour(requote_rate=0.5)["requote_rate"] == 0.5
        with mt5sim.admin(spec, run_dir=tmp_path / "run") as admin:
            assert admin.behaviour()["requote_rate"] == 0.5
        with SimulatorAdmin(spec.address, spec.port) as anonymous:
            with pytest.raises(AdminError, match="token"):
                anonymous.behaviour()
        assert mt5sim.ping(spec)
    finally:
        node.stop()


def test_serve_refuses_a_token_file_others_can_read(tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 43 + "\n")
    os.chmod(token, 0o644)
    result = _serve("serve", "--host", "127.0.3.9", "--port", "0", "--state-dir", str(tmp_path / "s"),
                    "--admin-token-file", str(token))
    _one_line_error(result, str(token), "chmod 600")
    result = _serve("serve", "--host", "127.0.3.9", "--port", "0", "--state-dir", str(tmp_path / "s"),
                    "--admin-token-file", str(tmp_path / "missing"))
    _one_line_error(result, "does not exist")


@pytest.mark.parametrize("args, words", [
    (("--port", "99999"), ("--port 99999", "1-65535")),
    (("--port", "-1"), ("--port -1",)),
    (("--host", "0.0.0.0"), ("0.0.0.0", "loopback", "--allow-remote")),
    (("--host", "192.0.2.1"), ("192.0.2.1", "loopback")),
    (("--host", "example.com"), ("example.com", "not an IP address")),
    (("--behaviour", '{"latency_ms": "abc"}'), ("latency_ms", "[0, 300000]")),
    (("--behaviour", "[1]"), ("JSON object",)),
    (("--max-connections", "0"), ("--max-connections",)),
])
def test_serve_refuses_bad_options_in_one_line(tmp_path, args, words):
    base = {"--host": "127.0.3.9", "--port": "0"}
    argv = ["serve", "--state-dir", str(tmp_path / "s")]
    for key, value in base.items():
        if key not in args:
            argv += [key, value]
    _one_line_error(_serve(*argv, *args), *words)


def test_admin_cli_needs_a_token_file(tmp_path):
    _one_line_error(_serve("set", "--port", "9", "requote_rate=0.1"), "--admin-token-file")
    _one_line_error(_serve("ledger", "--port", "99999"), "--port 99999")
