"""`tradedrill faults proxy serve` as its own process, driven by the real client; heal-all with nothing to do."""
import socket
import sys
from pathlib import Path

from click.testing import CliRunner

from faults.cli import faults
from faults.network import ToxiproxyAPI
from tradedrill.process import ProcessNode

ROOT = Path(__file__).resolve().parents[2]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_proxy_serve_runs_as_a_process(tmp_path, echo_server):
    port = _free_port("127.0.4.50")
    api = ToxiproxyAPI(f"http://127.0.4.50:{port}", timeout=2)

    def ready():
        return api.version()

    node = ProcessNode(name="fault-proxy", role="proxy", address="127.0.4.50", port=port,
                       argv=[sys.executable, "-m", "tradedrill.cli", "faults", "proxy", "serve",
                             "--listen", f"127.0.4.50:{port}", "--seed", "7"],
                       log_path=tmp_path / "proxy.log", ready=ready, cwd=ROOT)
    try:
        node.start().wait_ready(20)
        listen = api.create_proxy("echo", echo_server, "127.0.4.51:0")["listen"]
        host, _, p = listen.rpartition(":")
        with socket.create_connection((host, int(p)), timeout=2) as s:
            s.sendall(b"hello")
            assert s.recv(10) == b"hello"
        assert "echo" in api.proxies()
    finally:
        api.close()
        node.stop()


def test_heal_all_with_nothing_left(fault_state):
    result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(fault_state)])
    assert result.exit_code == 0 and "nothing to heal" in result.output or "deleted" in result.output
