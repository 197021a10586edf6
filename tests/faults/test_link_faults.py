"""Each link fault judged by its effect on a real client, and by the heal restoring normal service."""
import socket
import time

import pytest

from faults.core import FaultLog
from faults.network import (Bandwidth, Blackhole, LimitData, LinkDown, LinkFaults, LinkLatency, LinkTimeout,
                            ResetPeer, SlowClose, Slicer, ToxiproxyAPI)
from tradedrill.waiting import wait_until

from .conftest import hostport


@pytest.fixture
def links(toxiproxy_server, tmp_path):
    with LinkFaults(toxiproxy_server.url, log=FaultLog(tmp_path / "faults.jsonl"), seed=1) as lf:
        yield lf


@pytest.fixture
def echo_link(links, echo_server):
    return links.proxy("echo", upstream=echo_server, listen="127.0.4.21:0")


def connect(address: str, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(hostport(address), timeout=timeout)


def roundtrip(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.perf_counter()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    assert got == payload
    return time.perf_counter() - start


def test_latency_is_measured_through_the_proxy_and_heal_removes_it(links, echo_link, tmp_path):
    sock = connect(echo_link)
    base = roundtrip(sock)
    with links.latency("echo", 150, jitter_ms=10):
        slow = [roundtrip(sock) for _ in range(3)]
    fast = roundtrip(sock)
    assert all(0.13 <= s <= 0.5 for s in slow), slow
    assert fast < 0.1 and base < 0.1
    lines = FaultLog(tmp_path / "faults.jsonl").read()
    assert [l["event"] for l in lines] == ["inject", "heal"]
    assert lines[0]["details"]["attributes"] == {"latency": 150, "jitter": 10}


def test_upstream_latency_adds_to_downstream(links, echo_link):
    sock = connect(echo_link)
    with links.latency("echo", 60, stream="upstream"), links.latency("echo", 60):
        assert roundtrip(sock) >= 0.11


def test_reset_peer_is_seen_by_the_client(links, echo_link):
    sock = connect(echo_link)
    roundtrip(sock)
    with links.reset_peer("echo", timeout_ms=0):
        with pytest.raises(ConnectionError):
            for _ in range(3):
                roundtrip(sock)
    assert roundtrip(connect(echo_link))


def test_blackhole_turns_into_a_client_timeout_and_heal_lets_new_connections_through(links, echo_link):
    sock = connect(echo_link, timeout=0.3)
    roundtrip(sock)
    with links.blackhole("echo"):
        with pytest.raises(socket.timeout):
            roundtrip(sock)
    assert roundtrip(connect(echo_link))


def test_timeout_closes_after_the_delay(links, echo_link):
    sock = connect(echo_link, timeout=3)
    with links.timeout("echo", 200):
        start = time.perf_counter()
        sock.sendall(b"x")
        assert sock.recv(10) == b""  # closed by the proxy, nothing echoed
        assert 0.15 <= time.perf_counter() - start < 2.5
    assert roundtrip(connect(echo_link))


def test_link_down_refuses_connections_and_closes_existing(links, echo_link):
    sock = connect(echo_link)
    with links.down("echo"):
        try:
            assert sock.recv(10) == b""     # closed by the proxy
        except ConnectionResetError:        # or still in the kernel's accept queue when the listener closed: reset
            pass
        with pytest.raises(ConnectionRefusedError):
            connect(echo_link)
    assert roundtrip(connect(echo_link))


def test_bandwidth_limits_throughput(links, echo_link):
    sock = connect(echo_link, timeout=5)
    with links.bandwidth("echo", rate_kb_s=200):
        took = roundtrip(sock, b"x" * 60_000)
    assert took >= 0.25  # 60 kB at 200 kB/s is 0.3 s
    assert roundtrip(sock, b"x" * 60_000) < 0.2


def test_slicer_cuts_writes_into_small_pieces(links, echo_link):
    sock = connect(echo_link)
    with links.slicer("echo", average_size=10, size_variation=2, delay_us=2000):
        sock.sendall(b"y" * 200)
        pieces = []
        while sum(map(len, pieces)) < 200:
            pieces.append(sock.recv(65536))
    assert len(pieces) >= 5 and b"".join(pieces) == b"y" * 200


def test_limit_data_closes_after_the_bytes(links, echo_link):
    sock = connect(echo_link)
    with links.limit_data("echo", 100):
        sock.sendall(b"z" * 300)
        got = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got == b"z" * 100
    assert roundtrip(connect(echo_link))


def test_slow_close_delays_the_close(links, echo_link):
    sock = connect(echo_link, timeout=3)
    with links.slow_close("echo", 300):
        sock.shutdown(socket.SHUT_WR)
        start = time.perf_counter()
        assert sock.recv(10) == b""
        assert time.perf_counter() - start >= 0.25


def test_toxicity_zero_spares_connections(links, echo_link):
    with links.latency("echo", 300, toxicity=0.0):
        assert roundtrip(connect(echo_link)) < 0.2


def test_heal_all_after_a_crash_removes_toxics_reenables_and_deletes_owned_proxies(
        toxiproxy_server, echo_link, echo_server, fault_state):
    from click.testing import CliRunner

    from faults.cli import faults
    from faults.core import ACTIVE

    api = ToxiproxyAPI(toxiproxy_server.url)
    other = api.create_proxy("other", echo_server, "127.0.4.21:0")["listen"]
    crashed = [LinkLatency(api, "other", 500).inject(), LinkDown(api, "other").inject()]
    for f in crashed:  # the run "crashes": nothing is healed, only the state file remains
        f.active = False
        ACTIVE.discard(f)
    result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(fault_state)])
    assert result.exit_code == 0, result.output
    assert api.toxics("other") == [] and api.proxy("other")["enabled"] is True
    assert "echo" not in api.proxies()  # created by the crashed harness (LinkFaults), so deleted
    assert roundtrip(connect(other)) < 0.2
    assert not fault_state.exists()
