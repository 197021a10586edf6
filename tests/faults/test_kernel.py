"""nftables faults (root): UDP loss on the receiver's input, partitions by drop or reset, safety, heal-all."""
import socket
import subprocess

import pytest

from faults.core import FaultError, UnsafeTarget
from faults.kernel import Isolate, Partition, UdpLossKernel, list_tables, table_name
from faults.safety import check_address

from .conftest import hostport, needs_root
from .udp_client import exchange


def test_safety_refuses_addresses_outside_loopback(monkeypatch):
    assert check_address("127.0.4.2") == "127.0.4.2"
    assert check_address("::1") == "::1"
    assert check_address("127.0.4.2:6379") == "127.0.4.2:6379"
    for bad in ("8.8.8.8", "10.1.2.3:6379", "192.168.0.0/16", "example.com", "0.0.0.0/0"):
        with pytest.raises(UnsafeTarget):
            check_address(bad)
    with pytest.raises(UnsafeTarget):
        Isolate("10.0.0.5")
    monkeypatch.setenv("TRADEDRILL_FAULT_NETWORKS", "172.30.0.0/16")
    assert check_address("172.30.1.2")
    assert Partition([["172.30.0.2"], ["127.0.4.2"]]).rules()


def test_partition_rules_cover_both_directions():
    p = Partition([["127.0.4.2"], ["127.0.4.3", "127.0.4.4"]], mode="reset")
    rules = p.rules()
    assert "ip saddr 127.0.4.2 ip daddr { 127.0.4.3, 127.0.4.4 } meta l4proto tcp reject with tcp reset" in rules
    assert "ip saddr 127.0.4.2 ip daddr { 127.0.4.3, 127.0.4.4 } tcp flags & rst == rst accept" in rules
    assert "ip saddr { 127.0.4.3, 127.0.4.4 } ip daddr 127.0.4.2 drop" in rules
    with pytest.raises(FaultError):
        Partition([["127.0.4.2"], []])


@needs_root
def test_kernel_udp_loss_rate_within_tolerance(udp_echo):
    addr = hostport(udp_echo.address)
    with UdpLossKernel(addr[0], 30, port=addr[1]) as fault:
        assert table_name() in list_tables()
        got = exchange(addr, 2000)
    assert abs((1 - len(got) / 2000) - 0.3) <= 0.04
    assert table_name() not in list_tables()
    assert sorted(exchange(addr, 100)) == list(range(100))
    assert fault.describe().startswith("kernel UDP loss 30%")


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.4.40", 0))
    srv.listen(16)
    try:
        yield srv.getsockname()
    finally:
        srv.close()


def _connect(addr, source, timeout=0.4):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    try:
        s.connect(addr)
    finally:
        s.close()


@needs_root
def test_partition_drop_times_out_and_reset_refuses(listener):
    _connect(listener, "127.0.4.41")
    with Partition([["127.0.4.40"], ["127.0.4.41"]]):
        with pytest.raises(socket.timeout):
            _connect(listener, "127.0.4.41")
        _connect(listener, "127.0.4.42")  # outside the partition: unaffected
    _connect(listener, "127.0.4.41")
    with Partition([["127.0.4.40"], ["127.0.4.41"]], mode="reset"):
        with pytest.raises(ConnectionRefusedError):
            _connect(listener, "127.0.4.41")
    _connect(listener, "127.0.4.41")
    assert table_name() not in list_tables()


@needs_root
def test_two_kernel_faults_heal_independently(listener):
    a = Isolate("127.0.4.40").inject()
    b = UdpLossKernel("127.0.4.43", 50).inject()
    try:
        a.heal()
        _connect(listener, "127.0.4.41")
        assert table_name() in list_tables()
    finally:
        a.heal()
        b.heal()
    assert table_name() not in list_tables()


@needs_root
def test_heal_all_deletes_tables_of_dead_runs(fault_state):
    from click.testing import CliRunner

    from faults.cli import faults

    dead = "tradedrill_999999999"
    subprocess.run(["nft", "add", "table", "inet", dead], check=True)
    try:
        result = CliRunner().invoke(faults, ["heal-all", "--state-file", str(fault_state)])
        assert result.exit_code == 0, result.output
        assert f"deleted nft table inet {dead}" in result.output
        assert dead not in list_tables()
    finally:
        subprocess.run(["nft", "delete", "table", "inet", dead], capture_output=True)
